"""Consent: what a user allows the gateway to process their data for.

`ConsentService` is made by `create_app` as `app.state.consent`. One record per (user,
purpose) lives in the consent store; granting again renews it for `CONSENT_TTL` (one
year) and clears a revocation; revoking is idempotent. A consent's `status` is derived
from the service clock: `revoked` when revoked, else `expired` once `expires_at` has
passed, else `active`.

Every flow that processes personal data first calls

    await request.app.state.consent.require(user_id, "registry_check")

which returns, or raises a 403 `missing_consent` / `consent_expired` / `consent_revoked`.
Grants and revocations are audited (`consent_granted`, `consent_revoked`, one event per
purpose).
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from engine.clock import Clock, utc_text
from server.auth.events import AuditContext
from server.errors import ApiError, echo
from server.events import EventPublisher
from server.security import user_gone
from stores import Consent, NotFound, Stores

ConsentStatus = Literal["active", "expired", "revoked"]
StoresSource = Stores | Callable[[], Stores]

PURPOSES = ("login", "registry_check", "vc_issuance", "decision_evaluation")
STATUSES: tuple[ConsentStatus, ...] = ("active", "expired", "revoked")
CONSENT_TTL = timedelta(days=365)

CONSENT_GRANTED = "consent_granted"
CONSENT_REVOKED = "consent_revoked"


def stores_of(source: StoresSource) -> Callable[[], Stores]:
    """A getter for the app's stores: they are opened in the lifespan, after the services
    are made, so services take `lambda: ...` (or fixed stores, in unit tests)."""
    if isinstance(source, Stores):
        return lambda: source
    return source


def consent_status(consent: Consent, now: datetime) -> ConsentStatus:
    if consent.revoked_at is not None:
        return "revoked"
    if consent.expires_at is not None and consent.expires_at <= now:
        return "expired"
    return "active"


@dataclass(frozen=True, slots=True)
class ConsentView:
    """A consent record with its status at the moment it was read."""

    id: str
    purpose: str
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    status: ConsentStatus

    @classmethod
    def of(cls, consent: Consent, now: datetime) -> ConsentView:
        return cls(consent.id, consent.purpose, consent.granted_at, consent.expires_at, consent.revoked_at,
                   consent_status(consent, now))

    def to_json(self) -> dict[str, Any]:
        """The V1 shape: `{id, purpose, granted_at, expires_at, revoked_at, status}`."""
        return {
            "id": self.id,
            "purpose": self.purpose,
            "granted_at": utc_text(self.granted_at),
            "expires_at": utc_text(self.expires_at),
            "revoked_at": utc_text(self.revoked_at),
            "status": self.status,
        }


def unknown_purposes(purposes: Iterable[str]) -> list[str]:
    return [p for p in purposes if p not in PURPOSES]


def _check_purposes(purposes: Iterable[str]) -> list[str]:
    """The purposes without repeats, in the given order; unknown ones are a 400."""
    chosen = list(dict.fromkeys(purposes))
    unknown = unknown_purposes(chosen)
    if unknown:
        raise ApiError(400, f"unknown purpose {echo(', '.join(repr(p) for p in unknown))}; "
                            f"known purposes: {', '.join(PURPOSES)}", error="invalid_purpose")
    if not chosen:
        raise ApiError(400, "purposes: at least one purpose is needed")
    return chosen


class ConsentService:
    """Consents of the app's users, on the app's stores and clock."""

    def __init__(self, stores: StoresSource, events: EventPublisher, clock: Clock) -> None:
        self._stores = stores_of(stores)
        self.events = events
        self.clock = clock

    def _audit(self, request_id: str | None) -> AuditContext:
        return AuditContext(self.events, request_id)

    def view(self, consent: Consent, now: datetime | None = None) -> ConsentView:
        return ConsentView.of(consent, now or self.clock())

    async def grant(self, user_id: str, purposes: Iterable[str], *, request_id: str | None = None) -> list[Consent]:
        """Grant or renew (for one year from now) the user's consent to each purpose."""
        chosen = _check_purposes(purposes)
        store, now = self._stores().consents, self.clock()
        granted: list[Consent] = []
        for purpose in chosen:
            try:
                granted.append(await store.grant(Consent(
                    id="consent_" + secrets.token_hex(12), user_id=user_id, purpose=purpose,
                    granted_at=now, expires_at=now + CONSENT_TTL,
                )))
            except NotFound:
                raise user_gone() from None
        audit = self._audit(request_id)
        for consent in granted:
            audit.emit(CONSENT_GRANTED, user_id, outcome="granted", purpose=consent.purpose, when=now)
        return granted

    async def revoke(self, user_id: str, purposes: Iterable[str], *, request_id: str | None = None) -> list[str]:
        """Revoke the user's consent to each purpose; returns the purposes that were not yet
        revoked (an empty list when there was nothing to do: revoking is idempotent)."""
        chosen = _check_purposes(purposes)
        now = self.clock()
        revoked = await self._stores().consents.revoke(user_id, chosen, now)
        audit = self._audit(request_id)
        for consent in revoked:
            audit.emit(CONSENT_REVOKED, user_id, outcome="revoked", purpose=consent.purpose, when=now)
        return [c.purpose for c in revoked]

    async def list(
        self, user_id: str, status: str | None = None, purpose: str | None = None
    ) -> builtins.list[ConsentView]:
        """The user's consents by purpose, with their status now, optionally filtered."""
        if status is not None and status not in STATUSES:
            raise ApiError(400, f"status: expected one of {', '.join(STATUSES)}, got {echo(repr(status))}")
        if purpose is not None:
            _check_purposes([purpose])
        now = self.clock()
        views = [ConsentView.of(c, now) for c in await self._stores().consents.list_for_user(user_id)]
        return [v for v in views
                if (status is None or v.status == status) and (purpose is None or v.purpose == purpose)]

    async def status(self, user_id: str, purpose: str) -> ConsentStatus | None:
        """The status of the user's consent to `purpose`, or None when never granted."""
        consent = await self._stores().consents.find(user_id, purpose)
        return None if consent is None else consent_status(consent, self.clock())

    async def require(
        self, user_id: str, purpose: str, *, audit_as: str | None = None, request_id: str | None = None
    ) -> None:
        """Return if the user holds an active consent to `purpose`, else a 403 saying why.

        With `audit_as`, a refusal is audited as that action (e.g. `registry_citizen_checked`)
        with outcome `denied` and the error code as reason.
        """
        status = await self.status(user_id, purpose)
        if status == "active":
            return
        error = {None: "missing_consent", "expired": "consent_expired", "revoked": "consent_revoked"}[status]
        if audit_as is not None:
            self._audit(request_id).emit(audit_as, user_id, outcome="denied", reason=error, purpose=purpose,
                                         when=self.clock())
        hint = f"grant it with POST /auth/consent {{\"purposes\": [\"{purpose}\"]}}"
        description = {
            "missing_consent": f"no consent for purpose {purpose!r}; {hint}",
            "consent_expired": f"the consent for purpose {purpose!r} has expired; renew it: {hint}",
            "consent_revoked": f"the consent for purpose {purpose!r} was revoked; {hint}",
        }[error]
        raise ApiError(403, description, error=error, extra={"purpose": purpose})

    async def active_purposes(self, user_id: str) -> set[str]:
        """The purposes the user holds an active consent to (the `consent.<purpose>` facts)."""
        now = self.clock()
        return {c.purpose for c in await self._stores().consents.list_for_user(user_id)
                if consent_status(c, now) == "active"}


__all__ = [
    "CONSENT_GRANTED",
    "CONSENT_REVOKED",
    "CONSENT_TTL",
    "PURPOSES",
    "STATUSES",
    "ConsentService",
    "ConsentStatus",
    "ConsentView",
    "StoresSource",
    "consent_status",
    "stores_of",
]
