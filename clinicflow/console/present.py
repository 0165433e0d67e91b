"""What the console shows, computed from stored runs and events: a pending write as a readable order, the
fields of it a reviewer may edit, and a run's events as a timeline."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clinicflow.api.store import StoredEvent
from clinicflow.tools.render import quantity_text, value_text

__all__ = [
    "EditableField",
    "Order",
    "TimelineItem",
    "apply_edits",
    "editable_fields",
    "evidence_of",
    "order_of",
    "patient_label",
    "timeline",
]

# Fields a reviewer may not change: the record's identity, whose it is, and the write's idempotency key.
_FIXED = frozenset({"resourceType", "id", "meta", "identifier", "subject", "patient", "text", "contained"})
_MAX_FIELDS = 40
FIELD_PREFIX = "f:"


def _concept(value: Any) -> str | None:
    """The words of a CodeableConcept: its text, else its codings' displays (or codes)."""
    if not isinstance(value, Mapping):
        return None
    if value.get("text"):
        return str(value["text"])
    codings = [c for c in value.get("coding") or [] if isinstance(c, Mapping)]
    words = [str(c.get("display") or c.get("code")) for c in codings if c.get("display") or c.get("code")]
    codes = [f"{c.get('code')}" for c in codings if c.get("code") and c.get("display")]
    if not words:
        return None
    return ", ".join(words) + (f" ({', '.join(codes)})" if codes else "")


def _dose(resource: Mapping[str, Any]) -> str | None:
    """Dose or value, whichever the resource type carries."""
    if found := value_text(resource) or quantity_text(resource.get("quantityQuantity")):
        return found
    doses = []
    for dosage in resource.get("dosageInstruction") or resource.get("dosage") or []:
        if not isinstance(dosage, Mapping):
            continue
        rates = [quantity_text(r.get("doseQuantity")) for r in dosage.get("doseAndRate") or []]
        doses.append(" ".join(x for x in [dosage.get("text"), *rates] if x))
    return "; ".join(d for d in doses if d) or None


def _why(resource: Mapping[str, Any], notes: Iterable[Any]) -> list[str]:
    reasons = [_concept(r) for r in resource.get("reasonCode") or []]
    reasons += [str(r.get("reference")) for r in resource.get("reasonReference") or [] if isinstance(r, dict)]
    reasons += [str(n.get("text")) for n in resource.get("note") or [] if isinstance(n, Mapping)]
    reasons += [str(n) for n in notes if n]
    return [r for r in reasons if r]


@dataclass
class Order:
    """A pending write, in words: what, for whom, dose or value, why, and the evidence read before it."""

    run_id: str
    interrupt_id: str
    resource_type: str
    what: str
    patient_id: str | None
    dose: str | None
    why: list[str]
    instruction: str | None
    evidence: list[str]
    resource: dict[str, Any]
    fields: list[EditableField]
    error: str | None = None
    created_at: datetime | None = None
    count: int = 1


def order_of(run: Any, evidence: list[str]) -> Order | None:
    """The readable order of a run waiting on a FHIR write; None for any other kind of pending request."""
    pending = run.pending_approval
    request = pending.request if pending is not None else None
    if not isinstance(request, Mapping) or not isinstance(request.get("resource"), Mapping):
        return None
    resource = dict(request["resource"])
    what = _concept(resource.get("code")) or _concept(resource.get("medicationCodeableConcept"))
    instruction = run.input.get("instruction") or run.input.get("question")
    return Order(
        run_id=run.id,
        interrupt_id=pending.interrupt_id,
        resource_type=str(request.get("resource_type") or resource.get("resourceType")),
        what=what or str(request.get("question") or resource.get("resourceType")),
        patient_id=request.get("patient_id") or run.patient_id,
        dose=_dose(resource),
        why=_why(resource, request.get("notes") or []),
        instruction=str(instruction) if instruction else None,
        evidence=evidence,
        resource=resource,
        fields=editable_fields(resource),
        error=request.get("error"),
        created_at=run.created_at,
        count=pending.count,
    )


@dataclass(frozen=True)
class EditableField:
    """One scalar of the resource a reviewer may change: its dotted path, label, value and JSON type."""

    path: str
    value: str
    kind: str

    @property
    def name(self) -> str:
        return FIELD_PREFIX + self.path

    @property
    def label(self) -> str:
        return self.path.replace(".0.", " › ").replace(".", " › ")


def _leaves(node: Any, path: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, str(i)))
    elif node is not None:
        yield path, node


def editable_fields(resource: Mapping[str, Any]) -> list[EditableField]:
    """The scalars of a resource a reviewer may edit (not its identity, patient or write identifier)."""
    out = []
    for key, value in resource.items():
        if key in _FIXED:
            continue
        for path, leaf in _leaves(value, (key,)):
            if any(p == "reference" for p in path):
                continue
            kind = (
                "boolean"
                if isinstance(leaf, bool)
                else "number"
                if isinstance(leaf, int | float)
                else "string"
            )
            text = json.dumps(leaf) if kind != "string" else str(leaf)
            out.append(EditableField(".".join(path), text, kind))
    return out[:_MAX_FIELDS]


