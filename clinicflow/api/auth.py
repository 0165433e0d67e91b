"""Bearer-token authentication and scope checks.

Two kinds of bearer token:
- static API keys `cfk_<key id>.<secret>`: only a salted SHA-256 digest of the secret is stored;
- JWTs from an OAuth2 issuer, verified against its JWKS, `iss` and `aud` (optional, when configured).

Both carry scopes from one vocabulary (a JWT in its `scope` claim, space-separated):
    workflow:<name> | workflow:*      which workflows the token may run and read
    read | write                      read-only workflows and results; `write` adds writing workflows and
                                      approving / rejecting / editing writes (implies `read`)
    patient:<id> | patient:* | group:<id>
                                      which patients: a list, all, or members of a FHIR Group
    audit                             read the audit trail
A JWT's SMART `patient` claim adds `patient:<that id>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt

from clinicflow.api.store import ApiKeyRow, Store, utcnow
from clinicflow.fhir import FHIR_ID, FhirClient, FhirError, FhirNotFoundError
from clinicflow.fhir.references import reference_key

__all__ = [
    "API_KEY_PREFIX",
    "AuthError",
    "ForbiddenError",
    "Grants",
    "IssuedKey",
    "JwtVerifier",
    "PatientAccess",
    "Principal",
    "create_api_key",
    "hash_secret",
    "issue_api_key",
    "parse_scopes",
]

API_KEY_PREFIX = "cfk_"
_KEY_RE = re.compile(r"^cfk_([0-9a-f]{12})\.([A-Za-z0-9_\-]{20,128})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_GROUP_TTL_S = 60.0
_JWKS_MIN_REFRESH_S = 30.0


class AuthError(Exception):
    """No usable credentials (HTTP 401)."""

    def __init__(self, detail: str, reason: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


class ForbiddenError(Exception):
    """Valid credentials whose scopes do not cover the request (HTTP 403)."""

    def __init__(self, detail: str, reason: str = "scope") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


@dataclass(frozen=True)
class Grants:
    """What a set of scopes allows."""

    workflows: frozenset[str] = frozenset()
    all_workflows: bool = False
    read: bool = False
    write: bool = False
    patients: frozenset[str] = frozenset()
    all_patients: bool = False
    groups: frozenset[str] = frozenset()
    audit: bool = False

    def may_run(self, workflow: str) -> bool:
        return self.all_workflows or workflow in self.workflows


def parse_scopes(scopes: Iterable[str], *, strict: bool = True) -> Grants:
    """Grants from scope strings; with `strict`, an unknown or malformed scope raises `ValueError`."""
    workflows: set[str] = set()
    patients: set[str] = set()
    groups: set[str] = set()
    flags = {"all_workflows": False, "read": False, "write": False, "all_patients": False, "audit": False}
    for scope in scopes:
        kind, sep, value = scope.partition(":")
        if not sep and kind in ("read", "write", "audit"):
            flags[kind] = True
            if kind == "write":
                flags["read"] = True
        elif kind == "workflow" and value == "*":
            flags["all_workflows"] = True
        elif kind == "workflow" and _NAME_RE.match(value):
            workflows.add(value)
        elif kind == "patient" and value == "*":
            flags["all_patients"] = True
        elif kind == "patient" and FHIR_ID.match(value):
            patients.add(value)
        elif kind == "group" and FHIR_ID.match(value):
            groups.add(value)
        elif strict:
            raise ValueError(
                f"unknown scope {scope!r}; use workflow:<name>|*, read, write, "
                "patient:<id>|*, group:<id>, audit"
            )
    return Grants(
        workflows=frozenset(workflows),
        patients=frozenset(patients),
        groups=frozenset(groups),
        **flags,
    )


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key or a JWT subject, with the scopes it carries."""

    subject: str
    kind: Literal["api_key", "jwt"]
    scopes: tuple[str, ...]
    grants: Grants = field(default_factory=Grants)

    @classmethod
    def of(cls, subject: str, kind: Literal["api_key", "jwt"], scopes: Iterable[str]) -> Principal:
        scopes = tuple(scopes)
        return cls(subject=subject, kind=kind, scopes=scopes, grants=parse_scopes(scopes, strict=False))

    def require_workflow(self, workflow: str, *, write: bool) -> None:
        """Raise `ForbiddenError` unless the token may use this workflow (and write, if it writes)."""
        if not self.grants.may_run(workflow):
            raise ForbiddenError(f"token has no scope for workflow {workflow!r}", "workflow")
        if write and not self.grants.write:
            raise ForbiddenError(
                f"workflow {workflow!r} writes to the record; the token lacks `write`", "write"
            )
        if not self.grants.read:
            raise ForbiddenError("token lacks the `read` scope", "read")


@dataclass(frozen=True)
class IssuedKey:
    """A newly created API key; `token` is shown once and never stored."""

    key_id: str
    name: str
    token: str
    scopes: tuple[str, ...]


def hash_secret(salt: str, secret: str) -> str:
    """Hex SHA-256 of salt and secret: what the store keeps instead of the secret."""
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


async def issue_api_key(store: Store, name: str, scopes: Iterable[str]) -> IssuedKey:
    """Create an API key with these scopes, store its digest, and return the token (once)."""
    scopes = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    if not name.strip() or len(name) > 200:
        raise ValueError("an API key needs a name of 1 to 200 characters")
    if not scopes:
        raise ValueError("an API key needs at least one scope")
    parse_scopes(scopes, strict=True)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    await store.add_key(
        ApiKeyRow(
            key_id=key_id,
            name=name.strip(),
            salt=salt,
            digest=hash_secret(salt, secret),
            scopes=list(scopes),
            created_at=utcnow(),
        )
    )
    return IssuedKey(
        key_id=key_id, name=name.strip(), token=f"{API_KEY_PREFIX}{key_id}.{secret}", scopes=scopes
    )


