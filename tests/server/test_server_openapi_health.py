"""`GET /openapi.json` is generated from the routes; the health probes."""

from __future__ import annotations

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
