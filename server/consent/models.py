"""Request and response models of the consent endpoints (validation and OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.consent.service import PURPOSES
from server.openapi import Timestamp
from server.parsing import RequestBody

_PURPOSES_DESCRIPTION = f"of: {', '.join(PURPOSES)}"
#: A consent purpose. A str, not a Literal: another one is a 400 `invalid_purpose`.
ConsentPurpose = Annotated[str, Field(json_schema_extra={"enum": list(PURPOSES)})]


class PurposesRequest(RequestBody):
    """`{"purposes": [...]}`: the purposes to grant (renew) or revoke."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"purposes": ["registry_check", "vc_issuance"]}]},
    )

    purposes: list[ConsentPurpose] = Field(min_length=1, max_length=len(PURPOSES) * 4, description=_PURPOSES_DESCRIPTION)


class ConsentModel(BaseModel):
    id: str
    purpose: ConsentPurpose
    granted_at: Timestamp
    expires_at: Timestamp | None = Field(description="one year after the grant (or its last renewal)")
    revoked_at: Timestamp | None
    status: Literal["active", "expired", "revoked"]


class GrantResponse(BaseModel):
    granted: list[ConsentModel]
    message: str


class ConsentRevokeResponse(BaseModel):
    revoked: list[ConsentPurpose] = Field(description="the purposes this call revoked (already revoked ones are left out)")
    message: str


class ConsentListResponse(BaseModel):
    consents: list[ConsentModel]


__all__ = ["ConsentListResponse", "ConsentModel", "ConsentRevokeResponse", "GrantResponse", "PurposesRequest"]
