"""`idgw serve`: run the gateway under uvicorn, with one or several worker processes.

The options become `IDGW_*` variables before anything starts, so worker processes
(which import `server.app:create_app_from_env` afresh) see the same configuration.
The configuration and the policy directory are checked here first: a mistake prints a
message naming the variable, or the diagnostics, and exits without a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

_FAILED_CONFIG = 2
_FAILED_POLICIES = 1


@click.command()
@click.option("--host", help="address to bind (IDGW_HOST, default 127.0.0.1)")
@click.option("--port", type=int, help="port to bind (IDGW_PORT, default 8080)")
@click.option("--workers", type=int, help="worker processes (IDGW_WORKERS, default 1)")
@click.option("--policy-dir", type=click.Path(path_type=Path), help="policy directory (IDGW_POLICY_DIR)")
def serve(host: str | None, port: int | None, workers: int | None, policy_dir: Path | None) -> None:
    """Run the gateway: decisions over HTTP, policies hot-reloaded.

    \b
    Embedded defaults: policies from ./policies, SQLite file ./idgw.db,
    in-memory cache and audit queue. Stop with Ctrl-C or SIGTERM (graceful).
    """
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers), ("POLICY_DIR", policy_dir)):
        if value is not None:
            os.environ[f"IDGW_{name}"] = str(value)

    from server.settings import ConfigError, load_settings, unknown_variables

    try:
        settings = load_settings()
    except ConfigError as err:
        click.echo(f"idgw serve: {err}", err=True)
        sys.exit(_FAILED_CONFIG)

    metrics_dir: str | None = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is imported anywhere: it picks its value class then.
        metrics_dir = tempfile.mkdtemp(prefix="idgw-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    import uvicorn

    from server.logging import configure_logging
    from server.reload import PolicyStartupError

    configure_logging(settings.log.level, settings.log.as_json)
    target: object = "server.app:create_app_from_env"  # each worker builds its own app
    try:
        if settings.workers == 1:
            from server.app import create_app_from_env

            target = create_app_from_env()
        else:
            from server.app import load_policies

            # Fail here, once, readably (a bundle fetched here is kept for the workers).
            _, source = load_policies(settings)
            if source is not None:
                source.close()
            unknown = unknown_variables()
            if unknown:
                click.echo(f"idgw serve: ignoring unknown variables: {', '.join(unknown)}", err=True)
    except PolicyStartupError as err:
        click.echo(f"idgw serve: {err}", err=True)
        _cleanup(metrics_dir)
        sys.exit(_FAILED_POLICIES)

    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the
    # handler that was there before it: make that one a clean exit (status 0).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            target,  # type: ignore[arg-type]
            factory=settings.workers > 1,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        _cleanup(metrics_dir)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _cleanup(metrics_dir: str | None) -> None:
    if metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)


__all__ = ["serve"]
