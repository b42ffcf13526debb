"""server.responses: the JSONResponse every handler gives carries Starlette's headers
and body for plain content."""

from __future__ import annotations

import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse

from server.responses import JSONResponse


@pytest.mark.parametrize("content", [{"a": [1, "é"]}, None, []])
def test_plain_json_responses_carry_starlettes_headers(content: object) -> None:
    ours, theirs = JSONResponse(content), StarletteJSONResponse(content)
    assert ours.raw_headers == theirs.raw_headers and ours.body == theirs.body
    assert JSONResponse(content, 201, headers={"X-A": "1"}).raw_headers == StarletteJSONResponse(
        content, 201, headers={"X-A": "1"}).raw_headers
