"""The batch writer: the last stage of the pipeline, from a batch of events to storage.

`BatchWriter.deliver(events, deadline)` writes a batch with one `append` (one round
trip, one transaction, idempotent by event id) after linking it into the writer's
chain (see `server.audit.chain`). What can go wrong, and what it does:

- the store is unavailable (or a write times out): retry the same batch after an
  exponential backoff with jitter, until it works or the deadline (set when the
  gateway shuts down) passes; then the unwritten events are handed back to the caller,
  which spills them (never dropped);
- the batch meets events already stored (a retry after a commit whose answer was lost,
  a redelivery, a replay): the store rolls the batch back (`all_or_nothing`), the writer
  leaves the stored ones out and links the rest again, so the chain has no gap;
- an event the store refuses (a constraint, a value it cannot hold): the batch is split
  in halves until the culprit is alone; it goes to `audit_dead_letters` with the error,
  the rest are written. Another error on a single event is retried a few times first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.clock import utc_now
from server.audit.chain import link, unlinked
from server.json_codec import dumps_ascii
from stores import (
    AuditDeadLetterStore,
    AuditEvent,
    AuditEventStore,
    Conflict,
    DeadLetter,
    InvalidRecord,
    StoreError,
    Unavailable,
    audit_event_to_json,
)

logger = structlog.get_logger("idgw.audit")

Heartbeat = Callable[[], Awaitable[None]]
#: Told the size and write time (seconds) of each stored batch.
BatchObserver = Callable[[int, float], None]
_LINK_SLICE = 25


def new_stream_id(kind: str = "gw") -> str:
    return f"{kind}-{secrets.token_hex(8)}"


class Deadline:
    """When waiting has to stop: `None` until shutdown sets it; sleeps end early on change."""

    def __init__(self) -> None:
        self.at: float | None = None
        self._changed = asyncio.Event()

    def set(self, seconds_from_now: float) -> None:
        self.at = time.monotonic() + seconds_from_now
        self._changed.set()

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def remaining(self, default: float) -> float:
        if self.at is None:
            return default
        return max(0.0, min(default, self.at - time.monotonic()))

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, less if the deadline comes first or is set meanwhile."""
        was_set = self.at is not None
        seconds = self.remaining(seconds)
        if seconds <= 0:
            return
        if was_set:
            await asyncio.sleep(seconds)
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between d/2 and d, where
    d = min(cap, base * 2**n); the jitter keeps instances from retrying in step."""

    base: float = 0.05
    cap: float = 5.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 32)))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))


def _dedupe(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    seen: set[str] = set()
    unique = []
    for event in events:
        if event.id not in seen:
            seen.add(event.id)
            unique.append(event)
    return unique


def _escaped_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload any JSON column accepts: the event as ASCII JSON text, NUL escaped."""
    text = dumps_ascii(payload).decode("ascii").replace("\\u0000", "\\\\u0000")
    return {"escaped_event": text}


