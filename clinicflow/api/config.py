"""Settings of the HTTP service: the shared `Settings` plus the fields only the service reads.

They come from the same `CLINICFLOW_*` environment variables (or `.env`) as every other setting.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from clinicflow.settings import Settings

__all__ = ["ApiSettings", "async_database_url", "checkpoint_postgres_url", "is_postgres"]


class ApiSettings(Settings):
    """Everything `clinicflow serve` reads; the service never reads the environment elsewhere."""

    api_workers: int = Field(8, ge=1, le=1024, description="Runs executing at once in one server process.")
    api_max_queued: int = Field(
        1000, ge=1, description="Runs waiting for a worker before `POST /v1/runs` answers 429."
    )
    api_worker_id: str | None = Field(
        None,
        description="Stable id of this server process (e.g. the replica name); runs it owned when it "
        "stopped are resumed at once on restart. Default: host name and process id.",
    )
    api_lease_s: float = Field(
        30.0, gt=0, description="A run whose server has not sent a heartbeat for this long is taken over."
    )
    api_resume_on_startup: bool = Field(True, description="Resume interrupted runs at startup.")
    api_plugins: str = Field(
        "", description="Comma-separated 'module:function' hooks called with the workflow registry."
    )
    api_event_poll_s: float = Field(
        1.0, gt=0, description="How often an event stream polls the store for runs on other replicas."
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; a larger one gets 413 unread."
    )
    api_auth_audit_per_minute: int = Field(
        10,
        ge=1,
        description="Failed authentications written to the audit trail per minute; the rest are counted "
        "(metric `clinicflow_auth_failures_total`, and in the next row written).",
    )

    auth_jwks: str | None = Field(
        None, description="JWKS URL (or file) of the OAuth2 issuer's signing keys; enables JWT tokens."
    )
    auth_jwt_issuer: str | None = Field(None, description="Required `iss` of JWT bearer tokens.")
    auth_jwt_audience: str | None = Field(None, description="Required `aud` of JWT bearer tokens.")
    auth_jwt_algorithms: str = Field("RS256,RS384,ES256,ES384", description="Accepted JWT algorithms.")
    auth_scope_claim: str = Field("scope", description="JWT claim holding the space-separated scopes.")

    cds_time_budget_s: float = Field(
        5.0, gt=0, description="Longest a CDS Hooks call may take; past it the answer is a card saying so."
    )
    cds_fhir_servers: str = Field(
        "",
        description="Comma-separated FHIR base URLs a CDS Hooks client may name as `fhirServer` (read with "
        "its `fhirAuthorization`); the service's own FHIR server is always allowed.",
    )

    console_session_key: SecretStr | None = Field(
        None,
        description="Secret that signs and encrypts the console's session cookies; unset: a random one per "
        "process (sessions then end when it restarts and do not cross replicas).",
    )
    console_session_hours: float = Field(
        8.0, gt=0, le=168, description="How long a console login lasts before it asks again."
    )
    console_reports_dir: Path | None = Field(
        None,
        description="Folder of eval run folders (each with report.json and its plots) shown at "
        "/console/reports.",
    )

    fhir_smart_client_id: str | None = Field(
        None, description="SMART backend-services client id for the outbound FHIR connection."
    )
    fhir_smart_key: Path | None = Field(None, description="PEM private key that signs the client assertion.")
    fhir_smart_key_id: str | None = Field(None, description="`kid` of that key in the client's JWKS.")
    fhir_smart_algorithm: str = Field("RS384", description="RS384 or ES384, as SMART requires.")
    fhir_smart_token_url: str | None = Field(
        None, description="Token endpoint; default: from the FHIR server's .well-known/smart-configuration."
    )
    fhir_smart_scopes: str = Field("system/*.rs", description="Scopes asked of the token endpoint.")

    def worker_id(self) -> str:
        """This process's worker id: the configured one, else host name and process id."""
        import os
        import socket

        return self.api_worker_id or f"{socket.gethostname()}-{os.getpid()}"

    def plugin_specs(self) -> list[str]:
        """The configured plugin hooks, in order."""
        return _comma_list(self.api_plugins)

    def cds_fhir_server_list(self) -> list[str]:
        """FHIR servers CDS Hooks clients may have the service read, besides its own."""
        return _comma_list(self.cds_fhir_servers)

    def jwt_algorithms(self) -> list[str]:
        """Accepted JWT signing algorithms."""
        return _comma_list(self.auth_jwt_algorithms)

    def store_url(self) -> str:
        """SQLAlchemy URL of the run/audit store: `database_url`, else an SQLite file in the cache dir."""
        return self.database_url or f"sqlite:///{self.cache_dir / 'api.sqlite'}"


def _comma_list(text: str) -> list[str]:
    """The non-empty items of a comma-separated setting, stripped, in order."""
    return [item.strip() for item in text.split(",") if item.strip()]


_POSTGRES_SCHEMES = ("postgresql", "postgres")


def _base_scheme(url: str) -> str:
    """The URL's scheme without its driver (`postgresql+psycopg` -> `postgresql`)."""
    return url.partition(":")[0].split("+", 1)[0]


def is_postgres(url: str) -> bool:
    """True for a PostgreSQL SQLAlchemy or libpq URL."""
    return _base_scheme(url) in _POSTGRES_SCHEMES


def async_database_url(url: str) -> str:
    """The same database with an asyncio driver: aiosqlite for SQLite, psycopg 3 for PostgreSQL."""
    _, sep, rest = url.partition(":")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    base = _base_scheme(url)
    if base == "sqlite":
        return f"sqlite+aiosqlite:{rest}"
    if base in _POSTGRES_SCHEMES:
        return f"postgresql+psycopg:{rest}"
    raise ValueError(f"unsupported database {base!r}: use sqlite:///path or postgresql://...")


def checkpoint_postgres_url(url: str) -> str:
    """A libpq connection string (postgresql://...) for the LangGraph Postgres checkpointer."""
    if not is_postgres(url):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql:{url.partition(':')[2]}"
