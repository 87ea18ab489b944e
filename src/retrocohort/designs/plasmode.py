"""Plasmode simulation: keep a cohort's covariates, simulate exposure and outcomes with a planted effect.

Pure numerics on an analysis frame (one row per patient), seeded by a
``numpy.random.Generator``; nothing here knows which study is run. The study
layer (:mod:`retrocohort.study.validate`) runs the study's analysis on every
simulated frame. docs/validate.md states the model in full; in short
(Franklin et al. 2014, *Plasmode simulation for the evaluation of
pharmacoepidemiologic methods in complex healthcare databases*, Comput Stat
Data Anal 72:219-226; the time-to-event designs of Austin 2013 and Fine &
Gray 1999):

* **Covariates** are the cohort's own rows, unchanged (a fixed-covariate
  design: every replicate has the same patients; no resampling).
* **Exposure**: the propensity model (logistic or probit, the study's
  propensity covariates) is fitted to the observed exposure; each replicate
  draws ``A_i ~ Bernoulli(p_i)`` from the fitted probabilities.
* **Outcome without competing risks**: a Cox model ``exposure + covariates``
  (the study's adjustment set) fitted to the observed outcome gives the
  covariate log hazard ratios ``beta`` and the Breslow baseline cumulative
  hazard ``H0``; the exposure's fitted coefficient is replaced by the planted
  ``log(effect)``. Times are drawn by inversion, ``H0(T) exp(x beta + A log
  effect) = E`` with ``E ~ Exp(1)``, where ``H0`` is interpolated linearly
  between its jump times (a continuous cumulative hazard, so simulated times
  do not tie and proportional hazards hold exactly; beyond the last event
  time no event happens).
* **Competing-risk outcome** (cause 1, death competing): a Fine-Gray model
  fitted the same way gives ``beta`` and the baseline cumulative
  subdistribution hazard ``L0``. Plasmode from the fitted baseline CIF (not
  Fine & Gray's parametric design, which would impose a Gompertz-type
  baseline unrelated to the user's data): ``F1(t | x, A) = 1 - exp(-L0(t)
  exp(x beta + A log effect))``, drawn by the same inversion, so the planted
  value is exactly the subdistribution hazard ratio. A patient not drawn to
  cause 1 (probability ``1 - F1(tau)``) dies at a time drawn from a Cox
  model of the competing event (covariates, no exposure term) fitted among
  the patients who did not have the outcome, or is event-free at the end of
  follow-up.
* **Censoring**: a Cox model (covariates, no exposure) for censoring before
  the end of follow-up ``tau`` (the largest observed time); simulated times
  are ``min(T, C, tau)``, so administrative censoring at the horizon stays.

The truth of an adjusted estimate is the planted conditional (s)HR. An
unadjusted estimate in the matched or IPTW (ATT) population estimates a
marginal (s)HR, which differs from the conditional one when covariates
affect the outcome (non-collapsibility); :func:`marginal_truth` computes it
by a large counterfactual simulation (Austin 2013).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..matching import propensity_score
from ..survival import cox, fine_gray
from ..survival.cox import baseline_hazard

__all__ = [
    "CumulativeHazard",
    "OutcomeModel",
    "PlasmodeModel",
    "TrialModel",
    "fit_plasmode",
    "fit_trial_plasmode",
    "marginal_truth",
    "simulate",
    "simulate_trial",
    "trial_truth",
]


@dataclass(frozen=True)
class CumulativeHazard:
    """A cumulative (sub)hazard at covariates 0, linear between its jump times.

    ``time`` (k,) increasing jump times in days; ``cumhaz`` (k,) strictly increasing values at them.
    """

    time: np.ndarray
    cumhaz: np.ndarray

    def invert(self, target: np.ndarray) -> np.ndarray:
        """Times ``t`` with ``H(t) = target`` (linear from ``H(0) = 0``); ``inf`` beyond the last jump."""
        knots_h = np.concatenate(([0.0], self.cumhaz))
        knots_t = np.concatenate(([0.0], self.time))
        out = np.interp(target, knots_h, knots_t)
        return np.where(target > knots_h[-1], np.inf, out)


@dataclass(frozen=True)
class OutcomeModel:
    """The fitted models of one outcome (per row of the frame the model was fitted on).

    ``linear`` is ``x beta`` without the exposure term; ``fitted_effect`` the
    exposure's (s)HR in the observed data (for information only: the
    simulation plants its own value).
    """

    name: str
    competing: bool
    coefficients: pd.Series  # log (s)HR of each design column, exposure excluded
    fitted_effect: float
    linear: np.ndarray
    baseline: CumulativeHazard
    competing_linear: np.ndarray | None
    competing_baseline: CumulativeHazard | None
    censoring_linear: np.ndarray
    censoring_baseline: CumulativeHazard | None  # None: nobody censored before tau
    tau: float


@dataclass(frozen=True)
class PlasmodeModel:
    """Everything a replicate needs: exposure probabilities and per-outcome models.

    Arrays are aligned to the rows of the frame passed to :func:`fit_plasmode`.
    """

    exposure_probability: np.ndarray
    exposure_covariates: tuple[str, ...]
    outcome_covariates: tuple[str, ...]
    outcomes: Mapping[str, OutcomeModel]
    ties: str
    notes: tuple[str, ...] = ()


def _design(frame: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Numeric model columns with treatment contrasts (first sorted level the reference); constants dropped."""
    columns: dict[str, np.ndarray] = {}
    for name in covariates:
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numeric:
            values = col.to_numpy(dtype=float)
            if np.nanstd(values) > 0:
                columns[name] = values
            continue
        levels = sorted(pd.unique(col.dropna()), key=lambda v: (str(type(v)), v))
        for level in levels[1:]:
            columns[f"{name}={level}"] = (col == level).to_numpy(dtype=float)
    return pd.DataFrame(columns, index=frame.index)