def create_api_key(name: str, scopes: Iterable[str], *, database_url: str | None = None) -> IssuedKey:
    """Synchronous `issue_api_key` on the configured store (creating its tables if needed)."""
    from clinicflow.api.config import ApiSettings

    url = database_url or ApiSettings().store_url()  # type: ignore[call-arg]

    async def issue() -> IssuedKey:
        store = Store(url)
        try:
            await store.init()
            return await issue_api_key(store, name, scopes)
        finally:
            await store.close()

    return asyncio.run(issue())


async def verify_api_key(store: Store, token: str) -> Principal:
    """The principal of a valid, unrevoked API key; `AuthError` otherwise."""
    match = _KEY_RE.match(token)
    if match is None:
        raise AuthError("malformed API key")
    row = await store.get_key(match.group(1))
    if row is None or not hmac.compare_digest(row.digest, hash_secret(row.salt, match.group(2))):
        raise AuthError("unknown API key")
    if row.revoked_at is not None:
        raise AuthError("revoked API key")
    return Principal.of(f"key:{row.name}:{row.key_id}", "api_key", row.scopes)


@dataclass(eq=False)
class JwtVerifier:
    """Verifies OAuth2 JWT access tokens against an issuer's JWKS (URL or file), `iss` and `aud`."""

    jwks: str
    _: KW_ONLY
    issuer: str | None
    audience: str | None
    algorithms: list[str]
    scope_claim: str = "scope"
    http: httpx.AsyncClient | None = None
    _keys: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _fetched: float = field(default=0.0, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def _load(self) -> dict[str, Any]:
        if self.jwks.startswith(("http://", "https://")):
            client = self.http or httpx.AsyncClient(timeout=10.0)
            try:
                response = await client.get(self.jwks)
                response.raise_for_status()
                document = response.json()
            finally:
                if self.http is None:
                    await client.aclose()
        else:
            document = json.loads(Path(self.jwks.removeprefix("file://")).read_text())
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            try:
                key = jwt.PyJWK(jwk)
            except jwt.PyJWTError:
                continue
            keys[jwk.get("kid") or ""] = key
        return keys

    async def _key(self, kid: str) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched >= _JWKS_MIN_REFRESH_S:
                try:
                    self._keys = await self._load()
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    raise AuthError(f"cannot load the issuer's keys: {exc}", "jwks") from None
                self._fetched = time.monotonic()
        if kid in self._keys:
            return self._keys[kid]
        if not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise AuthError("token signed by an unknown key")

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; `AuthError` naming what is wrong otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed bearer token") from None
        key = await self._key(str(header.get("kid") or ""))
        options = {"require": ["exp", "sub"], "verify_aud": self.audience is not None}
        try:
            claims = jwt.decode(
                token,
                key.key if isinstance(key, jwt.PyJWK) else key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options=options,  # type: ignore[arg-type]
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        raw = claims.get(self.scope_claim, "")
        scopes = raw.split() if isinstance(raw, str) else [str(s) for s in raw or []]
        patient = claims.get("patient")
        if isinstance(patient, str) and FHIR_ID.match(patient):
            scopes.append(f"patient:{patient}")
        return Principal.of(f"jwt:{claims['sub']}", "jwt", scopes)


class PatientAccess:
    """Decides whether a principal may act on a patient; FHIR Groups are read (and cached) from the server."""

    def __init__(self, client: FhirClient | None) -> None:
        self.client = client
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def group_members(self, group_id: str) -> frozenset[str]:
        """Patient ids in `Group/<id>` (empty when the group does not exist)."""
        cached = self._groups.get(group_id)
        if cached is not None and time.monotonic() - cached[0] < _GROUP_TTL_S:
            return cached[1]
        if self.client is None:
            raise ForbiddenError("patient groups need a FHIR server", "group")
        try:
            group = await self.client.read("Group", group_id)
        except FhirNotFoundError:
            group = {}
        except FhirError as exc:
            raise ForbiddenError(f"cannot resolve Group/{group_id}: {exc}", "group") from None
        members = frozenset(_member_ids(group, self.client.base_url))
        self._groups[group_id] = (time.monotonic(), members)
        return members

    async def allowed(self, principal: Principal, patient_id: str | None) -> bool:
        """True when the principal's patient scopes cover this patient (None: no patient involved)."""
        grants = principal.grants
        if patient_id is None or grants.all_patients or patient_id in grants.patients:
            return True
        for group_id in sorted(grants.groups):
            if patient_id in await self.group_members(group_id):
                return True
        return False

    async def visible(self, principal: Principal) -> frozenset[str] | None:
        """Every patient id the principal may see, or None for all."""
        grants = principal.grants
        if grants.all_patients:
            return None
        ids = set(grants.patients)
        for group_id in grants.groups:
            ids |= await self.group_members(group_id)
        return frozenset(ids)


def _member_ids(group: Mapping[str, Any], server_base: str | None = None) -> list[str]:
    """Ids of the active Patient members of a Group on this server."""
    ids = []
    for member in group.get("member") or []:
        if not isinstance(member, Mapping) or member.get("inactive"):
            continue
        rtype, _, rid = (reference_key(member.get("entity"), server_base) or "").partition("/")
        if rtype == "Patient":
            ids.append(rid)
    return ids
