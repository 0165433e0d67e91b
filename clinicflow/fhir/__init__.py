"""FHIR R4 access: an async client with a search builder, typed errors and R4B parsing."""

from .client import FHIR_ID, BearerAuth, FhirClient
from .errors import (
    FhirAuthError,
    FhirBadRequestError,
    FhirConflictError,
    FhirConnectionError,
    FhirError,
    FhirNotFoundError,
    FhirResponseError,
    FhirServerError,
    FhirTimeoutError,
    FhirValidationError,
)
from .resources import parse_resource
from .search import DEFAULT_LIMIT, DEFAULT_MAX_PAGES, Search

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_PAGES",
    "FHIR_ID",
    "BearerAuth",
    "FhirAuthError",
    "FhirBadRequestError",
    "FhirClient",
    "FhirConflictError",
    "FhirConnectionError",
    "FhirError",
    "FhirNotFoundError",
    "FhirResponseError",
    "FhirServerError",
    "FhirTimeoutError",
    "FhirValidationError",
    "Search",
    "parse_resource",
]
