"""One ``Protocol`` per aggregate: the only view of storage the server has.

Conventions shared by every store:

- methods are coroutines (see docs/architecture.md, "Storage: sync or async");
- ``get*`` returns the record or raises :class:`~stores.NotFound`; ``find*`` returns
  ``None`` (or an empty list) instead;
- ``create``/``add`` raise :class:`~stores.Conflict` when the key is taken and
  :class:`~stores.NotFound` when the user the record belongs to does not exist;
- every ``now`` is passed by the caller: stores never read the clock;
- an operation that writes several rows does so in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

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
)

__all__ = [
    "AuditDeadLetterStore",
    "AuditEventStore",
    "ConsentStore",
    "CredentialStore",
    "DecisionRecordStore",
    "RefreshTokenStore",
    "RevocationStore",
    "SessionStore",
    "SigningKeyStore",
    "UserStore",
]


class UserStore(Protocol):
    async def create(self, user: User) -> User:
        """Insert a user; ``Conflict`` if the id or the email is taken."""
        ...

    async def get(self, user_id: str) -> User: ...

    async def get_by_email(self, email: str) -> User:
        """Exact match: the caller normalises emails before storing and looking up."""
        ...

    async def update(self, user: User) -> User:
        """Replace every field but ``id`` and ``created_at``; ``Conflict`` on a taken email."""
        ...

    async def erase(self, user_id: str) -> dict[str, int]:
        """Delete the user and every row that belongs to them, in one transaction.

        Returns the number of rows deleted per table, e.g. ``{"users": 1, "sessions": 2,
        "refresh_tokens": 3, "consent_records": 1, "verifiable_credentials": 0}``.
        Audit events hold only a pseudonymous ``subject_ref`` and are kept.
        """
        ...


class SessionStore(Protocol):
    async def create(self, session: Session) -> Session: ...

    async def get(self, session_id: str) -> Session: ...

    async def set_status(self, session_id: str, status: str, expected: str | None = None) -> Session:
        """Set the session's status. With `expected`, only when it currently has that
        status (a compare-and-set: of two concurrent calls exactly one wins), else
        ``Conflict``. ``NotFound`` when there is no such session."""
        ...

    async def list_for_user(self, user_id: str) -> list[Session]:
        """The user's sessions, oldest first."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete sessions (and their refresh tokens) with ``expires_at <= now``."""
        ...


