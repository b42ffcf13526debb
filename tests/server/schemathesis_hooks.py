"""Schemathesis hooks for `tests/server/test_openapi_conformance.py`: the bearer token.

Loaded by `st run` through `SCHEMATHESIS_HOOKS`; the server's base URL comes in
`IDGW_SCHEMATHESIS_BASE_URL`. A token is a real login (authorize, token) whose user
holds every consent, so consent-gated operations reach their logic. Each operation has
a login of its own, cached, and fetched again after a 401: a generated `DELETE /me` or
`POST /auth/revoke` with `all: true` ends the login it was sent with, as it should, and
would otherwise end every other operation's too (which then answer 401 until Schemathesis
happens to log in again, starving the stateful phase).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import httpx
import schemathesis

CONSENTS = ["login", "registry_check", "vc_issuance", "decision_evaluation"]


def login(base_url: str) -> str:
    """A fresh user's access token, with every consent granted."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        email = f"st-{secrets.token_hex(6)}@example.com"
        session = client.post("/auth/authorize", json={"email": email, "client_id": "schemathesis"})
        session.raise_for_status()
        tokens = client.post("/auth/token", json={"grant_type": "session", "session_id": session.json()["session_id"]})
        tokens.raise_for_status()
        token: str = tokens.json()["access_token"]
        granted = client.post("/auth/consent", json={"purposes": CONSENTS},
                              headers={"Authorization": f"Bearer {token}"})
        granted.raise_for_status()
        return token


def operation_key(case: Any, context: Any) -> str:
    return str(case.operation.label)


@schemathesis.auth(cache_by_key=operation_key)
class GatewayLogin:
    def get(self, case: Any, context: Any) -> str:
        return login(os.environ["IDGW_SCHEMATHESIS_BASE_URL"])

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
