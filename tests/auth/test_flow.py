"""The whole local flow through the app: authorize, token, userinfo, protected routes,
revocation of one token, of a login and of every session; discovery and JWKS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import jwt

from server.settings import Settings
from tests.auth.conftest import (
    CLIENT_ID,
    ISSUER,
    FakeClock,
    Gateway,
    assert_invalid_token,
    bearer,
    build_app,
    claims_of,
    started,
)

ACCESS_CLAIMS = {"iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "sid", "email"}


async def test_login_yields_signed_tokens_that_open_protected_routes(gateway: Gateway) -> None:
    session = await gateway.authorize("Ada@Example.com", scope="openid profile")
    assert session["status"] == "pending_consent"
    assert session["session_id"].startswith("ses_") and session["user_id"].startswith("usr_")

    response = await gateway.client.post(
        "/auth/token", json={"grant_type": "session", "session_id": session["session_id"]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid profile"

    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    jwks = (await gateway.client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]

    access = claims_of(tokens["access_token"])
    assert set(access) == ACCESS_CLAIMS
    assert access["iss"] == ISSUER and access["aud"] == ISSUER
    assert access["sub"] == session["user_id"]
    assert access["sid"] == session["session_id"]
    assert access["client_id"] == CLIENT_ID
    assert access["email"] == "ada@example.com"
    assert access["exp"] - access["iat"] == 3600
    assert access["iat"] == int(gateway.clock().timestamp())

    id_token = claims_of(tokens["id_token"])
    assert jwt.get_unverified_header(tokens["id_token"])["typ"] == "JWT"
    assert id_token["aud"] == CLIENT_ID and id_token["sub"] == session["user_id"]
    assert id_token["exp"] - id_token["iat"] == 300
    assert id_token["email"] == "ada@example.com" and id_token["email_verified"] is False

    info = await gateway.userinfo(tokens["access_token"])
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": session["user_id"], "email": "ada@example.com", "email_verified": False}

    auth = bearer(tokens["access_token"])
    decided = await gateway.client.post("/v1/data/adult_check", json={"input": {"is_over_18": True}}, headers=auth)
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["status"] == "pass"
    assert gateway.events[-1].subject == session["user_id"]
    assert (await gateway.client.get("/v1/policies", headers=auth)).status_code == 200

    actions = [e.action for e in gateway.events]
    assert actions[:2] == ["user_created", "tokens_issued"]


async def test_the_same_email_is_the_same_user(gateway: Gateway) -> None:
    first = await gateway.authorize("ada@example.com")
    second = await gateway.authorize("  ADA@example.COM ")
    assert first["user_id"] == second["user_id"]
    assert first["session_id"] != second["session_id"]
    assert [e.action for e in gateway.events].count("user_created") == 1


async def test_protected_routes_demand_a_bearer_token(gateway: Gateway) -> None:
    for response in (
        await gateway.client.get("/auth/userinfo"),
        await gateway.client.get("/v1/policies"),
        await gateway.client.post("/v1/data/adult_check", json={"input": {"is_over_18": True}}),
        await gateway.client.post("/auth/revoke", json={"all": True}),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == 'Bearer realm="idgw"'
    assert_invalid_token(await gateway.userinfo("not-a-jwt"), "well-formed")


async def test_a_session_is_exchanged_once_and_only_while_fresh(gateway: Gateway) -> None:
    session = await gateway.authorize()
    grant = {"grant_type": "session", "session_id": session["session_id"]}
    assert (await gateway.client.post("/auth/token", json=grant)).status_code == 200
    again = await gateway.client.post("/auth/token", json=grant)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "already exchanged" in again.json()["error_description"]

    unknown = await gateway.client.post("/auth/token", json={"grant_type": "session", "session_id": "ses_nope"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"

    stale = await gateway.authorize()
    gateway.clock.advance(minutes=10)
    late = await gateway.client.post("/auth/token", json={"grant_type": "session", "session_id": stale["session_id"]})
    assert late.status_code == 400 and "10 minutes" in late.json()["error_description"]


async def test_concurrent_exchanges_of_one_session_yield_one_set_of_tokens(gateway: Gateway) -> None:
    session = await gateway.authorize()
    grant = {"grant_type": "session", "session_id": session["session_id"]}
    responses = await asyncio.gather(*(gateway.client.post("/auth/token", json=grant) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400, 400]


async def test_revoking_one_access_token_leaves_the_others(gateway: Gateway) -> None:
    first = await gateway.login()
    second = await gateway.login()
    response = await gateway.client.post("/auth/revoke", json={"token": first["access_token"]})
    assert response.status_code == 200 and response.json()["revoked"] is True
    assert_invalid_token(await gateway.userinfo(first["access_token"]), "revoked")
    assert (await gateway.userinfo(second["access_token"])).status_code == 200
    # The login itself goes on: its refresh token still works.
    refreshed = await gateway.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200
    assert (await gateway.userinfo(refreshed.json()["access_token"])).status_code == 200
    assert gateway.events[-2].action == "token_revoked" and gateway.events[-2].reason == "access_token"


async def test_revoking_a_refresh_token_ends_its_login(gateway: Gateway) -> None:
    tokens = await gateway.login()
    other = await gateway.login()
    assert (await gateway.client.post("/auth/revoke", json={"token": tokens["refresh_token"]})).status_code == 200
    refused = await gateway.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refused.status_code == 400 and "revoked" in refused.json()["error_description"]
    assert_invalid_token(await gateway.userinfo(tokens["access_token"]), "revoked")
    assert (await gateway.userinfo(other["access_token"])).status_code == 200


async def test_unknown_or_invalid_tokens_are_not_an_error_to_revoke(gateway: Gateway) -> None:
    for token in ("opaque-but-unknown", "a.b.c"):
        response = await gateway.client.post("/auth/revoke", json={"token": token})
        assert response.status_code == 200, response.text


async def test_revoke_all_ends_every_session_of_the_caller_only(gateway: Gateway) -> None:
    phone = await gateway.login()
    laptop = await gateway.login()
    pending = await gateway.authorize()
    bob = await gateway.login("bob@example.com")

    response = await gateway.client.post("/auth/revoke", json={"all": True}, headers=bearer(phone["access_token"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": True, "sessions": 3}
    assert gateway.events[-1].action == "sessions_revoked"

    for tokens in (phone, laptop):
        assert_invalid_token(await gateway.userinfo(tokens["access_token"]), "revoked")
        refused = await gateway.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refused.status_code == 400
    late = await gateway.client.post("/auth/token", json={"grant_type": "session", "session_id": pending["session_id"]})
    assert late.status_code == 400
    assert (await gateway.userinfo(bob["access_token"])).status_code == 200

    # A new login right away works: revocation is about what was issued before it.
    fresh = await gateway.login()
    assert (await gateway.userinfo(fresh["access_token"])).status_code == 200


async def test_revoke_needs_exactly_one_of_token_and_all(gateway: Gateway) -> None:
    tokens = await gateway.login()
    for body in ({}, {"token": tokens["refresh_token"], "all": True}, {"all": False}):
        response = await gateway.client.post("/auth/revoke", json=body, headers=bearer(tokens["access_token"]))
        assert response.status_code == 400, body
        assert response.json()["error_description"].startswith("token:")


async def test_regulated_mode_keeps_names_and_email_out_of_tokens(
    make_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    app = build_app(make_settings(regulated_mode=True), clock)
    async with started(app, clock) as gateway:
        tokens = await gateway.login()
        assert "email" not in claims_of(tokens["access_token"])
        assert "email" not in claims_of(tokens["id_token"])
        info = await gateway.userinfo(tokens["access_token"])
        assert info.status_code == 200
        assert set(info.json()) <= {"sub", "email", "email_verified"}


async def test_es256_signs_with_a_p256_key(make_settings: Callable[..., Settings], clock: FakeClock) -> None:
    app = build_app(make_settings(signing_alg="ES256"), clock)
    async with started(app, clock) as gateway:
        tokens = await gateway.login()
        assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"
        (key,) = (await gateway.client.get("/.well-known/jwks.json")).json()["keys"]
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
        assert (await gateway.userinfo(tokens["access_token"])).status_code == 200


async def test_discovery_document(gateway: Gateway) -> None:
    response = await gateway.client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == ISSUER
    assert document["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert document["token_endpoint"] == f"{ISSUER}/auth/token"
    assert document["userinfo_endpoint"] == f"{ISSUER}/auth/userinfo"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["grant_types_supported"] == ["urn:idgw:params:oauth:grant-type:session", "session", "refresh_token"]


async def test_openapi_describes_the_token_endpoints(gateway: Gateway) -> None:
    paths = (await gateway.client.get("/openapi.json")).json()["paths"]
    for path in ("/auth/authorize", "/auth/token", "/auth/refresh", "/auth/revoke", "/auth/userinfo",
                 "/.well-known/jwks.json", "/.well-known/openid-configuration"):
        assert path in paths
    assert paths["/auth/userinfo"]["get"]["security"] == [{"bearer": []}]


async def test_readiness_checks_the_database(gateway: Gateway) -> None:
    body = (await gateway.client.get("/health/ready")).json()
    assert body["checks"]["database"]["ok"] is True
