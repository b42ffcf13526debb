"""`GET /openapi.json` is generated from the routes; the health probes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.audit import RecentEvents
from server.settings import Settings
from tests.server.conftest import assert_error_shape


async def test_openapi_lists_every_route_with_its_models(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for route in app.routes:
        if not route.include_in_schema:  # type: ignore[attr-defined]  # the workbench's pages
            assert route.path not in paths, route.path  # type: ignore[attr-defined]
        elif route.path != "/v1/data/{purpose}":  # type: ignore[attr-defined]  # one path per purpose instead
            assert route.path in paths, route.path  # type: ignore[attr-defined]
    assert not [path for path in paths if path == "/" or path.startswith("/ui/")]
    assert "/v1/data/{purpose}" not in paths
    data = paths["/v1/data/age_verification"]["post"]
    assert data["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgeVerificationDataRequest"}
    assert data["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DataResponse")
    for status in ("400", "413", "415"):
        assert data["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {p["name"] for p in data["parameters"]} == {"explain", "X-Request-ID"}
    schemas = document["components"]["schemas"]
    assert {"DataResponse", "DecisionBody", "ErrorBody", "PoliciesResponse"} <= set(schemas)
    assert schemas["DecisionBody"]["properties"]["status"]["enum"] == ["pass", "pass_with_conditions", "fail"]
    # Every $ref resolves.
    text = response.text
    for name in set(part.split('"')[0] for part in text.split("#/components/schemas/")[1:]):
        assert name in schemas, name


async def test_openapi_serves_standard_clients(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) for i in ids), ids
    assert {"revoke_token", "revoke_consents", "revoke_credential"} <= set(ids)
    schemas = document["components"]["schemas"]
    titles = [schema.get("title", name) for name, schema in schemas.items()]
    assert len(titles) == len(set(titles))
    paths = document["paths"]
    for path in ("/auth/token", "/auth/refresh", "/auth/revoke"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
        form = schemas[content["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert form["title"].endswith("Form")  # an empty parameter counts as absent
        assert all({"type": "string", "maxLength": 0} in prop["anyOf"] for name, prop in form["properties"].items()
                   if name not in form.get("required", ()))
    assert set(paths["/auth/authorize"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert paths["/openapi.json"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenApiDocument")
    assert schemas["ConsentModel"]["properties"]["granted_at"]["format"] == "date-time"
    assert schemas["DecisionBody"]["properties"]["evaluated_at"]["format"] == "date-time"
    assert schemas["PurposesRequest"]["properties"]["purposes"]["items"]["enum"] == [
        "login", "registry_check", "vc_issuance", "decision_evaluation"]
    assert {"known_purposes", "purpose", "decision_id", "registry_type", "reason"} <= set(
        schemas["ErrorBody"]["properties"])
    request_id = next(p for p in paths["/auth/consent"]["get"]["parameters"] if p["name"] == "X-Request-ID")
    assert request_id["schema"] == {"type": "string"}, "any value is accepted (an ill-formed one is replaced)"
    authorize = schemas["AuthorizeRequest"]["properties"]
    assert re.fullmatch(authorize["email"]["pattern"], "ada@example.com")
    assert re.fullmatch(authorize["scope"]["pattern"], "openid  profile")
    assert not re.fullmatch(authorize["scope"]["pattern"], "openid\tprofile")
    assert len(schemas["VerifyRequest"]["oneOf"]) == 2
    export = {p["name"]: p["schema"] for p in paths["/me/data-export"]["get"]["parameters"]}
    assert [branch.get("format") for branch in export["from"]["anyOf"]] == ["date", "date-time", None]
    # request models never allow null: RequestBody refuses it
    assert "null" not in json.dumps(schemas["TokenRevokeRequest"])


async def test_the_data_api_is_documented_as_idgw_data_api_auth_says(
    client: httpx.AsyncClient, make_settings: Callable[..., Settings]
) -> None:
    open_paths = (await client.get("/openapi.json")).json()["paths"]  # the fixture's app: `none`
    bearer_app = create_app(make_settings(data_api_auth="bearer"), events=RecentEvents())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bearer_app), base_url="http://gateway.test") as c:
        bearer_paths = (await c.get("/openapi.json")).json()["paths"]
    for path, method in (("/v1/data/age_verification", "post"), ("/v1/policies", "get")):
        assert "security" not in open_paths[path][method], path
        assert "401" not in open_paths[path][method]["responses"], path
        assert bearer_paths[path][method]["security"] == [{"bearer": []}], path
        assert bearer_paths[path][method]["responses"]["401"]["content"]["application/json"]["schema"][
            "$ref"].endswith("/ErrorBody")
    for paths in (open_paths, bearer_paths):  # the rest needs a token either way
        assert paths["/decision/evaluate"]["post"]["security"] == [{"bearer": []}]
        assert "401" in paths["/me/data-export"]["get"]["responses"]


async def test_links_chain_the_flows(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    def links(path: str) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = paths[path]["post"]["responses"]["200"]["links"]
        return found

    assert links("/auth/authorize")["issue_tokens"] == {
        "operationId": "issue_tokens", "description": "exchange the session for tokens",
        "requestBody": {"grant_type": "urn:idgw:params:oauth:grant-type:session",
                        "session_id": "$response.body#/session_id"}}
    for path in ("/auth/token", "/auth/refresh"):
        token = links(path)
        assert token["refresh_tokens"]["requestBody"] == {"refresh_token": "$response.body#/refresh_token"}
        assert token["revoke_refresh_token"]["requestBody"] == {"token": "$response.body#/refresh_token"}
        assert token["grant_consents"]["operationId"] == "grant_consents"
    consent = links("/auth/consent")
    assert consent["evaluate"]["operationId"] == "evaluate"
    assert consent["revoke_consents"]["requestBody"] == {"purposes": ["$response.body#/granted/0/purpose"]}
    issued = links("/vc/issue")
    assert {name: (link["operationId"], link["requestBody"]) for name, link in issued.items()} == {
        "verify_by_id": ("verify_credential", {"credential_id": "$response.body#/credential_id"}),
        "verify_by_jwt": ("verify_credential", {"jwt": "$response.body#/jwt"}),
        "revoke_credential": ("revoke_credential", {"credential_id": "$response.body#/credential_id"}),
    }


def test_a_link_to_no_operation_is_refused() -> None:
    from starlette.routing import Route

    from server.openapi import Link, document, openapi_schema

    @document("Start", operation_id="start", links=[Link("next", "missing", "nowhere")])
    async def start(request: object) -> None: ...

    with pytest.raises(ValueError, match="link next names no operation"):
        openapi_schema([Route("/start", start, methods=["POST"])], "t", "1")


async def test_each_purpose_has_its_typed_data_api_path(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert {"/v1/data/age_verification", "/v1/data/high_value_transfer", "/v1/data/sanctions_screening"} <= set(paths)
    operation = paths["/v1/data/high_value_transfer"]["post"]
    assert operation["operationId"] == "decide_data_high_value_transfer"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HighValueTransferDataRequest"}
    assert "404" not in operation["responses"] and "purpose" not in {p["name"] for p in operation["parameters"]}
    facts = schemas["HighValueTransferInput"]
    assert {name: facts["properties"][name]["type"] for name in ("citizen_valid", "sanctions_listed", "is_pep")} == {
        "citizen_valid": "boolean", "sanctions_listed": "boolean", "is_pep": "boolean"}
    assert facts["required"] == ["context"] and "additionalProperties" not in facts  # undeclared facts pass
    context = schemas["HighValueTransferContext"]
    assert context["properties"] == {
        "national_id": {"type": "string", "pattern": "^[A-Z0-9]{6,20}$",
                        "description": "personal data: decision records keep a keyed hash of it, never the value"},
        "amount": {"type": "number", "minimum": 0},
    }
    assert (context["required"], context["additionalProperties"]) == (["national_id", "amount"], False)
    evaluate = paths["/decision/evaluate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert evaluate["discriminator"]["propertyName"] == "purpose"
    variant = schemas["SanctionsScreeningEvaluateRequest"]
    assert variant["properties"]["purpose"] == {"type": "string", "const": "sanctions_screening"}
    assert variant["properties"]["context"] == {"$ref": "#/components/schemas/SanctionsScreeningContext"}
    assert variant["required"] == ["purpose", "context"]


PURPOSE_WITH_EVERY_FIELD = """purposes:
  every_field:
    context:
      country: {type: string, enum: [FR, DE], required: true}
      count: {type: integer, minimum: 1, maximum: 9}
      note: {type: string, max_length: 12}
    evidence:
      - consent.registry_check
      - credentials
      - risk_score: 0
    rules:
      - else: pass
        reason: fine
