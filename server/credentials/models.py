"""Request and response models of the credential endpoints (validation and OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.credentials.service import CREDENTIAL_TYPES
from server.openapi import Timestamp, Variant, exactly_one_of
from server.parsing import RequestBody


class IssueRequest(RequestBody):
    """`{"type": "AgeOver18", "national_id": "123456789"}`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "AgeOver18", "national_id": "123456789"}]},
    )

    # A str, not a Literal: another type is a 400 `unsupported_credential_type`.
    type: str = Field(max_length=64, json_schema_extra={"enum": list(CREDENTIAL_TYPES)},
                      description="the credential type")
    national_id: str = Field(max_length=64, description="the citizen registry is asked about it")


class VerifyRequest(RequestBody):
    """`{"credential_id": ...}` (the holder's own) or `{"jwt": ...}` (anyone's)."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of(
        Variant(("credential_id",), absent=("jwt",)), Variant(("jwt",), absent=("credential_id",)),
    ))

    credential_id: str | None = Field(None, min_length=1, max_length=128)
    jwt: str | None = Field(None, min_length=1, max_length=16_384)


class CredentialRevokeRequest(RequestBody):
    credential_id: str = Field(min_length=1, max_length=128)


class _Credential(BaseModel):
    """What every answer that shows a whole credential holds."""

    credential_id: str
    type: str
    subject: str = Field(description="the holder's user id")
    issuer: str
    issued_at: Timestamp
    claims: dict[str, Any]


class CredentialResponse(_Credential):
    jwt: str = Field(description="the credential as a VC-JWT, signed with a key of /.well-known/jwks.json")


class VerifyResponse(BaseModel):
    valid: bool
    reason: str | None = Field(None, description="why not valid: credential_revoked, invalid_jwt, ...")
    credential_id: str | None = None
    type: str | None = None
    subject: str | None = None
    issued_at: Timestamp | None = None
    claims: dict[str, Any] | None = None


class HeldCredential(_Credential):
    """One of the caller's credentials as the data export lists it (`service.credential_json`)."""

    revoked_at: Timestamp | None


class CredentialRevokeResponse(BaseModel):
    credential_id: str
    revoked: bool
    revoked_at: Timestamp


__all__ = [
    "CredentialResponse",
    "CredentialRevokeRequest",
    "CredentialRevokeResponse",
    "HeldCredential",
    "IssueRequest",
    "VerifyRequest",
    "VerifyResponse",
]
