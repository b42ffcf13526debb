"""Driver failures reach callers as the stores' own errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from stores import (
    AuditEvent,
    InvalidRecord,
    StoreError,
    Unavailable,
    migrate_up,
    open_stores,
)

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"


async def test_an_unreachable_postgresql_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await open_stores(UNREACHABLE, migrate=False, pool_timeout=1)
    with pytest.raises(Unavailable):
        await open_stores(UNREACHABLE, pool_timeout=1)  # the migrations fail first
    with pytest.raises(Unavailable):
        migrate_up(UNREACHABLE)


async def test_a_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-directory' / 'idgw.db'}"
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        await open_stores(url)


async def test_a_batch_with_a_poison_event_is_refused_whole(
    sql_database_url: str, now: datetime
) -> None:
    poison = AuditEvent(id="poison", timestamp=now, action=None)  # type: ignore[arg-type]
    batch = [
        AuditEvent(id="good-1", timestamp=now, action="a"),
        poison,
        AuditEvent(id="good-2", timestamp=now, action="a"),
    ]
    async with await open_stores(sql_database_url) as stores:
        with pytest.raises(InvalidRecord):  # permanent: the audit writer dead-letters it
            await stores.audit_events.append(batch)

        assert await stores.audit_events.count() == 0
        assert await stores.audit_events.append([batch[0], batch[2]]) == 2


async def test_naive_datetimes_are_refused_by_every_backend(database_url: str) -> None:
    async with await open_stores(database_url) as stores:
        with pytest.raises(ValueError, match="timezone-aware"):
            await stores.sessions.purge_expired(datetime(2026, 1, 1))
