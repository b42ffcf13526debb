"""Replay speed: recorded decisions read from SQLite and decided again by a candidate.

Fills a SQLite database (a temporary directory) with `--records` decision records as the
gateway writes them: decisions of the shipped purposes on varied facts, each record body
made by the audit encoder (`record_body`: the national id hashed, the subject
pseudonymised) and stored by `AuditEventStore.append` with its event. Then, for each
size in `--sizes`, runs `idgw policy replay CANDIDATE --since 30d --format json` as a
real process against it (the candidate: the shipped policies with the transfer threshold
moved from 10,000 to 5,000) and reports records replayed per second, from the process's
start to its end (Python start-up, the candidate's load and tests included), and
its peak RSS: streaming means the peak does not grow with the number of records.

    .venv/bin/python benchmarks/bench_replay.py                       # 100,000 records
    .venv/bin/python benchmarks/bench_replay.py --records 20000 --sizes 5000 20000

Target (issue 16): at least 20,000 recorded decisions replayed per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import engine  # noqa: E402
from engine.clock import utc_now  # noqa: E402
from server.audit.encoding import record_body  # noqa: E402
from server.audit.subject_refs import SubjectRefs  # noqa: E402
from server.events import DecisionInput  # noqa: E402
from stores import AuditEvent, open_stores  # noqa: E402

IDGW = Path(sys.executable).with_name("idgw")
BATCH = 2000


def varied_facts(rng: random.Random, purpose: str, n: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "sanctions_listed": rng.random() < 0.05, "citizen_valid": rng.random() < 0.95,
        "subject": {"sub": f"usr_{n % 5000:05d}", "client_id": "demo-client"},
        "consent": {"decision_evaluation": True, "registry_check": True},
        "context": {"national_id": f"ID{n:08d}"},
    }
    if purpose == "age_verification":
        facts |= {"is_over_18": rng.random() < 0.9, "has_credential": rng.random() < 0.5}
    elif purpose == "high_value_transfer":
        facts["is_pep"] = rng.random() < 0.3
        facts["context"]["amount"] = rng.choice([100, 2500, 5000, 7500, 10000, 12000, 50000])
    else:
        facts["is_pep"] = rng.random() < 0.3
    return facts


async def fill(url: str, count: int) -> float:
    policy_set = engine.load(REPO / "policies")
    names = sorted(policy_set.purposes)
    refs = SubjectRefs(b"k" * 32)
    rng = random.Random(16)
    start = utc_now() - timedelta(days=1)
    began = time.perf_counter()
    async with await open_stores(url) as stores:
        for first in range(0, count, BATCH):
            events = []
            for n in range(first, min(count, first + BATCH)):
                name = names[n % len(names)]
                purpose = policy_set.purposes[name]
                facts = varied_facts(rng, name, n)
                decision = policy_set.decide(name, facts)
                ref = refs.ref(facts["subject"]["sub"])
                events.append(AuditEvent(
                    id=f"evt_{n:09d}", timestamp=start + timedelta(milliseconds=n), action="decision_made",
                    subject_ref=ref, purpose=name, decision=decision.status, reason=decision.reason,
                    decision_id=f"dec_{n:09d}", policy_revision=policy_set.revision,
                    record=json.dumps(record_body(DecisionInput(purpose, facts, decision.conditions), refs, ref)),
                ))
            await stores.audit_events.append(events)
    return time.perf_counter() - began


def candidate(workdir: Path) -> Path:
    target = workdir / "candidate"
    shutil.copytree(REPO / "policies", target)
    policy = target / "high_value_transfer.yaml"
    policy.write_text(policy.read_text().replace("context.amount > 10000", "context.amount > 5000"))
    tests = target / "high_value_transfer_test.yaml"
    tests.write_text(tests.read_text().replace("amount: 10000}", "amount: 5000}"))
    return target


def replay_run(url: str, candidate_dir: Path, limit: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDGW_")}
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(IDGW), "policy", "replay", str(candidate_dir), "--since", "30d", "--limit", str(limit),
         "--format", "json", "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    _, _, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - began
    assert process.stdout is not None
    report = json.loads(process.stdout.read())
    replayed = report["replayed"] + report["not_replayable"]
    return {"records": replayed, "changed": report["changed"], "seconds": elapsed,
            "per_second": replayed / elapsed, "peak_rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best is shown")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="idgw-replay-"))
    try:
        url = f"sqlite:///{workdir / 'idgw.db'}"
        filled = asyncio.run(fill(url, args.records))
        size_mib = (workdir / "idgw.db").stat().st_size / 2**20
        candidate_dir = candidate(workdir)
        print(f"machine: {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}; {args.records:,} records stored in {filled:.1f} s "
              f"({size_mib:.0f} MiB SQLite)")
        print("| records | replayed/s (whole process) | seconds | changed | peak RSS MiB |")
        print("|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            runs = [replay_run(url, candidate_dir, min(size, args.records)) for _ in range(args.repeat)]
            best = max(runs, key=lambda run: run["per_second"])
            print(f"| {best['records']:,} | {best['per_second']:,.0f} | {best['seconds']:.2f} | "
                  f"{best['changed']:,} | {max(r['peak_rss_mib'] for r in runs):.0f} |")
        print(f"(bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
