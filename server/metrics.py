"""Prometheus metrics (listed in docs/operations.md) and the `GET /metrics` endpoint.

All metrics live here, defined once, so every subsystem counts into the same names.
Labels are bounded: `endpoint` is the route template (`/v1/data/{purpose}`), never the
raw path; unmatched paths share the label `unmatched`.

Several uvicorn workers: `idgw serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh
directory before the workers start; prometheus-client then keeps each process's values
in files there and `/metrics` (answered by any worker) aggregates all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.openapi import document

# `*_created` series double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_EVALUATION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1)

HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration, by route template",
    ["method", "endpoint", "status"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered, by route template",
    ["method", "endpoint", "status"], registry=REGISTRY,
)
DECISIONS = Counter(
    "decisions_total", "Decisions made, by purpose and outcome", ["purpose", "status"], registry=REGISTRY,
)
POLICY_EVALUATION_DURATION = Histogram(
    "policy_evaluation_duration_seconds", "Time spent evaluating one purpose",
    ["purpose"], buckets=_EVALUATION_BUCKETS, registry=REGISTRY,
)
POLICY_RELOADS = Counter(
    "policy_reloads_total", "Policy reload attempts: success, rejected or unchanged",
    ["result"], registry=REGISTRY,
)
POLICY_BUNDLE_FETCHES = Counter(
    "policy_bundle_fetches_total",
    "Fetches of the policy bundle source: updated, not_modified, rejected or unreachable",
    ["result"], registry=REGISTRY,
)
POLICY_SHADOW_DECISIONS = Counter(
    "policy_shadow_decisions_total",
    "Live decisions decided again by the shadow policy set: same, different or not_replayable",
    ["purpose", "agreement"], registry=REGISTRY,
)
REGISTRY_CALL_DURATION = Histogram(
    "registry_call_duration_seconds", "Registry lookups, by registry",
    ["registry_type"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
REGISTRY_CALL_ERRORS = Counter(
    "registry_call_errors_total", "Failed registry lookups", ["registry_type"], registry=REGISTRY,
)
AUDIT_QUEUE_DEPTH = Gauge(
    "audit_queue_depth", "Audit events waiting to be written", registry=REGISTRY, multiprocess_mode="livesum",
)
AUDIT_QUEUE_LAG = Gauge(
    "audit_queue_lag_seconds", "Age of the oldest unwritten audit event", registry=REGISTRY,
    multiprocess_mode="livemax",
)
AUDIT_EVENTS_WRITTEN = Counter(
    "audit_events_written_total", "Audit events written to storage", registry=REGISTRY,
)
AUDIT_EVENTS_DEAD_LETTERED = Counter(
    "audit_events_dead_lettered_total", "Audit events moved to the dead-letter table", registry=REGISTRY,
)


class LabelCache:
    """Labelled children of metrics, looked up once per label tuple.

    `metric.labels(...)` costs a few microseconds (validation, a lock); on the request
    path that adds up. Label values are bounded (route templates, purposes, outcomes),
    so the cache is too.
    """

    def __init__(self, *metrics: Counter | Histogram) -> None:
        self.metrics = metrics
        self.children: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def __call__(self, *labels: str) -> tuple[Any, ...]:
        children = self.children.get(labels)
        if children is None:
            children = self.children[labels] = tuple(m.labels(*labels) for m in self.metrics)
        return children


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The current values, aggregated over every worker when running several."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def mark_worker_stopped() -> None:
    """Drop this process's live gauges from the aggregate (called at shutdown)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@document(summary="Prometheus metrics", tags=["operations"], response_media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition of every metric."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]

__all__ = [
    "AUDIT_EVENTS_DEAD_LETTERED",
    "AUDIT_EVENTS_WRITTEN",
    "AUDIT_QUEUE_DEPTH",
    "AUDIT_QUEUE_LAG",
    "DECISIONS",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "POLICY_BUNDLE_FETCHES",
    "POLICY_EVALUATION_DURATION",
    "POLICY_RELOADS",
    "POLICY_SHADOW_DECISIONS",
    "REGISTRY",
    "REGISTRY_CALL_DURATION",
    "REGISTRY_CALL_ERRORS",
    "LabelCache",
    "exposition",
    "mark_worker_stopped",
    "multiprocess_dir",
    "routes",
]
