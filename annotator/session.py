"""How the browser proves its session on the UI's own routes under ``/ui``.

Gradio serves more than the page: uploads (``/ui/gradio_api/upload``), files
(``/ui/gradio_api/file=...``, where the dashboard's exports are downloaded) and queued events.
Its JavaScript client sends those requests itself, without our bearer header, so the sign-in
also sets a cookie: right after the Gradio sign-in event succeeds, the page posts the new token
to ``POST /ui/session`` (:data:`START_SESSION_JS`), which answers with an HttpOnly,
SameSite=Strict cookie for ``/ui`` only (Secure when the request came over TLS).
:class:`UiSessionGuard` then lets through, without a session, only the page, its static
parts, its config, the queue's plumbing and the sign-in events themselves; everything else
under ``/ui`` needs a valid token (the cookie, or an ``Authorization: Bearer`` header), and
an export's ``file=`` link the export permission in its project (``annotator.export_links``).

SameSite=Strict keeps the cookie from other sites, but a page on another port of the same
host is the same site: the guard refuses (403) every request under ``/ui`` that could change
something (any method but GET, HEAD and OPTIONS: the sign-in, the session, uploads, events)
when the browser says another origin's page sent it, so such a page can neither replace the
session with an account of its own nor act in the user's. What such a page may read is
settled by CORS, which allows no other origin (``app._with_ui``).
"""

from __future__ import annotations

import json
from collections.abc import Collection

import anyio
from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from annotator import export_links
from core.config import get_settings
from core.origins import is_cross_origin
from core.urls import route_path, under
from db.session import session_scope
from services.accounts import users as user_service

UI_PATH = "/ui"
COOKIE = "panelbeater_session"
SESSION_PATH = f"{UI_PATH}/session"

#: Under ``/ui``, what anyone may fetch: the page, its scripts, styles and fonts, its config,
#: and the queue's plumbing (which only carries events the guard let in).
PUBLIC_PATHS = frozenset(
    {
        "",
        "/",
        "/config",
        "/config/",
        "/theme.css",
        "/favicon.ico",
        "/robots.txt",
        "/manifest.json",
        "/session",
        "/gradio_api/theme.css",
        "/gradio_api/startup-events",
        "/gradio_api/queue/data",
        "/gradio_api/cancel",
    }
)
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon", "/gradio_api/heartbeat/")
QUEUE_JOIN = "/gradio_api/queue/join"
#: Methods that change nothing, which another origin's page may send (CORS decides whether
#: it may read the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_ORIGIN = (
    "Refused: another site's page sent this request. Panelbeater's UI takes sign-ins and "
    "changes only from its own pages; open it at its own address."
)
#: An anonymous event carries a user name and password at most.
MAX_ANONYMOUS_BODY = 64 * 1024

#: Run by the page after a sign-in: its argument is the canvas widget's value, whose JSON
#: holds the new token (``annotator.canvas.session_value``).
START_SESSION_JS = f"""(value) => {{
  let token = '';
  try {{ token = value ? JSON.parse(value).token || '' : ''; }} catch (e) {{ token = ''; }}
  if (token) {{
    return fetch('{SESSION_PATH}', {{ method: 'POST', headers: {{ Authorization: 'Bearer ' + token }} }})
      .then(() => []);
  }}
  return [];
}}"""
END_SESSION_JS = f"() => fetch('{SESSION_PATH}', {{ method: 'DELETE' }}).then(() => [])"

router = APIRouter(include_in_schema=False)


def bearer(headers: Headers) -> str:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else ""


def session_token(headers: Headers, cookies: dict[str, str]) -> str:
    """The token a request to ``/ui`` carries: its bearer header, else the session cookie."""
    return bearer(headers) or cookies.get(COOKIE, "")


def token_is_valid(token: str) -> bool:
    if not token:
        return False
    with session_scope() as session:
        return user_service.user_for_token(session, token) is not None


