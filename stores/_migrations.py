"""Schema migrations: numbered SQL files with an up and a down per dialect.

Files live in ``stores/migrations/<dialect>/NNNN_name.up.sql`` and ``.down.sql``; the
``schema_migrations`` table records which versions a database has. Each run is one
transaction that first takes a lock, so several server processes starting together
apply each migration once: on PostgreSQL a transaction-scoped advisory lock (keyed by
the schema, so test schemas do not wait for each other), on SQLite ``BEGIN IMMEDIATE``
(the database's write lock). A failing migration rolls the whole run back.

These functions are synchronous (the CLI calls them directly); the server awaits
:func:`apply_migrations`, which runs :func:`migrate_up` in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol

import psycopg

from stores import _postgres, _sqlite
from stores._errors import MigrationError, StoreError
from stores._url import parse_database_url

__all__ = [
    "Migration",
    "MigrationState",
    "apply_migrations",
    "load_migrations",
    "migrate_down",
    "migrate_up",
    "migration_status",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up_sql: str = field(repr=False)
    down_sql: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MigrationState:
    """One line of ``idgw migrate status``: ``applied_at`` is ``None`` while pending;
    ``known`` is false for a version applied by a newer release than this one."""

    version: int
    name: str
    applied_at: datetime | None
    known: bool = True


@cache
def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The dialect's migrations by version; ``MigrationError`` when a file is misnamed,
    a version lacks its up or down, or the versions are not 1, 2, 3, ..."""
    folder = resources.files("stores").joinpath("migrations", dialect)
    parts: dict[int, dict[str, str]] = {}
    names: dict[int, str] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not NNNN_name.up|down.sql")
        version, name, direction = int(match[1]), match[2], match[3]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"migration {version} has two names: {names[version]}, {name}")
        parts.setdefault(version, {})[direction] = entry.read_text(encoding="utf-8")
    migrations = []
    for expected, version in enumerate(sorted(parts), start=1):
        if version != expected:
            raise MigrationError(f"{dialect} migrations skip from {expected - 1} to {version}")
        if set(parts[version]) != {"up", "down"}:
            raise MigrationError(f"migration {version} needs both an up and a down file")
        migrations.append(
            Migration(version, names[version], parts[version]["up"], parts[version]["down"])
        )
    return tuple(migrations)


class _Session(Protocol):
    """A locked migration run on one database: one transaction."""

    def applied(self) -> dict[int, tuple[str, datetime]]: ...

    def run_script(self, sql: str) -> None: ...

    def record(self, migration: Migration, now: datetime) -> None: ...

    def forget(self, migration: Migration) -> None: ...


class _SqliteSession:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._codec = _sqlite.SqliteCodec()

    def applied(self) -> dict[int, tuple[str, datetime]]:
        rows = self._conn.execute("SELECT version, name, applied_at FROM schema_migrations")
        return {v: (name, self._codec.read_time(at)) for v, name, at in rows.fetchall()}

    def run_script(self, sql: str) -> None:
        # executescript() would COMMIT first; split into statements to stay in the
        # transaction. complete_statement() tells a terminating semicolon from one in a
        # string, a comment or a trigger body.
        *pieces, tail = sql.split(";")
        statement = ""
        for piece in pieces:
            statement += piece + ";"
            if sqlite3.complete_statement(statement):
                self._conn.execute(statement)
                statement = ""
        leftover = "\n".join(
            line for line in (statement + tail).splitlines() if not line.strip().startswith("--")
        )
        if leftover.strip():
            raise MigrationError(f"unterminated SQL statement: {leftover.strip()[:80]!r}")

    def record(self, migration: Migration, now: datetime) -> None:
        self._conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, self._codec.time(now)),
        )

    def forget(self, migration: Migration) -> None:
        self._conn.execute("DELETE FROM schema_migrations WHERE version = ?", (migration.version,))


class _PostgresSession:
    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn

    def applied(self) -> dict[int, tuple[str, datetime]]:
        rows = self._conn.execute("SELECT version, name, applied_at FROM schema_migrations")
        return {v: (name, at.astimezone(UTC)) for v, name, at in rows.fetchall()}

    def run_script(self, sql: str) -> None:
        # Bytes without parameters go verbatim (the % of RAISE formats included), and
        # several statements may go at once.
        self._conn.execute(sql.encode())

    def record(self, migration: Migration, now: datetime) -> None:
        self._conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
            (migration.version, migration.name, now),
        )

    def forget(self, migration: Migration) -> None:
        self._conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration.version,))


