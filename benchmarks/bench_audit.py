"""The audit pipeline: sustained events/s into PostgreSQL, and what a saturated writer
adds to the latency of a decision.

1. Throughput: an `AuditPublisher` on PostgreSQL; `N` decision events are emitted (in
   chunks, as requests would) and the clock stops when the last one is stored. Reported
   per batch size, best of `--repeat` runs (each into a fresh schema), with the cost of
   `emit` itself per event.
2. Latency: `POST /v1/data/age_verification` (the data API: `POST /decision/evaluate`
   does not exist yet), `--requests` sequential requests over loopback HTTP from a
   client thread to uvicorn serving the app on the loop the writer runs on, with
   `IDGW_DATA_API_AUTH=none`. Baseline: the in-memory `RecentEvents` publisher.
   Saturated: the real publisher on PostgreSQL with a backlog of `--backlog` events
   queued beforehand, so the writer writes full batches throughout (checked: the queue
   is still not empty when the last request ends). Runs alternate, best p50/p99 kept.

    .venv/bin/python benchmarks/bench_audit.py --postgresql-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from bench_stores import postgres_schema

from server.app import create_app
from server.audit import AuditConfig, AuditPublisher, SubjectRefs
from server.events import DecisionMade, RecentEvents
from server.settings import load_settings
from stores import open_stores

REPO = Path(__file__).resolve().parents[1]
FACTS = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False,
         "context": {"national_id": "AB123456"}}


def decisions(count: int) -> list[DecisionMade]:
    now = datetime.now(UTC).isoformat()
    return [
        DecisionMade(decision_id=f"dec_{n}", purpose="age_verification", decision="pass",
                     reason="all_checks_passed", policy_revision="sha256:" + "ab" * 32, timestamp=now,
                     request_id=f"req-{n}", subject=f"user-{n % 500}")
        for n in range(count)
    ]


def publisher(spill_dir: Path, **config: Any) -> AuditPublisher:
    return AuditPublisher(AuditConfig(spill_dir=spill_dir, **config), SubjectRefs(os.urandom(32)))


async def throughput(url: str, count: int, batch_size: int, spill_dir: Path) -> tuple[float, float]:
    """(events/s stored, microseconds per emit)."""
    events = decisions(count)
    async with await open_stores(url) as stores:
        audit = publisher(spill_dir, batch_size=batch_size, capacity=count + 1)
        await audit.start(stores.audit_events, stores.audit_dead_letters)
        started = time.perf_counter()
        emitting = 0.0
        for offset in range(0, count, 1000):
            t = time.perf_counter()
            for event in events[offset : offset + 1000]:
                audit.emit(event)
            emitting += time.perf_counter() - t
            await asyncio.sleep(0)
        assert await audit.wait_delivered(600), "not delivered"
        elapsed = time.perf_counter() - started
        await audit.stop()
        assert await stores.audit_events.count() == count
    return count / elapsed, emitting / count * 1e6


async def latencies(app: Any, requests: int) -> list[float]:
    """Sequential requests from a client thread to `app` served by uvicorn on this loop
    (an in-process ASGI transport would never let the writer task run)."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # bounded by uvicorn's own start
        await asyncio.sleep(0.01)

    def client() -> list[float]:
        out = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            for n in range(200 + requests):  # 200 warm-up requests
                t = time.perf_counter()
                response = c.post("/v1/data/age_verification", json={"input": FACTS})
                if n >= 200:
                    out.append(time.perf_counter() - t)
                assert response.status_code == 200
        return out

    try:
        return await asyncio.to_thread(client)
    finally:
        server.should_exit = True
        await serving


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000


async def added_latency(url: str, requests: int, backlog: int, repeat: int, spill_dir: Path) -> None:
    settings = load_settings(policy_dir=REPO / "policies", data_api_auth="none", policy_reload=False,
                             log_level="ERROR", log_format="json", database_url="memory://",
                             key_dir=spill_dir / "keys")
    app = create_app(settings, log_stream=open(os.devnull, "w"))  # noqa: SIM115
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "saturated": []}
    queued_at_end = []
    rates: list[float] = []
    for _ in range(repeat):
        app.state.events = RecentEvents()
        lat = await latencies(app, requests)
        results["baseline"].append((p(lat, 0.5), p(lat, 0.99)))
        async with await open_stores(url) as stores:
            audit = publisher(spill_dir, capacity=backlog * 2)
            for event in decisions(backlog):
                audit.emit(event)
            await audit.start(stores.audit_events, stores.audit_dead_letters)
            await asyncio.sleep(0.5)  # the writer is at full speed
            app.state.events = audit
            assert audit.writer is not None
            written, started = audit.writer.written, time.perf_counter()
            lat = await latencies(app, requests)
            rates.append((audit.writer.written - written) / (time.perf_counter() - started))
            queued_at_end.append(audit.depth())
            results["saturated"].append((p(lat, 0.5), p(lat, 0.99)))
            await audit.stop()
    print(f"\nwriter still saturated when the last request ended: queue depth {queued_at_end};"
          f" it stored {', '.join(f'{r:,.0f}' for r in rates)} events/s meanwhile")
    print("\n| publisher | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    best = {name: (min(r[0] for r in rows), min(r[1] for r in rows)) for name, rows in results.items()}
    for name, (p50, p99) in best.items():
        print(f"| {name} | {p50:.3f} | {p99:.3f} |")
    print(f"\nadded by the saturated writer: p50 {best['saturated'][0] - best['baseline'][0]:+.3f} ms,"
          f" p99 {best['saturated'][1] - best['baseline'][1]:+.3f} ms")


async def run(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as directory:
        spill_dir = Path(directory)
        print("\n| batch size | events | events/s stored | emit µs/event |")
        print("|---:|---:|---:|---:|")
        for size in args.batch_sizes:
            best = (0.0, 0.0)
            for _ in range(args.repeat):
                with postgres_schema(args.postgresql_url) as url:
                    rate, emit_us = await throughput(url, args.events, size, spill_dir)
                best = max(best, (rate, emit_us))
            print(f"| {size} | {args.events} | {best[0]:,.0f} | {best[1]:.1f} |", flush=True)
        with postgres_schema(args.postgresql_url) as url:
            await added_latency(url, args.requests, args.backlog, args.repeat, spill_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql-url", default=os.environ.get("IDGW_TEST_DATABASE_URL"))
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1_000])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--backlog", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.postgresql_url:
        parser.error("needs --postgresql-url or IDGW_TEST_DATABASE_URL")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