class RefreshTokenStore(Protocol):
    async def create(self, token: RefreshToken) -> RefreshToken:
        """``NotFound`` when the user or the session does not exist."""
        ...

    async def get(self, token_hash: str) -> RefreshToken: ...

    async def rotate(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> RefreshToken:
        """Mark the token used and insert its successor (same family, user, session,
        client and scope), in one transaction.

        Raises ``NotFound`` for an unknown hash and ``Conflict`` when the token was
        already used or revoked, so of two concurrent rotations exactly one wins and the
        loser can treat it as reuse. Expiry is the caller's check.
        """
        ...

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every not yet revoked token of the family; returns how many."""
        ...

    async def revoke_for_session(self, session_id: str, now: datetime) -> int: ...

    async def revoke_for_user(self, user_id: str, now: datetime) -> int: ...

    async def purge_expired(self, now: datetime) -> int: ...


class RevocationStore(Protocol):
    """Revoked access tokens (by ``jti``), sessions, and users' "not before" instants.

    Revocations do not reference users: they must outlive an erased user's tokens.
    """

    async def revoke(self, revocation: TokenRevocation) -> None:
        """Record a revocation; revoking the same key again keeps the later
        ``not_before`` and ``expires_at``."""
        ...

    async def is_revoked(
        self,
        *,
        jti: str | None,
        session_id: str | None,
        user_id: str | None,
        issued_at: datetime,
        now: datetime,
    ) -> bool:
        """Whether a token with these claims is revoked (one query for all three kinds).

        A user revocation rejects tokens issued strictly before its ``not_before``;
        entries whose ``expires_at <= now`` no longer count.
        """
        ...

    async def list_active(self, now: datetime) -> list[TokenRevocation]:
        """Every revocation that still counts, e.g. to warm an in-process cache."""
        ...

    async def purge_expired(self, now: datetime) -> int: ...


class ConsentStore(Protocol):
    async def grant(self, consent: Consent) -> Consent:
        """Grant or renew: one record per (user, purpose). Renewing keeps the stored ``id``,
        takes ``granted_at`` and ``expires_at`` from ``consent`` and clears ``revoked_at``.
        Returns the record as stored."""
        ...

    async def revoke(self, user_id: str, purposes: Sequence[str], now: datetime) -> list[Consent]:
        """Revoke the user's not yet revoked consents for ``purposes``; returns those it
        revoked (empty when there was nothing to revoke: the operation is idempotent)."""
        ...

    async def find(self, user_id: str, purpose: str) -> Consent | None: ...

    async def list_for_user(self, user_id: str) -> list[Consent]:
        """The user's consents ordered by purpose."""
        ...


class CredentialStore(Protocol):
    async def add(self, credential: Credential) -> Credential: ...

    async def get(self, credential_id: str) -> Credential: ...

    async def list_for_user(self, user_id: str) -> list[Credential]:
        """The user's credentials, oldest first."""
        ...

    async def revoke(self, credential_id: str, now: datetime) -> Credential:
        """Revoke; revoking again keeps the first ``revoked_at``."""
        ...


class AuditEventStore(Protocol):
    """The append-only audit trail: no method changes or deletes an event."""

    async def append(self, events: Sequence[AuditEvent], *, all_or_nothing: bool = False) -> int:
        """Insert a batch in one round trip and one transaction; events whose id is
        already stored are skipped (idempotent retries). Returns how many were new.

        With ``all_or_nothing`` a batch in which any event is already stored is rolled
        back whole and raises ``Conflict``: the chained audit writer then leaves those
        out and links the rest again, so no stored hash points at a skipped event.

        An event carrying a ``record`` stores it as a decision record in the same
        transaction, only when the event itself is new."""
        ...

    async def stored_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are stored (one query)."""
        ...

    async def get(self, event_id: str) -> AuditEvent: ...

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
        """Events matching every given filter, in insertion order (``seq``).

        ``since`` is inclusive and ``until`` exclusive on ``timestamp``; ``after_seq``
        pages through the trail."""
        ...

    async def last_in_stream(self, stream_id: str) -> AuditEvent | None:
        """The most recently inserted event of a writer stream (the chain's head)."""
        ...

    async def count(self) -> int: ...


class DecisionRecordStore(Protocol):
    """Decision records (docs/impact.md), written by ``AuditEventStore.append`` with their
    events. Unlike the trail they may be deleted: retention and a subject's erasure."""

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
        """Records matching every given filter, by ``decision_id`` (which sorts by time).

        ``since`` is inclusive and ``until`` exclusive on ``recorded_at``; ``after`` (a
        decision id) pages through them."""
        ...

    async def delete_subject(self, subject_ref: str) -> int:
        """Delete every record of a subject; returns how many."""
        ...

    async def purge(self, before: datetime) -> int:
        """Delete the records made before ``before``; returns how many."""
        ...

    async def count(self) -> int: ...


class AuditDeadLetterStore(Protocol):
    """Events the audit writer could never store; append-only like the trail itself."""

    async def add(self, dead_letter: DeadLetter) -> DeadLetter:
        """Store it and return it with its assigned ``id``."""
        ...

    async def get(self, dead_letter_id: int) -> DeadLetter: ...

    async def list_letters(
        self, *, pending_only: bool = False, limit: int | None = None
    ) -> list[DeadLetter]:
        """Dead letters by ``id``; ``pending_only`` leaves out those whose event has since
        been stored in the audit trail (replayed)."""
        ...

    async def count(self) -> int: ...


class SigningKeyStore(Protocol):
    async def add(self, key: SigningKey) -> SigningKey: ...

    async def get(self, kid: str) -> SigningKey: ...

    async def current(self) -> SigningKey | None:
        """The newest key that is not retired: the one that signs."""
        ...

    async def list_keys(self, *, published_at: datetime | None = None) -> list[SigningKey]:
        """Keys newest first; with ``published_at``, only those still in the JWKS then
        (``not_after`` unset or later)."""
        ...

    async def retire(
        self, kid: str, *, retired_at: datetime, not_after: datetime | None
    ) -> SigningKey:
        """Stop signing with the key and unpublish it at ``not_after``."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete keys whose ``not_after <= now``."""
        ...
