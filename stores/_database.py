"""What the SQL stores need from a database driver: an async executor and a codec.

``stores._sql`` holds the queries, written once in the SQL both dialects accept, with
``%(name)s`` parameters; ``stores._sqlite`` and ``stores._postgres`` implement
:class:`Database` for their driver, converting values (:class:`Codec`) and driver
exceptions (into :mod:`stores._errors`) at this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

__all__ = ["Codec", "Database", "Executor", "Params", "Row"]

#: Named parameters (`%(name)s`); SQLite's audit batch alone binds a positional list (`?`).
Params = Mapping[str, Any] | Sequence[Any]
Row = dict[str, Any]


class Codec(Protocol):
    """Converts Python values to the driver's parameters and back, per column type."""

    def time(self, value: datetime | None) -> Any: ...

    def read_time(self, value: Any) -> datetime: ...

    def json(self, value: Mapping[str, Any]) -> Any: ...

    def read_json(self, value: Any) -> dict[str, Any]: ...

    def texts(self, value: Sequence[str]) -> Any: ...

    def read_texts(self, value: Any) -> tuple[str, ...]: ...


class Executor(Protocol):
    """Runs statements; inside a transaction they share it, outside each one commits."""

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params | None = None) -> list[Row]: ...

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...


class Database(Executor, Protocol):
    dialect: str
    codec: Codec

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """Statements run on the yielded executor commit together or not at all."""
        ...

    async def execute_all(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        """Run `statements` in one transaction, in one round trip to the database's
        thread or connection where the driver allows; the rows each changed."""
        ...

    async def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers."""
        ...

    async def close(self) -> None: ...
