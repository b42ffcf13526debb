"""The in-process revocation list: the time bound within which another process's
revocation counts, and what happens while the database cannot be read."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from server.auth.revocation import RevocationList, RevocationsUnavailable
from stores import RevocationStore, TokenRevocation, Unavailable, memory_stores
from tests.auth.conftest import FakeClock


class Ticks:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


class FlakyRevocations:
    """A revocation store whose reads can be made to fail, over the in-memory one."""

    def __init__(self, inner: RevocationStore) -> None:
        self.inner = inner
        self.down = False
        self.reads = 0

    async def revoke(self, revocation: TokenRevocation) -> None:
        await self.inner.revoke(revocation)

    async def list_active(self, now: datetime) -> list[TokenRevocation]:
        self.reads += 1
        if self.down:
            raise Unavailable("database is down")
        return await self.inner.list_active(now)


def jti(key: str, clock: FakeClock) -> TokenRevocation:
    return TokenRevocation(kind="jti", key=key, created_at=clock(), expires_at=clock() + timedelta(hours=1))


@pytest.fixture
def parts() -> tuple[FlakyRevocations, FakeClock, Ticks]:
    return FlakyRevocations(memory_stores().revocations), FakeClock(), Ticks()


async def test_another_process_revocation_counts_within_max_age(parts: tuple[FlakyRevocations, FakeClock, Ticks]) -> None:
    store, clock, ticks = parts
    revocations = RevocationList(store, clock, max_age=5, monotonic=ticks)  # type: ignore[arg-type]
    await revocations.load()
    issued = clock() - timedelta(minutes=1)
    await store.inner.revoke(jti("j1", clock))  # written by another worker

    ticks.value = 4.9
    assert not await revocations.is_revoked(jti="j1", session_id=None, user_id=None, issued_at=issued)
    ticks.value = 5.0
    assert await revocations.is_revoked(jti="j1", session_id=None, user_id=None, issued_at=issued)
    assert store.reads == 2  # one at start, one when the copy was 5 s old


async def test_own_revocations_count_at_once(parts: tuple[FlakyRevocations, FakeClock, Ticks]) -> None:
    store, clock, ticks = parts
    revocations = RevocationList(store, clock, max_age=5, monotonic=ticks)  # type: ignore[arg-type]
    await revocations.load()
    await revocations.revoke(jti("j2", clock))
    assert await revocations.is_revoked(jti="j2", session_id=None, user_id=None, issued_at=clock())
    assert store.reads == 1


async def test_entries_lapse_and_user_cutoffs_compare_issue_times(parts: tuple[FlakyRevocations, FakeClock, Ticks]) -> None:
    store, clock, ticks = parts
    revocations = RevocationList(store, clock, max_age=5, monotonic=ticks)  # type: ignore[arg-type]
    await revocations.load()
    cutoff = clock()
    await revocations.revoke(TokenRevocation(kind="user", key="u1", not_before=cutoff, created_at=cutoff,
                                             expires_at=cutoff + timedelta(hours=1)))
    await revocations.revoke(jti("j3", clock))
    before, after = cutoff - timedelta(seconds=1), cutoff
    assert await revocations.is_revoked(jti=None, session_id=None, user_id="u1", issued_at=before)
    assert not await revocations.is_revoked(jti=None, session_id=None, user_id="u1", issued_at=after)
    clock.advance(hours=1)
    assert not await revocations.is_revoked(jti="j3", session_id=None, user_id="u1", issued_at=before)


async def test_a_database_outage_is_tolerated_for_the_stale_limit_then_fails_closed(
    parts: tuple[FlakyRevocations, FakeClock, Ticks],
) -> None:
    store, clock, ticks = parts
    revocations = RevocationList(store, clock, max_age=5, stale_limit=60, monotonic=ticks)  # type: ignore[arg-type]
    await revocations.revoke(jti("j4", clock))
    await revocations.load()
    store.down = True
    ticks.value = 30
    assert await revocations.is_revoked(jti="j4", session_id=None, user_id=None, issued_at=clock())
    ticks.value = 32
    assert await revocations.is_revoked(jti="j4", session_id=None, user_id=None, issued_at=clock())
    assert store.reads == 2  # a failed read is retried after max_age, not on every call
    ticks.value = 65.1
    with pytest.raises(RevocationsUnavailable):
        await revocations.is_revoked(jti="j4", session_id=None, user_id=None, issued_at=clock())
    store.down = False
    ticks.value = 71
    assert await revocations.is_revoked(jti="j4", session_id=None, user_id=None, issued_at=clock())

