"""A deterministic check of an answer against the evidence lines it cites, independent of the model.

The answer is split into claims (sentences and `;` clauses); a claim's citations are the bracketed ones
inside it, else all of the answer's. Each claim is checked against the text of the evidence lines that
carry its citations (the tools' own renderings of the resources):
- dates (YYYY-MM-DD, YYYY-MM) must be in a cited line (or in the question: the asker's own dates);
- codes (LOINC `1234-5`, SNOMED / RxNorm digit strings) must be in a cited line;
- numbers, with their unit when one is given, must be a value of a cited line, the difference of two
  cited values with the same unit (a change), the number of cited resources (a count) or the days
  between two cited dates;
- the remaining words (medication and condition names, displays, statuses, people) must be in the cited
  lines when they are clinical vocabulary: words of any retrieved line or of the question's options,
  or capitalized names; common framing words (`_COMMON`) and other plain words pass;
- a negation ("no record of X", "not found", "never") must not be contradicted by any retrieved line
  that names X.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClaimCheck", "check_answer", "split_claims"]

_CITATION = re.compile(r"\[[^\[\]]*\]")
_DATE = re.compile(r"\b(\d{4}-\d{2}(?:-\d{2})?)(?:T[0-9:.+\-Z]*)?\b")
_CODE = re.compile(r"\b(\d{3,7}-\d|\d{6,18})\b")
_NUMBER = re.compile(r"(?<![\w.])([-+−]?\d+(?:[.,]\d+)?)(?![\w.]*\d)")
_UNIT = re.compile(r"^\s?(%|[A-Za-zµ°\[\]{}*/^0-9.]*[A-Za-zµ°%/\]}][A-Za-zµ°\[\]{}*/^0-9.%]*)")
_RANGE = re.compile(r"\bref [^;\[\n]*")
_COUNTING = re.compile(r"\bhow many\b", re.IGNORECASE)
_OPTION = re.compile(r"^\s*\(?([A-Ea-e])[.)]\s+")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|e\.g|i\.e|approx|No)\.$", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?:no record of|no records of|not found|no evidence of|never|there (?:is|are|was|were) no|"
    r"has not|have not|had not|was not|were not|is not|isn't|wasn't|hasn't|no)\b",
    re.IGNORECASE,
)
_UNIT_NAMES = """
    % mg g kg lb lbs oz cm mm m in ft ml l dl fl pg ng ug µg mcg mmhg mmol mol meq iu u units min h hr
    hrs d wk mo yr yrs bpm /min °c °f cel degf kg/m2 mg/dl g/dl mmol/l beats breaths
    """
_KNOWN_UNITS = frozenset(_UNIT_NAMES.split())
# Words an answer uses to frame a fact, not facts themselves; anything else must be in a cited line.
_COMMON_WORDS = """
    a an the and or but of for with without in on at to by from as into onto per than then so that this
    these those there here it its is are was were be been being has have had having do does did done
    will would shall should can could may might must yes no not none nor any some all each every both
    which what when where who whom whose why how if whether while until since before after between
    during about around approximately roughly nearly over under above below up down out off again also
    only just still yet ever once twice times time total overall number count counted patient patients
    patient's their they them he she his her him hers theirs we our you your i my me record records
    recorded recording chart charted documented documentation entry entries listed list found shows
    show showed shown according evidence data note noted notes result results value values level levels
    reading readings measurement measurements measured measure test tested lab labs date dated dates
    day days week weeks month months year years old age first last latest earliest most recent recently
    previous previously prior current currently highest lowest maximum minimum max min peak high low
    higher lower change changed changes increase increased decrease decreased difference rose fell went
    prescribed prescription prescriptions prescribing ordered order orders medication medications
    medicine medicines drug drugs condition conditions diagnosis diagnoses diagnosed problem problems
    vaccine vaccines vaccination vaccinations immunization immunizations dose doses received receive
    given administered got taken taking take takes onset started start began begin status answer option
    correct choice letter kind type one two three four five six seven eight nine ten separate different
    distinct unique same other another such like unit units approximately exactly around
    """
_COMMON = frozenset(_COMMON_WORDS.split())
# FHIR statuses: always checked, since a line shows only the status its resource has.
_STATUSES = frozenset(
    {
        *("active", "inactive", "stopped", "completed", "cancelled", "draft", "on-hold", "unknown"),
        *("entered-in-error", "resolved", "remission", "recurrence", "relapse", "confirmed"),
        *("refuted", "unconfirmed", "provisional", "differential", "final", "preliminary", "amended"),
    }
)
_STEM = 5


_AFFIRMATIVE = re.compile(r"^\s*yes\b", re.IGNORECASE)


@dataclass
class ClaimCheck:
    """One claim, the citations it was checked against, and what was verified or found unsupported."""

    claim: str
    citations: list[str]
    supported: bool = True
    verified: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One trace line: the claim and what was verified, or why it is unsupported."""
        cited = ", ".join(self.citations) or "no citation"
        if self.supported:
            what = "; ".join(self.verified) or "nothing to verify"
            return f"supported by {cited}: {self.claim!r} ({what})"
        return f"unsupported by {cited}: {self.claim!r} ({'; '.join(self.problems)})"


