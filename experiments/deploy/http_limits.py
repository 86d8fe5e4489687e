"""What the HTTP front of ``serve`` refuses before a request reaches the model: bodies over the size limit
(413) and JSON that does not parse (400), each with its reason, where LitServe would answer 500.

An ASGI middleware because LitServe parses the body after its own handler has caught every exception
and turned it into "Internal server error"; LitServe's ``MaxSizeMiddleware`` (``max_payload_size``) stays
the limit for bodies read inside the route (multipart uploads), this one adds the early
``Content-Length`` check and the JSON check.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


def _is_form(content_type: str) -> bool:
    return content_type.startswith("multipart/form-data") or content_type == "application/x-www-form-urlencoded"


class RequestChecks:
    """Refuse a POST whose declared or actual size is over ``max_bytes`` (413), or whose JSON body does
    not parse (400); pass everything else on unchanged (the body replayed as it came)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
        too_large = f"the request is over the upload limit of {self.max_bytes / 2**20:g} MiB (--max_upload_mb)"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        if _is_form(headers.get("content-type", "")):
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
