"""Fixtures of the policy CLI tests: stable working directory, writable fixture copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.engine_cli.policy_cli_helpers import BROKEN, ROOT, SHIPPED


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Diagnostics print paths as given; run from the repository root so they are stable.
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("IDGW_POLICY_DIR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def copy_fixture(tmp_path: Path) -> Callable[[str], Path]:
    """A writable copy of a fixture directory (for fmt and :reload)."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(BROKEN / name if name != "shipped" else SHIPPED, target)
        return target

    return copy
