"""The tamper-evident chain of the audit trail, and its verification.

Each writer stream (one batch writer: one gateway process, or one `idgw audit dlq
replay` run) gets a random `stream_id`. The writer links every event it stores to the
previous event it stored: `prev_hash` is that event's `hash` (`None` for the first of
the stream) and

    hash = SHA-256(JSON [prev_hash, id, timestamp, subject_ref, action, purpose,
                         decision, reason, request_id, decision_id, policy_revision,
                         stream_id])

with the timestamp in UTC ISO-8601 with microseconds. Only the writer assigns these
fields, right before a write, so a retried batch carries the same values.

`verify_trail` reads the trail in `seq` order, follows each stream and reports the first
event whose hash does not match its fields (an edited row) or whose `prev_hash` is not
its predecessor's hash (a removed, inserted or reordered row). What a chain cannot show:
the removal of a stream's newest events, or of a whole stream; docs/audit.md says how
to keep those visible (export each stream's head elsewhere).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from server.json_codec import hash_input
from stores import AuditEvent, AuditEventStore

_PAGE = 1000


def event_hash(event: AuditEvent, prev_hash: str | None, stream_id: str | None = None) -> str:
    """The chain hash of `event` after `prev_hash` in `stream_id` (default: the event's
    own `stream_id`; its `prev_hash` and `hash` fields are ignored)."""
    fields = [
        prev_hash,
        event.id,
        _hashed_time(event.timestamp),
        event.subject_ref,
        event.action,
        event.purpose,
        event.decision,
        event.reason,
        event.request_id,
        event.decision_id,
        event.policy_revision,
        event.stream_id if stream_id is None else stream_id,
    ]
    return hashlib.sha256(hash_input(fields)).hexdigest()


_last_time: tuple[datetime | None, str] = (None, "")


def _hashed_time(moment: datetime) -> str:
    """`moment` in UTC, ISO-8601 with microseconds; the last one is kept, since events
    written together mostly share their timestamp (a decision's is to the second)."""
    global _last_time
    cached = _last_time
    if cached[0] == moment:  # the same instant: the same text in UTC
        return cached[1]
    text = (moment if moment.tzinfo is UTC else moment.astimezone(UTC)).isoformat(timespec="microseconds")
    _last_time = (moment, text)
    return text


_CHAIN_FIELDS = ("stream_id", "prev_hash", "hash", "seq")
_KEPT_FIELDS = tuple(f.name for f in fields(AuditEvent) if f.name not in _CHAIN_FIELDS)


def _with_chain(event: AuditEvent, stream_id: str | None, prev_hash: str | None,
                hash_: str | None) -> AuditEvent:
    # A copy with the chain fields set (and no seq), built slot by slot: neither
    # dataclasses.replace() (it runs __post_init__ again, though the timestamp is already
    # UTC) nor copy.copy() (the pickle protocol, several times slower): a cost paid per event, on
    # the event loop.
    copied = object.__new__(type(event))
    set_slot = object.__setattr__
    for name in _KEPT_FIELDS:
        set_slot(copied, name, getattr(event, name))
    set_slot(copied, "stream_id", stream_id)
    set_slot(copied, "prev_hash", prev_hash)
    set_slot(copied, "hash", hash_)
    set_slot(copied, "seq", None)
    return copied


def link(events: Iterable[AuditEvent], stream_id: str, head: str | None) -> list[AuditEvent]:
    """`events` chained after `head` in `stream_id`, in order."""
    linked = []
    for event in events:
        digest = event_hash(event, head, stream_id)
        linked.append(_with_chain(event, stream_id, head, digest))
        head = digest
    return linked


def unlinked(event: AuditEvent) -> AuditEvent:
    """The event without chain fields (as emitted, before a writer links it)."""
    if event.stream_id is None and event.prev_hash is None and event.hash is None and event.seq is None:
        return event
    return _with_chain(event, None, None, None)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int | None
    event_id: str
    stream_id: str | None
    problem: str

    def describe(self) -> str:
        return f"seq {self.seq} (event {self.event_id}, stream {self.stream_id}): {self.problem}"


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int
    streams: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def check_event(event: AuditEvent, expected_prev: str | None) -> str | None:
    """What is wrong with `event` as the successor of `expected_prev`, or None."""
    if event.stream_id is None or event.hash is None:
        return "the event carries no chain (stream_id or hash missing)"
    if event.prev_hash != expected_prev:
        return (
            "prev_hash is not the hash of the stream's previous event:"
            " an event was removed, inserted or reordered before this one"
        )
    if event_hash(event, event.prev_hash) != event.hash:
        return "the hash does not match the event's fields: the row was edited"
    return None


async def verify_trail(store: AuditEventStore, *, page_size: int = _PAGE) -> ChainReport:
    """Recompute every stream's chain, in `seq` order; stop at the first break."""
    heads: dict[str | None, str | None] = {}
    after: int | None = None
    checked = 0
    while True:  # bounded: each page moves `after` past the rows it read
        page = await store.query(after_seq=after, limit=page_size)
        if not page:
            return ChainReport(checked, len(heads), None)
        for event in page:
            problem = check_event(event, heads.get(event.stream_id))
            if problem is not None:
                return ChainReport(
                    checked, len(heads), ChainBreak(event.seq, event.id, event.stream_id, problem)
                )
            heads[event.stream_id] = event.hash
            checked += 1
        after = page[-1].seq


__all__ = [
    "ChainBreak",
    "ChainReport",
    "check_event",
    "event_hash",
    "link",
    "unlinked",
    "verify_trail",
]
