"""Covariate balance between treated and control units, before or after matching.

Formulas (R tableone's ``ExtractSmd`` / ``svyCreateTableOne``, cobalt's
column layout):

* continuous: SMD = (mean_t - mean_c) / sqrt((s_t^2 + s_c^2) / 2), with
  sample variances (n - 1);
* binary (a 0/1 or boolean covariate, one level of a categorical): the same
  with proportions p and variances p (1 - p);
* weighted (matching weights): weighted means sum(w x) / sum(w) and, for
  continuous covariates, the survey package's ``svyvar`` variance
  n / (n - 1) * sum(w (x - mean_w)^2) / sum(w) with n the number of units
  with a positive weight in the arm; binary variances stay p (1 - p) with the
  weighted p.

``smd`` is the absolute value, as tableone reports it; ``smd_signed`` keeps the
sign (treated minus control). ``variance_ratio`` is s_t^2 / s_c^2 for
continuous covariates (NaN for binary ones, where it is a function of p).
``ks`` is the Kolmogorov-Smirnov statistic: the largest gap between the two
(weighted) empirical distribution functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._design import require_columns
from ..errors import InputError
from ._common import as_column_list, check_option, require_unique_index, treatment_indicator
from ._tables import BalanceTable

BALANCE_COLUMNS = [
    "variable",
    "level",
    "type",
    "mean_treated",
    "mean_control",
    "sd_treated",
    "sd_control",
    "smd",
    "smd_signed",
    "variance_ratio",
    "ks",
]


def weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * x) / np.sum(w))


def weighted_variance(x: np.ndarray, w: np.ndarray) -> float:
    """survey::svyvar: n/(n-1) * sum(w (x - xbar_w)^2) / sum(w), n = units with w > 0.

    Without weights (w all 1) this is the ordinary sample variance.
    """
    n = int(np.count_nonzero(w > 0))
    if n < 2:
        return float("nan")
    m = weighted_mean(x, w)
    return float(n / (n - 1) * np.sum(w * (x - m) ** 2) / np.sum(w))


def ks_statistic(x1: np.ndarray, w1: np.ndarray, x0: np.ndarray, w0: np.ndarray) -> float:
    """max |F_1(v) - F_0(v)| over all values v, with (weighted) empirical distribution functions."""
    values = np.unique(np.concatenate([x1, x0]))
    o1, o0 = np.argsort(x1, kind="stable"), np.argsort(x0, kind="stable")
    c1 = np.concatenate([[0.0], np.cumsum(w1[o1])]) / w1.sum()
    c0 = np.concatenate([[0.0], np.cumsum(w0[o0])]) / w0.sum()
    f1 = c1[np.searchsorted(x1[o1], values, side="right")]
    f0 = c0[np.searchsorted(x0[o0], values, side="right")]
    return float(np.max(np.abs(f1 - f0)))


def smd_binary(p1: float, p0: float) -> float:
    """Signed SMD of a proportion (tableone: (p1 - p0) / sqrt((p1 (1-p1) + p0 (1-p0)) / 2))."""
    return float((p1 - p0) / np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2))


def smd_continuous(m1: float, v1: float, m0: float, v0: float) -> float:
    """Signed SMD of a continuous variable (tableone: (m1 - m0) / sqrt((v1 + v0) / 2))."""
    # A variable constant in both arms is 0/0 (NaN, as R gives it): silently, since a numpy warning would
    # reach the user as an unreadable note ("invalid value encountered in scalar divide").
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(m1 - m0) / np.sqrt(np.float64(v1 + v0) / 2))


def smd_categorical(p1: np.ndarray, p0: np.ndarray) -> float:
    """Multi-level SMD of Yang & Dalton (2012), tableone's ``StdDiffMulti``.

    ``p1``, ``p0``: proportions of levels 2..k (the first level dropped).
    sqrt(d' S^+ d), d = p1 - p0, S = (S1 + S0) / 2, S_g = diag(p_g) - p_g p_g'
    and S^+ a Moore-Penrose inverse (tableone uses MASS::ginv).
    """
    d = p1 - p0
    s = (np.diag(p1) - np.outer(p1, p1) + np.diag(p0) - np.outer(p0, p0)) / 2
    return float(np.sqrt(max(float(d @ np.linalg.pinv(s) @ d), 0.0)))


def is_categorical(col: pd.Series) -> bool:
    return (
        isinstance(col.dtype, pd.CategoricalDtype)
        or col.dtype == object
        or pd.api.types.is_string_dtype(col)
        or pd.api.types.is_bool_dtype(col)
    )


def levels_of(col: pd.Series) -> list[Any]:
    """Levels in R's factor order: the categorical's order, else sorted (FALSE before TRUE)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories)
    values = pd.unique(col.dropna())
    return sorted(values.tolist(), key=lambda v: (str(type(v)), v))


