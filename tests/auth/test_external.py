"""External OIDC mode: a consumer gateway accepts the tokens of a provider, here a second
gateway served on a loopback port, by the provider's JWKS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from server.auth.admin import rotate_signing_key
from server.auth.external import RemoteKeySet, local_user_id
from server.settings import Settings
from stores import open_stores
from tests.auth.conftest import (
    CLIENT_ID,
    FakeClock,
    Gateway,
    ServedApp,
    assert_invalid_token,
    bearer,
    build_app,
    claims_of,
    free_port,
    started,
)


@dataclass
class Provider:
    served: ServedApp
    database_url: str

    @property
    def issuer(self) -> str:
        return self.served.base_url

    async def login(self, email: str = "grace@example.com") -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.issuer, timeout=10) as client:
            session = (await client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID})).json()
            response = await client.post("/auth/token", json={"grant_type": "session", "session_id": session["session_id"]})
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def sign(self, claims: dict[str, Any]) -> str:
        """A token signed with the provider's current key (read from its database)."""
        async with await open_stores(self.database_url) as stores:
            key = await stores.signing_keys.current()
        assert key is not None
        return jwt.encode(claims, key.private_key_pem, algorithm=key.alg, headers={"kid": key.kid})


@pytest.fixture
def provider(make_settings: Callable[..., Settings], serve: Callable[..., ServedApp], tmp_path: Path) -> Provider:
    url = f"sqlite:///{tmp_path / 'provider.db'}"
    served = serve(lambda issuer: build_app(make_settings(issuer=issuer, database_url=url)))
    served.app.state.auth.keys.refresh_seconds = 0  # sees `idgw keys rotate` at once
    return Provider(served, url)


def consumer_settings(make_settings: Callable[..., Settings], provider_url: str, **extra: Any) -> Settings:
    return make_settings(
        auth_mode="external_oidc", oidc_issuer=provider_url,
        oidc_jwks_url=f"{provider_url}/.well-known/jwks.json", oidc_audience=provider_url, **extra,
    )


@pytest.fixture
async def consumer(
    make_settings: Callable[..., Settings], provider: Provider, clock: FakeClock
) -> AsyncIterator[Gateway]:
    app = build_app(consumer_settings(make_settings, provider.issuer), clock)
    async with started(app, clock) as gateway:
        yield gateway


async def test_provider_tokens_open_the_consumer_as_a_local_user(consumer: Gateway, provider: Provider) -> None:
    tokens = await provider.login()
    provider_sub = claims_of(tokens["access_token"])["sub"]

    info = await consumer.userinfo(tokens["access_token"])
    assert info.status_code == 200, info.text
    local_id = local_user_id(provider.issuer, provider_sub)
    assert info.json() == {"sub": local_id, "email": "grace@example.com", "email_verified": False}
    assert [(e.action, e.subject, e.reason) for e in consumer.events] == [("user_created", local_id, "external_oidc")]

    decided = await consumer.client.post(
        "/v1/data/adult_check", json={"input": {"is_over_18": False}}, headers=bearer(tokens["access_token"])
    )
    assert decided.status_code == 200, decided.text
    assert consumer.events[-1].subject == local_id

    again = await provider.login()  # a second login: same user, not created twice
    assert (await consumer.userinfo(again["access_token"])).json()["sub"] == local_id
    assert [e.action for e in consumer.events].count("user_created") == 1


async def test_local_login_is_disabled(consumer: Gateway) -> None:
    for path, body in (
        ("/auth/authorize", {"email": "ada@example.com", "client_id": CLIENT_ID}),
        ("/auth/token", {"grant_type": "session", "session_id": "ses_x"}),
        ("/auth/refresh", {"refresh_token": "whatever"}),
    ):
        response = await consumer.client.post(path, json=body)
        assert response.status_code == 403, path
        assert response.json()["error"] == "local_auth_disabled"
        assert "IDGW_AUTH_MODE=external_oidc" in response.json()["error_description"]
    discovery = (await consumer.client.get("/.well-known/openid-configuration")).json()
    assert "token_endpoint" not in discovery and "authorization_endpoint" not in discovery


async def test_a_provider_key_rotation_is_followed(consumer: Gateway, provider: Provider) -> None:
    before = await provider.login()
    assert (await consumer.userinfo(before["access_token"])).status_code == 200
    new_key, _ = await rotate_signing_key(provider.database_url, "RS256")
    after = await provider.login()
    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_key.kid
    assert (await consumer.userinfo(after["access_token"])).status_code == 200  # unknown kid: re-fetched
    assert (await consumer.userinfo(before["access_token"])).status_code == 200  # old key still published


