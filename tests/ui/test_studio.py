"""`idgw policy studio`'s app in-process: the policy parts only, a broken directory shown."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from server.ui.studio import create_studio_app
from tests.server.conftest import SHIPPED_POLICIES

Studio = Callable[[str, str, str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    """A client of the studio on a copy of the shipped policies, one file's text replaced."""

    @asynccontextmanager
    async def start(file: str, old: str, new: str) -> AsyncIterator[httpx.AsyncClient]:
        policy_dir = tmp_path / "policies"
        shutil.copytree(SHIPPED_POLICIES, policy_dir)
        path = policy_dir / file
        path.write_text(path.read_text().replace(old, new))
        app = create_studio_app(policy_dir)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://studio.test"
        ) as client:
            yield client

    return start


async def test_a_directory_that_never_loaded_shows_its_diagnostics(studio: Studio, tmp_path: Path) -> None:
    async with studio("sanctions_screening.yaml", "if: is_pep", "if: is_pep AND") as c:
        html = (await c.get("/ui/")).text
        assert "No policy set is loaded" in html
        assert f"{tmp_path / 'policies' / 'sanctions_screening.yaml'}:" in html and "E101" in html
        assert (await c.get("/ui/state")).json()["last_reload"] == "rejected"
        assert (await c.get("/ui/purposes/sanctions_screening")).status_code == 404
        assert 'data-poll="/ui/state"' in html


async def test_failing_tests_do_not_keep_a_set_out_of_the_studio(studio: Studio) -> None:
    async with studio("sanctions_screening_test.yaml", "reason: not_listed", "reason: cleared") as c:
        html = (await c.get("/ui/tests")).text
        assert "reason: expected cleared, got not_listed" in html
        tried = (await c.post("/ui/purposes/sanctions_screening/try", data={
            "sanctions_listed": "false", "is_pep": "false", "context.national_id": "AB123456"})).text
        assert "http://127.0.0.1:8080/v1/data/sanctions_screening" in tried  # the gateway's default address
