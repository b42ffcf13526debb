"""Soak: one `idgw serve` under a steady mixed workload for a long time, sampled each
minute, to show that nothing creeps up (memory, file descriptors, database connections,
the audit backlog, latency) and that every response is accounted for.

The gateway runs as deployed: one worker, its audit writer process, PostgreSQL (a schema
of its own on `--postgresql-url`, dropped afterwards; the gateway's connections carry an
`application_name` of their own so that they can be counted) through the worker's fixed
pool of `--pool-size` connections (`IDGW_DATABASE_POOL_MIN` = `_MAX`, as
docs/operations.md advises where the connection count must stay put: a growing pool
steps up in a stalled minute and keeps its connections for 10 idle minutes), bearer
tokens on the data API, JSON access log at INFO. The workload, paced at `--rate` requests/s over `--users`
concurrent virtual users, is a sequence of journeys, each by a new user:

    POST /auth/authorize, POST /auth/token      log in
    POST /auth/consent, GET /auth/consent       grant decision_evaluation and registry_check, list
    3 x POST /decision/evaluate                 age_verification, the mock registries' ids
    8 x POST /v1/data/age_verification          the data API, with the bearer token
    POST /auth/refresh                          a new pair; the rest of the journey uses it
    GET /me/data-export                         the user's data and audit events

New users keep every journey alike: an export covers one journey's events, so its cost
does not grow with the run (the tables do, as in production).

Each `--sample-seconds` (60) the script records the worker's and the writer's RSS and
open file descriptors (the worker's without the client's connections, which the load's
concurrency decides), the gateway's PostgreSQL connections, the audit queue depth (the
mean of a reading every 5 s: the depth swings between 0 and a flush's worth each
second), the gateway's CPU time per request, and the p99 latency of each endpoint over
the window, with the CPU the gateway, this client and the whole machine used (a shared
machine's neighbours show there). No series may rise over the samples taken after
`--warmup-minutes` (a sample's p99, CPU per request and mean depth cover the interval
before it): its drift must stay under +5%. Only a rise is judged: a fall is no leak (a
cache that has filled, neighbours on a shared machine that went quiet).

The machine's speed is measured too. On a shared virtual machine the CPU time of the
same work changes with the neighbours: a run here saw every process's CPU per request,
this client's included, double for three minutes and come back. The yardstick is this
client: it does the same work for every request (build it, send it, read the answer),
so its CPU time per request changes only with the machine. A sample's speed factor is
the client's CPU per request over its median across the samples after the warm-up. The
gateway's CPU per request and each p99 are also taken at constant speed (divided by
their sample's factor), and they rise only when they rise both as measured and at
constant speed: a machine that slows down raises the first, one that speeds up raises
the second (a latency is partly waiting on PostgreSQL, which the factor does not
scale), and a gateway that grows costlier raises both. The drift of

- resources and CPU per request: the rise of a least-squares line through the samples
  over their span, relative to their mean;
- the audit queue depth: the same rise relative to the queue's capacity, where events
  would spill (its mean is a fraction of one flush, of which any change is a large share);
- p99 per endpoint: the p99 of the requests of the later half of those samples against
  that of the earlier half (a minute's p99 rests on a few requests of the endpoint's tail).
  A half holds a few thousand requests of an endpoint, so its p99 rests on a few dozen:
  two halves of a steady run differ by 5-15% (three 24-minute runs here flagged a
  different endpoint each, one rising 7% where another fell 13%). The report gives the
  90% bootstrap interval of each change, and a p99 rises when the interval's lower end
  is a rise of 5% or more, both as measured and at constant speed: a rise the run can
  tell apart from its own noise.

Accounting: every request the client sent is answered 200 (none lost to a transport
error, none with another status); the gateway's `http_requests_total` counts exactly the
client's requests, endpoint by endpoint and status by status; every decision answered is
in `audit_events`, every event emitted is stored, none dead-lettered, and `idgw audit
verify` finds the chain intact after the gateway stopped.

    .venv/bin/python benchmarks/soak.py --postgresql-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/soak.py --minutes 2 --sample-seconds 20 --warmup-minutes 0.5   # a short run

The run lasts `--minutes` (default 10, at most 24 hours) plus start and checks; the exit
status is 1 when any verdict is MISSED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
from bench_audit import start_server, stop_server
from bench_server import cpu_seconds, free_port, rss_kib
from bench_stores import postgres_schema
from prometheus_client.parser import text_string_to_metric_families

from server.settings import AuditSettings

REPO = Path(__file__).resolve().parents[1]
IDGW = Path(sys.executable).with_name("idgw")
CLIENT_ID = "soak-client"
NATIONAL_IDS = ["123456789", "987654321", "111111111", "000000000", "555555555",
                "AB123456", "CD234567", "EF345678", "GH456789", "JK567890"]
FACTS = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False}
DRIFT_TARGET = 0.05
#: Resamples of each half for the interval of a p99's change.
BOOTSTRAP_ROUNDS = 400
DEPTH_READING_SECONDS = 5.0
#: The gateway runs with the default audit settings (its environment has no IDGW_*).
QUEUE_CAPACITY = AuditSettings().queue_capacity

#: The client's name of each endpoint, and the gateway's (method, route template).
ENDPOINTS: dict[str, tuple[str, str]] = {
    "authorize": ("POST", "/auth/authorize"),
    "token": ("POST", "/auth/token"),
    "consent": ("POST", "/auth/consent"),
    "consents": ("GET", "/auth/consent"),
    "evaluate": ("POST", "/decision/evaluate"),
    "data": ("POST", "/v1/data/{purpose}"),
    "refresh": ("POST", "/auth/refresh"),
    "export": ("GET", "/me/data-export"),
}


# -- the workload ---------------------------------------------------------------------------


class Pacer:
    """Hands out send times `1/rate` apart, shared by every virtual user."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.perf_counter()

    async def slot(self) -> None:
        now = time.perf_counter()
        self.next = max(self.next + self.interval, now - self.interval)  # no burst to catch up
        if self.next > now:
            await asyncio.sleep(self.next - now)


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)  # no HTTP answer
    unexpected: list[str] = field(default_factory=list)  # a few examples
    window: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # ms
    decisions: set[str] = field(default_factory=set)
    journeys: int = 0


