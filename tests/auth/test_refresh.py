"""Refresh tokens on every backend: opaque, stored as a hash, rotated on each use, reuse
revoking the whole login and audited, expiry after the login's 30 days."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from server.settings import Settings
from stores import open_stores, parse_database_url
from tests.auth.conftest import (
    FakeClock,
    Gateway,
    assert_invalid_token,
    build_app,
    claims_of,
    started,
)


@pytest.fixture
async def gw(make_settings: Callable[..., Settings], any_database_url: str, clock: FakeClock) -> AsyncIterator[Gateway]:
    """A gateway on memory, SQLite and PostgreSQL in turn."""
    async with started(build_app(make_settings(database_url=any_database_url), clock), clock) as gateway:
        yield gateway


async def refresh(gateway: Gateway, token: str, via_token_endpoint: bool = False) -> tuple[int, dict[str, str]]:
    if via_token_endpoint:
        response = await gateway.client.post("/auth/token", json={"grant_type": "refresh_token", "refresh_token": token})
    else:
        response = await gateway.client.post("/auth/refresh", json={"refresh_token": token})
    return response.status_code, response.json()


async def test_refresh_tokens_are_opaque_random_and_stored_as_hashes(gw: Gateway, any_database_url: str) -> None:
    tokens = await gw.login()
    value = tokens["refresh_token"]
    assert value.count(".") == 0
    assert len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) >= 32  # 256 bits
    stored = await gw.app.state.stores.refresh_tokens.get(hashlib.sha256(value.encode()).hexdigest())
    assert stored.used_at is None and stored.revoked_at is None
    assert stored.expires_at == gw.clock() + timedelta(days=30)
    if parse_database_url(any_database_url).backend == "sqlite":
        path = parse_database_url(any_database_url).target
        for name in (path, f"{path}-wal"):
            try:
                with open(name, "rb") as handle:
                    assert value.encode() not in handle.read()
            except FileNotFoundError:
                pass


async def test_each_refresh_rotates_the_token(gw: Gateway) -> None:
    first = await gw.login()
    status, second = await refresh(gw, first["refresh_token"])
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "openid"
    status, third = await refresh(gw, second["refresh_token"], via_token_endpoint=True)
    assert status == 200, third
    assert (await gw.userinfo(third["access_token"])).status_code == 200
    assert [e.reason for e in gw.events if e.action == "tokens_issued"] == ["session", "refresh_token", "refresh_token"]


async def test_reuse_revokes_the_family_and_is_audited(gw: Gateway) -> None:
    first = await gw.login()
    _, second = await refresh(gw, first["refresh_token"])

    status, body = await refresh(gw, first["refresh_token"])  # replayed: stolen?
    assert status == 400 and body["error"] == "invalid_grant"
    assert "already used" in body["error_description"]
    reused = [e for e in gw.events if e.action == "refresh_token_reused"]
    assert len(reused) == 1
    event = reused[0].to_dict()
    assert event["subject"] == claims_of(first["access_token"])["sub"]
    assert event["request_id"] and event["timestamp"].endswith("Z")

    # The legitimate holder's newer token dies with the family, and so do the access tokens.
    status, body = await refresh(gw, second["refresh_token"])
    assert status == 400 and "revoked" in body["error_description"]
    for access in (first["access_token"], second["access_token"]):
        assert_invalid_token(await gw.userinfo(access), "revoked")


async def test_concurrent_use_of_one_token_lets_one_through_and_revokes_the_family(gw: Gateway) -> None:
    tokens = await gw.login()
    results = await asyncio.gather(*(refresh(gw, tokens["refresh_token"]) for _ in range(2)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 400]
    winner = next(body for status, body in results if status == 200)
    status, _ = await refresh(gw, winner["refresh_token"])
    assert status == 400  # the family is revoked: the race looked like a replay


async def test_a_refresh_token_expires_with_its_login(gw: Gateway) -> None:
    tokens = await gw.login()
    gw.clock.advance(days=29, hours=23)
    status, renewed = await refresh(gw, tokens["refresh_token"])
    assert status == 200, renewed
    gw.clock.advance(hours=1)  # 30 days since the login: refreshing does not extend it
    status, body = await refresh(gw, renewed["refresh_token"])
    assert status == 400 and "expired" in body["error_description"]


async def test_unknown_refresh_token(gw: Gateway) -> None:
    status, body = await refresh(gw, "x" * 43)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_refresh_tokens_survive_a_restart(
    make_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url=durable_database_url)
    async with started(build_app(settings, clock), clock) as before:
        tokens = await before.login()
    async with started(build_app(settings, clock), clock) as after:
        status, renewed = await refresh(after, tokens["refresh_token"])
        assert status == 200, renewed
        status, _ = await refresh(after, tokens["refresh_token"])
        assert status == 400  # reuse detection works on what the first process stored


async def test_the_store_marks_the_rotated_token_used(any_database_url: str, make_settings: Callable[..., Settings],
                                                      clock: FakeClock) -> None:
    async with started(build_app(make_settings(database_url=any_database_url), clock), clock) as gateway:
        tokens = await gateway.login()
        await refresh(gateway, tokens["refresh_token"])
        stored = await gateway.app.state.stores.refresh_tokens.get(
            hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()
        )
        assert stored.used_at == clock()
    if parse_database_url(any_database_url).backend != "memory":
        async with await open_stores(any_database_url) as stores:
            assert await stores.refresh_tokens.get(stored.token_hash) == stored


async def test_the_audit_trail_takes_the_events(gw: Gateway) -> None:
    from server.audit.publisher import to_audit_event
    from server.audit.subject_refs import SubjectRefs

    tokens = await gw.login()
    await refresh(gw, tokens["refresh_token"])
    await refresh(gw, tokens["refresh_token"])
    refs = SubjectRefs(b"k" * 32)
    stored = [to_audit_event(event, refs, f"evt-{n}") for n, event in enumerate(gw.events)]
    assert [(e.action, e.decision, e.reason) for e in stored] == [
        ("user_created", "created", "authorize"),
        ("tokens_issued", "issued", "session"),
        ("tokens_issued", "issued", "refresh_token"),
        ("refresh_token_reused", "revoked", "family_revoked"),
    ]
    user_id = claims_of(tokens["access_token"])["sub"]
    assert {e.subject_ref for e in stored} == {refs.ref(user_id)} != {user_id}
