"""Survival curves with every option of R's ``survfit.formula`` that survival's tests exercise.

:func:`survival_curve` is ``survfit(Surv(entry, time, event) ~ group,
weights=, ctype=, stype=, conf.type=)``: delayed entry (left truncation, the
``(start, stop]`` risk sets of counting-process data), the Nelson-Aalen or
Fleming-Harrington cumulative hazard with its standard error, the survival
either as Kaplan-Meier (product limit) or as ``exp(-cumulative hazard)``,
and the five confidence transforms. :func:`kaplan_meier` stays the fast path
the study pipeline uses for right-censored data.

At each distinct stop time t the number at risk is the (case-weighted)
number of rows with ``entry < t <= time``; events and censorings at t are in
t's risk set. The Fleming-Harrington hazard spreads ``m`` tied events (total
weight d) over m steps: ``sum_k (d/m) / (n - k d/m)``, k = 0..m-1, and its
variance ``sum_k (d/m) / (n - k d/m)^2``, which is what survfit computes (the
tied events treated as if they happened one after another, each carrying
1/m of the tied weight at every step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd
from scipy import stats

from .._design import numeric_column
from ..errors import InputError
from ._checks import check_event, check_group, check_time, check_weights, require_events
from .cox import _timefix

CurveConfType = Literal["log", "log-log", "plain", "logit", "arcsin", "none"]
HazardType = Literal["nelson-aalen", "fleming-harrington"]
SurvivalType = Literal["km", "exp"]
ConfLower = Literal["usual", "modified"]

__all__ = ["SurvivalCurveResult", "survival_curve"]


@dataclass(frozen=True)
class SurvivalCurveResult:
    """Result of :func:`survival_curve`.

    Attributes
    ----------
    table : DataFrame, one row per distinct stop time per group: ``group``
        (when grouped), ``time``, ``n_risk``, ``n_event``, ``n_censor`` (case
        weighted), ``survival``, ``std_err`` (survfit's ``$std.err``: the
        standard error of log S for "km" (Greenwood), of the cumulative hazard
        for "exp"), ``cumhaz``, ``std_chaz`` (survfit's ``$cumhaz``,
        ``$std.chaz``), ``lower``, ``upper``.
    conf_level, conf_type, ctype, stype : the options used.
    """

    table: pd.DataFrame
    conf_level: float
    conf_type: str
    ctype: str
    stype: str
    call: str = field(default="", compare=False)

    def __repr__(self) -> str:
        # pandas' own repr: truncated for long tables (to_string would print every row)
        return f"{self.call}\n{self.table!r}"


def _bands(surv: np.ndarray, se_log: np.ndarray, conf_level: float, conf_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise limits of S from the standard error of log S, as survfit's confidence transforms.

    log: exp(log S -+ z se), upper at most 1; log-log: on log(-log S); plain:
    S -+ z S se within [0, 1]; logit: on log(S / (1 - S)), whose standard
    error is se / (1 - S); arcsin: on asin(sqrt S), standard error
    se sqrt(S / (1 - S)) / 2, kept within [0, pi/2]. Undefined limits (S = 0,
    and S = 1 for the transforms that divide by 1 - S or log S) are NaN.
    """
    n = len(surv)
    if conf_type == "none":
        return np.full(n, np.nan), np.full(n, np.nan)
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log":
            lower = np.exp(np.log(surv) - z * se_log)
            upper = np.minimum(np.exp(np.log(surv) + z * se_log), 1.0)
            bad = surv <= 0
        elif conf_type == "log-log":
            width = z * se_log / np.log(surv)
            lower = np.exp(-np.exp(np.log(-np.log(surv)) - width))
            upper = np.exp(-np.exp(np.log(-np.log(surv)) + width))
            bad = (surv <= 0) | (surv >= 1)
        elif conf_type == "plain":
            lower = np.maximum(surv - z * se_log * surv, 0.0)
            upper = np.minimum(surv + z * se_log * surv, 1.0)
            bad = np.isnan(se_log)
        elif conf_type == "logit":
            logit = np.log(surv / (1 - surv))
            width = z * se_log / (1 - surv)
            lower = 1 / (1 + np.exp(-(logit - width)))
            upper = 1 / (1 + np.exp(-(logit + width)))
            bad = (surv <= 0) | (surv >= 1)
        else:  # arcsin
            angle = np.arcsin(np.sqrt(surv))
            width = z * se_log * np.sqrt(surv / (1 - surv)) / 2
            lower = np.sin(np.maximum(0.0, angle - width)) ** 2
            upper = np.sin(np.minimum(np.pi / 2, angle + width)) ** 2
            bad = (surv <= 0) | (surv >= 1)
    return np.where(bad, np.nan, lower), np.where(bad, np.nan, upper)


