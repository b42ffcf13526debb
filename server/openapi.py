"""OpenAPI 3 description generated from the routes and their pydantic models.

Each endpoint declares what it accepts and answers with `@document(...)`; the generator
walks the application's routes (path, methods, path parameters) and pulls the JSON
Schemas of the declared models into `components`. Nothing is hand-kept: a new route
appears as soon as it is mounted, and a model change shows up in the schema.

Two operations depend on the live policy set rather than on a model: the data API and
`POST /decision/evaluate` name a purpose, whose facts and context schema are the
policies'. Their `by_policy` expands the generic description into one per purpose, and
the served document is rebuilt whenever the live set's revision changes (hot reload).

An operation's 200 may carry links (`Link`): which value of the answer feeds which
next call (a login's `session_id` into `/auth/token`, a credential's id into
`/vc/verify`), for clients and stateful testing.

What standard clients and generators rely on is checked while generating (a
`ValueError` otherwise): operationIds are unique snake_case (the endpoint's name unless
`operation_id` says otherwise), no two schemas share a title, and every link names an
operation of the document. Request models are
rendered without `null` for their optional fields (`RequestBody` refuses an explicit
null); response models as they are written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route

from server.errors import ErrorBody
from server.parsing import FORM
from server.responses import JSONResponse
from server.security import allow_anonymous

if TYPE_CHECKING:
    from engine import PolicySet

F = TypeVar("F", bound=Callable[..., Any])

#: An operation as the live policy set shapes it: given the set, the operation's path and
#: its generic description, the operations to publish by path and the schemas they use.
PolicyExpansion = Callable[
    ["PolicySet", str, dict[str, Any]], tuple[dict[str, dict[str, Any]], dict[str, Any]]
]

#: A time in an answer: RFC 3339, UTC, to the second (engine.clock.utc_text).
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


@dataclass(frozen=True, slots=True)
class QueryParameter:
    name: str
    description: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link on an operation's 200: a value its answer carries feeds the request
    of `operation_id` (`body`, its request body, where `$response.body#/<pointer>` stands
    for that value of the answer), so that clients and stateful testers can chain calls.
    A link with no body says which call comes next (the access token, say, which travels
    in the `Authorization` header rather than a body)."""

    name: str
    operation_id: str
    description: str
    body: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": self.operation_id, "description": self.description}
        if self.body is not None:
            out["requestBody"] = self.body
        return out


def answer(pointer: str) -> str:
    """The runtime expression of a value of the answer's body (`/credential_id`)."""
    return f"$response.body#{pointer}"


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
    #: A bearer token is required (401 without one); `"data_api"`: as IDGW_DATA_API_AUTH says.
    auth: bool | Literal["data_api"] = False
    response_media_type: str = "application/json"
    operation_id: str | None = None
    #: The body may also come as `application/x-www-form-urlencoded` (the OAuth endpoints).
    form: bool = False
    #: Documents the operation per purpose of the live policy set.
    by_policy: PolicyExpansion | None = None
    #: Where the 200's values go next (`Link`).
    links: tuple[Link, ...] = ()


def document(
    summary: str,
    *,
    tags: Sequence[str] = (),
    request: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel] | None] | None = None,
    errors: Sequence[int] = (),
    query: Sequence[QueryParameter] = (),
    auth: bool | Literal["data_api"] = False,
    response_media_type: str = "application/json",
    operation_id: str | None = None,
    form: bool = False,
    by_policy: PolicyExpansion | None = None,
    links: Sequence[Link] = (),
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
            operation_id=operation_id,
            form=form,
            by_policy=by_policy,
            links=tuple(links),
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


