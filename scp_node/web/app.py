"""The node's HTTP application: DICOMweb (STOW-RS, QIDO-RS, WADO-RS; PS3.18 §10) under
``http.root``, plus ``/healthz``, ``/readyz`` and ``/metrics`` without authentication, and the
operator console at ``/console`` (:mod:`scp_node.web.console`, its own sign-in).

Route handlers only translate HTTP to the helpers (:mod:`.stow`, :mod:`.qido`,
:mod:`.wado`) and back; blocking work (spool, SQLite, file reads) runs in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from scp_node.config import Settings
from scp_node.ingest.receiver import Origin, Receiver
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex, QueryMatch
from scp_node.web.auth import bearer_guard
from scp_node.web.dicom_json import MEDIA_TYPE, dumps, stow_response
from scp_node.web.multipart import MultipartError, parse_media_type
from scp_node.web.qido import BadQuery, Level, parse_query, search
from scp_node.web.stow import (
    StowLimits,
    StowResult,
    StowSession,
    TooLarge,
    on_complete_caller,
)
from scp_node.web.wado import (
    content_type,
    find,
    metadata_list,
    multipart_body,
    negotiate,
    new_boundary,
)

log = logging.getLogger(__name__)

#: Optional request header naming the sender's AE title (recorded as the instance's calling AE).
CALLING_AE_HEADER = "x-calling-ae-title"
#: After a 413 mid-body, at most this many further bytes are read (and discarded).
DRAIN_LIMIT = 16 * 2**20


@dataclass
class WebContext:
    """What the routes need from the node."""

    settings: Settings
    receiver: Receiver
    index: InstanceIndex
    db: Database
    ready: Callable[[], bool]
    on_stow_complete: Callable[[StowResult], None]

    @property
    def root(self) -> str:
        path = self.settings.http.root.strip("/")
        return f"/{path}" if path else ""

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + self.root

    def db_ok(self) -> bool:
        try:
            self.db.connection().execute("SELECT 1 FROM instances LIMIT 1").fetchall()
            return True
        except Exception:
            return False


def create_app(
    settings: Settings,
    receiver: Receiver,
    index: InstanceIndex,
    db: Database,
    ready: Callable[[], bool] | None = None,
    on_stow_complete: Callable[[set[str]], None] | None = None,
    engine: Callable[[], Any] | None = None,
) -> FastAPI:
    """Build the app. ``ready`` says whether the DICOM listener is up (for ``/readyz``);
    ``on_stow_complete(study_uids)`` is called after each STOW-RS request that stored anything;
    ``engine()`` is the model engine loaded in this process, if any (the console shows it)."""
    ctx = WebContext(
        settings, receiver, index, db, ready or (lambda: True), on_complete_caller(on_stow_complete)
    )
    app = FastAPI(title="scp-node", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    _add_probes(app, ctx)
    app.include_router(_dicomweb_router(ctx), prefix=ctx.root)
    if settings.console.enabled:
        from scp_node.web.console.routes import add_console

        add_console(app, settings, db, index, ctx.ready, engine)
    return app


def _add_probes(app: FastAPI, ctx: WebContext) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> Response:
        listener, index_ok = ctx.ready(), ctx.db_ok()
        body = dumps({"dicom_listener": listener, "index": index_ok})
        status = 200 if listener and index_ok else 503
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _dicom_json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _dicomweb_router(ctx: WebContext) -> APIRouter:
    router = APIRouter(dependencies=[Depends(bearer_guard(ctx.settings.http))])
    http = ctx.settings.http
    limits = StowLimits(max_bytes=http.max_request_mb * 2**20, max_parts=http.max_parts)

    # --- STOW-RS (PS3.18 §10.5) ---

    async def stow(request: Request, study: str | None) -> Response:
        boundary = _check_stow_request(request, limits)
        busy = ctx.receiver.admit() if ctx.receiver.admit is not None else None
        if busy:  # back-pressure, like 0xA700 on C-STORE: nothing read, nothing stored
            log.warning("STOW-RS refused with 503: %s", busy)
            return Response(busy, status_code=503, headers={"Retry-After": "30"})
        client = request.client
        calling_ae = request.headers.get(CALLING_AE_HEADER, "").strip()
        if calling_ae and not is_ae_title(calling_ae):
            raise HTTPException(
                400, f"{CALLING_AE_HEADER} is not an AE title (PS3.5 §6.2: 1-16 printable ASCII)"
            )
        origin = Origin(
            calling_ae=calling_ae,
            peer=f"{client.host}:{client.port}" if client else "",
            source="stow",
        )
        session = StowSession(ctx.receiver, origin, study, limits, ctx.receiver.spool.tmp_dir)
        base = ctx.base_url(request)
        stream = request.stream()
        try:
            result = await session.run(boundary, stream)
        except TooLarge as exc:
            log.warning("STOW-RS from %s refused with 413: %s", origin.peer, exc.reason)
            await _drain(stream, DRAIN_LIMIT)
            body = stow_response(exc.result.stored, exc.result.failed, base, study)
            return _dicom_json(body, 413, {"Connection": "close"})
        except MultipartError as exc:
            raise HTTPException(400, f"body is not multipart DICOM: {exc}") from exc
        except ClientDisconnect:
            log.warning(
                "STOW-RS from %s: client disconnected mid-body; %d stored, %d failed before "
                "(those stay stored), the part in flight discarded",
                origin.peer,
                len(session.result.stored),
                len(session.result.failed),
            )
            await run_in_threadpool(ctx.on_stow_complete, session.result)
            return Response(status_code=400)  # nobody reads it
        if not result.stored and not result.failed:
            raise HTTPException(400, "multipart body has no parts")
        log.log(
            logging.WARNING if result.failed else logging.INFO,
            "STOW-RS from %s: %d stored, %d failed%s",
            origin.peer,
            len(result.stored),
            len(result.failed),
            f" ({result.failure_summary})" if result.failed else "",
        )
        await run_in_threadpool(ctx.on_stow_complete, result)
        body = stow_response(result.stored, result.failed, base, study)
        return _dicom_json(body, result.http_status)

    @router.post("/studies")
    async def stow_studies(request: Request) -> Response:
        return await stow(request, None)

    @router.post("/studies/{study}")
    async def stow_study(request: Request, study: str) -> Response:
        return await stow(request, study)

    # --- QIDO-RS (PS3.18 §10.6) ---

    async def qido(request: Request, level: Level, path_match: QueryMatch) -> Response:
        try:
            query = parse_query(request.query_params.multi_items(), path_match)
        except BadQuery as exc:
            raise HTTPException(400, str(exc)) from exc
        results = await run_in_threadpool(search, ctx.index, level, query, ctx.base_url(request))
        headers = {}
        if query.ignored:
            host = request.url.hostname or "scp-node"
            ignored = ", ".join(query.ignored)
            headers["Warning"] = f'299 {host} "not supported for matching, ignored: {ignored}"'
        if not results:  # PS3.18 §8.3.4.4.1: no match is 204 with an empty payload
            return Response(status_code=204, headers=headers)
        return _dicom_json(results, headers=headers)

    @router.get("/studies")
    async def search_studies(request: Request) -> Response:
        return await qido(request, Level.STUDY, QueryMatch())

    @router.get("/series")
    async def search_all_series(request: Request) -> Response:
        return await qido(request, Level.SERIES, QueryMatch())

    @router.get("/instances")
    async def search_all_instances(request: Request) -> Response:
        return await qido(request, Level.INSTANCE, QueryMatch())

    @router.get("/studies/{study}/series")
    async def search_series(request: Request, study: str) -> Response:
        return await qido(request, Level.SERIES, QueryMatch(study_uids=(study,)))

    @router.get("/studies/{study}/instances")
    async def search_study_instances(request: Request, study: str) -> Response:
        return await qido(request, Level.INSTANCE, QueryMatch(study_uids=(study,)))

    @router.get("/studies/{study}/series/{series}/instances")
    async def search_instances(request: Request, study: str, series: str) -> Response:
        match = QueryMatch(study_uids=(study,), series_uids=(series,))
        return await qido(request, Level.INSTANCE, match)

    # --- WADO-RS (PS3.18 §10.4) ---

    async def retrieve(request: Request, study: str, series: str = "", sop: str = "") -> Response:
        records = await run_in_threadpool(find, ctx.index, study, series, sop)
        if not records:
            raise HTTPException(404, "no such study, series or instance on this node")
        reason, inflate_to = negotiate(request.headers.get("accept"), records)
        if reason:
            raise HTTPException(406, reason)
        boundary = new_boundary()
        return StreamingResponse(
            multipart_body(records, boundary, inflate_to), media_type=content_type(boundary)
        )

    async def retrieve_metadata(study: str, series: str = "", sop: str = "") -> Response:
        records = await run_in_threadpool(find, ctx.index, study, series, sop)
        if not records:
            raise HTTPException(404, "no such study, series or instance on this node")
        return _dicom_json(await run_in_threadpool(metadata_list, ctx.index, records))

    @router.get("/studies/{study}")
    async def retrieve_study(request: Request, study: str) -> Response:
        return await retrieve(request, study)

    @router.get("/studies/{study}/metadata")
    async def study_metadata(study: str) -> Response:
        return await retrieve_metadata(study)

    @router.get("/studies/{study}/series/{series}")
    async def retrieve_series(request: Request, study: str, series: str) -> Response:
        return await retrieve(request, study, series)

    @router.get("/studies/{study}/series/{series}/metadata")
    async def series_metadata(study: str, series: str) -> Response:
        return await retrieve_metadata(study, series)

    @router.get("/studies/{study}/series/{series}/instances/{sop}")
    async def retrieve_instance(request: Request, study: str, series: str, sop: str) -> Response:
        return await retrieve(request, study, series, sop)

    @router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
    async def instance_metadata(study: str, series: str, sop: str) -> Response:
        return await retrieve_metadata(study, series, sop)

    return router


async def _drain(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and discard up to ``limit`` more body bytes so a client that sends its whole body
    before reading the answer still sees the 413; past that the connection is closed."""
    drained = 0
    async for chunk in stream:
        drained += len(chunk)
        if drained > limit:
            return


def is_ae_title(value: str) -> bool:
    """1-16 characters of printable ASCII without backslash (PS3.5 §6.2, VR AE)."""
    return 0 < len(value) <= 16 and all(" " <= c <= "~" and c != "\\" for c in value)


def _check_stow_request(request: Request, limits: StowLimits) -> str:
    """The multipart boundary of a STOW-RS request, or the HTTP error it earns (415/400/413)."""
    media = parse_media_type(request.headers.get("content-type", ""))
    if media.value != "multipart/related":
        raise HTTPException(415, 'STOW-RS needs multipart/related; type="application/dicom"')
    part_type = media.params.get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise HTTPException(415, f"type {part_type!r} is not supported; use application/dicom")
    boundary = media.params.get("boundary", "")
    if not boundary:
        raise HTTPException(400, "multipart/related without a boundary parameter")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_bytes:
        raise HTTPException(413, f"body of {length} bytes exceeds {limits.max_bytes}")
    return boundary
