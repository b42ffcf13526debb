"""`idgw decisions list|purge` and `idgw policy replay`: the decision records of the
configured database, shown, purged, and decided again by a candidate policy set
(docs/impact.md).

Light at import (click and the engine): `idgw` adds `replay` to the policy commands,
which must start without the database drivers; the stores are imported when used.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from engine.clock import utc_now
from server.commands import database_url_option as shared_database_url_option
from server.commands import with_stores

if TYPE_CHECKING:
    from engine.replay import Report
    from stores import Stores

database_url_option = shared_database_url_option("the decision records")


def _when(option: str, text: str | None, now: datetime) -> datetime | None:
    from server.decisions.records import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


_since_option = click.option("--since", metavar="AGE|TIME", help="Records at or after: 24h, 7d, or an RFC 3339 time.")
_until_option = click.option("--until", metavar="AGE|TIME", help="Records before: 1h, or an RFC 3339 time.")
_purpose_option = click.option("--purpose", help="Only this purpose's records.")


@click.group()
def decisions() -> None:
    """Decision records: what each decision was made on, kept for replay.

    \b
    Examples:
      idgw decisions list --purpose age_verification --since 24h --outcome fail
      idgw decisions purge --days 30
    """


@decisions.command("list")
@_purpose_option
@_since_option
@_until_option
@click.option("--outcome", type=click.Choice(["pass", "fail", "pass_with_conditions"]), help="Only this status.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@database_url_option
def list_command(purpose: str | None, since: str | None, until: str | None, outcome: str | None, limit: int,
                 output: str, database_url: str) -> None:
    """The stored records, oldest first (sensitive values appear as keyed hashes)."""
    from engine.clock import utc_text
    from server.decisions.records import record_json

    now = utc_now()
    after, before = _when("--since", since, now), _when("--until", until, now)

    async def work(stores: Stores) -> list[Any]:
        return await stores.decision_records.query(
            purpose=purpose, since=after, until=before, status=outcome, limit=limit)

    records = with_stores(database_url, work)
    if output == "json":
        click.echo(json.dumps([record_json(r) for r in records], indent=2, ensure_ascii=False))
        return
    for r in records:
        shadow = f"  shadow {r.shadow}" if r.shadow else ""
        click.echo(f"{utc_text(r.recorded_at)}  {r.decision_id}  {r.purpose}  {r.status}/{r.reason}  "
                   f"{r.policy_revision[:19]}{shadow}")
    click.echo(f"{len(records)} record{'s' if len(records) != 1 else ''}", err=True)


@decisions.command("purge")
@click.option("--days", type=click.IntRange(min=0), envvar="IDGW_DECISION_RECORD_DAYS", default=30,
              show_default=True, help="Keep this many days (env IDGW_DECISION_RECORD_DAYS); 0 deletes every record.")
@database_url_option
def purge_command(days: int, database_url: str) -> None:
    """Delete the records older than the retention (the server also does so hourly)."""
    from datetime import timedelta

    before = utc_now() - timedelta(days=days)

    async def work(stores: Stores) -> int:
        return await stores.decision_records.purge(before)

    count = with_stores(database_url, work)
    click.echo(f"purged {count} decision record{'s' if count != 1 else ''} older than {days} days")


@click.command("replay")
@click.argument("candidate", metavar="CANDIDATE_DIR", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--since", default="7d", show_default=True, metavar="AGE|TIME",
              help="Records at or after: 24h, 7d, or an RFC 3339 time.")
@_until_option
@_purpose_option
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records.")
@click.option("--format", "output", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="markdown fits a pull-request comment.")
@click.option("--fail-on-change", is_flag=True, help="Exit 1 when any decision changes.")
@click.option("--expect-changes", type=click.File("r"), metavar="FILE",
              help="An approved replay report (--format json): exit 1 on any change it does not name.")
@click.option("--shadow", is_flag=True,
              help="Report the disagreements the live server's shadow set recorded (no CANDIDATE_DIR).")
@database_url_option
def replay(candidate: str | None, since: str, until: str | None, purpose: str | None, limit: int | None,
           output: str, fail_on_change: bool, expect_changes: Any, shadow: bool, database_url: str) -> None:
    """Decide recorded decisions again with CANDIDATE_DIR and show what would change.

    The candidate must pass lint and its own tests, as hot reload requires. Records the
    candidate cannot decide faithfully (a fact or a field it reads that was not recorded,
    a hashed value, a refused request) are counted as not replayable, by name.

    \b
    Examples:
      idgw policy replay candidate/ --since 7d --format markdown > replay.md
      idgw policy replay candidate/ --expect-changes approved.json
      idgw policy replay --shadow --since 24h
    """
    from engine.replay import ApprovalError, approved_changes, unapproved

    if shadow == (candidate is not None):
        raise click.UsageError("give CANDIDATE_DIR, or --shadow for the shadow set's recorded disagreements")
    approved = None
    if expect_changes is not None:
        try:
            approved = approved_changes(json.load(expect_changes))
        except (ValueError, ApprovalError) as exc:
            raise click.BadParameter(str(exc), param_hint="--expect-changes") from None
    now = utc_now()
    filters: dict[str, Any] = {"purpose": purpose, "since": _when("--since", since, now),
                               "until": _when("--until", until, now)}
    report = _shadow_report(database_url, filters, limit) if shadow else _replay(candidate or "", database_url,
                                                                              filters, limit)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo((report.to_markdown() if output == "markdown" else report.to_text()).rstrip("\n"))
    if approved is not None:
        surprises = unapproved(report, approved)
        for name, t in surprises:
            click.echo(f"unapproved change in {name}: {t.before[0]}/{t.before[1]} -> {t.after[0]}/{t.after[1]}: "
                       f"{t.count} (e.g. {', '.join(t.examples)})", err=True)
        if surprises:
            sys.exit(1)
    if fail_on_change and report.changed:
        click.echo(f"{report.changed} decision{'s' if report.changed != 1 else ''} changed", err=True)
        sys.exit(1)


def _replay(candidate: str, database_url: str, filters: dict[str, Any], limit: int | None) -> Report:
    from engine.cli import _catalogue, echo_refusal
    from engine.testing import Refused, gate
    from server.decisions.records import replay_stored

    try:
        policy_set = gate(candidate, _catalogue()).policy_set
    except Refused as refused:
        echo_refusal(refused)
        click.echo(f"error: the candidate is refused: {refused}", err=True)
        sys.exit(2)
    assert policy_set is not None

    async def work(stores: Stores) -> Report:
        return await replay_stored(stores.decision_records, policy_set, limit=limit, **filters)

    return with_stores(database_url, work)


def _shadow_report(database_url: str, filters: dict[str, Any], limit: int | None) -> Report:
    """The recorded shadow outcomes as a replay of the shadow set."""
    from server.decisions.records import shadow_report

    async def work(stores: Stores) -> Report:
        return await shadow_report(stores.decision_records, limit=limit, **filters)

    return with_stores(database_url, work)


__all__ = ["decisions", "replay"]
