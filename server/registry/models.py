"""Request and response models of the registry endpoints (validation and OpenAPI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from server.parsing import RequestBody
from server.registry.records import NATIONAL_ID_PATTERN


class NationalIdRequest(RequestBody):
    """`{"national_id": "123456789"}`: whose record to look up."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"national_id": "123456789"}]})

    # The pattern is checked by the service (400 `invalid_national_id`, the value not echoed).
    national_id: str = Field(max_length=64, description=f"matches {NATIONAL_ID_PATTERN}")


class CitizenResponse(BaseModel):
    national_id: str
    valid: bool
    checked_at: str
    date_of_birth: str | None = Field(None, description="absent in regulated mode")
    name: str | None = Field(None, description="absent in regulated mode")
    address: str | None = Field(None, description="absent in regulated mode")
    is_over_18: bool | None = Field(None, description="absent in regulated mode")


class SanctionsResponse(BaseModel):
    national_id: str
    listed: bool
    source: str
    checked_at: str


__all__ = ["CitizenResponse", "NationalIdRequest", "SanctionsResponse"]
