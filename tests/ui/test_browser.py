"""The workbench in a real browser: headless Chromium against real `idgw serve` and
`idgw policy studio` processes. Every page opened must leave the console without an
error (the `new_page` fixture checks it); each page's screenshot is taken, for
docs/images with IDGW_TEST_SCREENSHOTS=1."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import engine
from server.facts import CATALOGUE
from tests.server.bundles import variant
from tests.server.conftest import IDGW, SHIPPED_POLICIES, ServerProcess, wait_until
from tests.ui.browser import PHONE, StudioProcess

pytestmark = pytest.mark.usefixtures("browser")

Screenshot = Callable[[Any, str], Path]
AGE_FACTS = ("sanctions_listed", "citizen_valid", "is_over_18", "has_credential")
NATIONAL_ID = "AB123456"


@pytest.fixture
def gateway(start_server: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    """`idgw serve` with its embedded defaults (SQLite in tmp_path, memory queue and
    cache), open access, and a shadow set: the shipped policies, a politically exposed
    person's reason renamed (its test file too)."""
    shadow = variant(SHIPPED_POLICIES, tmp_path / "shadow", "politically_exposed", "pep_review")
    return start_server(SHIPPED_POLICIES, IDGW_DATABASE_URL=f"sqlite:///{tmp_path / 'idgw.db'}",
                        IDGW_SHADOW_POLICY_DIR=str(shadow))


@pytest.fixture
def shipped() -> engine.PolicySet:
    return engine.load(SHIPPED_POLICIES, catalogue=CATALOGUE)


def fill_age_verification(page: Any, facts: dict[str, bool | None], national_id: str = NATIONAL_ID) -> None:
    for name in AGE_FACTS:
        value = facts.get(name)
        page.check(f'input[name="{name}"][value="{"" if value is None else str(value).lower()}"]')
    page.fill("#f-context-national_id", national_id)


def test_the_overview_lists_the_shipped_purposes(gateway: ServerProcess, new_page: Any,
                                                 shipped: engine.PolicySet, screenshot: Screenshot) -> None:
    page = new_page()
    page.goto(f"{gateway.base_url}/")  # the root leads to the workbench
    assert page.url == f"{gateway.base_url}/ui/"
    rows = page.locator("table.purposes tbody tr")
    assert rows.count() == len(shipped.purposes)
    names = [rows.nth(i).locator("th").inner_text() for i in range(rows.count())]
    assert names == sorted(shipped.purposes)
    assert shipped.revision in page.locator(".revision").inner_text()
    screenshot(page, "overview")
    page.click("text=age_verification")
    assert page.locator("h1").inner_text() == "age_verification"
    assert page.locator("tr.unreached").count() == 0  # the shipped tests reach every rule
    screenshot(page, "purpose")
    page.click("nav >> text=Tests")
    assert "15 passed, 0 failed" in page.locator(".summary").inner_text()
    screenshot(page, "tests")


def test_trying_age_verification_gives_the_engines_decision_and_rule(
    gateway: ServerProcess, new_page: Any, shipped: engine.PolicySet, screenshot: Screenshot,
) -> None:
    page = new_page()
    page.goto(f"{gateway.base_url}/ui/purposes/age_verification/try")
    fact_sets = [dict(zip(AGE_FACTS, values, strict=True)) for values in itertools.product((True, False), repeat=4)]
    fact_sets += [{"sanctions_listed": False, "citizen_valid": True}, {}]  # missing evidence
    for facts in fact_sets:
        fill_age_verification(page, facts)
        page.get_by_role("button", name="Decide").click()
        given = {name: value for name, value in facts.items() if value is not None}
        expected = shipped.decide("age_verification", {**given, "context": {"national_id": NATIONAL_ID}})
        assert page.locator(".decision-status").inner_text() == expected.status, facts
        assert page.locator(".decision-reason").inner_text() == expected.reason, facts
        assert page.locator(".decision-conditions").inner_text() == (", ".join(expected.conditions) or "none")
        deciding = page.locator(".deciding-rule").inner_text()
        if expected.rule is not None:
            assert deciding.startswith(f"rule {expected.rule + 1} (line {expected.line})"), (facts, deciding)
            assert page.locator(".trace .decided").count() == 1
        else:
            assert "evidence check" in deciding, (facts, deciding)
    screenshot(page, "try")


