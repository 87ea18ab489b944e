"""Plasmode numerics on simulated covariates where the truth is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retrocohort.designs.plasmode import CumulativeHazard, fit_plasmode, marginal_truth, simulate
from retrocohort.errors import InputError
from retrocohort.survival import cox, fine_gray


def frame(n: int = 800, seed: int = 0, competing: bool = False) -> pd.DataFrame:
    """Covariates x (normal), g (a/b/c), exposure from a logistic model, exponential outcome, censoring at 60."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    g = rng.choice(["a", "b", "c"], n)
    exposed = rng.binomial(1, 1 / (1 + np.exp(-(-1.0 + 0.8 * x))))
    rate = 0.02 * np.exp(0.7 * x + 0.5 * (g == "c") + math.log(0.6) * exposed)
    t = rng.exponential(1 / rate)
    early = rng.exponential(200, n)  # censoring before the end of follow-up
    status = np.where(t <= np.minimum(early, 60), 1, 0)
    time = np.minimum(np.minimum(t, early), 60)
    out = pd.DataFrame({"exposed": exposed, "x": x, "g": g, "y_time": time, "y_status": status})
    if competing:
        death = rng.exponential(1 / 0.01, n)
        out["y_status"] = np.where(death < out["y_time"], 2, out["y_status"])
        out["y_time"] = np.minimum(out["y_time"], death)
    return out


def test_cumulative_hazard_inverts_linearly_and_is_infinite_beyond_the_last_jump():
    h = CumulativeHazard(time=np.array([2.0, 4.0]), cumhaz=np.array([1.0, 3.0]))
    got = h.invert(np.array([0.5, 1.0, 2.0, 3.0, 3.5]))
    assert got[:4] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert math.isinf(got[4])


def test_models_recover_the_generating_coefficients():
    data = frame(n=3000, seed=1)
    model = fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x", "g"])
    y = model.outcomes["y"]
    assert y.coefficients["x"] == pytest.approx(0.7, abs=0.08)
    assert y.coefficients["g=c"] == pytest.approx(0.5, abs=0.15)
    assert y.fitted_effect == pytest.approx(0.6, abs=0.1)
    # the fitted exposure probabilities follow the logistic model (mean near the observed share)
    assert model.exposure_probability.mean() == pytest.approx(data["exposed"].mean(), abs=1e-6)
    assert y.censoring_baseline is not None and y.tau == pytest.approx(60)


def test_simulated_outcomes_carry_the_planted_conditional_hazard_ratio():
    """Pooled over replicates, the correctly specified Cox model recovers the planted HR, not the fitted one."""
    data = frame(n=800, seed=2)
    model = fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x", "g"])
    coefs = []
    for r in range(40):
        sim = simulate(model, data, 1.5, np.random.default_rng(r))
        assert set(sim["y_status"].unique()) <= {0, 1} and sim["y_time"].max() <= 60
        coefs.append(cox(sim, "y_time", "y_status", ["exposed", "x", "g"]).summary.loc["exposed", "coef"])
    mean, mcse = float(np.mean(coefs)), float(np.std(coefs, ddof=1) / math.sqrt(len(coefs)))
    assert abs(mean - math.log(1.5)) < 3 * mcse + 0.02
    assert abs(mean - math.log(0.6)) > 0.5  # the observed effect is replaced, not kept


def test_competing_outcome_carries_the_planted_subdistribution_hazard_ratio():
    data = frame(n=800, seed=3, competing=True)
    model = fit_plasmode(data, outcomes={"y": True}, exposure_covariates=["x"], outcome_covariates=["x", "g"])
    coefs = []
    for r in range(25):
        sim = simulate(model, data, 0.7, np.random.default_rng(r))
        assert (sim["y_status"] == 2).any()
        coefs.append(fine_gray(sim, "y_time", "y_status", ["exposed", "x", "g"]).summary.loc["exposed", "coef"])
    mean, mcse = float(np.mean(coefs)), float(np.std(coefs, ddof=1) / math.sqrt(len(coefs)))
    assert abs(mean - math.log(0.7)) < 3 * mcse + 0.02


def test_marginal_truth_is_attenuated_towards_one_and_exact_at_the_null():
    data = frame(n=800, seed=4)
    model = fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x", "g"])
    assert marginal_truth(model, 1.0, np.random.default_rng(0)) == {"y": 1.0}
    marginal = marginal_truth(model, 0.5, np.random.default_rng(0), size=20_000)["y"]
    # non-collapsibility: with covariates affecting the outcome the marginal HR lies between 0.5 and 1
    assert 0.5 < marginal < 0.9


