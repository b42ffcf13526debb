"""A real `idgw serve` process: hot reload on a live server, workers, signals.

Every wait is bounded by a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import engine
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, ServerProcess, wait_until

AGE = "age_verification.yaml"
ELSE_RULE = "      - else: pass_with_conditions\n"
BLOCK_RULE = (
    '      - if: context.national_id == "ZZ999999"\n'
    "        then: fail\n"
    "        reason: {reason}\n"
)
KYC_POLICY = """purposes:
  kyc_refresh:
    description: Must the subject refresh their KYC documents?
    evidence:
      - is_pep
    rules:
      - if: is_pep
        then: pass_with_conditions
        reason: {reason}
        conditions: [refresh_documents]
      - else: pass
        reason: up_to_date
"""
BLOCKED = {**ADULT_WITHOUT_CREDENTIAL, "context": {"national_id": "ZZ999999"}}


def expected_revision(policy_dir: Path) -> str:
    """The revision the server should land on for the files as they are now."""
    policy_set = engine.build(policy_dir).policy_set
    assert policy_set is not None
    return policy_set.revision


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]


def decide(server: ServerProcess, purpose: str, facts: dict[str, Any]) -> httpx.Response:
    return server.client.post(f"/v1/data/{purpose}", json={"input": facts})


def wait_for_revision(server: ServerProcess, revision: str) -> dict[str, Any]:
    return wait_until(lambda: (s := server.policies())["revision"] == revision and s, timeout=15)  # type: ignore[no-any-return]


def test_hot_reload_on_a_running_server(start_server: Callable[..., ServerProcess], policy_dir: Path) -> None:
    server = start_server(policy_dir, IDGW_RELOAD_DEBOUNCE_MS="50")
    age = policy_dir / AGE
    assert decide(server, "age_verification", BLOCKED).json()["result"]["reason"] == "missing_credential"

    # 1. edit: a new rule goes live
    age.write_text(age.read_text().replace(ELSE_RULE, BLOCK_RULE.format(reason="blocked_id") + ELSE_RULE))
    first = expected_revision(policy_dir)
    status = wait_for_revision(server, first)
    assert status["last_reload"]["result"] == "success"
    result = decide(server, "age_verification", BLOCKED).json()["result"]
    assert (result["reason"], result["policy_revision"]) == ("blocked_id", first)

    # 2. break: the last good set keeps serving, the error is reported
    good_text = age.read_text()
    age.write_text(good_text.replace("      - if: sanctions_listed\n", "      - if: sanctions_listed AND (\n"))
    status = wait_until(lambda: (s := server.policies())["last_reload"]["result"] == "rejected" and s, timeout=15)
    assert status["revision"] == first
    assert status["last_reload"]["error"].startswith("policies do not load")
    assert status["last_reload"]["diagnostics"][0]["file"].endswith(AGE)
    assert status["last_reload"]["diagnostics"][0]["line"] == 13
    result = decide(server, "age_verification", BLOCKED).json()["result"]
    assert (result["reason"], result["policy_revision"]) == ("blocked_id", first)
    rejected = [r for r in log_lines(server) if r["event"] == "policy_reload_rejected"]
    assert rejected and rejected[0]["serving"] == first
    assert any(AGE in line for line in rejected[0]["diagnostics"])

    # 3. fix: a corrected file goes live and clears the error
    age.write_text(good_text.replace("reason: blocked_id", "reason: blocked_national_id"))
    fixed = expected_revision(policy_dir)
    status = wait_for_revision(server, fixed)
    assert status["last_reload"]["result"] == "success" and status["last_reload"]["error"] is None
    assert decide(server, "age_verification", BLOCKED).json()["result"]["reason"] == "blocked_national_id"

    # 4. delete a file (its test file first, or the gate rejects the orphaned tests)
    (policy_dir / "sanctions_screening_test.yaml").unlink()
    (policy_dir / "sanctions_screening.yaml").unlink()
    status = wait_for_revision(server, expected_revision(policy_dir))
    assert "sanctions_screening" not in {p["name"] for p in status["purposes"]}
    response = decide(server, "sanctions_screening", {"context": {"national_id": "AB123456"}})
    assert response.status_code == 404 and response.json()["error"] == "unknown_purpose"

    # 5. add a directory holding a new purpose; later edits inside it are seen too
    extra = policy_dir / "kyc"
    extra.mkdir()
    (extra / "kyc.yaml").write_text(KYC_POLICY.format(reason="pep_refresh"))
    wait_for_revision(server, expected_revision(policy_dir))
    assert decide(server, "kyc_refresh", {"is_pep": True}).json()["result"]["reason"] == "pep_refresh"
    (extra / "kyc.yaml").write_text(KYC_POLICY.format(reason="pep_refresh_due"))
    wait_for_revision(server, expected_revision(policy_dir))
    assert decide(server, "kyc_refresh", {"is_pep": True}).json()["result"]["reason"] == "pep_refresh_due"

    # 6. replace a file by rename, as editors do
    temporary = policy_dir / f".{AGE}.swp"
    temporary.write_text(age.read_text().replace("reason: blocked_national_id", "reason: renamed_in"))
    os.replace(temporary, age)
    wait_for_revision(server, expected_revision(policy_dir))
    assert decide(server, "age_verification", BLOCKED).json()["result"]["reason"] == "renamed_in"

    # Graceful stop on SIGTERM.
    assert server.stop() == 0
    assert "stopped" in [record["event"] for record in log_lines(server)]


def test_requests_during_reloads_never_fail(start_server: Callable[..., ServerProcess], policy_dir: Path) -> None:
    server = start_server(policy_dir, IDGW_RELOAD_DEBOUNCE_MS="20")
    live = {server.policies()["revision"]}
    target = policy_dir / "high_value_transfer.yaml"
    base = target.read_text()
    local = threading.local()

    def one_request(_: int) -> tuple[int, str | None]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.base_url, timeout=10.0)
        response = local.client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL})
        revision = response.json().get("result", {}).get("policy_revision") if response.status_code == 200 else None
        return response.status_code, revision

    results: list[tuple[int, str | None]] = []
    with ThreadPoolExecutor(max_workers=5) as pool:
        for k in range(20):
            target.write_text(base + f"# reload {k}\n")
            revision = expected_revision(policy_dir)
            batch = pool.map(one_request, range(25))  # fired while the reload happens
            wait_for_revision(server, revision)
            live.add(revision)
            results.extend(batch)

    assert len(results) == 500
    assert [status for status, _ in results if status >= 500] == []
    assert all(status == 200 for status, _ in results)
    assert {revision for _, revision in results} <= live
    assert len(live) == 21
    assert server.policies()["reloads"]["rejected"] == 0


def test_two_workers_reload_and_share_metrics(
    start_server: Callable[..., ServerProcess], policy_dir: Path
) -> None:
    server = start_server(policy_dir, workers=2, IDGW_RELOAD_DEBOUNCE_MS="50")

    def status_by_pid(seen: dict[int, str]) -> dict[int, str]:
        with httpx.Client(base_url=server.base_url, timeout=5.0) as fresh:  # a new connection each time
            body = fresh.get("/v1/policies").json()
        seen[body["pid"]] = body["revision"]
        return seen

    seen: dict[int, str] = {}
    wait_until(lambda: len(status_by_pid(seen)) == 2, timeout=30, interval=0.01)
    assert server.process.pid not in seen  # answered by the worker processes

    age = policy_dir / AGE
    age.write_text(age.read_text().replace(ELSE_RULE, BLOCK_RULE.format(reason="blocked_id") + ELSE_RULE))
    revision = expected_revision(policy_dir)
    wait_until(
        lambda: len(s := status_by_pid(seen)) == 2 and set(s.values()) == {revision}, timeout=30, interval=0.01
    )

    for _ in range(40):
        with httpx.Client(base_url=server.base_url, timeout=5.0) as fresh:
            response = fresh.post("/v1/data/age_verification", json={"input": BLOCKED})
        assert response.status_code == 200
        assert response.json()["result"]["reason"] == "blocked_id"

    metrics = server.client.get("/metrics").text
    totals: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                key = (sample.labels["method"], sample.labels["endpoint"], sample.labels["status"])
                totals[key] = totals.get(key, 0) + sample.value
            if sample.name == "decisions_total" and sample.labels["purpose"] == "age_verification":
                assert sample.value == 40
    # Both workers' requests are in the aggregate, whichever worker answered the scrape.
    assert totals[("POST", "/v1/data/{purpose}", "200")] == 40
    assert server.stop() == 0


def test_serve_starts_from_a_fresh_checkout_layout(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """`make serve` runs `idgw serve` with no options: ./policies and embedded defaults."""
    shutil.copytree(Path(__file__).resolve().parents[2] / "policies", tmp_path / "policies")
    server = start_server(tmp_path / "policies")
    assert server.client.get("/health/ready").json()["status"] == "ready"
