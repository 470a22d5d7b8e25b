"""Jinja2 templates of the console (packaged in ``templates/``), autoescaped, with the filters
the pages use for times and numbers."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from scp_node import __version__
from scp_node.config import Settings
from scp_node.web.console.auth import Session


def when(ts: float | None) -> str:
    """Local time of a Unix time, to the second; ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")


def span(start: float | None, end: float | None) -> str:
    """``end - start`` in seconds, one decimal; empty when either is missing."""
    if start is None or end is None:
        return ""
    return f"+{max(0.0, end - start):.1f} s"


def number(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def short_uid(uid: str, keep: int = 28) -> str:
    """A long UID cut in the middle for tables (the full one goes in a ``title``)."""
    return uid if len(uid) <= keep else f"{uid[: keep // 2]}…{uid[-(keep // 2) :]}"


class Renderer:
    """Renders a page template with the values every page needs (nav, CSRF token, refresh)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=PackageLoader("scp_node.web.console", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            when=when, span=span, number=number, short_uid=short_uid, path=lambda s: quote(s, "")
        )

    def page(self, template: str, session: Session | None, **values: Any) -> str:
        return self.env.get_template(template).render(
            session=session,
            csrf=session.csrf if session else values.pop("csrf", ""),
            node_version=__version__,
            ae_title=self.settings.dicom.ae_title,
            refresh_s=self.settings.console.refresh_s,
            **values,
        )
