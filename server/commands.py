"""What the `idgw` commands that open the database share: the `--database-url` option
and running one piece of work on the stores. Light at import (click only): the stores
are imported when a command runs, so `idgw policy ...` never loads the drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from stores import Stores

T = TypeVar("T")


def database_url_option(holding: str) -> Callable[[Any], Any]:
    """`--database-url` (env `IDGW_DATABASE_URL`), described as the database `holding` ..."""
    return click.option(
        "--database-url", envvar="IDGW_DATABASE_URL", default="sqlite:///./idgw.db", show_default=True,
        help=f"Database holding {holding} (env IDGW_DATABASE_URL).",
    )


def with_stores(database_url: str, work: Callable[[Stores], Awaitable[T]]) -> T:
    """`work(stores)` on the database at `database_url` (not migrated: the server does
    that); a store error is the command's one-line error."""
    from stores import StoreError, open_stores

    async def run() -> T:
        async with await open_stores(database_url, migrate=False) as stores:
            return await work(stores)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


__all__ = ["database_url_option", "with_stores"]
