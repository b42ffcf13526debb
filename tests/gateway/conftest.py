"""Fixtures of the gateway-flow tests (consent, registries, credentials, decisions, data
rights): a gateway on a private copy of the shipped policies, its lifespan run, on
memory and SQLite (`gateway`) or also PostgreSQL (`any_gateway`), with a clock the
tests move, an httpx client through the ASGI transport, and logged-in callers.

    async def test_x(gateway: GatewayClient) -> None:
        ada = await gateway.caller("ada@example.com")             # authorize + token
        await gateway.grant(ada, "registry_check")               # POST /auth/consent
        r = await gateway.client.post("/registry/citizen", json={...}, headers=ada.headers)

PostgreSQL comes from `IDGW_TEST_DATABASE_URL` through the store tests' fixtures (a
schema per test); without it those tests skip, unless `IDGW_TEST_REQUIRE_SERVICES=1`,
where a missing server fails them.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from stores import AuditEvent
from tests.auth.conftest import (
    ISSUER,
    FakeClock,
    Gateway,
    bearer,
    build_app,
    started,
)
from tests.server.conftest import make_settings, policy_dir  # noqa: F401  (fixtures)
from tests.stores.conftest import _url_for as url_for
from tests.stores.conftest import postgres_server_url, postgres_url  # noqa: F401  (fixtures url_for asks for)


@dataclass(frozen=True)
class Caller:
    """A logged-in user: their id, access token and the header that carries it."""

    user_id: str
    email: str
    tokens: dict[str, Any]

    @property
    def access_token(self) -> str:
        return str(self.tokens["access_token"])

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


class GatewayClient(Gateway):
    """The token tests' `Gateway` (app, client, clock, events) plus callers and consents."""

    async def caller(self, email: str = "ada@example.com") -> Caller:
        """Log in through POST /auth/authorize and POST /auth/token."""
        session = await self.authorize(email)
        response = await self.client.post(
            "/auth/token", json={"grant_type": "session", "session_id": session["session_id"]}
        )
        assert response.status_code == 200, response.text
        return Caller(user_id=session["user_id"], email=email, tokens=response.json())

    async def later(self, caller: Caller, **delta: float) -> Caller:
        """Move the clock on by `delta` (timedelta arguments) and log the caller in again:
        their access token may have expired meanwhile."""
        self.clock.advance(**delta)
        return await self.caller(caller.email)

    async def grant(self, caller: Caller, *purposes: str) -> httpx.Response:
        response = await self.client.post("/auth/consent", json={"purposes": list(purposes)},
                                          headers=caller.headers)
        assert response.status_code == 200, response.text
        return response

    def actions(self) -> list[str]:
        """The audited actions so far, in order."""
        return [e.action for e in self.events]


# -- databases ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


# -- apps ---------------------------------------------------------------------------------


@pytest.fixture
def gateway_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:  # noqa: F811
    """The server tests' settings (policy copy, memory stores, no stray IDGW_*), with
    bearer tokens on every API and the token tests' issuer."""

    def make(**overrides: Any) -> Settings:
        return make_settings(**{"issuer": ISSUER, "data_api_auth": "bearer", **overrides})

    return make


@asynccontextmanager
async def start_gateway(settings: Settings, clock: FakeClock | None = None) -> AsyncIterator[GatewayClient]:
    """An app for `settings` with its lifespan run, on `clock`, and a client."""
    clock = clock or FakeClock()
    async with started(build_app(settings, clock), clock) as gw:
        yield GatewayClient(gw.app, gw.client, gw.clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gateway(
    gateway_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[GatewayClient]:
    """A gateway on memory, then on SQLite."""
    async with start_gateway(gateway_settings(database_url=database_url), clock) as gw:
        yield gw


@pytest.fixture
async def any_gateway(
    gateway_settings: Callable[..., Settings], any_database_url: str, clock: FakeClock
) -> AsyncIterator[GatewayClient]:
    """A gateway on memory, SQLite, then PostgreSQL."""
    async with start_gateway(gateway_settings(database_url=any_database_url), clock) as gw:
        yield gw


@pytest.fixture
async def regulated_gateway(
    gateway_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[GatewayClient]:
    """A gateway with IDGW_REGULATED_MODE=true, on memory, then on SQLite."""
    async with start_gateway(gateway_settings(database_url=database_url, regulated_mode=True), clock) as gw:
        yield gw


# -- with the real audit publisher (data export, the whole flow) ----------------------------


@asynccontextmanager
async def start_audited_gateway(settings: Settings, clock: FakeClock | None = None) -> AsyncIterator[GatewayClient]:
    """Like `start_gateway`, but with the app's own `AuditPublisher`, so events are stored
    in the app's database (its key and spill files land in the test's directory)."""
    clock = clock or FakeClock()
    app = create_app(settings, log_stream=io.StringIO())
    app.state.auth.clock = clock
    async with started(app, clock) as gw:
        yield GatewayClient(gw.app, gw.client, gw.clock)


async def stored_events(gateway: GatewayClient) -> list[AuditEvent]:
    """Every stored audit event, once the publisher has stored what was emitted so far."""
    assert await gateway.app.state.events.wait_delivered(10), "the audit publisher did not catch up"
    events: list[AuditEvent] = await gateway.app.state.stores.audit_events.query()
    return events


@pytest.fixture
async def audited_gateway(
    gateway_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[GatewayClient]:
    """A gateway storing its audit events, on memory, then on SQLite."""
    async with start_audited_gateway(gateway_settings(database_url=database_url), clock) as gw:
        yield gw
