"""AgentClinic run configuration: built-in defaults, then a YAML run file, then command-line options.

A run file uses the option names (paths relative to the file), e.g.::

    scenarios: agentclinic_medqa.jsonl
    out: runs/medgemma-medqa
    models:
      doctor: /models/medgemma-27b-text-it
      patient: openai:http://gpu-box:8000/v1#gpt-4o
      measurement: openai:http://gpu-box:8000/v1#gpt-4o
      moderator: openai:http://gpu-box:8000/v1#gpt-4o
    turns: 20
    protocol: original
    concurrency: 8
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicflow.evals.input_files import read_input, validation_problems

__all__ = ["AgentClinicConfig", "RunFileError", "load_config"]


class RunFileError(ValueError):
    """A YAML run file that cannot be read or has unknown or invalid keys."""


class AgentClinicConfig(BaseModel):
    """Everything one AgentClinic eval needs; model specs are `default`, a folder, or `openai:URL[#model]`.

    `max_new_tokens` None means the protocol's own (original 200, clinicflow 256).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenarios: Path
    out: Path
    doctor: str = "default"
    patient: str = "default"
    measurement: str = "default"
    moderator: str = "default"
    limit: int | None = Field(None, ge=1)
    turns: int = Field(20, ge=1)
    protocol: Literal["original", "clinicflow"] = "original"
    doctor_bias: str | None = None
    patient_bias: str | None = None
    image_request: bool = False
    concurrency: int = Field(4, ge=1)
    doctor_tools: bool = False
    max_new_tokens: int | None = Field(None, ge=1)


def _read_run_file(path: Path) -> dict[str, Any]:
    text = read_input(path, "run file", RunFileError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunFileError(f"run file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunFileError(f"run file {path} must hold a mapping of option: value")
    resolved: dict[str, Any] = {str(k).replace("-", "_"): v for k, v in data.items()}
    models = resolved.pop("models", None)
    if isinstance(models, dict):
        for role, spec in models.items():
            resolved.setdefault(str(role), spec)
    for key in ("scenarios", "out"):
        if isinstance(resolved.get(key), str):
            candidate = Path(resolved[key]).expanduser()
            resolved[key] = candidate if candidate.is_absolute() else path.parent / candidate
    return resolved


def load_config(run_file: Path | None, overrides: Mapping[str, Any]) -> AgentClinicConfig:
    """Merge a YAML run file (optional) with command-line values (None means not given)."""
    values = _read_run_file(run_file) if run_file is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AgentClinicConfig(**values)
    except ValidationError as exc:
        problems = validation_problems(exc, "config")
        source = f" (run file {run_file})" if run_file is not None else ""
        raise RunFileError(f"invalid AgentClinic options{source}: {problems}") from exc
