"""The outbox and the spill files as the delivery task sees them: the replay is not held
back by a trickle of live events, and what the task does per batch leaves the event loop
free between small steps (decoding in slices, the fsync of a sealed file in a thread)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import server.audit.queue as queue_module
from server.audit import AuditPublisher, verify_trail
from server.audit.chain import event_hash, link
from server.audit.encoding import DECODE_SLICE, BrokenLine, decode_line, decode_lines, encode_event
from server.audit.queue import Outbox
from server.audit.spill import SpillFiles
from stores import AuditEvent, Stores
from tests.audit.conftest import decision, eventually

MakePublisher = Callable[..., AuditPublisher]


def event(n: int) -> AuditEvent:
    return AuditEvent(id=f"evt_{n:06d}", timestamp=datetime.now(UTC), action="decision_made",
                      subject_ref="ab" * 32, purpose="age_verification", decision="pass",
                      reason="all_checks_passed", request_id=f"req-{n}", decision_id=f"dec_{n}",
                      policy_revision="sha256:abc")


def orphan_spill(directory: Path, count: int, name: str = "spill-1-left.jsonl") -> None:
    """A spill file nobody holds, as a stopped gateway leaves it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(b"".join(encode_event(event(n)) for n in range(count)))


async def test_a_trickle_of_live_events_does_not_hold_the_replay_back(tmp_path: Path) -> None:
    spill = SpillFiles(tmp_path / "spill")
    orphan_spill(tmp_path / "spill", 50)
    assert spill.claim_orphans() == 50
    outbox = Outbox(capacity=100, batch_size=10, flush_interval=60.0, spill=spill, max_batch=10)
    outbox.bind(asyncio.get_running_loop())
    outbox.put(event(1000))  # one live event: its batch is not due for a minute
    stopping = asyncio.Event()
    for _ in range(5):  # every batch of the backlog at once, none waiting for the live one
        batch = await asyncio.wait_for(outbox.next_batch(stopping), 5)
        assert batch is not None and batch.from_spill and len(batch.events) == 10
        spill.confirm()
        outbox.in_flight = None
    assert spill.pending == 0 and len(outbox) == 1
    stopping.set()
    batch = await asyncio.wait_for(outbox.next_batch(stopping), 5)
    assert batch is not None and [e.id for e in batch.events] == ["evt_001000"]
    spill.close()


async def test_queued_and_spilled_batches_alternate_while_both_are_due(tmp_path: Path) -> None:
    spill = SpillFiles(tmp_path / "spill")
    orphan_spill(tmp_path / "spill", 30)
    spill.claim_orphans()
    outbox = Outbox(capacity=100, batch_size=10, flush_interval=60.0, spill=spill, max_batch=10)
    for n in range(30):
        outbox.put(event(1000 + n))
    stopping = asyncio.Event()
    sources = []
    for _ in range(6):
        batch = await asyncio.wait_for(outbox.next_batch(stopping), 5)
        assert batch is not None
        sources.append(batch.from_spill)
        if batch.from_spill:
            spill.confirm()
    assert sources == [False, True, False, True, False, True]
    spill.close()


async def test_the_publisher_replays_a_backlog_at_batch_speed_under_a_trickle(
    make_publisher: MakePublisher, memory: Stores, tmp_path: Path
) -> None:
    orphan_spill(tmp_path / "spill", 2_000)
    publisher = make_publisher(batch_size=100, flush_ms=30_000)
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    try:
        publisher.emit(decision(1))  # not due for 30 s: must not pace the replay
        await eventually(lambda: publisher.outbox.spill.pending == 0, 10)
        assert await memory.audit_events.count() == 2_000
    finally:
        await publisher.stop()
    assert await memory.audit_events.count() == 2_001
    assert (await verify_trail(memory.audit_events)).intact


async def test_decoding_yields_to_the_loop_between_slices() -> None:
    lines = [encode_event(event(n)) for n in range(5 * DECODE_SLICE)] + [b'{"torn\n']
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:  # bounded: ends once decoding is done
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    decoded = await decode_lines(lines)
    done = True
    await task
    assert ticks >= 5  # other tasks ran between the slices
    assert decoded[:-1] == [decode_line(line) for line in lines[:-1]]
    assert isinstance(decoded[-1], BrokenLine)


