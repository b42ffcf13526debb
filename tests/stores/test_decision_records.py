"""Contract of DecisionRecordStore, on every backend: records are written by the audit
trail's append, with their event, and may be queried, paged, deleted and purged."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from stores import AuditEvent, Conflict, DecisionRecord, Stores


def _decision(n: int, now: datetime, *, record: bool = True, **columns: Any) -> AuditEvent:
    body: dict[str, Any] | None = None
    if record:
        body = {
            "facts": {"age_over_18": n % 2 == 0, "subject": {"sub": f"ref-{n % 3}"}},
            "context": {"national_id": f"hmac-{n}", "amount": n * 1.5, "note": "naïve ✓"},
            "conditions": [], "hashed": ["context.national_id", "subject.sub"],
            "declared": ["age_over_18"], "fields": ["national_id", "amount", "note"],
        }
        if n == 4:
            body["shadow"] = {"agreement": "different", "status": "fail", "reason": "x"}
    values: dict[str, Any] = {
        "id": f"evt-{n}", "timestamp": now + timedelta(seconds=n), "action": "decision_made",
        "subject_ref": f"ref-{n % 3}", "purpose": "age_verification" if n < 5 else "sanctions_screening",
        "decision": "pass" if n % 2 == 0 else "fail", "reason": "r", "decision_id": f"dec_{n:04d}",
        "policy_revision": "sha256:abc", "record": None if body is None else json.dumps(body), **columns,
    }
    return AuditEvent(**values)


async def test_a_record_is_stored_with_its_event_and_read_back_whole(stores: Stores, now: datetime) -> None:
    events = [_decision(n, now) for n in range(6)] + [_decision(9, now, record=False)]
    assert await stores.audit_events.append(events) == 7
    assert await stores.decision_records.count() == 6
    [fourth] = await stores.decision_records.query(after="dec_0003", limit=1)
    assert fourth == DecisionRecord(
        decision_id="dec_0004", recorded_at=now + timedelta(seconds=4), purpose="age_verification",
        policy_revision="sha256:abc", status="pass", reason="r", body=json.loads(events[4].record or "{}"),
        subject_ref="ref-1", shadow="different",
    )
    # the stored event does not carry the record, nor does the record change its identity
    stored = await stores.audit_events.get("evt-4")
    assert stored.record is None and stored == dataclasses.replace(events[4], seq=stored.seq)


async def test_records_are_written_only_with_new_events(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_decision(1, now)])
    assert await stores.decision_records.delete_subject("ref-1") == 1
    # a retried batch (its event already stored) does not bring the erased record back
    assert await stores.audit_events.append([_decision(1, now), _decision(2, now)]) == 1
    assert [r.decision_id for r in await stores.decision_records.query()] == ["dec_0002"]


async def test_an_all_or_nothing_batch_that_fails_stores_no_record(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_decision(1, now)])
    with pytest.raises(Conflict):
        await stores.audit_events.append([_decision(1, now), _decision(2, now)], all_or_nothing=True)
    assert [r.decision_id for r in await stores.decision_records.query()] == ["dec_0001"]
    assert await stores.audit_events.append([_decision(2, now), _decision(3, now)], all_or_nothing=True) == 2
    assert await stores.decision_records.count() == 3


async def test_query_filters_and_pages_by_decision_id(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_decision(n, now) for n in range(8)])
    query = stores.decision_records.query

    async def ids(**filters: Any) -> list[str]:
        return [r.decision_id[-1] for r in await query(**filters)]

    assert await ids() == list("01234567")
    assert await ids(purpose="sanctions_screening") == list("567")
    assert await ids(status="fail") == list("1357")
    assert await ids(subject_ref="ref-2") == list("25")
    assert await ids(since=now + timedelta(seconds=2), until=now + timedelta(seconds=5)) == list("234")
    assert await ids(after="dec_0005") == list("67")
    assert await ids(after="dec_0001", limit=2, status="pass") == list("24")
    with pytest.raises(ValueError):
        await query(limit=-1)


async def test_purge_and_erasure_delete_records_but_not_events(stores: Stores, now: datetime) -> None:
    await stores.audit_events.append([_decision(n, now) for n in range(6)])
    assert await stores.decision_records.purge(now + timedelta(seconds=2)) == 2
    assert await stores.decision_records.delete_subject("ref-2") == 2  # dec_0002, dec_0005
    assert [r.decision_id for r in await stores.decision_records.query()] == ["dec_0003", "dec_0004"]
    assert await stores.audit_events.count() == 6


async def test_a_nul_in_a_record_does_not_cost_its_event(stores: Stores, now: datetime) -> None:
    event = _decision(1, now, record=False)
    event = dataclasses.replace(event, record=json.dumps({"context": {"note": "a\x00b"}}))
    assert await stores.audit_events.append([event]) == 1
    [record] = await stores.decision_records.query()
    assert record.body == {"context": {"note": "a\ufffdb"}}


async def test_a_large_batch_stores_every_record(stores: Stores, now: datetime) -> None:
    events = [_decision(n, now, id=f"evt-{n:05d}", decision_id=f"dec_{n:05d}") for n in range(4500)]
    assert await stores.audit_events.append(events) == 4500
    assert await stores.decision_records.count() == 4500
