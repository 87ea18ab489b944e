"""Balance summary of a nearest-neighbour match, equal to MatchIt 4.x ``summary(m.out)``.

The statistics (MatchIt's documented definitions, ``?summary.matchit``):

* **Means Treated / Means Control**: (weighted) means by arm; before matching
  unweighted, after matching with the matching weights.
* **Std. Mean Diff.**: (mean_t - mean_c) / s, s the standard deviation of the
  *focal* arm (treated for the ATT, control for the ATC) in the full,
  unmatched sample, ``sqrt(p (1 - p))`` for a binary term; the same s before
  and after matching.
* **Var. Ratio**: var_t / var_c, weighted variances as ``cov.wt()``
  (sum w (x - m)^2 / (sum w - sum w^2 / sum w)); NA (NaN) for binary terms.
* **eCDF Mean / eCDF Max**: mean and largest |F_t(v) - F_c(v)| of the
  (weighted) empirical distribution functions over the distinct values v of
  the term in the full sample (units with weight 0 included among the v);
  |p_t - p_c| for a binary term.
* **Std. Pair Dist.**: mean over matched (treated, control) pairs of
  |x_t - x_c| / s, s as for the SMD (matched sample only).

With ``standardize=False`` (MatchIt's raw table) the columns are "Mean
Diff." (mean_t - mean_c), "Var. Ratio", "eQQ Mean" / "eQQ Max" and "Pair
Dist." (mean |x_t - x_c|). The eQQ statistics compare the arms' (weighted)
empirical quantiles: the arm with more units of positive weight is read at
the other arm's cumulative weights (a step function, the largest value whose
cumulative weight does not exceed it; with at most 5 distinct values of the
term, through the cumulative proportions of those values), then the mean and
largest |difference| over the smaller arm's units; |p_t - p_c| for a binary
term. Sums are accumulated in extended precision, as R's ``sum`` and
``cumsum`` do, because the steps are compared exactly. Which arm is read at
the other's cumulative weights follows a MatchIt 4.5.1 slip (it counts the
units of positive weight on the unsorted weights indexed by sorted
positions), reproduced: it only picks the direction.

Where s is (nearly) 0 (a term constant in the focal arm) MatchIt, and so this
module, uses the pooled SD of both arms instead. One MatchIt 4.5.1 quirk is
not copied: when the two (weighted) means differ by at most sqrt(machine
epsilon), MatchIt reports the *raw* mean difference as Std. Mean Diff. and
the *raw* mean pair distance as Std. Pair Dist.; here both are always
divided by s (the SMD differs by less than 1.5e-8 / s, the pair distance by
exactly the factor s; see docs/matching.md).

A term is binary when all its values are 0 or 1 (a 1/2 coding is
continuous, as in MatchIt). Terms are expanded as MatchIt's covariate matrix:
numbers as they are, a boolean as ``<name>TRUE``, a text or categorical column
as one 0/1 term per level ``<name><level>`` (every level, sorted, or the
categorical's order), in the order given, after a ``distance`` row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._design import require_columns
from ..errors import InputError
from ._common import as_column_list
from .balance import is_categorical, levels_of
from .nearest import MatchResult

_EPS = float(np.finfo(float).eps)

RAW_COLUMNS = ["Means Treated", "Means Control", "Mean Diff.", "Var. Ratio", "eQQ Mean", "eQQ Max", "Pair Dist."]
STANDARDIZED_COLUMNS = [
    "Means Treated",
    "Means Control",
    "Std. Mean Diff.",
    "Var. Ratio",
    "eCDF Mean",
    "eCDF Max",
    "Std. Pair Dist.",
]


@dataclass(frozen=True)
class MatchSummary:
    """Result of :func:`match_summary` (MatchIt's ``summary.matchit`` object).

    Attributes
    ----------
    sum_all : pandas.DataFrame or None
        Balance in the full sample (``summary(m)$sum.all``); None with
        ``un=False``. Index: terms; columns as MatchIt names them.
    sum_matched : pandas.DataFrame
        Balance in the matched sample (``summary(m)$sum.matched``).
    nn : pandas.DataFrame
        Sample sizes (``summary(m)$nn``), the match's ``counts``.
    options : dict
        ``estimand``, ``pair_dist``, ``interactions``, ``covariates``.
    sd_denominator : pandas.Series or None
        The standardization factor s of each term (the focal arm's SD in the
        full sample, or the pooled SD where that is 0).
    reduction : pandas.DataFrame or None
        Percent balance improvement (``summary(m, improvement = TRUE)$reduction``),
        None unless asked for.
    """

    sum_all: pd.DataFrame | None
    sum_matched: pd.DataFrame
    nn: pd.DataFrame
    options: dict[str, Any] = field(default_factory=dict)
    sd_denominator: pd.Series | None = None
    reduction: pd.DataFrame | None = None

    def __repr__(self) -> str:
        parts = []
        with pd.option_context("display.width", 120, "display.max_columns", 10):
            if self.sum_all is not None:
                parts += ["Summary of Balance for All Data:", self.sum_all.round(4).to_string(na_rep="."), ""]
            parts += ["Summary of Balance for Matched Data:", self.sum_matched.round(4).to_string(na_rep="."), ""]
            if self.reduction is not None:
                parts += ["Percent Balance Improvement:", self.reduction.round(1).to_string(na_rep="."), ""]
            parts += ["Sample Sizes:", self.nn.round(2).to_string()]
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        # pandas escapes the labels (term names come from the data's column and level names).
        blocks = []
        for title, table, digits in (
            ("Summary of Balance for All Data", self.sum_all, 4),
            ("Summary of Balance for Matched Data", self.sum_matched, 4),
            ("Percent Balance Improvement", self.reduction, 1),
            ("Sample Sizes", self.nn, 2),
        ):
            if table is not None:
                blocks.append(f"<h4>{title}</h4>" + table.round(digits).to_html(na_rep="."))
        return "<div>" + "".join(blocks) + "</div>"


def _terms(data: pd.DataFrame, covariates: list[str]) -> tuple[list[str], np.ndarray]:
    """MatchIt's covariate matrix: numbers as is, booleans as <name>TRUE, every level of a factor as 0/1."""
    require_columns(data, covariates, "match_summary: data")
    missing = {c: int(data[c].isna().sum()) for c in covariates if data[c].isna().any()}
    if missing:
        raise InputError(
            f"match_summary: missing values in covariate(s) {missing} (column: rows); "
            "impute or drop them explicitly (MatchIt refuses them too)"
        )
    names: list[str] = []
    columns: list[np.ndarray] = []
    for name in covariates:
        col = data[name]
        if pd.api.types.is_bool_dtype(col):
            names.append(f"{name}TRUE")
            columns.append(np.asarray(col, dtype=float))
        elif is_categorical(col):
            values = np.asarray(col.astype(object))
            for level in levels_of(col):
                names.append(f"{name}{level}")
                columns.append((values == level).astype(float))
        else:
            x = np.asarray(col, dtype=float)
            n_inf = int(np.isinf(x).sum())
            if n_inf:
                raise InputError(
                    f"match_summary: covariate {name!r} has {n_inf} infinite value(s) out of {len(x)} rows; "
                    "replace or drop them explicitly"
                )
            names.append(name)
            columns.append(x)
    return names, np.column_stack(columns) if columns else np.empty((len(data), 0))


def _with_interactions(names: list[str], x: np.ndarray, factor_of: list[str]) -> tuple[list[str], np.ndarray]:
    # MatchIt's interactions = TRUE: after the terms,
    # for each term in turn its square (non-binary terms only), then its products with the later terms of
    # other variables ("age²", "age * educ", ..., "educ²", ...).
    out_names, out_cols = list(names), [x[:, j] for j in range(x.shape[1])]
    for i, name in enumerate(names):
        if not _is_binary(x[:, i]):
            out_names.append(f"{name}²")
            out_cols.append(x[:, i] ** 2)
        for j in range(i + 1, len(names)):
            if factor_of[i] != factor_of[j]:
                out_names.append(f"{name} * {names[j]}")
                out_cols.append(x[:, i] * x[:, j])
    return out_names, np.column_stack(out_cols)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * x) / np.sum(w))


