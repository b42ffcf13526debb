"""The data rights (docs/api.md): what the gateway holds about the caller, and erasure.

`export_data` gathers the caller's profile, consents and credentials from the stores and
their audit events from the trail, looked up by the caller's pseudonymous `subject_ref`
(the same keyed hash the audit sink stores; docs/audit.md). An event appears in
the export once the audit writer has stored it (it flushes at least every second).

`erase_user` runs, in this order:

    revoke every session and token   AuthService.revoke_all: the answer's own token stops
                                     working, so a second call is a 401
    delete the personal data         stores.users.erase: the user and every row that
                                     belongs to them, in one transaction; then their
                                     decision records (by subject_ref)
    evict cached registry answers    RegistryService.evict_subject (lookups made for the
                                     user) and evict(national_id) of their credentials
    audit                            `data_deleted`, under the subject_ref nothing links to
                                     a person any more

Revoking comes first: if the deletion then fails, nothing is half-erased and the caller
logs in again to retry; the other way round a failure could leave an erased user's tokens
valid for up to an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from engine.clock import utc_text
from server.audit import SubjectRefs, events_of_subject
from server.auth import AuthService
from server.auth.events import AuditContext
from server.credentials.service import credential_json
from server.decisions.records import record_json
from server.errors import ApiError
from server.security import Principal, user_gone
from stores import AuditEvent, NotFound, Stores, User

DATA_EXPORTED = "data_exported"
DATA_DELETED = "data_deleted"

#: What erasure leaves behind, and why (the `retained` part of the answer).
RETAINED: dict[str, str] = {
    "audit_events": "kept for accountability under a pseudonymous subject_ref (a keyed hash of the user "
                    "id); with the user deleted, nothing links them to a person",
    "token_revocations": "the revoked sessions and tokens, kept until those tokens expire (at most one "
                         "hour) so that none of them works again",
}



class ConsentLister(Protocol):
    async def list(self, user_id: str) -> Sequence[Any]:
        """The user's consents; each has `to_json()`."""
        ...


class RegistryEviction(Protocol):
    async def evict(self, national_id: str) -> None: ...

    async def evict_subject(self, subject: str) -> int: ...


@dataclass(frozen=True, slots=True)
class ExportFilters:
    """`from` (inclusive), `to` (exclusive) and `action` of `GET /me/data-export`."""

    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"from": utc_text(self.since), "to": utc_text(self.until), "action": self.action}


def profile_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "verified": user.verified,
        "created_at": utc_text(user.created_at),
        "updated_at": utc_text(user.updated_at),
    }


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An audit event as exported: what happened, without the trail's chain fields."""
    return {
        "id": event.id,
        "timestamp": utc_text(event.timestamp),
        "action": event.action,
        "purpose": event.purpose,
        "decision": event.decision,
        "reason": event.reason,
        "decision_id": event.decision_id,
        "policy_revision": event.policy_revision,
        "request_id": event.request_id,
    }


async def _user(stores: Stores, principal: Principal) -> User:
    try:
        return await stores.users.get(principal.sub)
    except NotFound:
        raise user_gone() from None


async def export_data(
    principal: Principal,
    filters: ExportFilters,
    *,
    stores: Stores,
    consent: ConsentLister,
    refs: SubjectRefs,
    audit: AuditContext,
    now: datetime,
) -> dict[str, Any]:
    """Everything the gateway holds about the caller, and their audit events."""
    user = await _user(stores, principal)
    consents = await consent.list(user.id)
    credentials = await stores.credentials.list_for_user(user.id)
    events = await events_of_subject(
        stores.audit_events, refs, user.id, since=filters.since, until=filters.until, action=filters.action
    )
    records = [] if filters.action not in (None, "decision_made") else await stores.decision_records.query(
        subject_ref=refs.ref(user.id), since=filters.since, until=filters.until
    )
    audit.emit(DATA_EXPORTED, user.id, outcome="exported", reason=f"{len(events)} events", when=now)
    return {
        "user_id": user.id,
        "export_date": utc_text(now),
        "filters": filters.to_json(),
        "profile": profile_json(user),
        "consents": [c.to_json() for c in consents],
        "credentials": [credential_json(c) for c in credentials],
        "events": [event_json(e) for e in events],
        "total": len(events),
        "decision_records": [record_json(r) for r in records],
    }


async def erase_user(
    principal: Principal,
    *,
    auth: AuthService,
    stores: Stores,
    registry: RegistryEviction,
    refs: SubjectRefs,
    audit: AuditContext,
) -> dict[str, Any]:
    """Erase the caller's personal data (see the module docstring for the order)."""
    user = await _user(stores, principal)
    national_ids = {
        value for c in await stores.credentials.list_for_user(user.id)
        if isinstance(value := c.claims.get("national_id"), str)
    }
    sessions = await auth.revoke_all(principal, audit)
    try:
        counts = await stores.users.erase(user.id)
    except NotFound:  # erased by a concurrent call between the two steps
        raise user_gone() from None
    counts["decision_records"] = await stores.decision_records.delete_subject(refs.ref(user.id))
    evicted = await registry.evict_subject(user.id)
    for national_id in sorted(national_ids):
        await registry.evict(national_id)
    now = auth.now()
    audit.emit(DATA_DELETED, user.id, outcome="deleted", reason=f"{sum(counts.values())} rows", when=now)
    return {
        "message": "your personal data has been erased; your tokens no longer work",
        "user_id": user.id,
        "deleted_at": utc_text(now),
        "deleted": [*sorted(counts), "registry_cache"],
        "retained": list(RETAINED),
        "counts": {**counts, "registry_cache": evicted},
        "sessions_revoked": sessions,
        "retention": RETAINED,
    }


def check_window(filters: ExportFilters) -> ExportFilters:
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise ApiError(400, "from: must be earlier than to")
    return filters


__all__ = [
    "DATA_DELETED",
    "DATA_EXPORTED",
    "RETAINED",
    "ConsentLister",
    "ExportFilters",
    "RegistryEviction",
    "check_window",
    "erase_user",
    "event_json",
    "export_data",
    "profile_json",
]
