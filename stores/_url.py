"""Reading ``IDGW_DATABASE_URL``: which backend, and where its data lives."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from stores._errors import InvalidDatabaseURL

__all__ = ["DEFAULT_DATABASE_URL", "DatabaseURL", "parse_database_url", "redact_database_url"]

DEFAULT_DATABASE_URL = "sqlite:///./idgw.db"

Backend = Literal["memory", "sqlite", "postgresql"]

_EXPECTED = "expected sqlite:///PATH, postgresql://... or memory://"


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    backend: Backend
    target: str
    """The SQLite file path, the PostgreSQL connection URL, or ``""`` for memory."""


def parse_database_url(url: str) -> DatabaseURL:
    """Split a database URL into its backend and target.

    ``sqlite:///./idgw.db`` is the relative path ``./idgw.db``, ``sqlite:////var/idgw.db``
    the absolute ``/var/idgw.db``; ``postgres://`` is accepted for ``postgresql://`` and
    the URL goes to libpq as is (so ``?options=-csearch_path%3Dname`` works).
    """
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise InvalidDatabaseURL(f"not a database URL ({_EXPECTED})")
    if scheme == "memory":
        if rest:
            raise InvalidDatabaseURL("memory:// takes no path")
        return DatabaseURL("memory", "")
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise InvalidDatabaseURL(f"a SQLite URL names a file: sqlite:///PATH ({_EXPECTED})")
        path = rest[1:]
        if path == ":memory:" or path.startswith("file:"):
            raise InvalidDatabaseURL(
                "an in-memory SQLite database would not be shared; use memory:// instead"
            )
        return DatabaseURL("sqlite", path)
    if scheme in ("postgresql", "postgres"):
        return DatabaseURL("postgresql", url)
    raise InvalidDatabaseURL(f"unsupported database URL scheme {scheme!r} ({_EXPECTED})")


def redact_database_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for logs and messages."""
    redacted = re.sub(r"(?<=://)([^/@:]*):[^/@]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", redacted)
