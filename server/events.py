"""The hook through which handlers hand events to the audit trail.

Handlers call `request.app.state.events.emit(event)` and never wait for storage: the
app's events go to an audit sink (`server.audit.AuditSink`: queue, batch writer, dead
letters; see docs/audit.md), which turns `subject` into the keyed `subject_ref` before
anything leaves the process. Services see only `EventPublisher`, its `emit`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from engine import Purpose


@dataclass(frozen=True, slots=True)
class RecordShape:
    """What every decision record of one purpose (of one policy revision) shares: its
    sensitive context fields, and what it could have been given (`declared`, `fields`:
    `engine.replay.given_to`). The audit writer process, which loads no policy, gets it
    with each raw decision (`server.audit.encoding.raw_line`)."""

    sensitive: tuple[str, ...]
    declared: list[str]
    fields: list[str] | None


@dataclass(slots=True)
class DecisionInput:
    """What a decision was made on, for its decision record (docs/impact.md). Raw here:
    the audit encoder (`server.audit.encoding.record_body`) pseudonymises the subject and
    hashes the purpose's sensitive context values before the record is queued, spilled
    or stored."""

    #: The purpose decided; in the audit writer process, its record's shape.
    purpose: Purpose | RecordShape
    #: The facts given to the engine, `context` included.
    facts: Mapping[str, object]
    conditions: Sequence[str] = ()
    #: Refused before the engine decided (consent, evidence): not replayable.
    refused: bool = False
    #: The shadow set's outcome (`server.shadow`), when one runs.
    shadow: dict[str, object] | None = None


@dataclass(slots=True)
class DecisionMade:
    """One decision, from either API: the `decision_made` audit event.

    Not frozen, though nothing changes it once emitted: a frozen dataclass sets each
    field through `object.__setattr__`, which triples the cost of building it, and this
    one is built for every decision.
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
    #: The input of its decision record; None when recording is off.
    record: DecisionInput | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The event's fields, without its record (a dead letter's payload)."""
        return {name: getattr(self, name) for name in _DECISION_FIELDS}


_DECISION_FIELDS = tuple(name for name in DecisionMade.__dataclass_fields__ if name != "record")


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


__all__ = ["AuditedEvent", "DecisionInput", "DecisionMade", "EventPublisher", "RecordShape", "SensitiveOperation"]
