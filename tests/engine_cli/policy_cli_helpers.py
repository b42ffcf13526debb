"""Helpers of the policy CLI tests: run `idgw` through its real entry point."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from server.cli import main

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken"
SHIPPED = ROOT / "policies"
IDGW = ROOT / ".venv" / "bin" / "idgw"


def idgw(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """`idgw ARGS...` in-process, through the console script's click group."""
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def fixture(name: str) -> str:
    """A broken-policy fixture directory, as the relative path a user would type."""
    path = BROKEN / name
    assert path.is_dir(), path
    return str(path.relative_to(ROOT))
