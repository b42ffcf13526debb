"""The audit subsystem: every decision and sensitive operation, stored without ever
slowing a request, and never lost (docs/audit.md).

The app knows one interface, `AuditSink` (emit, start, stop, status, readiness), and asks
`audit_sink(settings)` for the backend of the configured delivery mode. Modules:
    sink           `AuditSink`, `AuditStatus`, the backend registry, `audit_sink`
    publisher      backend `inline`: `AuditPublisher`, queue and writer in the app's loop
    shipper        backend `process`: `ShippingPublisher`, the writer in a child process
    jetstream      backend `nats`: `JetStreamPublisher`, NATS JetStream as the queue
    recent         `RecentEvents`, the test double (keeps events in memory)
    encoding       the one encoder: emitted event -> stored form -> line, and back
    subject_refs   user id -> `subject_ref` (HMAC under a persisted key)
    queue          `Outbox`: the bounded in-process queue and its batches
    spill          spill files: what cannot be queued or handed on, replayed later
    writer         `BatchWriter`: chain, batch write, retry with backoff, dead letters
    metrics        the audit metrics, derived from a sink's `AuditStatus`
    chain          the tamper-evident hash chain and `verify_trail`
    export         events of one subject (`GET /me/data-export`)
    cli            `idgw audit verify`, `idgw audit dlq list|replay`
"""

from __future__ import annotations

from server.audit.chain import ChainBreak, ChainReport, event_hash, verify_trail
from server.audit.encoding import new_event_id, to_audit_event
from server.audit.export import events_of_subject
from server.audit.jetstream import JetStreamPublisher
from server.audit.publisher import AuditPublisher
from server.audit.recent import RecentEvents
from server.audit.shipper import ShippingPublisher
from server.audit.sink import (
    AuditSink,
    AuditStatus,
    audit_sink,
    backend_names,
    delivery_mode,
    register_backend,
)
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline

__all__ = [
    "AuditPublisher",
    "AuditSink",
    "AuditStatus",
    "Backoff",
    "BatchWriter",
    "ChainBreak",
    "ChainReport",
    "Deadline",
    "JetStreamPublisher",
    "RecentEvents",
    "ShippingPublisher",
    "SubjectRefs",
    "audit_sink",
    "backend_names",
    "delivery_mode",
    "event_hash",
    "events_of_subject",
    "new_event_id",
    "register_backend",
    "to_audit_event",
    "verify_trail",
]
