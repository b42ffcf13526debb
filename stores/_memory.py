"""The in-memory implementation of every store protocol: the test double.

It keeps the contract of the SQL stores (the same errors, orderings, cascades and
idempotence; the contract tests run against all three), but nothing survives the
process. The stores of one :func:`memory_stores` call share one state, as the tables of
one database do. Each method runs without awaiting, so it is atomic on the event loop.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from stores._errors import Conflict, NotFound
from stores._records import (
    AuditEvent,
    Consent,
    Credential,
    DeadLetter,
    DecisionRecord,
    RefreshToken,
    Session,
    SigningKey,
    TokenRevocation,
    User,
    as_utc,
    check_limit,
    decision_record_of,
)

__all__ = [
    "MemoryAuditDeadLetterStore",
    "MemoryAuditEventStore",
    "MemoryConsentStore",
    "MemoryCredentialStore",
    "MemoryDecisionRecordStore",
    "MemoryRefreshTokenStore",
    "MemoryRevocationStore",
    "MemorySessionStore",
    "MemorySigningKeyStore",
    "MemoryState",
    "MemoryUserStore",
]


@dataclass
class MemoryState:
    """The "tables" of one in-memory database."""

    users: dict[str, User] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    revocations: dict[tuple[str, str], TokenRevocation] = field(default_factory=dict)
    consents: dict[tuple[str, str], Consent] = field(default_factory=dict)
    credentials: dict[str, Credential] = field(default_factory=dict)
    audit_events: dict[str, AuditEvent] = field(default_factory=dict)
    decision_records: dict[str, DecisionRecord] = field(default_factory=dict)
    dead_letters: dict[int, DeadLetter] = field(default_factory=dict)
    signing_keys: dict[str, SigningKey] = field(default_factory=dict)
    last_audit_seq: int = 0
    last_dead_letter_id: int = 0

    def require_user(self, user_id: str) -> None:
        """The foreign key check of the SQL schema."""
        if user_id not in self.users:
            raise NotFound(f"user {user_id!r} does not exist")


_K = TypeVar("_K")
_V = TypeVar("_V")


def _delete_matching(table: dict[_K, _V], doomed: Callable[[_V], bool]) -> list[_V]:
    """Remove the rows ``doomed`` selects; returns them."""
    keys = [key for key, row in table.items() if doomed(row)]
    return [table.pop(key) for key in keys]


class MemoryUserStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def _email_taken(self, email: str, by_other_than: str | None = None) -> bool:
        return any(u.email == email and u.id != by_other_than for u in self._state.users.values())

    async def create(self, user: User) -> User:
        if user.id in self._state.users or self._email_taken(user.email):
            raise Conflict("a user with this id or email exists")
        self._state.users[user.id] = user
        return user

    async def get(self, user_id: str) -> User:
        try:
            return self._state.users[user_id]
        except KeyError:
            raise NotFound(f"user {user_id!r} not found") from None

    async def get_by_email(self, email: str) -> User:
        for user in self._state.users.values():
            if user.email == email:
                return user
        raise NotFound("no user has this email")

    async def update(self, user: User) -> User:
        stored = await self.get(user.id)
        if self._email_taken(user.email, by_other_than=user.id):
            raise Conflict("another user has this email")
        updated = dataclasses.replace(user, created_at=stored.created_at)
        self._state.users[user.id] = updated
        return updated

    async def erase(self, user_id: str) -> dict[str, int]:
        state = self._state
        if user_id not in state.users:
            raise NotFound(f"user {user_id!r} not found")
        tables: dict[str, dict[Any, Any]] = {
            "refresh_tokens": state.refresh_tokens,
            "sessions": state.sessions,
            "consent_records": state.consents,
            "verifiable_credentials": state.credentials,
        }
        counts = {
            name: len(_delete_matching(table, lambda row: row.user_id == user_id))
            for name, table in tables.items()
        }
        del state.users[user_id]
        counts["users"] = 1
        return counts


class MemorySessionStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def create(self, session: Session) -> Session:
        if session.id in self._state.sessions:
            raise Conflict(f"session {session.id!r} exists")
        self._state.require_user(session.user_id)
        self._state.sessions[session.id] = session
        return session

    async def get(self, session_id: str) -> Session:
        try:
            return self._state.sessions[session_id]
        except KeyError:
            raise NotFound(f"session {session_id!r} not found") from None

    async def set_status(self, session_id: str, status: str, expected: str | None = None) -> Session:
        current = await self.get(session_id)
        if expected is not None and current.status != expected:
            raise Conflict(f"session {session_id!r} is {current.status!r}, not {expected!r}")
        updated = dataclasses.replace(current, status=status)
        self._state.sessions[session_id] = updated
        return updated

    async def list_for_user(self, user_id: str) -> list[Session]:
        found = [s for s in self._state.sessions.values() if s.user_id == user_id]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    async def purge_expired(self, now: datetime) -> int:
        now = as_utc(now)
        expired = {
            s.id for s in _delete_matching(self._state.sessions, lambda s: s.expires_at <= now)
        }
        _delete_matching(self._state.refresh_tokens, lambda t: t.session_id in expired)
        return len(expired)


class MemoryRefreshTokenStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def _insert(self, token: RefreshToken) -> None:
        if token.token_hash in self._state.refresh_tokens:
            raise Conflict("refresh token hash exists")
        self._state.require_user(token.user_id)
        if token.session_id not in self._state.sessions:
            raise NotFound(f"session {token.session_id!r} does not exist")
        self._state.refresh_tokens[token.token_hash] = token

    async def create(self, token: RefreshToken) -> RefreshToken:
        self._insert(token)
        return token

    async def get(self, token_hash: str) -> RefreshToken:
        try:
            return self._state.refresh_tokens[token_hash]
        except KeyError:
            raise NotFound("refresh token not found") from None

    async def rotate(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> RefreshToken:
        old = await self.get(token_hash)
        if old.used_at is not None or old.revoked_at is not None:
            raise Conflict("refresh token already used or revoked")
        new = RefreshToken(
            token_hash=new_token_hash,
            family_id=old.family_id,
            user_id=old.user_id,
            session_id=old.session_id,
            client_id=old.client_id,
            scope=old.scope,
            created_at=now,
            expires_at=expires_at,
        )
        self._insert(new)  # first: a conflict must leave the old token unused
        self._state.refresh_tokens[token_hash] = dataclasses.replace(old, used_at=now)
        return new

    def _revoke(self, tokens: Iterable[RefreshToken], now: datetime) -> int:
        now = as_utc(now)
        targets = [t for t in tokens if t.revoked_at is None]
        for token in targets:
            self._state.refresh_tokens[token.token_hash] = dataclasses.replace(
                token, revoked_at=now
            )
        return len(targets)

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        tokens = self._state.refresh_tokens.values()
        return self._revoke([t for t in tokens if t.family_id == family_id], now)

    async def revoke_for_session(self, session_id: str, now: datetime) -> int:
        tokens = self._state.refresh_tokens.values()
        return self._revoke([t for t in tokens if t.session_id == session_id], now)

    async def revoke_for_user(self, user_id: str, now: datetime) -> int:
        tokens = self._state.refresh_tokens.values()
        return self._revoke([t for t in tokens if t.user_id == user_id], now)

    async def purge_expired(self, now: datetime) -> int:
        now = as_utc(now)
        return len(_delete_matching(self._state.refresh_tokens, lambda t: t.expires_at <= now))


class MemoryRevocationStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def revoke(self, revocation: TokenRevocation) -> None:
        key = (revocation.kind, revocation.key)
        stored = self._state.revocations.get(key)
        if stored is not None:
            later_not_before = stored.not_before
            if revocation.not_before and stored.not_before:
                later_not_before = max(revocation.not_before, stored.not_before)
            revocation = dataclasses.replace(
                stored,
                not_before=later_not_before,
                expires_at=max(revocation.expires_at, stored.expires_at),
            )
        self._state.revocations[key] = revocation

    async def is_revoked(
        self,
        *,
        jti: str | None,
        session_id: str | None,
        user_id: str | None,
        issued_at: datetime,
        now: datetime,
    ) -> bool:
        issued_at, now = as_utc(issued_at), as_utc(now)
        revocations = self._state.revocations
        candidates = [
            revocations.get(("jti", jti)) if jti is not None else None,
            revocations.get(("session", session_id)) if session_id is not None else None,
        ]
        user = revocations.get(("user", user_id)) if user_id is not None else None
        if user is not None and user.not_before is not None and user.not_before > issued_at:
            candidates.append(user)
        return any(r is not None and r.expires_at > now for r in candidates)

    async def list_active(self, now: datetime) -> list[TokenRevocation]:
        now = as_utc(now)
        active = [r for r in self._state.revocations.values() if r.expires_at > now]
        return sorted(active, key=lambda r: (r.kind, r.key))

    async def purge_expired(self, now: datetime) -> int:
        now = as_utc(now)
        return len(_delete_matching(self._state.revocations, lambda r: r.expires_at <= now))


class MemoryConsentStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def grant(self, consent: Consent) -> Consent:
        key = (consent.user_id, consent.purpose)
        stored = self._state.consents.get(key)
        if stored is None:
            if any(c.id == consent.id for c in self._state.consents.values()):
                raise Conflict(f"consent {consent.id!r} exists")
            self._state.require_user(consent.user_id)
            granted = dataclasses.replace(consent, revoked_at=None)
        else:
            granted = dataclasses.replace(
                stored,
                granted_at=consent.granted_at,
                expires_at=consent.expires_at,
                revoked_at=None,
            )
        self._state.consents[key] = granted
        return granted

    async def revoke(self, user_id: str, purposes: Sequence[str], now: datetime) -> list[Consent]:
        now = as_utc(now)
        revoked: list[Consent] = []
        for purpose in sorted(set(purposes)):
            stored = self._state.consents.get((user_id, purpose))
            if stored is not None and stored.revoked_at is None:
                stored = dataclasses.replace(stored, revoked_at=now)
                self._state.consents[(user_id, purpose)] = stored
                revoked.append(stored)
        return revoked

    async def find(self, user_id: str, purpose: str) -> Consent | None:
        return self._state.consents.get((user_id, purpose))

    async def list_for_user(self, user_id: str) -> list[Consent]:
        found = [c for c in self._state.consents.values() if c.user_id == user_id]
        return sorted(found, key=lambda c: c.purpose)


def _detached_credential(credential: Credential) -> Credential:
    # A copy of the JSON, as a database would hand out, so callers cannot edit the store.
    return dataclasses.replace(credential, claims=copy.deepcopy(credential.claims))


class MemoryCredentialStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def add(self, credential: Credential) -> Credential:
        if credential.id in self._state.credentials:
            raise Conflict(f"credential {credential.id!r} exists")
        self._state.require_user(credential.user_id)
        self._state.credentials[credential.id] = _detached_credential(credential)
        return credential

    async def get(self, credential_id: str) -> Credential:
        try:
            return _detached_credential(self._state.credentials[credential_id])
        except KeyError:
            raise NotFound(f"credential {credential_id!r} not found") from None

    async def list_for_user(self, user_id: str) -> list[Credential]:
        found = [c for c in self._state.credentials.values() if c.user_id == user_id]
        return [_detached_credential(c) for c in sorted(found, key=lambda c: (c.issued_at, c.id))]

    async def revoke(self, credential_id: str, now: datetime) -> Credential:
        stored = await self.get(credential_id)
        if stored.revoked_at is None:
            stored = dataclasses.replace(stored, revoked_at=now)
            self._state.credentials[credential_id] = stored
        return _detached_credential(stored)


class MemoryAuditEventStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def append(self, events: Sequence[AuditEvent], *, all_or_nothing: bool = False) -> int:
        stored = self._state.audit_events
        if all_or_nothing:
            taken = [e.id for e in events if e.id in stored]
            repeated = len({e.id for e in events}) != len(events)
            if taken or repeated:
                raise Conflict(f"{len(taken)} of {len(events)} audit events already stored")
        new = 0
        for event in events:
            if event.id not in stored:
                self._state.last_audit_seq += 1
                stored[event.id] = dataclasses.replace(event, seq=self._state.last_audit_seq, record=None)
                new += 1
                record = decision_record_of(event)
                if record is not None:
                    self._state.decision_records.setdefault(record.decision_id, record)
        return new

    async def get(self, event_id: str) -> AuditEvent:
        try:
            return self._state.audit_events[event_id]
        except KeyError:
            raise NotFound(f"audit event {event_id!r} not found") from None

    async def query(
        self,
        *,
        subject_ref: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        stream_id: str | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        check_limit(limit)
        since = None if since is None else as_utc(since)
        until = None if until is None else as_utc(until)
        found = [
            e
            for e in self._state.audit_events.values()  # insertion order is seq order
            if (subject_ref is None or e.subject_ref == subject_ref)
            and (action is None or e.action == action)
            and (since is None or e.timestamp >= since)
            and (until is None or e.timestamp < until)
            and (stream_id is None or e.stream_id == stream_id)
            and (after_seq is None or (e.seq or 0) > after_seq)
        ]
        return found if limit is None else found[:limit]

    async def stored_ids(self, event_ids: Sequence[str]) -> set[str]:
        return {event_id for event_id in event_ids if event_id in self._state.audit_events}

    async def last_in_stream(self, stream_id: str) -> AuditEvent | None:
        in_stream = [e for e in self._state.audit_events.values() if e.stream_id == stream_id]
        return in_stream[-1] if in_stream else None

    async def count(self) -> int:
        return len(self._state.audit_events)


def _detached_letter(dead_letter: DeadLetter) -> DeadLetter:
    return dataclasses.replace(dead_letter, payload=copy.deepcopy(dead_letter.payload))


class MemoryDecisionRecordStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def query(
        self,
        *,
        purpose: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | None = None,
        subject_ref: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[DecisionRecord]:
        check_limit(limit)
        since = None if since is None else as_utc(since)
        until = None if until is None else as_utc(until)
        found = sorted(
            (
                r
                for r in self._state.decision_records.values()
                if (purpose is None or r.purpose == purpose)
                and (since is None or r.recorded_at >= since)
                and (until is None or r.recorded_at < until)
                and (status is None or r.status == status)
                and (subject_ref is None or r.subject_ref == subject_ref)
                and (after is None or r.decision_id > after)
            ),
            key=lambda r: r.decision_id,
        )
        return found if limit is None else found[:limit]

    def _delete(self, doomed: Callable[[DecisionRecord], bool]) -> int:
        records = self._state.decision_records
        ids = [decision_id for decision_id, record in records.items() if doomed(record)]
        for decision_id in ids:
            del records[decision_id]
        return len(ids)

    async def delete_subject(self, subject_ref: str) -> int:
        return self._delete(lambda r: r.subject_ref == subject_ref)

    async def purge(self, before: datetime) -> int:
        before = as_utc(before)
        return self._delete(lambda r: r.recorded_at < before)

    async def count(self) -> int:
        return len(self._state.decision_records)


class MemoryAuditDeadLetterStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    async def add(self, dead_letter: DeadLetter) -> DeadLetter:
        self._state.last_dead_letter_id += 1
        stored = dataclasses.replace(
            _detached_letter(dead_letter), id=self._state.last_dead_letter_id
        )
        self._state.dead_letters[stored.id or 0] = stored
        return _detached_letter(stored)

    async def get(self, dead_letter_id: int) -> DeadLetter:
        try:
            return _detached_letter(self._state.dead_letters[dead_letter_id])
        except KeyError:
            raise NotFound(f"dead letter {dead_letter_id} not found") from None

    async def list_letters(
        self, *, pending_only: bool = False, limit: int | None = None
    ) -> list[DeadLetter]:
        check_limit(limit)
        letters = [
            _detached_letter(d)
            for d in self._state.dead_letters.values()
            if not (pending_only and d.event_id in self._state.audit_events)
        ]
        return letters if limit is None else letters[:limit]

    async def count(self) -> int:
        return len(self._state.dead_letters)


def _detached_key(key: SigningKey) -> SigningKey:
    return dataclasses.replace(key, public_jwk=copy.deepcopy(key.public_jwk))


class MemorySigningKeyStore:
    def __init__(self, state: MemoryState) -> None:
        self._state = state

    def _newest_first(self, keys: Iterable[SigningKey]) -> list[SigningKey]:
        return [_detached_key(k) for k in sorted(keys, key=lambda k: (k.created_at, k.kid))][::-1]

    async def add(self, key: SigningKey) -> SigningKey:
        if key.kid in self._state.signing_keys:
            raise Conflict(f"signing key {key.kid!r} exists")
        self._state.signing_keys[key.kid] = _detached_key(key)
        return key

    async def get(self, kid: str) -> SigningKey:
        try:
            return _detached_key(self._state.signing_keys[kid])
        except KeyError:
            raise NotFound(f"signing key {kid!r} not found") from None

    async def current(self) -> SigningKey | None:
        active = self._newest_first(
            k for k in self._state.signing_keys.values() if k.retired_at is None
        )
        return active[0] if active else None

    async def list_keys(self, *, published_at: datetime | None = None) -> list[SigningKey]:
        keys = list(self._state.signing_keys.values())
        if published_at is not None:
            at = as_utc(published_at)
            keys = [k for k in keys if k.not_after is None or k.not_after > at]
        return self._newest_first(keys)

    async def retire(
        self, kid: str, *, retired_at: datetime, not_after: datetime | None
    ) -> SigningKey:
        retired = dataclasses.replace(
            await self.get(kid), retired_at=retired_at, not_after=not_after
        )
        self._state.signing_keys[kid] = retired
        return _detached_key(retired)

    async def purge_expired(self, now: datetime) -> int:
        now = as_utc(now)
        expired = _delete_matching(
            self._state.signing_keys, lambda k: k.not_after is not None and k.not_after <= now
        )
        return len(expired)
