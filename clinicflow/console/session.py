"""Who is using the console: the session cookie, its CSRF token, and the principal behind it.

A login hands the console a bearer token the API already trusts (an API key or an OAuth2/SMART JWT). The
cookie holds that token encrypted and signed (Fernet, with a key derived from `console_session_key`), and
a random nonce. Every request verifies the token again through the API's own `authenticate`, so a revoked
key or an expired JWT ends the session at once. The cookie is HttpOnly, SameSite=Lax and Secure when the
request came over TLS. Each form carries a CSRF token, an HMAC of the session's nonce; a POST without the
right one is refused (403). A request that sends its own `Authorization: Bearer` header (a script, not a
browser session) needs no cookie and no CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from fastapi import HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from clinicflow.api.access import authenticate
from clinicflow.api.auth import Principal
from clinicflow.api.services import services

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "LoginRequiredError",
    "Session",
    "SessionCodec",
    "Visitor",
    "checked_form",
    "codec",
    "new_session",
    "set_session_cookie",
    "visitor",
]

COOKIE = "cf_console"
CSRF_FIELD = "csrf_token"
_MAX_FORM_FIELDS = 200


class LoginRequiredError(Exception):
    """No session (or an expired one): pages send the browser to the login form."""


@dataclass(frozen=True)
class Session:
    """What the cookie holds: a nonce (the CSRF token's seed) and, once logged in, the bearer token."""

    nonce: str
    token: str | None = None


class SessionCodec:
    """Seals sessions into cookie values and derives their CSRF tokens, with keys from one secret."""

    def __init__(self, secret: str | None, ttl_s: float) -> None:
        material = (secret or secrets.token_urlsafe(32)).encode()
        fernet_key = hashlib.sha256(b"clinicflow console session\x00" + material).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(fernet_key))
        self._csrf_key = hashlib.sha256(b"clinicflow console csrf\x00" + material).digest()
        self.ttl_s = ttl_s

    def dump(self, session: Session) -> str:
        body = json.dumps({"n": session.nonce, "t": session.token}, separators=(",", ":"))
        return self._fernet.encrypt(body.encode()).decode()

    def load(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when absent, tampered with, or older than the TTL."""
        if not value:
            return None
        try:
            body = json.loads(self._fernet.decrypt(value.encode(), ttl=int(self.ttl_s)))
        except (InvalidToken, ValueError):
            return None
        nonce, token = body.get("n"), body.get("t")
        if not isinstance(nonce, str) or not (token is None or isinstance(token, str)):
            return None
        return Session(nonce=nonce, token=token)

    def csrf(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(session), str(given))


def codec(request: Request) -> SessionCodec:
    """The app's session codec, made on first use from the service settings."""
    found: SessionCodec | None = getattr(request.app.state, "console_codec", None)
    if found is None:
        settings = services(request).settings
        secret = settings.console_session_key.get_secret_value() if settings.console_session_key else None
        found = SessionCodec(secret, settings.console_session_hours * 3600)
        request.app.state.console_codec = found
    return found


def new_session(token: str | None = None) -> Session:
    return Session(nonce=secrets.token_urlsafe(18), token=token)


def set_session_cookie(request: Request, response: Response, session: Session | None) -> None:
    """Set (or, for None, clear) the session cookie on a response."""
    secure = request.url.scheme == "https"
    if session is None:
        response.delete_cookie(COOKIE, path="/console", secure=secure, httponly=True, samesite="lax")
        return
    response.set_cookie(
        COOKIE,
        codec(request).dump(session),
        max_age=int(codec(request).ttl_s),
        path="/console",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def current_session(request: Request) -> Session | None:
    return codec(request).load(request.cookies.get(COOKIE))


@dataclass(frozen=True)
class Visitor:
    """A verified console user: the principal, and the session it came with (None: a bearer header)."""

    principal: Principal
    session: Session | None
    csrf: str | None

    @property
    def subject(self) -> str:
        return self.principal.subject


async def verify_token(request: Request, token: str) -> Principal:
    """The principal of a bearer token, verified (and failures audited) exactly as the API does."""
    return await authenticate(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))


async def visitor(request: Request) -> Visitor:
    """The console user of this request; `LoginRequiredError` without a valid session or bearer header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        principal = await verify_token(request, token.strip())
        return _readable(Visitor(principal, None, None))
    session = current_session(request)
    if session is None or not session.token:
        raise LoginRequiredError
    try:
        principal = await verify_token(request, session.token)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginRequiredError from None
        raise
    return _readable(Visitor(principal, session, codec(request).csrf(session)))


def _readable(found: Visitor) -> Visitor:
    if not found.principal.grants.read and not found.principal.grants.audit:
        raise HTTPException(403, "this token has neither the `read` nor the `audit` scope")
    return found


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


async def checked_form(request: Request, session: Session | None) -> dict[str, str]:
    """The posted form's fields, after the CSRF check: 403 unless the token matches the session's (a
    request authenticated by its own bearer header, `session` None, carries no ambient credential)."""
    form = await request.form(max_fields=_MAX_FORM_FIELDS, max_files=0)
    fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    if session is not None and (
        not _same_origin(request) or not codec(request).csrf_ok(session, fields.get(CSRF_FIELD))
    ):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return fields