class Workload:
    def __init__(self, client: httpx.AsyncClient, rate: float, run_id: str) -> None:
        self.client = client
        self.pacer = Pacer(rate)
        self.run_id = run_id
        self.tally = Tally()
        self.stopping = asyncio.Event()
        self._users = 0

    async def request(self, endpoint: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """One request, paced; its JSON body when answered 200, else None (tallied)."""
        await self.pacer.slot()
        method = ENDPOINTS[endpoint][0]
        self.tally.sent[endpoint] += 1
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.tally.lost[endpoint] += 1
            self._example(f"{endpoint}: {type(exc).__name__}: {exc}")
            return None
        self.tally.window[endpoint].append((time.perf_counter() - started) * 1000)
        self.tally.statuses[(endpoint, response.status_code)] += 1
        if response.status_code != 200:
            self._example(f"{endpoint}: {response.status_code} {response.text[:200]}")
            return None
        body: dict[str, Any] = response.json()
        return body

    def _example(self, text: str) -> None:
        if len(self.tally.unexpected) < 20:
            self.tally.unexpected.append(text)

    async def journey(self) -> None:
        self._users += 1
        email = f"soak-{self.run_id}-{self._users}@example.test"
        session = await self.request("authorize", "/auth/authorize",
                                     json={"email": email, "client_id": CLIENT_ID, "scope": "openid"})
        if session is None:
            return
        tokens = await self.request("token", "/auth/token",
                                    json={"grant_type": "session", "session_id": session["session_id"]})
        if tokens is None:
            return
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        await self.request("consent", "/auth/consent", headers=headers,
                           json={"purposes": ["decision_evaluation", "registry_check"]})
        await self.request("consents", "/auth/consent", headers=headers)
        for _ in range(3):
            context = {"national_id": random.choice(NATIONAL_IDS)}
            decided = await self.request("evaluate", "/decision/evaluate", headers=headers,
                                         json={"purpose": "age_verification", "context": context})
            if decided is not None:
                self.tally.decisions.add(decided["decision_id"])
        for _ in range(8):
            facts = {**FACTS, "context": {"national_id": random.choice(NATIONAL_IDS)}}
            decided = await self.request("data", "/v1/data/age_verification", headers=headers,
                                         json={"input": facts})
            if decided is not None:
                self.tally.decisions.add(decided["result"]["decision_id"])
        refreshed = await self.request("refresh", "/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        if refreshed is not None:
            headers = {"Authorization": f"Bearer {refreshed['access_token']}"}
        await self.request("export", "/me/data-export", headers=headers)
        self.tally.journeys += 1

    async def user(self) -> None:
        while not self.stopping.is_set():  # bounded by the run's duration
            await self.journey()


# -- the gateway and what it uses -----------------------------------------------------------


@contextmanager
def gateway(workdir: Path, database_url: str, pool_size: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`idgw serve` on `database_url` with the shipped policies (bench_audit's) and a fixed
    pool of `pool_size` connections, stopped with SIGTERM on the way out."""
    shutil.copytree(REPO / "policies", workdir / "policies")
    port = free_port()
    pool = {"IDGW_DATABASE_POOL_MIN": str(pool_size), "IDGW_DATABASE_POOL_MAX": str(pool_size)}
    process = start_server(workdir, port, database_url, pool)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            stop_server(process)


def with_application_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), "application_name": name})))


def audit_writer(pid: int) -> int | None:
    """The worker's audit writer process (a child running server.audit.shipper)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        try:
            if b"server.audit.shipper" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:  # exited meanwhile
            continue
    return None


def socket_kinds(pid: int, gateway_port: int, database_port: int) -> dict[str, str]:
    """What each TCP socket in `pid`'s network namespace is, by inode: `listening`, a
    `client` connection (to the gateway's port), a `postgresql` one, or `other`."""
    kinds = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port, remote_port = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            kind = ("listening" if fields[3] == "0A" else "postgresql" if remote_port == database_port
                    else "client" if local_port == gateway_port else "other")
            kinds[f"socket:[{fields[9]}]"] = kind
    return kinds


def open_fds(pid: int, sockets: dict[str, str]) -> Counter[str]:
    """Open file descriptors by kind: a socket's (`sockets`, by link target), else pipe,
    anon_inode, socket (not TCP) or file."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target in sockets:
            kinds[f"socket {sockets[target]}"] += 1
        else:
            kinds[target.split(":", 1)[0] if ":" in target and not target.startswith("/") else "file"] += 1
    return kinds


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent not idle so far, over all cores (/proc/stat)."""
    # user nice system idle iowait irq softirq steal (guest time is inside user and nice)
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds so far of the gateway (worker and writer), this client and the machine."""

    wall: float
    gateway: float
    client: float
    machine: float

    @classmethod
    def now(cls, pid: int, writer: int | None) -> CpuReading:
        return cls(wall=time.monotonic(), gateway=cpu_seconds(pid) + (cpu_seconds(writer) if writer else 0.0),
                   client=time.process_time(), machine=machine_busy_seconds())


def metric_samples(base_url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def metric(base_url: str, name: str) -> float:
    return sum(value for sample, _, value in metric_samples(base_url) if sample == name)


# -- samples and the report -----------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    requests: int
    worker_rss_mib: float
    writer_rss_mib: float
    worker_fds: int  # the client's connections aside: how many the load holds open is its own doing
    writer_fds: int
    client_connections: int
    worker_fd_kinds: dict[str, int]
    db_connections: int
    audit_depth: float  # mean of the window's readings
    audit_depth_max: float
    gateway_cpu_ms: float  # worker + writer CPU per request
    client_cpu_ms: float  # this client's CPU per request: the machine's speed (module docstring)
    cores: dict[str, float]  # CPU used over the window, in cores: gateway, client, machine
    p99_ms: dict[str, float]


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _sorted_p99(ordered: list[float]) -> float:
    """`p99` of values already sorted (the same inclusive interpolation)."""
    if len(ordered) < 2:
        return ordered[0] if ordered else float("nan")
    position = 0.99 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def p99_change_interval(early: list[float], late: list[float], rounds: int = BOOTSTRAP_ROUNDS) -> tuple[float, float]:
    """The 90% bootstrap interval of `p99(late) / p99(early) - 1`: each half resampled
    with replacement `rounds` times (a fixed seed: the same data give the same interval)."""
    if len(early) < 2 or len(late) < 2:
        return float("nan"), float("nan")
    rng = random.Random(20261206)
    changes = sorted(
        _sorted_p99(sorted(rng.choices(late, k=len(late)))) / _sorted_p99(sorted(rng.choices(early, k=len(early)))) - 1
        for _ in range(rounds)
    )
    return changes[int(0.05 * rounds)], changes[int(0.95 * rounds) - 1]


def drift(points: list[tuple[float, float]], scale: float | None = None) -> float:
    """The rise of a least-squares line through `points` over their span, relative to
    `scale` (default: their mean); 0.03 is 3% higher at the end than at the start."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    scale = mean_y if scale is None else scale
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0 or scale == 0:
        return 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope * (max(xs) - min(xs)) / scale


def print_samples(samples: list[Sample]) -> None:
    print("\n| minute | requests | worker RSS MiB | writer RSS MiB | fds worker/writer | PG connections"
          " | client connections | audit depth mean/max | CPU ms/request gateway/client | cores gateway/client/machine |")
    print("|---:" * 10 + "|")
    for s in samples:
        print(f"| {s.minute:.1f} | {s.requests:,} | {s.worker_rss_mib:.1f} | {s.writer_rss_mib:.1f} |"
              f" {s.worker_fds}/{s.writer_fds} | {s.db_connections} | {s.client_connections} | {s.audit_depth:.0f}/{s.audit_depth_max:.0f} |"
              f" {s.gateway_cpu_ms:.2f}/{s.client_cpu_ms:.2f} | {s.cores['gateway']:.2f}/{s.cores['client']:.2f}/{s.cores['machine']:.2f} |")
    print("\n| minute | " + " | ".join(f"p99 {n} ms" for n in ENDPOINTS) + " |")
    print("|---:" * (1 + len(ENDPOINTS)) + "|")
    for s in samples:
        print(f"| {s.minute:.1f} | " + " | ".join(f"{s.p99_ms.get(n, float('nan')):.1f}" for n in ENDPOINTS) + " |")
    print("\nworker fds by kind: " + "; ".join(
        f"{s.minute:.1f}: " + ", ".join(f"{k} {v}" for k, v in s.worker_fd_kinds.items()) for s in samples))


def report(samples: list[Sample], windows: list[dict[str, list[float]]], warmup: float) -> bool:
    """The samples, then each series' drift after the warm-up, met when it rose less than
    the target (the module docstring says how)."""
    print_samples(samples)
    steady = [i for i, s in enumerate(samples) if s.minute > warmup]
    if len(steady) < 2:
        print(f"\nfewer than two samples after the {warmup:g}-minute warm-up: no drift computed")
        return False
    first, last = samples[steady[0]], samples[steady[-1]]
    yardstick = statistics.median(samples[i].client_cpu_ms for i in steady)
    speed = [s.client_cpu_ms / yardstick for s in samples]  # 2.0: the same work took twice the CPU
    print(f"\nthe machine's speed, the client's CPU per request against its median ({yardstick:.3f} ms) after"
          " the warm-up: " + ", ".join(f"{samples[i].minute:.0f}: {speed[i]:.2f}" for i in steady))
    print(f"\ndrift after the warm-up ({len(steady)} samples, minutes {first.minute:.1f}-{last.minute:.1f};"
          f" target: a rise under {DRIFT_TARGET:.0%}; CPU rises when it rises both as measured and at constant"
          " speed; p99: start and end are the first and second half's, and a p99 rises when the lower end of"
          " the 90% interval of its change is a rise of the target or more, both as measured and at constant"
          " speed):\n")
    print("| series | start | end | min | max | drift | at constant speed | 90% interval | |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    no_rise = True

    def row(name: str, start: float, end: float, values: list[float], change: float,
            steady_change: float | None = None, intervals: tuple[tuple[float, float], ...] = ()) -> None:
        nonlocal no_rise
        # A rise only: CPU or latency that falls is no leak. CPU and latency rise when
        # they rise both as measured and at constant speed (module docstring); a p99 when
        # its interval's lower end does, both ways.
        if intervals:
            ok = any(low < DRIFT_TARGET for low, _ in intervals)
        else:
            ok = change < DRIFT_TARGET or (steady_change is not None and steady_change < DRIFT_TARGET)
        no_rise &= ok
        at_speed = "" if steady_change is None else f"{steady_change:+.1%}"
        shown = "; ".join(f"{low:+.1%} to {high:+.1%}" for low, high in intervals)
        print(f"| {name} | {start:.1f} | {end:.1f} | {min(values):.1f} | {max(values):.1f} |"
              f" {change:+.1%} | {at_speed} | {shown} | {'met' if ok else 'MISSED'} |")

    series: dict[str, tuple[list[tuple[float, float]], float | None]] = {
        "worker RSS MiB": ([(s.minute, s.worker_rss_mib) for s in samples], None),
        "writer RSS MiB": ([(s.minute, s.writer_rss_mib) for s in samples], None),
        "worker open fds": ([(s.minute, s.worker_fds) for s in samples], None),
        "writer open fds": ([(s.minute, s.writer_fds) for s in samples], None),
        "PostgreSQL connections": ([(s.minute, s.db_connections) for s in samples], None),
        f"audit queue depth (of {QUEUE_CAPACITY:,})": ([(s.minute, s.audit_depth) for s in samples], QUEUE_CAPACITY),
    }
    for name, (points, scale) in series.items():
        values = [points[i][1] for i in steady]
        row(name, values[0], values[-1], values, drift([points[i] for i in steady], scale))
    cpu = [(s.minute, s.gateway_cpu_ms) for s in samples]
    values = [cpu[i][1] for i in steady]
    row("gateway CPU ms/request", values[0], values[-1], values, drift([cpu[i] for i in steady]),
        drift([(cpu[i][0], cpu[i][1] / speed[i]) for i in steady]))
    halves = steady[: len(steady) // 2], steady[len(steady) // 2 :]
    for endpoint in ENDPOINTS:
        early, late = ([ms for i in half for ms in windows[i].get(endpoint, [])] for half in halves)
        steady_early, steady_late = ([ms / speed[i] for i in half for ms in windows[i].get(endpoint, [])]
                                     for half in halves)
        row(f"p99 {endpoint} ms", p99(early), p99(late),
            [samples[i].p99_ms.get(endpoint, float("nan")) for i in steady],
            p99(late) / p99(early) - 1, p99(steady_late) / p99(steady_early) - 1,
            (p99_change_interval(early, late), p99_change_interval(steady_early, steady_late)))
    return no_rise


def accounting(tally: Tally, base_url: str) -> bool:
    """Every request answered 200, and the gateway counted exactly the client's requests."""
    served: Counter[tuple[str, int]] = Counter()
    by_template = {template: name for name, template in ENDPOINTS.items()}
    for name, labels, value in metric_samples(base_url):
        if name == "http_requests_total":
            endpoint = by_template.get((labels["method"], labels["endpoint"]))
            if endpoint is not None:
                served[(endpoint, int(labels["status"]))] += int(value)
    print("\n| endpoint | sent | answered 200 | other status | lost | counted by the gateway |")
    print("|---|---:|---:|---:|---:|---:|")
    clean = True
    for endpoint in ENDPOINTS:
        ok_count = tally.statuses[(endpoint, 200)]
        other = sum(n for (e, status), n in tally.statuses.items() if e == endpoint and status != 200)
        counted = sum(n for (e, _), n in served.items() if e == endpoint)
        by_status = {status: n for (e, status), n in tally.statuses.items() if e == endpoint}
        clean &= (other == 0 and tally.lost[endpoint] == 0 and ok_count == tally.sent[endpoint]
                  and counted == tally.sent[endpoint]
                  and by_status == {status: n for (e, status), n in served.items() if e == endpoint})
        print(f"| {endpoint} | {tally.sent[endpoint]:,} | {ok_count:,} | {other:,} | {tally.lost[endpoint]:,} |"
              f" {counted:,} |")
    total = sum(tally.sent.values())
    print(f"\n{total:,} requests in {tally.journeys:,} journeys; {len(tally.decisions):,} decisions")
    for example in tally.unexpected:
        print(f"  unexpected: {example}")
    return clean


def audit_complete(database_url: str, base_url: str, decisions: set[str]) -> bool:
    """Every decision answered is stored; every event emitted is stored, none dead-lettered."""
    deadline = time.monotonic() + 120
    while True:  # bounded: 120 s for the writer to catch up
        with psycopg.connect(database_url, autocommit=True) as conn:
            stored = conn.execute("SELECT count(*) FROM audit_events WHERE decision_id = ANY(%s)",
                                  (list(decisions),)).fetchone()
            events = conn.execute("SELECT count(*) FROM audit_events").fetchone()
            letters = conn.execute("SELECT count(*) FROM audit_dead_letters").fetchone()
        assert stored is not None and events is not None and letters is not None
        emitted = metric(base_url, "audit_events_emitted_total")
        done = bool(stored[0] == len(decisions) and events[0] == emitted)
        if done or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    print(f"audit: {stored[0]:,} of {len(decisions):,} decisions stored; {events[0]:,} events stored of"
          f" {emitted:,.0f} emitted; {letters[0]} dead letters")
    return done and int(letters[0]) == 0


def verify_chain(database_url: str) -> bool:
    result = subprocess.run([str(IDGW), "audit", "verify", "--database-url", database_url],
                            capture_output=True, text=True, timeout=600, check=False)
    print(f"idgw audit verify: {(result.stdout + result.stderr).strip()}")
    return result.returncode == 0


# -- the run --------------------------------------------------------------------------------


class Sampler:
    """Reads the gateway's resources; `take()` makes one `Sample` of the window since the
    last one (CPU used, requests sent, depth readings)."""

    def __init__(self, pid: int, base_url: str, database_url: str, application_name: str) -> None:
        self.pid = pid
        self.base_url = base_url
        self.ports = urlsplit(base_url).port or 80, urlsplit(database_url).port or 5432
        self.database_url = database_url  # without the gateway's application_name: not counted
        self.application_name = application_name
        self.depths: list[float] = []
        self.cpu = CpuReading.now(pid, audit_writer(pid))

    def read_depth(self) -> None:
        self.depths.append(metric(self.base_url, "audit_queue_depth"))

    def take(self, minute: float, requests: int, window: dict[str, list[float]]) -> Sample:
        writer = audit_writer(self.pid)
        sockets = socket_kinds(self.pid, *self.ports)
        worker_fds = open_fds(self.pid, sockets)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                               (self.application_name,)).fetchone()
        assert row is not None
        cpu, before = CpuReading.now(self.pid, writer), self.cpu
        seconds = cpu.wall - before.wall
        self.read_depth()
        depths, self.depths, self.cpu = self.depths, [], cpu
        return Sample(
            minute=minute, requests=requests,
            worker_rss_mib=rss_kib(self.pid) / 1024, writer_rss_mib=rss_kib(writer) / 1024 if writer else float("nan"),
            worker_fds=sum(worker_fds.values()) - worker_fds["socket client"],
            writer_fds=sum(open_fds(writer, sockets).values()) if writer else -1,
            client_connections=worker_fds["socket client"],
            worker_fd_kinds=dict(sorted(worker_fds.items())), db_connections=int(row[0]),
            audit_depth=statistics.fmean(depths), audit_depth_max=max(depths),
            gateway_cpu_ms=(cpu.gateway - before.gateway) * 1000 / max(requests, 1),
            client_cpu_ms=(cpu.client - before.client) * 1000 / max(requests, 1),
            cores={"gateway": (cpu.gateway - before.gateway) / seconds, "client": (cpu.client - before.client) / seconds,
                   "machine": (cpu.machine - before.machine) / seconds},
            p99_ms={endpoint: p99(values) for endpoint, values in sorted(window.items())},
        )


async def drive(args: argparse.Namespace, sampler: Sampler, base_url: str,
                ) -> tuple[Tally, list[Sample], list[dict[str, list[float]]]]:
    """The workload for `args.minutes`, a sample each `args.sample_seconds`."""
    # An idle connection is dropped by the client before uvicorn's 5-s keep-alive timeout
    # closes it: at the same 5 s (httpx's default), a request sent as the server closes the
    # connection is lost in transit ("Server disconnected") without reaching the gateway.
    limits = httpx.Limits(max_connections=args.users, max_keepalive_connections=args.users, keepalive_expiry=4.0)
    samples: list[Sample] = []
    windows: list[dict[str, list[float]]] = []  # each sample's latencies, ms, by endpoint
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        workload = Workload(client, args.rate, uuid.uuid4().hex[:8])
        users = [asyncio.create_task(workload.user()) for _ in range(args.users)]
        started = time.monotonic()
        end = started + args.minutes * 60
        next_sample = started + args.sample_seconds
        sent_before = 0
        while time.monotonic() < end - 0.5:  # bounded by --minutes
            await asyncio.sleep(max(0.0, min(DEPTH_READING_SECONDS, next_sample - time.monotonic())))
            if time.monotonic() < next_sample - 0.5:
                await asyncio.to_thread(sampler.read_depth)
                continue
            window, workload.tally.window = workload.tally.window, defaultdict(list)
            sent = sum(workload.tally.sent.values())
            minute = (time.monotonic() - started) / 60
            s = await asyncio.to_thread(sampler.take, minute, sent - sent_before, window)
            samples.append(s)
            windows.append(window)
            sent_before = sent
            next_sample = min(next_sample + args.sample_seconds, end)
            print(f"minute {s.minute:5.1f}: {s.requests:,} requests, worker {s.worker_rss_mib:.1f} MiB"
                  f" {s.worker_fds} fds, writer {s.writer_rss_mib:.1f} MiB {s.writer_fds} fds,"
                  f" {s.db_connections} PG connections, audit depth {s.audit_depth:.0f},"
                  f" {s.gateway_cpu_ms:.2f} CPU ms/request, machine {s.cores['machine']:.2f} cores busy,"
                  f" p99 data {s.p99_ms.get('data', float('nan')):.1f} ms", flush=True)
        workload.stopping.set()
        await asyncio.gather(*users)
    return workload.tally, samples, windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql-url", default=os.environ.get("IDGW_TEST_DATABASE_URL"))
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the workload runs (default 10)")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=2.0, help="samples left out of the drift")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, all endpoints together")
    parser.add_argument("--users", type=int, default=8, help="concurrent virtual users")
    parser.add_argument("--pool-size", type=int, default=8, help="the worker's fixed PostgreSQL pool (default 8)")
    parser.add_argument("--json", type=Path, help="write the samples and the tallies here")
    args = parser.parse_args()
    if not args.postgresql_url:
        parser.error("needs --postgresql-url or IDGW_TEST_DATABASE_URL")
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be above 0 and at most 1440")
    if not DEPTH_READING_SECONDS <= args.sample_seconds <= args.minutes * 60:
        parser.error(f"--sample-seconds must be at least {DEPTH_READING_SECONDS:g} and at most the run")
    if args.rate <= 0 or args.users < 1 or args.pool_size < 1:
        parser.error("--rate must be above 0, --users and --pool-size at least 1")

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()},"
          f" Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f};"
          f" {args.minutes:g} minutes at {args.rate:g} requests/s over {args.users} users,"
          f" sampled every {args.sample_seconds:g} s, warm-up {args.warmup_minutes:g} minutes,"
          f" a fixed pool of {args.pool_size} PostgreSQL connections", flush=True)
    application_name = f"idgw-soak-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="idgw-soak-") as directory, \
            postgres_schema(args.postgresql_url) as schema_url:
        with gateway(Path(directory), with_application_name(schema_url, application_name), args.pool_size) \
                as (process, base_url):
            sampler = Sampler(process.pid, base_url, schema_url, application_name)
            tally, samples, windows = asyncio.run(drive(args, sampler, base_url))
            no_rise = report(samples, windows, args.warmup_minutes)
            accounted = accounting(tally, base_url)
            audited = audit_complete(schema_url, base_url, tally.decisions)
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
        log = (Path(directory) / "server.log").read_text(errors="replace")
        chained = verify_chain(schema_url)
    errors = log.count('"unhandled_error"')
    print(f"gateway exit status {status}; unhandled errors in its log: {errors};"
          f" load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "samples": [asdict(s) for s in samples], "sent": dict(tally.sent),
            "statuses": {f"{e} {s}": n for (e, s), n in tally.statuses.items()}, "lost": dict(tally.lost),
        }, indent=1))
    verdicts = {"no rise after the warm-up": no_rise, "every response accounted for": accounted,
                "every event stored": audited, "chain intact": chained,
                "clean exit, no unhandled error": status == 0 and errors == 0}
    print("\n" + "\n".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in verdicts.items()))
    if not all(verdicts.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
