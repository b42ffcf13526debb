"""The workbench's HTTP side: pages rendered from templates, one script, one stylesheet.

    GET  /                            303 to /ui/
    GET  /ui/                         overview: revision, last reload, purposes
    GET  /ui/purposes/{name}          a purpose: evidence, context schema, rules (?page=, ?unreached=1)
    GET  /ui/purposes/{name}/try      the Try form; POST: the decision and its trace
    GET  /ui/tests                    the policy tests, failures explained, coverage
    GET  /ui/impact                   the shadow set's agreement, and its recorded outcomes
    GET  /ui/state                    {revision, reloads, state}: what a studio page polls
    GET  /ui/static/{name}            workbench.js, workbench.css, favicon.svg

None of them is in the OpenAPI document. Every page is sent with a Content-Security-Policy
that allows scripts, styles, images, fetches and form posts from this origin only (no
inline script, style or handler), and is never cached.

Access follows the data API's (`app.state.data_api_auth`, IDGW_DATA_API_AUTH). Open with
`none`. With `bearer`, a request without a token gets the sign-in page, which names
nothing of the policies; the script keeps the token pasted there in memory and asks for
each page again with it (`Authorization: Bearer`, plus `X-Workbench-Fragment: 1` to get
the page's content only), so links and the Try form work through the script; a refused
token is the data API's 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from dsl import UNDEFINED
from engine import PolicySet, Purpose
from engine.clock import utc_now, utc_text
from engine.testing import explanation_lines
from server import json_codec
from server.decisions.records import shadow_report
from server.responses import JSONResponse
from server.security import allow_anonymous, bearer_token
from server.ui.tryout import TryForm, as_test_case, curl_command
from server.ui.workbench import (
    RULES_PER_PAGE,
    Checked,
    Workbench,
    highlight,
    rules_page,
    trace_view,
)
from stores import StoreError

FRAGMENT_HEADER = "x-workbench-fragment"
#: The Impact page counts the shadow outcomes of the records of this window, at most this many.
RECORDED_WINDOW = timedelta(hours=24)
RECORDED_LIMIT = 5000

#: Nothing but this origin's files: no inline script, style or event handler runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "vary": "authorization, x-workbench-fragment",
}

_environment = Environment(
    loader=PackageLoader("server.ui", "templates"), autoescape=select_autoescape(default=True),
    trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.do"],
)
_environment.filters.update(highlight=highlight, utc=utc_text, json=lambda value: json_codec.dumps(value).decode())
_environment.tests["undefined_value"] = lambda value: value is UNDEFINED
_environment.globals.update(explanation_lines=explanation_lines, rules_per_page=RULES_PER_PAGE)
templates = Jinja2Templates(env=_environment)

_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".svg": "image/svg+xml"}
#: The static files, read once from the package (they ship as its package data).
_STATIC = {
    entry.name: (entry.read_bytes(), _STATIC_TYPES[entry.name[entry.name.rindex("."):]])
    for entry in resources.files("server.ui").joinpath("static").iterdir()
    if "." in entry.name and entry.name[entry.name.rindex("."):] in _STATIC_TYPES
}

PageBuilder = Callable[[Request, Workbench, Checked | None], Awaitable[tuple[str, dict[str, Any], int]]]


def workbench_of(request: Request) -> Workbench:
    workbench: Workbench = request.app.state.workbench
    return workbench


async def _admitted(request: Request) -> bool:
    """Open, or a valid bearer token (a bad one is the data API's 401); False: no token."""
    authenticate = request.app.state.data_api_auth
    if authenticate is allow_anonymous:
        return True
    if bearer_token(request) is None:
        return False
    await authenticate(request)
    return True


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    workbench = workbench_of(request)
    bearer = request.app.state.data_api_auth is not allow_anonymous
    values = {
        "fragment": request.headers.get(FRAGMENT_HEADER) == "1",
        "auth": "bearer" if bearer else "none",
        "studio": workbench.studio,
        "state": workbench.state()["state"] if workbench.studio else None,
        **context,
    }
    return templates.TemplateResponse(request, template, values, status_code=status, headers=_PAGE_HEADERS)


def page(builder: PageBuilder) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint showing `builder`'s page to an admitted caller, the sign-in page to others."""

    async def endpoint(request: Request) -> Response:
        if not await _admitted(request):
            settings = getattr(request.app.state, "settings", None)
            local_auth = settings is not None and settings.auth_mode == "local"
            return render(request, "signin.html", {"title": "Sign in", "local_auth": local_auth})
        workbench = workbench_of(request)
        checked = await run_in_threadpool(workbench.checked)  # the tests run once per reload
        template, context, status = await builder(request, workbench, checked)
        return render(request, template, context, status)

    endpoint.__name__ = builder.__name__
    return endpoint


def _not_found(title: str, message: str) -> tuple[str, dict[str, Any], int]:
    return "error.html", {"title": title, "message": message}, 404


def _purpose_of(request: Request, checked: Checked | None) -> Purpose | str:
    """The purpose the path names, or why there is none to show."""
    name = request.path_params["name"]
    if checked is None:
        return "no policy set is loaded: see the overview for the last reload's diagnostics"
    purpose = checked.policy_set.purposes.get(name)
    if purpose is None:
        known = ", ".join(sorted(checked.policy_set.purposes)) or "none"
        return f"unknown purpose {name!r}; known purposes: {known}"
    return purpose


@page
async def overview(request: Request, workbench: Workbench, checked: Checked | None) -> tuple[str, dict[str, Any], int]:
    live = workbench.live.current
    return "overview.html", {
        "title": "Overview", "checked": checked, "live": live, "reload": workbench.reload_view(),
        "policy_dir": workbench.live.policy_dir,
    }, 200


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@page
async def purpose_page(request: Request, workbench: Workbench, checked: Checked | None) -> tuple[str, dict[str, Any], int]:
    purpose = _purpose_of(request, checked)
    if isinstance(purpose, str) or checked is None:
        return _not_found("No such purpose", str(purpose))
    name = purpose.name
    only_unreached = request.query_params.get("unreached") == "1"
    rules = rules_page(purpose, checked, _int(request.query_params.get("page"), 1), only_unreached)
    return "purpose.html", {
        "title": name, "purpose": purpose, "rules": rules, "counts": checked.counts(name),
        "coverage": checked.coverage(name), "revision": checked.policy_set.revision,
    }, 200


@page
async def try_page(request: Request, workbench: Workbench, checked: Checked | None) -> tuple[str, dict[str, Any], int]:
    purpose = _purpose_of(request, checked)
    if isinstance(purpose, str) or checked is None:
        return _not_found("No such purpose", str(purpose))
    policy_set, name = checked.policy_set, purpose.name
    form = TryForm.blank(purpose)
    context: dict[str, Any] = {"title": f"Try {name}", "purpose": purpose, "form": form, "decision": None,
                               "revision": policy_set.revision}
    if request.method == "POST":
        facts = form.fill(await _posted(request, len(form.fields)))
        if facts is not None:
            decision = policy_set.decide(name, facts, explain=True)
            bearer = request.app.state.data_api_auth is not allow_anonymous
            url = workbench.data_api_url or str(request.base_url).rstrip("/")
            context.update(
                decision=decision,
                trace=trace_view(decision.explanation or []),
                curl=curl_command(url, name, facts, bearer),
                test_case=as_test_case(f"tried in the workbench: {decision.reason}", facts, decision),
                test_file=_test_file_of(policy_set, name),
            )
    return "try.html", context, 200


async def _posted(request: Request, fields: int) -> dict[str, str]:
    """The posted form (`application/x-www-form-urlencoded`; a browser's). Anything else,
    or more values than the form has fields, reads as an empty form."""
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=fields + 1)
    except (UnicodeError, ValueError):
        return {}
    return dict(pairs)


