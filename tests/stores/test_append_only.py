"""The audit tables are append-only, enforced by the database itself on both dialects."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest

from stores import AppendOnlyViolation, AuditEvent, DeadLetter, open_stores

RawSQL = Callable[..., list[tuple[Any, ...]]]
DRIVER_ERRORS = (sqlite3.IntegrityError, psycopg.errors.RaiseException)


async def _seed(url: str, now: datetime) -> None:
    async with await open_stores(url) as stores:
        await stores.audit_events.append(
            [AuditEvent(id="evt-1", timestamp=now, action="decision_made", decision="pass")]
        )
        await stores.audit_dead_letters.add(
            DeadLetter(event_id="evt-2", payload={"id": "evt-2"}, error="bad", failed_at=now)
        )


@pytest.fixture
async def seeded_url(sql_database_url: str, now: datetime) -> str:
    """A migrated database holding one audit event and one dead letter."""
    await _seed(sql_database_url, now)
    return sql_database_url


@pytest.mark.parametrize(
    ("table", "statement"),
    [
        ("audit_events", "UPDATE audit_events SET action = 'rewritten'"),
        ("audit_events", "DELETE FROM audit_events"),
        ("audit_dead_letters", "UPDATE audit_dead_letters SET error = 'rewritten'"),
        ("audit_dead_letters", "DELETE FROM audit_dead_letters"),
    ],
)
def test_the_database_refuses_update_and_delete(
    seeded_url: str, raw_sql: RawSQL, table: str, statement: str
) -> None:
    with pytest.raises(DRIVER_ERRORS, match=f"{table} is append-only"):
        raw_sql(statement)

    assert raw_sql(f"SELECT count(*) FROM {table}") == [(1,)]
    assert raw_sql("SELECT action FROM audit_events") == [("decision_made",)]
    assert raw_sql("SELECT error FROM audit_dead_letters") == [("bad",)]


async def test_postgresql_also_refuses_truncate_and_statements_matching_nothing(
    postgres_url: str, now: datetime
) -> None:
    await _seed(postgres_url, now)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in (
            "DELETE FROM audit_events WHERE id = 'no such event'",
            "UPDATE audit_dead_letters SET error = '' WHERE false",
            "TRUNCATE audit_events",
            "TRUNCATE audit_dead_letters",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="is append-only"):
                conn.execute(statement)


async def test_the_stores_raise_their_own_error(seeded_url: str) -> None:
    async with await open_stores(seeded_url) as stores:
        database = stores._database  # the SQL the stores run, without going through them
        assert database is not None
        with pytest.raises(AppendOnlyViolation):
            await database.execute("DELETE FROM audit_events")
        with pytest.raises(AppendOnlyViolation):
            await database.execute("UPDATE audit_dead_letters SET error = 'rewritten'")
        assert await stores.audit_events.count() == 1