def test_same_generator_same_replicate():
    data = frame(n=300, seed=5)
    model = fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x"])
    a = simulate(model, data, 0.7, np.random.default_rng(9))
    b = simulate(model, data, 0.7, np.random.default_rng(9))
    c = simulate(model, data, 0.7, np.random.default_rng(10))
    pd.testing.assert_frame_equal(a, b)
    assert not a["y_time"].equals(c["y_time"])


@pytest.mark.parametrize("effect", [0, -0.5, float("nan"), float("inf")])
def test_simulate_refuses_an_impossible_effect(effect):
    data = frame(n=200, seed=6)
    model = fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x"])
    with pytest.raises(InputError, match="finite number > 0"):
        simulate(model, data, effect, np.random.default_rng(0))


def test_an_outcome_without_events_is_an_error_naming_the_column():
    data = frame(n=200, seed=7).assign(y_status=0)
    with pytest.raises(InputError, match="y_status"):
        fit_plasmode(data, outcomes={"y": False}, exposure_covariates=["x"], outcome_covariates=["x"])


# --------------------------------------------------------------------------- the emulated target trial


def trial_frame(n: int = 500, seed: int = 3) -> pd.DataFrame:
    """A grace-window cohort: sicker patients (x high) start sooner and die sooner; HR 0.6 after starting.

    Start hazard 0.35 a day x exp(0.8 x) (about half start in the 2-day window); outcome hazard
    0.03 a day x exp(0.9 x), times 0.6 from the start on; censoring at 30 days.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    z = rng.binomial(1, 0.4, n).astype(float)
    start = rng.exponential(1 / (0.35 * np.exp(0.8 * x + 0.3 * z)))
    start = np.where(start <= 2.0, start, np.inf)
    rate = 0.03 * np.exp(0.9 * x + 0.4 * z)
    e = rng.exponential(1.0, n)
    before = rate * np.minimum(start, 1e9)
    t = np.where(e <= before, e / rate, start + (e - before) / (rate * 0.6))
    time = np.minimum(t, 30.0)
    return pd.DataFrame(
        {
            "exposure_start_days": np.where(start < time, start, np.nan),
            "time": time,
            "status": (t <= 30.0).astype(int),
            "x": x,
            "z": z,
        }
    )


TRIAL_OPTIONS = dict(
    grace_days=2.0, horizon_days=30.0, censoring_model="pooled_logistic", interval_days=0.25, stabilised=True
)


@pytest.fixture(scope="module")
def trial_runs():
    """The trial's plasmode fitted once; 80 replicates per planted effect analysed by clone-censor-weight."""
    from retrocohort.designs import clone_censor_weight
    from retrocohort.designs.plasmode import fit_trial_plasmode, simulate_trial, trial_truth

    data = trial_frame()
    model = fit_trial_plasmode(data, covariates=["x", "z"], grace_days=2.0, horizon_days=30.0)
    out = {"model": model}
    for effect in (1.0, 0.5):
        rng = np.random.default_rng(7)
        ccw, naive = [], []
        for _ in range(80):
            sim = simulate_trial(model, data, effect, rng)
            result = clone_censor_weight(
                sim,
                start_time="exposure_start_days",
                time="time",
                status="status",
                covariates=["x", "z"],
                **TRIAL_OPTIONS,
            )
            ccw.append(result.estimates["risk_difference"])
            # the naive analysis: ever started (at any time) vs never, risk by the horizon, as if from time zero
            ever = sim["exposure_start_days"].notna()
            risk = [float((sim.loc[arm, "status"] == 1).mean()) for arm in (ever, ~ever)]
            naive.append(risk[0] - risk[1])
        truth = trial_truth(model, effect, np.random.default_rng(11), 40_000, stabilised=True, interval_days=0.25)
        out[effect] = (np.array(ccw), np.array(naive), truth)
    return out


def test_trial_plasmode_recovers_the_start_models_direction(trial_runs):
    model = trial_runs["model"]
    # sicker patients start sooner (x raises the start hazard) and die sooner
    x = trial_frame()["x"].to_numpy()
    assert np.corrcoef(x, model.start_linear)[0, 1] > 0.9
    assert np.corrcoef(x, model.outcome_linear)[0, 1] > 0.9
    assert 0.35 < model.fitted_effect < 1.0  # planted 0.6 in the data the model was fitted on


def test_null_effect_the_strategies_are_equal_and_the_emulated_trial_is_unbiased(trial_runs):
    """Planted HR 1: the strategies' risks are equal by construction; the naive ever-started analysis is
    biased (starters had to survive until they started: immortal time), the emulated trial is not."""
    ccw, naive, truth = trial_runs[1.0]
    assert truth["risk_difference"] == 0.0 and truth["hazard_ratio"] == pytest.approx(1.0, abs=1e-9)
    mcse = ccw.std(ddof=1) / math.sqrt(len(ccw))
    assert abs(ccw.mean() - 0.0) < 3 * mcse + 0.005
    naive_mcse = naive.std(ddof=1) / math.sqrt(len(naive))
    assert naive.mean() - 0.0 > 8 * naive_mcse or naive.mean() < -8 * naive_mcse


