"""Fixtures of the store tests: each contract test runs on memory, SQLite and PostgreSQL.

PostgreSQL comes from ``IDGW_TEST_DATABASE_URL``. Without it those tests skip, unless
``IDGW_TEST_REQUIRE_SERVICES=1`` (CI), where a missing or unreachable server fails them.
Every PostgreSQL test gets a schema of its own (``search_path`` set through the URL's
``options``), dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from stores import Session, Stores, User, open_stores, parse_database_url
from stores._sqlite import connect as sqlite_connect

POSTGRES_URL_VARIABLE = "IDGW_TEST_DATABASE_URL"
REQUIRE_SERVICES_VARIABLE = "IDGW_TEST_REQUIRE_SERVICES"

ALL_BACKENDS = ["memory", "sqlite", "postgresql"]
SQL_BACKENDS = ["sqlite", "postgresql"]


def _unusable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
        pytest.fail(f"{reason} and {REQUIRE_SERVICES_VARIABLE}=1: PostgreSQL is required")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The PostgreSQL server of the test run, checked once."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if not url:
        _unusable(f"{POSTGRES_URL_VARIABLE} is not set")
    try:
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        _unusable(f"PostgreSQL at {POSTGRES_URL_VARIABLE} is unreachable ({exc})")
    return url


def _with_parameter(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``options=-csearch_path=<schema>``: every connection lands in it."""
    return _with_parameter(url, "options", f"-csearch_path={schema}")


def with_application_name(url: str, name: str) -> str:
    """``url`` whose connections show ``name`` in ``pg_stat_activity``."""
    return _with_parameter(url, "application_name", name)


def connections_named(server_url: str, name: str) -> int:
    """How many connections the server holds under the application name ``name``."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def connections_named_after_close(server_url: str, name: str) -> int:
    """`connections_named` once the closed connections' server processes have exited: a
    backend leaves `pg_stat_activity` shortly after its client hangs up (polled for at
    most 5 s; what is left then is returned)."""
    deadline = time.monotonic() + 5
    while (count := connections_named(server_url, name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped after the test."""
    schema = f"idgw_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(postgres_server_url, schema)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _url_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'idgw.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=ALL_BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend in turn."""
    return _url_for(request, request.param, tmp_path)


@pytest.fixture(params=SQL_BACKENDS)
def sql_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty SQLite file, then an empty PostgreSQL schema."""
    return _url_for(request, request.param, tmp_path)


RawSQL = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def raw_sql(sql_database_url: str) -> RawSQL:
    """Run one statement with the driver itself, behind the stores' back, on the database
    of ``sql_database_url``; each call commits. Driver exceptions are not translated.
    Parameters use the driver's own placeholder (``?`` or ``%s``)."""
    parsed = parse_database_url(sql_database_url)

    def run(statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if parsed.backend == "sqlite":
            conn = sqlite_connect(parsed.target)  # the stores' pragmas: foreign keys on
            try:
                return conn.execute(statement, params).fetchall()
            finally:
                conn.close()
        with psycopg.connect(parsed.target, autocommit=True) as pg:
            cursor = pg.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    return run


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[Stores]:
    opened = await open_stores(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def now() -> datetime:
    """A fixed instant with microseconds: stores never read the clock themselves."""
    return datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def user(stores: Stores, now: datetime) -> User:
    return await stores.users.create(
        User(id="user-1", email="ada@example.test", created_at=now, updated_at=now)
    )


@pytest.fixture
async def session(stores: Stores, user: User, now: datetime) -> Session:
    return await stores.sessions.create(
        Session(
            id="session-1",
            user_id=user.id,
            client_id="client-1",
            status="active",
            created_at=now,
            expires_at=now + timedelta(hours=1),
            requested_scope=("openid", "profile"),
        )
    )
