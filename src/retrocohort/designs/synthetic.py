"""A synthetic grace-period cohort with a planted effect of starting the exposure (issue #11).

One row per patient, time zero = the index. Severity drives both death and the timing of the exposure
start; the exposure can only start within the grace window and only while the patient is alive, so a
naive "ever exposed within the window, from the index" comparison credits the exposed with immortal time.

Model (all rates per day)::

    severity ~ N(0, 1),  frail ~ Bernoulli(0.3)
    death hazard    = base_hazard * exp(0.7 severity + 0.5 frail) * (early_multiplier within the window)
                      * (effect_hr once started)
    start hazard    = start_rate * exp(-0.4 severity)  on (0, grace_days], none after it
    censoring time  ~ Uniform(10, 45)

The planted values are ``effect_hr`` (the hazard ratio of death after starting, conditional on
severity and frailty) and the risks at the horizon under the two strategies of the emulated trial,
computed by Monte Carlo on ``truth_n`` fresh patients: "start within the window" (each patient starts at
its own natural start time, at the latest when the window closes; dies unexposed if death comes first)
and "do not start within the window" (never starts).
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


def _death_times(
    rng: np.random.Generator, rate: np.ndarray, start: np.ndarray, effect_hr: float, grace_days: float, early: float
) -> np.ndarray:
    """Death when the cumulative hazard reaches an Exp(1) draw.

    The hazard is ``rate`` times ``early`` inside the grace window (the early ICU deaths that make the
    immortal time) times ``effect_hr`` once started: piecewise constant between 0, min(start, window),
    max(start, window), so the inverse is exact.
    """
    target = rng.exponential(size=rate.size)
    a = np.minimum(start, grace_days)
    b = np.maximum(start, grace_days)
    started_first = start < grace_days
    h1 = rate * early  # before the start and inside the window
    h2 = rate * np.where(started_first, early * effect_hr, 1.0)  # between a and b
    h3 = rate * effect_hr  # after both (only reached when the patient started)
    c1 = h1 * a
    with np.errstate(invalid="ignore"):  # inf - inf where the patient never starts; not used there
        c2 = c1 + h2 * (b - a)
        t1 = target / h1
        t2 = a + (target - c1) / h2
        t3 = b + (target - c2) / h3
    return np.where(target <= c1, t1, np.where(target <= c2, t2, t3))


def _covariates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=n), (rng.random(n) < 0.3).astype(float)


def grace_period_cohort(
    n: int,
    *,
    seed: int = 1,
    grace_days: float = 2.0,
    horizon_days: float = 28.0,
    effect_hr: float = 0.6,
    base_hazard: float = 0.02,
    start_rate: float = 0.5,
    early_multiplier: float = 4.0,
    truth_n: int = 400_000,
) -> GracePeriodCohort:
    """Simulate ``n`` patients (see the module docstring); ``truth_n`` = 0 skips the Monte Carlo truth."""
    rng = np.random.default_rng(seed)
    severity, frail = _covariates(rng, n)
    rate = base_hazard * np.exp(0.7 * severity + 0.5 * frail)
    start_hazard = start_rate * np.exp(-0.4 * severity)
    natural_start = rng.exponential(size=n) / start_hazard
    start = np.where(natural_start <= grace_days, natural_start, np.inf)
    death = _death_times(rng, rate, start, effect_hr, grace_days, early_multiplier)
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
        h = start_rate * np.exp(-0.4 * sev)
        # start at one's own natural start time, at the latest when the window closes: the strategy the
        # clones of "start within the window" emulate (those not started by then are represented, after
        # the window, by starters like them)
        s = np.minimum(t_rng.exponential(size=truth_n) / h, grace_days)
        death_start = _death_times(t_rng, r, s, effect_hr, grace_days, early_multiplier)
        death_never = _death_times(t_rng, r, np.full(truth_n, np.inf), effect_hr, grace_days, early_multiplier)
        risk_start = float(np.mean(death_start <= horizon_days))
        risk_no = float(np.mean(death_never <= horizon_days))
        truth.update(
            risk_start=risk_start,
            risk_no_start=risk_no,
            risk_difference=risk_start - risk_no,
            risk_ratio=risk_start / risk_no,
            truth_n=truth_n,
        )
    return GracePeriodCohort(frame=frame, truth=truth, grace_days=grace_days, horizon_days=horizon_days)
