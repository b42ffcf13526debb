"""Schemathesis against a real `idgw serve`: the OpenAPI document is as strict as the server.

`st run` reads the served `/openapi.json` and sends what it generates from it, in
positive mode (requests the document allows: the server must accept them) and negative
mode (requests it forbids: the server must refuse them), through the examples, coverage,
fuzzing and stateful phases, with a fixed seed and a bounded number of examples per
operation (20; 150 scenarios' worth for the stateful phase, which chains calls along the
document's links: a login's session into `/auth/token`, its refresh token into
`/auth/refresh` and `/auth/revoke`, a granted purpose into `/auth/consent/revoke`, an
issued credential's id and JWT into `/vc/verify` and `/vc/revoke`).
Every check is on (`--checks all`): no 5xx, status codes, content types, headers and
bodies as documented, positive data accepted, negative data refused, the `Allow` of a
405, missing required headers, ignored authentication, use after free, resource
availability. The bearer token is a real login with every consent, made by the hook
(`tests/server/schemathesis_hooks.py`) and made again after a 401 (a generated
`DELETE /me` or revoke-all ends the login it was sent with).

Nothing is excluded. Four operations accept one more status, 400, under "positive data
acceptance" (tests/server/schemathesis.toml), because whether a well-formed request
succeeds there depends on what no schema can state: `/auth/token` and `/auth/refresh`
answer a schema-valid but unknown, used or expired grant with 400 `invalid_grant`
(RFC 6749 section 5.2 prescribes that status); `/vc/issue` answers a well-formed
national id whose citizen the registry does not know, or knows as a minor, with 400
`not_eligible`; `/me/data-export` answers a `from` not before its `to` with 400, a
relation between two query parameters that their separate schemas cannot express.
Every other check applies to them unchanged.

Form-encoded bodies (the OAuth endpoints) are checked like JSON ones: their schemas
(`...Form`) state that an empty parameter counts as absent, as the server reads it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.server.conftest import REPO, SHIPPED_POLICIES, ServerProcess

ST = Path(sys.executable).with_name("st")
#: Bounded for CI: about 50 s on two cores, the stateful phase included.
MAX_EXAMPLES = 20
SEED = 20260115


def test_schemathesis_finds_nothing(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = start_server(SHIPPED_POLICIES, IDGW_DATA_API_AUTH="bearer")  # the default, as documented
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.server.schemathesis_hooks",
        "IDGW_SCHEMATHESIS_BASE_URL": server.base_url,
        "PYTHONPATH": str(REPO),
    }
    run = subprocess.run(
        [str(ST), "--config-file", str(REPO / "tests/server/schemathesis.toml"), "run",
         f"{server.base_url}/openapi.json", "--checks", "all", "--mode", "all",
         "--phases", "examples,coverage,fuzzing,stateful", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
         "--generation-database", "none", "--no-color", "--report-dir", str(tmp_path / "report")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, output
    assert counts.group(1) == counts.group(2) and int(counts.group(1)) > 1000, output
    assert "failure" not in output.split("SUMMARY")[-1].lower(), output
    links = re.search(r"API Links:\s+(\d+) covered", output)
    assert links is not None and int(links.group(1)) >= 2, output  # the stateful phase chained calls
