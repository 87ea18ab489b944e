"""Target trial emulation of a grace-window exposure: clone, censor, weight (docs/target-trial.md).

Two strategies are compared from time zero = the index:

* ``start``: start the exposure within the grace window ``(0, grace_days]``;
* ``no_start``: do not start it within the grace window.

Every patient is cloned into both strategies. The ``start`` clone is censored at the end of the
grace window if it has not started by then; the ``no_start`` clone is censored when the exposure
starts (within the window). Until a clone deviates, its events count, so an event inside the grace
window before any start counts for *both* clones: at that moment the patient's history is compatible
with both strategies (Hernan et al. 2016; Maringe et al. 2020). The artificial censoring depends on
prognosis, so the clones still under follow-up are reweighted by the inverse probability of not having
been censored (IPCW), from a model of the time to exposure start.

The numerics are pure: a frame in, a frozen result out. R equivalence (glm on survSplit-style
intervals, coxph on the clones' (start, stop] rows with weights and a cluster, survfit with weights)
is tested in tests/designs/ against tests/reference/r/tte.R.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from ..errors import ConvergenceError, InputError
from ..matching.propensity import fit_binomial_glm
from ..survival.cox import CoxResult, baseline_hazard, cox

CensoringModel = Literal["pooled_logistic", "cox"]
STRATEGIES = ("start", "no_start")
#: Default floor of the effective sample size per strategy below which the weights are refused.
MIN_ESS = 20.0
_WHERE = "clone_censor_weight frame"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CloneCensorWeightResult:
    """The emulated trial of ``start`` vs ``no_start`` within the grace window.

    Attributes
    ----------
    estimates : Series with ``risk_start``, ``risk_no_start`` (risk of the outcome by ``horizon_days``:
        1 - weighted Kaplan-Meier, or the weighted Aalen-Johansen incidence with a competing event),
        ``risk_difference`` (start - no_start), ``risk_ratio`` (start / no_start), ``hazard_ratio``
        (weighted Cox, start vs no_start) and ``log_hazard_ratio``.
    curves : DataFrame, per strategy and distinct event time: ``strategy``, ``time``, ``n_risk``
        (weighted), ``n_event`` (weighted), ``risk``. Equals ``1 - survfit(Surv(tstart, tstop, event) ~
        strategy, weights = w)$surv`` (or its ``pstate`` of the cause with a competing event).
    counts : DataFrame indexed by strategy: ``clones``, ``rows`` ((start, stop] rows), ``events``
        (unweighted events of the outcome counted), ``artificially_censored`` (clones censored for
        deviating from their strategy), ``events_in_grace`` (events inside the grace window).
    weights : DataFrame indexed by strategy: ``min``, ``p01``, ``p25``, ``median``, ``p75``, ``p99``,
        ``max``, ``mean`` of the row weights after truncation, ``ess`` (Kish's effective sample size
        ``(sum w)^2 / sum w^2`` of the clones' final weights), ``truncated_rows``, ``lower``, ``upper``
        (the truncation bounds applied).
    censoring_coef : Series, the censoring model's coefficients (R's names: ``(Intercept)``,
        covariates, then the time-varying ones, ``time1``..``time3`` for the pooled logistic; covariates, then
        the time-varying ones, for the Cox model).
    cox : CoxResult of ``coxph(Surv(tstart, tstop, event) ~ start_strategy, weights = w, cluster = id)``.
    rows : DataFrame, the clones' (start, stop] rows: ``id`` (row position of the patient in the
        frame), ``strategy`` (1 = start), ``tstart``, ``tstop``, ``event`` (0/1, or the status code
        with a competing event) and ``w``. Row-level: never write it to an output.
    options : dict of the options used; ``notes`` : tuple of str.
    """

    estimates: pd.Series
    curves: pd.DataFrame
    counts: pd.DataFrame
    weights: pd.DataFrame
    censoring_coef: pd.Series
    cox: CoxResult = field(repr=False)
    rows: pd.DataFrame = field(repr=False)
    options: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap over patients of :func:`clone_censor_weight`.

    Attributes
    ----------
    point : the analysis of the original frame.
    intervals : DataFrame indexed by estimate name: ``estimate``, ``lower``, ``upper`` (percentiles
        ``(1 -+ conf_level) / 2`` of the successful replicates), ``replicates`` (how many succeeded).
    replicates : DataFrame, one row per replicate, one column per estimate (NaN where it failed).
    seed, n_replicates, conf_level : the options; ``failed`` : replicates that raised (e.g. nobody
        started in the resample), left out of the percentiles.
    """

    point: CloneCensorWeightResult
    intervals: pd.DataFrame
    replicates: pd.DataFrame
    seed: int
    n_replicates: int
    conf_level: float
    failed: int


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Inputs:
    time: np.ndarray  # (n,) follow-up end, truncated at the horizon
    status: np.ndarray  # (n,) int: 0 censored, 1 outcome, 2 competing event
    start: np.ndarray  # (n,) exposure start, inf when never started
    x: np.ndarray  # (n, p) baseline covariates
    covariates: tuple[str, ...]
    v: np.ndarray | None = None  # (n, K, q) time-varying covariates per grace interval, or None
    time_varying: tuple[str, ...] = ()


