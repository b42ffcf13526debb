"""The audit publisher: `app.state.events`, from a handler's `emit(event)` to storage.

    emit(event) --> pseudonymise + id --> Outbox (bounded; spill file when full)
        --> delivery task --> BatchWriter --> audit_events / audit_dead_letters   (memory)
        --> delivery task --> JetStream --> consumer --> BatchWriter --> ...      (nats)

`emit` runs on the request path: it computes `subject_ref`, assigns the event id (the
idempotency key of every later retry) and queues; it never waits for storage. `start`
(lifespan startup) claims spill files left by earlier processes and starts the tasks;
`stop` (lifespan shutdown, e.g. on SIGTERM) drains the queue within
`IDGW_AUDIT_DRAIN_TIMEOUT_MS` and spills whatever is still unwritten then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from server.audit.jetstream import JetStreamQueue
from server.audit.metrics import AUDIT_EVENTS_EMITTED, AUDIT_QUEUE_DEPTH, AUDIT_QUEUE_LAG
from server.audit.queue import Batch, Outbox
from server.audit.spill import SpillFiles
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline
from server.events import AuditedEvent, DecisionMade
from server.ids import random_hex, time_ordered
from server.settings import Settings
from stores import AuditDeadLetterStore, AuditEvent, AuditEventStore

logger = structlog.get_logger("idgw.audit")

_GAUGE_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class AuditConfig:
    batch_size: int = 500
    flush_interval: float = 1.0
    max_batch: int | None = None  # None: 10 x `batch_size`
    capacity: int = 10_000
    ready_max_depth: int | None = None  # None: 80% of `capacity`
    drain_timeout: float = 10.0
    spill_dir: Path = Path("./.idgw/audit-spill")
    queue: Literal["memory", "nats"] = "memory"
    nats_url: str | None = None
    nats_stream: str = "IDGW_AUDIT"
    write_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditConfig:
        return cls(
            batch_size=settings.audit_batch_size,
            flush_interval=settings.audit_flush_ms / 1000,
            max_batch=settings.audit_max_batch,
            capacity=settings.audit_queue_capacity,
            ready_max_depth=settings.audit_ready_max_depth,
            drain_timeout=settings.audit_drain_timeout_ms / 1000,
            spill_dir=settings.audit_spill_dir,
            queue=settings.audit_queue,
            nats_url=settings.nats_url,
            nats_stream=settings.audit_nats_stream,
        )

    @property
    def max_ready_depth(self) -> int:
        return self.ready_max_depth if self.ready_max_depth is not None else self.capacity * 4 // 5


def queue_readiness(depth: int, limit: int, lag: float, last_error: str | None,
                    problem: str | None) -> tuple[bool, str | None]:
    """The `audit_queue` check of /health/ready: unready past `limit`, or with a `problem`."""
    detail = f"depth {depth} (ready up to {limit}), lag {lag:.1f}s"
    if last_error:
        detail += f"; last error: {last_error[:200]}"
    if problem is not None:
        return False, f"{problem}; {detail}"
    return depth <= limit, detail


def new_event_id() -> str:
    # the second it was made, then 96 random bits from the buffered CSPRNG of server.ids:
    # unique, and appended near the end of the audit table's id index
    return "evt_" + time_ordered() + random_hex(12)


def _timestamp(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment


def to_audit_event(event: AuditedEvent, refs: SubjectRefs, event_id: str | None = None) -> AuditEvent:
    """The stored form: `subject` becomes `subject_ref`; nothing else is personal."""
    decision: str | None
    decision_id: str | None
    revision: str | None
    if isinstance(event, DecisionMade):
        decision, decision_id, revision = event.decision, event.decision_id, event.policy_revision
    else:
        decision, decision_id, revision = event.outcome, None, None
    return AuditEvent(
        id=event_id or new_event_id(),
        timestamp=_timestamp(event.timestamp),
        action=event.action,
        subject_ref=refs.maybe_ref(event.subject),
        purpose=event.purpose,
        decision=decision,
        reason=event.reason,
        request_id=event.request_id,
        decision_id=decision_id,
        policy_revision=revision,
    )


def rejected_payload(event: AuditedEvent, refs: SubjectRefs) -> dict[str, Any]:
    """The dead letter's payload of an event that cannot be stored: pseudonymised too."""
    payload = event.to_dict()
    payload["subject_ref"] = refs.maybe_ref(payload.pop("subject", None))
    return payload


