"""com.microsoft text kernels: Tokenizer.

Tokenizer splits each string of a [C] or [N, C] string tensor into tokens along a new last axis,
padded with ``pad_value`` to the largest token count D: [C] -> [C, D], [N, C] -> [N, C, D]. It is
what skl2onnx's CountVectorizer/TfidfVectorizer converters write in front of TfIdfVectorizer.
Semantics follow onnxruntime's CPU kernel (checked against it in tests/ops/test_contrib_text.py):

* Exactly one mode, chosen from the attributes (``separators`` wins when both are set):
  - ``separators``: a list of RE2 expressions applied one after the other; each splits every
    segment the previous ones left. A match that is empty (a separator such as ``x*``) ends the
    segment: the text before it is kept and the rest of that segment is dropped.
  - ``tokenexp``: every non-overlapping leftmost-longest match is a token (empty matches skipped).
  - ``separators=[""]`` or ``tokenexp="."``: one token per character (``mincharnum`` must be 1).
* Tokens shorter than ``mincharnum`` characters (code points) are dropped; empty ones always are.
* ``mark=1`` wraps each row's tokens in U+0002 ... U+0003 (padding comes after the end mark), so
  D grows by 2 - unless no string produced a token at all: then D is 0 and there are no marks.
* An empty input keeps its first axis: [0] -> [0], [N, 0] -> [N, 0].
* ``tokenexpsplit=1`` (not in onnxruntime's schema, which refuses it; some Python runtimes use it)
  treats ``tokenexp`` as a separator instead of a token pattern.

RE2 matches leftmost-longest here (onnxruntime compiles with ``longest_match``) and its ``\\w``,
``\\d``, ``\\s``, ``\\b`` and POSIX classes are ASCII. The ``regex`` package reproduces that
(POSIX + ASCII flags) and is used when installed; without it Python's ``re`` (leftmost-first)
is used, which differs only for patterns whose first-alternative match is not the longest one.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

import numpy as np

from onnxrt.errors import Fail, InvalidArgument
from onnxrt.ops.registry import KernelContext, op_factory
from onnxrt.ops.text import _re2_to_python, _require_strings


@functools.cache
def _regex_module():
    """The ``regex`` package (leftmost-longest matching like RE2 with longest_match), or None;
    imported on first use, not by every process that imports onnxrt."""
    try:
        import regex
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return regex

MS = "com.microsoft"
START_MARK = "\x02"
END_MARK = "\x03"
_META = frozenset("\\.^$*+?()[]{}|")


def _end_anchors(pattern: str) -> str:
    """RE2's ``$`` (without the m flag) matches only at the very end; Python's also before a final
    newline. Spell the unescaped ``$`` outside character classes as ``\\Z`` in that case."""
    if "$" not in pattern or re.search(r"\(\?[a-zA-Z]*m", pattern):
        return pattern
    out = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            # a ']' right after '[' or '[^' is a literal member
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
        elif c == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _compile(pattern: str, what: str, where: str):
    try:
        translated = _end_anchors(_re2_to_python(pattern))
        regex = _regex_module()
        if regex is not None:
            return regex.compile(translated, regex.POSIX | regex.ASCII)
        return re.compile(translated, re.ASCII)
    except Exception as e:  # re.error, regex.error, ValueError from the RE2 translation
        raise Fail(f"{where}: cannot compile {what} {pattern!r}: {e}") from e


def _splitter(pattern: str, where: str) -> Callable[[str], list[str]]:
    """str -> the pieces between the matches of one separator (empty pieces included)."""
    if pattern and not (_META & set(pattern)):
        return lambda s: s.split(pattern)  # a literal: same pieces as the regex loop, faster
    search = _compile(pattern, "separator", where).search

    def split(s: str) -> list[str]:
        pieces = []
        pos = 0
        while True:
            m = search(s, pos)
            if m is None:
                pieces.append(s[pos:])
                return pieces
            start, end = m.span()
            pieces.append(s[pos:start])
            if end == start:  # an empty separator match ends the segment (as onnxruntime)
                return pieces
            pos = end

    return split


@op_factory("Tokenizer", 1, domain=MS)
def tokenizer(ctx: KernelContext):
    a = ctx.attrs
    where = ctx.describe()
    for name in ("mark", "pad_value", "mincharnum"):
        if a.get(name) is None:
            raise Fail(f"{where}: attribute {name} is not set")
    mark = bool(a["mark"])
    pad_value = a["pad_value"]
    mincharnum = int(a["mincharnum"])
    if mincharnum <= 0:
        raise Fail(f"{where}: attribute mincharnum must have a positive value, got {mincharnum}")
    separators = a.get("separators")
    separators = list(separators) if separators is not None and len(separators) else None
    tokenexp = a.get("tokenexp")
    tokenexpsplit = bool(a.get("tokenexpsplit") or 0)
    if separators is None and tokenexp is None:
        raise Fail(f"{where}: either one of the separators OR tokenexp attributes required but none is set")

    tokenize: Callable[[str], list[str]]
    if separators is not None:
        char_mode = separators == [""]
        if not char_mode:
            splits = [_splitter(sep, where) for sep in separators]
    else:
        if tokenexp == "":
            raise Fail(f"{where}: expecting a non-empty tokenexp")
        char_mode = tokenexp == "." and not tokenexpsplit
        if not char_mode:
            if tokenexpsplit:
                splits = [_splitter(tokenexp, where)]
            else:
                finditer = _compile(tokenexp, "tokenexp", where).finditer
    if char_mode and mincharnum > 1:
        raise Fail(f"{where}: mincharnum is too big for char level tokenization, got {mincharnum}")

    if char_mode:
        tokenize = list
    elif separators is not None or tokenexpsplit:
        def tokenize(s: str) -> list[str]:
            segments = [s]
            for split in splits:
                segments = [piece for seg in segments for piece in split(seg) if len(piece) >= mincharnum]
            return segments
    else:
        def tokenize(s: str) -> list[str]:
            return [t for t in (m.group() for m in finditer(s)) if len(t) >= mincharnum]

    def run(X):
        X = _require_strings(X, "Tokenizer", "X")
        if X.ndim not in (1, 2):
            raise InvalidArgument(f"Tokenizer: input dimensions are either [C] or [N][C] allowed, got {list(X.shape)}")
        if X.size == 0:
            return np.empty(X.shape[:1] + ((0,) if X.ndim == 2 else ()), dtype=object)
        flat = X.reshape(-1)
        rows = [tokenize(s) for s in flat]
        counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        width = int(counts.max())
        if width == 0:
            return np.empty(X.shape + (0,), dtype=object)
        lead = 1 if mark else 0
        out = np.full((flat.size, width + 2 * lead), pad_value, dtype=object)
        values = np.empty(int(counts.sum()), dtype=object)
        values[:] = [t for r in rows for t in r]
        row_idx = np.repeat(np.arange(flat.size), counts)
        col_idx = np.arange(values.size) - np.repeat(np.cumsum(counts) - counts, counts) + lead
        out[row_idx, col_idx] = values
        if mark:
            out[:, 0] = START_MARK
            out[np.arange(flat.size), counts + 1] = END_MARK
        return out.reshape(X.shape + (out.shape[1],))

    return run