def _refuse_infinite(x: np.ndarray, name: str, where: str) -> None:
    """Raise naming the column when ``x`` holds +-inf (a mean and SD of them print as "inf (nan)")."""
    n_inf = int(np.isinf(x).sum())
    if n_inf:
        signs = sorted({"+inf" if v > 0 else "-inf" for v in x[np.isinf(x)]})
        raise InputError(
            f"{where}: covariate {name!r} has {n_inf} infinite value(s) ({', '.join(signs)}) out of {len(x)} rows; "
            "a mean, SD or SMD of them is not a number. Replace them (e.g. an infinite ratio from a division by "
            "zero) with a finite value or a missing value, or drop those rows explicitly"
        )


def _check_weights(data: pd.DataFrame, weights: Any) -> np.ndarray:
    if weights is None:
        return np.ones(len(data))
    if isinstance(weights, str):
        require_columns(data, [weights], "balance: data")
        w = np.asarray(data[weights], dtype=float)
    else:
        if isinstance(weights, pd.Series) and not weights.index.equals(data.index):
            weights = weights.reindex(data.index)
        w = np.asarray(weights, dtype=float)
    if w.shape != (len(data),):
        raise InputError(f"balance: weights must have one value per row of data ({len(data)}), got shape {w.shape}")
    bad = int((~np.isfinite(w)).sum() + (w < 0).sum())
    if bad:
        raise InputError(f"balance: {bad} weight(s) are missing, infinite or negative; weights must be finite and >= 0")
    return w


def _treated_sd(x: np.ndarray, t: np.ndarray, kind: str) -> float:
    # MatchIt's summary() for the ATT: the SD of the treated units in the full (unmatched, unweighted)
    # sample, sqrt(p (1 - p)) for a binary term; the same denominator before and after matching.
    x1 = x[t]
    if kind == "binary":
        p = float(x1.mean())
        return float(np.sqrt(p * (1 - p)))
    return float(np.std(x1, ddof=1)) if x1.size > 1 else float("nan")


def _row(
    variable: str, level: Any, kind: str, x: np.ndarray, w: np.ndarray, t: np.ndarray, denominator: str = "pooled"
) -> dict[str, Any]:
    sd_full_treated = _treated_sd(x, t, kind) if denominator == "treated" else float("nan")
    x1, w1, x0, w0 = x[t], w[t], x[~t], w[~t]
    keep1, keep0 = w1 > 0, w0 > 0
    x1, w1, x0, w0 = x1[keep1], w1[keep1], x0[keep0], w0[keep0]
    m1, m0 = weighted_mean(x1, w1), weighted_mean(x0, w0)
    if kind == "binary":
        v1, v0 = m1 * (1 - m1), m0 * (1 - m0)
        signed = smd_binary(m1, m0) if (v1 + v0) > 0 else (0.0 if m1 == m0 else float("inf"))
        ratio = float("nan")
    else:
        v1, v0 = weighted_variance(x1, w1), weighted_variance(x0, w0)
        signed = smd_continuous(m1, v1, m0, v0) if (v1 + v0) > 0 else (0.0 if m1 == m0 else float("inf"))
        ratio = v1 / v0 if v0 > 0 else float("nan")
    if denominator == "treated":
        diff = m1 - m0
        signed = diff / sd_full_treated if sd_full_treated > 0 else (0.0 if diff == 0 else float("inf"))
    return {
        "variable": variable,
        "level": level,
        "type": kind,
        "mean_treated": m1,
        "mean_control": m0,
        "sd_treated": float(np.sqrt(v1)),
        "sd_control": float(np.sqrt(v0)),
        "smd": abs(signed),
        "smd_signed": signed,
        "variance_ratio": ratio,
        "ks": ks_statistic(x1, w1, x0, w0),
    }


