"""Contract of RevocationStore, on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stores import Stores, TokenRevocation

HOUR = timedelta(hours=1)


def _revocation(kind: str, key: str, now: datetime, **times: datetime) -> TokenRevocation:
    return TokenRevocation(
        kind=kind,  # type: ignore[arg-type]
        key=key,
        expires_at=times.get("expires_at", now + HOUR),
        created_at=now,
        not_before=times.get("not_before"),
    )


async def _is_revoked(
    stores: Stores,
    now: datetime,
    *,
    jti: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    issued_at: datetime | None = None,
) -> bool:
    return await stores.revocations.is_revoked(
        jti=jti,
        session_id=session_id,
        user_id=user_id,
        issued_at=issued_at or now - timedelta(minutes=1),
        now=now,
    )


async def test_a_revoked_jti_or_session_is_revoked(stores: Stores, now: datetime) -> None:
    await stores.revocations.revoke(_revocation("jti", "jti-1", now))
    await stores.revocations.revoke(_revocation("session", "session-1", now))

    assert await _is_revoked(stores, now, jti="jti-1")
    assert await _is_revoked(stores, now, jti="jti-2", session_id="session-1", user_id="u")
    assert not await _is_revoked(stores, now, jti="jti-2", session_id="session-2", user_id="u")
    # A jti is not a session id: kinds do not mix.
    assert not await _is_revoked(stores, now, session_id="jti-1")


async def test_a_user_revocation_rejects_tokens_issued_before_it(
    stores: Stores, now: datetime
) -> None:
    await stores.revocations.revoke(_revocation("user", "user-1", now, not_before=now))

    assert await _is_revoked(stores, now, user_id="user-1", issued_at=now - timedelta(seconds=1))
    assert not await _is_revoked(stores, now, user_id="user-1", issued_at=now)
    assert not await _is_revoked(stores, now, user_id="user-1", issued_at=now + HOUR / 2)
    assert not await _is_revoked(stores, now, user_id="user-2")


async def test_expired_revocations_no_longer_count(stores: Stores, now: datetime) -> None:
    await stores.revocations.revoke(_revocation("jti", "jti-1", now, expires_at=now))
    assert not await _is_revoked(stores, now, jti="jti-1")
    assert await _is_revoked(stores, now - timedelta(seconds=1), jti="jti-1")


async def test_revoking_again_keeps_the_later_instants(stores: Stores, now: datetime) -> None:
    await stores.revocations.revoke(
        _revocation("user", "user-1", now, not_before=now, expires_at=now + 2 * HOUR)
    )
    await stores.revocations.revoke(
        _revocation("user", "user-1", now, not_before=now - HOUR, expires_at=now + HOUR)
    )
    await stores.revocations.revoke(
        _revocation("user", "user-1", now, not_before=now + HOUR, expires_at=now + HOUR)
    )

    [stored] = await stores.revocations.list_active(now)

    assert stored.not_before == now + HOUR
    assert stored.expires_at == now + 2 * HOUR
    assert stored.created_at == now


async def test_list_active_and_purge_expired(stores: Stores, now: datetime) -> None:
    await stores.revocations.revoke(_revocation("session", "s", now))
    await stores.revocations.revoke(_revocation("jti", "b", now))
    await stores.revocations.revoke(_revocation("jti", "a", now))
    await stores.revocations.revoke(_revocation("jti", "gone", now, expires_at=now))

    active = await stores.revocations.list_active(now)

    assert [(r.kind, r.key) for r in active] == [("jti", "a"), ("jti", "b"), ("session", "s")]
    assert await stores.revocations.purge_expired(now) == 1
    assert await stores.revocations.purge_expired(now) == 0
    assert len(await stores.revocations.list_active(now - HOUR)) == 3


def test_only_user_revocations_carry_not_before(now: datetime) -> None:
    with pytest.raises(ValueError):
        _revocation("user", "u", now)
    with pytest.raises(ValueError):
        _revocation("jti", "j", now, not_before=now)
    with pytest.raises(ValueError):
        _revocation("everything", "x", now)
