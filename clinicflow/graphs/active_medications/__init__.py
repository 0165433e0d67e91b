"""An example workflow in one folder: see docs/workflows.md."""

from clinicflow.graphs.active_medications.workflow import ACTIVE_MEDICATIONS, MedicationList, MedicationsInput

__all__ = ["ACTIVE_MEDICATIONS", "MedicationList", "MedicationsInput"]
