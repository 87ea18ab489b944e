"""Cumulative incidence and Gray's test against cmprsk::cuminc (fixtures from
tests/reference/r/competing.R), hand-calculated cases, errors and a live R suite."""

from __future__ import annotations

import secrets
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrocohort.errors import InputError
from retrocohort.survival.competing import cumulative_incidence, gray_test
from tests.rlive import run_r
from tests.survival.test_km import assert_close

CUMINC_CASES = ["mgus2", "mgus2_sex", "mgus2_sex_strata", "tied_arm", "tied_arm_strata", "small_cencode9"]
GRAY_CASES = ["mgus2_sex", "mgus2_sex_strata", "tied_arm", "tied_arm_strata", "small_cencode9", "hand_ties"]


def _option(value):
    """R's NULL arrives as {} or None."""
    return value if value not in ({}, None, []) else None


@pytest.mark.parametrize("name", CUMINC_CASES)
def test_cumulative_incidence_matches_cuminc(reference, name):
    ref = reference(f"cuminc_{name}")
    values = ref["values"]
    data = pd.DataFrame.from_records(ref["data"])
    group = _option(values["group"])
    for cause in values["causes"]:
        fit = cumulative_incidence(
            data,
            "time",
            "status",
            cause=cause,
            group=group,
            censor_code=values["censor_code"],
            conf_level=values["conf_level"],
        )
        theirs = pd.DataFrame.from_records(values["estimates"][str(cause)])
        ours = fit.table
        label = f"{name} cause {cause}"
        if group is None:
            assert (theirs["group"] == "1").all()
        else:
            assert ours["group"].astype(str).tolist() == theirs["group"].tolist(), label
        assert_close(ours["time"], theirs["time"], 0, f"{label} time")
        assert_close(ours["cif"], theirs["cif"], 1e-7, f"{label} cif")
        assert_close(ours["variance"], theirs["variance"], 1e-6, f"{label} variance")
        assert_close(ours["lower"], theirs["lower"], 1e-6, f"{label} lower")
        assert_close(ours["upper"], theirs["upper"], 1e-6, f"{label} upper")

        # timepoints(): rows "<group> <cause>", columns the requested times
        at = fit.cif_at(values["times"])
        reference_at = values["at_times"][str(cause)]
        n_times = len(values["times"])
        row_names = reference_at["rows"]
        row_names = [row_names] if isinstance(row_names, str) else row_names  # R unboxes length-1 vectors
        for row_name, est, var in zip(row_names, reference_at["est"], reference_at["var"], strict=True):
            level = row_name.rsplit(" ", 1)[0]
            rows = at if group is None else at[at["group"].astype(str) == level]
            assert len(rows) == n_times
            assert_close(rows["cif"], est, 1e-7, f"{label} timepoints est {row_name}")
            assert_close(rows["variance"], var, 1e-6, f"{label} timepoints var {row_name}")


@pytest.mark.parametrize("name", GRAY_CASES)
def test_gray_test_matches_cuminc_tests(reference, name):
    ref = reference(f"gray_{name}")
    values = ref["values"]
    data = pd.DataFrame.from_records(ref["data"])
    for cause, statistic, p_value, df in zip(
        values["causes"], values["statistic"], values["p_value"], values["df"], strict=True
    ):
        result = gray_test(
            data,
            "time",
            "status",
            values["group"],
            cause=int(cause),
            censor_code=values["censor_code"],
            strata=_option(values["strata"]),
        )
        assert result.df == df
        np.testing.assert_allclose(result.statistic, statistic, rtol=1e-6, err_msg=f"{name} cause {cause}")
        # cuminc computes 1 - pchisq(): exact to ~1e-16 absolute only
        np.testing.assert_allclose(result.p_value, p_value, rtol=1e-6, atol=1e-14, err_msg=f"{name} cause {cause}")


# --------------------------------------------------------------------------- hand calculations


