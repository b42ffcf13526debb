"""The NATS backend (`IDGW_AUDIT_QUEUE=nats`): JetStream as the audit queue, for several
gateway instances.

`JetStreamPublisher` is the inline publisher (server.audit.publisher) with the stream
between its queue and its writer. Each instance publishes its events (from its outbox, see `server.audit.queue`) to the
stream `IDGW_AUDIT_NATS_STREAM` (default `IDGW_AUDIT`, subject `<stream>.events`, file
storage, work-queue retention) and waits for the stream's acknowledgement: from then on
the event survives a crash of the gateway. Every instance also runs a writer that pulls
batches from the shared durable consumer `idgw-audit-writer`, writes them with its
`BatchWriter` and acknowledges each message only once its event is stored (or
dead-lettered); a message not acknowledged (the writer died, or shut down mid-outage) is
delivered again, to any instance. Messages carry `Nats-Msg-Id` = the event id, so the
stream drops a re-published duplicate; the database drops any other (`ON CONFLICT`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Self

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from server.audit.encoding import BrokenLine, decode_lines, encode_event
from server.audit.metrics import AuditMetrics
from server.audit.publisher import AuditPublisher, BatchTarget
from server.audit.sink import AuditStatus, register_backend
from server.audit.subject_refs import SubjectRefs
from server.audit.writer import Backoff, BatchWriter, Deadline
from server.settings import AuditSettings, Settings
from stores import AuditEvent

logger = structlog.get_logger("idgw.audit")

DURABLE = "idgw-audit-writer"
_ACK_WAIT_SECONDS = 60.0
_BACKLOG_REFRESH_SECONDS = 2.0


class JetStreamQueue:
    """The publishing side (`deliver`, a sink of the outbox) and the consuming side
    (`consume`, feeding a `BatchWriter`) of the audit stream."""

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        batch_size: int,
        flush_interval: float,
        backoff: Backoff | None = None,
        publish_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject = f"{stream}.events"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff = backoff or Backoff()
        self.publish_timeout = publish_timeout
        self.backlog = 0  # messages in the stream not yet acknowledged by a writer
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and make sure the stream and the durable consumer exist."""

        async def on_error(exc: Exception) -> None:
            logger.warning("nats_error", error=f"{type(exc).__name__}: {exc}")

        async def on_disconnect() -> None:
            logger.warning("nats_disconnected")

        self._nc = await asyncio.wait_for(
            nats.connect(
                self.url, name="idgw-audit", connect_timeout=2, max_reconnect_attempts=-1,
                reconnect_time_wait=0.5, error_cb=on_error, disconnected_cb=on_disconnect,
            ),
            timeout,
        )
        self._js = self._nc.jetstream()
        config = StreamConfig(
            name=self.stream, subjects=[self.subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, duplicate_window=120.0,
        )
        try:
            await self._js.add_stream(config)
        except BadRequestError:  # exists with another configuration: use it as it is
            info = await self._js.stream_info(self.stream)
            if self.subject not in (info.config.subjects or []):
                raise
        self._sub = await self._js.pull_subscribe(
            self.subject, durable=DURABLE, stream=self.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=_ACK_WAIT_SECONDS, max_deliver=-1,
                max_ack_pending=max(10_000, self.batch_size * 10),
            ),
        )

    async def deliver(
        self, events: Sequence[AuditEvent], deadline: Deadline, heartbeat: Any = None
    ) -> list[AuditEvent]:
        """Publish `events` and wait for the stream to acknowledge each; retry the rest
        with backoff; return those unacknowledged when `deadline` passed."""
        assert self._js is not None, "connect() first"
        pending = list(events)
        failures = 0
        while pending:  # bounded: acknowledged events leave; the deadline ends waiting
            futures: list[asyncio.Future[Any]] = []
            try:
                for event in pending:
                    futures.append(await self._js.publish_async(
                        self.subject, encode_event(event), headers={"Nats-Msg-Id": event.id},
                    ))
                results = await asyncio.wait_for(
                    asyncio.gather(*futures, return_exceptions=True),
                    deadline.remaining(self.publish_timeout) or 0.001,
                )
            except Exception as exc:  # not connected, timed out: none is known acknowledged
                logger.warning("audit_publish_failed", error=f"{type(exc).__name__}: {exc}",
                               events=len(pending))
                for future in futures:
                    future.cancel()
                results = [exc] * len(pending)
            pending = [e for e, r in zip(pending, results, strict=False) if isinstance(r, BaseException)]
            if not pending or deadline.passed():
                return pending
            await deadline.sleep(self.backoff.delay(failures))
            failures += 1
        return []

    async def consume(self, writer: BatchWriter, stopping: asyncio.Event, deadline: Deadline) -> None:
        """Pull, write, acknowledge, until `stopping` is set."""
        assert self._sub is not None, "connect() first"
        refreshed = 0.0
        failures = 0
        while not stopping.is_set():  # bounded by stopping; each fetch waits flush_interval
            if time.monotonic() - refreshed > _BACKLOG_REFRESH_SECONDS:
                refreshed = time.monotonic()
                await self.refresh_backlog()
            try:
                messages = await self._sub.fetch(self.batch_size, timeout=self.flush_interval)
            except nats.errors.TimeoutError:
                continue
            except Exception as exc:
                logger.warning("audit_fetch_failed", error=f"{type(exc).__name__}: {exc}")
                await deadline.sleep(self.backoff.delay(failures))
                failures += 1
                continue
            failures = 0
            await self._write(messages, writer, deadline)

    async def _write(self, messages: list[Msg], writer: BatchWriter, deadline: Deadline) -> None:
        decoded = list(zip(messages, await decode_lines([m.data for m in messages]), strict=True))
        events = [event for _, event in decoded if isinstance(event, AuditEvent)]

        async def still_working() -> None:
            for message in messages:
                await message.in_progress()  # keeps the messages from being redelivered

        unwritten = {e.id for e in await writer.deliver(events, deadline, still_working)}
        for message, event in decoded:
            if isinstance(event, AuditEvent):
                done = event.id not in unwritten
            else:
                letter = event.rejected("nats_message") if isinstance(event, BrokenLine) else event
                done = await writer.dead_letter_payload(letter.event_id, letter.payload, letter.error, deadline)
            if done:
                await message.ack()
            else:
                await message.nak()  # shutting down mid-outage: another instance takes it

    async def refresh_backlog(self) -> None:
        if self._sub is None:
            return
        try:
            info = await self._sub.consumer_info()
        except Exception:  # metrics only: try again at the next refresh
            return
        self.backlog = int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), 5.0)
            except Exception:
                await self._nc.close()


