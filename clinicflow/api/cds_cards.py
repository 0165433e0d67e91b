"""The cards of the CDS Hooks services: the chart summary of `patient-view` (with overdue monitoring)
and the conflicts of `order-sign` drafts with the patient's allergies and active medications."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from clinicflow.api.cds_monitoring import Overdue, overdue_monitoring
from clinicflow.api.cds_schemas import SUMMARY_MAX, Action, Card, CdsService, Source, Suggestion
from clinicflow.tools.render import concept_text, render_resource, resource_date

__all__ = [
    "active_allergies",
    "active_conditions",
    "active_medications",
    "cite",
    "order_sign_cards",
    "patient_view_cards",
    "timeout_card",
]

_MAX_LINES = 20
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_NOT_TRUE = {"refuted", "entered-in-error"}
# Words of an allergy's substance name that say nothing about the substance itself.
_GENERIC_WORDS = frozenset(
    {
        "allergy", "allergic", "allergen", "disposition", "finding", "substance", "product", "medicinal",
        "containing", "intolerance", "drug", "drugs", "agent", "agents", "preparation", "oral", "tablet",
    }
)  # fmt: skip
_WORD = re.compile(r"[a-z][a-z0-9\-]{3,}")


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) < SUMMARY_MAX else text[: SUMMARY_MAX - 2].rstrip() + "…"


def _coded(resource: Mapping[str, Any], path: str) -> str:
    value = resource.get(path)
    return concept_text(value) or "unnamed"


def _status_code(concept: Any) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, Mapping) and coding.get("code"):
            return str(coding["code"])
    return None


def active_conditions(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        r
        for r in resources
        if _status_code(r.get("clinicalStatus")) in _ACTIVE_CLINICAL
        and _status_code(r.get("verificationStatus")) not in _NOT_TRUE
    ]


def active_medications(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in resources if r.get("status") == "active" and r.get("intent") != "proposal"]


def active_allergies(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Allergies not resolved, refuted or entered in error (no clinical status counts as active)."""
    return [
        r
        for r in resources
        if _status_code(r.get("clinicalStatus")) in (None, "active")
        and _status_code(r.get("verificationStatus")) not in _NOT_TRUE
    ]


