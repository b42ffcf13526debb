"""The audit pipeline's metrics, derived from a sink's `AuditStatus`.

The counters and gauges are never program state: a sink counts in plain attributes,
and `AuditMetrics.export` moves the counters on by what its status gained since the last
export and sets the gauges (a sink exports every half second and when it stops). The
histograms are observed once per batch write. Registered in `server.metrics.REGISTRY`
beside the gateway's other metrics, so `/metrics` shows them and several workers
aggregate them the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import Counter, Histogram

from server.audit.sink import AuditStatus
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

#: How often a sink's status is exported.
EXPORT_INTERVAL = 0.5

_COUNTERS = (
    ("emitted", AUDIT_EVENTS_EMITTED),
    ("written", AUDIT_EVENTS_WRITTEN),
    ("dead_lettered", AUDIT_EVENTS_DEAD_LETTERED),
    ("spilled", AUDIT_EVENTS_SPILLED),
    ("retries", AUDIT_WRITE_RETRIES),
)


class AuditMetrics:
    """The metrics of one sink, derived from its status."""

    def __init__(self) -> None:
        self._exported = AuditStatus()

    def export(self, status: AuditStatus) -> None:
        for name, counter in _COUNTERS:
            gained = getattr(status, name) - getattr(self._exported, name)
            if gained > 0:
                counter.inc(gained)
        AUDIT_QUEUE_DEPTH.set(status.depth)
        AUDIT_QUEUE_LAG.set(status.lag)
        self._exported = status

    def batch(self, size: int, seconds: float) -> None:
        """One batch write: its size and how long it took."""
        AUDIT_BATCH_SIZE.observe(size)
        AUDIT_WRITE_DURATION.observe(seconds)

    async def run(self, status: Callable[[], AuditStatus]) -> None:
        """Export `status()` every `EXPORT_INTERVAL` seconds, until cancelled."""
        while True:  # ends when the sink's stop() cancels it
            self.export(status())
            await asyncio.sleep(EXPORT_INTERVAL)


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
    "EXPORT_INTERVAL",
    "AuditMetrics",
]