class AuditPublisher:
    """`emit` from handlers; `start`/`stop` from the lifespan; `readiness` for /health/ready."""

    def __init__(self, config: AuditConfig, subject_refs: SubjectRefs) -> None:
        self.config = config
        self.subject_refs = subject_refs
        self.outbox = Outbox(config.capacity, config.batch_size, config.flush_interval,
                             SpillFiles(config.spill_dir), config.max_batch)
        self.writer: BatchWriter | None = None
        self.jetstream: JetStreamQueue | None = None
        self._rejected: deque[tuple[str, dict[str, Any], str]] = deque()
        self._stopping = asyncio.Event()
        self._consumer_stopping = asyncio.Event()
        self._deadline = Deadline()
        self._delivery: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._gauges: asyncio.Task[None] | None = None
        self.failure: str | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditPublisher:
        return cls(AuditConfig.from_settings(settings), SubjectRefs.from_key_dir(settings.key_dir))

    # -- the request path --------------------------------------------------------------

    def emit(self, event: AuditedEvent) -> None:
        """Queue `event`; never blocks on storage, never raises for a bad event."""
        AUDIT_EVENTS_EMITTED.inc()
        event_id = new_event_id()
        try:
            record = to_audit_event(event, self.subject_refs, event_id)
        except (ValueError, TypeError) as exc:  # a malformed event is dead-lettered, not lost
            self.reject(event_id, rejected_payload(event, self.subject_refs), f"not an audit event: {exc}")
            return
        if self._closed:  # after stop(): straight to a spill file, released at once
            self.outbox.spill.append(record)
            self.outbox.spill.close()
            return
        self.outbox.put(record)

    def reject(self, event_id: str, payload: dict[str, Any], error: str) -> None:
        """Dead-letter what cannot be an audit event (kept until the dead letter is stored)."""
        self._rejected.append((event_id, payload, error))
        self.outbox.wake()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, events: AuditEventStore, dead_letters: AuditDeadLetterStore) -> None:
        self.outbox.bind(asyncio.get_running_loop())
        self.outbox.spill.claim_orphans()
        self.writer = BatchWriter(events, dead_letters, write_timeout=self.config.write_timeout)
        sink: BatchWriter | JetStreamQueue = self.writer
        if self.config.queue == "nats":
            if not self.config.nats_url:
                raise ValueError("IDGW_NATS_URL is required with IDGW_AUDIT_QUEUE=nats")
            self.jetstream = JetStreamQueue(
                self.config.nats_url, self.config.nats_stream,
                batch_size=self.config.batch_size, flush_interval=self.config.flush_interval,
            )
            await self.jetstream.connect()
            sink = self.jetstream
            self._tasks.append(asyncio.create_task(
                self.jetstream.consume(self.writer, self._consumer_stopping, self._deadline),
                name="audit-consumer",
            ))
        self._delivery = asyncio.create_task(self._deliver_loop(sink), name="audit-delivery")
        self._gauges = asyncio.create_task(self._gauge_loop(), name="audit-gauges")
        self._tasks.append(self._gauges)
        logger.info("audit_started", queue=self.config.queue, stream_id=self.writer.stream_id,
                    spilled=self.outbox.spill.pending)

    async def stop(self) -> None:
        """Drain: deliver what is queued within the drain timeout, spill the rest."""
        if self._delivery is None:
            return
        self._deadline.set(self.config.drain_timeout)
        self._stopping.set()
        self.outbox.wake()
        with contextlib.suppress(TimeoutError):
            # the loop honours the deadline itself; the margin covers one write in flight
            await asyncio.wait_for(asyncio.shield(self._delivery), self.config.drain_timeout + 2.0)
        if not self._delivery.done():
            self._delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery
        in_flight = self.outbox.in_flight
        if in_flight is not None and not in_flight.from_spill:
            self.outbox.spill_all(in_flight.events)
            self.outbox.in_flight = None
        self.outbox.spill_all([])
        self._closed = True
        self._consumer_stopping.set()
        if self._gauges is not None:
            self._gauges.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.jetstream is not None:
            await self.jetstream.close()
        for event_id, payload, error in self._rejected:
            logger.error("audit_event_not_stored", event_id=event_id, payload=payload, error=error)
        self._update_gauges()
        logger.info("audit_stopped", written=self.writer.written if self.writer else 0,
                    spilled=self.outbox.spill.pending)
        self.outbox.spill.close()
        self._delivery = None

    async def _deliver_loop(self, sink: BatchWriter | JetStreamQueue) -> None:
        failures = 0
        while True:  # bounded: ends when stopping and the queue is empty, or at the deadline
            batch: Batch | None = None
            try:
                await self._dead_letter_rejected()
                batch = await self.outbox.next_batch(self._stopping)
                if batch is None:
                    return
                delivered = await self._deliver(batch, sink)
                self.outbox.in_flight = None
                failures = 0
                if not delivered:
                    return  # the deadline passed: what is left was spilled or stays spilled
            except Exception as exc:  # a bug must not stop the trail: keep the batch, go on
                self.failure = f"{type(exc).__name__}: {exc}"
                logger.exception("audit_delivery_failed")
                if batch is not None:
                    self._keep(batch)
                await self._deadline.sleep(Backoff().delay(failures))
                failures += 1

    def _keep(self, batch: Batch) -> None:
        """Put a batch whose delivery failed unexpectedly into a fresh spill file."""
        spill = self.outbox.spill
        for event in batch.events:
            spill.append(event)
        for broken in batch.broken:
            logger.error("audit_spill_line_not_stored", line=broken.text, error=broken.error)
        if batch.from_spill:
            spill.confirm()  # its lines are in the new file now
        self.outbox.in_flight = None

    async def _deliver(self, batch: Batch, sink: BatchWriter | JetStreamQueue) -> bool:
        assert self.writer is not None
        for broken in batch.broken:
            if not await self.writer.dead_letter_payload(
                "unknown", {"spill_line": broken.text}, broken.error, self._deadline
            ):
                return False
        unwritten = await sink.deliver(batch.events, self._deadline)
        if batch.from_spill:
            if unwritten:
                return False  # the file stays; the next start replays it
            self.outbox.spill.confirm()
            return True
        if unwritten:
            self.outbox.spill_all(unwritten)
            return False
        return True

    async def _dead_letter_rejected(self) -> None:
        assert self.writer is not None
        while self._rejected:  # bounded: each pass stores one or returns
            event_id, payload, error = self._rejected[0]
            if not await self.writer.dead_letter_payload(event_id, payload, error, self._deadline):
                return
            self._rejected.popleft()

    async def _gauge_loop(self) -> None:
        while True:  # ends when stop() cancels it
            self._update_gauges()
            await asyncio.sleep(_GAUGE_INTERVAL_SECONDS)

    def _update_gauges(self) -> None:
        AUDIT_QUEUE_DEPTH.set(self.depth())
        AUDIT_QUEUE_LAG.set(self.outbox.lag())

    # -- state -------------------------------------------------------------------------

    def depth(self) -> int:
        """Events emitted here and not yet stored (with NATS: plus the stream's backlog)."""
        backlog = self.jetstream.backlog if self.jetstream is not None else 0
        return self.outbox.depth() + len(self._rejected) + backlog

    def delivering(self) -> bool:
        return self._delivery is not None and not self._delivery.done()

    async def readiness(self) -> tuple[bool, str | None]:
        problem = None if self.delivering() else "audit delivery is not running"
        return queue_readiness(self.depth(), self.config.max_ready_depth, self.outbox.lag(),
                               self.writer.last_error if self.writer else None, problem)

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until nothing emitted here is left undelivered (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:  # bounded by `timeout`
            if self.outbox.depth() == 0 and not self._rejected:
                return True
            await asyncio.sleep(0.01)
        return False


__all__ = ["AuditConfig", "AuditPublisher", "new_event_id", "to_audit_event"]
