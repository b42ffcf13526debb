"""How long each credential of the token subsystem lives, in one place (docs/tokens.md)."""

from __future__ import annotations

from datetime import timedelta

ACCESS_TOKEN_TTL = timedelta(hours=1)
ID_TOKEN_TTL = timedelta(minutes=5)
#: A login (session) and its refresh tokens: refreshing does not extend it.
REFRESH_TOKEN_TTL = timedelta(days=30)
#: From `/auth/authorize` to the `session` grant at `/auth/token`.
AUTHORIZATION_TTL = timedelta(minutes=10)
#: Clock skew tolerated on `exp`, `nbf` and `iat`.
LEEWAY = timedelta(seconds=30)

__all__ = ["ACCESS_TOKEN_TTL", "AUTHORIZATION_TTL", "ID_TOKEN_TTL", "LEEWAY", "REFRESH_TOKEN_TTL"]
