"""Gray's test (survival/_gray.py): a tied 2-group case by hand, covariance properties, live cuminc.

The fixtures from tests/reference/r/competing.R are checked in test_competing.py;
here: the formulas of docs/survival-descriptive.md worked through by hand on
data with tied events of both causes (the same data is the R fixture
``gray_hand_ties``), properties every covariance of the scores must have, and
fresh random data against ``cmprsk::cuminc`` (3 groups, strata, whole-day ties,
a group whose survival reaches 0 early).
"""

from __future__ import annotations

import secrets
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from retrocohort.errors import InputError
from retrocohort.survival._gray import gray_score_covariance
from retrocohort.survival.competing import gray_test
from tests.rlive import run_r

HAND_DATA = pd.DataFrame(
    {
        "time": [1, 1, 2, 3, 3, 2, 3],
        "status": [2, 2, 1, 0, 0, 1, 0],
        "group": ["a", "a", "a", "a", "a", "b", "b"],
    }
)


def test_hand_calculation_with_tied_events_of_both_causes(reference):
    """Group a: 5 rows, two cause-2 events on day 1, one cause-1 event on day 2, two censored on day 3.
    Group b: 2 rows, one cause-1 event on day 2, one censored on day 3.

    Cause 1. Day 1: Y = (5, 2), d2_a = 2, so S_a(1) = 3/5. Day 2: Y = (3, 2),
    S(2-) = (3/5, 1), h = Y / S(2-) = (5, 2), H = 7, D1 = 2, dF0 = 2/7,
    F0(1) = 0, F0(2) = 2/7, dG0(2) = dF0 / (1 - F0(1)) = 2/7.
      score: R = Y (1 - F(2-)) / S(2-) = (5, 2); z_a = 1 - 5 * 2/7 = -3/7.
      a_aa(2) = h_a (1 - h_a/H) = 10/7; c_aa(1) = a_aa(2) dG0(2) = 20/49; c(2) = 0.
      day 1, cause-2 term of group a: (S_a(1-)/Y_a)^2 d2 (Y - d2)/(Y - 1) = (1/25) 2 (3/4) = 3/50,
        times (c_aa(1) v_a(1))^2 with v_a(1) = -(1 - F0(1)) / S_a(1) = -5/3: (3/50)(100/147)^2 = 200/7203.
      day 2, cause-1 terms: S_r(2-) dF0 / Y_r times the tie factor (H S_r - D1) / (H S_r - 1):
        a: (3/5)(2/7)/3 * (21/5 - 2)/(21/5 - 1) = (2/35)(11/16) = 11/280,
        b: (2/7)/2 * (7 - 2)/(7 - 1) = 5/42; sum 19/120, times a_aa(2)^2 = 100/49: 95/294.
      V_aa = 95/294 + 200/7203 = 1685/4802; statistic = (9/49) / (1685/4802) = 882/1685.
    Cause 2 (cause 1 is now the competing one). Day 1: S = (1, 1), h = Y = (5, 2), H = 7,
    D1 = 2, all in a: z_a = 2 - 5 * 2/7 = 4/7. No later events of the cause, so c = 0 and
    only day 1 counts: a_aa = 10/7, weights (2/7)/5 * 5/6 = 1/21 and (2/7)/2 * 5/6 = 5/42,
    V_aa = (100/49)(1/6) = 50/147; statistic = (16/49) / (50/147) = 24/25.
    cuminc gives the same two statistics (fixture gray_hand_ties).
    """
    f = Fraction
    expected = {1: (f(-3, 7), f(1685, 4802)), 2: (f(4, 7), f(50, 147))}
    fixture = reference("gray_hand_ties")["values"]
    for cause, (score, variance) in expected.items():
        result = gray_test(HAND_DATA, "time", "status", "group", cause=cause)
        np.testing.assert_allclose(result.score, [float(score), -float(score)], rtol=1e-14)
        np.testing.assert_allclose(result.variance, float(variance) * np.array([[1, -1], [-1, 1]]), rtol=1e-13)
        statistic = score**2 / variance
        np.testing.assert_allclose(result.statistic, float(statistic), rtol=1e-13)
        np.testing.assert_allclose(result.p_value, stats.chi2.sf(float(statistic), 1), rtol=1e-12)
        np.testing.assert_allclose(result.statistic, fixture["statistic"][cause - 1], rtol=1e-12)
    assert [float(s**2 / v) for s, v in expected.values()] == pytest.approx([882 / 1685, 24 / 25], rel=1e-15)


