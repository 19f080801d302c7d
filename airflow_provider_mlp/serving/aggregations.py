"""Pluggable aggregations of the lookup endpoint: the final answer computed from cached rows and request params.

A lookup aggregation is any object with two methods::

    keys(params) -> list[key]              # which cached rows the request needs
    aggregate(rows, params) -> JSON value  # rows: {key: {column: value}} of the keys found

``MLP_SERVING_LOOKUP_AGGREGATION=package.module:NAME`` names one (an instance, or a class built with
no arguments); ``POST /v1/lookup`` then takes ``{"params": {...}}`` alone and answers
``{"result": aggregate(...), "missing": [...]}``. A ``ValueError``, ``TypeError`` or ``KeyError``
raised by either method is the client's mistake (422 naming ``params``).

:class:`SeriesCube` is the aggregation of a precomputed *cube* of daily series: one row per
combination of dimension members, with :data:`ALL` standing for "every member" of a dimension
(so an unfiltered dimension costs one key, not one per member), each row holding dense daily
series that start on ``first_day``. A request filters dimensions and picks a date range; the
answer is the element-wise sum over the chosen slices. Runtime side: no Airflow.
"""

from __future__ import annotations

import datetime as dt
import importlib
import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow_provider_mlp.errors import ConfigurationError, MlpError


class CachedDataError(MlpError, RuntimeError):
    """The cached rows are not what the aggregation reads (a torn or foreign cube): the service's
    failure, answered 503, never the request's."""


ALL = "*"
MEMBERS_QUERY = "members"
SERIES_QUERY = "series"


class LookupAggregation(Protocol):
    def keys(self, params: Mapping[str, Any]) -> list[Any]: ...

    def aggregate(self, rows: Mapping[Any, Mapping[str, Any]], params: Mapping[str, Any]) -> Any: ...


def load_lookup_aggregation(spec: str) -> LookupAggregation:
    """The aggregation named ``module:attribute`` (an instance, or a class instantiated with no arguments)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"MLP_SERVING_LOOKUP_AGGREGATION must be 'package.module:NAME', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"MLP_SERVING_LOOKUP_AGGREGATION={spec!r}: cannot import {module_name!r}: {exc}"
        ) from exc
    target = getattr(module, attribute, None)
    if target is None:
        raise ConfigurationError(f"MLP_SERVING_LOOKUP_AGGREGATION={spec!r}: {module_name} has no {attribute!r}")
    aggregation = target() if isinstance(target, type) else target
    for method in ("keys", "aggregate"):
        if not callable(getattr(aggregation, method, None)):
            raise ConfigurationError(
                f"MLP_SERVING_LOOKUP_AGGREGATION={spec!r}: {type(aggregation).__name__} has no {method}() method"
            )
    return aggregation


def _date(params: Mapping[str, Any], name: str) -> dt.date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"params.{name} must be an ISO date text (YYYY-MM-DD), got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"params.{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


class SeriesCube:
    """Sum of daily series over the slices a request chooses, from a cube keyed by ``dimensions``.

    Request params: for each dimension ``d`` in ``filters`` a list of members (``{"country": ["US"]}``;
    missing or empty: every member, read from the :data:`ALL` row), ``start``/``end`` (ISO dates,
    inclusive; default: the whole series), ``query``: ``"series"`` (default) or ``"members"`` (the
    values of the all-:data:`ALL` row that are not series: the dimension members for a UI).

    :param dimensions: the key columns, in key order.
    :param measures: the value columns holding dense daily series (lists of numbers).
    :param max_slices: most slices one request may sum (the product of its filters' sizes).
    """

    def __init__(self, dimensions: Sequence[str], measures: Sequence[str], *, max_slices: int = 1000) -> None:
        self.dimensions = tuple(dimensions)
        self.measures = tuple(measures)
        self.max_slices = max_slices

    def _filters(self, params: Mapping[str, Any]) -> list[list[Any]]:
        given = params.get("filters") or {}
        if not isinstance(given, Mapping):
            raise ValueError(f"params.filters must be an object of dimension -> members, got {given!r}")
        unknown = sorted(set(given) - set(self.dimensions))
        if unknown:
            raise ValueError(f"params.filters: no dimension {unknown[0]!r} (dimensions: {list(self.dimensions)})")
        chosen: list[list[Any]] = []
        for dimension in self.dimensions:
            members = given.get(dimension) or []
            if not isinstance(members, list) or not all(isinstance(m, str | int) for m in members):
                raise ValueError(f"params.filters.{dimension} must be a list of members, got {members!r}")
            chosen.append(list(dict.fromkeys(members)) or [ALL])
        return chosen

    def keys(self, params: Mapping[str, Any]) -> list[Any]:
        query = params.get("query") or SERIES_QUERY
        if query == MEMBERS_QUERY:
            return [[ALL] * len(self.dimensions)]
        if query != SERIES_QUERY:
            raise ValueError(f"params.query must be {SERIES_QUERY!r} or {MEMBERS_QUERY!r}, got {query!r}")
        chosen = self._filters(params)
        count = 1
        for members in chosen:
            count *= len(members)
        if count > self.max_slices:
            raise ValueError(
                f"params.filters choose {count} slices; at most {self.max_slices} (leave a dimension empty for all)"
            )
        return [list(key) for key in itertools.product(*chosen)]

    def aggregate(self, rows: Mapping[Any, Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
        if (params.get("query") or SERIES_QUERY) == MEMBERS_QUERY:
            row = rows.get(tuple([ALL] * len(self.dimensions)), {})
            return {name: value for name, value in row.items() if name not in self.measures and name != "first_day"}
        start, end = _date(params, "start"), _date(params, "end")
        if start is not None and end is not None and end < start:
            raise ValueError(f"params.end ({end}) is before params.start ({start})")
        totals: dict[str, list[float]] = {}
        first: dt.date | None = None
        for key, row in rows.items():
            try:
                row_first = dt.date.fromisoformat(str(row["first_day"]))
                series_of = {measure: list(row[measure]) for measure in self.measures}
            except (KeyError, TypeError, ValueError) as exc:
                raise CachedDataError(f"cached row {key!r} is not a cube row ({type(exc).__name__}: {exc})") from None
            if first is None:
                first = row_first
            elif row_first != first:
                raise CachedDataError(f"cached rows start on different days ({first} and {row_first}): a torn cube")
            for measure, series in series_of.items():
                total = totals.get(measure)
                if total is None:
                    totals[measure] = series
                    continue
                if len(total) != len(series):
                    raise CachedDataError(f"cached series of {measure!r} differ in length at key {key!r}: a torn cube")
                totals[measure] = list(map(operator.add, total, series))
        if first is None:
            return {"dates": [], **{m: [] for m in self.measures}, "slices": 0}
        length = len(next(iter(totals.values()), []))
        lo = 0 if start is None else max(0, (start - first).days)
        hi = length if end is None else min(length, (end - first).days + 1)
        lo = min(lo, hi)
        dates = [(first + dt.timedelta(days=i)).isoformat() for i in range(lo, hi)]
        return {"dates": dates, **{m: totals[m][lo:hi] for m in self.measures}, "slices": len(rows)}
