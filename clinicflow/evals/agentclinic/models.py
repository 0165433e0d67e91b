"""Model specs for the four roles: `default` (the tuned 270M), a local folder, or `openai:URL[#model]`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel

from clinicflow.graphs.encounter import RoleModels
from clinicflow.settings import Settings

__all__ = ["ROLES", "ModelLoadError", "ModelSpec", "ModelSpecError", "load_role_models", "parse_model_spec"]

ROLES = ("doctor", "patient", "measurement", "moderator")


class ModelSpecError(ValueError):
    """A model spec that is neither `default`, an existing folder, nor `openai:URL[#model]`."""


class ModelLoadError(RuntimeError):
    """The model module is missing or failed to load a model."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; equal specs share one loaded model."""

    kind: Literal["default", "local", "openai"]
    location: str = ""
    name: str | None = None

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        if self.kind == "openai":
            return f"openai:{self.location}" + (f"#{self.name}" if self.name else "")
        return self.location


def parse_model_spec(spec: str) -> ModelSpec:
    """Parse `default`, `openai:URL[#model]` or a local model folder (which must exist)."""
    text = spec.strip()
    if text.lower() in {"", "default"}:
        return ModelSpec("default")
    if text.lower().startswith("openai:"):
        url, _, name = text[len("openai:") :].partition("#")
        if not url.startswith(("http://", "https://")):
            raise ModelSpecError(f"model spec {spec!r}: expected openai:http(s)://HOST[:PORT]/v1[#model]")
        return ModelSpec("openai", url.rstrip("/"), name.strip() or None)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise ModelSpecError(
            f"model spec {spec!r}: no such model folder (use default, a local folder or openai:URL[#model])"
        )
    return ModelSpec("local", str(folder.resolve()))


def _loader() -> Callable[..., BaseChatModel]:
    try:
        from clinicflow.model import load_chat_model
    except ImportError as exc:
        raise ModelLoadError(f"clinicflow.model.load_chat_model is not available: {exc}") from exc
    return load_chat_model


def _load(spec: ModelSpec, settings: Settings, loader: Callable[..., BaseChatModel]) -> BaseChatModel:
    update: dict[str, Any] = {"model": None, "model_url": None}
    if spec.kind == "default":
        return loader(settings.model_copy(update=update))
    if spec.kind == "local":
        return loader(settings.model_copy(update=update | {"model": spec.location}), model=spec.location)
    update |= {"model_url": spec.location}
    if spec.name:
        update["model_name"] = spec.name
    return loader(settings.model_copy(update=update), model_url=spec.location)


def load_role_models(
    settings: Settings,
    specs: Mapping[str, str | ModelSpec],
    *,
    loader: Callable[..., BaseChatModel] | None = None,
) -> tuple[RoleModels, dict[str, str]]:
    """Load one model per distinct spec and assign it to the roles; returns the models and specs by role."""
    parsed = {role: s if isinstance(s, ModelSpec) else parse_model_spec(s) for role, s in specs.items()}
    missing = [role for role in ROLES if role not in parsed]
    if missing:
        raise ModelSpecError(f"no model spec for role(s): {', '.join(missing)}")
    load = loader or _loader()
    loaded: dict[ModelSpec, BaseChatModel] = {}
    for role in ROLES:
        spec = parsed[role]
        if spec not in loaded:
            try:
                loaded[spec] = _load(spec, settings, load)
            except Exception as exc:
                raise ModelLoadError(f"could not load the {role} model ({spec}): {exc}") from exc
    models = RoleModels(**{role: loaded[parsed[role]] for role in ROLES})
    return models, {role: str(parsed[role]) for role in ROLES}
