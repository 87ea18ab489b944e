"""Table 1 formatted as R tableone prints ``CreateTableOne(..., smd = TRUE)``.

Cells follow tableone's print defaults: ``mean (sd)`` with 2 decimals,
``median [p25, p75]`` with 2 decimals (R ``quantile`` type 7) for variables
named in ``nonnormal``, ``n (pct)`` with the percentage to 1 decimal for
categorical variables (percent of the non-missing values in the group), and
the SMD to 3 decimals. A two-level categorical prints as one row
``sex = M (%)`` (its second level), a longer one as a header row
``stage (%)`` followed by one indented row per level. Numbers are rounded by
C ``printf`` rules (as R's ``formatC``/``sprintf``) but not padded to align.

With ``weights`` (tableone's ``svyCreateTableOne``): n and counts are sums of
weights (1 decimal), means and proportions weighted, variances the survey
package's ``svyvar`` (see :mod:`retrocohort.matching.balance`), and medians /
quartiles the weighted quantile ``min{x : F_w(x) >= p}`` (survey's
``qrule = "math"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from .._design import require_columns
from ..errors import InputError
from ._common import as_column_list
from ._tables import TableOne
from .balance import (
    _refuse_infinite,
    is_categorical,
    levels_of,
    smd_categorical,
    smd_continuous,
    weighted_mean,
    weighted_variance,
)


def _weighted_quantile(x: np.ndarray, w: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    o = np.argsort(x, kind="stable")
    xs, cw = x[o], np.cumsum(w[o]) / w.sum()
    return np.array([xs[min(int(np.searchsorted(cw, p - 1e-12, side="left")), len(xs) - 1)] for p in probs])


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _mean_smd(values: list[float]) -> float:
    # tableone reports, for more than two groups, the mean of the pairwise SMDs.
    return float(np.mean(values)) if values else float("nan")


def table_one(
    data: pd.DataFrame,
    group: str,
    variables: Sequence[str],
    categorical: Sequence[str] | None = None,
    nonnormal: Sequence[str] | None = None,
    weights: str | np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Table 1 by ``group``, as tableone's ``print(CreateTableOne(...), nonnormal =, smd = TRUE)``.

    The R call: ``print(CreateTableOne(vars, strata = group, data, factorVars = categorical),
    nonnormal = nonnormal, smd = TRUE)``.

    Parameters
    ----------
    data : pandas.DataFrame
    group : str
        Column defining the columns of the table (e.g. the treatment);
        missing values not allowed.
    variables : sequence of str
        Rows, in order.
    categorical : sequence of str, optional
        Numeric columns to summarise as categorical (tableone ``factorVars``);
        string, categorical and boolean columns are categorical anyway.
    nonnormal : sequence of str, optional
        Continuous variables shown as ``median [p25, p75]``.
    weights : column name, array (n,) or Series, optional
        Matching weights (``match_nearest(...).weights``); pass the matched
        rows, or all rows (zero weights drop out).

    Returns
    -------
    pandas.DataFrame
        Index: row labels as tableone prints them (``n``,
        ``age (mean (SD))``, ``sex = M (%)``, ``stage (%)``, ``   II``...);
        one string column per group level (in level order), ``missing``
        (number of missing values of the variable, all groups) and ``SMD``.
        ``df.to_csv()`` gives the familiar table.
    """
    variables = as_column_list(variables)
    categorical_set = set(as_column_list(categorical))
    nonnormal_set = set(as_column_list(nonnormal))
    require_columns(data, [group, *variables], "table_one: data")
    unknown = (categorical_set | nonnormal_set) - set(variables)
    if unknown:
        raise InputError(f"table_one: {sorted(unknown)} named in categorical/nonnormal but not in variables")
    if data[group].isna().any():
        raise InputError(f"table_one: group column {group!r} has {int(data[group].isna().sum())} missing value(s)")
    if weights is None:
        w_all = np.ones(len(data))
    else:
        if isinstance(weights, str):
            require_columns(data, [weights], "table_one: data")
            weights = data[weights]
        if isinstance(weights, pd.Series) and not weights.index.equals(data.index):
            weights = weights.reindex(data.index)
        w_all = np.asarray(weights, dtype=float)
        if w_all.shape != (len(data),) or (~np.isfinite(w_all)).any() or (w_all < 0).any():
            raise InputError("table_one: weights must be finite, >= 0 and one per row of data")
    weighted = weights is not None
    count_digits = 1 if weighted else 0
    groups = levels_of(data[group])
    if len(groups) < 2:
        raise InputError(f"table_one: group column {group!r} has a single value; nothing to compare")
    g_values = np.asarray(data[group].astype(object))
    masks = [g_values == g for g in groups]
    columns = [str(g) for g in groups]
    rows: list[tuple[str, list[str], str, str]] = []

    rows.append(("n", [_fmt(w_all[m].sum(), count_digits) for m in masks], "", ""))
    for name in variables:
        col = data[name]
        n_missing = int(col.isna().sum())
        present = ~col.isna().to_numpy()
        if name in categorical_set or is_categorical(col):
            levels = levels_of(col)
            values = np.asarray(col.astype(object))
            props = []
            cells_by_level: dict[Any, list[str]] = {lv: [] for lv in levels}
            for m in masks:
                keep = m & present
                w = w_all[keep]
                total = w.sum()
                p = (
                    np.array([w[values[keep] == lv].sum() for lv in levels]) / total
                    if total > 0
                    else np.full(len(levels), np.nan)
                )
                props.append(p)
                for lv, pv in zip(levels, p, strict=True):
                    cells_by_level[lv].append(f"{_fmt(pv * total, count_digits)} ({_fmt(100 * pv, 1)})")
            smd = _mean_smd(
                [smd_categorical(props[a][1:], props[b][1:]) for a, b in combinations(range(len(masks)), 2)]
            )
            smd_text = _fmt(smd, 3)
            if len(levels) == 2:
                rows.append((f"{name} = {levels[1]} (%)", cells_by_level[levels[1]], str(n_missing), smd_text))
            else:
                rows.append((f"{name} (%)", [""] * len(masks), str(n_missing), smd_text))
                for lv in levels:
                    rows.append((f"   {lv}", cells_by_level[lv], "", ""))
        else:
            if not pd.api.types.is_numeric_dtype(col):
                raise InputError(f"table_one: column {name!r} is neither numeric nor categorical ({col.dtype})")
            x_all = np.asarray(col, dtype=float)
            _refuse_infinite(x_all, name, "table_one")  # missing values are counted; infinite ones are refused
            stats = []
            cells = []
            for m in masks:
                keep = m & present & (w_all > 0)
                x, w = x_all[keep], w_all[keep]
                mean, var = weighted_mean(x, w), weighted_variance(x, w)
                stats.append((mean, var))
                if name in nonnormal_set:
                    if weighted:
                        q = _weighted_quantile(x, w, (0.5, 0.25, 0.75))
                    else:
                        q = np.quantile(x, (0.5, 0.25, 0.75))  # R type 7 is NumPy's default "linear"
                    cells.append(f"{_fmt(q[0], 2)} [{_fmt(q[1], 2)}, {_fmt(q[2], 2)}]")
                else:
                    cells.append(f"{_fmt(mean, 2)} ({_fmt(np.sqrt(var), 2)})")
            smd = _mean_smd(
                [
                    abs(smd_continuous(stats[a][0], stats[a][1], stats[b][0], stats[b][1]))
                    for a, b in combinations(range(len(masks)), 2)
                ]
            )
            label = f"{name} (median [IQR])" if name in nonnormal_set else f"{name} (mean (SD))"
            rows.append((label, cells, str(n_missing), _fmt(smd, 3)))
    table = TableOne(
        [[*cells, missing, smd] for _, cells, missing, smd in rows],
        index=pd.Index([label for label, *_ in rows], name=""),
        columns=[*columns, "missing", "SMD"],
    )
    return table
