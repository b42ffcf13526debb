"""The one encoder of the audit pipeline: from an emitted event to its stored form and to
the line that carries it between processes, and back.

    DecisionMade / SensitiveOperation --to_audit_event--> AuditEvent (the stored form)
                                      --event_line------> one JSON line
    AuditEvent --encode_event--> one JSON line
    one JSON line --decode_line--> AuditEvent | Rejected | BrokenLine
    DecisionMade --raw_line--> one raw line --decode_raw--> DecisionMade

A line is one JSON object and a newline: the ten stored columns of an event (the chain
fields are the writer's, assigned right before a write) and, for a decision, its
`record` (`record_body`, as JSON text the writer stores without parsing it: with the
event, outside the chain), or `{"rejected": [event_id,
payload, error]}` for an event that cannot be stored and is to be dead-lettered. The
same lines travel through the writer process's pipe, sit in spill files and are the
messages of the NATS stream, so whatever one part of the pipeline writes, any other can
read. Lines are UTF-8 (ASCII escapes for text UTF-8 cannot hold, e.g. a lone surrogate).

`to_audit_event` and `event_line` share the mapping from an emitted event to the stored
columns (`_columns`), and a line decodes to exactly the event `to_audit_event` builds.
`event_line` skips building the `AuditEvent`: it is what the worker spills.

A raw line (`{"raw": [...]}`) is a decision as emitted, not yet pseudonymised: the one
line of the process backend's pipe, where the writer process turns it into its stored
form (the worker's request path only encodes it). It is never written anywhere, and a
raw line that cannot be read is dead-lettered without its text (`withheld`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine import Purpose
from engine.replay import given_to
from server.audit.chain import unlinked
from server.audit.subject_refs import SubjectRefs
from server.events import AuditedEvent, DecisionInput, DecisionMade, RecordShape
from server.ids import random_hex, time_ordered
from server.json_codec import dumps, dumps_ascii, loads
from stores import AuditEvent, audit_event_from_json, audit_event_to_json

#: Lines decoded between two yields to the event loop (about 0.15 ms of work).
DECODE_SLICE = 20
_REJECTED = b'{"rejected":'
_RAW = b'{"raw":'


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that cannot be stored (e.g. a timestamp without a time zone): it goes to
    the dead letters under its id, with a pseudonymised payload and the reason."""

    event_id: str
    payload: dict[str, Any]
    error: str


@dataclass(frozen=True, slots=True)
class BrokenLine:
    """A line that is neither an event nor a rejected one (e.g. torn by a crash)."""

    text: str
    error: str

    def rejected(self, label: str) -> Rejected:
        """The dead letter of this line, its text under `label` (where it was read)."""
        return Rejected("unknown", {label: self.text}, self.error)


def new_event_id() -> str:
    # the second it was made, then 96 random bits from the buffered CSPRNG of server.ids:
    # unique, and appended near the end of the audit table's id index
    return "evt_" + time_ordered() + random_hex(12)


