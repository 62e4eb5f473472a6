"""SessionOptions, RunOptions and the enums, with onnxruntime's field names and defaults."""

from __future__ import annotations

import enum
import threading


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class SessionOptions:
    """Settings fixed at session construction."""

    def __init__(self) -> None:
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.optimized_model_filepath = ""
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_cpu_mem_arena = True
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self._config: dict[str, str] = {}
        self._free_dim_by_name: dict[str, int] = {}
        self._free_dim_by_denotation: dict[str, int] = {}
        self._initializers: dict[str, object] = {}

    def add_session_config_entry(self, config_key: str, config_value: str) -> None:
        self._config[str(config_key)] = str(config_value)

    def get_session_config_entry(self, config_key: str) -> str:
        try:
            return self._config[config_key]
        except KeyError:
            raise RuntimeError(f"SessionOptions does not have configuration with key: {config_key}") from None

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        self._free_dim_by_name[str(dim_name)] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        self._free_dim_by_denotation[str(dim_denotation)] = int(dim_value)

    def add_initializer(self, name: str, ort_value: object) -> None:
        self._initializers[str(name)] = ort_value

    def register_custom_ops_library(self, library_path: str) -> None:
        from onnxrt.errors import NotImplemented

        raise NotImplemented(
            f"Custom op libraries are compiled code; onnxrt cannot load '{library_path}'. "
            "Register a Python kernel with onnxrt.ops.registry.op instead."
        )


class RunOptions:
    """Settings for one ``run``; ``terminate`` may be set from another thread to stop it."""

    def __init__(self) -> None:
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.only_execute_path_to_fetches = False
        self._terminate = threading.Event()
        self._config: dict[str, str] = {}

    @property
    def terminate(self) -> bool:
        return self._terminate.is_set()

    @terminate.setter
    def terminate(self, value: bool) -> None:
        if value:
            self._terminate.set()
        else:
            self._terminate.clear()

    def add_run_config_entry(self, config_key: str, config_value: str) -> None:
        self._config[str(config_key)] = str(config_value)

    def get_run_config_entry(self, config_key: str) -> str:
        try:
            return self._config[config_key]
        except KeyError:
            raise RuntimeError(f"RunOptions does not have configuration with key: {config_key}") from None
