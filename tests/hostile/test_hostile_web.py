"""Hostile DICOMweb requests (issue 13): every answer is a deliberate 4xx, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from scp_node.node import Node
from tests.conftest import node_settings, run_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    settings = node_settings(tmp_path_factory.mktemp("hostile-web"), http={"port": 0})
    with run_node(settings) as running:
        yield running


@pytest.fixture(scope="module")
def base(node: Node) -> str:
    return f"http://127.0.0.1:{node.http.port}/dicom-web"


@pytest.mark.parametrize(
    "query",
    [
        "offset=99999999999999999999",
        "offset=9223372036854775808",
        "offset=-1",
        "offset=1e3",
        "offset=%E2%91%A0",  # a Unicode digit
        "limit=99999999999999999999",
        "limit=-5",
        "limit=abc",
        "offset=" + "9" * 5000,
        "StudyInstanceUID=" + ",".join(f"1.2.{i}" for i in range(1001)),
        "PatientID=" + "A" * 300,
    ],
    ids=lambda q: q[:30],
)
@pytest.mark.parametrize("level", ["studies", "series", "instances"])
def test_qido_out_of_range_parameters_are_400(base: str, level: str, query: str) -> None:
    """D6: out-of-range or malformed QIDO-RS parameters get 400 with a reason, never 500."""
    answer = httpx.get(f"{base}/{level}?{query}", timeout=10)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]


def test_qido_in_range_paging_still_works(base: str) -> None:
    for query in ("offset=0", "offset=1000000000", "limit=1000&offset=5", "limit=0"):
        assert httpx.get(f"{base}/studies?{query}", timeout=10).status_code in (200, 204)


def test_half_sent_request_heads_are_closed(
    tmp_path_factory: pytest.TempPathFactory, caplog
) -> None:
    """D12: 50 connections that send half a request head are closed after
    ``http.header_timeout_s`` (1 s here) and logged; a real request still gets through."""
    import logging
    import socket
    import time

    settings = node_settings(
        tmp_path_factory.mktemp("heads"), http={"port": 0, "header_timeout_s": 1.0}
    )
    caplog.set_level(logging.WARNING, logger="scp_node.web.guard")
    with run_node(settings) as running:
        port = running.http.port
        socks = []
        try:
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                socks.append(sock)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            time.sleep(1.5)
            closed = 0
            for sock in socks:
                sock.settimeout(2)
                try:
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed == 50
        finally:
            for sock in socks:
                sock.close()
    assert any("no complete request head" in r.getMessage() for r in caplog.records)


def test_content_length_with_transfer_encoding_closes_the_connection(base: str) -> None:
    """D12: RFC 9112 §6.3: both framing headers: answered, then the connection is closed."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(base)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk  # returns b"" only when the node closes the connection
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 4")
    assert b"connection: close" in head