def test_six_rows_cumulative_incidence_by_hand():
    """Times 1..6 with status 1, 2, 1, 0, 1, 2 (0 censored, 2 competing).

    All-cause KM S and incidence F of cause 1, F(t_j) = F(t_j-1) + S(t_j-1) d1_j / n_j:
      t=1 n=6 d1=1: F = 1/6,                 S = 5/6
      t=2 n=5 d2=1: F = 1/6,                 S = 2/3
      t=3 n=4 d1=1: F = 1/6 + 2/3 * 1/4 = 1/3, S = 1/2
      t=4 n=3 censored
      t=5 n=2 d1=1: F = 1/3 + 1/2 * 1/2 = 7/12, S = 1/4
      t=6 n=1 d2=1: S = 0
    cuminc's variance at t: sum over event times t_j <= t of S(t_j-1)^2 d_j / n_j^2 times
    (1 + (F_j - F(t)) / S_j)^2 for a cause-1 event, ((F_j - F(t)) / S_j)^2 for a competing one
    (no tie correction: one event per time). S(t_j-1)^2 d_j / n_j^2 is 1/36 at t = 1, 2, 3
    ((5/6)^2/25 = (2/3)^2/16 = 1/36) and (1/2)^2/4 = 1/16 at t = 5.
      V(1) = 1/36
      V(3) = 1/36 [(1 + (1/6 - 1/3)/(5/6))^2 + ((1/6 - 1/3)/(2/3))^2 + 1] = 1/36 (16/25 + 1/16 + 1)
      V(5) = 1/36 [(1 + (1/6 - 7/12)/(5/6))^2 + ((1/6 - 7/12)/(2/3))^2 + (1 + (1/3 - 7/12)/(1/2))^2] + 1/16
           = 1/36 (1/4 + 25/64 + 1/4) + 1/16
    """
    data = pd.DataFrame({"time": [1, 2, 3, 4, 5, 6], "status": [1, 2, 1, 0, 1, 2]})
    fit = cumulative_incidence(data, "time", "status", cause=1)
    table = fit.table
    assert table["time"].tolist() == [1, 3, 5]
    assert table["n_risk"].tolist() == [6, 4, 2]
    np.testing.assert_allclose(table["cif"], [1 / 6, 1 / 3, 7 / 12], rtol=1e-14)
    f = Fraction
    expected_variance = [
        f(1, 36),
        f(1, 36) * (f(16, 25) + f(1, 16) + 1),
        f(1, 36) * (f(1, 4) + f(25, 64) + f(1, 4)) + f(1, 16),
    ]
    np.testing.assert_allclose(table["variance"], [float(v) for v in expected_variance], rtol=1e-13)
    at = fit.cif_at([0.5, 2, 6, 7])
    np.testing.assert_allclose(at["cif"][:3], [0, 1 / 6, 7 / 12], rtol=1e-14)
    assert np.isnan(at["cif"].iloc[3])  # beyond the last time, as timepoints()
    competing = cumulative_incidence(data, "time", "status", cause=2).table
    # cause 2: t=2 S(1) * 1/5 = 1/6; t=6 + S(5) * 1/1 = 1/6 + 1/4 = 5/12; with 7/12 the two sum to 1 - S(6) = 1
    np.testing.assert_allclose(competing["cif"], [1 / 6, 5 / 12], rtol=1e-14)


def test_gray_three_rows_by_hand():
    """Group a: events of the cause at t=1 and t=2; group b: censored at t=3.

    Score: R_r = Y_r (1 - F_r(t-)) / S_r(t-): t=1 R = (2, 1) -> z += 1 - 2/3;
    t=2 R = (1 * (1/2) / (1/2), 1) -> z += 1 - 1/2; z_a = 5/6.
    Covariance: h_r = Y_r / S_r(t-) = (2, 1) at both times, H = 3; pooled dF0 = 1/3 twice,
    F0 = 1/3, 2/3; dG0(2) = (1/3) / (1 - 1/3) = 1/2. a_ar = h_a (1{r=a} - h_r/H) = (2/3, -2/3).
    c_ar(1) = a_ar(2) dG0(2) = (1/3, -1/3); c(2) = 0.
    u_r(1) = 1 - (1 - F0(1)) / S_r(1) = (1 - (2/3)/(1/2), 1 - 2/3) = (-1/3, 1/3).
    weights S_r(t-) d / (H Y_r): t=1 (1/6, 1/3), t=2 ((1/2)/3, 1/3) = (1/6, 1/3).
    V = (2/3 - 1/9)^2/6 + (-2/3 - 1/9)^2/3 + (2/3)^2/6 + (2/3)^2/3 = 25/486 + 98/486 + 108/486 = 77/162.
    (The log-rank variance would be 2/9 + 1/4 = 17/36: Gray's differs.)
    """
    data = pd.DataFrame({"time": [1, 2, 3], "status": [1, 1, 0], "arm": ["a", "a", "b"]})
    result = gray_test(data, "time", "status", "arm")
    np.testing.assert_allclose(result.score[0], 5 / 6, rtol=1e-14)
    np.testing.assert_allclose(result.variance[0, 0], 77 / 162, rtol=1e-13)
    np.testing.assert_allclose(result.statistic, (5 / 6) ** 2 / (77 / 162), rtol=1e-13)
    np.testing.assert_allclose(result.p_value, stats.chi2.sf((5 / 6) ** 2 / (77 / 162), 1), rtol=1e-12)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"time": [1, 2, 3], "status": [1, 0, 3]}), {"cause": 2}, "no rows with cause=2"),
        (pd.DataFrame({"time": [1, 2, 3], "status": [1, 0.5, 2]}), {}, "non-integer"),
        (pd.DataFrame({"time": [1, -2, 3], "status": [1, 0, 2]}), {}, "negative"),
        (pd.DataFrame({"time": [1, 2, 3], "status": [1, 0, 2]}), {"cause": 0}, "equals censor_code"),
        (pd.DataFrame({"time": [1, 2, 3], "status": [1, 0, 2]}), {"conf_level": 1.5}, "conf_level"),
    ],
)
def test_bad_input_is_named(frame, kwargs, message):
    with pytest.raises(InputError, match=message):
        cumulative_incidence(frame, "time", "status", **kwargs)


