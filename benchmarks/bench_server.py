"""Throughput and latency of the decision endpoint against the framework's ceiling.

Starts `idgw serve` (one worker, loopback, JSON access log as in production) and drives
it with a small load generator written on raw asyncio streams (HTTP/1.1 keep-alive,
pre-encoded requests), so the client costs far less per request than the server and
the figures measure the server. Phases, each bounded by a request count and a deadline:

1. warm-up of both endpoints;
2. maximum throughput (closed loop, `--connections` connections) of the trivial JSON
   endpoint `GET /health/live` (the ceiling: middleware, routing, JSON response) and of
   `POST /v1/data/age_verification`; best of `--repeat` runs;
3. latency of the decision endpoint at half its maximum rate (open loop: requests are
   scheduled at a fixed rate and latency counts from the scheduled time, so a stall
   is not hidden by the client waiting for it); best of `--repeat` runs, the worst
   shown too (on a shared machine the slower runs measure the neighbours);
4. resident memory (VmRSS) of the worker before and after `--memory-requests` decisions.

The server runs as deployed by default: SQLite in a temporary directory, so each decision's
audit event is queued, chained and written by the audit writer in the same worker.

    .venv/bin/python benchmarks/bench_server.py
    .venv/bin/python benchmarks/bench_server.py --quick      # a smoke run, a few seconds

Targets (issue 4): decisions >= 70% of the trivial endpoint's throughput; p99 < 10 ms at
half the maximum rate; memory growth < 10% over 100,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IDGW = Path(sys.executable).with_name("idgw")
#: The embedded default, in the run's throwaway working directory. Every decision is an
#: audit event: `memory://` would keep all of them in the worker (memory cannot stay flat).
DATABASE_URL = "sqlite:///./idgw.db"

FACTS = {
    "sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False,
    "context": {"national_id": "AB123456"},
}


def encode_request(method: str, path: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


TRIVIAL = encode_request("GET", "/health/live")
DECISION_PATH = "/v1/data/age_verification"
DECISION_BODY = json.dumps({"input": FACTS})
DECISION = encode_request("POST", DECISION_PATH, DECISION_BODY.encode())


@dataclass
class Run:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    known_percentiles: dict[float, float] | None = None  # wrk reports these, not every latency

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if self.known_percentiles is not None:
            return self.known_percentiles.get(q, float("nan"))
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(port: int, request: bytes, total: int, connections: int, deadline: float) -> Run:
    """`connections` clients each sending back to back until `total` requests are done."""
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def client() -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                if await _exchange(reader, writer, request) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return Run(len(latencies), errors, time.perf_counter() - started, latencies)


async def open_loop(port: int, request: bytes, rate: float, seconds: float, connections: int) -> Run:
    """Requests scheduled at `rate` per second over `connections`; latency from schedule."""
    latencies: list[float] = []
    errors = 0
    interval = connections / rate
    start = time.perf_counter() + 0.05
    count = int(rate * seconds / connections)

    async def client(offset: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(count):
                scheduled = start + offset + i * interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if await _exchange(reader, writer, request) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - scheduled)
        finally:
            writer.close()

    await asyncio.gather(*(client(c * interval / connections) for c in range(connections)))
    return Run(len(latencies), errors, time.perf_counter() - start, latencies)


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def wrk_run(port: int, path: str, script: Path | None, seconds: float, connections: int) -> Run:
    """A closed-loop run of wrk (C, one thread): far less client CPU per request than
    the asyncio generator, which on two cores competes with the server for the CPU."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         check=True, timeout=seconds + 60).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    if total is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    percentiles = {}
    for q, label in ((0.5, "50%"), (0.99, "99%")):
        found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if found:
            percentiles[q] = float(found.group(1)) * _WRK_UNITS[found.group(2)]
    return Run(
        requests=int(total.group(1)),
        errors=(int(errors.group(1)) if errors else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        seconds=float(total.group(2)) * _WRK_UNITS[total.group(3)],
        latencies=[],
        known_percentiles=percentiles,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    port: int, workdir: Path, database_url: str = DATABASE_URL, prefix: Sequence[str] = (), timeout: float = 30,
    record_days: int = 30, shadow_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`idgw serve` with one worker in `workdir` (`prefix`: e.g. valgrind and the
    interpreter, which then runs the `idgw` script); `record_days` 0 records no decision."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDGW_", "PROMETHEUS_"))}
    env.update(IDGW_DATA_API_AUTH="none", IDGW_LOG_FORMAT="json", IDGW_LOG_LEVEL="INFO",
               IDGW_DATABASE_URL=database_url, IDGW_DECISION_RECORD_DAYS=str(record_days))
    if shadow_dir is not None:
        env["IDGW_SHADOW_POLICY_DIR"] = str(shadow_dir)
    process = subprocess.Popen(
        [*prefix, str(IDGW), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--policy-dir", str(workdir / "policies")],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start within {timeout:.0f} s")


def stop_server(server: subprocess.Popen[bytes], workdir: Path, timeout: float = 15) -> None:
    """SIGTERM (the server drains), SIGKILL after `timeout` seconds; the run's directory goes."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(workdir, ignore_errors=True)


def stored_rows(workdir: Path) -> dict[str, int]:
    """Rows of the run's SQLite database (after the server stopped): did the writer keep up?"""
    import sqlite3

    with sqlite3.connect(workdir / "idgw.db") as conn:
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("audit_events", "decision_records")}


