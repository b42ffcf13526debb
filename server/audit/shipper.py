"""The process backend (`IDGW_AUDIT_WRITER=process`): the audit writer in a process of
its own, one per worker.

    worker:  emit(decision) --> raw line ------------> pipe (one write per loop turn)
             emit(other event) --> pseudonymise + id --^   .... or, pseudonymised, the
                                                 worker's spill file while the writer
                                                 process is down or behind
    writer:  pipe --> raw lines pseudonymised + id --> AuditPublisher's queue -->
             batches, chain, retries, dead letters, spill (exactly as inline:
             server.audit.publisher)
    writer --> status pipe (every 100 ms): its AuditStatus and batches --> the worker's
             status, metrics and /health/ready

Why: the writer's work (decoding, hash-chaining, encoding batches, the database driver)
is Python code; in the worker it holds the GIL that the requests need. In its own
process it runs on another core; the worker's share of an audited decision is encoding
the decision as it was emitted (`raw_line`) and a buffered pipe write. The subject's
HMAC, the sensitive context values' HMACs, the decision record's body and the event id
are the writer's work: a raw line holds personal data in clear, so it goes nowhere but
the pipe (a kernel buffer between the two processes), and the writer process, which
gets the subject_ref key through a pipe of its own at start, pseudonymises each one
before it is queued. Whatever either process writes to a spill file, the NATS stream or
the database is pseudonymised, as with the inline writer.

What survives what: the worker's lines are in the pipe or in its spill file as soon as
the loop turn that emitted them ends. SIGTERM: the worker flushes and closes the pipe;
the writer drains within `IDGW_AUDIT_DRAIN_TIMEOUT_MS` and spills what is left, then
exits (it ignores SIGTERM and SIGINT itself: the end of the pipe is its signal, so a
signal sent to the whole process group still drains in order). A crash or SIGKILL of
the *worker* closes the pipe too: the writer still drains everything it received. A
crash of the *writer* loses what it held in memory and had not stored or spilled
(as a crash of the worker does inline); the worker spills while it restarts it, and
the new writer claims those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Self

import structlog

from server.audit.encoding import (
    Rejected,
    decode_line,
    decode_raw,
    event_line,
    is_raw,
    new_event_id,
    raw_line,
    rejected_line,
    rejection,
)
from server.audit.metrics import AuditMetrics
from server.audit.publisher import AuditPublisher
from server.audit.sink import AuditStatus, readiness_of, register_backend
from server.audit.spill import SpillFiles
from server.audit.subject_refs import SubjectRefs
from server.events import AuditedEvent, DecisionMade
from server.json_codec import dumps, loads
from server.settings import AuditSettings, Settings
from stores import AuditDeadLetterStore, AuditEvent, AuditEventStore

logger = structlog.get_logger("idgw.audit")

_STATUS_INTERVAL = 0.1
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
_NOT_RUNNING = "the audit writer process is not running"


class ShippingPublisher:
    """The process `AuditSink`: `emit` for handlers, `start`/`stop` for the lifespan,
    `readiness` for /health/ready; the writing runs in a child process."""

    def __init__(self, settings: AuditSettings, subject_refs: SubjectRefs, database_url: str,
                 log_level: str = "INFO", log_json: bool = True, metrics: AuditMetrics | None = None) -> None:
        self.settings = settings
        self.subject_refs = subject_refs
        self.database_url = database_url
        self.log_level = log_level
        self.log_json = log_json
        self.metrics = metrics
        self.spill = SpillFiles(settings.spill_dir)
        self.emitted = 0
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pipe: asyncio.WriteTransport | None = None
        self._reported = asyncio.Event()  # the writer process sent its first status
        self._child: AuditStatus | None = None  # the current writer process's last status
        self._received = 0  # lines it has read from the pipe
        self._earlier = AuditStatus()  # the counts of the writer processes before it
        self._sent = 0  # lines written to the current writer's pipe
        self._stopping = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._status_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.audit, SubjectRefs.from_key_dir(settings.key_dir), settings.database_url,
                   settings.log.level, settings.log.as_json, AuditMetrics())

    # -- the request path --------------------------------------------------------------

    def emit(self, event: AuditedEvent) -> None:
        """Queue `event` for the writer process; never blocks, never raises for a bad event.

        A decision goes as it was emitted (`raw_line`): the writer process pseudonymises
        it. Any other event, rare, goes in its stored form."""
        self.emitted += 1
        line = raw_line(event) if isinstance(event, DecisionMade) else self._stored(event)
        if self._closed:  # after stop(): straight to a spill file, released at once
            self.spill.append_released([self._spillable(line)])
            return
        self._pending.append(line)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._flush)
            else:
                self._loop.call_soon_threadsafe(self._flush)

    def _stored(self, event: AuditedEvent) -> bytes:
        """The line of `event` in its stored form, pseudonymised, under a new event id."""
        event_id = new_event_id()
        try:
            return event_line(event, self.subject_refs, event_id)
        except (ValueError, TypeError) as exc:  # a malformed event is dead-lettered, not lost
            return rejected_line(rejection(event, self.subject_refs, event_id, exc))

    def _spillable(self, line: bytes) -> bytes:
        """`line` as a spill file may hold it: a raw decision in its stored form (one
        that cannot be read back, a dead letter without its text)."""
        if not is_raw(line):
            return line
        event = decode_raw(line)
        return rejected_line(event) if isinstance(event, Rejected) else self._stored(event)

    def _flush(self) -> None:
        """Everything emitted during this loop turn, in one write (or to the spill file)."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
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
        self.spill.append_lines([self._spillable(line) for line in pending])

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, events: AuditEventStore | None = None, dead_letters: AuditDeadLetterStore | None = None) -> None:
        """Start the writer process. It opens `database_url` itself: the app's stores
        are not used."""
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
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self.metrics.run(self.status), name="audit-metrics"))
        if self._pending:
            self._flush()

    async def _spawn(self) -> None:
        events_read, events_write = os.pipe()
        status_read, status_write = os.pipe()
        key_read, key_write = os.pipe()
        os.write(key_write, self.subject_refs.key.hex().encode("ascii"))  # 64 bytes: the pipe holds them
        os.close(key_write)
        with contextlib.suppress(OSError):  # room for ~3,000 lines while the writer is busy
            fcntl.fcntl(events_write, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        options = {"audit": self.settings.model_dump(mode="json"), "database_url": self.database_url,
                   "log_level": self.log_level, "log_json": self.log_json, "status_fd": status_write,
                   "key_fd": key_read}
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "from server.audit.shipper import main; main()", dumps(options).decode(),
                stdin=events_read, pass_fds=(status_write, key_read), env=env,
            )
        finally:
            os.close(events_read)
            os.close(status_write)
            os.close(key_read)
        loop = asyncio.get_running_loop()
        self._pipe, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(events_write, "wb", buffering=0))
        if self._child is not None:  # the previous writer's counts stay counted
            self._earlier = _added(self._earlier, self._child)
        self._child = None
        self._received = 0
        self._sent = 0
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
        try:
            while line := await reader.readline():
                try:
                    report = loads(line)
                    status = AuditStatus(**report["status"])
                except (ValueError, TypeError, KeyError):  # the writer died in the middle of a line
                    break
                self._child = status
                self._received = int(report["received"])
                if self.metrics is not None:
                    for size, seconds in report["batches"]:
                        self.metrics.batch(size, seconds)
                self._reported.set()
        finally:
            transport.close()

    async def stop(self) -> None:
        """Flush, close the pipe, and wait for the writer's bounded drain."""
        if self._closed:
            return
        self._stopping = True
        self._flush()
        process, pipe = self._process, self._pipe
        if process is not None and pipe is not None and not pipe.is_closing():
            deadline = time.monotonic() + self.settings.drain_timeout_seconds
            while pipe.get_write_buffer_size() and process.returncode is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # bounded: the deadline
            pipe.close()  # the end of the pipe: the writer drains and exits
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), self.settings.drain_timeout_seconds + 5.0)
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
        status = self.status()  # what is not stored now is spilled (here or by the writer)
        self.spill.close()
        if self.metrics is not None:
            self.metrics.export(status)
        logger.info("audit_stopped", written=status.written, spilled=status.depth)

    # -- state -------------------------------------------------------------------------

    def depth(self) -> int:
        """Events emitted here and not yet stored: waiting in the worker (buffer, pipe,
        spill) and in the writer process (queue, in flight, its spill files)."""
        child = self._child.depth if self._child is not None else 0
        in_pipe = max(0, self._sent - self._received)
        return len(self._pending) + in_pipe + self.spill.pending + child

    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None and self._pipe is not None

    def status(self) -> AuditStatus:
        """The worker's own counts with the writer processes' (summed over restarts)."""
        child = _added(self._earlier, self._child) if self._child is not None else self._earlier
        if not self.running():
            problem: str | None = _NOT_RUNNING
        elif self._child is None:
            problem = "audit delivery is not running"
        else:
            problem = self._child.problem
        return AuditStatus(
            emitted=self.emitted,
            written=child.written,
            dead_lettered=child.dead_lettered,
            spilled=self.spill.spilled + child.spilled,
            retries=child.retries,
            depth=self.depth(),
            lag=self._child.lag if self._child is not None else 0.0,
            last_error=self._child.last_error if self._child is not None else None,
            problem=problem,
        )

    async def readiness(self) -> tuple[bool, str | None]:
        return readiness_of(self.status(), self.settings.max_ready_depth)

    async def wait_delivered(self, timeout: float) -> bool:
        """Wait until nothing emitted here is left unstored (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:  # bounded by `timeout`
            self._flush()
            if self.running() and self._child is not None and self._received == self._sent and self.depth() == 0:
                return True
            await asyncio.sleep(0.01)
        return False


def _added(before: AuditStatus, after: AuditStatus) -> AuditStatus:
    """`before`'s counts plus `after`'s (the rest of the status is `after`'s)."""
    return dataclasses.replace(
        after, written=before.written + after.written, dead_lettered=before.dead_lettered + after.dead_lettered,
        spilled=before.spilled + after.spilled, retries=before.retries + after.retries,
    )


register_backend("process", ShippingPublisher.from_settings)


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
        if is_raw(line):  # a decision as emitted: pseudonymised here, before it is queued
            event = decode_raw(line)
            if isinstance(event, Rejected):
                publisher.reject(event)
            else:
                publisher.emit(event)
            return
        if not line.endswith(b"\n"):  # the worker died in the middle of a write
            publisher.reject(Rejected("unknown", {"line": line.decode("utf-8", "replace")},
                                      "torn line at the end of the pipe"))
            return
        record = decode_line(line)
        if isinstance(record, AuditEvent):
            publisher.put(record)
        elif isinstance(record, Rejected):
            publisher.reject(record)
        else:
            publisher.reject(record.rejected("line"))

    def report(self) -> None:
        status = self.publisher.status()
        status = dataclasses.replace(status, lag=round(status.lag, 3))
        report = {"status": asdict(status), "received": self.received, "batches": self.batches}
        self.batches = []
        with contextlib.suppress(OSError):  # the worker is gone: nobody to tell
            self.status.write(dumps(report) + b"\n")

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

    # The worker's audit section, as its settings validated it, and its subject_ref key,
    # read from a pipe (never a command line or the environment): decisions arrive raw.
    with os.fdopen(options["key_fd"], "rb") as key_pipe:
        refs = SubjectRefs(bytes.fromhex(key_pipe.read().decode("ascii")))
    publisher = AuditPublisher(AuditSettings.model_validate(options["audit"]), refs)
    # SQLite statements on this loop's thread: it serves no requests, and the hand-off to
    # a database thread and back cost more CPU than the inserts themselves.
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

    options = loads((argv or sys.argv[1:])[0])
    # The end of stdin is the signal to drain and exit: a SIGTERM or Ctrl-C sent to the
    # whole process group must not cut the drain short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(options["log_level"], options["log_json"])
    nice = int(options["audit"]["writer_nice"])
    if nice:
        os.nice(nice)  # background work: under CPU contention the requests come first
    if options["audit"]["writer_idle"] and hasattr(os, "SCHED_IDLE"):
        # Before any thread starts (they inherit it): the worker, woken by a request,
        # takes the core from this process at once instead of at the end of its slice.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    started = time.monotonic()
    asyncio.run(_run(options))
    logger.info("audit_writer_process_exited", seconds=round(time.monotonic() - started, 1))


__all__ = ["ShippingPublisher"]
