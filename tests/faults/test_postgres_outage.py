"""PostgreSQL stopped and started again under load, on a real `idgw serve` (one worker,
the audit writer process, bearer tokens on the data API).

While the database is down, requests that need it answer 503 `unavailable` in the JSON
error shape, and the data API keeps deciding. Once it is back, everything answers again
within 5 s without restarting the gateway, and every decision's audit event is stored,
the chain intact. The outage spans the moments the gateway re-reads its signing keys
(every 30 s) and its revocation list (every 5 s): both must keep the data API answering.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from server.auth.keys import KEY_REFRESH_SECONDS
from tests.faults.conftest import (
    Load,
    PrivatePostgres,
    assert_unavailable_shape,
    login,
    metric,
)
from tests.server.conftest import IDGW, ServerProcess, wait_until

ADULT = {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": False,
         "context": {"national_id": "AB123456"}}
NEEDS_DATABASE = ("evaluate", "consents", "authorize")
RECOVERY_SECONDS = 5.0


def stored_decision_ids(url: str, table: str = "audit_events") -> set[str]:
    """The decision ids in the audit trail, or in `decision_records`."""
    query = {"audit_events": "SELECT decision_id FROM audit_events WHERE decision_id IS NOT NULL",
             "decision_records": "SELECT decision_id FROM decision_records"}[table]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(query).fetchall()
    return {str(row[0]) for row in rows}


def stored_events(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("SELECT count(*) FROM audit_events").fetchone()
        letters = conn.execute("SELECT count(*) FROM audit_dead_letters").fetchone()
    assert events is not None and letters is not None
    return int(events[0]), int(letters[0])


def start_load(load: Load, headers: dict[str, str]) -> None:
    def data(client: httpx.Client, n: int) -> httpx.Response:
        return client.post("/v1/data/age_verification", json={"input": ADULT}, headers=headers)

    def evaluate(client: httpx.Client, n: int) -> httpx.Response:
        return client.post("/decision/evaluate", headers=headers,
                           json={"purpose": "age_verification", "context": {"national_id": "123456789"}})

    def consents(client: httpx.Client, n: int) -> httpx.Response:
        return client.get("/auth/consent", headers=headers)

    def authorize(client: httpx.Client, n: int) -> httpx.Response:
        return client.post("/auth/authorize", json={"email": f"load-{n}@example.test",
                                                    "client_id": "fault-tests", "scope": "openid"})

    # Two data API threads: a request that refreshes the revocation list or the keys
    # waits for the database (the pool's timeout) while the other thread goes on.
    load.add("data", data, pause=0.03)
    load.add("data", data, pause=0.03)
    load.add("evaluate", evaluate, pause=0.05)
    load.add("consents", consents, pause=0.05)
    load.add("authorize", authorize, pause=0.1)


def recovered(server: ServerProcess, headers: dict[str, str]) -> bool:
    with httpx.Client(base_url=server.base_url, timeout=30.0) as fresh:  # a new connection
        return (fresh.get("/auth/consent", headers=headers).status_code == 200
                and fresh.get("/health/ready").status_code == 200)


def test_postgres_stopped_and_started_under_load(
    private_postgres: PrivatePostgres, policy_dir: Path, tmp_path: Path, load: Callable[[str], Load]
) -> None:
    server = ServerProcess(
        policy_dir, tmp_path, IDGW_DATABASE_URL=private_postgres.url, IDGW_DATA_API_AUTH="bearer",
        IDGW_KEY_DIR=str(tmp_path / "keys"), IDGW_AUDIT_SPILL_DIR=str(tmp_path / "spill"),
        IDGW_POLICY_RELOAD="false",
    )
    try:
        server.wait_ready()
        started = time.monotonic()  # the keys were read before this
        headers = login(server.client, "ada@example.test", "decision_evaluation", "registry_check")
        traffic = load(server.base_url)
        start_load(traffic, headers)
        for endpoint in ("data", *NEEDS_DATABASE):
            traffic.wait_for(endpoint, 10, timeout=30, status=200)

        # Down before the keys are due to be re-read, and long enough for that read to
        # fail (the pool waits 10 s for a connection) and for 503s to be answered.
        time.sleep(max(0.0, started + KEY_REFRESH_SECONDS - 5 - time.monotonic()))
        stopping = time.monotonic()
        private_postgres.stop()
        down = time.monotonic()
        not_ready = server.client.get("/health/ready", timeout=30.0)
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["database"]["ok"] is False
        for endpoint in NEEDS_DATABASE:
            traffic.wait_for(endpoint, 1, timeout=40, status=503)
        time.sleep(max(0.0, started + KEY_REFRESH_SECONDS + 11 - time.monotonic()))

        private_postgres.start()
        up = time.monotonic()
        wait_until(lambda: recovered(server, headers), timeout=30, interval=0.1)
        recovery = time.monotonic() - up
        for endpoint in NEEDS_DATABASE:
            traffic.wait_for(endpoint, 5, timeout=30, sent_after=up + RECOVERY_SECONDS, status=200)
        traffic.wait_for("data", 20, timeout=30, sent_after=up + RECOVERY_SECONDS)
        answers = traffic.stop()
    except BaseException:
        print(server.output()[-20_000:])
        server.stop()
        raise

    assert recovery <= RECOVERY_SECONDS, f"recovered {recovery:.1f} s after PostgreSQL was back"
    assert {a.status for a in answers} <= {200, 503}, sorted({(a.endpoint, a.status) for a in answers})

    data = [a for a in answers if a.endpoint == "data"]
    assert [a for a in data if a.status != 200] == []  # the data API answered throughout
    assert len([a for a in data if down <= a.sent < up]) >= 20

    for endpoint in NEEDS_DATABASE:
        unavailable = [a for a in answers if a.endpoint == endpoint and a.status == 503]
        assert unavailable, endpoint
        for answer in unavailable:
            assert_unavailable_shape(answer)
            assert stopping <= answer.received, answer  # only once the database was going down
            assert answer.sent < up + RECOVERY_SECONDS, answer
    failed_evaluations = [a for a in answers if a.endpoint == "evaluate" and a.status == 503]
    assert all(a.decision_id for a in failed_evaluations)  # refusals are in the decision log too

    # Nothing audited is lost: every decision answered (or refused with a decision id)
    # is stored, every event emitted is stored, none dead-lettered, the chain verifies.
    decisions = {a.decision_id for a in answers if a.decision_id}
    wait_until(lambda: decisions <= stored_decision_ids(private_postgres.url), timeout=60, interval=0.2)
    # and each decision's record, no more and no fewer than its events
    recorded = stored_decision_ids(private_postgres.url, "decision_records")
    assert decisions <= recorded and recorded == stored_decision_ids(private_postgres.url)
    emitted = wait_until(lambda: (n := metric(server.client, "audit_events_emitted_total"))
                         == stored_events(private_postgres.url)[0] and n, timeout=30, interval=0.2)
    assert stored_events(private_postgres.url) == (emitted, 0)
    assert server.stop() == 0
    assert "unhandled_error" not in server.output()
    verify = subprocess.run([str(IDGW), "audit", "verify", "--database-url", private_postgres.url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit trail intact" in verify.stdout

