"""Where the scorer reads the truth: the patient by MRN and the patient's observations by code."""

from __future__ import annotations

from typing import Any, Protocol

from clinicflow.fhir import FhirClient

__all__ = ["ChartSource", "FhirChartSource"]


class ChartSource(Protocol):
    """Where the scorer reads the truth: a patient by MRN and a patient's observations by code."""

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None: ...

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]: ...


class FhirChartSource:
    """`ChartSource` over a FHIR server, read at scoring time.

    With `first_page_only`, observations come from one search with `_count=5000`, as the benchmark's
    scorer reads them; otherwise every page up to `limit`.
    """

    def __init__(self, client: FhirClient, *, first_page_only: bool = False, limit: int = 5000) -> None:
        self.client = client
        self.first_page_only = first_page_only
        self.limit = limit

    async def patient_by_mrn(self, mrn: str) -> dict[str, Any] | None:
        """The first patient holding this identifier value."""
        found = await self.client.search("Patient").where(identifier=mrn).all(limit=1)
        return found[0] if found else None

    async def observations(self, patient_id: str, code: str) -> list[dict[str, Any]]:
        """The patient's observations with this code (any system)."""
        search = self.client.search("Observation").where(patient=patient_id, code=code)
        if self.first_page_only:
            bundle = await search.count(self.limit).page()
            return [
                e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and "resource" in e
            ]
        return await search.all(limit=self.limit)
