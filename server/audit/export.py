"""The export side of the trail: a subject's events, looked up by `subject_ref`.

`GET /me/data-export` computes the caller's reference with the key the audit sink
pseudonymises under and asks the store; no raw user id is ever compared or stored.
"""

from __future__ import annotations

from datetime import datetime

from server.audit.subject_refs import SubjectRefs
from stores import AuditEvent, AuditEventStore


async def events_of_subject(
    store: AuditEventStore,
    refs: SubjectRefs,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    """`user_id`'s audit events in insertion order (`since` inclusive, `until` exclusive)."""
    return await store.query(
        subject_ref=refs.ref(user_id), since=since, until=until, action=action, limit=limit
    )


__all__ = ["events_of_subject"]
