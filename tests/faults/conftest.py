"""Fixtures of the fault tests: private PostgreSQL, Redis and NATS servers a test may stop
and start again, and a modest load on a real `idgw serve` that records every answer.

The shared services (PostgreSQL on 5432, Redis on 6379, NATS on 4222) are never touched:
each test starts its own on a free loopback port, in a directory of its own, and removes
it afterwards.

- PostgreSQL: a cluster made by Debian's PostgreSQL binaries (`initdb`, `pg_ctl`; the
  newest `/usr/lib/postgresql/<version>/bin`, or `IDGW_TEST_POSTGRES_BIN`). `initdb`
  refuses to run as root, so under root the cluster belongs to the `postgres` user (or
  `nobody`) and its commands run as that user.
- Redis: `redis-server` without persistence.
- NATS: `nats-server -js` with its own store directory, kept across a restart.

A missing binary skips the tests, unless `IDGW_TEST_REQUIRE_SERVICES=1` (CI), where it
fails them, as for the other service tests. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.server.conftest import free_port, policy_dir, wait_until  # noqa: F401  (fixture: the shipped policies)
from tests.stores.conftest import REQUIRE_SERVICES_VARIABLE

POSTGRES_BIN_VARIABLE = "IDGW_TEST_POSTGRES_BIN"
CLIENT_ID = "fault-tests"


def unusable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
        pytest.fail(f"{reason} and {REQUIRE_SERVICES_VARIABLE}=1: the fault tests need it")
    pytest.skip(reason)


def _binary(name: str, *candidates: str) -> str:
    for candidate in (*candidates, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    unusable(f"{name} is not installed")


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, what: str, timeout: float = 15.0) -> None:
    def accepting() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(accepting, timeout, interval=0.05)


# -- PostgreSQL ---------------------------------------------------------------------------


def _postgres_bin() -> Path:
    configured = os.environ.get(POSTGRES_BIN_VARIABLE)
    if configured:
        candidates = [Path(configured)]
    else:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                          key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        candidates = list(reversed(versions))
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    unusable("PostgreSQL's initdb and pg_ctl are not installed (set IDGW_TEST_POSTGRES_BIN)")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the cluster: this process's user, or under root one initdb accepts."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    unusable("running as root and neither a postgres nor a nobody user exists for initdb")


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free port; `stop()` and `start()` it at
    will. Trust authentication on 127.0.0.1 only; `fsync=off` (nothing to survive)."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.user = _unprivileged_user()
        self.root = Path(tempfile.mkdtemp(prefix="idgw-faults-postgres-"))
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result = subprocess.run([str(self.bin / tool), *args], cwd=self.root, capture_output=True, text=True,
                                timeout=timeout, check=False, **as_user)
        if result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=60 -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options,
                  "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop: `fast` ends every session and shuts down cleanly; `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- Redis --------------------------------------------------------------------------------


class PrivateRedis:
    """`redis-server` on a free port, nothing persisted."""

    def __init__(self, workdir: Path) -> None:
        self.binary = _binary("redis-server", "/usr/bin/redis-server")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process, "redis-server")

    def stop(self) -> None:
        """Kill it: its connections are cut and new ones refused."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and connects succeed, but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
        self.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    try:
        redis.start()
        yield redis
    finally:
        redis.close()


# -- NATS ---------------------------------------------------------------------------------


class PrivateNats:
    """`nats-server -js` on a free port; its store directory survives a restart."""

    def __init__(self, workdir: Path) -> None:
        self.binary = _binary("nats-server", "/usr/sbin/nats-server")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.workdir / "store"),
             "-l", str(self.workdir / "nats.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process, "nats-server")

    def stop(self) -> None:
        """SIGTERM: the server shuts down, closing every connection."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def close(self) -> None:
        self.stop()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    nats_server = PrivateNats(tmp_path / "nats")
    try:
        nats_server.start()
        yield nats_server
    finally:
        nats_server.close()


# -- the gateway's callers and a modest load ----------------------------------------------


def login(client: httpx.Client, email: str, *consents: str) -> dict[str, str]:
    """Log `email` in (authorize, session grant), grant `consents`; the bearer header."""
    session = client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID, "scope": "openid"})
    assert session.status_code == 200, session.text
    tokens = client.post("/auth/token", json={"grant_type": "session", "session_id": session.json()["session_id"]})
    assert tokens.status_code == 200, tokens.text
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    if consents:
        granted = client.post("/auth/consent", json={"purposes": list(consents)}, headers=headers)
        assert granted.status_code == 200, granted.text
    return headers


@dataclass(frozen=True)
class Answer:
    """One request of the load: when it was sent and answered (monotonic), and how."""

    endpoint: str
    n: int  # the how-manieth request of its thread
    sent: float
    received: float
    status: int  # 0: no HTTP answer (the connection failed)
    body: Any  # the decoded JSON, or the text
    request_id: str | None

    @property
    def decision_id(self) -> str | None:
        return self.body.get("decision_id") if isinstance(self.body, dict) else None


Call = Callable[[httpx.Client, int], httpx.Response]


@dataclass
class Load:
    """Threads, one per `add`, each sending its request in a loop with a pause between
    answers; every answer is recorded. `stop()` ends them (after their request in flight)."""

    base_url: str
    timeout: float = 30.0
    answers: list[Answer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, call: Call, pause: float) -> None:
        thread = threading.Thread(target=self._run, args=(endpoint, call, pause), daemon=True,
                                  name=f"load-{endpoint}")
        self._threads.append(thread)
        thread.start()

    def _run(self, endpoint: str, call: Call, pause: float) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            n = 0
            while not self._stopping.is_set():  # bounded by stop()
                sent = time.monotonic()
                try:
                    response = call(client, n)
                except httpx.TransportError as exc:
                    answer = Answer(endpoint, n, sent, time.monotonic(), 0, repr(exc), None)
                else:
                    try:
                        body: Any = response.json()
                    except ValueError:
                        body = response.text
                    answer = Answer(endpoint, n, sent, time.monotonic(), response.status_code, body,
                                    response.headers.get("x-request-id"))
                with self._lock:
                    self.answers.append(answer)
                n += 1
                self._stopping.wait(pause)

    def of(self, endpoint: str, *, sent_after: float = float("-inf"), sent_before: float = float("inf"),
           status: int | None = None) -> list[Answer]:
        with self._lock:
            answers = list(self.answers)
        return [a for a in answers if a.endpoint == endpoint and sent_after <= a.sent < sent_before
                and (status is None or a.status == status)]

    def wait_for(self, endpoint: str, count: int, timeout: float, **where: Any) -> None:
        wait_until(lambda: len(self.of(endpoint, **where)) >= count, timeout, interval=0.05)

    def stop(self) -> list[Answer]:
        self._stopping.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"
        return list(self.answers)


@pytest.fixture
def load() -> Iterator[Callable[[str], Load]]:
    started: list[Load] = []

    def start(base_url: str) -> Load:
        started.append(Load(base_url))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def assert_unavailable_shape(answer: Answer) -> None:
    """The JSON error shape of a 503 `unavailable` (docs/api.md)."""
    body = answer.body
    assert isinstance(body, dict), body
    assert body["error"] == "unavailable", body
    assert body["status_code"] == 503
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert body["request_id"] == answer.request_id
    assert "Traceback" not in str(body)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The sum of `name`'s samples matching `labels` in `GET /metrics`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
