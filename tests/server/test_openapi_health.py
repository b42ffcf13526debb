"""`GET /openapi.json` is generated from the routes; the health probes."""

from __future__ import annotations

import json
import re

import httpx
from starlette.applications import Starlette

from tests.server.conftest import assert_error_shape


async def test_openapi_lists_every_route_with_its_models(client: httpx.AsyncClient, app: Starlette) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for route in app.routes:
        assert route.path in paths, route.path  # type: ignore[attr-defined]
    data = paths["/v1/data/{purpose}"]["post"]
    assert data["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/DataRequest"}
    assert data["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DataResponse")
    for status in ("400", "401", "404", "413", "415"):
        assert data["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {p["name"] for p in data["parameters"]} >= {"purpose", "explain", "X-Request-ID"}
    assert data["security"] == [{"bearer": []}]
    schemas = document["components"]["schemas"]
    assert {"DataRequest", "DataResponse", "DecisionBody", "ErrorBody", "PoliciesResponse"} <= set(schemas)
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
        assert set(paths[path]["post"]["requestBody"]["content"]) == {"application/json", "application/x-www-form-urlencoded"}
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
    # request models never allow null: RequestBody refuses it
    assert "null" not in json.dumps(schemas["TokenRevokeRequest"])


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
