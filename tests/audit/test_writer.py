"""BatchWriter: chain, retries, dead letters, idempotency, on the in-memory stores."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from datetime import UTC, datetime, timedelta

from server.audit import Backoff, BatchWriter, Deadline, verify_trail
from server.audit.chain import link
from stores import AuditEvent, Stores
from tests.audit.faults import FlakyEvents

NOW = datetime(2026, 1, 1, 10, tzinfo=UTC)
FAST = Backoff(base=0.001, cap=0.01, rng=random.Random(1))


def events(count: int, start: int = 0) -> list[AuditEvent]:
    return [AuditEvent(id=f"evt-{n}", timestamp=NOW + timedelta(seconds=n), action="decision_made",
                       decision="pass") for n in range(start, start + count)]


async def stored_ids(stores: Stores) -> list[str]:
    return [e.id for e in await stores.audit_events.query()]


async def test_a_batch_is_chained_and_written_in_one_append(memory: Stores) -> None:
    flaky = FlakyEvents(memory.audit_events)
    writer = BatchWriter(flaky, memory.audit_dead_letters, stream_id="s1")

    assert await writer.deliver(events(100), Deadline()) == []

    assert flaky.appends == 1
    stored = await memory.audit_events.query()
    assert [e.id for e in stored] == [f"evt-{n}" for n in range(100)]
    assert {e.stream_id for e in stored} == {"s1"}
    assert stored[0].prev_hash is None
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert (await verify_trail(memory.audit_events)).intact


async def test_retries_with_backoff_while_the_store_is_down(memory: Stores) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.down = True
    writer = BatchWriter(flaky, memory.audit_dead_letters, backoff=FAST)
    delivery = asyncio.create_task(writer.deliver(events(10), Deadline()))
    await asyncio.sleep(0.1)
    assert not delivery.done() and await memory.audit_events.count() == 0
    assert writer.last_error is not None and "Unavailable" in writer.last_error

    flaky.down = False
    assert await asyncio.wait_for(delivery, 10) == []
    assert await memory.audit_events.count() == 10
    assert writer.last_error is None


async def test_the_deadline_hands_back_what_is_unwritten(memory: Stores) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.down = True
    writer = BatchWriter(flaky, memory.audit_dead_letters, backoff=FAST)
    deadline = Deadline()
    deadline.set(0.05)

    unwritten = await asyncio.wait_for(writer.deliver(events(7), deadline), 10)

    assert [e.id for e in unwritten] == [f"evt-{n}" for n in range(7)]


async def test_a_poison_event_is_dead_lettered_and_the_rest_written(memory: Stores) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.poison = {"evt-37"}
    writer = BatchWriter(flaky, memory.audit_dead_letters, backoff=FAST)

    assert await writer.deliver(events(100), Deadline()) == []

    assert await stored_ids(memory) == [f"evt-{n}" for n in range(100) if n != 37]
    [letter] = await memory.audit_dead_letters.list_letters()
    assert letter.event_id == "evt-37"
    assert "InvalidRecord" in letter.error and "evt-37" in letter.error
    assert letter.payload["id"] == "evt-37" and letter.payload["hash"] is None
    assert (await verify_trail(memory.audit_events)).intact
    assert writer.dead_lettered == 1 and writer.written == 99


async def test_events_already_stored_are_left_out_and_the_chain_stays_whole(memory: Stores) -> None:
    other = BatchWriter(memory.audit_events, memory.audit_dead_letters, stream_id="other")
    await other.deliver(events(3, start=4), Deadline())  # evt-4..6 written by another stream
    writer = BatchWriter(memory.audit_events, memory.audit_dead_letters, stream_id="mine")

    assert await writer.deliver(events(10), Deadline()) == []

    assert sorted(await stored_ids(memory)) == sorted(f"evt-{n}" for n in range(10))
    mine = await memory.audit_events.query(stream_id="mine")
    assert [e.id for e in mine] == [f"evt-{n}" for n in range(10) if n not in (4, 5, 6)]
    assert (await verify_trail(memory.audit_events)).intact


async def test_a_lost_answer_after_commit_neither_duplicates_nor_breaks_the_chain(memory: Stores) -> None:
    flaky = FlakyEvents(memory.audit_events)
    flaky.lose_answers = 1
    writer = BatchWriter(flaky, memory.audit_dead_letters, backoff=FAST)

    assert await writer.deliver(events(5), Deadline()) == []
    assert await writer.deliver(events(5, start=5), Deadline()) == []

    assert await stored_ids(memory) == [f"evt-{n}" for n in range(10)]
    assert writer.written == 10
    assert (await verify_trail(memory.audit_events)).intact


async def test_duplicates_within_a_batch_are_written_once(memory: Stores) -> None:
    writer = BatchWriter(memory.audit_events, memory.audit_dead_letters)
    batch = events(3) + events(3)

    assert await writer.deliver(batch, Deadline()) == []

    assert await stored_ids(memory) == ["evt-0", "evt-1", "evt-2"]


async def test_verify_reports_the_first_edited_or_missing_event(memory: Stores) -> None:
    linked = link(events(6), "s", None)
    edited = dataclasses.replace(linked[2], decision="fail")
    await memory.audit_events.append([linked[0], linked[1], edited, *linked[3:]])

    report = await verify_trail(memory.audit_events)

    assert report.first_break is not None
    assert (report.first_break.event_id, report.events) == ("evt-2", 2)
    assert "edited" in report.first_break.problem


async def test_verify_reports_a_removed_event(memory: Stores) -> None:
    linked = link(events(4), "s", None)
    await memory.audit_events.append([linked[0], linked[2], linked[3]])

    report = await verify_trail(memory.audit_events)

    assert report.first_break is not None and report.first_break.event_id == "evt-2"
    assert "removed" in report.first_break.problem


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=2.0, rng=random.Random(7))
    delays = [backoff.delay(n) for n in range(10)]
    for n, delay in enumerate(delays):
        ceiling = min(2.0, 0.1 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
