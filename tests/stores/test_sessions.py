"""Contract of SessionStore, on every backend."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from stores import Conflict, NotFound, RefreshToken, Session, Stores, User


def _session(session_id: str, user_id: str, created_at: datetime, **changes: Any) -> Session:
    session = Session(
        id=session_id,
        user_id=user_id,
        client_id="client-1",
        status="pending_consent",
        created_at=created_at,
        expires_at=created_at + timedelta(hours=1),
    )
    return dataclasses.replace(session, **changes)


async def test_create_then_get(stores: Stores, session: Session) -> None:
    assert await stores.sessions.get(session.id) == session
    assert session.requested_scope == ("openid", "profile")


async def test_an_empty_scope_round_trips(stores: Stores, user: User, now: datetime) -> None:
    created = await stores.sessions.create(_session("s-empty", user.id, now))
    assert (await stores.sessions.get("s-empty")).requested_scope == () == created.requested_scope


async def test_errors(stores: Stores, session: Session, now: datetime) -> None:
    with pytest.raises(Conflict):
        await stores.sessions.create(session)
    with pytest.raises(NotFound):
        await stores.sessions.create(_session("s-2", "nobody", now))
    with pytest.raises(NotFound):
        await stores.sessions.get("nobody")
    with pytest.raises(NotFound):
        await stores.sessions.set_status("nobody", "revoked")


async def test_set_status(stores: Stores, session: Session) -> None:
    updated = await stores.sessions.set_status(session.id, "revoked")
    assert updated == dataclasses.replace(session, status="revoked")
    assert await stores.sessions.get(session.id) == updated


async def test_set_status_with_expected_is_a_compare_and_set(stores: Stores, session: Session) -> None:
    assert session.status == "active"
    with pytest.raises(Conflict):
        await stores.sessions.set_status(session.id, "revoked", expected="pending_consent")
    assert (await stores.sessions.get(session.id)).status == "active"
    won = await stores.sessions.set_status(session.id, "revoked", expected="active")
    assert won.status == "revoked"
    with pytest.raises(Conflict):  # a second caller expecting the old status loses
        await stores.sessions.set_status(session.id, "revoked", expected="active")
    with pytest.raises(NotFound):
        await stores.sessions.set_status("nobody", "active", expected="pending_consent")


async def test_list_for_user_is_oldest_first(stores: Stores, user: User, now: datetime) -> None:
    for session_id, minutes in (("s-b", 2), ("s-c", 0), ("s-a", 2)):
        await stores.sessions.create(
            _session(session_id, user.id, now + timedelta(minutes=minutes))
        )

    listed = await stores.sessions.list_for_user(user.id)

    assert [s.id for s in listed] == ["s-c", "s-a", "s-b"]
    assert await stores.sessions.list_for_user("nobody") == []


async def test_purge_expired_takes_the_sessions_refresh_tokens_along(
    stores: Stores, user: User, now: datetime
) -> None:
    await stores.sessions.create(_session("old", user.id, now - timedelta(hours=2)))
    await stores.sessions.create(_session("edge", user.id, now - timedelta(hours=1)))
    await stores.sessions.create(_session("live", user.id, now))
    for session_id in ("old", "live"):
        await stores.refresh_tokens.create(
            RefreshToken(
                token_hash=f"hash-{session_id}",
                family_id=session_id,
                user_id=user.id,
                session_id=session_id,
                client_id="client-1",
                created_at=now,
                expires_at=now + timedelta(days=30),
            )
        )

    assert await stores.sessions.purge_expired(now) == 2

    assert [s.id for s in await stores.sessions.list_for_user(user.id)] == ["live"]
    with pytest.raises(NotFound):
        await stores.refresh_tokens.get("hash-old")
    assert (await stores.refresh_tokens.get("hash-live")).session_id == "live"
