"""Configuration: every `IDGW_*` variable of SPEC section 14, read once at start.

`load_settings()` reads the environment and a `.env` file (environment wins) and turns
any invalid value into a `ConfigError` whose message names the variable, for example
`IDGW_PORT: Input should be a valid integer`. The CLI prints that message and exits;
nobody sees a traceback. Later subsystems (tokens, stores, audit, registries) read their
variables from the same `Settings` object.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "IDGW_"
_DATABASE_SCHEMES = ("sqlite://", "postgresql://", "postgres://", "memory://")


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one `IDGW_NAME: message` per error."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Settings(BaseSettings):
    """The gateway's configuration; field `x` is read from `IDGW_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # -- HTTP server -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(1024 * 1024, ge=1)

    # -- policies ----------------------------------------------------------------------
    policy_dir: Path = Path("./policies")
    policy_reload: bool = True
    reload_debounce_ms: int = Field(150, ge=0, le=10_000)

    # -- storage, tokens, auth (used by later subsystems) ------------------------------
    database_url: str = "sqlite:///./idgw.db"
    regulated_mode: bool = False
    signing_alg: Literal["RS256", "ES256"] = "RS256"
    issuer: str | None = None
    key_dir: Path = Path("./.idgw/keys")
    auth_mode: Literal["local", "external_oidc"] = "local"
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    data_api_auth: Literal["bearer", "none"] = "bearer"

    # -- cache, audit, registries ------------------------------------------------------
    redis_url: str | None = None
    audit_queue: Literal["memory", "nats"] = "memory"
    #: Where the audit writer runs: "process" (a child of each worker), "inline" (in the
    #: worker's event loop), "auto": process under `idgw serve` with a SQL database and
    #: the memory queue, inline otherwise (an app embedded elsewhere, memory://, NATS).
    audit_writer: Literal["auto", "inline", "process"] = "auto"
    #: Niceness of the writer process: under CPU contention the requests come first.
    audit_writer_nice: int = Field(10, ge=0, le=19)
    nats_url: str | None = None
    audit_batch_size: int = Field(500, ge=1, le=10_000)
    audit_flush_ms: int = Field(1000, ge=1, le=600_000)
    audit_max_batch: int | None = Field(None, ge=1, le=100_000)  # default: 10 x batch size
    audit_queue_capacity: int = Field(10_000, ge=1, le=10_000_000)
    audit_ready_max_depth: int | None = Field(None, ge=0)  # default: 80% of the capacity
    audit_drain_timeout_ms: int = Field(10_000, ge=0, le=600_000)
    audit_spill_dir: Path = Path("./.idgw/audit-spill")
    audit_nats_stream: str = Field("IDGW_AUDIT", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    registry_latency_ms: int = Field(0, ge=0, le=60_000)
    registry_timeout_ms: int = Field(2000, ge=1, le=600_000)
    #: Probability that a mock registry call fails (fault tests); 0 in production use.
    registry_failure_rate: float = Field(0.0, ge=0.0, le=1.0)

    # -- observability -----------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", "log_format", "signing_alg", "data_api_auth", "audit_queue", "audit_writer",
                     "auth_mode",
                     mode="before")
    @classmethod
    def _normalise_case(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        if info.field_name == "log_level":
            return {"WARN": "WARNING"}.get(value.upper(), value.upper())
        if info.field_name == "signing_alg":
            return value.upper()
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"expected one of {', '.join(s + '...' for s in _DATABASE_SCHEMES)}")
        return value

    @field_validator("redis_url", "nats_url", "oidc_issuer", "oidc_jwks_url", "oidc_audience", "issuer",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _dependent_settings(self) -> Settings:
        if self.auth_mode == "external_oidc":
            for name in ("oidc_issuer", "oidc_jwks_url"):
                if not getattr(self, name):
                    raise _FieldProblem(name, "required when IDGW_AUTH_MODE=external_oidc")
        if self.audit_queue == "nats" and not self.nats_url:
            raise _FieldProblem("nats_url", "required when IDGW_AUDIT_QUEUE=nats")
        if self.audit_writer == "process" and (self.database_url.startswith("memory:") or self.audit_queue != "memory"):
            raise _FieldProblem("audit_writer", "process needs a SQL database and IDGW_AUDIT_QUEUE=memory"
                                " (a writer process cannot reach memory://; with NATS the stream is the queue)")
        return self

    @property
    def public_issuer(self) -> str:
        """The token issuer: `IDGW_ISSUER`, else the server's own base URL."""
        return self.issuer or f"http://{self.host}:{self.port}"

    @property
    def log_as_json(self) -> bool:
        if self.log_format == "auto":
            return not sys.stderr.isatty()
        return self.log_format == "json"


class _FieldProblem(ValueError):
    """A cross-field check failed; carries the field it is about for the message."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the configuration; raise `ConfigError` naming each invalid variable.

    `overrides` (command-line options, tests) take precedence over the environment.
    """
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            ctx = error.get("ctx") or {}
            cause = ctx.get("error")
            if isinstance(cause, _FieldProblem):
                problems.append(f"{env_name(cause.field)}: {cause}")
                continue
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            shown = f" (got {value!r})" if isinstance(value, str | int | float) and len(str(value)) < 80 else ""
            problems.append(f"{env_name(field)}: {message}{shown}")
        raise ConfigError(problems) from None


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """`IDGW_*` variables in the environment that no setting reads (likely typos)."""
    known = {env_name(name) for name in Settings.model_fields}
    names = (environ if environ is not None else os.environ).keys()
    return sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in known
                  and not n.startswith(ENV_PREFIX + "TEST_"))


__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "env_name", "load_settings", "unknown_variables"]
