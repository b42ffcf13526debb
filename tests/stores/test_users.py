"""Contract of UserStore, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from stores import (
    AuditEvent,
    Conflict,
    Consent,
    Credential,
    NotFound,
    RefreshToken,
    Session,
    Stores,
    TokenRevocation,
    User,
)


async def test_create_then_get_returns_an_equal_record(stores: Stores, now: datetime) -> None:
    paris = timezone(timedelta(hours=1))
    created = await stores.users.create(
        User(
            id="u-1",
            email="grace@example.test",
            first_name="Grace",
            last_name="Hopper",
            verified=True,
            created_at=now.astimezone(paris),
            updated_at=now,
        )
    )

    fetched = await stores.users.get("u-1")

    assert fetched == created
    assert fetched.created_at == now and fetched.created_at.utcoffset() == timedelta(0)
    assert await stores.users.get_by_email("grace@example.test") == created


async def test_missing_users_raise_not_found(stores: Stores, user: User) -> None:
    with pytest.raises(NotFound):
        await stores.users.get("nobody")
    with pytest.raises(NotFound):
        await stores.users.get_by_email("nobody@example.test")


async def test_taken_id_or_email_is_a_conflict(stores: Stores, user: User, now: datetime) -> None:
    with pytest.raises(Conflict):
        await stores.users.create(dataclasses.replace(user, email="other@example.test"))
    with pytest.raises(Conflict):
        await stores.users.create(dataclasses.replace(user, id="user-2"))


async def test_update_replaces_fields_but_keeps_created_at(
    stores: Stores, user: User, now: datetime
) -> None:
    later = now + timedelta(days=1)
    changed = dataclasses.replace(
        user,
        email="ada.l@example.test",
        first_name="Ada",
        verified=True,
        created_at=later,  # ignored: creation time is history
        updated_at=later,
    )

    updated = await stores.users.update(changed)

    assert updated == dataclasses.replace(changed, created_at=now)
    assert await stores.users.get(user.id) == updated


async def test_update_errors(stores: Stores, user: User, now: datetime) -> None:
    await stores.users.create(
        User(id="user-2", email="taken@example.test", created_at=now, updated_at=now)
    )
    with pytest.raises(Conflict):
        await stores.users.update(dataclasses.replace(user, email="taken@example.test"))
    with pytest.raises(NotFound):
        await stores.users.update(dataclasses.replace(user, id="nobody"))
    assert (await stores.users.get(user.id)).email == user.email


async def _give_user_data(stores: Stores, user_id: str, now: datetime) -> None:
    """Two sessions, three refresh tokens, two consents and one credential."""
    for n in (1, 2):
        await stores.sessions.create(
            Session(
                id=f"{user_id}-s{n}",
                user_id=user_id,
                client_id="c",
                status="active",
                created_at=now,
                expires_at=now + timedelta(hours=1),
            )
        )
    for n, session_n in ((1, 1), (2, 1), (3, 2)):
        await stores.refresh_tokens.create(
            RefreshToken(
                token_hash=f"{user_id}-h{n}",
                family_id=f"{user_id}-f",
                user_id=user_id,
                session_id=f"{user_id}-s{session_n}",
                client_id="c",
                created_at=now,
                expires_at=now + timedelta(days=30),
            )
        )
    for purpose in ("login", "registry_check"):
        await stores.consents.grant(
            Consent(id=f"{user_id}-{purpose}", user_id=user_id, purpose=purpose, granted_at=now)
        )
    await stores.credentials.add(
        Credential(
            id=f"{user_id}-vc",
            type="AgeOver18",
            user_id=user_id,
            issuer="idgw",
            issued_at=now,
            claims={"is_over_18": True},
        )
    )


async def test_erase_deletes_everything_of_the_user_and_counts_it(
    stores: Stores, user: User, now: datetime
) -> None:
    other = await stores.users.create(
        User(id="user-2", email="other@example.test", created_at=now, updated_at=now)
    )
    await _give_user_data(stores, user.id, now)
    await _give_user_data(stores, other.id, now)
    await stores.audit_events.append(
        [AuditEvent(id="e-1", timestamp=now, action="data_deleted", subject_ref="hmac-of-user")]
    )
    await stores.revocations.revoke(
        TokenRevocation(
            kind="user",
            key=user.id,
            not_before=now,
            expires_at=now + timedelta(hours=1),
            created_at=now,
        )
    )

    counts = await stores.users.erase(user.id)

    assert counts == {
        "users": 1,
        "sessions": 2,
        "refresh_tokens": 3,
        "consent_records": 2,
        "verifiable_credentials": 1,
    }
    with pytest.raises(NotFound):
        await stores.users.get(user.id)
    assert await stores.sessions.list_for_user(user.id) == []
    assert await stores.consents.list_for_user(user.id) == []
    assert await stores.credentials.list_for_user(user.id) == []
    with pytest.raises(NotFound):
        await stores.refresh_tokens.get(f"{user.id}-h1")
    # Someone else's data, the pseudonymous audit trail and revocations stay.
    assert len(await stores.sessions.list_for_user(other.id)) == 2
    assert len(await stores.consents.list_for_user(other.id)) == 2
    assert await stores.refresh_tokens.get(f"{other.id}-h3")
    assert await stores.audit_events.count() == 1
    assert await stores.revocations.is_revoked(
        jti=None, session_id=None, user_id=user.id, issued_at=now - timedelta(minutes=1), now=now
    )


async def test_erasing_a_missing_user_is_not_found(stores: Stores) -> None:
    with pytest.raises(NotFound):
        await stores.users.erase("nobody")