class BatchWriter:
    """Writes batches of one writer stream; not safe for concurrent `deliver` calls."""

    def __init__(
        self,
        events: AuditEventStore,
        dead_letters: AuditDeadLetterStore,
        *,
        stream_id: str | None = None,
        backoff: Backoff | None = None,
        write_timeout: float = 10.0,
        attempts_per_event: int = 5,
        dead_letter_refused: bool = True,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.events = events
        self.dead_letters = dead_letters
        self.stream_id = stream_id or new_stream_id()
        self.head: str | None = None  # hash of the last event this stream stored
        self.backoff = backoff or Backoff()
        self.write_timeout = write_timeout
        self.attempts_per_event = attempts_per_event
        self.written = 0
        self.dead_lettered = 0
        self.retries = 0  # batch writes retried
        self.last_error: str | None = None
        # False (a dead-letter replay): refused events are kept in `refused`, not stored
        # as dead letters a second time.
        self.dead_letter_refused = dead_letter_refused
        self.refused: list[tuple[AuditEvent, str]] = []
        self.on_batch = on_batch

    async def deliver(
        self, events: Sequence[AuditEvent], deadline: Deadline, heartbeat: Heartbeat | None = None
    ) -> list[AuditEvent]:
        """Write or dead-letter each event; return those still unwritten when `deadline`
        passed while the store was unavailable (the caller keeps them)."""
        parts: deque[list[AuditEvent]] = deque([_dedupe([unlinked(e) for e in events])])
        await asyncio.sleep(0)
        failures = 0  # consecutive failed attempts, for the backoff
        tries: dict[str, int] = {}  # single events that failed with an unclassified error
        while parts:  # bounded: each pass writes, splits, dead-letters or waits (deadline)
            part = parts.popleft()
            if not part:
                continue
            try:
                await self._append(part)
                failures = 0
                continue
            except (Unavailable, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                parts.appendleft(part)
            except Exception as exc:  # a refused event somewhere in the part
                if len(part) > 1:
                    middle = len(part) // 2
                    parts.extendleft([part[middle:], part[:middle]])
                    continue
                tries[part[0].id] = tries.get(part[0].id, 0) + 1
                permanent = isinstance(exc, InvalidRecord) or not isinstance(exc, StoreError)
                if permanent or tries[part[0].id] >= self.attempts_per_event:
                    if not self.dead_letter_refused:
                        self.refused.append((part[0], _describe(exc)))
                        continue
                    if not await self._dead_letter(part[0], _describe(exc), deadline, heartbeat):
                        return [e for p in parts for e in p] + part
                    continue
                self.last_error = _describe(exc)
                parts.appendleft(part)
            if deadline.passed():
                return [e for p in parts for e in p]
            self.retries += 1
            if heartbeat is not None:
                await heartbeat()
            await deadline.sleep(self.backoff.delay(failures))
            failures += 1
        self.last_error = None
        return []

    async def _append(self, part: list[AuditEvent]) -> None:
        """One attempt: link, append all or nothing; on a conflict, drop what is stored."""
        while part:  # bounded: a conflict removes at least one event or ends the loop
            linked = await self._link(part)
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    self.events.append(linked, all_or_nothing=True), self.write_timeout
                )
            except Conflict:
                part = await self._not_yet_stored(part, linked)
                continue
            seconds = time.perf_counter() - started
            if self.on_batch is not None:
                self.on_batch(len(linked), seconds)
            self._written(linked)
            return

    async def _link(self, part: list[AuditEvent]) -> list[AuditEvent]:
        # In slices, yielding between them: hashing a large batch in one go would hold
        # the event loop (and the requests on it) for that long.
        linked: list[AuditEvent] = []
        head = self.head
        for start in range(0, len(part), _LINK_SLICE):
            linked += link(part[start : start + _LINK_SLICE], self.stream_id, head)
            head = linked[-1].hash
            await asyncio.sleep(0)
        return linked

    async def _not_yet_stored(self, part: list[AuditEvent], linked: list[AuditEvent]) -> list[AuditEvent]:
        head = await self.events.last_in_stream(self.stream_id)
        if head is not None and head.hash == linked[-1].hash:
            self._written(linked)  # an earlier attempt committed; its answer was lost
            return []
        stored = await self.events.stored_ids([e.id for e in part])
        logger.info("audit_events_already_stored", count=len(stored), stream_id=self.stream_id)
        return [e for e in part if e.id not in stored]

    def _written(self, linked: list[AuditEvent]) -> None:
        self.head = linked[-1].hash
        self.written += len(linked)

    async def _dead_letter(
        self, event: AuditEvent, error: str, deadline: Deadline, heartbeat: Heartbeat | None
    ) -> bool:
        payload = audit_event_to_json(unlinked(event))
        return await self.dead_letter_payload(event.id, payload, error, deadline, heartbeat)

    async def dead_letter_payload(
        self,
        event_id: str,
        payload: dict[str, Any],
        error: str,
        deadline: Deadline,
        heartbeat: Heartbeat | None = None,
    ) -> bool:
        """Store a dead letter, retrying while the store is unavailable; False when the
        deadline passed first (the caller keeps the event)."""
        failures = 0
        escaped = False
        while True:  # bounded: the deadline, or success, or the escaped payload's success
            letter = DeadLetter(event_id=event_id, payload=payload, error=error, failed_at=utc_now())
            try:
                await asyncio.wait_for(self.dead_letters.add(letter), self.write_timeout)
            except InvalidRecord as exc:
                if not escaped:  # the payload itself is what the store refuses
                    payload, escaped = _escaped_payload(payload), True
                    error = f"{error}; payload stored escaped ({_describe(exc)})"
                    continue
                self.last_error = _describe(exc)
            except Exception as exc:  # unavailable, or a problem with the table: wait
                self.last_error = _describe(exc)
            else:
                self.dead_lettered += 1
                logger.warning("audit_event_dead_lettered", event_id=event_id, error=error[:500])
                return True
            if deadline.passed():
                return False
            if heartbeat is not None:
                await heartbeat()
            await deadline.sleep(self.backoff.delay(failures))
            failures += 1


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["Backoff", "BatchObserver", "BatchWriter", "Deadline", "Heartbeat", "new_stream_id"]
