"""The gate in front of every route: body size, JSON-only state changes, login and role.

One ASGI middleware, so a route added later is guarded like the others:

- bodies larger than ``max_body`` bytes: 413, before any route sees them;
- POST, PUT and PATCH must send ``Content-Type: application/json`` (415): an HTML form
  on another site can send form-encoded bodies, never JSON, so no state changes through
  forms; a request whose ``Origin`` is another site is refused (403);
- with an ``Authenticator``: every route needs a session cookie or a bearer token (401;
  ``GET /`` answers 401 with the console page, which shows its login form), and every
  method other than GET and HEAD needs the operator role (403). Only logging in
  (``POST /api/session``) is open, and it answers 401 to wrong credentials.

The authenticated user is ``request.state.principal`` (None without authentication).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from analytics.console.auth import Authenticator, Principal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "runhours_session"
MAX_BODY = 64 * 1024
READ_METHODS = {"GET", "HEAD"}
JSON_METHODS = {"POST", "PUT", "PATCH"}
LOGIN = ("POST", "/api/session")


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, status: int, detail: str, **headers: str) -> None:
    extra = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await _answer(send, status, json.dumps({"detail": detail}).encode(), headers=extra)


def bearer(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def session_id(headers: dict[str, str]) -> str | None:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel else None


class Guard:
    """ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        auth: Authenticator | None,
        login_page: Callable[[], bytes],
        max_body: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.auth = auth
        self.login_page = login_page
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin and origin.split("://", 1)[-1] != headers.get("host"):
            await _refuse(send, 403, f"cross-site request from {origin} refused")
            return
        if method in JSON_METHODS:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                await _refuse(send, 415, "send the body as JSON (Content-Type: application/json)")
                return
        declared = headers.get("content-length", "0")
        fits = declared.isdigit() and int(declared) <= self.max_body
        body = await self._read_body(receive) if fits else None
        if body is None:
            await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
            return
        principal: Principal | None = None
        if self.auth is not None and (method, path) != LOGIN:
            principal = self._principal(headers)
            if principal is None:
                if method in READ_METHODS and path == "/":  # the page shows its login form
                    await _answer(send, 401, self.login_page(), "text/html; charset=utf-8")
                else:
                    await _refuse(
                        send,
                        401,
                        "log in first: POST /api/session {user, password}, or send "
                        "Authorization: Bearer <token> (runhours users token NAME)",
                        www_authenticate='Bearer realm="runhours"',
                    )
                return
            if method not in READ_METHODS and path != "/api/session" and not principal.operator:
                await _refuse(send, 403, f"{principal.name} is a viewer; this needs an operator")
                return
        scope.setdefault("state", {})["principal"] = principal
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it exceeds ``max_body``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _principal(self, headers: dict[str, str]) -> Principal | None:
        assert self.auth is not None
        token = bearer(headers)
        if token is not None:
            return self.auth.check_token(token)
        session = session_id(headers)
        return self.auth.check_session(session) if session else None
