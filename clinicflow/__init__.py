"""clinicflow: agentic clinical workflows over FHIR, steered by MedGemma."""

__all__ = ["__version__"]
__version__ = "0.1.0"
