"""HTTP Basic authentication of sending systems and operators.

When ``auth.required`` is on, every endpoint but health, metrics and the sandboxes needs a known
client; credentials that are sent are always checked (a wrong password is a 401 even when
authentication is optional). The client name is kept on the request for the transaction log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from mediator.config import AuthConfig

CLIENT = web.RequestKey("client", str)  # the authenticated client's name, set on the request

OPEN_PREFIXES = ("/healthz", "/readyz", "/metrics", "/shr/", "/sandbox/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _decode(header: str) -> tuple[str, str] | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def auth_middleware(cfg: AuthConfig) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    passwords = {c.username: c.password.encode() for c in cfg.clients}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(OPEN_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None:
            if cfg.required:
                return _unauthorized("authentication required")
            return await handler(request)
        creds = _decode(header)
        expected = passwords.get(creds[0]) if creds else None
        if creds is None or expected is None or not hmac.compare_digest(expected, creds[1].encode()):
            return _unauthorized("unknown client or wrong password")
        request[CLIENT] = creds[0]
        return await handler(request)

    return middleware


def _unauthorized(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=401, headers={"WWW-Authenticate": 'Basic realm="mediator"'})