def _numeric(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    if column not in frame.columns:
        raise InputError(f"{_WHERE}: column {column!r} ({what}) is missing; columns are {list(frame.columns)[:20]}")
    values = frame[column]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise InputError(
            f"{_WHERE}: column {column!r} ({what}) is {values.dtype}, not numeric; "
            "encode it as numbers (0/1 indicators for categories) first"
        )
    return values.to_numpy(dtype=float, na_value=np.nan)


def _is_days(value: object) -> bool:
    """A finite real number of days (NumPy scalars included; a bool is not a number of days)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def _check_inputs(
    frame: pd.DataFrame,
    start_time: str,
    time: str,
    status: str,
    covariates: Sequence[str],
    grace_days: float,
    horizon_days: float,
    competing: bool,
) -> _Inputs:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{_WHERE}: expected a pandas DataFrame, got {type(frame).__name__}")
    if not _is_days(grace_days) or grace_days <= 0:
        raise InputError(
            f"clone_censor_weight: grace_days must be a positive number of days, got {grace_days!r}; "
            "a target trial of 'start within the window' needs a grace window (e.g. 2 for 48 h)"
        )
    if not _is_days(horizon_days) or horizon_days <= 0:
        raise InputError(f"clone_censor_weight: horizon_days must be a positive number of days, got {horizon_days!r}")
    if grace_days >= horizon_days:
        raise InputError(
            f"clone_censor_weight: the grace window ({grace_days} days) is not shorter than the horizon "
            f"({horizon_days} days); the strategies cannot be compared after the window closes. "
            "Shorten the window or lengthen the horizon"
        )
    if len(frame) == 0:
        raise InputError(f"{_WHERE}: the frame has no rows")
    t = _numeric(frame, time, "follow-up time, days from the index")
    st = _numeric(frame, status, "status")
    s = _numeric(frame, start_time, "exposure start, days from the index; missing = never started")
    bad = ~np.isfinite(t) | (t <= 0)
    if bad.any():
        raise InputError(
            f"{_WHERE}: column {time!r} has {int(bad.sum())} of {len(t)} rows missing, infinite or <= 0; "
            "follow-up must be positive days from the index (an event on the index day needs a "
            "positive time such as 0.5)"
        )
    allowed = (0.0, 1.0, 2.0) if competing else (0.0, 1.0)
    bad = ~np.isin(st, allowed)
    if bad.any():
        raise InputError(
            f"{_WHERE}: column {status!r} has {int(bad.sum())} rows outside {list(map(int, allowed))} "
            f"(0 = censored, 1 = outcome{', 2 = competing event' if competing else ''}); "
            + ("recode them" if competing else "set competing=True for a code 2")
        )
    bad = np.isfinite(s) & (s < 0)
    if bad.any():
        raise InputError(
            f"{_WHERE}: column {start_time!r} has {int(bad.sum())} negative start times; exposure "
            "started before the index is a baseline characteristic: exclude those patients at "
            "eligibility"
        )
    bad = np.isfinite(s) & (s > t)
    if bad.any():
        raise InputError(
            f"{_WHERE}: column {start_time!r} has {int(bad.sum())} rows starting after the end of "
            f"follow-up ({time!r}); set their start to missing or correct the follow-up"
        )
    if np.isinf(s).any():
        raise InputError(f"{_WHERE}: column {start_time!r} has infinite values; use missing (NaN) for never started")
    s = np.where(np.isnan(s), np.inf, s)
    # a single name is one covariate, not its letters
    covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
    cols = [_numeric(frame, c, "baseline covariate") for c in covariates]
    x = np.column_stack(cols) if cols else np.empty((len(frame), 0))
    bad_rows = ~np.isfinite(x).all(axis=1)
    if bad_rows.any():
        which = [c for c, v in zip(covariates, cols, strict=True) if not np.isfinite(v).all()]
        raise InputError(
            f"{_WHERE}: {int(bad_rows.sum())} rows have missing covariates (columns {which}); "
            "impute or exclude them at eligibility"
        )
    # follow-up ends at the horizon: later events are administratively censored
    beyond = t > horizon_days
    status_arr = np.where(beyond, 0, st).astype(np.int64)
    t = np.minimum(t, float(horizon_days))
    s = np.where(s > t, np.inf, s)  # a start after the horizon is not part of the trial
    return _Inputs(t, status_arr, s, x, covariates)


def interval_cuts(grace_days: float, interval_days: float) -> np.ndarray:
    """The cuts ``0, w, 2w, ..., grace_days`` that split the grace window into the censoring model's intervals.

    Interval ``k`` (0-based) is ``(cuts[k], cuts[k + 1]]``; the last may be shorter than ``interval_days``.
    The ``day`` values of the ``time_varying`` frame of :func:`clone_censor_weight` are ``cuts[:-1]``
    (the interval starts).

    Parameters
    ----------
    grace_days : the grace window, days (> 0).
    interval_days : the width of an interval, days (> 0).

    Returns
    -------
    ndarray (K + 1,) of days from the index, increasing, first 0 and last ``grace_days``.
    """
    if not _is_days(grace_days) or grace_days <= 0:
        raise InputError(f"interval_cuts: grace_days must be a positive number of days, got {grace_days!r}")
    return _cuts(float(grace_days), interval_days)


def _cuts(grace_days: float, interval_days: float) -> np.ndarray:
    if not _is_days(interval_days) or interval_days <= 0:
        raise InputError(f"clone_censor_weight: interval_days must be a positive width in days, got {interval_days!r}")
    k = max(1, int(math.ceil(grace_days / interval_days - 1e-9)))
    cuts = np.minimum(np.arange(k + 1) * float(interval_days), float(grace_days))
    cuts[-1] = float(grace_days)
    return cuts


def _snap_to_cuts(inp: _Inputs, cuts: np.ndarray, horizon_days: float) -> _Inputs:
    """Times within rounding of a cut are put on it, so no clone row is a sliver (t, t + 1e-9]
    that coxph's timefix would reject. The tolerance covers survival's aeqSurv rule (a gap of
    sqrt(machine eps), absolute or relative to the mean time, which is below the horizon)."""
    tol = float(np.sqrt(np.finfo(float).eps)) * max(1.0, float(horizon_days))

    def snap(x: np.ndarray) -> np.ndarray:
        j = np.clip(np.searchsorted(cuts, x), 1, len(cuts) - 1)
        nearest = np.where(np.abs(cuts[j] - x) < np.abs(cuts[j - 1] - x), cuts[j], cuts[j - 1])
        return np.where(np.abs(nearest - x) <= tol, nearest, x)

    time = snap(inp.time)
    time = np.where(time > 0, time, inp.time)  # never snap a positive follow-up to the index
    start = snap(inp.start)
    start = np.where(np.isfinite(start), np.minimum(start, time), np.inf)  # inf = never started
    return _Inputs(time, inp.status, start, inp.x, inp.covariates, inp.v, inp.time_varying)


_TV_WHERE = "clone_censor_weight time_varying frame"
_TV_KEYS = ("row", "day")


def _tv_numeric(tv: pd.DataFrame, column: str, what: str) -> np.ndarray:
    values = tv[column]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        raise InputError(
            f"{_TV_WHERE}: column {column!r} ({what}) is {values.dtype}, not numeric, in {len(tv)} rows; "
            "encode it as numbers first"
        )
    return values.to_numpy(dtype=float, na_value=np.nan)


def _check_time_varying(
    tv: object, n: int, cuts: np.ndarray, covariates: tuple[str, ...]
) -> tuple[tuple[str, ...], np.ndarray]:
    """Validate the long frame of time-varying covariates; return their names and values (n, K, q)."""
    if not isinstance(tv, pd.DataFrame):
        raise InputError(
            f"{_TV_WHERE}: expected a pandas DataFrame (columns 'row', 'day' and one numeric column per "
            f"time-varying covariate) or None, got {type(tv).__name__}"
        )
    missing_keys = [c for c in _TV_KEYS if c not in tv.columns]
    if missing_keys:
        raise InputError(
            f"{_TV_WHERE}: column(s) {missing_keys} missing; columns are {list(tv.columns)[:20]}. It needs 'row' "
            "(0-based position of the patient in the frame), 'day' (start of the grace interval, "
            "interval_cuts(grace_days, interval_days)[:-1]) and one column per covariate"
        )
    if tv.columns.duplicated().any():
        raise InputError(f"{_TV_WHERE}: duplicated column names {sorted(set(tv.columns[tv.columns.duplicated()]))}")
    names = tuple(c for c in tv.columns if c not in _TV_KEYS)
    if not names:
        raise InputError(
            f"{_TV_WHERE}: no covariate column besides 'row' and 'day'; pass time_varying=None for a "
            "censoring model with baseline covariates only"
        )
    odd = [c for c in names if not isinstance(c, str)]
    if odd:
        raise InputError(f"{_TV_WHERE}: covariate column names must be strings, got {odd[:5]}")
    clash = [c for c in names if c in covariates or c == "(Intercept)" or re.fullmatch(r"time\d+", c)]
    if clash:
        raise InputError(
            f"{_TV_WHERE}: column(s) {clash} are also baseline covariates or a name the censoring model uses "
            "('(Intercept)', 'time1'...); a covariate is either fixed at the index or time-varying: rename or drop it"
        )
    n_int = len(cuts) - 1
    row = _tv_numeric(tv, "row", "0-based position of the patient in the frame")
    bad = ~np.isfinite(row) | (row != np.round(row)) | (row < 0) | (row >= n)
    if bad.any():
        raise InputError(
            f"{_TV_WHERE}: column 'row' has {int(bad.sum())} of {len(tv)} rows that are not a patient's 0-based "
            f"position in the frame (integers 0..{n - 1}); build it from the frame's positions, not its index "
            "or an identifier"
        )
    day = _tv_numeric(tv, "day", "start of the grace interval, days from the index")
    starts = cuts[:-1]
    tol = float(np.sqrt(np.finfo(float).eps)) * max(1.0, float(cuts[-1]))
    j = np.searchsorted(starts, np.where(np.isfinite(day), day, -np.inf))
    lo, hi = np.clip(j - 1, 0, n_int - 1), np.clip(j, 0, n_int - 1)
    nearest = np.where(np.abs(starts[hi] - day) < np.abs(starts[lo] - day), hi, lo)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(day) | ~(np.abs(starts[nearest] - day) <= tol)
    if bad.any():
        shown = ", ".join(f"{d:g}" for d in starts[:8]) + (", ..." if n_int > 8 else "")
        raise InputError(
            f"{_TV_WHERE}: column 'day' has {int(bad.sum())} of {len(tv)} rows that are not the start of a grace "
            f"interval ({shown}); use interval_cuts(grace_days, interval_days)[:-1] with the same options"
        )
    key = row.astype(np.int64) * n_int + nearest
    dup = int(pd.Series(key).duplicated().sum())
    if dup:
        raise InputError(
            f"{_TV_WHERE}: {dup} rows repeat a (row, day) pair given before; keep one value per patient and interval"
        )
    if key.size < n * n_int:
        absent = np.setdiff1d(np.arange(n * n_int), key)
        raise InputError(
            f"{_TV_WHERE}: {absent.size} of {n * n_int} (patient, interval) pairs are missing (first: row "
            f"{absent[0] // n_int}, day {starts[absent[0] % n_int]:g}); give every patient of the frame a value in "
            "every interval of the grace window (carry the last value forward)"
        )
    values = np.empty((n * n_int, len(names)))
    for c, name in enumerate(names):
        col = _tv_numeric(tv, name, "time-varying covariate")
        bad = ~np.isfinite(col)
        if bad.any():
            raise InputError(
                f"{_TV_WHERE}: column {name!r} has {int(bad.sum())} of {len(tv)} rows missing or infinite; carry the "
                "last value forward, and give patients never measured a value the study defines (e.g. its imputation)"
            )
        values[key, c] = col
    return names, values.reshape(n, n_int, len(names))


def _freeze_after_risk(inp: _Inputs, cuts: np.ndarray) -> _Inputs:
    """Time-varying values after the last interval at risk of starting are replaced by that interval's value.

    The censoring model only sees a patient while at risk of starting; the weights, though, need the
    probability of remaining uncensored to the window's end for everyone (a starter's ``1 - U_K``).
    Values measured after the start are affected by it, and after death they do not exist, so the last
    value at risk is carried forward instead.
    """
    if inp.v is None:
        return inp
    n_int = len(cuts) - 1
    k_start = np.where(inp.start <= cuts[-1], np.maximum(np.searchsorted(cuts, inp.start, side="left") - 1, 0), n_int)
    k_time = np.minimum(np.searchsorted(cuts, inp.time, side="left") - 1, n_int - 1)
    last = np.maximum(np.minimum(k_start, k_time), 0)
    k = np.minimum(np.arange(n_int)[None, :], last[:, None])
    v = np.take_along_axis(inp.v, k[:, :, None], axis=1)
    return _Inputs(inp.time, inp.status, inp.start, inp.x, inp.covariates, v, inp.time_varying)


# --------------------------------------------------------------------------- censoring model


def _time_terms(ends: np.ndarray, grace_days: float, n_intervals: int) -> tuple[np.ndarray, list[str]]:
    """A cubic polynomial in (interval end / grace window): flexible in time, as few terms as identifiable."""
    degree = min(3, n_intervals - 1)
    u = ends / grace_days
    return np.column_stack([u**d for d in range(1, degree + 1)]) if degree else np.empty((len(u), 0)), [
        f"time{d}" for d in range(1, degree + 1)
    ]


def interval_rows(inp: _Inputs, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person-intervals at risk of starting (survSplit of the grace window).

    A patient is at risk in interval k = (cuts[k-1], cuts[k]] while follow-up has not ended before it
    (``time > cuts[k-1]``) and the exposure has not started before it. The outcome is 1 in the interval
    that contains the start (a start at the index counts in the first interval).

    Returns
    -------
    patient (m,) int, interval (m,) int (0-based), started (m,) float 0/1.
    """
    n_int = len(cuts) - 1
    # interval of the start: 0-based, -1 never within the window
    k_start = np.where(inp.start <= cuts[-1], np.maximum(np.searchsorted(cuts, inp.start, side="left") - 1, 0), -1)
    # last interval entered by follow-up: time > cuts[k]
    k_time = np.minimum(np.searchsorted(cuts, inp.time, side="left") - 1, n_int - 1)
    last = np.where(k_start >= 0, np.minimum(k_start, k_time), k_time)
    n_rows = last + 1
    patient = np.repeat(np.arange(len(inp.time)), n_rows)
    offsets = np.cumsum(n_rows) - n_rows
    interval = np.arange(patient.size) - np.repeat(offsets, n_rows)
    started = (interval == k_start[patient]).astype(float)
    return patient, interval, started