class JetStreamPublisher(AuditPublisher):
    """The NATS `AuditSink`: batches from the queue go to the stream; this instance's
    writer consumes the stream (with every other instance's)."""

    def __init__(self, settings: AuditSettings, nats_url: str | None, subject_refs: SubjectRefs,
                 metrics: AuditMetrics | None = None) -> None:
        super().__init__(settings, subject_refs, metrics)
        self.nats_url = nats_url
        self.jetstream: JetStreamQueue | None = None
        self._consumer_stopping = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None

    async def _open(self, writer: BatchWriter) -> BatchTarget:
        if not self.nats_url:
            raise ValueError("IDGW_NATS_URL is required with IDGW_AUDIT_QUEUE=nats")
        self.jetstream = JetStreamQueue(
            self.nats_url, self.settings.nats_stream,
            batch_size=self.settings.batch_size, flush_interval=self.settings.flush_seconds,
        )
        await self.jetstream.connect()
        self._consumer = asyncio.create_task(
            self.jetstream.consume(writer, self._consumer_stopping, self._deadline), name="audit-consumer",
        )
        return self.jetstream

    async def _close(self) -> None:
        """What the stream holds stays there, for this or another instance's next writer."""
        assert self.jetstream is not None and self._consumer is not None
        self._consumer_stopping.set()
        await asyncio.gather(self._consumer, return_exceptions=True)
        await self.jetstream.refresh_backlog()
        await self.jetstream.close()

    def status(self) -> AuditStatus:
        status = super().status()
        backlog = self.jetstream.backlog if self.jetstream is not None else 0
        return dataclasses.replace(status, depth=status.depth + backlog)

    async def wait_delivered(self, timeout: float) -> bool:
        """Until the queue is empty and the stream holds no message not yet stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await super().wait_delivered(timeout):
            return False
        while loop.time() < deadline:  # bounded by `timeout`
            if self.jetstream is None:
                return False
            await self.jetstream.refresh_backlog()
            if self.jetstream.backlog == 0:
                return True
            await asyncio.sleep(0.05)
        return False


    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.audit, settings.nats_url, SubjectRefs.from_key_dir(settings.key_dir), AuditMetrics())


register_backend("nats", JetStreamPublisher.from_settings)

__all__ = ["DURABLE", "JetStreamPublisher", "JetStreamQueue"]
