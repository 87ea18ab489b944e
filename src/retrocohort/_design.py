"""Column checks and design matrices shared by the survival and matching layers.

``design_matrix`` expands covariates as R's ``model.matrix`` does with
treatment contrasts: a numeric or boolean column stays one column; a
categorical, string or object column becomes one 0/1 column per level except
the first (levels in the categorical's order, else sorted), named
``"<column><level>"`` exactly as R names them (``sexM``, ``stageIII``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import InputError


def require_columns(data: pd.DataFrame, columns: Sequence[str], where: str = "data") -> None:
    """Raise InputError naming every requested column that ``data`` lacks."""
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"{where} must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise InputError(
            f"{where} has no column(s) {missing}; available columns: {list(map(str, data.columns))}"
        )


def numeric_column(data: pd.DataFrame, name: str, where: str = "data", *, allow_missing: bool = False) -> np.ndarray:
    """Column ``name`` as float64, with a clear error for non-numeric or missing values."""
    require_columns(data, [name], where)
    col = data[name]
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
        converted = pd.to_numeric(col, errors="coerce")
        bad = int(converted.isna().sum() - col.isna().sum())
        if bad:
            raise InputError(f"{where}: column {name!r} has {bad} non-numeric value(s); it must be numeric")
        col = converted
    values = np.asarray(col, dtype=float)
    if not allow_missing:
        n_missing = int(np.isnan(values).sum())
        if n_missing:
            raise InputError(
                f"{where}: column {name!r} has {n_missing} missing value(s) out of {len(values)} rows; "
                "drop or impute them explicitly before the analysis (nothing is dropped silently)"
            )
    n_inf = int(np.isinf(values).sum())
    if n_inf:
        raise InputError(f"{where}: column {name!r} has {n_inf} infinite value(s)")
    return values


def _is_categorical(col: pd.Series) -> bool:
    return (
        isinstance(col.dtype, pd.CategoricalDtype)
        or col.dtype == object
        or pd.api.types.is_string_dtype(col)
    )


def design_matrix(data: pd.DataFrame, covariates: Sequence[str], where: str = "data") -> pd.DataFrame:
    """Expand ``covariates`` to numeric columns with R's treatment contrasts.

    Returns a float DataFrame aligned to ``data.index`` with one column per
    model term, no intercept. Missing values raise InputError naming the
    columns and counts.
    """
    covariates = list(covariates)
    if not covariates:
        return pd.DataFrame(index=data.index)
    require_columns(data, covariates, where)
    missing = {c: int(data[c].isna().sum()) for c in covariates if data[c].isna().any()}
    if missing:
        raise InputError(
            f"{where}: missing values in covariate(s) {missing} (column: rows) out of {len(data)} rows; "
            "drop or impute them explicitly before fitting (nothing is dropped silently)"
        )
    parts: dict[str, np.ndarray] = {}
    for name in covariates:
        col = data[name]
        if _is_categorical(col):
            cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
            levels = [lv for lv in cat.cat.categories if (cat == lv).any()] if not isinstance(
                col.dtype, pd.CategoricalDtype) else list(cat.cat.categories)
            if len(levels) < 2:
                raise InputError(f"{where}: categorical covariate {name!r} has a single level {levels}; drop it")
            codes = np.asarray(cat.astype(object))
            for level in levels[1:]:
                parts[f"{name}{level}"] = (codes == level).astype(float)
        elif pd.api.types.is_bool_dtype(col):
            parts[f"{name}TRUE"] = np.asarray(col, dtype=float)
        else:
            parts[name] = numeric_column(data, name, where)
    return pd.DataFrame(parts, index=data.index)