def _with_code_nine(seed: int = 2) -> pd.DataFrame:
    """Codes 0 (censored), 1 (cause), 2 (competing) and 9 (a second censoring code in this frame)."""
    rng = np.random.default_rng(seed)
    n = 120
    status = rng.choice([0, 1, 2, 9], n, p=[0.2, 0.35, 0.25, 0.2])
    status[:4] = [0, 1, 2, 9]
    return pd.DataFrame({"time": np.ceil(rng.exponential(20.0, n)), "status": status, "arm": rng.choice(["a", "b"], n)})


def test_undeclared_codes_are_competing_and_noted():
    """Without competing_codes, cuminc's rule (every non-censoring code is a cause) with a note giving
    each such code's row count; declaring all of them gives the same table and no note."""
    data = _with_code_nine()
    n, n2, n9 = len(data), int((data["status"] == 2).sum()), int((data["status"] == 9).sum())
    expected_note = (
        "column 'status': status code(s) other than censor_code=0 and cause=1 were treated as competing events "
        f"(as cuminc does): 2 ({n2} of {n} rows), 9 ({n9} of {n} rows); pass competing_codes= to declare them"
    )
    default = cumulative_incidence(data, "time", "status", group="arm")
    assert default.notes == (expected_note,)
    assert default.competing_codes is None
    declared = cumulative_incidence(data, "time", "status", group="arm", competing_codes=[9, 2])
    assert declared.notes == () and declared.competing_codes == (2, 9)
    pd.testing.assert_frame_equal(declared.table, default.table)
    gray_default = gray_test(data, "time", "status", "arm")
    assert gray_default.notes == (expected_note,)
    gray_declared = gray_test(data, "time", "status", "arm", competing_codes=(2, 9))
    assert gray_declared.notes == () and gray_declared.competing_codes == (2, 9)
    assert gray_declared.statistic == gray_default.statistic
    # only the censoring code in the data: nothing to note
    censored_only = data.assign(status=data["status"].replace({2: 0, 9: 0}))
    assert cumulative_incidence(censored_only, "time", "status").notes == ()


def test_censoring_coded_nine_is_caught_when_codes_are_declared():
    """The case the option exists for: 9 means censored, the call keeps censor_code=0."""
    data = _with_code_nine()
    n0, n9 = int((data["status"] == 0).sum()), int((data["status"] == 9).sum())
    nine_censored = data.assign(status=data["status"].replace({0: 9}))  # 9 is the only censoring code
    for function, call in (
        ("cumulative_incidence", lambda d, **kw: cumulative_incidence(d, "time", "status", **kw)),
        ("gray_test", lambda d, **kw: gray_test(d, "time", "status", "arm", **kw)),
    ):
        with pytest.raises(
            InputError,
            match=rf"^{function} data: .*9 \({n9} rows\); .*add the code to "
            "competing_codes=.*set censor_code=",
        ):
            call(data, competing_codes=[2])
        # two censoring codes cannot both be declared: with censor_code=9, the 0s are now the odd ones out
        with pytest.raises(InputError, match=rf"0 \({n0} rows\)"):
            call(data, censor_code=9, competing_codes=[2])
        # 9 as the only censoring code, declared: no error, no note
        assert call(nine_censored, censor_code=9, competing_codes=[2]).notes == ()
    right = cumulative_incidence(nine_censored, "time", "status", censor_code=9, competing_codes=[2]).table
    wrong = cumulative_incidence(nine_censored, "time", "status").table  # 9 taken as competing (cuminc's rule)
    recoded = cumulative_incidence(data.assign(status=data["status"].replace({9: 0})), "time", "status").table
    pd.testing.assert_frame_equal(right, recoded)
    # same risk sets, but a censored patient still counts towards later incidence and a competing one does not
    assert right["n_risk"].tolist() == wrong["n_risk"].tolist()
    assert (wrong["cif"].to_numpy() <= right["cif"].to_numpy() + 1e-15).all()
    assert wrong["cif"].iloc[-1] < right["cif"].iloc[-1]


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([1, 2], r"competing_codes=\[1, 2\] contains \[1\]"),
        ([0], r"contains \[0\]"),
        ([2.5], "must be integer status codes"),
        (["2"], "must be integer status codes"),
    ],
)
def test_bad_competing_codes(codes, message):
    data = pd.DataFrame({"time": [1, 2, 3], "status": [1, 0, 2], "arm": ["a", "b", "b"]})
    with pytest.raises(InputError, match=message):
        cumulative_incidence(data, "time", "status", competing_codes=codes)
    with pytest.raises(InputError, match=message):
        gray_test(data, "time", "status", "arm", competing_codes=codes)


