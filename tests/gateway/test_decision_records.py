"""Decision records of `POST /decision/evaluate` (the gathered facts, refusals) and of the
data API, the shadow set beside the live one, and recording turned off."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from server.registry.clients import VALID_ADULT
from server.settings import Settings
from stores import DecisionRecord
from tests.gateway.conftest import Caller, GatewayClient, start_audited_gateway

EVALUATE = "/decision/evaluate"


async def records_of(gateway: GatewayClient) -> list[DecisionRecord]:
    assert await gateway.app.state.events.wait_delivered(10)
    found: list[DecisionRecord] = await gateway.app.state.stores.decision_records.query()
    return found


@pytest.fixture
def shadow_dir(policy_dir: Path, tmp_path: Path) -> Path:
    """The shipped policies, with adults who hold no credential failing instead."""
    target = tmp_path / "shadow"
    shutil.copytree(policy_dir, target)
    policy = target / "age_verification.yaml"
    policy.write_text(policy.read_text().replace("      - else: pass_with_conditions\n        reason: missing_credential\n"
                                                 "        conditions: [obtain_age_credential]",
                                                 "      - else: fail\n        reason: no_credential"))
    tests = target / "age_verification_test.yaml"
    text = tests.read_text()
    assert "missing_credential" in text
    tests.write_text(text.replace("{status: pass_with_conditions, reason: missing_credential, "
                                  "conditions: [obtain_age_credential]}", "{status: fail, reason: no_credential}"))
    return target


@pytest.fixture
async def recording_gateway(
    gateway_settings: Callable[..., Settings], database_url: str, shadow_dir: Path
) -> AsyncIterator[GatewayClient]:
    settings = gateway_settings(database_url=database_url, shadow_policy_dir=shadow_dir)
    async with start_audited_gateway(settings) as gw:
        yield gw


async def test_evaluate_records_the_gathered_facts_and_the_refusals(recording_gateway: GatewayClient) -> None:
    gateway = recording_gateway
    ada = await gateway.caller("ada@example.com")
    refused = await gateway.client.post(EVALUATE, headers=ada.headers, json={
        "purpose": "age_verification", "context": {"national_id": VALID_ADULT}})
    assert refused.status_code == 403
    await gateway.grant(ada, "decision_evaluation")
    decided = await gateway.client.post(EVALUATE, headers=ada.headers, json={
        "purpose": "age_verification", "context": {"national_id": VALID_ADULT}})
    assert decided.status_code == 200, decided.text
    answer = decided.json()
    refs = gateway.app.state.events.subject_refs
    ref = refs.ref(ada.user_id)

    by_id = {r.decision_id: r for r in await records_of(gateway)}
    first, second = by_id[refused.json()["decision_id"]], by_id[answer["decision_id"]]
    assert (first.decision_id, first.status, first.reason, first.body["refused"]) == (
        refused.json()["decision_id"], "fail", "missing_consent", True)
    assert (second.decision_id, second.status, second.reason) == (answer["decision_id"], answer["status"], answer["reason"])
    assert "refused" not in second.body and second.subject_ref == ref == first.subject_ref
    facts = second.body["facts"]
    # what the gateway gathered, as the engine got it: the evidence, the subject (pseudonymised), the consents
    assert {name: facts[name] for name in answer["evidence"]} == answer["evidence"]
    assert facts["subject"]["sub"] == ref and facts["consent"] == {"decision_evaluation": True}
    assert second.body["context"] == {"national_id": refs.value_ref(VALID_ADULT)}
    assert set(second.body["hashed"]) == {"context.national_id", "subject.sub"}
    assert second.body["declared"] == ["sanctions_listed", "citizen_valid", "is_over_18", "has_credential"]
    assert second.body["fields"] == ["national_id"]
    # the shadow set, which fails adults without a credential, disagreed on this one
    assert answer["reason"] == "missing_credential"
    assert second.shadow == "different"
    assert second.body["shadow"]["status"] == "fail" and second.body["shadow"]["reason"] == "no_credential"
    status = (await gateway.client.get("/v1/policies", headers=ada.headers)).json()["shadow"]
    assert status["agreement"] == {"age_verification": {"same": 0, "different": 1, "not_replayable": 0}}


async def test_a_shadow_purpose_the_live_input_cannot_feed_is_not_replayable(
    recording_gateway: GatewayClient, shadow_dir: Path
) -> None:
    gateway = recording_gateway
    # the shadow set reads a fact the live purpose neither declares nor reads
    policy = shadow_dir / "sanctions_screening.yaml"
    text = policy.read_text()
    assert "      - is_pep\n" in text
    policy.write_text(text.replace("      - is_pep\n", "      - is_pep\n      - is_over_18\n")
                      .replace("    rules:\n", "    rules:\n      - if: NOT is_over_18\n        then: fail\n"
                               "        reason: minor\n", 1))
    tests = shadow_dir / "sanctions_screening_test.yaml"
    tests.write_text(tests.read_text().replace("is_pep: ", "is_over_18: true, is_pep: "))
    assert gateway.app.state.shadow.policies.reload().result == "success"
    ada = await gateway.caller("ada@example.com")
    response = await gateway.client.post("/v1/data/sanctions_screening", headers=ada.headers, json={
        "input": {"sanctions_listed": False, "is_pep": False, "context": {"national_id": VALID_ADULT}}})
    assert response.status_code == 200, response.text
    [record] = await records_of(gateway)
    assert record.shadow == "not_replayable" and record.body["shadow"]["why"] == ["is_over_18"]


async def test_no_record_when_recording_is_off(
    gateway_settings: Callable[..., Settings], database_url: str
) -> None:
    async with start_audited_gateway(gateway_settings(database_url=database_url, decision_record_days=0)) as gateway:
        ada: Caller = await gateway.caller("ada@example.com")
        response = await gateway.client.post("/v1/data/sanctions_screening", headers=ada.headers, json={
            "input": {"sanctions_listed": False, "is_pep": False, "context": {"national_id": VALID_ADULT}}})
        assert response.status_code == 200
        assert await records_of(gateway) == []
        assert [e.action for e in await gateway.app.state.stores.audit_events.query()].count("decision_made") == 1
