"""Compact, cited one-line renderings of FHIR resources for model prompts.

Each line starts with the resource's clinical date and ends with its citation, e.g.
`2023-04-02 Hemoglobin A1c 7.9 % [Observation/abc]`.

The modules: `values` (data types as text), `references` (what a line may say about what it points to),
`resources` (one line per resource type) and `lines` (lines under a token budget).
"""

from .lines import estimate_tokens, render_lines
from .references import NOT_SHOWN, References
from .resources import render_resource
from .values import citation, concept_text, human_name, quantity_text, resource_date, value_text

__all__ = [
    "NOT_SHOWN",
    "References",
    "citation",
    "concept_text",
    "estimate_tokens",
    "human_name",
    "quantity_text",
    "render_lines",
    "render_resource",
    "resource_date",
    "value_text",
]
