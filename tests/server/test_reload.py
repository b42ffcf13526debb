"""`LivePolicies` and `PolicyWatcher` in-process: gate, swap, last good kept, status."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from server.metrics import POLICY_RELOADS
from server.reload import LivePolicies, PolicyStartupError, PolicyWatcher
from tests.server.conftest import wait_until

BROKEN_RULE = "      - if: sanctions_listed AND\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def reloads(result: str) -> float:
    return POLICY_RELOADS.labels(result)._value.get()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def live(policy_dir: Path) -> LivePolicies:
    policies = LivePolicies(policy_dir)
    policies.load_initial()
    return policies


def test_nothing_changed_means_no_rebuild(live: LivePolicies) -> None:
    assert live.reload() is None
    assert live.last_reload is None


def test_a_good_edit_is_swapped_in(live: LivePolicies, policy_dir: Path) -> None:
    before = live.current
    assert before is not None
    count = reloads("success")
    edit(policy_dir / "age_verification.yaml", "Is the subject an adult", "Is the subject a grown-up")
    outcome = live.reload()
    assert outcome is not None and outcome.result == "success"
    assert live.current is not before
    assert live.current is not None and live.current.revision == outcome.revision != before.revision
    assert outcome.tests is not None and outcome.tests["failed"] == 0 and outcome.tests["passed"] > 0
    assert reloads("success") == count + 1


def test_a_broken_edit_keeps_the_last_good_set(live: LivePolicies, policy_dir: Path) -> None:
    good = live.current
    count = reloads("rejected")
    edit(policy_dir / "age_verification.yaml", "      - if: sanctions_listed\n", BROKEN_RULE)
    outcome = live.reload()
    assert outcome is not None and outcome.result == "rejected"
    assert live.current is good
    status = live.status()
    assert status["revision"] == good.revision  # type: ignore[union-attr]
    assert status["last_reload"]["result"] == "rejected"
    assert status["last_reload"]["diagnostics"][0]["file"].endswith("age_verification.yaml")
    assert status["last_reload"]["diagnostics"][0]["line"] == 13
    assert reloads("rejected") == count + 1


def test_a_set_failing_its_own_tests_is_rejected(live: LivePolicies, policy_dir: Path) -> None:
    good = live.current
    edit(policy_dir / "age_verification.yaml", "reason: underage", "reason: too_young")
    outcome = live.reload()
    assert outcome is not None and outcome.result == "rejected"
    assert outcome.revision is not None and outcome.revision != good.revision  # type: ignore[union-attr]
    assert live.current is good
    assert outcome.tests is not None and outcome.tests["failed"] == 1
    assert any("minor fails" in line and "too_young" in line for line in outcome.failures)


def test_restoring_the_live_files_is_unchanged_and_clears_the_error(live: LivePolicies, policy_dir: Path) -> None:
    path = policy_dir / "age_verification.yaml"
    original = path.read_text()
    path.write_text(original.replace("      - if: sanctions_listed\n", BROKEN_RULE))
    assert live.reload().result == "rejected"  # type: ignore[union-attr]
    path.write_text(original)
    outcome = live.reload()
    assert outcome is not None and outcome.result == "unchanged"
    assert live.status()["last_reload"]["error"] is None


def test_start_fails_readably_on_a_broken_directory(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("purposes: [not, a, map]\n")
    with pytest.raises(PolicyStartupError, match=r"p\.yaml"):
        LivePolicies(tmp_path).load_initial()
    with pytest.raises(PolicyStartupError, match="no such file"):
        LivePolicies(tmp_path / "missing").load_initial()


def test_the_watcher_reloads_after_a_burst(live: LivePolicies, policy_dir: Path) -> None:
    watcher = PolicyWatcher(live, debounce=0.05, poll=0.5)
    watcher.start()
    try:
        first = live.current
        path = policy_dir / "sanctions_screening.yaml"
        for i in range(5):  # a burst, as editors produce
            path.write_text(path.read_text() + f"# edit {i}\n")
        wait_until(lambda: live.current is not first, timeout=10)
        assert live.counts["success"] >= 1
        assert live.counts["success"] + live.counts["unchanged"] <= 3  # debounced, not five reloads
    finally:
        watcher.stop()


def test_the_poll_catches_a_replaced_directory(live: LivePolicies, policy_dir: Path, tmp_path: Path) -> None:
    watcher = PolicyWatcher(live, debounce=0.05, poll=0.2)
    watcher.start()
    try:
        first = live.current
        replacement = tmp_path / "next"
        shutil.copytree(policy_dir, replacement)
        (replacement / "age_verification.yaml").write_text(
            (replacement / "age_verification.yaml").read_text() + "# v2\n"
        )
        os.rename(policy_dir, tmp_path / "old")
        os.rename(replacement, policy_dir)
        wait_until(lambda: live.current is not first, timeout=10)
        # The watch follows the new directory: a later edit is seen too.
        second = live.current
        time.sleep(0.3)
        edit(policy_dir / "age_verification.yaml", "Is the subject an adult", "Is the subject adult")
        wait_until(lambda: live.current is not second, timeout=10)
    finally:
        watcher.stop()


def test_a_configmap_style_symlink_swap_is_seen(live: LivePolicies, tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as `name -> ..data/name` with `..data -> ..<timestamp>`
    # and updates it by renaming a new `..data` symlink into place.
    mount = tmp_path / "mount"
    mount.mkdir()
    first_version = mount / "..v1"
    shutil.copytree(live.policy_dir, first_version)
    (mount / "..data").symlink_to("..v1")
    for f in first_version.iterdir():
        (mount / f.name).symlink_to(Path("..data") / f.name)
    policies = LivePolicies(mount)
    first = policies.load_initial()
    watcher = PolicyWatcher(policies, debounce=0.05, poll=0.5)
    watcher.start()
    try:
        second_version = mount / "..v2"
        shutil.copytree(first_version, second_version)
        age = second_version / "age_verification.yaml"
        age.write_text(age.read_text().replace("Is the subject an adult", "Adult?"))
        (mount / "..data_tmp").symlink_to("..v2")
        os.replace(mount / "..data_tmp", mount / "..data")
        wait_until(lambda: policies.current is not first, timeout=10)
        assert policies.current is not None
        assert policies.current.purpose("age_verification").description.startswith("Adult?")
    finally:
        watcher.stop()
