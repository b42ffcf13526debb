"""The ASGI middleware every request passes: request id, access log, metrics, limits.

    RequestContextMiddleware   X-Request-ID (accepted or generated, echoed, bound into
                               every log line), one access line, the HTTP metrics, and a
                               JSON 500 for anything a handler let escape
    BodyLimitMiddleware        413 for bodies over IDGW_MAX_BODY_BYTES, declared or streamed
    BusiestRoute               the data API's requests straight to its endpoint, past
                               Starlette's router and its exception wrapper

Both are plain ASGI callables (no `BaseHTTPMiddleware`): they sit on every request, so
they do only dictionary lookups and one log call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response, internal_error_response
from server.ids import random_hex
from server.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS, LabelCache
from server.openapi import walk_routes

access_log = structlog.get_logger("idgw.access")
logger = structlog.get_logger("idgw.http")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}$")
UNMATCHED = "unmatched"


def new_request_id() -> str:
    return random_hex(16)


class RouteTemplates:
    """Maps a request to its route template (the bounded `endpoint` metric label)."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.routes = list(routes)
        self.by_endpoint: dict[object, str] = {}
        for path, route in walk_routes(self.routes):
            self.by_endpoint.setdefault(route.endpoint, path)

    def __call__(self, scope: Scope) -> str:
        template = self.by_endpoint.get(scope.get("endpoint"))
        if template is not None:
            return template
        for path, route in walk_routes(self.routes):  # not routed (rejected early, or 404)
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return path
        return UNMATCHED


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, templates: Callable[[Scope], str]) -> None:
        self.app = app
        self.templates = templates
        self.http_metrics = LabelCache(HTTP_REQUESTS, HTTP_REQUEST_DURATION)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or new_request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                for name, _ in headers:
                    if name.lower() == b"x-request-id":
                        break
                else:
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = 499  # nginx's "client closed request": nothing left to answer
        except Exception:
            logger.exception("unhandled_error", method=scope["method"], endpoint=self.templates(scope))
            if response_started:
                raise
            await internal_error_response(scope)(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            endpoint = self.templates(scope)
            method = scope["method"]
            requests, durations = self.http_metrics(method, endpoint, str(status))
            requests.inc()
            durations.observe(duration)
            access_log.info(
                "request", method=method, endpoint=endpoint, status=status,
                duration_ms=round(duration * 1000, 3),
            )
            structlog.contextvars.reset_contextvars(**tokens)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _REQUEST_ID.match(value) else None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await self._too_large(scope, receive, send)
                    return
                # The server enforces the declared length: nothing to count.
                await self.app(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        description = f"request body is larger than the limit of {self.max_body_bytes} bytes"
        response = error_response(scope, 413, "payload_too_large", description)
        await response(scope, receive, send)


class BusiestRoute:
    """One route taken before the router: a `Route` of one method whose path is a fixed
    prefix and one parameter (`/v1/data/{purpose}`), which takes, as the router does, a
    non-empty last segment without `/`.

    The data API is most of a gateway's traffic, and for each of its requests the router
    (matching, its scope copies) and the exception wrapper (a closure and a wrapped
    `send` per request) cost more than deciding does. Here the same endpoint is called
    with the same scope, and what it raises goes to the same handlers (`handlers`, the
    app's, looked up by the exception's classes in order); anything else goes on up to
    the middleware above, as it would. The endpoint must raise only before it answers
    (it sends its answer last). Every other request goes down to the router.
    """

    def __init__(
        self,
        app: ASGIApp,
        route: Route,
        handlers: Mapping[Any, Callable[[Request, Exception], Awaitable[Response]]],
    ) -> None:
        prefix, _, parameter = route.path.rpartition("{")
        methods = sorted(route.methods or ())
        if not parameter.endswith("}") or "{" in prefix or ":" in parameter or len(methods) != 1:
            raise ValueError(f"not a one-method route with one last parameter: {route.path}")
        self.app = app
        self.prefix = prefix
        self.parameter = parameter[:-1]
        self.method = methods[0]
        self.endpoint = route.endpoint
        self.handlers = {cls: handler for cls, handler in handlers.items() if cls is not Exception}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function: another request's coroutine is the router's own, with no
        # frame of this layer around it.
        path: str = scope.get("path", "")
        name = path[len(self.prefix):]
        if (not path.startswith(self.prefix) or not name or "/" in name or scope["type"] != "http"
                or scope["method"] != self.method or scope.get("root_path")):
            return self.app(scope, receive, send)
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {self.parameter: name}
        return self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.endpoint(scope, receive, send)
        except Exception as exc:
            handler = next((self.handlers[cls] for cls in type(exc).__mro__ if cls in self.handlers), None)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)


__all__ = [
    "UNMATCHED",
    "BodyLimitMiddleware",
    "BusiestRoute",
    "RequestContextMiddleware",
    "RouteTemplates",
    "new_request_id",
]