def test_planted_effect_of_starting_the_emulated_trial_rd_matches_the_counterfactual_truth(trial_runs):
    ccw, naive, truth = trial_runs[0.5]
    assert truth["risk_difference"] < -0.01  # starting helps: the truth is not the null
    mcse = ccw.std(ddof=1) / math.sqrt(len(ccw))
    assert abs(ccw.mean() - truth["risk_difference"]) < 3 * mcse + 0.005
    naive_mcse = naive.std(ddof=1) / math.sqrt(len(naive))
    assert abs(naive.mean() - truth["risk_difference"]) > 5 * naive_mcse


def test_trial_plasmode_refuses_a_competing_event_and_a_cohort_where_nobody_starts():
    from retrocohort.designs.plasmode import fit_trial_plasmode

    data = trial_frame(n=200)
    with pytest.raises(InputError, match=r"codes other than \[0, 1\]"):
        fit_trial_plasmode(data.assign(status=2), covariates=["x"], grace_days=2.0, horizon_days=30.0)
    with pytest.raises(InputError, match=r"nobody .* starts"):
        fit_trial_plasmode(data.assign(exposure_start_days=np.nan), covariates=["x"], grace_days=2.0, horizon_days=30.0)


def test_trial_plasmode_refuses_a_cohort_without_events_before_any_start():
    from retrocohort.designs.plasmode import fit_trial_plasmode

    data = trial_frame(n=200)
    # everybody starts at the index: no unexposed time in which an event could happen
    with pytest.raises(InputError, match="no event of the outcome before a start"):
        fit_trial_plasmode(data.assign(exposure_start_days=0.0), covariates=["x"], grace_days=2.0, horizon_days=30.0)


def competing_trial_frame(n: int = 500, seed: int = 4) -> pd.DataFrame:
    """``trial_frame``'s design with a competing event: hazard 0.04 x exp(0.5 x), times 0.7 after starting."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    z = rng.binomial(1, 0.4, n).astype(float)
    start = rng.exponential(1 / (0.35 * np.exp(0.8 * x + 0.3 * z)))
    start = np.where(start <= 2.0, start, np.inf)

    def switch(rate: np.ndarray, hr: float) -> np.ndarray:
        e = rng.exponential(1.0, n)
        before = rate * np.minimum(start, 1e9)
        return np.where(e <= before, e / rate, start + (e - before) / (rate * hr))

    t1 = switch(0.03 * np.exp(0.9 * x + 0.4 * z), 0.6)
    t2 = switch(0.04 * np.exp(0.5 * x), 0.7)
    first = np.minimum(t1, t2)
    time = np.minimum(first, 30.0)
    status = np.where(first > 30.0, 0, np.where(t1 <= t2, 1, 2))
    return pd.DataFrame(
        {"exposure_start_days": np.where(start < time, start, np.nan), "time": time, "status": status, "x": x, "z": z}
    )


def test_competing_event_trial_rd_matches_the_counterfactual_cumulative_incidence():
    from retrocohort.designs import clone_censor_weight
    from retrocohort.designs.plasmode import fit_trial_plasmode, simulate_trial, trial_truth

    data = competing_trial_frame()
    model = fit_trial_plasmode(data, covariates=["x", "z"], grace_days=2.0, horizon_days=30.0, competing=True)
    assert model.competing_linear is not None and 0.3 < math.exp(model.competing_log_effect) < 1.5
    rng = np.random.default_rng(8)
    estimates = []
    for _ in range(60):
        sim = simulate_trial(model, data, 0.5, rng)
        assert set(np.unique(sim["status"])) <= {0, 1, 2} and (sim["status"] == 2).any()
        result = clone_censor_weight(
            sim,
            start_time="exposure_start_days",
            time="time",
            status="status",
            covariates=["x", "z"],
            competing=True,
            **TRIAL_OPTIONS,
        )
        estimates.append(result.estimates["risk_difference"])
    ccw = np.array(estimates)
    truth = trial_truth(model, 0.5, np.random.default_rng(12), 40_000, stabilised=True, interval_days=0.25)
    assert truth["risk_difference"] < -0.01
    mcse = ccw.std(ddof=1) / math.sqrt(len(ccw))
    assert abs(ccw.mean() - truth["risk_difference"]) < 3 * mcse + 0.005
