"""Real `idgw serve` processes: SIGTERM during load loses nothing, neither events nor
decision records; with NATS JetStream, events the stream acknowledged survive a SIGKILL
of the gateway."""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from pathlib import Path

import httpx
import nats

from tests.audit.conftest import TcpProxy, request_ids, run_sql
from tests.server.conftest import (
    ADULT_WITHOUT_CREDENTIAL,
    ServerProcess,
    wait_until,
)

DATA = "/v1/data/age_verification"


def audit_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {"IDGW_DATABASE_URL": database_url, "IDGW_KEY_DIR": str(tmp_path / "keys"),
            "IDGW_AUDIT_SPILL_DIR": str(tmp_path / "spill"), "IDGW_POLICY_RELOAD": "false", **extra}


def start(policy_dir: Path, tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    server = ServerProcess(policy_dir, tmp_path, **env)
    server.wait_ready()
    return server


def decide(client: httpx.Client, request_id: str) -> bool:
    try:
        response = client.post(DATA, json={"input": ADULT_WITHOUT_CREDENTIAL},
                               headers={"X-Request-ID": request_id})
    except httpx.TransportError:
        return False
    return response.status_code == 200


def test_sigterm_during_load_loses_no_event(policy_dir: Path, tmp_path: Path, postgres_url: str) -> None:
    server = start(policy_dir, tmp_path, audit_env(tmp_path, postgres_url))
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
            for n in range(100_000):  # bounded; ends when the server stops answering
                request_id = f"w{worker}-{n}"
                if stop.is_set() or not decide(client, request_id):
                    return
                with lock:
                    answered.append(request_id)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answered) >= 1500, timeout=60)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, server.output()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        server.stop()
    stored = request_ids(postgres_url)
    assert len(stored) == len(set(stored))
    assert set(answered) <= set(stored)
    assert "audit_stopped" in server.output()
    assert not list((tmp_path / "spill").glob("spill-*.jsonl"))  # all drained, none spilled
    # every decision's record too: exactly one per decision event
    recorded = run_sql(postgres_url, "SELECT e.decision_id, r.decision_id FROM audit_events AS e"
                                     " FULL JOIN decision_records AS r ON r.decision_id = e.decision_id")
    assert recorded and all(event == record for event, record in recorded)
    assert len(recorded) == len(stored)


async def stream_messages(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def delete_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def test_events_acknowledged_by_jetstream_survive_sigkill(
    policy_dir: Path, tmp_path: Path, postgres_proxy: tuple[TcpProxy, str], postgres_url: str, nats_url: str
) -> None:
    proxy, proxied_url = postgres_proxy
    stream = f"IDGW_TEST_{uuid.uuid4().hex[:12]}"
    env = audit_env(tmp_path, proxied_url, IDGW_AUDIT_QUEUE="nats", IDGW_NATS_URL=nats_url,
                    IDGW_AUDIT_NATS_STREAM=stream)
    first = start(policy_dir, tmp_path, env)
    try:
        proxy.stop()  # the database is down: the events can only be in the stream
        with httpx.Client(base_url=first.base_url, timeout=5.0) as client:
            assert all(decide(client, f"r-{n}") for n in range(300))  # answered without it
        wait_until(lambda: asyncio.run(stream_messages(nats_url, stream)) == 300, timeout=30)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert request_ids(postgres_url) == []

        proxy.start()
        second = start(policy_dir, tmp_path, env)
        try:
            wait_until(lambda: len(request_ids(postgres_url)) >= 300, timeout=60)
        finally:
            assert second.stop() == 0
        stored = request_ids(postgres_url)
        assert sorted(stored) == sorted(f"r-{n}" for n in range(300))
    finally:
        first.stop()
        asyncio.run(delete_stream(nats_url, stream))
