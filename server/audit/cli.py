"""`idgw audit`: check the trail's hash chain and handle dead letters.

Thin commands over `server.audit.chain.verify_trail` and `server.audit.dead_letters`;
the stores package is imported inside them so that other `idgw` commands never load the
database drivers. Exit status: 0 when all is well, 1 when the chain is broken or a
replay left letters pending, 2 for usage errors (click).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from server.commands import database_url_option as shared_database_url_option
from server.commands import with_stores

database_url_option = shared_database_url_option("the audit trail")


@click.group()
def audit() -> None:
    """The audit trail: hash-chain verification and dead letters.

    \b
    Examples:
      idgw audit verify
      idgw audit dlq list --pending
      idgw audit dlq replay --all
    """


@audit.command("verify")
@database_url_option
def verify_command(database_url: str) -> None:
    """Recompute the hash chain of every writer stream; report the first break."""
    from server.audit.chain import ChainReport, verify_trail

    async def work(stores: Any) -> ChainReport:
        return await verify_trail(stores.audit_events)

    report = with_stores(database_url, work)
    if report.first_break is None:
        click.echo(f"audit trail intact: {report.events} events in {report.streams} streams")
        return
    click.echo(f"audit trail broken at {report.first_break.describe()}", err=True)
    click.echo(f"{report.events} events before it verified", err=True)
    sys.exit(1)


@audit.group("dlq")
def dlq() -> None:
    """Dead letters: events the writer could never store, with the error."""


@dlq.command("list")
@click.option("--pending", is_flag=True, help="Only letters whose event is not in the trail yet.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@database_url_option
def dlq_list_command(pending: bool, limit: int, database_url: str) -> None:
    """One line per dead letter: id, event id, failure time, state, error."""
    from engine.clock import utc_text

    async def work(stores: Any) -> list[tuple[Any, bool]]:
        letters = await stores.audit_dead_letters.list_letters(pending_only=pending, limit=limit)
        open_ids = {d.id for d in await stores.audit_dead_letters.list_letters(pending_only=True)}
        return [(letter, letter.id in open_ids) for letter in letters]

    rows = with_stores(database_url, work)
    if not rows:
        click.echo("no dead letters")
    for letter, is_pending in rows:
        state = "pending" if is_pending else "replayed"
        error = " ".join(letter.error.split())[:160]
        click.echo(f"{letter.id}\t{letter.event_id}\t{utc_text(letter.failed_at)}\t{state}\t{error}")


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every pending dead letter.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to keep retrying while the database is unavailable.")
@database_url_option
def dlq_replay_command(ids: tuple[int, ...], replay_all: bool, timeout: float, database_url: str) -> None:
    """Write the events of pending dead letters IDS (or --all) to the trail again."""
    from server.audit.dead_letters import ReplayReport, replay_dead_letters

    if not ids and not replay_all:
        raise click.UsageError("name the dead letters to replay, or pass --all")

    async def work(stores: Any) -> ReplayReport:
        return await replay_dead_letters(stores.audit_events, stores.audit_dead_letters,
                                         ids=ids, timeout=timeout)

    report = with_stores(database_url, work)
    click.echo(f"replayed {len(report.written)} dead letters")
    for letter_id, error in report.refused:
        click.echo(f"{letter_id}: refused again: {error}", err=True)
    for letter_id, error in report.unreadable:
        click.echo(f"{letter_id}: payload is not an event: {error}", err=True)
    for letter_id in report.unknown:
        click.echo(f"{letter_id}: no pending dead letter has this id", err=True)
    for letter_id in report.unwritten:
        click.echo(f"{letter_id}: not written: the database stayed unavailable", err=True)
    if not report.ok:
        sys.exit(1)


__all__ = ["audit"]
