"""Who is using the console, and proof that a form came from it.

A browser cannot send the APIs' ``Authorization`` or ``X-API-Key`` headers
on its own, so the console has a login page: the credential given there (an
API key or a bearer token) is kept in this process's memory, never in the
cookie, and checked again by ``Security`` on every request, so an expired
token or a revoked key ends the session at once. The cookie holds only a
random session id (256 bits), ``HttpOnly``, ``SameSite=Strict``, scoped to
``/console``, ``Secure`` over HTTPS.

Cross-site request forgery: every form carries the session's own random
token (the synchronizer token pattern), compared in constant time on every
POST; a POST whose ``Origin`` (or ``Sec-Fetch-Site``) names another site is
refused before that. ``SameSite=Strict`` keeps the cookie off cross-site
requests in the first place. Without authentication configured (a service
on a loopback address) the console still gives each browser a session, so
that its forms are protected the same way.

Sessions live in memory: a restart logs everyone out, and several query
processes behind one address need sticky sessions."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from eventfold.errors import AuthenticationFailed, PermissionDenied
from eventfold.security.authn import Security
from eventfold.security.principal import Principal

COOKIE = "eventfold_console"
LIFETIME = 8 * 3600.0
"""A session ends this many seconds after login, whatever the credential says."""
MAX_SESSIONS = 10_000


class Session(msgspec.Struct, kw_only=True):
    """A browser's session: its CSRF token, and once logged in, the
    credential (as request headers) and when it ends."""

    id: str
    csrf: str
    created: float
    headers: dict[str, str] = {}
    principal: Principal | None = None
    flash: str | None = None
    """A message for the next page shown (what an action did)."""

    @property
    def logged_in(self) -> bool:
        return bool(self.headers)


def credential_headers(credential: str) -> dict[str, str]:
    """The request headers that carry ``credential``: a JWT (three dot-separated
    parts) as a bearer token, anything else as an API key."""
    credential = credential.strip()
    if credential.lower().startswith("bearer "):
        credential = credential[7:].strip()
    if credential.count(".") == 2:
        return {"authorization": f"Bearer {credential}"}
    return {"x-api-key": credential}


class Sessions:
    """The console's sessions (see the module docstring)."""

    def __init__(self, security: Security | None) -> None:
        self.security = security
        self._sessions: dict[str, Session] = {}

    def new(self) -> Session:
        """A fresh session (a new id and CSRF token), not logged in."""
        self._expire()
        session = Session(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=time.monotonic()
        )
        self._sessions[session.id] = session
        return session

    def _expire(self) -> None:
        now = time.monotonic()
        for key, found in list(self._sessions.items()):
            if now - found.created > LIFETIME:
                del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]

    def get(self, cookies: Mapping[str, str]) -> Session | None:
        key = cookies.get(COOKIE)
        if not key:
            return None
        found = self._sessions.get(key)
        if found is None or time.monotonic() - found.created > LIFETIME:
            self._sessions.pop(key, None)
            return None
        return found

    async def login(self, old: Session | None, credential: str) -> Session:
        """Check ``credential`` and open a logged-in session under a new id
        (the old one, if any, ends: no session fixation). Raises
        ``AuthenticationFailed``."""
        if self.security is None:
            raise AuthenticationFailed("this service has no authentication: nothing to log in to")
        headers = credential_headers(credential)
        principal = await self.security.authenticate(headers)
        if old is not None:
            self._sessions.pop(old.id, None)
        session = self.new()
        session.headers = headers
        session.principal = principal
        return session

    def logout(self, session: Session | None) -> None:
        if session is not None:
            self._sessions.pop(session.id, None)

    async def principal(self, session: Session) -> Principal | None:
        """The session's principal, its credential checked again now
        (None when the service has no authentication). Raises
        ``AuthenticationFailed`` (and ends the session) if it no longer holds."""
        if self.security is None:
            return None
        if not session.logged_in:
            raise AuthenticationFailed("log in first")
        try:
            principal = await self.security.authenticate(session.headers)
        except AuthenticationFailed:
            self.logout(session)
            raise
        session.principal = principal
        return principal

    def allows(self, principal: Principal | None, permission: str) -> bool:
        if self.security is None:
            return True
        return principal is not None and self.security.allows(principal, permission)

    def require(self, principal: Principal | None, permission: str) -> None:
        if self.security is None:
            return
        if principal is None:
            raise PermissionDenied("anonymous", permission)
        self.security.require(principal, permission)


def check_form(
    session: Session | None, form: Mapping[str, Any], headers: Mapping[str, str]
) -> bool:
    """Whether a POST carries this session's CSRF token and comes from this site."""
    if session is None:
        return False
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    host = headers.get("host")
    if origin is not None and origin != "null" and host is not None:
        if origin.split("://", 1)[-1] != host:
            return False
    elif origin == "null":
        return False
    given = form.get("csrf")
    return isinstance(given, str) and hmac.compare_digest(given, session.csrf)
