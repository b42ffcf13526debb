"""The decision path's shortcuts answer exactly what the long way answers.

- context patterns of the linear-time subset are matched with Python's `re`: same
  results as RE2 on tricky inputs (trailing newlines, non-ASCII digits and letters);
- the compiled context validator gives the messages of the plain per-request loop;
- the data API body is checked by hand when it has the usual shape, otherwise by the
  pydantic model: same facts, same errors;
- responses rendered by orjson are the bytes pydantic-core renders, and what orjson
  refuses falls back to it;
- request, decision and event ids come from a buffered CSPRNG: right format, never
  repeated, not shared with a forked child or another thread; decision and event ids
  start with the second they were made.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import pytest
import re2
from starlette.responses import JSONResponse as StarletteJSONResponse

from dsl import SCHEMA_TYPES, type_name
from dsl.runtime import compile_regex
from engine.context import ContextValidator, linear_subset_body, pattern_matcher
from engine.purpose import ContextField, conforms
from server.audit.publisher import new_event_id
from server.decisions.models import DataRequest, parse_data_request
from server.decisions.service import new_decision_id
from server.errors import ApiError
from server.ids import PerSecond, random_hex, random_urlsafe, time_ordered
from server.json_codec import dumps
from server.middleware import new_request_id
from server.parsing import parse_json
from server.responses import JSONResponse

TRICKY = [
    "", "A", "AB1234", "AB123456", "AB123456\n", "\nAB123456", "AB123456\r\n", "AB12 3456", "ab123456",
    "AB\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits: `\d` under Unicode rules, not under RE2 or re.ASCII
    "AB\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
    "\uff21\uff22123456", "\u00c9B123456", "AB12345\u00b2", "AB123456\x00", "AB123456\u200b", "\u0130B123456", "\u00df" * 8,
    "A" * 20, "A" * 21, "A" * 5, "0" * 1000, "GB12ABCD12345678901234", "GB12ABCD1234567890123",
    "$.abc", "$.", "a-b", "a/b", "x+y", "12-34", "12-", "-34", "a.b", "aXb", "a\nb",
]

SUBSET_PATTERNS = [
    "^[A-Z0-9]{6,20}$", "^\\d{3}$", "^\\d+$", "^[A-Z]{2}-\\d+$", "^GB[0-9]{2}[A-Z]{4}[0-9]{14}$",
    "^\\$\\.[a-z]*$", "^$", "^a?$", "^[a-z0-9_]+$", "^x\\+y$", "^[0-9]{2}-?[0-9]{2}$", "^a\\.b$", "^[\\d]{2,}$",
    "^[A-Za-z]{0,5}$", "^[/]+$",
]


def _re2_says(pattern: str, value: str) -> bool:
    return compile_regex(pattern).search(value) is not None


@pytest.mark.parametrize("pattern", SUBSET_PATTERNS)
def test_subset_patterns_match_as_re2_does(pattern: str) -> None:
    assert linear_subset_body(pattern) is not None
    matcher = pattern_matcher(pattern)
    assert matcher is not None
    for value in TRICKY:
        assert matcher(value) == _re2_says(pattern, value), (pattern, value)


def test_trailing_newline_and_foreign_digits_are_rejected_as_by_re2() -> None:
    matcher = pattern_matcher("^[A-Z0-9]{6,20}$")
    digits = pattern_matcher("^\\d+$")
    assert matcher is not None and digits is not None
    assert matcher("AB123456") and not matcher("AB123456\n")  # `$` is the end of text, not before a newline
    assert not digits("\u0661\u0662\u0663") and not digits("\uff11\uff12\uff13") and not digits("123\n") and digits("123")
    assert re.search("^\\d+$", "123\n") and re.search("^\\d+$", "\u0661\u0662\u0663")  # what plain `re` would have said


@pytest.mark.parametrize(
    "pattern",
    [
        "^[a-z]+[0-9]+$",  # two variable repetitions: left to RE2
        "^(a|b)$", "^a|b$", "a$", "^a", "^abc\\$", "^\\w+$", "^\\s+$", "^.+$", "^[^a]+$", "^a{,3}$", "^a+?$",
        "^a{2}{3}$", "^[a-]+$", "^[~~]$", "^(?i)a$", "^a*b*$", "^\\bA$", "^\\D$", "^\u00e9$",
    ],
)
def test_patterns_outside_the_subset_stay_with_re2(pattern: str) -> None:
    assert linear_subset_body(pattern) is None
    matcher = pattern_matcher(pattern)
    if matcher is None:  # RE2 rejects it: "schema pattern is invalid", as before
        with pytest.raises(re2.error):
            compile_regex(pattern)
        return
    for value in [*TRICKY, "ab12", "a", "b", "abc$", "aaabbb", "\u00e9", "\u00c9", "A", "\u00a0"]:
        assert matcher(value) == _re2_says(pattern, value), (pattern, value)


def test_invalid_patterns_are_reported_as_before() -> None:
    assert pattern_matcher("^[a-Z]$") is None
    assert pattern_matcher("^a{2000}$") is None  # RE2's repetition limit, which `re` lacks
    fields = (ContextField("id", SCHEMA_TYPES["string"], pattern="^[z-a]+$"),)
    assert ContextValidator(fields)({"id": "abc"}) == ["context.id: schema pattern is invalid"]


def _random_subset_pattern(rng: random.Random) -> str:
    atoms = ["a", "b", "0", "-", "\\d", "[ab]", "[a-c0-2]", "[\\d_]", "\\.", "[A-Z]"]
    parts = []
    variable_at = rng.randrange(-1, 4)
    for index in range(rng.randrange(0, 5)):
        atom = rng.choice(atoms)
        if index == variable_at:
            atom += rng.choice(["*", "+", "?", "{1,3}", "{2,}", "{0,2}"])
        elif rng.random() < 0.3:
            atom += f"{{{rng.randrange(0, 3)}}}"
        parts.append(atom)
    return "^" + "".join(parts) + "$"


def test_random_subset_patterns_agree_with_re2() -> None:
    rng = random.Random(4)
    alphabet = ["a", "b", "c", "0", "1", "5", "-", ".", "_", "A", "Z", "\n", "\u0663", "\u00e9", " "]
    for _ in range(300):
        pattern = _random_subset_pattern(rng)
        assert linear_subset_body(pattern) is not None, pattern
        matcher = pattern_matcher(pattern)
        assert matcher is not None
        for _ in range(40):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
            assert matcher(value) == _re2_says(pattern, value), (pattern, value)


# -- the compiled context validator --------------------------------------------------------


def _reference_validate_context(fields: tuple[ContextField, ...], context: object) -> list[str]:
    """The per-request loop `ContextValidator` replaced, kept verbatim as the oracle."""
    if context is None:
        context = {}
    if not isinstance(context, dict):
        return [f"context must be an object, got {type_name(context)}"]
    if not fields:
        return []
    problems: list[str] = []
    known = {f.name: f for f in fields}
    for name in context:
        if name not in known:
            problems.append(f"context.{name}: unknown field (expected one of: {', '.join(sorted(known))})")
    for spec in fields:
        if spec.name not in context:
            if spec.required:
                problems.append(f"context.{spec.name}: required")
            continue
        value = context[spec.name]
        where = f"context.{spec.name}"
        if spec.type.known and not conforms(value, spec.type):
            problems.append(f"{where}: expected {spec.type}, got {type_name(value)}")
            continue
        if spec.integer and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            problems.append(f"{where}: expected an integer, got {value!r}")
            continue
        if spec.enum is not None and value not in spec.enum:
            problems.append(f"{where}: must be one of {list(spec.enum)}")
        if isinstance(value, str):
            if spec.max_length is not None and len(value) > spec.max_length:
                problems.append(f"{where}: longer than {spec.max_length} characters")
            elif spec.pattern is not None:  # noqa: SIM102 (verbatim)
                if compile_regex(spec.pattern).search(value) is None:
                    problems.append(f"{where}: does not match {spec.pattern}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.minimum is not None and value < spec.minimum:
                problems.append(f"{where}: must be >= {spec.minimum:g}")
            if spec.maximum is not None and value > spec.maximum:
                problems.append(f"{where}: must be <= {spec.maximum:g}")
    return problems


def _schema() -> tuple[ContextField, ...]:
    t = SCHEMA_TYPES
    return (
        ContextField("national_id", t["string"], required=True, pattern="^[A-Z0-9]{6,20}$"),
        ContextField("code", t["string"], pattern="^[a-z]+[0-9]+$", max_length=8),  # outside the subset: RE2
        ContextField("count", t["integer"], integer=True, minimum=1, maximum=10),
        ContextField("ratio", t["number"], minimum=0.5),
        ContextField("tier", t["string"], enum=("gold", "silver")),
        ContextField("flag", t["boolean"]),
        ContextField("tags", t["list"]),
        ContextField("anything", t["any"], pattern="^\\d{2}$"),
    )


CONTEXTS: list[object] = [
    None, {}, [], "x", 3, {"national_id": "AB123456"}, {"national_id": "AB123456\n"}, {"national_id": "ab"},
    {"national_id": 12345678}, {"national_id": "AB\u0661\u0662\u0663\u0664\u0665\u0666"},
    {"national_id": "AB123456", "code": "abc123"}, {"national_id": "AB123456", "code": "abc123456"},
    {"national_id": "AB123456", "code": "123abc"}, {"national_id": "AB123456", "count": 2.0},
    {"national_id": "AB123456", "count": 1.5}, {"national_id": "AB123456", "count": 0},
    {"national_id": "AB123456", "count": 11}, {"national_id": "AB123456", "count": True},
    {"national_id": "AB123456", "ratio": 0.1}, {"national_id": "AB123456", "tier": "bronze"},
    {"national_id": "AB123456", "tier": "gold"}, {"national_id": "AB123456", "flag": 1},
    {"national_id": "AB123456", "tags": ["a"]}, {"national_id": "AB123456", "zz": 1, "aa": 2},
    {"x": None}, {"national_id": "AB123456", "anything": "12"}, {"national_id": "AB123456", "anything": "12\n"},
    {"national_id": "AB123456", "anything": 12},
]


def test_compiled_validator_gives_the_reference_messages() -> None:
    fields = _schema()
    validate = ContextValidator(fields)
    for context in CONTEXTS:
        assert validate(context) == _reference_validate_context(fields, context), context
    assert ContextValidator(())({"anything": 1}) == []
    assert ContextValidator(())([1]) == ["context must be an object, got list"]


# -- the data API body ---------------------------------------------------------------------


BODIES = [
    b'{"input": {"a": 1, "context": {"national_id": "AB123456"}}}', b'{"input": {}}', b' {"input": {"b": [1, 2]}} ',
    b'{"input": {"n": 123456789012345678901234567890, "f": 1.5e3, "z": -0.0, "s": "\\u00e9"}}',
    b'{"input":{"a":1},"input":{"b":2}}', b'{"input": {"a": NaN}}', b'{"input": {"a": {"b": [Infinity]}}}',
    b'{"input": {"a": 1e999}}', b'{"input": {"a": "1e999"}}', b'{"input": [1]}', b'{"input": null}', b'{"input": 1}',
    b'{}', b'[]', b'"x"', b'null', b'{"input": {}, "extra": 1}', b'{"extra": 1}', b'{"input": {"a": 1}',
    b'{"input": {"a": "\\ud800"}}', b'{"input": {"a": "\xff"}}', b'{"input": {"a": 1}} x', b"{'input': {}}",
    b'{"input": {"a": 1,}}', b'{"Input": {}}',
    # what orjson reads differently from pydantic-core, or refuses where it does not
    b'{"input": {"n": 9223372036854775807, "m": -9223372036854775809, "u": 18446744073709551616}}',
    b'{"input": {"f": 0.1234567890123456789, "g": 1e308, "h": 1.7976931348623159e308, "i": -1e-999}}',
    b'{"input": {"a": 1E+400}}', b'{"input": {"a": -1e400}}', b'{"input": {"a": "\\u0001", "b": "\\u0000"}}',
    b'{"input": {"a": "\x01"}}', b'\xef\xbb\xbf{"input": {}}', b'{"input": {"a": "\\udc00\\ud800"}}',
    b'{"input": {"a": [1234567890, 1234567890, 123456789012345678], "b": -123456789012345678}}',
    b'{"input": {"d": ' + b"[" * 100 + b"]" * 100 + b'}}',
    b'{"input": {"d": ' + b"[" * 300 + b"]" * 300 + b'}}',
    b'{"input": {"d": ' + b"[" * 1100 + b"]" * 1100 + b'}}',
    b'{"input": {"d": ' + b'{"a": ' * 150 + b"1" + b"}" * 150 + b'}}',
]


def _outcome(parse: Any, body: bytes) -> object:
    try:
        return ("ok", repr(parse(body)))
    except ApiError as err:
        return ("error", err.status_code, err.error, err.description)


@pytest.mark.parametrize("body", BODIES)
def test_data_request_shortcut_agrees_with_the_model(body: bytes) -> None:
    assert _outcome(parse_data_request, body) == _outcome(lambda b: parse_json(b, DataRequest).input, body)


# -- identifiers ---------------------------------------------------------------------------


def test_ids_keep_their_formats_and_never_repeat() -> None:
    request_ids = {new_request_id() for _ in range(5000)}  # several refills of each pool
    decision_ids = [new_decision_id() for _ in range(5000)]
    event_ids = [new_event_id() for _ in range(5000)]
    assert len(request_ids) == 5000 and len(set(decision_ids)) == 5000 and len(set(event_ids)) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in request_ids)
    assert all(re.fullmatch(r"dec_[0-9a-f]{8}[A-Za-z0-9_-]{22}", did) for did in decision_ids)
    assert all(re.fullmatch(r"evt_[0-9a-f]{32}", eid) for eid in event_ids)
    assert [len(random_urlsafe(n)) for n in (1, 2, 3, 16, 32)] == [2, 3, 4, 22, 43]  # as token_urlsafe
    assert len(random_hex(4096)) == 8192 and len(random_urlsafe(3072)) == 4096


def test_decision_and_event_ids_sort_by_the_second_they_were_made() -> None:
    before = int(time.time())
    decision_id, event_id = new_decision_id(), new_event_id()
    after = int(time.time())
    for made in (int(decision_id[4:12], 16), int(event_id[4:12], 16)):
        assert before <= made <= after
    assert format(before - 1, "08x") < time_ordered() <= format(after + 1, "08x")


def test_per_second_text_is_rendered_again_when_the_second_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    clock = [1000.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    text = PerSecond(lambda second: rendered.append(second) or f"s{second}")
    assert [text(), text()] == ["s1000", "s1000"] and rendered == [1000]
    clock[0] = 1000.9
    assert text() == "s1000" and rendered == [1000]
    clock[0] = 1001.0
    assert text() == "s1001" and rendered == [1000, 1001]


def test_text_pools_hand_out_every_character_once() -> None:
    """Consecutive ids are consecutive slices of one random text: nothing is reused,
    and a refill starts a fresh text (no id straddles two)."""
    drawn = "".join(random_hex(16) for _ in range(1000))
    assert len({drawn[i:i + 32] for i in range(0, len(drawn), 32)}) == 1000
    assert set(drawn) <= set("0123456789abcdef") and len(set(drawn)) == 16
    urlsafe = "".join(random_urlsafe(16) for _ in range(1000))
    assert set(urlsafe) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(set(urlsafe)) == 64  # all of base64url's alphabet shows up: the bits are random


def test_threads_draw_different_ids() -> None:
    drawn: list[list[str]] = [[], []]

    def draw(into: list[str]) -> None:
        for _ in range(1000):
            into.extend((random_hex(16), random_urlsafe(16)))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(drawn[0]) | set(drawn[1])) == 4000


def _child_draws(queue: Any) -> None:
    queue.put((random_hex(16), random_urlsafe(16)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    random_hex(16), random_urlsafe(16)  # the parent now holds pools it has barely used
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_draws, args=(queue,))
    child.start()
    from_child = queue.get(timeout=10)
    child.join(10)
    assert all(a != b for a, b in zip(from_child, (random_hex(16), random_urlsafe(16)), strict=True))


# -- responses ------------------------------------------------------------------------------

RESPONSE_CONTENTS: list[object] = [
    {"a": 1, "b": [1.5, None, True], "c": {"d": "é\u2028\x00\x1f\"\\"}}, [0.1, 1e16, 1e-7, -0.0, 5e-324],
    {"nan": float("nan"), "inf": float("inf")},  # null, as pydantic-core renders them
    {"when": datetime(2026, 11, 30, 7, 0, tzinfo=UTC)}, {"big": 2**70},
    {"id": uuid.UUID(int=7)}, {"set": frozenset({1})}, (1, "x"), {1: "non-str key"}, None,
]


@pytest.mark.parametrize("content", RESPONSE_CONTENTS)
def test_responses_render_the_bytes_pydantic_core_renders(content: object) -> None:
    """orjson where it renders the same bytes; what it refuses goes to pydantic-core."""
    assert dumps(content) == pydantic_core.to_json(content, inf_nan_mode="null", fallback=str)


def test_text_no_encoder_can_hold_is_escaped_rather_than_failing() -> None:
    assert dumps({"lone": "\ud800", "n": 1}) == b'{"lone":"\\ud800","n":1}'


@pytest.mark.parametrize("content", [{"a": [1, "é"]}, None, []])
def test_plain_json_responses_carry_starlettes_headers(content: object) -> None:
    ours, theirs = JSONResponse(content), StarletteJSONResponse(content)
    assert ours.raw_headers == theirs.raw_headers and ours.body == theirs.body
    assert JSONResponse(content, 201, headers={"X-A": "1"}).raw_headers == StarletteJSONResponse(
        content, 201, headers={"X-A": "1"}).raw_headers