def _pooled_logistic(inp: _Inputs, cuts: np.ndarray, stabilised: bool) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """P(not started by the end of each interval) per patient: (n, K) from the full and the numerator model."""
    n_int = len(cuts) - 1
    patient, interval, started = interval_rows(inp, cuts)
    if started.sum() == 0 or started.sum() == started.size:
        raise InputError(
            f"{_WHERE}: the censoring model has {int(started.sum())} starts among {started.size} "
            "person-intervals at risk; it needs both"
        )
    tt_all, tnames = _time_terms(cuts[1:], cuts[-1], n_int)
    names = ["(Intercept)", *inp.covariates, *inp.time_varying, *tnames]
    p, q = inp.x.shape[1], len(inp.time_varying)
    # the full model's columns per person-interval: baseline values, then the interval's time-varying values
    x_rows = inp.x[patient] if inp.v is None else np.column_stack([inp.x[patient], inp.v[patient, interval]])

    def fit(covariate_rows: np.ndarray | None, what: str) -> np.ndarray:
        design = (
            np.column_stack([np.ones(patient.size), covariate_rows, tt_all[interval]])
            if covariate_rows is not None and covariate_rows.shape[1]
            else np.column_stack([np.ones(patient.size), tt_all[interval]])
        )
        # rank of the (p, p) cross-product: as informative as the design's own, at a fraction of the cost
        with np.errstate(over="ignore", invalid="ignore"):
            cross = design.T @ design
        if not np.isfinite(cross).all():
            raise InputError(
                f"{_WHERE}: the {what} censoring model's covariates overflow (values of 1e150 or more); rescale them"
            )
        if np.linalg.matrix_rank(cross) < design.shape[1]:
            raise InputError(
                f"{_WHERE}: the {what} censoring model's design is rank deficient (a constant or "
                "collinear covariate among the patients at risk of starting); drop it"
            )
        out = fit_binomial_glm(design, started)
        if not out["converged"]:
            raise ConvergenceError(
                f"clone_censor_weight: the {what} pooled logistic model did not converge "
                "(separation: a covariate predicts the start perfectly); drop or coarsen it"
            )
        return out["coef"]

    coef = fit(x_rows, "full")
    lp = coef[0] + inp.x @ coef[1 : 1 + p]
    lp = lp[:, None] + (tt_all @ coef[1 + p + q :])[None, :]
    if inp.v is not None:
        lp = lp + inp.v @ coef[1 + p : 1 + p + q]  # (n, K): each interval's own value
    p_full = 1.0 / (1.0 + np.exp(-lp))
    uncensored = np.cumprod(1.0 - p_full, axis=1)
    if stabilised:
        # time only, never the time-varying covariates: the numerator must not depend on the history
        c0 = fit(None, "numerator")
        p0 = 1.0 / (1.0 + np.exp(-(c0[0] + tt_all @ c0[1:])))
        numerator = np.cumprod(1.0 - p0)
    else:
        numerator = np.ones(n_int)
    return uncensored, numerator, pd.Series(coef, index=names)


