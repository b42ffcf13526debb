"""AuditPublisher on the in-memory stores: emit, batches, spill, drain, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from server.audit import AuditPublisher, SubjectRefs, events_of_subject, verify_trail
from server.audit.subject_refs import load_or_create_key
from server.events import SensitiveOperation
from stores import AuditEvent, Stores
from tests.audit.conftest import decision, eventually
from tests.audit.faults import FlakyEvents

MakePublisher = Callable[..., AuditPublisher]


async def test_emitted_events_are_written_with_a_subject_ref_only(
    make_publisher: MakePublisher, memory: Stores, refs: SubjectRefs
) -> None:
    publisher = make_publisher()
    publisher.emit(decision(1, subject="user-42"))
    publisher.emit(SensitiveOperation(action="consent_granted", timestamp="2026-01-01T10:00:00Z",
                                      subject="user-42", purpose="registry_check", outcome="granted"))
    publisher.emit(decision(2, subject=None))
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await publisher.wait_delivered(10)
    finally:
        await publisher.stop()

    stored = await memory.audit_events.query()
    assert [e.action for e in stored] == ["decision_made", "consent_granted", "decision_made"]
    assert stored[0].subject_ref == refs.ref("user-42") != "user-42"
    assert stored[2].subject_ref is None
    assert (stored[0].decision_id, stored[0].policy_revision) == ("dec_1", "sha256:abc")
    assert (stored[1].purpose, stored[1].decision) == ("registry_check", "granted")
    assert all("user-42" not in json.dumps([str(v) for v in vars_of(e)]) for e in stored)
    found = await events_of_subject(memory.audit_events, refs, "user-42", action="consent_granted")
    assert [e.id for e in found] == [stored[1].id]
    assert (await verify_trail(memory.audit_events)).intact


def vars_of(event: object) -> list[object]:
    return [getattr(event, name) for name in event.__slots__]  # type: ignore[attr-defined]


async def test_a_batch_is_due_at_batch_size_and_takes_up_to_max_batch(
    make_publisher: MakePublisher, memory: Stores
) -> None:
    flaky = FlakyEvents(memory.audit_events)
    sizes: list[int] = []
    append = flaky.append

    async def counted(events: Sequence[AuditEvent], *, all_or_nothing: bool = False) -> int:
        sizes.append(len(events))
        return await append(events, all_or_nothing=all_or_nothing)

    flaky.append = counted  # type: ignore[method-assign]
    publisher = make_publisher(batch_size=10, max_batch=20, flush_ms=60_000)
    await publisher.start(flaky, memory.audit_dead_letters)
    try:
        for n in range(49):
            publisher.emit(decision(n))
        await eventually(lambda: sum(sizes) == 40, 10)
        assert sizes == [20, 20]  # a backlog in writes of max_batch; 9 wait for a full batch
        await asyncio.sleep(0.1)
        assert await memory.audit_events.count() == 40
        await publisher.stop()  # ... or for the drain
    finally:
        await publisher.stop()
    assert sizes == [20, 20, 9]
    assert await memory.audit_events.count() == 49


async def test_a_full_queue_spills_and_the_spill_is_replayed(
    make_publisher: MakePublisher, memory: Stores, tmp_path: Path
) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.down = True
    publisher = make_publisher(queue_capacity=50, batch_size=20)
    await publisher.start(flaky, memory.audit_dead_letters)
    try:
        for n in range(500):
            publisher.emit(decision(n))
        spilled = list((tmp_path / "spill").glob("spill-*.jsonl"))
        assert spilled and "user-1" not in spilled[0].read_text()  # pseudonymised first
        assert publisher.status().depth == 500
        ok, detail = await publisher.readiness()
        assert not ok and detail is not None and "depth 500" in detail

        flaky.down = False
        assert await publisher.wait_delivered(30)
        assert (await publisher.readiness())[0]
    finally:
        await publisher.stop()
    stored = await memory.audit_events.query()
    assert sorted(e.request_id or "" for e in stored) == sorted(f"req-{n}" for n in range(500))
    assert not list((tmp_path / "spill").glob("spill-*.jsonl"))
    assert (await verify_trail(memory.audit_events)).intact


async def test_stop_drains_the_queue(make_publisher: MakePublisher, memory: Stores) -> None:
    publisher = make_publisher(flush_ms=60_000)
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    for n in range(250):
        publisher.emit(decision(n))
    await publisher.stop()
    assert await memory.audit_events.count() == 250


async def test_a_drain_that_times_out_spills_and_the_next_start_writes(
    make_publisher: MakePublisher, memory: Stores, tmp_path: Path
) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.down = True
    first = make_publisher(drain_timeout_ms=200)
    await first.start(flaky, memory.audit_dead_letters)
    for n in range(120):
        first.emit(decision(n))
    await first.stop()
    assert await memory.audit_events.count() == 0
    lines = sum(len(p.read_text().splitlines()) for p in (tmp_path / "spill").glob("spill-*.jsonl"))
    assert lines == 120
    first.emit(decision(999))  # after stop: spilled too, never dropped

    flaky.down = False
    second = make_publisher()
    await second.start(flaky, memory.audit_dead_letters)
    try:
        assert await second.wait_delivered(30)
    finally:
        await second.stop()
    assert await memory.audit_events.count() == 121
    assert not list((tmp_path / "spill").glob("spill-*.jsonl"))


async def test_a_torn_spill_line_is_dead_lettered(
    make_publisher: MakePublisher, memory: Stores, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    (spill / "spill-1-dead.jsonl").write_text('{"id": "evt_x", "timesta\n')
    publisher = make_publisher()
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await publisher.wait_delivered(10)
    finally:
        await publisher.stop()
    [letter] = await memory.audit_dead_letters.list_letters()
    assert letter.payload == {"spill_line": '{"id": "evt_x", "timesta'}
    assert "unreadable line" in letter.error


async def test_an_event_that_cannot_be_converted_is_dead_lettered(
    make_publisher: MakePublisher, memory: Stores, refs: SubjectRefs
) -> None:
    publisher = make_publisher()
    publisher.emit(decision(1, timestamp="2026-01-01T10:00:00"))  # no time zone
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await publisher.wait_delivered(10)
    finally:
        await publisher.stop()
    [letter] = await memory.audit_dead_letters.list_letters()
    assert "no time zone" in letter.error
    assert letter.payload["subject_ref"] == refs.ref("user-1") and "subject" not in letter.payload


async def test_readiness_is_false_before_start_and_past_the_threshold(
    make_publisher: MakePublisher, memory: Stores
) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.down = True
    publisher = make_publisher(ready_max_depth=3)
    assert not (await publisher.readiness())[0]
    await publisher.start(flaky, memory.audit_dead_letters)
    try:
        assert (await publisher.readiness())[0]
        for n in range(4):
            publisher.emit(decision(n))
        ok, detail = await publisher.readiness()
        assert not ok and detail is not None and "depth 4 (ready up to 3)" in detail
    finally:
        flaky.down = False
        await publisher.stop()


def test_the_subject_key_is_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit_subject_ref.key"
    first = load_or_create_key(path)
    assert load_or_create_key(path) == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert SubjectRefs(first).ref("u") == SubjectRefs.from_key_dir(tmp_path / "keys").ref("u")
    assert SubjectRefs(first).ref("u") != SubjectRefs(b"x" * 32).ref("u")


def test_a_malformed_key_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "audit_subject_ref.key"
    path.write_text("not hex")
    with pytest.raises(Exception, match="not a usable subject_ref key"):
        load_or_create_key(path)


async def test_a_subject_with_a_lone_surrogate_is_pseudonymised_not_raised(
    make_publisher: MakePublisher, memory: Stores, refs: SubjectRefs
) -> None:
    publisher = make_publisher()
    publisher.emit(decision(1, subject="user-\ud800"))  # a JSON escape in a token's `sub` can be one
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        assert await publisher.wait_delivered(10)
    finally:
        await publisher.stop()
    [stored] = await memory.audit_events.query()
    assert stored.subject_ref == refs.ref("user-\ud800") != refs.ref("user-")
