"""Kaplan-Meier survival curves and the log-rank test, equal to R's survfit and survdiff.

``kaplan_meier`` matches ``summary(survfit(Surv(time, event) ~ group, data,
weights=, conf.type=, conf.int=), censored=TRUE)`` row for row and
``print(survfit(...))`` for the median and its confidence limits;
``logrank`` matches ``survdiff(Surv(time, event) ~ group + strata(...))``.

Ties: rows are grouped by distinct time; events and censorings at the same
time are both counted in that time's risk set (events are taken to happen
first), as survfit does. Nothing is jittered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numba
import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from ._checks import check_event, check_group, check_time, check_weights, require_events
from ._risksets import (
    RiskTable,
    distinct_sorted,
    group_order,
    grouped_risk_table,
    merge_near_tied_times,
    merge_near_ties,
    near_tie_representatives,
    risk_table,
)

__all__ = [
    "ConfType",
    "KaplanMeierResult",
    "LogRankResult",
    "kaplan_meier",
    "logrank",
]

ConfType = Literal["log", "log-log", "plain"]
VarianceType = Literal["auto", "greenwood", "robust"]

# quantile.survfit treats a curve within this distance of 0.5 as equal to it,
# so that 0.5 reached through rounding (e.g. 3/6) still triggers the midpoint rule.
_QUANTILE_TOLERANCE = float(np.sqrt(np.finfo(float).eps))


def _check_choice(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _check_conf_level(conf_level: float) -> float:
    level = float(conf_level)
    if not 0.0 < level < 1.0:
        raise InputError(f"conf_level={conf_level!r} must be strictly between 0 and 1 (e.g. 0.95)")
    return level


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class _Curve:
    """One group's Kaplan-Meier curve at its distinct times (all arrays shape (m,))."""

    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    n_censor: np.ndarray
    survival: np.ndarray
    se_log: np.ndarray  # standard error of log S (= of the cumulative hazard), survfit's $std.err
    rows_at_risk: np.ndarray  # unweighted rows with time >= t


def km_curve(table: RiskTable, squared: RiskTable | None = None) -> _Curve:
    """Kaplan-Meier curve of one sample from its risk table.

    Parameters
    ----------
    table : RiskTable with one mark (the event), weighted by the case weights.
    squared : the same table weighted by the squared case weights; when given,
        the variance is the infinitesimal-jackknife one (survfit's default for
        non-integer case weights) instead of Greenwood's.
    """
    n_risk = table.n_risk
    n_event = np.ascontiguousarray(table.counts[:, 0])
    if squared is None:
        n_censor, survival, se_log = _greenwood_pass(n_risk, n_event, table.n_total)
    else:
        n_censor = table.n_total - n_event
        with np.errstate(divide="ignore", invalid="ignore"):
            survival = np.cumprod(1.0 - n_event / n_risk)
            se_log = np.sqrt(_robust_log_survival_variance(table, squared))
    return _Curve(table.time, n_risk, n_event, n_censor, survival, se_log, table.rows_at_risk)