def balance(
    data: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | pd.Series | None = None,
    treated: Any = None,
    smd_denominator: Literal["pooled", "treated"] = "pooled",
) -> pd.DataFrame:
    """Balance of each covariate between treated and control units.

    Parameters
    ----------
    data : pandas.DataFrame
    treatment : str
        Two-valued treatment column (see :func:`propensity_score`).
    covariates : sequence of str
        Numeric columns (0/1 ones are treated as binary), booleans and
        categoricals. Missing or infinite values raise InputError.
    weights : column name, array (n,) or Series, optional
        E.g. ``match_nearest(...).weights`` to get balance in the matched
        sample (units with weight 0 drop out).
    treated : scalar, optional
        The treated value of ``treatment`` when not obvious.
    smd_denominator : {"pooled", "treated"}
        ``"pooled"`` (tableone, the default): sqrt((s_t^2 + s_c^2) / 2) of
        the (weighted) arms. ``"treated"``: MatchIt's ``summary()`` for the
        ATT (``s.d.denom = "treated"``): the SD of the treated units in the
        full, unweighted ``data`` (sqrt(p (1 - p)) for binary terms), the
        same before and after matching, so pass the full frame with
        ``weights``. Only ``smd`` and ``smd_signed`` change.

    Returns
    -------
    pandas.DataFrame
        One row per numeric/binary covariate, and per level of a categorical
        (a two-level categorical or boolean gives one row, its second level,
        as tableone shows ``sex = M``). Index ``"age"`` or ``"sex = M"``;
        columns ``variable``, ``level``, ``type`` ("continuous"/"binary"),
        ``mean_treated``, ``mean_control``, ``sd_treated``, ``sd_control``,
        ``smd`` (absolute, = tableone ``ExtractSmd`` for continuous and
        two-level variables; per level for multi-level ones), ``smd_signed``,
        ``variance_ratio``, ``ks``.
    """
    covariates = as_column_list(covariates)
    check_option("smd_denominator", smd_denominator, ("pooled", "treated"))
    is_treated, _, _ = treatment_indicator(data, treatment, treated, "balance: data")
    require_unique_index(data, "balance: data")
    require_columns(data, covariates, "balance: data")
    missing = {c: int(data[c].isna().sum()) for c in covariates if data[c].isna().any()}
    if missing:
        raise InputError(
            f"balance: missing values in covariate(s) {missing} (column: rows); "
            "impute or drop them explicitly before checking balance"
        )
    w = _check_weights(data, weights)
    if not (w[is_treated] > 0).any() or not (w[~is_treated] > 0).any():
        raise InputError("balance: one arm has no unit with a positive weight; nothing to compare")
    rows = []
    labels = []
    for name in covariates:
        col = data[name]
        if is_categorical(col):
            levels = levels_of(col)
            shown = levels[1:] if len(levels) == 2 else levels
            values = np.asarray(col.astype(object))
            for level in shown:
                rows.append(
                    _row(name, level, "binary", (values == level).astype(float), w, is_treated, smd_denominator)
                )
                labels.append(f"{name} = {level}")
        else:
            x = np.asarray(col, dtype=float)
            _refuse_infinite(x, name, "balance")
            kind = "binary" if np.isin(x, (0.0, 1.0)).all() else "continuous"
            rows.append(_row(name, None, kind, x, w, is_treated, smd_denominator))
            labels.append(name)
    return BalanceTable(rows, index=pd.Index(labels, name="term"), columns=BALANCE_COLUMNS)


def balance_before_after(
    data: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | pd.Series,
    treated: Any = None,
    smd_denominator: Literal["pooled", "treated"] = "pooled",
) -> pd.DataFrame:
    """Balance before (all units, unweighted) and after matching (``weights``), side by side.

    ``smd_denominator`` as in :func:`balance` (``"treated"``: MatchIt's ``summary()``).

    Returns
    -------
    pandas.DataFrame
        Long format: the columns of :func:`balance` plus ``sample`` in
        {"before", "after"}; the input a Love plot needs (``smd`` per term
        and sample).
    """
    before = balance(data, treatment, covariates, None, treated, smd_denominator).assign(sample="before")
    after = balance(data, treatment, covariates, weights, treated, smd_denominator).assign(sample="after")
    return BalanceTable(pd.concat([before, after]))
