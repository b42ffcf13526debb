"""Three `idgw serve` replicas on this machine's shared PostgreSQL, Redis and NATS
JetStream, fed by one HTTP bundle server, behave as one service (docs/deployment.md):
tokens, key rotation, refresh-token reuse, revocation within its bound, consents, one
audit table whose chains verify, and convergence to a newly published bundle.

PostgreSQL is `IDGW_TEST_DATABASE_URL` (a fresh schema per run), Redis 127.0.0.1:6379
(`IDGW_TEST_REDIS_URL`, database 9), NATS `IDGW_TEST_NATS_URL` (127.0.0.1:4222, a stream
of this run's own, deleted afterwards). A missing service skips the test, and fails it
under `IDGW_TEST_REQUIRE_SERVICES=1` (CI), as every service test does.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg

from server.auth.revocation import REVOCATION_MAX_AGE_SECONDS
from tests.server.bundles import MINOR, BundleServer, bundle_of, key_pair, variant
from tests.server.conftest import IDGW, ServerProcess, wait_until

CLIENT_ID = "fleet-tests"
POLL_S = 2.0  # long beside a fetch, check and load (~0.3 s), so two intervals bound it on a busy machine
KEY_REFRESH_S = 2.0
#: How long a revocation made on one replica may go unseen by another: the revocation
#: list's age limit, plus one query (allowed a second here on a shared machine).
REVOCATION_BOUND = REVOCATION_MAX_AGE_SECONDS + 1.0


def login(client: httpx.Client, email: str) -> dict[str, str]:
    """authorize + session grant on one replica: the token response."""
    session = client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID, "scope": "openid"})
    assert session.status_code == 200, session.text
    tokens = client.post("/auth/token", json={"grant_type": "session", "session_id": session.json()["session_id"]})
    assert tokens.status_code == 200, tokens.text
    body: dict[str, str] = tokens.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def userinfo(server: ServerProcess, token: str) -> int:
    return server.client.get("/auth/userinfo", headers=bearer(token)).status_code


def refused_within(servers: list[ServerProcess], token: str, since: float) -> list[float]:
    """Poll each replica until it refuses `token` (401); the seconds each took from `since`."""
    took = []
    for server in servers:
        wait_until(lambda s=server: userinfo(s, token) == 401, timeout=REVOCATION_BOUND + 5, interval=0.05)
        took.append(time.monotonic() - since)
    return took


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_three_replicas_behave_as_one_service(
    postgres_url: str, redis_url: str, nats_url: str, nats_stream: str,
    policy_dir: Path, tmp_path: Path,
) -> None:
    signing, public = key_pair(tmp_path, "bundle")
    bundles = BundleServer()
    bundles.publish(bundle_of(policy_dir, signing))
    migrated = subprocess.run([str(IDGW), "migrate", "up", "--database-url", postgres_url], capture_output=True,
                              text=True, timeout=60, check=False)
    assert migrated.returncode == 0, migrated.stderr
    env = {
        "IDGW_DATABASE_URL": postgres_url, "IDGW_REDIS_URL": redis_url,
        "IDGW_AUDIT_QUEUE": "nats", "IDGW_NATS_URL": nats_url, "IDGW_AUDIT_NATS_STREAM": nats_stream,
        "IDGW_AUDIT_FLUSH_MS": "100",
        # One public name for the fleet: tokens name it as issuer and audience.
        "IDGW_ISSUER": "http://gateway.fleet.test",
        # One pseudonymisation key for the fleet (a Secret in a real deployment).
        "IDGW_KEY_DIR": str(tmp_path / "keys"),
        "IDGW_KEY_REFRESH_S": str(KEY_REFRESH_S),
        "IDGW_POLICY_SOURCE": bundles.url(), "IDGW_POLICY_POLL_S": str(POLL_S),
        "IDGW_POLICY_PUBLIC_KEY": str(public),
    }
    replicas: list[ServerProcess] = []
    try:
        for n in range(3):
            work = tmp_path / f"replica-{n}"
            work.mkdir()
            replica = ServerProcess(tmp_path / "unused", work, IDGW_POLICY_CACHE_DIR=str(work / "cache"), **env)
            replicas.append(replica)
            if n == 0:
                replica.wait_ready()  # the first start makes the signing key and the audit key
        for replica in replicas:
            replica.wait_ready()
        check_the_fleet(replicas, bundles, postgres_url, policy_dir, tmp_path, signing)
    except BaseException:
        for replica in replicas:
            print(f"--- {replica.base_url}\n{replica.output()[-6000:]}")
        raise
    finally:
        for replica in replicas:
            replica.stop()
        bundles.stop()


def check_the_fleet(replicas: list[ServerProcess], bundles: BundleServer, database_url: str, policy_dir: Path,
                    tmp_path: Path, signing: Path) -> None:
    a, b, c = replicas
    revisions = {r.policies()["revision"] for r in replicas}
    assert len(revisions) == 1
    old_revision = revisions.pop()

    # -- a token issued by one replica is accepted by the others ---------------------------
    ada = login(a.client, "ada@example.org")
    assert [userinfo(r, ada["access_token"]) for r in replicas] == [200, 200, 200]

    # -- consents given through one are seen by the others at once -------------------------
    granted = b.client.post("/auth/consent", json={"purposes": ["decision_evaluation"]},
                            headers=bearer(ada["access_token"]))
    assert granted.status_code == 200, granted.text
    for replica in (a, c):
        listed = replica.client.get("/auth/consent", headers=bearer(ada["access_token"])).json()["consents"]
        assert "decision_evaluation" in {entry["purpose"] for entry in listed if entry.get("active", True)}
    decided = c.client.post("/decision/evaluate", headers=bearer(ada["access_token"]),
                            json={"purpose": "age_verification", "context": {"national_id": "AB123456"}})
    assert decided.status_code == 200, decided.text

    # -- a revoked access token is refused by every replica within the bound ---------------
    grace = login(b.client, "grace@example.org")
    assert [userinfo(r, grace["access_token"]) for r in replicas] == [200, 200, 200]
    revoked_at = time.monotonic()
    assert a.client.post("/auth/revoke", json={"token": grace["access_token"]}).status_code == 200
    assert userinfo(a, grace["access_token"]) == 401  # the revoking replica: at once
    took = refused_within([b, c], grace["access_token"], revoked_at)
    assert max(took) <= REVOCATION_BOUND, f"refused after {took}"
    print(f"revocation seen by the other replicas after {', '.join(f'{t:.2f}s' for t in took)}")

    # -- refresh-token reuse on one replica revokes the family on all ----------------------
    alan = login(a.client, "alan@example.org")
    rotated = b.client.post("/auth/refresh", json={"refresh_token": alan["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()
    reused = c.client.post("/auth/refresh", json={"refresh_token": alan["refresh_token"]})
    reuse_at = time.monotonic()
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant", reused.text
    for replica in replicas:  # the family lives in PostgreSQL: refused everywhere at once
        again = replica.client.post("/auth/refresh", json={"refresh_token": successor["refresh_token"]})
        assert again.status_code == 400, again.text
    assert userinfo(c, successor["access_token"]) == 401
    took = refused_within([a, b], successor["access_token"], reuse_at)
    assert max(took) <= REVOCATION_BOUND, f"refused after {took}"

    # -- key rotation on one is used by all within IDGW_KEY_REFRESH_S ----------------------
    old_kid = kid_of(ada["access_token"])
    rotation = subprocess.run([str(IDGW), "keys", "rotate", "--database-url", database_url],
                              capture_output=True, text=True, timeout=60, check=False)
    rotated_at = time.monotonic()
    assert rotation.returncode == 0, rotation.stderr
    new_kid = rotation.stdout.split()[3]
    assert new_kid != old_kid
    switched: list[float] = []
    for n, replica in enumerate(replicas):
        def signs_with_new_key(r: ServerProcess = replica, n: int = n) -> dict[str, str] | None:
            tokens = login(r.client, f"rotation-{n}-{uuid.uuid4().hex[:6]}@example.org")
            return tokens if kid_of(tokens["access_token"]) == new_kid else None

        tokens = wait_until(signs_with_new_key, timeout=KEY_REFRESH_S + 5, interval=0.2)
        switched.append(time.monotonic() - rotated_at)
        assert switched[-1] <= KEY_REFRESH_S + 2.0, f"signed with the new key after {switched}"
        assert [userinfo(r, tokens["access_token"]) for r in replicas] == [200, 200, 200]
    assert [userinfo(r, ada["access_token"]) for r in replicas] == [200, 200, 200]  # the retired key verifies
    print(f"replicas signed with the rotated key after {', '.join(f'{t:.2f}s' for t in switched)}")

    # -- every replica's decisions land in the one audit table; every chain verifies -------
    decision_ids: dict[str, set[str]] = {}
    for replica in replicas:
        answers = [replica.client.post("/v1/data/age_verification", json={"input": MINOR}).json()
                   for _ in range(20)]
        decision_ids[replica.base_url] = {answer["decision_id"] for answer in answers}

    def stored() -> set[str]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT decision_id FROM audit_events WHERE decision_id IS NOT NULL").fetchall()
        return {str(row[0]) for row in rows}

    wait_until(lambda: all(ids <= stored() for ids in decision_ids.values()), timeout=30, interval=0.2)
    with psycopg.connect(database_url, autocommit=True) as conn:
        streams = conn.execute("SELECT count(DISTINCT stream_id) FROM audit_events").fetchone()
    assert streams is not None and streams[0] >= 1
    verified = subprocess.run([str(IDGW), "audit", "verify", "--database-url", database_url],
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit trail intact:") and f"in {streams[0]} streams" in verified.stdout
    print(verified.stdout.strip())

    # -- a newly published bundle: every replica within two poll intervals, whole sets -----
    answers: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def load(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.is_set():
                response = client.post("/v1/data/age_verification", json={"input": MINOR})
                result = response.json().get("result", {}) if response.status_code == 200 else {}
                answers.append((response.status_code, result.get("policy_revision"), result.get("reason")))

    threads = [threading.Thread(target=load, args=(r.base_url,), daemon=True) for r in replicas]
    for thread in threads:
        thread.start()
    new = bundle_of(variant(policy_dir, tmp_path / "new-policies", "underage", "too_young"), signing)
    time.sleep(0.3)
    published = time.monotonic()
    bundles.publish(new)
    converged: list[float] = []
    for replica in replicas:
        wait_until(lambda r=replica: r.policies()["revision"] != old_revision, timeout=10, interval=0.05)
        converged.append(time.monotonic() - published)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(15)
    new_revision = a.policies()["revision"]
    assert {r.policies()["revision"] for r in replicas} == {new_revision}
    assert max(converged) <= 2 * POLL_S, f"converged after {converged}"
    assert set(answers) == {(200, old_revision, "underage"), (200, new_revision, "too_young")}
    print(f"replicas served the new bundle after {', '.join(f'{t:.2f}s' for t in converged)}"
          f" ({len(answers)} answers, each from a whole set)")

