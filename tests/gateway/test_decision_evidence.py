"""The evidence-provider registry on its own: which providers a purpose's declared facts
need, that only those run, concurrently, under one deadline, and what they hand the
engine. The consent, registry and credential services are small fakes here (their own
tests cover them); the HTTP flow is in test_decision.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import engine
from engine import PolicySet
from server.decisions.evidence import (
    CITIZEN_REGISTRY,
    CONSENT,
    CREDENTIALS,
    PROVIDERS,
    SANCTIONS_REGISTRY,
    EvidenceRequest,
    EvidenceSources,
    EvidenceTimeout,
    gather_evidence,
    plan,
    provider_for,
)
from server.errors import ApiError
from server.facts import CATALOGUE
from server.security import Principal

POLICIES = """\
purposes:
  age_verification:
    consent: [decision_evaluation]
    context:
      national_id: {type: string, pattern: "^[A-Z0-9]{6,20}$"}
    evidence: [sanctions_listed, {citizen_valid: true}, {is_over_18: true}, has_credential]
    rules:
      - if: sanctions_listed
        then: fail
        reason: sanctioned
      - else: pass
        reason: ok
  sanctions_screening:
    consent: [registry_check]
    context:
      national_id: {type: string, required: true}
    evidence: [{sanctions_listed: false}, is_pep]
    rules:
      - if: sanctions_listed
        then: fail
        reason: sanctioned
      - else: pass
        reason: clear
  wallet:
    consent: [decision_evaluation]
    evidence: [credentials, consent.vc_issuance, consent.registry_check]
    rules:
      - if: '"AgeOver18" in credentials AND consent.vc_issuance AND subject.client_id == "app"'
        then: pass
        reason: holder
      - else: fail
        reason: not_holder
  reader:
    consent: [decision_evaluation]
    evidence: [has_credential]
    rules:
      - if: consent.vc_issuance AND subject.client_id == "app" AND subject.sub == "usr_alice"
        then: pass
        reason: may_issue
      - else: fail
        reason: may_not
  nothing_gathered:
    context:
      amount: {type: number}
    evidence: [{partner_score: 3}]
    rules:
      - else: pass
        reason: ok
