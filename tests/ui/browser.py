"""Headless Chromium for the workbench tests: Debian's /usr/bin/chromium driven by
Playwright for Python (never a browser downloaded by `playwright install`), real
`idgw serve` and `idgw policy studio` processes, and what each page said to the console.

Screenshots of the pages (`screenshot`) are written to docs/images with
`IDGW_TEST_SCREENSHOTS=1`, which is how docs/workbench.md's are made.

A missing Chromium skips the browser tests, unless `IDGW_TEST_REQUIRE_SERVICES=1` (CI,
whose `.ci/run` installs Debian's `chromium` and `chromium-driver` packages first).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import IDGW, REPO, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Where the screenshots of docs/workbench.md are written, with IDGW_TEST_SCREENSHOTS=1;
#: otherwise they go to a temporary directory, so a test run leaves the tree as it was.
SCREENSHOTS = REPO / "docs" / "images"
LAPTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (Debian packages chromium and chromium-driver)"
    if os.environ.get("IDGW_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and IDGW_TEST_REQUIRE_SERVICES=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per module: Playwright's sync API runs an event loop of its own while
    it is started, which the asyncio tests of other modules cannot share."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """The console messages and uncaught errors of the pages of one browser context."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on("console", lambda message: self.messages.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.messages.append(f"pageerror: {error}"))
        return page

    @property
    def errors(self) -> list[str]:
        return [m for m in self.messages if m.startswith(("error:", "pageerror:", "warning:"))]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def new_page(browser: Any, console: Console) -> Iterator[Any]:
    """Open pages in a fresh context (clipboard allowed); no console error by the end."""
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] = LAPTOP) -> Any:
        context = browser.new_context(viewport=viewport)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        contexts.append(context)
        return console.watch(context.new_page())

    yield open_page
    for context in contexts:
        context.close()
    assert console.errors == [], console.messages


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Any, str], Path]:
    """Take a page's full screenshot as `workbench-<name>.png`; the path written."""
    directory = SCREENSHOTS if os.environ.get("IDGW_TEST_SCREENSHOTS") == "1" else tmp_path

    def take(page: Any, name: str) -> Path:
        path = directory / f"workbench-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000  # a page, not a blank
        return path

    return take


class StudioProcess(ServerProcess):
    """`idgw policy studio DIR` on a free loopback port (no setting of the gateway applies)."""

    ready_path = "/ui/state"

    def command(self, policy_dir: Path, workers: int) -> list[str]:
        # relative to its working directory, as an author types it (and diagnostics show it)
        directory = os.path.relpath(policy_dir, self.workdir)
        return [str(IDGW), "policy", "studio", directory, "--port", str(self.port)]
