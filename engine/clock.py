"""One clock and one way to write its time: RFC 3339, in UTC, with a `Z`.

`utc_now` is the clock the engine decides by (`now()`, `days_since`, `years_since` read
it through the compiled program); `utc_text` writes a moment the way every timestamp of
the gateway's answers and of `idgw policy eval` is written.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dsl.runtime import Clock, utc_now


def utc_text(when: datetime) -> str:
    """`when` in UTC as `YYYY-MM-DDTHH:MM:SSZ` (what strftime("%Y-%m-%dT%H:%M:%SZ")
    gives, through isoformat, which costs a fifth as much)."""
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    if utc.year < 1000:  # strftime does not pad such years to four digits on every platform
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.isoformat(timespec="seconds")[:19] + "Z"


__all__ = ["Clock", "utc_now", "utc_text"]
