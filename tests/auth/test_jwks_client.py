"""A real client verifies the gateway's tokens: PyJWT's `PyJWKClient` fetching the JWKS
of a gateway served by uvicorn on a loopback port (not the project's own verifier)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import jwt
import pytest

from server.settings import Settings
from tests.auth.conftest import CLIENT_ID, ServedApp, build_app


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_pyjwkclient_verifies_access_and_id_tokens(
    make_settings: Callable[..., Settings], serve: Callable[..., ServedApp], alg: str
) -> None:
    served = serve(lambda url: build_app(make_settings(issuer=url, signing_alg=alg)))
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        session = client.post("/auth/authorize", json={"email": "ada@example.com", "client_id": CLIENT_ID}).json()
        tokens = client.post("/auth/token", json={"grant_type": "session", "session_id": session["session_id"]}).json()
        discovery = client.get("/.well-known/openid-configuration").json()

    jwks_client = jwt.PyJWKClient(discovery["jwks_uri"])
    access_key = jwks_client.get_signing_key_from_jwt(tokens["access_token"])
    claims = jwt.decode(
        tokens["access_token"], access_key.key, algorithms=[alg], issuer=served.base_url, audience=served.base_url,
        options={"require": ["exp", "iat", "jti", "sub"]},
    )
    assert claims["sub"] == session["user_id"]
    assert claims["client_id"] == CLIENT_ID

    id_key = jwks_client.get_signing_key_from_jwt(tokens["id_token"])
    id_claims = jwt.decode(tokens["id_token"], id_key.key, algorithms=[alg], issuer=served.base_url, audience=CLIENT_ID)
    assert id_claims["sub"] == session["user_id"]

    head, payload, signature = tokens["access_token"].split(".")
    tampered = f"{head}.{payload}.{signature[:-6]}{'A' * 6 if not signature.endswith('A' * 6) else 'B' * 6}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, access_key.key, algorithms=[alg], issuer=served.base_url, audience=served.base_url)