@router.post(SESSION_PATH, status_code=status.HTTP_204_NO_CONTENT)
def start_session(request: Request) -> Response:
    """Turn the bearer token of a fresh sign-in into the UI's session cookie. Another
    origin's page never gets here (:class:`UiSessionGuard` refuses it), so no other site can
    replace a session with an account of its own."""
    token = bearer(request.headers)
    if not token_is_valid(token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Sign in first: send the token from the sign-in as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(get_settings().token_ttl_hours * 3600),
        path=UI_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.delete(SESSION_PATH, status_code=status.HTTP_204_NO_CONTENT)
def end_session(request: Request) -> Response:
    """Forget the session cookie (signing out revokes the token itself)."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        COOKIE,
        path=UI_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _is_public(sub: str) -> bool:
    return sub in PUBLIC_PATHS or sub.startswith(PUBLIC_PREFIXES)


def _fn_index(body: bytes) -> int | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    index = data.get("fn_index") if isinstance(data, dict) else None
    return index if type(index) is int else None


class UiSessionGuard:
    """Refuses (401) every request under ``/ui`` that is neither public nor signed in.

    ``anonymous_fns`` are the Gradio event ids that may run without a session (sign-in,
    sign-out, restoring a session on page load); an anonymous ``queue/join`` for any other
    event is refused before Gradio reads its inputs (a file input would be copied into
    Gradio's cache, or downloaded from a URL, while being prepared).
    """

    def __init__(
        self, app: ASGIApp, *, anonymous_fns: Collection[int], path: str = UI_PATH
    ) -> None:
        self.app = app
        self.anonymous_fns = frozenset(anonymous_fns)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] in ("http", "websocket") else ""
        if not under(path, self.path):
            await self.app(scope, receive, send)
            return
        if _from_another_origin(scope):
            await _deny(scope, send, status.HTTP_403_FORBIDDEN, CROSS_ORIGIN)
            return
        sub = path[len(self.path) :]
        if _is_public(sub):
            await self.app(scope, receive, send)
            return
        token = await self._valid_token(scope)
        if token:
            refused = await self._file_refusal(token, sub)
            if refused:
                await _deny(scope, send, status.HTTP_403_FORBIDDEN, refused)
            else:
                await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and sub == QUEUE_JOIN and scope["method"] == "POST":
            body = await _read_body(receive, MAX_ANONYMOUS_BODY)
            if body is not None and _fn_index(body) in self.anonymous_fns:
                await self.app(scope, _replay(body, receive), send)
                return
        await _deny(scope, send)

    async def _valid_token(self, scope: Scope) -> str:
        """The request's token when it signs someone in, else ''."""
        headers = Headers(scope=scope)
        cookies = HTTPConnection(scope).cookies
        token = session_token(headers, cookies)
        valid = bool(token) and await anyio.to_thread.run_sync(token_is_valid, token)
        return token if valid else ""

    async def _file_refusal(self, token: str, sub: str) -> str | None:
        """Why Gradio may not serve the file ``sub`` asks for (an export, to someone who may
        not download it), or None."""
        path = export_links.file_path(sub)
        if path is None:
            return None
        return await anyio.to_thread.run_sync(export_links.refusal, token, path)


def _from_another_origin(scope: Scope) -> bool:
    """Whether a request that may change something came from another origin's page."""
    if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
        return False
    scheme = {"ws": "http", "wss": "https"}.get(scope["scheme"], scope["scheme"])
    return is_cross_origin(Headers(scope=scope), scheme=scheme)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than ``limit`` or the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


SIGN_IN_FIRST = (
    "Sign in first: this part of the UI needs a signed-in session, and yours has ended or "
    "never began. Reload the page to sign in again."
)


async def _deny(
    scope: Scope,
    send: Send,
    code: int = status.HTTP_401_UNAUTHORIZED,
    detail: str = SIGN_IN_FIRST,
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
