"""Dead letters after the fact: what `idgw audit dlq list|replay` does.

A dead letter holds the event (as JSON, chain fields left out) and the error that kept
it out of the trail. The table is append-only like the trail: a replayed letter is not
deleted; it counts as replayed once its event id is in `audit_events`. Replay writes the
events through a `BatchWriter` of its own stream (`replay-...`); an event the store
refuses again is reported and stays pending (no second dead letter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from server.audit.writer import BatchWriter, Deadline, new_stream_id
from stores import (
    AuditDeadLetterStore,
    AuditEvent,
    AuditEventStore,
    DeadLetter,
    audit_event_from_json,
)


@dataclass
class ReplayReport:
    written: list[int] = field(default_factory=list)  # dead letter ids now in the trail
    refused: list[tuple[int, str]] = field(default_factory=list)  # (id, error) refused again
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # payload is not an event
    unknown: list[int] = field(default_factory=list)  # asked for, but no pending letter has it
    unwritten: list[int] = field(default_factory=list)  # the store stayed unavailable

    @property
    def ok(self) -> bool:
        return not (self.refused or self.unreadable or self.unknown or self.unwritten)


async def replay_dead_letters(
    events: AuditEventStore,
    dead_letters: AuditDeadLetterStore,
    *,
    ids: Sequence[int] = (),
    timeout: float = 30.0,
) -> ReplayReport:
    """Write the events of pending dead letters (all, or those with `ids`)."""
    report = ReplayReport()
    pending = await dead_letters.list_letters(pending_only=True)
    if ids:
        wanted = set(ids)
        report.unknown = sorted(wanted - {letter.id for letter in pending if letter.id is not None})
        pending = [letter for letter in pending if letter.id in wanted]
    letters_of: dict[str, list[DeadLetter]] = {}
    batch: list[AuditEvent] = []
    for letter in pending:
        try:
            event = audit_event_from_json(letter.payload)
        except (KeyError, TypeError, ValueError) as exc:
            report.unreadable.append((letter.id or 0, f"{type(exc).__name__}: {exc}"))
            continue
        if event.id not in letters_of:
            batch.append(event)
        letters_of.setdefault(event.id, []).append(letter)
    writer = BatchWriter(events, dead_letters, stream_id=new_stream_id("replay"), dead_letter_refused=False)
    deadline = Deadline()
    deadline.set(timeout)
    unwritten = {e.id for e in await writer.deliver(batch, deadline)}
    refused = {event.id: error for event, error in writer.refused}
    for event_id, letters in letters_of.items():
        for letter in letters:
            if event_id in refused:
                report.refused.append((letter.id or 0, refused[event_id]))
            elif event_id in unwritten:
                report.unwritten.append(letter.id or 0)
            else:
                report.written.append(letter.id or 0)
    return report


__all__ = ["ReplayReport", "replay_dead_letters"]
