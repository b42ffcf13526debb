"""Request and response models of the decision endpoints (validation and OpenAPI), and
the `explain` query parameter both take."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from server.json_codec import read_plain_object
from server.openapi import QueryParameter, Timestamp
from server.parsing import RequestBody, parse_json, require_unique_keys

#: `?explain=true` of both decision endpoints.
EXPLAIN = QueryParameter(
    "explain", "add the explanation: each rule tried, its line, whether it matched, the facts read",
    {"type": "boolean", "default": False},
)


class DataRequest(RequestBody):
    """`POST /v1/data/{purpose}` body: facts at the top level of `input`, context under it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "input": {
                        "sanctions_listed": False, "citizen_valid": True, "is_over_18": True,
                        "has_credential": False, "context": {"national_id": "AB123456"},
                    }
                }
            ]
        },
    )

    input: dict[str, Any] = Field(
        description="the facts the purpose declares, plus `context` (the request context object)"
    )


def parse_data_request(body: bytes) -> dict[str, Any]:
    """The `input` of a `DataRequest` JSON body, validated.

    The body every client sends (`{"input": {...}}`) is read by the codec's shortcut
    (`read_plain_object`) and accepted on a plain check of the result, which is exactly
    what the model would accept, once no key is named twice (`require_unique_keys`, which
    clears it by counting colons). Anything else (malformed JSON, NaN or Infinity, a
    missing or extra field, an `input` that is not an object, a body the shortcut leaves
    alone) goes through the model, so every error and every value reads as the model
    reads it.
    """
    parsed = read_plain_object(body)
    if parsed.__class__ is dict and len(parsed) == 1:
        facts = parsed.get("input")
        if facts.__class__ is dict:
            require_unique_keys(body, parsed)
            return facts
    return parse_json(body, DataRequest).input


class DecisionBody(BaseModel):
    """The decision JSON `POST /decision/evaluate` answers (docs/api.md)."""

    decision_id: str = Field(pattern=r"^dec_[A-Za-z0-9_-]+$")
    purpose: str
    status: Literal["pass", "pass_with_conditions", "fail"]
    reason: str
    conditions: list[str]
    evidence: dict[str, Any] = Field(description="the declared facts as supplied")
    policy_revision: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    evaluated_at: Timestamp = Field(description="UTC, RFC 3339")
    explanation: list[dict[str, Any]] | None = Field(
        None, description="with `?explain=true`: each rule tried, its line, whether it matched, the facts read"
    )


class DataResponse(BaseModel):
    result: DecisionBody
    decision_id: str


class PurposeSummary(BaseModel):
    name: str
    description: str
    file: str
    consent: list[str]
    evidence: list[str]
    context: list[str]
    rules: int


class ReloadBody(BaseModel):
    result: Literal["success", "rejected", "unchanged"]
    at: Timestamp
    revision: str | None = Field(description="the candidate's revision (None when it did not load)")
    error: str | None
    diagnostics: list[dict[str, Any]] = Field(description="load errors: file, line, col, code, message")
    tests: dict[str, int] | None = Field(description="passed / failed / errors of the test gate")
    failures: list[str]


class ShadowBody(BaseModel):
    """The shadow policy set (`IDGW_SHADOW_POLICY_DIR`) of the answering worker process."""

    revision: str | None
    loaded_at: str | None
    policy_dir: str
    last_reload: ReloadBody | None
    reloads: dict[str, int]
    agreement: dict[str, dict[str, int]] = Field(
        description="by purpose: how many of this process's live decisions the shadow set decided the same, "
                    "differently, or could not decide on the live input (same, different, not_replayable)"
    )


class FetchBody(BaseModel):
    at: Timestamp
    result: Literal["updated", "not_modified", "rejected", "unreachable"]
    error: str | None
    revision: str | None = Field(description="the bundle's revision, when it was opened")


class RejectionBody(BaseModel):
    at: Timestamp
    error: str = Field(description="the first check the bundle failed")
    revision: str | None
    etag: str | None


class SourceBody(BaseModel):
    """The bundle source (`IDGW_POLICY_SOURCE`) as the answering worker process polls it."""

    url: str
    etag: str | None = Field(description="of the last bundle received, sent as If-None-Match")
    poll_seconds: float
    signature_required: bool
    served_from: Literal["source", "cache"] | None = Field(
        description="where the live set's bundle came from: the source, or the kept copy at start"
    )
    last_fetch: FetchBody | None
    last_rejection: RejectionBody | None
    fetches: dict[str, int] = Field(description="this process's fetches by result")


class PoliciesResponse(BaseModel):
    """The live policy set of the answering worker process and its last reload."""

    revision: str | None
    loaded_at: Timestamp | None
    policy_dir: str | None = Field(description="the watched directory; null with a bundle source")
    purposes: list[PurposeSummary]
    last_reload: ReloadBody | None
    reloads: dict[str, int]
    pid: int
    source: SourceBody | None = Field(description="the bundle source, when IDGW_POLICY_SOURCE names one")
    shadow: ShadowBody | None = Field(description="the shadow set, when IDGW_SHADOW_POLICY_DIR names one")


__all__ = [
    "EXPLAIN",
    "DataRequest",
    "DataResponse",
    "DecisionBody",
    "PoliciesResponse",
    "PurposeSummary",
    "ReloadBody",
    "ShadowBody",
    "SourceBody",
    "parse_data_request",
]
