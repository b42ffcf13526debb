"""`idgw policy studio [DIR]`: the workbench's pages on a local policy directory, for a
policy author at their desk. No database, no token, no audit: an app of the policy parts
only.

    LivePolicies(DIR) + PolicyWatcher   the hot reload of `idgw serve`, same watcher
          -> Workbench(studio=True)     pages that poll /ui/state and show a saved
          -> server.ui.routes           file's result (diagnostics, tests, decisions)

Unlike the gateway, the studio does not gate a set by its tests: a set whose tests fail
is the one shown (its Tests page says which), since the author is writing them. A set
that does not load leaves the last good one in place and the overview shows why, as on
the gateway; a directory that never loaded shows its diagnostics and no purpose.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from server.errors import EXCEPTION_HANDLERS
from server.reload import LivePolicies, PolicyStartupError, PolicyWatcher
from server.security import allow_anonymous
from server.ui.routes import routes
from server.ui.workbench import Workbench

#: Where a "copy as curl" command sends its request: `idgw serve`'s default address.
GATEWAY_URL = "http://127.0.0.1:8080"


def create_studio_app(policy_dir: Path, *, debounce: float = 0.05) -> Starlette:
    """The studio's app on `policy_dir`, watched while the app runs (its lifespan)."""
    live = LivePolicies(policy_dir, gate=False, counted=False)
    try:
        live.load_initial()
    except PolicyStartupError:
        live.reload(force=True)  # records the rejection and its diagnostics for the overview

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = PolicyWatcher(live, debounce=debounce)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.policies = live
    app.state.data_api_auth = allow_anonymous
    app.state.workbench = Workbench(live, studio=True, data_api_url=GATEWAY_URL)
    return app


def run_studio(policy_dir: Path, host: str, port: int) -> None:
    """Serve the studio until Ctrl-C or SIGTERM."""
    import click
    import uvicorn

    from server.logging import configure_logging

    configure_logging("WARNING", as_json=False)
    app = create_studio_app(policy_dir)
    click.echo(f"policy studio on {policy_dir}: http://{host}:{port}/ui/ (Ctrl-C to stop)")
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False,
                timeout_graceful_shutdown=2)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


__all__ = ["GATEWAY_URL", "create_studio_app", "run_studio"]
