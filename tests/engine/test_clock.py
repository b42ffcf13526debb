"""engine.clock: the one way the gateway writes a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import utc_second_text, utc_text


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_utc_text_is_what_strftime_gives(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc_text(aware) == expected
    assert utc_text(aware.astimezone(UTC)) == expected


def test_utc_text_is_rfc3339_in_utc_with_a_z() -> None:
    assert utc_text(datetime(2026, 12, 6, 13, 5, 9, 999_999, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-12-06T11:05:09Z"
    )


def test_utc_text_keeps_none_and_writes_unix_seconds() -> None:
    assert utc_text(None) is None
    assert utc_second_text(1_767_261_600) == "2026-01-01T10:00:00Z"