async def test_tokens_the_provider_did_not_mean_for_us_are_refused(consumer: Gateway, provider: Provider) -> None:
    genuine = claims_of((await provider.login())["access_token"])
    wrong_issuer = await provider.sign({**genuine, "iss": "https://elsewhere.example"})
    assert_invalid_token(await consumer.userinfo(wrong_issuer), "not issued by")
    wrong_audience = await provider.sign({**genuine, "aud": "another-api"})
    assert_invalid_token(await consumer.userinfo(wrong_audience), "audience")
    now = int(consumer.clock().timestamp())
    expired = await provider.sign({**genuine, "iat": now - 7200, "exp": now - 3600})
    assert_invalid_token(await consumer.userinfo(expired), "expired")

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode(genuine, stranger, algorithm="RS256", headers={"kid": "made-up"})
    assert_invalid_token(await consumer.userinfo(unknown), "unknown key")
    hmac = jwt.encode(genuine, "s" * 32, algorithm="HS256", headers={"kid": "made-up"})
    assert_invalid_token(await consumer.userinfo(hmac), "'HS256' is not accepted")


async def test_revoke_all_applies_to_external_users(consumer: Gateway, provider: Provider) -> None:
    tokens = await provider.login()
    consumer.clock.now = datetime.now(UTC)  # the provider's clock is the real one
    auth = bearer(tokens["access_token"])
    response = await consumer.client.post("/auth/revoke", json={"all": True}, headers=auth)
    assert response.status_code == 200, response.text
    assert_invalid_token(await consumer.userinfo(tokens["access_token"]), "revoked")


async def test_an_unreachable_provider_is_a_503(
    make_settings: Callable[..., Settings], provider: Provider, clock: FakeClock
) -> None:
    tokens = await provider.login()
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        auth_mode="external_oidc", oidc_issuer=provider.issuer,
        oidc_jwks_url=f"{nowhere}/.well-known/jwks.json", oidc_audience=provider.issuer,
    )
    async with started(build_app(settings, clock), clock) as gateway:
        response = await gateway.userinfo(tokens["access_token"])
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "unavailable"
        assert response.json()["error_description"] == "the identity provider's keys cannot be fetched; retry later"


# -- the JWKS cache and its refresh bound, against a counting JWKS document --------------


class JwksServer:
    """A JWKS document served through httpx's mock transport, counting fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.failing = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.failing:
            return httpx.Response(502)
        return httpx.Response(200, json={"keys": self.keys})


def rsa_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Ticks:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


async def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    document = JwksServer([rsa_jwk("k1")])
    ticks = Ticks()
    async with httpx.AsyncClient(transport=httpx.MockTransport(document.handle)) as http:
        keys = RemoteKeySet("https://idp.test/jwks", http, min_refresh_interval=10, max_age=600, monotonic=ticks)
        assert (await keys.find("k1")) is not None
        assert document.fetches == 1
        assert (await keys.find("k1")) is not None
        assert document.fetches == 1  # cached

        for kid in ("bogus-1", "bogus-2", "bogus-3"):
            assert await keys.find(kid) is None
        assert document.fetches == 2  # one re-fetch for all the unknown ids

        document.keys.append(rsa_jwk("k2"))
        ticks.value += 5
        assert await keys.find("k2") is None  # within the interval: not fetched yet
        ticks.value += 5
        assert await keys.find("k2") is not None
        assert document.fetches == 3

        document.failing = True
        ticks.value += 600  # stale: the periodic fetch fails, the cached keys stay
        assert await keys.find("k1") is not None
        assert document.fetches == 4
        assert await keys.find("k1") is not None
        assert document.fetches == 4  # a failed fetch is not retried at once


def test_jwks_documents_keep_only_signature_keys() -> None:
    from server.auth.external import parse_jwks

    signing, encryption = rsa_jwk("sig-key"), {**rsa_jwk("enc-key"), "use": "enc"}
    secret = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-key"}
    nameless = {k: v for k, v in rsa_jwk("x").items() if k != "kid"}
    assert set(parse_jwks({"keys": [signing, encryption, secret, nameless]})) == {"sig-key"}
    with pytest.raises(ValueError):
        parse_jwks({"nokeys": []})
