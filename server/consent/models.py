"""Request and response models of the consent endpoints (validation and OpenAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.consent.service import PURPOSES
from server.parsing import RequestBody

_PURPOSES_DESCRIPTION = f"of: {', '.join(PURPOSES)}"


class PurposesRequest(RequestBody):
    """`{"purposes": [...]}`: the purposes to grant (renew) or revoke."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"purposes": ["registry_check", "vc_issuance"]}]},
    )

    purposes: list[str] = Field(min_length=1, max_length=len(PURPOSES) * 4, description=_PURPOSES_DESCRIPTION)


class ConsentModel(BaseModel):
    id: str
    purpose: str
    granted_at: str
    expires_at: str | None = Field(description="one year after the grant (or its last renewal)")
    revoked_at: str | None
    status: Literal["active", "expired", "revoked"]


class GrantResponse(BaseModel):
    granted: list[ConsentModel]
    message: str


class RevokeResponse(BaseModel):
    revoked: list[str] = Field(description="the purposes this call revoked (already revoked ones are left out)")
    message: str


class ConsentListResponse(BaseModel):
    consents: list[ConsentModel]


__all__ = ["ConsentListResponse", "ConsentModel", "GrantResponse", "PurposesRequest", "RevokeResponse"]
