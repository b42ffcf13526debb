"""The application factory: `create_app(settings)` composes the gateway.

Each subsystem exports `routes`; this module joins them with the middleware, the error
handlers and a lifespan that opens the stores (`IDGW_DATABASE_URL`, migrations applied),
starts the token service and the policy watcher, and stops them. The policy set is
loaded when the app is created, so a broken directory fails before serving (the CLI
checks it first to print the diagnostics without a traceback).

What the app keeps on `app.state`, for the handlers and services:
    policies            LivePolicies: the live set (swap by reload) and its status
    policy_source       server.policy_source.BundleSource with IDGW_POLICY_SOURCE, else None
    stores              stores.Stores of IDGW_DATABASE_URL (opened in the lifespan)
    auth                server.auth.AuthService: keys, tokens, `require_principal`
    consent             server.consent.ConsentService: grants, `require(user, purpose)`
    registry            server.registry.RegistryService: cached citizen/sanctions lookups
    credentials         server.credentials.CredentialService: issue, verify, revoke
    events              the audit sink (`emit(event)`): a server.audit.AuditSink, started
                        and drained by the lifespan (or a test's RecentEvents)
    data_api_auth       async callable: request -> Principal | None, or raises 401
    workbench           server.ui.Workbench: what the pages at /ui/ show (IDGW_UI=on)
    readiness_checks    name -> async () -> (ok, detail), run by /health/ready
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from server import (
    auth,
    consent,
    credentials,
    decisions,
    health,
    metrics,
    openapi,
    privacy,
    registry,
    ui,
)
from server.audit import AuditSink, audit_sink
from server.decisions.records import retention_loop
from server.errors import EXCEPTION_HANDLERS
from server.health import ReadinessCheck
from server.logging import configure_logging
from server.middleware import (
    BodyLimitMiddleware,
    BusiestRoute,
    RequestContextMiddleware,
    RouteTemplates,
)
from server.policy_source import BundlePoller, BundleSource
from server.reload import LivePolicies, PolicyWatcher
from server.security import allow_anonymous
from server.settings import Settings, load_settings, unknown_variables
from server.shadow import Shadow
from stores import StoreError, Stores, open_stores

logger = structlog.get_logger("idgw.app")


def create_app(
    settings: Settings | None = None,
    *,
    log_stream: IO[str] | None = None,
    events: AuditSink | None = None,
    served: bool = False,
) -> Starlette:
    """Build the gateway for `settings` (read from the environment when omitted).

    `events` replaces the audit sink (tests pass `RecentEvents()` to look at what was
    emitted); by default it is the backend of the configured delivery mode
    (`server.audit.audit_sink`; `served`: the app is `idgw serve`'s, where
    `IDGW_AUDIT_WRITER=auto` means a writer process).
    """
    settings = settings or load_settings()
    configure_logging(settings.log.level, settings.log.as_json, log_stream)
    policies, source = load_policies(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stores = await open_stores(
            settings.database_url,
            pool_min_size=settings.database_pool_min,
            pool_max_size=settings.database_pool_max,
        )
        app.state.stores = stores
        watcher: PolicyWatcher | BundlePoller | None = None
        shadow_watcher = None
        retention: asyncio.Task[None] | None = None
        try:
            await app.state.auth.start(stores)
            app.state.readiness_checks["database"] = _database_check(stores)
            await app.state.events.start(stores.audit_events, stores.audit_dead_letters)
            if settings.decision_record_days > 0:
                retention = asyncio.create_task(
                    retention_loop(stores.decision_records, settings.decision_record_days), name="record-retention")
            if settings.policy_reload:
                if source is not None:
                    watcher = BundlePoller(source)
                else:
                    watcher = PolicyWatcher(policies, debounce=settings.reload_debounce_ms / 1000)
                watcher.start()
                if app.state.shadow is not None:
                    shadow_watcher = PolicyWatcher(app.state.shadow.policies, debounce=settings.reload_debounce_ms / 1000)
                    shadow_watcher.start()
            # Everything built so far lives as long as the process: keep it out of the
            # collector's generations so full collections (and latency spikes) stay short.
            gc.collect()
            gc.freeze()
            logger.info("started", policy_dir=None if source else str(settings.policy_dir),
                        policy_source=source.url if source else None, revision=_revision(policies),
                        watching=watcher is not None, data_api_auth=settings.data_api_auth,
                        database=stores.backend, auth_mode=settings.auth_mode)
            yield
        finally:
            if retention is not None:
                retention.cancel()
            if watcher is not None:
                watcher.stop()
            elif source is not None:
                source.close()
            if shadow_watcher is not None:
                shadow_watcher.stop()
            await app.state.auth.stop()
            await app.state.registry.close()
            await app.state.events.stop()  # drains (bounded) before the stores close
            await stores.close()
            metrics.mark_worker_stopped()
            logger.info("stopped")

    # Starlette tries the routes in order, a regular expression each: the busiest come
    # first (the data API, the probes), ahead of the auth and consent routes.
    routes: list[BaseRoute] = [
        *decisions.routes,
        *health.routes,
        *auth.routes,
        *consent.routes,
        *registry.routes,
        *credentials.routes,
        *metrics.routes,
        *openapi.routes,
        *privacy.routes,
        *(ui.routes if settings.ui else ()),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware, templates=RouteTemplates(routes)),
            Middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes),
            Middleware(BusiestRoute, route=decisions.data_api_route, handlers=EXCEPTION_HANDLERS),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.policies = policies
    app.state.policy_source = source
    app.state.events = events if events is not None else audit_sink(settings, served=served)
    app.state.auth = auth.AuthService(settings)
    # One clock for every service: tests that move `app.state.auth.clock` move them all.
    clock = app.state.auth.now
    app.state.consent = consent.ConsentService(lambda: app.state.auth.stores, app.state.events, clock)
    app.state.registry = registry.RegistryService.from_settings(settings, clock)
    app.state.credentials = credentials.CredentialService(
        lambda: app.state.auth.stores, app.state.events, clock, registry=app.state.registry,
        keys=lambda: app.state.auth.keys, issuer=app.state.auth.issuer, regulated=settings.regulated_mode,
    )
    app.state.decision_recording = settings.decision_record_days > 0
    app.state.shadow = None
    if settings.shadow_policy_dir is not None:
        app.state.shadow = Shadow(settings.shadow_policy_dir)
        app.state.shadow.load()
    app.state.data_api_auth = auth.require_principal if settings.data_api_auth == "bearer" else allow_anonymous
    app.state.workbench = ui.Workbench(policies, app.state.shadow)
    app.state.readiness_checks = {"audit_queue": app.state.events.readiness}
    return app


def load_policies(settings: Settings) -> tuple[LivePolicies, BundleSource | None]:
    """The live set, loaded: from IDGW_POLICY_SOURCE's bundle when it is set (with the
    source that polls it), else from IDGW_POLICY_DIR. PolicyStartupError when neither
    gives a set that loads and passes its tests."""
    if settings.policy.source is None:
        policies = LivePolicies(settings.policy_dir)
        policies.load_initial()
        return policies, None
    policies = LivePolicies(None)
    source = BundleSource(settings.policy, policies)
    source.load_initial()
    return policies, source


def _database_check(stores: Stores) -> ReadinessCheck:
    async def database() -> tuple[bool, str | None]:
        try:
            await stores.ping()
        except StoreError as exc:
            return False, str(exc)
        return True, stores.backend

    return database


def _revision(policies: LivePolicies) -> str | None:
    return policies.current.revision if policies.current else None


def create_app_from_env() -> Starlette:
    """The uvicorn factory (`server.app:create_app_from_env`): settings from the environment."""
    app = create_app(load_settings(), served=True)
    unknown = unknown_variables()
    if unknown:
        logger.warning("unknown_settings_ignored", variables=unknown)
    return app


__all__ = ["create_app", "create_app_from_env", "load_policies"]
