"""Configuration: every variable the docs list, `.env`, sections read from their
variables, and errors naming the variable."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from server.settings import (
    AuditSettings,
    ConfigError,
    load_settings,
    unknown_variables,
    variable_names,
)
from tests.server.conftest import IDGW, REPO, free_port


def documented_variables() -> set[str]:
    """The variables of the tables in docs/operations.md and docs/audit.md."""
    names: set[str] = set()
    for page in ("operations.md", "audit.md"):
        for row in re.findall(r"^\| (`IDGW_[^|]*)\|", (REPO / "docs" / page).read_text(), re.MULTILINE):
            names.update(re.findall(r"`(IDGW_[A-Z0-9_]+)`", row))
    return names


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("IDGW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_every_documented_variable_is_a_setting_and_every_setting_documented() -> None:
    documented = documented_variables()
    assert len(documented) > 30
    assert documented == set(variable_names())


def test_embedded_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.policy_dir == Path("policies")
    assert settings.database_url == "sqlite:///./idgw.db"
    assert settings.signing_alg == "RS256"
    assert settings.auth_mode == "local"
    assert settings.data_api_auth == "bearer"
    assert settings.audit == AuditSettings() and settings.audit.queue == "memory"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.regulated_mode is False


def test_environment_and_dotenv(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IDGW_PORT=9100\nIDGW_LOG_LEVEL=debug\nIDGW_REGULATED_MODE=true\n")
    clean_env.setenv("IDGW_PORT", "9200")  # the environment wins over .env
    settings = load_settings()
    assert settings.port == 9200
    assert settings.log.level == "DEBUG"
    assert settings.regulated_mode is True


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IDGW_PORT", "eighty"),
        ("IDGW_PORT", "70000"),
        ("IDGW_REGULATED_MODE", "perhaps"),
        ("IDGW_SIGNING_ALG", "HS256"),
        ("IDGW_DATA_API_AUTH", "basic"),
        ("IDGW_DATABASE_URL", "mysql://x"),
        ("IDGW_LOG_FORMAT", "xml"),
        ("IDGW_MAX_BODY_BYTES", "0"),
        ("IDGW_REGISTRY_TIMEOUT_MS", "-5"),
        ("IDGW_DATABASE_POOL_MAX", "0"),
    ],
)
def test_invalid_values_name_the_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith(f"{variable}: ")


def test_dependent_settings_name_the_missing_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("IDGW_AUTH_MODE", "external_oidc")
    with pytest.raises(ConfigError, match="IDGW_OIDC_ISSUER: required"):
        load_settings()
    clean_env.delenv("IDGW_AUTH_MODE")
    clean_env.setenv("IDGW_AUDIT_QUEUE", "nats")
    with pytest.raises(ConfigError, match="IDGW_NATS_URL: required"):
        load_settings()
    clean_env.delenv("IDGW_AUDIT_QUEUE")
    clean_env.setenv("IDGW_DATABASE_POOL_MIN", "12")
    with pytest.raises(ConfigError, match=r"IDGW_DATABASE_POOL_MIN: at most IDGW_DATABASE_POOL_MAX \(10\)"):
        load_settings()
    clean_env.setenv("IDGW_DATABASE_POOL_MAX", "12")
    assert (load_settings().database_pool_min, load_settings().database_pool_max) == (12, 12)


def test_unknown_variables_are_reported() -> None:
    assert unknown_variables({"IDGW_PROT": "1", "IDGW_PORT": "2", "IDGW_TEST_DATABASE_URL": "x"}) == ["IDGW_PROT"]
    assert unknown_variables({"IDGW_AUDIT_BATCH_SIZE": "1", "IDGW_AUDIT_BACH_SIZE": "1"}) == ["IDGW_AUDIT_BACH_SIZE"]


def test_a_section_is_read_from_its_variables_and_validated_once(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("IDGW_AUDIT_FLUSH_MS=250\nIDGW_REGISTRY_TIMEOUT_MS=900\n")
    clean_env.setenv("IDGW_AUDIT_BATCH_SIZE", "50")
    clean_env.setenv("IDGW_AUDIT_WRITER", " Inline ")
    clean_env.setenv("IDGW_AUDIT_SPILL_DIR", str(tmp_path / "spill"))
    clean_env.setenv("IDGW_OIDC_AUDIENCE", "")
    clean_env.setenv("IDGW_LOG_LEVEL", "warn")
    clean_env.setenv("IDGW_AUDIT_BACH_SIZE", "7")  # a typo: reported as unknown, not an error
    settings = load_settings()
    assert settings.audit == AuditSettings(batch_size=50, writer="inline", flush_ms=250, spill_dir=tmp_path / "spill")
    assert (settings.audit.flush_seconds, settings.audit.max_ready_depth) == (0.25, 8000)
    assert (settings.registry.timeout_ms, settings.oidc.audience, settings.log.level) == (900, None, "WARNING")
    # keywords are named as the variables are, and win over them; a section may be given whole
    assert load_settings(audit_batch_size=9).audit.batch_size == 9
    assert load_settings(audit_batch_size=9).audit.flush_ms == 250
    assert load_settings(audit={"batch_size": 8}).audit.batch_size == 8
    assert load_settings(registry_timeout_ms=5).registry.timeout_ms == 5
    clean_env.setenv("IDGW_AUDIT_QUEUE_CAPACITY", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.problems == ["IDGW_AUDIT_QUEUE_CAPACITY: Input should be greater than or equal to 1 (got '0')"]


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IDGW_")}
    environment.update(env)
    return subprocess.run(
        [str(IDGW), "serve", "--port", str(free_port()), *args],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60,
    )


def test_serve_refuses_bad_configuration_without_traceback(tmp_path: Path) -> None:
    result = _serve(tmp_path, IDGW_LOG_LEVEL="loud")
    assert result.returncode == 2
    assert "IDGW_LOG_LEVEL: " in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_refuses_broken_policies_with_diagnostics(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.yaml").write_text(
        "purposes:\n  p:\n    evidence: [is_pep]\n    rules:\n      - if: is_pep AND\n        then: fail\n        reason: r\n"
    )
    result = _serve(tmp_path, "--policy-dir", str(policies))
    assert result.returncode == 1
    assert "broken.yaml:5:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
