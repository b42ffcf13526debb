"""Data written by one process is read back by a new one, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime, timedelta, UTC
    from stores import AuditEvent, Consent, SigningKey, User, open_stores

    async def main(url: str) -> None:
        now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
        async with await open_stores(url) as stores:
            await stores.users.create(
                User(id="u-1", email="ada@example.test", created_at=now, updated_at=now)
            )
            await stores.consents.grant(
                Consent(id="c-1", user_id="u-1", purpose="login", granted_at=now,
                        expires_at=now + timedelta(days=365))
            )
            await stores.audit_events.append(
                [AuditEvent(id=f"evt-{n}", timestamp=now, action="decision_made")
                 for n in range(3)]
            )
            await stores.signing_keys.add(
                SigningKey(kid="kid-1", alg="RS256", private_key_pem="pem",
                           public_jwk={"kty": "RSA"}, created_at=now)
            )

    asyncio.run(main(sys.argv[1]))
    """
)

READER = textwrap.dedent(
    """
    import asyncio, json, sys
    from stores import open_stores

    async def main(url: str) -> None:
        async with await open_stores(url) as stores:
            user = await stores.users.get("u-1")
            consent = await stores.consents.find("u-1", "login")
            key = await stores.signing_keys.current()
            events = await stores.audit_events.query()
            print(json.dumps({
                "email": user.email,
                "consent_expires": consent.expires_at.isoformat() if consent else None,
                "kid": key.kid if key else None,
                "events": [e.id for e in events],
            }))

    asyncio.run(main(sys.argv[1]))
    """
)


def _run(script: str, url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_new_process_reads_what_another_wrote(sql_database_url: str) -> None:
    _run(WRITER, sql_database_url)

    read = json.loads(_run(READER, sql_database_url))

    assert read == {
        "email": "ada@example.test",
        "consent_expires": "2027-01-01T10:00:00+00:00",
        "kid": "kid-1",
        "events": ["evt-0", "evt-1", "evt-2"],
    }
