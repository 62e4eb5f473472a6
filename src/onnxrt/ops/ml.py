"""ai.onnx.ml kernels: classic machine-learning operators (trees, linear models, encoders, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxrt.errors import InvalidArgument, InvalidGraph
from onnxrt.ops._common import sorted_unique
from onnxrt.ops.registry import ML_DOMAIN, KernelContext, op, op_factory
from onnxrt.runtime import threads


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _attr(ctx: KernelContext, name: str, default: Any = None) -> Any:
    v = ctx.attrs.get(name)
    return default if v is None else v


def _ints(ctx: KernelContext, name: str) -> np.ndarray:
    """An integer attribute list as a flat int64 array (empty when absent); long ones arrive from
    the loader as arrays already."""
    return np.asarray(ctx.attrs.get(name, ()), dtype=np.int64).reshape(-1)


def _floats(ctx: KernelContext, name: str) -> np.ndarray | None:
    """A float attribute list, or its ``<name>_as_tensor`` twin (opset 3), as float64."""
    t = ctx.attrs.get(name + "_as_tensor")
    if t is not None:
        return np.asarray(t, dtype=np.float64).reshape(-1)
    v = ctx.attrs.get(name)
    if v is None:
        return None
    return np.asarray(v, dtype=np.float64).reshape(-1)


def _as_float_matrix(X: Any, op_name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind not in "fiub":
        raise TypeError(f"{op_name}: input 'X' must be a numeric tensor, got dtype {X.dtype}")
    if X.ndim == 0:
        raise InvalidArgument(f"{op_name}: input 'X' must have rank >= 1, got a scalar")
    if X.ndim == 1:
        X = X.reshape(1, -1)
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    return X


_POST = {"NONE": 0, "SOFTMAX": 1, "LOGISTIC": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}


def _post_code(value: Any, where: str) -> int:
    if isinstance(value, (int, np.integer)):
        if not 0 <= int(value) <= 4:
            raise InvalidGraph(f"{where}: post_transform {value} is not in 0..4")
        return int(value)
    if value not in _POST:
        raise InvalidGraph(f"{where}: unknown post_transform '{value}'")
    return _POST[value]


def _logistic(x: np.ndarray) -> np.ndarray:
    # stable 1 / (1 + exp(-x))
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 0:
        return x
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_zero(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 0:
        return x
    nonzero = np.abs(x) > 1e-7
    e = np.where(nonzero, np.exp(x - x.max(axis=-1, keepdims=True)), 0.0)
    s = e.sum(axis=-1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s != 0)


def _erfinv_approx(x: np.ndarray) -> np.ndarray:
    """Winitzki's closed-form erf^-1 approximation (a = 0.147), as onnxruntime uses."""
    a = 0.147
    sgn = np.where(x < 0, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.log((1.0 - x) * (1.0 + x))
        v = 2.0 / (np.pi * a) + 0.5 * ln
        return sgn * np.sqrt(-v + np.sqrt(v * v - ln / a))


def _probit(x: np.ndarray) -> np.ndarray:
    return np.sqrt(2.0) * _erfinv_approx(2.0 * x - 1.0)


def _post_transform(scores: np.ndarray, code: int) -> np.ndarray:
    if code == 0:
        return scores
    if code == 1:
        return _softmax(scores)
    if code == 2:
        return _logistic(scores)
    if code == 3:
        return _softmax_zero(scores)
    return _probit(scores)


# --------------------------------------------------------------------------------------------
# ArrayFeatureExtractor, Binarizer
# --------------------------------------------------------------------------------------------


@op("ArrayFeatureExtractor", 1, domain=ML_DOMAIN)
def array_feature_extractor(X, Y):
    X = np.asarray(X)
    idx = np.asarray(Y)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"ArrayFeatureExtractor: input 'Y' must be int64 indices, got {idx.dtype}")
    idx = idx.reshape(-1).astype(np.int64)
    if X.ndim == 0:
        raise InvalidArgument("ArrayFeatureExtractor: input 'X' must have rank >= 1, got a scalar")
    last = X.shape[-1]
    if idx.size == 0:
        raise InvalidArgument("ArrayFeatureExtractor: input 'Y' (indices) must not be empty")
    bad = (idx < 0) | (idx >= last)
    if bad.any():
        raise InvalidArgument(
            f"ArrayFeatureExtractor: index {int(idx[bad][0])} in input 'Y' is out of range for the last "
            f"dimension of 'X' (size {last})"
        )
    out = X[..., idx]
    if X.ndim == 1:
        out = out.reshape(1, -1)
    return out


@op("Binarizer", 1, domain=ML_DOMAIN)
def binarizer(X, *, threshold=0.0):
    X = np.asarray(X)
    if X.dtype.kind not in "fiu":
        raise TypeError(f"Binarizer: input 'X' must be numeric, got dtype {X.dtype}")
    t = X.dtype.type(threshold)
    out = np.where(X > t, X.dtype.type(1), X.dtype.type(0)).astype(X.dtype, copy=False)
    if np.issubdtype(X.dtype, np.floating):
        out = np.where(np.isnan(X), X, out)
    return np.asarray(out)


# --------------------------------------------------------------------------------------------
# LabelEncoder
# --------------------------------------------------------------------------------------------


