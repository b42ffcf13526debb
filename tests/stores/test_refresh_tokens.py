"""Contract of RefreshTokenStore, on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta

import pytest

from stores import Conflict, NotFound, RefreshToken, Session, Stores


@pytest.fixture
async def token(stores: Stores, session: Session, now: datetime) -> RefreshToken:
    return await stores.refresh_tokens.create(
        RefreshToken(
            token_hash="hash-1",
            family_id="family-1",
            user_id=session.user_id,
            session_id=session.id,
            client_id=session.client_id,
            scope=("openid", "offline_access"),
            created_at=now,
            expires_at=now + timedelta(days=30),
        )
    )


async def test_create_then_get(stores: Stores, token: RefreshToken) -> None:
    assert await stores.refresh_tokens.get("hash-1") == token


async def test_create_errors(stores: Stores, token: RefreshToken) -> None:
    with pytest.raises(Conflict):
        await stores.refresh_tokens.create(token)
    with pytest.raises(NotFound):
        await stores.refresh_tokens.create(
            dataclasses.replace(token, token_hash="hash-2", session_id="no-session")
        )
    with pytest.raises(NotFound):
        await stores.refresh_tokens.get("unknown")


async def test_rotate_marks_the_token_used_and_issues_its_successor(
    stores: Stores, token: RefreshToken, now: datetime
) -> None:
    later = now + timedelta(minutes=5)

    new = await stores.refresh_tokens.rotate(
        "hash-1", new_token_hash="hash-2", now=later, expires_at=later + timedelta(days=30)
    )

    assert new == dataclasses.replace(
        token, token_hash="hash-2", created_at=later, expires_at=later + timedelta(days=30)
    )
    assert await stores.refresh_tokens.get("hash-2") == new
    assert (await stores.refresh_tokens.get("hash-1")).used_at == later


async def test_rotating_a_used_revoked_or_unknown_token_fails(
    stores: Stores, token: RefreshToken, now: datetime
) -> None:
    expires = now + timedelta(days=30)
    await stores.refresh_tokens.rotate(
        "hash-1", new_token_hash="hash-2", now=now, expires_at=expires
    )
    with pytest.raises(Conflict):  # reuse
        await stores.refresh_tokens.rotate(
            "hash-1", new_token_hash="hash-3", now=now, expires_at=expires
        )
    await stores.refresh_tokens.revoke_family("family-1", now)
    with pytest.raises(Conflict):
        await stores.refresh_tokens.rotate(
            "hash-2", new_token_hash="hash-4", now=now, expires_at=expires
        )
    with pytest.raises(NotFound):
        await stores.refresh_tokens.rotate(
            "unknown", new_token_hash="hash-5", now=now, expires_at=expires
        )


async def test_a_failed_rotation_changes_nothing(
    stores: Stores, token: RefreshToken, now: datetime
) -> None:
    await stores.refresh_tokens.create(dataclasses.replace(token, token_hash="taken"))

    with pytest.raises(Conflict):
        await stores.refresh_tokens.rotate(
            "hash-1", new_token_hash="taken", now=now, expires_at=now + timedelta(days=30)
        )

    assert (await stores.refresh_tokens.get("hash-1")).used_at is None  # rolled back


async def test_of_two_concurrent_rotations_exactly_one_wins(
    stores: Stores, token: RefreshToken, now: datetime
) -> None:
    expires = now + timedelta(days=30)
    results = await asyncio.gather(
        *(
            stores.refresh_tokens.rotate(
                "hash-1", new_token_hash=f"new-{n}", now=now, expires_at=expires
            )
            for n in range(4)
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, RefreshToken)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if r not in winners)


async def test_revocations_count_tokens_newly_revoked(
    stores: Stores, token: RefreshToken, session: Session, now: datetime
) -> None:
    rotated = await stores.refresh_tokens.rotate(
        "hash-1", new_token_hash="hash-2", now=now, expires_at=now + timedelta(days=30)
    )
    await stores.refresh_tokens.create(
        dataclasses.replace(token, token_hash="hash-other", family_id="family-2")
    )

    assert await stores.refresh_tokens.revoke_family("family-1", now) == 2
    assert await stores.refresh_tokens.revoke_family("family-1", now) == 0
    assert (await stores.refresh_tokens.get(rotated.token_hash)).revoked_at == now
    assert (await stores.refresh_tokens.get("hash-other")).revoked_at is None
    assert await stores.refresh_tokens.revoke_for_session(session.id, now) == 1
    assert await stores.refresh_tokens.revoke_for_user(session.user_id, now) == 0


async def test_revoke_for_user(stores: Stores, token: RefreshToken, now: datetime) -> None:
    assert await stores.refresh_tokens.revoke_for_user(token.user_id, now) == 1
    assert (await stores.refresh_tokens.get("hash-1")).revoked_at == now


async def test_purge_expired(stores: Stores, token: RefreshToken, now: datetime) -> None:
    await stores.refresh_tokens.create(
        dataclasses.replace(token, token_hash="expired", expires_at=now)
    )

    assert await stores.refresh_tokens.purge_expired(now) == 1

    with pytest.raises(NotFound):
        await stores.refresh_tokens.get("expired")
    assert await stores.refresh_tokens.get("hash-1") == token
