"""HTTP endpoints of the decision subsystem: the OPA-style data API and the policy listing.

Thin handlers: authenticate, parse, call the service, shape the response. The data API
is a plain ASGI endpoint (see `DataApi`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.decisions.models import (
    EXPLAIN,
    DataRequest,
    DataResponse,
    PoliciesResponse,
    parse_data_request,
)
from server.decisions.schemas import expand_data_api
from server.decisions.service import (
    check_context,
    current_policy_set,
    decide,
    resolve_purpose,
)
from server.errors import ApiError, request_id_of
from server.openapi import document
from server.parsing import query_flag, receive_json_body
from server.policy_source import BundleSource
from server.reload import LivePolicies
from server.responses import JSONResponse, send_json
from server.security import allow_anonymous
from server.shadow import Shadow


class DataApi:
    """Evaluates the purpose named in the path on `input` as given: nothing is gathered.

    An unknown purpose is a 404 whose body lists the known purposes; a `context` that
    does not match the purpose's schema is a 400 `invalid_context` naming the field, a
    declared fact of another type a 400 `invalid_input` naming it and the type.
    """

    # A plain ASGI endpoint rather than a `Request -> Response` function: the busiest
    # route skips the request and response objects and Starlette's per-route exception
    # wrapper (errors still reach the app's handlers); what it answers is the same.
    # `state["name"]`, not `state.name`: Starlette's `State` answers an attribute only
    # after the ordinary lookup fails (an exception caught, then a Python method), which
    # costs five times an item lookup, five times a request.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        authenticate = state["data_api_auth"]
        principal = None if authenticate is allow_anonymous else await authenticate(Request(scope, receive))
        explain = query_flag(Request(scope), "explain") if scope["query_string"] else False
        facts = parse_data_request(await receive_json_body(scope, receive))
        policy_set = current_policy_set(state["policies"])
        purpose = resolve_purpose(policy_set, scope["path_params"]["purpose"])
        context = facts.get("context")
        if context is None and "context" in facts:  # left out is fine, null is not (docs/api.md)
            raise ApiError(400, "input.context: expected an object, got null", error="invalid_context")
        check_context(purpose, context, where="input.")
        decision = decide(
            policy_set,
            purpose,
            facts,
            explain,
            state["events"],
            request_id_of(scope),
            principal.sub if principal is not None else None,
            recording=state["decision_recording"],
            shadow=state["shadow"],
            refuse_mistyped=True,
        )
        await send_json(send, {"result": decision, "decision_id": decision["decision_id"]})


data_api = document(
    "Decide a purpose on caller-supplied facts (OPA-style data API)",
    tags=["decisions"], request=DataRequest, response=DataResponse, errors=(404,), query=(EXPLAIN,),
    auth="data_api", operation_id="decide_data", by_policy=expand_data_api,
)(DataApi())


@document("The live policy set and the last reload", tags=["decisions"], response=PoliciesResponse,
          auth="data_api")
async def list_policies(request: Request) -> JSONResponse:
    """Revision, purposes and load time of the answering worker's live set, and the
    result of its last reload attempt (with the diagnostics when it was rejected); with
    IDGW_POLICY_SOURCE, the bundle source's ETag, last fetch and last rejection."""
    await request.app.state.data_api_auth(request)
    live: LivePolicies = request.app.state.policies
    shadow: Shadow | None = request.app.state.shadow
    source: BundleSource | None = request.app.state.policy_source
    return JSONResponse({**live.status(), "source": source.status() if source is not None else None,
                         "shadow": shadow.status() if shadow is not None else None})


data_api_route = Route("/v1/data/{purpose}", data_api, methods=["POST"])
routes = [
    data_api_route,
    Route("/v1/policies", list_policies, methods=["GET"]),
]

__all__ = ["data_api_route", "routes"]
