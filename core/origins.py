"""Which hosts and origins are the server's own.

Two checks read these: the host check on every request (``api.hosts``: a forged Host or
X-Forwarded-Host would otherwise be written into the links the UI hands out), and the
same-origin check on every change under ``/ui`` (``annotator.session``: the session cookie is
SameSite=Strict, but a page on another port of the same host is the same *site*, so the
browser sends the cookie with its requests too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: ``Sec-Fetch-Site`` values of a request the app's own page made, or the user typed.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def split_host(value: str) -> tuple[str, str]:
    """A Host header value as ``(name, port)``: lower case, without IPv6 brackets or a
    trailing dot; the port is ``""`` when none is given. ``"[::1]:7860"`` is ``("::1",
    "7860")``."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:  # a bare name, or a bare IPv6 address (which has no room for a port)
        name, port = value, ""
    return name.rstrip("."), port


def host_allowed(value: str, allowed: Iterable[str]) -> bool:
    """Whether the Host header ``value`` names one of ``allowed``: exact names (any port),
    ``*.example.com`` for the subdomains of example.com, ``*`` for any name."""
    name, _ = split_host(value)
    if not name:
        return False
    for pattern in allowed:
        pattern = pattern.strip().lower()
        if pattern == "*":
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
        if name == split_host(pattern)[0]:
            return True
    return False


def _origin(scheme: str, host: str) -> str:
    name, port = split_host(host)
    name = f"[{name}]" if ":" in name else name
    port = "" if port == _DEFAULT_PORTS.get(scheme) else port
    return f"{scheme}://{name}{':' + port if port else ''}"


def is_cross_origin(headers: Mapping[str, str], *, scheme: str) -> bool:
    """Whether a browser sent this request from another origin's page (another port or
    scheme of the same host included).

    ``Sec-Fetch-Site`` decides where the browser sends it (every current browser does); else
    ``Origin`` is compared with the request's own scheme and Host. A request with neither
    (curl, a script) is not cross-origin: only a browser adds another site's cookies.
    """
    site = headers.get("sec-fetch-site")
    if site:
        return site.strip().lower() not in OWN_FETCH_SITES
    origin = headers.get("origin")
    if origin is None:
        return False
    scheme_of_origin, sep, host_of_origin = origin.strip().lower().partition("://")
    if not sep:  # "null": a sandboxed frame, a file:// page or a redirect across sites
        return True
    return _origin(scheme_of_origin, host_of_origin) != _origin(scheme, headers.get("host", ""))
