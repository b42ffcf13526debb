"""The `AuditSink` contract, run against every registered backend and the test double
(as the stores' contract tests run against every store): built from settings by the
registry, each keeps what is emitted, before its start, from another thread, across its
stop and the next start, counts it the same way and reports readiness the same way."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError

from server.audit import (
    AuditPublisher,
    AuditSink,
    JetStreamPublisher,
    RecentEvents,
    ShippingPublisher,
    audit_sink,
    backend_names,
    delivery_mode,
)
from server.events import SensitiveOperation
from server.settings import Settings
from stores import Stores, open_stores
from tests.audit.conftest import decision

SINKS = ["inline", "process", "nats", "double"]


@dataclass
class Case:
    """One backend under test: `make()` builds a sink (the same configuration each
    time), `stored()` the request ids of what is stored (the double: what it keeps)."""

    name: str
    make: Callable[[], AuditSink]
    stores: Stores
    stored: Callable[[], Awaitable[list[str]]]

    @property
    def storing(self) -> bool:
        return self.name != "double"


async def delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):  # no sink of the test started
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture(params=SINKS)
async def case(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
               tmp_path: Path) -> AsyncIterator[Case]:
    name: str = request.param
    common: dict[str, Any] = {"key_dir": tmp_path / "keys", "audit_spill_dir": tmp_path / "spill",
                              "audit_flush_ms": 50, "log_level": "WARNING"}
    made: list[AuditSink] = []
    stream = None
    if name == "double":
        double = RecentEvents()
        async with await open_stores("memory://") as stores:

            async def kept() -> list[str]:
                return [e.request_id or "" for e in double.events]

            yield Case(name, lambda: double, stores, kept)
        return
    if name == "process":
        settings = make_settings(database_url=f"sqlite:///{tmp_path / 'audit.db'}", audit_writer="process", **common)
    elif name == "nats":
        nats_url = request.getfixturevalue("nats_url")
        stream = f"IDGW_TEST_{uuid.uuid4().hex[:12]}"
        settings = make_settings(audit_queue="nats", nats_url=nats_url, audit_nats_stream=stream, **common)
    else:
        settings = make_settings(**common)

    def make() -> AuditSink:
        sink = audit_sink(settings)
        made.append(sink)
        return sink

    async with await open_stores(settings.database_url) as stores:  # migrated before a child opens it

        async def stored() -> list[str]:
            return [e.request_id or "" for e in await stores.audit_events.query(limit=10_000)]

        try:
            yield Case(name, make, stores, stored)
        finally:
            for sink in made:
                await sink.stop()
            if stream is not None:
                await delete_stream(settings.nats_url or "", stream)


async def start(case: Case, sink: AuditSink) -> None:
    await sink.start(case.stores.audit_events, case.stores.audit_dead_letters)


def test_every_delivery_mode_is_a_registered_backend(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    assert backend_names() == ["inline", "nats", "process"]
    sql = f"sqlite:///{tmp_path / 'x.db'}"
    keys = tmp_path / "keys"
    assert isinstance(audit_sink(make_settings(key_dir=keys)), AuditPublisher)
    assert isinstance(audit_sink(make_settings(key_dir=keys, database_url=sql), served=True), ShippingPublisher)
    nats_settings = make_settings(key_dir=keys, audit_queue="nats", nats_url="nats://127.0.0.1:1")
    assert type(audit_sink(nats_settings)) is JetStreamPublisher
    # auto: a writer process only under `idgw serve`, on a SQL database
    assert delivery_mode(make_settings(database_url=sql)) == "inline"
    assert delivery_mode(make_settings(database_url=sql), served=True) == "process"
    assert delivery_mode(make_settings(), served=True) == "inline"  # memory://
    assert delivery_mode(make_settings(database_url=sql, audit_writer="inline"), served=True) == "inline"
    assert delivery_mode(nats_settings, served=True) == "nats"


async def test_a_sink_implements_the_interface(case: Case) -> None:
    sink = case.make()
    assert isinstance(sink, AuditSink)
    assert sink.subject_refs.ref("user-1") == sink.subject_refs.ref("user-1") != "user-1"


async def test_what_is_emitted_is_stored_once_and_counted(case: Case) -> None:
    sink = case.make()
    sink.emit(decision(0))  # before start: kept, delivered once started
    await start(case, sink)
    for n in range(1, 60):
        sink.emit(decision(n))
    await asyncio.to_thread(sink.emit, decision(60))  # from a thread of the server's pool
    sink.emit(SensitiveOperation(action="consent_granted", timestamp="2026-01-01T10:00:00Z", subject="user-1",
                                 purpose="registry_check", outcome="granted", request_id="req-op"))
    assert await sink.wait_delivered(30)

    expected = [f"req-{n}" for n in range(61)] + ["req-op"]
    assert sorted(await case.stored()) == sorted(expected)
    status = sink.status()
    assert (status.emitted, status.written, status.depth, status.problem) == (62, 62, 0, None)
    ok, detail = await sink.readiness()
    assert ok and detail is not None and detail.startswith("depth 0")


async def test_a_malformed_event_is_dead_lettered_and_emit_never_raises(case: Case) -> None:
    sink = case.make()
    await start(case, sink)
    sink.emit(decision(1, timestamp="2026-01-01T10:00:00"))  # no time zone
    sink.emit(SensitiveOperation(action="token_issued", timestamp="yesterday", subject="user-1"))
    sink.emit(decision(2))
    assert await sink.wait_delivered(30)
    if case.storing:
        assert await case.stored() == ["req-2"]
        letters = await case.stores.audit_dead_letters.list_letters()
        assert len(letters) == 2 and all("not an audit event" in letter.error for letter in letters)
        assert sink.status().dead_lettered == 2


async def test_nothing_is_lost_across_stop_and_the_next_start(case: Case) -> None:
    never_started = case.make()
    never_started.emit(decision(0))
    await never_started.stop()  # kept (spilled) for the next start

    first = case.make()
    await start(case, first)
    for n in range(1, 200):
        first.emit(decision(n))
    await first.stop()
    await first.stop()  # a second stop changes nothing
    first.emit(decision(200))  # after the stop: spilled, never dropped
    if case.storing:
        ok, detail = await first.readiness()
        assert not ok and detail is not None and "not running" in detail

    second = case.make()
    await start(case, second)
    assert await second.wait_delivered(30)
    assert sorted(await case.stored()) == sorted(f"req-{n}" for n in range(201))
