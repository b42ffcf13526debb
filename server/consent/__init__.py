"""Consent: grant, renew, revoke and list what a user allows their data to be processed
for, and the `require(user, purpose)` check every personal-data flow makes first.

    routes                     POST /auth/consent, POST /auth/consent/revoke, GET /auth/consent
    ConsentService(stores, events, clock)
                               made by create_app as `app.state.consent`
"""

from __future__ import annotations

from server.consent.routes import routes
from server.consent.service import PURPOSES, ConsentService, ConsentView

__all__ = ["PURPOSES", "ConsentService", "ConsentView", "routes"]
