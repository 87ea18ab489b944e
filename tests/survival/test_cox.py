"""Cox regression: a 6-row hand calculation, properties, bad input.

R parity is in test_cox_reference.py (fixtures) and test_cox_rlive.py (live).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError, ModelWarning
from retrocohort.survival.cox import cox, score_residuals
from retrocohort.survival.zph import ph_test

# ---------------------------------------------------------------------------
# 6 rows, one binary covariate x; closed forms at beta = 0
#
#   time   1  2  2  3  4  5
#   status 1  1  1  0  1  0
#   x      1  0  1  1  0  0
#
# Risk sets: t=1 all 6 rows (three with x=1, xbar = 1/2), one death with x=1.
#            t=2 rows 2-6 (two with x=1, xbar = 2/5), two deaths (x=0 and x=1).
#            t=4 rows 5-6 (no x=1, xbar = 0), one death with x=0.
# At beta = 0 every risk score is 1, so S0 = number at risk, S1 = S2 = number with x=1.
#
# Breslow: U = (1 - 1/2) + (0 + 1 - 2*(2/5)) + 0 = 7/10
#          I = (1/2)(1/2) + 2*(2/5)(3/5) + 0 = 73/100, score test = U^2/I = 49/73
#          loglik(0) = -(log 6 + 2 log 5 + log 2)
# Efron at t=2: step 1 uses S0 = 5, xbar = 2/5; step 2 removes half of the two dying
#          rows' weight: S0 = 5 - 1 = 4, S1 = S2 = 2 - 1/2 = 3/2, xbar = 3/8.
#          U = 1/2 + (1 - 2/5 - 3/8) = 29/40
#          I = 1/4 + (2/5 - 4/25) + (3/8 - 9/64) = 1/4 + 6/25 + 15/64 = 1159/1600
#          score test = (29/40)^2 / (1159/1600) = 841/1159
#          loglik(0) = -(log 6 + log 5 + log 4 + log 2)
# ---------------------------------------------------------------------------
HAND = pd.DataFrame({"time": [1, 2, 2, 3, 4, 5], "status": [1, 1, 1, 0, 1, 0], "x": [1, 0, 1, 1, 0, 0]})


@pytest.mark.parametrize(
    "ties, score, loglik0",
    [
        ("breslow", 49 / 73, -(math.log(6) + 2 * math.log(5) + math.log(2))),
        ("efron", 841 / 1159, -(math.log(6) + math.log(5) + math.log(4) + math.log(2))),
    ],
)
def test_hand_calculated_score_test_and_null_loglik(ties, score, loglik0):
    fit = cox(HAND, "time", "status", ["x"], ties=ties)
    assert fit.score.statistic == pytest.approx(score, rel=1e-12)
    assert fit.score.df == 1
    assert fit.loglik[0] == pytest.approx(loglik0, rel=1e-12)
    assert fit.n == 6 and fit.n_events == 4
    # the estimate maximises the partial likelihood: LR >= 0 and the se is the inverse information
    assert fit.likelihood_ratio.statistic > 0
    assert fit.converged


def test_hand_case_score_residuals_sum_to_score_at_null():
    # at beta = 0 the weighted score residuals add up to the score vector U (Breslow: 7/10)
    fit = cox(HAND, "time", "status", ["x"], ties="breslow")
    assert score_residuals(fit, at_null=True)["x"].sum() == pytest.approx(7 / 10, rel=1e-12)
    fit = cox(HAND, "time", "status", ["x"], ties="efron")
    assert score_residuals(fit, at_null=True)["x"].sum() == pytest.approx(29 / 40, rel=1e-12)
    # and to zero at the estimate
    assert abs(score_residuals(fit)["x"].sum()) < 1e-8


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


def _random_cohort(seed: int, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    trt = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    grp = rng.choice(["a", "b", "c"], n)
    lp = 0.6 * trt + 0.4 * x + 0.3 * (grp == "b")
    t = rng.exponential(20 / np.exp(lp))
    c = rng.uniform(5, 50, n)
    return pd.DataFrame(
        {
            "time": np.maximum(1, np.ceil(np.minimum(t, c))),
            "status": (t <= c).astype(int),
            "trt": trt,
            "x": x,
            "grp": grp,
            "w": rng.integers(1, 4, n),
            "site": rng.choice(["n", "s"], n),
            "set": np.arange(n) // 3,
        }
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.sampled_from(["efron", "breslow"]))
def test_coefficients_invariant_to_row_order(seed, ties):
    data = _random_cohort(seed)
    shuffled = data.sample(frac=1, random_state=seed).reset_index(drop=True)
    a = cox(data, "time", "status", ["trt", "x", "grp"], ties=ties, strata="site", cluster="set")
    b = cox(shuffled, "time", "status", ["trt", "x", "grp"], ties=ties, strata="site", cluster="set")
    np.testing.assert_allclose(a.summary["coef"], b.summary["coef"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.summary["se"], b.summary["se"], rtol=1e-9)
    assert a.concordance == pytest.approx(b.concordance, rel=1e-12)
    np.testing.assert_allclose(ph_test(a).table["chisq"], ph_test(b).table["chisq"], rtol=1e-8)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 500), ties=st.sampled_from(["efron", "breslow"]))
def test_coefficients_invariant_to_time_rescaling(seed, scale, ties):
    # the partial likelihood depends on times only through their order
    data = _random_cohort(seed)
    rescaled = data.assign(time=data["time"] * scale)
    a = cox(data, "time", "status", ["trt", "x", "grp"], ties=ties)
    b = cox(rescaled, "time", "status", ["trt", "x", "grp"], ties=ties)
    np.testing.assert_allclose(a.summary["coef"], b.summary["coef"], rtol=1e-9, atol=1e-12)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_integer_weights_equal_replicated_rows(seed):
    # Breslow: a case weight of k is k copies of the row (coefficients and model-based
    # variance). Not for Efron: copies of a dying row are tied deaths that Efron
    # down-weights step by step, while coxph's weighted Efron uses the mean weight.
    ties = "breslow"
    data = _random_cohort(seed, n=60)
    replicated = data.loc[data.index.repeat(data["w"])].reset_index(drop=True)
    a = cox(data, "time", "status", ["trt", "x"], ties=ties, weights="w", robust=False)
    b = cox(replicated, "time", "status", ["trt", "x"], ties=ties)
    np.testing.assert_allclose(a.summary["coef"], b.summary["coef"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a.summary["se"], b.summary["se"], rtol=1e-8)


def test_default_variance_follows_coxph_integer_weight_rule():
    # integer case weights are frequency weights: coxph keeps the model-based variance (it equals
    # the fit on replicated rows); one non-integer weight makes the sandwich the default
    data = _random_cohort(8, n=60)
    replicated = data.loc[data.index.repeat(data["w"])].reset_index(drop=True)
    integer = cox(data, "time", "status", ["trt", "x"], ties="breslow", weights="w")
    copies = cox(replicated, "time", "status", ["trt", "x"], ties="breslow")
    assert not integer.robust and "naive_se" not in integer.summary
    np.testing.assert_allclose(integer.summary["se"], copies.summary["se"], rtol=1e-8)
    fractional = cox(data.assign(w=data["w"] + 0.5), "time", "status", ["trt", "x"], ties="breslow", weights="w")
    assert fractional.robust and "naive_se" in fractional.summary
    assert not np.allclose(fractional.summary["se"], fractional.summary["naive_se"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_entry_at_zero_equals_right_censored(seed):
    # (0, t] intervals are the right-censored risk sets when every time is positive
    data = _random_cohort(seed).assign(entry=0.0)
    a = cox(data, "time", "status", ["trt", "x", "grp"], entry="entry", cluster="set")
    b = cox(data, "time", "status", ["trt", "x", "grp"], cluster="set")
    np.testing.assert_allclose(a.summary[["coef", "se"]], b.summary[["coef", "se"]], rtol=1e-9)
    assert a.concordance == pytest.approx(b.concordance, rel=1e-12)


def test_split_intervals_equal_unsplit_rows():
    # splitting a subject's follow-up at a time into (0, s] and (s, t] leaves the fit unchanged
    data = _random_cohort(3)
    first = data.assign(
        entry=0.0, time=np.minimum(data["time"], 7.5), status=np.where(data["time"] > 7.5, 0, data["status"])
    )
    second = data[data["time"] > 7.5].assign(entry=7.5)
    split = pd.concat([first, second], ignore_index=True)
    a = cox(split, "time", "status", ["trt", "x"], entry="entry")
    b = cox(data, "time", "status", ["trt", "x"])
    np.testing.assert_allclose(a.summary["coef"], b.summary["coef"], rtol=1e-9)
    np.testing.assert_allclose(a.summary["se"], b.summary["se"], rtol=1e-9)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


def test_robust_with_singleton_clusters_equals_robust_true():
    data = _random_cohort(11).assign(row=lambda d: np.arange(len(d)))
    a = cox(data, "time", "status", ["trt", "x"], cluster="row")
    b = cox(data, "time", "status", ["trt", "x"], robust=True)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-12)
    assert a.robust_score.statistic == pytest.approx(b.robust_score.statistic, rel=1e-12)
    assert "naive_se" in a.summary and not np.allclose(a.summary["se"], a.summary["naive_se"])


def test_result_is_frozen():
    fit = cox(HAND, "time", "status", ["x"])
    with pytest.raises(AttributeError):
        fit.converged = False  # type: ignore[misc]


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.assign(time=d["time"].where(d.index != 2, -1)), "negative"),
        (lambda d: d.assign(time=d["time"].where(d.index != 2, np.nan)), "missing"),
        (lambda d: d.assign(status=0), "no events"),
        (lambda d: d.assign(status=d["status"].replace({0: 2})), "0 \\(censored\\) or 1"),
        (lambda d: d.assign(x=1.0), "'x' is constant"),
        (lambda d: d.assign(x=d["x"].where(d.index != 1, np.nan)), "missing"),
    ],
)
def test_bad_input_is_named(change, match):
    data = _random_cohort(1)
    with pytest.raises(InputError, match=match):
        cox(change(data), "time", "status", ["trt", "x"])


def test_collinear_covariate_is_named():
    data = _random_cohort(2).assign(x2=lambda d: 2 * d["x"] - d["trt"])
    with pytest.raises(InputError, match="x2"):
        cox(data, "time", "status", ["trt", "x", "x2"])


def test_options_are_checked():
    data = _random_cohort(2)
    with pytest.raises(InputError, match="ties='discrete' is not supported"):
        cox(data, "time", "status", ["trt"], ties="discrete")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="weights"):
        cox(data.assign(w=0), "time", "status", ["trt"], weights="w")
    with pytest.raises(InputError, match="entry"):
        cox(data.assign(entry=data["time"]), "time", "status", ["trt"], entry="entry")
    with pytest.raises(InputError, match="no column"):
        cox(data, "time", "status", ["nope"])


def test_monotone_likelihood_warns_naming_the_covariate():
    # every event happens in the treated group: the treatment coefficient diverges;
    # coxph warns "Loglik converged before variable 2" for this data
    data = pd.DataFrame(
        {
            "time": np.arange(1, 21, dtype=float),
            "status": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0] * 2,
            "trt": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0] * 2,
            "x": np.sin(np.arange(1, 21)),
        }
    )
    with pytest.warns(ModelWarning, match=r"\['trt'\]"):
        fit = cox(data, "time", "status", ["x", "trt"])
    assert any("infinite" in note for note in fit.notes)
    assert fit.summary.loc["trt", "coef"] > 5


def test_non_convergence_is_flagged():
    data = _random_cohort(5)
    with pytest.warns(ModelWarning, match="did not converge"):
        fit = cox(data, "time", "status", ["trt", "x"], max_iter=2)
    assert not fit.converged and any("did not converge" in note for note in fit.notes)


@pytest.mark.parametrize("max_iter", [0, 1])
def test_zero_or_one_iteration_does_not_warn_as_coxph(max_iter):
    # coxph checks convergence and infinite coefficients only when iter.max > 1; on data with a
    # monotone likelihood (trt separates the deaths) neither check may fire for 0 or 1 iterations
    data = pd.DataFrame(
        {
            "time": np.arange(1, 21, dtype=float),
            "status": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0] * 2,
            "trt": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0] * 2,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = cox(data, "time", "status", ["trt"], max_iter=max_iter)
    assert not fit.converged and fit.iterations == max_iter
    assert any(f"max_iter={max_iter}" in note for note in fit.notes)
    if max_iter == 0:
        assert fit.summary.loc["trt", "coef"] == 0.0
    else:
        # one Newton step from 0: beta = U(0) / I(0), positive and finite
        assert 0 < fit.summary.loc["trt", "coef"] < 5
    # with two iterations allowed the monotone likelihood is reported
    with pytest.warns(ModelWarning):
        cox(data, "time", "status", ["trt"], max_iter=2)


def test_stratum_without_events_is_noted():
    data = _random_cohort(6)
    data.loc[data["site"] == "s", "status"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = cox(data, "time", "status", ["trt", "x"], strata="site")
    assert any("'s'" in note and "no events" in note for note in fit.notes)
    # the stratum contributes nothing: same coefficients as the fit without it
    alone = cox(data[data["site"] == "n"], "time", "status", ["trt", "x"])
    np.testing.assert_allclose(fit.summary["coef"], alone.summary["coef"], rtol=1e-10)


def test_times_equal_up_to_rounding_are_tied_as_coxph_does():
    # 0.1 + 0.2 != 0.3 in floating point; coxph's timefix (aeqSurv) treats them as one time
    exact = HAND.assign(time=HAND["time"] * 0.3)
    rounded = exact.copy()
    rounded.loc[2, "time"] = 0.1 + 0.2 + (0.1 + 0.2) * 1  # 0.6000000000000001 next to 0.6
    assert rounded.loc[2, "time"] != exact.loc[1, "time"]
    tied = cox(exact, "time", "status", ["x"])
    fixed = cox(rounded, "time", "status", ["x"])
    unfixed = cox(rounded, "time", "status", ["x"], timefix=False)
    assert fixed.summary["coef"].iloc[0] == pytest.approx(tied.summary["coef"].iloc[0], rel=1e-12)
    assert unfixed.summary["coef"].iloc[0] != pytest.approx(tied.summary["coef"].iloc[0], rel=1e-6)


def test_units_of_a_covariate_do_not_decide_singularity():
    # coxph's tolerance applies to rescaled columns: a covariate in tiny units beside one in huge units is
    # still estimated (its coefficient is the rescaled one), not refused as constant
    data = _random_cohort(12)
    plain = cox(data, "time", "status", ["trt", "x"])
    units = cox(data.assign(x=data["x"] * 1e-9, trt=data["trt"] * 1e6), "time", "status", ["trt", "x"])
    np.testing.assert_allclose(units.summary["coef"].to_numpy() * [1e6, 1e-9], plain.summary["coef"], rtol=1e-8)


def test_covariate_constant_within_strata_is_named():
    # identified by nothing once the baseline hazard differs by stratum (coxph gives NA)
    data = _random_cohort(8).assign(north=lambda d: (d["site"] == "n").astype(float))
    with pytest.raises(InputError, match="north"):
        cox(data, "time", "status", ["trt", "north"], strata="site")


def test_many_small_strata_match_brute_force_concordance():
    # matched pairs as strata: concordance counts only within pairs (checked by brute force)
    data = _random_cohort(9, n=200).assign(pair=lambda d: np.arange(len(d)) // 2)
    fit = cox(data, "time", "status", ["trt", "x"], strata="pair")
    eta = data[["trt", "x"]].to_numpy(float) @ fit.summary["coef"].to_numpy()
    conc = disc = tied = 0
    for _, grp in data.assign(eta=eta).groupby("pair"):
        for i in grp.index:
            if grp.loc[i, "status"] != 1:
                continue
            at_risk = (grp["time"] > grp.loc[i, "time"]) | ((grp["time"] == grp.loc[i, "time"]) & (grp["status"] == 0))
            diff = np.sign(grp.loc[i, "eta"] - grp.loc[at_risk, "eta"])
            conc += (diff > 0).sum()
            disc += (diff < 0).sum()
            tied += (diff == 0).sum()
    assert fit.concordance_counts == {"concordant": conc, "discordant": disc, "tied_x": tied}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, 2.0, 5e-324, 1e308]),
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_fit_sort_is_numpys_stable_argsort(values):
    """The radix sort the fit uses orders rows exactly as np.argsort(kind="stable"), ties included."""
    from retrocohort.survival._sorting import stable_argsort as _stable_argsort

    x = np.asarray(values, dtype=float)
    np.testing.assert_array_equal(_stable_argsort(x), np.argsort(x, kind="stable"))
    assert _stable_argsort(-x).tolist() == np.argsort(-x, kind="stable").tolist()  # negatives: flipped keys
    mixed = np.concatenate([x, -x])
    assert _stable_argsort(mixed).tolist() == np.argsort(mixed, kind="stable").tolist()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.5, -1.5, -1e308, 1e308]),
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_risk_score_ranks_are_dense_ranks(values):
    """The C index ranks risk scores densely (equal scores, -0.0 and 0.0 included, share a rank)."""
    from scipy.stats import rankdata

    from retrocohort.survival._concordance import dense_rank

    x = np.asarray(values, dtype=float)
    rank, n_rank = dense_rank(x)
    expected = rankdata(x, method="dense").astype(np.int64) - 1
    np.testing.assert_array_equal(rank, expected)
    assert n_rank == len(np.unique(x))


@pytest.mark.parametrize("layout", ["one block", "separate columns"])
def test_design_gather_equals_direct_indexing(layout):
    """The sorted design matrix equals the covariates indexed by the fit order, from any pandas layout."""
    from retrocohort.survival.cox import _design

    rng = np.random.default_rng(11)
    n = 5000
    z = rng.normal(size=(n, 4))
    if layout == "one block":
        data = pd.DataFrame(z, columns=list("abcd"))  # one 2-D block: each column a strided view
    else:
        data = pd.DataFrame({c: z[:, j].copy() for j, c in enumerate("abcd")})
    data["g"] = rng.choice(["u", "v", "w"], n)
    order = rng.permutation(n)
    X, terms, means, col_min, col_max = _design(data, ["a", "g", "b", "c", "d"], "test", order)
    expected = np.column_stack(
        [
            z[order, 0],
            (data["g"].to_numpy()[order] == "v"),
            (data["g"].to_numpy()[order] == "w"),
            z[order, 1],
            z[order, 2],
            z[order, 3],
        ]
    )
    np.testing.assert_allclose(means, expected.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(X, expected - means)  # centred while gathered
    np.testing.assert_array_equal(col_min, expected.min(axis=0))
    np.testing.assert_array_equal(col_max, expected.max(axis=0))
    assert terms[1] == ("g", ("gv", "gw"))
