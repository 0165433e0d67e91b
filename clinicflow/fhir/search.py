"""Immutable, chainable FHIR search builder: each method returns a new `Search`, the original is unchanged."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .client import FhirClient

__all__ = ["DATE_PREFIXES", "DEFAULT_LIMIT", "DEFAULT_MAX_PAGES", "Search", "encode_value"]

DEFAULT_LIMIT = 10_000
"""Upper bound on resources yielded by one iteration unless the caller gives another."""
DEFAULT_MAX_PAGES = 1_000
"""Upper bound on pages (requests) fetched by one iteration, whatever the resource limit."""

DatePrefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
DATE_PREFIXES: frozenset[str] = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

_FHIR_DATE = re.compile(
    r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d+)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$"
)
_SORT_FIELD = re.compile(r"^-?[A-Za-z_][A-Za-z0-9_.:-]*$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")
_ESCAPE = str.maketrans({"\\": "\\\\", "|": "\\|", ",": "\\,", "$": "\\$"})

Scalar = str | int | float | Decimal | bool | dt.date
Value = Scalar | list[Scalar] | tuple[Scalar, ...]


def encode_value(value: Scalar) -> str:
    """One search parameter value as it goes on the wire (booleans lower-case, dates ISO 8601)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str):
        if not value:
            raise ValueError("empty search value")
        return value
    raise TypeError(f"unsupported search value type {type(value).__name__}: {value!r}")


def _param_name(name: str) -> str:
    wire = name if ":" in name else name.replace("__", ":")
    if not _PARAM_NAME.match(wire):
        raise ValueError(f"invalid search parameter name {name!r}")
    return wire


def _encode_date(param: str, value: str | dt.date) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise TypeError(
            f"date value for {param!r} must be a date, datetime or str, not {type(value).__name__}"
        )
    if not _FHIR_DATE.match(value):
        hint = " (give the prefix separately)" if value[:2] in DATE_PREFIXES else ""
        raise ValueError(
            f"invalid date value {value!r} for {param!r}{hint}: expected YYYY, YYYY-MM, YYYY-MM-DD "
            "or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm]"
        )
    return value


@dataclass(frozen=True)
class Search:
    """A search on one resource type; build it with `FhirClient.search(type)`, then chain."""

    client: FhirClient = field(repr=False, compare=False)
    resource_type: str
    query: tuple[tuple[str, str], ...] = ()

    def _add(self, *pairs: tuple[str, str]) -> Search:
        return replace(self, query=(*self.query, *pairs))

    def _set(self, name: str, value: str) -> Search:
        kept = tuple(p for p in self.query if p[0] != name)
        return replace(self, query=(*kept, (name, value)))

    def where(self, params: Mapping[str, Value] | None = None, /, **kwargs: Value) -> Search:
        """Add parameters; a list repeats the parameter (AND), `a__b=` means `a:b=` (a modifier).

        Names that are not Python identifiers (`clinical-status`) go in the positional mapping.
        Adding a name again repeats it rather than replacing it.
        """
        pairs: list[tuple[str, str]] = []
        for name, value in (*(params or {}).items(), *kwargs.items()):
            wire = _param_name(name)
            values = value if isinstance(value, list | tuple) else [value]
            if not values:
                raise ValueError(f"empty value list for search parameter {name!r}")
            try:
                pairs.extend((wire, encode_value(v)) for v in values)
            except ValueError as exc:
                raise ValueError(f"search parameter {name!r}: {exc}") from None
        return self._add(*pairs)

    def token(self, param: str, system: str | None, code: str | None) -> Search:
        """Match a coded value: `system|code`, `code` alone when system is None, `system|` for any code."""
        if system is None and code is None:
            raise ValueError(f"token search on {param!r} needs a system, a code, or both")
        code_part = (code or "").translate(_ESCAPE)
        value = code_part if system is None else f"{system.translate(_ESCAPE)}|{code_part}"
        return self._add((_param_name(param), value))

    def date(self, param: str, prefix: DatePrefix | str, value: str | dt.date) -> Search:
        """Compare a date parameter: prefix one of eq ne gt lt ge le sa eb ap; call twice for a range."""
        if prefix not in DATE_PREFIXES:
            raise ValueError(
                f"invalid date prefix {prefix!r} for {param!r}: use one of {', '.join(sorted(DATE_PREFIXES))}"
            )
        return self._add((_param_name(param), f"{prefix}{_encode_date(param, value)}"))

    def count(self, n: int) -> Search:
        """Ask for pages of n resources (`_count`); servers may cap it, paging still gets the rest."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"_count must be a non-negative integer, got {n!r}")
        return self._set("_count", str(n))

    def sort(self, *fields: str) -> Search:
        """Order results by fields (`_sort`); a leading '-' sorts descending, e.g. sort("-date")."""
        if not fields:
            raise ValueError("sort() needs at least one field")
        for f in fields:
            if not isinstance(f, str) or not _SORT_FIELD.match(f):
                raise ValueError(f"invalid sort field {f!r}")
        return self._set("_sort", ",".join(fields))

    def params(self) -> tuple[tuple[str, str], ...]:
        """The (name, value) pairs this search sends, in order."""
        return self.query

    async def page(self) -> dict[str, Any]:
        """Fetch the first page: the searchset Bundle as the server returned it."""
        return await self.client.get_bundle(self.resource_type, self.query)

    def iter(
        self, limit: int | None = DEFAULT_LIMIT, *, max_pages: int = DEFAULT_MAX_PAGES
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate matching resources across pages (Bundle.link next), stopping at `limit` or `max_pages`."""
        query = self.query
        if limit is not None and not any(name == "_count" for name, _ in query):
            query = (*query, ("_count", str(max(1, min(limit, 1000)))))
        return self.client.paginate(self.resource_type, query, limit=limit, max_pages=max_pages)

    async def all(
        self, limit: int | None = DEFAULT_LIMIT, *, max_pages: int = DEFAULT_MAX_PAGES
    ) -> list[dict]:
        """All matching resources up to `limit` (and `max_pages` requests) as a list."""
        return [r async for r in self.iter(limit, max_pages=max_pages)]
