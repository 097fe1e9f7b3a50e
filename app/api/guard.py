"""The edge every request passes first: a Host allow-list (against DNS rebinding), the Origin rule
for the websocket and cross-site writes, security headers on every response, and the token kept
out of uvicorn's log lines.

A rebinding page reaches the server under the attacker's name, so its requests carry
`Host: evil.example:PORT`; only names the server is bound to, loopback names and configured ones
are served. IP literals cannot be rebound, so a server bound to all interfaces accepts any of them
(plus this machine's hostname).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse

from app.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOST = re.compile(r"^(?:\[([0-9a-f:.]+)\]|([a-z0-9._~-]+))(?::\d{1,5})?$")

# The page is ES modules and a stylesheet from /static, images from blob: URLs, a websocket to itself.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",  # page URLs may carry ?token=
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": PAGE_CSP,
}


def host_name(header: str | None) -> str | None:
    """The lower-case name of a Host header or URL netloc, without port or IPv6 brackets; None when
    it is missing or malformed (userinfo, spaces, bad characters)."""
    m = _HOST.match((header or "").strip().lower())
    return None if m is None else (m.group(1) or m.group(2))


def _bare(name: str) -> str:
    return name.strip().lower().removeprefix("[").removesuffix("]")


def allowed_names(settings: Settings) -> frozenset[str]:
    """Loopback names, the bind host and the configured extra names (and, bound to all interfaces,
    this machine's hostname)."""
    names = set(LOOPBACK) | {_bare(h) for h in settings.allowed_hosts} | {_bare(settings.host)}
    if _bare(settings.host) in WILDCARD:
        names.add(socket.gethostname().lower())
    return frozenset(names - {""})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str | None, settings: Settings, names: frozenset[str] | None = None) -> bool:
    """May a request with this Host header be served?"""
    name = host_name(header)
    if name is None:
        return False
    if name in (names if names is not None else allowed_names(settings)):
        return True
    return _bare(settings.host) in WILDCARD and _is_ip(name)


def origin_allowed(origin: str | None, host: str | None, settings: Settings) -> bool:
    """Browsers always send Origin on websockets and cross-site writes: it must be this server itself
    (same scheme-less host and port as the already checked Host) or a configured origin. Clients
    that send none (scripts, curl) are governed by the Host check and the token alone."""
    if origin is None:
        return True
    if origin in settings.allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == (host or "").lower()


def same_site_write(origin: str | None, fetch_site: str | None, host: str | None, settings: Settings) -> bool:
    """May a state-changing request (a write or a websocket) go on? A configured origin always may; a
    browser that labels the request `Sec-Fetch-Site: cross-site` or `same-site` (another port of the same
    host is same-site) may not, even when its Origin is missing; otherwise the Origin rule decides."""
    if origin is not None and origin in settings.allowed_origins:
        return True
    if (fetch_site or "").strip().lower() in ("cross-site", "same-site"):
        return False
    return origin_allowed(origin, host, settings)


class Guard:
    """Pure ASGI middleware: refuses foreign hosts and origins before any route runs, and adds the
    security headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.names = allowed_names(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        problem = None
        if not host_allowed(host, self.settings, self.names):
            problem = "unknown Host; add the name to NOISESCOPE_ALLOWED_HOSTS if it is really this server"
        elif (scope["type"] == "websocket" or scope.get("method") in UNSAFE_METHODS) and not same_site_write(
                headers.get("origin"), headers.get("sec-fetch-site"), host, self.settings):
            problem = "cross-origin request refused"
        if scope["type"] == "websocket":
            if problem:
                await send({"type": "websocket.close", "code": 1008, "reason": problem})
                return
            await self.app(scope, receive, send)
            return
        send = with_security_headers(send)
        if problem:
            status = 400 if problem.startswith("unknown Host") else 403
            await JSONResponse({"detail": problem}, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for key, value in SECURITY_HEADERS.items():
                if key not in headers:
                    headers[key] = value
        await send(message)
    return sending


# ---- the token never reaches the log ---------------------------------------------------------

_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    return _TOKEN_IN_URL.sub(r"\1[redacted]", text)


class RedactToken(logging.Filter):
    """Rewrites `?token=...` in a record's message and arguments (uvicorn logs each request's path
    with its query string: `GET /?token=... HTTP/1.1`, `"WebSocket /ws?token=..." [accepted]`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_uvicorn_logs() -> None:
    """Install the filter on uvicorn's loggers (idempotent; call after uvicorn configured logging)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactToken) for f in logger.filters):
            logger.addFilter(RedactToken())
