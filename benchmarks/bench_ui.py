"""Workbench pages: the server time of each page's render.

Builds the gateway's app (`create_app`, in-process: memory:// stores, IDGW_DATA_API_AUTH
none) on two policy directories, and times each workbench page through the ASGI
transport, from the request to the last byte of the answer (no socket, no browser):

- the shipped policies;
- the shipped policies plus `synthetic`, a purpose of `--rules` generated rules (10,000
  by default; bench_engine.py's generator), with a test file of a few cases.

The first request after a (re)load runs the set's test files; it is reported on its own
("first render"), then each page is timed `--repeat` times and the median is reported.

    .venv/bin/python benchmarks/bench_ui.py
    .venv/bin/python benchmarks/bench_ui.py --rules 10000 --repeat 20

Targets (issue 17): each page under 50 ms for the shipped policies, under 500 ms for a
purpose with 10,000 rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import httpx  # noqa: E402
from bench_engine import matching_facts, write_synthetic  # noqa: E402

import engine  # noqa: E402
from server.app import create_app  # noqa: E402
from server.audit import RecentEvents  # noqa: E402
from server.facts import CATALOGUE  # noqa: E402
from server.settings import load_settings  # noqa: E402

SHIPPED_TARGET_MS = 50.0
LARGE_TARGET_MS = 500.0

AGE_FORM = {"sanctions_listed": "false", "citizen_valid": "true", "is_over_18": "true",
            "has_credential": "false", "context.national_id": "AB123456"}


def form_of(facts: dict[str, Any]) -> dict[str, str]:
    """The Try form's fields for `facts` (context fields as `context.<name>`)."""
    fields: dict[str, str] = {}
    for name, value in facts.items():
        if name == "context":
            fields |= {f"context.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        else:
            fields[name] = json.dumps(value)
    return fields


def write_large(directory: Path, rules: int) -> list[int]:
    """The shipped policies, a `synthetic` purpose of `rules` rules and a test file with
    a case for a few of them; the indexes of the rules the cases reach."""
    shutil.copytree(REPO / "policies", directory, dirs_exist_ok=True)
    write_synthetic(directory, rules)
    reached = sorted({0, rules // 2, rules - 1})
    policy_set = engine.load(directory, catalogue=CATALOGUE)
    cases = []
    for i in reached:
        facts = matching_facts(i)
        decision = policy_set.decide("synthetic", facts)
        assert decision.rule == i, (i, decision)
        cases.append({"name": f"rule {i}", "input": facts,
                      "expect": {"status": decision.status, "reason": decision.reason}})
    (directory / "synthetic_test.yaml").write_text(json.dumps({"purpose": "synthetic", "cases": cases}))
    return reached


async def time_pages(policy_dir: Path, pages: list[tuple[str, str, dict[str, str] | None]],
                     repeat: int) -> dict[str, Any]:
    settings = load_settings(policy_dir=policy_dir, data_api_auth="none", database_url="memory://",
                             policy_reload=False, log_level="WARNING")
    app = create_app(settings, events=RecentEvents())
    results: dict[str, Any] = {}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench.test"
    ) as client:

        async def once(method: str, path: str, form: dict[str, str] | None) -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            response = await client.request(method, path, data=form)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            return elapsed, response

        first, _ = await once("GET", "/ui/", None)
        results["first render (templates compiled, tests run)"] = {"ms": round(first, 2)}
        for label, path, form in pages:
            method = "POST" if form is not None else "GET"
            _, response = await once(method, path, form)  # warm
            if form is not None:
                assert "decision-status" in response.text, (path, response.text[:2000])
            times = [(await once(method, path, form))[0] for _ in range(repeat)]
            results[label] = {"path": path, "method": method, "ms": round(statistics.median(times), 2),
                              "max_ms": round(max(times), 2), "bytes": len(response.content)}
    return results


def report(title: str, results: dict[str, Any], target: float) -> bool:
    print(f"\n{title} (target < {target:g} ms a page)")
    ok = True
    for label, row in results.items():
        counted = label != "first render (templates compiled, tests run)"
        met = row["ms"] < target
        ok = ok and (met or not counted)
        verdict = ("met" if met else "MISSED") if counted else "(not a page target)"
        extra = f"  max {row['max_ms']:.1f} ms, {row['bytes']:,} bytes" if "max_ms" in row else ""
        print(f"  {label:<46} {row['ms']:8.2f} ms{extra}  {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=10_000, help="rules of the generated purpose")
    parser.add_argument("--repeat", type=int, default=20, help="timed renders of each page (median)")
    parser.add_argument("--quick", action="store_true", help="1,000 rules, 3 repeats")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.rules, args.repeat = 1000, 3
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")

    shipped_pages: list[tuple[str, str, dict[str, str] | None]] = [
        ("overview", "/ui/", None),
        ("purpose age_verification", "/ui/purposes/age_verification", None),
        ("try age_verification (form)", "/ui/purposes/age_verification/try", None),
        ("try age_verification (decided)", "/ui/purposes/age_verification/try", AGE_FORM),
        ("tests", "/ui/tests", None),
        ("impact", "/ui/impact", None),
    ]
    shipped = asyncio.run(time_pages(REPO / "policies", shipped_pages, args.repeat))
    with tempfile.TemporaryDirectory(prefix="idgw-bench-ui-") as tmp:
        directory = Path(tmp) / "policies"
        reached = write_large(directory, args.rules)
        last = args.rules - 1
        large_pages: list[tuple[str, str, dict[str, str] | None]] = [
            ("overview", "/ui/", None),
            ("purpose synthetic, page 1", "/ui/purposes/synthetic", None),
            ("purpose synthetic, middle page", f"/ui/purposes/synthetic?page={args.rules // 200 + 1}", None),
            ("purpose synthetic, unreached only", "/ui/purposes/synthetic?unreached=1", None),
            ("try synthetic (form)", "/ui/purposes/synthetic/try", None),
            (f"try synthetic (decided by rule {last + 1})", "/ui/purposes/synthetic/try",
             form_of(matching_facts(last))),
            ("tests", "/ui/tests", None),
        ]
        large = asyncio.run(time_pages(directory, large_pages, args.repeat))
    ok = report("Shipped policies", shipped, SHIPPED_TARGET_MS)
    ok = report(f"A purpose of {args.rules:,} rules (tests reach rules {', '.join(str(i + 1) for i in reached)})",
                large, LARGE_TARGET_MS) and ok
    if args.json:
        args.json.write_text(json.dumps({"shipped": shipped, "large": large, "rules": args.rules}, indent=2))
    print("\nall targets met" if ok else "\nsome targets MISSED")


if __name__ == "__main__":
    main()
