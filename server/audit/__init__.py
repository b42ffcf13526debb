"""The audit subsystem: every decision and sensitive operation, stored without ever
slowing a request, and never lost (SPEC section 10, docs/audit.md).

Pipeline stages, one module each:
    subject_refs   user id -> `subject_ref` (HMAC under a persisted key)
    publisher      `AuditPublisher`: `emit` (the request path), start/stop, readiness
    queue          `Outbox`: the bounded in-process queue and its batches
    spill          spill files: a full queue's overflow, replayed later
    jetstream      NATS JetStream transport (`IDGW_AUDIT_QUEUE=nats`)
    writer         `BatchWriter`: chain, batch write, retry with backoff, dead letters
    chain          the tamper-evident hash chain and `verify_trail`
    export         events of one subject (`GET /me/data-export`)
    cli            `idgw audit verify`, `idgw audit dlq list|replay`
"""

from __future__ import annotations

from server.audit.chain import ChainBreak, ChainReport, event_hash, verify_trail
from server.audit.export import events_of_subject
from server.audit.publisher import AuditConfig, AuditPublisher, new_event_id, to_audit_event
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline

__all__ = [
    "AuditConfig",
    "AuditPublisher",
    "Backoff",
    "BatchWriter",
    "ChainBreak",
    "ChainReport",
    "Deadline",
    "SubjectRefs",
    "event_hash",
    "events_of_subject",
    "new_event_id",
    "to_audit_event",
    "verify_trail",
]
