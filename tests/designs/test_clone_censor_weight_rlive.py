"""Live parity of clone_censor_weight with the R procedure of tests/reference/r/tte.R on fresh data
(pytest -m r). Each run draws a new seed; it is in every assertion message (replay with TTE_SEED=<seed>)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import pytest

from retrocohort.designs import clone_censor_weight
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
