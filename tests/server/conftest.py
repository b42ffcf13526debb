"""Fixtures of the server tests: a private copy of the shipped policies, an app built on
it, and an httpx client talking to the app through the ASGI transport (no sockets).

Process-level tests (hot reload, workers, signals) start a real `idgw serve` on a free
loopback port with `ServerProcess`; every wait in them is bounded by a deadline.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.audit import RecentEvents
from server.settings import Settings, load_settings
from tests.stores.conftest import postgres_server_url  # noqa: F401  (a fixture of the process tests)

REPO = Path(__file__).resolve().parents[2]
SHIPPED_POLICIES = REPO / "policies"
IDGW = Path(sys.executable).with_name("idgw")

ADULT_WITHOUT_CREDENTIAL: dict[str, Any] = {
    "sanctions_listed": False,
    "citizen_valid": True,
    "is_over_18": True,
    "has_credential": False,
    "context": {"national_id": "AB123456"},
}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, target)
    return target


@pytest.fixture
def make_settings(policy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    for name in list(os.environ):
        if name.startswith("IDGW_") and not name.startswith("IDGW_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(policy_dir.parent)  # no stray .env from the working tree

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "policy_dir": policy_dir, "data_api_auth": "none", "log_format": "json", "policy_reload": False,
            "database_url": "memory://",  # never ./idgw.db: the lifespan opens the stores
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def app(make_settings: Callable[..., Settings], log_stream: io.StringIO) -> Starlette:
    return create_app(make_settings(), log_stream=log_stream, events=RecentEvents())


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        yield c


def log_records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def assert_error_shape(response: httpx.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["status_code"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert body["request_id"] == response.headers["x-request-id"]
    if error is not None:
        assert body["error"] == error, body
    assert "Traceback" not in response.text
    return body


# -- real server processes --------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class ServerProcess:
    """`idgw serve` on a free loopback port, its output collected in a file."""

    #: What answers 200 once the process serves.
    ready_path = "/health/ready"

    def __init__(self, policy_dir: Path, workdir: Path, workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / f"server-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("IDGW_", "PROMETHEUS_"))}
        environment.update(
            {"IDGW_DATA_API_AUTH": "none", "IDGW_LOG_FORMAT": "json", "IDGW_DATABASE_URL": "memory://", **env}
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(policy_dir, workers), cwd=workdir, env=environment, stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.base_url, timeout=5.0)

    def command(self, policy_dir: Path, workers: int) -> list[str]:
        return [str(IDGW), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(workers), "--policy-dir", str(policy_dir)]

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                return self.client.get(self.ready_path).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, interval=0.1)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def policies(self) -> dict[str, Any]:
        response = self.client.get("/v1/policies")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stop(self, timeout: float = 15.0) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(policy_dir: Path, workers: int = 1, kind: type[ServerProcess] = ServerProcess,
              **env: str) -> ServerProcess:
        server = kind(policy_dir, tmp_path, workers, **env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
