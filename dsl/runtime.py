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
_U = UNDEFINED

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
            return datetime.fromtimestamp(value, UTC)
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


class _Helpers:
    """The helpers of generated code, bound to a clock and an optional recorder.

    Without a recorder, notes and reads go nowhere (the fast path); with one, every path
    read and every type mismatch met is reported to it (an explanation).
    """

    def __init__(self, clock: Clock, recorder: Recorder | None) -> None:
        self.clock = clock
        self.recorder = recorder

    def note(self, message: str) -> None:
        if self.recorder is not None:
            self.recorder.note(message)

    def read(self, path: str, value: object) -> object:
        if self.recorder is not None:
            self.recorder.read(path, value)
        return value

    def mismatch(self, op: str, a: object, b: object = _U) -> None:
        if b is _U:
            self.note(f"type mismatch: {op} on {type_name(a)}")
        else:
            self.note(f"type mismatch: {type_name(a)} {op} {type_name(b)}")

    def key(self, obj: object, k: object) -> object:
        cls = obj.__class__
        if cls is dict:
            if k.__class__ is str:
                return obj.get(k, _U)  # type: ignore[attr-defined]
            if k is not _U:
                self.mismatch("[]", obj, k)
            return _U
        if cls is list:
            if k.__class__ is int:
                return obj[k] if 0 <= k < len(obj) else _U  # type: ignore[index,arg-type]
            if k is not _U:
                self.mismatch("[]", obj, k)
            return _U
        if obj is not _U and k is not _U:
            self.mismatch("[]", obj, k)
        return _U

    def eq(self, a: object, b: object) -> bool:
        return a is not _U and b is not _U and same(a, b)

    def ne(self, a: object, b: object) -> bool:
        return a is not _U and b is not _U and not same(a, b)

    def ordered(self, op: str, a: object, b: object) -> bool:
        if a is _U or b is _U:
            return False
        ta, tb = a.__class__, b.__class__
        if (ta in _NUMBERS and tb in _NUMBERS) or (ta is str and tb is str):
            return bool(_ORDER[op](a, b))
        self.mismatch(op, a, b)
        return False

    def lt(self, a: object, b: object) -> bool:
        return self.ordered("<", a, b)

    def le(self, a: object, b: object) -> bool:
        return self.ordered("<=", a, b)

    def gt(self, a: object, b: object) -> bool:
        return self.ordered(">", a, b)

    def ge(self, a: object, b: object) -> bool:
        return self.ordered(">=", a, b)

    def member(self, a: object, b: object) -> bool | None:
        """True/False for a well-typed membership test, None when it cannot be decided."""
        if a is _U or b is _U:
            return None
        cls = b.__class__
        if cls is list:
            return any(same(a, item) for item in b)  # type: ignore[attr-defined]
        if cls is str and a.__class__ is str:
            return a in b  # type: ignore[operator]
        if cls is dict and a.__class__ is str:
            return a in b  # type: ignore[operator]
        self.mismatch("in", a, b)
        return None

    def in_(self, a: object, b: object) -> bool:
        return self.member(a, b) is True

    def not_in(self, a: object, b: object) -> bool:
        return self.member(a, b) is False

    def make_list(self, *items: object) -> object:
        """A list literal; undefined if an item is, so undefined never hides inside a value."""
        return _U if any(item is _U for item in items) else list(items)

    def arith(self, op: str, a: object, b: object) -> object:
        if a is _U or b is _U:
            return _U
        ta, tb = a.__class__, b.__class__
        if ta in _NUMBERS and tb in _NUMBERS:
            if op in "/%" and b == 0:
                self.note(f"division by zero in {op}")
                return _U
            try:
                result = _ARITH[op](a, b)
            except OverflowError:  # a huge int meeting a float: `10**400 * 1.5`
                self.note(f"arithmetic overflow in {op}")
                return _U
            if result.__class__ is float and not math.isfinite(result):
                self.note(f"arithmetic overflow in {op}")
                return _U
            return result
        if op == "+" and ta is tb and ta in (str, list):
            if len(a) + len(b) > 1_000_000:  # type: ignore[arg-type]
                self.note("result too large")
                return _U
            return a + b  # type: ignore[operator]
        self.mismatch(op, a, b)
        return _U

    def add(self, a: object, b: object) -> object:
        return self.arith("+", a, b)

    def sub(self, a: object, b: object) -> object:
        return self.arith("-", a, b)

    def mul(self, a: object, b: object) -> object:
        if a.__class__ is int and b.__class__ is int and a.bit_length() + b.bit_length() > 4096:
            self.note("number too large")
            return _U
        return self.arith("*", a, b)

    def div(self, a: object, b: object) -> object:
        return self.arith("/", a, b)

    def mod(self, a: object, b: object) -> object:
        return self.arith("%", a, b)

    def neg(self, a: object) -> object:
        if a.__class__ in _NUMBERS:
            return -a
        if a is not _U:
            self.mismatch("unary -", a)
        return _U

    def fn_len(self, x: object) -> object:
        if x.__class__ in (str, list, dict):
            return len(x)
        if x is not _U:
            self.mismatch("len()", x)
        return _U

    def fn_lower(self, x: object) -> object:
        if x.__class__ is str:
            return x.lower()
        if x is not _U:
            self.mismatch("lower()", x)
        return _U

    def fn_upper(self, x: object) -> object:
        if x.__class__ is str:
            return x.upper()
        if x is not _U:
            self.mismatch("upper()", x)
        return _U

    def fn_startswith(self, s: object, prefix: object) -> bool:
        if s.__class__ is str and prefix.__class__ is str:
            return s.startswith(prefix)
        if s is not _U and prefix is not _U:
            self.mismatch("startswith()", s, prefix)
        return False

    def fn_endswith(self, s: object, suffix: object) -> bool:
        if s.__class__ is str and suffix.__class__ is str:
            return s.endswith(suffix)
        if s is not _U and suffix is not _U:
            self.mismatch("endswith()", s, suffix)
        return False

    def fn_contains(self, container: object, item: object) -> bool:
        return self.member(item, container) is True

    def fn_matches(self, s: object, pattern: object) -> bool:
        if s.__class__ is str and pattern.__class__ is str:
            try:
                regex = compile_regex(pattern)
            except re2.error as err:
                self.note(f"invalid regular expression: {regex_error(err)}")
                return False
            return regex.search(s) is not None
        if s is not _U and pattern is not _U:
            self.mismatch("matches()", s, pattern)
        return False

    def fn_now(self) -> float:
        return self.clock().timestamp()

    def fn_days_since(self, value: object) -> object:
        when = to_datetime(value)
        if when is None:
            if value is not _U:
                self.note(f"days_since(): not a timestamp: {value!r:.60}")
            return _U
        return (self.clock() - when).days

    def fn_years_since(self, value: object) -> object:
        when = to_datetime(value)
        if when is None:
            if value is not _U:
                self.note(f"years_since(): not a date: {value!r:.60}")
            return _U
        today: date = self.clock().date()
        born = when.date()
        years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        return years

    def quantify_any(self, items: object, body: Callable[[object], bool]) -> bool:
        if items.__class__ is list:
            return any(body(item) for item in items)
        if items is not _U:
            self.mismatch("any()", items)
        return False

    def quantify_all(self, items: object, body: Callable[[object], bool]) -> bool:
        if items.__class__ is list:
            return all(body(item) for item in items)
        if items is not _U:
            self.mismatch("all()", items)
        return False

    def is_string_list(self, value: object) -> bool:
        if value.__class__ is not list:
            return False
        for item in value:  # noqa: SIM110 (a loop: all() would add a generator frame per item)
            if item.__class__ is not str:
                return False
        return True



