"""The records the stores hold: frozen, slotted dataclasses with no behaviour.

Every timestamp is timezone-aware; records normalise them to UTC when built, so the
three backends return equal records and a naive datetime is refused at construction
(a ``ValueError``) instead of being stored with a guessed zone.
Stores never read the clock: callers pass ``now``, which keeps expiry testable.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "AuditEvent",
    "Consent",
    "Credential",
    "DeadLetter",
    "DecisionRecord",
    "RefreshToken",
    "RevocationKind",
    "Session",
    "SigningKey",
    "TokenRevocation",
    "User",
    "audit_event_from_json",
    "audit_event_to_json",
]

RevocationKind = Literal["jti", "session", "user"]
"""What a revocation names: one access token, one session, or every token of a user."""


def as_utc(value: datetime, what: str = "datetime") -> datetime:
    """``value`` in UTC; a naive datetime is a ``ValueError`` naming ``what``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def check_limit(limit: int | None) -> None:
    """Refuse a negative limit the same way on every backend."""
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")


def _normalise_times(record: object) -> None:
    """Refuse naive datetimes and convert aware ones to UTC, in place (frozen-safe)."""
    for f in fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        if isinstance(value, datetime):
            object.__setattr__(record, f.name, as_utc(value, f"{type(record).__name__}.{f.name}"))


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    email: str
    created_at: datetime
    updated_at: datetime
    first_name: str | None = None
    last_name: str | None = None
    verified: bool = False

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    user_id: str
    client_id: str
    status: str
    created_at: datetime
    expires_at: datetime
    requested_scope: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshToken:
    """A refresh token as stored: only the hash of the opaque value, never the value."""

    token_hash: str
    family_id: str
    user_id: str
    session_id: str
    client_id: str
    created_at: datetime
    expires_at: datetime
    scope: tuple[str, ...] = ()
    used_at: datetime | None = None
    """Set when the token was rotated: presenting it again is reuse."""
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRevocation:
    """A revoked ``jti`` or session, or a user's "tokens issued before ``not_before``".

    ``expires_at`` is when the entry can be forgotten: the ``exp`` of the revoked token,
    or the moment every token the entry could reject has expired.
    """

    kind: RevocationKind
    key: str
    expires_at: datetime
    created_at: datetime
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("jti", "session", "user"):
            raise ValueError(f"unknown revocation kind {self.kind!r}")
        if (self.kind == "user") != (self.not_before is not None):
            raise ValueError("not_before is required for kind 'user' and only for it")
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    id: str
    user_id: str
    purpose: str
    granted_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    id: str
    type: str
    user_id: str
    issuer: str
    issued_at: datetime
    claims: dict[str, Any] = field(default_factory=dict)
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One audit event. ``seq`` is assigned by the store (insertion order) and is ``None``
    on an event that has not been stored; ``stream_id``, ``prev_hash`` and ``hash`` carry
    the tamper-evident chain of the audit writer."""

    id: str
    timestamp: datetime
    action: str
    subject_ref: str | None = None
    purpose: str | None = None
    decision: str | None = None
    reason: str | None = None
    request_id: str | None = None
    decision_id: str | None = None
    policy_revision: str | None = None
    stream_id: str | None = None
    prev_hash: str | None = None
    hash: str | None = None
    seq: int | None = None
    #: The decision record written with this `decision_made` event: its body
    #: (`DecisionRecord.body`) as JSON text, stored as it is (the writer neither parses
    #: nor re-encodes it), in the same transaction; not part of the event: not hashed,
    #: compared or read back.
    record: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # `timestamp` is the only datetime field: checked directly rather than through
        # fields() (an event is built per decision, on the request path); a timestamp
        # already in UTC (the publisher's own events) is kept as it is.
        moment = self.timestamp
        if isinstance(moment, datetime) and moment.tzinfo is not UTC:
            object.__setattr__(self, "timestamp", as_utc(moment, "AuditEvent.timestamp"))


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """What one decision was made on and what it answered, for replay (docs/impact.md).

    The columns repeat the decision's audit event; ``body`` holds the engine's input and
    the rest: ``facts`` (given to the engine, ``subject.sub`` as its ``subject_ref``),
    ``context`` (each sensitive field's value a keyed hash), ``conditions``, ``hashed``
    (the paths whose value is a hash), ``declared`` and ``fields`` (what the purpose could
    have been given), ``refused`` (a request refused before the engine decided) and
    ``shadow`` (the shadow set's outcome, when one ran). ``shadow`` the column is its
    agreement: ``same``, ``different`` or ``not_replayable``."""

    decision_id: str
    recorded_at: datetime
    purpose: str
    policy_revision: str
    status: str
    reason: str
    body: dict[str, Any]
    subject_ref: str | None = None
    shadow: str | None = None

    def __post_init__(self) -> None:
        # the one datetime, checked directly: replay reads records by the hundred thousand
        moment = self.recorded_at
        if moment.tzinfo is not UTC:
            object.__setattr__(self, "recorded_at", as_utc(moment, "DecisionRecord.recorded_at"))


def decision_record_of(event: AuditEvent) -> DecisionRecord | None:
    """The decision record an event carries (``record``), with the event's columns."""
    if event.record is None or event.decision_id is None:
        return None
    # as the SQL stores keep it: no NUL (PostgreSQL's jsonb refuses it)
    body: dict[str, Any] = json.loads(event.record.replace("\\u0000", "\\ufffd"))
    shadow = body.get("shadow")
    return DecisionRecord(
        decision_id=event.decision_id, recorded_at=event.timestamp, purpose=event.purpose or "",
        policy_revision=event.policy_revision or "", status=event.decision or "", reason=event.reason or "",
        body=body, subject_ref=event.subject_ref,
        shadow=shadow.get("agreement") if isinstance(shadow, dict) else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An audit event that could not be written, with the error; ``id`` is store-assigned."""

    event_id: str
    payload: dict[str, Any]
    error: str
    failed_at: datetime
    id: int | None = None

    def __post_init__(self) -> None:
        _normalise_times(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """A token signing key. ``retired_at``: no longer signs; ``not_after``: no longer
    published in the JWKS (every token it signed has expired)."""

    kid: str
    alg: str
    private_key_pem: str = field(repr=False)
    public_jwk: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    not_after: datetime | None = None

    def __post_init__(self) -> None:
        _normalise_times(self)


def audit_event_to_json(event: AuditEvent) -> dict[str, Any]:
    """The event as a JSON-ready mapping (timestamp in ISO-8601), e.g. a dead letter's
    payload; ``record`` only when the event carries one."""
    payload = {f.name: getattr(event, f.name) for f in fields(event) if f.name not in ("seq", "record")}
    payload["timestamp"] = event.timestamp.isoformat()
    if event.record is not None:
        payload["record"] = event.record
    return payload


def audit_event_from_json(payload: dict[str, Any]) -> AuditEvent:
    """Rebuild an event from :func:`audit_event_to_json` output (unknown keys are refused).
    Events of one timestamp text share one datetime (the audit writer decodes a
    second's events in a row, and its SQLite codec formats a time once for those)."""
    values = dict(payload)
    values["timestamp"] = _read_timestamp(values["timestamp"])
    return AuditEvent(**values)


_read_timestamp = functools.lru_cache(maxsize=8)(datetime.fromisoformat)
