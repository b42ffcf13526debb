"""Liveness and readiness probes.

`/health/live` answers as long as the process serves HTTP. `/health/ready` runs the
readiness checks: the policy set is loaded, plus the checks the app registers in
`app.state.readiness_checks` (the database is reachable, the audit sink is ready): a
name mapped to an async callable returning `(ok, detail)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.routing import Route

from server.errors import error_response
from server.openapi import document
from server.reload import LivePolicies
from server.responses import JSONResponse

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str | None]]]


class LiveResponse(BaseModel):
    status: Literal["ok"]


class CheckResult(BaseModel):
    ok: bool
    detail: str | None


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    checks: dict[str, CheckResult]


@document("Liveness probe", tags=["operations"], response=LiveResponse)
async def live(request: Request) -> JSONResponse:
    """Always 200 while the process answers HTTP."""
    return JSONResponse({"status": "ok"})


@document("Readiness probe", tags=["operations"], response=ReadyResponse, errors=(503,))
async def ready(request: Request) -> JSONResponse:
    """200 when every check passes; 503 (error shape, with `checks`) otherwise."""
    policies: LivePolicies = request.app.state.policies
    current = policies.current
    checks: dict[str, dict[str, Any]] = {
        "policies": {"ok": current is not None, "detail": current.revision if current else "no policy set loaded"}
    }
    registered: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    for name, check in registered.items():
        try:
            ok, detail = await check()
        except Exception as exc:  # a failing check means not ready, not a 500
            ok, detail = False, f"check failed: {exc.__class__.__name__}"
        checks[name] = {"ok": ok, "detail": detail}
    failing = sorted(name for name, result in checks.items() if not result["ok"])
    if failing:
        return error_response(
            request.scope, 503, "not_ready", f"not ready: {', '.join(failing)}",
            extra={"status": "not_ready", "checks": checks},
        )
    return JSONResponse({"status": "ready", "checks": checks})


routes = [
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
]

__all__ = ["ReadinessCheck", "routes"]
