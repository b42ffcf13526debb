"""The hook through which handlers hand events to the audit trail.

Handlers call `request.app.state.events.emit(event)` and never wait for storage: the
app's events go to an audit sink (`server.audit.AuditSink`: queue, batch writer, dead
letters; see docs/audit.md), which turns `subject` into the keyed `subject_ref` before
anything leaves the process. Services see only `EventPublisher`, its `emit`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class DecisionMade:
    """One decision, from either API: the `decision_made` audit event.

    Not frozen, though nothing changes it once emitted: a frozen dataclass sets each
    field through `object.__setattr__`, and this one is built for every decision (1.2
    against 0.4 µs).
    """

    decision_id: str
    purpose: str
    decision: str
    reason: str
    policy_revision: str
    timestamp: str
    request_id: str | None = None
    subject: str | None = None  # raw `sub`; the audit publisher pseudonymises it
    action: str = "decision_made"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SensitiveOperation:
    """Any other audited operation (`token_issued`, `consent_granted`, `user_erased`, ...).

    `outcome` lands in the audit column `decision` (e.g. `granted`, `revoked`, `denied`).
    """

    action: str
    timestamp: str
    subject: str | None = None  # raw `sub`; the audit publisher pseudonymises it
    purpose: str | None = None
    outcome: str | None = None
    reason: str | None = None
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AuditedEvent = DecisionMade | SensitiveOperation


class EventPublisher(Protocol):
    def emit(self, event: AuditedEvent) -> None: ...


__all__ = ["AuditedEvent", "DecisionMade", "EventPublisher", "SensitiveOperation"]
