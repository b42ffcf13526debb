"""Opening the stores of one database from its URL: the server's entry point."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from stores._database import Database
from stores._memory import (
    MemoryAuditDeadLetterStore,
    MemoryAuditEventStore,
    MemoryConsentStore,
    MemoryCredentialStore,
    MemoryDecisionRecordStore,
    MemoryRefreshTokenStore,
    MemoryRevocationStore,
    MemorySessionStore,
    MemorySigningKeyStore,
    MemoryState,
    MemoryUserStore,
)
from stores._migrations import apply_migrations
from stores._postgres import (
    DEFAULT_POOL_MAX_SIZE,
    DEFAULT_POOL_MIN_SIZE,
    DEFAULT_POOL_TIMEOUT_SECONDS,
    PostgresDatabase,
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
from stores._sql import (
    SqlAuditDeadLetterStore,
    SqlAuditEventStore,
    SqlConsentStore,
    SqlCredentialStore,
    SqlDecisionRecordStore,
    SqlRefreshTokenStore,
    SqlRevocationStore,
    SqlSessionStore,
    SqlSigningKeyStore,
    SqlUserStore,
)
from stores._sqlite import SqliteDatabase
from stores._url import Backend, parse_database_url

__all__ = ["Stores", "open_stores"]


@dataclass(frozen=True, slots=True, eq=False)
class Stores:
    """Every aggregate store of one database, and the database's lifetime.

    Use as ``async with await open_stores(url) as stores:`` or call :meth:`close`.
    """

    backend: Backend
    users: UserStore
    sessions: SessionStore
    refresh_tokens: RefreshTokenStore
    revocations: RevocationStore
    consents: ConsentStore
    credentials: CredentialStore
    audit_events: AuditEventStore
    audit_dead_letters: AuditDeadLetterStore
    signing_keys: SigningKeyStore
    decision_records: DecisionRecordStore
    _database: Database | None = None

    async def ping(self) -> None:
        """Raise :class:`~stores.Unavailable` unless the database answers (readiness)."""
        if self._database is not None:
            await self._database.ping()

    async def close(self) -> None:
        if self._database is not None:
            await self._database.close()

    async def __aenter__(self) -> Stores:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def memory_stores() -> Stores:
    """Fresh, empty in-memory stores sharing one state."""
    state = MemoryState()
    return Stores(
        backend="memory",
        users=MemoryUserStore(state),
        sessions=MemorySessionStore(state),
        refresh_tokens=MemoryRefreshTokenStore(state),
        revocations=MemoryRevocationStore(state),
        consents=MemoryConsentStore(state),
        credentials=MemoryCredentialStore(state),
        audit_events=MemoryAuditEventStore(state),
        audit_dead_letters=MemoryAuditDeadLetterStore(state),
        signing_keys=MemorySigningKeyStore(state),
        decision_records=MemoryDecisionRecordStore(state),
    )


def _sql_stores(backend: Backend, database: Database) -> Stores:
    return Stores(
        backend=backend,
        users=SqlUserStore(database),
        sessions=SqlSessionStore(database),
        refresh_tokens=SqlRefreshTokenStore(database),
        revocations=SqlRevocationStore(database),
        consents=SqlConsentStore(database),
        credentials=SqlCredentialStore(database),
        audit_events=SqlAuditEventStore(database),
        audit_dead_letters=SqlAuditDeadLetterStore(database),
        signing_keys=SqlSigningKeyStore(database),
        decision_records=SqlDecisionRecordStore(database),
        _database=database,
    )


async def open_stores(
    url: str,
    *,
    migrate: bool = True,
    pool_min_size: int = DEFAULT_POOL_MIN_SIZE,
    pool_max_size: int = DEFAULT_POOL_MAX_SIZE,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT_SECONDS,
    sqlite_blocking: bool = False,
) -> Stores:
    """Open the stores of the database at ``url`` (``IDGW_DATABASE_URL``).

    ``sqlite:///PATH`` opens (or creates) a SQLite file, ``postgresql://...`` a pool of
    ``pool_min_size`` to ``pool_max_size`` connections (waiting up to ``pool_timeout``
    seconds for one), ``memory://`` empty in-memory stores. With ``migrate`` (the default) pending
    migrations are applied first. ``sqlite_blocking`` runs SQLite statements on the event
    loop's thread (see ``SqliteDatabase.blocking``). Raises ``InvalidDatabaseURL``, ``Unavailable`` or
    ``MigrationError``.
    """
    parsed = parse_database_url(url)
    if parsed.backend == "memory":
        return memory_stores()
    if migrate:
        await apply_migrations(url)
    database: Database
    if parsed.backend == "sqlite":
        database = await SqliteDatabase.open(parsed.target, blocking=sqlite_blocking)
    else:
        database = await PostgresDatabase.open(
            parsed.target, min_size=pool_min_size, max_size=pool_max_size, timeout=pool_timeout
        )
    return _sql_stores(parsed.backend, database)
