"""Audit events inserted per second into SQLite and PostgreSQL, one by one vs batched.

Each mode runs ``--repeat`` times (default 3) and reports the best rate, as ``timeit``
does: on a shared machine the slower runs measure the neighbours. Each run writes to a
fresh database: a SQLite file in a temporary directory and, when
a PostgreSQL URL is given, a schema of its own that is dropped afterwards. Events carry
every field, as the audit writer will send them; ``append`` is the same call the writer
makes (one transaction and one round trip per call).

    .venv/bin/python benchmarks/bench_stores.py
    .venv/bin/python benchmarks/bench_stores.py --postgresql-url postgresql://postgres@127.0.0.1:5432/test

The PostgreSQL URL defaults to ``IDGW_TEST_DATABASE_URL``; without one only SQLite runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from stores import AuditEvent, open_stores


def make_events(count: int, prefix: str) -> list[AuditEvent]:
    start = datetime.now(UTC)
    return [
        AuditEvent(
            id=f"{prefix}-{n:08d}",
            timestamp=start + timedelta(microseconds=n),
            action="decision_made",
            subject_ref=hashlib.sha256(f"user-{n % 500}".encode()).hexdigest(),
            purpose="age_verification",
            decision="pass",
            reason="all_checks_passed",
            request_id=f"req-{n:08d}",
            decision_id=f"dec_{uuid.uuid4().hex}",
            policy_revision="sha256:" + "ab" * 32,
            stream_id="bench",
            prev_hash="00" * 32,
            hash="ff" * 32,
        )
        for n in range(count)
    ]


async def measure(url: str, events: list[AuditEvent], batch_size: int) -> float:
    """Events per second appending ``events`` in calls of ``batch_size``."""
    async with await open_stores(url) as stores:
        started = time.perf_counter()
        for offset in range(0, len(events), batch_size):
            await stores.audit_events.append(events[offset : offset + batch_size])
        elapsed = time.perf_counter() - started
        assert await stores.audit_events.count() == len(events)
    return len(events) / elapsed


@contextmanager
def sqlite_file() -> Iterator[str]:
    """The URL of a new SQLite file, deleted afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        yield f"sqlite:///{Path(directory) / 'bench.db'}"


@contextmanager
def postgres_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    schema = f"idgw_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    parts = urlsplit(server_url)
    query = dict(parse_qsl(parts.query), options=f"-csearch_path={schema}")
    try:
        yield urlunsplit(parts._replace(query=urlencode(query)))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def best_rate(
    open_url: Callable[[], AbstractContextManager[str]], count: int, size: int, repeat: int
) -> float:
    rates = []
    for _ in range(repeat):
        with open_url() as url:
            rates.append(await measure(url, make_events(count, uuid.uuid4().hex[:8]), size))
    return max(rates)


async def run(args: argparse.Namespace) -> None:
    modes = [("one by one", 1, args.single_events)] + [
        (f"batches of {size}", size, args.batched_events) for size in args.batch_sizes
    ]
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}"
    )
    print()
    print("| backend | mode | events | events/s |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as directory:
        for n, (mode, size, count) in enumerate(modes):
            url = f"sqlite:///{Path(directory) / f'bench-{n}.db'}"
            rate = await measure(url, make_events(count, f"s{n}"), size)
            print(
                f"| SQLite (WAL, synchronous=FULL) | {mode} | {count} | {rate:,.0f} |", flush=True
            )
    if not args.postgresql_url:
        print("\nPostgreSQL skipped: no --postgresql-url and no IDGW_TEST_DATABASE_URL")
        return
    for n, (mode, size, count) in enumerate(modes):
        with postgres_schema(args.postgresql_url) as url:
            rate = await measure(url, make_events(count, f"p{n}"), size)
        print(f"| PostgreSQL | {mode} | {count} | {rate:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql-url", default=os.environ.get("IDGW_TEST_DATABASE_URL"))
    parser.add_argument("--single-events", type=int, default=2_000)
    parser.add_argument("--batched-events", type=int, default=50_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1_000])
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
