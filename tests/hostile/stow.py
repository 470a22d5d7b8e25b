"""A STOW-RS request (PS3.18 §10.5) built by hand, for hostile-input tests."""

from __future__ import annotations

import httpx


def stow_parts(port: int, parts: list[bytes], timeout: float = 60) -> httpx.Response:
    """POST ``parts`` (raw application/dicom bodies) to the node's ``/dicom-web/studies``."""
    boundary = "b0undary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    return httpx.post(
        f"http://127.0.0.1:{port}/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        timeout=timeout,
    )
