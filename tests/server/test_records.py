"""server.decisions.records: the ages and times the commands take, retention, paging."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from server.decisions import records
from stores import AuditEvent, Stores, Unavailable, memory_stores

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - timedelta(days=7)),
    ("24h", NOW - timedelta(hours=24)),
    ("30m", NOW - timedelta(minutes=30)),
    ("90s", NOW - timedelta(seconds=90)),
    ("2w", NOW - timedelta(weeks=2)),
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
    ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T10:00:00+02:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
])
def test_an_age_or_a_time(text: str, expected: datetime) -> None:
    assert records.parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["7 days", "-1d", "yesterday", ""])
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="an age"):
        records.parse_when(text, NOW)


async def _recorded(stores: Stores, ages_in_days: list[int]) -> None:
    await stores.audit_events.append([
        AuditEvent(id=f"evt-{n}", timestamp=NOW - timedelta(days=age), action="decision_made", purpose="p",
                   decision="pass", reason="r", decision_id=f"dec_{n:03d}", policy_revision="sha256:x",
                   record=json.dumps({"facts": {}, "context": {}}))
        for n, age in enumerate(ages_in_days)
    ])


async def test_retention_deletes_what_is_older_than_the_days_and_zero_deletes_nothing() -> None:
    stores = memory_stores()
    await _recorded(stores, [0, 10, 29, 31, 45])
    assert await records.purge_expired(stores.decision_records, 0, NOW) == 0
    assert await records.purge_expired(stores.decision_records, 30, NOW) == 2
    assert [r.decision_id for r in await stores.decision_records.query()] == ["dec_000", "dec_001", "dec_002"]


async def test_the_retention_loop_purges_at_start_and_survives_a_database_that_cannot_answer(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = memory_stores()
    await _recorded(stores, [1, 40])
    monkeypatch.setattr(records, "utc_now", lambda: NOW)
    monkeypatch.setattr(records, "PURGE_INTERVAL_SECONDS", 0.01)
    task = asyncio.create_task(records.retention_loop(stores.decision_records, 30))
    await asyncio.sleep(0.05)
    assert [r.decision_id for r in await stores.decision_records.query()] == ["dec_000"]
    async def down(before: datetime) -> int:
        raise Unavailable("connection refused")

    monkeypatch.setattr(stores.decision_records, "purge", down)
    await asyncio.sleep(0.05)
    assert not task.done()  # a failed round is logged and tried again
    task.cancel()


async def test_pages_stream_every_record_once_in_order() -> None:
    stores = memory_stores()
    await _recorded(stores, [1] * 7)
    seen = [r.decision_id async for page in records.pages(stores.decision_records) for r in page]
    assert seen == [f"dec_{n:03d}" for n in range(7)]
    limited = [r.decision_id async for page in records.pages(stores.decision_records, limit=3) for r in page]
    assert limited == seen[:3]


async def test_pages_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = memory_stores()
    await _recorded(stores, [1] * 7)
    monkeypatch.setattr(records, "PAGE", 3)
    sizes = [len(page) async for page in records.pages(stores.decision_records)]
    assert sizes == [3, 3, 1]
