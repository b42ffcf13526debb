"""The one JSON error shape of the API (docs/api.md), and the handlers that produce it.

Every 4xx/5xx the gateway answers looks like::

    {"error": "not_found", "error_description": "...", "status_code": 404, "request_id": "..."}

Handlers raise `ApiError`. The exceptions of the layers below that mean the same answer
wherever they happen are mapped here once, by `api_error_for`, and registered with the
app (`EXCEPTION_HANDLERS`) rather than caught at each call site:

    stores.Unavailable      503 `unavailable`: the database cannot answer; retry later
    ServiceUnavailable      503 `unavailable`: its subclass's `description` (token
                            revocations, an identity provider's keys)

Starlette's own `HTTPException` (404, 405, ...) and anything unexpected are converted
here too, so no response ever carries a stack trace. A 405's `Allow` lists every method
of the path, whichever route of it answered.

What an error repeats of the request (a path, a query value, a purpose name) goes
through `echo`: at most `ECHO_LIMIT` characters, a longer text cut and marked as cut,
so an answer never grows with what a caller sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from server.responses import JSONResponse
from stores import Unavailable as DatabaseUnavailable

logger = structlog.get_logger("idgw.errors")

#: Default `error` codes by status, for errors raised without an explicit code.
ERROR_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


#: How many characters of the request an error answer repeats.
ECHO_LIMIT = 200


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text`, taken from the request, as an error answer may repeat it: a text longer
    than `limit` characters is cut there and says how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters cut]"


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="stable machine-readable code, e.g. `not_found` (RFC 6749's codes on "
                                   "the OAuth endpoints: `invalid_request`, `invalid_grant`, ...)")
    error_description: str = Field(description="what went wrong, for a human")
    status_code: int
    request_id: str | None = Field(description="the request's X-Request-ID")
    # The fields some errors add (docs/api.md):
    known_purposes: list[str] | None = Field(None, description="`unknown_purpose`: the live set's purposes")
    purpose: str | None = Field(None, description="`missing_consent`, `consent_expired`, `consent_revoked`: "
                                                  "the consent that is not active")
    decision_id: str | None = Field(None, description="/decision/evaluate refusals: the decision logged for it")
    registry_type: str | None = Field(None, description="`registry_unavailable`: `citizen` or `sanctions`")
    reason: str | None = Field(None, description="`not_eligible`: `invalid_citizen` or `underage`; "
                                                 "/vc/verify's 404: `credential_not_found`")
    valid: bool | None = Field(None, description="/vc/verify's 404: false")
    status: str | None = Field(None, description="/health/ready's 503: `not_ready`")
    checks: dict[str, Any] | None = Field(None, description="/health/ready's 503: each check's result")


class ApiError(Exception):
    """An error answer: status, stable `error` code, human description, optional extras."""

    def __init__(
        self,
        status_code: int,
        description: str,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error or ERROR_CODES.get(status_code, "error")
        self.description = description
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(f"{status_code} {self.error}: {description}")


class ServiceUnavailable(Exception):
    """Something an answer needs cannot answer now: a 503 `unavailable` saying what
    (`description`, the class's; the exception's own message stays in the logs)."""

    description = "a service this answer needs is unavailable; retry later"


DATABASE_UNAVAILABLE = "the database is unavailable; retry later"


def api_error_for(exc: Exception) -> ApiError | None:
    """The answer `exc` gets wherever it escapes a handler; None when it is a bug (a 500).

    Of the store errors only `Unavailable` means one thing everywhere; the others
    (`NotFound`, `Conflict`, ...) mean something different at each call site, which
    answers them itself.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(503, DATABASE_UNAVAILABLE, error="unavailable")
    if isinstance(exc, ServiceUnavailable):
        return ApiError(503, exc.description, error="unavailable")
    return None


def request_id_of(scope: Scope) -> str | None:
    """The id the request-id middleware assigned (None outside a request)."""
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


def error_response(
    scope: Scope,
    status_code: int,
    error: str,
    description: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    request_id = request_id_of(scope)
    body: dict[str, Any] = {
        "error": error,
        "error_description": description,
        "status_code": status_code,
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    all_headers = dict(headers or {})
    if request_id:
        all_headers["X-Request-ID"] = request_id
    return JSONResponse(body, status_code=status_code, headers=all_headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    error = api_error_for(exc)
    assert error is not None, "registered only for the exceptions api_error_for maps"
    return error_response(request.scope, error.status_code, error.error, error.description, error.headers,
                          error.extra)


_DESCRIPTIONS: dict[int, str] = {
    404: "no such endpoint: {method} {path}",
    405: "method {method} is not allowed on {path}",
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    template = _DESCRIPTIONS.get(exc.status_code)
    if template is not None:
        description = template.format(method=echo(request.method), path=echo(request.url.path))
    else:
        description = str(exc.detail)
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app.router.routes, request.scope))}
    return error_response(
        request.scope, exc.status_code, ERROR_CODES.get(exc.status_code, "error"), description,
        headers=headers,
    )


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method the routes whose path matches `scope` answer, sorted (several routes
    may serve one path, one method each: Starlette's own 405 names only the first)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            match, child = route.matches(scope)
            if match is not Match.NONE:
                methods.update(allowed_methods(route.routes, {**scope, **child}))
        elif isinstance(route, Route):
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods.update(route.methods or ())
    return sorted(methods)


def internal_error_response(scope: Scope) -> JSONResponse:
    return error_response(scope, 500, "internal_error", "the server could not answer this request")


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    # Normally the observability middleware answers first; this covers a failure in it.
    logger.error("unhandled_error", exc_info=exc)
    return internal_error_response(request.scope)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: api_error_handler,
    DatabaseUnavailable: api_error_handler,
    ServiceUnavailable: api_error_handler,
    HTTPException: http_error_handler,
    Exception: unhandled_error_handler,
}

__all__ = [
    "DATABASE_UNAVAILABLE",
    "ECHO_LIMIT",
    "ERROR_CODES",
    "EXCEPTION_HANDLERS",
    "ApiError",
    "ErrorBody",
    "ServiceUnavailable",
    "allowed_methods",
    "api_error_for",
    "echo",
    "error_response",
    "internal_error_response",
    "request_id_of",
]