def _random_tied(seed: int, n_groups: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    levels = list("abcd"[:n_groups])
    group = rng.choice(levels, n)
    group[:n_groups] = levels  # every level present
    time = np.ceil(rng.exponential(rng.choice([3.0, 10.0]), n))
    status = rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])
    status[:2] = [1, 2]
    return pd.DataFrame({"time": time, "status": status, "group": group, "site": rng.choice(["s1", "s2"], n)})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_groups=st.integers(2, 4), stratified=st.booleans())
def test_covariance_properties_and_order_invariance(seed, n_groups, stratified):
    """Scores sum to 0 and the covariance is symmetric, positive semi-definite with
    rows summing to 0 (sum_k a_kr = sum_k c_kr = 0); so the statistic must not depend
    on which group is left out, i.e. on the order of the levels."""
    data = _random_tied(seed, n_groups)
    strata = "site" if stratified else None
    try:
        result = gray_test(data, "time", "status", "group", strata=strata)
    except InputError as error:
        assert "singular" in str(error)
        return
    v = result.variance
    scale = np.abs(v).max()
    np.testing.assert_allclose(result.score.sum(), 0.0, atol=1e-9 * max(1.0, np.abs(result.score).max()))
    np.testing.assert_allclose(v, v.T, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(v.sum(axis=1), 0.0, atol=1e-10 * scale)
    assert np.linalg.eigvalsh(v).min() >= -1e-10 * scale
    reversed_levels = sorted(data["group"].unique(), reverse=True)
    relabelled = data.assign(group=pd.Categorical(data["group"], categories=reversed_levels))
    other = gray_test(relabelled, "time", "status", "group", strata=strata)
    np.testing.assert_allclose(other.statistic, result.statistic, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(other.score, result.score[::-1], rtol=1e-12, atol=1e-12)


def _live_data(rng: np.random.Generator) -> pd.DataFrame:
    """Three arms with whole-day times; arm c is small and has no censoring, so its
    Kaplan-Meier reaches 0 within the first days while a and b go on to day 90."""
    n = int(rng.integers(150, 400))
    arm = rng.choice(["a", "b"], n)
    t1 = rng.exponential(np.where(arm == "a", 30.0, 45.0))
    t2 = rng.exponential(60.0, n)
    censor = rng.uniform(5.0, 90.0, n)
    first = np.minimum(np.minimum(t1, t2), censor)
    status = np.where(first == censor, 0, np.where(first == t1, 1, 2))
    n_c = int(rng.integers(6, 15))
    frame = pd.DataFrame(
        {
            "time": np.concatenate([np.ceil(first), rng.integers(1, 4, n_c).astype(float)]),
            "status": np.concatenate([status, rng.choice([1, 2], n_c)]),
            "arm": np.concatenate([arm, np.repeat("c", n_c)]),
        }
    )
    frame.loc[len(frame) - 2 :, "status"] = [1, 2]  # both causes occur in arm c
    frame["site"] = rng.choice(["north", "south"], len(frame))
    return frame


@pytest.mark.r
def test_live_three_groups_strata_ties_and_early_zero_survival():
    seed = secrets.randbelow(2**31)
    data = _live_data(np.random.default_rng(seed))
    two = data[data["arm"] != "c"].reset_index(drop=True)
    result = run_r(
        """suppressPackageStartupMessages(library(cmprsk))
        tests <- function(d, strata = NULL) {
          fit <- if (is.null(strata)) cuminc(d$time, d$status, d$arm) else
            cuminc(d$time, d$status, d$arm, strata = strata)
          list(stat = unname(fit$Tests[, "stat"]), pv = unname(fit$Tests[, "pv"]))
        }
        result <- list(plain = tests(df), strata = tests(df, df$site), two = tests(two))""",
        {"df": data, "two": two},
    )
    context = f"seed={seed}"
    # arm c's survival does reach 0 before the other arms' last event
    assert data.loc[data["arm"] == "c", "time"].max() < data.loc[data["arm"] != "c", "time"].max(), context
    for cause in (1, 2):
        for key, strata in (("plain", None), ("strata", "site")):
            stat, pv = result[key]["stat"][cause - 1], result[key]["pv"][cause - 1]
            label = f"{context} cause={cause} strata={strata}"
            if stat == -1:  # cuminc's code for a singular covariance
                with pytest.raises(InputError, match="singular"):
                    gray_test(data, "time", "status", "arm", cause=cause, strata=strata)
                continue
            ours = gray_test(data, "time", "status", "arm", cause=cause, strata=strata)
            assert ours.df == 2, label
            np.testing.assert_allclose(ours.statistic, stat, rtol=1e-6, err_msg=label)
            np.testing.assert_allclose(ours.p_value, pv, rtol=1e-6, atol=1e-14, err_msg=label)
        # two groups: cuminc's statistic is z^2 / V, so its variance of the score is z^2 / stat
        pair = gray_test(two, "time", "status", "arm", cause=cause)
        stat_two = result["two"]["stat"][cause - 1]
        np.testing.assert_allclose(pair.statistic, stat_two, rtol=1e-6, err_msg=f"{context} two arms cause={cause}")
        if stat_two > 1e-8:
            np.testing.assert_allclose(
                pair.variance[0, 0],
                pair.score[0] ** 2 / stat_two,
                rtol=1e-6,
                err_msg=f"{context} two arms variance cause={cause}",
            )


# --------------------------------------------------------------------------- strata without events of the cause


def _with_event_free_strata(seed: int, n_free: int) -> tuple[pd.DataFrame, list[str]]:
    """Two arms, five sites; in ``n_free`` random sites the cause-1 events become cause 2 (one of
    them also loses every event), so those strata have events, but none of the cause."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 300))
    status = rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])
    data = pd.DataFrame(
        {
            "time": np.ceil(rng.exponential(25.0, n)),
            "status": status,
            "arm": rng.choice(["a", "b"], n),
            "site": rng.choice([f"s{j}" for j in range(1, 6)], n),
        }
    )
    data.loc[:4, "site"] = [f"s{j}" for j in range(1, 6)]  # every site present
    free = sorted(rng.choice([f"s{j}" for j in range(1, 6)], n_free, replace=False).tolist())
    in_free = data["site"].isin(free)
    data.loc[in_free & (data["status"] == 1), "status"] = 2
    if n_free > 1:
        data.loc[data["site"] == free[-1], "status"] = 0  # a stratum with no events at all
    elsewhere = data.index[~in_free.to_numpy()]
    data.loc[elsewhere[0], ["status", "arm"]] = [1, "a"]  # the cause occurs in both arms elsewhere
    data.loc[elsewhere[1], ["status", "arm"]] = [1, "b"]
    return data, free


def test_a_stratum_without_events_of_the_cause_is_noted_and_adds_nothing():
    data, free = _with_event_free_strata(3, 1)
    result = gray_test(data, "time", "status", "arm", strata="site")
    n_free = int(data["site"].isin(free).sum())
    assert result.notes[-1] == (
        f"stratum {{'site': {free[0]!r}}} ({n_free} of {len(data)} rows) has no events of cause 1; "
        "it contributes nothing to the test"
    )
    # the kernel itself gives zero score and covariance for that stratum (the loop's skip changes nothing) ...
    rows = (data["site"] == free[0]).to_numpy()
    codes = data["status"].to_numpy()[rows]
    score, covariance = gray_score_covariance(
        data["time"].to_numpy(float)[rows],
        codes == 1,
        codes == 2,
        (data["arm"].to_numpy()[rows] == "b").astype(np.int64),
        2,
    )
    assert (codes == 2).any()  # it has competing events, which could have entered the covariance
    assert not score.any() and not covariance.any()
    # ... so the test equals the one on the other strata alone
    rest = gray_test(data[~rows].reset_index(drop=True), "time", "status", "arm", strata="site")
    assert not any("has no events of cause" in note for note in rest.notes)
    np.testing.assert_allclose(result.statistic, rest.statistic, rtol=1e-13)
    np.testing.assert_allclose(result.variance, rest.variance, rtol=1e-13)
    # cause 2 does occur in that stratum: no strata note for cause 2
    assert not any(
        "has no events of cause" in note
        for note in gray_test(data, "time", "status", "arm", cause=2, strata="site").notes
    )


def test_several_strata_without_events_of_the_cause_are_noted_together():
    data, free = _with_event_free_strata(4, 2)
    result = gray_test(data, "time", "status", "arm", strata="site", competing_codes=[2])
    n_free = int(data["site"].isin(free).sum())
    assert result.notes == (
        f"2 of 5 strata of 'site' have no events of cause 1 ({n_free} of {len(data)} rows; e.g. {free}); "
        "they contribute nothing to the test",
    )
    assert gray_test(data, "time", "status", "arm", competing_codes=[2]).notes == ()  # no strata, no note


@pytest.mark.r
def test_live_event_free_strata_equal_cuminc():
    """cuminc with strata where one or two strata have no event of cause 1 (one of them none at all)."""
    seed = secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    data, free = _with_event_free_strata(seed, int(rng.integers(1, 3)))
    result = run_r(
        """suppressPackageStartupMessages(library(cmprsk))
        w <- character(0)
        fit <- withCallingHandlers(cuminc(df$time, df$status, df$arm, strata = df$site),
                                   warning = function(c) {
                                     w <<- c(w, conditionMessage(c))
                                     invokeRestart("muffleWarning")
                                   })
        keep <- !(df$site %in% free$site)
        rest <- cuminc(df$time[keep], df$status[keep], df$arm[keep], strata = df$site[keep])
        result <- list(stat = unname(fit$Tests[, "stat"]), pv = unname(fit$Tests[, "pv"]), warnings = w,
                       rest = unname(rest$Tests[, "stat"]))""",
        {"df": data, "free": pd.DataFrame({"site": free})},
    )
    context = f"seed={seed} event-free strata {free}"
    assert result["warnings"] == [], context  # cuminc says nothing about them ...
    # ... and they change nothing in its statistic for cause 1
    np.testing.assert_allclose(result["stat"][0], result["rest"][0], rtol=1e-12, err_msg=context)
    for cause in (1, 2):
        ours = gray_test(data, "time", "status", "arm", cause=cause, strata="site")
        np.testing.assert_allclose(
            ours.statistic, result["stat"][cause - 1], rtol=1e-6, err_msg=f"{context} cause={cause}"
        )
        np.testing.assert_allclose(
            ours.p_value, result["pv"][cause - 1], rtol=1e-6, atol=1e-14, err_msg=f"{context} cause={cause}"
        )
        without = sorted(set(data["site"]) - set(data.loc[data["status"] == cause, "site"]))
        assert cause == 2 or without == free, context
        noted = [note for note in ours.notes if "no events of cause" in note]
        assert len(noted) == bool(without), f"{context} cause={cause}: {ours.notes}"
        assert all(repr(level) in noted[0] for level in without), f"{context} cause={cause}: {noted}"


# --------------------------------------------------------------------------- pooled F0 reaching 1


def test_pooled_incidence_reaching_one_before_a_later_event_by_hand():
    """Group a: two cause-1 events on day 1; group b: cause-1 events on days 2 and 3.

    Pooled F0: day 1 h = (2, 2), H = 4, dF0 = 2/4, F0 = 1/2; day 2 only b is at risk,
    h_b = 2 / 1, dF0 = 1/2, F0 = 1; day 3 h_b = 1 / (1/2) = 2, dF0 = 1/2 with
    1 - F0(3-) = 0, so dG0(3) = dF0 / (1 - F0(3-)) is infinite. On days 2 and 3 only
    group b is at risk: a_kr = h_k (1{k=r} - h_r/H) = 0, so those days add nothing to c
    (0 * inf taken as its limit 0, not NaN). Score: day 1 R = (2, 2), z_a = 2 - 2 * 2/4 = 1;
    days 2, 3 R. = R_b, z adds 0. Covariance: only day 1, c = 0, a_aa = 2 (1 - 1/2) = 1,
    weights S dF0 / Y = 1/4 times the tie factor (H S - D1)/(H S - 1) = 2/3, i.e. 1/6 per
    group: V_aa = 1/6 + 1/6 = 1/3, statistic 1 / (1/3) = 3. cuminc gives 3 as well
    (live test below; it computes no NaN either).
    """
    data = pd.DataFrame({"time": [1, 1, 2, 3], "status": [1, 1, 1, 1], "arm": ["a", "a", "b", "b"]})
    result = gray_test(data, "time", "status", "arm")
    np.testing.assert_allclose(result.score, [1.0, -1.0], rtol=1e-14)
    np.testing.assert_allclose(result.variance, np.array([[1, -1], [-1, 1]]) / 3, rtol=1e-14)
    np.testing.assert_allclose(result.statistic, 3.0, rtol=1e-14)
    np.testing.assert_allclose(result.p_value, stats.chi2.sf(3.0, 1), rtol=1e-12)


def _pooled_incidence_reaches_one(rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    """Arm a: N rows, all events of cause 1 on day 1. Arm b: N rows, no censoring, one event per
    day from day 2 on, causes 1 and 2 in random order with more than N/2 of cause 1. Without
    censoring h_b = Y_b / S_b(t-) = N on every day, so each cause-1 event of b adds 1/N to
    F0 = N / 2N + j / N, which is exactly 1 after b's (N/2)-th cause-1 event; the later ones
    come after it. Returns the data and the day F0 reaches 1."""
    n = 2 * int(rng.integers(1, 8))
    n_cause = int(rng.integers(n // 2 + 1, n + 1))
    b_status = rng.permutation(np.r_[np.ones(n_cause, int), np.full(n - n_cause, 2)])
    days = np.arange(2, n + 2)
    data = pd.DataFrame(
        {
            "time": np.r_[np.ones(n), days].astype(float),
            "status": np.r_[np.ones(n, int), b_status],
            "arm": ["a"] * n + ["b"] * n,
        }
    )
    reached = int(days[np.flatnonzero(b_status == 1)[n // 2 - 1]])
    return data, reached


@pytest.mark.r
def test_live_pooled_incidence_reaching_one_equals_cuminc():
    seed = secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    cases = [_pooled_incidence_reaches_one(rng) for _ in range(4)]
    frames = {f"d{i}": data for i, (data, _) in enumerate(cases)}
    # a placeholder, not an f-string or %-format: the R code is full of braces
    code = """suppressPackageStartupMessages(library(cmprsk))
        result <- lapply(list(FRAMES), function(d) {
          tests <- cuminc(d$time, d$status, d$arm)$Tests
          list(stat = unname(tests[, "stat"]), pv = unname(tests[, "pv"]), causes = as.numeric(rownames(tests)))
        })""".replace("FRAMES", ", ".join(frames))
    result = run_r(code, frames)
    for (data, reached), r in zip(cases, result, strict=True):
        context = f"seed={seed} N={len(data) // 2} F0 reaches 1 on day {reached}: {data['status'].tolist()}"
        # F0 does reach 1 strictly before b's last cause-1 event (exact arithmetic)
        f0 = Fraction(1, 2) + Fraction(
            int(((data["arm"] == "b") & (data["status"] == 1) & (data["time"] <= reached)).sum()), len(data) // 2
        )
        assert f0 == 1, context
        assert data.loc[data["status"] == 1, "time"].max() > reached, context
        for cause, stat, pv in zip(
            np.atleast_1d(r["causes"]), np.atleast_1d(r["stat"]), np.atleast_1d(r["pv"]), strict=True
        ):
            label = f"{context} cause={cause}"
            if stat == -1:  # cuminc's code for a singular covariance (cause 2: arm a has none at risk)
                with pytest.raises(InputError, match="singular"):
                    gray_test(data, "time", "status", "arm", cause=int(cause))
                continue
            ours = gray_test(data, "time", "status", "arm", cause=int(cause))
            assert np.isfinite(ours.statistic), label
            np.testing.assert_allclose(ours.statistic, stat, rtol=1e-6, err_msg=label)
            np.testing.assert_allclose(ours.p_value, pv, rtol=1e-6, atol=1e-14, err_msg=label)
