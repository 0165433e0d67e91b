"""Typed parsing of FHIR R4 JSON with `fhir.resources.R4B` (the package's default models are R5)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from .errors import FhirValidationError

__all__ = ["parse_resource"]


@cache
def _model(resource_type: str) -> type[Resource] | None:
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return model if isinstance(model, type) and issubclass(model, Resource) else None


def _path(resource_type: str, loc: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    return path


def parse_resource(data: Mapping[str, Any]) -> Resource:
    """Parse one resource dict into its R4B model; raise `FhirValidationError` listing every error's path."""
    if not isinstance(data, Mapping):
        raise FhirValidationError(None, [("resource", f"expected a JSON object, got {type(data).__name__}")])
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise FhirValidationError(None, [("resourceType", "missing")])
    model = _model(resource_type)
    if model is None:
        raise FhirValidationError(
            resource_type, [("resourceType", f"'{resource_type}' is not a FHIR R4 resource type")]
        )
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = [(_path(resource_type, tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        raise FhirValidationError(resource_type, errors) from None
    except (ValueError, TypeError) as exc:
        raise FhirValidationError(resource_type, [(resource_type, str(exc))]) from None
