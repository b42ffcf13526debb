"""SQLite behind the async :class:`~stores._database.Database` interface.

One connection per database, owned by one dedicated worker thread: every call is a
hop to that thread (``run_in_executor``), so the event loop never waits on disk I/O or
on a lock held by another process. One connection means one writer, which is what
SQLite allows anyway; an ``asyncio.Lock`` keeps a transaction's statements from
interleaving with other coroutines' statements on that connection.

Connections run in WAL mode (readers in other processes do not block the writer), with
foreign keys on, ``synchronous=FULL`` (a committed write survives power loss) and a
busy timeout so that several server processes wait for each other instead of failing.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import orjson

from stores._database import Codec, Executor, Params, Row
from stores._errors import (
    AppendOnlyViolation,
    Conflict,
    InvalidRecord,
    NotFound,
    StoreError,
    Unavailable,
)
from stores._records import as_utc

__all__ = ["SqliteCodec", "SqliteDatabase", "connect", "translate_error"]

BUSY_TIMEOUT_SECONDS = 5.0
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width (years padded): text order is time order
_T = TypeVar("_T")


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit) with WAL, foreign
    keys, full sync and the busy timeout. Shared by the stores and the migrations."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        raise translate_error(exc, f"cannot open SQLite database {path!r}: ") from exc
    return conn


def translate_error(exc: sqlite3.Error, prefix: str = "") -> StoreError:
    """The store error for a ``sqlite3`` exception (by its extended result code)."""
    code = getattr(exc, "sqlite_errorname", "")
    message = prefix + str(exc)
    if code == "SQLITE_CONSTRAINT_TRIGGER" and "append-only" in message:
        return AppendOnlyViolation(message)
    if code in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return Conflict(message)
    if code == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return NotFound(f"{message}: a row it refers to does not exist")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return InvalidRecord(message)
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return Unavailable(message)
    return StoreError(message)


@lru_cache(maxsize=256)
def _sqlite_sql(sql: str) -> str:
    """Queries are written with psycopg's ``%(name)s``; sqlite3 spells it ``:name``."""
    return re.sub(r"%\((\w+)\)s", r":\1", sql)


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    # Always drain: an unfinished statement would keep its implicit transaction open.
    rows = cursor.fetchall()
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


class SqliteCodec:
    """Timestamps as fixed-width ISO-8601 UTC text; JSON and lists as JSON text."""

    def __init__(self) -> None:
        # The last time written and its text: an audit batch's events share one datetime
        # object a second (their timestamps are parsed once), each written twice when it
        # carries a decision record.
        self._last: tuple[datetime | None, str | None] = (None, None)

    def time(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        last, text = self._last
        if value is last:
            return text
        utc = value if value.tzinfo is UTC else as_utc(value)
        # _TIME_FORMAT through isoformat ("...+00:00" in UTC): a third of strftime's cost,
        # and it pads every year to four digits, where glibc's %Y writes year 999 as "999"
        text = utc.isoformat(timespec="microseconds")[:26] + "Z"
        self._last = (value, text)  # one tuple: threads never see half an update
        return text

    def read_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    def json(self, value: Mapping[str, Any]) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def read_json(self, value: Any) -> dict[str, Any]:
        # orjson first (replay reads records by the hundred thousand); the standard
        # decoder for what orjson refuses but SQLite may hold (an escaped lone surrogate)
        try:
            decoded: dict[str, Any] = orjson.loads(value)
        except orjson.JSONDecodeError:
            decoded = json.loads(value)
        return decoded

    def texts(self, value: Sequence[str]) -> str:
        return json.dumps(list(value))

    def read_texts(self, value: Any) -> tuple[str, ...]:
        return tuple(json.loads(value))


class SqliteDatabase:
    """The SQLite database at ``path``; open it with :meth:`open`."""

    dialect = "sqlite"

    def __init__(self, path: str, *, blocking: bool = False) -> None:
        self.codec: Codec = SqliteCodec()
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idgw-sqlite")
        #: Statements run on the event loop's own thread, blocking it: only for a process
        #: whose loop serves no requests (the audit writer process). Handing each
        #: statement to the database thread and back cost it more CPU than SQLite did.
        self.blocking = blocking
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str, *, blocking: bool = False) -> SqliteDatabase:
        database = cls(path, blocking=blocking)
        try:
            await database._call(database._connect)
        except BaseException:
            database._thread.shutdown(wait=False)
            raise
        return database

    # -- runs on the worker thread -------------------------------------------------

    def _connect(self) -> None:
        self._conn = connect(self._path)

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite database is closed")
        return self._conn

    def _fetch(self, sql: str, params: Params | None) -> list[Row]:
        return _rows(self._connection.execute(_sqlite_sql(sql), params or {}))

    def _execute(self, sql: str, params: Params | None) -> int:
        cursor = self._connection.execute(_sqlite_sql(sql), params or {})
        _rows(cursor)
        return cursor.rowcount

    def _execute_all(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        self._begin()
        try:
            counts = [self._execute(sql, params) for sql, params in statements]
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return counts

    def _begin(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._connection.execute("COMMIT")

    def _rollback(self) -> None:
        # SQLite rolls back by itself after some errors; a second ROLLBACK would fail
        # and hide the error that caused it.
        if self._connection.in_transaction:
            self._connection.execute("ROLLBACK")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the event loop side -------------------------------------------------------

    async def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        def guarded() -> _T:
            try:
                return function(*args)
            except sqlite3.Error as exc:
                raise translate_error(exc) from exc

        if self.blocking:
            return guarded()
        return await asyncio.get_running_loop().run_in_executor(self._thread, guarded)

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self._lock:
            return await self._call(self._fetch, sql, params)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        async with self._lock:
            return await self._call(self._execute, sql, params)

    async def execute_all(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        # one hand-off to the thread for the whole transaction (four otherwise: BEGIN,
        # two statements, COMMIT), each a wait for the GIL under load
        async with self._lock:
            return await self._call(self._execute_all, statements)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            try:
                await self._call(self._begin)
                yield _SqliteTransaction(self)
                await self._call(self._commit)
            except BaseException:
                # The worker thread runs calls in the order they were submitted, so this
                # rollback follows the statement that was running even when the awaiting
                # task was cancelled (and is a no-op when BEGIN itself failed).
                await self._call(self._rollback)
                raise

    async def ping(self) -> None:
        await self.fetch_all("SELECT 1")

    async def close(self) -> None:
        async with self._lock:
            await self._call(self._close)
        self._thread.shutdown(wait=True)


class _SqliteTransaction:
    """The executor of an open transaction: the lock is already held."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self._db._call(self._db._fetch, sql, params)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return await self._db._call(self._db._execute, sql, params)