"""

ALICE = Principal(sub="usr_alice", client_id="app", scope=("openid", "profile"))


@dataclass(frozen=True)
class Citizen:
    valid: bool = True
    is_over_18: bool = True


@dataclass(frozen=True)
class Sanctions:
    listed: bool = False
    pep: bool = False


@dataclass
class FakeRegistry:
    """Counts lookups per registry; `delay` simulates latency, `fail` raises."""

    delay: float = 0.0
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: dict[str, list[tuple[str, str | None]]] = field(default_factory=lambda: {"citizen": [], "sanctions": []})
    cancelled: list[str] = field(default_factory=list)

    async def _answer(self, kind: str, national_id: str, subject: str | None) -> None:
        self.calls[kind].append((national_id, subject))
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(kind)
            raise
        if kind in self.fail:
            raise self.fail[kind]

    async def citizen(self, national_id: str, *, subject: str | None = None) -> Citizen:
        await self._answer("citizen", national_id, subject)
        return Citizen(valid=True, is_over_18=national_id != "111111111")

    async def sanctions(self, national_id: str, *, subject: str | None = None) -> Sanctions:
        await self._answer("sanctions", national_id, subject)
        return Sanctions(listed=national_id == "987654321", pep=national_id == "555555555")


@dataclass
class FakeCredentials:
    held: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0

    async def held_types(self, user_id: str) -> list[str]:
        self.calls += 1
        return list(self.held.get(user_id, []))


@dataclass
class FakeConsent:
    active: dict[str, set[str]] = field(default_factory=dict)
    calls: int = 0

    async def active_purposes(self, user_id: str) -> set[str]:
        self.calls += 1
        return set(self.active.get(user_id, set()))


@dataclass
class Sources:
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    credentials: FakeCredentials = field(default_factory=FakeCredentials)
    consent: FakeConsent = field(default_factory=FakeConsent)

    @property
    def bundle(self) -> EvidenceSources:
        return EvidenceSources(registry=self.registry, credentials=self.credentials, consent=self.consent)


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> PolicySet:
    folder: Path = tmp_path_factory.mktemp("policies")
    (folder / "purposes.yaml").write_text(POLICIES)
    return engine.load(folder, catalogue=CATALOGUE)


async def gather(policies: PolicySet, purpose: str, sources: Sources, context: dict[str, object],
                 timeout: float = 2.0) -> dict[str, object]:
    return await gather_evidence(policies.purpose(purpose), EvidenceRequest(ALICE, context), sources.bundle, timeout)


def test_every_gateway_fact_of_the_catalogue_has_a_provider() -> None:
    assert set(PROVIDERS) == set(CATALOGUE)  # the providers gather the catalogue's facts, no more
    assert {fact: provider_for(fact) for fact in CATALOGUE} == {
        "citizen_valid": CITIZEN_REGISTRY, "is_over_18": CITIZEN_REGISTRY,
        "sanctions_listed": SANCTIONS_REGISTRY, "is_pep": SANCTIONS_REGISTRY,
        "has_credential": CREDENTIALS, "credentials": CREDENTIALS,
    }
    assert provider_for("consent.registry_check") is CONSENT
    assert provider_for("partner_score") is None


async def test_consents_the_rules_read_are_provided_declared_or_not(policies: PolicySet) -> None:
    # `reader` declares only has_credential, but its rules read consent.vc_issuance
    assert policies.purpose("reader").consents_read == ("vc_issuance",)
    sources = Sources(consent=FakeConsent({"usr_alice": {"decision_evaluation", "vc_issuance"}}))
    facts = await gather(policies, "reader", sources, {})
    assert facts["consent"] == {"decision_evaluation": True, "vc_issuance": True}
    assert policies.decide("reader", facts).reason == "may_issue"
    refused = await gather(policies, "reader", Sources(consent=FakeConsent({"usr_alice": {"decision_evaluation"}})), {})
    assert refused["consent"] == {"decision_evaluation": True, "vc_issuance": False}
    assert policies.decide("reader", refused).reason == "may_not"
    # a purpose whose rules read no consent does not ask for any
    untouched = Sources()
    await gather(policies, "sanctions_screening", untouched, {"national_id": "555555555"})
    assert untouched.consent.calls == 0


def test_plan_groups_declared_facts_by_provider(policies: PolicySet) -> None:
    assert plan(policies.purpose("age_verification").facts) == {
        SANCTIONS_REGISTRY: frozenset({"sanctions_listed"}),
        CITIZEN_REGISTRY: frozenset({"citizen_valid", "is_over_18"}),
        CREDENTIALS: frozenset({"has_credential"}),
    }
    assert plan(policies.purpose("sanctions_screening").facts) == {
        SANCTIONS_REGISTRY: frozenset({"sanctions_listed", "is_pep"}),
    }
    assert plan(policies.purpose("nothing_gathered").facts) == {}


async def test_a_purpose_without_citizen_facts_makes_no_citizen_call(policies: PolicySet) -> None:
    sources = Sources()
    facts = await gather(policies, "sanctions_screening", sources, {"national_id": "555555555"})
    assert sources.registry.calls == {"citizen": [], "sanctions": [("555555555", "usr_alice")]}
    assert sources.credentials.calls == 0 and sources.consent.calls == 0
    assert facts == {
        "sanctions_listed": False, "is_pep": True,
        "context": {"national_id": "555555555"},
        "subject": {"sub": "usr_alice", "scope": ["openid", "profile"], "client_id": "app"},
        "consent": {"registry_check": True},
    }


async def test_exactly_the_declared_facts_are_handed_over(policies: PolicySet) -> None:
    sources = Sources(credentials=FakeCredentials({"usr_alice": ["AgeOver18", "Membership"]}))
    facts = await gather(policies, "age_verification", sources, {"national_id": "123456789"})
    # `is_pep` comes with the sanctions answer but is not declared: it is left out, as is
    # `credentials` (the credential provider answers both).
    assert {k: v for k, v in facts.items() if k not in ("context", "subject", "consent")} == {
        "sanctions_listed": False, "citizen_valid": True, "is_over_18": True, "has_credential": True,
    }
    assert facts["consent"] == {"decision_evaluation": True}
    assert len(sources.registry.calls["citizen"]) == 1 and len(sources.registry.calls["sanctions"]) == 1


async def test_registry_facts_need_a_national_id_else_they_stay_missing(policies: PolicySet) -> None:
    sources = Sources()
    facts = await gather(policies, "age_verification", sources, {})
    assert sources.registry.calls == {"citizen": [], "sanctions": []}
    assert "citizen_valid" not in facts and "sanctions_listed" not in facts
    decision = policies.decide("age_verification", facts)
    assert (decision.status, decision.reason) == ("fail", "missing_evidence")


async def test_credentials_consent_and_subject_facts(policies: PolicySet) -> None:
    sources = Sources(
        credentials=FakeCredentials({"usr_alice": ["AgeOver18", "AgeOver18", "Membership"]}),
        consent=FakeConsent({"usr_alice": {"decision_evaluation", "vc_issuance"}}),
    )
    facts = await gather(policies, "wallet", sources, {})
    assert facts["credentials"] == ["AgeOver18", "Membership"]
    assert "has_credential" not in facts
    assert facts["consent"] == {"decision_evaluation": True, "vc_issuance": True, "registry_check": False}
    assert sources.registry.calls == {"citizen": [], "sanctions": []}
    decision = policies.decide("wallet", facts)
    assert (decision.status, decision.reason) == ("pass", "holder")


async def test_a_fact_no_provider_knows_is_left_missing(policies: PolicySet) -> None:
    sources = Sources()
    facts = await gather(policies, "nothing_gathered", sources, {"amount": 5})
    assert set(facts) == {"context", "subject", "consent"}
    assert policies.decide("nothing_gathered", facts).reason == "missing_evidence"


async def test_providers_run_concurrently(policies: PolicySet) -> None:
    sources = Sources(registry=FakeRegistry(delay=0.3))
    started = time.perf_counter()
    await gather(policies, "age_verification", sources, {"national_id": "123456789"})
    elapsed = time.perf_counter() - started
    assert elapsed < 0.55, f"two 0.3 s lookups took {elapsed:.2f} s: not concurrent"


async def test_the_deadline_names_the_providers_still_waiting(policies: PolicySet) -> None:
    sources = Sources(registry=FakeRegistry(delay=30))
    started = time.perf_counter()
    with pytest.raises(EvidenceTimeout) as caught:
        await gather(policies, "age_verification", sources, {"national_id": "123456789"}, timeout=0.1)
    assert time.perf_counter() - started < 2
    assert {p.name for p in caught.value.pending} == {"citizen_registry", "sanctions_registry"}
    error = caught.value.as_api_error()
    assert (error.status_code, error.error) == (504, "registry_unavailable")
    assert "citizen registry" in error.description and "sanctions registry" in error.description
    assert sorted(sources.registry.cancelled) == ["citizen", "sanctions"]


async def test_the_first_failure_cancels_the_others_and_is_raised_as_is(policies: PolicySet) -> None:
    unavailable = ApiError(504, "the citizen registry did not answer", error="registry_unavailable")

    class FailingFast(FakeRegistry):
        async def citizen(self, national_id: str, *, subject: str | None = None) -> Citizen:
            self.calls["citizen"].append((national_id, subject))
            raise unavailable

    sources = Sources(registry=FailingFast(delay=30))
    with pytest.raises(ApiError) as caught:
        await gather(policies, "age_verification", sources, {"national_id": "123456789"})
    assert caught.value is unavailable
    assert sources.registry.cancelled == ["sanctions"]
