"""Request and response models of the registry endpoints (validation and OpenAPI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from server.openapi import Timestamp
from server.parsing import RequestBody
from server.registry.records import NATIONAL_ID_PATTERN


class NationalIdRequest(RequestBody):
    """`{"national_id": "123456789"}`: whose record to look up."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"national_id": "123456789"}]})

    # The pattern is checked by the service (400 `invalid_national_id`, the value not echoed).
    national_id: str = Field(max_length=64, json_schema_extra={"pattern": NATIONAL_ID_PATTERN},
                             description="another value is a 400 `invalid_national_id`, the value not echoed")


class CitizenResponse(BaseModel):
    national_id: str
    valid: bool
    checked_at: Timestamp
    date_of_birth: str | None = Field(None, description="absent in regulated mode",
                                      json_schema_extra={"format": "date"})
    name: str | None = Field(None, description="absent in regulated mode")
    address: str | None = Field(None, description="absent in regulated mode")
    is_over_18: bool | None = Field(None, description="absent in regulated mode")


class SanctionsResponse(BaseModel):
    national_id: str
    listed: bool
    source: str
    checked_at: Timestamp


__all__ = ["CitizenResponse", "NationalIdRequest", "SanctionsResponse"]
