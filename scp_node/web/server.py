"""The HTTP service: uvicorn serving :func:`scp_node.web.app.create_app` in a background thread.

The listening socket is bound in :meth:`HttpService.start` (so a taken port fails the node's start,
and port 0 gives a free port, see :attr:`HttpService.port`); TLS is on when both
``http.tls_cert_file`` and ``http.tls_key_file`` are set.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from scp_node.audit import audit_requests
from scp_node.config import Settings
from scp_node.ingest.receiver import Receiver
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.web.app import create_app
from scp_node.web.auth import is_locked
from scp_node.web.console.auth import is_locked as console_locked
from scp_node.web.guard import CloseAmbiguousFraming, guarded_protocol

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class HttpService:
    """start()/stop() like the node's other services; ``on_stow_complete`` may be set later."""

    def __init__(
        self,
        settings: Settings,
        receiver: Receiver,
        index: InstanceIndex,
        db: Database,
        listener: Any = None,
        on_stow_complete: Callable[[set[str]], None] | None = None,
        engine: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.on_stow_complete = on_stow_complete
        self.app = create_app(
            settings,
            receiver,
            index,
            db,
            ready=self._listener_up,
            on_stow_complete=self._stow_done,
            engine=engine,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def _listener_up(self) -> bool:
        """Whether the DICOM listener's socket is open (always True without a listener)."""
        if self.listener is None:
            return True
        return bool(self.listener.is_running)

    def _stow_done(self, study_uids: set[str]) -> None:
        if self.on_stow_complete is not None:
            self.on_stow_complete(study_uids)

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the free one chosen for port 0)."""
        if self._socket is not None:
            return int(self._socket.getsockname()[1])
        return self.settings.http.port

    @property
    def tls(self) -> bool:
        http = self.settings.http
        return http.tls_cert_file is not None and http.tls_key_file is not None

    def start(self) -> None:
        http = self.settings.http
        family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((http.host, http.port))
        sock.listen(128)
        sock.set_inheritable(True)
        self._socket = sock
        config = uvicorn.Config(
            CloseAmbiguousFraming(audit_requests(self.app, http.root)),
            http=guarded_protocol(http.header_timeout_s),
            host=http.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            ssl_certfile=str(http.tls_cert_file) if self.tls else None,
            ssl_keyfile=str(http.tls_key_file) if self.tls else None,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"HTTP server did not start on {http.host}:{http.port}")
            time.sleep(0.01)
        scheme = "https" if self.tls else "http"
        log.info("HTTP on %s://%s:%d (DICOMweb at %s)", scheme, http.host, self.port, http.root)
        if is_locked(http):
            log.warning(
                "DICOMweb is locked: http.auth is 'token' but http.token is not set; every "
                "DICOMweb request gets 401 until a token is configured (/healthz, /readyz and "
                "/metrics stay open)"
            )
        elif http.auth == "none":
            log.warning("DICOMweb authentication is off (http.auth = 'none')")
        if self.settings.console.enabled and console_locked(self.settings):
            log.warning(
                "the console (/console) is locked: set console.password (or http.token) to sign in"
            )

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None