def _wvar(x: np.ndarray, w: np.ndarray) -> float:
    # cov.wt(): weights normalised to sum 1, divisor 1 - sum(w^2) (n - 1 for equal weights).
    keep = w > 0
    x, w = x[keep], w[keep] / w[keep].sum()
    denom = 1.0 - float(np.sum(w**2))
    if denom <= 0:
        return float("nan")
    m = float(np.sum(w * x))
    return float(np.sum(w * (x - m) ** 2) / denom)


def _ecdf_diffs(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    values = np.unique(x)
    out = []
    for arm in (t, ~t):
        xa, wa = x[arm], w[arm]
        o = np.argsort(xa, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(wa[o])]) / wa.sum()
        out.append(cum[np.searchsorted(xa[o], values, side="right")])
    return np.abs(out[0] - out[1])


def _xsum(v: np.ndarray) -> float:
    # R's sum(): accumulated in long double (x86's 80 bits), then rounded to a double.
    return float(np.cumsum(v.astype(np.longdouble))[-1]) if v.size else 0.0


def _xcumsum(v: np.ndarray) -> np.ndarray:
    # R's cumsum(): each partial sum kept in long double, rounded to a double when stored.
    return np.cumsum(v.astype(np.longdouble)).astype(float)


def _step_quantiles(cum_from: np.ndarray, x_from: np.ndarray, at: np.ndarray) -> np.ndarray:
    # approx(cum_from, x_from, xout = at, method = "constant", rule = 2): the value at the last step <= at,
    # the first / last value outside the range.
    i = np.searchsorted(cum_from, at, side="right") - 1
    return x_from[np.clip(i, 0, len(x_from) - 1)]


