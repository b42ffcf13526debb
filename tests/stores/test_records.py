"""The record dataclasses: timestamps are aware and UTC, records are immutable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stores import AuditEvent, User, audit_event_from_json, audit_event_to_json


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"User\.created_at must be timezone-aware"):
        User(id="u", email="e", created_at=datetime(2026, 1, 1), updated_at=datetime.now(UTC))


def test_aware_datetimes_are_normalised_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    user = User(
        id="u",
        email="e",
        created_at=datetime(2026, 1, 1, 9, tzinfo=tokyo),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert user.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert user.created_at.tzinfo is UTC


def test_records_are_frozen() -> None:
    event = AuditEvent(id="e", timestamp=datetime.now(UTC), action="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.action = "b"  # type: ignore[misc]


def test_audit_events_round_trip_through_json() -> None:
    event = AuditEvent(
        id="e", timestamp=datetime(2026, 1, 1, tzinfo=UTC), action="a", subject_ref="s", seq=7
    )
    payload = audit_event_to_json(event)
    assert payload["timestamp"] == "2026-01-01T00:00:00+00:00"
    assert "seq" not in payload  # the sequence belongs to the store that assigned it
    assert audit_event_from_json(payload) == dataclasses.replace(event, seq=None)


def test_audit_event_timestamps_are_checked_and_normalised() -> None:
    with pytest.raises(ValueError, match=r"AuditEvent\.timestamp must be timezone-aware"):
        AuditEvent(id="e", timestamp=datetime(2026, 1, 1), action="a")
    tokyo = timezone(timedelta(hours=9))
    event = AuditEvent(id="e", timestamp=datetime(2026, 1, 1, 9, tzinfo=tokyo), action="a")
    assert event.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    utc = datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=UTC)
    assert AuditEvent(id="e", timestamp=utc, action="a").timestamp is utc


def test_sqlite_times_are_fixed_width_utc_text_whatever_came_before() -> None:
    from stores._sqlite import SqliteCodec

    codec = SqliteCodec()
    first = datetime(2026, 12, 6, 21, 0, 5, tzinfo=UTC)
    other_zone = datetime(2026, 12, 6, 23, 0, 6, 250, tzinfo=timezone(timedelta(hours=2)))
    # the codec keeps the last time it wrote: an equal but distinct value, another zone
    # and the first one again must each get their own text
    texts = [codec.time(first), codec.time(first), codec.time(other_zone),
             codec.time(first.replace()), codec.time(datetime(999, 1, 1, tzinfo=UTC)), codec.time(first)]
    assert texts == ["2026-12-06T21:00:05.000000Z", "2026-12-06T21:00:05.000000Z", "2026-12-06T21:00:06.000250Z",
                     "2026-12-06T21:00:05.000000Z", "0999-01-01T00:00:00.000000Z", "2026-12-06T21:00:05.000000Z"]
    assert codec.time(None) is None
