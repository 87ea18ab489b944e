"""Input handling shared by the matching functions: the treatment column and option checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._design import require_columns
from ..errors import InputError


def check_option(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise InputError naming the bad value and the allowed ones."""
    if value not in allowed:
        raise InputError(f"{name}={value!r} is not allowed; use one of {list(allowed)}")


def as_column_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return list(columns)


def require_unique_index(data: pd.DataFrame, where: str) -> None:
    """Raise when ``data.index`` repeats a label: results (weights, matched sets) are aligned to it."""
    if not data.index.is_unique:
        dup = data.index[data.index.duplicated()]
        raise InputError(
            # Labels are not shown: an index is often a patient or stay identifier.
            f"{where}: the index has {len(dup)} duplicate label(s) among {len(data)} rows; weights and "
            "matched sets are aligned to data.index, so every row needs "
            "its own label: use data.reset_index(drop=True) or set a unique id (e.g. the stay id) as the index"
        )


def treatment_indicator(
    data: pd.DataFrame, treatment: str, treated: Any = None, where: str = "data"
) -> tuple[np.ndarray, Any, Any]:
    """The treatment column as a boolean array ``is_treated`` plus the treated and control values.

    A treatment must take exactly two values. Which one is "treated": ``True``
    for a boolean column, ``1`` for a 0/1 column, otherwise the second level
    (the categorical's order, else sorted), which is how R's ``glm`` codes a
    two-level factor response. ``treated=`` overrides that choice.
    """
    require_columns(data, [treatment], where)
    col = data[treatment]
    n_missing = int(col.isna().sum())
    if n_missing:
        raise InputError(
            f"{where}: treatment column {treatment!r} has {n_missing} missing value(s) out of {len(col)} rows; "
            "every unit must be treated or control (drop or recode them explicitly)"
        )
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = [lv for lv in col.cat.categories if (col == lv).any()]
    else:
        levels = sorted(pd.unique(col).tolist(), key=lambda v: (str(type(v)), v))
    if len(levels) != 2:
        shown = levels[:6]
        if len(levels) == 1:
            raise InputError(
                f"{where}: treatment column {treatment!r} has a single value {shown[0]!r} in all {len(col)} rows: "
                "there are no treated or no control units to compare"
            )
        raise InputError(
            f"{where}: treatment column {treatment!r} must be two-valued (0/1, boolean or two levels); "
            f"it has {len(levels)} distinct values, e.g. {shown}"
        )
    if treated is None:
        if pd.api.types.is_bool_dtype(col):
            treated = True
        elif pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            if set(levels) != {0, 1}:
                raise InputError(
                    f"{where}: numeric treatment column {treatment!r} takes the values {levels}, not 0/1; "
                    "pass treated=<the treated value> to say which arm is treated"
                )
            treated = 1
        else:
            treated = levels[1]
    if treated not in levels:
        raise InputError(f"{where}: treated={treated!r} is not a value of column {treatment!r}; values are {levels}")
    control = levels[0] if levels[1] == treated else levels[1]
    is_treated = np.asarray(col == treated, dtype=bool)
    return is_treated, treated, control
