"""Contract of ConsentStore, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stores import Conflict, Consent, NotFound, Stores, User

YEAR = timedelta(days=365)


def _consent(consent_id: str, user_id: str, purpose: str, granted_at: datetime) -> Consent:
    return Consent(
        id=consent_id,
        user_id=user_id,
        purpose=purpose,
        granted_at=granted_at,
        expires_at=granted_at + YEAR,
    )


async def test_grant_then_find(stores: Stores, user: User, now: datetime) -> None:
    granted = await stores.consents.grant(_consent("c-1", user.id, "login", now))

    assert granted == _consent("c-1", user.id, "login", now)
    assert await stores.consents.find(user.id, "login") == granted
    assert await stores.consents.find(user.id, "vc_issuance") is None


async def test_granting_again_renews_the_same_record(
    stores: Stores, user: User, now: datetime
) -> None:
    await stores.consents.grant(_consent("c-1", user.id, "login", now))
    await stores.consents.revoke(user.id, ["login"], now)
    later = now + timedelta(days=10)

    renewed = await stores.consents.grant(_consent("c-new", user.id, "login", later))

    assert renewed == _consent("c-1", user.id, "login", later)  # id kept, revocation cleared
    assert await stores.consents.list_for_user(user.id) == [renewed]


async def test_revoke_is_idempotent(stores: Stores, user: User, now: datetime) -> None:
    await stores.consents.grant(_consent("c-1", user.id, "login", now))
    await stores.consents.grant(_consent("c-2", user.id, "registry_check", now))
    later = now + timedelta(hours=1)

    revoked = await stores.consents.revoke(
        user.id, ["registry_check", "login", "login", "never_granted"], later
    )

    assert [(c.purpose, c.revoked_at) for c in revoked] == [
        ("login", later),
        ("registry_check", later),
    ]
    assert await stores.consents.revoke(user.id, ["login"], later + timedelta(hours=1)) == []
    stored = await stores.consents.find(user.id, "login")
    assert stored is not None and stored.revoked_at == later


async def test_list_for_user_is_by_purpose_and_per_user(
    stores: Stores, user: User, now: datetime
) -> None:
    other = await stores.users.create(
        User(id="user-2", email="b@example.test", created_at=now, updated_at=now)
    )
    for n, purpose in enumerate(("vc_issuance", "login", "registry_check")):
        await stores.consents.grant(_consent(f"c-{n}", user.id, purpose, now))
    await stores.consents.grant(_consent("c-other", other.id, "login", now))

    listed = await stores.consents.list_for_user(user.id)

    assert [c.purpose for c in listed] == ["login", "registry_check", "vc_issuance"]
    assert await stores.consents.revoke(other.id, ["vc_issuance"], now) == []


async def test_grant_errors(stores: Stores, user: User, now: datetime) -> None:
    await stores.consents.grant(_consent("c-1", user.id, "login", now))
    with pytest.raises(Conflict):
        await stores.consents.grant(_consent("c-1", user.id, "registry_check", now))
    with pytest.raises(NotFound):
        await stores.consents.grant(_consent("c-2", "nobody", "login", now))
