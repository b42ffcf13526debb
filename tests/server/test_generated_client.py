"""A client generated from the served `/openapi.json` works unchanged against `idgw serve`.

openapi-python-client (a `[dev]` dependency) generates a Python package from the
document a real server answers, offline, into the test's directory; the test imports it
and runs the main flow through it against that server: log in (session grant), grant and
list consents, a data API decision and an evaluation, a credential issued, verified,
revoked and verified again, the consent revoked, the refresh token exchanged as a form
(RFC 6749) and revoked, then every session of a second login. Each answer must parse as
the operation's success model, never fall through to the error model.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.server.conftest import SHIPPED_POLICIES, ServerProcess

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "idgw_generated_client"


@pytest.fixture
def generated(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[tuple[ServerProcess, Any]]:
    """The server, and an importer of the generated package's modules."""
    server = start_server(SHIPPED_POLICIES, IDGW_DATA_API_AUTH="bearer")
    document = tmp_path / "openapi.json"
    document.write_bytes(server.client.get("/openapi.json").content)
    config = tmp_path / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: nothing to fetch, and faster
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--output-path", str(tmp_path / PACKAGE),
         "--meta", "none", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0 and "Error" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(tmp_path))

    def module(name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    try:
        yield server, module
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_the_generated_client_runs_the_main_flow(generated: tuple[ServerProcess, Any]) -> None:
    server, module = generated
    client_module, models = module("client"), module("models")
    start_login, issue_tokens, revoke_token = (
        module(f"api.auth.{name}") for name in ("start_login", "issue_tokens", "revoke_token"))
    grant_consents, list_consents, revoke_consents = (
        module(f"api.consent.{name}") for name in ("grant_consents", "list_consents", "revoke_consents"))
    issue_credential, verify_credential, revoke_credential = (
        module(f"api.credentials.{name}") for name in ("issue_credential", "verify_credential", "revoke_credential"))
    data_api, evaluate = (module(f"api.decisions.{name}") for name in ("decide_data_age_verification", "evaluate"))

    def answered(call: Any, model: type, **kwargs: Any) -> Any:
        """`call.sync_detailed(**kwargs)` answered 200 with `model` parsed (not ErrorBody)."""
        response = call.sync_detailed(**kwargs)
        assert response.status_code == 200, response.content
        assert isinstance(response.parsed, model), (type(response.parsed), response.content)
        return response.parsed

    anonymous = client_module.Client(base_url=server.base_url, raise_on_unexpected_status=True)

    def log_in() -> Any:
        login = answered(start_login, models.AuthorizeResponse, client=anonymous,
                         body=models.AuthorizeRequest(email="generated@example.com", client_id="generated-client"))
        return answered(issue_tokens, models.TokenResponse, client=anonymous, body=models.TokenRequestType0(
            grant_type=models.TokenRequestType0GrantType.URNIDGWPARAMSOAUTHGRANT_TYPESESSION,
            session_id=login.session_id))

    tokens = log_in()
    assert tokens.token_type == "Bearer"
    user = client_module.AuthenticatedClient(base_url=server.base_url, token=tokens.access_token)

    purposes = models.PurposesRequestPurposesItem
    granted = answered(grant_consents, models.GrantResponse, client=user, body=models.PurposesRequest(
        purposes=[purposes.VC_ISSUANCE, purposes.REGISTRY_CHECK, purposes.DECISION_EVALUATION]))
    assert {c.purpose for c in granted.granted} == {"vc_issuance", "registry_check", "decision_evaluation"}
    listed = answered(list_consents, models.ConsentListResponse, client=user)
    assert {c.status for c in listed.consents} == {"active"}

    decided = answered(data_api, models.DataResponse, client=user, body=models.AgeVerificationDataRequest(
        input_=models.AgeVerificationInput(
            context=models.AgeVerificationContext(national_id="AB123456"),
            sanctions_listed=False, citizen_valid=True, is_over_18=True, has_credential=False)))
    assert decided.result.status == "pass_with_conditions"  # an adult without a credential
    evaluated = answered(evaluate, models.DecisionBody, client=user, body=models.AgeVerificationEvaluateRequest(
        purpose="age_verification", context=models.AgeVerificationContext(national_id="123456789")))
    assert evaluated.decision_id

    credential = answered(issue_credential, models.CredentialResponse, client=user, body=models.IssueRequest(
        type_=models.IssueRequestType.AGEOVER18, national_id="123456789"))
    verified = answered(verify_credential, models.VerifyResponse, client=user,
                        body=models.VerifyRequestType0(credential_id=credential.credential_id))
    assert verified.valid is True
    assert revoke_credential._get_kwargs(body=models.CredentialRevokeRequest(credential_id="x"))["url"] == "/vc/revoke"
    revoked = answered(revoke_credential, models.CredentialRevokeResponse, client=user,
                       body=models.CredentialRevokeRequest(credential_id=credential.credential_id))
    assert revoked.revoked is True
    by_jwt = answered(verify_credential, models.VerifyResponse, client=user,
                      body=models.VerifyRequestType1(jwt=credential.jwt))
    assert by_jwt.valid is False

    withdrawn = answered(revoke_consents, models.ConsentRevokeResponse, client=user,
                         body=models.PurposesRequest(purposes=[purposes.VC_ISSUANCE]))
    assert withdrawn.revoked == [models.ConsentRevokeResponseRevokedItem.VC_ISSUANCE]

    refreshed = answered(issue_tokens, models.TokenResponse, client=anonymous, body=models.TokenRequestFormType1(
        grant_type=models.TokenRequestFormType1GrantType.REFRESH_TOKEN, refresh_token=tokens.refresh_token))
    assert refreshed.refresh_token != tokens.refresh_token
    one = answered(revoke_token, models.TokenRevokeResponse, client=anonymous,
                   body=models.TokenRevokeRequestType0(token=refreshed.refresh_token))
    assert one.revoked is True
    current = client_module.AuthenticatedClient(base_url=server.base_url, token=refreshed.access_token)
    ended = list_consents.sync_detailed(client=current)
    assert ended.status_code == 401 and isinstance(ended.parsed, models.ErrorBody)

    other = client_module.AuthenticatedClient(base_url=server.base_url, token=log_in().access_token)
    every = answered(revoke_token, models.TokenRevokeResponse, client=other,
                     body=models.TokenRevokeRequestType1(all_=True))
    assert every.revoked is True and every.sessions == 1
    assert list_consents.sync_detailed(client=other).status_code == 401