def test_gray_needs_two_groups():
    data = pd.DataFrame({"time": [1, 2, 3], "status": [1, 0, 2], "arm": ["a", "a", "a"]})
    with pytest.raises(InputError, match="single group"):
        gray_test(data, "time", "status", "arm")


# --------------------------------------------------------------------------- live R


def _random_competing(rng: np.random.Generator) -> pd.DataFrame:
    n = int(rng.integers(40, 400))
    arm = rng.choice(["a", "b", "c"], n)
    t1 = rng.exponential(np.where(arm == "a", 30, 45))
    t2 = rng.exponential(60, n)
    censor = rng.uniform(5, 100, n)
    first = np.minimum(np.minimum(t1, t2), censor)
    return pd.DataFrame(
        {
            "time": np.ceil(first),  # whole days: many ties, events and censorings on the same day
            "status": np.where(first == censor, 0, np.where(first == t1, 1, 2)),
            "arm": arm,
            "site": rng.choice(["s1", "s2"], n),
        }
    )


@pytest.mark.r
def test_live_cuminc_and_gray():
    seed = secrets.randbelow(2**31)
    data = _random_competing(np.random.default_rng(seed))
    result = run_r(
        """suppressPackageStartupMessages(library(cmprsk))
        ci <- cuminc(df$time, df$status, df$arm)
        cs <- cuminc(df$time, df$status, df$arm, strata = df$site)
        pick <- function(curve, jumps) {
          at <- vapply(jumps, function(t) max(which(curve$time == t)), 1L)
          list(est = curve$est[at], var = curve$var[at])
        }
        result <- list(tests = unname(ci$Tests[, "stat"]), strata_tests = unname(cs$Tests[, "stat"]), curves = list())
        for (g in sort(unique(df$arm))) for (k in 1:2) {
          jumps <- sort(unique(df$time[df$arm == g & df$status == k]))
          result$curves[[paste(g, k)]] <- c(list(time = jumps), pick(ci[[paste(g, k)]], jumps))
        }""",
        {"df": data},
    )
    context = f"seed={seed}"
    for cause in (1, 2):
        fit = cumulative_incidence(data, "time", "status", cause=cause, group="arm").table
        for level in sorted(data["arm"].unique()):
            curve = result["curves"][f"{level} {cause}"]
            rows = fit[fit["group"] == level]
            assert_close(rows["time"], np.atleast_1d(curve["time"]), 0, context)
            assert_close(rows["cif"], np.atleast_1d(curve["est"]), 1e-7, context)
            assert_close(rows["variance"], np.atleast_1d(curve["var"]), 1e-6, context)
        gray = gray_test(data, "time", "status", "arm", cause=cause)
        np.testing.assert_allclose(gray.statistic, result["tests"][cause - 1], rtol=1e-6, err_msg=context)
        stratified = gray_test(data, "time", "status", "arm", cause=cause, strata="site")
        np.testing.assert_allclose(stratified.statistic, result["strata_tests"][cause - 1], rtol=1e-6, err_msg=context)


def test_gray_test_on_many_random_tied_data_sets(reference):
    """40 small data sets with heavy whole-day ties, 2-3 groups, with and without strata."""
    cases = reference("gray_random_many")["values"]["cases"]
    assert len(cases) == 40
    for number, case in enumerate(cases):
        data = pd.DataFrame.from_records(case["data"])
        for cause, plain, stratified in zip(case["causes"], case["statistic"], case["strata_statistic"], strict=True):
            for strata, expected in ((None, plain), ("strat", stratified)):
                label = f"case {number} cause {cause} strata={strata}"
                if expected == -1:  # cuminc's code for a singular covariance
                    with pytest.raises(InputError, match="singular"):
                        gray_test(data, "time", "status", "group", cause=int(cause), strata=strata)
                    continue
                result = gray_test(data, "time", "status", "group", cause=int(cause), strata=strata)
                np.testing.assert_allclose(result.statistic, expected, rtol=1e-6, atol=1e-12, err_msg=label)
