"""The HTTP request being served, for the audit messages of DICOMweb (PS3.15 A.5.3.3, A.5.3.6,
A.5.3.10, A.5.3.11): an ASGI middleware puts it in a context variable that the route helpers
(run in worker threads with a copy of the context) read.

At the end of each request the middleware completes the request's STOW-RS transfers and turns a
401 under the DICOMweb root into a Security Alert.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Request header naming the client's AE title (as ``scp_node.web.app`` reads it).
CALLING_AE_HEADER = b"x-calling-ae-title"


@dataclass(frozen=True)
class RequestInfo:
    """Who asked what: client address, its AE title if it named one, the target and service."""

    host: str
    port: int | None
    calling_ae: str
    target: str  # path?query
    url: str
    service_url: str
    has_authorization: bool

    @property
    def user(self) -> str:
        """UserID of the client: its AE title when it sent one, else its address."""
        return self.calling_ae or self.host or "unknown"

    def param(self, name: str) -> str:
        query = self.target.partition("?")[2]
        for key, value in parse_qsl(query):
            if key.lower() in (name.lower(), _TAG_KEYS.get(name, "")):
                return value
        return ""


_TAG_KEYS = {"PatientID": "00100020"}

_current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "audit_request", default=None
)


def current_request() -> RequestInfo | None:
    return _current.get()


def _info(scope: Scope, root: str) -> RequestInfo:
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    client = scope.get("client") or ("", None)
    server = scope.get("server") or ("", None)
    scheme = scope.get("scheme", "http")
    host = headers.get(b"host", b"").decode("latin-1") or f"{server[0]}:{server[1]}"
    path = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    target = f"{path}?{query}" if query else path
    calling = headers.get(CALLING_AE_HEADER, b"").decode("latin-1").strip()
    return RequestInfo(
        host=str(client[0] or ""),
        port=client[1],
        calling_ae=calling[:16],
        target=target,
        url=f"{scheme}://{host}{target}",
        service_url=f"{scheme}://{host}{root}",
        has_authorization=b"authorization" in headers,
    )


def audit_requests(app: App, root: str = "/dicom-web") -> App:
    """Wrap the node's ASGI ``app`` (DICOMweb under ``root``)."""
    from scp_node.audit import hooks

    root = "/" + root.strip("/") if root.strip("/") else ""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or hooks.current() is None:
            await app(scope, receive, send)
            return
        info = _info(scope, root)
        token = _current.set(info)
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            # called here, not in a worker thread: a request cancelled by a disconnect must
            # still close its STOW-RS transfers (each call is one SQLite insert)
            _current.reset(token)
            in_root = info.target.startswith(root + "/") or info.target.split("?")[0] == root
            if in_root and status == 401:
                reason = (
                    "DICOMweb request with a wrong bearer token"
                    if info.has_authorization
                    else "DICOMweb request without a bearer token"
                )
                hooks.web_refused(reason, info)
            if scope.get("method") == "POST":
                hooks.web_request_ended(info.host, info.port, status)

    return middleware
