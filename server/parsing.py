"""Request parsing shared by every handler: JSON bodies into pydantic models, flags.

Bad input becomes an `ApiError` (400 with the offending field named, 415 for a body
that is not JSON) instead of an exception that could surface as a 500.

Every request body model derives from `RequestBody`: unknown fields are refused and
values are not coerced (`true`/`false` only for a boolean, a number for a number, a
string for a string: `"all": 0`, `"all": "no"` are a 400). A key named twice in one
object is a 400 `invalid_json` naming it (`require_unique_keys`).

The OAuth endpoints also read `application/x-www-form-urlencoded` (RFC 6749 and 7009
clients send nothing else): `read_json_or_form`. A form's values are text: a parameter
given twice is a 400, one given empty counts as absent (RFC 6749 section 3.1), and a
boolean field takes `true` or `false`.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from server.errors import ApiError, echo
from server.json_codec import DuplicateKey, non_finite_path, refuse_duplicate_keys

M = TypeVar("M", bound=BaseModel)


class RequestBody(BaseModel):
    """The base of every request body model: no unknown field, no coerced value, no
    `null` (an optional field is left out: the OpenAPI schemas do not allow null)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("null", "leave the field out rather than null")
        return value


FORM = "application/x-www-form-urlencoded"
_FORM_BOOLEANS = {"true": True, "false": False}
_TRUE = frozenset({"true", "1", "yes", "on", ""})
_FALSE = frozenset({"false", "0", "no", "off"})


def is_json_media_type(content_type: str | None) -> bool:
    if content_type == "application/json":
        return True
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


async def receive_body(receive: Receive) -> bytes:
    """The whole request body (at most IDGW_MAX_BODY_BYTES: the middleware enforces it).

    Reads the ASGI messages directly: Starlette's `request.body()` goes through an async
    generator, a measurable cost on the decision path. The body can be read once.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


async def receive_json_body(scope: Scope, receive: Receive) -> bytes:
    """The body of a request that must carry JSON: 415 for another media type, 400 if empty."""
    content_type = header(scope, b"content-type")
    if not is_json_media_type(content_type):
        raise ApiError(415, f"expected Content-Type: application/json, got {echo(content_type or 'none')}")
    body = await receive_body(receive)
    if not body.strip():
        raise ApiError(400, "the request body is empty; a JSON object is expected", error="invalid_json")
    return body


async def read_json_body(request: Request) -> bytes:
    """`receive_json_body` for a handler holding a `Request`."""
    return await receive_json_body(request.scope, request.receive)


def parse_json(body: bytes, model: type[M]) -> M:
    """`body` parsed and validated as `model` (400 naming the field, or the JSON error)."""
    require_unique_keys(body)
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as err:
        json_errors = [e for e in err.errors(include_url=False) if e["type"] == "json_invalid"]
        if json_errors:
            detail = (json_errors[0].get("ctx") or {}).get("error", json_errors[0]["msg"])
            raise ApiError(400, f"malformed JSON: {detail}", error="invalid_json") from None
        raise ApiError(400, "; ".join(validation_problems(err))) from None
    reject_non_finite(body, parsed.__dict__)
    return parsed


def is_form_media_type(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == FORM  # type: ignore[union-attr]


def parse_form(body: bytes, model: type[M]) -> M:
    """The form `body` validated as `model`: 400 naming the field, as for JSON."""
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=len(model.model_fields) + 1)
    except (UnicodeError, ValueError):
        raise ApiError(400, "malformed form: expected at most one value of each parameter, "
                            "percent-encoded UTF-8") from None
    values: dict[str, object] = {}
    given: set[str] = set()
    for name, text in pairs:
        if name in given:
            raise ApiError(400, f"{echo(name)}: given more than once")
        given.add(name)
        if text:
            field = model.model_fields.get(name)
            boolean = field is not None and field.annotation is bool
            values[name] = _FORM_BOOLEANS.get(text, text) if boolean else text
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise ApiError(400, "; ".join(validation_problems(err))) from None


async def read_json_or_form(request: Request, model: type[M]) -> M:
    """The request body as `model`, from JSON or from a form (the OAuth endpoints)."""
    if not is_form_media_type(header(request.scope, b"content-type")):
        return await read_json(request, model)
    return parse_form(await receive_body(request.receive), model)


def require_unique_keys(body: bytes, parsed: object = None) -> None:
    """400 `invalid_json` naming the key when an object of `body` names a key twice
    (`parsed`: what `read_plain_object(body)` read, when the caller has it)."""
    try:
        refuse_duplicate_keys(body, parsed)
    except DuplicateKey as err:
        raise ApiError(400, f"malformed JSON: {err}", error="invalid_json") from None


def reject_non_finite(body: bytes, parsed: dict[str, object]) -> None:
    """400 when the JSON held NaN, Infinity or a number too large for a float (1e999):
    the parser turns them into floats that no JSON can carry back."""
    where = non_finite_path(body, parsed)
    if where is not None:
        raise ApiError(400, f"{field_path(where)}: numbers must be finite")


async def read_json(request: Request, model: type[M]) -> M:
    """The request body parsed and validated as `model`."""
    return parse_json(await read_json_body(request), model)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (`?explain`, `?explain=true`, `?explain=0`)."""
    if not request.scope["query_string"]:
        return False
    value = request.query_params.get(name)
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(400, f"{name}: expected true or false, got {echo(repr(value))}")


__all__ = [
    "FORM",
    "RequestBody",
    "field_path",
    "header",
    "is_form_media_type",
    "is_json_media_type",
    "parse_form",
    "parse_json",
    "query_flag",
    "read_json",
    "read_json_body",
    "read_json_or_form",
    "receive_body",
    "receive_json_body",
    "reject_non_finite",
    "require_unique_keys",
    "validation_problems",
]
