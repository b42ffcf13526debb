"""The audit pipeline: what a saturated audit writer adds to the latency of
`POST /decision/evaluate`, and the sustained events/s it stores into PostgreSQL.

Everything runs as deployed, in separate processes on loopback:

- the gateway: `idgw serve`, one worker, on PostgreSQL (a schema of its own, created for
  each phase and dropped afterwards), the mock registry with `IDGW_REGISTRY_LATENCY_MS=0`,
  JSON access log at INFO as in production;
- the load generator: this file with `--load-generator`, a separate Python process on raw
  asyncio streams (one keep-alive connection, pre-encoded requests). It drives
  `POST /decision/evaluate` for `sanctions_screening` (consent `registry_check`; its facts
  `sanctions_listed` and `is_pep` come from the mock registry) with the bearer token of
  a user logged in through `/auth/authorize` + `/auth/token`, after `POST /auth/consent`.
  Open loop: requests are scheduled at `--rate` per second and latency counts from the
  scheduled time, so a stall of the server is not hidden by the client waiting for it.
  Bounded by `--requests` and `--max-seconds`.

Each run has two phases, each on a fresh server and schema:

- idle: the writer only stores the measured requests' own events (`--rate`/s);
- saturated: the writer replays a backlog of `--backlog` events the whole time. The
  backlog is a set of spill files left in the server's `IDGW_AUDIT_SPILL_DIR`, as a gateway
  stopped during a database outage leaves them; the server claims them at start and its
  single writer stores them as fast as it can (decode, chain, one INSERT per batch), every
  other batch, the requests' own events in between. Checked: the audit queue depth
  (`/metrics`) is still above one batch when the last request ends.

Why a backlog rather than the alternatives: a second client hammering the data API would
make the measured requests queue behind the hammer's requests on the one event loop
(request contention, not the audit writer), and one worker answers fewer decisions per
second than the writer stores events, so it cannot saturate the writer anyway; a
database slowed by a latency-adding proxy would slow the request path directly (each
evaluation reads the consent from PostgreSQL) and would leave the writer waiting on I/O
rather than working. The backlog keeps the writer busy on the server's event loop and on
PostgreSQL, the worst case for requests, without adding anything else to their path.

Sustained events/s: audit rows counted in PostgreSQL (from this process) at the start and
end of the saturated phase's measured window (writer + requests), and over
`--alone-seconds` before it with no requests (writer alone).

Figures: median of `--repeat` runs (default 3), the load average noted.

    .venv/bin/python benchmarks/bench_audit.py --postgresql-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/bench_audit.py --quick        # a smoke run

Targets (issue 8): at least 10,000 events/s sustained into PostgreSQL; p99 added by the
saturated writer under 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench_stores import postgres_schema

from server.audit import AuditPublisher, SubjectRefs
from server.audit.spill import encode_event
from server.settings import AuditSettings
from stores import AuditEvent, open_stores

REPO = Path(__file__).resolve().parents[1]
IDGW = Path(sys.executable).with_name("idgw")
PURPOSE = "sanctions_screening"
CONSENT = "registry_check"
NATIONAL_ID = "123456789"  # server.registry.clients.VALID_ADULT: not listed, not a PEP
CLIENT_ID = "demo-client"
SPILL_LINES_PER_FILE = 50_000


# -- the load generator (a separate process) ------------------------------------------------


def encode_request(method: str, path: str, body: bytes, token: str) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            await reader.readexactly(int(line[15:]))
            break
    return status


async def open_loop(port: int, request: bytes, rate: float, count: int, max_seconds: float) -> dict[str, Any]:
    """`count` requests scheduled at `rate`/s on one keep-alive connection; latency from
    the scheduled time (`latencies`) and from the send (`service`), in seconds."""
    latencies: list[float] = []
    service: list[float] = []
    errors = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter() + 0.05
    deadline = start + max_seconds
    try:
        for i in range(count):
            scheduled = start + i / rate
            if scheduled > deadline:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            if await _exchange(reader, writer, request) != 200:
                errors += 1
            done = time.perf_counter()
            latencies.append(done - scheduled)
            service.append(done - sent)
    finally:
        writer.close()
    return {"latencies": latencies, "service": service, "errors": errors,
            "seconds": time.perf_counter() - start}


def load_generator_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()  # a cheaper client: it shares the machine with the server
    except ImportError:
        pass
    body = json.dumps({"purpose": PURPOSE, "context": {"national_id": NATIONAL_ID}}).encode()
    request = encode_request("POST", "/decision/evaluate", body, os.environ["BENCH_TOKEN"])
    result = asyncio.run(open_loop(args.port, request, args.rate, args.requests, args.max_seconds))
    json.dump(result, sys.stdout)


def run_load(port: int, token: str, rate: float, count: int, max_seconds: float) -> dict[str, Any]:
    """Run the load generator in its own process; its measurements."""
    completed = subprocess.run(
        [sys.executable, __file__, "--load-generator", "--port", str(port), "--rate", str(rate),
         "--requests", str(count), "--max-seconds", str(max_seconds)],
        env={**os.environ, "BENCH_TOKEN": token}, capture_output=True, check=True, timeout=max_seconds + 30,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    if result["errors"]:
        raise SystemExit(f"{result['errors']} answers other than 200")
    return result


# -- the gateway and its backlog ------------------------------------------------------------


def seed_backlog(directory: Path, count: int) -> None:
    """`count` stored-form events in spill files nobody holds (orphans: the gateway claims
    and replays them at start), `SPILL_LINES_PER_FILE` per file."""
    directory.mkdir(parents=True)
    now = datetime.now(UTC)
    for first in range(0, count, SPILL_LINES_PER_FILE):
        lines = [
            encode_event(AuditEvent(
                id=f"evt_{uuid.uuid4().hex}", timestamp=now, action="decision_made",
                subject_ref=secrets.token_hex(32), purpose=PURPOSE, decision="pass", reason="not_listed",
                request_id=f"req-backlog-{n}", decision_id=f"dec_{uuid.uuid4().hex}",
                policy_revision="sha256:" + "ab" * 32,
            ))
            for n in range(first, min(count, first + SPILL_LINES_PER_FILE))
        ]
        (directory / f"spill-0-{first:010d}.jsonl").write_bytes(b"".join(lines))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    workdir: Path, port: int, database_url: str, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`idgw serve` with one worker; `settings`: more IDGW_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDGW_", "PROMETHEUS_"))}
    env.update(
        IDGW_DATABASE_URL=database_url, IDGW_REGISTRY_LATENCY_MS="0", IDGW_LOG_FORMAT="json",
        IDGW_LOG_LEVEL="INFO", IDGW_POLICY_RELOAD="false", IDGW_KEY_DIR=str(workdir / "keys"),
        IDGW_AUDIT_SPILL_DIR=str(workdir / "spill"), **(settings or {}),
    )
    process = subprocess.Popen(
        [str(IDGW), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--policy-dir", str(workdir / "policies")],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "server.log").open("wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded: 60 s
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}: {(workdir / 'server.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def login(base_url: str) -> str:
    """A bearer token of a user holding the consent `CONSENT`."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        session = client.post("/auth/authorize", json={"email": "bench@example.com", "client_id": CLIENT_ID})
        session.raise_for_status()
        tokens = client.post("/auth/token", json={"grant_type": "session",
                                                  "session_id": session.json()["session_id"]})
        tokens.raise_for_status()
        token = str(tokens.json()["access_token"])
        granted = client.post("/auth/consent", json={"purposes": [CONSENT]},
                              headers={"Authorization": f"Bearer {token}"})
        granted.raise_for_status()
        probe = client.post("/decision/evaluate", json={"purpose": PURPOSE, "context": {"national_id": NATIONAL_ID}},
                            headers={"Authorization": f"Bearer {token}"})
        probe.raise_for_status()
        assert probe.json()["status"] == "pass", probe.text
    return token