@numba.njit(cache=True, error_model="numpy")
def _greenwood_pass(
    n_risk: np.ndarray, n_event: np.ndarray, n_total: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Censored counts, S = cumprod(1 - d/n) and Greenwood's SE of log S, in one pass.

    The same operations in the same order as the vectorised
    ``cumprod(1 - d / n)`` and ``sqrt(cumsum(d / (n (n - d))))`` (so the same
    bits), without their n-long temporaries. The SE is infinite once everyone
    at risk has the event (survfit gives Inf too).
    """
    m = n_risk.shape[0]
    n_censor = np.empty(m)
    survival = np.empty(m)
    se_log = np.empty(m)
    s = 1.0
    total = 0.0
    for i in range(m):
        n = n_risk[i]
        d = n_event[i]
        n_censor[i] = n_total[i] - d
        s = s * (1.0 - d / n)
        survival[i] = s
        if d > 0:
            total = total + d / (n * (n - d))
        else:
            total = total + 0.0
        se_log[i] = np.sqrt(total)
    return n_censor, survival, se_log


def _robust_log_survival_variance(table: RiskTable, squared: RiskTable) -> np.ndarray:
    """Infinitesimal-jackknife variance of log S, as survfit(robust=TRUE).

    Differentiating ``log S(t) = sum_j log(1 - d_j / n_j)`` by subject i's weight
    gives the influence ``-(delta_i 1(T_i <= t) / (n(T_i) - d(T_i))
    - sum_{t_j <= min(T_i, t)} d_j / (n_j (n_j - d_j)))``; the variance is the
    sum over subjects of ``(w_i * influence_i)^2``. Grouping subjects by their
    own time turns that sum into cumulative sums over distinct times (no
    n x m matrix).
    """
    w2 = squared.n_total  # sum of w^2 at each time
    w2_event = squared.counts[:, 0]  # sum of w^2 over events at each time
    w2_later = squared.n_risk - w2  # sum of w^2 with time > t
    n = table.n_risk
    d = table.counts[:, 0]
    own = np.where(w2_event > 0, 1.0 / (n - d), 0.0)
    hazard_sum = np.cumsum(np.where(d > 0, d / (n * (n - d)), 0.0))
    own_time = own * own * w2_event - 2.0 * own * hazard_sum * w2_event + hazard_sum**2 * w2
    return np.cumsum(own_time) + hazard_sum**2 * w2_later


def _apply_timefix(tables: list[RiskTable], others: list[list[RiskTable]]) -> tuple[list, list]:
    """Merge near-tied times (survfit's timefix) decided on the pooled distinct times of all groups."""
    if len(tables) == 1:
        # one group: its times are the grid, and every table of it has the same times
        return [merge_near_tied_times(tables[0])], [[merge_near_tied_times(t) for t in group] for group in others]
    grid, _ = distinct_sorted(np.sort(np.concatenate([t.time for t in tables])))
    representative = near_tie_representatives(grid)
    if representative is None:
        return tables, others

    def fix(table: RiskTable) -> RiskTable:
        return merge_near_ties(table, representative[np.searchsorted(grid, table.time)])

    return [fix(t) for t in tables], [[fix(t) for t in group] for group in others]


def confidence_band(
    survival: np.ndarray,
    se_log: np.ndarray,
    conf_level: float,
    conf_type: ConfType,
    std_err: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise limits of S as survfit computes them.

    ``log``: exp(log S -+ z se), upper clipped at 1, undefined at S = 0.
    ``log-log``: exp(-exp(log(-log S) +- z se / log S)), undefined at S = 0 and 1.
    ``plain``: S -+ z S se clipped to [0, 1].
    Undefined limits are NaN (R prints NA). ``std_err`` (the SE of S) is used
    by "plain" when given: with the robust variance it is 0, not NaN, where S = 0.
    """
    z = stats.norm.ppf(1.0 - (1.0 - conf_level) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log":
            # in place: the same operations as exp(log S -+ z se) without their temporaries
            log_s = np.log(survival)
            half_width = np.multiply(z, se_log)
            lower = np.subtract(log_s, half_width)
            np.exp(lower, out=lower)
            upper = np.add(log_s, half_width, out=log_s)
            np.exp(upper, out=upper)
            np.minimum(upper, 1.0, out=upper)
            undefined = survival <= 0
        elif conf_type == "log-log":
            log_s = np.log(survival)
            log_log = np.log(-log_s)
            width = z * se_log / log_s
            lower = np.exp(-np.exp(log_log - width))
            upper = np.exp(-np.exp(log_log + width))
            undefined = (survival <= 0) | (survival >= 1)
        else:
            se = survival * se_log if std_err is None else std_err
            lower = np.maximum(survival - z * se, 0.0)
            upper = np.minimum(survival + z * se, 1.0)
            undefined = np.isnan(se)
    if undefined.any():
        lower = np.where(undefined, np.nan, lower)
        upper = np.where(undefined, np.nan, upper)
    return lower, upper


def survival_quantile(time: np.ndarray, curve: np.ndarray, p: float = 0.5) -> float:
    """First time a step curve reaches ``p``, with survfit's midpoint rule.

    The curve (values at ``time``, non-increasing, NaN where undefined) reaches
    ``p`` at the first time it is <= p. When it equals p (within 1.5e-8) there,
    the answer is the midpoint between that time and the next time the curve
    drops, as for an ordinary sample median of an even number; when it never
    drops again, that time itself. NaN when the curve never reaches ``p``.
    """
    # argmax of a bool mask: the first True without an index array of all of them
    reached = curve <= p + _QUANTILE_TOLERANCE
    first = int(reached.argmax()) if reached.shape[0] else 0
    if reached.shape[0] == 0 or not reached[first]:
        return float("nan")
    if abs(curve[first] - p) >= _QUANTILE_TOLERANCE:
        return float(time[first])
    drops = curve[first + 1 :] < curve[first] - _QUANTILE_TOLERANCE
    drop = int(drops.argmax()) if drops.shape[0] else 0
    if drops.shape[0] == 0 or not drops[drop]:
        return float(time[first])
    return float((time[first] + time[first + 1 + drop]) / 2.0)


# --------------------------------------------------------------------------- Kaplan-Meier


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier curves, one per group.

    Attributes
    ----------
    table : DataFrame
        ``summary(survfit(...), censored=TRUE)``: columns ``group`` (when
        grouped), ``time``, ``n_risk``, ``n_event``, ``n_censor``, ``survival``,
        ``std_err`` (standard error of S, as summary.survfit reports it:
        S times the standard error of log S), ``lower``, ``upper``; one row per
        distinct time per group. Counts are sums of case weights when weighted.
    median : DataFrame
        ``print(survfit(...))``: columns ``group`` (when grouped), ``n`` (survfit's
        ``n.max``: the number at risk at the start, weighted when weighted),
        ``events`` (weighted), ``median``, ``lower``, ``upper`` (the median's
        confidence limits, NaN where R prints NA).
    conf_level, conf_type, variance : the options used; ``variance`` is
        "greenwood" or "robust" (infinitesimal jackknife) after resolving "auto".
    group : name of the grouping column or None.
    """

    table: pd.DataFrame
    median: pd.DataFrame
    conf_level: float
    conf_type: str
    variance: str
    group: str | None
    _rows_at_risk: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False)  # per group: times, rows at risk
    _levels: tuple = field(repr=False)
    call: str = field(default="", compare=False)  # the fit in words, for the printed result

    def __repr__(self) -> str:
        # print(survfit): n, events, median and its interval per group
        from .._printing import render_km

        return render_km(self)

    def _repr_html_(self) -> str:
        from .._printing import render_km_html

        return render_km_html(self)

    def plot(
        self,
        ax: Any = None,
        at_risk_times: Sequence[float] | None = None,
        labels: Mapping[Any, str] | Sequence[str] | None = None,
        logrank_p: float | None = None,
        xlabel: str = "Time",
    ) -> Any:
        """Kaplan-Meier curves with bands, censor ticks and numbers at risk (the report's figure).

        Parameters
        ----------
        ax : matplotlib Axes to draw on, or None for a new Figure.
        at_risk_times : times of the x ticks and the at-risk table; default six even steps to the last time.
        labels : group names by group value or in group order; default the group values.
        logrank_p : p-value printed on the plot (e.g. ``logrank(...).p_value``), or None.
        xlabel : x-axis label.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .._printing import default_times
        from ..report.figures import kaplan_meier_plot

        times = default_times(self.table["time"]) if at_risk_times is None else at_risk_times
        if labels is None:
            labels = [str(v) for v in self._levels] if self.group is not None else None
        return kaplan_meier_plot(self, times, labels, logrank_p, ax=ax, xlabel=xlabel)

    def survival_at(self, times) -> pd.DataFrame:
        """Survival at given times, as ``summary(fit, times=times, extend=TRUE)``.

        Columns ``group`` (when grouped), ``time``, ``n_risk`` (number with
        time >= t), ``n_event`` (events in (previous requested time, t]),
        ``survival``, ``std_err``, ``lower``, ``upper``. Before the first
        observed time S = 1 with limits 1, as survfit's added time-0 row.
        """
        at = np.sort(np.asarray(times, dtype=float).reshape(-1))
        if np.isnan(at).any():
            raise InputError(
                f"survival_at: {int(np.isnan(at).sum())} of the {at.size} requested times are NaN; "
                "pass numbers (days from the index time)"
            )
        pieces = []
        for level in self._levels:
            rows = self.table if self.group is None else self.table[self.table["group"] == level]
            step_time = rows["time"].to_numpy()
            index = np.searchsorted(step_time, at, side="right") - 1
            before = index < 0
            safe = np.maximum(index, 0)

            def pick(column: str, initial: float, _rows=rows, _safe=safe, _before=before) -> np.ndarray:
                return np.where(_before, initial, _rows[column].to_numpy()[_safe])

            cum_events = np.concatenate([[0.0], np.cumsum(rows["n_event"].to_numpy())])
            events_by = cum_events[index + 1]
            n_event = np.diff(np.concatenate([[0.0], events_by]))
            # n_risk at t: the risk set of the first observed time >= t (0 beyond the end).
            n_risk_rows = rows["n_risk"].to_numpy()
            nxt = np.searchsorted(step_time, at, side="left")
            n_risk = np.where(nxt < len(step_time), n_risk_rows[np.minimum(nxt, len(step_time) - 1)], 0.0)
            part = pd.DataFrame(
                {
                    "time": at,
                    "n_risk": n_risk,
                    "n_event": n_event,
                    "survival": pick("survival", 1.0),
                    "std_err": pick("std_err", 0.0),
                    "lower": pick("lower", 1.0),
                    "upper": pick("upper", 1.0),
                }
            )
            if self.group is not None:
                part.insert(0, "group", level)
            pieces.append(part)
        return pd.concat(pieces, ignore_index=True)

    def at_risk(self, times) -> pd.DataFrame:
        """Numbers at risk (rows with time >= t, unweighted) at ``times``: one row per group.

        The table printed under a Kaplan-Meier figure; columns are the times.
        """
        at = np.asarray(times, dtype=float).reshape(-1)
        counts = {}
        for level, (step_time, rows) in zip(self._levels, self._rows_at_risk, strict=True):
            # rows with time >= t are the risk set of the first observed time >= t
            first = np.searchsorted(step_time, at, side="left")
            counts[level] = np.where(first < len(step_time), rows[np.minimum(first, len(step_time) - 1)], 0).astype(int)
        labels = [int(x) if float(x).is_integer() else float(x) for x in at]  # day 15, not 15.0
        frame = pd.DataFrame.from_dict(counts, orient="index", columns=labels)
        frame.index.name = "group"
        return frame


def kaplan_meier(
    data: pd.DataFrame,
    time: str,
    event: str,
    group: str | None = None,
    weights: str | None = None,
    conf_level: float = 0.95,
    conf_type: ConfType = "log",
    variance: VarianceType = "auto",
    timefix: bool = True,
) -> KaplanMeierResult:
    """Kaplan-Meier estimate per group, equal to R's ``survfit``.

    Parameters
    ----------
    data : DataFrame, one row per patient.
    time : column of follow-up times (days from index, >= 0).
    event : column, 1 = event, 0 = censored.
    group : optional grouping column (R's ``~ group``); levels in factor order.
    weights : optional column of case weights (>= 0), as ``survfit(weights=)``.
    conf_level : coverage of the pointwise intervals (``conf.int``).
    conf_type : "log" (survfit's default), "log-log" or "plain".
    variance : "auto" (survfit's choice: Greenwood, or the robust
        infinitesimal-jackknife variance when any case weight is not an
        integer), "greenwood" or "robust".
    timefix : treat times equal up to floating-point rounding as tied, as
        survfit does by default (``timefix=TRUE``, survival's ``aeqSurv`` rule).

    Returns
    -------
    KaplanMeierResult
        ``.table`` equals ``summary(survfit(...), censored=TRUE)``;
        ``.median`` equals ``print(survfit(...))``.
    """
    _check_choice("conf_type", conf_type, get_args(ConfType))
    _check_choice("variance", variance, get_args(VarianceType))
    level = _check_conf_level(conf_level)
    where = "kaplan_meier data"
    times = check_time(data, time, where)
    events = check_event(data, event, where)
    case_weights = check_weights(data, weights, where)
    codes, levels = check_group(data, group, where)
    require_events(events.sum(), len(events), event, where)
    if variance == "auto":
        integer_weights = case_weights is None or bool(np.all(case_weights == np.round(case_weights)))
        variance = "greenwood" if integer_weights else "robust"

    members = [np.arange(len(times))] if group is None else group_order(codes, len(levels))
    robust = variance == "robust"
    # one group: its own times are the whole grid, so near ties are merged while tabulating
    own_timefix = timefix and len(members) == 1
    risk_tables, squared_tables = [], []
    for rows in members:
        t = times if group is None else times[rows]
        e = events if group is None else events[rows]
        w = None if case_weights is None else case_weights[rows]
        risk_tables.append(risk_table(t, [e], w, timefix=own_timefix))
        if robust:
            w = np.ones_like(t) if w is None else w
            squared_tables.append(risk_table(t, [e], w * w, timefix=own_timefix))
    if timefix and not own_timefix:
        risk_tables, (squared_tables,) = _apply_timefix(risk_tables, [squared_tables])
    tables, medians, rows_at_risk = [], [], []
    for index, label in enumerate(levels):
        curve = km_curve(risk_tables[index], squared_tables[index] if robust else None)
        with np.errstate(invalid="ignore"):
            std_err = curve.survival * curve.se_log
        if variance == "robust":
            # survfit differentiates S itself, whose influence is 0 once S = 0.
            std_err = np.where(curve.survival == 0, 0.0, std_err)
        lower, upper = confidence_band(curve.survival, curve.se_log, level, conf_type, std_err)
        # copy=False: no consolidation copy of up to n rows x 8 columns
        part = pd.DataFrame(
            {
                "time": curve.time,
                "n_risk": curve.n_risk,
                "n_event": curve.n_event,
                "n_censor": curve.n_censor,
                "survival": curve.survival,
                "std_err": std_err,
                "lower": lower,
                "upper": upper,
            },
            copy=False,
        )
        medians.append(
            {
                "n": float(curve.n_risk[0]),
                "events": float(curve.n_event.sum()),
                "median": survival_quantile(curve.time, curve.survival),
                "lower": survival_quantile(curve.time, lower),
                "upper": survival_quantile(curve.time, upper),
            }
        )
        if group is not None:
            part.insert(0, "group", label)
            medians[-1] = {"group": label, **medians[-1]}
        tables.append(part)
        rows_at_risk.append((curve.time, curve.rows_at_risk))
    return KaplanMeierResult(
        table=tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True),
        median=pd.DataFrame(medians),
        conf_level=level,
        conf_type=conf_type,
        variance=variance,
        group=group,
        _rows_at_risk=tuple(rows_at_risk),
        _levels=tuple(levels),
        call=f"kaplan_meier(Surv({time}, {event}) ~ {group if group is not None else 1}"
        + (f", weights = {weights}" if weights else "")
        + ")",
    )


# --------------------------------------------------------------------------- log-rank


@dataclass(frozen=True)
class LogRankResult:
    """Log-rank (or G-rho) test, equal to R's ``survdiff`` (``rho`` 0 by default).

    Attributes
    ----------
    statistic : chi-square statistic ``(O-E)' V^- (O-E)``.
    df : degrees of freedom (groups with positive expected count, minus 1).
    p_value : upper tail of chi-square(df).
    table : DataFrame with columns ``group``, ``n``, ``observed``, ``expected``,
        ``oe2_e`` ((O-E)^2/E) and ``oe2_v`` ((O-E)^2/V), as survdiff prints.
    variance : (k, k) variance matrix of O - E (survdiff's ``$var``).
    notes : remarks on the data, e.g. a stratum without events (survdiff
        says nothing: such a stratum adds zero to O, E and V, visible only
        as a zero column of its per-stratum ``$obs`` / ``$exp``).
    """

    statistic: float
    df: int
    p_value: float
    table: pd.DataFrame
    variance: np.ndarray
    notes: tuple[str, ...] = ()
    group: str | None = None  # name of the group column, for the printed row labels
    call: str = field(default="", compare=False)

    def __repr__(self) -> str:
        # print(survdiff)
        from .._printing import render_logrank

        return render_logrank(self)

    def _repr_html_(self) -> str:
        from .._printing import render_logrank_html

        return render_logrank_html(self)


def logrank_kernel(
    time: np.ndarray, event: np.ndarray, codes: np.ndarray, n_groups: int, timefix: bool = True, rho: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed (k,), expected (k,) and variance (k, k) of one stratum.

    At each distinct event time with d events among n at risk, group g expects
    ``n_g d / n``; the hypergeometric covariance is
    ``d (n - d) / (n - 1) * n_g / n * (1{g = h} - n_h / n)``. With ``rho``
    (the G-rho family of Harrington and Fleming, survdiff's ``rho``) each
    time's observed and expected counts are weighted by ``S(t-)^rho`` and its
    covariance by the square, S the Kaplan-Meier curve of the stratum's pooled data.
    """
    grouped = grouped_risk_table(time, [event], codes, n_groups, timefix=timefix)
    d_group = grouped.counts[:, :, 0]
    d_all = d_group.sum(axis=0)
    has_event = d_all > 0
    d = d_all[has_event]
    n_group = grouped.n_risk[:, has_event].T  # (event times, K)
    n = n_group.sum(axis=1)
    share = n_group / n[:, None]
    if rho == 0:
        observed = d_group.sum(axis=1)
        expected = (share * d[:, None]).sum(axis=0)
    else:
        # left-continuous pooled Kaplan-Meier: the weight of a time is S just before it
        surv_before = np.concatenate(([1.0], np.cumprod(1.0 - d / n)[:-1])) ** rho
        observed = (d_group[:, has_event] * surv_before).sum(axis=1)
        d = d * surv_before
        expected = (share * d[:, None]).sum(axis=0)
        d_unweighted = d_all[has_event]
    with np.errstate(divide="ignore", invalid="ignore"):
        if rho == 0:
            spread = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
        else:
            spread = np.where(n > 1, surv_before**2 * d_unweighted * (n - d_unweighted) / (n - 1), 0.0)
    variance = np.diag((spread[:, None] * share).sum(axis=0)) - (share * spread[:, None]).T @ share
    return observed, expected, variance


def logrank(
    data: pd.DataFrame,
    time: str,
    event: str,
    group: str,
    strata: str | None = None,
    timefix: bool = True,
    rho: float = 0.0,
) -> LogRankResult:
    """Log-rank test of equal survival across groups, equal to ``survdiff``.

    ``rho`` selects survdiff's G-rho family (Harrington and Fleming 1982):
    each event time is weighted by ``S(t-)^rho``, S the pooled Kaplan-Meier
    curve (within the stratum); 0 (default) is the log-rank test, 1 the
    Peto-Peto modification of the Gehan-Wilcoxon test. ``observed`` and
    ``expected`` in the table are then the weighted sums, as survdiff reports them.

    With ``strata``, observed - expected and its variance are summed over
    strata (``survdiff(Surv(time, event) ~ group + strata(s))``).
    ``timefix`` merges times equal up to rounding, as survdiff does by default
    (decided within each stratum here; survdiff decides on all times at once,
    which differs only if a near tie straddles strata).
    """
    where = "logrank data"
    if isinstance(rho, bool) or not isinstance(rho, (int, float, np.integer, np.floating)) or not np.isfinite(rho):
        raise InputError(f"logrank: rho must be a finite number (survdiff's rho, 0 = log-rank), got {rho!r}")
    times = check_time(data, time, where)
    events = check_event(data, event, where)
    codes, levels = check_group(data, group, where)
    strata_codes, strata_levels = check_group(data, strata, where, role="strata")
    require_events(events.sum(), len(events), event, where)
    k = len(levels)
    if k < 2:
        raise InputError(
            f"{where}: group column {group!r} has a single group {levels} in all {len(codes)} rows; "
            "the log-rank test needs at least two groups to compare"
        )
    notes: list[str] = []
    if strata is not None:
        stratum_rows = np.bincount(strata_codes, minlength=len(strata_levels))
        stratum_events = np.bincount(strata_codes, weights=events.astype(float), minlength=len(strata_levels))
        empty = [
            (label, int(rows))
            for label, rows, d in zip(strata_levels, stratum_rows, stratum_events, strict=True)
            if d == 0
        ]
        if len(empty) == 1:
            label, n_rows = empty[0]
            notes.append(
                f"stratum {{{strata!r}: {label!r}}} ({n_rows} of {len(codes)} rows) has no events; "
                "it contributes nothing to the test"
            )
        elif empty:
            notes.append(
                f"{len(empty)} of {len(strata_levels)} strata of {strata!r} have no events "
                f"({sum(r for _, r in empty)} of {len(codes)} rows; e.g. {[lab for lab, _ in empty[:5]]}); "
                "they contribute nothing to the test"
            )
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    for rows in group_order(strata_codes, len(strata_levels)):
        o, e, v = logrank_kernel(times[rows], events[rows], codes[rows], k, timefix, rho)
        observed += o
        expected += e
        variance += v
    # survdiff drops groups with no expected events, then one more group for the
    # singular variance (the statistic is invariant to which one).
    kept = np.flatnonzero(expected > 0)
    df = len(kept) - 1
    if df < 1:
        statistic = 0.0
    else:
        diff = (observed - expected)[kept][1:]
        v = variance[np.ix_(kept, kept)][1:, 1:]
        if np.linalg.matrix_rank(v) < v.shape[0]:
            raise InputError(
                f"{where}: the variance of observed - expected is singular for groups {levels} of column "
                f"{group!r} (e.g. every event time has everyone at risk failing); survdiff stops here too. "
                "Merge sparse groups or check the event times"
            )
        statistic = float(diff @ np.linalg.solve(v, diff))
    p_value = float(stats.chi2.sf(statistic, df)) if df >= 1 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                "group": levels,
                "n": np.bincount(codes, minlength=k),
                "observed": observed,
                "expected": expected,
                "oe2_e": (observed - expected) ** 2 / expected,
                "oe2_v": (observed - expected) ** 2 / np.diag(variance),
            }
        )
    return LogRankResult(
        statistic=statistic,
        df=int(df),
        p_value=p_value,
        table=table,
        variance=variance,
        notes=tuple(notes),
        group=group,
        call=f"logrank(Surv({time}, {event}) ~ {group}"
        + (f" + strata({strata})" if strata else "")
        + (f", rho = {rho:g}" if rho != 0 else "")
        + ")",
    )
