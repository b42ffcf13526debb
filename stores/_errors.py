"""The store errors: what every backend raises instead of its driver's exceptions.

Driver exceptions (``sqlite3``, ``psycopg``, ``psycopg_pool``) are converted where the
driver is called, so nothing above ``stores`` ever sees one::

    StoreError                  root of everything a store raises
    ├── NotFound                the row asked for (or the row it refers to) does not exist
    ├── Conflict                a unique key is already taken
    ├── InvalidRecord           the database refused the values (constraint, type): permanent
    │   └── AppendOnlyViolation an UPDATE or DELETE on an audit table
    ├── Unavailable             the database cannot be reached or is busy: retry later
    ├── InvalidDatabaseURL      an IDGW_DATABASE_URL the stores cannot open (also a ValueError)
    └── MigrationError          a migration file is missing, malformed or failed to apply

``Unavailable`` is the only transient error: the audit writer retries it and dead-letters
an event that fails with ``InvalidRecord``.
"""

from __future__ import annotations

__all__ = [
    "AppendOnlyViolation",
    "Conflict",
    "InvalidDatabaseURL",
    "InvalidRecord",
    "MigrationError",
    "NotFound",
    "StoreError",
    "Unavailable",
]


class StoreError(Exception):
    """Root of every error raised by the stores."""


class NotFound(StoreError):
    """The row asked for, or a row it must refer to (e.g. its user), does not exist."""


class Conflict(StoreError):
    """A unique key is already taken, or a conditional update lost (e.g. a reused token)."""


class InvalidRecord(StoreError):
    """The database refused the values for a reason that retrying will not fix."""


class AppendOnlyViolation(InvalidRecord):
    """An UPDATE or DELETE reached an append-only audit table and its trigger refused it."""


class Unavailable(StoreError):
    """The database cannot be reached, timed out, or is locked: the operation may be retried."""


class InvalidDatabaseURL(StoreError, ValueError):
    """The database URL has an unknown scheme or lacks a part the backend needs."""


class MigrationError(StoreError):
    """A migration file is missing or malformed, or applying it failed."""
