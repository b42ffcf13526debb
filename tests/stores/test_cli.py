"""`idgw migrate up|down [N]|status` on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from server.cli import main


def _idgw(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["migrate", *args], env=env)
    return result.exit_code, result.output


def test_up_status_down(sql_database_url: str) -> None:
    url = ["--database-url", sql_database_url]

    assert _idgw("up", "1", *url) == (0, "applied 0001_identity\n")
    code, status = _idgw("status", *url)
    assert code == 0
    assert "0001_identity" in status and "applied 20" in status
    assert "0005_decision_records         pending" in status

    code, output = _idgw("up", *url)
    assert (code, output.splitlines()) == (
        0,
        ["applied 0002_consents_credentials", "applied 0003_audit", "applied 0004_signing_keys",
         "applied 0005_decision_records"],
    )
    assert _idgw("down", *url) == (0, "reverted 0005_decision_records\n")
    assert _idgw("down", *url) == (0, "reverted 0004_signing_keys\n")
    assert _idgw("down", "2", *url) == (
        0,
        "reverted 0003_audit\nreverted 0002_consents_credentials\n",
    )
    assert _idgw("down", "--all", *url) == (0, "reverted 0001_identity\n")
    assert _idgw("down", *url) == (0, "no migration reverted\n")


def test_the_url_comes_from_the_environment(sql_database_url: str) -> None:
    code, output = _idgw("up", env={"IDGW_DATABASE_URL": sql_database_url})
    assert code == 0 and output.count("applied") == 5


def test_the_password_is_not_printed() -> None:
    code, output = _idgw("status", "--database-url", "memory://")
    assert (code, output) == (0, "database: memory://\n")
    code, output = _idgw(
        "status", "--database-url", "postgresql://idgw:s3cret@127.0.0.1:1/x?connect_timeout=2"
    )
    assert code == 1
    assert "s3cret" not in output


@pytest.mark.parametrize("args", [["up", "0"], ["down", "0"]])
def test_step_counts_are_positive(args: list[str]) -> None:
    code, output = _idgw(*args, "--database-url", "memory://")
    assert code == 2 and "Invalid value" in output


def test_a_bad_url_is_a_clean_error() -> None:
    code, output = _idgw("up", "--database-url", "mysql://db/idgw")
    assert code == 1
    assert output == (
        "Error: unsupported database URL scheme 'mysql'"
        " (expected sqlite:///PATH, postgresql://... or memory://)\n"
    )