def _few_value_quantiles(u: np.ndarray, x_from: np.ndarray, w_from: np.ndarray, at: np.ndarray) -> np.ndarray:
    # <= 5 distinct values: the cumulative proportions of the values u (the last set to 1), and for each
    # cumulative weight in `at` the value whose interval holds it (findInterval, rightmost closed).
    total = _xsum(w_from)
    probs = np.array([_xsum(w_from[x_from == value]) / total for value in u])
    breaks = np.concatenate([[0.0], _xcumsum(probs)[:-1], [1.0]])
    i = np.searchsorted(breaks, at, side="right")
    i[at == breaks[-1]] = len(u)
    # A cumulative weight above 1 by rounding falls past the last interval: R indexes u out of range (NA).
    out = np.full(len(at), np.nan)
    ok = (i >= 1) & (i <= len(u))
    out[ok] = u[i[ok] - 1]
    return out


def _eqq_diffs(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """|quantile differences| of MatchIt's raw eQQ statistics (``standardize = FALSE``), see the module notes."""
    w = w.astype(float).copy()
    for arm in (t, ~t):
        w[arm] = w[arm] / _xsum(w[arm])
    o = np.argsort(x, kind="stable")
    x_o, w_o, t_o = x[o], w[o], t[o]
    first = t_o == t_o[0]  # MatchIt's "arm 1": the arm of the smallest value
    u = np.unique(x_o)
    x1, w1 = x_o[first][w_o[first] > 0], w_o[first][w_o[first] > 0]
    x0, w0 = x_o[~first][w_o[~first] > 0], w_o[~first][w_o[~first] > 0]
    # Which arm is read at the other's cumulative weights: MatchIt 4.5.1 counts the units of positive weight
    # by indexing the *unsorted* weights with the sorted positions of each arm (w[t1] with t1 from the sorted
    # order), reproduced so the statistic is MatchIt's. It only matters with weights of 0 (after matching);
    # either direction is an eQQ statistic.
    n_a = int((w[np.flatnonzero(first)] > 0).sum())
    n_b = int((w[np.flatnonzero(~first)] > 0).sum())
    if n_a < n_b:
        at = _xcumsum(w1)
        x0 = _few_value_quantiles(u, x0, w0, at) if len(u) <= 5 else _step_quantiles(_xcumsum(w0), x0, at)
    else:
        at = _xcumsum(w0)
        x1 = _few_value_quantiles(u, x1, w1, at) if len(u) <= 5 else _step_quantiles(_xcumsum(w1), x1, at)
    return np.abs(x1 - x0)


def _stats(
    x: np.ndarray,
    t: np.ndarray,
    w: np.ndarray,
    scale: float,
    binary: bool,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    standardize: bool = True,
) -> list[float]:
    mt, mc = _wmean(x[t], w[t]), _wmean(x[~t], w[~t])
    if not standardize:
        scale = 1.0  # MatchIt's raw table: Mean Diff. and Pair Dist. in the term's units
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = float(np.float64(mt - mc) / scale)
        if binary:
            vr = float("nan")
            e_mean = e_max = abs(mt - mc)
        else:
            vr = float(np.float64(_wvar(x[t], w[t])) / _wvar(x[~t], w[~t]))
            if not np.isfinite(vr):
                vr = float("nan")  # an arm without spread (e.g. age * raceblack among white controls): MatchIt's NA
            diffs = _ecdf_diffs(x, t, w) if standardize else _eqq_diffs(x, t, w)
            e_mean, e_max = float(diffs.mean()), float(diffs.max())
        pd_ = float("nan") if pairs is None else float(np.mean(np.abs(x[pairs[0]] - x[pairs[1]])) / scale)
    return [mt, mc, smd, vr, e_mean, e_max, pd_]


def _arm_variance(x: np.ndarray, binary: bool, w: np.ndarray | None = None) -> float:
    if w is not None:
        # Sampling weights: MatchIt's weighted p (1 - p), or the cov.wt() variance.
        return _wmean(x, w) * (1 - _wmean(x, w)) if binary else _wvar(x, w)
    if binary:
        p = float(x.mean())
        return p * (1 - p)
    return float(np.var(x, ddof=1)) if x.size > 1 else float("nan")


def _scale(x: np.ndarray, t: np.ndarray, focal: np.ndarray, binary: bool, sw: np.ndarray | None = None) -> float:
    s = float(np.sqrt(_arm_variance(x[focal], binary, None if sw is None else sw[focal])))
    if np.isfinite(s) and s >= np.sqrt(_EPS):
        return s
    # A term (nearly) constant in the focal arm: MatchIt falls back to the pooled SD of both arms, each
    # weighted by its size: sum of within-arm squares / (n - 1) for continuous terms (checked against
    # MatchIt, whose fallback passes the unit sampling weights), sum n_g p_g (1 - p_g) / n for binary ones.
    n1, n0 = int(t.sum()), int((~t).sum())
    v1, v0 = _arm_variance(x[t], binary), _arm_variance(x[~t], binary)
    if binary:
        return float(np.sqrt((n1 * v1 + n0 * v0) / (n1 + n0)))
    return float(np.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / (n1 + n0 - 1)))


