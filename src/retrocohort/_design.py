"""Column checks and design matrices shared by the survival and matching layers.

``design_matrix`` expands covariates as R's ``model.matrix`` does with
treatment contrasts: a numeric or boolean column stays one column; a
categorical, string or object column becomes one 0/1 column per level except
the first (levels in the categorical's order, else sorted), named
``"<column><level>"`` exactly as R names them (``sexM``, ``stageIII``).
A Categorical's levels without rows raise by default (see ``design_matrix``).
A text column that holds numbers (a numeric column with a stray string) is
refused rather than dummy-coded (see ``_refuse_numbers_in_text_column``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd

from .errors import InputError


def require_columns(data: pd.DataFrame, columns: Sequence[str], where: str = "data") -> None:
    """Raise InputError naming every requested column that ``data`` lacks."""
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"{where} must be a pandas DataFrame, got {type(data).__name__}")
    unnamed = [c for c in columns if not isinstance(c, str | int)]
    if unnamed:
        raise InputError(
            f"{where}: a column is named by its name (a string); got {unnamed!r}: pass the column's name, "
            "not a list or the column itself"
        )
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise InputError(f"{where} has no column(s) {missing}; available columns: {list(map(str, data.columns))}")


def numeric_column(data: pd.DataFrame, name: str, where: str = "data", *, allow_missing: bool = False) -> np.ndarray:
    """Column ``name`` as float64, shape (n,); non-numeric, missing or infinite values raise.

    Every message names ``where`` (the frame), the column, how many of the
    frame's rows are affected and what to do about them.
    """
    require_columns(data, [name], where)
    col = data[name]
    n = len(col)
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col):
        converted = pd.to_numeric(col, errors="coerce")
        failed = converted.isna() & col.notna()
        bad = int(failed.sum())
        if bad:
            examples = list(dict.fromkeys(col[failed].tolist()))[:3]
            raise InputError(
                f"{where}: column {name!r} has {bad} non-numeric value(s) out of {n} rows (e.g. {examples}); "
                "it must be numeric: recode those values to numbers, or convert with "
                f"pd.to_numeric(df[{name!r}], errors='coerce') and drop or impute the failures explicitly"
            )
        col = converted
    values = np.asarray(col, dtype=float)
    if not allow_missing:
        n_missing = int(np.isnan(values).sum())
        if n_missing:
            raise InputError(
                f"{where}: column {name!r} has {n_missing} missing value(s) out of {n} rows; "
                "drop or impute them explicitly before the analysis (nothing is dropped silently)"
            )
    n_inf = int(np.isinf(values).sum())
    if n_inf:
        raise InputError(
            f"{where}: column {name!r} has {n_inf} infinite value(s) out of {n} rows; "
            "replace them with finite values or drop those rows explicitly before the analysis "
            "(nothing is dropped silently)"
        )
    return values


def _is_categorical(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or pd.api.types.is_string_dtype(col)


def _refuse_numbers_in_text_column(col: pd.Series, name: str, where: str) -> None:
    """Raise when a text (object/string) column holds numbers: it is a numeric column with a typo.

    A string among numbers (``"n/a"``, ``"<0.5"``) makes pandas store the whole
    column as object, and the treatment contrasts would then give one dummy per
    distinct number (199 levels for 200 lactate values) without a word. So a
    text column is refused when some of its values are numbers and some are
    not, or when it holds actual numbers (not strings) only. A column of number
    strings alone (``"1"``, ``"2"``) stays categorical, as a character column
    is a factor in R; a declared ``pd.Categorical`` is never checked (that is
    the way to say a mixed column really is categorical).
    """
    values = col.to_numpy(dtype=object)
    parsed = pd.to_numeric(col, errors="coerce").notna().to_numpy()
    n = len(values)
    if parsed.any() and not parsed.all():
        bad = np.flatnonzero(~parsed)
        examples = list(dict.fromkeys(str(v) for v in values[bad]))[:3]
        raise InputError(
            f"{where}: covariate {name!r} holds numbers in {int(parsed.sum())} of {n} rows but "
            f"{len(bad)} non-numeric value(s) (e.g. {examples}) at row position(s) {bad[:5].tolist()}"
            f"{' ...' if len(bad) > 5 else ''} (0-based); as text it would become one dummy variable per "
            f"distinct value. Fix those values, or convert with pd.to_numeric(df[{name!r}], errors='coerce') "
            "and drop or impute the failures explicitly; if the column really is categorical, make it a "
            f"pd.Categorical (df[{name!r}] = df[{name!r}].astype('category'))"
        )
    # numbers held as Python/NumPy objects (not strings); booleans alone stay a TRUE/FALSE factor
    is_bool = [isinstance(v, (bool, np.bool_)) for v in values]
    held_as_numbers = all(isinstance(v, (int, float, np.number, bool, np.bool_)) for v in values)
    if n and parsed.all() and held_as_numbers and not all(is_bool):
        raise InputError(
            f"{where}: covariate {name!r} holds numbers in all {n} rows but has dtype object; as text it would "
            "become one dummy variable per distinct value. Convert it with "
            f"pd.to_numeric(df[{name!r}]), or make it a pd.Categorical if it really is categorical"
        )


UnusedLevels = Literal["error", "keep", "drop"]


def design_matrix(
    data: pd.DataFrame,
    covariates: Sequence[str],
    where: str = "data",
    *,
    unused_levels: UnusedLevels = "error",
) -> pd.DataFrame:
    """Expand ``covariates`` to numeric columns with R's treatment contrasts.

    Returns a float DataFrame aligned to ``data.index`` with one column per
    model term, no intercept. Missing values raise InputError naming the
    columns and counts.

    ``unused_levels`` decides what a pandas Categorical covariate's
    categories without rows do. No coefficient can be estimated for an empty
    level: R's ``coxph`` keeps it (``model.matrix`` gives it a column) and
    reports NA, while ``glm`` drops it (``model.frame(drop.unused.levels =
    TRUE)``). "error" (the default for model fitting) raises, naming the
    levels and the fix, rather than returning a column nothing can be
    estimated from; "drop" removes them first, as glm does; "keep" keeps
    their columns, as prediction frames need (a one-row profile uses one of
    the fitted levels).
    """
    if unused_levels not in get_args(UnusedLevels):
        raise InputError(f"unused_levels={unused_levels!r} is not allowed; use one of {list(get_args(UnusedLevels))}")
    covariates = list(covariates)
    if not covariates:
        return pd.DataFrame(index=data.index)
    require_columns(data, covariates, where)
    n = len(data)
    missing = {c: int(data[c].isna().sum()) for c in covariates if data[c].isna().any()}
    if missing:
        if len(missing) == 1:
            ((column, count),) = missing.items()
            what = f"covariate {column!r} has {count} missing value(s) out of {n} rows"
        else:
            what = f"covariates {list(missing)} have missing values {missing} (column: rows) out of {n} rows"
        raise InputError(
            f"{where}: {what}; drop or impute them explicitly before fitting (nothing is dropped silently)"
        )
    parts: dict[str, np.ndarray] = {}
    for name in covariates:
        col = data[name]
        if _is_categorical(col):
            declared = isinstance(col.dtype, pd.CategoricalDtype)
            if not declared:
                _refuse_numbers_in_text_column(col, name, where)
            # astype("category") makes exactly the observed values the (sorted) levels
            cat = col if declared else col.astype("category")
            levels = list(cat.cat.categories)
            codes = np.asarray(cat.cat.codes)
            if declared and unused_levels != "keep":
                counts = np.bincount(codes, minlength=len(levels))
                empty = [lv for lv, k in zip(levels, counts, strict=True) if k == 0]
                used = [lv for lv, k in zip(levels, counts, strict=True) if k > 0]
                if empty and unused_levels == "drop":
                    remap = np.cumsum(counts > 0) - 1  # old code -> code among the used levels
                    codes, levels = remap[codes], used
                elif empty and len(used) == 1:
                    raise InputError(
                        f"{where}: categorical covariate {name!r} takes the single level {used[0]!r} in all {n} rows "
                        f"(its categories {empty} have no rows); a constant covariate has no coefficient: drop it "
                        "from the covariates"
                    )
                elif empty:
                    reference = (
                        f"; the reference level then becomes {used[0]!r} instead of {levels[0]!r}"
                        if levels[0] in empty
                        else ""
                    )
                    raise InputError(
                        f"{where}: categorical covariate {name!r} has {len(empty)} level(s) with no rows "
                        f"out of {n} rows: {empty} (categories {levels}); no coefficient can be estimated for "
                        "an empty level (coxph reports NA for it). Drop the unused levels first: "
                        f"df[{name!r}] = df[{name!r}].cat.remove_unused_categories(){reference}"
                    )
            if len(levels) < 2:
                raise InputError(
                    f"{where}: categorical covariate {name!r} has a single level {levels} in all {n} rows; "
                    "a constant covariate has no coefficient: drop it from the covariates"
                )
            for code, level in enumerate(levels[1:], start=1):
                parts[f"{name}{level}"] = (codes == code).astype(float)
        elif pd.api.types.is_bool_dtype(col):
            parts[f"{name}TRUE"] = np.asarray(col, dtype=float)
        else:
            parts[name] = numeric_column(data, name, where)
    return pd.DataFrame(parts, index=data.index)
