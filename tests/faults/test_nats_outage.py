"""NATS stopped in NATS audit mode (`IDGW_AUDIT_QUEUE=nats`) under load on a real
`idgw serve` (SQLite): decisions keep answering, their events wait in the outbox and,
past its capacity, spill to files; once NATS is back they are published and stored,
none lost, none twice, the chain intact.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.faults.conftest import Load, PrivateNats, metric
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL, IDGW, ServerProcess, wait_until

#: A small outbox, so that a modest load spills within seconds.
QUEUE_CAPACITY = 100


def stored_decision_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT decision_id FROM audit_events WHERE decision_id IS NOT NULL").fetchall()
    return [str(row[0]) for row in rows]


def spill_files(spill_dir: Path) -> list[Path]:
    return sorted(spill_dir.glob("spill-*.jsonl"))


def test_nats_stopped_under_load(
    private_nats: PrivateNats, policy_dir: Path, tmp_path: Path, load: Callable[[str], Load]
) -> None:
    database = tmp_path / "idgw.db"
    spill_dir = tmp_path / "spill"
    server = ServerProcess(
        policy_dir, tmp_path, IDGW_DATABASE_URL=f"sqlite:///{database}", IDGW_AUDIT_QUEUE="nats",
        IDGW_NATS_URL=private_nats.url, IDGW_AUDIT_NATS_STREAM=f"IDGW_FAULTS_{uuid.uuid4().hex[:8]}",
        IDGW_AUDIT_QUEUE_CAPACITY=str(QUEUE_CAPACITY), IDGW_AUDIT_FLUSH_MS="200",
        IDGW_KEY_DIR=str(tmp_path / "keys"), IDGW_AUDIT_SPILL_DIR=str(spill_dir), IDGW_POLICY_RELOAD="false",
    )
    try:
        server.wait_ready()
        traffic = load(server.base_url)

        def data(client: httpx.Client, n: int) -> httpx.Response:
            return client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL})

        traffic.add("data", data, pause=0.01)
        traffic.add("data", data, pause=0.01)
        traffic.wait_for("data", 50, timeout=30)
        wait_until(lambda: len(stored_decision_ids(database)) >= 50, timeout=30)

        private_nats.stop()
        down = time.monotonic()
        wait_until(lambda: metric(server.client, "audit_events_spilled_total") > 0, timeout=60)
        traffic.wait_for("data", 3 * QUEUE_CAPACITY, timeout=60, sent_after=down)
        time.sleep(max(0.0, down + 5 - time.monotonic()))  # several of the client's reconnect attempts
        assert spill_files(spill_dir)
        stored_while_down = len(stored_decision_ids(database))

        private_nats.start()  # the same store directory: the stream and its consumer are kept
        up = time.monotonic()
        traffic.wait_for("data", 100, timeout=30, sent_after=up)
        answers = traffic.stop()
        decisions = {a.body["result"]["decision_id"] for a in answers if a.status == 200}
        wait_until(lambda: decisions <= set(stored_decision_ids(database)), timeout=60, interval=0.2)
        wait_until(lambda: not spill_files(spill_dir), timeout=30)  # replayed, then removed
        # the metrics follow the sink's counts every half second
        emitted = wait_until(lambda: (n := metric(server.client, "audit_events_emitted_total"))
                             == len(decisions) and n, timeout=10)
        spilled = metric(server.client, "audit_events_spilled_total")
        assert server.stop() == 0
    except BaseException:
        print(server.output()[-20_000:])
        server.stop()
        raise

    assert [a for a in answers if a.status != 200] == []  # decisions answered throughout
    assert len([a for a in answers if down <= a.sent < up]) >= 3 * QUEUE_CAPACITY
    assert stored_while_down < len(decisions)
    assert spilled > 0
    stored = stored_decision_ids(database)
    assert len(stored) == len(set(stored)) == len(decisions) == emitted  # none lost, none twice
    output = server.output()
    assert "nats_disconnected" in output
    assert "unhandled_error" not in output
    verify = subprocess.run([str(IDGW), "audit", "verify", "--database-url", f"sqlite:///{database}"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit trail intact" in verify.stdout
