"""FHIR R4 access: an async client with a search builder, typed errors and R4B parsing."""

from . import errors
from .client import FHIR_ID, BearerAuth, FhirClient
from .errors import *  # noqa: F403 (the typed errors: errors.__all__)
from .resources import parse_resource
from .search import DEFAULT_LIMIT, DEFAULT_MAX_PAGES, Search

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_PAGES",
    "FHIR_ID",
    "BearerAuth",
    "FhirClient",
    "Search",
    "parse_resource",
]
__all__ += errors.__all__