def stored_rows(database_url: str) -> tuple[int, float]:
    """(rows in audit_events, when they were counted)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        moment = time.perf_counter()
        row = conn.execute("SELECT count(*) FROM audit_events").fetchone()
    assert row is not None
    return int(row[0]), moment


def queue_depth(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    match = re.search(r"^audit_queue_depth(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


# -- the control: the same backlog written by a writer in another process -------------------


async def _external_writer(database_url: str, spill_dir: Path, seconds: float) -> None:
    async with await open_stores(database_url) as stores:
        publisher = AuditPublisher(AuditSettings(spill_dir=spill_dir), SubjectRefs(os.urandom(32)))
        await publisher.start(stores.audit_events, stores.audit_dead_letters)
        await asyncio.sleep(seconds)
        await publisher.stop()


def external_writer_main(args: argparse.Namespace) -> None:
    asyncio.run(_external_writer(args.database_url, Path(args.spill_dir), args.max_seconds))


def start_external_writer(database_url: str, spill_dir: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--external-writer", "--database-url", database_url,
         "--spill-dir", str(spill_dir), "--max-seconds", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


# -- one phase, one run ---------------------------------------------------------------------


@dataclass
class Phase:
    p50: float  # ms, from the scheduled time
    p99: float
    service_p99: float  # ms, from the send
    requests: int
    rate_with_requests: float = 0.0  # events/s stored during the measured window
    rate_alone: float = 0.0  # events/s stored with no requests
    depth_at_end: float = 0.0


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000


PHASES = ("idle", "saturated", "control")


def phase(kind: str, args: argparse.Namespace, template: Path) -> Phase:
    """idle: no backlog; saturated: the server's writer replays the backlog; control: a
    writer in another process does, on the same database, while the server's idles."""
    with tempfile.TemporaryDirectory(prefix="idgw-bench-audit-") as directory, \
            postgres_schema(args.postgresql_url) as database_url:
        workdir = Path(directory)
        shutil.copytree(REPO / "policies", workdir / "policies")
        if kind == "saturated":
            shutil.copytree(template, workdir / "spill")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(workdir, port, database_url)
        external = None
        try:
            token = login(base_url)
            run_load(port, token, args.rate, args.warmup, args.max_seconds)
            if kind == "control":
                shutil.copytree(template, workdir / "external-spill")
                external = start_external_writer(database_url, workdir / "external-spill", args.max_seconds * 2)
            alone = 0.0
            if kind != "idle":
                time.sleep(1.0)  # the writer is at full speed (the control's has started)
                before, t0 = stored_rows(database_url)
                time.sleep(args.alone_seconds)
                after, t1 = stored_rows(database_url)
                alone = (after - before) / (t1 - t0)
            before, t0 = stored_rows(database_url)
            load = run_load(port, token, args.rate, args.requests, args.max_seconds)
            after, t1 = stored_rows(database_url)
            depth = queue_depth(base_url)
        finally:
            if external is not None:
                external.send_signal(signal.SIGTERM)
                external.kill()
                external.wait(10)
            stop_server(server)
    if kind == "saturated" and not depth > 100:
        raise SystemExit(f"the backlog ran out during the window (depth {depth}): raise --backlog")
    if kind == "control" and after >= args.backlog:
        raise SystemExit("the control's writer ran out of backlog during the window: raise --backlog")
    return Phase(
        p50=percentile(load["latencies"], 0.5), p99=percentile(load["latencies"], 0.99),
        service_p99=percentile(load["service"], 0.99), requests=len(load["latencies"]),
        rate_with_requests=(after - before) / (t1 - t0), rate_alone=alone, depth_at_end=depth,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql-url", default=os.environ.get("IDGW_TEST_DATABASE_URL"))
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s of the load generator")
    parser.add_argument("--requests", type=int, default=3_000, help="measured requests per phase")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=500_000, help="events queued for the saturated phases")
    parser.add_argument("--alone-seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound on each load run")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--external-writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--spill-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        load_generator_main(args)
        return
    if args.external_writer:
        external_writer_main(args)
        return
    if not args.postgresql_url:
        parser.error("needs --postgresql-url or IDGW_TEST_DATABASE_URL")
    if args.quick:
        args.requests, args.warmup, args.backlog, args.repeat, args.alone_seconds = 600, 100, 150_000, 1, 1.0

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()};"
          f" {args.rate:g} requests/s, {args.requests} measured per phase, backlog {args.backlog:,} events",
          flush=True)
    runs: list[dict[str, Phase]] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="idgw-bench-backlog-") as directory:
        template = Path(directory) / "spill"
        seed_backlog(template, args.backlog)
        for n in range(args.repeat):
            loads.append(os.getloadavg()[0])
            run = {kind: phase(kind, args, template) for kind in PHASES}
            runs.append(run)
            print(f"run {n + 1} (load average {loads[-1]:.2f}): " + "; ".join(
                f"{kind} p50 {r.p50:.3f} p99 {r.p99:.3f} ms (from send p99 {r.service_p99:.3f})"
                for kind, r in run.items()
            ) + f"; saturated writer stored {run['saturated'].rate_with_requests:,.0f} events/s with requests,"
                f" {run['saturated'].rate_alone:,.0f} alone, queue depth at end"
                f" {run['saturated'].depth_at_end:,.0f}; control {run['control'].rate_with_requests:,.0f}", flush=True)

    def median(kind: str, name: str) -> float:
        return statistics.median(getattr(run[kind], name) for run in runs)

    print(f"\nmedian of {len(runs)} runs (load average at each run's start: {', '.join(f'{x:.2f}' for x in loads)})\n")
    print("| audit writer | p50 ms | p99 ms | events/s stored |")
    print("|---|---:|---:|---:|")
    labels = {"idle": "idle (the requests' own events)", "saturated": "saturated, in the gateway",
              "control": "saturated, in another process (control)"}
    for kind in PHASES:
        rate = f"{median(kind, 'rate_with_requests'):,.0f}"
        print(f"| {labels[kind]} | {median(kind, 'p50'):.3f} | {median(kind, 'p99'):.3f} | {rate} |")
    added = median("saturated", "p99") - median("idle", "p99")
    machine = median("control", "p99") - median("idle", "p99")
    print(f"\nadded by the saturated writer: p50 {median('saturated', 'p50') - median('idle', 'p50'):+.3f} ms,"
          f" p99 {added:+.3f} ms (target < 1 ms: {'met' if added < 1 else 'NOT met'});"
          f" of which a writer in another process adds p99 {machine:+.3f} ms (PostgreSQL and CPU contention),"
          f" the gateway's own writer {added - machine:+.3f} ms")
    with_requests, alone = median("saturated", "rate_with_requests"), median("saturated", "rate_alone")
    met = "met" if min(with_requests, alone) >= 10_000 else "NOT met"
    print(f"sustained into PostgreSQL: {with_requests:,.0f} events/s while serving requests,"
          f" {alone:,.0f} events/s alone (target >= 10,000: {met})")


if __name__ == "__main__":
    main()
