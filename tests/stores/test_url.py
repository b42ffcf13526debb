"""Reading IDGW_DATABASE_URL."""

from __future__ import annotations

import pytest

from stores import InvalidDatabaseURL, parse_database_url, redact_database_url


@pytest.mark.parametrize(
    ("url", "backend", "target"),
    [
        ("sqlite:///./idgw.db", "sqlite", "./idgw.db"),
        ("sqlite:///idgw.db", "sqlite", "idgw.db"),
        ("sqlite:////var/lib/idgw/idgw.db", "sqlite", "/var/lib/idgw/idgw.db"),
        ("memory://", "memory", ""),
        ("postgresql://u:p@db:5432/idgw", "postgresql", "postgresql://u:p@db:5432/idgw"),
        ("postgres://db/idgw", "postgresql", "postgres://db/idgw"),
        ("POSTGRESQL://db/idgw", "postgresql", "POSTGRESQL://db/idgw"),
    ],
)
def test_supported_urls(url: str, backend: str, target: str) -> None:
    parsed = parse_database_url(url)
    assert (parsed.backend, parsed.target) == (backend, target)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db/idgw", "unsupported database URL scheme 'mysql'"),
        ("idgw.db", "not a database URL"),
        ("sqlite://", "a SQLite URL names a file"),
        ("sqlite://host/idgw.db", "a SQLite URL names a file"),
        ("sqlite:///:memory:", "use memory://"),
        ("memory://somewhere", "memory:// takes no path"),
    ],
)
def test_unsupported_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(InvalidDatabaseURL, match=message):
        parse_database_url(url)
    with pytest.raises(ValueError):  # also a ValueError, for configuration validation
        parse_database_url(url)


def test_passwords_are_redacted() -> None:
    assert (
        redact_database_url("postgresql://idgw:s3cret@db/idgw") == "postgresql://idgw:***@db/idgw"
    )
    assert redact_database_url("postgresql://db/idgw?password=s3cret&x=1") == (
        "postgresql://db/idgw?password=***&x=1"
    )
    assert redact_database_url("sqlite:///./idgw.db") == "sqlite:///./idgw.db"
