"""The SQL implementation of every store protocol, shared by SQLite and PostgreSQL.

The queries use only SQL both dialects accept (``ON CONFLICT``, ``RETURNING``,
``LIMIT``) with ``%(name)s`` parameters; what differs between the dialects (value
encodings, driver errors, the thread or pool underneath) lives in the
:class:`~stores._database.Database` they run on. Every value is a bound parameter;
the only SQL assembled at run time is from the constant fragments in this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from stores._database import Codec, Database, Executor, Params, Row
from stores._errors import Conflict, InvalidRecord, NotFound
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
    check_limit,
)

__all__ = [
    "SqlAuditDeadLetterStore",
    "SqlAuditEventStore",
    "SqlConsentStore",
    "SqlCredentialStore",
    "SqlDecisionRecordStore",
    "SqlRefreshTokenStore",
    "SqlRevocationStore",
    "SqlSessionStore",
    "SqlSigningKeyStore",
    "SqlUserStore",
]


def _optional_time(codec: Codec, value: Any) -> datetime | None:
    return None if value is None else codec.read_time(value)


async def _fetch_existing(executor: Executor, sql: str, params: Params, missing: str) -> Row:
    row = await executor.fetch_one(sql, params)
    if row is None:
        raise NotFound(missing)
    return row


# -- users ------------------------------------------------------------------------------

_USER_COLUMNS = "id, email, first_name, last_name, verified, created_at, updated_at"

# Children first, the user last: explicit deletes give exact counts per table; the
# ON DELETE CASCADE foreign keys are the schema's own guarantee behind them.
_ERASE_STATEMENTS = (
    ("refresh_tokens", "DELETE FROM refresh_tokens WHERE user_id = %(user_id)s"),
    ("sessions", "DELETE FROM sessions WHERE user_id = %(user_id)s"),
    ("consent_records", "DELETE FROM consent_records WHERE user_id = %(user_id)s"),
    ("verifiable_credentials", "DELETE FROM verifiable_credentials WHERE user_id = %(user_id)s"),
    ("users", "DELETE FROM users WHERE id = %(user_id)s"),
)


class SqlUserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _params(self, user: User) -> Params:
        time = self._db.codec.time
        return {
            "id": user.id,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "verified": user.verified,
            "created_at": time(user.created_at),
            "updated_at": time(user.updated_at),
        }

    def _record(self, row: Row) -> User:
        codec = self._db.codec
        return User(
            id=row["id"],
            email=row["email"],
            first_name=row["first_name"],
            last_name=row["last_name"],
            verified=bool(row["verified"]),
            created_at=codec.read_time(row["created_at"]),
            updated_at=codec.read_time(row["updated_at"]),
        )

    async def create(self, user: User) -> User:
        await self._db.execute(
            f"INSERT INTO users ({_USER_COLUMNS}) VALUES (%(id)s, %(email)s, %(first_name)s,"
            " %(last_name)s, %(verified)s, %(created_at)s, %(updated_at)s)",
            self._params(user),
        )
        return user

    async def get(self, user_id: str) -> User:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = %(id)s",
            {"id": user_id},
            f"user {user_id!r} not found",
        )
        return self._record(row)

    async def get_by_email(self, email: str) -> User:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_USER_COLUMNS} FROM users WHERE email = %(email)s",
            {"email": email},
            "no user has this email",  # no address in messages: they end up in logs
        )
        return self._record(row)

    async def update(self, user: User) -> User:
        row = await _fetch_existing(
            self._db,
            "UPDATE users SET email = %(email)s, first_name = %(first_name)s,"
            " last_name = %(last_name)s, verified = %(verified)s, updated_at = %(updated_at)s"
            f" WHERE id = %(id)s RETURNING {_USER_COLUMNS}",
            self._params(user),
            f"user {user.id!r} not found",
        )
        return self._record(row)

    async def erase(self, user_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with self._db.transaction() as tx:
            for table, statement in _ERASE_STATEMENTS:
                counts[table] = await tx.execute(statement, {"user_id": user_id})
            if counts["users"] == 0:
                raise NotFound(f"user {user_id!r} not found")
        return counts


# -- sessions ---------------------------------------------------------------------------

_SESSION_COLUMNS = "id, user_id, client_id, requested_scope, status, created_at, expires_at"


class SqlSessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> Session:
        codec = self._db.codec
        return Session(
            id=row["id"],
            user_id=row["user_id"],
            client_id=row["client_id"],
            requested_scope=codec.read_texts(row["requested_scope"]),
            status=row["status"],
            created_at=codec.read_time(row["created_at"]),
            expires_at=codec.read_time(row["expires_at"]),
        )

    async def create(self, session: Session) -> Session:
        codec = self._db.codec
        await self._db.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (%(id)s, %(user_id)s,"
            " %(client_id)s, %(requested_scope)s, %(status)s, %(created_at)s, %(expires_at)s)",
            {
                "id": session.id,
                "user_id": session.user_id,
                "client_id": session.client_id,
                "requested_scope": codec.texts(session.requested_scope),
                "status": session.status,
                "created_at": codec.time(session.created_at),
                "expires_at": codec.time(session.expires_at),
            },
        )
        return session

    async def get(self, session_id: str) -> Session:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = %(id)s",
            {"id": session_id},
            f"session {session_id!r} not found",
        )
        return self._record(row)

    async def set_status(self, session_id: str, status: str, expected: str | None = None) -> Session:
        if expected is None:
            row = await _fetch_existing(
                self._db,
                f"UPDATE sessions SET status = %(status)s WHERE id = %(id)s RETURNING {_SESSION_COLUMNS}",
                {"id": session_id, "status": status},
                f"session {session_id!r} not found",
            )
            return self._record(row)
        found = await self._db.fetch_one(
            "UPDATE sessions SET status = %(status)s WHERE id = %(id)s AND status = %(expected)s"
            f" RETURNING {_SESSION_COLUMNS}",
            {"id": session_id, "status": status, "expected": expected},
        )
        if found is None:
            current = await self.get(session_id)  # NotFound when there is none
            raise Conflict(f"session {session_id!r} is {current.status!r}, not {expected!r}")
        return self._record(found)

    async def list_for_user(self, user_id: str) -> list[Session]:
        rows = await self._db.fetch_all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = %(user_id)s"
            " ORDER BY created_at, id",
            {"user_id": user_id},
        )
        return [self._record(row) for row in rows]

    async def purge_expired(self, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM sessions WHERE expires_at <= %(now)s", {"now": self._db.codec.time(now)}
        )


# -- refresh tokens ---------------------------------------------------------------------

_TOKEN_COLUMNS = (
    "token_hash, family_id, user_id, session_id, client_id, scope,"
    " created_at, expires_at, used_at, revoked_at"
)
_INSERT_TOKEN = (
    f"INSERT INTO refresh_tokens ({_TOKEN_COLUMNS}) VALUES (%(token_hash)s, %(family_id)s,"
    " %(user_id)s, %(session_id)s, %(client_id)s, %(scope)s, %(created_at)s, %(expires_at)s,"
    " %(used_at)s, %(revoked_at)s)"
)
_REVOKE_TOKENS_BY = {
    column: f"UPDATE refresh_tokens SET revoked_at = %(now)s"
    f" WHERE {column} = %(value)s AND revoked_at IS NULL"
    for column in ("family_id", "session_id", "user_id")
}


class SqlRefreshTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _params(self, token: RefreshToken) -> Params:
        codec = self._db.codec
        return {
            "token_hash": token.token_hash,
            "family_id": token.family_id,
            "user_id": token.user_id,
            "session_id": token.session_id,
            "client_id": token.client_id,
            "scope": codec.texts(token.scope),
            "created_at": codec.time(token.created_at),
            "expires_at": codec.time(token.expires_at),
            "used_at": codec.time(token.used_at),
            "revoked_at": codec.time(token.revoked_at),
        }

    def _record(self, row: Row) -> RefreshToken:
        codec = self._db.codec
        return RefreshToken(
            token_hash=row["token_hash"],
            family_id=row["family_id"],
            user_id=row["user_id"],
            session_id=row["session_id"],
            client_id=row["client_id"],
            scope=codec.read_texts(row["scope"]),
            created_at=codec.read_time(row["created_at"]),
            expires_at=codec.read_time(row["expires_at"]),
            used_at=_optional_time(codec, row["used_at"]),
            revoked_at=_optional_time(codec, row["revoked_at"]),
        )

    async def create(self, token: RefreshToken) -> RefreshToken:
        await self._db.execute(_INSERT_TOKEN, self._params(token))
        return token

    async def get(self, token_hash: str) -> RefreshToken:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_TOKEN_COLUMNS} FROM refresh_tokens WHERE token_hash = %(token_hash)s",
            {"token_hash": token_hash},
            "refresh token not found",
        )
        return self._record(row)

    async def rotate(
        self, token_hash: str, *, new_token_hash: str, now: datetime, expires_at: datetime
    ) -> RefreshToken:
        async with self._db.transaction() as tx:
            # The conditions make the update the arbiter: of two concurrent rotations of
            # one token only one finds it unused.
            row = await tx.fetch_one(
                "UPDATE refresh_tokens SET used_at = %(now)s WHERE token_hash = %(token_hash)s"
                f" AND used_at IS NULL AND revoked_at IS NULL RETURNING {_TOKEN_COLUMNS}",
                {"token_hash": token_hash, "now": self._db.codec.time(now)},
            )
            if row is None:
                exists = await tx.fetch_one(
                    "SELECT 1 AS found FROM refresh_tokens WHERE token_hash = %(token_hash)s",
                    {"token_hash": token_hash},
                )
                if exists is None:
                    raise NotFound("refresh token not found")
                raise Conflict("refresh token already used or revoked")
            old = self._record(row)
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
            await tx.execute(_INSERT_TOKEN, self._params(new))
        return new

    async def _revoke_by(self, column: str, value: str, now: datetime) -> int:
        return await self._db.execute(
            _REVOKE_TOKENS_BY[column], {"value": value, "now": self._db.codec.time(now)}
        )

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        return await self._revoke_by("family_id", family_id, now)

    async def revoke_for_session(self, session_id: str, now: datetime) -> int:
        return await self._revoke_by("session_id", session_id, now)

    async def revoke_for_user(self, user_id: str, now: datetime) -> int:
        return await self._revoke_by("user_id", user_id, now)

    async def purge_expired(self, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM refresh_tokens WHERE expires_at <= %(now)s",
            {"now": self._db.codec.time(now)},
        )


# -- token revocations ------------------------------------------------------------------

_REVOCATION_COLUMNS = "kind, key, not_before, expires_at, created_at"


class SqlRevocationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> TokenRevocation:
        codec = self._db.codec
        return TokenRevocation(
            kind=row["kind"],
            key=row["key"],
            not_before=_optional_time(codec, row["not_before"]),
            expires_at=codec.read_time(row["expires_at"]),
            created_at=codec.read_time(row["created_at"]),
        )

    async def revoke(self, revocation: TokenRevocation) -> None:
        time = self._db.codec.time
        await self._db.execute(
            f"INSERT INTO token_revocations AS r ({_REVOCATION_COLUMNS}) VALUES (%(kind)s,"
            " %(key)s, %(not_before)s, %(expires_at)s, %(created_at)s)"
            " ON CONFLICT (kind, key) DO UPDATE SET"
            " not_before = CASE WHEN excluded.not_before > r.not_before"
            " THEN excluded.not_before ELSE r.not_before END,"
            " expires_at = CASE WHEN excluded.expires_at > r.expires_at"
            " THEN excluded.expires_at ELSE r.expires_at END",
            {
                "kind": revocation.kind,
                "key": revocation.key,
                "not_before": time(revocation.not_before),
                "expires_at": time(revocation.expires_at),
                "created_at": time(revocation.created_at),
            },
        )

    async def is_revoked(
        self,
        *,
        jti: str | None,
        session_id: str | None,
        user_id: str | None,
        issued_at: datetime,
        now: datetime,
    ) -> bool:
        time = self._db.codec.time
        row = await self._db.fetch_one(
            "SELECT 1 AS revoked FROM token_revocations WHERE expires_at > %(now)s AND ("
            " (kind = 'jti' AND key = %(jti)s)"
            " OR (kind = 'session' AND key = %(session_id)s)"
            " OR (kind = 'user' AND key = %(user_id)s AND not_before > %(issued_at)s))"
            " LIMIT 1",
            {
                "jti": jti,
                "session_id": session_id,
                "user_id": user_id,
                "issued_at": time(issued_at),
                "now": time(now),
            },
        )
        return row is not None

    async def list_active(self, now: datetime) -> list[TokenRevocation]:
        rows = await self._db.fetch_all(
            f"SELECT {_REVOCATION_COLUMNS} FROM token_revocations WHERE expires_at > %(now)s"
            " ORDER BY kind, key",
            {"now": self._db.codec.time(now)},
        )
        return [self._record(row) for row in rows]

    async def purge_expired(self, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM token_revocations WHERE expires_at <= %(now)s",
            {"now": self._db.codec.time(now)},
        )


# -- consents ---------------------------------------------------------------------------

_CONSENT_COLUMNS = "id, user_id, purpose, granted_at, expires_at, revoked_at"


class SqlConsentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> Consent:
        codec = self._db.codec
        return Consent(
            id=row["id"],
            user_id=row["user_id"],
            purpose=row["purpose"],
            granted_at=codec.read_time(row["granted_at"]),
            expires_at=_optional_time(codec, row["expires_at"]),
            revoked_at=_optional_time(codec, row["revoked_at"]),
        )

    async def grant(self, consent: Consent) -> Consent:
        time = self._db.codec.time
        row = await _fetch_existing(
            self._db,
            f"INSERT INTO consent_records ({_CONSENT_COLUMNS}) VALUES (%(id)s, %(user_id)s,"
            " %(purpose)s, %(granted_at)s, %(expires_at)s, NULL)"
            " ON CONFLICT (user_id, purpose) DO UPDATE SET granted_at = excluded.granted_at,"
            f" expires_at = excluded.expires_at, revoked_at = NULL RETURNING {_CONSENT_COLUMNS}",
            {
                "id": consent.id,
                "user_id": consent.user_id,
                "purpose": consent.purpose,
                "granted_at": time(consent.granted_at),
                "expires_at": time(consent.expires_at),
            },
            "the consent upsert returned no row",  # cannot happen: an upsert returns its row
        )
        return self._record(row)

    async def revoke(self, user_id: str, purposes: Sequence[str], now: datetime) -> list[Consent]:
        revoked: list[Consent] = []
        async with self._db.transaction() as tx:
            # One statement per purpose: "IN (list)" has no spelling both dialects share.
            for purpose in sorted(set(purposes)):
                row = await tx.fetch_one(
                    "UPDATE consent_records SET revoked_at = %(now)s WHERE user_id = %(user_id)s"
                    " AND purpose = %(purpose)s AND revoked_at IS NULL"
                    f" RETURNING {_CONSENT_COLUMNS}",
                    {"user_id": user_id, "purpose": purpose, "now": self._db.codec.time(now)},
                )
                if row is not None:
                    revoked.append(self._record(row))
        return revoked

    async def find(self, user_id: str, purpose: str) -> Consent | None:
        row = await self._db.fetch_one(
            f"SELECT {_CONSENT_COLUMNS} FROM consent_records"
            " WHERE user_id = %(user_id)s AND purpose = %(purpose)s",
            {"user_id": user_id, "purpose": purpose},
        )
        return None if row is None else self._record(row)

    async def list_for_user(self, user_id: str) -> list[Consent]:
        rows = await self._db.fetch_all(
            f"SELECT {_CONSENT_COLUMNS} FROM consent_records WHERE user_id = %(user_id)s"
            " ORDER BY purpose",
            {"user_id": user_id},
        )
        return [self._record(row) for row in rows]


# -- credentials ------------------------------------------------------------------------

_CREDENTIAL_COLUMNS = "id, type, user_id, issuer, issued_at, claims, revoked_at"


class SqlCredentialStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> Credential:
        codec = self._db.codec
        return Credential(
            id=row["id"],
            type=row["type"],
            user_id=row["user_id"],
            issuer=row["issuer"],
            issued_at=codec.read_time(row["issued_at"]),
            claims=codec.read_json(row["claims"]),
            revoked_at=_optional_time(codec, row["revoked_at"]),
        )

    async def add(self, credential: Credential) -> Credential:
        codec = self._db.codec
        await self._db.execute(
            f"INSERT INTO verifiable_credentials ({_CREDENTIAL_COLUMNS}) VALUES (%(id)s,"
            " %(type)s, %(user_id)s, %(issuer)s, %(issued_at)s, %(claims)s, %(revoked_at)s)",
            {
                "id": credential.id,
                "type": credential.type,
                "user_id": credential.user_id,
                "issuer": credential.issuer,
                "issued_at": codec.time(credential.issued_at),
                "claims": codec.json(credential.claims),
                "revoked_at": codec.time(credential.revoked_at),
            },
        )
        return credential

    async def get(self, credential_id: str) -> Credential:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_CREDENTIAL_COLUMNS} FROM verifiable_credentials WHERE id = %(id)s",
            {"id": credential_id},
            f"credential {credential_id!r} not found",
        )
        return self._record(row)

    async def list_for_user(self, user_id: str) -> list[Credential]:
        rows = await self._db.fetch_all(
            f"SELECT {_CREDENTIAL_COLUMNS} FROM verifiable_credentials"
            " WHERE user_id = %(user_id)s ORDER BY issued_at, id",
            {"user_id": user_id},
        )
        return [self._record(row) for row in rows]

    async def revoke(self, credential_id: str, now: datetime) -> Credential:
        row = await _fetch_existing(
            self._db,
            "UPDATE verifiable_credentials SET revoked_at = COALESCE(revoked_at, %(now)s)"
            f" WHERE id = %(id)s RETURNING {_CREDENTIAL_COLUMNS}",
            {"id": credential_id, "now": self._db.codec.time(now)},
            f"credential {credential_id!r} not found",
        )
        return self._record(row)


# -- audit events -----------------------------------------------------------------------

_EVENT_FIELDS = (
    "id",
    "timestamp",
    "subject_ref",
    "action",
    "purpose",
    "decision",
    "reason",
    "request_id",
    "decision_id",
    "policy_revision",
    "stream_id",
    "prev_hash",
    "hash",
)
_EVENT_COLUMNS = ", ".join(_EVENT_FIELDS)
# PostgreSQL: the whole batch as one statement over one JSON parameter, an array of
# rows in `_EVENT_FIELDS` order (one round trip; the client's work is one json.dumps in
# C, where adapting 13 column arrays would be psycopg's Python work, on the event loop). WITH ORDINALITY keeps the batch's order, which is the order of `seq`.
# The all-or-nothing form inserts nothing when any id is stored and has no ON CONFLICT:
# a concurrent duplicate makes the statement fail whole (Conflict) instead of being
# skipped inside a committed batch.
_EVENT_ROWS = (
    "SELECT "
    + ", ".join(
        f"(r.value->>{n})::{'timestamptz' if name == 'timestamp' else 'text'}"
        for n, name in enumerate(_EVENT_FIELDS)
    )
    + " FROM json_array_elements(%(batch)s::json) WITH ORDINALITY AS r(value, n) ORDER BY r.n"
)
_INSERT_EVENTS_JSON = (
    f"INSERT INTO audit_events ({_EVENT_COLUMNS}) {_EVENT_ROWS} ON CONFLICT (id) DO NOTHING"
)
_INSERT_NEW_EVENTS_JSON = (
    f"WITH batch ({_EVENT_COLUMNS}) AS MATERIALIZED ({_EVENT_ROWS})"
    f" INSERT INTO audit_events ({_EVENT_COLUMNS}) SELECT * FROM batch WHERE NOT EXISTS"
    " (SELECT 1 FROM audit_events AS e JOIN batch AS b ON e.id = b.id)"
)
# SQLite: one statement per batch too, for a reason of its own: sqlite3 releases the GIL
# around each statement step, and a thread that wants it back waits for the event loop
# to let go (up to the 5 ms switch interval under load). executemany steps once per row,
# so under load an in-process writer stored events far slower than the requests it
# audits arrived; one statement is one hand-off per batch. Rows as a multi-row VALUES
# with positional parameters, bound in C: cheaper than json_each, which parses each
# row's JSON once per column. The all-or-nothing
# form is one statement too, so it needs no BEGIN/COMMIT round trips.
_SQLITE_ROW = "(" + ", ".join("?" * len(_EVENT_FIELDS)) + ")"
#: Rows per statement: below SQLite's 32,766 bound parameters.
_SQLITE_ROWS_PER_STATEMENT = 2000  # x 14 with the ids


def _sqlite_insert(rows: int, all_or_nothing: bool) -> str:
    values = ", ".join([_SQLITE_ROW] * rows)
    if not all_or_nothing:
        return f"INSERT INTO audit_events ({_EVENT_COLUMNS}) VALUES {values} ON CONFLICT (id) DO NOTHING"
    # (an INSERT first: sqlite3 reports no row count for a statement that starts WITH;
    # the ids are bound a second time, after the rows)
    return (
        f"INSERT INTO audit_events ({_EVENT_COLUMNS}) SELECT * FROM (VALUES {values}) WHERE NOT EXISTS"
        f" (SELECT 1 FROM audit_events WHERE id IN ({', '.join('?' * rows)}))"
    )


_NUL_IN_TEXT = "PostgreSQL text fields cannot contain NUL (0x00) bytes"


def _require_all(all_or_nothing: bool, new: int, total: int) -> None:
    """An all-or-nothing append that inserted fewer than all met stored events."""
    if all_or_nothing and new != total:
        raise Conflict(f"{total - new} of {total} audit events already stored")


def _json_rows(events: Sequence[AuditEvent]) -> str:
    """`events` as the JSON parameter of `_INSERT_*_JSON`."""
    rows = [
        [e.id, e.timestamp.isoformat(), e.subject_ref, e.action, e.purpose, e.decision, e.reason,
         e.request_id, e.decision_id, e.policy_revision, e.stream_id, e.prev_hash, e.hash]
        for e in events
    ]
    text = _JSON_ROWS.encode(rows)
    # PostgreSQL text cannot hold NUL: refused here with the same error as a text
    # parameter (the server would answer "unsupported Unicode escape sequence").
    if "\\u0000" in text and any(
        isinstance(value, str) and "\x00" in value for row in rows for value in row
    ):
        raise InvalidRecord(_NUL_IN_TEXT)
    return text


_JSON_ROWS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# -- decision records, written with their events -------------------------------------

_RECORD_FIELDS = (
    "decision_id", "recorded_at", "purpose", "subject_ref", "policy_revision", "status", "reason", "shadow", "body",
)
_RECORD_COLUMNS = ", ".join(_RECORD_FIELDS)


def _record_rows(events: Sequence[AuditEvent], time: Callable[[datetime], Any]) -> list[list[Any]]:
    """The decision records `events` carry: [event id, then `_RECORD_FIELDS` but
    `shadow`, which SQL reads from the body] each, the time as `time` writes it."""
    return [
        [e.id, e.decision_id, time(e.timestamp), e.purpose, e.subject_ref, e.policy_revision,
         e.decision, e.reason, _storable_json(e.record)]
        for e in events
        if e.record is not None and e.decision_id is not None
    ]


def _storable_json(text: str) -> str:
    """`text` with NUL escapes made U+FFFD: PostgreSQL's jsonb refuses `\\u0000`, and a
    record must not cost its event (both backends store the same)."""
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


# PostgreSQL: the records ride in the events' statement, a data-modifying CTE that
# inserts those whose event the statement inserted (so a retried batch, or an event
# stored before its record was erased, writes none): one statement, one transaction.
_RECORD_ROWS = (
    "SELECT "
    + ", ".join(
        f"(r.value->>{n + 1})::{'timestamptz' if name == 'recorded_at' else 'text'}"
        for n, name in enumerate(_RECORD_FIELDS[:-2])
    )
    + ", (r.value->>8)::jsonb->'shadow'->>'agreement', (r.value->>8)::jsonb"
    " FROM json_array_elements(%(records)s::json) AS r(value)"
    " WHERE (r.value->>0) IN (SELECT id FROM inserted)"
)
_WITH_RECORDS = (
    f", recorded AS (INSERT INTO decision_records ({_RECORD_COLUMNS}) {_RECORD_ROWS}"
    " ON CONFLICT (decision_id) DO NOTHING)"
    " SELECT count(*) AS n FROM inserted"
)
_INSERT_EVENTS_AND_RECORDS = f"WITH inserted AS ({_INSERT_EVENTS_JSON} RETURNING id){_WITH_RECORDS}"
_INSERT_NEW_EVENTS_AND_RECORDS = (
    f"WITH batch ({_EVENT_COLUMNS}) AS MATERIALIZED ({_EVENT_ROWS}),"
    f" inserted AS (INSERT INTO audit_events ({_EVENT_COLUMNS}) SELECT * FROM batch WHERE NOT EXISTS"
    " (SELECT 1 FROM audit_events AS e JOIN batch AS b ON e.id = b.id) RETURNING id)"
    + _WITH_RECORDS
)
# SQLite: a statement of its own, before the events' in one transaction, inserting the
# records whose event is not stored yet. A row is a record's (`_record_rows`) and its
# shadow agreement (`_shadow_agreement`).
_SQLITE_RECORD_ROW = "(" + ", ".join("?" * (len(_RECORD_FIELDS) + 1)) + ")"


def _shadow_agreement(body: str) -> str | None:
    """The `shadow.agreement` of a record's body: read only when the text names `shadow`
    (no shadow set runs, most of the time), where SQL's `json_extract` would parse every
    body once more (the table's `json_valid` check already does)."""
    if '"shadow"' not in body:
        return None
    shadow = json.loads(body).get("shadow")
    agreement = shadow.get("agreement") if isinstance(shadow, dict) else None
    return agreement if isinstance(agreement, str) else None


def _sqlite_insert_records(rows: int, batch: int) -> str:
    """Insert `rows` records, each whose event is not stored yet; with `batch` (the
    all-or-nothing form, the batch's event ids bound after the rows) none at all when any
    of the batch's events is."""
    values = ", ".join([_SQLITE_RECORD_ROW] * rows)
    columns = ", ".join(f"column{n + 2}" for n in range(len(_RECORD_FIELDS) - 2))
    condition = (
        f"NOT EXISTS (SELECT 1 FROM audit_events WHERE id IN ({', '.join('?' * batch)}))" if batch
        else "NOT EXISTS (SELECT 1 FROM audit_events AS e WHERE e.id = v.column1)"
    )
    return (
        f"INSERT INTO decision_records ({_RECORD_COLUMNS}) SELECT {columns},"
        f" column10, column9 FROM (VALUES {values}) AS v"
        f" WHERE {condition} ON CONFLICT (decision_id) DO NOTHING"
    )


_IDS_PER_QUERY = 500  # below SQLite's limit of bound parameters per statement
_EVENT_FILTERS = {
    "subject_ref": "subject_ref = %(subject_ref)s",
    "action": "action = %(action)s",
    "since": "timestamp >= %(since)s",
    "until": "timestamp < %(until)s",
    "stream_id": "stream_id = %(stream_id)s",
    "after_seq": "seq > %(after_seq)s",
}


class SqlAuditEventStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> AuditEvent:
        values = {name: row[name] for name in _EVENT_FIELDS}
        values["timestamp"] = self._db.codec.read_time(row["timestamp"])
        return AuditEvent(seq=row["seq"], **values)

    async def append(self, events: Sequence[AuditEvent], *, all_or_nothing: bool = False) -> int:
        if not events:
            return 0
        postgresql = self._db.dialect == "postgresql"
        records = _record_rows(events, datetime.isoformat if postgresql else self._db.codec.time)
        if postgresql:
            batch = {"batch": _json_rows(events)}
            if records:
                sql = _INSERT_NEW_EVENTS_AND_RECORDS if all_or_nothing else _INSERT_EVENTS_AND_RECORDS
                row = await self._db.fetch_one(sql, {**batch, "records": _JSON_ROWS.encode(records)})
                new = int(row["n"]) if row else 0
            else:
                sql = _INSERT_NEW_EVENTS_JSON if all_or_nothing else _INSERT_EVENTS_JSON
                new = await self._db.execute(sql, batch)
        elif len(events) <= _SQLITE_ROWS_PER_STATEMENT:
            events_statement = (_sqlite_insert(len(events), all_or_nothing), self._flat(events, all_or_nothing))
            if not records:  # one statement: atomic on its own
                new = await self._db.execute(*events_statement)
            else:  # the records' statement first: with the events' own condition, both or neither insert
                params = [value for row in records for value in (*row, _shadow_agreement(row[-1]))]
                if all_or_nothing:
                    params += [e.id for e in events]
                records_statement = (_sqlite_insert_records(len(records), len(events) if all_or_nothing else 0), params)
                new = (await self._db.execute_all([records_statement, events_statement]))[-1]
        else:
            new = 0
            async with self._db.transaction() as tx:  # raising rolls the whole batch back
                # the records first: only those whose event is not stored yet
                for start in range(0, len(records), _SQLITE_ROWS_PER_STATEMENT):
                    part = records[start : start + _SQLITE_ROWS_PER_STATEMENT]
                    await tx.execute(_sqlite_insert_records(len(part), 0),
                                     [value for row in part for value in (*row, _shadow_agreement(row[-1]))])
                for start in range(0, len(events), _SQLITE_ROWS_PER_STATEMENT):
                    chunk = events[start : start + _SQLITE_ROWS_PER_STATEMENT]
                    new += await tx.execute(_sqlite_insert(len(chunk), all_or_nothing), self._flat(chunk, all_or_nothing))
                _require_all(all_or_nothing, new, len(events))  # inside: raising rolls it all back
            return new
        _require_all(all_or_nothing, new, len(events))
        return new

    def _flat(self, events: Sequence[AuditEvent], all_or_nothing: bool) -> list[Any]:
        """The positional parameters of `_sqlite_insert` for `events`."""
        time = self._db.codec.time
        flat = [
            value
            for e in events
            for value in (e.id, time(e.timestamp), e.subject_ref, e.action, e.purpose, e.decision, e.reason,
                          e.request_id, e.decision_id, e.policy_revision, e.stream_id, e.prev_hash, e.hash)
        ]
        if all_or_nothing:
            flat += [e.id for e in events]
        return flat

    async def stored_ids(self, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = sorted(set(event_ids))
        for start in range(0, len(unique), _IDS_PER_QUERY):
            chunk = unique[start : start + _IDS_PER_QUERY]
            # "IN (list)" with one named parameter per id: both dialects accept it.
            params = {f"id{n}": event_id for n, event_id in enumerate(chunk)}
            placeholders = ", ".join(f"%({name})s" for name in params)
            rows = await self._db.fetch_all(
                f"SELECT id FROM audit_events WHERE id IN ({placeholders})", params
            )
            found.update(row["id"] for row in rows)
        return found

    async def get(self, event_id: str) -> AuditEvent:
        row = await _fetch_existing(
            self._db,
            f"SELECT seq, {_EVENT_COLUMNS} FROM audit_events WHERE id = %(id)s",
            {"id": event_id},
            f"audit event {event_id!r} not found",
        )
        return self._record(row)

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
        time = self._db.codec.time
        given: dict[str, Any] = {
            "subject_ref": subject_ref,
            "action": action,
            "since": time(since),
            "until": time(until),
            "stream_id": stream_id,
            "after_seq": after_seq,
        }
        params = {name: value for name, value in given.items() if value is not None}
        sql = f"SELECT seq, {_EVENT_COLUMNS} FROM audit_events"
        if params:
            sql += " WHERE " + " AND ".join(_EVENT_FILTERS[name] for name in params)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT %(limit)s"
            params["limit"] = limit
        return [self._record(row) for row in await self._db.fetch_all(sql, params)]

    async def last_in_stream(self, stream_id: str) -> AuditEvent | None:
        row = await self._db.fetch_one(
            f"SELECT seq, {_EVENT_COLUMNS} FROM audit_events WHERE stream_id = %(stream_id)s"
            " ORDER BY seq DESC LIMIT 1",
            {"stream_id": stream_id},
        )
        return None if row is None else self._record(row)

    async def count(self) -> int:
        row = await self._db.fetch_one("SELECT count(*) AS n FROM audit_events")
        return int(row["n"]) if row else 0


# -- decision records -------------------------------------------------------------------

_RECORD_FILTERS = {
    "purpose": "purpose = %(purpose)s",
    "since": "recorded_at >= %(since)s",
    "until": "recorded_at < %(until)s",
    "status": "status = %(status)s",
    "subject_ref": "subject_ref = %(subject_ref)s",
    "after": "decision_id > %(after)s",
}


class SqlDecisionRecordStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> DecisionRecord:
        values = {name: row[name] for name in _RECORD_FIELDS}
        values["recorded_at"] = self._db.codec.read_time(row["recorded_at"])
        values["body"] = self._db.codec.read_json(row["body"])
        return DecisionRecord(**values)

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
        time = self._db.codec.time
        given: dict[str, Any] = {
            "purpose": purpose, "since": time(since), "until": time(until), "status": status,
            "subject_ref": subject_ref, "after": after,
        }
        params = {name: value for name, value in given.items() if value is not None}
        sql = f"SELECT {_RECORD_COLUMNS} FROM decision_records"
        if params:
            sql += " WHERE " + " AND ".join(_RECORD_FILTERS[name] for name in params)
        sql += " ORDER BY decision_id"
        if limit is not None:
            sql += " LIMIT %(limit)s"
            params["limit"] = limit
        return [self._record(row) for row in await self._db.fetch_all(sql, params)]

    async def delete_subject(self, subject_ref: str) -> int:
        return await self._db.execute(
            "DELETE FROM decision_records WHERE subject_ref = %(subject_ref)s", {"subject_ref": subject_ref}
        )

    async def purge(self, before: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM decision_records WHERE recorded_at < %(before)s", {"before": self._db.codec.time(before)}
        )

    async def count(self) -> int:
        row = await self._db.fetch_one("SELECT count(*) AS n FROM decision_records")
        return int(row["n"]) if row else 0


# -- audit dead letters -----------------------------------------------------------------

_DEAD_LETTER_COLUMNS = "id, event_id, payload, error, failed_at"


class SqlAuditDeadLetterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> DeadLetter:
        codec = self._db.codec
        return DeadLetter(
            id=row["id"],
            event_id=row["event_id"],
            payload=codec.read_json(row["payload"]),
            error=row["error"],
            failed_at=codec.read_time(row["failed_at"]),
        )

    async def add(self, dead_letter: DeadLetter) -> DeadLetter:
        codec = self._db.codec
        row = await _fetch_existing(
            self._db,
            "INSERT INTO audit_dead_letters (event_id, payload, error, failed_at)"
            " VALUES (%(event_id)s, %(payload)s, %(error)s, %(failed_at)s)"
            f" RETURNING {_DEAD_LETTER_COLUMNS}",
            {
                "event_id": dead_letter.event_id,
                "payload": codec.json(dead_letter.payload),
                "error": dead_letter.error,
                "failed_at": codec.time(dead_letter.failed_at),
            },
            "the dead letter insert returned no row",  # cannot happen: RETURNING of an insert
        )
        return self._record(row)

    async def get(self, dead_letter_id: int) -> DeadLetter:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM audit_dead_letters WHERE id = %(id)s",
            {"id": dead_letter_id},
            f"dead letter {dead_letter_id} not found",
        )
        return self._record(row)

    async def list_letters(
        self, *, pending_only: bool = False, limit: int | None = None
    ) -> list[DeadLetter]:
        check_limit(limit)
        sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM audit_dead_letters AS d"
        params: dict[str, Any] = {}
        if pending_only:
            sql += " WHERE NOT EXISTS (SELECT 1 FROM audit_events AS e WHERE e.id = d.event_id)"
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT %(limit)s"
            params["limit"] = limit
        return [self._record(row) for row in await self._db.fetch_all(sql, params)]

    async def count(self) -> int:
        row = await self._db.fetch_one("SELECT count(*) AS n FROM audit_dead_letters")
        return int(row["n"]) if row else 0


# -- signing keys -----------------------------------------------------------------------

_KEY_COLUMNS = "kid, alg, private_key_pem, public_jwk, created_at, retired_at, not_after"


class SqlSigningKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _record(self, row: Row) -> SigningKey:
        codec = self._db.codec
        return SigningKey(
            kid=row["kid"],
            alg=row["alg"],
            private_key_pem=row["private_key_pem"],
            public_jwk=codec.read_json(row["public_jwk"]),
            created_at=codec.read_time(row["created_at"]),
            retired_at=_optional_time(codec, row["retired_at"]),
            not_after=_optional_time(codec, row["not_after"]),
        )

    async def add(self, key: SigningKey) -> SigningKey:
        codec = self._db.codec
        await self._db.execute(
            f"INSERT INTO signing_keys ({_KEY_COLUMNS}) VALUES (%(kid)s, %(alg)s,"
            " %(private_key_pem)s, %(public_jwk)s, %(created_at)s, %(retired_at)s, %(not_after)s)",
            {
                "kid": key.kid,
                "alg": key.alg,
                "private_key_pem": key.private_key_pem,
                "public_jwk": codec.json(key.public_jwk),
                "created_at": codec.time(key.created_at),
                "retired_at": codec.time(key.retired_at),
                "not_after": codec.time(key.not_after),
            },
        )
        return key

    async def get(self, kid: str) -> SigningKey:
        row = await _fetch_existing(
            self._db,
            f"SELECT {_KEY_COLUMNS} FROM signing_keys WHERE kid = %(kid)s",
            {"kid": kid},
            f"signing key {kid!r} not found",
        )
        return self._record(row)

    async def current(self) -> SigningKey | None:
        row = await self._db.fetch_one(
            f"SELECT {_KEY_COLUMNS} FROM signing_keys WHERE retired_at IS NULL"
            " ORDER BY created_at DESC, kid DESC LIMIT 1"
        )
        return None if row is None else self._record(row)

    async def list_keys(self, *, published_at: datetime | None = None) -> list[SigningKey]:
        sql = f"SELECT {_KEY_COLUMNS} FROM signing_keys"
        params: dict[str, Any] = {}
        if published_at is not None:
            sql += " WHERE not_after IS NULL OR not_after > %(at)s"
            params["at"] = self._db.codec.time(published_at)
        rows = await self._db.fetch_all(sql + " ORDER BY created_at DESC, kid DESC", params)
        return [self._record(row) for row in rows]

    async def retire(
        self, kid: str, *, retired_at: datetime, not_after: datetime | None
    ) -> SigningKey:
        time = self._db.codec.time
        row = await _fetch_existing(
            self._db,
            "UPDATE signing_keys SET retired_at = %(retired_at)s, not_after = %(not_after)s"
            f" WHERE kid = %(kid)s RETURNING {_KEY_COLUMNS}",
            {"kid": kid, "retired_at": time(retired_at), "not_after": time(not_after)},
            f"signing key {kid!r} not found",
        )
        return self._record(row)

    async def purge_expired(self, now: datetime) -> int:
        return await self._db.execute(
            "DELETE FROM signing_keys WHERE not_after <= %(now)s",
            {"now": self._db.codec.time(now)},
        )
