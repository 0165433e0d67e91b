"""The clinical arithmetic the task types are scored by: last value in a window, averages, age, doses.

These follow the benchmark's reference solutions: "within the last 24 hours" is effective time >= now - 24 h,
"most recent" is the latest effective time on record, and an HbA1c older than one year needs a new order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

__all__ = [
    "MRN_SYSTEM",
    "Measurement",
    "age_on",
    "average_within",
    "latest",
    "latest_within",
    "magnesium_dose",
    "measurements",
    "next_day_8am",
    "one_year_before",
    "patient_mrn",
    "potassium_dose",
]

MRN_SYSTEM = "urn:clinicflow:mrn"
"""System of the MRN identifiers clinicflow's synthetic task set adds to patients."""

Measurement = tuple[datetime, Any, str]
"""(effective time, value, effectiveDateTime as stored)."""


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)


def measurements(observations: Iterable[Mapping[str, Any]]) -> list[Measurement]:
    """(time, value, raw time) of each observation with an effectiveDateTime and a numeric value."""
    out: list[Measurement] = []
    for obs in observations:
        when = obs.get("effectiveDateTime")
        value = (obs.get("valueQuantity") or {}).get("value")
        if isinstance(when, str) and isinstance(value, int | float) and not isinstance(value, bool):
            try:
                out.append((_parse(when), value, when))
            except ValueError:
                continue
    return out


def latest(items: Iterable[Measurement]) -> Measurement | None:
    """The measurement with the latest time (the first of equal times, as the benchmark's loop keeps)."""
    best: Measurement | None = None
    for item in items:
        if best is None or item[0] > best[0]:
            best = item
    return best


def latest_within(items: Iterable[Measurement], now: datetime, hours: float = 24) -> Measurement | None:
    """The latest measurement taken at or after `now - hours`."""
    cutoff = now - timedelta(hours=hours)
    return latest(i for i in items if i[0] >= cutoff)


def average_within(items: Iterable[Measurement], now: datetime, hours: float = 24) -> float | None:
    """Mean value of the measurements taken at or after `now - hours`; None when there are none."""
    cutoff = now - timedelta(hours=hours)
    values = [float(i[1]) for i in items if i[0] >= cutoff]
    return sum(values) / len(values) if values else None


def age_on(birth_date: str, today: date) -> int:
    """Age in whole years on `today`."""
    born = date.fromisoformat(birth_date[:10])
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def one_year_before(now: datetime) -> datetime:
    """The same instant one calendar year earlier (Feb 29 becomes Feb 28)."""
    try:
        return now.replace(year=now.year - 1)
    except ValueError:
        return now.replace(year=now.year - 1, day=28)


def magnesium_dose(value: float) -> tuple[int, int] | None:
    """(grams, hours) of IV magnesium for a serum level in mg/dL; None when it is not low (> 1.9)."""
    if value > 1.9:
        return None
    if value < 1:
        return 4, 4
    if value < 1.5:
        return 2, 2
    return 1, 1


def potassium_dose(value: float) -> float | None:
    """mEq of oral potassium for a serum level: 10 mEq per 0.1 below 3.5; None when not low."""
    if value >= 3.5:
        return None
    return round((3.5 - value) / 0.1 * 10, 1)


def next_day_8am(now: datetime) -> datetime:
    """08:00 on the day after `now`, in `now`'s time zone."""
    return (now + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)


def patient_mrn(patient: Mapping[str, Any]) -> str | None:
    """A patient's MRN: the clinicflow MRN identifier if present, else the id (MedAgentBench's own data)."""
    for identifier in patient.get("identifier") or []:
        if (
            isinstance(identifier, Mapping)
            and identifier.get("system") == MRN_SYSTEM
            and identifier.get("value")
        ):
            return str(identifier["value"])
    resource_id = patient.get("id")
    return str(resource_id) if resource_id else None
