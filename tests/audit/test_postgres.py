"""The pipeline against a real PostgreSQL: outages, poison events, tampering, the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from click.testing import CliRunner, Result

from server.audit import AuditPublisher
from server.audit.cli import audit
from stores import open_stores
from tests.audit.conftest import TcpProxy, decision, eventually, request_ids, run_sql

MakePublisher = Callable[..., AuditPublisher]


async def idgw_audit(url: str, *args: str) -> Result:
    """`idgw audit ARGS --database-url URL` (in a thread: the command runs its own loop)."""
    return await asyncio.to_thread(CliRunner().invoke, audit, [*args, "--database-url", url])


async def test_5000_events_emitted_during_an_outage_are_all_stored_once(
    make_publisher: MakePublisher, postgres_proxy: tuple[TcpProxy, str], postgres_url: str
) -> None:
    proxy, proxied_url = postgres_proxy
    stores = await open_stores(proxied_url, pool_timeout=1.0)
    # a small queue: most of the outage's events go through the spill file as well
    publisher = make_publisher(queue_capacity=1000, write_timeout=2.0)
    await publisher.start(stores.audit_events, stores.audit_dead_letters)
    try:
        publisher.emit(decision(-1))
        assert await publisher.wait_delivered(30)

        proxy.stop()
        for n in range(5000):
            publisher.emit(decision(n))
            if n % 500 == 0:
                await asyncio.sleep(0.3)  # the outage lasts several seconds of emitting
        await eventually(lambda: publisher.writer is not None and publisher.writer.last_error, 30)
        assert len(request_ids(postgres_url)) == 1  # nothing got through meanwhile
        assert publisher.status().depth == 5000
        assert not (await publisher.readiness())[0]

        proxy.start()
        assert await publisher.wait_delivered(120)
    finally:
        await publisher.stop()
        await stores.close()
    stored = request_ids(postgres_url)
    assert len(stored) == 5001 and set(stored) == {f"req-{n}" for n in range(-1, 5000)}
    result = await idgw_audit(postgres_url, "verify")
    assert result.exit_code == 0, result.output
    assert "audit trail intact: 5001 events" in result.output


async def test_a_poison_event_is_dead_lettered_while_the_rest_flow(
    make_publisher: MakePublisher, postgres_url: str
) -> None:
    stores = await open_stores(postgres_url)
    publisher = make_publisher()
    await publisher.start(stores.audit_events, stores.audit_dead_letters)
    try:
        for n in range(300):
            # PostgreSQL text cannot hold NUL: the store refuses this one event for good
            publisher.emit(decision(n, reason="bad\x00reason" if n == 150 else "ok"))
        assert await publisher.wait_delivered(30)
    finally:
        await publisher.stop()
        await stores.close()

    stored = request_ids(postgres_url)
    assert sorted(stored) == sorted(f"req-{n}" for n in range(300) if n != 150)
    [(event_id, payload, error)] = run_sql(
        postgres_url, "SELECT event_id, payload, error FROM audit_dead_letters"
    )
    assert str(event_id).startswith("evt_") and "NUL" in str(error)
    assert "req-150" in str(payload)  # stored escaped: jsonb cannot hold NUL either
    result = await idgw_audit(postgres_url, "dlq", "list")
    assert result.exit_code == 0 and f"{event_id}" in result.output and "pending" in result.output
    result = await idgw_audit(postgres_url, "dlq", "replay", "--all")
    assert result.exit_code == 1 and "payload is not an event" in result.output


async def test_dead_letters_replay_once_the_cause_is_fixed(
    make_publisher: MakePublisher, postgres_url: str
) -> None:
    stores = await open_stores(postgres_url)
    run_sql(postgres_url, "ALTER TABLE audit_events ADD CONSTRAINT no_blocked CHECK (reason <> 'blocked')")
    publisher = make_publisher()
    await publisher.start(stores.audit_events, stores.audit_dead_letters)
    try:
        for n in range(20):
            publisher.emit(decision(n, reason="blocked" if n in (3, 11) else "ok"))
        assert await publisher.wait_delivered(30)
    finally:
        await publisher.stop()
        await stores.close()
    assert len(request_ids(postgres_url)) == 18
    listed = await idgw_audit(postgres_url, "dlq", "list", "--pending")
    assert listed.exit_code == 0 and listed.output.count("pending") == 2
    assert "no_blocked" in listed.output

    refused = await idgw_audit(postgres_url, "dlq", "replay", "--all")
    assert refused.exit_code == 1 and "refused again" in refused.output
    run_sql(postgres_url, "ALTER TABLE audit_events DROP CONSTRAINT no_blocked")
    replayed = await idgw_audit(postgres_url, "dlq", "replay", "--all")
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 2 dead letters" in replayed.output

    assert sorted(request_ids(postgres_url)) == sorted(f"req-{n}" for n in range(20))
    listed = await idgw_audit(postgres_url, "dlq", "list")
    assert listed.output.count("replayed") == 2
    assert (await idgw_audit(postgres_url, "verify")).exit_code == 0


async def test_verify_finds_a_row_edited_behind_the_trigger(
    make_publisher: MakePublisher, postgres_url: str
) -> None:
    stores = await open_stores(postgres_url)
    publisher = make_publisher(batch_size=7)
    await publisher.start(stores.audit_events, stores.audit_dead_letters)
    try:
        for n in range(40):
            publisher.emit(decision(n))
        assert await publisher.wait_delivered(30)
    finally:
        await publisher.stop()
        await stores.close()
    assert (await idgw_audit(postgres_url, "verify")).exit_code == 0

    [(seq, event_id)] = run_sql(postgres_url, "SELECT seq, id FROM audit_events WHERE request_id = 'req-23'")
    run_sql(
        postgres_url,
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "UPDATE audit_events SET decision = 'fail' WHERE request_id = 'req-23'",
        "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only",
    )

    result = await idgw_audit(postgres_url, "verify")
    assert result.exit_code == 1
    assert f"broken at seq {seq} (event {event_id}" in result.output
    assert "the row was edited" in result.output
    assert "23 events before it verified" in result.output
