"""Contract of CredentialStore, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from stores import Conflict, Credential, NotFound, Stores, User


def _credential(credential_id: str, user_id: str, issued_at: datetime) -> Credential:
    return Credential(
        id=credential_id,
        type="AgeOver18",
        user_id=user_id,
        issuer="https://idgw.example.test",
        issued_at=issued_at,
        claims={"is_over_18": True, "evidence": {"sources": ["citizen", "sanctions"], "n": 2}},
    )


async def test_add_then_get_round_trips_the_claims(
    stores: Stores, user: User, now: datetime
) -> None:
    added = await stores.credentials.add(_credential("vc-1", user.id, now))

    fetched = await stores.credentials.get("vc-1")

    assert fetched == added
    fetched.claims["is_over_18"] = False  # a copy: the store is not edited through it
    assert (await stores.credentials.get("vc-1")).claims["is_over_18"] is True


async def test_errors(stores: Stores, user: User, now: datetime) -> None:
    await stores.credentials.add(_credential("vc-1", user.id, now))
    with pytest.raises(Conflict):
        await stores.credentials.add(_credential("vc-1", user.id, now))
    with pytest.raises(NotFound):
        await stores.credentials.add(_credential("vc-2", "nobody", now))
    with pytest.raises(NotFound):
        await stores.credentials.get("vc-2")
    with pytest.raises(NotFound):
        await stores.credentials.revoke("vc-2", now)


async def test_list_for_user_is_oldest_first(stores: Stores, user: User, now: datetime) -> None:
    for credential_id, minutes in (("vc-b", 5), ("vc-a", 5), ("vc-c", 0)):
        await stores.credentials.add(
            _credential(credential_id, user.id, now + timedelta(minutes=minutes))
        )

    listed = await stores.credentials.list_for_user(user.id)

    assert [c.id for c in listed] == ["vc-c", "vc-a", "vc-b"]
    assert await stores.credentials.list_for_user("nobody") == []


async def test_revoke_keeps_the_first_revocation_time(
    stores: Stores, user: User, now: datetime
) -> None:
    added = await stores.credentials.add(_credential("vc-1", user.id, now))

    revoked = await stores.credentials.revoke("vc-1", now + timedelta(hours=1))
    again = await stores.credentials.revoke("vc-1", now + timedelta(hours=2))

    assert revoked == dataclasses.replace(added, revoked_at=now + timedelta(hours=1))
    assert again == revoked == await stores.credentials.get("vc-1")
