"""The schema itself, on SQLite and PostgreSQL: cascades, indexes, time zones, pragmas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stores import (
    Consent,
    Credential,
    RefreshToken,
    Session,
    User,
    open_stores,
    parse_database_url,
)

RawSQL = Callable[..., list[tuple[Any, ...]]]

# Every column a store looks rows up by, sorts by or purges by.
LOOKUP_COLUMNS = {
    ("users", "id"),
    ("users", "email"),
    ("sessions", "id"),
    ("sessions", "user_id"),
    ("sessions", "expires_at"),
    ("refresh_tokens", "token_hash"),
    ("refresh_tokens", "family_id"),
    ("refresh_tokens", "user_id"),
    ("refresh_tokens", "session_id"),
    ("refresh_tokens", "expires_at"),
    ("token_revocations", "kind"),
    ("token_revocations", "expires_at"),
    ("consent_records", "id"),
    ("consent_records", "user_id"),
    ("verifiable_credentials", "id"),
    ("verifiable_credentials", "user_id"),
    ("audit_events", "id"),
    ("audit_events", "subject_ref"),
    ("audit_events", "timestamp"),
    ("audit_events", "decision_id"),
    ("audit_events", "stream_id"),
    ("audit_dead_letters", "event_id"),
    ("signing_keys", "kid"),
    ("signing_keys", "created_at"),
    ("signing_keys", "not_after"),
}


def _indexed_leading_columns(raw_sql: RawSQL, dialect: str) -> set[tuple[str, str]]:
    if dialect == "postgresql":
        rows = raw_sql(
            "SELECT t.relname, a.attname FROM pg_index i"
            " JOIN pg_class t ON t.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = t.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]"
            " WHERE n.nspname = current_schema()"
        )
        return {(table, column) for table, column in rows}
    indexed = set()
    tables = raw_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
    for (table,) in tables:
        for index in raw_sql("SELECT name FROM pragma_index_list(?)", (table,)):
            [(column,)] = raw_sql(
                "SELECT name FROM pragma_index_info(?) WHERE seqno = 0", (index[0],)
            )
            indexed.add((table, column))
    return indexed


async def test_every_lookup_column_leads_an_index(sql_database_url: str, raw_sql: RawSQL) -> None:
    async with await open_stores(sql_database_url):
        pass
    dialect = parse_database_url(sql_database_url).backend

    missing = LOOKUP_COLUMNS - _indexed_leading_columns(raw_sql, dialect)

    assert missing == set()


async def test_deleting_a_user_row_cascades(
    sql_database_url: str, raw_sql: RawSQL, now: datetime
) -> None:
    async with await open_stores(sql_database_url) as stores:
        await stores.users.create(User(id="u", email="e", created_at=now, updated_at=now))
        await stores.sessions.create(
            Session(
                id="s",
                user_id="u",
                client_id="c",
                status="active",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
        await stores.refresh_tokens.create(
            RefreshToken(
                token_hash="h",
                family_id="f",
                user_id="u",
                session_id="s",
                client_id="c",
                created_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
        await stores.consents.grant(Consent(id="c", user_id="u", purpose="login", granted_at=now))
        await stores.credentials.add(
            Credential(id="vc", type="AgeOver18", user_id="u", issuer="i", issued_at=now)
        )
    placeholder = "?" if parse_database_url(sql_database_url).backend == "sqlite" else "%s"

    raw_sql(f"DELETE FROM users WHERE id = {placeholder}", ("u",))

    for table in ("sessions", "refresh_tokens", "consent_records", "verifiable_credentials"):
        assert raw_sql(f"SELECT count(*) FROM {table}") == [(0,)], table


async def test_postgresql_timestamps_carry_a_time_zone(postgres_url: str) -> None:
    async with await open_stores(postgres_url) as stores:
        database = stores._database
        assert database is not None
        rows = await database.fetch_all(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type LIKE 'timestamp%'"
        )
    assert len(rows) >= 20
    assert [r for r in rows if r["data_type"] != "timestamp with time zone"] == []


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    async with await open_stores(f"sqlite:///{tmp_path / 'idgw.db'}") as stores:
        database = stores._database
        assert database is not None
        assert await database.fetch_one("PRAGMA journal_mode") == {"journal_mode": "wal"}
        assert await database.fetch_one("PRAGMA foreign_keys") == {"foreign_keys": 1}
        assert await database.fetch_one("PRAGMA synchronous") == {"synchronous": 2}  # FULL
