"""Question builders, one per EHRQA category; each returns every candidate question for one patient."""

from clinicflow.evals.ehrqa.categories.base import Builder, Context, Corpus, ToolView
from clinicflow.evals.ehrqa.categories.conditions import condition_existence, condition_existence_transitive
from clinicflow.evals.ehrqa.categories.dependent import observation_dependent
from clinicflow.evals.ehrqa.categories.immunizations import immunization_date
from clinicflow.evals.ehrqa.categories.medications import (
    medication_current,
    medication_existence,
    medication_prescription_date,
)
from clinicflow.evals.ehrqa.categories.observations import observation_value
from clinicflow.evals.ehrqa.categories.prescribers import medication_prescriber
from clinicflow.evals.ehrqa.categories.reasons import medication_for_condition
from clinicflow.evals.ehrqa.questions import Category

__all__ = ["BUILDERS", "Builder", "Context", "Corpus", "ToolView"]

BUILDERS: dict[Category, Builder] = {
    "condition_existence": condition_existence,
    "condition_existence_transitive": condition_existence_transitive,
    "immunization_date": immunization_date,
    "medication_current": medication_current,
    "medication_existence": medication_existence,
    "medication_prescriber": medication_prescriber,
    "medication_prescription_date": medication_prescription_date,
    "medication_for_condition": medication_for_condition,
    "observation_value": observation_value,
    "observation_dependent": observation_dependent,
}
"""The builder of each category, in the report's category order."""
