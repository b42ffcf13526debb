"""Contract of AuditEventStore, on every backend."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stores import AuditEvent, Conflict, NotFound, Stores, open_stores


def ids(events: Sequence[AuditEvent]) -> list[str]:
    return [event.id for event in events]


def _event(n: int, now: datetime, **fields: Any) -> AuditEvent:
    event = AuditEvent(id=f"evt-{n}", timestamp=now + timedelta(seconds=n), action="decision_made")
    return dataclasses.replace(event, **fields)


async def test_append_is_idempotent_by_event_id(stores: Stores, now: datetime) -> None:
    first = [_event(n, now) for n in range(3)]

    assert await stores.audit_events.append(first) == 3
    assert await stores.audit_events.append(first) == 0
    batch = [_event(2, now), _event(3, now), _event(4, now), _event(3, now)]
    assert await stores.audit_events.append(batch) == 2
    assert await stores.audit_events.append([]) == 0
    assert await stores.audit_events.count() == 5


async def test_get_returns_every_field_and_a_sequence_number(stores: Stores, now: datetime) -> None:
    event = AuditEvent(
        id="evt-full",
        timestamp=now,
        action="decision_made",
        subject_ref="hmac:abc",
        purpose="age_verification",
        decision="pass",
        reason="all_checks_passed",
        request_id="req-1",
        decision_id="dec-1",
        policy_revision="sha256:0123",
        stream_id="writer-1",
        prev_hash="00" * 32,
        hash="ff" * 32,
    )
    await stores.audit_events.append([event])

    stored = await stores.audit_events.get("evt-full")

    assert isinstance(stored.seq, int)
    assert stored == dataclasses.replace(event, seq=stored.seq)
    with pytest.raises(NotFound):
        await stores.audit_events.get("evt-missing")


async def test_query_filters_in_insertion_order(stores: Stores, now: datetime) -> None:
    events = [
        _event(5, now, subject_ref="alice", action="token_issued"),
        _event(1, now, subject_ref="alice"),
        _event(3, now, subject_ref="bob"),
        _event(2, now, subject_ref="alice"),
    ]
    await stores.audit_events.append(events)

    assert ids(await stores.audit_events.query()) == ["evt-5", "evt-1", "evt-3", "evt-2"]
    assert ids(await stores.audit_events.query(subject_ref="alice")) == ["evt-5", "evt-1", "evt-2"]
    assert ids(await stores.audit_events.query(subject_ref="alice", action="decision_made")) == [
        "evt-1",
        "evt-2",
    ]
    window = await stores.audit_events.query(
        since=now + timedelta(seconds=2), until=now + timedelta(seconds=5)
    )
    assert ids(window) == ["evt-3", "evt-2"]  # since inclusive, until exclusive
    assert ids(await stores.audit_events.query(limit=2)) == ["evt-5", "evt-1"]
    assert await stores.audit_events.query(limit=0) == []
    assert await stores.audit_events.query(subject_ref="carol") == []


async def test_after_seq_pages_through_the_trail(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_event(n, now) for n in range(5)])

    pages: list[list[str]] = []
    after: int | None = None
    while page := await stores.audit_events.query(after_seq=after, limit=2):
        pages.append([e.id for e in page])
        after = page[-1].seq

    assert pages == [["evt-0", "evt-1"], ["evt-2", "evt-3"], ["evt-4"]]


async def test_last_in_stream_is_the_chain_head(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_event(1, now, stream_id="a"), _event(0, now, stream_id="b")])
    await stores.audit_events.append([_event(3, now, stream_id="a"), _event(2, now, stream_id="a")])

    head = await stores.audit_events.last_in_stream("a")

    assert head is not None and head.id == "evt-2"
    assert [e.id for e in await stores.audit_events.query(stream_id="a")] == [
        "evt-1",
        "evt-3",
        "evt-2",
    ]
    assert await stores.audit_events.last_in_stream("c") is None


async def test_a_negative_limit_is_refused(stores: Stores) -> None:
    with pytest.raises(ValueError):
        await stores.audit_events.query(limit=-1)


async def test_all_or_nothing_rolls_back_a_batch_that_meets_a_stored_event(
    stores: Stores, now: datetime
) -> None:
    await stores.audit_events.append([_event(1, now)])

    with pytest.raises(Conflict):
        await stores.audit_events.append(
            [_event(0, now), _event(1, now), _event(2, now)], all_or_nothing=True
        )
    with pytest.raises(Conflict):  # the same id twice in one batch
        await stores.audit_events.append([_event(3, now), _event(3, now)], all_or_nothing=True)

    assert ids(await stores.audit_events.query()) == ["evt-1"]
    assert await stores.audit_events.append([_event(0, now), _event(2, now)], all_or_nothing=True) == 2
    assert ids(await stores.audit_events.query()) == ["evt-1", "evt-0", "evt-2"]


async def test_stored_ids_names_the_stored_ones(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_event(n, now) for n in range(0, 1200, 2)])

    asked = [f"evt-{n}" for n in range(1200)] + ["evt-4", "unknown"]
    found = await stores.audit_events.stored_ids(asked)

    assert found == {f"evt-{n}" for n in range(0, 1200, 2)}
    assert await stores.audit_events.stored_ids([]) == set()


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_sqlite_times_are_the_fixed_width_format(moment: datetime, offset_minutes: int) -> None:
    from datetime import timedelta, timezone

    from stores._sqlite import _TIME_FORMAT, SqliteCodec

    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    utc = aware.astimezone(UTC)
    # _TIME_FORMAT with the year padded to four digits, as glibc's %Y does not pad it
    expected = f"{utc.year:04d}" + utc.strftime(_TIME_FORMAT.removeprefix("%Y"))
    assert len(expected) == 27
    assert SqliteCodec().time(aware) == expected
    assert SqliteCodec().time(aware.astimezone(UTC)) == expected


@pytest.mark.parametrize("text", ['"quoted"', "back\\slash", "ünïcødé 😀", '{"json": true}', "123", "null", "", "\\u0000"])
async def test_text_that_looks_like_json_is_stored_as_text(stores: Stores, now: datetime, text: str) -> None:
    # Both SQL stores send a batch as one JSON parameter: nothing in it may be read back
    # as anything but the text it was.
    await stores.audit_events.append([_event(1, now, reason=text, purpose=text)])

    stored = await stores.audit_events.get("evt-1")

    assert (stored.reason, stored.purpose) == (text, text)


async def test_a_sqlite_batch_is_one_statement(tmp_path: Path, now: datetime) -> None:
    # sqlite3 hands the GIL back and forth around every statement step; a batch written
    # as one statement per row starved under load (see _INSERT_EVENTS_SQLITE_JSON).
    stores = await open_stores(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        database = stores.audit_events._db  # type: ignore[attr-defined]
        statements: list[str] = []
        await database._call(lambda: database._connection.set_trace_callback(statements.append))
        events = [_event(n, now) for n in range(250)]

        assert await stores.audit_events.append(events, all_or_nothing=True) == 250
        assert await stores.audit_events.append([*events[:10], _event(250, now)]) == 1

        assert len(statements) == 2 and "BEGIN" not in " ".join(statements)
        assert all("INSERT INTO audit_events" in s for s in statements)
        stored = await stores.audit_events.query(limit=1000)
        assert ids(stored) == [f"evt-{n}" for n in range(251)]  # batch order is seq order
    finally:
        await stores.close()


async def test_a_batch_larger_than_one_statement_is_still_all_or_nothing(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_event(4000, now)])
    events = [_event(n, now) for n in range(4500)]  # beyond SQLite's 2,000 rows a statement

    with pytest.raises(Conflict):
        await stores.audit_events.append(events, all_or_nothing=True)
    assert await stores.audit_events.count() == 1

    fresh = [e for e in events if e.id != "evt-4000"]
    assert await stores.audit_events.append(fresh, all_or_nothing=True) == 4499
    assert ids(await stores.audit_events.query(limit=10)) == ["evt-4000"] + [f"evt-{n}" for n in range(9)]


def test_postgresql_batch_rows_follow_the_column_order() -> None:
    import json

    from stores import InvalidRecord
    from stores._sql import _EVENT_FIELDS, _json_rows

    event = AuditEvent(
        **{name: f"{name}-value" for name in _EVENT_FIELDS if name != "timestamp"},
        timestamp=datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=UTC),
    )
    (row,) = json.loads(_json_rows([event]))
    expected = [f"{name}-value" for name in _EVENT_FIELDS]
    expected[_EVENT_FIELDS.index("timestamp")] = "2026-01-01T01:02:03.000004+00:00"
    assert row == expected
    # a literal backslash-u0000 is text like any other; a NUL character is refused
    assert json.loads(_json_rows([dataclasses.replace(event, reason="\\u0000")]))[0][6] == "\\u0000"
    with pytest.raises(InvalidRecord, match="NUL"):
        _json_rows([dataclasses.replace(event, reason="a\x00b")])


async def test_a_blocking_sqlite_database_runs_statements_on_the_loop_thread(tmp_path: Path, now: datetime) -> None:
    import threading

    stores = await open_stores(f"sqlite:///{tmp_path / 'blocking.db'}", sqlite_blocking=True)
    try:
        database = stores.audit_events._db  # type: ignore[attr-defined]
        threads: list[int] = []
        await database._call(lambda: database._connection.set_trace_callback(lambda _: threads.append(threading.get_ident())))
        assert await stores.audit_events.append([_event(n, now) for n in range(3)], all_or_nothing=True) == 3
        assert ids(await stores.audit_events.query()) == ["evt-0", "evt-1", "evt-2"]
        assert threads and set(threads) == {threading.get_ident()}
    finally:
        await stores.close()
