"""onnxrt's logger, with onnxruntime's severity levels (0 verbose .. 4 fatal)."""

from __future__ import annotations

import logging as _py_logging

logger = _py_logging.getLogger("onnxrt")
_LEVELS = {0: _py_logging.DEBUG, 1: _py_logging.INFO, 2: _py_logging.WARNING, 3: _py_logging.ERROR, 4: _py_logging.CRITICAL}


def set_severity(severity: int) -> None:
    logger.setLevel(_LEVELS.get(int(severity), _py_logging.WARNING))
