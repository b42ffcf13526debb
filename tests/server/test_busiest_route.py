"""BusiestRoute: the data API taken before the router, answering as the router would."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from server.middleware import BusiestRoute
from tests.server.conftest import ADULT_WITHOUT_CREDENTIAL


class Refused(Exception):
    pass


class RefusedHarder(Refused):
    pass


class Recorder:
    """An ASGI app that notes the scopes it was called with and answers `name`."""

    def __init__(self, name: str, raises: Exception | None = None) -> None:
        self.name = name
        self.raises = raises
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(dict(scope))
        if self.raises is not None:
            raise self.raises
        await JSONResponse({"by": self.name, "params": scope.get("path_params")})(scope, receive, send)


async def refused_handler(request: Request, exc: Exception) -> Response:
    return JSONResponse({"handled": type(exc).__name__, "params": request.path_params}, status_code=409)


async def call(app: Any, method: str, path: str, root_path: str = "") -> tuple[int, dict[str, Any]]:
    scope: Scope = {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": [],
                    "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80)}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], httpx.Response(200, content=sent[1]["body"]).json()


def dispatch(endpoint: Recorder, router: Recorder) -> BusiestRoute:
    route = Route("/v1/data/{purpose}", endpoint, methods=["POST"])
    return BusiestRoute(router, route=route, handlers={Refused: refused_handler, Exception: refused_handler})


async def test_its_requests_reach_the_endpoint_with_the_path_parameter() -> None:
    endpoint, router = Recorder("endpoint"), Recorder("router")
    status, body = await call(dispatch(endpoint, router), "POST", "/v1/data/age_verification")
    assert (status, body) == (200, {"by": "endpoint", "params": {"purpose": "age_verification"}})
    assert endpoint.scopes[0]["endpoint"] is endpoint  # the access log's route template
    assert router.scopes == []


@pytest.mark.parametrize(
    ("method", "path", "root_path"),
    [
        ("GET", "/v1/data/age_verification", ""),  # another method: the router's 405
        ("POST", "/v1/data/", ""),  # no purpose
        ("POST", "/v1/data/a/b", ""),  # more than one segment
        ("POST", "/v1/datax", ""),
        ("POST", "/health/live", ""),
        ("POST", "/v1/data/age_verification", "/mounted"),  # the router strips a root path
    ],
)
async def test_every_other_request_goes_down_to_the_router(method: str, path: str, root_path: str) -> None:
    endpoint, router = Recorder("endpoint"), Recorder("router")
    _, body = await call(dispatch(endpoint, router), method, path, root_path)
    assert body["by"] == "router"
    assert endpoint.scopes == []


async def test_what_the_endpoint_raises_goes_to_the_handler_of_its_nearest_class() -> None:
    endpoint, router = Recorder("endpoint", raises=RefusedHarder()), Recorder("router")
    status, body = await call(dispatch(endpoint, router), "POST", "/v1/data/x")
    assert (status, body) == (409, {"handled": "RefusedHarder", "params": {"purpose": "x"}})


async def test_an_unexpected_exception_goes_up_to_the_middleware_above() -> None:
    # The app's `Exception` handler belongs to the outermost layer (Starlette's), as it
    # does for routed requests: here the exception propagates.
    endpoint, router = Recorder("endpoint", raises=KeyError("boom")), Recorder("router")
    with pytest.raises(KeyError):
        await call(dispatch(endpoint, router), "POST", "/v1/data/x")


@pytest.mark.parametrize(
    "route",
    [
        Route("/v1/data/{purpose}", Recorder("e"), methods=["POST", "PUT"]),
        Route("/v1/{kind}/{purpose}", Recorder("e"), methods=["POST"]),
        Route("/v1/data/{purpose}/explain", Recorder("e"), methods=["POST"]),
        Route("/v1/data/{purpose:path}", Recorder("e"), methods=["POST"]),
    ],
)
def test_only_a_one_method_route_ending_in_its_one_parameter_can_be_taken(route: Route) -> None:
    with pytest.raises(ValueError, match="one-method route"):
        BusiestRoute(Recorder("router"), route=route, handlers={})


async def test_the_gateway_answers_its_data_api_and_the_router_answers_the_rest(client: httpx.AsyncClient) -> None:
    decided = await client.post("/v1/data/age_verification", json={"input": ADULT_WITHOUT_CREDENTIAL})
    assert decided.status_code == 200 and decided.json()["result"]["purpose"] == "age_verification"
    unknown = await client.post("/v1/data/nope", json={"input": {}})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_purpose"
    wrong_method = await client.get("/v1/data/age_verification")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    too_deep = await client.post("/v1/data/age_verification/more", json={"input": {}})
    assert too_deep.status_code == 404 and too_deep.json()["error"] == "not_found"
