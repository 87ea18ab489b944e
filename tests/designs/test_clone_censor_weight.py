"""Clone-censor-weight (issue #11) against an independent R implementation on the same data
(tests/reference/r/tte.R: survSplit + glm(binomial) or coxph for the censoring model, coxph with
(start, stop] rows, weights and a cluster, survfit with weights), a hand-made case with closed-form
clones and weights, bad input, and the bootstrap's reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.designs import bootstrap, clone_censor_weight, expand_clones
from retrocohort.errors import InputError

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "json"
COEF_RTOL = 1e-7
SE_RTOL = 1e-6


def load(name: str) -> tuple[pd.DataFrame, dict]:
    doc = json.loads((REFERENCE / f"{name}.json").read_text())
    data = pd.DataFrame.from_records(doc["data"])
    data["start"] = pd.to_numeric(data.get("start"), errors="coerce")  # R's NA arrives as a missing key
    return data, doc["values"]


def run_ours(data: pd.DataFrame, opts: dict):
    return clone_censor_weight(
        data,
        start_time="start",
        grace_days=opts["grace"],
        time="time",
        status="status",
        covariates=["x", "z"],
        horizon_days=opts["horizon"],
        censoring_model=opts["model"],
        interval_days=opts["delta"],
        stabilised=opts["stabilised"],
        truncate=tuple(opts["truncate"]),
        competing=opts["competing"],
    )


@pytest.mark.parametrize("name", ["tte_pooled", "tte_pooled_truncated", "tte_cox", "tte_competing"])
def test_matches_r_reference(name):
    data, ref = load(name)
    res = run_ours(data, ref["options"])
    np.testing.assert_allclose(
        res.censoring_coef.to_numpy(),
        ref["coef_full"],
        rtol=COEF_RTOL,
        atol=1e-12,
        err_msg=f"{name}: censoring model coefficients vs glm/coxph",
    )
    if ref["options"]["model"] != "cox":
        assert list(res.censoring_coef.index) == ref["coef_names"]
    lo, hi = ref["truncation_start"]
    assert res.weights.loc["start", "lower"] == pytest.approx(lo, rel=COEF_RTOL)
    assert res.weights.loc["start", "upper"] == pytest.approx(hi, rel=COEF_RTOL)
    lo, hi = ref["truncation_no_start"]
    assert res.weights.loc["no_start", "lower"] == pytest.approx(lo, rel=COEF_RTOL)
    assert res.weights.loc["no_start", "upper"] == pytest.approx(hi, rel=COEF_RTOL)
    assert res.counts.loc["start", "rows"] == ref["rows_start"]
    assert res.counts.loc["no_start", "rows"] == ref["rows_no_start"]
    rows = res.rows
    assert rows.loc[rows.strategy == 1, "w"].sum() == pytest.approx(ref["weight_sum_start"], rel=COEF_RTOL)
    assert rows.loc[rows.strategy == 0, "w"].sum() == pytest.approx(ref["weight_sum_no_start"], rel=COEF_RTOL)
    assert res.estimates["risk_start"] == pytest.approx(ref["risk_start"], rel=COEF_RTOL)
    assert res.estimates["risk_no_start"] == pytest.approx(ref["risk_no_start"], rel=COEF_RTOL)
    assert res.estimates["log_hazard_ratio"] == pytest.approx(ref["cox_coef"], rel=COEF_RTOL)
    assert res.cox.summary["se"].iloc[0] == pytest.approx(ref["cox_se"], rel=SE_RTOL)
    assert res.cox.naive_se.iloc[0] == pytest.approx(ref["cox_naive_se"], rel=SE_RTOL)
    for strategy, key in (("start", "curve_start"), ("no_start", "curve_no_start")):
        curve = res.curves[res.curves.strategy == strategy]
        np.testing.assert_allclose(curve["time"], ref[key]["time"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            curve["risk"], ref[key]["risk"], rtol=COEF_RTOL, atol=1e-12, err_msg=f"{name}: {strategy} curve vs survfit"
        )
        if "n_risk" in ref[key]:
            np.testing.assert_allclose(curve["n_risk"], ref[key]["n_risk"], rtol=COEF_RTOL)


# --------------------------------------------------------------------------- hand-made case

# Five patients, grace window 2 days, horizon 10, one interval of 2 days (so the censoring model
# has no time terms). Columns: follow-up, status, exposure start.
HAND = pd.DataFrame(
    {
        "time": [1.0, 5.0, 8.0, 3.0, 10.0, 6.0],
        "status": [1, 1, 0, 1, 0, 1],
        "start": [np.nan, 1.0, np.nan, 2.0, 0.5, np.nan],
    }
)


def test_hand_case_clones_by_rule():
    rows = expand_clones(
        HAND, start_time="start", grace_days=2, time="time", status="status", horizon_days=10, interval_days=2
    )
    start = rows[rows.strategy == 1].sort_values(["id", "tstart"])
    no = rows[rows.strategy == 0].sort_values(["id", "tstart"])
    # patient 0 dies at day 1 without starting: the death counts for BOTH clones
    assert start[start.id == 0][["tstart", "tstop", "event"]].values.tolist() == [[0, 1, 1]]
    assert no[no.id == 0][["tstart", "tstop", "event"]].values.tolist() == [[0, 1, 1]]
    # patient 1 starts at day 1, dies at 5: start clone follows to 5; no-start clone censored at 1
    assert start[start.id == 1][["tstart", "tstop", "event"]].values.tolist() == [[0, 2, 0], [2, 5, 1]]
    assert no[no.id == 1][["tstart", "tstop", "event"]].values.tolist() == [[0, 1, 0]]
    # patient 2 never starts: start clone artificially censored at the end of the window
    assert start[start.id == 2][["tstart", "tstop", "event"]].values.tolist() == [[0, 2, 0]]
    assert no[no.id == 2][["tstart", "tstop", "event"]].values.tolist() == [[0, 2, 0], [2, 8, 0]]
    # patient 3 starts exactly at the window's end (inside it: (0, 2])
    assert start[start.id == 3][["tstart", "tstop", "event"]].values.tolist() == [[0, 2, 0], [2, 3, 1]]
    assert no[no.id == 3][["tstart", "tstop", "event"]].values.tolist() == [[0, 2, 0]]


def test_hand_case_weights_closed_form():
    # No covariates, one interval: the censoring model is an intercept, so the probability of starting
    # in (0, 2] among the 6 at risk is 3/6 (patient 0 is at risk and does not start). Unstabilised:
    # no-start clones weigh 1 / sqrt(1 * (1 - 1/2)) = sqrt(2) (the interval's middle), start clones after
    # the window 1 / (1/2) = 2.
    res = clone_censor_weight(
        HAND,
        start_time="start",
        grace_days=2,
        time="time",
        status="status",
        covariates=[],
        horizon_days=10,
        interval_days=2,
        stabilised=False,
        min_ess=1,
    )
    assert res.censoring_coef["(Intercept)"] == pytest.approx(0.0, abs=1e-10)
    rows = res.rows
    np.testing.assert_allclose(rows.loc[rows.strategy == 0, "w"], np.sqrt(2.0))
    np.testing.assert_allclose(rows.loc[(rows.strategy == 1) & (rows.tstart == 2), "w"], 2.0)
    np.testing.assert_allclose(rows.loc[(rows.strategy == 1) & (rows.tstart == 0), "w"], 1.0)
    # start strategy, weighted KM: at risk at day 1: 6 (all weight 1) -> S = 5/6. After day 2 only the
    # starters (patients 1, 3, 4) remain, weight 2 each: day 3: 1 death of 6 -> 5/6 * 5/6; day 5: 1 of 4.
    s_start = 5 / 6 * (1 - 2 / 6) * (1 - 2 / 4)
    assert res.estimates["risk_start"] == pytest.approx(1 - s_start, rel=1e-12)
    # no-start: every clone weighs sqrt(2); 1, 3, 4 are censored at their start. Day 1: 1 death among
    # 0, 1, 2, 3, 5 (4 left at 0.5) -> 1 - 1/5. Day 6: patient 5 dies with patients 2 and 5 at risk -> 1 - 1/2.
    s_no = (1 - 1 / 5) * (1 - 1 / 2)
    assert res.estimates["risk_no_start"] == pytest.approx(1 - s_no, rel=1e-12)
    assert res.estimates["risk_difference"] == pytest.approx(s_no - s_start, rel=1e-12)
    # stabilised: the numerator is the same intercept-only model, so every weight is 1
    stab = clone_censor_weight(
        HAND,
        start_time="start",
        grace_days=2,
        time="time",
        status="status",
        covariates=[],
        horizon_days=10,
        interval_days=2,
        stabilised=True,
        min_ess=1,
    )
    np.testing.assert_allclose(stab.rows["w"], 1.0)


def test_counts_of_deviation():
    res = clone_censor_weight(
        HAND,
        start_time="start",
        grace_days=2,
        time="time",
        status="status",
        covariates=[],
        horizon_days=10,
        interval_days=2,
        min_ess=1,
    )
    assert res.counts.loc["start", "artificially_censored"] == 2  # patients 2 and 5 alive at day 2, no start
    assert res.counts.loc["no_start", "artificially_censored"] == 3  # patients 1, 3, 4 started
    assert res.counts.loc["start", "events_in_grace"] == 1 and res.counts.loc["no_start", "events_in_grace"] == 1


# --------------------------------------------------------------------------- bad input


def simulated(n: int = 400, seed: int = 3) -> pd.DataFrame:
    from retrocohort.designs.synthetic import grace_period_cohort

    return grace_period_cohort(n, seed=seed).frame


KW = dict(start_time="start", time="time", status="status", covariates=["severity"], horizon_days=28.0, grace_days=2.0)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(grace_days=0), "grace_days must be a positive"),
        (dict(grace_days=-1), "grace_days must be a positive"),
        (dict(grace_days=30), "not shorter than the horizon"),
        (dict(truncate=(0.9, 0.1)), "0 <= lower < upper <= 1"),
        (dict(censoring_model="logit"), "is not one of"),
        (dict(interval_days=0), "interval_days must be a positive"),
        (dict(covariates=["nope"]), "'nope'"),
    ],
)
def test_bad_options(change, message):
    with pytest.raises(InputError, match=message):
        clone_censor_weight(simulated(), **{**KW, **change})


def test_nobody_starts_or_everybody_starts():
    frame = simulated()
    with pytest.raises(InputError, match="no patient starts"):
        clone_censor_weight(frame.assign(start=np.nan), **KW)
    with pytest.raises(InputError, match="'no start' strategy has no one"):
        clone_censor_weight(frame.assign(start=np.minimum(0.1, frame["time"])), **KW)


def test_bad_columns():
    frame = simulated()
    with pytest.raises(InputError, match="starting after the end of follow-up"):
        clone_censor_weight(frame.assign(start=frame["time"] + 1), **KW)
    with pytest.raises(InputError, match="<= 0"):
        clone_censor_weight(frame.assign(time=0.0), **KW)
    with pytest.raises(InputError, match="outside"):
        clone_censor_weight(frame.assign(status=2), **KW)
    with pytest.raises(InputError, match="missing covariates"):
        clone_censor_weight(frame.assign(severity=np.nan), **KW)
    with pytest.raises(InputError, match="not numeric"):
        clone_censor_weight(frame.assign(severity="high"), **KW)


def test_exploding_weights_refused_then_truncation_reported():
    # a covariate that nearly determines the start makes the no-start clones of likely starters weigh a lot
    rng = np.random.default_rng(5)
    n = 300
    frame = simulated(n)
    frame["predictor"] = frame["start"].le(2.0).astype(float) * 4.0 + rng.normal(0, 0.6, n)
    with pytest.raises(InputError, match=r"effective sample size of the .* strategy is .* below the floor"):
        clone_censor_weight(frame, **{**KW, "covariates": ["predictor"]}, min_ess=150)
    res = clone_censor_weight(frame, **{**KW, "covariates": ["predictor"]}, truncate=(0.05, 0.95), min_ess=20)
    w = res.weights
    assert (w["truncated_rows"] > 0).all()
    assert (w["max"] <= w["upper"] + 1e-12).all() and (w["min"] >= w["lower"] - 1e-12).all()


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_reproducible_by_seed_and_independent_of_processes():
    frame = simulated(300)
    calls = []
    a = bootstrap(frame, n_replicates=12, seed=7, progress=lambda d, t: calls.append((d, t)), **KW)
    b = bootstrap(frame, n_replicates=12, seed=7, processes=2, **KW)
    c = bootstrap(frame, n_replicates=12, seed=8, **KW)
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    assert not np.allclose(a.replicates.to_numpy(), c.replicates.to_numpy(), equal_nan=True)
    assert calls[-1] == (12, 12) and len(calls) == 12
    assert (a.intervals["lower"] <= a.intervals["upper"]).all()
    # the point estimate is the analysis of the original frame, not a replicate mean
    point = clone_censor_weight(frame, **KW)
    pd.testing.assert_series_equal(a.intervals["estimate"], point.estimates, check_names=False)


def test_bootstrap_replicate_is_the_whole_procedure_on_a_resample():
    frame = simulated(200)
    boot = bootstrap(frame, n_replicates=3, seed=21, **KW)
    child = np.random.SeedSequence(21).spawn(3)[1]
    pick = np.random.default_rng(child).integers(0, len(frame), len(frame))
    manual = clone_censor_weight(frame.iloc[np.sort(pick)].reset_index(drop=True), **KW)
    np.testing.assert_allclose(boot.replicates.iloc[1].to_numpy(), manual.estimates.to_numpy(), rtol=1e-12)


def test_bootstrap_bad_options():
    with pytest.raises(InputError, match="n_replicates"):
        bootstrap(simulated(), n_replicates=1, **KW)
    with pytest.raises(InputError, match="processes"):
        bootstrap(simulated(), n_replicates=5, processes=0, **KW)


# --------------------------------------------------------------------------- synthetic grace-period cohort


def test_synthetic_cohort_has_immortal_time_and_a_null_when_planted():
    from retrocohort.designs.synthetic import _death_times, grace_period_cohort

    cohort = grace_period_cohort(3000, seed=4, truth_n=0)
    frame = cohort.frame
    started = frame["start"].notna()
    assert (frame.loc[started, "start"] < frame.loc[started, "time"]).all()  # the dead are never exposed
    assert (frame.loc[started, "start"] <= cohort.grace_days).all()
    # exposure timing depends on prognosis: the sicker start less often within the window
    sick, well = frame.severity > 1, frame.severity < -1
    assert frame.loc[sick, "start"].notna().mean() < frame.loc[well, "start"].notna().mean()
    null = grace_period_cohort(10, seed=4, effect_hr=1.0, early_multiplier=1.0, truth_n=200_000).truth
    assert abs(null["risk_difference"]) < 0.005
    # the piecewise inverse: with no effect and no early excess, death times are exponential(rate)
    rng = np.random.default_rng(0)
    times = _death_times(rng, np.full(200_000, 0.1), np.full(200_000, 1.0), 1.0, 2.0, 1.0)
    assert np.mean(times) == pytest.approx(10.0, rel=0.02)


def test_hostile_scalars_and_names():
    frame = simulated()
    ok = clone_censor_weight(frame, **{**KW, "grace_days": np.int64(2), "covariates": "severity"})
    assert ok.options["covariates"] == ["severity"] and ok.options["grace_days"] == 2.0
    with pytest.raises(InputError, match="grace_days must be a positive"):
        clone_censor_weight(frame, **{**KW, "grace_days": True})
    with pytest.raises(InputError, match="horizon_days must be a positive"):
        clone_censor_weight(frame, **{**KW, "horizon_days": float("inf")})
    with pytest.raises(InputError, match="no outcome event"):
        clone_censor_weight(frame.assign(status=0), **KW)
    with pytest.raises(InputError, match="rank deficient"):
        clone_censor_weight(frame.assign(flat=1.0), **{**KW, "covariates": ["severity", "flat"]})
    with pytest.raises(InputError, match="expected a pandas DataFrame"):
        clone_censor_weight(frame.to_dict(), **KW)
