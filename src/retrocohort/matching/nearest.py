"""k:1 nearest-neighbour matching on a scalar distance, identical to MatchIt 4.x ``method = "nearest"``.

The algorithm (MatchIt's ``nn_matchC_vec``): treated units are processed in the
chosen order; in round k = 1..ratio each treated unit in turn takes the
unused control closest in absolute distance (``|d_c - d_t| <= caliper``,
inside its ``exact`` stratum), so every treated unit gets its k-th control
before any gets its (k+1)-th. Ties follow MatchIt's vector path
(``nn_matchC_vec``, used with ``distance = "glm"`` or a numeric vector): all
units sorted stably by distance, the nearest unused control to the left or the
right of the treated unit in that order, the left one on equal differences.
Treated units keep however many controls they found; those with none are
unmatched.

Two defects of Debian's MatchIt 4.5.1 vector path are not reproduced: it
computes ``|d_c - d_t|`` with C's integer ``abs()`` (differences truncated to
whole numbers, so every difference below 1 is 0), and in rounds after the first
it skips the control that follows, in data order, one the treated unit already
has (a 0-based index compared with 1-based ones). The differences here are
doubles and a unit skips only its own controls. The tests run MatchIt with the
distance scaled by 2^k (ratio 1) and through its matrix path (ratio > 1); see
tests/matching/matchit_matrix.R and docs/matching.md.

Beyond a scalar distance: covariate distances (Mahalanobis, robust Mahalanobis, scaled Euclidean,
Euclidean), a given distance matrix, ``mahvars``, covariate calipers, ``antiexact`` and ``unit_id`` go
through the scanning kernel (MatchIt's ``nn_matchC``); variable-ratio matching (``min_controls`` /
``max_controls``) allots each focal unit its number of matches as MatchIt does and then matches in rounds.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from .._design import require_columns
from ..errors import InputError, ModelWarning
from . import _kernels
from ._common import as_column_list, check_option, require_unique_index, treatment_indicator
from .balance import is_categorical, levels_of

MatchOrder = Literal["largest", "smallest", "random", "data"]
Estimand = Literal["ATT", "ATC"]
Discard = Literal["none", "treated", "control", "both"]
# MatchIt's covariate distances implemented here (matched through the scan kernel, MatchIt's nn_matchC).
_METRICS = ("mahalanobis", "robust_mahalanobis", "scaled_euclidean", "euclidean")


@dataclass(frozen=True)
class MatchResult:
    """Result of :func:`match_nearest` (MatchIt's ``matchit`` object, nearest method).

    Attributes
    ----------
    subclass : pandas.Series (Int64, aligned to ``data.index``)
        Matched-set id, ``<NA>`` for unmatched units; numbered exactly as
        MatchIt numbers ``m.out$subclass`` (see :func:`match_nearest`). All
        ``<NA>`` with replacement, where a control can sit in several sets
        (MatchIt returns no subclass then); use ``pairs``.
    weights : pandas.Series (float, aligned to ``data.index``)
        MatchIt's matching weights ``m.out$weights`` (ATT): 1 for a matched
        treated unit; a control gets the sum over its sets of
        1 / (controls in the set), rescaled so the control weights sum to the
        number of matched controls; 0 for unmatched units.
    matched : pandas.DataFrame
        The rows of ``data`` with a positive weight plus ``subclass`` and
        ``weight`` columns (MatchIt's ``match.data(m.out)``), in data order.
    counts : pandas.DataFrame
        Rows "All (ESS)", "All", "Matched (ESS)", "Matched", "Unmatched",
        "Discarded"; columns "Control", "Treated" (``summary(m.out)$nn``).
        ESS is the Kish effective sample size (sum w)^2 / sum w^2.
    pairs : pandas.DataFrame
        One row per (treated, control) match: ``subclass`` (the treated
        unit's set, also with replacement), ``treated`` and ``control`` (index
        labels of ``data``), ``round`` (1 for first controls, 2 for second,
        ...) and ``difference`` = |d_treated - d_control|.
    match_matrix : pandas.DataFrame
        Treated units (index labels) by round: the control's index label or
        ``<NA>`` (MatchIt's ``m.out$match.matrix``).
    distance : pandas.Series
        The distance matched on, aligned to ``data.index``.
    treated : pandas.Series (bool)
        True for treated units, aligned to ``data.index``.
    caliper_distance : float or None
        The caliper in distance units actually applied (``caliper * sd`` when
        ``std_caliper``), None without caliper.
    options : dict
        The options used (ratio, caliper, std_caliper, order, replace, exact,
        random_state, treated value, estimand, discard).
    discarded : pandas.Series (bool) or None
        True for units dropped by ``discard`` before matching (MatchIt's
        ``m.out$discarded``), aligned to ``data.index``.
    s_weights : pandas.Series or None
        The sampling weights (MatchIt's ``s.weights``), aligned to
        ``data.index``; None without.
    """

    subclass: pd.Series
    weights: pd.Series
    matched: pd.DataFrame
    counts: pd.DataFrame
    pairs: pd.DataFrame
    match_matrix: pd.DataFrame
    distance: pd.Series
    treated: pd.Series
    caliper_distance: float | None
    options: dict[str, Any] = field(default_factory=dict)
    discarded: pd.Series | None = None
    s_weights: pd.Series | None = None

    def __repr__(self) -> str:
        # print(m.out) + summary(m.out)$nn: the method in words and the sample sizes
        from .._printing import render_match

        return render_match(self)

    def _repr_html_(self) -> str:
        from .._printing import render_match_html

        return render_match_html(self)


# MatchIt's own names for distances it estimates; here the distance is always given (a column or values).
_MATCHIT_DISTANCES = (
    "glm",
    "gam",
    "gbm",
    "lasso",
    "ridge",
    "elasticnet",
    "rpart",
    "randomforest",
    "nnet",
    "cbps",
    "bart",
    "mahalanobis",
    "robust_mahalanobis",
    "euclidean",
    "scaled_euclidean",
)


def _distance_values(data: pd.DataFrame, distance: Any) -> np.ndarray:
    if isinstance(distance, str):
        if distance not in data.columns and distance.lower() in _MATCHIT_DISTANCES:
            raise InputError(
                f"match_nearest: distance={distance!r} (MatchIt's distance option) is not supported: pass the "
                "propensity score to match on, e.g. propensity_score(...).score (MatchIt's distance = 'glm') or "
                ".linear (link = 'linear.logit'), or the name of a column holding it; of MatchIt's covariate "
                "distances 'mahalanobis', 'robust_mahalanobis', 'scaled_euclidean' and 'euclidean' are implemented "
                "(with covariates=...), and a distance matrix can be passed"
            )
        require_columns(data, [distance], "match_nearest: data")
        col = data[distance]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise InputError(f"match_nearest: distance column {distance!r} must be numeric, got {col.dtype}")
        values = np.asarray(col, dtype=float)
        label = f"distance column {distance!r}"
    else:
        if isinstance(distance, pd.Series) and not distance.index.equals(data.index):
            if len(distance) == len(data) and distance.index.isin(data.index).all():
                distance = distance.reindex(data.index)
            else:
                raise InputError(
                    "match_nearest: the distance Series is not indexed like data; "
                    "pass one aligned to data.index (e.g. propensity_score(...).linear)"
                )
        values = np.asarray(distance, dtype=float)
        label = "distance"
        if values.ndim != 1 or values.shape[0] != len(data):
            raise InputError(
                f"match_nearest: distance must be one value per row of data ({len(data)}), got shape {values.shape}"
            )
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    if n_nan or n_inf:
        raise InputError(
            f"match_nearest: {label} has {n_nan} missing (NaN) and {n_inf} infinite value(s) "
            f"out of {len(values)} rows; "
            "every unit needs a finite distance (refit the propensity model or drop those units explicitly)"
        )
    return values


def _exact_strata(data: pd.DataFrame, exact: list[str]) -> np.ndarray:
    if not exact:
        return np.zeros(len(data), dtype=np.int64)
    require_columns(data, exact, "match_nearest: data")
    missing = {c: int(data[c].isna().sum()) for c in exact if data[c].isna().any()}
    if missing:
        raise InputError(
            f"match_nearest: missing values in exact-matching column(s) {missing} (column: rows); "
            "recode them as a level or drop those units explicitly"
        )
    return data.groupby(exact, sort=True, observed=True).ngroup().to_numpy(dtype=np.int64)


def _matchit_subclass_numbers(treated_positions: np.ndarray) -> np.ndarray:
    """Subclass number of each matched treated unit as MatchIt assigns it.

    MatchIt (``mm2subclass``) makes a factor from the treated units' 1-based
    row numbers as *character* strings, so the levels sort as text ("10" <
    "2"), then renames them 1..k. Reproduced so ``subclass`` reads the same.
    """
    numbers = treated_positions.astype(np.int64) + 1
    digits = np.floor(np.log10(numbers)).astype(np.int64) + 1
    # Text order of digit strings = numeric order of the numbers right-padded with zeros to a common
    # length, shorter string first on a tie ("1" < "10" < "100" < "11" < "2").
    padded = numbers * 10 ** (digits.max() - digits)
    rank = np.empty(len(numbers), dtype=np.int64)
    rank[np.lexsort((digits, padded))] = np.arange(1, len(numbers) + 1)
    return rank


def _ess(w: np.ndarray) -> float:
    w = w[w > 0]
    if w.size == 0:
        return 0.0
    return float(w.sum() ** 2 / (w**2).sum())


def _covariate_matrix(data: pd.DataFrame, columns: list[str], what: str) -> np.ndarray:
    """Numbers as they are, booleans as 0/1, a text or categorical column as one 0/1 column per level."""
    require_columns(data, columns, "match_nearest: data")
    missing = {c: int(data[c].isna().sum()) for c in columns if data[c].isna().any()}
    if missing:
        raise InputError(
            f"match_nearest: missing values in {what} column(s) {missing} (column: rows); "
            "impute or drop those units explicitly"
        )
    out = []
    for name in columns:
        col = data[name]
        if pd.api.types.is_bool_dtype(col):
            out.append(np.asarray(col, dtype=float))
        elif is_categorical(col):
            values = np.asarray(col.astype(object))
            out += [(values == level).astype(float) for level in levels_of(col)]
        else:
            x = np.asarray(col, dtype=float)
            n_inf = int(np.isinf(x).sum())
            if n_inf:
                raise InputError(
                    f"match_nearest: {what} column {name!r} has {n_inf} infinite value(s) out of {len(x)} rows; "
                    "replace or drop them explicitly"
                )
            out.append(x)
    return np.column_stack(out)


def _weighted_cov(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    # R's cov.wt(x, w)$cov: weights normalised to sum 1, centred on the weighted mean, divisor 1 - sum(w^2).
    w = w / w.sum()
    centred = x - w @ x
    return (centred * w[:, None]).T @ centred / (1.0 - float(np.sum(w**2)))


def _pooled_variances(x: np.ndarray, t: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """MatchIt's pooled within-arm variance of each column (its ``pooled_sd``, which scales ``scaled_euclidean``).

    A 0/1 column: sum over arms of s_a (1 - s_a / n_a), over n (s_a the arm's (weighted) count of ones,
    n_a its (weighted) size, n the (weighted) total). Any other column: the within-arm sum of squares over
    n - 2, or with weights the weighted one over 1 - sum(w^2) (weights normalised to sum 1).
    """
    out = np.empty(x.shape[1])
    ww = np.ones(len(x)) if w is None else w
    for j in range(x.shape[1]):
        col = x[:, j]
        if np.isin(col, (0.0, 1.0)).all():
            out[j] = sum(
                float(np.sum(col[arm] * ww[arm])) * (1 - float(np.sum(col[arm] * ww[arm])) / float(np.sum(ww[arm])))
                for arm in (t, ~t)
            ) / float(np.sum(ww))
            continue
        centred = col.copy()
        for arm in (t, ~t):
            centred[arm] -= np.sum(col[arm] * ww[arm]) / np.sum(ww[arm])
        if w is None:
            out[j] = float(np.sum(centred**2)) / (len(col) - 2)
        else:
            wn = w / w.sum()
            out[j] = float(np.sum(wn * centred**2)) / (1.0 - float(np.sum(wn**2)))
    return out


def _metric_transform(
    x: np.ndarray, is_treated: np.ndarray, kept: np.ndarray, metric: str, sw: np.ndarray | None = None
) -> np.ndarray:
    """Matrix W with MatchIt's ``metric`` distance between rows i, j = ||(x_i - x_j) @ W||.

    With sampling weights ``sw`` the covariances are weighted as MatchIt's (``cov.wt``; each arm centred on
    its weighted mean for the Mahalanobis distance).

    The scaling is MatchIt's pooled within-arm one, computed on the units kept after ``discard``: each
    column centred on its arm's mean, then the covariance over all kept units (n - 1). Mahalanobis:
    W = V diag(1/sqrt(e)) from the eigen-decomposition of that covariance (a generalized inverse, so the
    dummies of every level of a factor may all be present); scaled Euclidean: diag(1 / pooled SD).
    """
    p = x.shape[1]
    if metric == "euclidean":
        return np.eye(p)
    if metric == "robust_mahalanobis":
        # x holds the ranks already (see _robust_ranks): their covariance, rescaled so every column has the
        # variance of untied ranks 1..n, inverted (Rosenbaum 2010, sec. 8.3; MatchIt's robust_mahalanobis).
        cov = np.cov(x[kept], rowvar=False, ddof=1).reshape(p, p) if sw is None else _weighted_cov(x[kept], sw[kept])
        multiplier = np.std(np.arange(1, int(kept.sum()) + 1), ddof=1) / np.sqrt(np.diag(cov))
        cov = cov * np.outer(multiplier, multiplier)
        e, v = np.linalg.eigh(cov)
        keep = e > max(float(e.max()), 0.0) * len(e) * np.finfo(float).eps
        return np.ascontiguousarray(v[:, keep] / np.sqrt(e[keep]))
    xk, tk = x[kept], is_treated[kept]
    centred = xk.copy()
    if sw is not None and metric == "mahalanobis":
        wk = sw[kept]
        for arm in (tk, ~tk):
            centred[arm] -= wk[arm] @ centred[arm] / wk[arm].sum()
        cov = _weighted_cov(centred, wk)
    else:
        for arm in (tk, ~tk):
            centred[arm] -= centred[arm].mean(axis=0)
        cov = centred.T @ centred / (len(xk) - 1)
    if metric == "scaled_euclidean":
        sd = np.sqrt(_pooled_variances(xk, tk, None if sw is None else sw[kept]))
        return np.diag(1.0 / np.where(sd > 0, sd, 1.0))
    e, v = np.linalg.eigh(cov)
    keep = e > max(float(e.max()), 0.0) * len(e) * np.finfo(float).eps
    return np.ascontiguousarray(v[:, keep] / np.sqrt(e[keep]))


def _robust_ranks(x: np.ndarray) -> np.ndarray:
    """Columns replaced by their ranks (ties averaged, R's rank()); columns without spread dropped, as MatchIt.

    All columns constant: the first one alone, matched on as it is (MatchIt falls back to the Euclidean
    distance there, which on a constant column makes every pair tied).
    """
    from scipy.stats import rankdata

    spread = np.abs(x.max(axis=0) - x.min(axis=0)) >= np.sqrt(np.finfo(float).eps)
    if not spread.any():
        return np.zeros((x.shape[0], 1))
    return np.column_stack([rankdata(x[:, j]) for j in np.flatnonzero(spread)])


def _distance_matrix(distance: Any, data: pd.DataFrame, is_treated: np.ndarray) -> np.ndarray:
    """A given distance matrix as treated x control (data order): from n x n or n1 x n0, finite, >= 0."""
    n, n1 = len(data), int(is_treated.sum())
    n0 = n - n1
    if isinstance(distance, pd.DataFrame):
        if distance.shape == (n, n) and not (distance.index.equals(data.index) and distance.columns.equals(data.index)):
            raise InputError(
                "match_nearest: the n x n distance DataFrame must have data.index as its index and columns"
            )
        distance = distance.to_numpy()
    try:
        dm = np.asarray(distance, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"match_nearest: the distance matrix must hold numbers: {exc}") from None
    if dm.shape == (n, n):
        dm = dm[np.ix_(is_treated, ~is_treated)]
    elif dm.shape != (n1, n0):
        raise InputError(
            f"match_nearest: a distance matrix must be n x n ({n} x {n}, rows and columns in data order) or "
            f"treated x control ({n1} x {n0}, each in data order); got {dm.shape[0]} x {dm.shape[1]}"
        )
    bad = int((~np.isfinite(dm)).sum())
    if bad:
        raise InputError(
            f"match_nearest: the distance matrix has {bad} missing or infinite value(s) among the treated x "
            "control entries; every pair needs a finite distance (use a large number to forbid a pair)"
        )
    if (dm < 0).any():
        raise InputError(f"match_nearest: the distance matrix has {int((dm < 0).sum())} negative value(s)")
    return np.ascontiguousarray(dm)


def _parse_caliper(caliper: Any) -> tuple[float | None, dict[str, float]]:
    """(caliper on the distance, {column: caliper}) from a number or a mapping (MatchIt's named vector)."""
    if caliper is None:
        return None, {}
    items = dict(caliper) if isinstance(caliper, Mapping) else {"distance": caliper}
    if not items:
        raise InputError("match_nearest: caliper={} is empty; pass None for no caliper")
    for key, value in items.items():
        # numbers.Real (Python and NumPy ints/floats): a string or array must not reach np.isfinite's TypeError
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not np.isfinite(float(value))
            or value <= 0
        ):
            shown = repr(caliper) if not isinstance(caliper, Mapping) else f"{{{key!r}: {value!r}}}"
            raise InputError(f"match_nearest: caliper={shown} must be a positive finite number or None")
    distance_caliper = items.pop("distance", None)
    return (None if distance_caliper is None else float(distance_caliper)), {str(k): float(v) for k, v in items.items()}


def _sampling_weights(data: pd.DataFrame, s_weights: Any, is_treated: np.ndarray) -> np.ndarray:
    """MatchIt's ``s.weights`` as an array: a column name, values or a Series aligned to ``data.index``."""
    if isinstance(s_weights, str):
        require_columns(data, [s_weights], "match_nearest: data (s_weights)")
        s_weights = data[s_weights]
    if isinstance(s_weights, pd.Series) and not s_weights.index.equals(data.index):
        raise InputError("match_nearest: the s_weights Series is not indexed like data; align it to data.index")
    try:
        sw = np.asarray(s_weights, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"match_nearest: s_weights must be numbers, one per row of data: {exc}") from None
    if sw.shape != (len(data),):
        raise InputError(
            f"match_nearest: s_weights must have one value per row of data ({len(data)}), got shape {sw.shape}"
        )
    bad = int((~np.isfinite(sw)).sum() + (sw < 0).sum())
    if bad:
        raise InputError(
            f"match_nearest: {bad} sampling weight(s) are missing, infinite or negative out of {len(sw)}; "
            "s_weights must be finite and >= 0"
        )
    if not (sw[is_treated] > 0).any() or not (sw[~is_treated] > 0).any():
        raise InputError("match_nearest: s_weights are 0 for every unit of one arm; nothing to compare")
    return sw


def _discard_mask(d: np.ndarray, is_treated: np.ndarray, discard: Any, n: int) -> np.ndarray:
    """Units outside the common support (MatchIt ``discard``): True = dropped before matching."""
    if isinstance(discard, str):
        check_option("discard", discard, get_args(Discard))
        out = np.zeros(n, dtype=bool)
        if discard == "none":
            return out
        d1, d0 = d[is_treated], d[~is_treated]
        # MatchIt's common support: the closed range [min, max] of the other arm's distance.
        if discard in ("treated", "both"):
            out |= is_treated & ((d < d0.min()) | (d > d0.max()))
        if discard in ("control", "both"):
            out |= ~is_treated & ((d < d1.min()) | (d > d1.max()))
        return out
    values = np.asarray(discard)
    if values.shape != (n,) or values.dtype != bool:
        raise InputError(
            f"match_nearest: discard must be 'none', 'treated', 'control', 'both' or a boolean array with one "
            f"value per row of data ({n}); got {type(discard).__name__} of shape {values.shape}, dtype {values.dtype}"
        )
    return values.copy()


def _check_variable_ratio(
    ratio: Any, min_controls: Any, max_controls: Any, metric: str | None
) -> tuple[int, int] | None:
    """(min, max) controls for variable-ratio matching, None for a fixed ratio; MatchIt's checks, our words."""

    def _number(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, numbers.Real) and bool(np.isfinite(float(value)))

    if not _number(ratio) or ratio < 1:
        raise InputError(f"match_nearest: ratio={ratio!r} must be a number >= 1 (a whole number without max_controls)")
    if max_controls is None:
        if min_controls is not None:
            raise InputError(
                f"match_nearest: min_controls={min_controls!r} without max_controls does nothing (MatchIt ignores "
                "it); pass max_controls too for variable-ratio matching, or drop min_controls"
            )
        if float(ratio) != int(ratio):
            raise InputError(
                f"match_nearest: ratio={ratio!r} must be a whole number; a fractional average ratio needs "
                "variable-ratio matching (max_controls=...)"
            )
        return None
    if not _number(max_controls) or (min_controls is not None and not _number(min_controls)):
        raise InputError(
            f"match_nearest: min_controls={min_controls!r} and max_controls={max_controls!r} must be finite numbers"
        )
    if metric:
        raise InputError(
            f"match_nearest: variable-ratio matching (max_controls) allots matches by the propensity score, and "
            f"distance={metric!r} has none (MatchIt refuses it too); pass the score as distance, with mahvars=[...]"
        )
    if ratio <= 1:
        raise InputError(f"match_nearest: ratio={ratio!r} must be greater than 1 for variable-ratio matching")
    hi = int(np.ceil(max_controls))
    if hi <= ratio:
        raise InputError(
            f"match_nearest: max_controls={max_controls!r} must be greater than ratio={ratio!r} (the average)"
        )
    lo = 1 if min_controls is None else int(np.floor(min_controls))
    if lo < 1:
        raise InputError(f"match_nearest: min_controls={min_controls!r} must be >= 1")
    if lo >= ratio:
        raise InputError(
            f"match_nearest: min_controls={min_controls!r} must be less than ratio={ratio!r} (the average)"
        )
    return lo, hi


def _variable_ratios(d: np.ndarray, is_focal: np.ndarray, ratio: float, lo: int, hi: int) -> np.ndarray:
    """Matches allotted to each unit (0 for the other arm): MatchIt's variable-ratio allotment.

    Over all focal units, discarded ones included (as MatchIt): m = round(ratio n1) matches in all,
    ``kmax`` units get ``hi``, one gets the remainder ``kmed``, the rest ``lo``. The smallest numbers go to
    the focal units whose distance is farthest into the focal arm's side (decreasing distance when the focal
    arm's mean distance is the larger), which have the fewest close matches. A remainder of 0 becomes 1,
    taken from the next unit, as MatchIt does.
    """
    n1 = int(is_focal.sum())
    m = round(ratio * n1)  # R's round(): half to even, as Python's
    kmax = (m - lo * (n1 - 1)) // (hi - lo)
    kmin = n1 - kmax - 1
    kmed = m - (lo * kmin + hi * kmax)
    if kmin < 0 or kmax < 0:
        raise InputError(
            f"match_nearest: ratio={ratio!r} with min_controls={lo} and max_controls={hi} cannot be allotted over "
            f"{n1} focal units (MatchIt fails there too); use a ratio further from max_controls"
        )
    allot = np.array([lo] * kmin + [kmed] + [hi] * kmax, dtype=np.int64)
    zero = np.flatnonzero(allot == 0)
    if zero.size:
        if zero[-1] + 1 >= len(allot):
            raise InputError(
                f"match_nearest: ratio={ratio!r} with min_controls={lo} and max_controls={hi} leaves a focal unit "
                "with no match to allot; use another ratio"
            )
        allot[zero] = 1
        allot[zero + 1] -= 1
    d_focal = d[is_focal]
    decreasing = float(d_focal.mean()) > float(d[~is_focal].mean())
    # R's order(), stable in both directions: ties keep data order.
    rank = np.argsort(-d_focal if decreasing else d_focal, kind="stable")
    per_focal = np.empty(n1, dtype=np.int64)
    per_focal[rank] = allot
    out = np.zeros(len(d), dtype=np.int64)
    out[np.flatnonzero(is_focal)] = per_focal
    return out


def match_nearest(
    data: pd.DataFrame,
    treatment: str,
    distance: str | np.ndarray | pd.Series | pd.DataFrame,
    ratio: float = 1,
    caliper: float | Mapping[str, float] | None = None,
    std_caliper: bool | Mapping[str, bool] = True,
    order: MatchOrder | None = None,
    replace: bool = False,
    exact: str | list[str] | None = None,
    random_state: int | np.random.Generator | None = None,
    treated: Any = None,
    method: str = "nearest",
    estimand: Estimand = "ATT",
    discard: Discard | np.ndarray | pd.Series = "none",
    covariates: Sequence[str] | None = None,
    mahvars: Sequence[str] | None = None,
    antiexact: str | Sequence[str] | None = None,
    s_weights: str | np.ndarray | pd.Series | None = None,
    reuse_max: int | None = None,
    min_controls: int | None = None,
    max_controls: int | None = None,
    unit_id: str | Sequence[str] | None = None,
) -> MatchResult:
    """Greedy k:1 nearest-neighbour matching, identical to MatchIt 4.x ``method = "nearest"`` (ATT or ATC).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit (patient).
    treatment : str
        Two-valued column (0/1, boolean or two levels); see ``treated``.
    distance : str, array of shape (n,) or Series
        Column name or values to match on, e.g. ``propensity_score(...).score``
        (MatchIt's default) or ``.linear`` (logit of the score, Austin 2011).
        Must be finite. Or one of MatchIt's covariate distances
        ``"mahalanobis"``, ``"robust_mahalanobis"``, ``"scaled_euclidean"``,
        ``"euclidean"`` computed from ``covariates`` (pooled within-arm
        covariance / SDs of the units not discarded; for the robust one the
        covariance of the ranks, each column rescaled to the variance of
        untied ranks); there is then no propensity score, so no caliper on
        the distance, no ``discard`` and only ``order="data"`` or
        ``"random"``. Or a distance matrix (MatchIt's ``distance = <matrix>``):
        n x n (rows and columns in data order; a DataFrame must have
        ``data.index`` as index and columns) or treated x control (n1 x n0,
        each arm in data order), finite and >= 0; the first unit in data order
        wins among equal distances; a caliper on it is in its own units
        (``std_caliper`` False, as MatchIt requires).
    ratio : int or float
        Controls per treated unit (MatchIt ``ratio``), a whole number >= 1.
        With ``estimand="ATC"``: treated units per control. With
        ``max_controls`` (variable-ratio matching) the *average* number of
        controls per treated unit, > 1 and possibly fractional (2.5).
    caliper : float, mapping or None
        Largest allowed |difference| in distance. In standard deviations of
        the distance over all units not discarded (sample SD, n - 1) when
        ``std_caliper`` is true (MatchIt: ``caliper * sd(distance)``), in
        distance units otherwise. None: no caliper (a ModelWarning says so).
        A mapping is MatchIt's named caliper vector: ``{"age": 0.5, "re74":
        0.2}`` puts a caliper on each of those columns (in their SDs over
        the units not discarded, or raw), ``"distance"`` on the distance.
    std_caliper : bool or mapping
        See ``caliper``; a mapping gives it per caliper (default True).
    order : {"largest", "smallest", "random", "data"} or None
        Order in which the focal units (treated for the ATT, controls for the
        ATC) pick their matches (MatchIt ``m.order``): by decreasing or
        increasing distance (ties in data order), a random permutation drawn
        from ``random_state`` (NumPy's generator: not the same permutation R's
        ``sample.int`` draws), or data order. None (MatchIt's default):
        ``"largest"`` for the ATT, ``"smallest"`` for the ATC. Ignored with
        ``replace=True``, where units do not compete.
    replace : bool
        Matching with replacement: every focal unit takes its ``ratio``
        nearest matches independently of the others.
    exact : str or list of str or None
        Columns to match exactly on: matches are taken only from the focal
        unit's stratum (MatchIt ``exact``).
    random_state : int, numpy.random.Generator or None
        Seed for ``order="random"``.
    treated : scalar, optional
        The value of ``treatment`` that marks treated units, when it is not
        obvious (True, 1, else the second level).
    method : str
        Only MatchIt's ``method = "nearest"``; other values (``"optimal"``,
        ``"full"``, ``"genetic"``, ...) raise InputError naming what is
        supported, rather than silently doing nearest-neighbour matching.
    estimand : {"ATT", "ATC"}
        MatchIt's switch of the focal arm: ``"ATT"`` matches controls to
        treated units, ``"ATC"`` treated units to controls (the same as
        swapping the arms; ``match_matrix`` then has control units as rows,
        ``weights`` are 1 for matched controls). ``"ATE"`` raises InputError
        (MatchIt's nearest method has no ATE either).
    discard : {"none", "treated", "control", "both"} or boolean array (n,)
        Common support (MatchIt ``discard``): drop treated units whose
        distance lies outside the closed range of the controls' distances
        ("treated"), controls outside the treated range ("control"), or both,
        before matching; or drop the units marked True. Discarded units get
        weight 0 and are counted in ``counts`` row "Discarded", not
        "Unmatched". (MatchIt's ``reestimate`` is not needed here: refit
        :func:`propensity_score` on the kept units and match again.)
    covariates : sequence of str, optional
        The covariates of a named ``distance`` ("mahalanobis", ...): numbers,
        booleans, categoricals (one 0/1 column per level).
    mahvars : sequence of str, optional
        Match on the Mahalanobis distance of these columns while the
        propensity score ``distance`` sets the caliper, ``discard`` and the
        order (MatchIt ``mahvars``).
    antiexact : str or list of str, optional
        Columns on which a pair must *differ* (MatchIt ``antiexact``).
    reuse_max : int, optional
        How many focal units one unit of the other arm may be matched to
        (MatchIt ``reuse.max``): 1 is ``replace=False``, a larger number
        matching with replacement up to that many uses, in the processing
        ``order``; ``replace`` is ignored when it is given (as in MatchIt).
        With reuse (>1) there is no ``subclass``, as with replacement.
    min_controls, max_controls : int, optional
        Variable-ratio matching (Ming & Rosenbaum 2000; MatchIt's
        ``min.controls`` / ``max.controls``, which need a propensity score
        ``distance``): each focal unit gets between ``min_controls`` (default
        1, rounded down) and ``max_controls`` (rounded up) matches, on average
        ``ratio``. MatchIt's allotment: of the n1 focal units (discarded ones
        included), ``kmax = floor((round(ratio n1) - min (n1 - 1)) / (max -
        min))`` get ``max``, ``n1 - kmax - 1`` get ``min`` and one gets the
        rest; the focal units with the distances farthest from the other arm
        (the largest when the focal arm's mean distance is the larger) get the
        fewest. Matching goes in rounds as with a fixed ratio: round k serves
        the units allotted at least k matches. ``min_controls`` alone raises
        InputError (MatchIt ignores it).
    unit_id : str or list of str, optional
        MatchIt's ``unit.id``: column(s) identifying the unit (e.g. the
        patient) each row belongs to; once a control row is matched, every
        control row of the same unit counts as used (so one patient is not
        matched twice through different rows). Ignored, as in MatchIt, with
        replacement (``reuse_max`` >= number of focal units) or when every
        control row has its own id.
    s_weights : str, array (n,) or Series, optional
        Sampling weights (MatchIt ``s.weights``): they do not change who is
        matched to whom (the distance is given), only the effective sample
        sizes in ``counts`` (ESS of the sampling weights, and of matching
        weights times sampling weights), :func:`match_summary`'s statistics
        and :func:`match_data`'s weights, as in MatchIt. Finite, >= 0.

    Returns
    -------
    MatchResult
        ``subclass``, ``weights``, ``matched``, ``counts``, ``pairs`` equal to
        MatchIt's ``m.out$subclass``, ``m.out$weights``, ``match.data(m.out)``
        and ``summary(m.out)$nn`` for the same distance and options (weights to
        floating-point rounding; subclass numbers exactly). With
        ``order="random"`` the permutation differs from R's, so only the
        algorithm, not the draw, is shared. ``pairs`` names the actual arms
        (``treated``, ``control``) for either estimand; its ``difference`` is
        the matching distance (the Mahalanobis distance with ``mahvars``).
        With a covariate distance, ``mahvars``, covariate calipers or
        ``antiexact`` the match follows MatchIt's scanning path (every focal
        unit against every candidate, ties to the first in data order).

    Raises
    ------
    InputError
        A treatment that is not two-valued, no treated or no control units,
        missing or infinite distances, bad options, or a caliper so tight that
        no focal unit finds a match.
    """
    if method != "nearest":
        raise InputError(
            f"match_nearest: method={method!r} is not supported; only MatchIt's method = 'nearest' (greedy "
            "nearest-neighbour matching) is implemented, not optimal, full, genetic, cem, exact, subclass or "
            "cardinality matching"
        )
    if estimand not in ("ATT", "ATC"):
        raise InputError(
            f"match_nearest: estimand={estimand!r} is not supported; nearest-neighbour matching estimates the "
            "ATT or the ATC (estimand='ATC'), as MatchIt's method = 'nearest'; for the ATE use full matching or "
            "weighting, which are not implemented"
        )
    atc = estimand == "ATC"
    metric = None
    if not isinstance(distance, (str, pd.Series)) and np.ndim(distance) == 2:
        metric = "matrix"
        if mahvars:
            raise InputError(
                "match_nearest: mahvars needs a propensity score as distance, not a distance matrix; "
                "put the Mahalanobis distance into the matrix or pass the score as distance"
            )
    elif isinstance(distance, str) and distance not in data.columns and distance.lower() in _METRICS:
        metric = distance.lower()
        if not covariates:
            raise InputError(
                f"match_nearest: distance={distance!r} is computed from covariates: pass covariates=[...] "
                "(the right-hand side of MatchIt's formula)"
            )
        if mahvars:
            raise InputError(
                f"match_nearest: mahvars needs a propensity score as distance, not distance={distance!r} "
                "(MatchIt ignores it there); pass covariates=[...] only"
            )
    if order is None:
        # MatchIt: largest (ATT) / smallest (ATC) with a propensity score, data order with a covariate distance.
        order = "data" if metric else ("smallest" if atc else "largest")
    check_option("order", order, get_args(MatchOrder))
    shown = "a distance matrix" if metric == "matrix" else f"distance={distance!r}"
    if metric and order in ("largest", "smallest"):
        raise InputError(
            f"match_nearest: order={order!r} sorts by a propensity score, and {shown} has none; "
            "use order='data' or 'random', or pass the score as distance with mahvars=[...]"
        )
    variable = _check_variable_ratio(ratio, min_controls, max_controls, metric)
    ratio_average = float(ratio)
    ratio = int(variable[1]) if variable else int(ratio)
    if reuse_max is not None:
        if isinstance(reuse_max, bool) or not isinstance(reuse_max, (int, np.integer)) or reuse_max < 1:
            raise InputError(f"match_nearest: reuse_max={reuse_max!r} must be a whole number >= 1 or None")
        replace = int(reuse_max) > 1
    distance_caliper, covariate_calipers = _parse_caliper(caliper)
    if metric == "matrix" and distance_caliper is not None:
        std_distance = std_caliper if isinstance(std_caliper, bool) else bool(std_caliper.get("distance", True))
        if std_distance:
            raise InputError(
                "match_nearest: a caliper on a distance matrix is in the matrix's own units: pass "
                "std_caliper=False (or {'distance': False}), as MatchIt requires"
            )
    elif metric and distance_caliper is not None:
        raise InputError(
            f"match_nearest: a caliper on the distance needs a propensity score, and distance={distance!r} has "
            "none; put calipers on covariates (caliper={'age': 0.5}) or pass the score with mahvars=[...]"
        )
    if not isinstance(std_caliper, (bool, Mapping)):
        raise InputError(f"match_nearest: std_caliper={std_caliper!r} must be True/False or a mapping per caliper")
    exact_columns = as_column_list(exact)
    antiexact_columns = as_column_list(antiexact)
    mahvar_columns = as_column_list(mahvars)
    is_treated, treated_value, control_value = treatment_indicator(data, treatment, treated, "match_nearest: data")
    require_unique_index(data, "match_nearest: data")
    n = len(data)
    d = np.full(n, np.nan) if metric else _distance_values(data, distance)
    dmat_all = _distance_matrix(distance, data, is_treated) if metric == "matrix" else None
    sw = None if s_weights is None else _sampling_weights(data, s_weights, is_treated)
    # A boolean discard array needs no score (MatchIt accepts it with any distance); the named rules do.
    if metric and isinstance(discard, str) and discard != "none":
        raise InputError(
            f"match_nearest: discard={discard!r} needs a propensity score, and {shown} has none (a boolean array "
            "of units to drop works with any distance); "
            "pass the score as distance with mahvars=[...] to discard on it"
        )
    if isinstance(discard, pd.Series):
        if not discard.index.equals(data.index):
            raise InputError("match_nearest: the discard Series is not indexed like data; align it to data.index")
        discard = discard.to_numpy()
    discarded = _discard_mask(d, is_treated, discard, n)
    n_t_all, n_c_all = int(is_treated.sum()), int((~is_treated).sum())
    # The focal arm picks, the other arm is picked from (MatchIt: ATC = the arms swapped).
    is_focal = ~is_treated if atc else is_treated
    focal_positions = np.flatnonzero(is_focal & ~discarded)
    control_positions = np.flatnonzero(~is_focal & ~discarded)
    treated_positions = focal_positions
    n1, n0 = len(treated_positions), len(control_positions)
    focal_name, other_name = ("control", "treated") if atc else ("treated", "control")
    others = "treated units" if atc else "controls"
    if n1 == 0 or n0 == 0:
        why = (
            "the arms' distances do not overlap. Use discard='none' or check the propensity model"
            if isinstance(discard, str)
            else "the discard array marks every one of them"
        )
        raise InputError(
            f"match_nearest: discard={discard if isinstance(discard, str) else 'array'!r} left no "
            f"{focal_name if n1 == 0 else other_name} unit to match: {why}"
        )

    kept = ~discarded

    def _std(key: str) -> bool:
        return std_caliper if isinstance(std_caliper, bool) else bool(std_caliper.get(key, True))

    if distance_caliper is None and not covariate_calipers:
        caliper_distance = None
        warnings.warn(
            f"match_nearest: no caliper, so every {focal_name} unit gets a match however far its propensity "
            "score is; consider caliper=0.2 (SD of the logit propensity score, Austin 2011)",
            ModelWarning,
            stacklevel=2,
        )
    else:
        # MatchIt takes the SD over the units left after discard.
        caliper_distance = (
            None
            if distance_caliper is None
            else distance_caliper * float(np.std(d[kept], ddof=1))
            if _std("distance")
            else distance_caliper
        )
    caliper_kernel = np.inf if caliper_distance is None else caliper_distance
    caliper_columns: dict[str, float] = {}
    for name, width in covariate_calipers.items():
        require_columns(data, [name], "match_nearest: data (caliper)")
        col = data[name]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col) or col.isna().any():
            raise InputError(
                f"match_nearest: caliper column {name!r} must be numeric without missing values "
                f"(dtype {col.dtype}, {int(col.isna().sum())} missing)"
            )
        values = np.asarray(col, dtype=float)
        caliper_columns[name] = width * float(np.std(values[kept], ddof=1)) if _std(name) else width
    scan = bool(metric or mahvar_columns or caliper_columns or antiexact_columns)
    # unit.id (MatchIt): only without full replacement, and only when some control rows share an id.
    unit_codes: np.ndarray = np.full(n, -1, dtype=np.int64)
    unit_columns = as_column_list(unit_id)
    if unit_columns:
        require_columns(data, unit_columns, "match_nearest: data (unit_id)")
        n_missing = {c: int(data[c].isna().sum()) for c in unit_columns if data[c].isna().any()}
        if n_missing:
            raise InputError(
                f"match_nearest: missing values in unit_id column(s) {n_missing} (column: rows); "
                "every row needs the id of its unit"
            )
        reuse_limit = int(reuse_max) if reuse_max is not None else (n1 + 1 if replace else 1)
        codes = data.groupby(unit_columns, sort=True, observed=True).ngroup().to_numpy(dtype=np.int64)
        if reuse_limit < n1 and len(np.unique(codes[control_positions])) < n0:
            unit_codes = np.asarray(codes, dtype=np.int64)

    if variable:
        ratios = np.ascontiguousarray(_variable_ratios(d, is_focal, ratio_average, *variable)[focal_positions])
    else:
        ratios = np.full(n1, ratio, dtype=np.int64)
    if not replace and int(ratios.sum()) > n0:
        # MatchIt warns too ("Not all treated units will get <ratio> matches").
        warnings.warn(
            # No counts in the text: pipeline warnings reach the report, where small cells must not.
            f"match_nearest: ratio={ratio_average:g} asks for more {others} than there are (ratio x {focal_name} > "
            f"{others}); without replacement the later rounds leave some {focal_name} units with fewer {others}",
            ModelWarning,
            stacklevel=2,
        )
    strata = _exact_strata(data, exact_columns)
    control_strata = strata[control_positions]
    control_d = d[control_positions]
    # Stable: controls of equal distance stay in data order, as in MatchIt's sort.list(distance); the
    # tie-breaking rule (nearest in that order, left first) depends on it.
    if exact_columns:
        sort = np.lexsort((control_positions, control_d, control_strata))
    else:
        sort = np.argsort(control_d, kind="stable")
    control_d_sorted = np.ascontiguousarray(control_d[sort])
    control_pos_sorted = np.ascontiguousarray(control_positions[sort])
    strata_sorted = control_strata[sort]
    treated_strata = strata[treated_positions]
    block_start = np.searchsorted(strata_sorted, treated_strata, side="left").astype(np.int64)
    block_end = np.searchsorted(strata_sorted, treated_strata, side="right").astype(np.int64)
    treated_d = np.ascontiguousarray(d[treated_positions])

    if order == "largest":
        # R's order(decreasing = TRUE) keeps ties in data order, as a stable sort of -d does.
        processing = np.argsort(-treated_d, kind="stable")
    elif order == "smallest":
        processing = np.argsort(treated_d, kind="stable")
    elif order == "random":
        processing = np.random.default_rng(random_state).permutation(n1)
    else:
        processing = np.arange(n1)
    # Uses allowed per unit of the other arm: 1 without replacement, unlimited (n1 + 1) with it.
    reuse = int(reuse_max) if reuse_max is not None else (n1 + 1 if replace else 1)
    coords: np.ndarray | None = None
    transforms = np.eye(1).reshape(1, 1, 1)
    if scan:
        if metric == "matrix":
            coords = np.zeros((n, 1))
        elif metric or mahvar_columns:
            coords = np.ascontiguousarray(
                _covariate_matrix(
                    data,
                    as_column_list(covariates) if metric else mahvar_columns,
                    "covariates" if metric else "mahvars",
                )
            )
            metric_used = metric or "mahalanobis"
            if metric == "robust_mahalanobis":
                coords = np.ascontiguousarray(_robust_ranks(coords))
                if not coords.any():
                    metric_used = "euclidean"  # no covariate varies: MatchIt falls back to the Euclidean distance
            # One scaling over all kept units, also with exact strata (as MatchIt; checked on lalonde).
            w_all = _metric_transform(coords, is_treated, kept, metric_used, sw)
            transforms = np.ascontiguousarray(np.broadcast_to(w_all, (int(strata.max()) + 1, *w_all.shape)))
        else:
            # A propensity score with antiexact or covariate calipers: MatchIt keeps its vector path's ties.
            coords = np.ascontiguousarray(d.reshape(-1, 1))
        cal_names = list(caliper_columns)
        cal_values = [np.asarray(data[c], dtype=float) for c in cal_names]
        cal_widths = [caliper_columns[c] for c in cal_names]
        if caliper_distance is not None and dmat_all is None:
            cal_values.append(d)
            cal_widths.append(caliper_distance)
        anti = np.zeros((n, 0), dtype=np.int64)
        if antiexact_columns:
            require_columns(data, antiexact_columns, "match_nearest: data (antiexact)")
            # factorize codes missing values as -1: one more level, as MatchIt refuses them we say so.
            n_missing = {c: int(data[c].isna().sum()) for c in antiexact_columns if data[c].isna().any()}
            if n_missing:
                raise InputError(
                    f"match_nearest: missing values in antiexact column(s) {n_missing} (column: rows); "
                    "recode them as a level or drop those units explicitly"
                )
            anti = np.column_stack([pd.factorize(data[c])[0] for c in antiexact_columns]).astype(np.int64)
        matches = _kernels.match_scan(
            treated_positions.astype(np.int64),
            processing.astype(np.int64),
            control_positions.astype(np.int64),
            coords,
            np.ascontiguousarray(transforms),
            not (metric or mahvar_columns),
            strata.astype(np.int64),
            anti,
            np.ascontiguousarray(np.column_stack(cal_values)) if cal_values else np.zeros((n, 0)),
            np.asarray(cal_widths, dtype=float),
            ratios,
            reuse,
            np.zeros((0, 0))
            if dmat_all is None
            else np.ascontiguousarray(
                (dmat_all.T if atc else dmat_all)[
                    np.ix_(
                        np.searchsorted(np.flatnonzero(is_focal), treated_positions),
                        np.searchsorted(np.flatnonzero(~is_focal), control_positions),
                    )
                ]
            ),
            np.inf if caliper_distance is None or dmat_all is None else caliper_distance,
            unit_codes,
        )
    elif replace and reuse_max is None:
        matches = _kernels.match_with_replacement(
            treated_d,
            treated_positions.astype(np.int64),
            block_start,
            block_end,
            control_d_sorted,
            control_pos_sorted,
            ratios,
            caliper_kernel,
        )
    else:
        matches = _kernels.match_without_replacement(
            treated_d,
            treated_positions.astype(np.int64),
            block_start,
            block_end,
            processing.astype(np.int64),
            control_d_sorted,
            control_pos_sorted,
            ratios,
            caliper_kernel,
            reuse,
            np.ascontiguousarray(unit_codes[control_pos_sorted]),
        )

    has_match = matches[:, 0] >= 0
    if not has_match.any():
        if caliper_distance is not None and not caliper_columns:
            raise InputError(
                f"match_nearest: no {focal_name} unit has a {other_name} within the caliper "
                f"({caliper_distance:.6g} distance "
                f"units{'' if not _std('distance') else f' = {distance_caliper} SD'}); use a wider caliper"
            )
        if caliper_columns or antiexact_columns:
            limits = [f"within the calipers on {sorted(caliper_columns) + (['distance'] if caliper_distance else [])}"]
            limits = (limits if caliper_columns else []) + (
                [f"differing on the antiexact columns {antiexact_columns}"] if antiexact_columns else []
            )
            raise InputError(
                f"match_nearest: no {focal_name} unit has a {other_name} {' and '.join(limits)}; "
                "use wider calipers or fewer constraints"
            )
        raise InputError(
            f"match_nearest: no {focal_name} unit could be matched (no shared exact stratum with {others})"
        )

    # MatchIt's weights (weights_matrixC): focal units 1; the others sum 1/(matches in the set), then rescaled.
    weights = np.zeros(n, dtype=float)
    weights[treated_positions[has_match]] = 1.0
    n_in_set = (matches >= 0).sum(axis=1)
    rows, cols = np.nonzero(matches >= 0)
    matched_controls = matches[rows, cols]
    control_raw = np.bincount(matched_controls, weights=1.0 / n_in_set[rows], minlength=n)
    unique_controls = np.flatnonzero(control_raw > 0)
    # Bit for bit as MatchIt: times the count, then divided by the sum taken in data order (sequentially, as
    # its C++ loop; numpy's sum is pairwise). The last bits matter downstream: summary()'s eQQ statistics
    # compare cumulative weights exactly (checked against MatchIt's weights printed to 17 digits).
    total = float(np.cumsum(control_raw[unique_controls])[-1])
    weights[unique_controls] = control_raw[unique_controls] * len(unique_controls) / total

    index = data.index
    set_number = np.zeros(n1, dtype=np.int64)
    set_number[has_match] = _matchit_subclass_numbers(treated_positions[has_match])
    sub = np.zeros(n, dtype=np.int64)
    if not replace:
        sub[treated_positions[has_match]] = set_number[has_match]
        sub[matched_controls] = set_number[rows]
    subclass_values = pd.arrays.IntegerArray(sub, sub == 0)
    subclass = pd.Series(subclass_values, index=index, name="subclass")
    weight_series = pd.Series(weights, index=index, name="weight")

    keep = weights > 0
    matched = data.loc[keep].copy()
    matched["subclass"] = subclass[keep]
    matched["weight"] = weights[keep]

    order_pairs = np.lexsort((cols, set_number[rows]))
    rows_o, cols_o, controls_o = rows[order_pairs], cols[order_pairs], matched_controls[order_pairs]
    focal_labels, other_labels = index[treated_positions[rows_o]], index[controls_o]
    focal_labels_pos, other_labels_pos = treated_positions[rows_o], controls_o
    # Position of each unit within its own arm (data order): the row / column of a treated x control matrix.
    rank_in_arm = np.empty(n, dtype=np.int64)
    rank_in_arm[is_treated] = np.arange(int(is_treated.sum()))
    rank_in_arm[~is_treated] = np.arange(int((~is_treated).sum()))
    pairs = pd.DataFrame(
        {
            "subclass": set_number[rows_o],
            # The actual arms, whichever is focal.
            "treated": other_labels if atc else focal_labels,
            "control": focal_labels if atc else other_labels,
            "round": cols_o + 1,
            "difference": (
                dmat_all[
                    rank_in_arm[other_labels_pos if atc else focal_labels_pos],
                    rank_in_arm[focal_labels_pos if atc else other_labels_pos],
                ]
                if dmat_all is not None
                else np.sqrt(
                    (
                        np.einsum(
                            "ip,ipr->ir",
                            coords[controls_o] - coords[treated_positions[rows_o]],
                            transforms[strata[treated_positions[rows_o]]],
                        )
                        ** 2
                    ).sum(axis=1)
                )
                if coords is not None and (metric or mahvar_columns)
                else np.abs(d[controls_o] - d[treated_positions[rows_o]])
            ),
        }
    )
    mm_labels = {}
    for k in range(matches.shape[1]):
        column = matches[:, k]
        labels = pd.Series(index[np.where(column >= 0, column, 0)], dtype=object)
        labels[column < 0] = pd.NA
        mm_labels[k + 1] = labels.to_numpy()
    match_matrix = pd.DataFrame(mm_labels, index=index[treated_positions])

    w_t, w_c = weights[is_treated], weights[~is_treated]
    disc_t, disc_c = discarded[is_treated], discarded[~is_treated]
    counts = pd.DataFrame(
        {
            "Control": [
                float(n_c_all) if sw is None else _ess(sw[~is_treated]),
                float(n_c_all),
                _ess(w_c if sw is None else w_c * sw[~is_treated]),
                float((w_c > 0).sum()),
                float(((w_c == 0) & ~disc_c).sum()),
                float(disc_c.sum()),
            ],
            "Treated": [
                float(n_t_all) if sw is None else _ess(sw[is_treated]),
                float(n_t_all),
                _ess(w_t if sw is None else w_t * sw[is_treated]),
                float((w_t > 0).sum()),
                float(((w_t == 0) & ~disc_t).sum()),
                float(disc_t.sum()),
            ],
        },
        index=["All (ESS)", "All", "Matched (ESS)", "Matched", "Unmatched", "Discarded"],
    )
    options = {
        "ratio": ratio_average if variable else ratio,
        "min_controls": variable[0] if variable else None,
        "max_controls": variable[1] if variable else None,
        "caliper": caliper if not isinstance(caliper, Mapping) else dict(caliper),
        "std_caliper": std_caliper if isinstance(std_caliper, bool) else dict(std_caliper),
        "order": order if not replace or (reuse_max is not None and reuse_max < n1) else "data",
        "reuse_max": reuse_max,
        "replace": replace,
        "exact": exact_columns,
        "random_state": random_state if not isinstance(random_state, np.random.Generator) else "Generator",
        "treated_value": treated_value,
        "control_value": control_value,
        "treatment": treatment,
        "estimand": estimand,
        "discard": discard if isinstance(discard, str) else "array",
        "distance": metric or "given",
        "covariates": as_column_list(covariates),
        "mahvars": mahvar_columns,
        "antiexact": antiexact_columns,
        "covariate_calipers": caliper_columns,
        "unit_id": unit_columns if (unit_codes >= 0).any() else [],
    }
    return MatchResult(
        subclass=subclass,
        weights=weight_series,
        matched=matched,
        counts=counts,
        pairs=pairs,
        match_matrix=match_matrix,
        distance=pd.Series(d, index=index, name="distance"),
        treated=pd.Series(is_treated, index=index, name="treated"),
        caliper_distance=caliper_distance,
        options=options,
        discarded=pd.Series(discarded, index=index, name="discarded"),
        s_weights=None if sw is None else pd.Series(sw, index=index, name="s_weights"),
    )
