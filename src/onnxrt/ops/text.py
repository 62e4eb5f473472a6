"""Text kernels: StringConcat, StringNormalizer, StringSplit, RegexFullMatch, TfIdfVectorizer."""

from __future__ import annotations

import re

import numpy as np

from onnxrt.errors import InvalidArgument, InvalidGraph
from onnxrt.ops._common import sorted_unique
from onnxrt.ops.registry import KernelContext, op, op_factory


def _require_strings(x: np.ndarray, op_name: str, input_name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != object and x.dtype.kind not in ("U", "S"):
        raise TypeError(f"{op_name}: input '{input_name}' must be a string tensor, got dtype {x.dtype}")
    if x.dtype != object:
        x = x.astype(object)
    return x


# --------------------------------------------------------------------------------------------
# StringConcat
# --------------------------------------------------------------------------------------------


@op("StringConcat", 20)
def string_concat(X, Y):
    X = _require_strings(X, "StringConcat", "X")
    Y = _require_strings(Y, "StringConcat", "Y")
    try:
        out = np.add(X, Y, dtype=object)
    except ValueError as e:
        raise ValueError(
            f"StringConcat: inputs X {X.shape} and Y {Y.shape} cannot be broadcast together"
        ) from e
    return np.asarray(out, dtype=object)


# --------------------------------------------------------------------------------------------
# StringNormalizer
# --------------------------------------------------------------------------------------------


@op_factory("StringNormalizer", 10)
def string_normalizer(ctx: KernelContext):
    attrs = ctx.attrs
    action = attrs.get("case_change_action", "NONE") or "NONE"
    if action not in ("NONE", "LOWER", "UPPER"):
        raise InvalidGraph(
            f"{ctx.describe()}: case_change_action must be NONE, LOWER or UPPER, got '{action}'"
        )
    case_sensitive = bool(attrs.get("is_case_sensitive", 0))
    stopwords = list(attrs.get("stopwords", []) or [])
    # Python's str.lower/upper are the Unicode default case mappings; the locale attribute
    # (default en_US) does not change them for the locales onnxruntime supports.
    if case_sensitive:
        stopset = frozenset(stopwords)
    else:
        stopset = frozenset(w.lower() for w in stopwords)

    if action == "LOWER":
        change = np.vectorize(str.lower, otypes=[object])
    elif action == "UPPER":
        change = np.vectorize(str.upper, otypes=[object])
    else:
        change = None

    def run(X):
        X = _require_strings(X, "StringNormalizer", "X")
        if X.ndim == 1:
            flat = X
            two_d = False
        elif X.ndim == 2 and X.shape[0] == 1:
            flat = X[0]
            two_d = True
        else:
            raise InvalidArgument(
                f"StringNormalizer: input 'X' must have shape [C] or [1, C], got {list(X.shape)}"
            )
        if stopset and flat.size:
            keys = flat if case_sensitive else np.vectorize(str.lower, otypes=[object])(flat)
            keep = np.fromiter((k not in stopset for k in keys), dtype=bool, count=flat.size)
            flat = flat[keep]
        if flat.size == 0:
            out = np.array([""], dtype=object)
        else:
            out = change(flat) if change is not None else flat.copy()
            out = np.asarray(out, dtype=object)
        return out.reshape(1, -1) if two_d else out

    return run


# --------------------------------------------------------------------------------------------
# StringSplit
# --------------------------------------------------------------------------------------------


@op_factory("StringSplit", 20)
def string_split(ctx: KernelContext):
    delimiter = ctx.attrs.get("delimiter") or None  # "" or absent: split on whitespace runs
    maxsplit = ctx.attrs.get("maxsplit")
    if maxsplit is None:
        maxsplit = -1
    elif maxsplit < 0:
        raise InvalidGraph(f"{ctx.describe()}: maxsplit must be non-negative, got {maxsplit}")

    def run(X):
        X = _require_strings(X, "StringSplit", "X")
        flat = X.reshape(-1)
        parts = [s.split(delimiter, maxsplit) for s in flat]
        counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        width = int(counts.max()) if counts.size else 0
        out = np.full((flat.size, width), "", dtype=object)
        if counts.size and width:
            rows = np.repeat(np.arange(flat.size), counts)
            cols = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
            values = np.empty(rows.size, dtype=object)
            values[:] = [p for ps in parts for p in ps]
            out[rows, cols] = values
        return out.reshape(X.shape + (width,)), counts.reshape(X.shape)

    return run


# --------------------------------------------------------------------------------------------
# RegexFullMatch
# --------------------------------------------------------------------------------------------

_RE2_UNSUPPORTED = re.compile(r"\(\?(?:=|!|<=|<!)|\\[1-9]")


def _re2_to_python(pattern: str) -> str:
    """Translate the RE2 constructs Python's ``re`` spells differently."""
    if _RE2_UNSUPPORTED.search(pattern.replace("\\\\", "")):
        raise ValueError("lookaround assertions and backreferences are not RE2 syntax")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "z":
                out.append(r"\Z")
            elif nxt == "Q":  # \Q...\E literal text
                end = pattern.find("\\E", i + 2)
                lit = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append(re.escape(lit))
                i = len(pattern) if end < 0 else end + 2
                continue
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@op_factory("RegexFullMatch", 20)
def regex_full_match(ctx: KernelContext):
    pattern = ctx.attrs.get("pattern")
    if pattern is None:
        raise InvalidGraph(f"{ctx.describe()}: attribute 'pattern' is required")
    try:
        compiled = re.compile(_re2_to_python(pattern))
    except (re.error, ValueError) as e:
        raise InvalidArgument(f"{ctx.describe()}: invalid regex pattern '{pattern}': {e}") from e
    match = compiled.fullmatch

    def run(X):
        X = _require_strings(X, "RegexFullMatch", "X")
        flat = X.reshape(-1)
        out = np.fromiter((match(s) is not None for s in flat), dtype=bool, count=flat.size)
        return out.reshape(X.shape)

    return run


# --------------------------------------------------------------------------------------------
# TfIdfVectorizer
# --------------------------------------------------------------------------------------------


@op_factory("TfIdfVectorizer", 9)
def tfidf_vectorizer(ctx: KernelContext):
    a = ctx.attrs
    where = ctx.describe()
    mode = a.get("mode")
    if mode not in ("TF", "IDF", "TFIDF"):
        raise InvalidGraph(f"{where}: mode must be TF, IDF or TFIDF, got {mode!r}")
    min_n = int(a["min_gram_length"])
    max_n = int(a["max_gram_length"])
    max_skip = int(a["max_skip_count"])
    if min_n < 1 or max_n < min_n:
        raise InvalidGraph(f"{where}: need 1 <= min_gram_length <= max_gram_length, got {min_n}, {max_n}")
    if max_skip < 0:
        raise InvalidGraph(f"{where}: max_skip_count must be >= 0, got {max_skip}")
    counts_attr = [int(v) for v in a["ngram_counts"]]
    indexes = np.asarray(a["ngram_indexes"], dtype=np.int64).reshape(-1)
    pool_ints = a.get("pool_int64s")
    pool_strs = a.get("pool_strings")
    if (pool_ints is None) == (pool_strs is None):
        raise InvalidGraph(f"{where}: exactly one of pool_int64s and pool_strings must be set")
    is_str = pool_strs is not None
    pool = np.array(pool_strs if is_str else pool_ints, dtype=object if is_str else np.int64).reshape(-1)
    if indexes.size and indexes.min() < 0:
        raise InvalidGraph(f"{where}: ngram_indexes must be non-negative")
    out_size = int(indexes.max()) + 1 if indexes.size else 0
    weights = a.get("weights")
    weights = None if weights is None or len(weights) == 0 else np.asarray(weights, dtype=np.float32)
    if weights is not None and weights.size != indexes.size:
        raise InvalidGraph(f"{where}: weights has {weights.size} entries, ngram_indexes {indexes.size}")

    # Split the pool into n-grams of length 1, 2, ...: ngram_counts[k] is where length k+1 starts.
    if len(counts_attr) < 1 or counts_attr[0] != 0 or any(b < a_ for a_, b in zip(counts_attr, counts_attr[1:])):
        raise InvalidGraph(f"{where}: ngram_counts must start at 0 and be non-decreasing, got {counts_attr}")
    bounds = counts_attr + [pool.size]
    grams_by_n: dict[int, np.ndarray] = {}  # n -> (num_grams, n) array of token ids
    vocab = sorted_unique(pool) if pool.size else pool
    vocab_ids = np.searchsorted(vocab, pool) if pool.size else np.zeros(0, np.int64)
    gram_no = 0  # running index of the n-gram in the pool, aligned with ngram_indexes
    gram_offset: dict[int, int] = {}
    for k in range(len(counts_attr)):
        n = k + 1
        start, stop = bounds[k], bounds[k + 1]
        if (stop - start) % n:
            raise InvalidGraph(f"{where}: pool section of {n}-grams has {stop - start} items, not a multiple of {n}")
        grams_by_n[n] = vocab_ids[start:stop].reshape(-1, n)
        gram_offset[n] = gram_no
        gram_no += (stop - start) // n
    if gram_no != indexes.size:
        raise InvalidGraph(f"{where}: pool holds {gram_no} n-grams but ngram_indexes has {indexes.size}")

    radix = vocab.size + 1  # token id vocab.size means "not in the pool"
    # Encode each pool n-gram as one integer (mixed radix) for sorted lookup.
    tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for n in range(min_n, max_n + 1):
        grams = grams_by_n.get(n)
        if grams is None or grams.size == 0:
            continue
        if radix ** n >= 2**62:
            raise InvalidGraph(f"{where}: the pool vocabulary is too large for {n}-grams")
        codes = (grams * (radix ** np.arange(n, dtype=np.int64))).sum(axis=1)
        order = np.argsort(codes, kind="stable")
        tables[n] = (codes[order], gram_offset[n] + order)

    out_pos = indexes  # output coordinate of pool n-gram i

    def tokens_to_ids(X: np.ndarray) -> np.ndarray:
        if vocab.size == 0:
            return np.full(X.shape, radix - 1, dtype=np.int64)
        if is_str:
            flat = X.reshape(-1)
            pos = np.searchsorted(vocab, flat)
            pos_c = np.minimum(pos, vocab.size - 1)
            hit = vocab[pos_c] == flat
        else:
            flat = X.reshape(-1).astype(np.int64)
            pos = np.searchsorted(vocab, flat)
            pos_c = np.minimum(pos, vocab.size - 1)
            hit = vocab[pos_c] == flat
        return np.where(hit, pos_c, radix - 1).astype(np.int64).reshape(X.shape)

    def run(X):
        X = np.asarray(X)
        if is_str:
            if X.dtype != object and X.dtype.kind not in ("U", "S"):
                raise TypeError(f"TfIdfVectorizer: input 'X' must be a string tensor (pool_strings), got {X.dtype}")
        elif X.dtype.kind not in ("i", "u"):
            raise TypeError(f"TfIdfVectorizer: input 'X' must be int32/int64 (pool_int64s), got {X.dtype}")
        if X.ndim == 1:
            rows = X.reshape(1, -1)
        elif X.ndim == 2:
            rows = X
        else:
            raise InvalidArgument(f"TfIdfVectorizer: input 'X' must be 1-D or 2-D, got shape {list(X.shape)}")
        n_rows, length = rows.shape
        ids = tokens_to_ids(rows)
        counts = np.zeros((n_rows, out_size), dtype=np.float32)
        for n, (codes, pool_idx) in tables.items():
            skips = range(max_skip + 1) if n > 1 else range(1)
            for skip in skips:
                step = skip + 1
                span = (n - 1) * step
                if span >= length:
                    break
                starts = length - span
                code = np.zeros((n_rows, starts), dtype=np.int64)
                for j in range(n):
                    code += ids[:, j * step: j * step + starts] * (radix ** j)
                pos = np.searchsorted(codes, code)
                pos_c = np.minimum(pos, codes.size - 1)
                hit = codes[pos_c] == code
                r, c = np.nonzero(hit)
                np.add.at(counts, (r, out_pos[pool_idx[pos_c[r, c]]]), 1.0)
        if mode == "IDF":
            counts = np.minimum(counts, 1.0)
        if mode != "TF" and weights is not None:
            w = np.zeros(out_size, dtype=np.float32)
            w[out_pos] = weights
            counts = counts * w
        return counts.reshape(-1) if X.ndim == 1 else counts

    return run