def _cox_censoring(inp: _Inputs, cuts: np.ndarray, stabilised: bool) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """As :func:`_pooled_logistic` from a Cox model of the time to start within the window (Breslow ties)."""
    grace = cuts[-1]
    in_window = inp.start <= grace
    t = np.where(in_window, inp.start, np.minimum(inp.time, grace))
    # a start at the index cannot be a Cox event time (0, 0]: it counts just after the index
    t = np.maximum(t, 1e-8 * grace)
    if not inp.covariates and not inp.time_varying:
        raise InputError("clone_censor_weight: censoring_model='cox' needs at least one covariate")
    if inp.v is None:
        frame = pd.DataFrame(inp.x, columns=list(inp.covariates))
        frame["_t"], frame["_e"] = t, in_window.astype(int)
        fit = cox(frame, "_t", "_e", list(inp.covariates), ties="breslow")
        base = baseline_hazard(fit)
        idx = np.searchsorted(base["time"].to_numpy(), cuts[1:], side="right") - 1
        h0 = np.where(idx >= 0, base["cumhaz"].to_numpy()[np.maximum(idx, 0)], 0.0)
        lp = inp.x @ fit.coef.to_numpy()
        uncensored = np.exp(-np.outer(np.exp(lp), h0))
    else:
        # counting-process rows (cut_k, min(cut_k+1, t)] with interval k's value, as survSplit at the cuts
        n_int = len(cuts) - 1
        k_last = np.clip(np.searchsorted(cuts, t, side="left") - 1, 0, n_int - 1)
        n_rows = k_last + 1
        patient = np.repeat(np.arange(t.size), n_rows)
        interval = np.arange(patient.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
        names = [*inp.covariates, *inp.time_varying]
        frame = pd.DataFrame(np.column_stack([inp.x[patient], inp.v[patient, interval]]), columns=names)
        frame["_t0"] = cuts[interval]
        frame["_t"] = np.minimum(cuts[interval + 1], t[patient])
        frame["_e"] = (in_window[patient] & (interval == k_last[patient])).astype(int)
        fit = cox(frame, "_t", "_e", names, entry="_t0", ties="breslow")
        base = baseline_hazard(fit)
        idx = np.searchsorted(base["time"].to_numpy(), cuts, side="right") - 1
        h0 = np.where(idx >= 0, base["cumhaz"].to_numpy()[np.maximum(idx, 0)], 0.0)
        beta = fit.coef.to_numpy()
        p = inp.x.shape[1]
        # H(cut_k | history) = sum over intervals j <= k of exp(x b + v_j g) (H0(cut_j+1) - H0(cut_j))
        lp = (inp.x @ beta[:p])[:, None] + inp.v @ beta[p:]
        uncensored = np.exp(-np.cumsum(np.exp(lp) * np.diff(h0)[None, :], axis=1))
    if stabilised:
        # Nelson-Aalen of the time to start: the Cox model without covariates
        order = np.sort(t)
        events = np.sort(t[in_window])
        times, d = np.unique(events, return_counts=True)
        at_risk = len(order) - np.searchsorted(order, times, side="left")
        cum = np.cumsum(d / at_risk)
        j = np.searchsorted(times, cuts[1:], side="right") - 1
        numerator = np.exp(-np.where(j >= 0, cum[np.maximum(j, 0)], 0.0))
    else:
        numerator = np.ones(len(cuts) - 1)
    return uncensored, numerator, fit.coef.rename(None)


def _at_midpoints(at_ends: np.ndarray) -> np.ndarray:
    """Probabilities of remaining uncensored at the intervals' middles from those at their ends (..., K)."""
    before = np.concatenate([np.ones((*at_ends.shape[:-1], 1)), at_ends[..., :-1]], axis=-1)
    return np.sqrt(before * at_ends)


# --------------------------------------------------------------------------- clones


def _clone_rows(inp: _Inputs, cuts: np.ndarray, w_start: np.ndarray, w_no: np.ndarray) -> dict[str, np.ndarray]:
    """The clones' (start, stop] rows with their weights.

    ``w_start`` (n,) is the start clone's weight after the window; ``w_no`` (n, K) the no-start clone's
    weight in each grace interval (kept after the window).
    """
    grace = cuts[-1]
    n_int = len(cuts) - 1
    n = len(inp.time)
    started = inp.start <= grace
    ids = np.arange(n)
    # start clone: (0, min(time, G)] with weight 1, then (G, time] with its weight if started in the window.
    # A non-starter still followed at G is censored there; one who died or left earlier keeps that end.
    first_stop = np.minimum(inp.time, grace)
    first_event = np.where(inp.time <= grace, inp.status, 0)
    later = started & (inp.time > grace)
    s_id = np.concatenate([ids, ids[later]])
    s_tstart = np.concatenate([np.zeros(n), np.full(int(later.sum()), grace)])
    s_tstop = np.concatenate([first_stop, inp.time[later]])
    s_event = np.concatenate([first_event, inp.status[later]])
    s_w = np.concatenate([np.ones(n), w_start[later]])
    # no-start clone: follow-up ends at the start (censored: a start ties with an event as "started first")
    end = np.where(started, inp.start, inp.time)
    end_status = np.where(started, 0, inp.status)
    k_end = np.minimum(np.searchsorted(cuts, end, side="left") - 1, n_int - 1)  # last grace interval entered
    n_grace = np.where(end > 0, k_end + 1, 0)
    after = end > grace
    n_rows = n_grace + after
    g_id = np.repeat(ids, n_rows)
    offsets = np.cumsum(n_rows) - n_rows
    k = np.arange(g_id.size) - np.repeat(offsets, n_rows)  # interval index; n_int = after the window
    in_grace = k < n_int
    kk = np.minimum(k, n_int - 1)
    g_tstart = np.where(in_grace, cuts[kk], grace)
    g_tstop = np.minimum(np.where(in_grace, cuts[kk + 1], np.inf), end[g_id])
    last_row = np.zeros(g_id.size, dtype=bool)
    last_row[offsets[n_rows > 0] + n_rows[n_rows > 0] - 1] = True
    g_event = np.where(last_row, end_status[g_id], 0)
    g_w = w_no[g_id, kk]
    rows = {
        "id": np.concatenate([s_id, g_id]),
        "strategy": np.concatenate([np.ones(s_id.size, dtype=np.int64), np.zeros(g_id.size, dtype=np.int64)]),
        "tstart": np.concatenate([s_tstart, g_tstart]),
        "tstop": np.concatenate([s_tstop, g_tstop]),
        "event": np.concatenate([s_event, g_event]).astype(np.int64),
        "w": np.concatenate([s_w, g_w]),
    }
    # start strategy first, then each clone's rows together in time order
    order = np.lexsort((rows["tstart"], rows["id"], -rows["strategy"]))
    return {key: value[order] for key, value in rows.items()}


def expand_clones(
    frame: pd.DataFrame,
    *,
    start_time: str,
    grace_days: float,
    time: str,
    status: str,
    horizon_days: float,
    interval_days: float = 1.0,
    competing: bool = False,
) -> pd.DataFrame:
    """The clones' (start, stop] rows, unweighted (``w`` = 1): the data step alone, for checks and teaching.

    Same rules as :func:`clone_censor_weight`; returns columns ``id``, ``strategy``, ``tstart``, ``tstop``,
    ``event``, ``w``.
    """
    inp = _check_inputs(frame, start_time, time, status, (), grace_days, horizon_days, competing)
    cuts = _cuts(grace_days, interval_days)
    rows = _clone_rows(inp, cuts, np.ones(len(inp.time)), np.ones((len(inp.time), len(cuts) - 1)))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- estimators


def weighted_product_limit(
    tstart: np.ndarray, tstop: np.ndarray, status: np.ndarray, w: np.ndarray, competing: bool = False
) -> pd.DataFrame:
    """Weighted Kaplan-Meier (or Aalen-Johansen) on (start, stop] rows, as survfit with weights.

    The risk set at t is the weight of rows with ``tstart < t <= tstop``. Returns per distinct event time
    ``time``, ``n_risk``, ``n_event`` (weighted events of the outcome, code 1), ``risk``: ``1 - S(t)``
    (``survfit(Surv(tstart, tstop, event) ~ 1, weights = w)``) or, with ``competing``, the incidence of
    code 1 with code 2 competing, ``sum S(u-) dN1(u) / n(u)`` (the ``pstate`` of survfit's multi-state
    Aalen-Johansen estimate).
    """
    is_event = status > 0
    times = np.unique(tstop[is_event])
    order_stop = np.argsort(tstop, kind="stable")
    stop_sorted, w_stop = tstop[order_stop], np.concatenate([[0.0], np.cumsum(w[order_stop])])
    order_start = np.argsort(tstart, kind="stable")
    start_sorted, w_start = tstart[order_start], np.concatenate([[0.0], np.cumsum(w[order_start])])
    # weight with tstop >= t minus weight with tstart >= t
    n_risk = (w_stop[-1] - w_stop[np.searchsorted(stop_sorted, times, side="left")]) - (
        w_start[-1] - w_start[np.searchsorted(start_sorted, times, side="left")]
    )
    pos = np.searchsorted(times, tstop[is_event])
    d_any = np.bincount(pos, weights=w[is_event], minlength=times.size)
    d_one = np.bincount(pos, weights=np.where(status[is_event] == 1, w[is_event], 0.0), minlength=times.size)
    hazard = np.where(n_risk > 0, d_any / np.where(n_risk > 0, n_risk, 1.0), 0.0)
    survival = np.cumprod(1.0 - hazard)
    if competing:
        s_before = np.concatenate([[1.0], survival[:-1]])
        risk = np.cumsum(s_before * np.where(n_risk > 0, d_one / np.where(n_risk > 0, n_risk, 1.0), 0.0))
    else:
        risk = 1.0 - survival
    keep = d_one > 0 if competing else np.ones(times.size, dtype=bool)
    return pd.DataFrame({"time": times[keep], "n_risk": n_risk[keep], "n_event": d_one[keep], "risk": risk[keep]})


def _risk_at(curve: pd.DataFrame, at: float) -> float:
    j = np.searchsorted(curve["time"].to_numpy(), at, side="right") - 1
    return float(curve["risk"].to_numpy()[j]) if j >= 0 else 0.0


def _truncate(w: np.ndarray, truncate: tuple[float, float]) -> tuple[np.ndarray, float, float, int]:
    lo_q, hi_q = truncate
    lower, upper = np.quantile(w, [lo_q, hi_q]) if w.size else (np.nan, np.nan)
    clipped = np.clip(w, lower, upper)
    return clipped, float(lower), float(upper), int(np.count_nonzero(clipped != w))


def _check_truncate(truncate: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in truncate)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"clone_censor_weight: truncate must be two percentiles (lower, upper) in [0, 1], got {truncate!r}"
        ) from exc
    if not (0.0 <= lo < hi <= 1.0):
        raise InputError(
            f"clone_censor_weight: truncate must satisfy 0 <= lower < upper <= 1 (e.g. (0.01, 0.99); "
            f"(0, 1) = no truncation), got {truncate!r}"
        )
    return lo, hi


