"""The hook through which handlers hand events to the audit trail.

Handlers call `request.app.state.events.emit(event)` and never wait for storage. Until
the audit subsystem replaces it, `RecentEvents` keeps the last events in memory (a
bounded buffer, so memory stays flat however many decisions are made). The audit
publisher must turn `subject` into the keyed `subject_ref` before anything is stored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DecisionMade:
    """One decision, from either API: the `decision_made` audit event."""

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


class EventPublisher(Protocol):
    def emit(self, event: DecisionMade) -> None: ...


class RecentEvents:
    """An in-memory publisher keeping the last `capacity` events (tests, development)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.events: deque[DecisionMade] = deque(maxlen=capacity)

    def emit(self, event: DecisionMade) -> None:
        self.events.append(event)


__all__ = ["DecisionMade", "EventPublisher", "RecentEvents"]
