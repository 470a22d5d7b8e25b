"""The console's routes: thin handlers that check the session, read through :mod:`.data`, and
render a template. Every POST checks the CSRF token first; every page is ``no-store``.

URLs carry Study Instance UIDs and outbox row ids only (as DICOMweb URLs do), never patient
names, IDs or accession numbers; filters are states, dates, AE titles and verdicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from scp_node.config import Settings
from scp_node.store.db import Database
from scp_node.store.index import InstanceIndex
from scp_node.store.outbox import DEAD, Outbox
from scp_node.web.console import auth, pages
from scp_node.web.console.auth import COOKIE_PATH, PRE_COOKIE, SESSION_COOKIE, Session, Sessions
from scp_node.web.console.render import Renderer

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_FORM_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class ConsoleContext:
    """What the console needs from the node."""

    settings: Settings
    db: Database
    index: InstanceIndex
    ready: Callable[[], bool]
    engine: Callable[[], Any]
    sessions: Sessions
    renderer: Renderer


def add_console(
    app: FastAPI,
    settings: Settings,
    db: Database,
    index: InstanceIndex,
    ready: Callable[[], bool],
    engine: Callable[[], Any] | None = None,
) -> ConsoleContext:
    """Mount ``/console`` (pages) and ``/console/static`` (vendored CSS and JS) on ``app``."""
    ctx = ConsoleContext(
        settings=settings,
        db=db,
        index=index,
        ready=ready,
        engine=engine or (lambda: None),
        sessions=Sessions(settings.console.session_hours * 3600.0),
        renderer=Renderer(settings),
    )
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(_router(ctx), prefix="/console")
    return ctx


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _forget(response: Response, name: str, request: Request) -> None:
    """Delete a console cookie (with the flags it was set with)."""
    response.delete_cookie(
        name, path=COOKIE_PATH, secure=_secure(request), httponly=True, samesite="strict"
    )


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _session(ctx: ConsoleContext, request: Request) -> tuple[str, Session] | None:
    sid = request.cookies.get(SESSION_COOKIE, "")
    session = ctx.sessions.get(sid)
    return (sid, session) if session is not None else None


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (first value of each field); None when too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _forbidden(ctx: ConsoleContext, why: str) -> HTMLResponse:
    log.warning("console POST refused: %s", why)
    return _html(ctx.renderer.page("error.html", None, title="Forbidden", message=why), 403)


async def _checked_post(
    ctx: ConsoleContext, request: Request
) -> tuple[Session, dict[str, str]] | HTMLResponse:
    """The session and form of a POST with a valid CSRF token, or the 403 page."""
    found = _session(ctx, request)
    form = await _form(request)
    if found is None:
        return _forbidden(ctx, "not signed in (or the session expired): sign in again")
    if form is None or not auth.tokens_equal(form.get("csrf", ""), found[1].csrf):
        return _forbidden(ctx, "missing or wrong CSRF token: reload the page and try again")
    return found[1], form


def _router(ctx: ConsoleContext) -> APIRouter:
    router = APIRouter()
    render = ctx.renderer

    def signed_in(request: Request) -> Session | None:
        found = _session(ctx, request)
        return found[1] if found else None

    @router.get("")
    @router.get("/")
    def home() -> Response:
        return _redirect("/console/studies")

    @router.get("/sign-in")
    def sign_in_form(request: Request) -> Response:
        if auth.is_locked(ctx.settings):
            return _html(render.page("locked.html", None, title="Console locked"), 403)
        if signed_in(request) is not None:
            return _redirect("/console/studies")
        return _sign_in_page(ctx, request, "", 200)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        pre = request.cookies.get(PRE_COOKIE, "")
        if form is None or not auth.tokens_equal(form.get("csrf", ""), pre):
            return _forbidden(ctx, "missing or wrong CSRF token: reload the sign-in page")
        if auth.is_locked(ctx.settings):
            return _html(render.page("locked.html", None, title="Console locked"), 403)
        host = request.client.host if request.client else "?"
        if ctx.sessions.throttled(host):
            auth.on_sign_in(False, "", _peer(request), "too many failed sign-ins")
            return _sign_in_page(ctx, request, "Too many failed sign-ins: wait a few minutes.", 429)
        user = auth.check_password(ctx.settings, form.get("password", ""))
        if user is None:
            ctx.sessions.failed(host)
            auth.on_sign_in(False, "", _peer(request), "wrong password")
            return _sign_in_page(ctx, request, "Wrong password.", 401)
        auth.on_sign_in(True, user, _peer(request))
        sid, _ = ctx.sessions.create(user)
        response = _redirect("/console/studies")
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=int(ctx.settings.console.session_hours * 3600),
            path=COOKIE_PATH,
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        _forget(response, PRE_COOKIE, request)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        checked = await _checked_post(ctx, request)
        if isinstance(checked, HTMLResponse):
            return checked
        ctx.sessions.end(request.cookies.get(SESSION_COOKIE))
        auth.on_sign_out(checked[0].user, _peer(request))
        response = _redirect("/console/sign-in")
        _forget(response, SESSION_COOKIE, request)
        return response

    async def show(request: Request, build: Callable[..., pages.Page], **params: Any) -> Response:
        """A GET page: to the sign-in without a session, else ``build``'s template (built in a
        worker thread: SQLite and file reads block)."""
        session = signed_in(request)
        if session is None:
            return _redirect("/console/sign-in")
        template, values = await run_in_threadpool(build, ctx, request, **params)
        if template == pages.NOT_FOUND:
            return _html(render.page("error.html", session, **values), 404)
        return _html(render.page(template, session, **values))

    @router.get("/studies")
    async def studies(request: Request) -> Response:
        return await show(request, pages.studies)

    @router.get("/studies/{study_uid}")
    async def study(request: Request, study_uid: str) -> Response:
        return await show(request, pages.study, study_uid=study_uid)

    @router.get("/studies/{study_uid}/overlay.png")
    async def overlay(request: Request, study_uid: str) -> Response:
        if signed_in(request) is None:
            return Response(status_code=403, headers=SECURITY_HEADERS)
        png = await run_in_threadpool(pages.overlay_png, ctx, study_uid)
        if png is None:
            return Response(status_code=404, headers=SECURITY_HEADERS)
        return Response(png, media_type="image/png", headers=SECURITY_HEADERS)

    @router.get("/outbox")
    async def outbox(request: Request) -> Response:
        return await show(request, pages.outbox)

    @router.post("/outbox/{row_id}/retry")
    async def retry_one(request: Request, row_id: int) -> Response:
        checked = await _checked_post(ctx, request)
        if isinstance(checked, HTMLResponse):
            return checked
        ids = await run_in_threadpool(_retry, ctx, row_id)
        log.info("console: %s retried outbox row(s) %s", checked[0].user, ids)
        return _redirect(f"/console/outbox?retried={len(ids)}")

    @router.post("/outbox/retry-dead")
    async def retry_dead(request: Request) -> Response:
        checked = await _checked_post(ctx, request)
        if isinstance(checked, HTMLResponse):
            return checked
        ids = await run_in_threadpool(_retry, ctx, None)
        log.info("console: %s retried %d dead letter(s)", checked[0].user, len(ids))
        return _redirect(f"/console/outbox?retried={len(ids)}")

    @router.get("/system")
    async def system(request: Request) -> Response:
        return await show(request, pages.system)

    @router.get("/charts")
    async def charts(request: Request) -> Response:
        return await show(request, pages.charts)

    return router


def _retry(ctx: ConsoleContext, row_id: int | None) -> list[int]:
    """Dead letters back to ``pending``, due now (the running outbox worker sends them)."""
    outbox = Outbox(ctx.db)
    if row_id is None:
        return outbox.retry(dead=True)
    row = outbox.get(row_id)
    if row is None or row.state != DEAD:  # only dead letters (never held shadow-mode rows)
        return []
    return outbox.retry(row_id=row_id)


def _sign_in_page(ctx: ConsoleContext, request: Request, error: str, status: int) -> Response:
    token = request.cookies.get(PRE_COOKIE) or auth.new_token()
    response = _html(
        ctx.renderer.page("sign_in.html", None, title="Sign in", error=error, csrf=token), status
    )
    response.set_cookie(
        PRE_COOKIE,
        token,
        max_age=3600,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response