class _RequestSchema(GenerateJsonSchema):
    """Request models without `null`: an optional field is left out, never null."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", _NO_DEFAULT) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


_NO_DEFAULT = object()
_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def openapi_schema(
    routes: Iterable[BaseRoute], title: str, version: str, policy_set: PolicySet | None = None,
    *, data_api_auth: bool = True,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (those with `@document` metadata), with the
    purposes of `policy_set` where an operation documents them (`by_policy`); the
    operations documented `auth="data_api"` need a token only with `data_api_auth`
    (IDGW_DATA_API_AUTH=bearer)."""
    found: list[tuple[str, Route, Operation]] = []
    requests: dict[type[BaseModel], None] = {}
    responses: dict[type[BaseModel], None] = {ErrorBody: None}
    for path, route in walk_routes(routes):
        operation: Operation | None = getattr(route.endpoint, "__openapi__", None)
        if operation is None or not route.include_in_schema:
            continue
        found.append((path, route, operation))
        if operation.request is not None:
            requests[operation.request] = None
        for model in operation.responses.values():
            if model is not None:
                responses[model] = None

    template = "#/components/schemas/{model}"
    request_refs, request_defs = models_json_schema(
        [(m, "validation") for m in requests], ref_template=template, schema_generator=_RequestSchema
    )
    response_refs, response_defs = models_json_schema(
        [(m, "serialization") for m in responses], ref_template=template
    )
    schemas: dict[str, Any] = {}
    for name, schema in [*request_defs.get("$defs", {}).items(), *response_defs.get("$defs", {}).items()]:
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two schemas are named {name}: rename a model")
        schemas[name] = schema

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        if model in requests:
            return request_refs[(model, "validation")]
        return response_refs[(model, "serialization")]

    def form_ref(model: type[BaseModel]) -> dict[str, Any]:
        name = ref(model)["$ref"].rsplit("/", 1)[1]
        schemas.setdefault(f"{name}Form", form_schema(schemas[name]))
        return {"$ref": template.format(model=f"{name}Form")}

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for path, route, operation in found:
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            described = {path: _operation(route, operation, ref, form_ref, data_api_auth)}
            if operation.by_policy is not None and policy_set is not None:
                described, added = operation.by_policy(policy_set, path, described[path])
                for name, schema in added.items():
                    if name in schemas and schemas[name] != schema:
                        raise ValueError(f"two schemas are named {name}: rename a purpose")
                    schemas[name] = schema
            for published, entry in described.items():
                operation_id = entry["operationId"]
                if not _SNAKE_CASE.match(operation_id) or operation_id in operation_ids:
                    raise ValueError(f"{method} {published}: operationId {operation_id!r} is not unique snake_case")
                operation_ids.add(operation_id)
                paths.setdefault(published, {})[method.lower()] = entry
    _require_unique_titles(schemas)
    _require_link_targets(paths, operation_ids)

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


def _require_link_targets(paths: dict[str, dict[str, Any]], operation_ids: set[str]) -> None:
    for path, methods in paths.items():
        for method, entry in methods.items():
            for name, link in entry["responses"].get("200", {}).get("links", {}).items():
                if link["operationId"] not in operation_ids:
                    raise ValueError(f"{method.upper()} {path}: link {name} names no operation ({link['operationId']!r})")


def _require_unique_titles(schemas: dict[str, Any]) -> None:
    titles: dict[str, str] = {}
    for name, schema in schemas.items():
        title = schema.get("title", name)
        if title in titles:
            raise ValueError(f"the schemas {titles[title]} and {name} share the title {title!r}")
        titles[title] = name


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to fill a body that takes exactly one of several (`exactly_one_of`): the
    fields it needs, those it leaves out, and keywords that narrow a field's schema in it
    (`{"all": {"enum": [True]}}`)."""

    required: tuple[str, ...]
    absent: tuple[str, ...] = ()
    narrowed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def branch(self, properties: dict[str, Any]) -> dict[str, Any]:
        def narrow(name: str, prop: dict[str, Any]) -> dict[str, Any]:
            out = {**prop, **self.narrowed.get(name, {})}
            if name in self.required:
                out.pop("default", None)  # given, and perhaps narrowed away from its default
            return out

        branch: dict[str, Any] = {
            "properties": {name: narrow(name, prop) for name, prop in properties.items() if name not in self.absent},
            "required": list(self.required),
        }
        if len(self.absent) == 1:
            branch["not"] = {"required": list(self.absent)}
        elif self.absent:
            branch["not"] = {"anyOf": [{"required": [name]} for name in self.absent]}
        return branch


def exactly_one_of(*variants: Variant, examples: Sequence[dict[str, Any]] = ()) -> Callable[[dict[str, Any]], None]:
    """A request model's `json_schema_extra`: its body is exactly one of `variants`, a
    `oneOf` whose branches are whole object schemas (every field of the model but those
    the variant leaves out), since generators build one class per branch from the branch
    alone (openapi-python-client ignores the properties beside a `oneOf`)."""

    def extend(schema: dict[str, Any]) -> None:
        if examples:
            schema["examples"] = list(examples)
        schema["oneOf"] = [variant.branch(schema["properties"]) for variant in variants]

    return extend


#: A form parameter given empty: absent, as RFC 6749 section 3.1 has it.
_EMPTY: dict[str, Any] = {"type": "string", "maxLength": 0}


def _refuses_empty(prop: dict[str, Any]) -> bool:
    """Whether a property's schema refuses the empty string (kept simple: what the
    request models use)."""
    if prop.get("type") != "string":
        return "type" in prop
    return prop.get("minLength", 0) > 0 or "" not in prop.get("enum", [""]) or prop.get("const", "") != ""


def form_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A request schema as its form encoding is read (`parsing.parse_form`): a parameter
    given empty counts as absent. So an optional parameter may also be empty, one that a
    branch of a `oneOf` leaves out may be given empty, and a required one is as in JSON
    (whose schema must refuse the empty string: a `ValueError` otherwise)."""

    def as_form(properties: dict[str, Any], required: Iterable[str]) -> dict[str, Any]:
        needed = set(required)
        out = {}
        for name, prop in properties.items():
            if name not in needed:
                out[name] = {"anyOf": [prop, _EMPTY]}
            elif _refuses_empty(prop):
                out[name] = prop
            else:
                raise ValueError(f"{schema.get('title')}: the form's required {name} would accept an empty value")
        return out

    form = {**schema, "title": f"{schema.get('title', 'Request')}Form",
            "properties": as_form(schema["properties"], schema.get("required", ()))}
    if "oneOf" in schema:
        form["oneOf"] = [  # a parameter the branch leaves out may be given empty (its `not` goes)
            {**{k: v for k, v in branch.items() if k != "not"},
             "properties": {**as_form(branch["properties"], branch["required"]),
                            **{name: _EMPTY for name in schema["properties"] if name not in branch["properties"]}}}
            for branch in schema["oneOf"]
        ]
    form["description"] = (schema.get("description", "") + " As a form, an empty parameter counts as absent.").strip()
    return form