def _newest_first(resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(resources, key=lambda r: resource_date(r) or "", reverse=True)


def _lines(resources: list[Mapping[str, Any]]) -> str:
    shown = [f"- {render_resource(r)}" for r in resources[:_MAX_LINES]]
    if len(resources) > _MAX_LINES:
        shown.append(f"- … and {len(resources) - _MAX_LINES} more")
    return "\n".join(shown)


def _source(resource_type: str) -> Source:
    return Source(label=f"clinicflow, from the patient's FHIR {resource_type} resources")


def _list_card(title: str, resources: list[Mapping[str, Any]], path: str, rtype: str) -> Card | None:
    if not resources:
        return None
    names = ", ".join(dict.fromkeys(_coded(r, path) for r in resources))
    return Card(
        summary=_summary(f"{len(resources)} {title}: {names}"),
        detail=_lines(resources),
        indicator="info",
        source=_source(rtype),
    )


def _overdue_card(item: Overdue) -> Card:
    when = f"last {item.last_day.isoformat()}" if item.last_day else "none in the record"
    return Card(
        summary=_summary(f"{item.rule.name} overdue ({when}; every {item.rule.interval_days} days)"),
        detail=item.line(),
        indicator="warning",
        source=Source(label=item.rule.citation().removeprefix("guideline: ")),
    )


def patient_view_cards(record: Mapping[str, list[dict[str, Any]]], today: date | None = None) -> list[Card]:
    """Cards for the chart: active problems, active medications, allergies (empty lists get no card),
    then one per test the guidelines call for that is overdue."""
    problems = _newest_first(active_conditions(record.get("conditions", [])))
    medications = _newest_first(active_medications(record.get("medications", [])))
    allergies = _newest_first(active_allergies(record.get("allergies", [])))
    cards = [
        _list_card("active problems", problems, "code", "Condition"),
        _list_card("active medications", medications, "medicationCodeableConcept", "MedicationRequest"),
    ]
    allergy_card = _list_card("allergies", allergies, "code", "AllergyIntolerance")
    if allergy_card is not None and any(a.get("criticality") == "high" for a in allergies):
        allergy_card.indicator = "warning"
    cards.append(allergy_card)
    overdue = overdue_monitoring(problems, record.get("observations", []), today)
    return [c for c in cards if c is not None] + [_overdue_card(item) for item in overdue]


def _codings(concepts: Iterable[Any]) -> set[tuple[str, str]]:
    return {
        (str(c.get("system") or ""), str(c["code"]))
        for concept in concepts
        if isinstance(concept, Mapping)
        for c in concept.get("coding") or []
        if isinstance(c, Mapping) and c.get("code")
    }


def _names(concepts: Iterable[Any]) -> set[str]:
    """Lower-case words (4+ letters) of a concept's text and displays."""
    words: set[str] = set()
    for concept in concepts:
        if not isinstance(concept, Mapping):
            continue
        texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
        for text in texts:
            if isinstance(text, str):
                words |= set(_WORD.findall(text.lower()))
    return words


def _order_concept(order: Mapping[str, Any]) -> Any:
    if order.get("resourceType") == "MedicationRequest":
        return order.get("medicationCodeableConcept")
    return order.get("code")


def _allergy_concepts(allergy: Mapping[str, Any]) -> list[Any]:
    reactions = [r for r in allergy.get("reaction") or [] if isinstance(r, Mapping)]
    return [allergy.get("code"), *(r.get("substance") for r in reactions)]


def _allergy_match(allergy: Mapping[str, Any], order: Mapping[str, Any]) -> str | None:
    """How the order matches the allergy: a shared code, or a substance word in the order's name."""
    allergens = _allergy_concepts(allergy)
    ordered = [_order_concept(order)]
    shared = _codings(allergens) & _codings(ordered)
    if shared:
        system, code = sorted(shared)[0]
        return f"the same code {system}|{code}" if system else f"the same code {code}"
    common = (_names(allergens) - _GENERIC_WORDS) & _names(ordered)
    if common:
        return f"the substance name {sorted(common)[0]!r}"
    return None


def _same_medication(current: Mapping[str, Any], order: Mapping[str, Any]) -> bool:
    concepts = [current.get("medicationCodeableConcept")], [order.get("medicationCodeableConcept")]
    if _codings(concepts[0]) & _codings(concepts[1]):
        return True
    text = [(concept_text(c[0]) or "").strip().lower() for c in concepts]
    return bool(text[0]) and text[0] == text[1]


def _remove_draft(order: Mapping[str, Any]) -> dict[str, Any]:
    """A card's suggestion to drop the draft order, when it has an id the client can act on."""
    if not order.get("id"):
        return {"suggestions": None, "selectionBehavior": None}
    target = f"{order['resourceType']}/{order['id']}"
    action = Action(type="delete", description=f"Remove the draft order {target}", resourceId=target)
    suggestion = Suggestion(label="Remove this draft order", isRecommended=True, actions=[action])
    return {"suggestions": [suggestion], "selectionBehavior": "at-most-one"}


def cite(resource: Mapping[str, Any]) -> str:
    return f"[{resource.get('resourceType')}/{resource.get('id', 'draft')}]"


def _allergy_card(
    allergy: Mapping[str, Any], order: Mapping[str, Any], ordered: str, how: str, **remove: Any
) -> Card:
    """The card of a draft order matching an allergy (`how`: by which code or word)."""
    allergen = _coded(allergy, "code")
    reactions = [
        concept_text(m)
        for r in allergy.get("reaction") or []
        for m in (r.get("manifestation") or [] if isinstance(r, Mapping) else [])
    ]
    detail = (
        f"The patient has an active allergy to **{allergen}** {cite(allergy)}"
        + (f" (criticality {allergy['criticality']})" if allergy.get("criticality") else "")
        + (f", reaction: {', '.join(t for t in reactions if t)}" if any(reactions) else "")
        + f". The draft order **{ordered}** {cite(order)} matches it by {how}.\n\n"
        + f"- {render_resource(allergy)}"
    )
    return Card(
        summary=_summary(f"Allergy to {allergen}: review the order for {ordered}"),
        detail=detail,
        indicator="critical" if allergy.get("criticality") == "high" else "warning",
        source=_source("AllergyIntolerance"),
        **remove,
    )


def _repeat_card(current: Mapping[str, Any], order: Mapping[str, Any], ordered: str, **remove: Any) -> Card:
    """The card of a draft order repeating an active prescription."""
    return Card(
        summary=_summary(f"Already prescribed: {ordered}"),
        detail=(
            f"The draft order **{ordered}** {cite(order)} repeats an active prescription:\n\n"
            f"- {render_resource(current)}"
        ),
        indicator="warning",
        source=_source("MedicationRequest"),
        **remove,
    )


def _order_cards(
    order: Mapping[str, Any], allergies: list[Mapping[str, Any]], medications: list[Mapping[str, Any]]
) -> list[Card]:
    """The conflicts of one draft order: allergies first, then the prescriptions it repeats."""
    ordered = concept_text(_order_concept(order)) or f"unnamed {order.get('resourceType')}"
    remove = _remove_draft(order)
    cards = []
    for allergy in allergies:
        how = _allergy_match(allergy, order)
        if how is not None:
            cards.append(_allergy_card(allergy, order, ordered, how, **remove))
    if order.get("resourceType") == "MedicationRequest":
        cards += [
            _repeat_card(current, order, ordered, **remove)
            for current in medications
            if current.get("id") != order.get("id") and _same_medication(current, order)
        ]
    return cards


def order_sign_cards(
    orders: list[Mapping[str, Any]], record: Mapping[str, list[dict[str, Any]]]
) -> list[Card]:
    """A card per conflict of a draft order with an allergy, or with a medication already active."""
    allergies = active_allergies(record.get("allergies", []))
    medications = active_medications(record.get("medications", []))
    return [card for order in orders for card in _order_cards(order, allergies, medications)]


def timeout_card(service: CdsService, budget_s: float) -> Card:
    """What the client sees when the service ran past its time budget."""
    checked = "the draft orders were NOT checked" if service.hook == "order-sign" else "no summary shown"
    return Card(
        summary=_summary(f"clinicflow ran out of time ({budget_s:g} s): {checked}"),
        detail=f"The service {service.id} did not finish within its {budget_s:g} s budget. Try again, "
        "or review the record directly.",
        indicator="warning" if service.hook == "order-sign" else "info",
        source=Source(label="clinicflow"),
    )
