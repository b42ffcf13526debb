"""The audit metrics are derived from a sink's status: counters move on by what the
status gained, gauges show it; nothing reads a metric back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter, Gauge

from server.audit import AuditPublisher, AuditStatus, SubjectRefs
from server.audit.metrics import (
    AUDIT_EVENTS_DEAD_LETTERED,
    AUDIT_EVENTS_EMITTED,
    AUDIT_EVENTS_SPILLED,
    AUDIT_EVENTS_WRITTEN,
    AUDIT_QUEUE_DEPTH,
    AUDIT_WRITE_RETRIES,
    AuditMetrics,
)
from server.settings import AuditSettings
from stores import Stores
from tests.audit.conftest import decision

COUNTERS = {"emitted": AUDIT_EVENTS_EMITTED, "written": AUDIT_EVENTS_WRITTEN,
            "dead_lettered": AUDIT_EVENTS_DEAD_LETTERED, "spilled": AUDIT_EVENTS_SPILLED,
            "retries": AUDIT_WRITE_RETRIES}


def value(metric: Counter | Gauge) -> float:
    return float(metric.collect()[0].samples[0].value)


def gains() -> Callable[[], dict[str, float]]:
    """The counters' gains since this call."""
    before = {name: value(counter) for name, counter in COUNTERS.items()}
    return lambda: {name: value(counter) - before[name] for name, counter in COUNTERS.items()}


def test_counters_follow_what_the_status_gained_and_gauges_show_it() -> None:
    gained = gains()
    metrics = AuditMetrics()
    metrics.export(AuditStatus(emitted=5, written=3, spilled=1, retries=2, depth=3, lag=1.5))
    assert value(AUDIT_QUEUE_DEPTH) == 3
    metrics.export(AuditStatus(emitted=9, written=8, dead_lettered=1, spilled=1, retries=2, depth=0))
    assert gained() == {"emitted": 9, "written": 8, "dead_lettered": 1, "spilled": 1, "retries": 2}
    assert value(AUDIT_QUEUE_DEPTH) == 0
    metrics.export(AuditStatus(emitted=9, written=8, dead_lettered=1, spilled=1, retries=2))
    assert gained()["written"] == 8  # an unchanged status adds nothing


async def test_a_publisher_with_metrics_exports_its_counts(memory: Stores, tmp_path: Path, refs: SubjectRefs) -> None:
    gained = gains()
    publisher = AuditPublisher(AuditSettings(spill_dir=tmp_path / "spill", flush_ms=50),
                               refs, AuditMetrics())
    await publisher.start(memory.audit_events, memory.audit_dead_letters)
    for n in range(10):
        publisher.emit(decision(n))
    publisher.emit(decision(10, timestamp="2026-01-01T10:00:00"))  # dead-lettered
    assert await publisher.wait_delivered(10)
    await publisher.stop()  # exports its final status
    assert gained() == {"emitted": 11, "written": 10, "dead_lettered": 1, "spilled": 0, "retries": 0}