#: `X-Request-ID` as the server reads it: any value; one it does not keep is replaced.
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Request-ID", "in": "header", "required": False,
    "description": "correlation id, echoed back: kept when it is 1-128 characters of letters, digits and "
                   "`._:+/=-` starting with a letter or digit, otherwise replaced by a generated one",
    "schema": {"type": "string"},
}


def _operation(
    route: Route, operation: Operation, ref: Callable[[type[BaseModel]], dict[str, Any]],
    form_ref: Callable[[type[BaseModel]], dict[str, Any]], data_api_auth: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": operation.operation_id or route.name,
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
    parameters.append(REQUEST_ID_PARAMETER)
    out["parameters"] = parameters
    if operation.request is not None:
        content = {"application/json": {"schema": ref(operation.request)}}
        if operation.form:
            content[FORM] = {"schema": form_ref(operation.request)}
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, model in sorted(operation.responses.items()):
        entry: dict[str, Any] = {"description": _REASONS.get(status, "OK")}
        if model is not None:
            entry["content"] = {operation.response_media_type: {"schema": ref(model)}}
        elif operation.response_media_type != "application/json":
            entry["content"] = {operation.response_media_type: {"schema": {"type": "string"}}}
        if status == 200 and operation.links:
            entry["links"] = {link.name: link.to_json() for link in operation.links}
        responses[str(status)] = entry
    error_content = {"application/json": {"schema": ref(ErrorBody)}}
    statuses = set(operation.errors)
    if operation.request is not None:
        statuses |= {400, 413, 415}
    if operation.auth is True or (operation.auth == "data_api" and data_api_auth):
        statuses.add(401)
        out["security"] = [{"bearer": []}]
    for status in sorted(statuses):
        responses[str(status)] = {"description": _REASONS.get(status, "Error"), "content": error_content}
    responses["default"] = {"description": "Error", "content": error_content}
    out["responses"] = responses
    return out


async def openapi_endpoint(request: Request) -> JSONResponse:
    """This description (OpenAPI 3.1), generated from the mounted routes and the live
    policy set: rebuilt when a reload changes the set's revision."""
    state = request.app.state
    live = getattr(state, "policies", None)
    policy_set: PolicySet | None = live.current if live is not None else None
    revision = policy_set.revision if policy_set is not None else None
    cached: tuple[str | None, dict[str, Any]] | None = getattr(state, "openapi", None)
    if cached is None or cached[0] != revision:
        from importlib.metadata import PackageNotFoundError, version

        try:
            app_version = version("id-gateway")
        except PackageNotFoundError:
            app_version = "0.0.0"
        data_api_auth = getattr(state, "data_api_auth", None) is not allow_anonymous
        cached = (revision, openapi_schema(request.app.routes, "ID Gateway", app_version, policy_set,
                                           data_api_auth=data_api_auth))
        state.openapi = cached
    return JSONResponse(cached[1])


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document (this one)."""

    model_config = ConfigDict(extra="allow", title="OpenApiDocument")

    openapi: str = Field(pattern=r"^3\.1\.\d+$")
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


document("OpenAPI description", tags=["operations"], response=OpenApiDocument,
         operation_id="get_openapi")(openapi_endpoint)

routes = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]

__all__ = [
    "REQUEST_ID_PARAMETER",
    "Link",
    "OpenApiDocument",
    "Operation",
    "PolicyExpansion",
    "QueryParameter",
    "Timestamp",
    "Variant",
    "answer",
    "document",
    "exactly_one_of",
    "openapi_schema",
    "routes",
    "walk_routes",
]
