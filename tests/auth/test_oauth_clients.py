"""What RFC 6749 / RFC 7009 clients send works: the OAuth endpoints read forms as well
as JSON, take `client_id`, `scope` and `token_type_hint`, name the session grant by its
URI, and answer RFC 6749's error codes. The last test is a stock client: authlib
refreshes and revokes through a served gateway and validates its id token against the
served JWKS."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

with warnings.catch_warnings():  # authlib.jose: "deprecated, use joserfc" (still authlib's OIDC validation)
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import IDToken

from server.auth.models import SESSION_GRANT
from server.settings import Settings
from tests.auth.conftest import CLIENT_ID, Gateway, ServedApp, bearer, build_app
from tests.server.conftest import assert_error_shape

FORM = {"content-type": "application/x-www-form-urlencoded"}


async def _form(gateway: Gateway, path: str, data: dict[str, str]) -> httpx.Response:
    if not data:  # httpx sends no Content-Type for an empty form
        return await gateway.client.post(path, content=b"", headers=FORM)
    return await gateway.client.post(path, data=data)


@pytest.mark.parametrize("grant", [SESSION_GRANT, "session"])
async def test_the_session_grant_by_its_uri_or_alias_as_a_form(gateway: Gateway, grant: str) -> None:
    session = await gateway.authorize()
    response = await _form(gateway, "/auth/token", {"grant_type": grant, "session_id": session["session_id"],
                                                    "client_id": CLIENT_ID})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("path", ["/auth/token", "/auth/refresh"])
async def test_refresh_as_a_form(gateway: Gateway, path: str) -> None:
    tokens = await gateway.login()
    response = await _form(gateway, path, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                           "scope": "openid", "client_id": CLIENT_ID})
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "openid"
    again = await _form(gateway, path, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert_error_shape(again, 400, "invalid_grant")


async def test_revoke_as_a_form(gateway: Gateway) -> None:
    tokens = await gateway.login()
    response = await _form(gateway, "/auth/revoke", {"token": tokens["access_token"],
                                                     "token_type_hint": "access_token", "client_id": CLIENT_ID})
    assert response.status_code == 200, response.text
    assert (await gateway.userinfo(tokens["access_token"])).status_code == 401
    other = await gateway.login("bob@example.com")
    response = await gateway.client.post("/auth/revoke", data={"all": "true"}, headers=bearer(other["access_token"]))
    assert response.json() == {"revoked": True, "sessions": 1}


@pytest.mark.parametrize(
    ("path", "data", "error", "words"),
    [
        ("/auth/token", {"grant_type": "password", "username": "x"}, "invalid_request", "username: unknown field"),
        ("/auth/token", {"grant_type": "password"}, "unsupported_grant_type", "'password' is not supported"),
        ("/auth/token", {"grant_type": "refresh_token"}, "invalid_request", "refresh_token: grant_type"),
        ("/auth/token", {"grant_type": "session", "session_id": "s", "refresh_token": "r"}, "invalid_request",
         "session_id: the session grant takes"),
        ("/auth/refresh", {}, "invalid_request", "refresh_token: Field required"),
        ("/auth/refresh", {"refresh_token": "a", "grant_type": "session"}, "invalid_request", "grant_type"),
        ("/auth/revoke", {"all": "yes"}, "invalid_request", "all: "),
        ("/auth/revoke", {"token": "a", "token_type_hint": "id_token"}, "invalid_request", "token_type_hint"),
    ],
)
async def test_form_errors_are_rfc6749s(
    gateway: Gateway, path: str, data: dict[str, str], error: str, words: str
) -> None:
    body = assert_error_shape(await _form(gateway, path, data), 400, error)
    assert words in body["error_description"]


async def test_a_parameter_given_twice_is_refused(gateway: Gateway) -> None:
    response = await gateway.client.post("/auth/revoke", content=b"token=a&token=b", headers=FORM)
    assert "token: given more than once" in assert_error_shape(response, 400, "invalid_request")["error_description"]
    response = await gateway.client.post("/auth/revoke", content=b"token=%FF", headers=FORM)
    assert_error_shape(response, 400, "invalid_request")


async def test_an_empty_parameter_counts_as_absent(gateway: Gateway) -> None:
    tokens = await gateway.login()
    response = await gateway.client.post("/auth/revoke", content=f"token={tokens['access_token']}&client_id=".encode(),
                                         headers=FORM)
    assert response.status_code == 200, response.text


async def test_the_grant_checks_the_client_and_the_scope(gateway: Gateway) -> None:
    tokens = await gateway.login()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert_error_shape(await _form(gateway, "/auth/token", {**refresh, "client_id": "another"}), 400, "invalid_grant")
    assert_error_shape(await _form(gateway, "/auth/token", {**refresh, "scope": "openid email"}), 400, "invalid_scope")
    # neither consumed the refresh token
    assert (await _form(gateway, "/auth/token", refresh)).status_code == 200


async def test_json_stays_accepted_and_null_is_refused(gateway: Gateway) -> None:
    tokens = await gateway.login()
    response = await gateway.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200, response.text
    response = await gateway.client.post("/auth/revoke", json={"token": None, "all": True})
    assert "token: leave the field out" in assert_error_shape(response, 400, "invalid_request")["error_description"]


async def test_other_endpoints_take_json_only(gateway: Gateway) -> None:
    response = await _form(gateway, "/auth/authorize", {"email": "ada@example.com", "client_id": CLIENT_ID})
    assert_error_shape(response, 415, "unsupported_media_type")


def test_authlib_refreshes_revokes_and_validates_the_id_token(
    make_settings: Callable[..., Settings], serve: Callable[..., ServedApp]
) -> None:
    served = serve(lambda url: build_app(make_settings(issuer=url)))
    discovery: dict[str, Any] = httpx.get(f"{served.base_url}/.well-known/openid-configuration", timeout=10).json()
    grant = discovery["grant_types_supported"][0]
    assert grant == SESSION_GRANT
    session = httpx.post(discovery["authorization_endpoint"], timeout=10,
                         json={"email": "ada@example.com", "client_id": CLIENT_ID}).json()

    client = OAuth2Client(client_id=CLIENT_ID, token_endpoint_auth_method="none",
                           revocation_endpoint_auth_method="none", scope="openid")
    first = client.fetch_token(discovery["token_endpoint"], grant_type=grant, session_id=session["session_id"])
    refreshed = client.refresh_token(discovery["token_endpoint"])
    assert refreshed["refresh_token"] != first["refresh_token"]
    assert client.get(discovery["userinfo_endpoint"], timeout=10).json()["sub"] == session["user_id"]
    refreshed = client.refresh_token(f"{served.base_url}/auth/refresh")

    keys = JsonWebKey.import_key_set(httpx.get(discovery["jwks_uri"], timeout=10).json())
    claims = jwt.decode(refreshed["id_token"], keys, claims_cls=IDToken, claims_options={
        "iss": {"essential": True, "value": discovery["issuer"]}, "aud": {"essential": True, "value": CLIENT_ID},
    })
    claims.validate()
    assert claims["sub"] == session["user_id"]

    revoked = client.revoke_token(discovery["revocation_endpoint"], token=refreshed["refresh_token"],
                                  token_type_hint="refresh_token")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    with pytest.raises(OAuthError) as refused:
        client.refresh_token(discovery["token_endpoint"], refresh_token=refreshed["refresh_token"])
    assert refused.value.error == "invalid_grant"
    assert client.get(discovery["userinfo_endpoint"], timeout=10).status_code == 401
