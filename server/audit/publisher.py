"""The inline backend (`IDGW_AUDIT_WRITER=inline`): `AuditPublisher`, an `AuditSink`
whose queue, batches and writer run in the app's own event loop.

    emit(event) --> pseudonymise + id --> Outbox (bounded; spill file when full)
        --> delivery task --> BatchWriter --> audit_events / audit_dead_letters

`emit` runs on the request path: it computes `subject_ref`, assigns the event id (the
idempotency key of every later retry) and queues; it never waits for storage. `start`
(lifespan startup) claims spill files left by earlier processes and starts the delivery
task; `stop` (lifespan shutdown, e.g. on SIGTERM) drains the queue within
`IDGW_AUDIT_DRAIN_TIMEOUT_MS` and spills whatever is still unwritten then. The NATS
backend (server.audit.jetstream) is this publisher with the stream between the queue
and the writer; the writer process (server.audit.shipper) runs one in its child.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Protocol, Self

import structlog

from server.audit.encoding import Rejected, new_event_id, rejected_line, rejection, to_audit_event
from server.audit.metrics import AuditMetrics
from server.audit.queue import Batch, Outbox
from server.audit.sink import AuditStatus, readiness_of, register_backend
from server.audit.spill import SpillFiles
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline
from server.events import AuditedEvent
from server.settings import AuditSettings, Settings
from stores import AuditDeadLetterStore, AuditEvent, AuditEventStore

logger = structlog.get_logger("idgw.audit")


class BatchTarget(Protocol):
    """Where the delivery task hands each batch: the writer, or the NATS stream."""

    async def deliver(self, events: Sequence[AuditEvent], deadline: Deadline) -> list[AuditEvent]:
        """Deliver `events`; return those still undelivered when `deadline` passed."""
        ...


class AuditPublisher:
    """The inline `AuditSink`: `emit` from handlers, `start`/`stop` from the lifespan,
    `readiness` for /health/ready."""

    def __init__(self, settings: AuditSettings, subject_refs: SubjectRefs, metrics: AuditMetrics | None = None,
                 *, write_timeout: float = 10.0) -> None:
        self.settings = settings
        self.subject_refs = subject_refs
        self.metrics = metrics
        self.write_timeout = write_timeout
        self.outbox = Outbox(settings.queue_capacity, settings.batch_size, settings.flush_seconds,
                             SpillFiles(settings.spill_dir), settings.max_batch)
        self.writer: BatchWriter | None = None
        self.emitted = 0
        self.failure: str | None = None  # an unexpected error of the delivery task, until it delivers again
        self._rejected: deque[Rejected] = deque()
        self._stopping = asyncio.Event()
        self._deadline = Deadline()
        self._delivery: asyncio.Task[None] | None = None
        self._exporting: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.audit, SubjectRefs.from_key_dir(settings.key_dir), AuditMetrics())

    # -- the request path --------------------------------------------------------------

    def emit(self, event: AuditedEvent) -> None:
        """Queue `event`; never blocks on storage, never raises for a bad event."""
        self.emitted += 1
        event_id = new_event_id()
        try:
            record = to_audit_event(event, self.subject_refs, event_id)
        except (ValueError, TypeError) as exc:  # a malformed event is dead-lettered, not lost
            self.reject(rejection(event, self.subject_refs, event_id, exc))
            return
        if self._closed:  # after stop(): straight to a spill file, released at once
            self.outbox.spill.append(record)
            self.outbox.spill.close()
            return
        self.outbox.put(record)

    def put(self, event: AuditEvent) -> None:
        """Queue an event already in its stored form (the writer process's input)."""
        self.outbox.put(event)

    def reject(self, record: Rejected) -> None:
        """Dead-letter what cannot be an audit event (kept until the dead letter is stored)."""
        if self._closed:
            self.outbox.spill.append_released([rejected_line(record)])
            return
        self._rejected.append(record)
        self.outbox.wake()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, events: AuditEventStore, dead_letters: AuditDeadLetterStore) -> None:
        self.outbox.bind(asyncio.get_running_loop())
        self.outbox.spill.claim_orphans()
        self.writer = BatchWriter(events, dead_letters, write_timeout=self.write_timeout,
                                  on_batch=self.metrics.batch if self.metrics is not None else None)
        target = await self._open(self.writer)
        self._delivery = asyncio.create_task(self._deliver_loop(target), name="audit-delivery")
        if self.metrics is not None:
            self._exporting = asyncio.create_task(self.metrics.run(self.status), name="audit-metrics")
        logger.info("audit_started", stream_id=self.writer.stream_id, spilled=self.outbox.spill.pending)

    async def _open(self, writer: BatchWriter) -> BatchTarget:
        """Where batches go: straight to the writer (the NATS backend puts its stream here)."""
        return writer

    async def _close(self) -> None:
        """Stop what `_open` started, once the queue is drained."""

    async def stop(self) -> None:
        """Drain: deliver what is queued within the drain timeout, spill the rest."""
        if self._closed:
            return
        if self._delivery is not None:
            self._deadline.set(self.settings.drain_timeout_seconds)
            self._stopping.set()
            self.outbox.wake()
            with contextlib.suppress(TimeoutError):
                # the loop honours the deadline itself; the margin covers one write in flight
                await asyncio.wait_for(asyncio.shield(self._delivery), self.settings.drain_timeout_seconds + 2.0)
            if not self._delivery.done():
                self._delivery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._delivery
        in_flight = self.outbox.in_flight
        if in_flight is not None and not in_flight.from_spill:
            self.outbox.spill_all(in_flight.events)
            self.outbox.in_flight = None
        self.outbox.spill_all([])
        if self._rejected:  # dead letters the drain could not store: for the next start
            self.outbox.spill.append_lines([rejected_line(r) for r in self._rejected])
            self._rejected.clear()
        self._closed = True
        if self._delivery is not None:
            await self._close()
        if self._exporting is not None:
            self._exporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._exporting
        if self.metrics is not None:
            self.metrics.export(self.status())
        logger.info("audit_stopped", written=self.writer.written if self.writer else 0,
                    spilled=self.outbox.spill.pending)
        self.outbox.spill.close()

    async def _deliver_loop(self, target: BatchTarget) -> None:
        failures = 0
        while True:  # bounded: ends when stopping and the queue is empty, or at the deadline
            batch: Batch | None = None
            try:
                if not await self._dead_letter(self._rejected):
                    return  # the deadline passed
                batch = await self.outbox.next_batch(self._stopping)
                if batch is None:
                    return
                delivered = await self._deliver(batch, target)
                self.outbox.in_flight = None
                failures = 0
                self.failure = None
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
        spill.append_lines([rejected_line(r) for r in batch.rejected])
        if batch.from_spill:
            spill.confirm()  # its lines are in the new file now
        self.outbox.in_flight = None

    async def _deliver(self, batch: Batch, target: BatchTarget) -> bool:
        if not await self._dead_letter(deque(batch.rejected)):
            return False
        unwritten = await target.deliver(batch.events, self._deadline)
        if batch.from_spill:
            if unwritten:
                return False  # the file stays; the next start replays it
            self.outbox.spill.confirm()
            return True
        if unwritten:
            self.outbox.spill_all(unwritten)
            return False
        return True

    async def _dead_letter(self, records: deque[Rejected]) -> bool:
        """Store `records` as dead letters, each leaving the deque once stored; False
        when the deadline passed first."""
        assert self.writer is not None
        while records:  # bounded: each pass stores one or returns
            record = records[0]
            if not await self.writer.dead_letter_payload(record.event_id, record.payload, record.error,
                                                         self._deadline):
                return False
            records.popleft()
        return True

    # -- state -------------------------------------------------------------------------

    def delivering(self) -> bool:
        return self._delivery is not None and not self._delivery.done()

    def status(self) -> AuditStatus:
        writer = self.writer
        return AuditStatus(
            emitted=self.emitted,
            written=writer.written if writer else 0,
            dead_lettered=writer.dead_lettered if writer else 0,
            spilled=self.outbox.spill.spilled,
            retries=writer.retries if writer else 0,
            depth=self.outbox.depth() + len(self._rejected),
            lag=self.outbox.lag(),
            last_error=(writer.last_error if writer else None) or self.failure,
            problem=None if self.delivering() else "audit delivery is not running",
        )

    async def readiness(self) -> tuple[bool, str | None]:
        return readiness_of(self.status(), self.settings.max_ready_depth)

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until nothing emitted here is left undelivered (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:  # bounded by `timeout`
            if self.outbox.depth() == 0 and not self._rejected:
                return True
            await asyncio.sleep(0.01)
        return False


register_backend("inline", AuditPublisher.from_settings)

__all__ = ["AuditPublisher", "BatchTarget", "new_event_id", "to_audit_event"]
