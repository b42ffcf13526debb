"""The schema of a policy file, as pydantic models (structure only; meaning is checked later).

These models validate shape: which keys exist and what kind of value each holds.
Semantic problems (an invalid outcome, a missing reason, an unreachable rule) are left
to the loader so that each gets its own diagnostic code and a precise message.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ContextFieldModel(_Strict):
    type: StrictStr = "any"
    description: StrictStr | None = None
    pattern: StrictStr | None = None
    enum: list[Any] | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(default=None, ge=0)
    sensitive: bool = False


class RuleModel(_Strict):
    if_: Any = Field(default=None, alias="if")
    then: StrictStr | None = None
    else_: StrictStr | None = Field(default=None, alias="else")
    reason: StrictStr | None = None
    conditions: list[StrictStr] = Field(default_factory=list)
    description: StrictStr | None = None


class PurposeModel(_Strict):
    description: StrictStr = ""
    consent: list[StrictStr] = Field(default_factory=list)
    context: dict[str, ContextFieldModel] = Field(default_factory=dict)
    evidence: list[StrictStr | dict[str, Any]] = Field(default_factory=list)
    rules: list[RuleModel] = Field(min_length=1)


class PolicyFileModel(_Strict):
    purposes: dict[str, PurposeModel]


__all__ = ["ContextFieldModel", "PolicyFileModel", "PurposeModel", "RuleModel"]
