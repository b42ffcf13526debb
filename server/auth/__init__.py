"""Tokens and authentication: signed JWTs, JWKS, key rotation, refresh, revocation,
external OIDC (described in docs/tokens.md and docs/external-oidc.md).

What the rest of the server uses:

    routes                      the /auth/* and /.well-known/* endpoints
    AuthService(settings)       made by create_app as `app.state.auth`, started in the
                                lifespan with the stores
    require_principal(request)  the authentication step of every protected route: the
                                caller as a `Principal` (`sub` = local user id) or a 401

Modules, in the order a token lives: `keys` (signing keys, JWKS, rotation), `tokens`
(minting and verifying JWTs), `revocation` (the in-process revocation list),
`external` (a provider's JWKS, its users), `service` (logins, grants, refresh,
revocation), `guard` and `routes` (HTTP), `events` (audit events), `models` (bodies).
"""

from __future__ import annotations

from server.auth.guard import require_principal
from server.auth.routes import routes
from server.auth.service import AuthService

__all__ = ["AuthService", "require_principal", "routes"]
