"""Forged and unacceptable tokens: each is a 401 `invalid_token` saying what is wrong.

Forgeries that need a valid signature are signed with the gateway's own key, so the
only thing wrong with them is the one claim or header the test changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth.conftest import Gateway, assert_invalid_token, bearer, claims_of


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
async def genuine(gateway: Gateway) -> dict[str, Any]:
    """A real login: its tokens and the claims of its access token."""
    tokens = await gateway.login()
    return {**tokens, "claims": claims_of(tokens["access_token"])}


async def test_the_genuine_token_is_accepted(gateway: Gateway, genuine: dict[str, Any]) -> None:
    assert (await gateway.userinfo(genuine["access_token"])).status_code == 200
    forged_but_faithful = await gateway.forge(genuine["claims"])  # same claims, same key
    assert (await gateway.userinfo(forged_but_faithful)).status_code == 200


async def test_alg_none(gateway: Gateway, genuine: dict[str, Any]) -> None:
    kid = jwt.get_unverified_header(genuine["access_token"])["kid"]
    token = jwt.encode(genuine["claims"], None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"})
    assert_invalid_token(await gateway.userinfo(token), "'none' is not accepted")


async def test_hs256_signed_with_the_public_key(gateway: Gateway, genuine: dict[str, Any]) -> None:
    key = await gateway.auth.keys.signing_key()
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    signing_input = ".".join(b64url(json.dumps(part).encode()) for part in (header, genuine["claims"]))
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    assert_invalid_token(await gateway.userinfo(token), "'HS256' is not accepted")


async def test_flipped_signature_byte(gateway: Gateway, genuine: dict[str, Any]) -> None:
    head, payload, signature = genuine["access_token"].split(".")
    raw = bytearray(unb64url(signature))
    raw[len(raw) // 2] ^= 0x01
    token = f"{head}.{payload}.{b64url(bytes(raw))}"
    assert_invalid_token(await gateway.userinfo(token), "signature")


async def test_payload_changed_after_signing(gateway: Gateway, genuine: dict[str, Any]) -> None:
    head, _, signature = genuine["access_token"].split(".")
    payload = b64url(json.dumps({**genuine["claims"], "sub": "usr_someone_else"}).encode())
    assert_invalid_token(await gateway.userinfo(f"{head}.{payload}.{signature}"), "signature")


async def test_unknown_kid(gateway: Gateway, genuine: dict[str, Any]) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(genuine["claims"], stranger, algorithm="RS256", headers={"kid": "not-ours", "typ": "at+jwt"})
    assert_invalid_token(await gateway.userinfo(token), "unknown key")


async def test_own_kid_but_another_key(gateway: Gateway, genuine: dict[str, Any]) -> None:
    kid = jwt.get_unverified_header(genuine["access_token"])["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(genuine["claims"], stranger, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
    assert_invalid_token(await gateway.userinfo(token), "signature")


async def test_no_kid(gateway: Gateway, genuine: dict[str, Any]) -> None:
    key = await gateway.auth.keys.signing_key()
    token = jwt.encode(genuine["claims"], key.private_key, algorithm="RS256", headers={"typ": "at+jwt"})
    assert_invalid_token(await gateway.userinfo(token), "key id")


async def test_expired(gateway: Gateway, genuine: dict[str, Any]) -> None:
    now = int(gateway.clock().timestamp())
    token = await gateway.forge({**genuine["claims"], "iat": now - 7200, "exp": now - 60})
    assert_invalid_token(await gateway.userinfo(token), "expired")
    # The genuine token too, once its hour (and the leeway) has passed.
    gateway.clock.advance(hours=1, seconds=31)
    assert_invalid_token(await gateway.userinfo(genuine["access_token"]), "expired")


async def test_expiry_leeway_is_small(gateway: Gateway, genuine: dict[str, Any]) -> None:
    gateway.clock.advance(hours=1, seconds=20)  # expired 20 s ago: within the 30 s leeway
    assert (await gateway.userinfo(genuine["access_token"])).status_code == 200


async def test_not_yet_valid(gateway: Gateway, genuine: dict[str, Any]) -> None:
    now = int(gateway.clock().timestamp())
    later = await gateway.forge({**genuine["claims"], "nbf": now + 300})
    assert_invalid_token(await gateway.userinfo(later), "not valid yet")
    future = await gateway.forge({**genuine["claims"], "iat": now + 300, "exp": now + 4000})
    assert_invalid_token(await gateway.userinfo(future), "not valid yet")


async def test_wrong_issuer(gateway: Gateway, genuine: dict[str, Any]) -> None:
    token = await gateway.forge({**genuine["claims"], "iss": "https://evil.example"})
    assert_invalid_token(await gateway.userinfo(token), "not issued by")


async def test_wrong_audience(gateway: Gateway, genuine: dict[str, Any]) -> None:
    token = await gateway.forge({**genuine["claims"], "aud": "another-service"})
    assert_invalid_token(await gateway.userinfo(token), "audience")


async def test_missing_claims(gateway: Gateway, genuine: dict[str, Any]) -> None:
    for claim in ("jti", "sid", "exp", "iss", "sub"):
        claims = {k: v for k, v in genuine["claims"].items() if k != claim}
        assert_invalid_token(await gateway.userinfo(await gateway.forge(claims)), repr(claim))


async def test_malformed_claims(gateway: Gateway, genuine: dict[str, Any]) -> None:
    for change in ({"exp": "tomorrow"}, {"exp": 10**20}, {"sid": 7}, {"iat": True}):
        token = await gateway.forge({**genuine["claims"], **change})
        assert_invalid_token(await gateway.userinfo(token))


async def test_an_id_token_is_not_an_access_token(gateway: Gateway, genuine: dict[str, Any]) -> None:
    assert_invalid_token(await gateway.userinfo(genuine["id_token"]), "not an access token")
    retyped = await gateway.forge(genuine["claims"], typ="JWT")
    assert_invalid_token(await gateway.userinfo(retyped), "not an access token")


async def test_garbage(gateway: Gateway) -> None:
    for token in ("x", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "e30.e30.e30", "...."):
        response = await gateway.client.get("/auth/userinfo", headers=bearer(token))
        assert response.status_code == 401, token


async def test_revoked_jti(gateway: Gateway, genuine: dict[str, Any]) -> None:
    await gateway.client.post("/auth/revoke", json={"token": genuine["access_token"]})
    assert_invalid_token(await gateway.userinfo(genuine["access_token"]), "revoked")


async def test_revoked_session(gateway: Gateway, genuine: dict[str, Any]) -> None:
    await gateway.client.post("/auth/revoke", json={"token": genuine["refresh_token"]})
    # Any token naming that session is refused, even one minted with a new jti.
    again = await gateway.forge({**genuine["claims"], "jti": "fresh-jti"})
    for token in (genuine["access_token"], again):
        assert_invalid_token(await gateway.userinfo(token), "revoked")


async def test_issued_before_revoke_all(gateway: Gateway, genuine: dict[str, Any]) -> None:
    now = int(gateway.clock().timestamp())
    # Another login of the same user, issued a minute ago; its session is not revoked by
    # name (a made-up sid), only the user's "not before" can refuse it.
    older = await gateway.forge({**genuine["claims"], "sid": "ses_elsewhere", "jti": "j-older", "iat": now - 60})
    assert (await gateway.userinfo(older)).status_code == 200

    response = await gateway.client.post("/auth/revoke", json={"all": True}, headers=bearer(genuine["access_token"]))
    assert response.status_code == 200
    assert_invalid_token(await gateway.userinfo(older), "revoked")
    assert_invalid_token(await gateway.userinfo(genuine["access_token"]), "revoked")

    gateway.clock.advance(seconds=5)
    newer = await gateway.forge({**genuine["claims"], "sid": "ses_elsewhere", "jti": "j-newer",
                                 "iat": int(gateway.clock().timestamp())})
    assert (await gateway.userinfo(newer)).status_code == 200
