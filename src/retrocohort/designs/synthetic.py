"""A synthetic grace-period cohort with a planted effect of starting the exposure (issue #11).

One row per patient, time zero = the index. Severity drives both death and the timing of the exposure
start; the exposure can only start within the grace window and only while the patient is alive, so a
naive "ever exposed within the window, from the index" comparison credits the exposed with immortal time.

Model (all rates per day)::

    severity ~ N(0, 1),  frail ~ Bernoulli(0.3)
    death hazard    = base_hazard * exp(0.7 severity + 0.5 frail) * (effect_hr once started)
    start hazard    = start_rate * exp(-0.6 severity)  on (0, grace_days], none after it
    censoring time  ~ Uniform(10, 45)

The planted values are ``effect_hr`` (the hazard ratio of death after starting, conditional on
severity and frailty) and the risks at the horizon under the two strategies of the emulated trial,
computed by Monte Carlo on ``truth_n`` fresh patients: "start within the window" (each patient starts at
a time drawn from its own start-time distribution conditional on starting within the window; dies
unexposed if death comes first) and "do not start within the window" (never starts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GracePeriodCohort:
    """The frame (columns ``time``, ``status``, ``start`` (NaN = never), ``severity``, ``frail``) and the truth.

    ``truth``: ``effect_hr``, ``risk_start``, ``risk_no_start``, ``risk_difference``, ``risk_ratio`` at
    ``horizon_days``; ``grace_days``, ``horizon_days``.
    """

    frame: pd.DataFrame
    truth: dict
    grace_days: float
    horizon_days: float


def _death_times(rng: np.random.Generator, rate: np.ndarray, start: np.ndarray, effect_hr: float) -> np.ndarray:
    """Death when the cumulative hazard rate*min(t, s) + rate*hr*(t - s)+ reaches an Exp(1) draw."""
    target = rng.exponential(size=rate.size)
    unexposed = target / rate
    with np.errstate(invalid="ignore"):  # inf - inf where the patient never starts; not used there
        after = start + (target - rate * start) / (rate * effect_hr)
    return np.where(unexposed <= start, unexposed, after)


def _covariates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=n), (rng.random(n) < 0.3).astype(float)


def grace_period_cohort(n: int, *, seed: int = 1, grace_days: float = 2.0, horizon_days: float = 28.0,
                        effect_hr: float = 0.6, base_hazard: float = 0.02, start_rate: float = 0.6,
                        truth_n: int = 400_000) -> GracePeriodCohort:
    """Simulate ``n`` patients (see the module docstring); ``truth_n`` = 0 skips the Monte Carlo truth."""
    rng = np.random.default_rng(seed)
    severity, frail = _covariates(rng, n)
    rate = base_hazard * np.exp(0.7 * severity + 0.5 * frail)
    start_hazard = start_rate * np.exp(-0.6 * severity)
    natural_start = rng.exponential(size=n) / start_hazard
    start = np.where(natural_start <= grace_days, natural_start, np.inf)
    death = _death_times(rng, rate, start, effect_hr)
    censor = rng.uniform(10.0, 45.0, n)
    time = np.minimum(death, censor)
    status = (death <= censor).astype(int)
    start = np.where(start < time, start, np.nan)  # the dead are never exposed: the immortal time
    frame = pd.DataFrame({"time": time, "status": status, "start": start, "severity": severity, "frail": frail})
    truth: dict = {"effect_hr": effect_hr}
    if truth_n:
        t_rng = np.random.default_rng([seed, 99])
        sev, fr = _covariates(t_rng, truth_n)
        r = base_hazard * np.exp(0.7 * sev + 0.5 * fr)
        h = start_rate * np.exp(-0.6 * sev)
        # a start time drawn from the patient's own start distribution given a start within the window
        u = t_rng.random(truth_n)
        s = -np.log1p(-u * -np.expm1(-h * grace_days)) / h
        risk_start = float(np.mean(_death_times(t_rng, r, s, effect_hr) <= horizon_days))
        risk_no = float(np.mean(t_rng.exponential(size=truth_n) / r <= horizon_days))
        truth.update(risk_start=risk_start, risk_no_start=risk_no, risk_difference=risk_start - risk_no,
                     risk_ratio=risk_start / risk_no, truth_n=truth_n)
    return GracePeriodCohort(frame=frame, truth=truth, grace_days=grace_days, horizon_days=horizon_days)
