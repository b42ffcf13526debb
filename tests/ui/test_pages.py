"""The workbench's pages through the ASGI app: access, headers, what each page says."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from html import unescape
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.applications import Starlette

import engine
from engine.bundle import build_bundle
from server.app import create_app
from server.audit import RecentEvents
from server.facts import CATALOGUE
from server.settings import Settings
from server.ui import CONTENT_SECURITY_POLICY
from server.ui.routes import FRAGMENT_HEADER
from tests.server.conftest import REPO, SHIPPED_POLICIES

PAGES = ["/ui/", "/ui/purposes/age_verification", "/ui/purposes/age_verification/try", "/ui/tests", "/ui/impact"]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_is_sent_with_a_strict_policy_and_no_inline_script(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert re.search(r"<script(?![^>]*\ssrc=)", html) is None  # every script is a file
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handler
    assert re.search(r"\sstyle\s*=", html) is None  # no inline style
    for match in re.finditer(r'<input(?![^>]*type="(?:radio|checkbox|hidden)")[^>]*\sid="([^"]+)"', html):
        assert f'for="{match.group(1)}"' in html, match.group(0)  # every text input is labelled


async def test_the_root_leads_to_the_workbench_and_nothing_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert [p for p in paths if p == "/" or p.startswith("/ui")] == []


async def test_the_static_files_ship_with_the_package(client: httpx.AsyncClient) -> None:
    script = await client.get("/ui/static/workbench.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "data-copy" in script.text
    style = await client.get("/ui/static/workbench.css")
    assert style.status_code == 200 and "@media" in style.text
    assert (await client.get("/ui/static/nothing.js")).status_code == 404


async def test_ui_off_serves_no_page(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(ui="off"), events=RecentEvents())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as c:
        assert (await c.get("/ui/")).status_code == 404
        assert (await c.get("/")).status_code == 404


async def test_the_overview_lists_each_purpose_with_its_rules_tests_and_coverage(client: httpx.AsyncClient) -> None:
    policies = engine.load(SHIPPED_POLICIES, catalogue=CATALOGUE)
    text = text_of((await client.get("/ui/")).text)
    assert policies.revision in text
    for name, purpose in policies.purposes.items():
        assert re.search(rf"{name}\s+{re.escape(purpose.description)}\s+{len(purpose.rules)}\s+\d+\s+100%", text), name


async def test_the_purpose_page_marks_the_rules_no_test_reaches(client: httpx.AsyncClient, app: Starlette) -> None:
    policy_dir = app.state.policies.policy_dir
    test_file = policy_dir / "age_verification_test.yaml"
    cases = yaml.safe_load(test_file.read_text())
    cases["cases"] = [c for c in cases["cases"] if c["expect"]["reason"] != "underage"]
    test_file.write_text(yaml.safe_dump(cases))
    app.state.policies.reload(force=True)
    html = (await client.get("/ui/purposes/age_verification")).text
    rows = re.findall(r'<tr id="rule-(\d+)" class="(reached|unreached)">', html)
    assert rows == [("1", "reached"), ("2", "reached"), ("3", "unreached"), ("4", "reached"), ("5", "reached")]
    assert "1 not reached by any test" in text_of(html)
    only = (await client.get("/ui/purposes/age_verification?unreached=1")).text
    assert re.findall(r'<tr id="rule-(\d+)"', only) == ["3"]


async def test_an_unknown_purpose_is_a_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/purposes/nope/try")
    assert response.status_code == 404
    assert "unknown purpose 'nope'" in text_of(response.text)


async def test_a_context_value_against_the_schema_is_shown_next_to_its_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/purposes/high_value_transfer/try", data={
        "citizen_valid": "true", "sanctions_listed": "false", "is_pep": "true",
        "context.national_id": "ab", "context.amount": "-5"})
    html = response.text
    assert re.search(r'id="f-context-national_id-error">does not match \^\[A-Z0-9\]\{6,20\}\$<', html)
    assert re.search(r'id="f-context-amount-error">must be &gt;= 0<', html)
    assert "decision-status" not in html


async def test_a_try_decides_as_the_engine_and_gives_a_test_case_that_passes(client: httpx.AsyncClient) -> None:
    facts = {"citizen_valid": True, "sanctions_listed": False, "is_pep": True,
             "context": {"national_id": "AB123456", "amount": 20000}}
    response = await client.post("/ui/purposes/high_value_transfer/try", data={
        "citizen_valid": "true", "sanctions_listed": "false", "is_pep": "true",
        "context.national_id": "AB123456", "context.amount": "20000"})
    policies = engine.load(SHIPPED_POLICIES, catalogue=CATALOGUE)
    expected = policies.decide("high_value_transfer", facts)
    html = response.text
    assert f'<code class="decision-reason">{expected.reason}</code>' in html
    assert f"rule {expected.rule + 1} (line {expected.line})" in text_of(html)  # type: ignore[operator]
    snippet = text_of(re.search(r'<pre id="testcase"[^>]*>(.*?)</pre>', html, re.S).group(1))  # type: ignore[union-attr]
    case = yaml.safe_load(snippet)[0]
    assert case["input"] == facts
    assert case["expect"] == {"status": expected.status, "reason": expected.reason,
                              "conditions": list(expected.conditions)}


async def test_with_bearer_an_anonymous_request_gets_the_sign_in_page_only(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(data_api_auth="bearer"), events=RecentEvents())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as c:
        for path in PAGES:
            response = await c.get(path)
            assert response.status_code == 200
            assert 'data-signin' in response.text and "age_verification" not in response.text.replace(path, "")
        refused = await c.get("/ui/", headers={"authorization": "Bearer not-a-token", FRAGMENT_HEADER: "1"})
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        assert (await c.get("/ui/state")).status_code == 401


async def test_with_bearer_a_signed_in_page_comes_as_a_fragment(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(data_api_auth="bearer"), events=RecentEvents())
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as c:
        shell = (await c.get("/ui/")).text
        assert "data-signin-local" in shell  # IDGW_AUTH_MODE=local: the email login is offered
        session = (await c.post("/auth/authorize", json={"email": "ada@example.com", "client_id": "workbench"})).json()
        token = (await c.post("/auth/token", json={"grant_type": "session", "session_id": session["session_id"]})).json()
        headers = {"authorization": f"Bearer {token['access_token']}", FRAGMENT_HEADER: "1"}
        page = await c.get("/ui/", headers=headers)
        assert page.status_code == 200
        assert page.text.lstrip().startswith('<div id="page" data-title="Overview">')
        assert "<html" not in page.text and "/ui/purposes/age_verification" in page.text
        tried = await c.post("/ui/purposes/sanctions_screening/try", headers=headers,
                             data={"sanctions_listed": "false", "is_pep": "false", "context.national_id": "AB123456"})
        assert '<code class="decision-reason">not_listed</code>' in tried.text
        assert 'authorization: Bearer $IDGW_TOKEN' in unescape(tried.text)  # never the token itself
        assert token["access_token"] not in tried.text


async def test_a_bundles_tests_are_those_the_gate_ran(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    bundle = tmp_path / "published" / "bundle.tar.gz"
    bundle.parent.mkdir()
    bundle.write_bytes(build_bundle(SHIPPED_POLICIES, None, CATALOGUE))
    app = create_app(make_settings(policy_source=bundle.as_uri(), policy_cache_dir=str(tmp_path / "cache")),
                     events=RecentEvents())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as c:
        text = text_of((await c.get("/ui/tests")).text)
    assert "15 passed, 0 failed" in text  # the bundle's test files are gone once its set is live
    assert "E004" not in text


def test_every_template_and_static_file_is_package_data() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["server.ui"]
    root = REPO / "server" / "ui"
    shipped = [p.relative_to(root) for folder in ("templates", "static") for p in (root / folder).rglob("*")
               if p.is_file()]
    assert shipped and all(any(path.match(pattern) for pattern in patterns) for path in shipped), (patterns, shipped)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "1e999", "ten"])
async def test_a_number_field_takes_only_a_finite_number(client: httpx.AsyncClient, amount: str) -> None:
    html = (await client.post("/ui/purposes/high_value_transfer/try", data={
        "citizen_valid": "true", "sanctions_listed": "false", "is_pep": "true",
        "context.national_id": "AB123456", "context.amount": amount})).text
    assert re.search(r'id="f-context-amount-error">enter a (finite )?number<', html)
    assert "decision-status" not in html