def test_a_context_value_violating_the_schema_shows_the_fields_error(gateway: ServerProcess, new_page: Any) -> None:
    page = new_page()
    page.goto(f"{gateway.base_url}/ui/purposes/age_verification/try")
    fill_age_verification(page, dict.fromkeys(AGE_FACTS, False), national_id="ab-1")
    page.get_by_role("button", name="Decide").click()
    error = page.locator("#f-context-national_id-error")
    assert error.inner_text() == "does not match ^[A-Z0-9]{6,20}$"
    described = page.locator("#f-context-national_id").get_attribute("aria-describedby") or ""
    assert "f-context-national_id-error" in described.split()
    assert page.locator(".decision-status").count() == 0


def test_the_copied_test_case_passes_and_the_copied_curl_gets_the_same_answer(
    gateway: ServerProcess, new_page: Any, tmp_path: Path,
) -> None:
    page = new_page()
    page.goto(f"{gateway.base_url}/ui/purposes/age_verification/try")
    fill_age_verification(page, {"sanctions_listed": False, "citizen_valid": True, "is_over_18": True,
                                 "has_credential": False})
    page.get_by_role("button", name="Decide").click()
    page.click("text=Copy as test case")
    wait_until(lambda: page.locator(".copied").first.inner_text() or page.locator(".copied").last.inner_text(), 5)
    case = page.evaluate("navigator.clipboard.readText()")
    policy_dir = tmp_path / "copied"
    shutil.copytree(SHIPPED_POLICIES, policy_dir)
    (policy_dir / "workbench_test.yaml").write_text(f"purpose: age_verification\ncases:\n{case}")
    run = subprocess.run([str(IDGW), "policy", "test", str(policy_dir), "-k", "tried in the workbench"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "1 passed, 0 failed" in run.stdout, run.stdout + run.stderr
    assert yaml.safe_load(case)[0]["expect"]["reason"] == "missing_credential"

    page.click("text=Copy as curl")
    curl = page.evaluate("navigator.clipboard.readText()")
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
    result = json.loads(answer.stdout)["result"]
    assert (result["status"], result["reason"]) == ("pass_with_conditions", "missing_credential")


def test_the_try_form_works_from_the_keyboard(gateway: ServerProcess, new_page: Any) -> None:
    page = new_page()
    page.goto(f"{gateway.base_url}/ui/purposes/sanctions_screening/try")
    page.focus('input[name="sanctions_listed"][value="true"]')
    page.keyboard.press("ArrowRight")  # radios of one group: the arrows move the choice
    assert page.locator('input[name="sanctions_listed"][value="false"]').is_checked()
    page.keyboard.press("Tab")  # to the next group's checked choice: missing
    page.keyboard.press("ArrowLeft")
    assert page.locator('input[name="is_pep"][value="false"]').is_checked()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-context-national_id"
    page.keyboard.type(NATIONAL_ID)
    page.keyboard.press("Enter")
    page.wait_for_selector(".decision-status")
    assert page.locator(".decision-reason").inner_text() == "not_listed"


def test_every_page_fits_a_phone(gateway: ServerProcess, new_page: Any) -> None:
    page = new_page(PHONE)
    for path in ("/ui/", "/ui/purposes/high_value_transfer", "/ui/purposes/high_value_transfer/try",
                 "/ui/tests", "/ui/impact"):
        page.goto(f"{gateway.base_url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path


def test_the_impact_page_shows_the_shadow_agreement(gateway: ServerProcess, new_page: Any,
                                                    screenshot: Screenshot) -> None:
    for sanctioned, pep in ((False, False), (True, False), (False, True)):
        response = gateway.client.post("/v1/data/sanctions_screening", json={"input": {
            "sanctions_listed": sanctioned, "is_pep": pep, "context": {"national_id": NATIONAL_ID}}})
        assert response.status_code == 200, response.text
    shadow = gateway.policies()["shadow"]
    page = new_page()
    page.goto(f"{gateway.base_url}/ui/impact")
    assert shadow["revision"] in page.locator(".revision").inner_text()
    row = page.locator("tr", has=page.locator("th", has_text="sanctions_screening"))
    assert row.locator("td").all_inner_texts() == ["2", "1", "0"] == [
        str(shadow["agreement"]["sanctions_screening"][k]) for k in ("same", "different", "not_replayable")]

    def recorded() -> str:  # the records are stored by the audit writer, within its flush interval
        page.reload()
        text: str = page.locator("pre.replay").inner_text()
        return text if "3 decisions replayed" in text else ""

    text = wait_until(recorded, 15, interval=0.5)
    assert "3 decisions replayed, 1 changed" in text
    assert "pass_with_conditions/politically_exposed -> pass_with_conditions/pep_review: 1" in text
    screenshot(page, "impact")


@pytest.fixture
def studio(start_server: Callable[..., ServerProcess], tmp_path: Path) -> tuple[Path, ServerProcess]:
    """`idgw policy studio` on a copy of the shipped policies: (the copy, the process)."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, policy_dir)
    return policy_dir, start_server(policy_dir, kind=StudioProcess)


def test_a_broken_file_saved_under_studio_shows_then_goes(studio: tuple[Path, ServerProcess], new_page: Any,
                                                         screenshot: Screenshot) -> None:
    policy_dir, process = studio
    page = new_page()
    page.goto(f"{process.base_url}/ui/")
    assert page.locator("table.purposes tbody tr").count() == 3
    policy = policy_dir / "age_verification.yaml"
    good = policy.read_text()
    policy.write_text(good.replace("if: NOT is_over_18", "if: NOT is_over_18 AND"))
    diagnostic = page.locator(".diagnostic").first
    diagnostic.wait_for(timeout=2000)  # the page follows the file by itself
    assert "policies/age_verification.yaml:19:31" in diagnostic.inner_text() and "E101" in diagnostic.inner_text()
    assert page.locator(".diagnostic .caret").first.inner_text().strip() == "^"
    screenshot(page, "studio")
    policy.write_text(good)
    page.locator(".diagnostic").first.wait_for(state="detached", timeout=2000)
    assert "unchanged" in page.locator(".reload").inner_text()


def test_a_studio_try_follows_the_saved_rules(studio: tuple[Path, ServerProcess], new_page: Any) -> None:
    policy_dir, process = studio
    page = new_page()
    page.goto(f"{process.base_url}/ui/purposes/sanctions_screening/try")
    page.check('input[name="sanctions_listed"][value="false"]')
    page.check('input[name="is_pep"][value="false"]')
    page.fill("#f-context-national_id", NATIONAL_ID)
    page.get_by_role("button", name="Decide").click()
    assert page.locator(".decision-reason").inner_text() == "not_listed"
    policy = policy_dir / "sanctions_screening.yaml"
    policy.write_text(policy.read_text().replace("reason: not_listed", "reason: clear"))
    page.locator(".decision-reason", has_text="clear").wait_for(timeout=2000)
    assert page.locator(".decision-reason").inner_text() == "clear"
    page.check('input[name="is_pep"][value="true"]')  # typing: the page waits for the author
    policy.write_text(policy.read_text().replace("reason: clear", "reason: clear_of_lists"))
    page.locator("#files-changed").wait_for(timeout=2000)
    assert page.locator('input[name="is_pep"][value="true"]').is_checked()
    page.click("#files-changed a")
    page.locator(".decision-reason").wait_for(state="detached")  # the page anew, as a GET


def test_with_bearer_the_pages_refuse_an_anonymous_browser(
    start_server: Callable[..., ServerProcess], new_page: Any, console: Any, screenshot: Screenshot,
) -> None:
    server = start_server(SHIPPED_POLICIES, IDGW_DATA_API_AUTH="bearer")
    page = new_page()
    for path in ("/ui/", "/ui/purposes/age_verification", "/ui/tests"):
        page.goto(f"{server.base_url}{path}")
        assert page.locator("h1").inner_text() == "Sign in"
        assert page.locator("table").count() == 0 and "age_verification" not in page.content().replace(path, "")
    screenshot(page, "signin")
    page.fill("#token", "not-a-token")
    page.click("form[data-signin] >> text=Sign in")
    page.locator("#signin-error").wait_for()
    assert "refused" in page.locator("#signin-error").inner_text()
    assert page.locator("table").count() == 0
    # the browser reports the refusal (a 401) itself; nothing else may reach the console
    refusals = [m for m in console.messages if "401" in m]
    assert len(refusals) == 1
    console.messages.remove(refusals[0])

    page.fill("#email", "analyst@example.com")  # this gateway's login: the token stays in memory
    page.click("form[data-signin-local] >> text=Sign in")
    page.locator("h1", has_text="Tests").wait_for()  # the page asked for, now signed in
    assert "15 passed, 0 failed" in page.locator(".summary").inner_text()
    page.click("nav >> text=Overview")  # links go through the script, with the token
    page.locator("table.purposes").wait_for()
    assert page.url.endswith("/ui/")
    page.click("text=Try sanctions_screening")
    page.check('input[name="sanctions_listed"][value="true"]')
    page.check('input[name="is_pep"][value="false"]')
    page.fill("#f-context-national_id", NATIONAL_ID)
    page.get_by_role("button", name="Decide").click()
    assert page.locator(".decision-reason").inner_text() == "sanctioned"
    storage = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert storage == [0, 0, ""]
    assert httpx.get(f"{server.base_url}/ui/tests").text.count("Sign in") >= 1