def match_summary(
    result: MatchResult,
    data: pd.DataFrame,
    covariates: Sequence[str],
    *,
    addlvariables: Sequence[str] | pd.DataFrame | np.ndarray | None = None,
    interactions: bool = False,
    un: bool = True,
    improvement: bool = False,
    pair_dist: bool = True,
    distance: bool | None = None,
    standardize: bool = True,
) -> MatchSummary:
    """Balance before and after matching as MatchIt's ``summary(m.out)`` reports it.

    Parameters
    ----------
    result : MatchResult
        The match (:func:`match_nearest`) of ``data``.
    data : pandas.DataFrame
        The frame that was matched (same index).
    covariates : sequence of str
        The covariates of the matching formula (MatchIt: the formula, plus
        ``exact`` variables). Expanded as MatchIt's covariate matrix (see the
        module docstring); missing or infinite values raise InputError.
    addlvariables : sequence of str, pandas.DataFrame or 2-D array, optional
        More variables to summarise after ``covariates``: names of columns of
        ``data``, a frame with one row per unit of ``data`` (same index), or
        an array with one row per unit (columns named V1, V2, ... as MatchIt
        names a matrix's unnamed columns).
        Names already among ``covariates`` add nothing (as in MatchIt).
    interactions : bool
        Also the squares of the non-binary terms (``"age²"``) and the
        products of every pair of terms of different variables
        (``"age * educ"``), MatchIt's ``interactions = TRUE``.
    un : bool
        Compute ``sum_all`` (the unmatched sample) too.
    improvement : bool
        Also the percent balance improvement ``reduction``: 100 (|before| -
        |after|) / |before| for Std. Mean Diff., eCDF Mean and eCDF Max, the
        same on |log| for Var. Ratio, NaN for Std. Pair Dist. (MatchIt's
        ``improvement = TRUE``; ignored with ``un=False``, as in MatchIt).
    pair_dist : bool
        Compute ``Std. Pair Dist.`` in the matched sample (NaN otherwise).
    distance : bool or None
        Put the distance matched on as the first row, ``"distance"``, as
        MatchIt does when it matched on a propensity score. None: when the
        match had one (not with ``distance="mahalanobis"`` and the like).
    standardize : bool
        True: MatchIt's standardized table (Std. Mean Diff., eCDF Mean / Max,
        Std. Pair Dist.). False: its raw table (``standardize = FALSE``):
        "Mean Diff.", "eQQ Mean", "eQQ Max", "Pair Dist." in the term's own
        units (see the module notes); ``sd_denominator`` is still reported.

    Returns
    -------
    MatchSummary
        ``sum_all``, ``sum_matched`` (columns ``Means Treated``, ``Means
        Control``, ``Std. Mean Diff.``, ``Var. Ratio``, ``eCDF Mean``, ``eCDF
        Max``, ``Std. Pair Dist.``) and ``nn``, equal to MatchIt's.
    """
    if not isinstance(result, MatchResult):
        raise InputError(f"match_summary: result must be a MatchResult from match_nearest, got {type(result).__name__}")
    if not isinstance(standardize, (bool, np.bool_)):
        raise InputError(f"match_summary: standardize={standardize!r} must be True or False")
    if not data.index.equals(result.weights.index):
        raise InputError(
            "match_summary: data is not the frame that was matched (its index differs from the match's); "
            "pass the same data given to match_nearest"
        )
    if distance is None:
        distance = result.options.get("distance", "given") == "given"
    elif distance and result.options.get("distance", "given") != "given":
        raise InputError(
            f"match_summary: distance=True but the match used distance={result.options['distance']!r}, "
            "which has no propensity score to summarise"
        )
    names_in = as_column_list(covariates)
    if isinstance(addlvariables, np.ndarray) and addlvariables.ndim == 2:
        # MatchIt accepts a matrix: one row per unit, unnamed columns named V1, V2, ... (as.data.frame()).
        if addlvariables.shape[0] != len(data):
            raise InputError(
                f"match_summary: addlvariables has {addlvariables.shape[0]} rows and data {len(data)}; "
                "the variables in addlvariables need one row per unit of data"
            )
        addlvariables = pd.DataFrame(
            addlvariables, index=data.index, columns=[f"V{j + 1}" for j in range(addlvariables.shape[1])]
        )
    elif (
        addlvariables is not None
        and not isinstance(addlvariables, (str, pd.DataFrame))
        and (not isinstance(addlvariables, (list, tuple)) or not all(isinstance(v, str) for v in addlvariables))
    ):
        raise InputError(
            f"match_summary: addlvariables must be column names of data, a DataFrame or a 2-D array with one "
            f"row per unit; got {type(addlvariables).__name__}"
        )
    if isinstance(addlvariables, pd.DataFrame):
        if not addlvariables.index.equals(data.index):
            raise InputError(
                f"match_summary: addlvariables has {len(addlvariables)} rows indexed unlike data ({len(data)} rows); "
                "pass a frame with one row per unit of data, same index"
            )
        new = [c for c in addlvariables.columns if c not in names_in]
        clash = [c for c in new if c in data.columns and not addlvariables[c].equals(data[c])]
        if clash:
            raise InputError(
                f"match_summary: addlvariables column(s) {clash} differ from data's columns of the same name; "
                "rename them"
            )
        data = data.assign(**{str(c): addlvariables[c] for c in new})
        names_in += [str(c) for c in new]
    else:
        names_in += [c for c in as_column_list(addlvariables) if c not in names_in]
    if not names_in and not distance:
        raise InputError("match_summary: no covariates and distance=False: nothing to summarise")
    names, x = _terms(data, names_in)
    if interactions and names:
        factor_of: list[str] = []
        for name in names_in:
            col = data[name]
            k = len(levels_of(col)) if is_categorical(col) and not pd.api.types.is_bool_dtype(col) else 1
            factor_of += [name] * k
        names, x = _with_interactions(names, x, factor_of)
    if distance:
        names = ["distance", *names]
        x = np.column_stack([result.distance.to_numpy(dtype=float), x])
    t = result.treated.to_numpy(dtype=bool)
    estimand = result.options.get("estimand", "ATT")
    focal = ~t if estimand == "ATC" else t
    w = result.weights.to_numpy(dtype=float)
    ones = np.ones(len(w))
    # Sampling weights (MatchIt's s.weights): the unmatched sample weighted by them, the matched one by the
    # matching weights times them, the standardization factor computed with them; pair distances unweighted.
    sw = None if result.s_weights is None else result.s_weights.to_numpy(dtype=float)
    if sw is not None:
        ones, w = sw, w * sw
    pos = {label: i for i, label in enumerate(result.weights.index)}
    pairs = None
    if pair_dist:
        pairs = (
            np.array([pos[v] for v in result.pairs["treated"]], dtype=np.int64),
            np.array([pos[v] for v in result.pairs["control"]], dtype=np.int64),
        )
    rows_all, rows_matched, scales = [], [], []
    for j in range(x.shape[1]):
        xj = x[:, j]
        binary = names[j] != "distance" and _is_binary(xj)
        scale = _scale(xj, t, focal, binary, sw)
        scales.append(scale)
        if un:
            rows_all.append(_stats(xj, t, ones, scale, binary, None, standardize))
        rows_matched.append(_stats(xj, t, w, scale, binary, pairs, standardize))
    index = pd.Index(names)
    columns = STANDARDIZED_COLUMNS if standardize else RAW_COLUMNS
    sum_all = pd.DataFrame(rows_all, index=index, columns=columns) if un else None
    sum_matched = pd.DataFrame(rows_matched, index=index, columns=columns)
    reduction = None
    if improvement and sum_all is not None:
        before, after = sum_all.iloc[:, 2:].abs(), sum_matched.iloc[:, 2:].abs()
        before["Var. Ratio"] = np.log(sum_all["Var. Ratio"]).abs()
        after["Var. Ratio"] = np.log(sum_matched["Var. Ratio"]).abs()
        with np.errstate(divide="ignore", invalid="ignore"):
            reduction = 100 * (before - after) / before
        reduction.iloc[:, -1] = np.nan  # Std. Pair Dist. / Pair Dist.: no pairs before matching
    return MatchSummary(
        sum_all=sum_all,
        sum_matched=sum_matched,
        nn=result.counts.copy(),
        options={
            "estimand": estimand,
            "pair_dist": pair_dist,
            "interactions": interactions,
            "covariates": names_in,
            "standardize": bool(standardize),
        },
        sd_denominator=pd.Series(scales, index=index, name="sd_denominator"),
        reduction=reduction,
    )
