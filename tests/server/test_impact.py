"""Impact analysis end to end, through real processes (docs/impact.md): decisions made
over HTTP by `idgw serve` are recorded; `idgw policy replay` decides them again with a
candidate and finds exactly the decisions this test computes itself; a shadow set on the
running server counts the same disagreements without changing a byte of the answers;
sensitive values never reach the database; records are listed, purged and erased."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.server.conftest import IDGW, ServerProcess
from tests.stores.conftest import with_search_path

PURPOSE = "high_value_transfer"
MOVED = ("context.amount > 10000", "context.amount > 5000")


def candidate_dir(policy_dir: Path, target: Path, *, extra_rule: bool = False) -> Path:
    """The shipped policies with the transfer threshold moved from 10,000 to 5,000 (and
    its test case moved with it); `extra_rule` also reads a fact no request gathered."""
    shutil.copytree(policy_dir, target)
    policy = target / "high_value_transfer.yaml"
    text = policy.read_text().replace(*MOVED)
    if extra_rule:
        text = text.replace("      - is_pep\n", "      - is_pep\n      - has_credential\n")
        text = text.replace("    rules:\n", "    rules:\n      - if: has_credential AND context.amount > 900000\n"
                            "        then: fail\n        reason: too_much\n", 1)
    policy.write_text(text)
    tests = target / "high_value_transfer_test.yaml"
    cases = tests.read_text().replace("amount: 10000}", "amount: 5000}")
    tests.write_text(cases.replace("is_pep: ", "has_credential: false, is_pep: ") if extra_rule else cases)
    return target


def inputs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"sanctions_listed": rng.random() < 0.1, "citizen_valid": rng.random() < 0.9, "is_pep": rng.random() < 0.5,
         "context": {"amount": rng.choice([100, 4999, 5000, 5001, 7500, 10000, 10001, 20000]),
                     "national_id": f"SECRET{n:06d}X"}}
        for n in range(count)
    ]


def expected_outcome(facts: dict[str, Any], threshold: int) -> tuple[str, str]:
    """The transfer policy written out by hand."""
    if facts["sanctions_listed"]:
        return "fail", "sanctioned"
    if not facts["citizen_valid"]:
        return "fail", "invalid_citizen"
    if facts["is_pep"] and facts["context"]["amount"] > threshold:
        return "pass_with_conditions", "manual_review_required"
    return "pass", "approved"


def idgw(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IDGW), *args, "--database-url", database_url], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def decide_all(server: ServerProcess, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = []
    for one in facts:
        response = server.client.post(f"/v1/data/{PURPOSE}", json={"input": one})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def test_recorded_decisions_replay_against_a_candidate_and_a_shadow_agrees(
    tmp_path: Path, policy_dir: Path, start_server: Callable[..., ServerProcess]
) -> None:
    candidate = candidate_dir(policy_dir, tmp_path / "candidate")
    database = tmp_path / "idgw.db"
    url = f"sqlite:///{database}"
    facts = inputs(120)
    server = start_server(policy_dir, IDGW_DATABASE_URL=url, IDGW_SHADOW_POLICY_DIR=str(candidate))
    answers = decide_all(server, facts)
    ids = [a["decision_id"] for a in answers]
    plain = start_server(policy_dir, IDGW_DATABASE_URL=f"sqlite:///{tmp_path / 'plain.db'}")
    unshadowed = decide_all(plain, facts)
    # the shadow leaves each answer byte for byte as it is without one (but for its id and time)
    for shadowed, alone in zip(answers, unshadowed, strict=True):
        assert list(shadowed) == list(alone) and list(shadowed["result"]) == list(alone["result"])
        for body in (shadowed, alone):
            body["decision_id"] = body["result"]["decision_id"] = body["result"]["evaluated_at"] = "-"
        assert json.dumps(shadowed) == json.dumps(alone)

    changed = [i for i, f in enumerate(facts) if expected_outcome(f, 10000) != expected_outcome(f, 5000)]
    assert 5 < len(changed) < len(facts) // 2
    status = server.policies()["shadow"]
    assert status["last_reload"]["result"] == "success"
    assert status["agreement"] == {PURPOSE: {"same": len(facts) - len(changed), "different": len(changed),
                                             "not_replayable": 0}}
    metrics = server.client.get("/metrics").text
    assert f'policy_shadow_decisions_total{{agreement="different",purpose="{PURPOSE}"}} {len(changed)}.0' in metrics
    assert server.stop() == 0  # SIGTERM: every record is written before the process ends
    plain.stop()

    replayed = idgw("policy", "replay", str(candidate), "--format", "json", database_url=url)
    assert replayed.returncode == 0, replayed.stderr
    report = json.loads(replayed.stdout)
    transitions = Counter((expected_outcome(facts[i], 10000), expected_outcome(facts[i], 5000)) for i in changed)
    assert (report["replayed"], report["changed"], report["not_replayable"]) == (len(facts), len(changed), 0)
    [(before, after)] = transitions
    moved = [t for t in report["purposes"][PURPOSE]["transitions"] if t["from"] != t["to"]]
    assert moved == [{"from": {"status": before[0], "reason": before[1]}, "to": {"status": after[0], "reason": after[1]},
                      "count": len(changed), "examples": sorted(ids[i] for i in changed)[:5]}]
    # the shadow's recorded disagreements are the same report
    shadowed_report = json.loads(idgw("policy", "replay", "--shadow", "--format", "json", database_url=url).stdout)
    assert shadowed_report["purposes"] == report["purposes"]
    # a CI gate: any change fails; an approved list naming this change passes
    assert idgw("policy", "replay", str(candidate), "--fail-on-change", database_url=url).returncode == 1
    approved = tmp_path / "approved.json"
    approved.write_text(replayed.stdout)
    assert idgw("policy", "replay", str(candidate), "--expect-changes", str(approved), database_url=url).returncode == 0
    markdown = idgw("policy", "replay", str(candidate), "--format", "markdown", database_url=url).stdout
    assert f"| {before[0]}/{before[1]} | {after[0]}/{after[1]} | {len(changed)} |" in markdown

    # a candidate reading a fact no request gathered: not replayable, by name
    reading = candidate_dir(policy_dir, tmp_path / "reading", extra_rule=True)
    report = json.loads(idgw("policy", "replay", str(reading), "--format", "json", database_url=url).stdout)
    assert report["purposes"][PURPOSE]["not_replayable"] == {"count": len(facts), "why": {"has_credential": len(facts)}}

    # a candidate that fails its own tests is refused
    broken = candidate_dir(policy_dir, tmp_path / "broken")
    (broken / "high_value_transfer_test.yaml").write_text(
        (policy_dir / "high_value_transfer_test.yaml").read_text())
    refused = idgw("policy", "replay", str(broken), database_url=url)
    assert refused.returncode == 2 and "the candidate is refused" in refused.stderr

    # the national ids were hashed before they reached the database
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("idgw.db*"))
    assert b"SECRET000001X" not in stored and b"SECRET" not in stored
    listed = json.loads(idgw("decisions", "list", "--format", "json", "--limit", "1000", database_url=url).stdout)
    assert [r["decision_id"] for r in listed] == sorted(ids)  # oldest first
    assert all(r["context"]["national_id"].startswith("hmac-sha256:") for r in listed)
    agreement = {r["decision_id"]: r["shadow"]["agreement"] for r in listed}
    assert {ids[i] for i in changed} == {i for i, a in agreement.items() if a == "different"}
    purged = idgw("decisions", "purge", "--days", "0", database_url=url)
    assert purged.stdout.strip() == f"purged {len(facts)} decision records older than 0 days"
    assert json.loads(idgw("decisions", "list", "--format", "json", database_url=url).stdout) == []


def test_a_sensitive_value_never_reaches_postgresql(
    tmp_path: Path, policy_dir: Path, start_server: Callable[..., ServerProcess], postgres_server_url: str
) -> None:
    schema = f"idgw_impact_{random.randrange(16**8):08x}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        url = with_search_path(postgres_server_url, schema)
        server = start_server(policy_dir, IDGW_DATABASE_URL=url)
        answers = decide_all(server, inputs(10))
        assert server.stop() == 0
        dump = subprocess.run(["pg_dump", "--schema", schema, "--data-only", postgres_server_url],
                              capture_output=True, check=True, timeout=60).stdout
        assert answers[3]["decision_id"].encode() in dump  # the records are in the dump
        assert b"SECRET" not in dump
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

