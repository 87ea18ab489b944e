"""Live parity of clone_censor_weight with the R procedure of tests/reference/r/tte.R on fresh data
(pytest -m r). Each run draws a new seed; it is in every assertion message (replay with TTE_SEED=<seed>)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.designs import clone_censor_weight, interval_cuts
from retrocohort.designs.synthetic import grace_period_cohort
from tests.rlive import require_r, run_r

pytestmark = pytest.mark.r

R_PIECE = (Path(__file__).resolve().parents[1] / "reference" / "r" / "tte.R").as_posix()

SCENARIOS = {
    "pooled_half_day": dict(
        censoring_model="pooled_logistic", interval_days=0.5, stabilised=True, truncate=(0.0, 1.0), competing=False
    ),
    "cox_truncated": dict(
        censoring_model="cox", interval_days=1.0, stabilised=False, truncate=(0.02, 0.98), competing=False
    ),
    "competing": dict(
        censoring_model="pooled_logistic", interval_days=1.0, stabilised=True, truncate=(0.0, 1.0), competing=True
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_live_against_r(name):
    require_r("survival", "jsonlite")
    seed = int(os.environ.get("TTE_SEED", secrets.randbelow(2**31)))
    opts = SCENARIOS[name]
    frame = grace_period_cohort(500, seed=seed, truth_n=0).frame
    # whole-hour times: the ties clinical data have
    frame["time"] = np.maximum(np.ceil(frame["time"] * 24) / 24, 1 / 24)
    frame["start"] = np.minimum(np.round(frame["start"] * 24) / 24, frame["time"])
    if opts["competing"]:
        rng = np.random.default_rng(seed)
        frame.loc[(frame.status == 1) & (rng.random(len(frame)) < 0.3), "status"] = 2
    ours = clone_censor_weight(
        frame,
        start_time="start",
        grace_days=2.0,
        time="time",
        status="status",
        covariates=["severity", "frail"],
        horizon_days=28.0,
        **opts,
    )
    code = f"""
TTE_PROCEDURE_ONLY <- TRUE
source("{R_PIECE}")
result <- ccw_r(d, 2, {opts["interval_days"]}, 28, c("severity", "frail"), "{opts["censoring_model"]}",
                {str(opts["stabilised"]).upper()}, c({opts["truncate"][0]}, {opts["truncate"][1]}),
                {str(opts["competing"]).upper()})
"""
    ref = run_r(code, {"d": frame})
    msg = f"{name}, TTE_SEED={seed}"
    np.testing.assert_allclose(ours.censoring_coef.to_numpy(), ref["coef_full"], rtol=1e-7, atol=1e-12, err_msg=msg)
    for key in ("risk_start", "risk_no_start"):
        assert ours.estimates[key] == pytest.approx(ref[key], rel=1e-7), msg
    assert ours.estimates["log_hazard_ratio"] == pytest.approx(ref["cox_coef"], rel=1e-7), msg
    assert ours.cox.summary["se"].iloc[0] == pytest.approx(ref["cox_se"], rel=1e-6), msg
    assert ours.counts.loc["no_start", "rows"] == ref["rows_no_start"], msg
    curve = ours.curves[ours.curves.strategy == "no_start"]
    np.testing.assert_allclose(curve["risk"], ref["curve_no_start"]["risk"], rtol=1e-7, atol=1e-12, err_msg=msg)


@pytest.mark.parametrize("model", ["pooled_logistic", "cox"])
def test_live_time_varying_against_r(model):
    """Time-varying covariates in the censoring model: a random walk around the prognosis and a 0/1 that
    switches on, per 6-hour interval, with hour ties."""
    require_r("survival", "jsonlite")
    seed = int(os.environ.get("TTE_SEED", secrets.randbelow(2**31)))
    rng = np.random.default_rng(seed)
    frame = grace_period_cohort(500, seed=seed, truth_n=0).frame
    frame["time"] = np.maximum(np.ceil(frame["time"] * 24) / 24, 1 / 24)
    frame["start"] = np.minimum(np.round(frame["start"] * 24) / 24, frame["time"])
    days = interval_cuts(2.0, 0.25)[:-1]
    n, k = len(frame), days.size
    walk = frame["severity"].to_numpy()[:, None] * 0.5 + np.cumsum(rng.normal(0, 0.4, (n, k)), axis=1)
    switch = np.maximum.accumulate(rng.random((n, k)) < 0.1, axis=1).astype(float)
    tv = pd.DataFrame(
        {"row": np.repeat(np.arange(n), k), "day": np.tile(days, n), "lact": walk.ravel(), "vaso": switch.ravel()}
    )
    ours = clone_censor_weight(
        frame,
        start_time="start",
        grace_days=2.0,
        time="time",
        status="status",
        covariates=["severity", "frail"],
        horizon_days=28.0,
        censoring_model=model,
        interval_days=0.25,
        truncate=(0.01, 0.99),
        time_varying=tv,
    )
    code = f"""
TTE_PROCEDURE_ONLY <- TRUE
source("{R_PIECE}")
result <- ccw_r(d, 2, 0.25, 28, c("severity", "frail"), "{model}", TRUE, c(0.01, 0.99), FALSE, tv = tv)
"""
    ref = run_r(code, {"d": frame, "tv": tv})
    msg = f"time-varying {model}, TTE_SEED={seed}"
    np.testing.assert_allclose(ours.censoring_coef.to_numpy(), ref["coef_full"], rtol=1e-7, atol=1e-12, err_msg=msg)
    assert list(ours.censoring_coef.index) == ref["coef_names"], msg
    for key in ("risk_start", "risk_no_start"):
        assert ours.estimates[key] == pytest.approx(ref[key], rel=1e-7), msg
    assert ours.estimates["log_hazard_ratio"] == pytest.approx(ref["cox_coef"], rel=1e-7), msg
    assert ours.cox.summary["se"].iloc[0] == pytest.approx(ref["cox_se"], rel=1e-6), msg
    assert ours.counts.loc["no_start", "rows"] == ref["rows_no_start"], msg
    w_no = ours.rows.loc[ours.rows.strategy == 0, "w"].sum()
    assert w_no == pytest.approx(ref["weight_sum_no_start"], rel=1e-7), msg
