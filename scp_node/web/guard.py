"""Guards of the HTTP server against slow or ambiguous requests (issue 13 D12).

- **Header-read deadline**: a connection must deliver a complete request line and headers within
  ``http.header_timeout_s`` of connecting (or of its first byte after a response, on a kept-alive
  connection); otherwise it is closed and logged. uvicorn's h11 protocol has no such timer, so
  300 half-sent requests would stay open for ever.
- **Ambiguous framing** (RFC 9112 §6.3): a request with both Content-Length and
  Transfer-Encoding is answered with ``Connection: close``, so the connection ends after it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_timer is None:  # a new request has begun, or is awaited
                self._arm_head_timer()
        else:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_head_timer()  # uvicorn's keep-alive timer covers the idle wait

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.warning(
                "HTTP connection from %s closed: no complete request head within %.1f s",
                peer,
                self.header_timeout_s,
            )
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` with ``header_timeout_s`` (for ``uvicorn.Config(http=...)``)."""
    return type(
        "GuardedH11ProtocolWithTimeout",
        (GuardedH11Protocol,),
        {"header_timeout_s": header_timeout_s},
    )


class CloseAmbiguousFraming:
    """ASGI middleware: ``Connection: close`` on the answer to a request that carries both
    Content-Length and Transfer-Encoding (RFC 9112 §6.3: request smuggling risk)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        names = {name.lower() for name, _ in scope.get("headers", [])}
        if not {b"content-length", b"transfer-encoding"} <= names:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        log.warning(
            "HTTP request from %s:%s has both Content-Length and Transfer-Encoding: "
            "the connection is closed after the answer",
            client[0],
            client[1],
        )

        async def send_closing(message: Any) -> None:
            if message.get("type") == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
