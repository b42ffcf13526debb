"""Fixtures of the token tests: a gateway per store backend with its lifespan run, a clock
the tests move, logins, tokens signed with the gateway's own key (for forgeries), and a
gateway served by uvicorn on a loopback port for real HTTP clients (PyJWKClient, a
consumer gateway in external OIDC mode).

Backends: memory and SQLite always; PostgreSQL from `IDGW_TEST_DATABASE_URL` through the
store tests' fixtures (a schema per test, dropped afterwards). Without it those tests
skip, unless `IDGW_TEST_REQUIRE_SERVICES=1`, where a missing server fails them.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette

from server.app import create_app
from server.audit import RecentEvents
from server.auth import AuthService
from server.auth.tokens import ACCESS_TOKEN_TYP, sign
from server.settings import Settings, load_settings
from tests.stores.conftest import _url_for as url_for
from tests.stores.conftest import postgres_server_url, postgres_url  # noqa: F401  (fixtures url_for asks for)

ISSUER = "http://gateway.test"
CLIENT_ID = "demo-client"

POLICY = """\
purposes:
  adult_check:
    description: Is the subject an adult?
    evidence:
      - is_over_18
    rules:
      - if: is_over_18
        then: pass
        reason: adult
      - else: fail
        reason: underage
"""


class FakeClock:
    """The service clock of a test: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# -- databases: the store tests' PostgreSQL fixtures (a schema per test) ---------------


@pytest.fixture(params=["memory", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request, request.param, tmp_path)


# -- apps -------------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    for name in list(os.environ):
        if name.startswith("IDGW_") and not name.startswith("IDGW_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env, and nothing written to the working tree
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir(exist_ok=True)
    (policy_dir / "adult_check.yaml").write_text(POLICY)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "policy_dir": policy_dir, "policy_reload": False, "log_format": "json",
            "database_url": "memory://", "issuer": ISSUER, "data_api_auth": "bearer",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


def build_app(settings: Settings, clock: Callable[[], datetime] | None = None) -> Starlette:
    app = create_app(settings, log_stream=io.StringIO(), events=RecentEvents())
    if clock is not None:
        app.state.auth.clock = clock
    return app


@dataclass
class Gateway:
    """A started app and a client talking to it through the ASGI transport."""

    app: Starlette
    client: httpx.AsyncClient
    clock: FakeClock

    @property
    def auth(self) -> AuthService:
        service: AuthService = self.app.state.auth
        return service

    @property
    def events(self) -> list[Any]:
        return list(self.app.state.events.events)

    async def authorize(self, email: str = "ada@example.com", **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/auth/authorize", json={"email": email, "client_id": CLIENT_ID, **extra}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def login(self, email: str = "ada@example.com", **extra: Any) -> dict[str, Any]:
        session = await self.authorize(email, **extra)
        response = await self.client.post(
            "/auth/token", json={"grant_type": "session", "session_id": session["session_id"]}
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def userinfo(self, access_token: str) -> httpx.Response:
        return await self.client.get("/auth/userinfo", headers=bearer(access_token))

    async def forge(self, claims: dict[str, Any], typ: str = ACCESS_TOKEN_TYP) -> str:
        """A token signed with the gateway's own signing key: only the claims are wrong."""
        return sign(claims, await self.auth.keys.signing_key(), typ)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_invalid_token(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_token"
    assert body["request_id"] == response.headers["x-request-id"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    for word in words:
        assert word in body["error_description"], body


def claims_of(token: str) -> dict[str, Any]:
    """The claims without verification (for reading what the gateway put in)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@asynccontextmanager
async def started(app: Starlette, clock: FakeClock) -> AsyncIterator[Gateway]:
    """The app with its lifespan run (stores opened, keys loaded) and a client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
            yield Gateway(app, client, clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gateway(
    make_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[Gateway]:
    """A local-mode gateway on memory, then on SQLite."""
    async with started(build_app(make_settings(database_url=database_url), clock), clock) as gw:
        yield gw


# -- served on a loopback port -----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedApp:
    """An app served by uvicorn in a thread (lifespan included) on a loopback port."""

    def __init__(self, app: Starlette, port: int) -> None:
        self.app = app
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"the app did not start serving on {self.base_url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def serve() -> Iterator[Callable[..., ServedApp]]:
    """Start apps on loopback ports; each is stopped after the test."""
    running: list[ServedApp] = []

    def start(make_app: Callable[[str], Starlette]) -> ServedApp:
        port = free_port()
        served = ServedApp(make_app(f"http://127.0.0.1:{port}"), port)
        served.start()
        running.append(served)
        return served

    yield start
    for served in running:
        served.stop()
