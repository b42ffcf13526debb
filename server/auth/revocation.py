"""Revoked tokens, sessions and users, as checked on every protected call.

The store holds the revocations (`token_revocations`); each process keeps the active
ones in memory and re-reads them when its copy is older than `max_age` (5 s), so a
protected call costs no query in the common case. The bound this gives:

- a revocation made through this process counts at once (it is added to the copy);
- one made by another worker or instance counts within `max_age`;
- while the database cannot be read the last copy is used for at most `stale_limit`
  (60 s) past its age, then protected calls answer 503 rather than trust it longer
  (`RevocationsUnavailable`, which the app answers as a `ServiceUnavailable`).

Entries are forgotten when they can no longer matter: a `jti` at the token's `exp`, a
session or user at the moment every access token they could reject has expired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from engine.clock import Clock
from server.errors import ServiceUnavailable
from stores import RevocationStore, StoreError, TokenRevocation

REVOCATION_MAX_AGE_SECONDS = 5.0
REVOCATION_STALE_LIMIT_SECONDS = 60.0


class RevocationsUnavailable(ServiceUnavailable):
    """The revocation list is too old to trust and the database cannot be read."""

    description = "token revocations cannot be checked: the database is unavailable"


class RevocationList:
    def __init__(
        self,
        store: RevocationStore,
        clock: Clock,
        *,
        max_age: float = REVOCATION_MAX_AGE_SECONDS,
        stale_limit: float = REVOCATION_STALE_LIMIT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_age = max_age
        self.stale_limit = stale_limit
        self._monotonic = monotonic
        self._entries: dict[tuple[str, str], TokenRevocation] = {}
        self._loaded_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def revoke(self, revocation: TokenRevocation) -> None:
        """Store the revocation and count it in this process at once."""
        await self.store.revoke(revocation)
        self._merge(revocation)

    async def is_revoked(
        self, *, jti: str | None, session_id: str | None, user_id: str | None, issued_at: datetime
    ) -> bool:
        await self._refresh_if_stale()
        now = self.clock()

        def active(kind: str, key: str | None) -> TokenRevocation | None:
            entry = self._entries.get((kind, key)) if key is not None else None
            return entry if entry is not None and entry.expires_at > now else None

        if active("jti", jti) or active("session", session_id):
            return True
        user = active("user", user_id)
        return user is not None and user.not_before is not None and issued_at < user.not_before

    async def load(self) -> None:
        """Read the active revocations now (at start; raises when the store fails)."""
        self._attempted_at = self._monotonic()
        self._replace(await self.store.list_active(self.clock()))

    async def _refresh_if_stale(self) -> None:
        # One refresh at a time; requests arriving meanwhile use the copy they find.
        if self._monotonic() - self._attempted_at >= self.max_age and not self._lock.locked():
            async with self._lock:
                self._attempted_at = self._monotonic()
                try:
                    active = await self.store.list_active(self.clock())
                except StoreError:
                    pass  # keep the copy, within the stale limit checked below
                else:
                    self._replace(active)
        if self._monotonic() - self._loaded_at > self.max_age + self.stale_limit:
            raise RevocationsUnavailable("the revocation list could not be read from the database")

    def _replace(self, active: list[TokenRevocation]) -> None:
        self._entries = {}
        for revocation in active:
            self._merge(revocation)
        self._loaded_at = self._monotonic()

    def _merge(self, revocation: TokenRevocation) -> None:
        key = (revocation.kind, revocation.key)
        known = self._entries.get(key)
        if known is not None:
            not_before = revocation.not_before
            if known.not_before is not None and not_before is not None:
                not_before = max(known.not_before, not_before)
            revocation = TokenRevocation(
                kind=revocation.kind, key=revocation.key, created_at=known.created_at,
                expires_at=max(known.expires_at, revocation.expires_at), not_before=not_before,
            )
        self._entries[key] = revocation


__all__ = [
    "REVOCATION_MAX_AGE_SECONDS",
    "REVOCATION_STALE_LIMIT_SECONDS",
    "RevocationList",
    "RevocationsUnavailable",
]
