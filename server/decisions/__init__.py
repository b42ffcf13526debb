"""The decision subsystem: the OPA-style data API and the policy listing.

`POST /decision/evaluate` (which gathers evidence itself) joins this package with the
token, consent and registry subsystems.
"""

from __future__ import annotations

from server.decisions.routes import routes
from server.decisions.service import decide, new_decision_id

__all__ = ["decide", "new_decision_id", "routes"]