class _Mapper:
    """Vectorised key -> value lookup with a default (numeric keys via searchsorted)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, default: Any, out_dtype: np.dtype):
        self.out_dtype = np.dtype(out_dtype)
        self.default = default
        self.string_keys = keys.dtype == object
        if self.string_keys:
            self.table = {}
            for k, v in zip(keys.tolist(), values.tolist()):
                self.table[k] = v  # last duplicate wins
        else:
            keys = keys.astype(np.float64) if keys.dtype.kind == "f" else keys.astype(np.int64)
            self.nan_value = None
            table: dict = {}
            for k, v in zip(keys.tolist(), values.tolist()):
                if isinstance(k, float) and k != k:
                    self.nan_value = v
                else:
                    table[k] = v
            self.keys = np.array(list(table.keys()), dtype=keys.dtype)
            vals = np.empty(len(table), dtype=self.out_dtype)
            vals[:] = list(table.values())
            order = np.argsort(self.keys, kind="stable")
            self.keys = self.keys[order]
            self.values = vals[order]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.string_keys:
            if X.dtype != object and X.dtype.kind not in "US":
                raise TypeError(f"LabelEncoder: input 'X' must be a string tensor, got {X.dtype}")
            out = np.empty(X.shape, dtype=self.out_dtype)
            get, d = self.table.get, self.default
            out.reshape(-1)[:] = [get(s, d) for s in X.reshape(-1).tolist()]
            return out
        if X.dtype == object or X.dtype.kind not in "fiu":
            raise TypeError(f"LabelEncoder: input 'X' must be numeric for numeric keys, got {X.dtype}")
        flat = X.reshape(-1)
        out = np.empty(flat.shape, dtype=self.out_dtype)
        out[:] = self.default
        if self.keys.size:
            xk = flat.astype(self.keys.dtype)
            pos = np.minimum(np.searchsorted(self.keys, xk), self.keys.size - 1)
            hit = self.keys[pos] == xk
            out[hit] = self.values[pos[hit]]
        if self.nan_value is not None and flat.dtype.kind == "f":
            out[np.isnan(flat)] = self.nan_value
        return out.reshape(X.shape)


@op_factory("LabelEncoder", 1, domain=ML_DOMAIN)
def label_encoder_1(ctx: KernelContext):
    classes = np.array(_attr(ctx, "classes_strings", []), dtype=object)
    default_int = int(_attr(ctx, "default_int64", -1))
    default_str = _attr(ctx, "default_string", "_Unused")
    to_int = _Mapper(classes, np.arange(classes.size, dtype=np.int64), default_int, np.int64)
    to_str = _Mapper(np.arange(classes.size, dtype=np.int64), classes, default_str, object)

    def run(X):
        X = np.asarray(X)
        if X.dtype == object or X.dtype.kind in "US":
            return to_int(X.astype(object))
        return to_str(X)

    return run


def _label_encoder_side(ctx: KernelContext, prefix: str) -> np.ndarray | None:
    t = ctx.attrs.get(prefix + "_tensor")
    if t is not None:
        return np.asarray(t).reshape(-1)
    for suffix, dt in (("_strings", object), ("_int64s", np.int64), ("_floats", np.float32)):
        v = ctx.attrs.get(prefix + suffix)
        if v is not None:
            return np.array(v, dtype=dt).reshape(-1)
    return None


@op_factory("LabelEncoder", 2, 4, domain=ML_DOMAIN)
def label_encoder(ctx: KernelContext):
    where = ctx.describe()
    keys = _label_encoder_side(ctx, "keys")
    values = _label_encoder_side(ctx, "values")
    if keys is None or values is None:
        raise InvalidGraph(f"{where}: one keys_* and one values_* attribute are required")
    if keys.size != values.size:
        raise InvalidGraph(f"{where}: keys ({keys.size}) and values ({values.size}) differ in length")
    out_dtype = values.dtype
    dt = ctx.attrs.get("default_tensor")
    if dt is not None:
        default = np.asarray(dt).reshape(-1)[0]
        if out_dtype == object:
            default = str(default)
    elif out_dtype == object:
        default = _attr(ctx, "default_string", "_Unused")
    elif out_dtype.kind == "f":
        default = _attr(ctx, "default_float", -0.0)
    else:
        default = _attr(ctx, "default_int64", -1)
    mapper = _Mapper(keys, values, default, out_dtype)

    def run(X):
        return mapper(np.asarray(X))

    return run


# --------------------------------------------------------------------------------------------
# Vectorised tree ensembles
# --------------------------------------------------------------------------------------------

_MODE_CODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
               "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6, "LEAF": 7}
_AGG = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}


class _Forest:
    """Trees as flat arrays, walked for all (row, tree) pairs at once, one level per step.

    Children >= 0 are node indices; a child < 0 is leaf ``~child``. Each leaf owns a run of
    (target, weight) entries in CSR form.
    """

    def __init__(self, *, feat, thr, mode, true_next, false_next, miss_true, roots,
                 member_sets, leaf_start, leaf_target, leaf_weight, n_targets, agg, where):
        self.feat = np.asarray(feat, dtype=np.int64)
        self.thr = np.asarray(thr, dtype=np.float64)
        self.mode = np.asarray(mode, dtype=np.int64)
        self.true_next = np.asarray(true_next, dtype=np.int64)
        self.false_next = np.asarray(false_next, dtype=np.int64)
        self.miss_true = np.asarray(miss_true, dtype=bool)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.leaf_start = np.asarray(leaf_start, dtype=np.int64)  # n_leaves + 1
        self.leaf_target = np.asarray(leaf_target, dtype=np.int64)
        self.leaf_weight = np.asarray(leaf_weight, dtype=np.float64)
        self.n_targets = int(n_targets)
        self.agg = agg
        self.where = where
        n_nodes = self.feat.size
        n_leaves = self.leaf_start.size - 1
        for name, nxt in (("true", self.true_next), ("false", self.false_next), ("root", self.roots)):
            if nxt.size and (nxt.max(initial=-1) >= n_nodes or (~nxt[nxt < 0]).max(initial=-1) >= n_leaves):
                raise InvalidGraph(f"{where}: a {name} branch points outside the nodes/leaves")
        if self.leaf_target.size and (self.leaf_target.min() < 0 or self.leaf_target.max() >= self.n_targets):
            raise InvalidGraph(f"{where}: a leaf target id is outside [0, {self.n_targets})")
        # membership sets, one padded row per BRANCH_MEMBER node
        self.member_row = np.full(n_nodes, -1, dtype=np.int64)
        members = np.nonzero(self.mode == 6)[0]
        if members.size:
            sets = member_sets or []
            if len(sets) < members.size:
                raise InvalidGraph(f"{where}: membership_values holds {len(sets)} sets for {members.size} member nodes")
            width = max((len(s) for s in sets), default=0) or 1
            table = np.full((members.size, width), np.nan)
            for i in range(members.size):
                table[i, : len(sets[i])] = sets[i]
            self.member_row[members] = np.arange(members.size)
            self.member_table = table
        self.uniform_mode = int(self.mode[0]) if n_nodes and (self.mode == self.mode[0]).all() else None
        self.n_features = int(self.feat.max()) + 1 if n_nodes else 0
        self._prepare_walk()

    # -- preparation (once per node) ------------------------------------------------------

    _DENSE_LEAF_LIMIT = 1 << 24  # leaves x targets up to this: a dense leaf-value table
    _CHUNK_PAIRS = 1 << 16  # (row, tree) pairs walked together: keeps the index arrays in cache

    def _prepare_walk(self) -> None:
        """Branches and leaves in one node space; leaves loop to themselves so every (row, tree)
        pair can take the same number of steps without bookkeeping."""
        nb, nl = self.feat.size, self.leaf_start.size - 1
        self.n_branches = nb

        def ext(nxt: np.ndarray) -> np.ndarray:
            return np.where(nxt >= 0, nxt, nb + ~nxt)

        total = nb + nl
        # np.take converts any other index dtype to intp first: a full copy per gather
        idx_type = np.intp
        child = np.empty((total, 2), dtype=idx_type)  # [false, true] so that child[node * 2 + cond]
        child[:nb, 0] = ext(self.false_next)
        child[:nb, 1] = ext(self.true_next)
        child[nb:, 0] = child[nb:, 1] = np.arange(nb, total)
        self.child = child.reshape(-1)
        self.ext_feat = np.concatenate([self.feat, np.zeros(nl, np.int64)]).astype(idx_type)
        self.ext_thr64 = np.concatenate([self.thr, np.zeros(nl)])
        with np.errstate(over="ignore"):
            thr32 = self.ext_thr64.astype(np.float32)
        # float32 rows compare exactly like float64 ones when every threshold is a float32 value
        self.ext_thr32 = thr32 if np.array_equal(thr32.astype(np.float64), self.ext_thr64, equal_nan=True) else None
        self.ext_roots = ext(self.roots).astype(idx_type)
        self.ext_miss = np.concatenate([self.miss_true, np.zeros(nl, bool)])
        self.any_miss = bool(self.miss_true.any())
        ext_mode = np.concatenate([self.mode, np.full(nl, self.uniform_mode if self.uniform_mode is not None else 0)])
        self.ext_mode = ext_mode
        if self.mode.size and (self.member_row >= 0).any():
            self.ext_member_row = np.concatenate([self.member_row, np.full(nl, -1)])
        self.idx_type = idx_type
        self.depth = self._max_depth()
        # dense leaf values: one gather per (row, tree) instead of CSR expansion
        self.dense = nl * max(self.n_targets, 1) <= self._DENSE_LEAF_LIMIT
        if self.dense:
            counts = np.diff(self.leaf_start)
            owner = np.repeat(np.arange(nl), counts)
            values = np.zeros((nl, self.n_targets))
            hit = np.zeros((nl, self.n_targets), dtype=bool)
            hit[owner, self.leaf_target] = True
            if self.agg in (0, 1):
                np.add.at(values, (owner, self.leaf_target), self.leaf_weight)
            else:
                values[:] = np.inf if self.agg == 2 else -np.inf
                (np.minimum if self.agg == 2 else np.maximum).at(values, (owner, self.leaf_target), self.leaf_weight)
            self.leaf_values, self.leaf_hits = values, hit
            self.leaf_values_1 = np.ascontiguousarray(values[:, 0]) if self.n_targets == 1 else None
            self.leaf_hits_1 = np.ascontiguousarray(hit[:, 0]) if self.n_targets == 1 else None
            self.all_hit = bool(hit.all())

    def _max_depth(self) -> int:
        """Branch levels on the longest root-to-leaf path (a cycle is a malformed model)."""
        nb = self.n_branches
        if nb == 0:
            return 0
        frontier = sorted_unique(self.ext_roots[self.ext_roots < nb])
        depth = 0
        while frontier.size:
            depth += 1
            if depth > nb:
                raise InvalidGraph(f"{self.where}: the trees contain a cycle")
            nxt = np.concatenate([self.child[2 * frontier], self.child[2 * frontier + 1]])
            frontier = sorted_unique(nxt[nxt < nb])
        return depth

    # -- evaluation ----------------------------------------------------------------------------

    def _conditions(self, x: np.ndarray, thr: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.uniform_mode is not None and self.uniform_mode != 6:
                cond = self._compare(self.uniform_mode, x, thr, nodes)
            else:
                m = self.ext_mode[nodes]
                cond = np.zeros(nodes.size, dtype=bool)
                for code in sorted_unique(m):
                    sel = m == code
                    if code == 6:
                        rows = self.ext_member_row[nodes[sel]]
                        cond[sel] = (self.member_table[rows] == x[sel][:, None]).any(axis=1) & (rows >= 0)
                    else:
                        cond[sel] = self._compare(int(code), x[sel], thr[sel], nodes[sel])
        if self.any_miss:
            cond |= self.ext_miss[nodes] & np.isnan(x)
        return cond

    def _walk_input(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows in the dtype the walk compares in, and the matching threshold table."""
        if X.shape[1] < self.n_features:
            raise InvalidArgument(
                f"{self.where}: input 'X' has {X.shape[1]} features, the trees read feature {self.n_features - 1}")
        if X.dtype == np.float32 and self.ext_thr32 is not None:
            return X, self.ext_thr32
        return X.astype(np.float64, copy=False), self.ext_thr64

    def _walk(self, X: np.ndarray, r0: int, r1: int, thr_all: np.ndarray) -> np.ndarray:
        """(trees, r1 - r0) joint-space nodes reached by rows r0:r1 (>= n_branches: a leaf).

        Pairs are laid out tree-major, so consecutive pairs read the same tree's node arrays."""
        t, m = self.roots.size, r1 - r0
        n_feat = X.shape[1]
        it = self.idx_type
        flat = np.ascontiguousarray(X[r0:r1]).reshape(-1)
        offsets = np.tile(np.arange(m, dtype=it) * it(n_feat), t)
        node = np.repeat(self.ext_roots, m)
        # every pair takes 'depth' steps; once most pairs sit in a leaf, continue on the rest only
        active = None
        for step in range(self.depth):
            cur = node if active is None else np.take(node, active, mode="clip")
            # indices are in range by construction (checked when the forest was built, and the
            # row offsets stay below the chunk's size), so 'clip' only skips the bounds errors
            f = np.take(self.ext_feat, cur, mode="clip")
            f += offsets if active is None else np.take(offsets, active, mode="clip")
            x = np.take(flat, f, mode="clip")
            cond = self._conditions(x, np.take(thr_all, cur, mode="clip"), cur)
            c = np.left_shift(cur, 1)
            c += cond
            nxt = np.take(self.child, c, mode="clip")
            if active is None:
                node = nxt
            else:
                np.put(node, active, nxt, mode="clip")
            if step % 4 == 3 and step + 1 < self.depth:
                still = nxt < self.n_branches
                if still.mean() < 0.5:
                    active = np.nonzero(still)[0] if active is None else active[still]
                    if active.size == 0:
                        break
        return node.reshape(t, m)

    def _rows_per_chunk(self) -> int:
        return max(1, self._CHUNK_PAIRS // max(1, self.roots.size))

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf indices reached by each row in each tree."""
        X, thr_all = self._walk_input(X)
        n, t = X.shape[0], self.roots.size
        out = np.empty((n, t), dtype=np.int64)
        if n == 0 or t == 0:
            return out
        rpc = self._rows_per_chunk()
        for r0 in range(0, n, rpc):
            r1 = min(n, r0 + rpc)
            out[r0:r1] = (self._walk(X, r0, r1, thr_all) - self.n_branches).T
        return out

    def _compare(self, code: int, x, thr, nodes) -> np.ndarray:
        if code == 0:
            return x <= thr
        if code == 1:
            return x < thr
        if code == 2:
            return x >= thr
        if code == 3:
            return x > thr
        if code == 4:
            return x == thr
        if code == 5:
            return x != thr
        raise InvalidGraph(f"{self.where}: a LEAF node is used as a branch")

    # below this many (row, tree) pairs the walk stays on the calling thread
    _PARALLEL_MIN_PAIRS = 1 << 16

    def scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aggregated (rows, targets) scores and a has-score mask, before base values.

        Rows are independent, so blocks of rows are walked and aggregated on the intra-op pool
        (numpy releases the GIL in the gathers and compares); each block writes its rows of the
        preallocated outputs, and the per-row arithmetic is the same whatever the split."""
        X, thr_all = self._walk_input(X)
        n, t, k = X.shape[0], self.roots.size, self.n_targets
        s = np.zeros((n, k))
        has = np.zeros((n, k), dtype=bool)
        if n == 0 or t == 0:
            return s, has
        rpc = self._rows_per_chunk()

        def block(sl: slice) -> None:
            for r0 in range(sl.start, sl.stop, rpc):
                r1 = min(sl.stop, r0 + rpc)
                self._aggregate(self._walk(X, r0, r1, thr_all) - self.n_branches, s[r0:r1], has[r0:r1])

        parts = 1
        if n * t >= self._PARALLEL_MIN_PAIRS:
            parts = min(threads.current_num_threads(), -(-n // rpc))
        threads.parallel_for(block, n, parts)
        return s, has

    def _aggregate(self, leaves_t: np.ndarray, s: np.ndarray, has: np.ndarray) -> None:
        """Scores of a block of rows from its (trees, rows) leaf indices, written into s and has.

        Trees are summed in the order the previous (rows, trees) layout summed them: a contiguous
        (rows, trees) reduction for one target, a sequential tree-by-tree one for several."""
        t, m = leaves_t.shape
        k = self.n_targets
        if self.dense:
            if k == 1:
                lv = leaves_t.T  # (rows, trees) view: the gather yields a C-ordered (rows, trees) array
                vals = np.take(self.leaf_values_1, lv)
                if self.all_hit:
                    has[:] = True
                else:
                    has[:, 0] = np.take(self.leaf_hits_1, lv).any(axis=1)
                if self.agg in (0, 1):
                    np.sum(vals, axis=1, out=s[:, 0])
                elif self.agg == 2:
                    np.min(vals, axis=1, out=s[:, 0])
                else:
                    np.max(vals, axis=1, out=s[:, 0])
            else:
                vals = np.take(self.leaf_values, leaves_t, axis=0)  # (trees, rows, targets)
                if self.all_hit:
                    has[:] = True
                else:
                    np.any(np.take(self.leaf_hits, leaves_t, axis=0), axis=0, out=has)
                if self.agg in (0, 1):
                    np.sum(vals, axis=0, out=s)
                elif self.agg == 2:
                    np.min(vals, axis=0, out=s)
                else:
                    np.max(vals, axis=0, out=s)
            if self.agg == 0:
                s /= t
            elif self.agg in (2, 3):
                s[~has] = 0.0
            return
        leaves = np.ascontiguousarray(leaves_t.T).reshape(-1).astype(np.int64, copy=False)
        counts = self.leaf_start[leaves + 1] - self.leaf_start[leaves]
        rows = np.repeat(np.repeat(np.arange(m, dtype=np.int64), t), counts)
        offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        entries = np.repeat(self.leaf_start[leaves], counts) + offs
        lin = rows * k + self.leaf_target[entries]
        w = self.leaf_weight[entries]
        size = m * k
        has[:] = (np.bincount(lin, minlength=size) > 0).reshape(m, k)
        if self.agg in (0, 1):
            s[:] = np.bincount(lin, weights=w, minlength=size).reshape(m, k)
            if self.agg == 0:
                s /= t
        else:
            acc = np.full(size, np.inf if self.agg == 2 else -np.inf)
            (np.minimum if self.agg == 2 else np.maximum).at(acc, lin, w)
            s[:] = np.where(has.reshape(-1), acc, 0.0).reshape(m, k)


def _forest_from_legacy(ctx: KernelContext, prefix: str, n_targets: int, agg: int) -> _Forest:
    """TreeEnsembleRegressor/Classifier (opset 1/3) node lists -> _Forest."""
    where = ctx.describe()
    treeids = _ints(ctx, "nodes_treeids")
    nodeids = _ints(ctx, "nodes_nodeids")
    n = len(treeids)
    featids = _ints(ctx, "nodes_featureids")
    modes = list(_attr(ctx, "nodes_modes", []))
    values = _floats(ctx, "nodes_values")
    values = np.zeros(n) if values is None else values
    trues = _ints(ctx, "nodes_truenodeids")
    falses = _ints(ctx, "nodes_falsenodeids")
    miss = _ints(ctx, "nodes_missing_value_tracks_true")
    miss = miss if miss.size else np.zeros(n, dtype=np.int64)
    for name, lst in (("nodes_nodeids", nodeids), ("nodes_featureids", featids), ("nodes_modes", modes),
                      ("nodes_values", values), ("nodes_truenodeids", trues), ("nodes_falsenodeids", falses),
                      ("nodes_missing_value_tracks_true", miss)):
        if len(lst) != n:
            raise InvalidGraph(f"{where}: {name} has {len(lst)} entries, nodes_treeids has {n}")
    try:
        mode_codes = [_MODE_CODES[m] for m in modes]
    except KeyError as e:
        raise InvalidGraph(f"{where}: unknown node mode {e.args[0]!r}") from None
    tre, nod, tru, fal = treeids, nodeids, trues, falses
    is_leaf = np.asarray(mode_codes, dtype=np.int64).reshape(-1) == 7
    # a (tree, node) pair as one int64 key: dense tree rank x dense rank among every node id used
    tree_u, tree_rank = np.unique(tre, return_inverse=True)
    node_u, node_rank = np.unique(np.concatenate([nod, tru, fal]), return_inverse=True)
    width = max(node_u.size, 1)
    tree_rank = tree_rank.reshape(-1).astype(np.int64)
    node_rank = node_rank.reshape(-1).astype(np.int64)
    key = tree_rank * width + node_rank[:n]
    key_true = tree_rank * width + node_rank[n:2 * n]
    key_false = tree_rank * width + node_rank[2 * n:]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    dup = np.nonzero(sorted_key[1:] == sorted_key[:-1])[0]
    if dup.size:
        i = int(order[dup[0] + 1])
        raise InvalidGraph(f"{where}: node ({treeids[i]}, {nodeids[i]}) is defined twice")

    def lookup(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node positions of the keys q, and which keys name an existing node."""
        if n == 0:
            return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
        p = np.minimum(np.searchsorted(sorted_key, q), n - 1)
        return order[p], sorted_key[p] == q

    leaf_id = np.cumsum(is_leaf) - 1
    ref = np.where(is_leaf, ~leaf_id, np.cumsum(~is_leaf) - 1)
    n_leaves = int(is_leaf.sum())
    b = np.nonzero(~is_leaf)[0]  # branches in index order, which is branch-id order
    children = []
    for keys, ids in ((key_true, trues), (key_false, falses)):
        pos, found = lookup(keys[b])
        if not found.all():
            i = int(b[np.argmin(found)])
            raise InvalidGraph(f"{where}: node ({treeids[i]}, {nodeids[i]}) points to missing node {ids[i]}")
        children.append(ref[pos])
    true_next, false_next = children
    # a root is the first node of each tree that no node of that tree points to
    referenced = np.isin(key, np.concatenate([key_true[b], key_false[b]]))
    cand = np.nonzero(~referenced)[0]
    _, first = np.unique(tree_rank[cand], return_index=True)
    roots = ref[np.sort(cand[first])]
    # leaf outputs
    t_tree = _ints(ctx, prefix + "_treeids")
    t_node = _ints(ctx, prefix + "_nodeids")
    t_ids = _ints(ctx, prefix + "_ids")
    t_w = _floats(ctx, prefix + "_weights")
    t_w = np.zeros(t_tree.size) if t_w is None else t_w
    if not (t_tree.size == t_node.size == t_ids.size == t_w.size):
        raise InvalidGraph(f"{where}: {prefix}_treeids/_nodeids/_ids/_weights differ in length")
    tp = np.minimum(np.searchsorted(tree_u, t_tree), max(tree_u.size - 1, 0))
    np_ = np.minimum(np.searchsorted(node_u, t_node), max(node_u.size - 1, 0))
    ok = np.zeros(t_tree.size, dtype=bool)
    pos = np.zeros(t_tree.size, dtype=np.int64)
    if tree_u.size and node_u.size:
        ok = (tree_u[tp] == t_tree) & (node_u[np_] == t_node)
        pos, found = lookup(tp * width + np_)
        ok &= found
        ok &= is_leaf[pos]
    if not ok.all():
        j = int(np.argmin(ok))
        raise InvalidGraph(f"{where}: {prefix} entry refers to ({t_tree[j]}, {t_node[j]}), which is not a leaf")
    ent_leaf = leaf_id[pos] if t_tree.size else np.zeros(0, dtype=np.int64)
    order = np.argsort(ent_leaf, kind="stable")
    leaf_start = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(np.bincount(ent_leaf, minlength=n_leaves), out=leaf_start[1:])
    return _Forest(
        feat=np.asarray(featids, dtype=np.int64).reshape(-1)[b], thr=values[b],
        mode=np.asarray(mode_codes, dtype=np.int64)[b], true_next=true_next, false_next=false_next,
        miss_true=np.asarray(miss, dtype=bool).reshape(-1)[b], roots=roots, member_sets=None,
        leaf_start=leaf_start, leaf_target=t_ids[order], leaf_weight=np.asarray(t_w)[order],
        n_targets=n_targets, agg=agg, where=where)


def _acc_dtype(X: Any) -> type:
    """onnxruntime accumulates tree scores in double for double input, else in float."""
    return np.float64 if np.asarray(X).dtype == np.float64 else np.float32


def _tree_input(X: Any, op_name: str) -> np.ndarray:
    """Rows as float32 (float16/float32 input) or float64 (any other), compared exactly."""
    X = _as_float_matrix(X, op_name)
    return X.astype(np.float32 if X.dtype in (np.float16, np.float32) else np.float64, copy=False)


@op_factory("TreeEnsembleRegressor", 1, 3, domain=ML_DOMAIN)
def tree_ensemble_regressor(ctx: KernelContext):
    where = ctx.describe()
    agg_name = _attr(ctx, "aggregate_function", "SUM")
    if agg_name not in _AGG:
        raise InvalidGraph(f"{where}: unknown aggregate_function '{agg_name}'")
    n_targets = int(_attr(ctx, "n_targets", 1))
    forest = _forest_from_legacy(ctx, "target", n_targets, _AGG[agg_name])
    base = _floats(ctx, "base_values")
    post = _post_code(_attr(ctx, "post_transform", "NONE"), where)
    if base is not None and base.size not in (0, n_targets):
        raise InvalidGraph(f"{where}: base_values has {base.size} entries for {n_targets} targets")

    def run(X):
        X2 = _tree_input(X, "TreeEnsembleRegressor")
        s, has = forest.scores(X2)
        s = s.astype(_acc_dtype(X))
        if base is not None and base.size:
            # onnxruntime leaves a target that no leaf reached at 0, without its base value
            s = np.where(has, s + base.astype(s.dtype), s.dtype.type(0))
        return _post_transform(s, post).astype(np.float32)

    return run


def _string_or_int_attr(ctx: KernelContext, strings_name: str, ints_name: str) -> np.ndarray:
    """The one of two alternative attributes (labels, categories) the node sets: strings as an object
    array, integers as int64."""
    strings, ints = ctx.attrs.get(strings_name), ctx.attrs.get(ints_name)
    if (strings is None) == (ints is None):
        raise InvalidGraph(f"{ctx.describe()}: exactly one of {strings_name} and {ints_name} is required")
    return np.array(strings, dtype=object) if strings is not None else np.array(ints, dtype=np.int64)


@op_factory("TreeEnsembleClassifier", 1, 3, domain=ML_DOMAIN)
def tree_ensemble_classifier(ctx: KernelContext):
    where = ctx.describe()
    labels = _string_or_int_attr(ctx, "classlabels_strings", "classlabels_int64s")
    n_classes = labels.size
    forest = _forest_from_legacy(ctx, "class", n_classes, 1)
    base = _floats(ctx, "base_values")
    base = np.zeros(0) if base is None else base
    post = _post_code(_attr(ctx, "post_transform", "NONE"), where)
    class_ids = set(_ints(ctx, "class_ids").tolist())
    cw = _floats(ctx, "class_weights")
    all_positive = bool(cw is None or (cw >= 0).all())
    binary = n_classes == 2 and len(class_ids) == 1
    return _classifier_run(forest, labels, base, post, binary, all_positive, "TreeEnsembleClassifier")


def _classifier_run(forest, labels, base, post, binary, all_positive, op_name):
    n_classes = labels.size

    def run(X):
        s, has = forest.scores(_tree_input(X, op_name))
        acc = _acc_dtype(X)
        return _finish_classifier(s.astype(acc), has, labels, base.astype(acc), post, binary, all_positive)

    if n_classes == 0:
        raise InvalidGraph(f"{op_name}: no class labels")
    return run


def _finish_classifier(s, has, labels, base, post, binary, all_positive):
    """onnxruntime's label choice and score layout for tree classifiers, row-vectorised.

    Observed onnxruntime behaviour: a class no leaf voted for scores 0 (its base value is not
    added); with two classes and fewer than two base values, a row where only class 0 has a
    score gets a synthesised second column. Labels outside the 'binary' layout (one class id)
    are the literals 1 / 0, as onnxruntime's aggregator answers them.
    """
    n, n_classes = s.shape
    zero = s.dtype.type(0)
    if n_classes != 2:
        if base.size:
            k = min(base.size, n_classes)
            s = s.copy()
            s[:, :k] += base[:k]
            has = has.copy()
            has[:, :k] = True
        best = np.argmax(np.where(has, s, -np.inf), axis=1)
        return labels[best], _post_transform(np.where(has, s, zero), post).astype(np.float32)
    zero = s.dtype.type(0)
    s0, s1 = s[:, 0], s[:, 1]
    h0, h1 = has[:, 0], has[:, 1]
    # base values, the way onnxruntime's classifier aggregator folds them in; 'two' marks the rows
    # that keep two scores, the others have one and get a synthesised second column
    if base.size == 2:
        p1 = np.where(h1, base[1] + s0, s1 + base[1])
        p0 = np.where(h1, -(base[1] + s0), s0 + base[0])
        two = np.ones(n, dtype=bool)
    elif base.size == 1:
        p0, p1, two = s0 + base[0], s1, h1
    elif base.size == 0:
        p0, p1, two = s0, s1, h1
    else:
        p0, p1, two = s0, s1, np.ones(n, dtype=bool)
    pos_weight = np.where(h1, p1, np.where(h0, p0, zero))
    if binary:
        positive = pos_weight > (0.5 if all_positive else 0.0)
        label = np.where(positive, labels[1], labels[0]).astype(labels.dtype)
    else:
        positive = pos_weight > 0
        if labels.dtype == object:
            label = np.where(positive, labels[1], labels[0]).astype(object)
        else:
            # onnxruntime answers the literal labels 1 / 0 here, not classlabels_int64s
            label = positive.astype(np.int64)
    v0 = np.where(h0, p0, zero)
    z = np.zeros((n, 2), dtype=s.dtype)
    if two.any():
        pair = np.stack([v0, np.where(h1, p1, zero)], axis=1)
        z[two] = _post_transform(pair[two], post)
    one = ~two
    if one.any():
        # one score for the row: onnxruntime 1.31 synthesises the other column (observed behaviour)
        v = v0[one]
        if not binary and base.size == 1:
            # onnxruntime writes the one score and leaves the second column unset: 0 here
            z[one, 0] = _probit(v) if post == 4 else v
        elif post == 4:
            z[one] = np.stack([_probit(v), v], axis=1)
        elif binary and all_positive:
            p = _logistic(v) if post == 2 else v
            z[one] = np.stack([1.0 - p, p], axis=1)
        elif post == 2:
            z[one] = np.stack([_logistic(-v), _logistic(v)], axis=1)
        else:
            z[one] = np.stack([-v, v], axis=1)
    return label, z.astype(np.float32)


@op_factory("TreeEnsemble", 5, domain=ML_DOMAIN)
def tree_ensemble(ctx: KernelContext):
    where = ctx.describe()
    a = ctx.attrs

    def req(name):
        v = a.get(name)
        if v is None:
            raise InvalidGraph(f"{where}: attribute '{name}' is required")
        return v

    modes = np.asarray(req("nodes_modes")).reshape(-1).astype(np.int64)
    n = modes.size
    feat = np.asarray(req("nodes_featureids"), dtype=np.int64)
    splits = np.asarray(req("nodes_splits"), dtype=np.float64).reshape(-1)
    tn = np.asarray(req("nodes_truenodeids"), dtype=np.int64)
    tl = np.asarray(req("nodes_trueleafs"), dtype=np.int64)
    fn = np.asarray(req("nodes_falsenodeids"), dtype=np.int64)
    fl = np.asarray(req("nodes_falseleafs"), dtype=np.int64)
    miss = a.get("nodes_missing_value_tracks_true")
    miss = np.zeros(n, dtype=bool) if miss is None or len(miss) == 0 else np.asarray(miss, dtype=bool)
    for name, arr in (("nodes_featureids", feat), ("nodes_splits", splits), ("nodes_truenodeids", tn),
                      ("nodes_trueleafs", tl), ("nodes_falsenodeids", fn), ("nodes_falseleafs", fl),
                      ("nodes_missing_value_tracks_true", miss)):
        if arr.size != n:
            raise InvalidGraph(f"{where}: {name} has {arr.size} entries, nodes_modes has {n}")
    if ((modes < 0) | (modes > 6)).any():
        raise InvalidGraph(f"{where}: nodes_modes values must be in 0..6")
    targets = np.asarray(req("leaf_targetids"), dtype=np.int64)
    weights = np.asarray(req("leaf_weights"), dtype=np.float64).reshape(-1)
    if targets.size != weights.size:
        raise InvalidGraph(f"{where}: leaf_targetids ({targets.size}) and leaf_weights ({weights.size}) differ")
    n_targets = int(a.get("n_targets") or (int(targets.max()) + 1 if targets.size else 1))
    agg = int(a.get("aggregate_function", 1))
    if agg not in (0, 1, 2, 3):
        raise InvalidGraph(f"{where}: aggregate_function {agg} is not in 0..3")
    post = _post_code(int(a.get("post_transform", 0)), where)
    member_sets = None
    mv = a.get("membership_values")
    if mv is not None:
        mv = np.asarray(mv, dtype=np.float64).reshape(-1)
        cuts = np.nonzero(np.isnan(mv))[0]
        member_sets, start = [], 0
        for c in list(cuts) + [mv.size]:
            if c > start or c < mv.size:
                member_sets.append(mv[start:c])
            start = c + 1
    forest = _Forest(
        feat=feat, thr=splits, mode=modes, true_next=np.where(tl != 0, ~tn, tn),
        false_next=np.where(fl != 0, ~fn, fn), miss_true=miss,
        roots=np.asarray(req("tree_roots"), dtype=np.int64), member_sets=member_sets,
        leaf_start=np.arange(targets.size + 1), leaf_target=targets, leaf_weight=weights,
        n_targets=n_targets, agg=agg, where=where)

    def run(X):
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64, np.float16):
            raise TypeError(f"TreeEnsemble: input 'X' must be float16/float32/float64, got {X.dtype}")
        X2 = X.reshape(X.shape[0], -1) if X.ndim >= 2 else X.reshape(1, -1)
        s, _ = forest.scores(X2.astype(np.float32 if X2.dtype == np.float16 else X2.dtype, copy=False))
        return _post_transform(s, post).astype(X.dtype)

    return run


# --------------------------------------------------------------------------------------------
# Scaler, Normalizer, Imputer, OneHotEncoder, CategoryMapper, FeatureVectorizer
# --------------------------------------------------------------------------------------------


def _numeric(X: Any, op_name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind not in "fiu":
        raise TypeError(f"{op_name}: input 'X' must be a numeric tensor, got dtype {X.dtype}")
    return X


@op_factory("Scaler", 1, domain=ML_DOMAIN)
def scaler(ctx: KernelContext):
    offset = np.asarray(_attr(ctx, "offset", [0.0]), dtype=np.float32)
    scale = np.asarray(_attr(ctx, "scale", [1.0]), dtype=np.float32)

    def run(X):
        X = _numeric(X, "Scaler")
        c = X.shape[-1] if X.ndim else 1
        for name, v in (("offset", offset), ("scale", scale)):
            if v.size not in (1, c):
                raise InvalidArgument(f"Scaler: attribute '{name}' has {v.size} values, input 'X' has {c} columns")
        return np.asarray((X.astype(np.float32) - offset) * scale, dtype=np.float32)

    return run


@op("Normalizer", 1, domain=ML_DOMAIN)
def normalizer(X, *, norm="MAX"):
    X = _numeric(X, "Normalizer")
    x = X.astype(np.float32)
    if x.ndim == 1:
        x2 = x.reshape(1, -1)
    elif x.ndim == 2:
        x2 = x
    else:
        raise InvalidArgument(f"Normalizer: input 'X' must be 1-D or 2-D, got shape {list(X.shape)}")
    if norm == "MAX":
        d = x2.max(axis=1, keepdims=True) if x2.shape[1] else np.ones((x2.shape[0], 1), np.float32)
    elif norm == "L1":
        d = np.abs(x2).sum(axis=1, keepdims=True)
    elif norm == "L2":
        d = np.sqrt((x2 * x2).sum(axis=1, keepdims=True))
    else:
        raise InvalidArgument(f"Normalizer: norm must be MAX, L1 or L2, got '{norm}'")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(d != 0, x2 / d, x2)
    return out.reshape(x.shape).astype(np.float32)


@op_factory("Imputer", 1, domain=ML_DOMAIN)
def imputer(ctx: KernelContext):
    fl = _floats(ctx, "imputed_value_floats")
    il = _ints(ctx, "imputed_value_int64s")
    fl = fl if fl is not None and fl.size else None
    il = il if il.size else None
    if fl is None and il is None:
        raise InvalidGraph(f"{ctx.describe()}: one of imputed_value_floats and imputed_value_int64s is required")
    rep_f = float(_attr(ctx, "replaced_value_float", 0.0))
    rep_i = int(_attr(ctx, "replaced_value_int64", 0))

    def run(X):
        X = _numeric(X, "Imputer")
        if X.dtype.kind == "f":
            if fl is None:
                raise TypeError("Imputer: float input 'X' needs imputed_value_floats")
            values = np.asarray(fl, dtype=X.dtype)
            mask = np.isnan(X) if np.isnan(rep_f) else X == X.dtype.type(rep_f)
        else:
            if il is None:
                raise TypeError("Imputer: integer input 'X' needs imputed_value_int64s")
            values = np.asarray(il, dtype=X.dtype)
            mask = X == rep_i
        c = X.shape[-1] if X.ndim else 1
        if values.size not in (1, c):
            raise InvalidArgument(f"Imputer: {values.size} imputed values for {c} columns of input 'X'")
        fill = np.broadcast_to(values if values.size == c else values[0], X.shape)
        return np.where(mask, fill, X).astype(X.dtype)

    return run


@op_factory("OneHotEncoder", 1, domain=ML_DOMAIN)
def one_hot_encoder(ctx: KernelContext):
    cats = _string_or_int_attr(ctx, "cats_strings", "cats_int64s")
    zeros = int(_attr(ctx, "zeros", 1))
    string_cats = cats.dtype == object
    index = {v: i for i, v in enumerate(cats.tolist())}

    def run(X):
        X = np.asarray(X)
        is_str = X.dtype == object or X.dtype.kind in "US"
        if is_str != string_cats:
            raise TypeError(
                f"OneHotEncoder: input 'X' dtype {X.dtype} does not match the {'string' if string_cats else 'int64'} categories")
        flat = X.reshape(-1)
        if is_str:
            pos = np.fromiter((index.get(s, -1) for s in flat.tolist()), dtype=np.int64, count=flat.size)
        else:
            if X.dtype.kind == "f":
                as_int = flat.astype(np.int64)
                flat_k = np.where(as_int == flat, as_int, np.iinfo(np.int64).min)
            else:
                flat_k = flat.astype(np.int64)
            order = np.argsort(cats, kind="stable")
            sc = cats[order].astype(np.int64)
            p = np.minimum(np.searchsorted(sc, flat_k), max(sc.size - 1, 0))
            pos = np.where(sc.size and (sc[p] == flat_k), order[p] if sc.size else -1, -1) if sc.size else \
                np.full(flat.size, -1, np.int64)
        if not zeros and (pos < 0).any():
            raise InvalidArgument("OneHotEncoder: input 'X' holds a category not in the list and zeros=0")
        out = np.zeros((flat.size, cats.size), dtype=np.float32)
        hit = pos >= 0
        out[np.nonzero(hit)[0], pos[hit]] = 1.0
        return out.reshape(X.shape + (cats.size,))

    return run


@op_factory("CategoryMapper", 1, domain=ML_DOMAIN)
def category_mapper(ctx: KernelContext):
    cs = np.array(_attr(ctx, "cats_strings", []), dtype=object)
    ci = np.array(_attr(ctx, "cats_int64s", []), dtype=np.int64)
    if cs.size != ci.size:
        raise InvalidGraph(f"{ctx.describe()}: cats_strings ({cs.size}) and cats_int64s ({ci.size}) differ in length")
    to_int = _Mapper(cs, ci, int(_attr(ctx, "default_int64", -1)), np.int64)
    to_str = _Mapper(ci, cs, _attr(ctx, "default_string", "_Unused"), object)

    def run(X):
        X = np.asarray(X)
        if X.dtype == object or X.dtype.kind in "US":
            return to_int(X.astype(object))
        if X.dtype.kind not in "iu":
            raise TypeError(f"CategoryMapper: input 'X' must be string or int64, got {X.dtype}")
        return to_str(X)

    return run


@op_factory("FeatureVectorizer", 1, domain=ML_DOMAIN)
def feature_vectorizer(ctx: KernelContext):
    dims = [int(d) for d in _attr(ctx, "inputdimensions", [])]

    def run(*inputs):
        if len(dims) != len(inputs):
            raise InvalidArgument(f"FeatureVectorizer: {len(inputs)} inputs but {len(dims)} inputdimensions")
        if not inputs:
            raise InvalidArgument("FeatureVectorizer: needs at least one input")
        parts = []
        n = None
        for i, (x, d) in enumerate(zip(inputs, dims)):
            x = _numeric(x, "FeatureVectorizer")
            x2 = x.reshape(1, -1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)
            if n is None:
                n = x2.shape[0]
            elif x2.shape[0] != n:
                raise InvalidArgument(f"FeatureVectorizer: input {i} has {x2.shape[0]} rows, input 0 has {n}")
            block = np.zeros((n, d), dtype=np.float32)
            k = min(d, x2.shape[1])
            block[:, :k] = x2[:, :k]
            parts.append(block)
        return np.concatenate(parts, axis=1)

    return run


# --------------------------------------------------------------------------------------------
# Linear models, ZipMap
# --------------------------------------------------------------------------------------------


@op_factory("LinearRegressor", 1, domain=ML_DOMAIN)
def linear_regressor(ctx: KernelContext):
    targets = int(_attr(ctx, "targets", 1))
    coef = np.asarray(_attr(ctx, "coefficients", []), dtype=np.float32)
    if targets < 1 or coef.size % targets:
        raise InvalidGraph(f"{ctx.describe()}: {coef.size} coefficients do not split into {targets} targets")
    coef_t = np.ascontiguousarray(coef.reshape(targets, -1).T)  # [features, targets]
    inter = np.asarray(_attr(ctx, "intercepts", []), dtype=np.float32)
    if inter.size not in (0, targets):
        raise InvalidGraph(f"{ctx.describe()}: {inter.size} intercepts for {targets} targets")
    post = _post_code(_attr(ctx, "post_transform", "NONE"), ctx.describe())

    def run(X):
        X2 = _as_float_matrix(X, "LinearRegressor").astype(np.float32)
        if X2.shape[1] != coef_t.shape[0]:
            raise InvalidArgument(
                f"LinearRegressor: input 'X' has {X2.shape[1]} features, the model expects {coef_t.shape[0]}")
        y = X2 @ coef_t
        if inter.size:
            y = y + inter
        return _post_transform(y.astype(np.float64), post).astype(np.float32)

    return run


@op_factory("LinearClassifier", 1, domain=ML_DOMAIN)
def linear_classifier(ctx: KernelContext):
    where = ctx.describe()
    labels = _string_or_int_attr(ctx, "classlabels_strings", "classlabels_ints")
    coef = np.asarray(_attr(ctx, "coefficients", []), dtype=np.float32)
    inter = np.asarray(_attr(ctx, "intercepts", []), dtype=np.float32)
    n_cls = inter.size if inter.size else max(labels.size, 1)
    if coef.size % n_cls:
        raise InvalidGraph(f"{where}: {coef.size} coefficients do not split into {n_cls} classes")
    coef_t = np.ascontiguousarray(coef.reshape(n_cls, -1).T)
    post = _post_code(_attr(ctx, "post_transform", "NONE"), where)
    binary = n_cls == 1 and labels.size == 2

    def run(X):
        X2 = _as_float_matrix(X, "LinearClassifier").astype(np.float32)
        if X2.shape[1] != coef_t.shape[0]:
            raise InvalidArgument(
                f"LinearClassifier: input 'X' has {X2.shape[1]} features, the model expects {coef_t.shape[0]}")
        s = (X2 @ coef_t).astype(np.float64)
        if inter.size:
            s = s + inter
        if n_cls == 1:
            v = s[:, 0]
            positive = v > 0
            if binary:
                label = np.where(positive, labels[1], labels[0]).astype(labels.dtype)
            elif labels.dtype == object:
                label = np.where(positive, labels[0] if labels.size else "1", "0").astype(object)
            else:
                label = np.where(positive, 1, 0).astype(np.int64)
            # onnxruntime: [1 - p, p] with p the logistic (or probit) score, else the raw one
            p = _logistic(v) if post == 2 else (_probit(v) if post == 4 else v)
            z = np.stack([1.0 - p, p], axis=1)
            return label, z.astype(np.float32)
        best = np.argmax(s, axis=1)
        if labels.size < n_cls:
            raise InvalidArgument(f"LinearClassifier: {labels.size} class labels for {n_cls} classes")
        return labels[best], _post_transform(s, post).astype(np.float32)

    return run


@op_factory("ZipMap", 1, domain=ML_DOMAIN)
def zipmap(ctx: KernelContext):
    labels = _string_or_int_attr(ctx, "classlabels_strings", "classlabels_int64s").tolist()

    def run(X):
        X = np.asarray(X)
        if X.dtype != np.float32:
            raise TypeError(f"ZipMap: input 'X' must be float32, got {X.dtype}")
        X2 = X.reshape(1, -1) if X.ndim == 1 else X
        if X2.ndim != 2 or X2.shape[1] != len(labels):
            raise InvalidArgument(
                f"ZipMap: input 'X' must have {len(labels)} columns (one per label), got shape {list(X.shape)}")
        return [dict(zip(labels, row)) for row in X2.tolist()]

    return run


# --------------------------------------------------------------------------------------------
# Support vector machines
# --------------------------------------------------------------------------------------------

_KERNEL_TYPES = ("LINEAR", "POLY", "RBF", "SIGMOID")


class _SvmKernel:
    """k(x, v) for every (row, vector) pair, as onnxruntime's SVM kernels define it.

    LINEAR: x.v + c; POLY: (gamma x.v + coef0)^degree; RBF: exp(-gamma |x - v|^2);
    SIGMOID: tanh(gamma x.v + coef0). Computed in float64 (onnxruntime uses float32 with
    double sums), returned as float64 so the callers' reductions keep the precision.
    """

    def __init__(self, kernel_type: str, params: Any, where: str) -> None:
        if kernel_type not in _KERNEL_TYPES:
            raise InvalidGraph(f"{where}: kernel_type must be one of {', '.join(_KERNEL_TYPES)}, got '{kernel_type}'")
        self.kind = kernel_type
        p = [float(v) for v in (params or [])]
        if p and len(p) < 3:
            raise InvalidGraph(f"{where}: kernel_params needs [gamma, coef0, degree], got {len(p)} values")
        self.gamma, self.coef0, self.degree = (p[0], p[1], p[2]) if p else (0.0, 0.0, 0.0)

    def __call__(self, X: np.ndarray, V: np.ndarray, V_sq: np.ndarray | None = None, offset: float = 0.0) -> np.ndarray:
        dot = X @ V.T
        if self.kind == "RBF":
            # |x - v|^2 = |x|^2 + |v|^2 - 2 x.v: one BLAS call instead of an (n, m, f) difference
            x_sq = np.einsum("ij,ij->i", X, X)[:, None]
            v_sq = np.einsum("ij,ij->i", V, V)[None, :] if V_sq is None else V_sq
            d2 = np.maximum(x_sq + v_sq - 2.0 * dot, 0.0)
            return np.exp(-self.gamma * d2)
        if self.kind == "LINEAR":
            return dot + offset if offset else dot
        y = self.gamma * dot + self.coef0
        if self.kind == "POLY":
            return np.power(y, self.degree)
        return np.tanh(y)


def _svm_input(X: Any, op_name: str, n_features: int) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or X.dtype.kind not in "fiu":
        raise TypeError(f"{op_name}: input 'X' must be a float, double, int32 or int64 tensor, got {X.dtype}")
    if X.ndim == 0 or X.ndim > 2:
        raise InvalidArgument(f"{op_name}: input 'X' must be 1-D or 2-D, got shape {list(X.shape)}")
    X2 = X.reshape(1, -1) if X.ndim == 1 else X
    if X2.shape[1] != n_features:
        raise InvalidArgument(
            f"{op_name}: input 'X' has {X2.shape[1]} features, the model expects {n_features}")
    # onnxruntime casts every input type to float32 before the kernel sums
    return X2.astype(np.float32).astype(np.float64)


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """Class probabilities from pairwise ones (Wu, Lin & Weng 2004, method 2), as libsvm/onnxruntime.

    r: (rows, k, k) float32 with r[:, i, j] = P(class i | i or j). Iterated in float32 like
    onnxruntime, all rows at once; a row stops updating when it converged.
    """
    n, k, _ = r.shape
    f32 = np.float32
    rt = np.swapaxes(r, 1, 2)
    Q = -(r * rt)
    diag = (rt * rt).sum(axis=2)  # sum_j r[j, i]^2 (r's diagonal is 0)
    idx = np.arange(k)
    Q[:, idx, idx] = diag
    p = np.full((n, k), f32(1.0) / f32(k), dtype=f32)
    eps = f32(0.005) / f32(k)
    active = np.arange(n)
    for _ in range(100):
        if active.size == 0:
            break
        Qa, pa = Q[active], p[active]
        Qp = np.einsum("nij,nj->ni", Qa, pa).astype(f32)
        pQp = (pa * Qp).sum(axis=1, dtype=f32)
        err = np.abs(Qp - pQp[:, None]).max(axis=1)
        keep = err >= eps
        active, Qa, pa, Qp, pQp = active[keep], Qa[keep], pa[keep], Qp[keep], pQp[keep]
        if active.size == 0:
            break
        one = f32(1.0)
        for i in range(k):
            qii = Qa[:, i, i]
            diff = (-Qp[:, i] + pQp) / qii
            pa[:, i] += diff
            pQp = (pQp + diff * (diff * qii + f32(2.0) * Qp[:, i])) / (one + diff) / (one + diff)
            Qp = (Qp + diff[:, None] * Qa[:, i, :]) / (one + diff)[:, None]
            pa /= (one + diff)[:, None]
        p[active] = pa
    return p


def _class_labels(ctx: KernelContext, int_name: str) -> np.ndarray:
    ls = ctx.attrs.get("classlabels_strings")
    li = ctx.attrs.get(int_name)
    if ls is not None and len(ls):
        return np.array(ls, dtype=object)
    if li is not None and len(li):  # a long list arrives as a numpy array (no truth value)
        return np.array(li, dtype=np.int64)
    raise InvalidGraph(f"{ctx.describe()}: one of classlabels_strings and {int_name} is required")


@op_factory("SVMClassifier", 1, domain=ML_DOMAIN)
def svm_classifier(ctx: KernelContext):
    where = ctx.describe()
    labels = _class_labels(ctx, "classlabels_ints")
    n_cls = labels.size
    coef = np.asarray(_attr(ctx, "coefficients", []), dtype=np.float32).reshape(-1)
    if coef.size == 0:
        raise InvalidGraph(f"{where}: attribute 'coefficients' is required and must not be empty")
    rho = np.asarray(_attr(ctx, "rho", []), dtype=np.float32).reshape(-1)
    prob_a = np.asarray(_attr(ctx, "prob_a", []), dtype=np.float32).reshape(-1)
    prob_b = np.asarray(_attr(ctx, "prob_b", []), dtype=np.float32).reshape(-1)
    if prob_a.size != prob_b.size:
        raise InvalidGraph(f"{where}: prob_a ({prob_a.size}) and prob_b ({prob_b.size}) differ in length")
    per_class = _ints(ctx, "vectors_per_class")
    n_vec = int(per_class.sum()) if per_class.size else 0
    post = _post_code(_attr(ctx, "post_transform", "NONE"), where)
    all_positive = bool((coef >= 0).all())
    have_proba = prob_a.size > 0
    n_pairs = n_cls * (n_cls - 1) // 2

    if n_vec > 0:
        # libsvm layout: one-vs-one classifiers over support vectors grouped by class
        if per_class.size != n_cls:
            raise InvalidGraph(f"{where}: vectors_per_class has {per_class.size} entries for {n_cls} class labels")
        sv = np.asarray(_attr(ctx, "support_vectors", []), dtype=np.float32).reshape(-1)
        if sv.size == 0 or sv.size % n_vec:
            raise InvalidGraph(f"{where}: support_vectors ({sv.size} values) do not split into {n_vec} vectors")
        n_feat = sv.size // n_vec
        sv = sv.reshape(n_vec, n_feat).astype(np.float64)
        if coef.size < (n_cls - 1) * n_vec:
            raise InvalidGraph(f"{where}: coefficients has {coef.size} values, expected (classes - 1) x vectors = "
                               f"{(n_cls - 1) * n_vec}")
        if rho.size < n_pairs:
            raise InvalidGraph(f"{where}: rho has {rho.size} values for {n_pairs} class pairs")
        if have_proba and prob_a.size < n_pairs:
            raise InvalidGraph(f"{where}: prob_a/prob_b have {prob_a.size} values for {n_pairs} class pairs")
        if n_cls < 2:
            raise InvalidGraph(f"{where}: a support-vector classifier needs at least two classes")
        kernel = _SvmKernel(_attr(ctx, "kernel_type", "LINEAR"), ctx.attrs.get("kernel_params"), where)
        C = coef[: (n_cls - 1) * n_vec].reshape(n_cls - 1, n_vec).astype(np.float64)
        start = np.concatenate([[0], np.cumsum(per_class)])
        # pair p = (i, j): decision = sum over i's vectors of C[j-1] k + over j's vectors of C[i] k + rho[p];
        # folded into one (vectors, pairs) matrix so every row's decisions are one matmul
        W = np.zeros((n_vec, n_pairs))
        win_i = np.zeros((n_pairs, n_cls))
        win_j = np.zeros((n_pairs, n_cls))
        pair_i, pair_j = [], []
        p = 0
        for i in range(n_cls - 1):
            for j in range(i + 1, n_cls):
                W[start[i]:start[i + 1], p] = C[j - 1, start[i]:start[i + 1]]
                W[start[j]:start[j + 1], p] = C[i, start[j]:start[j + 1]]
                win_i[p, i] = win_j[p, j] = 1.0
                pair_i.append(i)
                pair_j.append(j)
                p += 1
        rho_p = rho[:n_pairs].astype(np.float64)
        sv_sq = np.einsum("ij,ij->i", sv, sv)[None, :]
        pair_i_idx, pair_j_idx = np.array(pair_i), np.array(pair_j)

        def run_svc(X):
            X2 = _svm_input(X, "SVMClassifier", n_feat)
            dec = (kernel(X2, sv, sv_sq) @ W + rho_p).astype(np.float32)
            positive = (dec > 0).astype(np.float64)
            votes = positive @ win_i + (1.0 - positive) @ win_j
            label = labels[np.argmax(votes, axis=1)]
            if have_proba:
                v = dec * prob_a[:n_pairs] + prob_b[:n_pairs]
                pr = np.clip(np.float32(1.0) - _logistic(v).astype(np.float32), np.float32(1e-7),
                             np.float32(1.0 - 1e-7)).astype(np.float32)
                r = np.zeros((dec.shape[0], n_cls, n_cls), dtype=np.float32)
                r[:, pair_i_idx, pair_j_idx] = pr
                r[:, pair_j_idx, pair_i_idx] = np.float32(1.0) - pr
                z = _pairwise_coupling(r).astype(np.float64)
                return label, _post_transform(z, post).astype(np.float32)
            if n_pairs > 1:
                return label, _post_transform(dec.astype(np.float64), post).astype(np.float32)
            # two classes, one decision per row: onnxruntime widens it to two columns
            s = dec[:, 0]
            if post == 4:
                z = np.stack([_probit(s.astype(np.float64)).astype(np.float32), np.zeros_like(s)], axis=1)
            elif post == 0:
                z = np.stack([-s, s], axis=1)
            else:
                z = np.stack([np.float32(1.0) - s, s], axis=1)
            return label, z.astype(np.float32)

        return run_svc

    # liblinear layout: one coefficient row per class, rho[0] added to every score
    if coef.size % n_cls:
        raise InvalidGraph(f"{where}: {coef.size} coefficients do not split into {n_cls} classes")
    if rho.size < 1:
        raise InvalidGraph(f"{where}: rho must hold at least one value")
    n_feat = coef.size // n_cls
    coef_t = coef.reshape(n_cls, n_feat).T.astype(np.float64)
    bias = float(rho[0])

    def run_linear(X):
        X2 = _svm_input(X, "SVMClassifier", n_feat)
        s = (X2 @ coef_t + bias).astype(np.float32)
        best = np.argmax(s, axis=1)
        label = labels[best]
        if n_cls == 2 and not have_proba:
            top = s[np.arange(s.shape[0]), best]
            second = (top >= 0.5) if all_positive else (top > 0)
            label = np.where(second, labels[1], label).astype(labels.dtype)
        if n_cls == 1:
            z = _probit(s.astype(np.float64)) if post == 4 else s
        else:
            z = _post_transform(s.astype(np.float64), post)
        return label, np.asarray(z, dtype=np.float32)

    return run_linear


@op_factory("SVMRegressor", 1, domain=ML_DOMAIN)
def svm_regressor(ctx: KernelContext):
    where = ctx.describe()
    coef = np.asarray(_attr(ctx, "coefficients", []), dtype=np.float32).reshape(-1).astype(np.float64)
    if coef.size == 0:
        raise InvalidGraph(f"{where}: attribute 'coefficients' is required and must not be empty")
    rho = np.asarray(_attr(ctx, "rho", []), dtype=np.float32).reshape(-1)
    if rho.size < 1:
        raise InvalidGraph(f"{where}: rho must hold one value")
    bias = float(rho[0])
    n_vec = int(_attr(ctx, "n_supports", 0))
    one_class = bool(int(_attr(ctx, "one_class", 0)))
    if n_vec > 0:
        sv = np.asarray(_attr(ctx, "support_vectors", []), dtype=np.float32).reshape(-1)
        if sv.size == 0 or sv.size % n_vec:
            raise InvalidGraph(f"{where}: support_vectors ({sv.size} values) do not split into {n_vec} vectors")
        if coef.size < n_vec:
            raise InvalidGraph(f"{where}: {coef.size} coefficients for {n_vec} support vectors")
        n_feat = sv.size // n_vec
        sv = sv.reshape(n_vec, n_feat).astype(np.float64)
        sv_sq = np.einsum("ij,ij->i", sv, sv)[None, :]
        kernel = _SvmKernel(_attr(ctx, "kernel_type", "LINEAR"), ctx.attrs.get("kernel_params"), where)
        weights = coef[:n_vec].reshape(-1, 1)

        def score(X2):
            return kernel(X2, sv, sv_sq) @ weights + bias
    else:
        # no support vectors: a linear model over the coefficients (kernel_type is ignored, as in onnxruntime)
        n_feat = coef.size
        weights = coef.reshape(-1, 1)

        def score(X2):
            return X2 @ weights + bias

    def run(X):
        y = score(_svm_input(X, "SVMRegressor", n_feat)).astype(np.float32)
        if one_class:
            y = np.where(y > 0, np.float32(1.0), np.float32(-1.0))
        return y

    return run


# --------------------------------------------------------------------------------------------
# Maps: DictVectorizer, CastMap
# --------------------------------------------------------------------------------------------


def _declared_dtype(declared: Any) -> np.dtype | None:
    """numpy dtype of a declared tensor type (onnx_ir type or TypeProto; a map's value type), if known."""
    if declared is None:
        return None
    try:
        if hasattr(declared, "WhichOneof"):  # onnx.TypeProto
            which = declared.WhichOneof("value")
            if which == "map_type":
                declared = declared.map_type.value_type
                which = declared.WhichOneof("value")
            if which != "tensor_type" or not declared.tensor_type.elem_type:
                return None
            import onnx.helper

            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(declared.tensor_type.elem_type))
        value_type = getattr(declared, "value_type", None)  # onnx_ir map type
        if value_type is not None:
            declared = value_type
        dtype = getattr(declared, "dtype", None)  # onnx_ir TensorType
        return None if dtype is None else np.dtype(dtype.numpy())
    except Exception:  # an unusual declared type: fall back to the values' own dtype
        return None


def _map_input(value: Any, op_name: str) -> list[dict]:
    """A map feed (dict) or, as a convenience, a list of dicts (one output row each)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise TypeError(f"{op_name}: input 'X' must be a map (dict) or a list of dicts, got {type(value).__name__}")


@op_factory("DictVectorizer", 1, domain=ML_DOMAIN)
def dict_vectorizer(ctx: KernelContext):
    where = ctx.describe()
    vs = ctx.attrs.get("string_vocabulary")
    vi = ctx.attrs.get("int64_vocabulary")
    has_strings, has_ints = vs is not None and len(vs) > 0, vi is not None and len(vi) > 0
    if has_strings == has_ints:
        raise InvalidGraph(f"{where}: exactly one of string_vocabulary and int64_vocabulary is required")
    vocab = list(vs) if has_strings else [int(v) for v in vi]
    string_keys = has_strings
    # duplicated vocabulary entries are legal: every column holding the key gets its value
    columns: dict[Any, list[int]] = {}
    for i, k in enumerate(vocab):
        columns.setdefault(k, []).append(i)
    out_dtype = _declared_dtype(ctx.output_types[0] if ctx.output_types else None)
    if out_dtype is None and ctx.input_types:
        out_dtype = _declared_dtype(ctx.input_types[0])

    def run(X):
        rows = _map_input(X, "DictVectorizer")
        dtype = out_dtype
        if dtype is None:
            sample = next((v for r in rows for v in r.values()), 0.0)
            dtype = np.dtype(object) if isinstance(sample, str) else np.asarray(sample).dtype
        out = np.zeros((len(rows), len(vocab)), dtype=dtype)
        if dtype == object:
            out[:] = ""
        for n, row in enumerate(rows):
            for key, value in row.items():
                if isinstance(key, str) != string_keys:
                    raise TypeError(
                        f"DictVectorizer: map key {key!r} is not a {'string' if string_keys else 'int64'} key")
                cols = columns.get(key if string_keys else int(key))
                if cols is not None:
                    out[n, cols] = value
        return out

    return run


@op_factory("CastMap", 1, domain=ML_DOMAIN)
def cast_map(ctx: KernelContext):
    where = ctx.describe()
    cast_to = _attr(ctx, "cast_to", "TO_FLOAT")
    targets = {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}
    if cast_to not in targets:
        raise InvalidGraph(f"{where}: cast_to must be TO_FLOAT, TO_INT64 or TO_STRING, got '{cast_to}'")
    map_form = _attr(ctx, "map_form", "DENSE")
    if map_form not in ("DENSE", "SPARSE"):
        raise InvalidGraph(f"{where}: map_form must be DENSE or SPARSE, got '{map_form}'")
    max_map = int(_attr(ctx, "max_map", 1))
    dtype = np.dtype(targets[cast_to])

    def convert(v: Any) -> Any:
        if cast_to == "TO_STRING":
            # std::to_string(float): fixed notation with six decimals
            return v if isinstance(v, str) else f"{float(np.float32(v)):.6f}"
        if isinstance(v, str):
            f = float(v) if cast_to == "TO_FLOAT" else int(float(v)) if "." in v or "e" in v.lower() else int(v)
            return f
        return np.float32(v) if cast_to == "TO_FLOAT" else int(np.float32(v))

    def run(X):
        if not isinstance(X, dict):
            raise TypeError(f"CastMap: input 'X' must be a map (dict) of int64 keys, got {type(X).__name__}")
        items = sorted((int(k), v) for k, v in X.items())
        if map_form == "DENSE":
            out = np.empty((1, len(items)), dtype=dtype)
            for i, (_, v) in enumerate(items):
                out[0, i] = convert(v)
            return out
        if items and items[0][0] < 0:
            raise InvalidArgument(f"CastMap: negative key {items[0][0]} in a SPARSE map")
        out = np.empty((1, max_map), dtype=dtype)
        out[:] = "0.f" if cast_to == "TO_STRING" else 0
        for k, v in items:
            if k < max_map:
                out[0, k] = convert(v)
        return out

    return run
