"""What the HTTP front of ``serve`` refuses before a request reaches the model: bodies over the size limit
(413), JSON that does not parse and a multipart form without its boundary (400), each with its reason, where
LitServe would answer 500; and FastAPI's own pages (``/docs``, ``/redoc``, ``/openapi.json``), which LitServe's
``authorize`` hook does not cover, without the API key (401).

An ASGI middleware because LitServe parses the body after its own handler has caught every exception
and turned it into "Internal server error"; LitServe's ``MaxSizeMiddleware`` (``max_payload_size``) stays
the limit for bodies read inside the route (multipart uploads), this one adds the early
``Content-Length`` check and the JSON check.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

#: FastAPI's pages, served outside LitServe's routes (and so outside its authorize hook)
API_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
KEY_REFUSED = "missing or wrong X-API-Key header"


def key_matches(given: str | None, key: str | None) -> bool:
    """Whether a request's ``X-API-Key`` is the server's key (any, without one); in constant time."""
    return key is None or hmac.compare_digest((given or "").encode(), key.encode())


def _is_form(content_type: str) -> bool:
    return content_type.startswith("multipart/form-data") or content_type == "application/x-www-form-urlencoded"


def _has_boundary(content_type: str) -> bool:
    params = (part.strip().partition("=") for part in content_type.split(";")[1:])
    return any(key.strip().lower() == "boundary" and value.strip().strip('"') for key, _, value in params)


class RequestChecks:
    """Refuse a POST whose declared or actual size is over ``max_bytes`` (413), or whose JSON body does
    not parse (400); pass everything else on unchanged (the body replayed as it came).
    """

    def __init__(self, app: Any, max_bytes: int, api_key: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_key = api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Refuse an oversized body or a wrong API key before the app reads it; pass everything else on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
        if scope.get("path", "").rstrip("/") in API_PAGES and not key_matches(headers.get("x-api-key"), self.api_key):
            await JSONResponse({"detail": KEY_REFUSED}, status_code=401)(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        too_large = f"the request is over the upload limit of {self.max_bytes / 2**20:g} MiB (--max_upload_mb)"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data") and not _has_boundary(content_type):
            await JSONResponse({"detail": "a multipart/form-data body needs its boundary in the Content-Type header; "
                                          "let the client build the form (curl -F image=@picture.png)"},
                               status_code=400)(scope, receive, send)
            return
        if _is_form(content_type):
            await self.app(scope, receive, send)  # multipart: read in the route, under LitServe's size limit
            return
        chunks, size, more = [], 0, True
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
                if size > self.max_bytes:
                    raise HTTPException(413)
        except HTTPException:  # this limit, or LitServe's own reading under it
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        body = b"".join(chunks)
        try:
            json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            reason = f"the body is not valid JSON ({err})" if body else "the body is empty"
            await JSONResponse({"detail": f"{reason}; send JSON or a multipart form"}, status_code=400)(
                scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
