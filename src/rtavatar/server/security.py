"""Who may drive the server: allowed origins and an optional bearer token (docs/PROTOCOL.md).

A pure ASGI middleware, so it sees WebSocket handshakes as well as HTTP requests.

- **Origins.** A browser names the page that makes a request in its `Origin` header; any web
  page could otherwise drive a local server (a WebSocket, or a multipart POST, which is a CORS
  "simple request" that runs without a preflight). A request that changes something (every
  WebSocket, every method but GET / HEAD / OPTIONS) with an `Origin` must come from the
  server's own origin, a loopback page, or one of `allowed_origins`. Programs (no `Origin`) pass.
- **Token.** With a token set, every `/v1/` route needs `Authorization: Bearer <token>`, or
  `?token=<token>` (a browser cannot set headers on a WebSocket); the page and its static
  files, `/healthz` and the docs stay open.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Is `host` (a name or an address, without port or brackets) this machine's loopback?"""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(origin: str) -> str:
    return urlsplit(origin).hostname or ""


class AccessGuard:
    """ASGI middleware: the origin check and the bearer token (see the module docstring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str | None = None,
                 allowed_origins: tuple[str, ...] = ()) -> None:
        self.app, self.token = app, token or None
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self.refusal(scope, headers)
        if problem is None:
            return await self.app(scope, receive, send)
        status, message = problem
        log.info("refused %s %s: %s", scope["type"], scope.get("path", ""), message)
        if scope["type"] == "websocket":
            await receive()  # the connect event; closing before accept refuses the handshake (HTTP 403)
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"type": "error", "error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: dict[str, Any], headers: dict[str, str]) -> tuple[int, str] | None:
        """(HTTP status, reason) when the request may not pass, else None."""
        path = scope.get("path", "")
        changes = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        origin = headers.get("origin")
        if changes and origin is not None and not self.origin_ok(origin, headers.get("host", "")):
            return 403, f"origin {origin!r} is not allowed (rtavatar serve --allowed-origin)"
        if self.token is not None and path.startswith("/v1/"):
            given = ""
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            else:
                given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, "a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)"
        return None

    def origin_ok(self, origin: str, host: str) -> bool:
        o = origin.rstrip("/").lower()
        if o in self.allowed:
            return True
        if urlsplit(o).netloc == host.lower():  # the server's own page
            return True
        return is_loopback(_host_of(o))
