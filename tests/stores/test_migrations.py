"""Migrations on SQLite and PostgreSQL: up, down to zero, up again; status; locking."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

import stores._migrations
from stores import (
    Migration,
    MigrationError,
    User,
    migrate_down,
    migrate_up,
    migration_status,
    open_stores,
    parse_database_url,
)
from stores._migrations import load_migrations

RawSQL = Callable[..., list[tuple[Any, ...]]]

TABLES = {
    "users",
    "sessions",
    "refresh_tokens",
    "token_revocations",
    "consent_records",
    "verifiable_credentials",
    "audit_events",
    "audit_dead_letters",
    "signing_keys",
    "decision_records",
}


def table_names(raw_sql: RawSQL, dialect: str) -> set[str]:
    """The tables of the database (of the test's schema on PostgreSQL)."""
    if dialect == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        query = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return {row[0] for row in raw_sql(query)} - {"schema_migrations"}


def applied_versions(url: str) -> list[int]:
    return [state.version for state in migration_status(url) if state.applied_at is not None]


def test_both_dialects_have_the_same_migrations() -> None:
    def names(dialect: str) -> list[tuple[int, str]]:
        return [(m.version, m.name) for m in load_migrations(dialect)]

    assert names("sqlite") == names("postgresql")
    assert [version for version, _ in names("sqlite")] == [1, 2, 3, 4, 5]


async def test_up_down_to_zero_and_up_again(sql_database_url: str, raw_sql: RawSQL) -> None:
    url = sql_database_url
    dialect = parse_database_url(url).backend
    assert [m.version for m in migrate_up(url)] == [1, 2, 3, 4, 5]
    assert table_names(raw_sql, dialect) == TABLES
    assert migrate_up(url) == []  # nothing pending

    assert [m.version for m in migrate_down(url, steps=2)] == [5, 4]
    assert {"signing_keys", "decision_records"}.isdisjoint(table_names(raw_sql, dialect))
    assert applied_versions(url) == [1, 2, 3]

    assert [m.version for m in migrate_down(url, steps=None)] == [3, 2, 1]
    assert table_names(raw_sql, dialect) == set()
    assert applied_versions(url) == []
    assert migrate_down(url) == []

    assert [m.version for m in migrate_up(url, steps=2)] == [1, 2]
    assert [m.version for m in migrate_up(url)] == [3, 4, 5]
    assert table_names(raw_sql, dialect) == TABLES
    now = datetime.now(UTC)
    async with await open_stores(url, migrate=False) as stores:
        await stores.users.create(User(id="u", email="e", created_at=now, updated_at=now))
        assert (await stores.users.get("u")).email == "e"


def test_status_lists_applied_and_pending(sql_database_url: str) -> None:
    before = migration_status(sql_database_url)
    assert [(s.version, s.name, s.applied_at) for s in before] == [
        (1, "identity", None),
        (2, "consents_credentials", None),
        (3, "audit", None),
        (4, "signing_keys", None),
        (5, "decision_records", None),
    ]
    migrate_up(sql_database_url, steps=3)

    after = migration_status(sql_database_url)

    assert [s.applied_at is not None for s in after] == [True, True, True, False, False]
    assert all(s.known for s in after)


def test_workers_starting_together_apply_each_migration_once(sql_database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: migrate_up(sql_database_url), range(4)))

    applied = sorted(m.version for result in results for m in result)
    assert applied == [1, 2, 3, 4, 5]
    assert applied_versions(sql_database_url) == [1, 2, 3, 4, 5]


def test_a_failing_migration_applies_nothing(
    sql_database_url: str, raw_sql: RawSQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = parse_database_url(sql_database_url).backend
    broken = Migration(6, "broken", "CREATE TABLE broken (id TEXT);\nSELEC nonsense;", "")
    monkeypatch.setattr(
        stores._migrations, "load_migrations", lambda _: (*load_migrations(dialect), broken)
    )

    with pytest.raises(MigrationError, match="0006_broken"):
        migrate_up(sql_database_url)

    assert applied_versions(sql_database_url) == []
    assert table_names(raw_sql, dialect) == set()


def test_down_refuses_versions_it_does_not_know(
    sql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = parse_database_url(sql_database_url).backend
    newer = Migration(6, "from_the_future", "CREATE TABLE future (id TEXT);", "DROP TABLE future;")
    monkeypatch.setattr(
        stores._migrations, "load_migrations", lambda _: (*load_migrations(dialect), newer)
    )
    migrate_up(sql_database_url)
    monkeypatch.undo()  # back to this release, which does not know migration 6

    status = migration_status(sql_database_url)

    assert [(s.version, s.known) for s in status][-1] == (6, False)
    with pytest.raises(MigrationError, match="newer than this release"):
        migrate_down(sql_database_url)
    assert applied_versions(sql_database_url) == [1, 2, 3, 4, 5, 6]


def test_memory_needs_no_migrations() -> None:
    assert migrate_up("memory://") == []
    assert migrate_down("memory://", steps=None) == []
    assert migration_status("memory://") == []


def test_negative_steps_are_refused() -> None:
    with pytest.raises(ValueError):
        migrate_down("memory://", steps=-1)
    with pytest.raises(ValueError):
        migrate_up("memory://", steps=-1)


def test_migration_records_keep_their_sql_out_of_the_repr() -> None:
    migration = load_migrations("sqlite")[0]
    assert "CREATE TABLE" in migration.up_sql
    assert "CREATE TABLE" not in repr(migration)