def clone_censor_weight(
    frame: pd.DataFrame,
    *,
    start_time: str,
    grace_days: float,
    time: str,
    status: str,
    covariates: Sequence[str],
    horizon_days: float,
    censoring_model: CensoringModel = "pooled_logistic",
    interval_days: float = 1.0,
    stabilised: bool = True,
    truncate: tuple[float, float] = (0.0, 1.0),
    competing: bool = False,
    min_ess: float = MIN_ESS,
    conf_level: float = 0.95,
    cox_variance: bool = True,
    time_varying: pd.DataFrame | None = None,
) -> CloneCensorWeightResult:
    """Clone, censor and weight: the emulated trial of starting within the grace window or not.

    Parameters
    ----------
    frame : DataFrame, one row per eligible patient (eligibility decided at the index only).
    start_time : column, days from the index to the exposure start; NaN = not started during follow-up.
    grace_days : the grace window (0, grace_days], > 0 and shorter than the horizon.
    time : column, days from the index to the end of follow-up (event or censoring), > 0.
    status : column, 0 = censored, 1 = outcome, 2 = competing event (only with ``competing=True``).
    covariates : numeric baseline columns of the censoring model (0/1 indicators for categories).
    horizon_days : the time at which risks are compared; follow-up is censored there.
    censoring_model : "pooled_logistic" (glm binomial on person-intervals of ``interval_days`` with the
        covariates and a cubic polynomial in time) or "cox" (coxph of the time to start, Breslow ties).
    interval_days : width of the intervals the grace window is split into (the last may be shorter).
    stabilised : numerator = the same model without covariates (time only; neither the baseline nor the
        time-varying covariates enter it).
    truncate : percentiles (lower, upper) of each strategy's row weights at which the weights are clipped.
    competing : code 2 is a competing event: Aalen-Johansen risks, cause-specific Cox.
    min_ess : refuse (InputError) when a strategy's effective sample size falls below this floor.
    conf_level : level of the Cox model's robust (cluster) interval in ``cox``.
    cox_variance : False fits the Cox model without the cluster (robust) variance: same coefficient,
        less work; the bootstrap's replicates use it since they need only the estimates.
    time_varying : optional long DataFrame of time-varying covariates of the censoring model: ``row`` (0-based
        position of the patient in ``frame``), ``day`` (start of a grace interval, one of
        ``interval_cuts(grace_days, interval_days)[:-1]``) and one numeric column per covariate, with one
        row per patient and interval, complete (carry values forward before calling). The value of row
        ``(i, day)`` must be known at ``day`` (no look-ahead: see
        :func:`retrocohort.cohort.intervals.time_varying_values`). In the pooled logistic model the
        interval's value enters that interval's row (``glm`` on survSplit rows with the covariate per
        interval); in the Cox model the time to start is split into ``(start, stop]`` rows at the cuts
        with the interval's value. After a patient's last interval at risk of starting (start, death,
        end of follow-up) the last value at risk is carried forward: values measured after the start
        are affected by it. Names come after the baseline covariates in ``censoring_coef``.

    Returns
    -------
    CloneCensorWeightResult
    """
    if censoring_model not in get_args(CensoringModel):
        raise InputError(
            f"clone_censor_weight: censoring_model={censoring_model!r} is not one of {list(get_args(CensoringModel))}"
        )
    truncate = _check_truncate(truncate)
    inp = _check_inputs(frame, start_time, time, status, covariates, grace_days, horizon_days, competing)
    cuts = _cuts(float(grace_days), interval_days)
    inp = _snap_to_cuts(inp, cuts, float(horizon_days))
    if time_varying is not None:
        tv_names, tv_values = _check_time_varying(time_varying, len(inp.time), cuts, inp.covariates)
        inp = _freeze_after_risk(replace(inp, v=tv_values, time_varying=tv_names), cuts)
    grace = cuts[-1]
    n = len(inp.time)
    started = inp.start <= grace
    n_started = int(started.sum())
    if n_started == 0:
        raise InputError(
            f"{_WHERE}: no patient starts the exposure within the grace window ({grace} days) among "
            f"{n}; the 'start' strategy has no one to follow. Check {start_time!r} or widen the window"
        )
    if n_started == n:
        raise InputError(
            f"{_WHERE}: all {n} patients start within the grace window; the 'no start' strategy has "
            "no one to follow after the window"
        )
    if not (inp.status == 1).any():
        raise InputError(
            f"{_WHERE}: column {status!r} has no outcome event (code 1) within the horizon ({horizon_days} days) "
            f"among {n} patients; there is nothing to compare"
        )
    if not (started & (inp.time > grace)).any():
        raise InputError(
            f"{_WHERE}: no patient who started within the window is followed beyond it; the start "
            "strategy has no follow-up after the grace window"
        )
    if censoring_model == "pooled_logistic":
        uncensored, numerator, coef = _pooled_logistic(inp, cuts, stabilised)
    else:
        uncensored, numerator, coef = _cox_censoring(inp, cuts, stabilised)
    with np.errstate(divide="ignore"):
        # A no-start clone's weight in interval k is taken at the interval's middle: U(mid) = sqrt(U_{k-1} U_k)
        # under a constant hazard within the interval. The end of the interval would overweight the patients
        # likely to start (first-order error in the width); the middle makes it second order.
        w_no = _at_midpoints(numerator[None, :]) / _at_midpoints(uncensored)
        # start clone: uncensored after the window = started within it; the marginal probability of that
        # is the stabilising numerator
        w_start = ((1.0 - numerator[-1]) if stabilised else 1.0) / (1.0 - uncensored[:, -1])
    rows = _clone_rows(inp, cuts, w_start, w_no)
    notes: list[str] = []
    summary_rows, trunc = [], {}
    for code, name in ((1, "start"), (0, "no_start")):
        sel = rows["strategy"] == code
        clipped, lower, upper, n_clipped = _truncate(rows["w"][sel], truncate)
        if not np.isfinite(clipped).all():
            raise InputError(
                f"clone_censor_weight: {int((~np.isfinite(clipped)).sum())} weights of the {name} "
                "strategy are infinite (a predicted probability of 0 of remaining uncensored); "
                "truncate them, e.g. truncate=(0.01, 0.99), or simplify the censoring model"
            )
        rows["w"][sel] = clipped
        trunc[name] = (lower, upper, n_clipped)
    last = np.r_[rows["id"][1:] != rows["id"][:-1], True] | np.r_[rows["strategy"][1:] != rows["strategy"][:-1], True]
    for code, name in ((1, "start"), (0, "no_start")):
        sel = rows["strategy"] == code
        w = rows["w"][sel]
        final = rows["w"][sel & last]
        ess = float(final.sum() ** 2 / np.sum(final**2))
        q = np.quantile(w, [0.01, 0.25, 0.5, 0.75, 0.99])
        lower, upper, n_clipped = trunc[name]
        summary_rows.append(
            {
                "strategy": name,
                "min": float(w.min()),
                "p01": q[0],
                "p25": q[1],
                "median": q[2],
                "p75": q[3],
                "p99": q[4],
                "max": float(w.max()),
                "mean": float(w.mean()),
                "ess": ess,
                "truncated_rows": n_clipped,
                "lower": lower,
                "upper": upper,
            }
        )
        if ess < min_ess:
            raise InputError(
                f"clone_censor_weight: the effective sample size of the {name} strategy is {ess:.1f}, "
                f"below the floor of {min_ess:g} (weights from {w.min():.3g} to {w.max():.3g}, "
                f"{n_clipped} rows truncated at [{lower:.3g}, {upper:.3g}]); the weights explode. "
                "Truncate them (truncate=(0.01, 0.99)), simplify the censoring model, or lower min_ess"
            )
    weights_table = pd.DataFrame(summary_rows).set_index("strategy")
    row_frame = pd.DataFrame(rows)
    curves, risks, counts = [], {}, []
    for code, name in ((1, "start"), (0, "no_start")):
        sel = rows["strategy"] == code
        curve = weighted_product_limit(
            rows["tstart"][sel], rows["tstop"][sel], rows["event"][sel], rows["w"][sel], competing
        )
        risks[name] = _risk_at(curve, float(horizon_days))
        curves.append(curve.assign(strategy=name))
        ev = sel & (rows["event"] == 1)
        clone_end = rows["tstop"][sel & last]
        deviated = (inp.start <= grace) & (inp.time >= inp.start) if code == 0 else (~started) & (inp.time > grace)
        counts.append(
            {
                "strategy": name,
                "clones": n,
                "rows": int(sel.sum()),
                "events": int(ev.sum()),
                "artificially_censored": int(deviated.sum()),
                "events_in_grace": int((ev & (rows["tstop"] <= grace)).sum()),
                "median_follow_up": float(np.median(clone_end)),
            }
        )
    cox_fit = cox(
        row_frame.assign(event=(row_frame["event"] == 1).astype(int)),
        "tstop",
        "event",
        ["strategy"],
        entry="tstart",
        weights="w",
        cluster="id" if cox_variance else None,
        robust=None if cox_variance else False,
        conf_level=conf_level,
    )
    b = float(cox_fit.coef.iloc[0])
    estimates = pd.Series(
        {
            "risk_start": risks["start"],
            "risk_no_start": risks["no_start"],
            "risk_difference": risks["start"] - risks["no_start"],
            "risk_ratio": risks["start"] / risks["no_start"] if risks["no_start"] > 0 else np.nan,
            "hazard_ratio": math.exp(b),
            "log_hazard_ratio": b,
        }
    )
    if competing:
        notes.append(
            "competing event (code 2): risks are weighted Aalen-Johansen incidences; the hazard ratio is "
            "cause-specific (competing events censored)"
        )
    curve_frame = pd.concat(curves, ignore_index=True)[["strategy", "time", "n_risk", "n_event", "risk"]]
    return CloneCensorWeightResult(
        estimates=estimates,
        curves=curve_frame,
        counts=pd.DataFrame(counts).set_index("strategy"),
        weights=weights_table,
        censoring_coef=coef,
        cox=cox_fit,
        rows=row_frame,
        options={
            "grace_days": float(grace_days),
            "horizon_days": float(horizon_days),
            "interval_days": float(interval_days),
            "censoring_model": censoring_model,
            "stabilised": bool(stabilised),
            "truncate": truncate,
            "competing": bool(competing),
            "min_ess": float(min_ess),
            "covariates": list(inp.covariates),
            "time_varying": list(inp.time_varying),
        },
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- bootstrap

_WORKER_STATE: dict = {}


def _replicate(task: tuple[int, np.random.SeedSequence]) -> tuple[int, np.ndarray | None]:
    index, seed = task
    frame, kwargs = _WORKER_STATE["frame"], _WORKER_STATE["kwargs"]
    rng = np.random.default_rng(seed)
    # resample patients with replacement; only this replicate's rows exist at any time
    pick = np.sort(rng.integers(0, len(frame), len(frame)))
    extra: dict[str, Any] = {}
    if "time_varying" in _WORKER_STATE:
        extra["time_varying"] = _resample_time_varying(_WORKER_STATE["time_varying"], pick)
    try:
        # A replicate's warnings are silenced: in worker processes they would reach stderr only, so the
        # caller's record of warnings would depend on `processes`; the point estimate's warnings are kept.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = clone_censor_weight(frame.iloc[pick].reset_index(drop=True), **kwargs, **extra, cox_variance=False)
    except (InputError, ConvergenceError):
        return index, None
    return index, res.estimates.to_numpy()


def _resample_time_varying(tv: tuple[pd.DataFrame, np.ndarray, np.ndarray], pick: np.ndarray) -> pd.DataFrame:
    """The rows of the patients drawn, under their new positions: one copy per draw."""
    table, offsets, counts = tv
    n_rows = counts[pick]
    first = np.repeat(offsets[pick], n_rows)
    within = np.arange(first.size) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    out = table.iloc[first + within].reset_index(drop=True)
    out["row"] = np.repeat(np.arange(pick.size), n_rows)
    return out


def _init_worker(frame: pd.DataFrame, kwargs: dict) -> None:
    kwargs = dict(kwargs)
    tv = kwargs.pop("time_varying", None)
    _WORKER_STATE["frame"], _WORKER_STATE["kwargs"] = frame, kwargs
    if tv is not None:
        # grouped once per process by patient; the point estimate has validated it (complete, no duplicates)
        rows = tv["row"].to_numpy(dtype=float).astype(np.int64)
        order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=len(frame))
        _WORKER_STATE["time_varying"] = (tv.iloc[order].reset_index(drop=True), np.cumsum(counts) - counts, counts)


