"""The evidence-provider registry: which provider gathers each fact the gateway provides.

`POST /decision/evaluate` asks `gather_evidence()` for exactly the facts the purpose
declares. Each declared fact maps to one provider; the providers a purpose needs run
concurrently under one deadline, and a provider no declared fact needs is never called
(data minimisation: a purpose without citizen facts makes no citizen registry call).

    fact                              provider            source
    citizen_valid, is_over_18         citizen_registry    app.state.registry.citizen(national_id)
    sanctions_listed, is_pep          sanctions_registry  app.state.registry.sanctions(national_id)
    has_credential, credentials       credentials         app.state.credentials.held_types(user)
    consent.<purpose>                 consent             app.state.consent.active_purposes(user),
                                                          for each one the rules read or declare
    subject.sub, .scope, .client_id   token subject       the caller's access token (no I/O)

The registry facts need `context.national_id`; without it they stay missing and the
engine fails closed (`missing_evidence`). A declared fact no provider knows (lint
warning W306) is left missing too: only the data API can supply it. Only derived facts
reach the engine: names, dates of birth and addresses stay in the registry records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dsl import Fact
from engine import Purpose
from server.errors import ApiError
from server.facts import CITIZEN_FACTS, CREDENTIAL_FACTS, SANCTIONS_FACTS
from server.security import Principal

#: The credential type behind `has_credential`.
AGE_CREDENTIAL = "AgeOver18"
#: Facts of the `consent.<purpose>` form.
CONSENT_PREFIX = "consent."


# -- what the providers need from the gateway's services (consent, registry, credentials)


class CitizenFacts(Protocol):
    @property
    def valid(self) -> bool: ...

    @property
    def is_over_18(self) -> bool: ...


class SanctionsFacts(Protocol):
    @property
    def listed(self) -> bool: ...

    @property
    def pep(self) -> bool: ...


class Registries(Protocol):
    """`subject=` names whose lookup it is, so erasure can evict the cached answers."""

    async def citizen(self, national_id: str, *, subject: str | None = None) -> CitizenFacts: ...

    async def sanctions(self, national_id: str, *, subject: str | None = None) -> SanctionsFacts: ...


class HeldCredentials(Protocol):
    async def held_types(self, user_id: str) -> list[str]: ...


class ActiveConsents(Protocol):
    async def active_purposes(self, user_id: str) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class EvidenceSources:
    """The services evidence comes from (`app.state.registry`, `.credentials`, `.consent`)."""

    registry: Registries
    credentials: HeldCredentials
    consent: ActiveConsents


@dataclass(frozen=True, slots=True)
class EvidenceRequest:
    """Who the decision is about and the request's `context` (already validated)."""

    principal: Principal
    context: Mapping[str, object]

    @property
    def national_id(self) -> str | None:
        value = self.context.get("national_id")
        return value if isinstance(value, str) else None


# -- providers --------------------------------------------------------------------------

Fetch = Callable[[EvidenceSources, EvidenceRequest, frozenset[str]], Coroutine[object, object, dict[str, object]]]


@dataclass(frozen=True, slots=True)
class Provider:
    """Gathers some facts from one source. `fetch(sources, request, wanted)` returns the
    `wanted` facts it could establish (a fact it cannot establish is left out)."""

    name: str
    source: str
    facts: frozenset[str]
    fetch: Fetch
    #: Its failures are registry failures (504 `registry_unavailable` on a timeout).
    registry: bool = False


async def _citizen(sources: EvidenceSources, request: EvidenceRequest, wanted: frozenset[str]) -> dict[str, object]:
    if (national_id := request.national_id) is None:
        return {}  # without it the facts stay missing: the engine fails closed
    record = await sources.registry.citizen(national_id, subject=request.principal.sub)
    return {"citizen_valid": bool(record.valid), "is_over_18": bool(record.is_over_18)}


async def _sanctions(sources: EvidenceSources, request: EvidenceRequest, wanted: frozenset[str]) -> dict[str, object]:
    if (national_id := request.national_id) is None:
        return {}  # without it the facts stay missing: the engine fails closed
    record = await sources.registry.sanctions(national_id, subject=request.principal.sub)
    return {"sanctions_listed": bool(record.listed), "is_pep": bool(record.pep)}


async def _credentials(
    sources: EvidenceSources, request: EvidenceRequest, wanted: frozenset[str]
) -> dict[str, object]:
    held = sorted(set(await sources.credentials.held_types(request.principal.sub)))
    return {"has_credential": AGE_CREDENTIAL in held, "credentials": held}


async def _consent(sources: EvidenceSources, request: EvidenceRequest, wanted: frozenset[str]) -> dict[str, object]:
    active = await sources.consent.active_purposes(request.principal.sub)
    return {name: name.removeprefix(CONSENT_PREFIX) in active for name in wanted}


def _names(facts: Iterable[Fact]) -> frozenset[str]:
    return frozenset(fact.name for fact in facts)


