"""Console sign-in: credentials, server-side sessions, CSRF tokens, and a sign-in throttle.

- **Credentials**: ``console.password`` and, when set, the DICOMweb ``http.token``. With neither
  the console is locked (every page says how to unlock it), like DICOMweb without a token.
- **Sessions** live in this process only (a restart signs everyone out): the cookie holds a random
  id, never a credential. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console`` and
  ``Secure`` whenever the request came over HTTPS.
- **CSRF**: every POST carries the session's token in a hidden ``csrf`` field (synchronizer
  token); the sign-in form carries one tied to a short-lived pre-session cookie (double submit).
  A POST without the right token is answered 403.
- :func:`on_sign_in` / :func:`on_sign_out` are the one place every sign-in attempt and sign-out
  passes: they log (no secrets, no PHI) and emit the audit trail's User Authentication event
  (PS3.15 A.5.3.12); further hooks can attach with :func:`add_sign_in_hook`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from scp_node import audit
from scp_node.config import Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "scp_console"
PRE_COOKIE = "scp_console_pre"
COOKIE_PATH = "/console"
MAX_SESSIONS = 256
#: Failed sign-ins from one address within :data:`FAIL_WINDOW_S` before it must wait.
MAX_FAILURES = 10
FAIL_WINDOW_S = 300.0

#: Called after every sign-in attempt: (ok, user, peer). The audit trail hooks in here.
SignInHook = Callable[[bool, str, str], None]
_hooks: list[SignInHook] = []


def add_sign_in_hook(hook: SignInHook) -> None:
    """Register ``hook(ok, user, peer)`` for every console sign-in attempt (e.g. audit events)."""
    _hooks.append(hook)


def _host(peer: str) -> str:
    """The address of a ``host:port`` peer."""
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


def on_sign_in(ok: bool, user: str, peer: str, why: str = "") -> None:
    """A console sign-in attempt happened: log it, audit it and tell the hooks (never raises)."""
    if ok:
        log.info("console sign-in by %s from %s", user, peer)
    else:
        log.warning("console sign-in refused from %s%s", peer, f": {why}" if why else "")
    audit.user_authentication(
        user or "console", ok, _host(peer), description="" if ok else why or "refused"
    )
    for hook in list(_hooks):
        try:
            hook(ok, user, peer)
        except Exception:  # an audit failure must not break the sign-in
            log.exception("console sign-in hook failed")


def on_sign_out(user: str, peer: str) -> None:
    """A console user signed out: log and audit it."""
    log.info("console sign-out by %s from %s", user, peer)
    audit.user_authentication(user, True, _host(peer), logout=True)


def credentials(settings: Settings) -> dict[str, bytes]:
    """Who may sign in: ``{user: secret}`` from ``console.password`` and ``http.token``."""
    found: dict[str, bytes] = {}
    if settings.console.password is not None and settings.console.password.get_secret_value():
        found["console"] = settings.console.password.get_secret_value().encode("utf-8")
    if settings.http.token is not None and settings.http.token.get_secret_value():
        found["dicomweb-token"] = settings.http.token.get_secret_value().encode("utf-8")
    return found


def is_locked(settings: Settings) -> bool:
    """No credential is configured: nobody can sign in."""
    return not credentials(settings)


def check_password(settings: Settings, presented: str) -> str | None:
    """The user whose secret ``presented`` is, or None (constant-time compares, all of them)."""
    given = presented.encode("utf-8")
    match = None
    for user, secret in credentials(settings).items():
        if hmac.compare_digest(given, secret) and match is None:
            match = user
    return match


def new_token() -> str:
    """A random token for a session id or a CSRF token (256 bits)."""
    return secrets.token_urlsafe(32)


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time equality of two tokens; empty never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Session:
    user: str
    csrf: str
    expires_at: float


class Sessions:
    """Signed-in sessions by random id (in memory; oldest evicted past :data:`MAX_SESSIONS`)."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> tuple[str, Session]:
        sid = new_token()
        session = Session(user, new_token(), self.clock() + self.lifetime_s)
        with self._lock:
            self._expire()
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires_at <= self.clock():
                del self._sessions[sid]
                return None
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            del self._sessions[sid]

    def throttled(self, peer_host: str) -> bool:
        """Too many failed sign-ins from this address lately."""
        with self._lock:
            recent = self._failures.get(peer_host)
            if not recent:
                return False
            while recent and recent[0] < self.clock() - FAIL_WINDOW_S:
                recent.popleft()
            return len(recent) >= MAX_FAILURES

    def failed(self, peer_host: str) -> None:
        with self._lock:
            if len(self._failures) > 4096:  # bounded: forget the oldest addresses
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(peer_host, deque(maxlen=MAX_FAILURES)).append(self.clock())
