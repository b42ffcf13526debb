"""`IDGW_POLICY_SOURCE` on a real `idgw serve` fed by a real HTTP bundle server: a new
bundle goes live within two poll intervals while a load loop sees only whole revisions,
damaged and wrongly signed bundles are rejected with the last good set serving, and a
restart while the bundle server is down serves the kept bundle.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.bundles import MINOR, BundleServer, bundle_of, key_pair, tampered, variant
from tests.server.conftest import IDGW, ServerProcess, wait_until

POLL_S = 2.0  # long beside a fetch, check and load (~0.3 s)


@pytest.fixture
def bundle_server() -> Iterator[BundleServer]:
    server = BundleServer()
    yield server
    server.stop()


def fetches(server: ServerProcess) -> dict[str, float]:
    text = server.client.get("/metrics").text
    return {s.labels["result"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "policy_bundle_fetches" for s in f.samples if s.name.endswith("_total")}


def decide_minor(client: httpx.Client) -> tuple[int, str | None, str | None]:
    response = client.post("/v1/data/age_verification", json={"input": MINOR})
    if response.status_code != 200:
        return response.status_code, None, None
    result = response.json()["result"]
    return 200, result["policy_revision"], result["reason"]


class LoadLoop:
    """Decides a minor's age check as fast as one client can, recording every answer."""

    def __init__(self, base_url: str) -> None:
        self.answers: list[tuple[int, str | None, str | None]] = []
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=10.0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(decide_minor(self._client))

    def stop(self) -> list[tuple[int, str | None, str | None]]:
        self._stop.set()
        self._thread.join(15)
        self._client.close()
        return self.answers


def test_a_bundle_source_on_a_running_server(
    start_server: Callable[..., ServerProcess], bundle_server: BundleServer, policy_dir: Path, tmp_path: Path
) -> None:
    signing, public = key_pair(tmp_path, "bundle")
    other, _ = key_pair(tmp_path, "other")
    old = bundle_of(policy_dir, signing)
    bundle_server.publish(old)
    env = {"IDGW_POLICY_SOURCE": bundle_server.url(), "IDGW_POLICY_POLL_S": str(POLL_S),
           "IDGW_POLICY_PUBLIC_KEY": str(public), "IDGW_POLICY_CACHE_DIR": str(tmp_path / "cache")}
    server = start_server(tmp_path / "no-such-dir", **env)
    status = server.policies()
    old_revision = status["revision"]
    source = status["source"]
    assert status["policy_dir"] is None
    assert source["url"] == bundle_server.url() and source["etag"].startswith('"')
    assert source["last_fetch"]["result"] == "updated" and source["served_from"] == "source"
    assert source["signature_required"] is True and source["last_rejection"] is None
    assert decide_minor(server.client) == (200, old_revision, "underage")
    wait_until(lambda: bundle_server.not_modified >= 1, timeout=10)  # polls send If-None-Match

    # 1. a new bundle goes live within two poll intervals; every answer is a whole set
    new_dir = variant(policy_dir, tmp_path / "new", "underage", "too_young")
    new = bundle_of(new_dir, signing)
    loop = LoadLoop(server.base_url)
    time.sleep(0.3)
    published, polls_before = time.monotonic(), bundle_server.requests
    bundle_server.publish(new)
    status = wait_until(lambda: (s := server.policies())["revision"] != old_revision and s, timeout=10)
    converged = time.monotonic() - published
    polls = bundle_server.requests - polls_before
    time.sleep(0.3)
    answers = loop.stop()
    new_revision = status["revision"]
    # Counted in polls, not seconds: on a loaded machine the load and tests after the
    # fetch take what they take, but the first poll after publishing must bring it.
    assert polls <= 2, f"the new bundle served after {polls} polls ({converged:.2f}s)"
    assert status["source"]["last_fetch"] == {**status["source"]["last_fetch"], "result": "updated",
                                              "revision": new_revision}
    assert status["last_reload"]["result"] == "success" and status["last_reload"]["tests"]["failed"] == 0
    assert answers and all(code == 200 for code, _, _ in answers)
    assert set(answers) == {(200, old_revision, "underage"), (200, new_revision, "too_young")}
    assert fetches(server)["updated"] >= 2

    # 2. one byte of a policy changed: the hash check refuses it, the last good set serves
    bundle_server.publish(tampered(new, "age_verification.yaml"))
    status = wait_until(lambda: (s := server.policies())["source"]["last_rejection"] and s, timeout=10)
    rejection = status["source"]["last_rejection"]
    assert rejection["error"].startswith("age_verification.yaml: sha256 is ")
    assert status["revision"] == new_revision
    assert decide_minor(server.client) == (200, new_revision, "too_young")
    assert fetches(server)["rejected"] == 1
    lines = [line for line in server.output().splitlines() if '"policy_bundle_rejected"' in line]
    assert len(lines) == 1 and new_revision in lines[0]  # not fetched and rejected again

    # 3. a bundle signed by another key is refused for its signature
    third = bundle_of(variant(policy_dir, tmp_path / "third", "underage", "minor"), other)
    bundle_server.publish(third)
    status = wait_until(lambda: (s := server.policies())["source"]["last_rejection"]["at"] != rejection["at"]
                        and s, timeout=10)
    assert "not by the given public key" in status["source"]["last_rejection"]["error"]
    assert status["revision"] == new_revision
    assert decide_minor(server.client) == (200, new_revision, "too_young")

    # 4. restarted while the bundle server is down: the kept bundle serves
    bundle_server.stop()
    assert server.stop() == 0
    restarted = start_server(tmp_path / "no-such-dir", **env)
    status = restarted.policies()
    assert status["revision"] == new_revision
    assert status["source"]["served_from"] == "cache"
    assert status["source"]["last_fetch"]["result"] == "unreachable"
    assert decide_minor(restarted.client) == (200, new_revision, "too_young")
    assert '"policy_bundle_served_from_cache"' in restarted.output()


