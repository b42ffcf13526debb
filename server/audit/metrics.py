"""The audit pipeline's own metrics, beside the SPEC section 12 ones in `server.metrics`.

Registered in the same registry (`server.metrics.REGISTRY`), so `/metrics` shows them
and several workers aggregate them the same way.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from server.metrics import (
    AUDIT_EVENTS_DEAD_LETTERED,
    AUDIT_EVENTS_WRITTEN,
    AUDIT_QUEUE_DEPTH,
    AUDIT_QUEUE_LAG,
    REGISTRY,
)

AUDIT_EVENTS_EMITTED = Counter(
    "audit_events_emitted_total", "Audit events handed to the publisher", registry=REGISTRY,
)
AUDIT_EVENTS_SPILLED = Counter(
    "audit_events_spilled_total", "Audit events written to the spill file (queue full or drain timed out)",
    registry=REGISTRY,
)
AUDIT_WRITE_RETRIES = Counter(
    "audit_write_retries_total", "Audit batch writes retried after the store was unavailable",
    registry=REGISTRY,
)
AUDIT_BATCH_SIZE = Histogram(
    "audit_batch_size", "Events per audit batch write",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000), registry=REGISTRY,
)
AUDIT_WRITE_DURATION = Histogram(
    "audit_write_duration_seconds", "Time to write one audit batch (one round trip)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)

__all__ = [
    "AUDIT_BATCH_SIZE",
    "AUDIT_EVENTS_DEAD_LETTERED",
    "AUDIT_EVENTS_EMITTED",
    "AUDIT_EVENTS_SPILLED",
    "AUDIT_EVENTS_WRITTEN",
    "AUDIT_QUEUE_DEPTH",
    "AUDIT_QUEUE_LAG",
    "AUDIT_WRITE_DURATION",
    "AUDIT_WRITE_RETRIES",
]
