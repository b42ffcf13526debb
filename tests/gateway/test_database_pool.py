"""`IDGW_DATABASE_POOL_MIN` and `_MAX` reach the gateway's PostgreSQL pool."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from server.settings import Settings
from tests.gateway.conftest import start_gateway
from tests.stores.conftest import (  # noqa: F401  (fixtures)
    connections_named,
    connections_named_after_close,
    postgres_server_url,
    postgres_url,
    with_application_name,
)


async def test_the_gateway_opens_the_fixed_pool_its_settings_name(
    gateway_settings: Callable[..., Settings],
    postgres_server_url: str,  # noqa: F811
    postgres_url: str,  # noqa: F811
) -> None:
    name = f"idgw_gateway_{uuid.uuid4().hex[:12]}"
    settings = gateway_settings(
        database_url=with_application_name(postgres_url, name), database_pool_min=3, database_pool_max=3
    )
    async with start_gateway(settings) as gw:
        assert connections_named(postgres_server_url, name) == 3
        caller = await gw.caller()
        answers: list[Any] = [await gw.grant(caller, "registry_check") for _ in range(5)]
        assert {answer.status_code for answer in answers} == {200}
        assert connections_named(postgres_server_url, name) == 3
    assert connections_named_after_close(postgres_server_url, name) == 0
