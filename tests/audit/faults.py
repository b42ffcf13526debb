"""Stores that fail on purpose, around the real in-memory stores (test doubles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stores import AuditEvent, AuditEventStore, InvalidRecord, Unavailable


class FlakyEvents:
    """An AuditEventStore that is down while `down` is set, refuses the events whose id
    is in `poison`, and can lose the answer of a committed append (`lose_answers`)."""

    def __init__(self, inner: AuditEventStore) -> None:
        self.inner = inner
        self.down = False
        self.poison: set[str] = set()
        self.lose_answers = 0
        self.appends = 0

    async def append(self, events: Sequence[AuditEvent], *, all_or_nothing: bool = False) -> int:
        if self.down:
            raise Unavailable("connection refused")
        self.appends += 1
        refused = [e.id for e in events if e.id in self.poison]
        if refused:
            raise InvalidRecord(f"value refused for event {refused[0]}")
        new = await self.inner.append(events, all_or_nothing=all_or_nothing)
        if self.lose_answers:
            self.lose_answers -= 1
            raise Unavailable("connection lost after commit")
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
