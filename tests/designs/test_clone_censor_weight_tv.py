"""Time-varying covariates in the censoring model of clone_censor_weight: against the independent R
procedure of tests/reference/r/tte.R (glm on survSplit rows with the covariate per interval; coxph with
(start, stop] rows; then the clones' coxph and survfit with weights), invariances that pin the
contract of the long ``time_varying`` frame, its validation, and its resampling in the bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.designs import bootstrap, clone_censor_weight, interval_cuts
from retrocohort.designs.clone_censor_weight import _resample_time_varying
from retrocohort.designs.synthetic import grace_period_cohort
from retrocohort.errors import InputError

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "json"
COEF_RTOL = 1e-7  # as tests/designs/test_clone_censor_weight.py
SE_RTOL = 1e-6


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    doc = json.loads((REFERENCE / f"{name}.json").read_text())
    data = pd.DataFrame.from_records(doc["data"]["frame"])
    data["start"] = pd.to_numeric(data.get("start"), errors="coerce")  # R's NA arrives as a missing key
    return data, pd.DataFrame.from_records(doc["data"]["time_varying"]), doc["values"]


def run_ours(data: pd.DataFrame, tv: pd.DataFrame, opts: dict):
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
        time_varying=tv,
    )


@pytest.mark.parametrize("name", ["tte_tv_pooled", "tte_tv_cox"])
def test_matches_r_reference(name):
    data, tv, ref = load(name)
    res = run_ours(data, tv, ref["options"])
    assert list(res.censoring_coef.index) == ref["coef_names"]
    np.testing.assert_allclose(res.censoring_coef.to_numpy(), ref["coef_full"], rtol=COEF_RTOL, atol=1e-12)
    # the covariates matter in these data: the reference is not a baseline-only fit in disguise
    assert abs(res.censoring_coef["lact"]) > 0.3 and abs(res.censoring_coef["vaso"]) > 0.3
    for strategy in ("start", "no_start"):
        lo, hi = ref[f"truncation_{strategy}"]
        assert res.weights.loc[strategy, "lower"] == pytest.approx(lo, rel=COEF_RTOL)
        assert res.weights.loc[strategy, "upper"] == pytest.approx(hi, rel=COEF_RTOL)
        assert res.counts.loc[strategy, "rows"] == ref[f"rows_{strategy}"]
        code = 1 if strategy == "start" else 0
        w_sum = res.rows.loc[res.rows.strategy == code, "w"].sum()
        assert w_sum == pytest.approx(ref[f"weight_sum_{strategy}"], rel=COEF_RTOL)
        assert res.estimates[f"risk_{strategy}"] == pytest.approx(ref[f"risk_{strategy}"], rel=COEF_RTOL)
        curve = res.curves[res.curves.strategy == strategy]
        np.testing.assert_allclose(curve["time"], ref[f"curve_{strategy}"]["time"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(curve["risk"], ref[f"curve_{strategy}"]["risk"], rtol=COEF_RTOL, atol=1e-12)
        np.testing.assert_allclose(curve["n_risk"], ref[f"curve_{strategy}"]["n_risk"], rtol=COEF_RTOL)
    assert res.estimates["log_hazard_ratio"] == pytest.approx(ref["cox_coef"], rel=COEF_RTOL)
    assert res.cox.summary["se"].iloc[0] == pytest.approx(ref["cox_se"], rel=SE_RTOL)
    assert res.cox.naive_se.iloc[0] == pytest.approx(ref["cox_naive_se"], rel=SE_RTOL)
    assert res.options["time_varying"] == ["lact", "vaso"]


# --------------------------------------------------------------------------- contract and invariances

KW = dict(start_time="start", time="time", status="status", horizon_days=28.0, grace_days=2.0, interval_days=0.5)


def simulated(n: int = 400, seed: int = 3) -> pd.DataFrame:
    return grace_period_cohort(n, seed=seed, truth_n=0).frame


def long_frame(frame: pd.DataFrame, values: np.ndarray, name: str = "lact", grace=2.0, width=0.5) -> pd.DataFrame:
    """values (n, K) -> the long frame of the contract."""
    days = interval_cuts(grace, width)[:-1]
    n, k = values.shape
    assert k == days.size
    return pd.DataFrame({"row": np.repeat(np.arange(n), k), "day": np.tile(days, n), name: values.ravel()})


def walk(frame: pd.DataFrame, seed: int = 1, k: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return frame["severity"].to_numpy()[:, None] * 0.5 + np.cumsum(rng.normal(0, 0.5, (len(frame), k)), axis=1)


def test_interval_cuts():
    np.testing.assert_allclose(interval_cuts(2, 0.5), [0, 0.5, 1, 1.5, 2])
    np.testing.assert_allclose(interval_cuts(2.0, 0.75), [0, 0.75, 1.5, 2.0])  # the last interval is shorter
    np.testing.assert_allclose(interval_cuts(2, 5), [0, 2])
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(InputError, match="grace_days must be a positive"):
            interval_cuts(bad, 0.5)
    with pytest.raises(InputError, match="interval_days must be a positive"):
        interval_cuts(2, 0)


@pytest.mark.parametrize("model", ["pooled_logistic", "cox"])
def test_constant_time_varying_equals_the_baseline_covariate(model):
    # a "time-varying" covariate that never varies is the baseline covariate: same fit, same weights
    frame = simulated()
    k = interval_cuts(2.0, 0.5).size - 1
    tv = long_frame(frame, np.repeat(frame[["frail"]].to_numpy(), k, axis=1), name="frail_tv")
    base = clone_censor_weight(frame, covariates=["severity", "frail"], censoring_model=model, **KW)
    varying = clone_censor_weight(frame, covariates=["severity"], censoring_model=model, time_varying=tv, **KW)
    np.testing.assert_allclose(varying.censoring_coef.to_numpy(), base.censoring_coef.to_numpy(), rtol=1e-8)
    assert list(varying.censoring_coef.index) == [n.replace("frail", "frail_tv") for n in base.censoring_coef.index]
    np.testing.assert_allclose(varying.rows["w"], base.rows["w"], rtol=1e-8)
    np.testing.assert_allclose(varying.estimates.to_numpy(), base.estimates.to_numpy(), rtol=1e-8)


@pytest.mark.parametrize("model", ["pooled_logistic", "cox"])
def test_values_after_the_last_interval_at_risk_are_ignored_and_values_at_risk_are_not(model):
    frame = simulated()
    values = walk(frame)
    cuts = interval_cuts(2.0, 0.5)
    ref = clone_censor_weight(
        frame, covariates=["severity"], censoring_model=model, time_varying=long_frame(frame, values), **KW
    )
    # the last interval at risk of starting: the one holding the start, or the end of follow-up
    end = np.where(frame["start"].le(2.0), frame["start"], np.minimum(frame["time"], 2.0))
    last = np.clip(np.searchsorted(cuts, end, side="left") - 1, 0, 3)
    after = np.arange(4)[None, :] > last[:, None]
    assert after.any()
    scrambled = np.where(after, 99.0, values)  # post-start (or post-death) values: affected by the start
    other = clone_censor_weight(
        frame, covariates=["severity"], censoring_model=model, time_varying=long_frame(frame, scrambled), **KW
    )
    pd.testing.assert_series_equal(other.censoring_coef, ref.censoring_coef, rtol=1e-12)
    np.testing.assert_allclose(other.rows["w"], ref.rows["w"], rtol=1e-12)
    # a value while at risk changes the fit
    at_risk = values.copy()
    at_risk[~after] += np.random.default_rng(2).normal(0, 1, int((~after).sum()))
    moved = clone_censor_weight(
        frame, covariates=["severity"], censoring_model=model, time_varying=long_frame(frame, at_risk), **KW
    )
    assert not np.allclose(moved.censoring_coef.to_numpy(), ref.censoring_coef.to_numpy(), rtol=1e-6)


def test_row_order_and_extra_dtypes_do_not_matter():
    frame = simulated()
    tv = long_frame(frame, walk(frame))
    ref = clone_censor_weight(frame, covariates=["severity"], time_varying=tv, **KW)
    shuffled = tv.sample(frac=1.0, random_state=4).reset_index(drop=True)
    shuffled["row"] = shuffled["row"].astype(float)  # 3.0 is row 3
    other = clone_censor_weight(frame, covariates=["severity"], time_varying=shuffled, **KW)
    pd.testing.assert_series_equal(other.estimates, ref.estimates, rtol=1e-12)
    assert tv.equals(long_frame(frame, walk(frame)))  # the caller's frame is not changed


# --------------------------------------------------------------------------- bad input


def _bad(frame: pd.DataFrame, tv, message: str) -> InputError:
    with pytest.raises(InputError, match=message) as info:
        clone_censor_weight(frame, covariates=["severity"], time_varying=tv, **KW)
    return info.value


def test_bad_time_varying_frames():
    frame = simulated()
    n = len(frame)
    tv = long_frame(frame, walk(frame))
    _bad(frame, tv.to_dict(), "expected a pandas DataFrame")
    _bad(frame, tv.drop(columns="row"), r"\['row'\] missing")
    _bad(frame, tv[["row", "day"]], "no covariate column besides")
    _bad(frame, tv.rename(columns={"lact": "severity"}), r"\['severity'\] are also baseline covariates")
    _bad(frame, tv.rename(columns={"lact": "time1"}), "a name the censoring model uses")
    err = _bad(frame, tv.assign(row=tv["row"] + 1), f"column 'row' has 4 of {4 * n} rows that are not")
    assert f"0..{n - 1}" in str(err)
    _bad(frame, tv.assign(row=tv["row"] + 0.5), "column 'row' has")
    _bad(frame, tv.assign(row=tv["row"].astype(str)), "column 'row' .* not numeric")
    err = _bad(frame, tv.assign(day=tv["day"] + 0.25), f"column 'day' has {4 * n} of {4 * n} rows")
    assert "0, 0.5, 1, 1.5" in str(err) and "interval_cuts" in str(err)
    _bad(frame, tv.assign(day=tv["day"].where(tv["day"] < 1.5, 2.0)), f"column 'day' has {n} of")  # 2 = window end
    _bad(frame, pd.concat([tv, tv.iloc[[5, 9]]]), "2 rows repeat a")
    _bad(frame, tv.iloc[3:], r"3 of \d+ \(patient, interval\) pairs are missing \(first: row 0, day 0\)")
    _bad(
        frame,
        tv.assign(lact=np.where(tv.index % 7 == 0, np.nan, tv["lact"])),
        f"column 'lact' has {int(np.ceil(4 * n / 7))} of {4 * n} rows missing",
    )
    _bad(frame, tv.assign(lact=np.inf), "missing or infinite")
    _bad(frame, tv.assign(lact="high"), "column 'lact' .* not numeric")
    _bad(frame, tv.assign(flat=1.0), "rank deficient")


# --------------------------------------------------------------------------- bootstrap


def test_resampled_rows_follow_the_patients():
    tv = pd.DataFrame({"row": [1, 0, 1, 0, 2, 2], "day": [0, 0, 1, 1, 0, 1], "v": [10, 0, 11, 1, 20, 21]})
    from retrocohort.designs.clone_censor_weight import _WORKER_STATE, _init_worker

    try:
        _init_worker(pd.DataFrame({"a": [0, 0, 0]}), {"time_varying": tv})
        out = _resample_time_varying(_WORKER_STATE["time_varying"], np.array([0, 0, 2]))
    finally:
        _WORKER_STATE.clear()
    # patient 0 drawn twice: two copies under rows 0 and 1; patient 2 becomes row 2
    assert out.sort_values(["row", "day"])[["row", "day", "v"]].values.tolist() == [
        [0, 0, 0],
        [0, 1, 1],
        [1, 0, 0],
        [1, 1, 1],
        [2, 0, 20],
        [2, 1, 21],
    ]


def test_bootstrap_with_a_constant_time_varying_covariate_equals_the_baseline_one():
    # replicate by replicate: a wrong resampling of the long frame (rows of another patient) would differ
    frame = simulated(250)
    k = interval_cuts(2.0, 0.5).size - 1
    tv = long_frame(frame, np.repeat(frame[["frail"]].to_numpy(), k, axis=1), name="frail_tv")
    base = bootstrap(frame, n_replicates=6, seed=3, covariates=["severity", "frail"], **KW)
    varying = bootstrap(frame, n_replicates=6, seed=3, covariates=["severity"], time_varying=tv, **KW)
    assert varying.failed == base.failed
    np.testing.assert_allclose(varying.replicates.to_numpy(), base.replicates.to_numpy(), rtol=1e-8)
    again = bootstrap(frame, n_replicates=6, seed=3, processes=2, covariates=["severity"], time_varying=tv, **KW)
    pd.testing.assert_frame_equal(again.replicates, varying.replicates)
    assert varying.point.options["time_varying"] == ["frail_tv"]


def test_overflowing_values_are_refused_by_name():
    frame = simulated()
    huge = np.random.default_rng(0).normal(0, 1, (len(frame), 4)) * 1e300
    _bad(frame, long_frame(frame, huge), "covariates overflow")
