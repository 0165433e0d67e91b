"""Scoring replies against gold answers, one matcher per answer kind, and accuracy per category.

Replies are normalised first: citations `[Type/id]` removed, whitespace collapsed. Yes/no takes the first
"yes" or "no" word; multiple choice a leading letter ("B", "(B)", "Answer: B") or else the one option whose
text the reply contains; dates the first date in any common form; numbers the first number that is not
part of a date, within the question's tolerance; names need every name token of the gold (titles and the
digits of Synthea names ignored); condition names need the gold name's words in order. A refusal
("not found in the record") is correct only for questions marked `refusal_ok`.
The headline figure is the report's: the mean over categories of per-category accuracy.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from clinicflow.evals.ehrqa.facts import core_name, name_tokens, norm_text
from clinicflow.evals.ehrqa.questions import CATEGORIES, Question

__all__ = [
    "REFUSAL",
    "clean_reply",
    "extract_choice",
    "extract_date",
    "extract_number",
    "extract_yes_no",
    "is_refusal",
    "score",
    "summarize",
]

REFUSAL = "not found in the record"
_CITATION = re.compile(r"\[\s*[A-Z][A-Za-z]+/[^\]\s]{1,64}\s*\]")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_LETTER_PATTERNS = (
    re.compile(r"^\W*\(?([A-D])\)?(?=[\s.):,;]|$)"),
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-D])\b\)?"),
)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), ("y", "m", "d")),
    (
        re.compile(rf"\b{_MONTH}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE),
        ("mn", "d", "y"),
    ),
    (
        re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?\s+(\d{{4}})\b", re.IGNORECASE),
        ("d", "mn", "y"),
    ),
    (re.compile(r"(?<!\d)(\d{1,2})/(\d{1,2})/(\d{4})(?!\d)"), ("m", "d", "y")),
)
_NUMBER = re.compile(r"(?<![\w.])[-+−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|(?<![\w.])[-+−]?\d+(?:\.\d+)?")
_TIME = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:\d{2}|Z)?")
_WORD_NUMBERS = {
    "zero": 0, "none": 0, "no": 0, "one": 1, "once": 1, "two": 2, "twice": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_DECREASE = re.compile(
    r"\b(decreas\w*|dropp\w*|fell|fall\w*|lower\w*|declin\w*|reduc\w*|down)\b", re.IGNORECASE
)


def clean_reply(reply: str) -> str:
    """The reply without citations, on one line."""
    return " ".join(_CITATION.sub(" ", reply or "").split())


def is_refusal(reply: str) -> bool:
    """Whether the reply says the record does not hold the answer."""
    return REFUSAL in " ".join(reply.casefold().split())


def extract_yes_no(reply: str) -> str | None:
    """'yes' or 'no', from the first such word."""
    match = _YES_NO.search(reply)
    return match.group(1).lower() if match else None


def extract_choice(reply: str, options: list[str]) -> str | None:
    """The chosen option letter: a leading or announced letter, else the only option whose text appears."""
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(reply)
        if match:
            return match.group(1)
    text = f" {norm_text(reply)} "
    found = [i for i, opt in enumerate(options) if norm_text(opt) and f" {norm_text(opt)} " in text]
    found = [
        i for i in found if not any(j != i and norm_text(options[i]) in norm_text(options[j]) for j in found)
    ]
    return "ABCD"[found[0]] if len(found) == 1 else None


def _date(parts: Mapping[str, str]) -> dt.date | None:
    try:
        month = int(parts["m"]) if "m" in parts else _MONTHS[parts["mn"][:3].casefold()]
        return dt.date(int(parts["y"]), month, int(parts["d"]))
    except (ValueError, KeyError):
        return None


def _dates(reply: str) -> list[tuple[int, int, dt.date]]:
    found = []
    for pattern, fields in _DATE_PATTERNS:
        for match in pattern.finditer(reply):
            value = _date(dict(zip(fields, match.groups(), strict=True)))
            if value is not None:
                found.append((match.start(), match.end(), value))
    return sorted(found)


def extract_date(reply: str) -> dt.date | None:
    """The first date in the reply (ISO, 'April 2, 2023', '2 Apr 2023', 04/02/2023)."""
    found = _dates(reply)
    return found[0][2] if found else None


def extract_number(reply: str, *, words: bool = False) -> float | None:
    """The first number not inside a citation or date; with `words`, also 'none'/'zero'/'two'..."""
    reply = clean_reply(reply)
    spans = [(start, end) for start, end, _ in _dates(reply)]
    spans += [(m.start(), m.end()) for m in _TIME.finditer(reply)]
    for match in _NUMBER.finditer(reply):
        if any(start <= match.start() < end for start, end in spans):
            continue
        text = match.group(0).replace(",", "").replace("−", "-")
        try:
            return float(text)
        except ValueError:
            continue
    if words:
        for word in re.findall(r"[a-z]+", reply.casefold()):
            if word in _WORD_NUMBERS:
                return float(_WORD_NUMBERS[word])
    return None


def score(question: Question, reply: str) -> bool:
    """Whether the reply answers the question correctly."""
    text = clean_reply(reply)
    if is_refusal(text):
        return question.refusal_ok
    kind = question.kind
    if kind == "yes_no":
        return extract_yes_no(text) == question.answer
    if kind == "choice":
        return extract_choice(text, question.options) == question.answer
    if kind == "date":
        found = extract_date(text)
        return found is not None and found.isoformat() == question.answer
    if kind in ("number", "integer"):
        value = extract_number(text, words=kind == "integer")
        if value is None:
            return False
        gold = float(question.answer)
        tolerance = question.tolerance if question.tolerance is not None else 1e-9
        if abs(value - gold) <= tolerance:
            return True
        return gold < 0 < value and abs(value + gold) <= tolerance and bool(_DECREASE.search(text))
    if kind == "name":
        wanted = name_tokens(question.answer)
        return bool(wanted) and set(wanted) <= set(name_tokens(text))
    name = norm_text(core_name(question.answer))
    return bool(name) and f" {name} " in f" {norm_text(text)} "


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy per category, its mean over categories with questions (the headline), and overall."""
    per: dict[str, list[bool]] = {}
    for r in results:
        per.setdefault(str(r["category"]), []).append(bool(r["correct"]))
    categories = {
        c: {"n": len(per[c]), "correct": sum(per[c]), "accuracy": sum(per[c]) / len(per[c])}
        for c in CATEGORIES
        if per.get(c)
    }
    n = sum(v["n"] for v in categories.values())
    return {
        "n": n,
        "categories": categories,
        "mean_category_accuracy": (
            sum(v["accuracy"] for v in categories.values()) / len(categories) if categories else None
        ),
        "overall_accuracy": sum(v["correct"] for v in categories.values()) / n if n else None,
        "categories_covered": len(categories),
    }
