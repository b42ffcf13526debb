"""The audit events of the token subsystem, handed to `app.state.events.emit(...)`.

Like `server.events.DecisionMade`: frozen dataclasses with an `action`, the raw user id
in `subject` (the audit publisher pseudonymises it before anything is stored), the
request id, a UTC timestamp and a short `reason`; `to_dict()` for the publisher.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthEvent:
    subject: str | None
    timestamp: str
    request_id: str | None = None
    reason: str | None = None
    action: str = "auth"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCreated(AuthEvent):
    """A user seen for the first time (`reason`: `authorize` or `external_oidc`)."""

    action: str = "user_created"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokensIssued(AuthEvent):
    """Access, ID and refresh tokens issued (`reason`: the grant, `session` or `refresh_token`)."""

    action: str = "tokens_issued"


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshTokenReused(AuthEvent):
    """An already-used refresh token was presented: its family and session were revoked."""

    action: str = "refresh_token_reused"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRevoked(AuthEvent):
    """One token revoked (`reason`: `access_token` or `refresh_token`)."""

    action: str = "token_revoked"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionsRevoked(AuthEvent):
    """Every session of the user revoked ("revoke all")."""

    action: str = "sessions_revoked"


class Publisher(Protocol):
    def emit(self, event: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Where a request's events go, and the request they belong to."""

    publisher: Publisher
    request_id: str | None = None

    def emit(self, event_type: type[AuthEvent], subject: str | None, reason: str | None = None,
             when: datetime | None = None) -> None:
        moment = (when or datetime.now(UTC)).astimezone(UTC)
        self.publisher.emit(event_type(
            subject=subject,
            timestamp=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            request_id=self.request_id,
            reason=reason,
        ))


__all__ = [
    "AuditContext",
    "AuthEvent",
    "RefreshTokenReused",
    "SessionsRevoked",
    "TokenRevoked",
    "TokensIssued",
    "UserCreated",
]
