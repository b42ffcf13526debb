"""OpenAPI 3 description generated from the routes and their pydantic models.

Each endpoint declares what it accepts and answers with `@document(...)`; the generator
walks the application's routes (path, methods, path parameters) and pulls the JSON
Schemas of the declared models into `components`. Nothing is hand-kept: a new route
appears as soon as it is mounted, and a model change shows up in the schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route

from server.errors import ErrorBody
from server.responses import JSONResponse

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class QueryParameter:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """What one endpoint accepts and answers, for the generated description."""

    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    request: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    query: tuple[QueryParameter, ...] = ()
    auth: bool = False
    response_media_type: str = "application/json"


def document(
    summary: str,
    *,
    tags: Sequence[str] = (),
    request: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None,
    errors: Sequence[int] = (),
    query: Sequence[QueryParameter] = (),
    auth: bool = False,
    response_media_type: str = "application/json",
) -> Callable[[F], F]:
    """Attach an `Operation` to an endpoint; its docstring becomes the description."""

    def attach(endpoint: F) -> F:
        answered = dict(responses or {})
        if response is not None or not answered:
            answered.setdefault(200, response)
        endpoint.__openapi__ = Operation(  # type: ignore[attr-defined]
            summary=summary,
            description=(endpoint.__doc__ or "").strip(),
            tags=tuple(tags),
            request=request,
            responses=answered,
            errors=tuple(errors),
            query=tuple(query),
            auth=auth,
            response_media_type=response_media_type,
        )
        return endpoint

    return attach


_REASONS = {
    200: "OK", 400: "Bad request", 401: "Missing or invalid bearer token", 403: "Forbidden",
    404: "Not found", 405: "Method not allowed", 413: "Request body too large",
    415: "Unsupported media type", 503: "Not ready", 504: "Upstream timeout",
}


def walk_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, Route]]:
    """Every HTTP `Route` with its full path template, descending into mounts."""
    for route in routes:
        if isinstance(route, Mount):
            yield from walk_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def openapi_schema(routes: Iterable[BaseRoute], title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (those with `@document` metadata)."""
    found: list[tuple[str, Route, Operation]] = []
    models: dict[type[BaseModel], None] = {ErrorBody: None}
    for path, route in walk_routes(routes):
        operation: Operation | None = getattr(route.endpoint, "__openapi__", None)
        if operation is None or not route.include_in_schema:
            continue
        found.append((path, route, operation))
        if operation.request is not None:
            models[operation.request] = None
        for model in operation.responses.values():
            if model is not None:
                models[model] = None

    mode: Literal["validation"] = "validation"
    refs, defs = models_json_schema(
        [(m, mode) for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for path, route, operation in found:
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(path, {})[method.lower()] = _operation(route, operation, ref)

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
    return document


def _operation(
    route: Route, operation: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": route.name,
        "summary": operation.summary,
    }
    if operation.description:
        out["description"] = operation.description
    if operation.tags:
        out["tags"] = list(operation.tags)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in route.param_convertors
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": q.schema}
        for q in operation.query
    ]
    parameters.append(
        {
            "name": "X-Request-ID", "in": "header", "required": False,
            "description": "correlation id, echoed back; generated when absent or malformed",
            "schema": {"type": "string", "maxLength": 128},
        }
    )
    out["parameters"] = parameters
    if operation.request is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(operation.request)}},
        }
    responses: dict[str, Any] = {}
    for status, model in sorted(operation.responses.items()):
        entry: dict[str, Any] = {"description": _REASONS.get(status, "OK")}
        if model is not None:
            entry["content"] = {operation.response_media_type: {"schema": ref(model)}}
        elif operation.response_media_type != "application/json":
            entry["content"] = {operation.response_media_type: {"schema": {"type": "string"}}}
        responses[str(status)] = entry
    error_content = {"application/json": {"schema": ref(ErrorBody)}}
    statuses = set(operation.errors)
    if operation.request is not None:
        statuses |= {400, 413, 415}
    if operation.auth:
        statuses.add(401)
        out["security"] = [{"bearer": []}]
    for status in sorted(statuses):
        responses[str(status)] = {"description": _REASONS.get(status, "Error"), "content": error_content}
    responses["default"] = {"description": "Error", "content": error_content}
    out["responses"] = responses
    return out


async def openapi_endpoint(request: Request) -> JSONResponse:
    """This description (OpenAPI 3.1), generated from the mounted routes."""
    cached = getattr(request.app.state, "openapi", None)
    if cached is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            app_version = version("id-gateway")
        except PackageNotFoundError:
            app_version = "0.0.0"
        cached = openapi_schema(request.app.routes, "ID Gateway", app_version)
        request.app.state.openapi = cached
    return JSONResponse(cached)


document("OpenAPI description", tags=["operations"])(openapi_endpoint)

routes = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]

__all__ = ["Operation", "QueryParameter", "document", "openapi_schema", "routes", "walk_routes"]
