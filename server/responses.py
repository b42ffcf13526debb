"""The JSON responses every handler gives, written by the codec (server.json_codec),
which writes any value: rendering never turns into a 500.

`JSONResponse` is Starlette's, with that encoder and, for the plain case (no extra
headers, no background task), its two headers set directly. `send_json` answers from a
plain ASGI endpoint without a response object (the data API).
"""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Send

from server.json_codec import dumps

_CONTENT_TYPE = (b"content-type", b"application/json")


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
        self.body = dumps(content)
        self.raw_headers = json_headers(self.body)

    def render(self, content: Any) -> bytes:
        return dumps(content)


async def send_json(send: Send, content: Any, status_code: int = 200) -> None:
    """Answer `content` as JSON through `send` (what `JSONResponse` would send)."""
    body = dumps(content)
    await send({"type": "http.response.start", "status": status_code, "headers": json_headers(body)})
    await send({"type": "http.response.body", "body": body})


__all__ = ["JSONResponse", "json_headers", "send_json"]
