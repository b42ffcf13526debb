"""The server's one JSON codec: every JSON text the server writes or reads goes through
here (responses, log lines, audit lines, the writer process's pipes, the registry cache
in Redis, what the audit chain and JWK thumbprints hash), so the choice of parser and encoder, and the
edge cases below, are made once. Request bodies are parsed by pydantic models
(server.parsing), except the data API's, which `read_plain_object` reads first.

Writing (`dumps`): compact, UTF-8, and it never fails.

    plain data (dict with str keys, list, str, int, float, bool, None)   orjson
    anything orjson refuses (a datetime, a dataclass, an integer over    pydantic-core, which
    64 bits, a non-string key, a subclass)                                writes those bytes too
    text UTF-8 cannot hold (a lone surrogate)                            ASCII escapes (json)

orjson is the cheapest of the three and writes, for plain data, exactly the bytes
pydantic-core writes; NaN and Infinity become `null` in both; an object neither knows is
written as `fallback(object)`.

Reading (`loads`): pydantic-core's parser, which reads what `json.loads` reads (big
integers exactly, the last of duplicate keys, NaN and Infinity), and `json.loads` for the
one thing it refuses: an escaped lone surrogate.

Request bodies must not name a key twice in one object: parsers disagree on which one
counts (first, last, error), so two readers of one body could act on different values.
`refuse_duplicate_keys` raises `DuplicateKey` for such a body, by a count when it can
(every key is followed by one colon, so a text with no more colons than its parsed
objects have keys names none twice) and by a parse that keeps every pair when the text
has colons in its strings too.

NaN, Infinity and numbers too large for a float (1e999) parse into floats no JSON can
carry back: `non_finite_path` finds them in what a request body parsed into.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson
import pydantic_core

#: What orjson would write differently from pydantic-core, it refuses, leaving it to it.
_PLAIN_DATA_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
#: json.dumps(..., separators=(",", ":"), ensure_ascii=False), built once.
_UNESCAPED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

#: What a body must contain to hold a non-finite number once parsed (a cheap pre-check).
_MAYBE_NON_FINITE = re.compile(rb"NaN|Infinity|[eE]\+?[0-9]{3}|[0-9]{300}")

#: Bodies `read_plain_object` leaves to pydantic-core: a run of 19 digits may be an
#: integer beyond 64 bits (orjson reads it as a float, pydantic-core as an exact int),
#: and 128 brackets may nest deeper than pydantic-core parses (orjson accepts 1,024).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_MAX_BRACKETS = 128
_DIGITS_AND_BRACKETS = b"0123456789[{"

Fallback = Callable[[Any], Any]


class DuplicateKey(ValueError):
    """An object of a JSON text names `key` more than once."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"duplicate key {key!r}")


def dumps(value: Any, fallback: Fallback = str) -> bytes:
    """`value` as compact UTF-8 JSON (see the module docstring); never raises."""
    try:
        return orjson.dumps(value, option=_PLAIN_DATA_ONLY)
    except TypeError:
        pass
    try:
        return pydantic_core.to_json(value, inf_nan_mode="null", fallback=fallback)
    except ValueError:  # text UTF-8 cannot hold (a lone surrogate)
        return dumps_ascii(value, fallback)


def dumps_ascii(value: Any, fallback: Fallback = str) -> bytes:
    """`value` as compact JSON in ASCII, anything else escaped (`json.dumps`'s
    `ensure_ascii`): for text that must stay readable whatever it holds."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=fallback).encode("ascii")


def loads(data: bytes | str) -> Any:
    """The value of the JSON text `data`; `ValueError` when it is not JSON."""
    try:
        return pydantic_core.from_json(data)
    except ValueError:  # e.g. an escaped lone surrogate, which only json.loads accepts
        return json.loads(data.decode("utf-8", "replace") if isinstance(data, bytes) else data)


def read_plain_object(body: bytes) -> Any:
    """`body` read by orjson, when orjson reads it as pydantic-core would (which it does
    for the usual request body: a check of the bytes tells), else None; None also for a
    body orjson refuses (malformed, NaN, Infinity, a number that overflows a double).
    The caller leaves a None to its pydantic model, which says what is wrong."""
    if len(body) - len(body.translate(None, _DIGITS_AND_BRACKETS)) >= 19 and (
        body.count(b"{") + body.count(b"[") >= _MAX_BRACKETS or _LONG_NUMBER.search(body) is not None
    ):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def refuse_duplicate_keys(body: bytes, parsed: Any = None) -> None:
    """Raise `DuplicateKey` when an object of the JSON text `body` names a key twice.

    `parsed` is what `read_plain_object(body)` read (duplicates collapse in it); without
    it the body is read here. A body that is not JSON passes: the caller's parser
    refuses it and says where.
    """
    if parsed is None:
        parsed = read_plain_object(body)  # None (no keys) when it is left to pydantic-core
    if body.count(b":") == _key_count(parsed):
        return
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except DuplicateKey:
        raise
    except (ValueError, RecursionError):
        return


def _key_count(value: Any) -> int:
    """How many keys the objects in `value` hold, nested ones included (what
    `read_plain_object` returns nests less than 128 deep)."""
    count = 0
    if value.__class__ is dict:
        count = len(value)
        for item in value.values():
            if item.__class__ is dict or item.__class__ is list:
                count += _key_count(item)
    elif value.__class__ is list:
        for item in value:
            if item.__class__ is dict or item.__class__ is list:
                count += _key_count(item)
    return count


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    unique = dict(pairs)
    if len(unique) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return unique


def hash_input(value: Any) -> bytes:
    """The bytes of `value` a hash is taken of (the audit chain's events, a JWK
    thumbprint): what `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`
    writes, in UTF-8 with lone surrogates kept as they are (`surrogatepass`). Stored
    hashes depend on these exact bytes; orjson writes them for any text but a lone
    surrogate."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _UNESCAPED.encode(value).encode("utf-8", "surrogatepass")


def non_finite_path(body: bytes, parsed: object) -> tuple[int | str, ...] | None:
    """The path in `parsed` (what `body` parsed into) of its first NaN or infinite
    number, or None when it holds none (which the bytes of `body` usually tell)."""
    if _MAYBE_NON_FINITE.search(body) is None:
        return None
    return _non_finite(parsed, ())


def _non_finite(value: object, path: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    # depth is bounded by the parser's own nesting limit
    if value.__class__ is float:
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_finite(item, (*path, index))
            if found is not None:
                return found
    return None


__all__ = [
    "DuplicateKey",
    "dumps",
    "dumps_ascii",
    "hash_input",
    "loads",
    "non_finite_path",
    "read_plain_object",
    "refuse_duplicate_keys",
]