@contextmanager
def _sqlite_session(path: str) -> Iterator[_Session]:
    conn = _sqlite.connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        yield _SqliteSession(conn)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise _sqlite.translate_error(exc) from exc
    finally:
        conn.close()  # closing without COMMIT rolls back


@contextmanager
def _postgres_session(conninfo: str) -> Iterator[_Session]:
    with _postgres.translated_errors(), psycopg.connect(conninfo) as conn:
        # The connection block is one transaction: committed at its end, rolled back
        # on an exception. The advisory lock is released with it.
        conn.execute(
            "SELECT pg_advisory_xact_lock("
            "hashtextextended('idgw.schema_migrations:' || current_schema(), 0))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        yield _PostgresSession(conn)


@contextmanager
def _open_session(backend: str, target: str) -> Iterator[_Session]:
    if backend == "sqlite":
        with _sqlite_session(target) as session:
            yield session
    else:
        with _postgres_session(target) as session:
            yield session


_Plan = Callable[[tuple[Migration, ...], dict[int, tuple[str, datetime]]], list[Migration]]


def _run(url: str, direction: Direction, plan: _Plan) -> list[Migration]:
    parsed = parse_database_url(url)
    if parsed.backend == "memory":
        return []  # nothing to migrate: the memory stores need no schema
    migrations = load_migrations(parsed.backend)
    with _open_session(parsed.backend, parsed.target) as session:
        chosen = plan(migrations, session.applied())
        now = datetime.now(UTC)
        for migration in chosen:
            try:
                if direction == "up":
                    session.run_script(migration.up_sql)
                    session.record(migration, now)
                else:
                    session.run_script(migration.down_sql)
                    session.forget(migration)
            except (sqlite3.Error, psycopg.Error, StoreError) as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} ({direction}) failed,"
                    f" nothing was applied: {exc}"
                ) from exc
    return chosen


def _check_steps(steps: int | None) -> None:
    if steps is not None and steps < 0:
        raise ValueError("the number of migrations must not be negative")


def migrate_up(url: str, *, steps: int | None = None) -> list[Migration]:
    """Apply the pending migrations (all, or the next ``steps``); returns those applied."""
    _check_steps(steps)

    def plan(
        migrations: tuple[Migration, ...], applied: dict[int, tuple[str, datetime]]
    ) -> list[Migration]:
        pending = [m for m in migrations if m.version not in applied]
        return pending if steps is None else pending[:steps]

    return _run(url, "up", plan)


def migrate_down(url: str, *, steps: int | None = 1) -> list[Migration]:
    """Revert the last ``steps`` applied migrations (``None``: all of them, down to an
    empty schema); returns those reverted, newest first."""
    _check_steps(steps)

    def plan(
        migrations: tuple[Migration, ...], applied: dict[int, tuple[str, datetime]]
    ) -> list[Migration]:
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            raise MigrationError(
                f"the database has migration {unknown[-1]}, newer than this release:"
                " revert it with the release that applied it"
            )
        done = [m for m in reversed(migrations) if m.version in applied]
        return done if steps is None else done[:steps]

    return _run(url, "down", plan)


def migration_status(url: str) -> list[MigrationState]:
    """Every migration this release knows, applied or pending, plus any applied version
    it does not know, by version."""
    parsed = parse_database_url(url)
    if parsed.backend == "memory":
        return []
    migrations = load_migrations(parsed.backend)
    with _open_session(parsed.backend, parsed.target) as session:
        applied = session.applied()
    states = [
        MigrationState(m.version, m.name, applied.get(m.version, (m.name, None))[1])
        for m in migrations
    ]
    known = {m.version for m in migrations}
    states += [
        MigrationState(version, name, at, known=False)
        for version, (name, at) in applied.items()
        if version not in known
    ]
    return sorted(states, key=lambda state: state.version)


async def apply_migrations(url: str) -> list[Migration]:
    """Bring the database up to date (for the server's start): every pending migration,
    in a worker thread so the event loop keeps running."""
    return await asyncio.to_thread(migrate_up, url)
