"""`RecentEvents`: the test double of `AuditSink`, keeping the last events in memory.

It stores nothing and needs no database: tests (and development) that look at what the
handlers emitted pass it to `create_app(events=...)`. It keeps each event as emitted,
with its raw `subject`; its `subject_refs` key is random, as nothing it keeps is stored.
"""

from __future__ import annotations

import os
from collections import deque

from server.audit.sink import AuditStatus, readiness_of
from server.audit.subject_refs import SubjectRefs
from server.events import AuditedEvent
from stores import AuditDeadLetterStore, AuditEventStore


class RecentEvents:
    """An `AuditSink` that keeps the last `capacity` events (tests, development)."""

    def __init__(self, capacity: int = 1000, subject_refs: SubjectRefs | None = None) -> None:
        self.events: deque[AuditedEvent] = deque(maxlen=capacity)
        self.subject_refs = subject_refs or SubjectRefs(os.urandom(32))
        self.emitted = 0

    def emit(self, event: AuditedEvent) -> None:
        self.emitted += 1
        self.events.append(event)

    async def start(self, events: AuditEventStore, dead_letters: AuditDeadLetterStore) -> None:
        """Nothing to start: it keeps events from the first `emit`."""

    async def stop(self) -> None:
        """Nothing to drain: it keeps events after a stop as before."""

    def status(self) -> AuditStatus:
        """Every event counts as written as soon as it is kept."""
        return AuditStatus(emitted=self.emitted, written=self.emitted, problem=None)

    async def readiness(self) -> tuple[bool, str | None]:
        return readiness_of(self.status(), self.events.maxlen or 0)

    async def wait_delivered(self, timeout: float) -> bool:
        return True


__all__ = ["RecentEvents"]
