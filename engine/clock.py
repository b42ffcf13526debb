"""One clock and one way to write its time: RFC 3339, in UTC, to the second, with a `Z`
(`2026-01-01T10:00:00Z`).

`utc_now` is the clock the engine decides by (`now()`, `days_since`, `years_since` read
it through the compiled program) and the default clock of the gateway's services;
`utc_text` writes a moment the way every timestamp of the gateway's answers, of its
audit events and of `idgw policy eval` is written.

Whole seconds, fractions dropped: the decision endpoints write their time once a second
rather than once a request (`server.ids.PerSecond`), token times (`iat`, `exp`) are whole
seconds anyway, and what has to be ordered within a second has its own order (the audit
trail's sequence, the reload counters).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from dsl.runtime import Clock, utc_now

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as strftime writes it


@overload
def utc_text(when: datetime) -> str: ...


@overload
def utc_text(when: None) -> None: ...


def utc_text(when: datetime | None) -> str | None:
    """`when` in UTC as `YYYY-MM-DDTHH:MM:SSZ`, fractions of a second dropped (None stays
    None, for the optional times of an answer): what `strftime(_FORMAT)` writes, through
    isoformat, the cheaper of the two, for every year isoformat writes alike (it pads
    years before 1000 to four digits, which strftime does not do on every platform)."""
    if when is None:
        return None
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    if utc.year < 1000:
        return utc.strftime(_FORMAT)
    return utc.isoformat(timespec="seconds")[:19] + "Z"


def utc_second_text(second: int) -> str:
    """`utc_text` of the UNIX time `second`."""
    return utc_text(datetime.fromtimestamp(second, UTC))


__all__ = ["Clock", "utc_now", "utc_second_text", "utc_text"]
