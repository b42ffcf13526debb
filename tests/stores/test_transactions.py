"""Transactions on SQLite and PostgreSQL: all or nothing, also when cancelled."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from stores import Conflict, User, open_stores


async def test_a_failed_transaction_leaves_nothing_behind(
    sql_database_url: str, now: datetime
) -> None:
    async with await open_stores(sql_database_url) as stores:
        database = stores._database
        assert database is not None
        insert = (
            "INSERT INTO users (id, email, verified, created_at, updated_at)"
            " VALUES (%(id)s, %(email)s, false, %(now)s, %(now)s)"
        )
        params = {"email": "e", "now": database.codec.time(now)}

        with pytest.raises(Conflict):
            async with database.transaction() as tx:
                await tx.execute(insert, {**params, "id": "u-1"})
                await tx.execute(insert, {**params, "id": "u-2"})  # same email

        assert await database.fetch_all("SELECT id FROM users") == []


async def test_a_cancelled_transaction_is_rolled_back_and_the_store_still_works(
    sql_database_url: str, now: datetime
) -> None:
    async with await open_stores(sql_database_url) as stores:
        database = stores._database
        assert database is not None
        inside = asyncio.Event()

        async def interrupted() -> None:
            async with database.transaction() as tx:
                await tx.execute(
                    "INSERT INTO users (id, email, verified, created_at, updated_at)"
                    " VALUES ('u-1', 'e', false, %(now)s, %(now)s)",
                    {"now": database.codec.time(now)},
                )
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(interrupted())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await database.fetch_all("SELECT id FROM users") == []
        user = User(id="u-2", email="e", created_at=now, updated_at=now)
        assert await stores.users.create(user) == await stores.users.get("u-2")
