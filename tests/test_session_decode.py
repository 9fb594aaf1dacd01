"""Session lines are decoded by orjson, with json for what orjson refuses: a hostile line reads as json
reads it (or fails with json's one-line error), whichever decoder takes it (pure, fast)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Callable

import pytest

from rlm_tui.core.session import decode_line, loads

#: Lines orjson refuses but json reads: each must read exactly as json reads it.
JSON_READS = {
    "lone high surrogate": b'{"kind": "warning", "message": "a\\ud800b"}',
    "lone low surrogate": b'{"kind": "warning", "message": "\\udc00"}',
    "reversed surrogate pair": b'{"kind": "warning", "message": "\\udc00\\ud800"}',
    "NaN": b'{"kind": "lm_finished", "cost_usd": NaN}',
    "Infinity": b'{"kind": "lm_finished", "cost_usd": Infinity, "tokens_in": -Infinity}',
    "1e400": b'{"kind": "lm_finished", "cost_usd": 1e400}',
    "a BOM": b'\xef\xbb\xbf{"kind": "warning", "message": "bom"}',
    "an encoded surrogate": b'{"kind": "warning", "message": "\xed\xa0\x80"}',
}
#: Lines json refuses too: the same one-line error either way.
BOTH_REFUSE = {
    "a raw control character": b'{"kind": "warning", "message": "a\x01b"}',
    "invalid UTF-8": b'{"kind": "warning", "message": "\xff"}',
    "cut off": b'{"kind": "warning", "message": "ab',
    "trailing garbage": b'{"kind": "warning"} x',
}


def same(a: object, b: object) -> bool:
    """Equal, NaN included (json reads NaN as a float that equals nothing)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def outcome(decode: Callable[[str | bytes], Any], line: str | bytes) -> tuple[Any, ...]:
    try:
        return ("read", decode(line))
    except (ValueError, RecursionError) as exc:
        return ("refused", type(exc), str(exc))


@pytest.mark.parametrize("name", list(JSON_READS))
def test_what_orjson_refuses_reads_as_json_reads_it(name: str) -> None:
    for line in (JSON_READS[name], JSON_READS[name].decode("utf-8", "surrogatepass")):  # bytes and str lines
        ours, theirs = outcome(loads, line), outcome(json.loads, line)
        assert ours[0] == theirs[0] and all(same(a, b) for a, b in zip(ours[1:], theirs[1:])), (ours, theirs)


@pytest.mark.parametrize("name", list(BOTH_REFUSE))
def test_what_both_refuse_fails_with_one_line(name: str) -> None:
    bad: list[tuple[int, str]] = []
    assert decode_line(BOTH_REFUSE[name], 7, bad) is None
    [(number, why)] = bad
    assert number == 7 and why.startswith("line 7: unreadable (") and "\n" not in why


def test_deep_nesting_is_reported_not_raised() -> None:
    bad: list[tuple[int, str]] = []
    assert decode_line(b'{"kind": "warning", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 3, bad) is None
    assert bad == [(3, "line 3: unreadable (nested too deeply)")]


@pytest.mark.parametrize("recursion_limit", [1000, 20_000])
def test_nesting_past_1024_is_refused_whatever_the_recursion_limit(recursion_limit: int) -> None:
    """json's cut-off moves with sys.getrecursionlimit (hypothesis raises it while it runs, and CI once
    read such a line with json where a lone run refused it); the reader's answer must not move."""
    line = b'{"kind": "warning", "message": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    ok = b'{"kind": "warning", "message": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit)
    try:
        bad: list[tuple[int, str]] = []
        assert decode_line(line, 4, bad) is None and bad == [(4, "line 4: unreadable (nested too deeply)")]
        assert decode_line(ok, 5, bad) is not None and "unreadable" not in bad[-1][1]  # read, then repaired
    finally:
        sys.setrecursionlimit(before)


def test_duplicate_keys_keep_the_last_as_json_does() -> None:
    line = b'{"kind": "warning", "message": "first", "message": "\\u001b[2J last"}'
    assert loads(line) == json.loads(line) == {"kind": "warning", "message": "\x1b[2J last"}


def test_ints_within_64_bits_are_exact_and_beyond_them_a_number() -> None:
    """The one difference from json: beyond 64 bits orjson gives the nearest float, which json gives
    for the same number written with an exponent, so a reader meets no value it could not meet before."""
    for n in (2**63 - 1, -(2**63), 2**64 - 1):
        assert loads(f'{{"tokens_in": {n}}}'.encode()) == {"tokens_in": n}
    big = 123456789012345678901234567890
    decoded = loads(f'{{"kind": "lm_finished", "tokens_in": {big}}}'.encode())["tokens_in"]
    assert decoded == json.loads(f'{{"x": {float(big)!r}}}')["x"]
    bad: list[tuple[int, str]] = []
    assert decode_line(f'{{"kind": "lm_finished", "tokens_in": {big}}}', 2, bad) is not None and bad == []
