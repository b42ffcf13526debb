"""Decision records after they are stored: read back for replay and the data export,
kept no longer than `IDGW_DECISION_RECORD_DAYS` (docs/impact.md).

They are written by the audit pipeline (`server.audit.encoding.record_body`, stored by
`AuditEventStore.append` with their event); this module reads and purges them:

    pages(store, since=..., purpose=...)    every matching record, a page at a time
    replay_stored(store, candidate, ...)    `idgw policy replay`: those records decided again
    shadow_report(store, ...)               `--shadow`: the shadow outcomes they carry, counted
    replay_record(record)                   the engine's `Record` of a stored one
    record_json(record)                     a record as `idgw decisions list` and the export show it
    purge_expired(store, days, now)         what retention deletes; `retention_loop` runs it hourly
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog

from engine import PolicySet
from engine.clock import utc_now, utc_text
from engine.replay import Record, Replayer, Report
from server.shadow import count_shadow
from stores import DecisionRecord, DecisionRecordStore, StoreError

logger = structlog.get_logger("idgw.decisions")

#: Records read per query while streaming.
PAGE = 2000
#: How often each worker deletes the records retention no longer allows.
PURGE_INTERVAL_SECONDS = 3600.0

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, now: datetime) -> datetime:
    """`7d`, `24h`, `30m`, `90s`, `2w` before `now`, or an RFC 3339 date or date-time
    (UTC when it has no offset); `ValueError` naming the accepted forms otherwise."""
    value = text.strip()
    age = _AGE.match(value)
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an age (7d, 24h, 30m) or an RFC 3339 date-time, got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


async def pages(store: DecisionRecordStore, *, limit: int | None = None, **filters: Any
                ) -> AsyncIterator[list[DecisionRecord]]:
    """Every record matching `filters` (those of `DecisionRecordStore.query`), oldest
    first, `PAGE` at a time: memory holds one page whatever the number of records."""
    after: str | None = None
    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page = await store.query(after=after, limit=size, **filters)
        if not page:
            return
        yield page
        if left is not None:
            left -= len(page)
        if len(page) < size:
            return
        after = page[-1].decision_id


async def replay_stored(store: DecisionRecordStore, candidate: PolicySet, *, limit: int | None = None,
                        **filters: Any) -> Report:
    """`engine.replay` of the stored records matching `filters`, streamed page by page."""
    replayer = Replayer(candidate)
    async for page in pages(store, limit=limit, **filters):
        for record in page:
            replayer.add(replay_record(record))
    return replayer.report


async def shadow_report(store: DecisionRecordStore, *, limit: int | None = None, **filters: Any) -> Report:
    """The shadow outcomes recorded with the records matching `filters`, as a replay of
    the shadow set reports them (`idgw policy replay --shadow`, the workbench's Impact
    page); the latest revision seen names the report."""
    report = Report("")
    async for page in pages(store, limit=limit, **filters):
        for record in page:
            count_shadow(report, record)
    return report


def replay_record(record: DecisionRecord) -> Record:
    body = record.body
    fields = body.get("fields")
    return Record(
        decision_id=record.decision_id, purpose=record.purpose, facts=body.get("facts") or {},
        context=body.get("context") or {}, status=record.status, reason=record.reason,
        hashed=frozenset(body.get("hashed") or ()), declared=frozenset(body.get("declared") or ()),
        fields=frozenset(fields) if fields is not None else None, refused=bool(body.get("refused")),
    )


def record_json(record: DecisionRecord) -> dict[str, Any]:
    """A record as shown and exported: the decision and what it was made on, as stored
    (sensitive context values as keyed hashes, the subject as its reference)."""
    body = record.body
    shown: dict[str, Any] = {
        "decision_id": record.decision_id,
        "recorded_at": utc_text(record.recorded_at),
        "purpose": record.purpose,
        "status": record.status,
        "reason": record.reason,
        "policy_revision": record.policy_revision,
        "facts": body.get("facts", {}),
        "context": body.get("context", {}),
        "conditions": body.get("conditions", []),
        "hashed": body.get("hashed", []),
    }
    if body.get("refused"):
        shown["refused"] = True
    if "shadow" in body:
        shown["shadow"] = body["shadow"]
    return shown


async def purge_expired(store: DecisionRecordStore, days: int, now: datetime) -> int:
    """Delete the records older than `days` (none when `days` is 0: recording is off and
    what was recorded before stays until purged explicitly)."""
    if days <= 0:
        return 0
    return await store.purge(now - timedelta(days=days))


async def retention_loop(store: DecisionRecordStore, days: int) -> None:
    """`purge_expired` now and every `PURGE_INTERVAL_SECONDS`, for the server's lifetime;
    a database that cannot answer is tried again at the next round."""
    while True:
        try:
            purged = await purge_expired(store, days, utc_now())
            if purged:
                logger.info("decision_records_purged", count=purged, days=days)
        except StoreError as exc:
            logger.warning("decision_records_purge_failed", error=str(exc))
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


__all__ = [
    "PAGE", "pages", "parse_when", "purge_expired", "record_json", "replay_record", "replay_stored",
    "retention_loop", "shadow_report",
]
