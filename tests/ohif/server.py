"""Same-origin web server for OHIF in tests: the prebuilt viewer plus a proxy to Orthanc DICOMweb.

Orthanc 1.10 / DICOMweb 1.7 send no CORS headers, so OHIF and the DICOMweb API must share one
origin. This server (stdlib ``http.server``, one thread per request) serves:

- ``/app-config.js``: a ``window.config`` with one DICOMweb data source on this origin;
- ``/dicom-web/...`` and ``/wado...``: proxied to Orthanc, keeping the Host header (so the
  BulkDataURIs Orthanc writes point back at this server) and splitting ``includefield=a,b`` into
  repeated parameters (DICOMweb 1.7 ignores the comma form);
- everything else from the OHIF ``dist`` folder, with unknown paths falling back to ``index.html``
  (the viewer is a single-page app).

Run alone: ``python -m tests.ohif.server DIST ORTHANC_URL [PORT]``.
"""

from __future__ import annotations

import http.client
import mimetypes
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

PROXIED = ("/dicom-web/", "/dicom-web?", "/wado")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

APP_CONFIG = """window.config = {
  routerBasename: '/',
  showStudyList: true,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  extensions: [],
  modes: [],
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'Orthanc (test PACS)',
        name: 'orthanc',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        wadoUriRoot: '/wado',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
"""


def split_includefield(query: str) -> str:
    """``includefield=a,b`` → ``includefield=a&includefield=b`` (other parameters unchanged)."""
    pairs: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() == "includefield" and "," in value:
            pairs.extend((key, part) for part in value.split(",") if part)
        else:
            pairs.append((key, value))
    return urlencode(pairs, safe=",/:")


class OhifServer:
    """Serve ``dist`` and proxy DICOMweb to ``orthanc_url`` on ``127.0.0.1:port`` (0 = any free)."""

    def __init__(self, dist: Path, orthanc_url: str, port: int = 0) -> None:
        self.dist = Path(dist).resolve()
        target = urlsplit(orthanc_url)
        self.orthanc_host = target.hostname or "127.0.0.1"
        self.orthanc_port = target.port or 80
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> OhifServer:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="ohif-http", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(5)

    def __enter__(self) -> OhifServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet: the browser makes hundreds of requests."""

            def do_GET(self) -> None:  # noqa: N802
                self._dispatch()

            def do_HEAD(self) -> None:  # noqa: N802
                self._dispatch()

            def do_POST(self) -> None:  # noqa: N802
                self._dispatch()

            def _dispatch(self) -> None:
                path = urlsplit(self.path).path
                if self.path.startswith(PROXIED) or path == "/dicom-web":
                    self._proxy()
                elif path == "/app-config.js":
                    self._send(200, APP_CONFIG.encode(), "application/javascript")
                else:
                    self._static(path)

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _static(self, path: str) -> None:
                candidate = (server.dist / path.lstrip("/")).resolve()
                inside = candidate.is_relative_to(server.dist)
                if not (inside and candidate.is_file()):
                    candidate = server.dist / "index.html"  # SPA fallback
                content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
                if candidate.suffix == ".wasm":
                    content_type = "application/wasm"
                self._send(200, candidate.read_bytes(), content_type)

            def _proxy(self) -> None:
                parts = urlsplit(self.path)
                target = parts.path + (f"?{split_includefield(parts.query)}" if parts.query else "")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP
                }  # Host kept: Orthanc builds BulkDataURIs from it
                conn = http.client.HTTPConnection(
                    server.orthanc_host, server.orthanc_port, timeout=60
                )
                try:
                    conn.request(self.command, target, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                except OSError as exc:
                    self._send(502, str(exc).encode(), "text/plain")
                    return
                finally:
                    conn.close()
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler


def main(argv: list[str]) -> None:
    """Serve until interrupted (for trying the viewer by hand)."""
    dist, orthanc = Path(argv[1]), argv[2]
    port = int(argv[3]) if len(argv) > 3 else 3000
    with OhifServer(dist, orthanc, port) as srv:
        print(f"OHIF on {srv.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv)
