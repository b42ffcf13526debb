"""The bounded in-process queue between `emit` and the delivery task, with its spill.

`Outbox.put` never blocks and never drops: while the queue holds fewer than `capacity`
events the event joins it; otherwise it is appended to a spill file (see
`server.audit.spill`), which is replayed once there is room. This is the documented
choice for a full queue: a request never waits for the audit trail (backpressure would
make the data API stop answering while PostgreSQL is down), and nothing is lost.

`next_batch` hands the delivery task a batch as soon as `batch_size` events are waiting,
or once the oldest has waited `flush_interval` seconds; a batch takes everything waiting
up to `max_batch` (ten times `batch_size` by default). Under load the delivery task gets
a turn of the event loop only between requests, so a backlog is written in fewer, larger
batches (still one statement each) rather than falling further behind.
While spill files hold events, every other batch comes from them when a queued batch is
due too, and every batch otherwise (the replay runs at full speed under a trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from engine.clock import utc_now
from server.audit.encoding import BrokenLine, Rejected, decode_lines
from server.audit.spill import SpillFiles
from stores import AuditEvent


@dataclass(frozen=True, slots=True)
class Batch:
    events: list[AuditEvent]
    rejected: list[Rejected]  # to dead-letter: rejected events and unreadable lines
    from_spill: bool
    oldest: float  # time.monotonic() when its oldest event was queued (spill: when taken)


class Outbox:
    def __init__(
        self, capacity: int, batch_size: int, flush_interval: float, spill: SpillFiles,
        max_batch: int | None = None,
    ) -> None:
        self.capacity = capacity
        self.batch_size = batch_size
        self.max_batch = max(batch_size, max_batch if max_batch is not None else 10 * batch_size)
        self.flush_interval = flush_interval
        self.spill = spill
        self._items: deque[tuple[float, AuditEvent]] = deque()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._spill_turn = False
        self.in_flight: Batch | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the delivery task's loop: `put` from other threads wakes it safely."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def __len__(self) -> int:
        return len(self._items)

    def depth(self) -> int:
        """Events not yet delivered: queued, in flight, and spilled."""
        in_flight = len(self.in_flight.events) if self.in_flight else 0
        return len(self._items) + in_flight + self.spill.pending

    def lag(self) -> float:
        """Seconds the oldest undelivered event has waited (0 with none)."""
        now = time.monotonic()
        waits = [0.0]
        if self._items:
            waits.append(now - self._items[0][0])
        if self.in_flight is not None:
            waits.append(now - self.in_flight.oldest)
        oldest_spilled = self.spill.oldest_timestamp()
        if oldest_spilled is not None:
            waits.append((utc_now() - oldest_spilled).total_seconds())
        return max(waits)

    def put(self, event: AuditEvent) -> None:
        if len(self._items) >= self.capacity:
            self.spill.append(event)
            return
        self._items.append((time.monotonic(), event))
        if len(self._items) == self.batch_size:
            self._wake_up()

    def spill_all(self, events: list[AuditEvent]) -> None:
        """Spill `events` and everything still queued (the drain ran out of time)."""
        for event in events:
            self.spill.append(event)
        while self._items:  # bounded: pops until empty
            self.spill.append(self._items.popleft()[1])

    def wake(self) -> None:
        self._wake_up()

    def _wake_up(self) -> None:
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._wake.set)
        else:
            self._wake.set()

    async def next_batch(self, stopping: asyncio.Event) -> Batch | None:
        """The next batch to deliver; `None` once `stopping` is set and the queue is empty
        (spill files are left for the next start then)."""
        while True:  # bounded: each pass returns or waits at most flush_interval
            now = time.monotonic()
            queued_ready = bool(self._items) and (
                len(self._items) >= self.batch_size
                or now - self._items[0][0] >= self.flush_interval
                or stopping.is_set()
            )
            # Turns alternate only while both sides have a batch ready: a queued batch that
            # is not due yet (a trickle of live events) must not hold the replay back.
            if self.spill.pending and not stopping.is_set() and (self._spill_turn or not queued_ready):
                self._spill_turn = False
                taken = await self._take_spilled()
                if taken:
                    events = [e for e in taken if isinstance(e, AuditEvent)]
                    rejected = [e.rejected("spill_line") if isinstance(e, BrokenLine) else e
                                for e in taken if not isinstance(e, AuditEvent)]
                    return self._hand_out(Batch(events, rejected, True, now))
            if queued_ready:
                self._spill_turn = True
                oldest = self._items[0][0]
                count = min(self.max_batch, len(self._items))
                events = [self._items.popleft()[1] for _ in range(count)]
                return self._hand_out(Batch(events, [], False, oldest))
            if stopping.is_set():
                return None
            timeout = self.flush_interval - (now - self._items[0][0]) if self._items else self.flush_interval
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout, 0.001))

    async def _take_spilled(self) -> list[AuditEvent | Rejected | BrokenLine]:
        """Up to a batch of spilled events to deliver, oldest file first, sealing the
        active file when nothing else is left to replay; `spill.confirm()` once they are
        delivered. The event loop is not held: the fsync of a sealed file runs in a
        thread, the lines are decoded in slices."""
        fd = self.spill.seal()
        if fd is not None:
            await asyncio.to_thread(_fsync_quietly, fd)
        return await decode_lines(self.spill.take_lines(self.max_batch))

    def _hand_out(self, batch: Batch) -> Batch:
        self.in_flight = batch
        return batch


def _fsync_quietly(fd: int) -> None:
    # The descriptor may be closed meanwhile (a stop that cancelled the delivery task
    # closes the files, with an fsync of its own): nothing is lost then.
    with contextlib.suppress(OSError):
        os.fsync(fd)


__all__ = ["Batch", "Outbox"]

