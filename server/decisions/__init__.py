"""The decision subsystem: the OPA-style data API, the policy listing, and
`POST /decision/evaluate`, which gathers the purpose's evidence itself (`evidence`: the
provider registry over the token, consent, registry and credential subsystems).
"""

from __future__ import annotations

from server.decisions import evaluate
from server.decisions.routes import data_api_route
from server.decisions.routes import routes as _data_routes
from server.decisions.service import decide, new_decision_id

routes = [*evaluate.routes, *_data_routes]

__all__ = ["data_api_route", "decide", "new_decision_id", "routes"]