def queue_drained(port: int, timeout: float = 60.0) -> float:
    """Seconds until the worker's audit queue is empty (`audit_queue_depth` 0) after a
    load: how far the audit writer was behind the requests."""
    from urllib.request import urlopen

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        depth = re.search(r"^audit_queue_depth(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.MULTILINE)
        if depth is None or float(depth.group(1)) == 0:
            return time.perf_counter() - started
        time.sleep(0.02)
    return float("inf")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


async def bench(port: int, pid: int, args: argparse.Namespace) -> dict[str, object]:
    limit = time.perf_counter() + args.max_seconds
    await closed_loop(port, TRIVIAL, args.warmup, args.connections, limit)
    await closed_loop(port, DECISION, args.warmup, args.connections, limit)
    best: dict[str, Run] = {}
    ratios: list[float] = []  # per round: the two runs next to each other in time
    # The worker's CPU per request: unlike throughput, it does not depend on how the
    # client and the audit writer process share the other core.
    cpu_per_request: dict[str, list[float]] = {"trivial": [], "decision": []}
    for _ in range(args.repeat):
        rates = {}
        for name, request, path in (("trivial", TRIVIAL, "/health/live"), ("decision", DECISION, DECISION_PATH)):
            cpu_before = cpu_seconds(pid)
            if args.client == "wrk":
                script = args.wrk_script if name == "decision" else None
                run = await asyncio.to_thread(wrk_run, port, path, script, args.wrk_seconds, args.connections)
            else:
                run = await closed_loop(port, request, args.requests, args.connections, limit)
            if run.errors:
                raise SystemExit(f"{name}: {run.errors} non-200 answers")
            cpu_per_request[name].append((cpu_seconds(pid) - cpu_before) / max(1, run.requests))
            rates[name] = run.rate
            if name not in best or run.rate > best[name].rate:
                best[name] = run
        ratios.append(rates["decision"] / rates["trivial"])
    half_rate = best["decision"].rate / 2
    paced_runs = [
        await open_loop(port, DECISION, half_rate, args.paced_seconds, args.connections) for _ in range(args.repeat)
    ]
    paced_runs.sort(key=lambda run: run.percentile(0.99))
    paced, worst = paced_runs[0], paced_runs[-1]
    rss_before = rss_kib(pid)
    memory_run = await closed_loop(port, DECISION, args.memory_requests, args.connections, limit)
    drain_seconds = await asyncio.to_thread(queue_drained, port)
    rss_after = rss_kib(pid)
    if memory_run.requests < args.memory_requests:
        print(f"warning: --max-seconds reached after {memory_run.requests} memory requests", file=sys.stderr)
    return {
        "trivial": best["trivial"],
        "decision": best["decision"],
        "ratios": ratios,
        "cpu_per_request": cpu_per_request,
        "paced": paced,
        "paced_worst_p99": worst.percentile(0.99),
        "half_rate": half_rate,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "memory_requests": memory_run.requests,
        "drain_seconds": drain_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=30_000, help="per throughput run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="bound on the whole run")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="closed-loop load generator: wrk when installed (auto), else asyncio")
    parser.add_argument("--wrk-seconds", type=float, default=8.0, help="per throughput run with wrk")
    parser.add_argument("--record-days", type=int, default=30,
                        help="IDGW_DECISION_RECORD_DAYS of the server: 0 records no decision")
    parser.add_argument("--shadow", action="store_true",
                        help="IDGW_SHADOW_POLICY_DIR: a copy of the policies decides every request again")
    parser.add_argument("--database-url", default=DATABASE_URL,
                        help="IDGW_DATABASE_URL of the server (relative paths: the run's temporary directory)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.repeat, args.warmup, args.paced_seconds, args.memory_requests = 2000, 1, 500, 2.0, 5000

    try:
        import uvloop

        uvloop.install()  # a faster client loop; the server uses it too when installed
    except ImportError:
        pass

    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    workdir = Path(tempfile.mkdtemp(prefix="idgw-bench-"))
    shutil.copytree(REPO / "policies", workdir / "policies")
    args.wrk_script = workdir / "decision.lua"
    args.wrk_script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(DECISION_BODY)}\n"
    )
    if args.quick:
        args.wrk_seconds = 2.0
    port = free_port()
    shadow_dir = None
    if args.shadow:
        shadow_dir = workdir / "shadow"
        shutil.copytree(REPO / "policies", shadow_dir)
    server = start_server(port, workdir, args.database_url, record_days=args.record_days, shadow_dir=shadow_dir)
    rows: dict[str, int] = {}
    try:
        figures = asyncio.run(bench(port, server.pid, args))
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if args.database_url == DATABASE_URL:
            rows = stored_rows(workdir)
    finally:
        stop_server(server, workdir)

    trivial: Run = figures["trivial"]  # type: ignore[assignment]
    decision: Run = figures["decision"]  # type: ignore[assignment]
    paced: Run = figures["paced"]  # type: ignore[assignment]
    before = int(figures["rss_before_kib"])  # type: ignore[call-overload]
    after = int(figures["rss_after_kib"])  # type: ignore[call-overload]
    ratio = decision.rate / trivial.rate
    ratios: list[float] = figures["ratios"]  # type: ignore[assignment]  (in round order)
    median_ratio = statistics.median(ratios)
    cpu: dict[str, list[float]] = figures["cpu_per_request"]  # type: ignore[assignment]
    cpu_trivial, cpu_decision = statistics.median(cpu["trivial"]), statistics.median(cpu["decision"])
    growth = (after - before) / before * 100
    result = {
        "machine": f"{platform.python_implementation()} {platform.python_version()}, "
                   f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        "connections": args.connections,
        "database_url": args.database_url,
        "trivial_rps": round(trivial.rate), "trivial_p50_ms": ms(trivial.percentile(0.5)),
        "trivial_p99_ms": ms(trivial.percentile(0.99)),
        "decision_rps": round(decision.rate), "decision_p50_ms": ms(decision.percentile(0.5)),
        "decision_p99_ms": ms(decision.percentile(0.99)),
        "ratio_percent": round(ratio * 100, 1),
        "round_ratios_percent": [round(r * 100, 1) for r in ratios],
        "median_round_ratio_percent": round(median_ratio * 100, 1),
        "client": args.client,
        "worker_cpu_us_trivial": round(cpu_trivial * 1e6, 1),
        "worker_cpu_us_decision": round(cpu_decision * 1e6, 1),
        "worker_cpu_ratio_percent": round(cpu_trivial / cpu_decision * 100, 1),
        "paced_rate": round(figures["half_rate"]),  # type: ignore[call-overload]
        "paced_achieved_rps": round(paced.rate), "paced_errors": paced.errors,
        "paced_p50_ms": ms(paced.percentile(0.5)), "paced_p99_ms": ms(paced.percentile(0.99)),
        "paced_worst_p99_ms": ms(figures["paced_worst_p99"]),  # type: ignore[arg-type]
        "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
        "rss_growth_percent": round(growth, 1), "memory_requests": figures["memory_requests"],
        "record_days": args.record_days, "audit_drain_ms": ms(figures["drain_seconds"]),  # type: ignore[arg-type]
        "stored_rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}; client {args.client}, {args.connections} keep-alive connections, "
          f"best of {args.repeat}; database {args.database_url}")
    print("| endpoint | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(f"| GET /health/live (ceiling) | {result['trivial_rps']} | {result['trivial_p50_ms']} | "
          f"{result['trivial_p99_ms']} |")
    print(f"| POST /v1/data/age_verification | {result['decision_rps']} | {result['decision_p50_ms']} | "
          f"{result['decision_p99_ms']} |")
    print(f"| same, paced at {result['paced_rate']}/s (half max) | {result['paced_achieved_rps']} | "
          f"{result['paced_p50_ms']} | {result['paced_p99_ms']} |")
    print(f"decision/ceiling: {result['ratio_percent']}% of the best runs; per round "
          f"{result['round_ratios_percent']}, median {result['median_round_ratio_percent']}% (target >= 70%)")
    print(f"worker CPU per request (median of the rounds): {result['worker_cpu_us_trivial']} µs ceiling, "
          f"{result['worker_cpu_us_decision']} µs decision: {result['worker_cpu_ratio_percent']}%")
    print(f"p99 at half rate: {result['paced_p99_ms']} ms, best of {args.repeat} runs of {args.paced_seconds:g} s "
          f"(worst {result['paced_worst_p99_ms']} ms; target < 10 ms)")
    print(f"decision records: IDGW_DECISION_RECORD_DAYS={args.record_days}, shadow {'on' if args.shadow else 'off'}; "
          "audit queue empty "
          f"{result['audit_drain_ms']} ms after the last load; stored after shutdown: {rows or 'not counted'}")
    print(f"worker RSS: {result['rss_before_mib']} MiB -> {result['rss_after_mib']} MiB after "
          f"{result['memory_requests']} decisions: {result['rss_growth_percent']:+}% (target < 10%)")


if __name__ == "__main__":
    main()
