"""clinicflow: agentic clinical workflows over FHIR, steered by MedGemma."""

from clinicflow.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]
__version__ = "0.1.0"
