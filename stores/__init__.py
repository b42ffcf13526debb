"""Storage protocols and their memory, SQLite and PostgreSQL implementations.

The server sees only this facade: the record dataclasses, one ``Protocol`` per
aggregate, the errors, and :func:`open_stores`, which reads a database URL
(``IDGW_DATABASE_URL``) and returns a :class:`Stores` bundle::

    stores = await open_stores("sqlite:///./idgw.db")   # applies pending migrations
    user = await stores.users.get(user_id)
    await stores.close()

Where it sits: ``server`` -> ``stores``; ``dsl`` and ``engine`` never import it.
The error hierarchy is drawn in :mod:`stores._errors`; the schema and its migrations
are described in ``docs/storage.md``.
"""

from __future__ import annotations

from stores._errors import (
    AppendOnlyViolation,
    Conflict,
    InvalidDatabaseURL,
    InvalidRecord,
    MigrationError,
    NotFound,
    StoreError,
    Unavailable,
)
from stores._factory import Stores, memory_stores, open_stores
from stores._migrations import (
    Migration,
    MigrationState,
    apply_migrations,
    migrate_down,
    migrate_up,
    migration_status,
)
from stores._protocols import (
    AuditDeadLetterStore,
    AuditEventStore,
    ConsentStore,
    CredentialStore,
    DecisionRecordStore,
    RefreshTokenStore,
    RevocationStore,
    SessionStore,
    SigningKeyStore,
    UserStore,
)
from stores._records import (
    AuditEvent,
    Consent,
    Credential,
    DeadLetter,
    DecisionRecord,
    RefreshToken,
    RevocationKind,
    Session,
    SigningKey,
    TokenRevocation,
    User,
    audit_event_from_json,
    audit_event_to_json,
)
from stores._url import DEFAULT_DATABASE_URL, parse_database_url, redact_database_url

__all__ = [
    "DEFAULT_DATABASE_URL",
    "AppendOnlyViolation",
    "AuditDeadLetterStore",
    "AuditEvent",
    "AuditEventStore",
    "Conflict",
    "Consent",
    "ConsentStore",
    "Credential",
    "CredentialStore",
    "DeadLetter",
    "DecisionRecord",
    "DecisionRecordStore",
    "InvalidDatabaseURL",
    "InvalidRecord",
    "Migration",
    "MigrationError",
    "MigrationState",
    "NotFound",
    "RefreshToken",
    "RefreshTokenStore",
    "RevocationKind",
    "RevocationStore",
    "Session",
    "SessionStore",
    "SigningKey",
    "SigningKeyStore",
    "StoreError",
    "Stores",
    "TokenRevocation",
    "Unavailable",
    "User",
    "UserStore",
    "apply_migrations",
    "audit_event_from_json",
    "audit_event_to_json",
    "memory_stores",
    "migrate_down",
    "migrate_up",
    "migration_status",
    "open_stores",
    "parse_database_url",
    "redact_database_url",
]
