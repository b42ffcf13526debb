"""The hook through which handlers hand events to the audit trail.

Handlers call `request.app.state.events.emit(event)` and never wait for storage: the
app's publisher is `server.audit.AuditPublisher` (queue, batch writer, dead letters;
see docs/audit.md), which turns `subject` into the keyed `subject_ref` before anything
leaves the process. `RecentEvents` keeps the last events in memory instead (a bounded
buffer): the test double for tests that look at what was emitted.
"""

from __future__ import annotations

from collections import deque
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


class RecentEvents:
    """An in-memory publisher keeping the last `capacity` events (tests, development)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.events: deque[AuditedEvent] = deque(maxlen=capacity)

    def emit(self, event: AuditedEvent) -> None:
        self.events.append(event)


__all__ = ["AuditedEvent", "DecisionMade", "EventPublisher", "RecentEvents", "SensitiveOperation"]