def _one_curve(
    start: np.ndarray | None, stop: np.ndarray, event: np.ndarray, w: np.ndarray, ctype: str
) -> dict[str, np.ndarray]:
    """Risk sets, events, survival and cumulative hazard of one group at its distinct stop times."""
    order = np.argsort(stop, kind="stable")
    s_stop, s_event, s_w = stop[order], event[order], w[order]
    times, first = np.unique(s_stop, return_index=True)
    total = s_w.sum()
    cum_w = np.concatenate(([0.0], np.cumsum(s_w)))
    n_risk = total - cum_w[first]  # weight with time >= t
    if start is not None:
        s_start = np.sort(start)
        cum_start = np.concatenate(([0.0], np.cumsum(w[np.argsort(start, kind="stable")])))
        # rows with entry >= t are not yet at risk at t
        n_risk = n_risk - (total - cum_start[np.searchsorted(s_start, times, side="left")])
    ev_w = np.where(s_event, s_w, 0.0)
    n_event = np.add.reduceat(ev_w, first) if len(first) else np.zeros(0)
    n_all = np.add.reduceat(s_w, first) if len(first) else np.zeros(0)
    n_ev_rows = np.add.reduceat(s_event.astype(np.int64), first) if len(first) else np.zeros(0, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if ctype == "nelson-aalen":
            hazard = np.where(n_event > 0, n_event / n_risk, 0.0)
            var_h = np.where(n_event > 0, n_event / n_risk**2, 0.0)
        else:
            hazard = np.zeros(len(times))
            var_h = np.zeros(len(times))
            for i in np.flatnonzero(n_event > 0):
                m = int(n_ev_rows[i])
                step = n_event[i] / m
                at_risk = n_risk[i] - step * np.arange(m)
                hazard[i] = np.sum(step / at_risk)
                var_h[i] = np.sum(step / at_risk**2)
        km = np.cumprod(1.0 - np.where(n_event > 0, n_event / n_risk, 0.0))
        greenwood = np.cumsum(np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0))
    return {
        "time": times,
        "n_risk": n_risk,
        "n_event": n_event,
        "n_censor": n_all - n_event,
        "km": km,
        "greenwood": greenwood,
        "cumhaz": np.cumsum(hazard),
        "var_chaz": np.cumsum(var_h),
    }


