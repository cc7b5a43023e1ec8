"""The one error shape of every HTTP answer: ``{"error": message, "status": code}``.

Views raise ``HttpError`` (or the domain errors ``UnknownTarget`` / ``InvalidSymbol``, or a
pydantic ``ValidationError`` from a request body); the guard middleware turns each into
this shape, so no route builds an error body of its own.
"""

from __future__ import annotations

import json

from aiohttp import web as aioweb
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """What every error answer carries."""

    error: str
    status: int


class HttpError(Exception):
    """An answer other than success, raised by a view and rendered by the middleware."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str,
                   headers: dict[str, str] | None = None) -> aioweb.Response:
    body = ErrorBody(error=message, status=status).model_dump()
    return aioweb.Response(text=json.dumps(body), status=status,
                           content_type="application/json", headers=headers)
