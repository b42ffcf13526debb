"""Bad input to the token endpoints: a 400 in the API's error shape naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.auth.conftest import CLIENT_ID, Gateway


def assert_bad_field(response: Any, field: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["status_code"] == 400 and body["request_id"]
    assert body["error_description"].startswith(f"{field}:"), body
    description: str = body["error_description"]
    return description


@pytest.mark.parametrize("email", [
    "", "ada", "ada@", "@example.com", "ada@example", "ada@@example.com", "ada example@example.com",
    ".ada@example.com", "ada.@example.com", "a..da@example.com", "ada@-example.com", "ada@example.c",
    "a" * 65 + "@example.com", "ada@" + "a" * 250 + ".com", 42, None,
])
async def test_bad_emails(gateway: Gateway, email: Any) -> None:
    response = await gateway.client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID})
    assert_bad_field(response, "email")


@pytest.mark.parametrize("email", ["ada@example.com", "ada.lovelace+gw@mail.example.co.uk", "o'brien@example.ie"])
async def test_good_emails(gateway: Gateway, email: str) -> None:
    response = await gateway.client.post("/auth/authorize", json={"email": email, "client_id": CLIENT_ID})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("client_id", ["", " ", "demo client", "-demo", "x" * 129, "démo", 7])
async def test_bad_client_ids(gateway: Gateway, client_id: Any) -> None:
    response = await gateway.client.post("/auth/authorize", json={"email": "ada@example.com", "client_id": client_id})
    assert_bad_field(response, "client_id")


async def test_scopes(gateway: Gateway) -> None:
    bad = await gateway.client.post(
        "/auth/authorize", json={"email": "ada@example.com", "client_id": CLIENT_ID, "scope": "openid admin"}
    )
    assert "'admin'" in assert_bad_field(bad, "scope")
    empty = await gateway.client.post(
        "/auth/authorize", json={"email": "ada@example.com", "client_id": CLIENT_ID, "scope": "  "}
    )
    assert_bad_field(empty, "scope")
    tab = await gateway.client.post(
        "/auth/authorize", json={"email": "ada@example.com", "client_id": CLIENT_ID, "scope": "openid\tprofile"}
    )
    assert "spaces" in assert_bad_field(tab, "scope")  # RFC 6749 section 3.3, as the document's pattern says
    tokens = await gateway.login(scope="profile  openid profile")
    assert tokens["scope"] == "profile openid"


async def test_unknown_fields_are_refused(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/auth/authorize", json={"email": "ada@example.com", "client_id": CLIENT_ID, "password": "x"}
    )
    assert "unknown field" in assert_bad_field(response, "password")


async def test_token_requests(gateway: Gateway) -> None:
    post = gateway.client.post
    unsupported = await post("/auth/token", json={"grant_type": "password"})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    assert unsupported.json()["error_description"].startswith("grant_type: ")
    assert_bad_field(await post("/auth/token", json={"grant_type": "session"}), "session_id")
    assert_bad_field(await post("/auth/token", json={"grant_type": "refresh_token"}), "refresh_token")
    assert_bad_field(await post("/auth/token", json={"grant_type": "session", "session_id": ""}), "session_id")
    assert_bad_field(await post("/auth/refresh", json={}), "refresh_token")
    assert_bad_field(await post("/auth/refresh", json={"refresh_token": "x" * 513}), "refresh_token")


async def test_bodies_must_be_json(gateway: Gateway) -> None:
    # a form only where RFC 6749 clients send one (test_oauth_clients.py)
    response = await gateway.client.post("/auth/authorize", content=b"email=ada%40example.com",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    broken = await gateway.client.post("/auth/authorize", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "invalid_json"
