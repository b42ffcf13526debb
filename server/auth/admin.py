"""Key administration for `idgw keys list|rotate`: the same `KeyRing` the server uses,
run against the database directly. A running server sees a rotation within
`KEY_REFRESH_SECONDS`; until then it may still sign with the retired key, which stays
published long enough for that (`RETIRED_KEY_GRACE`).
"""

from __future__ import annotations

from datetime import datetime

from engine.clock import utc_now, utc_text
from server.auth.keys import KeyRing
from stores import SigningKey, open_stores, parse_database_url


class KeyAdminError(Exception):
    """The keys cannot be administered at this database URL."""


def _check_url(database_url: str) -> None:
    if parse_database_url(database_url).backend == "memory":
        raise KeyAdminError(
            "with memory:// the keys live inside the running server and die with it; "
            "point --database-url (IDGW_DATABASE_URL) at the server's SQLite file or PostgreSQL"
        )


async def list_signing_keys(database_url: str) -> list[SigningKey]:
    """Every stored key, newest first (those already unpublished included until purged)."""
    _check_url(database_url)
    async with await open_stores(database_url) as stores:
        return await stores.signing_keys.list_keys()


async def rotate_signing_key(database_url: str, alg: str) -> tuple[SigningKey, list[SigningKey]]:
    """Add a signing key of `alg`; returns it and the keys as they now stand."""
    _check_url(database_url)
    async with await open_stores(database_url) as stores:
        ring = KeyRing(stores.signing_keys, alg, utc_now)
        new = await ring.rotate()
        return new.record, await stores.signing_keys.list_keys()


def key_state(key: SigningKey, now: datetime) -> str:
    """`signing`, `retired, published until ...` or `unpublished`, for listings."""
    if key.retired_at is None:
        return "signing"
    if key.not_after is None or key.not_after > now:
        until = "" if key.not_after is None else f" until {utc_text(key.not_after)}"
        return f"retired, published{until}"
    return "unpublished"


__all__ = ["KeyAdminError", "key_state", "list_signing_keys", "rotate_signing_key"]