"""


async def test_the_document_follows_a_reload(client: httpx.AsyncClient, app: Starlette) -> None:
    before = (await client.get("/openapi.json")).json()
    assert "/v1/data/every_field" not in before["paths"]
    (app.state.policies.policy_dir / "every_field.yaml").write_text(PURPOSE_WITH_EVERY_FIELD)
    outcome = app.state.policies.reload()
    assert outcome is not None and outcome.result == "success", outcome
    after = (await client.get("/openapi.json")).json()
    schemas = after["components"]["schemas"]
    assert after["paths"]["/v1/data/every_field"]["post"]["operationId"] == "decide_data_every_field"
    assert schemas["EveryFieldContext"]["properties"] == {
        "country": {"type": "string", "enum": ["FR", "DE"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 9},
        "note": {"type": "string", "maxLength": 12},
    }
    facts = schemas["EveryFieldInput"]["properties"]
    assert facts["consent"]["properties"]["registry_check"]["type"] == "boolean"
    assert facts["credentials"]["type"] == "array" and facts["credentials"]["items"] == {"type": "string"}
    assert facts["risk_score"]["type"] == "number"  # from its expected value
    assert "expected value 0" in facts["risk_score"]["description"]
    assert schemas["EveryFieldInput"].get("required") == ["context"]


async def test_liveness(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_the_policies(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["policies"] == {"ok": True, "detail": app.state.policies.current.revision}


async def test_a_failing_check_makes_readiness_503(client: httpx.AsyncClient, app: Starlette) -> None:
    async def database() -> tuple[bool, str | None]:
        return False, "connection refused"

    async def broken() -> tuple[bool, str | None]:
        raise OSError("no route")

    app.state.readiness_checks["database"] = database
    app.state.readiness_checks["audit_queue"] = broken
    body = assert_error_shape(await client.get("/health/ready"), 503, "not_ready")
    assert body["checks"]["database"] == {"ok": False, "detail": "connection refused"}
    assert body["checks"]["audit_queue"]["ok"] is False
    assert body["checks"]["policies"]["ok"] is True
    assert "audit_queue, database" in body["error_description"]