def namespace(clock: Clock = utc_now, recorder: Recorder | None = None) -> dict[str, Any]:
    """The names generated code may call (and nothing else: no builtins), bound to a clock
    and an optional recorder."""
    h = _Helpers(clock, recorder)
    return {
        "__builtins__": {},
        "_U": _U,
        "_rd": h.read,
        "_mklist": h.make_list,
        "_key": h.key,
        "_eq": h.eq,
        "_ne": h.ne,
        "_lt": h.lt,
        "_le": h.le,
        "_gt": h.gt,
        "_ge": h.ge,
        "_in": h.in_,
        "_not_in": h.not_in,
        "_add": h.add,
        "_sub": h.sub,
        "_mul": h.mul,
        "_div": h.div,
        "_mod": h.mod,
        "_neg": h.neg,
        "_any": h.quantify_any,
        "_all": h.quantify_all,
        "_str_list": h.is_string_list,
        "_fn_len": h.fn_len,
        "_fn_lower": h.fn_lower,
        "_fn_upper": h.fn_upper,
        "_fn_startswith": h.fn_startswith,
        "_fn_endswith": h.fn_endswith,
        "_fn_contains": h.fn_contains,
        "_fn_matches": h.fn_matches,
        "_fn_now": h.fn_now,
        "_fn_days_since": h.fn_days_since,
        "_fn_years_since": h.fn_years_since,
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
