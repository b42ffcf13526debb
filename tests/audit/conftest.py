"""Fixtures of the audit tests.

PostgreSQL comes from `IDGW_TEST_DATABASE_URL` through the stores tests' fixtures (own
schema per test; with `IDGW_TEST_REQUIRE_SERVICES=1` a missing server fails). Outages
are made with `TcpProxy`, a loopback proxy in front of PostgreSQL (or NATS) that a test
stops (refusing connections and cutting the open ones) and starts again on the same
port. Every wait is bounded by a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from server.audit import AuditPublisher, SubjectRefs
from server.events import DecisionMade
from server.settings import AuditSettings
from stores import Stores, open_stores, parse_database_url
from tests.server.conftest import make_settings, policy_dir  # noqa: F401  (fixtures: settings, the shipped policies)
from tests.stores.conftest import (  # noqa: F401  (fixtures)
    REQUIRE_SERVICES_VARIABLE,
    postgres_server_url,
    postgres_url,
)

NATS_URL_VARIABLE = "IDGW_TEST_NATS_URL"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class TcpProxy:
    """A loopback TCP proxy to `target` (host, port) on a port of its own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread.start()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):  # ends at EOF or when cut
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _target_of(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture
def postgres_proxy(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:  # noqa: F811
    """A started proxy to the test PostgreSQL, and the test schema's URL through it."""
    proxy = TcpProxy(_target_of(postgres_url, 5432))
    proxy.start()
    try:
        yield proxy, proxy.url_for(postgres_url)
    finally:
        proxy.close()


def reachable(url: str, default_port: int, what: str) -> str:
    """`url`, once its server accepts a connection; else skip, or fail under
    IDGW_TEST_REQUIRE_SERVICES=1 (CI)."""
    try:
        with socket.create_connection(_target_of(url, default_port), timeout=3):
            pass
    except OSError as exc:
        reason = f"{what} at {url} is unreachable ({exc})"
        if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
            pytest.fail(f"{reason} and {REQUIRE_SERVICES_VARIABLE}=1: {what} is required")
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def nats_url() -> str:
    return reachable(os.environ.get(NATS_URL_VARIABLE, DEFAULT_NATS_URL), 4222, "NATS")


@pytest.fixture
def refs() -> SubjectRefs:
    return SubjectRefs(b"k" * 32)


@pytest.fixture
def make_publisher(tmp_path: Path, refs: SubjectRefs) -> Callable[..., AuditPublisher]:
    def make(write_timeout: float = 10.0, **overrides: Any) -> AuditPublisher:
        values: dict[str, Any] = {"spill_dir": tmp_path / "spill", "flush_ms": 50, "drain_timeout_ms": 10_000}
        values.update(overrides)
        return AuditPublisher(AuditSettings(**values), refs, write_timeout=write_timeout)

    return make


@pytest.fixture
async def memory() -> AsyncIterator[Stores]:
    async with await open_stores("memory://") as stores:
        yield stores


def decision(n: int, subject: str | None = "user-1", **fields: Any) -> DecisionMade:
    values: dict[str, Any] = {
        "decision_id": f"dec_{n}", "purpose": "age_verification", "decision": "pass",
        "reason": "all_checks_passed", "policy_revision": "sha256:abc",
        "timestamp": datetime.now(UTC).isoformat(), "request_id": f"req-{n}", "subject": subject,
    }
    values.update(fields)
    return DecisionMade(**values)


async def eventually(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Await `predicate()` (sync or async) until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def run_sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    """Statements as the superuser of the test server, straight to it (no proxy)."""
    rows: list[tuple[object, ...]] = []
    with psycopg.connect(parse_database_url(url).target, autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
    return rows


def request_ids(url: str) -> list[str]:
    return [str(r[0]) for r in run_sql(url, "SELECT request_id FROM audit_events ORDER BY seq")]
