"""The `idgw` console script: composes the command groups of every package."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli import policy
from engine.clock import utc_now, utc_text
from server.decisions.cli import replay
from server.facts import CATALOGUE

if TYPE_CHECKING:
    from stores import SigningKey


class _LazyGroup(click.Group):
    """A group whose heavier subcommands are imported only when used, so that
    `idgw policy ...` starts without loading the server, the audit pipeline or the
    database drivers."""

    lazy: dict[str, str] = {
        "audit": "server.audit.cli:audit", "decisions": "server.decisions.cli:decisions", "serve": "server.serve:serve",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name].split(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="id-gateway", prog_name="idgw")
@click.pass_context
def main(ctx: click.Context) -> None:
    """ID Gateway: policy-as-code decisions for regulated identity checks.

    \b
    Example:
      idgw policy lint policies/
      idgw serve --port 8080
    """
    # the policy commands check policies against the facts this gateway provides
    ctx.ensure_object(dict)["catalogue"] = CATALOGUE


@policy.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8181, show_default=True, help="Port to bind.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (the pages are open to whoever reaches it).")
def studio(directory: Path | None, port: int, host: str) -> None:
    """The workbench's pages on a local policy directory (default $IDGW_POLICY_DIR, else
    ./policies): no database, no token. A saved file's result (diagnostics, tests,
    coverage, decisions) shows within a second (docs/workbench.md).

    \b
    Example:
      idgw policy studio policies/ --port 8181
    """
    from server.ui.studio import run_studio

    policy_dir = directory or Path(os.environ.get("IDGW_POLICY_DIR") or "policies")
    if not policy_dir.is_dir():
        raise click.UsageError(f"no policy directory at {str(policy_dir)!r}")
    run_studio(policy_dir, host, port)


policy.add_command(replay)
main.add_command(policy)


# -- idgw migrate -----------------------------------------------------------------------
# The stores package is imported inside the commands so that `idgw policy ...` never
# loads the database drivers.

_database_url_option = click.option(
    "--database-url",
    envvar="IDGW_DATABASE_URL",
    default="sqlite:///./idgw.db",
    show_default=True,
    help="Database to migrate (env IDGW_DATABASE_URL): sqlite:///PATH or postgresql://...",
)


def _report(verb: str, migrations: list[tuple[int, str]]) -> None:
    if not migrations:
        click.echo(f"no migration {verb}")
    for version, name in migrations:
        click.echo(f"{verb} {version:04d}_{name}")


@main.group()
def migrate() -> None:
    """Schema migrations of the configured database.

    \b
    Examples:
      idgw migrate status
      idgw migrate up
      idgw migrate down 1
    """


@migrate.command("up")
@click.argument("steps", type=click.IntRange(min=1), required=False)
@_database_url_option
def migrate_up_command(steps: int | None, database_url: str) -> None:
    """Apply pending migrations: all of them, or the next STEPS."""
    from stores import StoreError, migrate_up

    try:
        applied = migrate_up(database_url, steps=steps)
        _report("applied", [(m.version, m.name) for m in applied])
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@migrate.command("down")
@click.argument("steps", type=click.IntRange(min=1), default=1)
@click.option("--all", "revert_all", is_flag=True, help="Revert every migration.")
@_database_url_option
def migrate_down_command(steps: int, revert_all: bool, database_url: str) -> None:
    """Revert the last STEPS applied migrations (default 1; --all for every one)."""
    from stores import StoreError, migrate_down

    try:
        reverted = migrate_down(database_url, steps=None if revert_all else steps)
        _report("reverted", [(m.version, m.name) for m in reverted])
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


@migrate.command("status")
@_database_url_option
def migrate_status_command(database_url: str) -> None:
    """List every migration, applied (with its time) or pending."""
    from stores import StoreError, migration_status, redact_database_url

    try:
        states = migration_status(database_url)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"database: {redact_database_url(database_url)}")
    for state in states:
        when = "pending" if state.applied_at is None else f"applied {utc_text(state.applied_at)}"
        unknown = "" if state.known else " (unknown to this release)"
        click.echo(f"{state.version:04d}_{state.name:<24} {when}{unknown}")


# -- idgw keys --------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Token signing keys in the configured database.

    \b
    Examples:
      idgw keys list
      idgw keys rotate
    """


def _print_keys(listed: list[SigningKey]) -> None:
    from server.auth.admin import key_state

    now = utc_now()
    for key in listed:
        click.echo(f"{key.kid}  {key.alg}  created {utc_text(key.created_at)}  {key_state(key, now)}")


@keys.command("list")
@_database_url_option
def keys_list_command(database_url: str) -> None:
    """Every stored key: kid (RFC 7638 thumbprint), algorithm, creation, state."""
    import asyncio

    from server.auth.admin import KeyAdminError, list_signing_keys
    from stores import StoreError

    try:
        listed = asyncio.run(list_signing_keys(database_url))
    except (KeyAdminError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not listed:
        click.echo("no signing key yet: the server makes one at its first start")
    _print_keys(listed)


@keys.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), envvar="IDGW_SIGNING_ALG", default="RS256",
              show_default=True, help="Algorithm of the new key (env IDGW_SIGNING_ALG).")
@_database_url_option
def keys_rotate_command(alg: str, database_url: str) -> None:
    """Make a new signing key; the old ones stop signing and leave the JWKS once every
    token they signed has expired (a running server switches within IDGW_KEY_REFRESH_S,
    30 s by default)."""
    import asyncio

    from server.auth.admin import KeyAdminError, rotate_signing_key
    from stores import StoreError

    try:
        new, listed = asyncio.run(rotate_signing_key(database_url, alg.upper()))
    except (KeyAdminError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"new signing key {new.kid} ({new.alg})")
    _print_keys(listed)
