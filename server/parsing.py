"""Request parsing shared by every handler: JSON bodies into pydantic models, flags.

Bad input becomes an `ApiError` (400 with the offending field named, 415 for a body
that is not JSON) instead of an exception that could surface as a 500.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from server.errors import ApiError

M = TypeVar("M", bound=BaseModel)

_TRUE = frozenset({"true", "1", "yes", "on", ""})
_FALSE = frozenset({"false", "0", "no", "off"})


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("input", "context", 0)` -> `input.context[0]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_problems(err: ValidationError) -> list[str]:
    problems = []
    for error in err.errors(include_url=False):
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{field_path(tuple(error['loc']))}: {message}")
    return problems


async def read_json(request: Request, model: type[M]) -> M:
    """The request body parsed and validated as `model`."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(
            415,
            f"expected Content-Type: application/json, got {request.headers.get('content-type') or 'none'}",
        )
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "the request body is empty; a JSON object is expected", error="invalid_json")
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        json_errors = [e for e in err.errors(include_url=False) if e["type"] == "json_invalid"]
        if json_errors:
            detail = (json_errors[0].get("ctx") or {}).get("error", json_errors[0]["msg"])
            raise ApiError(400, f"malformed JSON: {detail}", error="invalid_json") from None
        raise ApiError(400, "; ".join(validation_problems(err))) from None


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (`?explain`, `?explain=true`, `?explain=0`)."""
    value = request.query_params.get(name)
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(400, f"{name}: expected true or false, got {value!r}")


__all__ = ["field_path", "is_json_media_type", "query_flag", "read_json", "validation_problems"]
