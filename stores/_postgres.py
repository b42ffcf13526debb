"""PostgreSQL behind the async :class:`~stores._database.Database` interface.

psycopg 3's ``AsyncConnectionPool`` (by default 1 to 10 connections; ``min_size`` equal to
``max_size`` makes a fixed pool, whose connection count never moves): the event loop
never blocks on the network. Pooled connections are in autocommit mode, so a single
statement costs one round trip; :meth:`PostgresDatabase.transaction` opens an explicit
transaction. A connection is checked when taken from the pool, so a database restart
costs no failed request.

A lost connection is re-made for at most ``RECONNECT_TIMEOUT_SECONDS`` (2 s); then the
pool shrinks and the next request starts a new attempt at once, so a restarted database
is used again within about a second. psycopg_pool's default (300 s of attempts, the
delay doubling from 1 s) would wait for a lost connection's next attempt, later the
longer the outage lasted (tests/faults).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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

__all__ = ["PostgresCodec", "PostgresDatabase", "translate_error", "translated_errors"]

DEFAULT_POOL_MIN_SIZE = 1
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_POOL_TIMEOUT_SECONDS = 10.0
RECONNECT_TIMEOUT_SECONDS = 2.0


def translate_error(exc: Exception) -> StoreError:
    """The store error for a psycopg or pool exception (by SQLSTATE class)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, errors.RaiseException) and "append-only" in message:
        return AppendOnlyViolation(message)
    if isinstance(exc, errors.UniqueViolation):
        return Conflict(message)
    if isinstance(exc, errors.ForeignKeyViolation):
        return NotFound(f"{message}: a row it refers to does not exist")
    if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
        return InvalidRecord(message)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout):
        return Unavailable(message)
    return StoreError(message)


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise translate_error(exc) from exc


class PostgresCodec:
    """psycopg adapts datetimes and lists itself; JSON goes through ``Jsonb``."""

    def time(self, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    def read_time(self, value: Any) -> datetime:
        moment: datetime = value
        return moment.astimezone(UTC)

    def json(self, value: Mapping[str, Any]) -> Jsonb:
        return Jsonb(dict(value))

    def read_json(self, value: Any) -> dict[str, Any]:
        return dict(value)

    def texts(self, value: Sequence[str]) -> list[str]:
        return list(value)

    def read_texts(self, value: Any) -> tuple[str, ...]:
        return tuple(value)


class _PostgresExecutor:
    """Statements on one connection (inside or outside a transaction)."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        with translated_errors():
            cursor = await self._conn.execute(sql, params)
            return await cursor.fetchone()

    async def fetch_all(self, sql: str, params: Params | None = None) -> list[Row]:
        with translated_errors():
            cursor = await self._conn.execute(sql, params)
            return await cursor.fetchall()

    async def execute(self, sql: str, params: Params | None = None) -> int:
        with translated_errors():
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount


class PostgresDatabase:
    """A pool of connections to ``conninfo``; open it with :meth:`open`."""

    dialect = "postgresql"

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]]) -> None:
        self.codec: Codec = PostgresCodec()
        self._pool = pool

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        min_size: int = DEFAULT_POOL_MIN_SIZE,
        max_size: int = DEFAULT_POOL_MAX_SIZE,
        timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
    ) -> PostgresDatabase:
        """Open the pool with its ``min_size`` connections; ``Unavailable`` when they are
        not made within ``timeout``."""
        if not 1 <= min_size <= max_size:
            raise ValueError(f"the pool needs 1 <= min_size <= max_size, got {min_size} and {max_size}")
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
            name="idgw",
            open=False,
        )
        try:
            with translated_errors():
                await pool.open(wait=True, timeout=timeout)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_PostgresExecutor]:
        with translated_errors():
            async with self._pool.connection() as conn:
                yield _PostgresExecutor(conn)

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        async with self._connection() as executor:
            return await executor.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self._connection() as executor:
            return await executor.fetch_all(sql, params)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        async with self._connection() as executor:
            return await executor.execute(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        with translated_errors():
            async with self._pool.connection() as conn, conn.transaction():
                yield _PostgresExecutor(conn)

    async def execute_all(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        async with self.transaction() as tx:
            return [await tx.execute(sql, params) for sql, params in statements]

    async def ping(self) -> None:
        await self.fetch_all("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()
