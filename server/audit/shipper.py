"""The audit writer in a process of its own (`IDGW_AUDIT_WRITER=process`).

    worker:  emit(event) --> pseudonymise + id --> one JSON line --> pipe (one write per
             loop turn) ......................... or the worker's spill file while the
                                                  writer process is down or behind
    writer:  pipe --> AuditPublisher's queue --> batches, chain, retries, dead letters,
             spill (exactly as in-process: server.audit.publisher)
    writer --> status pipe (every 100 ms): counts, depth, lag, batches --> the worker's
             metrics and /health/ready

Why: the writer's work (decoding, hash-chaining, encoding batches, the database driver)
is Python code; in the worker it holds the GIL that the requests need. In its own
process it runs on another core; the worker's share of an audited decision is building
one line (SPEC section 10's pseudonymisation included) and a buffered pipe write.

What survives what: the worker's lines are in the pipe or in its spill file as soon as
the loop turn that emitted them ends. SIGTERM: the worker flushes and closes the pipe;
the writer drains within `IDGW_AUDIT_DRAIN_TIMEOUT_MS` and spills what is left, then
exits (it ignores SIGTERM and SIGINT itself: the end of the pipe is its signal, so a
signal sent to the whole process group still drains in order). A crash or SIGKILL of
the *worker* closes the pipe too: the writer still drains everything it received. A
crash of the *writer* loses what it held in memory and had not stored or spilled
(as a crash of the worker does in-process); the worker spills while it restarts it, and
the new writer claims those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import structlog

from server.audit.metrics import (
    AUDIT_BATCH_SIZE,
    AUDIT_EVENTS_DEAD_LETTERED,
    AUDIT_EVENTS_EMITTED,
    AUDIT_EVENTS_SPILLED,
    AUDIT_EVENTS_WRITTEN,
    AUDIT_QUEUE_DEPTH,
    AUDIT_QUEUE_LAG,
    AUDIT_WRITE_DURATION,
    AUDIT_WRITE_RETRIES,
)
from server.audit.publisher import (
    AuditConfig,
    AuditPublisher,
    new_event_id,
    queue_readiness,
    rejected_payload,
    to_audit_event,
)
from server.audit.spill import SpillFiles, decode_event, encode_event
from server.audit.subject_refs import SubjectRefs
from server.events import AuditedEvent, DecisionMade
from stores import AuditEvent

logger = structlog.get_logger("idgw.audit")

_STATUS_INTERVAL = 0.1
_GAUGE_INTERVAL = 0.5
#: The events pipe's kernel buffer (Linux's default limit for F_SETPIPE_SZ): ~3,000 lines.
_PIPE_BYTES = 1024 * 1024
#: How long the worker's start waits for the writer process's first status.
_START_TIMEOUT = 30.0
_RESTART_DELAY = 1.0
#: The writer's pause between two reads of the pipe (it holds ~3,000 events), and the
#: longest one, reached by doubling while the pipe stays empty.
_READ_PAUSE = 0.002
_IDLE_READ_PAUSE = 0.05
_MAX_LINE = 1 << 24
_REJECTED = b'{"rejected":'
_LINE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))  # encode_event's, built once


class ShippingPublisher:
    """`emit` for handlers, `start`/`stop` for the lifespan, `readiness` for
    /health/ready, like `AuditPublisher`; the writing runs in a child process."""

    def __init__(self, config: AuditConfig, subject_refs: SubjectRefs, database_url: str,
                 log_level: str = "INFO", log_json: bool = True, nice: int = 0) -> None:
        self.config = config
        self.subject_refs = subject_refs
        self.database_url = database_url
        self.log_level = log_level
        self.log_json = log_json
        self.nice = nice
        self.spill = SpillFiles(config.spill_dir)
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pipe: asyncio.WriteTransport | None = None
        self._reported = asyncio.Event()  # the writer process sent its first status
        self._status: dict[str, Any] = {}
        self._sent = 0  # lines written to the current writer's pipe
        self._stopping = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._status_task: asyncio.Task[None] | None = None
        self.restarts = 0

    # -- the request path --------------------------------------------------------------

    def emit(self, event: AuditedEvent) -> None:
        """Queue `event` for the writer process; never blocks, never raises for a bad event."""
        event_id = new_event_id()
        if isinstance(event, DecisionMade):
            # The decision path: its line straight from the event, without building the
            # AuditEvent that encode_event would take (the line decodes to the same event;
            # the writer process checks it as it decodes).
            payload = {
                "id": event_id, "timestamp": event.timestamp, "action": event.action,
                "subject_ref": self.subject_refs.maybe_ref(event.subject), "purpose": event.purpose,
                "decision": event.decision, "reason": event.reason, "request_id": event.request_id,
                "decision_id": event.decision_id, "policy_revision": event.policy_revision,
                "stream_id": None, "prev_hash": None, "hash": None,
            }
            try:  # orjson: a fifteenth of json's cost, a quarter of pydantic-core's; UTF-8
                self._enqueue(orjson.dumps(payload) + b"\n")
            except TypeError:  # text UTF-8 cannot hold (a lone surrogate): ASCII escapes
                self._enqueue(_LINE.encode(payload).encode("ascii") + b"\n")
            return
        try:
            record = to_audit_event(event, self.subject_refs, event_id)
        except (ValueError, TypeError) as exc:  # a malformed event is dead-lettered, not lost
            payload = rejected_payload(event, self.subject_refs)
            rejected = json.dumps({"rejected": [event_id, payload, f"not an audit event: {exc}"]},
                                  ensure_ascii=True, separators=(",", ":"), default=str)
            self._enqueue(rejected.encode("ascii") + b"\n")
            return
        self._enqueue(encode_event(record))

    def _enqueue(self, line: bytes) -> None:
        if self._closed:  # after stop(): straight to a spill file, released at once
            AUDIT_EVENTS_EMITTED.inc()
            self._spill([line])
            self.spill.close()
            return
        self._pending.append(line)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._flush)
            else:
                self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        """Everything emitted during this loop turn, in one write (or to the spill file)."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        AUDIT_EVENTS_EMITTED.inc(len(pending))  # once per loop turn, not per event
        pipe = self._pipe
        # Only into the pipe of a writer that has reported (it started: its stores are
        # open), and whose earlier writes all reached the kernel: lines never wait in this
        # process for longer than the loop turn that emitted them (a writer that is behind,
        # starting or gone makes the worker spill instead).
        if (pipe is not None and self._reported.is_set() and not pipe.is_closing()
                and pipe.get_write_buffer_size() == 0):
            if self.spill.pending:
                self.spill.close()  # released: the writer claims what was spilled meanwhile
            pipe.write(b"".join(pending))
            self._sent += len(pending)
            return
        self._spill(pending)

    def _spill(self, lines: list[bytes]) -> None:
        """Lines the writer process cannot take now, into this worker's spill file (a
        line that is not an event is logged whole: the spill format holds events only)."""
        for line in lines:
            event = decode_event(line)
            if isinstance(event, AuditEvent):
                self.spill.append(event)
            else:
                logger.error("audit_event_not_stored", line=line.decode("ascii", "replace"), error=event.error)
        AUDIT_EVENTS_SPILLED.inc(len(lines))

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *_stores: object) -> None:
        """Start the writer process (the stores are its own: it opens `database_url`)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self._spawn()
        # Until the writer's first status (or its exit: the supervisor restarts it), for
        # at most _START_TIMEOUT; what is emitted meanwhile is spilled, nothing waits on it.
        assert self._process is not None
        waits = [asyncio.ensure_future(self._reported.wait()), asyncio.ensure_future(self._process.wait())]
        await asyncio.wait(waits, timeout=_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        self._tasks.append(asyncio.create_task(self._supervise(), name="audit-shipper-supervisor"))
        self._tasks.append(asyncio.create_task(self._gauge_loop(), name="audit-gauges"))
        if self._pending:
            self._flush()

    async def _spawn(self) -> None:
        events_read, events_write = os.pipe()
        status_read, status_write = os.pipe()
        with contextlib.suppress(OSError):  # room for ~3,000 lines while the writer is busy
            fcntl.fcntl(events_write, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        options = {"config": {**asdict(self.config), "spill_dir": str(self.config.spill_dir)},
                   "database_url": self.database_url, "log_level": self.log_level,
                   "log_json": self.log_json, "status_fd": status_write, "nice": self.nice}
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "from server.audit.shipper import main; main()", json.dumps(options),
                stdin=events_read, pass_fds=(status_write,), env=env,
            )
        finally:
            os.close(events_read)
            os.close(status_write)
        loop = asyncio.get_running_loop()
        self._pipe, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(events_write, "wb", buffering=0))
        self._sent = 0
        self._status = {}
        self._reported.clear()
        self._status_task = asyncio.create_task(self._read_status(status_read), name="audit-shipper-status")
        self._tasks.append(self._status_task)
        logger.info("audit_writer_process_started", pid=self._process.pid)

    async def _supervise(self) -> None:
        while True:  # ends when stop() cancels it
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            if self._pipe is not None:
                self._pipe.close()
            self._pipe = None
            logger.error("audit_writer_process_exited", pid=process.pid, returncode=code,
                         restart_in_seconds=_RESTART_DELAY)
            self.restarts += 1
            await asyncio.sleep(_RESTART_DELAY)
            if self._stopping:
                return
            self.spill.close()  # what the worker spilled meanwhile: for the new writer
            await self._spawn()

    async def _read_status(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        previous: dict[str, Any] = {}
        try:
            while line := await reader.readline():
                try:
                    status = json.loads(line)
                except ValueError:  # the writer died in the middle of a line
                    break
                _count(status, previous)
                self._status = status
                previous = status
                self._reported.set()
        finally:
            transport.close()

    async def _gauge_loop(self) -> None:
        while True:  # ends when stop() cancels it
            AUDIT_QUEUE_DEPTH.set(self.depth())
            AUDIT_QUEUE_LAG.set(self.lag())
            await asyncio.sleep(_GAUGE_INTERVAL)

    async def stop(self) -> None:
        """Flush, close the pipe, and wait for the writer's bounded drain."""
        if self._closed:
            return
        self._stopping = True
        self._flush()
        process, pipe = self._process, self._pipe
        if process is not None and pipe is not None and not pipe.is_closing():
            deadline = time.monotonic() + self.config.drain_timeout
            while pipe.get_write_buffer_size() and process.returncode is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # bounded: the deadline
            pipe.close()  # the end of the pipe: the writer drains and exits
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), self.config.drain_timeout + 5.0)
            except TimeoutError:
                logger.error("audit_writer_process_killed", pid=process.pid)
                process.kill()
                await process.wait()
        if self._status_task is not None:  # it ends at the end of the status pipe: the last line read
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._status_task), 2.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        self.spill.close()
        logger.info("audit_stopped", written=self._status.get("written", 0),
                    spilled=self._status.get("spilled_pending", 0))

    # -- state -------------------------------------------------------------------------

    def depth(self) -> int:
        """Events emitted here and not yet stored: waiting in the worker (buffer, pipe,
        spill) and in the writer process (queue, in flight, its spill files)."""
        in_pipe = max(0, self._sent - int(self._status.get("received", 0)))
        return len(self._pending) + in_pipe + self.spill.pending + int(self._status.get("depth", 0))

    def lag(self) -> float:
        return float(self._status.get("lag", 0.0))

    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None and self._pipe is not None

    async def readiness(self) -> tuple[bool, str | None]:
        problem = None
        if not self.running():
            problem = "the audit writer process is not running"
        elif not self._status.get("delivering", False):
            problem = "audit delivery is not running"
        error = self._status.get("last_error")
        return queue_readiness(self.depth(), self.config.max_ready_depth, self.lag(),
                               str(error) if error else None, problem)

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until nothing emitted here is left unstored (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:  # bounded by `timeout`
            self._flush()
            if self.running() and self._status.get("received") == self._sent and self.depth() == 0:
                return True
            await asyncio.sleep(0.01)
        return False


def _count(status: dict[str, Any], previous: dict[str, Any]) -> None:
    """The writer's counters since its previous status, into this worker's metrics."""
    for key, counter in (("written", AUDIT_EVENTS_WRITTEN), ("dead_lettered", AUDIT_EVENTS_DEAD_LETTERED),
                         ("spilled", AUDIT_EVENTS_SPILLED), ("retries", AUDIT_WRITE_RETRIES)):
        delta = int(status.get(key, 0)) - int(previous.get(key, 0))
        if delta > 0:
            counter.inc(delta)
    for size, seconds in status.get("batches", ()):
        AUDIT_BATCH_SIZE.observe(size)
        AUDIT_WRITE_DURATION.observe(seconds)


# -- the writer process -------------------------------------------------------------------


class _Writer:
    """The child's side: lines from stdin into an `AuditPublisher`'s queue."""

    def __init__(self, publisher: AuditPublisher, status_fd: int) -> None:
        self.publisher = publisher
        self.status = os.fdopen(status_fd, "wb", buffering=0)
        self.received = 0
        self.batches: list[tuple[int, float]] = []

    def take(self, line: bytes) -> None:
        self.received += 1
        publisher = self.publisher
        if line.startswith(_REJECTED):
            try:
                event_id, payload, error = json.loads(line)["rejected"]
            except (ValueError, TypeError, KeyError) as exc:
                event_id, payload, error = "unknown", {"line": line.decode("utf-8", "replace")}, repr(exc)
            publisher.reject(str(event_id), payload, str(error))
            return
        if not line.endswith(b"\n"):  # the worker died in the middle of a write
            publisher.reject("unknown", {"line": line.decode("utf-8", "replace")}, "torn line at the end of the pipe")
            return
        event = decode_event(line)
        if isinstance(event, AuditEvent):
            publisher.outbox.put(event)
        else:
            publisher.reject("unknown", {"line": event.text}, event.error)

    def report(self) -> None:
        publisher = self.publisher
        writer = publisher.writer
        registry_value = AUDIT_EVENTS_SPILLED.collect()[0].samples[0].value
        retries = AUDIT_WRITE_RETRIES.collect()[0].samples[0].value
        status = {
            "received": self.received,
            "depth": publisher.depth(),
            "lag": round(publisher.outbox.lag(), 3),
            "written": writer.written if writer else 0,
            "dead_lettered": writer.dead_lettered if writer else 0,
            "spilled": int(registry_value),
            "spilled_pending": publisher.outbox.spill.pending,
            "retries": int(retries),
            "last_error": writer.last_error if writer else None,
            "delivering": publisher.delivering(),
            "batches": self.batches,
        }
        self.batches = []
        with contextlib.suppress(OSError):  # the worker is gone: nobody to tell
            self.status.write(json.dumps(status, separators=(",", ":")).encode() + b"\n")

    async def report_loop(self) -> None:
        ticks = 0
        while True:  # ends when the main task cancels it
            await asyncio.sleep(_STATUS_INTERVAL)
            self.report()
            ticks += 1
            if ticks % 20 == 0:  # files the worker spilled while this process was behind
                self.publisher.outbox.spill.claim_orphans()


async def _run(options: dict[str, Any]) -> None:
    from stores import open_stores

    config = AuditConfig(**{**options["config"], "spill_dir": Path(options["config"]["spill_dir"])})
    # No subject_ref key here: the worker pseudonymises before anything leaves it.
    publisher = AuditPublisher(config, SubjectRefs(os.urandom(32)))
    # SQLite statements on this loop's thread: it serves no requests, and the hand-off to
    # a database thread and back cost more CPU than the inserts (52 -> 29 µs an event).
    stores = await open_stores(options["database_url"], sqlite_blocking=True)
    writer = _Writer(publisher, options["status_fd"])
    try:
        await publisher.start(stores.audit_events, stores.audit_dead_letters)
        assert publisher.writer is not None
        publisher.writer.on_batch = lambda size, seconds: writer.batches.append((size, round(seconds, 6)))
        writer.report()  # the worker's start waits for this first status
        reporter = asyncio.create_task(writer.report_loop())
        # The pipe is read on a timer, not watched: a watched pipe wakes this process for
        # every write of the worker (one per loop turn of its, thousands a second under
        # load), each wake-up a context switch on a core the worker or its clients need.
        # Lines gather in the pipe (1 MiB) between reads; the pause grows while it is
        # idle and is back to the shortest at the first line.
        events_fd = sys.stdin.fileno()
        os.set_blocking(events_fd, False)
        pause = _READ_PAUSE
        rest = b""
        while True:  # ends at the end of the pipe: the worker stopped or died
            try:
                chunk = os.read(events_fd, _PIPE_BYTES)
            except BlockingIOError:
                pause = min(pause * 2, _IDLE_READ_PAUSE)
                await asyncio.sleep(pause)
                continue
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                writer.take(line + b"\n")
            if len(rest) > _MAX_LINE:  # no end in sight: not an event
                writer.take(rest[:_MAX_LINE])
                rest = b""
            pause = _READ_PAUSE
            await asyncio.sleep(pause)
        if rest:
            writer.take(rest)  # the worker died in the middle of a write: a torn line
        reporter.cancel()
        await publisher.stop()
        writer.report()  # the final counts
    finally:
        await stores.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -c "from server.audit.shipper import main; main()" OPTIONS_JSON`: started by
    `ShippingPublisher` (not `-m`: the package imports this module first)."""
    from server.logging import configure_logging

    options = json.loads((argv or sys.argv[1:])[0])
    # The end of stdin is the signal to drain and exit: a SIGTERM or Ctrl-C sent to the
    # whole process group must not cut the drain short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(options["log_level"], options["log_json"])
    if options["nice"]:
        os.nice(options["nice"])  # background work: under CPU contention the requests come first
    started = time.monotonic()
    asyncio.run(_run(options))
    logger.info("audit_writer_process_exited", seconds=round(time.monotonic() - started, 1))


__all__ = ["ShippingPublisher"]
