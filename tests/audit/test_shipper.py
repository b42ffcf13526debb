"""The audit writer in a process of its own (`ShippingPublisher`): a real child process,
a real database; its crash, its restart, and a SIGKILLed `idgw serve` worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from server.audit import (
    ShippingPublisher,
    SubjectRefs,
    audit_sink,
    to_audit_event,
    verify_trail,
)
from server.audit.encoding import Rejected, decode_line, decode_raw, is_raw
from server.audit.metrics import AUDIT_EVENTS_WRITTEN, AuditMetrics
from server.audit.publisher import AuditPublisher
from server.audit.shipper import _Writer
from server.events import DecisionInput, DecisionMade, SensitiveOperation
from server.json_codec import dumps
from server.settings import AuditSettings, ConfigError, load_settings
from stores import AuditEvent, Stores, open_stores
from tests.audit.conftest import decision, eventually
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, SHIPPED_POLICIES, ServerProcess

MakeShipper = Callable[..., ShippingPublisher]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[Stores]:
    async with await open_stores(database_url) as opened:  # migrated before the child opens it
        yield opened


@pytest.fixture
async def make_shipper(tmp_path: Path, refs: SubjectRefs, database_url: str) -> AsyncIterator[MakeShipper]:
    made: list[ShippingPublisher] = []

    def make(url: str | None = None, nice: int = 0, idle: bool = False, **overrides: Any) -> ShippingPublisher:
        values: dict[str, Any] = {"spill_dir": tmp_path / "spill", "flush_ms": 50, "drain_timeout_ms": 10_000,
                                  "writer_nice": nice, "writer_idle": idle}
        values.update(overrides)
        shipper = ShippingPublisher(AuditSettings(**values), refs, url or database_url, "WARNING", True,
                                    AuditMetrics())
        made.append(shipper)
        return shipper

    yield make
    for shipper in made:
        await shipper.stop()


def written() -> float:
    return AUDIT_EVENTS_WRITTEN.collect()[0].samples[0].value


async def test_events_reach_the_database_through_the_writer_process(
    make_shipper: MakeShipper, stores: Stores, refs: SubjectRefs
) -> None:
    shipper = make_shipper(nice=3, idle=True)
    before = written()
    await shipper.start()
    assert shipper._process is not None  # background work: requests come first
    assert os.getpriority(os.PRIO_PROCESS, shipper._process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3)
    assert os.sched_getscheduler(shipper._process.pid) == os.SCHED_IDLE
    key = refs.key.hex().encode()  # the writer reads it from a pipe: not visible in /proc
    for exposed in ("cmdline", "environ"):
        assert key not in Path(f"/proc/{shipper._process.pid}/{exposed}").read_bytes()
    for n in range(500):
        shipper.emit(decision(n, subject=f"user-{n % 7}"))
    shipper.emit(SensitiveOperation(action="consent_granted", timestamp="2026-01-01T10:00:00Z",
                                    subject="user-42", purpose="registry_check", outcome="granted"))
    assert await shipper.wait_delivered(30)

    stored = await stores.audit_events.query(limit=1000)
    assert [e.decision_id for e in stored[:500]] == [f"dec_{n}" for n in range(500)]
    assert stored[3].subject_ref == refs.ref("user-3") and stored[500].action == "consent_granted"
    assert all("user-" not in json.dumps(e.subject_ref) for e in stored)  # pseudonymised before it is stored
    assert (await verify_trail(stores.audit_events)).intact
    await eventually(lambda: written() - before == 501, 5)  # the child's counts reach this process's /metrics
    ok, detail = await shipper.readiness()
    assert ok and detail is not None and detail.startswith("depth 0")

    child = shipper._process
    await shipper.stop()
    assert child is not None and child.returncode == 0


async def test_malformed_events_are_dead_lettered_by_the_writer_process(
    make_shipper: MakeShipper, stores: Stores
) -> None:
    shipper = make_shipper()
    await shipper.start()
    shipper.emit(decision(1, timestamp="2026-01-01T10:00:00"))  # no time zone: decoded, refused
    shipper.emit(SensitiveOperation(action="token_issued", timestamp="yesterday", subject="user-1"))
    shipper.emit(decision(2))
    await eventually(lambda: shipper.status().dead_lettered == 2, 30)
    assert await shipper.wait_delivered(30)

    assert [e.decision_id for e in await stores.audit_events.query()] == ["dec_2"]
    letters = await stores.audit_dead_letters.list_letters()
    assert len(letters) == 2
    assert any("yesterday" in json.dumps(letter.payload) for letter in letters)
    assert not any("user-1" in json.dumps(letter.payload) for letter in letters)


AGE = engine.load(SHIPPED_POLICIES).purpose("age_verification")  # its context's national_id is sensitive
SECRET_FACTS = {"is_over_18": True, "context": {"national_id": "SECRET4242"},
                "subject": {"sub": "user-secret", "age": 30}}


def recorded(n: int, subject: str = "user-secret") -> DecisionMade:
    return decision(n, subject=subject, record=DecisionInput(AGE, SECRET_FACTS, ("obtain_age_credential",)))


def test_a_decisions_raw_line_is_stored_as_the_inline_publisher_stores_it(refs: SubjectRefs, tmp_path: Path) -> None:
    """The worker sends a decision as emitted; what the writer process makes of the line
    (`decode_raw`, then `to_audit_event`, as its publisher's `emit` does) is exactly the
    event and record the inline publisher stores."""
    shipper = ShippingPublisher(AuditSettings(spill_dir=tmp_path), refs, "sqlite:///unused.db")
    for event in (recorded(7, subject="user-ü"), decision(8, reason='quote " and \\ back')):
        shipper.emit(event)
        line = shipper._pending.pop()
        assert is_raw(line)
        stored, expected = to_audit_event(decode_raw(line), refs, "evt_1"), to_audit_event(event, refs, "evt_1")
        assert stored == expected and stored.record == expected.record
    assert stored.record is None and expected.record is None  # the second: recording off


def test_what_the_worker_spills_is_pseudonymised(refs: SubjectRefs, tmp_path: Path) -> None:
    """With no writer process to take the pipe (not started, down, or behind), the
    worker spills decisions in their stored form: a raw line never reaches a file."""
    shipper = ShippingPublisher(AuditSettings(spill_dir=tmp_path / "spill"), refs, "sqlite:///unused.db")
    for n in range(3):
        shipper.emit(recorded(n))
    shipper._pending.append(b'{"raw": ["dec_x", "SECRET4242"]}\n')  # not a raw line's fields
    shipper._flush()  # no pipe: to the spill file
    shipper.spill.close()
    text = b"".join(path.read_bytes() for path in (tmp_path / "spill").glob("*.jsonl"))
    assert b"SECRET4242" not in text and b"user-secret" not in text and b'{"raw"' not in text
    events = [decode_line(line) for line in text.splitlines(keepends=True)]
    assert [e.decision_id for e in events if isinstance(e, AuditEvent)] == ["dec_0", "dec_1", "dec_2"]
    assert isinstance(events[3], Rejected) and "withheld" in events[3].payload["line"]
    record = json.loads(events[0].record or "")  # type: ignore[union-attr]
    assert record["context"]["national_id"] == refs.value_ref("SECRET4242")
    assert record["facts"]["subject"]["sub"] == refs.ref("user-secret") == events[0].subject_ref  # type: ignore[union-attr]


def test_the_writer_process_pseudonymises_raw_lines_and_withholds_unreadable_ones(
    refs: SubjectRefs, tmp_path: Path
) -> None:
    publisher = AuditPublisher(AuditSettings(spill_dir=tmp_path / "spill"), refs)
    status_read, status_write = os.pipe()
    writer = _Writer(publisher, status_write)
    shipper = ShippingPublisher(AuditSettings(spill_dir=tmp_path / "worker"), refs, "sqlite:///unused.db")
    event = recorded(1)
    shipper.emit(event)
    line = shipper._pending.pop()
    writer.take(line)
    writer.take(line[:-40])  # torn: the worker died in the middle of its write
    writer.take(line.replace(b'"dec_1"', b'{"dec_1"}', 1))  # not a raw line's fields
    (queued,) = [event for _, event in publisher.outbox._items]
    expected = to_audit_event(event, refs, queued.id)
    assert queued == expected and queued.record == expected.record and queued.id.startswith("evt_")
    assert queued.record is not None and "SECRET4242" not in queued.record
    letters = list(publisher._rejected)
    assert [letter.error.split(":")[0] for letter in letters] == ["torn line at the end of the pipe",
                                                                  "unreadable raw line"]
    assert not any(b"SECRET4242" in dumps(letter.payload) or b"user-secret" in dumps(letter.payload)
                   for letter in letters)
    assert letters[0].payload["line"].startswith(f"a raw decision line of {len(line) - 40} bytes, withheld")
    os.close(status_read)
    writer.status.close()


async def test_a_killed_writer_process_is_restarted_and_nothing_emitted_meanwhile_is_lost(
    make_shipper: MakeShipper, stores: Stores, tmp_path: Path
) -> None:
    shipper = make_shipper()
    await shipper.start()
    for n in range(100):
        shipper.emit(decision(n))
    assert await shipper.wait_delivered(30)
    first = shipper._process
    assert first is not None
    assert os.sched_getscheduler(first.pid) == os.SCHED_OTHER  # IDGW_AUDIT_WRITER_IDLE=false
    first.kill()
    await first.wait()

    for n in range(100, 300):  # the writer is down: the worker spills these
        shipper.emit(decision(n))
        await asyncio.sleep(0)
    ok, detail = await shipper.readiness()
    assert not ok and detail is not None and "not running" in detail
    await eventually(lambda: shipper._process is not first and shipper.running(), 15)
    assert await shipper.wait_delivered(30)

    stored = [e.decision_id for e in await stores.audit_events.query(limit=1000)]
    assert sorted(stored) == sorted(f"dec_{n}" for n in range(300))
    assert len(stored) == 300
    assert (await verify_trail(stores.audit_events)).intact
    assert not list((tmp_path / "spill").glob("*.jsonl"))


async def test_the_writer_process_drains_into_postgresql(make_shipper: MakeShipper, postgres_url: str) -> None:
    async with await open_stores(postgres_url) as pg:
        shipper = make_shipper(postgres_url)
        await shipper.start()
        for n in range(2000):
            shipper.emit(decision(n))
        await shipper.stop()  # the end of the pipe: the child drains before it exits
        assert await pg.audit_events.count() == 2000
        assert (await verify_trail(pg.audit_events)).intact


def test_process_mode_needs_a_sql_database_and_the_memory_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDGW_AUDIT_WRITER", "process")
    monkeypatch.setenv("IDGW_DATABASE_URL", "memory://")
    with pytest.raises(ConfigError, match="IDGW_AUDIT_WRITER"):
        load_settings()


def test_auto_means_a_writer_process_only_under_idgw_serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDGW_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("IDGW_KEY_DIR", str(tmp_path / "keys"))
    settings = load_settings()
    assert isinstance(audit_sink(settings, served=True), ShippingPublisher)
    assert not isinstance(audit_sink(settings, served=False), ShippingPublisher)
    monkeypatch.setenv("IDGW_AUDIT_WRITER", "inline")
    assert not isinstance(audit_sink(load_settings(), served=True), ShippingPublisher)


def test_a_sigkilled_worker_loses_no_event_of_a_decision_it_answered(tmp_path: Path, policy_dir: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'gw.db'}"
    server = ServerProcess(policy_dir, tmp_path, IDGW_DATABASE_URL=database_url, IDGW_KEY_DIR=str(tmp_path / "keys"),
                           IDGW_AUDIT_SPILL_DIR=str(tmp_path / "spill"), IDGW_POLICY_RELOAD="false",
                           IDGW_LOG_LEVEL="WARNING", IDGW_AUDIT_FLUSH_MS="60000")
    try:
        server.wait_ready()
        answered = [server.client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL})
                    .json()["decision_id"] for _ in range(250)]
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1  # the writer process
        # a flush interval of 60 s: every answered event still waits in the child's queue
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        writer = int(children[0])
        deadline = time.monotonic() + 30
        while _alive(writer):  # bounded: the child drains, then exits
            assert time.monotonic() < deadline, "the writer process did not exit"
            time.sleep(0.05)
    finally:
        server.stop()

    async def stored() -> list[str | None]:
        async with await open_stores(database_url) as gw:
            return [e.decision_id for e in await gw.audit_events.query(limit=1000)]

    assert sorted(i for i in asyncio.run(stored()) if i) == sorted(answered)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status not in ("Z", "X")


async def test_a_writer_that_cannot_start_leaves_the_worker_running_and_spilling(
    make_shipper: MakeShipper, tmp_path: Path
) -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    shipper = make_shipper(unreachable)
    started = time.monotonic()
    await shipper.start()
    assert time.monotonic() - started < 20  # did not wait for a status that cannot come
    for n in range(20):
        shipper.emit(decision(n))
        await asyncio.sleep(0)
    await eventually(lambda: not shipper.running(), 20)
    ok, detail = await shipper.readiness()
    assert not ok and detail is not None and "not running" in detail
    await shipper.stop()
    spilled = b"".join(path.read_bytes() for path in (tmp_path / "spill").glob("spill-*.jsonl"))
    assert sorted(decode_line(line).decision_id for line in spilled.splitlines(keepends=True)) == sorted(  # type: ignore[union-attr]
        f"dec_{n}" for n in range(20))


def test_the_writer_settings_reach_the_publisher_or_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IDGW_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("IDGW_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("IDGW_AUDIT_MAX_BATCH", "50")
    monkeypatch.setenv("IDGW_AUDIT_WRITER_NICE", "7")
    shipper = audit_sink(load_settings(), served=True)
    assert isinstance(shipper, ShippingPublisher)
    assert (shipper.settings.max_batch, shipper.settings.writer_nice, shipper.settings.writer_idle) == (50, 7, True)
    monkeypatch.setenv("IDGW_AUDIT_WRITER_IDLE", "false")
    assert load_settings().audit.writer_idle is False
    monkeypatch.setenv("IDGW_AUDIT_WRITER_NICE", "20")
    with pytest.raises(ConfigError, match="IDGW_AUDIT_WRITER_NICE"):
        load_settings()
