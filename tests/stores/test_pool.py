"""The PostgreSQL pool's size: what ``IDGW_DATABASE_POOL_MIN`` and ``_MAX`` promise,
counted in the server's own ``pg_stat_activity``, not in the pool's bookkeeping."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stores._postgres import PostgresDatabase
from tests.stores.conftest import (
    connections_named,
    connections_named_after_close,
    with_application_name,
)


async def _busy(database: PostgresDatabase, queries: int) -> None:
    """``queries`` statements at once, each holding its connection for 50 ms."""
    await asyncio.gather(*(database.execute("SELECT pg_sleep(0.05)") for _ in range(queries)))


def test_a_fixed_pool_holds_its_connections_from_the_start_and_never_more(
    postgres_server_url: str, postgres_url: str
) -> None:
    name = f"idgw_pool_{uuid.uuid4().hex[:12]}"

    async def main() -> list[int]:
        database = await PostgresDatabase.open(with_application_name(postgres_url, name), min_size=3, max_size=3)
        try:
            counts = [connections_named(postgres_server_url, name)]
            await _busy(database, 12)  # four times the pool: requests queue, none is opened
            counts.append(connections_named(postgres_server_url, name))
            return counts
        finally:
            await database.close()

    assert asyncio.run(main()) == [3, 3]
    assert connections_named_after_close(postgres_server_url, name) == 0  # closing the pool closes them all


def test_a_growing_pool_starts_at_its_minimum_and_stops_at_its_maximum(
    postgres_server_url: str, postgres_url: str
) -> None:
    name = f"idgw_pool_{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[int, int]:
        database = await PostgresDatabase.open(with_application_name(postgres_url, name), min_size=1, max_size=4)
        try:
            before = connections_named(postgres_server_url, name)
            for _ in range(5):  # the pool grows one connection per wait it sees
                await _busy(database, 16)
            return before, connections_named(postgres_server_url, name)
        finally:
            await database.close()

    before, after = asyncio.run(main())
    assert before == 1
    assert 1 < after <= 4


def test_a_minimum_above_the_maximum_is_refused(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="min_size <= max_size"):
        asyncio.run(PostgresDatabase.open(postgres_url, min_size=5, max_size=2))
