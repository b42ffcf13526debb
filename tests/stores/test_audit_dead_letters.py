"""Contract of AuditDeadLetterStore, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stores import (
    AuditEvent,
    DeadLetter,
    NotFound,
    Stores,
    audit_event_from_json,
    audit_event_to_json,
)


def _letter(event: AuditEvent, error: str, failed_at: datetime) -> DeadLetter:
    return DeadLetter(
        event_id=event.id, payload=audit_event_to_json(event), error=error, failed_at=failed_at
    )


async def test_add_assigns_increasing_ids_and_get_round_trips(
    stores: Stores, now: datetime
) -> None:
    event = AuditEvent(id="evt-1", timestamp=now, action="decision_made", reason="x" * 10)

    first = await stores.audit_dead_letters.add(_letter(event, "value too long", now))
    second = await stores.audit_dead_letters.add(_letter(event, "still too long", now))

    assert first.id is not None and second.id is not None and second.id > first.id
    assert await stores.audit_dead_letters.get(first.id) == first
    assert first.payload == audit_event_to_json(event)
    assert audit_event_from_json(first.payload) == event
    with pytest.raises(NotFound):
        await stores.audit_dead_letters.get(second.id + 1)


async def test_list_letters_and_pending_only(stores: Stores, now: datetime) -> None:
    events = [AuditEvent(id=f"evt-{n}", timestamp=now, action="a") for n in range(3)]
    for n, event in enumerate(events):
        await stores.audit_dead_letters.add(
            _letter(event, f"error {n}", now + timedelta(seconds=n))
        )
    await stores.audit_events.append([events[1]])  # replayed since

    everything = await stores.audit_dead_letters.list_letters()
    pending = await stores.audit_dead_letters.list_letters(pending_only=True)

    assert [d.event_id for d in everything] == ["evt-0", "evt-1", "evt-2"]
    assert [d.event_id for d in pending] == ["evt-0", "evt-2"]
    assert [d.error for d in await stores.audit_dead_letters.list_letters(limit=1)] == ["error 0"]
    assert await stores.audit_dead_letters.count() == 3
