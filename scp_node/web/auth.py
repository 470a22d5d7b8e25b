"""Bearer-token check for the DICOMweb routes (RFC 6750; PS3.18 §6.3 leaves the scheme to the site).

``http.auth = "token"`` with no ``http.token`` configured locks DICOMweb: every request is refused
with 401 until a token is set, so a node never serves images unauthenticated by omission.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fastapi import HTTPException, Request

from scp_node.config import HttpSettings

log = logging.getLogger(__name__)

REALM = 'Bearer realm="dicom-web"'


def is_locked(settings: HttpSettings) -> bool:
    """Token auth is on but no token is configured: every DICOMweb request gets 401."""
    return settings.auth == "token" and not _secret(settings)


def _secret(settings: HttpSettings) -> bytes:
    return settings.token.get_secret_value().encode("utf-8") if settings.token else b""


def bearer_guard(settings: HttpSettings) -> Callable[[Request], None]:
    """A FastAPI dependency that raises 401 (with ``WWW-Authenticate: Bearer``) unless the
    request carries the configured token; a no-op when ``auth = "none"``."""
    secret = _secret(settings)
    auth_on = settings.auth == "token"

    def guard(request: Request) -> None:
        if not auth_on:
            return
        if not secret:
            raise HTTPException(
                401,
                "DICOMweb is locked: http.auth is 'token' but no http.token is configured",
                headers={"WWW-Authenticate": REALM},
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise HTTPException(401, "bearer token required", headers={"WWW-Authenticate": REALM})
        if not hmac.compare_digest(presented.strip().encode("utf-8"), secret):
            raise HTTPException(
                401,
                "invalid token",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )

    return guard