def _test_file_of(policy_set: PolicySet, purpose: str) -> str:
    """Where the purpose's cases go: its policy file's `_test.yaml` neighbour."""
    file = policy_set.purposes[purpose].file
    stem = file[: file.rindex(".")] if "." in file else file
    return f"{stem}_test.yaml"


@page
async def tests_page(request: Request, workbench: Workbench, checked: Checked | None) -> tuple[str, dict[str, Any], int]:
    return "tests.html", {"title": "Tests", "checked": checked}, 200


@page
async def impact_page(request: Request, workbench: Workbench, checked: Checked | None) -> tuple[str, dict[str, Any], int]:
    shadow = workbench.shadow.status() if workbench.shadow is not None else None
    context: dict[str, Any] = {"title": "Impact", "shadow": shadow, "live": workbench.live.current,
                               "recorded": None, "recorded_error": None, "recorded_limit": RECORDED_LIMIT}
    stores = getattr(request.app.state, "stores", None)
    if shadow is not None and stores is not None and request.app.state.decision_recording:
        try:
            context["recorded"] = await shadow_report(
                stores.decision_records, since=utc_now() - RECORDED_WINDOW, limit=RECORDED_LIMIT)
        except StoreError as exc:
            context["recorded_error"] = str(exc)
    return "impact.html", context, 200


async def state(request: Request) -> Response:
    """The live revision and reload count as JSON (a studio page polls it)."""
    await request.app.state.data_api_auth(request)  # open, or the data API's 401
    return JSONResponse(workbench_of(request).state(), headers={"cache-control": "no-store"})


async def static(request: Request) -> Response:
    found = _STATIC.get(request.path_params["name"])
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    content, media_type = found
    return Response(content, media_type=media_type,
                    headers={"x-content-type-options": "nosniff", "cache-control": "no-cache"})


async def to_workbench(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=303)


routes = [
    Route("/", to_workbench, methods=["GET"], include_in_schema=False),
    Route("/ui/", overview, methods=["GET"], include_in_schema=False),
    Route("/ui/purposes/{name}", purpose_page, methods=["GET"], include_in_schema=False),
    Route("/ui/purposes/{name}/try", try_page, methods=["GET", "POST"], include_in_schema=False),
    Route("/ui/tests", tests_page, methods=["GET"], include_in_schema=False),
    Route("/ui/impact", impact_page, methods=["GET"], include_in_schema=False),
    Route("/ui/state", state, methods=["GET"], include_in_schema=False),
    Route("/ui/static/{name}", static, methods=["GET"], include_in_schema=False),
]

__all__ = ["CONTENT_SECURITY_POLICY", "FRAGMENT_HEADER", "routes", "templates"]
