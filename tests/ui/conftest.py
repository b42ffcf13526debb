"""Fixtures of the workbench tests: the server tests' app on a private copy of the
shipped policies (ASGI, no sockets), and for the browser tests real `idgw serve` and
`idgw policy studio` processes driven by Debian's Chromium (tests/ui/browser.py)."""

from __future__ import annotations

from tests.server.conftest import (  # noqa: F401  (fixtures)
    app,
    client,
    log_stream,
    make_settings,
    policy_dir,
    start_server,
)
from tests.ui.browser import browser, console, new_page, screenshot  # noqa: F401  (fixtures)