def _condition_on(c: dict[str, np.ndarray], start_time: float) -> dict[str, np.ndarray]:
    """Keep times >= start_time and restart the products and sums there (survfit's ``start.time``)."""
    keep = c["time"] >= start_time
    before = np.flatnonzero(~keep)
    out = {k: v[keep] for k, v in c.items()}
    if len(before):
        last = before[-1]
        # the product limit and Greenwood sum restart at start_time (not S(t) / S(start-), which is 0 / 0
        # when the whole group died before start_time; survfit's curve is then still defined)
        d, n = out["n_event"], out["n_risk"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["km"] = np.cumprod(1.0 - np.where(d > 0, d / n, 0.0))
            out["greenwood"] = np.cumsum(np.where(d > 0, d / (n * (n - d)), 0.0))
        for key in ("cumhaz", "var_chaz"):
            out[key] = out[key] - c[key][last]
    return out


def _effective_n_factor(n_risk: np.ndarray, n_event: np.ndarray) -> np.ndarray:
    """m / n per time: n at risk now, m at risk at the last event time at or before it (1 before any event)."""
    has_event = n_event > 0
    last = np.maximum.accumulate(np.where(has_event, np.arange(len(n_risk)), -1))
    m = np.where(last >= 0, n_risk[np.maximum(last, 0)], n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_risk > 0, m / n_risk, 1.0)


def survival_curve(
    data: pd.DataFrame,
    time: str,
    event: str,
    group: str | None = None,
    *,
    entry: str | None = None,
    weights: str | None = None,
    ctype: HazardType = "nelson-aalen",
    stype: SurvivalType = "km",
    conf_level: float = 0.95,
    conf_type: CurveConfType = "log",
    timefix: bool = True,
    start_time: float | None = None,
    conf_lower: ConfLower = "usual",
) -> SurvivalCurveResult:
    """Survival and cumulative hazard curves, as ``survfit(Surv([entry,] time, event) ~ group, ...)``.

    Parameters
    ----------
    data : DataFrame, one row per subject or per (entry, time] interval.
    time : column of follow-up (stop) times, >= 0.
    event : column, 1 = event, 0 = censored.
    group : optional grouping column; levels in factor order.
    entry : column of entry times (left truncation / counting-process rows,
        ``Surv(entry, time, event)``); each must be < its time.
    weights : column of case weights (>= 0); integer-valued only (survfit
        switches to the infinitesimal-jackknife variance for other weights,
        which :func:`kaplan_meier` has for right-censored data).
    ctype : cumulative hazard, "nelson-aalen" (survfit ``ctype = 1``) or
        "fleming-harrington" (``ctype = 2``, the tie-corrected one).
    stype : survival, "km" (product limit, ``stype = 1``) or "exp"
        (``exp(-cumhaz)``, ``stype = 2``).
    conf_level, conf_type : survfit's ``conf.int`` and ``conf.type`` ("log",
        "log-log", "plain", "logit", "arcsin" or "none").
    timefix : merge times equal up to rounding (survfit's ``timefix``; entry
        and stop times judged together, as ``aeqSurv``).
    start_time : survfit's ``start.time``: the curves conditional on being
        event-free just before ``start_time`` (times >= start_time are kept,
        an event at start_time counts); survival, cumulative hazard and
        their variances restart there.
    conf_lower : survfit's ``conf.lower``: "usual", or "modified" (Dory &
        Korn's "effective n"): the lower limit uses the variance times m / n,
        n the number at risk and m the number at risk at the last event time
        at or before t (so it equals the usual limit at each event time and
        widens at censorings); the upper limit is unchanged.

    Returns
    -------
    SurvivalCurveResult
        ``.table`` holds survfit's ``time, n.risk, n.event, n.censor, surv,
        std.err, cumhaz, std.chaz, lower, upper`` per group.

    Raises
    ------
    InputError for bad times, events, entries (entry >= time), weights,
    options, or no events.
    """
    where = "survival_curve data"
    for name, value, allowed in (
        ("ctype", ctype, get_args(HazardType)),
        ("stype", stype, get_args(SurvivalType)),
        ("conf_type", conf_type, get_args(CurveConfType)),
        ("conf_lower", conf_lower, get_args(ConfLower)),
    ):
        if value not in allowed:
            raise InputError(f"survival_curve: {name}={value!r} is not supported; use one of {list(allowed)}")
    if not 0 < conf_level < 1:
        raise InputError(f"survival_curve: conf_level must be in (0, 1), got {conf_level!r}")
    if start_time is not None and (
        isinstance(start_time, bool) or not isinstance(start_time, (int, float)) or not np.isfinite(start_time)
    ):
        raise InputError(
            f"survival_curve: start_time must be a finite number (survfit's start.time), got {start_time!r}"
        )
    stop = check_time(data, time, where)
    status = check_event(data, event, where).astype(bool)
    w = check_weights(data, weights, where)
    if w is not None and np.any(w != np.round(w)):
        bad = int(np.sum(w != np.round(w)))
        raise InputError(
            f"{where}: weights column {weights!r} has {bad} non-integer value(s) of {len(w)}; survfit then uses "
            "the robust (infinitesimal jackknife) variance, which survival_curve does not compute: use "
            "kaplan_meier (right-censored data) or integer weights"
        )
    w = np.ones(len(stop)) if w is None else w
    start = None
    if entry is not None:
        start = numeric_column(data, entry, where)
        if timefix:
            stop, start = _timefix(stop, start)
        bad_rows = int(np.sum(start >= stop))
        if bad_rows:
            raise InputError(
                f"{where}: {bad_rows} of {len(stop)} rows have entry column {entry!r} >= time column {time!r}"
                f"{' (up to rounding)' if timefix else ''}; each (entry, time] interval must have positive "
                "length: fix or drop those rows"
            )
    elif timefix:
        stop, _ = _timefix(stop, None)
    require_events(float(status.sum()), len(stop), event, where)
    codes, levels = check_group(data, group, where)
    pieces = []
    for g, label in enumerate(levels):
        rows = codes == g
        c = _one_curve(None if start is None else start[rows], stop[rows], status[rows], w[rows], ctype)
        if start_time is not None:
            c = _condition_on(c, float(start_time))
            if len(c["time"]) == 0:
                raise InputError(
                    f"{where}: no follow-up at or after start_time={start_time:g}"
                    + (f" in group {label!r} of {group!r}" if group is not None else "")
                    + "; lower start_time"
                )
        if stype == "km":
            surv = c["km"]
            with np.errstate(invalid="ignore"):
                se_log = np.sqrt(c["greenwood"])
        else:
            surv = np.exp(-c["cumhaz"])
            se_log = np.sqrt(c["var_chaz"])
        lower, upper = _bands(surv, se_log, conf_level, conf_type)
        if conf_lower == "modified":
            # Dory & Korn: the lower limit alone, from the variance times m / n
            wider = se_log * np.sqrt(_effective_n_factor(c["n_risk"], c["n_event"]))
            lower = _bands(surv, wider, conf_level, conf_type)[0]
        part = pd.DataFrame(
            {
                "time": c["time"],
                "n_risk": c["n_risk"],
                "n_event": c["n_event"],
                "n_censor": c["n_censor"],
                "survival": surv,
                "std_err": se_log,
                "cumhaz": c["cumhaz"],
                "std_chaz": np.sqrt(c["var_chaz"]),
                "lower": lower,
                "upper": upper,
            }
        )
        if group is not None:
            part.insert(0, "group", label)
        pieces.append(part)
    surv_call = f"Surv({entry}, {time}, {event})" if entry else f"Surv({time}, {event})"
    options = [f'ctype = "{ctype}"', f'stype = "{stype}"', f'conf_type = "{conf_type}"']
    if weights:
        options.insert(0, f"weights = {weights}")
    if start_time is not None:
        options.append(f"start_time = {start_time:g}")
    return SurvivalCurveResult(
        table=pd.concat(pieces, ignore_index=True),
        conf_level=float(conf_level),
        conf_type=conf_type,
        ctype=ctype,
        stype=stype,
        call=f"survival_curve({surv_call} ~ {group if group is not None else 1}, {', '.join(options)})",
    )