def _hazard(times: np.ndarray, cumhaz: np.ndarray) -> CumulativeHazard | None:
    """Keep the strictly increasing part of a step function (its jump times)."""
    keep = np.diff(np.concatenate(([0.0], cumhaz))) > 0
    if not keep.any():
        return None
    return CumulativeHazard(time=np.asarray(times, float)[keep], cumhaz=np.asarray(cumhaz, float)[keep])


def _nelson_aalen(time: np.ndarray, event: np.ndarray) -> CumulativeHazard | None:
    """Nelson-Aalen cumulative hazard (no covariates): the fallback when a censoring Cox model cannot be fitted."""
    order = np.argsort(time, kind="stable")
    t, e = time[order], event[order]
    distinct, first = np.unique(t, return_index=True)
    at_risk = len(t) - first
    deaths = np.add.reduceat(e.astype(float), first)
    return _hazard(distinct, np.cumsum(deaths / at_risk))


def _cox_parts(
    design: pd.DataFrame, time: np.ndarray, event: np.ndarray, ties: str
) -> tuple[pd.Series, CumulativeHazard | None]:
    work = design.assign(_time=time, _event=event.astype(int))
    names = list(design.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a nuisance model's convergence notes are not the study's
        fit = cox(work, "_time", "_event", names, ties=ties)  # type: ignore[arg-type]
    coefficients = fit.summary["coef"].astype(float)
    base = baseline_hazard(fit)
    return coefficients, _hazard(base["time"].to_numpy(float), base["cumhaz"].to_numpy(float))


def _nuisance(
    design: pd.DataFrame, time: np.ndarray, event: np.ndarray, ties: str, what: str, notes: list[str]
) -> tuple[np.ndarray, CumulativeHazard | None]:
    """(coefficients per design column, baseline) of a censoring or competing-event model.

    Covariate-free (zero coefficients, Nelson-Aalen) when there are few events or the Cox model fails.
    """
    zeros = np.zeros(design.shape[1])
    if int(event.sum()) == 0:
        return zeros, None
    if int(event.sum()) > 2 * max(design.shape[1], 1):
        try:
            coefficients, base = _cox_parts(design, time, event, ties)
            values = coefficients.reindex(design.columns).to_numpy(dtype=float)
            if np.all(np.isfinite(values)):
                return values, base
        except Exception:
            pass
    notes.append(f"{what}: Cox model not fitted (few events or no convergence); Nelson-Aalen without covariates")
    return zeros, _nelson_aalen(time, event)


def fit_plasmode(
    frame: pd.DataFrame,
    *,
    outcomes: Mapping[str, bool],
    exposure_covariates: Sequence[str],
    outcome_covariates: Sequence[str],
    exposure: str = "exposed",
    link: str = "logit",
    ties: str = "efron",
) -> PlasmodeModel:
    """Fit the exposure, outcome, competing-event and censoring models of a plasmode simulation.

    Parameters
    ----------
    frame : DataFrame
        One row per patient, no missing values in the columns used: ``exposure`` (0/1),
        the covariates, and ``<name>_time`` (days) / ``<name>_status`` per outcome
        (0 censored, 1 the outcome, 2 the competing event).
    outcomes : mapping
        Outcome name -> whether it has a competing event (Fine-Gray) or not (Cox).
    exposure_covariates, outcome_covariates : sequences of column names
        The propensity model's and the outcome models' covariates.
    exposure : the 0/1 exposure column.
    link : "logit" or "probit", the propensity model's link.
    ties : "efron" or "breslow", for the Cox models.

    Returns
    -------
    PlasmodeModel

    Raises
    ------
    InputError
        An outcome has no events, or the exposure model cannot be fitted.
    """
    notes: list[str] = []
    exposure_covariates = tuple(exposure_covariates)
    outcome_covariates = tuple(outcome_covariates)
    if exposure_covariates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ps = propensity_score(frame, exposure, list(exposure_covariates), link=link)  # type: ignore[arg-type]
        probability = ps.score.to_numpy(dtype=float)
    else:
        probability = np.full(len(frame), float(frame[exposure].mean()))
    design = _design(frame, outcome_covariates)
    x = design.to_numpy(float)
    with_exposure = design.assign(_exposure=frame[exposure].to_numpy(dtype=float))
    models: dict[str, OutcomeModel] = {}
    for name, competing in outcomes.items():
        time = frame[f"{name}_time"].to_numpy(dtype=float)
        status = frame[f"{name}_status"].to_numpy()
        tau = float(time.max())
        if int((status == 1).sum()) == 0:
            raise InputError(
                f"outcome {name!r}: no events in the cohort (column {name}_status has no 1): there is no "
                "outcome model to simulate from; check the outcome's definition or leave it out"
            )
        if competing:
            work = with_exposure.assign(_time=time, _status=status.astype(int))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fine_gray(work, "_time", "_status", list(with_exposure.columns), cause=1, censor_code=0)
            coefs = fit.summary["coef"].astype(float)
            base = _hazard(fit.baseline["time"].to_numpy(float), fit.baseline["cumulative_hazard"].to_numpy(float))
            # Fitted among the patients without the outcome: their death times are what a patient not
            # drawn to cause 1 must follow (a fit on everyone would treat cause 1 as censoring and give
            # the cause-specific hazard, too low for this conditional draw).
            others = status != 1
            competing_coefs, competing_base = _nuisance(
                design.loc[others], time[others], status[others] == 2, ties, f"{name}: competing-event model", notes
            )
            competing_linear = x @ competing_coefs
        else:
            coefs, base = _cox_parts(with_exposure, time, status == 1, ties)
            competing_linear, competing_base = None, None
        if base is None or not np.all(np.isfinite(coefs.to_numpy())):
            raise InputError(
                f"outcome {name!r}: the outcome model could not be fitted to the cohort (non-finite "
                "coefficients: a covariate separates the events); simplify [analysis] adjust"
            )
        censored_early = (status == 0) & (time < tau)
        censoring_coefs, censoring_base = _nuisance(
            design, time, censored_early, ties, f"{name}: censoring model", notes
        )
        censoring_linear = x @ censoring_coefs
        covariate_coefs = coefs.drop("_exposure")
        models[name] = OutcomeModel(
            name=name,
            competing=bool(competing),
            coefficients=covariate_coefs,
            fitted_effect=float(math.exp(coefs["_exposure"])),
            linear=x @ covariate_coefs.reindex(design.columns).to_numpy() if design.shape[1] else np.zeros(len(frame)),
            baseline=base,
            competing_linear=competing_linear,
            competing_baseline=competing_base,
            censoring_linear=censoring_linear,
            censoring_baseline=censoring_base,
            tau=tau,
        )
    return PlasmodeModel(
        exposure_probability=probability,
        exposure_covariates=exposure_covariates,
        outcome_covariates=outcome_covariates,
        outcomes=models,
        ties=ties,
        notes=tuple(notes),
    )


def _event_times(baseline: CumulativeHazard | None, linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draws = rng.standard_exponential(len(linear))
    if baseline is None:
        return np.full(len(linear), np.inf)
    return baseline.invert(draws / np.exp(linear))


def _outcome_draw(
    model: OutcomeModel, exposed: np.ndarray, log_effect: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(time, status) of one outcome for given exposures, before censoring (``inf``: no event by tau)."""
    linear = model.linear + log_effect * exposed
    time = _event_times(model.baseline, linear, rng)
    status = np.where(np.isfinite(time), 1, 0)
    if model.competing:
        # not drawn to cause 1: the competing event from its own cause-specific model, or event-free
        other = _event_times(model.competing_baseline, np.asarray(model.competing_linear), rng)
        status = np.where(np.isfinite(time), 1, np.where(np.isfinite(other), 2, 0))
        time = np.where(np.isfinite(time), time, other)
    return time, status


def simulate(
    model: PlasmodeModel, frame: pd.DataFrame, effect: float, rng: np.random.Generator, exposure: str = "exposed"
) -> pd.DataFrame:
    """One plasmode replicate: ``frame`` with new exposure and outcome columns, the planted ``effect``.

    Parameters
    ----------
    model : from :func:`fit_plasmode` on ``frame``.
    frame : the frame the model was fitted on (covariates kept as they are).
    effect : the planted conditional hazard ratio (Cox outcomes) or subdistribution hazard
        ratio (competing-risk outcomes), > 0.
    rng : the replicate's generator; the draws are, in order, the exposure, then per outcome
        the event, competing-event and censoring times.

    Returns
    -------
    DataFrame
        A copy of ``frame`` with ``exposure``, ``<outcome>_time`` and ``<outcome>_status`` replaced.
    """
    if not (isinstance(effect, (int, float)) and math.isfinite(effect) and effect > 0):
        raise InputError(f"effect {effect!r}: a hazard ratio must be a finite number > 0")
    if len(frame) != len(model.exposure_probability):
        raise InputError(
            f"simulate: the frame has {len(frame)} rows but the plasmode model was fitted on "
            f"{len(model.exposure_probability)}; pass the frame the model was fitted on"
        )
    out = frame.copy()
    exposed = (rng.random(len(frame)) < model.exposure_probability).astype(np.int64)
    out[exposure] = exposed
    log_effect = math.log(effect)
    for name, m in model.outcomes.items():
        time, status = _outcome_draw(m, exposed, log_effect, rng)
        censor = _event_times(m.censoring_baseline, m.censoring_linear, rng)
        observed = np.minimum(np.minimum(time, censor), m.tau)
        status = np.where(time <= np.minimum(censor, m.tau), status, 0)
        out[f"{name}_time"] = observed
        out[f"{name}_status"] = status.astype(np.int64)
    return out


def marginal_truth(
    model: PlasmodeModel, effect: float, rng: np.random.Generator, size: int = 20_000
) -> dict[str, float]:
    """The marginal (s)HR among the exposed (ATT) implied by a planted conditional ``effect``, per outcome.

    Counterfactual simulation (Austin 2013, Stat Med 32:2837-2849): ``size``
    patients are drawn from the cohort with probability proportional to
    their exposure probability (the covariate distribution of the exposed);
    each gets an outcome under exposure and another under no exposure, with
    no censoring before ``tau``; the exposure's coefficient of an unadjusted
    Cox (Fine-Gray) model on the ``2 * size`` rows is the marginal truth.
    At ``effect = 1`` the truth is exactly 1 and is returned without simulation.
    """
    if effect == 1.0:
        return {name: 1.0 for name in model.outcomes}
    p = model.exposure_probability / model.exposure_probability.sum()
    rows = rng.choice(len(p), size=size, p=p)
    out: dict[str, float] = {}
    for name, m in model.outcomes.items():
        sub = OutcomeModel(
            **{
                **m.__dict__,
                "linear": m.linear[rows],
                "competing_linear": None if m.competing_linear is None else m.competing_linear[rows],
            }
        )
        times, statuses = [], []
        for arm in (1, 0):
            time, status = _outcome_draw(sub, np.full(size, arm), math.log(effect), rng)
            status = np.where(time <= m.tau, status, 0)
            times.append(np.minimum(time, m.tau))
            statuses.append(status)
        work = pd.DataFrame(
            {
                "time": np.concatenate(times),
                "status": np.concatenate(statuses).astype(int),
                "exposed": np.repeat([1.0, 0.0], size),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if m.competing:
                summary = fine_gray(work, "time", "status", ["exposed"], cause=1, censor_code=0).summary
            else:
                summary = cox(work, "time", "status", ["exposed"], ties=model.ties).summary  # type: ignore[arg-type]
        out[name] = math.exp(float(summary["coef"].to_numpy(dtype=float)[0]))
    return out


# --------------------------------------------------------------------------- the emulated target trial


@dataclass(frozen=True)
class TrialModel:
    """The fitted models of a target-trial plasmode (one outcome without a competing event).

    Arrays are aligned to the rows of the trial frame passed to :func:`fit_trial_plasmode`.
    ``start_*``: Cox model of the time to the exposure start within the grace window (latent start
    time ``S``); ``outcome_*``: Cox model of the outcome with the exposure as a time-varying covariate
    ``1[t > S]`` (its fitted hazard ratio ``fitted_effect``; the simulation plants its own);
    ``censoring_*``: Cox model of censoring before ``tau``.
    """

    grace_days: float
    horizon_days: float
    tau: float
    covariates: tuple[str, ...]
    start_linear: np.ndarray
    start_baseline: CumulativeHazard | None
    outcome_linear: np.ndarray
    outcome_baseline: CumulativeHazard
    censoring_linear: np.ndarray
    censoring_baseline: CumulativeHazard | None
    fitted_effect: float
    notes: tuple[str, ...] = ()
    # competing event (status 2): its cause-specific model, starting as a time-varying covariate with its
    # fitted (not planted) log hazard ratio; None without a competing event
    competing_linear: np.ndarray | None = None
    competing_baseline: CumulativeHazard | None = None
    competing_log_effect: float = 0.0


def _cumhaz_at(baseline: CumulativeHazard | None, t: np.ndarray) -> np.ndarray:
    """``H(t)``, linear between the jump times, constant beyond the last one (``inf`` stays ``inf``)."""
    if baseline is None:
        return np.zeros_like(t, dtype=float)
    knots_t = np.concatenate(([0.0], baseline.time))
    knots_h = np.concatenate(([0.0], baseline.cumhaz))
    return np.interp(np.minimum(t, knots_t[-1]), knots_t, knots_h)


def _time_varying_cox(
    design: pd.DataFrame,
    t: np.ndarray,
    event: np.ndarray,
    started: np.ndarray,
    start_t: np.ndarray,
    ties: str,
    what: str,
) -> tuple[pd.Series, CumulativeHazard]:
    """Cox model of ``event`` with the trial's covariates and starting ``1[t > S]`` as a time-varying covariate.

    Counting-process rows split at the start (``_a`` = 0 before, 1 after). Returns the coefficients
    (``_a`` included) and the baseline cumulative hazard; an InputError when it cannot be fitted.
    """
    before = pd.DataFrame({"_entry": 0.0, "_exit": np.where(started, start_t, t), "_event": (~started) & event})
    before = pd.concat([before, design.assign(_a=0.0)], axis=1)
    after = pd.DataFrame({"_entry": start_t, "_exit": t, "_event": event})
    after = pd.concat([after, design.assign(_a=1.0)], axis=1).loc[started & (t > start_t)]
    rows = pd.concat([before.loc[before["_exit"] > 0], after], ignore_index=True)
    rows["_event"] = rows["_event"].astype(int)
    names = [*design.columns, "_a"]
    before_events = int(rows.loc[rows["_a"] == 0, "_event"].sum())
    after_events = int(rows.loc[rows["_a"] == 1, "_event"].sum())
    if before_events == 0 or after_events == 0:
        # no count in the message: it reaches design_check.json, and small counts must not
        side = "before a start (or without one)" if before_events == 0 else "after a start"
        raise InputError(
            f"target-trial plasmode: no event of {what} {side} in the trial's frame; the effect of starting "
            "cannot be fitted without events on both sides: the trial cannot be simulated from this cohort"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = cox(rows, "_exit", "_event", names, entry="_entry", ties=ties)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(
            f"target-trial plasmode: the model of {what} (the trial's covariates and starting as a time-varying "
            f"covariate) could not be fitted to the trial's frame: {exc}"
        ) from None
    coefs = fit.summary["coef"].astype(float)
    base_frame = baseline_hazard(fit)
    base = _hazard(base_frame["time"].to_numpy(float), base_frame["cumhaz"].to_numpy(float))
    if base is None or not np.all(np.isfinite(coefs.to_numpy())):
        raise InputError(
            f"target-trial plasmode: the model of {what} could not be fitted to the trial's frame (non-finite "
            "coefficients: a covariate separates the events); simplify [analysis.target_trial] covariates"
        )
    return coefs, base


def fit_trial_plasmode(
    frame: pd.DataFrame,
    *,
    covariates: Sequence[str],
    grace_days: float,
    horizon_days: float,
    start_time: str = "exposure_start_days",
    time: str = "time",
    status: str = "status",
    ties: str = "efron",
    competing: bool = False,
) -> TrialModel:
    """Fit the start, outcome and censoring models of a target-trial plasmode simulation.

    Parameters
    ----------
    frame : DataFrame
        The trial's frame (``pipeline.trial_frame``): one row per patient eligible at the index,
        ``start_time`` (days from the index to the first start, NaN = none), ``time`` (> 0) and
        ``status`` (0 censored, 1 the outcome, 2 the competing event when ``competing``) and the
        numeric ``covariates``.
    covariates : the baseline covariates of the start, outcome and censoring models.
    grace_days, horizon_days : the grace window ``(0, grace_days]`` and the trial's horizon.
    ties : "efron" or "breslow".
    competing : status 2 is a competing event: the outcome's model is then its cause-specific hazard
        (competing events censor it) and the competing event gets its own cause-specific model with
        starting as a time-varying covariate (its fitted effect kept).

    Returns
    -------
    TrialModel

    Raises
    ------
    InputError
        A status code other than 0/1 (0/1/2 with ``competing``), nobody starting within the window,
        or no outcome event (before and after a start).
    """
    notes: list[str] = []
    covariates = tuple(covariates)
    t = frame[time].to_numpy(dtype=float)
    d = frame[status].to_numpy()
    codes = (0, 1, 2) if competing else (0, 1)
    if np.isin(d, codes, invert=True).any():
        raise InputError(
            f"target-trial plasmode: column {status!r} has codes other than {list(codes)} in "
            f"{int(np.isin(d, codes, invert=True).sum())} rows"
            + ("" if competing else " (a competing event, code 2, needs competing=True)")
        )
    s = frame[start_time].to_numpy(dtype=float)
    started = np.isfinite(s) & (s <= grace_days) & (s <= t)
    if not started.any():
        raise InputError(
            f"target-trial plasmode: nobody in the trial's frame starts within the grace window ({grace_days:g} "
            "days): there is no start-time model to simulate from"
        )
    if int((d == 1).sum()) == 0:
        raise InputError("target-trial plasmode: no outcome event in the trial's frame; nothing to simulate from")
    design = frame[list(covariates)].astype(float).reset_index(drop=True)
    design = design.loc[:, design.std() > 0] if design.shape[1] else design
    x = design.to_numpy(float)
    # Time to start: at risk from the index to the start, the end of follow-up or the window's end.
    # A start at the index (day 0) is put just after it: the Cox model needs a positive time.
    start_t = np.where(started, np.maximum(s, 1e-6), np.minimum(t, grace_days))
    start_coefs, start_base = _nuisance(design, start_t, started, ties, "start-time model", notes)
    coefs, outcome_base = _time_varying_cox(design, t, d == 1, started, start_t, ties, "the outcome")
    competing_linear, competing_base, competing_log_effect = None, None, 0.0
    if competing:
        try:
            c_coefs, competing_base = _time_varying_cox(
                design, t, d == 2, started, start_t, ties, "the competing event"
            )
            competing_log_effect = float(c_coefs["_a"])
            c_values = c_coefs.drop("_a").reindex(design.columns).to_numpy(dtype=float)
        except InputError as exc:
            # the competing event without an effect of starting: covariates only (or none), and a note
            notes.append(f"competing-event model: starting left out ({exc})")
            c_values, competing_base = _nuisance(design, t, d == 2, ties, "competing-event model", notes)
        competing_linear = x @ c_values if design.shape[1] else np.zeros(len(frame))
    tau = float(t.max())
    censored_early = (d == 0) & (t < tau)
    cens_coefs, cens_base = _nuisance(design, t, censored_early, ties, "trial censoring model", notes)
    beta = coefs.drop("_a").reindex(design.columns).to_numpy(dtype=float)
    return TrialModel(
        grace_days=float(grace_days),
        horizon_days=float(horizon_days),
        tau=tau,
        covariates=tuple(design.columns),
        start_linear=x @ start_coefs if design.shape[1] else np.zeros(len(frame)),
        start_baseline=start_base,
        outcome_linear=x @ beta if design.shape[1] else np.zeros(len(frame)),
        outcome_baseline=outcome_base,
        censoring_linear=x @ cens_coefs if design.shape[1] else np.zeros(len(frame)),
        censoring_baseline=cens_base,
        fitted_effect=float(math.exp(coefs["_a"])),
        notes=tuple(notes),
        competing_linear=competing_linear,
        competing_baseline=competing_base,
        competing_log_effect=competing_log_effect,
    )


def _latent_start(model: TrialModel, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Latent start times (inversion of the start model); ``inf`` when not within the grace window."""
    s = _event_times(model.start_baseline, model.start_linear[rows], rng)
    return np.where(s <= model.grace_days, s, np.inf)


def _switch_times(
    baseline: CumulativeHazard | None, linear: np.ndarray, start: np.ndarray, log_effect: float, e: np.ndarray
) -> np.ndarray:
    """Event times with hazard ``h0(t) exp(linear)`` before ``start`` and ``exp(log_effect)`` times it after.

    ``e`` are the Exp(1) draws, so the two strategies of a patient share them (common random numbers).
    """
    if baseline is None:
        return np.full(len(linear), np.inf)
    risk = np.exp(linear)
    h_start = _cumhaz_at(baseline, start) * risk  # H(S) of the patient (inf start: H at the last jump)
    unexposed = baseline.invert(e / risk)
    rest = _cumhaz_at(baseline, start) + (e - h_start) / (risk * math.exp(log_effect))
    exposed = baseline.invert(rest)
    return np.where(np.isfinite(start) & (e > h_start), exposed, unexposed)


def _trial_events(
    model: TrialModel, rows: np.ndarray, start: np.ndarray, log_effect: float, e: np.ndarray, e2: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(time, code) of the first event, before censoring: 1 the outcome (planted effect of starting), 2 the
    competing event (its fitted effect of starting), ``inf`` / 0 for none."""
    t1 = _switch_times(model.outcome_baseline, model.outcome_linear[rows], start, log_effect, e)
    if model.competing_linear is None or e2 is None:
        return t1, np.where(np.isfinite(t1), 1, 0)
    t2 = _switch_times(model.competing_baseline, model.competing_linear[rows], start, model.competing_log_effect, e2)
    first = np.minimum(t1, t2)
    return first, np.where(~np.isfinite(first), 0, np.where(t1 <= t2, 1, 2))


def simulate_trial(
    model: TrialModel,
    frame: pd.DataFrame,
    effect: float,
    rng: np.random.Generator,
    start_time: str = "exposure_start_days",
    time: str = "time",
    status: str = "status",
) -> pd.DataFrame:
    """One target-trial replicate: new start times and outcomes with a planted effect of *starting*.

    The data-generating model: a latent start time ``S`` from the start model (no start when it falls
    beyond the grace window); the outcome's hazard is ``h0(t) exp(x beta)`` before ``S`` and
    ``effect`` times that from ``S`` on (exposure is time-varying); a start after the end of follow-up
    (the outcome or censoring came first) is not observed. Censoring from the censoring model and at
    ``tau``. With a competing event (status 2) its cause-specific hazard switches at ``S`` as well,
    by its fitted (not the planted) hazard ratio; the first event is the one observed.

    Parameters
    ----------
    model : from :func:`fit_trial_plasmode` on ``frame``.
    frame : the trial frame the model was fitted on (covariates kept).
    effect : the planted hazard ratio of being started (> 0).
    rng : the replicate's generator (draws: start, outcome, censoring, then competing-event times).

    Returns
    -------
    DataFrame
        A copy of ``frame`` with ``start_time``, ``time`` and ``status`` replaced.
    """
    if not (isinstance(effect, (int, float)) and math.isfinite(effect) and effect > 0):
        raise InputError(f"effect {effect!r}: a hazard ratio must be a finite number > 0")
    if len(frame) != len(model.outcome_linear):
        raise InputError(
            f"simulate_trial: the frame has {len(frame)} rows but the model was fitted on "
            f"{len(model.outcome_linear)}; pass the frame the model was fitted on"
        )
    rows = np.arange(len(frame))
    start = _latent_start(model, rows, rng)
    e = rng.standard_exponential(len(frame))
    censor = _event_times(model.censoring_baseline, model.censoring_linear, rng)
    # the competing event's draw last, so a study without one draws exactly as before
    e2 = rng.standard_exponential(len(frame)) if model.competing_linear is not None else None
    t_event, code = _trial_events(model, rows, start, math.log(effect), e, e2)
    observed = np.minimum(np.minimum(t_event, censor), model.tau)
    out = frame.copy()
    out[time] = observed
    out[status] = np.where(t_event <= np.minimum(censor, model.tau), code, 0).astype(np.int64)
    out[start_time] = np.where(start < observed, start, np.nan)
    return out


TRIAL_ESTIMANDS = ("risk_difference", "risk_ratio", "hazard_ratio")


def trial_truth(
    model: TrialModel,
    effect: float,
    rng: np.random.Generator,
    size: int = 20_000,
    stabilised: bool = True,
    interval_days: float | None = None,
) -> dict[str, float]:
    """The true risks, risk difference / ratio at the horizon and HR of the emulated trial's strategies.

    Counterfactual simulation of ``size`` patients drawn from the trial's cohort (uniformly: the
    trial's population is everybody eligible at the index), no censoring before the horizon, with
    the same Exp(1) draw under both strategies:

    * **start** ("start at one's own pace within the window, at its end at the latest"): the patient
      starts at the latent start time ``S`` from the start model when it falls in the window (the
      natural course inside the window), else at the window's end ``grace_days`` if still event-free;
    * **no_start**: never starts.

    The risks are of the outcome (code 1) by the horizon; with a competing event, its cumulative
    incidence (the competing event's hazard also switches at the start, by its fitted effect).
    The hazard ratio is that of a Cox model (Efron) of the two arms' times on the ``2 * size`` rows,
    administratively censored at the horizon: the contrast of strategies the clone-censor-weight Cox
    model estimates, not the conditional effect of being exposed. The strategies' hazards are not
    proportional (nearly equal inside the window, apart after it; cause-specific with a competing
    event, which then censors), so this HR is an average over time
    that depends on the weight of each arm's risk set. With ``stabilised`` weights (the clone-censor-
    weight default) the no-start clones in grace interval k weigh ``P(not started by its middle)`` and
    ``P(not started by the window's end)`` after it, the start clones 1 inside the window and
    ``P(started by its end)`` after it (the time-only numerators); the truth's rows get the same
    weights, with those probabilities the shares of the latent start times (``interval_days``: the
    grace intervals; None: one). Unstabilised: weight 1.
    """
    rows = rng.integers(0, len(model.outcome_linear), size=size)
    start = _latent_start(model, rows, rng)
    start = np.where(np.isfinite(start), start, model.grace_days)
    e = rng.standard_exponential(size)
    e2 = rng.standard_exponential(size) if model.competing_linear is not None else None
    log_effect = math.log(effect)
    t_start, c_start = _trial_events(model, rows, start, log_effect, e, e2)
    t_none, c_none = _trial_events(model, rows, np.full(size, np.inf), log_effect, e, e2)
    h = model.horizon_days
    # the risk of the outcome (code 1) by the horizon: with a competing event, its cumulative incidence
    risk_start = float(((t_start <= h) & (c_start == 1)).mean())
    risk_none = float(((t_none <= h) & (c_none == 1)).mean())
    g = model.grace_days
    cuts = np.array([0.0, g])
    if interval_days is not None and interval_days > 0:
        cuts = np.unique(np.concatenate((np.arange(0.0, g, interval_days), [g])))
    latent = _latent_start(model, rows, rng)  # a fresh draw: the population's start-time distribution
    pieces = []
    for arm, t_arm, c_arm in ((1.0, t_start, c_start), (0.0, t_none, c_none)):
        stop_all = np.minimum(t_arm, h)
        # a competing event censors (the cause-specific HR, as clone_censor_weight's Cox model)
        event_all = ((t_arm <= h) & (c_arm == 1)).astype(int)
        periods = [*zip(cuts[:-1], cuts[1:], strict=True), (g, np.inf)]  # noqa: RUF007
        for lo, hi in periods:
            keep = stop_all > lo
            if not stabilised:
                w = 1.0
            elif hi == np.inf:
                w = float((latent <= g).mean()) if arm == 1.0 else float((latent > g).mean())
            else:
                w = 1.0 if arm == 1.0 else float((latent > (lo + hi) / 2).mean())
            stop = np.minimum(stop_all[keep], hi)
            pieces.append(
                pd.DataFrame(
                    {
                        "entry": lo,
                        "time": stop,
                        "status": np.where(stop_all[keep] <= hi, event_all[keep], 0),
                        "arm": arm,
                        "w": w,
                    }
                )
            )
    work = pd.concat(pieces, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = cox(work, "time", "status", ["arm"], entry="entry", weights="w")
        coef = float(fit.summary["coef"].iloc[0])
    return {
        "risk_start": risk_start,
        "risk_no_start": risk_none,
        "risk_difference": risk_start - risk_none,
        "risk_ratio": risk_start / risk_none if risk_none > 0 else math.nan,
        "hazard_ratio": math.exp(coef),
    }