def _typed(field_: EditableField, text: str) -> Any:
    text = text.strip()
    if field_.kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError(f"{field_.label}: expected true or false, got {text!r}")
        return text == "true"
    if field_.kind == "number":
        try:
            number = json.loads(text)
        except ValueError:
            number = None
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise ValueError(f"{field_.label}: expected a number, got {text!r}")
        return number
    return text


def _set(node: Any, path: Sequence[str], value: Any) -> None:
    for step in path[:-1]:
        node = node[int(step)] if isinstance(node, list) else node[step]
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def apply_edits(resource: Mapping[str, Any], form: Mapping[str, str]) -> dict[str, Any] | None:
    """The resource with the reviewer's edits (only editable fields are read from the form); None when
    nothing changed. `ValueError` names a field whose value does not fit its type."""
    edited = copy.deepcopy(dict(resource))
    changed = False
    for field_ in editable_fields(resource):
        if field_.name not in form:
            continue
        value = _typed(field_, form[field_.name])
        if value != _typed(field_, field_.value):
            _set(edited, field_.path.split("."), value)
            changed = True
    return edited if changed else None


def evidence_of(events: Sequence[StoredEvent]) -> list[str]:
    """The resources the run's tools returned, in the order first seen."""
    seen: dict[str, None] = {}
    for event in events:
        if event.type == "tool.result":
            for ref in event.data.get("references") or []:
                seen.setdefault(str(ref), None)
    return list(seen)


@dataclass
class TimelineItem:
    """One line of a run's trace: when (seconds since the run was queued), what kind, and its details."""

    seq: int
    offset_s: float
    kind: str
    title: str
    detail: str = ""
    references: list[str] = field(default_factory=list)
    error: str | None = None
    args: str | None = None


def _item(event: StoredEvent, offset_s: float) -> TimelineItem:
    data = event.data
    node = data.get("node")
    if event.type == "model.tokens":
        detail = (
            f"{data.get('input_tokens', 0)} tokens in, {data.get('output_tokens', 0)} out, "
            f"{data.get('duration_ms', 0):.0f} ms"
            if not data.get("error")
            else ""
        )
        return TimelineItem(
            event.seq, offset_s, "model", f"Model call ({node})", detail, error=data.get("error")
        )
    if event.type == "tool.call":
        args = json.dumps(data.get("args") or {}, ensure_ascii=False)
        return TimelineItem(event.seq, offset_s, "tool", f"Tool call: {data.get('tool')}", args=args)
    if event.type == "tool.result":
        detail = (
            f"{data.get('summary') or ''} ({data.get('lines', 0)} lines, {data.get('duration_ms', 0):.0f} ms)"
        )
        refs = [str(r) for r in data.get("references") or []]
        return TimelineItem(
            event.seq, offset_s, "result", f"Result: {data.get('tool')}", detail, refs, data.get("error")
        )
    if event.type in ("node.started", "node.finished"):
        verb = "started" if event.type == "node.started" else "finished"
        return TimelineItem(event.seq, offset_s, "step", f"Step {node} {verb}")
    return TimelineItem(
        event.seq, offset_s, "run", _RUN_TITLES.get(event.type, event.type), _run_detail(data)
    )


_RUN_TITLES = {
    "run.queued": "Queued",
    "run.started": "Started",
    "approval.required": "Waiting for approval",
    "approval.decided": "Decision",
    "answer": "Answer",
    "run.finished": "Finished",
}


def _run_detail(data: Mapping[str, Any]) -> str:
    keys = ("status", "action", "by", "reason", "error", "resumed", "workflow")
    return ", ".join(f"{k}: {data[k]}" for k in keys if data.get(k) not in (None, "", False))


def timeline(events: Sequence[StoredEvent]) -> list[TimelineItem]:
    """The run's events as timeline items (progress chunks and node.finished noise left out)."""
    if not events:
        return []
    start = events[0].at
    return [
        _item(e, (e.at - start).total_seconds())
        for e in events
        if e.type not in ("progress", "node.finished")
    ]


def patient_label(patient: Mapping[str, Any] | None, patient_id: str | None) -> str:
    """A patient as a person reads it: name, birth date and id."""
    if not patient:
        return f"Patient/{patient_id}" if patient_id else "no patient"
    names = [n for n in patient.get("name") or [] if isinstance(n, Mapping)]
    name = ""
    if names:
        first = names[0]
        name = first.get("text") or " ".join([*(first.get("given") or []), first.get("family") or ""]).strip()
    born = f", born {patient['birthDate']}" if patient.get("birthDate") else ""
    return f"{name or 'unnamed'}{born} (Patient/{patient.get('id', patient_id)})"