# the facts each provider gathers are the catalogue's (server/facts.py): one list
CITIZEN_REGISTRY = Provider("citizen_registry", "citizen registry", _names(CITIZEN_FACTS), _citizen, registry=True)
SANCTIONS_REGISTRY = Provider(
    "sanctions_registry", "sanctions registry", _names(SANCTIONS_FACTS), _sanctions, registry=True
)
CREDENTIALS = Provider("credentials", "credential store", _names(CREDENTIAL_FACTS), _credentials)
CONSENT = Provider("consent", "consent records", frozenset(), _consent)

#: Fact name -> the provider that gathers it (`consent.<purpose>` facts: `CONSENT`).
PROVIDERS: dict[str, Provider] = {
    fact: provider for provider in (CITIZEN_REGISTRY, SANCTIONS_REGISTRY, CREDENTIALS) for fact in provider.facts
}


def provider_for(fact: str) -> Provider | None:
    """The provider of a declared fact, or None when the gateway does not provide it."""
    if fact.startswith(CONSENT_PREFIX):
        return CONSENT
    return PROVIDERS.get(fact)


def plan(facts: Iterable[str]) -> dict[Provider, frozenset[str]]:
    """The providers `facts` need, each with the facts it must supply."""
    wanted: dict[Provider, set[str]] = {}
    for fact in facts:
        provider = provider_for(fact)
        if provider is not None:
            wanted.setdefault(provider, set()).add(fact)
    return {provider: frozenset(names) for provider, names in wanted.items()}


def subject_facts(principal: Principal) -> dict[str, object]:
    """`subject.*`: the caller's token (always provided: nothing is looked up)."""
    return {"sub": principal.sub, "scope": list(principal.scope), "client_id": principal.client_id}


# -- gathering --------------------------------------------------------------------------


class EvidenceTimeout(Exception):
    """Providers did not answer within the deadline."""

    def __init__(self, pending: list[Provider], timeout: float) -> None:
        self.pending = pending
        self.timeout = timeout
        super().__init__(f"no answer within {timeout:g}s from {', '.join(p.source for p in pending)}")

    def as_api_error(self) -> ApiError:
        registry = any(p.registry for p in self.pending)
        return ApiError(
            504,
            f"evidence could not be gathered: {self}",
            error="registry_unavailable" if registry else "evidence_unavailable",
        )


async def gather_evidence(
    purpose: Purpose,
    request: EvidenceRequest,
    sources: EvidenceSources,
    timeout: float,
) -> dict[str, object]:
    """The facts to decide `purpose` on: its declared facts (those the gateway could
    establish), `subject`, `consent` (the purpose's required consents, verified before,
    and every `consent.*` its rules read or its evidence declares) and `context`.

    The needed providers run concurrently; the first failure cancels the others and is
    raised as it is (an `ApiError` such as a registry's 504 stays one); a deadline
    passing raises `EvidenceTimeout` naming the providers still waiting.
    """
    needed = plan([*purpose.facts, *(CONSENT_PREFIX + name for name in purpose.consents_read)])
    tasks: dict[Provider, asyncio.Task[dict[str, object]]] = {}
    try:
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
            for provider, wanted in needed.items():
                tasks[provider] = group.create_task(provider.fetch(sources, request, wanted), name=provider.name)
    except TimeoutError:
        pending = [p for p, task in tasks.items() if task.cancelled() or not task.done()]
        raise EvidenceTimeout(pending or list(tasks), timeout) from None
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None

    facts: dict[str, object] = {"context": dict(request.context), "subject": subject_facts(request.principal)}
    consent: dict[str, object] = dict.fromkeys(purpose.consent, True)
    for provider, task in tasks.items():
        wanted = needed[provider]
        for name, value in task.result().items():
            if name not in wanted:
                continue  # fetched together with a declared fact, but not declared itself
            if name.startswith(CONSENT_PREFIX):
                consent[name.removeprefix(CONSENT_PREFIX)] = value
            else:
                facts[name] = value
    facts["consent"] = consent
    return facts


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for a failed task group: an `ApiError` when there is one."""
    leaves: list[BaseException] = []

    def flatten(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                flatten(inner)
        else:
            leaves.append(error)

    flatten(group)
    return next((e for e in leaves if isinstance(e, ApiError)), leaves[0])


__all__ = [
    "AGE_CREDENTIAL",
    "CITIZEN_REGISTRY",
    "CONSENT",
    "CREDENTIALS",
    "PROVIDERS",
    "SANCTIONS_REGISTRY",
    "ActiveConsents",
    "CitizenFacts",
    "EvidenceRequest",
    "EvidenceSources",
    "EvidenceTimeout",
    "HeldCredentials",
    "Provider",
    "Registries",
    "SanctionsFacts",
    "gather_evidence",
    "plan",
    "provider_for",
    "subject_facts",
]
