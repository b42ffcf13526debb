"""The one encoder: an emitted event's line decodes to the event the inline publisher
stores, whatever its text; rejected events and unreadable lines keep what the dead
letter needs; a rejected line in a spill file is dead-lettered under its own id."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from server.audit import AuditPublisher, SubjectRefs, to_audit_event
from server.audit.encoding import (
    BrokenLine,
    Rejected,
    decode_line,
    decode_raw,
    encode_event,
    event_line,
    is_raw,
    raw_line,
    rejected_line,
    rejection,
)
from server.events import AuditedEvent, DecisionInput, DecisionMade, SensitiveOperation
from stores import AuditEvent, Stores
from tests.audit.conftest import decision
from tests.server.conftest import SHIPPED_POLICIES

REFS = SubjectRefs(b"k" * 32)
# st.text leaves lone surrogates out, even from its alphabet; only a high one here: a
# high surrogate then a low one is read back from JSON as the one character they encode
TEXT = st.lists(
    st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(["\ud800", "\x00", "\u2028", '"', "\\"])), max_size=10,
).map("".join)
MOMENT = st.datetimes(min_value=datetime(2000, 1, 1),
                      timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))]))


@st.composite
def emitted(draw: st.DrawFn) -> AuditedEvent:
    subject = draw(st.one_of(st.none(), TEXT))
    timestamp = draw(MOMENT).isoformat()
    if draw(st.booleans()):
        return DecisionMade(draw(TEXT), draw(TEXT), draw(TEXT), draw(TEXT), draw(TEXT), timestamp,
                            draw(st.one_of(st.none(), TEXT)), subject)
    return SensitiveOperation(draw(TEXT), timestamp, subject, draw(st.one_of(st.none(), TEXT)),
                              draw(st.one_of(st.none(), TEXT)), draw(TEXT), None)


@settings(max_examples=300, deadline=None)
@given(event=emitted())
def test_an_emitted_events_line_decodes_to_its_stored_form(event: AuditedEvent) -> None:
    stored = to_audit_event(event, REFS, "evt_1")
    assert decode_line(event_line(event, REFS, "evt_1")) == stored
    assert decode_line(encode_event(stored)) == stored


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
AGE = engine.load(SHIPPED_POLICIES).purpose("age_verification")  # national_id is sensitive


@settings(max_examples=200, deadline=None)
@given(subject=st.one_of(st.none(), TEXT), facts=st.dictionaries(TEXT, JSON, max_size=4),
       context=st.dictionaries(st.sampled_from(["national_id", "channel"]) | TEXT, JSON, max_size=3),
       sub=st.one_of(st.none(), JSON), moment=MOMENT, refused=st.booleans())
def test_a_decisions_raw_line_decodes_to_what_the_worker_would_have_pseudonymised(
    subject: str | None, facts: dict[str, Any], context: dict[str, Any], sub: Any, moment: datetime, refused: bool
) -> None:
    """The process backend's pipe carries decisions raw; the writer process's event and
    record of one are exactly those `to_audit_event` makes of it in the worker, whatever
    the facts, the context (the sensitive national_id among them) and the subject hold."""
    facts = {**facts, "context": context}
    if sub is not None:
        facts["subject"] = {"sub": sub}
    event = DecisionMade("dec_1", "age_verification", "pass", "ok", "sha256:abc", moment.isoformat(), None, subject,
                         record=DecisionInput(AGE, facts, ("a",), refused=refused, shadow=None))
    line = raw_line(event)
    assert is_raw(line) and line.endswith(b"\n") and line.count(b"\n") == 1
    stored, expected = to_audit_event(decode_raw(line), REFS, "evt_1"), to_audit_event(event, REFS, "evt_1")
    assert stored == expected and stored.record == expected.record


def test_a_raw_line_outside_the_pipe_is_dead_lettered_without_its_text() -> None:
    event = DecisionMade("dec_1", "age_verification", "pass", "ok", "sha256:abc", "2026-12-06T21:00:00Z", None,
                         "user-secret", record=DecisionInput(AGE, {"context": {"national_id": "SECRET4242"}}))
    broken = decode_line(raw_line(event))
    assert isinstance(broken, BrokenLine) and "withheld" in broken.text
    assert "SECRET4242" not in broken.text + broken.error and "user-secret" not in broken.text + broken.error


def test_a_line_holds_the_subject_ref_never_the_subject() -> None:
    line = event_line(decision(1, subject="user-42"), REFS, "evt_1")
    assert b"user-42" not in line and REFS.ref("user-42").encode() in line


def test_an_event_that_cannot_be_stored_is_refused_by_both_encoders() -> None:
    naive = decision(1, timestamp="2026-01-01T10:00:00")
    for encode in (to_audit_event, event_line):
        with pytest.raises(ValueError, match="no time zone"):
            encode(naive, REFS, "evt_1")  # type: ignore[operator]


def test_a_rejected_event_keeps_its_id_and_a_pseudonymised_payload() -> None:
    event = SensitiveOperation(action="token_issued", timestamp="yesterday", subject="user-1")
    with pytest.raises(ValueError) as raised:
        to_audit_event(event, REFS, "evt_1")
    record = rejection(event, REFS, "evt_1", raised.value)
    assert record.event_id == "evt_1" and record.error.startswith("not an audit event")
    assert record.payload["subject_ref"] == REFS.ref("user-1") and "subject" not in record.payload
    assert decode_line(rejected_line(record)) == record


def test_a_seconds_lines_decode_to_events_sharing_one_timestamp() -> None:
    """The writer formats a time once for the events sharing it (its SQLite codec keeps
    the last one by identity): a second's lines must not each bring a timestamp of their
    own. A line without a time zone is unreadable, not an event stored in local time."""
    first, second = (decode_line(event_line(decision(n, timestamp="2026-12-06T21:00:00Z"), REFS, f"evt_{n}"))
                     for n in (1, 2))
    assert isinstance(first, AuditEvent) and isinstance(second, AuditEvent)
    assert first.timestamp is second.timestamp and first.timestamp.tzinfo is UTC
    naive = json.loads(event_line(decision(3), REFS, "evt_3"))
    naive["timestamp"] = "2026-01-01T10:00:00"
    assert isinstance(decode_line(json.dumps(naive).encode() + b"\n"), BrokenLine)


def test_an_unreadable_line_is_kept_whole_for_its_dead_letter() -> None:
    broken = decode_line(b'{"id": "evt_x", "timesta\n')
    assert isinstance(broken, BrokenLine) and "unreadable line" in broken.error
    assert broken.rejected("spill_line") == Rejected("unknown", {"spill_line": '{"id": "evt_x", "timesta'},
                                                     broken.error)
    assert isinstance(decode_line(b'{"rejected": "not a triple"}\n'), BrokenLine)


async def test_a_rejected_line_in_a_spill_file_is_dead_lettered_under_its_id(
    make_publisher: Callable[..., AuditPublisher], memory: Stores, tmp_path: Path
) -> None:
    """What the writer process's worker spills while the writer is down includes the
    events it could not encode: they reach the dead letters as the inline ones do."""
    record = Rejected("evt_rejected", {"action": "token_issued", "subject_ref": "ab"}, "not an audit event: x")
    stored = AuditEvent(id="evt_ok", timestamp=datetime.now(UTC), action="decision_made", request_id="req-ok")
    spill = tmp_path / "spill"
    spill.mkdir()
    (spill / "spill-1-left.jsonl").write_bytes(rejected_line(record) + encode_event(stored))
    publisher = make_publisher()
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await publisher.wait_delivered(10)
    finally:
        await publisher.stop()
    [letter] = await memory.audit_dead_letters.list_letters()
    assert (letter.event_id, letter.payload, letter.error) == (record.event_id, record.payload, record.error)
    assert [e.id for e in await memory.audit_events.query()] == ["evt_ok"]
    assert not list(spill.glob("*.jsonl"))


async def test_dead_letters_a_stop_could_not_store_are_spilled_for_the_next_start(
    make_publisher: Callable[..., AuditPublisher], memory: Stores, tmp_path: Path
) -> None:
    first = make_publisher()  # never started: nothing is delivered, nothing is dropped
    first.emit(decision(1, timestamp="2026-01-01T10:00:00"))
    first.emit(decision(2))
    await first.stop()
    lines = [json.loads(line) for p in (tmp_path / "spill").glob("*.jsonl") for line in p.read_bytes().splitlines()]
    assert sorted(next(iter(line)) for line in lines) == ["id", "rejected"]

    second = make_publisher()
    await second.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await second.wait_delivered(10)
    finally:
        await second.stop()
    assert [e.request_id for e in await memory.audit_events.query()] == ["req-2"]
    [letter] = await memory.audit_dead_letters.list_letters()
    assert "no time zone" in letter.error
