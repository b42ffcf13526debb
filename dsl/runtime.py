"""Run-time support for compiled expressions: `UNDEFINED` and the helper functions.

Generated code calls only what `namespace()` returns; nothing else is reachable from it
(no builtins). The semantics, shared by every helper:

- a missing path is `UNDEFINED`; any comparison or predicate with an undefined operand
  is false, any value function, arithmetic or list literal with one is undefined;
- values of different types are never equal (`1 == "1"` and `true == 1` are false),
  integers and decimals compare as numbers;
- a type mismatch (`"a" > 5`) is false / undefined, and is reported to the recorder
  so explanations can show it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Protocol

import re2

Clock = Callable[[], datetime]


class _Undefined:
    """The value of a path that does not exist. Falsy, equal only to itself."""

    __slots__ = ()
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()

_NUMBERS = (int, float)
#: What a path into a root that is not a map reads from: nothing (never written to).
_EMPTY: dict[str, object] = {}


class Recorder(Protocol):
    """Receives what an explaining evaluation observes."""

    def note(self, message: str) -> None: ...

    def read(self, path: str, value: object) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def type_name(value: object) -> str:
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def same(a: object, b: object) -> bool:
    """Strict equality: same type (numbers as one type), recursively for lists and maps."""
    ta, tb = a.__class__, b.__class__
    if ta is tb:
        if ta is list:
            pairs = zip(a, b, strict=False)  # type: ignore[call-overload]
            return len(a) == len(b) and all(same(x, y) for x, y in pairs)  # type: ignore[arg-type]
        if ta is dict:
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
        return a == b
    return ta in _NUMBERS and tb in _NUMBERS and a == b


def to_datetime(value: object) -> datetime | None:
    """An ISO-8601 date/datetime string or a Unix timestamp in seconds, as aware UTC."""
    if value.__class__ in _NUMBERS:
        try:  # also rejects NaN, infinities and ints too large for a float
            return datetime.fromtimestamp(value, UTC)  # type: ignore[arg-type]
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and 0 < len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Any:
    """RE2 guarantees matching in time linear in the input: no catastrophic backtracking."""
    options = re2.Options()
    options.max_mem = 8 << 20
    options.log_errors = False
    return re2.compile(pattern, options)


def regex_error(err: Exception) -> str:
    """RE2 reports errors as bytes; make them readable."""
    message = err.args[0] if err.args else str(err)
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def namespace(clock: Clock = utc_now, recorder: Recorder | None = None) -> dict[str, Any]:
    """The helpers generated code may call, bound to a clock and an optional recorder."""
    U = UNDEFINED

    if recorder is None:

        def note(message: str) -> None:
            return None

        def read(path: str, value: object) -> object:
            return value

    else:
        note = recorder.note

        def read(path: str, value: object) -> object:
            recorder.read(path, value)
            return value

    def mismatch(op: str, a: object, b: object = U) -> None:
        if b is U:
            note(f"type mismatch: {op} on {type_name(a)}")
        else:
            note(f"type mismatch: {type_name(a)} {op} {type_name(b)}")

    def key(obj: object, k: object) -> object:
        cls = obj.__class__
        if cls is dict:
            if k.__class__ is str:
                return obj.get(k, U)  # type: ignore[attr-defined]
            if k is not U:
                mismatch("[]", obj, k)
            return U
        if cls is list:
            if k.__class__ is int:
                return obj[k] if 0 <= k < len(obj) else U  # type: ignore[index,operator,arg-type]
            if k is not U:
                mismatch("[]", obj, k)
            return U
        if obj is not U and k is not U:
            mismatch("[]", obj, k)
        return U

    def eq(a: object, b: object) -> bool:
        return a is not U and b is not U and same(a, b)

    def ne(a: object, b: object) -> bool:
        return a is not U and b is not U and not same(a, b)

    def ordered(op: str, a: object, b: object) -> bool:
        if a is U or b is U:
            return False
        ta, tb = a.__class__, b.__class__
        if (ta in _NUMBERS and tb in _NUMBERS) or (ta is str and tb is str):
            return bool(_ORDER[op](a, b))
        mismatch(op, a, b)
        return False

    def lt(a: object, b: object) -> bool:
        return ordered("<", a, b)

    def le(a: object, b: object) -> bool:
        return ordered("<=", a, b)

    def gt(a: object, b: object) -> bool:
        return ordered(">", a, b)

    def ge(a: object, b: object) -> bool:
        return ordered(">=", a, b)

    def member(a: object, b: object) -> bool | None:
        """True/False for a well-typed membership test, None when it cannot be decided."""
        if a is U or b is U:
            return None
        cls = b.__class__
        if cls is list:
            return any(same(a, item) for item in b)  # type: ignore[attr-defined]
        if cls is str and a.__class__ is str:
            return a in b  # type: ignore[operator]
        if cls is dict and a.__class__ is str:
            return a in b  # type: ignore[operator]
        mismatch("in", a, b)
        return None

    def in_(a: object, b: object) -> bool:
        return member(a, b) is True

    def not_in(a: object, b: object) -> bool:
        return member(a, b) is False

    def make_list(*items: object) -> object:
        """A list literal; undefined if an item is, so undefined never hides inside a value."""
        return U if any(item is U for item in items) else list(items)

    def arith(op: str, a: object, b: object) -> object:
        if a is U or b is U:
            return U
        ta, tb = a.__class__, b.__class__
        if ta in _NUMBERS and tb in _NUMBERS:
            if op in "/%" and b == 0:
                note(f"division by zero in {op}")
                return U
            try:
                result = _ARITH[op](a, b)
            except OverflowError:  # a huge int meeting a float: `10**400 * 1.5`
                note(f"arithmetic overflow in {op}")
                return U
            if result.__class__ is float and not math.isfinite(result):
                note(f"arithmetic overflow in {op}")
                return U
            return result
        if op == "+" and ta is tb and ta in (str, list):
            if len(a) + len(b) > 1_000_000:  # type: ignore[arg-type]
                note("result too large")
                return U
            return a + b  # type: ignore[operator]
        mismatch(op, a, b)
        return U

    def add(a: object, b: object) -> object:
        return arith("+", a, b)

    def sub(a: object, b: object) -> object:
        return arith("-", a, b)

    def mul(a: object, b: object) -> object:
        if a.__class__ is int and b.__class__ is int and a.bit_length() + b.bit_length() > 4096:  # type: ignore[attr-defined]
            note("number too large")
            return U
        return arith("*", a, b)

    def div(a: object, b: object) -> object:
        return arith("/", a, b)

    def mod(a: object, b: object) -> object:
        return arith("%", a, b)

    def neg(a: object) -> object:
        if a.__class__ in _NUMBERS:
            return -a  # type: ignore[operator]
        if a is not U:
            mismatch("unary -", a)
        return U

    def fn_len(x: object) -> object:
        if x.__class__ in (str, list, dict):
            return len(x)  # type: ignore[arg-type]
        if x is not U:
            mismatch("len()", x)
        return U

    def fn_lower(x: object) -> object:
        if x.__class__ is str:
            return x.lower()  # type: ignore[attr-defined]
        if x is not U:
            mismatch("lower()", x)
        return U

    def fn_upper(x: object) -> object:
        if x.__class__ is str:
            return x.upper()  # type: ignore[attr-defined]
        if x is not U:
            mismatch("upper()", x)
        return U

    def fn_startswith(s: object, prefix: object) -> bool:
        if s.__class__ is str and prefix.__class__ is str:
            return s.startswith(prefix)  # type: ignore[attr-defined]
        if s is not U and prefix is not U:
            mismatch("startswith()", s, prefix)
        return False

    def fn_endswith(s: object, suffix: object) -> bool:
        if s.__class__ is str and suffix.__class__ is str:
            return s.endswith(suffix)  # type: ignore[attr-defined]
        if s is not U and suffix is not U:
            mismatch("endswith()", s, suffix)
        return False

    def fn_contains(container: object, item: object) -> bool:
        return member(item, container) is True

    def fn_matches(s: object, pattern: object) -> bool:
        if s.__class__ is str and pattern.__class__ is str:
            try:
                regex = compile_regex(pattern)
            except re2.error as err:
                note(f"invalid regular expression: {regex_error(err)}")
                return False
            return regex.search(s) is not None
        if s is not U and pattern is not U:
            mismatch("matches()", s, pattern)
        return False

    def fn_now() -> float:
        return clock().timestamp()

    def fn_days_since(value: object) -> object:
        when = to_datetime(value)
        if when is None:
            if value is not U:
                note(f"days_since(): not a timestamp: {value!r:.60}")
            return U
        return (clock() - when).days

    def fn_years_since(value: object) -> object:
        when = to_datetime(value)
        if when is None:
            if value is not U:
                note(f"years_since(): not a date: {value!r:.60}")
            return U
        today: date = clock().date()
        born = when.date()
        years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        return years

    def quantify_any(items: object, body: Callable[[object], bool]) -> bool:
        if items.__class__ is list:
            return any(body(item) for item in items)  # type: ignore[attr-defined]
        if items is not U:
            mismatch("any()", items)
        return False

    def quantify_all(items: object, body: Callable[[object], bool]) -> bool:
        if items.__class__ is list:
            return all(body(item) for item in items)  # type: ignore[attr-defined]
        if items is not U:
            mismatch("all()", items)
        return False

    def is_string_list(value: object) -> bool:
        if value.__class__ is not list:
            return False
        for item in value:  # type: ignore[attr-defined]  # noqa: SIM110 (a loop: twice as fast as all())
            if item.__class__ is not str:
                return False
        return True

    return {
        "__builtins__": {},
        "_U": U,
        "_rd": read,
        "_mklist": make_list,
        "_key": key,
        "_eq": eq,
        "_ne": ne,
        "_lt": lt,
        "_le": le,
        "_gt": gt,
        "_ge": ge,
        "_in": in_,
        "_not_in": not_in,
        "_add": add,
        "_sub": sub,
        "_mul": mul,
        "_div": div,
        "_mod": mod,
        "_neg": neg,
        "_any": quantify_any,
        "_all": quantify_all,
        "_str_list": is_string_list,
        "_fn_len": fn_len,
        "_fn_lower": fn_lower,
        "_fn_upper": fn_upper,
        "_fn_startswith": fn_startswith,
        "_fn_endswith": fn_endswith,
        "_fn_contains": fn_contains,
        "_fn_matches": fn_matches,
        "_fn_now": fn_now,
        "_fn_days_since": fn_days_since,
        "_fn_years_since": fn_years_since,
        "_NUM": _NUMBERS,
        "_bool": bool,
        "_str": str,
        "_int": int,
        "_float": float,
        "_list": list,
        "_dict": dict,
        "_len": len,
        "_LSD": (list, str, dict),
        "_EMPTY": _EMPTY,
    }


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
}

__all__ = [
    "UNDEFINED", "Clock", "Recorder", "compile_regex", "namespace", "regex_error", "same", "type_name", "utc_now",
]
