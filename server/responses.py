"""The JSON responses every handler gives: rendered by orjson, else pydantic-core.

orjson renders plain JSON data (dicts, lists, strings, numbers) three to four times
faster than pydantic-core, byte for byte the same; anything else it refuses (a
datetime, a lone surrogate, an integer over 64 bits) goes to pydantic-core, whose
`inf_nan_mode="null"` and `str` fallback cannot fail on a value the standard encoder
would reject: rendering never turns into a 500.

`JSONResponse` is Starlette's, with that renderer and, for the plain case (no extra
headers, no background task), its two headers set directly. `send_json` answers from a
plain ASGI endpoint without a response object (the data API).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pydantic_core
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Send

_CONTENT_TYPE = (b"content-type", b"application/json")


#: What orjson would render differently from pydantic-core, it leaves to it.
_PLAIN_DATA_ONLY = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def render_json(content: Any) -> bytes:
    try:
        return orjson.dumps(content, option=_PLAIN_DATA_ONLY)
    except TypeError:
        pass
    try:
        return pydantic_core.to_json(content, inf_nan_mode="null", fallback=str)
    except ValueError:  # text UTF-8 cannot hold (a lone surrogate): ASCII escapes
        return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of a JSON body, as Starlette's `init_headers` sets them."""
    return [(b"content-length", str(len(body)).encode("latin-1")), _CONTENT_TYPE]


class JSONResponse(StarletteJSONResponse):
    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if headers or media_type is not None or background is not None:
            super().__init__(content, status_code, headers, media_type, background)
            return
        self.status_code = status_code
        self.background = None
        self.body = render_json(content)
        self.raw_headers = json_headers(self.body)

    def render(self, content: Any) -> bytes:
        return render_json(content)


async def send_json(send: Send, content: Any, status_code: int = 200) -> None:
    """Answer `content` as JSON through `send` (what `JSONResponse` would send)."""
    body = render_json(content)
    await send({"type": "http.response.start", "status": status_code, "headers": json_headers(body)})
    await send({"type": "http.response.body", "body": body})


__all__ = ["JSONResponse", "json_headers", "render_json", "send_json"]
