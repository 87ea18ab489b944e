"""Validation of the time, event, status, weight and group columns of survival data.

Every survival estimator (Kaplan-Meier, log-rank, Cox, cumulative incidence,
Gray, Fine-Gray) starts from the same columns, so their checks live here and
raise :class:`~retrocohort.errors.InputError` with one wording: the caller and
its frame (``where``, e.g. "kaplan_meier data"), the column, how many rows of
how many are affected, and what to do. ``where`` is required so that no
message can start with an anonymous "data:". Nothing is dropped
silently: R's survival functions drop rows with missing values via
``na.action``; we refuse them instead, so the analysis frame states its rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .._design import numeric_column, require_columns
from ..errors import InputError

__all__ = [
    "check_event",
    "check_group",
    "check_status",
    "check_time",
    "check_weights",
    "require_events",
]


def check_time(data: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Follow-up times as float64, shape (n,): no missing, infinite or negative values.

    Zero is allowed (an event on the index day), as in ``Surv()``.
    """
    times = numeric_column(data, column, where)
    negative = int((times < 0).sum())
    if negative:
        raise InputError(
            f"{where}: column {column!r} has {negative} negative time(s) out of {len(times)} rows "
            f"(smallest {times.min():g}); times are measured from the index time and must be >= 0: "
            "check how they were derived (an outcome dated before the index?) and fix or drop those rows explicitly"
        )
    return times


def check_event(data: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Event indicator as bool, shape (n,): values must be 0/1 (or False/True)."""
    require_columns(data, [column], where)
    col = data[column]
    if pd.api.types.is_bool_dtype(col) and not col.isna().any():
        return np.asarray(col, dtype=bool)
    values = numeric_column(data, column, where)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        shown = sorted(set(np.unique(values[bad]).tolist()))[:5]
        raise InputError(
            f"{where}: column {column!r} must be 0 (censored) or 1 (event); {int(bad.sum())} of {len(values)} "
            f"rows have other values, e.g. {shown}. Recode the column to 0/1, or, for competing risks, "
            "pass it as the status column of cumulative_incidence / gray_test / fine_gray instead"
        )
    return values == 1.0


def check_status(
    data: pd.DataFrame,
    column: str,
    censor_code: int = 0,
    causes: Iterable[int] | None = None,
    *,
    where: str,
) -> np.ndarray:
    """Competing-risks status codes as int64, shape (n,).

    ``censor_code`` marks censoring; every other integer is a cause. When
    ``causes`` is given, codes outside ``{censor_code} | causes`` raise.
    """
    values = numeric_column(data, column, where)
    already_integer = pd.api.types.is_integer_dtype(data[column].dtype)
    not_integer = np.zeros(0, dtype=bool) if already_integer else values != np.round(values)
    if not_integer.any():
        raise InputError(
            f"{where}: column {column!r} has {int(not_integer.sum())} non-integer status code(s) out of "
            f"{len(values)} rows, e.g. {sorted(set(np.unique(values[not_integer]).tolist()))[:5]}; status must be "
            f"{censor_code} for censored and an integer code per cause: recode those rows"
        )
    codes = values.astype(np.int64)
    if causes is not None:
        allowed = {int(censor_code), *(int(c) for c in causes)}
        bad = ~np.isin(codes, sorted(allowed))
        if bad.any():
            shown = sorted(set(np.unique(codes[bad]).tolist()))[:5]
            raise InputError(
                f"{where}: column {column!r} has {int(bad.sum())} of {len(codes)} rows with status code(s) "
                f"{shown} outside the declared codes {sorted(allowed)} (censor_code={censor_code}); "
                "recode those rows or declare the code as a competing cause"
            )
    return codes


def check_weights(data: pd.DataFrame, column: str | None, where: str) -> np.ndarray | None:
    """Case weights as float64, shape (n,), or None; they must be finite and >= 0."""
    if column is None:
        return None
    weights = numeric_column(data, column, where)
    negative = int((weights < 0).sum())
    if negative:
        raise InputError(
            f"{where}: weight column {column!r} has {negative} negative value(s) out of {len(weights)} rows; "
            "case weights must be >= 0: fix or drop those rows"
        )
    return weights


def check_group(data: pd.DataFrame, column: str | None, where: str, role: str = "group") -> tuple[np.ndarray, list]:
    """Integer codes (n,) and level labels of a grouping column, in R's factor order.

    Levels follow a pandas Categorical's categories (unused ones dropped, as
    survfit/survdiff show only groups with rows), else the sorted distinct
    values, which is the order ``factor()`` gives in R. ``column=None`` gives
    one group with label None. ``role`` names the column in messages
    ("group", "strata").
    """
    if column is None:
        return np.zeros(len(data), dtype=np.int64), [None]
    require_columns(data, [column], where)
    col = data[column]
    n_missing = int(col.isna().sum())
    if n_missing:
        raise InputError(
            f"{where}: {role} column {column!r} has {n_missing} missing value(s) out of {len(col)} rows; "
            "give them a level or drop the rows explicitly"
        )
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.cat.codes, dtype=np.int64)
        used = np.unique(codes)
        levels = [col.cat.categories[i] for i in used]
        remap = np.full(len(col.cat.categories), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return remap[codes], levels
    # hash-based factorize with sorted levels: O(n), where np.unique would argsort all rows
    codes, levels_arr = pd.factorize(col, sort=True)
    levels = [v.item() if hasattr(v, "item") else v for v in np.asarray(levels_arr)]
    return np.asarray(codes, dtype=np.int64), levels


def require_events(n_events: float, n_rows: int, column: str, where: str, event: str = "1 (event)") -> None:
    """Raise when an estimator has nothing to estimate from (no events at all).

    ``event`` says which value of ``column`` counts as an event, for the message.
    """
    if n_events <= 0:
        raise InputError(
            f"{where}: column {column!r} has no events (no row is {event}) among its {n_rows} rows, "
            "so there is nothing to estimate; check the event coding and that follow-up covers the outcome"
        )
