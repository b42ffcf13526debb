"""The policy workbench: web pages where a risk analyst reads, tries and checks the
policies (docs/workbench.md).

    workbench.py   what each page shows, from the live set and its test report
    tryout.py      the Try page's form, read back into facts; curl and test case
    routes.py      the pages (Jinja2 templates), the poll endpoint, the static files
    studio.py      `idgw policy studio DIR`: the same pages on a local directory

`idgw serve` mounts `routes` with IDGW_UI=on and keeps a `Workbench` on
`app.state.workbench`. The templates, the script and the stylesheet are package data.
"""

from __future__ import annotations

from server.ui.routes import CONTENT_SECURITY_POLICY, routes
from server.ui.workbench import Workbench

__all__ = ["CONTENT_SECURITY_POLICY", "Workbench", "routes"]
