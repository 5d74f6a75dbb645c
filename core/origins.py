"""Which hosts are the server's own: the host check on every request (``api.hosts``: a
forged Host or X-Forwarded-Host would otherwise be written into the links the UI hands out).
"""

from __future__ import annotations

from collections.abc import Iterable


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
