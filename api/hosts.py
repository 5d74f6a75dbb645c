"""The host check and the forwarded headers, for every request the app answers.

Gradio builds the links it hands out (``/ui/config``'s ``root``, the page's asset URLs) from
the request's Host, X-Forwarded-Host and X-Forwarded-Proto headers. :class:`HostGuard` makes
those headers the server's own before anything reads them: forwarded headers are believed
only from the proxies in ``forwarded_allow_ips`` (from anyone else they are dropped), and a
request whose Host, or believed X-Forwarded-Host, is not one of the ``allowed_hosts`` gets
400. uvicorn itself reads no forwarded header (``app.proxy_options``): if it did, it would
replace the peer's address with the forwarded client's before this check could see which
peer sent them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.config import env_name
from core.origins import host_allowed

#: What a proxy tells the app about the client's request, believed from a proxy only.
FORWARDED_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-forwarded-proto",
        b"x-forwarded-scheme",
        b"x-forwarded-server",
        b"x-real-ip",
    }
)
#: Gradio's server-side rendering (which this app does not run) names the public URL in this
#: header; from anyone else it would set ``/ui/config``'s ``root`` outright.
NEVER_BELIEVED = frozenset({b"x-gradio-server"})


class HostGuard:
    """Drops forwarded headers that no configured proxy sent, refuses (400) a request for a
    host the server is not, and lets a proxy's X-Forwarded-For and -Proto set the client's
    address and scheme (uvicorn's ``ProxyHeadersMiddleware``, on the proxies' addresses)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Sequence[str], proxies: str = "") -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.behind_proxy = ProxyHeadersMiddleware(app, trusted_hosts=proxies) if proxies else None

    def _from_proxy(self, scope: Scope) -> bool:
        if self.behind_proxy is None:
            return False
        peer = scope.get("client")
        return bool(peer) and peer[0] in self.behind_proxy.trusted_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from_proxy = self._from_proxy(scope)
        dropped = NEVER_BELIEVED if from_proxy else NEVER_BELIEVED | FORWARDED_HEADERS
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() not in dropped]
        foreign = self._foreign_host(Headers(scope=scope))
        if foreign is not None:
            await _refuse(scope, send, foreign)
            return
        if from_proxy:
            await self.behind_proxy(scope, receive, send)  # type: ignore[misc]
        else:
            await self.app(scope, receive, send)

    def _foreign_host(self, headers: Headers) -> str | None:
        """The first name the request gives that is not the server's own, else None."""
        names = [headers.get("host", "")]
        for value in headers.getlist("x-forwarded-host"):
            names.extend(value.split(","))
        return next((n for n in names if not host_allowed(n, self.allowed_hosts)), None)


async def _refuse(scope: Scope, send: Send, host: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    detail = (
        f"This server does not answer to the host {host.strip()[:100]!r}. If that is one of its "
        f"names, add it to {env_name('allowed_hosts')} (comma-separated) and restart it."
    )
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
