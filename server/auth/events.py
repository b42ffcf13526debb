"""The audit events of the token subsystem, handed to `app.state.events.emit(...)`.

Each is a `server.events.SensitiveOperation` (the audit trail's shape for everything but
decisions) with the raw user id in `subject`; the audit publisher pseudonymises it
before anything is stored. The actions:

    user_created           outcome created   reason authorize | external_oidc
    tokens_issued          outcome issued    reason session | refresh_token (the grant)
    refresh_token_reused   outcome revoked   reason family_revoked
    token_revoked          outcome revoked   reason access_token | refresh_token
    sessions_revoked       outcome revoked   reason "<N> sessions"
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.clock import utc_now, utc_text
from server.events import EventPublisher, SensitiveOperation

USER_CREATED = "user_created"
TOKENS_ISSUED = "tokens_issued"
REFRESH_TOKEN_REUSED = "refresh_token_reused"
TOKEN_REVOKED = "token_revoked"
SESSIONS_REVOKED = "sessions_revoked"


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Where a request's events go, and the request they belong to."""

    publisher: EventPublisher
    request_id: str | None = None

    def emit(self, action: str, subject: str | None, *, outcome: str, reason: str | None = None,
             when: datetime | None = None, purpose: str | None = None) -> None:
        self.publisher.emit(SensitiveOperation(
            action=action,
            timestamp=utc_text(when or utc_now()),
            subject=subject,
            purpose=purpose,
            outcome=outcome,
            reason=reason,
            request_id=self.request_id,
        ))


__all__ = [
    "REFRESH_TOKEN_REUSED",
    "SESSIONS_REVOKED",
    "TOKENS_ISSUED",
    "TOKEN_REVOKED",
    "USER_CREATED",
    "AuditContext",
]
