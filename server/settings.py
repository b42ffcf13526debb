"""Configuration: every `IDGW_*` variable (docs/operations.md lists them), read once at
start and validated once.

`load_settings()` reads the environment and a `.env` file (environment wins) and turns
any invalid value into a `ConfigError` whose message names the variable, for example
`IDGW_PORT: Input should be a valid integer`. The CLI prints that message and exits;
nobody sees a traceback.

A subsystem with several settings has its own section, a frozen model with its defaults
and checks, handed to the subsystem as it is: `settings.audit` (`AuditSettings`),
`settings.policy` (the bundle source), `settings.registry`, `settings.oidc`, `settings.log`. A section's variables are named
`IDGW_<SECTION>_<FIELD>` (`IDGW_AUDIT_BATCH_SIZE` is `settings.audit.batch_size`); so are
the keywords of `load_settings` (`audit_batch_size=...`), and a section may also be given
whole (`audit={...}`). Checks that span sections are the `Settings` model's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "IDGW_"
_DATABASE_SCHEMES = ("sqlite://", "postgresql://", "postgres://", "memory://")
_SOURCE_SCHEMES = ("https://", "http://", "file://")


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one `IDGW_NAME: message` per error."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _none_if_empty(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AuditSettings(_Section):
    """The audit trail (`IDGW_AUDIT_*`, docs/audit.md): where events are delivered, in
    what batches, what may wait in memory, where the rest is spilled."""

    #: `memory` (the outbox in each worker) or `nats` (a JetStream stream; IDGW_NATS_URL).
    queue: Literal["memory", "nats"] = "memory"
    #: Where the writer runs: "process" (a child of each worker), "inline" (in the
    #: worker's event loop), "auto": process under `idgw serve` with a SQL database and
    #: the memory queue, inline otherwise (an app embedded elsewhere, memory://, NATS).
    writer: Literal["auto", "inline", "process"] = "auto"
    #: Niceness of the writer process: under CPU contention the requests come first.
    writer_nice: int = Field(default=10, ge=0, le=19)
    #: The writer process under Linux's SCHED_IDLE: a request's wake-up preempts it at
    #: once, which niceness alone does not get from Linux's scheduler (EEVDF).
    writer_idle: bool = True
    nats_stream: str = Field(default="IDGW_AUDIT", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    flush_ms: int = Field(default=1000, ge=1, le=600_000)
    max_batch: int | None = Field(default=None, ge=1, le=100_000)  # None: 10 x batch size
    queue_capacity: int = Field(default=10_000, ge=1, le=10_000_000)
    ready_max_depth: int | None = Field(default=None, ge=0)  # None: 80% of the capacity
    drain_timeout_ms: int = Field(default=10_000, ge=0, le=600_000)
    spill_dir: Path = Path("./.idgw/audit-spill")

    _lower_case = field_validator("queue", "writer", mode="before")(_lower)

    @property
    def flush_seconds(self) -> float:
        return self.flush_ms / 1000

    @property
    def drain_timeout_seconds(self) -> float:
        return self.drain_timeout_ms / 1000

    @property
    def max_ready_depth(self) -> int:
        """Events waiting beyond which /health/ready answers 503."""
        return self.ready_max_depth if self.ready_max_depth is not None else self.queue_capacity * 4 // 5


class PolicySourceSettings(_Section):
    """A signed bundle served over HTTP(S) or from a file, polled instead of a watched
    directory (`IDGW_POLICY_*`, docs/bundles.md#serving-from-a-bundle-source)."""

    #: `https://.../bundle.tar.gz`, `http://...` or `file:///...`; unset: IDGW_POLICY_DIR.
    source: str | None = None
    #: Seconds between polls; a float (0.5) for tests.
    poll_s: float = Field(default=10.0, gt=0, le=86_400)
    #: The PEM public key bundles must be signed with: a file's path, or the PEM text.
    public_key: str | None = None
    #: Where the last good bundle is kept, so a restart serves it while the source is down.
    cache_dir: Path = Path("./.idgw/policy-cache")

    _unset_when_empty = field_validator("source", "public_key", mode="before")(_none_if_empty)

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(_SOURCE_SCHEMES):
            raise ValueError(f"expected a URL starting with {', '.join(_SOURCE_SCHEMES)}")
        return value

    @property
    def over_http(self) -> bool:
        return self.source is not None and self.source.lower().startswith(("http://", "https://"))


class RegistrySettings(_Section):
    """The mock registries (`IDGW_REGISTRY_*`, docs/registry.md)."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    timeout_ms: int = Field(default=2000, ge=1, le=600_000)
    #: Probability that a mock registry call fails (fault tests); 0 in production use.
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)


class OidcSettings(_Section):
    """The external OpenID provider of `IDGW_AUTH_MODE=external_oidc` (`IDGW_OIDC_*`)."""

    issuer: str | None = None
    jwks_url: str | None = None
    audience: str | None = None

    _unset_when_empty = field_validator("issuer", "jwks_url", "audience", mode="before")(_none_if_empty)


class LogSettings(_Section):
    """The log lines (`IDGW_LOG_*`, docs/operations.md)."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return _lower(value)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        level = value.strip().upper()
        return {"WARN": "WARNING"}.get(level, level)

    @property
    def as_json(self) -> bool:
        if self.format == "auto":
            return not sys.stderr.isatty()
        return self.format == "json"


#: The sections of `Settings`, by field name.
SECTIONS: dict[str, type[BaseModel]] = {
    "policy": PolicySourceSettings, "audit": AuditSettings, "registry": RegistrySettings, "oidc": OidcSettings, "log": LogSettings,
}


class Settings(BaseSettings):
    """The gateway's configuration: field `x` is read from `IDGW_X`, field `y` of section
    `s` from `IDGW_S_Y`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,  # IDGW_AUDIT_BATCH_SIZE: section audit, field batch_size
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # -- HTTP server -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    #: The policy workbench at /ui/ (docs/workbench.md): `on` or `off`.
    ui: bool = True

    # -- policies ----------------------------------------------------------------------
    policy_dir: Path = Path("./policies")
    policy_reload: bool = True
    reload_debounce_ms: int = Field(default=150, ge=0, le=10_000)
    #: A bundle source instead of the directory (IDGW_POLICY_SOURCE, _POLL_S, ...). Its
    #: variables share the `IDGW_POLICY_` prefix with policy_dir and policy_reload, which
    #: stay fields of their own (the section ignores `dir` and `reload`).
    policy: PolicySourceSettings = PolicySourceSettings()
    #: A candidate policy directory decided beside the live one (docs/impact.md).
    shadow_policy_dir: Path | None = None
    #: Days a decision record is kept (docs/impact.md); 0 records nothing.
    decision_record_days: int = Field(default=30, ge=0, le=3650)

    # -- storage, tokens, auth ---------------------------------------------------------
    database_url: str = "sqlite:///./idgw.db"
    #: The PostgreSQL pool of each worker: at least `database_pool_min` connections, at
    #: most `database_pool_max`; equal values make a fixed pool (docs/operations.md).
    database_pool_min: int = Field(default=1, ge=1, le=200)
    database_pool_max: int = Field(default=10, ge=1, le=200)
    regulated_mode: bool = False
    signing_alg: Literal["RS256", "ES256"] = "RS256"
    issuer: str | None = None
    key_dir: Path = Path("./.idgw/keys")
    #: Seconds between re-reads of the signing keys (a rotation elsewhere is seen within
    #: them); at most 30, the re-read interval a retired key's publication period allows for.
    key_refresh_s: float = Field(default=30.0, gt=0, le=30)
    auth_mode: Literal["local", "external_oidc"] = "local"
    oidc: OidcSettings = OidcSettings()
    data_api_auth: Literal["bearer", "none"] = "bearer"

    # -- cache, audit, registries ------------------------------------------------------
    redis_url: str | None = None
    nats_url: str | None = None
    audit: AuditSettings = AuditSettings()
    registry: RegistrySettings = RegistrySettings()

    # -- observability -----------------------------------------------------------------
    log: LogSettings = LogSettings()

    @model_validator(mode="before")
    @classmethod
    def _sections_by_flat_name(cls, data: Any) -> Any:
        """`audit_batch_size=...` (a keyword of `load_settings`) as `audit={"batch_size": ...}`,
        over what the environment gives that section."""
        if not isinstance(data, dict):
            return data
        folded = dict(data)
        for key, value in data.items():
            section, _, field = key.partition("_")
            model = SECTIONS.get(section)
            if model is not None and field in model.model_fields:
                given = folded.get(section)
                if isinstance(given, BaseModel):
                    given = given.model_dump()
                folded[section] = {**(given if isinstance(given, dict) else {}), field: value}
                del folded[key]
        return folded

    @field_validator("signing_alg", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    _lower_case = field_validator("data_api_auth", "auth_mode", mode="before")(_lower)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"expected one of {', '.join(s + '...' for s in _DATABASE_SCHEMES)}")
        return value

    _unset_when_empty = field_validator("redis_url", "nats_url", "issuer", mode="before")(_none_if_empty)

    @model_validator(mode="after")
    def _dependent_settings(self) -> Settings:
        if self.auth_mode == "external_oidc":
            for name in ("issuer", "jwks_url"):
                if not getattr(self.oidc, name):
                    raise _FieldProblem(f"oidc_{name}", "required when IDGW_AUTH_MODE=external_oidc")
        if self.policy.over_http and not self.policy.public_key:
            raise _FieldProblem("policy_public_key", "required when IDGW_POLICY_SOURCE is an http(s) URL"
                                " (the bundle's signature is checked with it)")
        if self.database_pool_min > self.database_pool_max:
            raise _FieldProblem("database_pool_min", f"at most IDGW_DATABASE_POOL_MAX ({self.database_pool_max})")
        if self.audit.queue == "nats" and not self.nats_url:
            raise _FieldProblem("nats_url", "required when IDGW_AUDIT_QUEUE=nats")
        if self.audit.writer == "process" and (self.database_url.startswith("memory:") or self.audit.queue != "memory"):
            raise _FieldProblem("audit_writer", "process needs a SQL database and IDGW_AUDIT_QUEUE=memory"
                                " (a writer process cannot reach memory://; with NATS the stream is the queue)")
        return self

    @property
    def public_issuer(self) -> str:
        """The token issuer: `IDGW_ISSUER`, else the server's own base URL."""
        return self.issuer or f"http://{self.host}:{self.port}"


class _FieldProblem(ValueError):
    """A cross-field check failed; carries the field it is about for the message."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def env_name(field: str) -> str:
    """The variable of `field` (`port`, or `audit_batch_size` for a section's field)."""
    return ENV_PREFIX + field.upper()


def variable_names() -> list[str]:
    """Every `IDGW_*` variable a setting reads."""
    names = []
    for name in Settings.model_fields:
        section = SECTIONS.get(name)
        fields = [name] if section is None else [f"{name}_{field}" for field in section.model_fields]
        names += [env_name(field) for field in fields]
    return sorted(names)


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
            field = "_".join(str(part) for part in error["loc"]) or "?"
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            shown = f" (got {value!r})" if isinstance(value, str | int | float) and len(str(value)) < 80 else ""
            problems.append(f"{env_name(field)}: {message}{shown}")
        raise ConfigError(problems) from None


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """`IDGW_*` variables in the environment that no setting reads (likely typos)."""
    known = set(variable_names())
    names = (environ if environ is not None else os.environ).keys()
    return sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in known
                  and not n.startswith(ENV_PREFIX + "TEST_"))


__all__ = [
    "ENV_PREFIX",
    "SECTIONS",
    "AuditSettings",
    "ConfigError",
    "LogSettings",
    "OidcSettings",
    "PolicySourceSettings",
    "RegistrySettings",
    "Settings",
    "env_name",
    "load_settings",
    "unknown_variables",
    "variable_names",
]
