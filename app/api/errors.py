"""The error bodies HTTP routes answer with, described for the OpenAPI schema (`responses=`).

Every refusal is `{"detail": "words"}` (HTTPException and the Guard), except a request whose query or
path fails validation: `{"detail": [{"loc": [...], "msg": "..."}]}` (app.main's handler).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """A refused request."""

    detail: str = Field(description="What was wrong and, where it helps, what to change.")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: ['query', 'offset'], ['path', 'image_id'], ...")
    msg: str


class ValidationErrorBody(BaseModel):
    """A query or path parameter out of its range or of the wrong type (at most five are named)."""

    detail: list[FieldError]


WHY = {
    400: "The Host header names another server (DNS-rebinding guard), or the request is malformed.",
    401: "The server listens beyond loopback and the token is missing or wrong.",
    403: "A cross-site request (Origin or Sec-Fetch-Site from another site) that would change state.",
    404: "No such item.",
    409: "The server is busy with a conflicting operation (a model load in progress) or has no memory for it.",
    413: "Over a size cap or over the uploads quota; the message says which, in MiB.",
    415: "The body is not multipart/form-data.",
    422: "A query or path parameter out of range or of the wrong type.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these status codes, each with its body model and a description."""
    return {code: {"model": ValidationErrorBody if code == 422 else ErrorBody, "description": WHY[code]}
            for code in codes}
