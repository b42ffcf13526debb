"""Fixtures of the fleet tests: the shared services of this machine, each checked once;
a missing one skips the tests, or fails them under `IDGW_TEST_REQUIRE_SERVICES=1` (CI)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.audit.conftest import nats_url, reachable  # noqa: F401  (nats_url: a fixture)
from tests.server.conftest import policy_dir  # noqa: F401  (fixture)
from tests.stores.conftest import postgres_server_url, postgres_url  # noqa: F401  (fixtures)

REDIS_URL_VARIABLE = "IDGW_TEST_REDIS_URL"
#: Database 9: the fleet's registry cache keeps out of the way of anything else on 0.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture(scope="session")
def redis_url() -> str:
    return reachable(os.environ.get(REDIS_URL_VARIABLE, DEFAULT_REDIS_URL), 6379, "Redis")


@pytest.fixture
def nats_stream(nats_url: str) -> Iterator[str]:  # noqa: F811  (the fixture)
    stream = f"IDGW_FLEET_{uuid.uuid4().hex[:12]}"
    yield stream

    async def delete() -> None:
        import nats

        connection = await nats.connect(nats_url, connect_timeout=5)
        try:
            await connection.jetstream().delete_stream(stream)
        except Exception:  # never made, or already gone
            pass
        finally:
            await connection.close()

    asyncio.run(delete())
