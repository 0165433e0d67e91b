"""One typed settings object, read from `CLINICFLOW_*` environment variables or a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "clinicflow"


class Settings(BaseSettings):
    """Everything configurable. No other module reads the environment."""

    model_config = SettingsConfigDict(env_prefix="CLINICFLOW_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache, description="Converted models, demo cohort, DBs.")

    # FHIR
    fhir_url: str | None = Field(None, description="FHIR R4 base URL; unset means the embedded server.")
    fhir_token: str | None = Field(None, description="Bearer token for the FHIR server.")
    fhir_timeout_s: float = 30.0
    fhir_retries: int = 3
    fhir_port: int = 8765

    # Model
    model: str | None = Field(None, description="Local model folder (MedGemma); unset means Gemma 3 270M.")
    model_url: str | None = Field(None, description="OpenAI-compatible base URL; overrides `model`.")
    model_name: str = Field("medgemma-27b-text-it", description="Model name sent to an OpenAI server.")
    model_api_key: str | None = None
    device: str | None = Field(None, description="torch device; default cuda when present, else cpu.")
    max_new_tokens: int = 256
    model_timeout_s: float = Field(120.0, description="HTTP timeout for an OpenAI-compatible server.")
    model_cpu_threads: int | None = Field(None, description="torch threads on CPU; default torch's own.")
    model_quantization: Literal["none", "int8", "int8-head"] = Field(
        "none", description="Dynamic int8 quantization on CPU (faster; greedy tokens may differ from fp32)."
    )
    model_fast_path: Literal["auto", "on", "off"] = Field(
        "auto", description="Static KV cache + compiled decode; auto means on CUDA only."
    )
    model_decode: Literal["generate", "own"] = Field(
        "generate", description="Decode steps by transformers generate, or clinicflow's own loop (Gemma 3)."
    )
    model_max_batch: int | None = Field(None, description="Most requests batched in one generate.")

    # Workflows
    max_steps: int = Field(8, description="Upper bound on graph steps per run.")
    evidence_token_budget: int = 1200
    manifest_token_budget: int = Field(
        150, description="Record manifest size: type lines always, frequent codes as the budget allows."
    )
    checkpoint_db: Path | None = Field(None, description="SQLite checkpoint file; default in cache_dir.")
    database_url: str | None = Field(None, description="SQLAlchemy URL for runs/audit; Postgres at scale.")

    # Traces
    otel_endpoint: str | None = Field(
        None,
        description="OpenTelemetry collector base URL (OTLP/HTTP, e.g. http://collector:4318); unset: none.",
    )
    otel_service_name: str = Field("clinicflow", description="`service.name` of the exported spans.")
    otel_capture_content: bool = Field(
        False, description="Put messages, tool arguments and results (patient data) in spans."
    )

    def checkpoint_path(self) -> Path:
        return self.checkpoint_db or self.cache_dir / "checkpoints.sqlite"

    def record_budgets(self) -> dict[str, int]:
        """The evidence and manifest token budgets, as `RecordReader` and `make_fhir_tools` take them."""
        return {"token_budget": self.evidence_token_budget, "manifest_budget": self.manifest_token_budget}