# A second's events share one timestamp text (engine.clock): parsed once.
@functools.lru_cache(maxsize=8)
def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _timestamp(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else _parse_timestamp(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment


#: (purpose, revision) -> its shape; a few entries per reload, bounded below.
_shapes: dict[tuple[str, str], RecordShape] = {}


def record_shape(purpose: Purpose | RecordShape) -> RecordShape:
    """The shape of `purpose`'s records, built once per purpose and revision (a shape
    decoded from a raw line is its own)."""
    if isinstance(purpose, RecordShape):
        return purpose
    key = (purpose.name, purpose.revision)
    shape = _shapes.get(key)
    if shape is None:
        if len(_shapes) > 1000:  # many reloads: start again
            _shapes.clear()
        declared, fields = given_to(purpose)
        shape = _shapes[key] = RecordShape(
            sensitive=tuple(spec.name for spec in purpose.context if spec.sensitive),
            declared=list(declared),
            fields=list(fields) if fields is not None else None,
        )
    return shape


def record_body(record: DecisionInput, refs: SubjectRefs, subject_ref: str | None) -> dict[str, Any]:
    """A decision record's body (`stores.DecisionRecord`): the engine's facts and the
    context apart, the subject's `sub` as its `subject_ref` and each sensitive context
    value as a keyed hash (`hashed` names them), what the purpose could have been given
    (`declared`, `fields`), then `refused` and `shadow` when they apply."""
    shape = record_shape(record.purpose)
    facts = dict(record.facts)
    context = facts.pop("context", None)
    context = dict(context) if isinstance(context, dict) else {}
    hashed: list[str] = []
    for name in shape.sensitive:
        if name in context:
            context[name] = refs.value_ref(context[name])
            hashed.append("context." + name)
    subject = facts.get("subject")
    if isinstance(subject, dict) and "sub" in subject:
        facts["subject"] = {**subject, "sub": subject_ref if subject_ref is not None else refs.value_ref(subject["sub"])}
        hashed.append("subject.sub")
    body: dict[str, Any] = {
        "facts": facts, "context": context, "conditions": list(record.conditions), "hashed": hashed,
        "declared": shape.declared, "fields": shape.fields,
    }
    if record.refused:
        body["refused"] = True
    if record.shadow is not None:
        body["shadow"] = record.shadow
    return body


def _columns(event: AuditedEvent, refs: SubjectRefs, event_id: str) -> dict[str, Any]:
    """The stored columns of an emitted event, the timestamp as given, and a decision's
    record: `subject` becomes `subject_ref`; nothing else is personal."""
    subject_ref = refs.maybe_ref(event.subject)
    if isinstance(event, DecisionMade):
        columns: dict[str, Any] = {
            "id": event_id, "timestamp": event.timestamp, "action": event.action, "subject_ref": subject_ref,
            "purpose": event.purpose, "decision": event.decision, "reason": event.reason,
            "request_id": event.request_id, "decision_id": event.decision_id,
            "policy_revision": event.policy_revision,
        }
        if event.record is not None:
            columns["record"] = dumps(record_body(event.record, refs, subject_ref)).decode()
        return columns
    return {
        "id": event_id, "timestamp": event.timestamp, "action": event.action, "subject_ref": subject_ref,
        "purpose": event.purpose, "decision": event.outcome, "reason": event.reason,
        "request_id": event.request_id, "decision_id": None, "policy_revision": None,
    }


def to_audit_event(event: AuditedEvent, refs: SubjectRefs, event_id: str | None = None) -> AuditEvent:
    """The stored form; `ValueError` or `TypeError` for an event that cannot be one."""
    columns = _columns(event, refs, event_id or new_event_id())
    columns["timestamp"] = _timestamp(columns["timestamp"])
    return AuditEvent(**columns)


def event_line(event: AuditedEvent, refs: SubjectRefs, event_id: str) -> bytes:
    """The line of `to_audit_event(event, refs, event_id)`, checked as it is, without
    building the event, which would cost the request path about twice as much."""
    columns = _columns(event, refs, event_id)
    moment = _timestamp(columns["timestamp"])
    if not isinstance(columns["timestamp"], str):
        columns["timestamp"] = moment.isoformat()
    return dumps(columns) + b"\n"


def raw_line(event: DecisionMade) -> bytes:
    """The line the process backend's pipe carries for a decision: the event as emitted,
    the subject's id and the sensitive context values in clear, with its record's shape.
    Only the writer process reads it, and it pseudonymises the event before queueing it
    (`decode_raw`, then `to_audit_event`): a raw line is never written to a file, a
    stream or a table. An eighth of the cost of `event_line` and a new event id on the
    worker's request path, where the HMACs, the record's body and its JSON used to be
    computed."""
    record = event.record
    raw_record = None
    if record is not None:
        shape = record_shape(record.purpose)
        raw_record = [record.facts, record.conditions, record.refused, record.shadow,
                      shape.sensitive, shape.declared, shape.fields]
    return dumps({"raw": [event.decision_id, event.purpose, event.decision, event.reason, event.policy_revision,
                          event.timestamp, event.request_id, event.subject, raw_record]}) + b"\n"


def is_raw(line: bytes) -> bool:
    return line.startswith(_RAW)


def decode_raw(line: bytes) -> DecisionMade | Rejected:
    """The event of a `raw_line`, what `to_audit_event` then pseudonymises as in the
    worker; for a line that is not one (torn, garbled), its dead letter, `withheld`."""
    if not line.endswith(b"\n"):
        return withheld(line, "torn line at the end of the pipe")
    try:
        decision_id, purpose, decision, reason, revision, timestamp, request_id, subject, raw_record = (
            loads(line)["raw"])
        record = None
        if raw_record is not None:
            facts, conditions, refused, shadow, sensitive, declared, fields = raw_record
            if not isinstance(facts, dict):
                raise TypeError("a raw record's facts are not an object")
            record = DecisionInput(RecordShape(tuple(sensitive), declared, fields), facts, conditions, refused, shadow)
    except (ValueError, TypeError, KeyError) as exc:
        return withheld(line, f"unreadable raw line: {type(exc).__name__}: {exc}")
    return DecisionMade(decision_id, purpose, decision, reason, revision, timestamp, request_id, subject,
                        record=record)


def withheld(line: bytes, error: str) -> Rejected:
    """The dead letter of a raw line that cannot be read (torn when the worker died, or
    garbled): its text holds values that are never stored in clear, so it is withheld."""
    return Rejected("unknown", {"line": _withheld_text(line)}, error)


def _withheld_text(line: bytes) -> str:
    return f"a raw decision line of {len(line)} bytes, withheld: it holds unpseudonymised values"


def rejected_payload(event: AuditedEvent, refs: SubjectRefs) -> dict[str, Any]:
    """The dead letter's payload of an event that cannot be stored: pseudonymised too."""
    payload = event.to_dict()
    payload["subject_ref"] = refs.maybe_ref(payload.pop("subject", None))
    return payload


def rejection(event: AuditedEvent, refs: SubjectRefs, event_id: str, exc: Exception) -> Rejected:
    """What an emitted event that cannot be stored becomes (see `to_audit_event`)."""
    return Rejected(event_id, rejected_payload(event, refs), f"not an audit event: {exc}")


def encode_event(event: AuditEvent) -> bytes:
    """The line of a stored-form event (its chain fields left out)."""
    payload = audit_event_to_json(unlinked(event))
    for name in ("stream_id", "prev_hash", "hash"):
        del payload[name]
    return dumps(payload) + b"\n"


def rejected_line(record: Rejected) -> bytes:
    """The line of an event to dead-letter, in ASCII: its payload may hold anything."""
    return dumps_ascii({"rejected": [record.event_id, record.payload, record.error]}) + b"\n"


def decode_line(line: bytes) -> AuditEvent | Rejected | BrokenLine:
    if is_raw(line):  # only the writer process's pipe carries these
        return BrokenLine(_withheld_text(line), "a raw decision line outside the writer process's pipe")
    try:
        payload: Any = loads(line)
        if line.startswith(_REJECTED):
            event_id, letter, error = payload["rejected"]
            return Rejected(str(event_id), dict(letter), str(error))
        return audit_event_from_json(payload)
    except (ValueError, TypeError, KeyError) as exc:
        text = line.decode("utf-8", "replace").rstrip("\n")
        return BrokenLine(text, f"unreadable line: {type(exc).__name__}: {exc}")


async def decode_lines(lines: Sequence[bytes]) -> list[AuditEvent | Rejected | BrokenLine]:
    """`decode_line` of each line, `DECODE_SLICE` lines at a time with a yield to the
    event loop between slices: decoding a whole batch at once would hold the loop, and
    the requests waiting on it, for as long as thousands of lines take."""
    decoded: list[AuditEvent | Rejected | BrokenLine] = []
    for start in range(0, len(lines), DECODE_SLICE):
        if start:
            await asyncio.sleep(0)
        decoded += [decode_line(line) for line in lines[start : start + DECODE_SLICE]]
    return decoded


__all__ = [
    "DECODE_SLICE",
    "BrokenLine",
    "Rejected",
    "decode_line",
    "decode_lines",
    "decode_raw",
    "encode_event",
    "event_line",
    "is_raw",
    "new_event_id",
    "raw_line",
    "record_body",
    "record_shape",
    "rejected_line",
    "rejected_payload",
    "rejection",
    "to_audit_event",
    "withheld",
]