def serve_fails(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "IDGW_DATABASE_URL": "memory://", **env}
    return subprocess.run([str(IDGW), "serve", "--port", "0"], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def test_startup_errors_name_what_is_wrong(tmp_path: Path, bundle_server: BundleServer) -> None:
    result = serve_fails(tmp_path, IDGW_POLICY_SOURCE=bundle_server.url())
    assert result.returncode == 2
    assert "IDGW_POLICY_PUBLIC_KEY: required when IDGW_POLICY_SOURCE is an http(s) URL" in result.stderr

    result = serve_fails(tmp_path, IDGW_POLICY_SOURCE="ftp://example.org/b.tar.gz")
    assert result.returncode == 2 and "IDGW_POLICY_SOURCE: expected a URL starting with" in result.stderr

    result = serve_fails(tmp_path, IDGW_POLICY_SOURCE=bundle_server.url(),
                         IDGW_POLICY_PUBLIC_KEY=str(tmp_path / "missing.pub"))
    assert result.returncode == 1 and "IDGW_POLICY_PUBLIC_KEY: cannot read" in result.stderr

    _, public = key_pair(tmp_path, "bundle")
    result = serve_fails(tmp_path, IDGW_POLICY_SOURCE=bundle_server.url(), IDGW_POLICY_PUBLIC_KEY=str(public))
    assert result.returncode == 1
    assert "cannot serve the policies of " + bundle_server.url() in result.stderr
    assert "HTTP 404" in result.stderr and "no bundle is kept in" in result.stderr


def test_a_file_source_unsigned_then_updated(
    start_server: Callable[..., ServerProcess], policy_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "published" / "bundle.tar.gz"
    target.parent.mkdir()
    target.write_bytes(bundle_of(policy_dir, None))
    server = start_server(tmp_path / "no-such-dir", IDGW_POLICY_SOURCE=target.as_uri(), IDGW_POLICY_POLL_S="0.2",
                          IDGW_POLICY_CACHE_DIR=str(tmp_path / "cache"))
    first: dict[str, Any] = server.policies()
    assert first["source"]["signature_required"] is False
    target.write_bytes(bundle_of(variant(policy_dir, tmp_path / "new", "underage", "too_young"), None))
    wait_until(lambda: server.policies()["revision"] != first["revision"], timeout=10)
    assert decide_minor(server.client)[2] == "too_young"
