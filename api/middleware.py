"""ASGI middleware for every response, errors included: security headers and request-body
size limits by route.

Both are plain ASGI (not ``BaseHTTPMiddleware``), so streamed responses (Gradio's server-sent
events) and streamed request bodies pass through untouched apart from what they are for.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import env_name
from core.urls import route_path, under

#: The Gradio UI: its page runs inline scripts (config, loader), which get a per-response nonce;
#: ``'unsafe-eval'`` because Gradio runs ``js_on_load`` and ``js=`` handlers with ``new
#: Function``; inline styles because Svelte and the widgets' ``css_template`` set them; ``blob:``
#: images because the canvas shows photos fetched with the bearer header from blob: URLs.
UI_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "media-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
#: FastAPI's /docs and /redoc load Swagger UI and ReDoc from jsDelivr, with one inline script.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "font-src 'self' https://fonts.gstatic.com; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
#: JSON, files and redirects: nothing of theirs may run or be framed.
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

DOCS_PATHS = ("/docs", "/redoc")
_SCRIPT_TAG = re.compile(rb"<script(?=[\s>])", re.IGNORECASE)


class SecurityHeadersMiddleware:
    """Adds ``Content-Security-Policy``, ``X-Content-Type-Options: nosniff``,
    ``X-Frame-Options: DENY`` and ``Referrer-Policy: same-origin`` to every HTTP response,
    including the 500 for an exception no handler took (answered here, see ``__call__``).

    HTML pages (the UI under ``ui_path``, /docs, /redoc) get a fresh nonce on each of their
    ``<script>`` tags and in the policy, so only the scripts the server wrote run inline. The
    page's own text is rewritten, so a browser's page request is answered uncompressed.
    """

    def __init__(self, app: ASGIApp, *, ui_path: str = "/ui") -> None:
        self.app = app
        self.ui_path = ui_path

    def _policy(self, path: str) -> str | None:
        if under(path, self.ui_path):
            return UI_POLICY
        if any(under(path, p) for p in DOCS_PATHS):
            return DOCS_POLICY
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template = self._policy(route_path(scope))
        nonce = secrets.token_urlsafe(18) if template else ""
        policy = template.format(nonce=nonce) if template else API_POLICY
        if template and "text/html" in Headers(scope=scope).get("accept", ""):
            # A page is rewritten to carry the nonce, which a compressed body would not allow.
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
        rewrite = scope["method"] != "HEAD"
        start: Message | None = None
        chunks: list[bytes] = []
        started = False  # whether a response start has gone out to the client

        async def send_with_headers(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                headers = _secured(message, policy)
                html = headers.get("content-type", "").startswith("text/html")
                if template and html and rewrite and "content-encoding" not in headers:
                    start = message  # held back until the page's body is complete
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _SCRIPT_TAG.sub(f'<script nonce="{nonce}"'.encode(), b"".join(chunks))
                MutableHeaders(scope=start)["content-length"] = str(len(body))
                started = True
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's ServerErrorMiddleware, outside every middleware, would answer this
            # with the bare ``send`` it holds, so without these headers. Answer it here; it
            # sees the response started and only re-raises, and the server logs the error.
            if not started:
                for message in _server_error(policy):
                    await send(message)
            raise


def _secured(message: Message, policy: str) -> MutableHeaders:
    """The headers of the response start ``message``, with the security headers added where
    the app did not set its own."""
    headers = MutableHeaders(scope=message)
    headers.setdefault("content-security-policy", policy)
    headers.setdefault("x-content-type-options", "nosniff")
    headers.setdefault("x-frame-options", "DENY")
    headers.setdefault("referrer-policy", "same-origin")
    return headers


def _server_error(policy: str) -> tuple[Message, Message]:
    """A 500 that says what to do, not what failed (that goes to the server's log)."""
    detail = (
        "The server failed on this request, and the error is in its log. Try again; if it "
        "keeps failing, tell an admin the time it happened."
    )
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 500,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    _secured(start, policy)
    return start, {"type": "http.response.body", "body": body}


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes a request body may have, the field of ``core.config.Settings`` that
    raises it (for the 413 to name its variable), and what to send instead."""

    max_bytes: int
    setting: str = ""
    advice: str = "Send a smaller request."


class BodyLimitMiddleware:
    """Answers 413 to a request whose body is larger than its route's :class:`BodyLimit`: at
    once when its ``Content-Length`` says so, else as soon as a streamed (chunked) body passes
    the limit, so no more of it is read. The app then sees the client as gone, and its own
    answer is dropped. ``routes`` maps a path (as the app routes on it, without a trailing
    slash) to its limit; every other path has ``default``.

    Not FastAPI's own ``max_body_size``: that one answers a bare "Content Too Large" from
    outside the app's middleware (so without the security headers), and signals by raising
    inside the app, where a mounted app's error handling may turn it into another answer.
    """

    def __init__(
        self, app: ASGIApp, *, default: BodyLimit, routes: Mapping[str, BodyLimit] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.routes = dict(routes or {})

    def limit_for(self, path: str) -> BodyLimit:
        return self.routes.get(path.rstrip("/") or "/", self.default)

    @staticmethod
    def _too_large(path: str, limit: BodyLimit) -> tuple[Message, Message]:
        where = f" (setting {env_name(limit.setting)})" if limit.setting else ""
        detail = (
            f"The request body is larger than {path} accepts: at most {limit.max_bytes} "
            f"bytes{where}. {limit.advice}"
        )
        body = json.dumps({"detail": detail}).encode()
        return (
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            },
            {"type": "http.response.body", "body": body},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        limit = self.limit_for(path)

        async def reject() -> None:
            for message in self._too_large(path, limit):
                await send(message)

        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            await reject()
            return
        received = 0
        rejected = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    rejected = True
                    if not started:
                        await reject()
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception:
            # The app gave up on a body it was told had ended (ClientDisconnect and the like);
            # the client already has its 413.
            if not rejected:
                raise
