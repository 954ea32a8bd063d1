"""Declared query filters for list views: one spec per parameter parses and validates the query string and
declares the parameter in the OpenAPI schema (accounts.api.schema.AutoSchema reads `view.filters`).

A list view declares

    filters = (Filter.int("experiment", field="experiment_id"), Filter.choice("status", RunStatus))

and calls `apply_filters(self, qs)` in `get_queryset`. A value that is not an integer, not one of the
allowed values, not a date, not `true`/`false` for a boolean, or holds a NUL byte is a 400 in the error
model naming the parameter (and the allowed values), never an empty list and never a 500. Unknown
parameters are ignored, as HTTP APIs do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from accounts.errors import ValidationFailed

INT_MAX = 2**63 - 1  # bigint primary keys
STR_MAX_LENGTH = 200
BOOL_VALUES = ("true", "false")  # a boolean filter's only spellings (what OpenAPI clients send for a boolean)


@dataclass(frozen=True)
class Filter:
    """One query parameter of a list view."""

    name: str
    type: str  # "int" | "choice" | "datetime" | "bool" | "str"
    field: str  # the ORM lookup the value filters on ("" = the view applies it itself)
    choices: tuple[str, ...] = ()
    description: str = ""
    max_length: int = STR_MAX_LENGTH
    allow_empty: bool = False

    @classmethod
    def int(cls, name: str, *, field: str | None = None, description: str = "") -> Filter:
        return cls(name, "int", field if field is not None else name, description=description)

    @classmethod
    def choice(cls, name: str, choices: Any, *, field: str | None = None, description: str = "") -> Filter:
        values = tuple(getattr(choices, "values", None) or choices)
        return cls(
            name,
            "choice",
            field if field is not None else name,
            choices=tuple(str(v) for v in values),
            description=description,
        )

    @classmethod
    def str(
        cls,
        name: str,
        *,
        field: str | None = None,
        description: str = "",
        max_length: int = STR_MAX_LENGTH,
        allow_empty: bool = False,
    ) -> Filter:
        return cls(
            name,
            "str",
            field if field is not None else name,
            description=description,
            max_length=max_length,
            allow_empty=allow_empty,
        )

    @classmethod
    def date(cls, name: str, *, field: str | None = None, description: str = "") -> Filter:
        """A date (YYYY-MM-DD) or an ISO 8601 date-time; compare with `field` (e.g. `occurred_at__gte`)."""
        return cls(name, "datetime", field if field is not None else name, description=description)

    @classmethod
    def bool(cls, name: str, *, field: str | None = None, description: str = "") -> Filter:
        """`true` or `false` (exactly, lower case, as JSON writes them); anything else is a 400. The schema
        documents it as an OpenAPI boolean; without a description it says so in words."""
        return cls(
            name,
            "bool",
            field if field is not None else name,
            choices=BOOL_VALUES,
            description=description or "true or false; anything else is a 400.",
        )

    # -- parsing --------------------------------------------------------------------------------------

    def parse(self, raw: str) -> Any:
        if "\x00" in raw:
            raise _invalid(self.name, "must not contain a NUL byte.")
        if self.type == "int":
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= INT_MAX:
                raise _invalid(self.name, f"must be a positive integer, not {_show(raw)}.")
            return int(raw)
        if self.type == "choice":
            if raw not in self.choices:
                allowed = ", ".join(self.choices)
                raise ValidationFailed(
                    f"Query parameter '{self.name}' must be one of: {allowed} (got {_show(raw)}).",
                    details={self.name: [f"Must be one of: {allowed}."]},
                )
            return raw
        if self.type == "bool":
            if raw not in BOOL_VALUES:
                raise _invalid(self.name, f"must be true or false, not {_show(raw)}.")
            return raw == "true"
        if self.type == "datetime":
            value = _parse_moment(raw)
            if value is None:
                raise _invalid(self.name, f"must be a date (YYYY-MM-DD) or an ISO 8601 date-time, not {_show(raw)}.")
            return value
        if raw == "" and not self.allow_empty:
            raise _invalid(self.name, "must not be empty.")
        if len(raw) > self.max_length:
            raise _invalid(self.name, f"must be at most {self.max_length} characters.")
        return raw

    def openapi_schema(self) -> dict:
        if self.type == "int":
            return {"type": "integer", "minimum": 1, "maximum": INT_MAX}
        if self.type == "choice":
            return {"type": "string", "enum": list(self.choices)}
        if self.type == "bool":
            return {"type": "boolean"}
        if self.type == "datetime":
            return {"type": "string", "format": "date-time"}
        return {"type": "string", "minLength": 0 if self.allow_empty else 1, "maxLength": self.max_length}


def _show(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def _invalid(name: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Query parameter '{name}' {problem}", details={name: [problem[0].upper() + problem[1:]]})


def _parse_moment(raw: str) -> dt.datetime | None:
    from django.utils import timezone

    try:
        moment = parse_datetime(raw)
        if moment is None:
            day = parse_date(raw)
            if day is None:
                return None
            moment = dt.datetime.combine(day, dt.time.min)
    except ValueError:  # well formed but out of range (month 13 ...)
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, dt.UTC)
    return moment


def parse_filters(filters: Iterable[Filter], params) -> dict[str, Any]:
    """The declared parameters present in `params` (a QueryDict), parsed; 400 on the first bad one."""
    values: dict[str, Any] = {}
    for spec in filters:
        raw_values = params.getlist(spec.name)
        if not raw_values:
            continue
        if len(raw_values) > 1:
            raise _invalid(spec.name, "may be given once.")
        values[spec.name] = spec.parse(raw_values[0])
    return values


def filter_values(view) -> dict[str, Any]:
    """The view's parsed filters, parsed once per request."""
    request = view.request
    cached = getattr(request, "_declared_filter_values", None)
    if cached is None:
        cached = parse_filters(getattr(view, "filters", ()), request.query_params)
        request._declared_filter_values = cached
    return cached


def apply_filters(view, qs: QuerySet) -> QuerySet:
    """Filter `qs` by every declared filter with a `field` that the request gives."""
    by_name = {f.name: f for f in getattr(view, "filters", ())}
    for name, value in filter_values(view).items():
        if by_name[name].field:
            qs = qs.filter(**{by_name[name].field: value})
    return qs
