"""The decision endpoints share one `explain` parameter (server.decisions.models)."""

from __future__ import annotations

import httpx


async def test_both_decision_endpoints_document_one_explain_parameter(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    data, evaluate = (
        next(p for p in paths[path]["post"]["parameters"] if p["name"] == "explain")
        for path in ("/v1/data/{purpose}", "/decision/evaluate")
    )
    assert data == evaluate
    assert data["in"] == "query" and data["schema"] == {"type": "boolean", "default": False}