def bootstrap(
    frame: pd.DataFrame,
    *,
    n_replicates: int = 500,
    seed: int = 20161101,
    conf_level: float = 0.95,
    processes: int = 1,
    progress: Callable[[int, int], None] | None = None,
    **kwargs,
) -> BootstrapResult:
    """Percentile bootstrap over patients of the whole :func:`clone_censor_weight` procedure.

    Each replicate draws ``len(frame)`` patients with replacement and reruns everything, the
    censoring model included. Replicate ``r`` uses the ``r``-th child of ``SeedSequence(seed)``, so the
    result depends on ``seed`` only, not on ``processes``. Only one replicate's expanded rows exist per
    process at a time.

    Parameters
    ----------
    frame : as :func:`clone_censor_weight`; ``kwargs`` are its keyword arguments. A ``time_varying`` frame
        is resampled with the patients: a patient drawn twice gets two copies of its rows, under its two
        new positions.
    n_replicates : number of replicates (default 500).
    seed : integer seed.
    conf_level : coverage of the percentile intervals.
    processes : worker processes (fork); 1 runs in this process.
    progress : called as ``progress(done, n_replicates)`` after each replicate.

    Returns
    -------
    BootstrapResult
    """
    if isinstance(n_replicates, bool) or not isinstance(n_replicates, (int, np.integer)) or n_replicates < 2:
        raise InputError(f"bootstrap: n_replicates must be an integer >= 2, got {n_replicates!r}")
    if not 0 < conf_level < 1:
        raise InputError(f"bootstrap: conf_level must be in (0, 1), got {conf_level!r}")
    if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 1:
        raise InputError(f"bootstrap: processes must be a positive integer, got {processes!r}")
    point = clone_censor_weight(frame, **kwargs)
    names = list(point.estimates.index)
    children = np.random.SeedSequence(int(seed)).spawn(int(n_replicates))
    tasks = list(enumerate(children))
    values = np.full((n_replicates, len(names)), np.nan)
    done = 0
    results: Iterable[tuple[int, np.ndarray | None]]
    if processes == 1:
        _init_worker(frame, kwargs)
        results = map(_replicate, tasks)
        pool = None
    else:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pool = ctx.Pool(processes, initializer=_init_worker, initargs=(frame, kwargs))
        results = pool.imap_unordered(_replicate, tasks, chunksize=max(1, n_replicates // (8 * processes)))
    failed = 0
    try:
        for index, est in results:
            if est is None:
                failed += 1
            else:
                values[index] = est
            done += 1
            if progress is not None:
                progress(done, n_replicates)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _WORKER_STATE.clear()
    replicates = pd.DataFrame(values, columns=names)
    alpha = (1.0 - conf_level) / 2.0
    ok = replicates.dropna(subset=["risk_start", "risk_no_start"])
    intervals = pd.DataFrame(
        {
            "estimate": point.estimates,
            "lower": ok.quantile(alpha),
            "upper": ok.quantile(1.0 - alpha),
            "replicates": ok.notna().sum(),
        }
    )
    return BootstrapResult(
        point=point,
        intervals=intervals,
        replicates=replicates,
        seed=int(seed),
        n_replicates=int(n_replicates),
        conf_level=float(conf_level),
        failed=failed,
    )
