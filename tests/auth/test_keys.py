"""Signing keys: RFC 7638 key ids, key sizes, persistence across restarts, rotation with
the old key published until its tokens have expired, `idgw keys`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import jwt
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.auth.admin import rotate_signing_key
from server.auth.keys import RETIRED_KEY_GRACE, jwk_thumbprint, new_signing_key, public_jwk_members
from server.cli import main
from server.settings import Settings
from tests.auth.conftest import FakeClock, Gateway, assert_invalid_token, build_app, started

# RFC 7638 section 3.1: the example RSA key and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def kids(jwks: dict[str, list[dict[str, str]]]) -> list[str]:
    return [key["kid"] for key in jwks["keys"]]


async def jwks_of(gateway: Gateway) -> dict[str, list[dict[str, str]]]:
    response = await gateway.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    body: dict[str, list[dict[str, str]]] = response.json()
    return body


def test_kid_is_the_rfc7638_thumbprint() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    clock = FakeClock()
    for alg in ("RS256", "ES256"):
        key = new_signing_key(alg, clock())
        members = {k: v for k, v in key.public_jwk.items() if k not in ("kid", "use", "alg")}
        assert key.kid == jwk_thumbprint(members) == key.public_jwk["kid"]


def test_key_types_and_sizes() -> None:
    from cryptography.hazmat.primitives import serialization

    clock = FakeClock()
    rsa_key = serialization.load_pem_private_key(new_signing_key("RS256", clock()).private_key_pem.encode(), None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    ec_key = serialization.load_pem_private_key(new_signing_key("ES256", clock()).private_key_pem.encode(), None)
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and ec_key.curve.name == "secp256r1"
    assert set(public_jwk_members(rsa_key.public_key())) == {"kty", "n", "e"}


async def test_keys_and_tokens_survive_a_restart(
    make_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url=durable_database_url)
    async with started(build_app(settings, clock), clock) as first:
        tokens = await first.login()
        published = await jwks_of(first)
    async with started(build_app(settings, clock), clock) as second:
        assert await jwks_of(second) == published
        info = await second.userinfo(tokens["access_token"])
        assert info.status_code == 200, info.text
        fresh = await second.login()
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == kids(published)[0]


async def test_rotation_keeps_the_old_key_until_its_tokens_expire(gateway: Gateway) -> None:
    before = await gateway.login()
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]

    gateway.clock.advance(seconds=1)
    rotated = await gateway.auth.keys.rotate()
    assert rotated.kid != old_kid
    assert kids(await jwks_of(gateway)) == [rotated.kid, old_kid]
    after = await gateway.login()
    assert jwt.get_unverified_header(after["access_token"])["kid"] == rotated.kid
    assert jwt.get_unverified_header(after["id_token"])["kid"] == rotated.kid

    gateway.clock.advance(minutes=58)
    assert (await gateway.userinfo(before["access_token"])).status_code == 200
    assert old_kid in kids(await jwks_of(gateway))

    gateway.clock.advance(seconds=RETIRED_KEY_GRACE.total_seconds() - 58 * 60)
    assert kids(await jwks_of(gateway)) == [rotated.kid]
    assert_invalid_token(await gateway.userinfo(before["access_token"]))
    latest = await gateway.login()
    assert (await gateway.userinfo(latest["access_token"])).status_code == 200


async def test_retired_keys_are_purged_at_the_next_start(
    make_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url=durable_database_url)
    async with started(build_app(settings, clock), clock) as gateway:
        await gateway.auth.keys.rotate()
        assert len(await gateway.app.state.stores.signing_keys.list_keys()) == 2
    clock.advance(seconds=RETIRED_KEY_GRACE.total_seconds() + 1)
    async with started(build_app(settings, clock), clock) as gateway:
        assert len(await gateway.app.state.stores.signing_keys.list_keys()) == 1


async def test_changing_the_algorithm_rotates_at_start(
    make_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    async with started(build_app(make_settings(database_url=durable_database_url), clock), clock) as rs:
        old = await rs.login()
    clock.advance(seconds=1)
    es_settings = make_settings(database_url=durable_database_url, signing_alg="ES256")
    async with started(build_app(es_settings, clock), clock) as es:
        algs = [key["alg"] for key in (await jwks_of(es))["keys"]]
        assert algs == ["ES256", "RS256"]
        assert (await es.userinfo(old["access_token"])).status_code == 200
        new = await es.login()
        assert jwt.get_unverified_header(new["access_token"])["alg"] == "ES256"


async def test_a_rotation_by_another_process_is_picked_up(
    make_settings: Callable[..., Settings], durable_database_url: str, clock: FakeClock
) -> None:
    async with started(build_app(make_settings(database_url=durable_database_url), clock), clock) as gateway:
        first = await gateway.login()
        new_key, _ = await rotate_signing_key(durable_database_url, "RS256")  # like `idgw keys rotate`

        # Until its copy is stale the gateway signs with the old, still published key...
        still = await gateway.login()
        assert jwt.get_unverified_header(still["access_token"])["kid"] == jwt.get_unverified_header(
            first["access_token"])["kid"]
        # ...but a token signed with the new key is accepted at once (unknown kid: re-read).
        stolen_claims = jwt.decode(still["access_token"], options={"verify_signature": False})
        token = jwt.encode(stolen_claims, new_key.private_key_pem, algorithm="RS256",
                           headers={"kid": new_key.kid, "typ": "at+jwt"})
        assert (await gateway.userinfo(token)).status_code == 200

        gateway.auth.keys.refresh_seconds = 0  # stands for the 30 s passing
        later = await gateway.login()
        assert jwt.get_unverified_header(later["access_token"])["kid"] == new_key.kid
        assert (await gateway.userinfo(first["access_token"])).status_code == 200


def test_idgw_keys_list_and_rotate(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/keys.db"
    runner = CliRunner()
    listed = runner.invoke(main, ["keys", "list", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    assert "no signing key yet" in listed.output

    first = runner.invoke(main, ["keys", "rotate", "--database-url", url])
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, ["keys", "rotate", "--alg", "ES256", "--database-url", url])
    assert second.exit_code == 0, second.output
    lines = runner.invoke(main, ["keys", "list", "--database-url", url]).output.splitlines()
    assert len(lines) == 2
    assert " ES256 " in lines[0] and lines[0].endswith("signing")
    assert " RS256 " in lines[1] and "retired, published until" in lines[1]

    memory = runner.invoke(main, ["keys", "rotate", "--database-url", "memory://"])
    assert memory.exit_code != 0 and "memory://" in memory.output


def test_grace_covers_the_longest_token_and_the_refresh_delay() -> None:
    assert timedelta(hours=1, seconds=30) < RETIRED_KEY_GRACE
