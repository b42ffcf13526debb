"""Request and response models of the decision endpoints (validation and OpenAPI), and
the `explain` query parameter both take."""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from server.openapi import QueryParameter
from server.parsing import parse_json

#: `?explain=true` of both decision endpoints.
EXPLAIN = QueryParameter(
    "explain", "add the explanation: each rule tried, its line, whether it matched, the facts read",
    {"type": "boolean", "default": False},
)


class DataRequest(BaseModel):
    """`POST /v1/data/{purpose}` body: facts at the top level of `input`, context under it."""

    model_config = ConfigDict(
        extra="forbid",
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


#: Bodies the shortcut leaves to the model: a run of 19 digits may be an integer beyond
#: 64 bits (orjson reads it as a float, pydantic-core as an exact int), and 128 brackets
#: may nest deeper than pydantic-core parses (orjson would accept up to 1,024 levels).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
_MAX_BRACKETS = 128
_DIGITS_AND_BRACKETS = b"0123456789[{"


def _read_alike(body: bytes) -> bool:
    """Whether orjson reads `body` as pydantic-core does (a regular expression search
    costs ~1 µs on a decision-sized body; the usual body holds too few digits and
    brackets to need one)."""
    if len(body) - len(body.translate(None, _DIGITS_AND_BRACKETS)) < 19:
        return True
    return body.count(b"{") + body.count(b"[") < _MAX_BRACKETS and _LONG_NUMBER.search(body) is None


def parse_data_request(body: bytes) -> dict[str, Any]:
    """The `input` of a `DataRequest` JSON body, validated.

    The body every client sends (`{"input": {...}}`) is parsed by orjson and accepted on
    a plain check of the result, which is exactly what the model would accept; orjson
    refuses NaN, Infinity and numbers that overflow a double. Anything else (malformed
    JSON, a missing or extra field, an `input` that is not an object, a body orjson
    refuses or might read differently) goes through the model, so every error and every
    value reads as before.
    """
    if _read_alike(body):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if parsed.__class__ is dict and len(parsed) == 1:
            facts = parsed.get("input")
            if facts.__class__ is dict:
                return facts  # type: ignore[no-any-return]
    return parse_json(body, DataRequest).input


class DecisionBody(BaseModel):
    """The decision JSON of SPEC section 7."""

    decision_id: str = Field(pattern=r"^dec_[A-Za-z0-9_-]+$")
    purpose: str
    status: Literal["pass", "pass_with_conditions", "fail"]
    reason: str
    conditions: list[str]
    evidence: dict[str, Any] = Field(description="the declared facts as supplied")
    policy_revision: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    evaluated_at: str = Field(description="UTC, RFC 3339")
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
    at: str
    revision: str | None = Field(description="the candidate's revision (None when it did not load)")
    error: str | None
    diagnostics: list[dict[str, Any]] = Field(description="load errors: file, line, col, code, message")
    tests: dict[str, int] | None = Field(description="passed / failed / errors of the test gate")
    failures: list[str]


class PoliciesResponse(BaseModel):
    """The live policy set of the answering worker process and its last reload."""

    revision: str | None
    loaded_at: str | None
    policy_dir: str
    purposes: list[PurposeSummary]
    last_reload: ReloadBody | None
    reloads: dict[str, int]
    pid: int


__all__ = [
    "EXPLAIN",
    "DataRequest",
    "DataResponse",
    "DecisionBody",
    "PoliciesResponse",
    "PurposeSummary",
    "ReloadBody",
    "parse_data_request",
]
