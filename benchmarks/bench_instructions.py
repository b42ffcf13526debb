"""Instructions per request of the decision endpoint and the trivial one, under callgrind.

Throughput on a shared 2-core machine drifts by ±10% between runs of the same code,
which is as large as most single changes on the request path. An instruction count
does not drift: valgrind's callgrind counts the instructions the server executes in
user space (not the kernel's), the same for the same code and inputs whatever else the
machine does. This script runs `idgw serve` (one worker, SQLite, the audit writer
process, as `bench_server.py` does) under callgrind, sends a fixed number of requests
to each endpoint over keep-alive connections, and reads the count between two marks
(`callgrind_control --zero`, then `--dump`), so start-up and shut-down are left out.
The writer process is not traced: it is another program (`valgrind` follows no exec).

    .venv/bin/python benchmarks/bench_instructions.py            # ~2 minutes
    .venv/bin/python benchmarks/bench_instructions.py --requests 3200

Needs valgrind (Debian: `apt-get install valgrind`). The ratio of the two counts is an
estimate of the throughput ratio that the noise cannot move; it is not the same thing
(the kernel's share, cache misses and the second core are not in it), so the target is
still judged on `bench_server.py`'s throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import DECISION, REPO, TRIVIAL, closed_loop, free_port, start_server, stop_server

_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def instructions(dump: Path) -> int:
    found = _TOTAL.search(dump.read_text())
    if found is None:
        raise SystemExit(f"no instruction total in {dump}")
    return int(found.group(1))


async def measure(port: int, pid: int, requests: int, connections: int, workdir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, request in (("trivial", TRIVIAL), ("decision", DECISION)):
        deadline = time.perf_counter() + 3600
        await closed_loop(port, request, requests // 4, connections, deadline)  # warm-up
        callgrind_control("--zero", str(pid))
        run = await closed_loop(port, request, requests, connections, deadline)
        if run.errors or run.requests != requests:
            raise SystemExit(f"{name}: {run.errors} errors in {run.requests} requests")
        callgrind_control(f"--dump={name}", str(pid))
        dumps = sorted(workdir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        counts[name] = instructions(dumps[-1]) // requests
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1600, help="per endpoint, after a quarter as many to warm up")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--record-days", type=int, default=30,
                        help="IDGW_DECISION_RECORD_DAYS of the server: 0 records no decision")
    parser.add_argument("--shadow", action="store_true", help="a copy of the policies as IDGW_SHADOW_POLICY_DIR")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("needs valgrind and callgrind_control on PATH (Debian: apt-get install valgrind)")
    workdir = Path(tempfile.mkdtemp(prefix="idgw-instructions-"))
    shutil.copytree(REPO / "policies", workdir / "policies")
    port = free_port()
    prefix = ["valgrind", "--tool=callgrind", "--dump-instr=no",
              f"--callgrind-out-file={workdir}/callgrind.out.%p", sys.executable]
    shadow_dir = None
    if args.shadow:
        shadow_dir = workdir / "shadow"
        shutil.copytree(REPO / "policies", shadow_dir)
    server = start_server(port, workdir, prefix=prefix, timeout=300, record_days=args.record_days,
                          shadow_dir=shadow_dir)
    try:
        counts = asyncio.run(measure(port, server.pid, args.requests, args.connections, workdir))
    finally:
        stop_server(server, workdir, timeout=120)  # valgrind: shutting down takes a while
    ratio = counts["trivial"] / counts["decision"]
    print(f"machine: CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.requests} requests per "
          f"endpoint, {args.connections} connections; callgrind, user-space instructions of the worker; "
          f"IDGW_DECISION_RECORD_DAYS={args.record_days}, shadow {'on' if args.shadow else 'off'}")
    print(f"GET /health/live (ceiling): {counts['trivial']:,} instructions a request")
    print(f"POST /v1/data/age_verification: {counts['decision']:,} instructions a request")
    print(f"ceiling/decision: {ratio:.1%} (the throughput ratio if both ran at the same instructions per second)")


if __name__ == "__main__":
    main()
