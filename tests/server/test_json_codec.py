"""server.json_codec, the one JSON codec: what it writes and reads where the encoders and
parsers it chooses between differ; what it writes for responses is the bytes
pydantic-core writes."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import pytest

from server.auth.keys import jwk_thumbprint
from server.json_codec import (
    DuplicateKey,
    dumps,
    dumps_ascii,
    hash_input,
    loads,
    non_finite_path,
    read_plain_object,
    refuse_duplicate_keys,
)
from server.logging import configure_logging

TEXTS: list[Any] = [
    {"a": [1, 2.5, None, True], "é": "\u2028\x00\"\\"}, [2**70, -(2**64)], "\ud800", ["\udc00\ud800", {"k": "\ud83d"}],
    {"nested": {"deep": [[[]]]}}, 0.1, 1e16, -0.0,
]


@pytest.mark.parametrize("value", TEXTS)
def test_what_it_writes_reads_back(value: Any) -> None:
    assert loads(dumps(value)) == value
    assert loads(dumps(value).decode("utf-8")) == value
    assert loads(dumps_ascii(value)) == value and dumps_ascii(value).isascii()


def test_it_reads_what_json_loads_reads() -> None:
    for text in ['{"a": 1, "a": 2}', "[123456789012345678901234567890]", '"\\ud800"', '["\\udc00\\ud800"]',
                 '{"x": [1.5, -0, 1e400]}']:
        assert repr(loads(text)) == repr(json.loads(text)), text
        assert repr(loads(text.encode())) == repr(json.loads(text)), text


def test_it_refuses_what_is_not_json() -> None:
    for text in [b"", b"{", b'{"a": 1,}', b"{'a': 1}", b'{"a": 1} x']:
        with pytest.raises(ValueError):
            loads(text)


def test_non_finite_numbers_are_null_when_written_and_found_when_read() -> None:
    assert dumps({"nan": float("nan"), "inf": float("-inf")}) == b'{"nan":null,"inf":null}'
    body = b'{"a": [1, {"b": NaN}], "c": 1e999}'
    assert non_finite_path(body, loads(body)) == ("a", 1, "b")
    assert non_finite_path(b'{"c": 1e999}', loads(b'{"c": 1e999}')) == ("c",)
    assert non_finite_path(b'{"c": "NaN"}', {"c": "NaN"}) is None


def test_the_shortcut_leaves_what_it_might_read_differently() -> None:
    assert read_plain_object(b'{"input": {"a": 1}}') == {"input": {"a": 1}}
    for body in [b'{"n": 12345678901234567890}', b"[" * 130 + b"]" * 130, b'{"a": NaN}', b"{", b'{"a": 1e999}']:
        assert read_plain_object(body) is None, body


def test_hash_input_is_what_json_dumps_writes() -> None:
    for value in [["a", None, "é", "\u2028"], ["\ud800", "x"], [{"b": 1, "a": [2]}]]:
        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        assert hash_input(value) == expected


def test_jwk_thumbprint_is_rfc_7638s() -> None:
    """The example of RFC 7638, section 3.1."""
    members = {
        "kty": "RSA", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(members) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_a_log_line_holding_text_utf8_cannot_hold_is_still_written() -> None:
    import structlog

    stream = io.StringIO()
    configure_logging("INFO", as_json=True, stream=stream)
    structlog.get_logger("idgw.test").info("odd", value="\ud800", big=2**70, obj=object)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["event"], line["value"], line["big"], line["obj"]) == ("odd", "\ud800", 2**70, repr(object))


DUPLICATES = [
    ('{"a": 1, "a": 2}', "a"),
    ('{"a": 1, "b": {"c": 1, "c": 1}}', "c"),
    ('[{"x": 1}, {"y": [{"z": 0, "z": 0}]}]', "z"),
    ('{"purpose": "x", "purp\\u006fse": "y"}', "purpose"),  # the same key, escaped
    ('{"at": "10:00:00", "k": 1, "k": 2}', "k"),  # colons in strings: the count cannot tell
    ('{"a:": 1, "a:": 2}', "a:"),
    ('{"": 1, "": 2}', ""),
    ('{"deep": ' + "[" * 150 + '{"d": 1, "d": 2}' + "]" * 150 + "}", "d"),  # left to pydantic-core
    ('{"n": 12345678901234567890123, "n": 1}', "n"),
]

UNIQUE = [
    "{}", "[]", "null", '"a:b"', '{"a": {"a": {"a": 1}}}', '[{"k": 1}, {"k": 2}]',
    '{"at": "2026-01-01T10:00:00Z", "url": "http://x:1/", "k": "a\\":"}', '{"a": 1, "A": 2, "\\u00e9": 3, "\u00e9\u0301": 4}',
]


@pytest.mark.parametrize(("text", "key"), DUPLICATES)
def test_a_key_named_twice_is_refused(text: str, key: str) -> None:
    body = text.encode()
    with pytest.raises(DuplicateKey) as raised:
        refuse_duplicate_keys(body)
    assert raised.value.key == key
    with pytest.raises(DuplicateKey):
        refuse_duplicate_keys(body, read_plain_object(body))


@pytest.mark.parametrize("text", UNIQUE)
def test_keys_named_once_pass(text: str) -> None:
    body = text.encode()
    refuse_duplicate_keys(body)
    refuse_duplicate_keys(body, read_plain_object(body))


@pytest.mark.parametrize("text", ["{", '{"a": 1, "a": ', "\xff", ""])
def test_what_is_not_json_is_left_to_the_parser(text: str) -> None:
    refuse_duplicate_keys(text.encode("latin-1"))


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
