"""The audit subsystem: every decision and sensitive operation, stored without ever
slowing a request, and never lost (SPEC section 10, docs/audit.md).

Pipeline stages, one module each:
    subject_refs   user id -> `subject_ref` (HMAC under a persisted key)
    publisher      `AuditPublisher`: `emit` (the request path), start/stop, readiness
    shipper        `ShippingPublisher`: the same, with the writer in a child process
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
from server.audit.shipper import ShippingPublisher
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline
from server.settings import Settings

#: The publishers that store what is emitted (tests may pass a `RecentEvents` instead).
AUDIT_PUBLISHERS = (AuditPublisher, ShippingPublisher)


def audit_publisher(settings: Settings, *, served: bool = False) -> AuditPublisher | ShippingPublisher:
    """The publisher `settings` ask for: with `IDGW_AUDIT_WRITER=auto`, a writer process
    when `served` by `idgw serve` on a SQL database with the memory queue."""
    mode = settings.audit_writer
    if mode == "auto":
        sql = not settings.database_url.startswith("memory:")
        mode = "process" if served and sql and settings.audit_queue == "memory" else "inline"
    if mode == "inline":
        return AuditPublisher.from_settings(settings)
    return ShippingPublisher(AuditConfig.from_settings(settings), SubjectRefs.from_key_dir(settings.key_dir),
                             settings.database_url, settings.log_level, settings.log_as_json,
                             settings.audit_writer_nice)

__all__ = [
    "AUDIT_PUBLISHERS",
    "AuditConfig",
    "AuditPublisher",
    "Backoff",
    "BatchWriter",
    "ChainBreak",
    "ChainReport",
    "Deadline",
    "ShippingPublisher",
    "SubjectRefs",
    "audit_publisher",
    "event_hash",
    "events_of_subject",
    "new_event_id",
    "to_audit_event",
    "verify_trail",
]