def test_spilled_lines_are_taken_from_sealed_files_oldest_first(tmp_path: Path) -> None:
    spill = SpillFiles(tmp_path / "spill")
    for n in range(5):
        spill.append(event(n))
    assert spill.take_lines(10) == []  # nothing sealed yet: the active file is still written
    assert spill.seal() is not None  # the active file: sealed for replay
    assert spill.seal() is None  # nothing more to seal while it is being replayed
    spill.append(event(5))  # a new active file
    taken = [decode_line(line) for line in spill.take_lines(3)]
    assert [e.id for e in taken if isinstance(e, AuditEvent)] == ["evt_000000", "evt_000001", "evt_000002"]
    spill.confirm()
    rest = [decode_line(line) for line in spill.take_lines(10)]
    assert [e.id for e in rest if isinstance(e, AuditEvent)] == ["evt_000003", "evt_000004"]
    spill.confirm()
    assert spill.pending == 1  # the new file's event, for the next seal
    spill.close()


async def test_the_fsync_of_a_sealed_spill_file_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real_fsync = queue_module.os.fsync

    def fsync(fd: int) -> None:
        threads.append(threading.get_ident())
        time.sleep(0.05)  # a slow disk
        real_fsync(fd)

    monkeypatch.setattr(queue_module.os, "fsync", fsync)
    spill = SpillFiles(tmp_path / "spill")
    outbox = Outbox(capacity=0, batch_size=10, flush_interval=60.0, spill=spill)
    for n in range(3):
        outbox.put(event(n))  # capacity 0: every event spills
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:  # cancelled below
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    batch = await asyncio.wait_for(outbox.next_batch(asyncio.Event()), 5)
    task.cancel()
    assert batch is not None and batch.from_spill and len(batch.events) == 3
    assert threads and threading.get_ident() not in threads
    assert ticks >= 3  # the loop kept running during the 50 ms fsync
    spill.close()


def test_linking_copies_the_event_with_only_the_chain_fields_set() -> None:
    original = event(1)
    [first, second] = link([original, event(2)], "gw-test", None)
    assert first == dataclasses.replace(original, stream_id="gw-test", prev_hash=None, hash=first.hash)
    assert second.prev_hash == first.hash and second.hash == event_hash(second, first.hash)
    assert original.stream_id is None and original.hash is None  # the input is untouched
    assert type(first) is AuditEvent and first.timestamp == original.timestamp
    stored: Any = dataclasses.replace(original, seq=7, stream_id="old", hash="x")
    [relinked] = link([stored], "gw-test", "h")
    assert (relinked.seq, relinked.stream_id, relinked.prev_hash) == (None, "gw-test", "h")


def _reference_hash(event: AuditEvent, prev_hash: str | None, stream_id: str) -> str:
    """The chain formula of docs/audit.md, written the plain way (json, then SHA-256)."""
    fields = [prev_hash, event.id, event.timestamp.astimezone(UTC).isoformat(timespec="microseconds"),
              event.subject_ref, event.action, event.purpose, event.decision, event.reason,
              event.request_id, event.decision_id, event.policy_revision, stream_id]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(  # (st.text leaves lone surrogates out, even from its alphabet)
        st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "\x1f", "\u2028"])), max_size=12,
    ).map("".join),
    # from year 2: 0001-01-01 at +05:30 is before the first UTC moment a datetime holds
    moment=st.datetimes(min_value=datetime(2, 1, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
)
def test_chain_hashes_are_the_documented_formula(text: str, moment: datetime) -> None:
    """Whatever the text (control characters, U+2028, astral and lone surrogates) and the
    time zone: stored chains keep verifying whichever encoder the writer uses."""
    base = dataclasses.replace(event(1), timestamp=moment, reason=text, subject_ref=text[::-1] or None)
    for ev in (base, dataclasses.replace(base, purpose="p" + text), event(2), base):  # the time cache, both ways
        assert event_hash(ev, "h" * 64, "gw-" + text) == _reference_hash(ev, "h" * 64, "gw-" + text)
