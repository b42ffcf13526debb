"""Contract of SigningKeyStore, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from stores import Conflict, NotFound, SigningKey, Stores

PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"


def _key(kid: str, created_at: datetime) -> SigningKey:
    return SigningKey(
        kid=kid,
        alg="ES256",
        private_key_pem=PEM,
        public_jwk={"kty": "EC", "crv": "P-256", "x": "AA", "y": "BB", "kid": kid},
        created_at=created_at,
    )


async def test_add_then_get(stores: Stores, now: datetime) -> None:
    added = await stores.signing_keys.add(_key("kid-1", now))

    assert await stores.signing_keys.get("kid-1") == added
    with pytest.raises(Conflict):
        await stores.signing_keys.add(_key("kid-1", now))
    with pytest.raises(NotFound):
        await stores.signing_keys.get("kid-2")


async def test_current_is_the_newest_key_not_retired(stores: Stores, now: datetime) -> None:
    assert await stores.signing_keys.current() is None
    await stores.signing_keys.add(_key("old", now))
    await stores.signing_keys.add(_key("new", now + timedelta(days=1)))
    assert (await stores.signing_keys.current()) == _key("new", now + timedelta(days=1))

    await stores.signing_keys.retire("new", retired_at=now, not_after=None)
    current = await stores.signing_keys.current()
    assert current is not None and current.kid == "old"

    await stores.signing_keys.retire("old", retired_at=now, not_after=None)
    assert await stores.signing_keys.current() is None


async def test_retire_and_the_published_keys(stores: Stores, now: datetime) -> None:
    for n in range(3):
        await stores.signing_keys.add(_key(f"kid-{n}", now + timedelta(days=n)))
    unpublish_at = now + timedelta(hours=2)

    retired = await stores.signing_keys.retire("kid-0", retired_at=now, not_after=unpublish_at)

    assert retired == dataclasses.replace(
        _key("kid-0", now), retired_at=now, not_after=unpublish_at
    )
    assert [k.kid for k in await stores.signing_keys.list_keys()] == ["kid-2", "kid-1", "kid-0"]
    published_later = await stores.signing_keys.list_keys(published_at=unpublish_at)
    assert [k.kid for k in published_later] == ["kid-2", "kid-1"]
    assert len(await stores.signing_keys.list_keys(published_at=now)) == 3
    with pytest.raises(NotFound):
        await stores.signing_keys.retire("kid-9", retired_at=now, not_after=None)


async def test_purge_expired_deletes_unpublished_keys(stores: Stores, now: datetime) -> None:
    await stores.signing_keys.add(_key("kid-0", now))
    await stores.signing_keys.add(_key("kid-1", now))
    await stores.signing_keys.retire("kid-0", retired_at=now, not_after=now)

    assert await stores.signing_keys.purge_expired(now) == 1

    assert [k.kid for k in await stores.signing_keys.list_keys()] == ["kid-1"]


def test_the_private_key_stays_out_of_the_repr(now: datetime) -> None:
    assert "PRIVATE" not in repr(_key("kid-1", now))