def split_claims(answer: str, citations: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(claim text without citations, its citations): sentences and `;` clauses of the answer."""
    pieces: list[str] = []
    for part in _SENTENCE_END.split(answer.strip()):
        if pieces and (_ABBREVIATION.search(pieces[-1]) or _OPTION.fullmatch(pieces[-1] + " ")):
            pieces[-1] = f"{pieces[-1]} {part}"
        else:
            pieces.append(part)
    claims: list[tuple[str, list[str]]] = []
    for piece in pieces:
        inner = [c.strip("[] ") for c in _CITATION.findall(piece)]
        text = re.sub(r"\s+([.;,])", r"\1", " ".join(_CITATION.sub(" ", piece).split())).rstrip(" .;,")
        if text:
            claims.append((text, inner or list(citations)))
        elif claims and inner:
            claims[-1][1].extend(c for c in inner if c not in claims[-1][1])
    return claims


def _number(text: str) -> float | None:
    try:
        return float(text.replace("−", "-").replace(",", "."))
    except ValueError:
        return None


def _decimals(text: str) -> int:
    _, _, frac = text.replace(",", ".").partition(".")
    return len(frac)


def _quantities(text: str) -> list[tuple[float, str, str]]:
    """(value, unit casefolded or "", the number as written) for each number in a text."""
    out = []
    for match in _NUMBER.finditer(text):
        value = _number(match.group(1))
        if value is None:
            continue
        unit = _UNIT.match(text[match.end() :])
        out.append((value, unit.group(1).casefold() if unit else "", match.group(1)))
    return out


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def _related(a: str, b: str) -> bool:
    """Same word, or the same stem: a common prefix of at least five letters, and of all but the last
    three letters of the shorter word ("prescribed" / "prescription", "diabetic" / "diabetes")."""
    if a == b:
        return True
    n = max(_STEM, min(len(a), len(b)) - 3)
    return len(a) >= n and len(b) >= n and a[:n] == b[:n]


def _has_word(word: str, vocabulary: set[str]) -> bool:
    return word in vocabulary or any(_related(word, v) for v in vocabulary)


def _proper_nouns(text: str) -> set[str]:
    """Capitalized words (drug names, people, places), the claim's opening word included."""
    return {w.casefold() for w in re.findall(r"\b[A-Z][a-z]+", text)}


def _days(a: str, b: str) -> int | None:
    try:
        return abs((dt.date.fromisoformat(a) - dt.date.fromisoformat(b)).days)
    except ValueError:
        return None


def _strip_known(text: str) -> str:
    text = _DATE.sub(" ", text)
    return _CODE.sub(" ", text)


def _number_supported(
    value: float,
    unit: str,
    written: str,
    cited: list[tuple[float, str, str]],
    count: int,
    dates: Sequence[str],
    counting: bool,
) -> str | None:
    """How a number is supported by the cited lines, or None. With `counting` (the question asks how
    many), a whole number without a unit must be a count or a number of days."""
    places = _decimals(written)
    shown = f"{written} {unit}".strip()

    def same(cited_value: float) -> bool:
        return abs(value - cited_value) < 1e-9 or (places > 0 and round(cited_value, places) == value)

    whole = not unit and value == int(value)
    units_ok = [q for q in cited if not unit or q[1] == unit]
    if not (counting and whole):
        if any(same(q[0]) for q in units_ok):
            return f"{shown} is a cited value"
        for a, b in itertools.permutations(units_ok, 2):
            if a[1] == b[1] and abs(value - (b[0] - a[0])) <= 10**-places + 1e-9:
                return f"{shown} is the change {a[2]} -> {b[2]}"
    if whole:
        if int(value) == count:
            return f"{written} is the number of cited resources"
        for first, second in itertools.combinations(sorted(set(dates)), 2):
            if _days(first, second) == int(value):
                return f"{written} is the days from {first} to {second}"
    return None


def _check_claim(
    claim: str,
    citations: list[str],
    cited_text: str,
    all_text: Sequence[str],
    question: str,
    question_dates: set[str],
    units: set[str],
    known: set[str],
) -> ClaimCheck:
    check = ClaimCheck(claim, citations)
    body = _OPTION.sub("", claim)
    cited_dates = _DATE.findall(cited_text)
    cited_days = set(cited_dates)
    counting = bool(_COUNTING.search(question))
    negation = _NEGATION.search(body)
    if negation and not citations:
        return _check_negation(check, body[negation.end() :], all_text)
    clinical = [c for c in citations if not c.startswith("Patient/")]
    if _AFFIRMATIVE.match(body) and not clinical:
        check.supported = False
        check.problems.append("a yes resting on no clinical resource (the Patient resource records none)")
        return check
    _check_dates_and_codes(check, body, cited_text, cited_days, question_dates)
    rest = _strip_known(body)
    cited_quantities = _quantities(_RANGE.sub(" ", _strip_known(cited_text)))
    unit_words: set[str] = set()
    for value, unit, written in _quantities(rest):
        if unit and unit not in units and unit not in _KNOWN_UNITS:
            unit = ""
        unit_words.update(_words(unit))
        how = _number_supported(
            value,
            unit,
            written,
            cited_quantities,
            len(clinical),
            [*cited_days, *question_dates],
            counting,
        )
        if how:
            check.verified.append(how)
        else:
            check.problems.append(f"{written}{' ' + unit if unit else ''} is no value of the cited lines")
    _check_words(check, rest, cited_text, unit_words, known)
    check.supported = not check.problems
    return check


def _check_negation(check: ClaimCheck, negated: str, all_text: Sequence[str]) -> ClaimCheck:
    """An uncited "no X" holds unless a retrieved line names X."""
    subject = [w for w in _words(negated) if w not in _COMMON]
    if not subject:
        check.verified.append("a negation with nothing to contradict")
        return check
    for line in all_text:
        vocabulary = set(_words(line))
        if all(_has_word(w, vocabulary) for w in subject):
            check.supported = False
            check.problems.append(f"contradicted: a retrieved line names {' '.join(subject)!r}: {line}")
            return check
    check.verified.append(f"no retrieved line names {' '.join(subject)!r}")
    return check


def _check_dates_and_codes(
    check: ClaimCheck, body: str, cited_text: str, cited_days: set[str], question_dates: set[str]
) -> None:
    """Each date of the claim is in a cited line (or the question), each code in a cited line."""
    for day in _DATE.findall(body):
        if any(d.startswith(day) for d in cited_days) or day in question_dates:
            check.verified.append(f"date {day}")
        else:
            check.problems.append(f"date {day} is in no cited line")
    cited_codes = set(_CODE.findall(cited_text))
    for code in _CODE.findall(_DATE.sub(" ", body)):
        if code in cited_codes:
            check.verified.append(f"code {code}")
        else:
            check.problems.append(f"code {code} is in no cited line")


def _check_words(
    check: ClaimCheck, rest: str, cited_text: str, unit_words: set[str], known: set[str]
) -> None:
    """The claim's names (known words and proper nouns) are in the cited lines."""
    vocabulary = set(_words(cited_text))
    missing = [
        w
        for w in _words(rest)
        if w not in _COMMON
        and w not in unit_words
        and len(w) > 1
        and not _has_word(w, vocabulary)
        and (w in known or w in _proper_nouns(rest))
    ]
    if missing:
        check.problems.append(f"not in the cited lines: {', '.join(dict.fromkeys(missing))}")
    elif any(w not in _COMMON for w in _words(rest)):
        check.verified.append("names and words")


def check_answer(
    answer: str,
    citations: Sequence[str],
    evidence: Iterable[Mapping[str, Any]],
    question: str = "",
) -> list[ClaimCheck]:
    """Check each claim of an answer against the evidence lines (`text`, `citations`) it cites."""
    items = [(str(e["text"]), [str(c) for c in e["citations"]]) for e in evidence]
    all_text = [text for text, _ in items]
    units = {unit for text in all_text for _, unit, _ in _quantities(_strip_known(text)) if unit}
    asked = " ".join(line for line in question.splitlines() if not _OPTION.match(line))
    question_dates = set(_DATE.findall(asked))
    # Words a claim may not use without its citations saying them: those of any retrieved line (a value
    # of another resource) and of the question's options.
    options = [line for line in question.splitlines() if _OPTION.match(line)]
    known = ({w for text in [*all_text, *options] for w in _words(text)} - _COMMON) | _STATUSES
    checks = []
    for claim, cited in split_claims(answer, citations):
        wanted = set(cited)
        cited_text = "\n".join(text for text, cites in items if wanted.intersection(cites))
        checks.append(_check_claim(claim, cited, cited_text, all_text, asked, question_dates, units, known))
    return checks
