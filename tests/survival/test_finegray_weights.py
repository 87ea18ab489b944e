"""fine_gray with case weights: definitions, unit weights, the infinitesimal jackknife and R.

What is checked, and against what:

* unit weights reproduce the unweighted (crr) fit bit for bit, and crr's
  fixtures;
* the weighted kernels equal the weighted definitions written term by term
  (weighted risk sets, weighted Kaplan-Meier of censoring, eta_i and psi_i),
  on tied data;
* properties: integer weights = replicated rows (coefficients, baseline);
  rescaling all weights changes nothing;
* the infinitesimal-jackknife identity (no R involved): on small untied,
  censored data the derivative of the coefficients with respect to one
  subject's weight, by central finite differences of refits, equals
  ``I^-1 u_i`` with ``u_i`` the subject's influence term, and the sum of the
  squared weighted influence terms is the IJ variance;
* R: ``survival::finegray(..., weights =)`` + ``coxph(weights = fgwt,
  cluster = id)`` on untied data (fixture ``finegray_weighted``, written by
  tests/reference/r/finegray.R, and a live test with a fresh seed):
  coefficients, the score-residual ("eta only") part of our variance, and
  the predicted cumulative incidence through ``survfit``;
* bad weights raise with the frame, column, count and advice.
"""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError
from retrocohort.survival.finegray import _evaluate, _influence, _prepare, fine_gray
from tests.rlive import require_r, run_r
from tests.survival.finegray_definitions import weighted_definitions

# ------------------------------------------------------------------ helpers


def _draw(seed: int, n: int, tied: bool, censoring: bool = True) -> pd.DataFrame:
    """Two causes, censoring, a numeric and a binary covariate, IPTW-like (ATT) weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    ps = 1 / (1 + np.exp(-(0.8 * x - 0.3)))
    treated = rng.binomial(1, ps)
    t_event = rng.exponential(20.0, size=n) * np.exp(-(-0.5 * treated + 0.4 * x))
    t_cens = rng.uniform(0, 50, size=n) if censoring else np.full(n, np.inf)
    if tied:
        t_event, t_cens = np.ceil(t_event), np.ceil(t_cens)
    cause = rng.choice([1, 2], size=n, p=[0.55, 0.45])
    return pd.DataFrame(
        {
            "time": np.minimum(t_event, t_cens),
            "status": np.where(t_cens < t_event, 0, cause),
            "treated": treated.astype(float),
            "x": x,
            "w": np.where(treated == 1, 1.0, ps / (1 - ps)),
            "id": np.arange(n),
        }
    )


COVS = ["treated", "x"]


def _internals(data: pd.DataFrame, beta: np.ndarray, product_limit: bool = False, censoring_weighted: bool = True):
    """Our kernels at ``beta``: (fit, influence v_i eta_i + k_i psi_i in input row order)."""
    z = data[COVS].to_numpy(float)
    s, order = _prepare(
        data["time"].to_numpy(float),
        data["status"].to_numpy(),
        z,
        1,
        0,
        data["w"].to_numpy(float),
        censoring_weighted=censoring_weighted,
    )
    fit = _evaluate(s, beta)
    influence = np.empty_like(z)
    influence[order] = _influence(s, fit, product_limit=product_limit)
    return fit, influence


# ------------------------------------------------------------------ unit weights = crr


def test_unit_weights_reproduce_the_unweighted_crr_fit_exactly(reference):
    ref = reference("finegray_ties")
    values = ref["values"]
    data = pd.DataFrame(ref["data"]).assign(one=1.0)
    covs = ["age", "treated", "stage"]
    plain = fine_gray(data, "time", "status", covs)
    unit = fine_gray(data, "time", "status", covs, weights="one")
    # every number is the same float (products with 1.0 and sums of 1.0 are exact)
    pd.testing.assert_frame_equal(unit.summary, plain.summary, check_exact=True)
    pd.testing.assert_frame_equal(unit.vcov, plain.vcov, check_exact=True)
    pd.testing.assert_frame_equal(unit.baseline, plain.baseline, check_exact=True)
    assert unit.loglik == plain.loglik and unit.iterations == plain.iterations
    assert (unit.variance, unit.weights, plain.variance, plain.weights) == ("robust", "one", "crr", None)
    # and that is crr's fit (fixture): coefficients and var
    np.testing.assert_allclose(unit.summary["coef"], values["coef"], rtol=1e-7)
    np.testing.assert_allclose(unit.vcov.to_numpy(), np.array(values["var"]), rtol=1e-6)
    # with a cluster too
    clustered = fine_gray(data.assign(pair=np.arange(len(data)) // 2), "time", "status", covs, cluster="pair")
    clustered_unit = fine_gray(
        data.assign(pair=np.arange(len(data)) // 2), "time", "status", covs, cluster="pair", weights="one"
    )
    pd.testing.assert_frame_equal(clustered_unit.vcov, clustered.vcov, check_exact=True)


# ------------------------------------------------------------------ kernels = definitions


@pytest.mark.parametrize("seed", [4, 5])
def test_weighted_kernels_equal_the_weighted_definitions_on_tied_data(seed):
    data = _draw(seed, 70, tied=True)
    time, status = data["time"].to_numpy(float), data["status"].to_numpy()
    assert np.intersect1d(time[status == 0], time[status != 0]).size > 0  # censorings tied with events
    z, v = data[COVS].to_numpy(float), data["w"].to_numpy(float)
    assert v.std() > 0.2  # weights far from constant
    beta = np.array([-0.6, 0.5])
    for censoring_km in ("weighted", "unweighted"):
        km = v if censoring_km == "weighted" else np.ones_like(v)
        fit, influence = _internals(data, beta, censoring_weighted=censoring_km == "weighted")
        loglik, score, info, eta, psi = weighted_definitions(time, status, z, v, beta, km=km)
        np.testing.assert_allclose(fit.loglik, loglik, rtol=1e-12)
        np.testing.assert_allclose(fit.score, score, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit.info, info, rtol=1e-10)
        np.testing.assert_allclose(influence, v[:, None] * eta + km[:, None] * psi, rtol=1e-9, atol=1e-12)
        assert np.abs(psi).max() > 1e-2 * np.abs(eta).max()  # the censoring term matters here
        # the public fit: robust sandwich of v_i eta_i + k_i psi_i
        result = fine_gray(data, "time", "status", COVS, weights="w", censoring_km=censoring_km, tol=1e-13, max_iter=50)
        assert result.censoring_km == censoring_km
        beta_hat = result.summary["coef"].to_numpy()
        _, score_hat, info_hat, eta_hat, psi_hat = weighted_definitions(time, status, z, v, beta_hat, km=km)
        np.testing.assert_allclose(score_hat, 0.0, atol=1e-9)  # the weighted estimating equation at its root
        total = v[:, None] * eta_hat + km[:, None] * psi_hat
        bread = np.linalg.inv(info_hat)
        np.testing.assert_allclose(result.vcov.to_numpy(), bread @ total.T @ total @ bread, rtol=1e-8)
        # with a cluster: the weighted terms summed within pairs
        pairs = np.arange(len(data)) // 2
        clustered = fine_gray(
            data.assign(pair=pairs),
            "time",
            "status",
            COVS,
            weights="w",
            cluster="pair",
            censoring_km=censoring_km,
            tol=1e-13,
            max_iter=50,
        )
        summed = np.zeros((pairs.max() + 1, len(COVS)))
        np.add.at(summed, pairs, total)
        np.testing.assert_allclose(clustered.vcov.to_numpy(), bread @ summed.T @ summed @ bread, rtol=1e-8)
        assert clustered.variance == "cluster" and result.variance == "robust"


# ------------------------------------------------------------------ properties


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_integer_weights_equal_replicated_rows(seed):
    # A weight of k counts a subject k times, in the risk sets and in the
    # censoring Kaplan-Meier alike: the fit equals the fit to k copies of the row.
    data = _draw(seed, 60, tied=True)
    rng = np.random.default_rng(seed)
    data["k"] = rng.integers(1, 4, size=len(data)).astype(float)
    if (data["status"] == 1).sum() < 5:
        return
    weighted = fine_gray(data, "time", "status", COVS, weights="k", tol=1e-12, max_iter=50)
    copies = data.loc[data.index.repeat(data["k"].astype(int))].reset_index(drop=True)
    replicated = fine_gray(copies, "time", "status", COVS, tol=1e-12, max_iter=50)
    np.testing.assert_allclose(weighted.summary["coef"], replicated.summary["coef"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.information.to_numpy(), replicated.information.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(weighted.baseline["hazard"], replicated.baseline["hazard"], rtol=1e-9)
    np.testing.assert_allclose(weighted.loglik.final, replicated.loglik.final, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3))
def test_rescaling_all_weights_changes_nothing(seed, scale):
    data = _draw(seed, 60, tied=True)
    if (data["status"] == 1).sum() < 5:
        return
    base = fine_gray(data, "time", "status", COVS, weights="w", tol=1e-12, max_iter=50)
    scaled = fine_gray(data.assign(w=data["w"] * scale), "time", "status", COVS, weights="w", tol=1e-12, max_iter=50)
    np.testing.assert_allclose(scaled.summary["coef"], base.summary["coef"], rtol=1e-9, atol=1e-12)
    # information scales with the weights, the meat with their square: the sandwich does not move
    np.testing.assert_allclose(scaled.vcov.to_numpy(), base.vcov.to_numpy(), rtol=1e-8, atol=1e-14)
    cif = scaled.predict_cif(pd.DataFrame({"treated": [0.0, 1.0], "x": [0.0, 1.0]})).iloc[:, 1:].to_numpy()
    cif_base = base.predict_cif(pd.DataFrame({"treated": [0.0, 1.0], "x": [0.0, 1.0]})).iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(cif, cif_base, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("scale", [1e-7, 1e-5, 1e3])
def test_default_stopping_rule_is_free_of_the_weight_scale(scale):
    # crr's rule compares the score with max(|loglik|, 1): both shrink with the weights, so before
    # the weights were normalised, weights * 1e-7 stopped at beta = 0 (coef 0, p = 1) with no warning
    data = _draw(11, 300, tied=True)
    base = fine_gray(data, "time", "status", COVS, weights="w")
    scaled = fine_gray(data.assign(w=data["w"] * scale), "time", "status", COVS, weights="w")
    assert scaled.converged and np.all(np.abs(base.summary["coef"]) > 0.05)
    np.testing.assert_allclose(scaled.summary["coef"], base.summary["coef"], rtol=1e-8)
    np.testing.assert_allclose(scaled.summary["se"], base.summary["se"], rtol=1e-8)
    assert scaled.iterations == base.iterations
    # the information is reported for the weights as given: it scales with them
    np.testing.assert_allclose(scaled.information.to_numpy(), scale * base.information.to_numpy(), rtol=1e-10)
    # and the fully converged answer is the same one (the default rule does not stop short of it)
    tight = fine_gray(data, "time", "status", COVS, weights="w", tol=1e-13, max_iter=50)
    np.testing.assert_allclose(scaled.summary["coef"], tight.summary["coef"], rtol=1e-5)


def test_weighted_loglik_is_reported_on_the_given_weights():
    # integer weights are replicated rows: the log pseudo-likelihood (which depends on the scale of the
    # weights) must be the replicated fit's, also when the fit ran on normalised weights internally
    data = _draw(5, 80, tied=True).assign(k=lambda d: np.arange(len(d)) % 3 + 1.0)
    weighted = fine_gray(data, "time", "status", COVS, weights="k", tol=1e-12, max_iter=50)
    copies = data.loc[data.index.repeat(data["k"].astype(int))].reset_index(drop=True)
    replicated = fine_gray(copies, "time", "status", COVS, tol=1e-12, max_iter=50)
    assert data["k"].mean() != 1.0
    np.testing.assert_allclose(weighted.loglik.null, replicated.loglik.null, rtol=1e-10)
    np.testing.assert_allclose(weighted.loglik.final, replicated.loglik.final, rtol=1e-10)


# ------------------------------------------------------------------ infinitesimal jackknife


def _jackknife(data: pd.DataFrame, h: float = 1e-4):
    """(fit, D): the fit and D[i] = v_i d beta / d v_i by central differences of refits at v_i (1 +- h)."""
    fit = fine_gray(data, "time", "status", COVS, weights="w", tol=1e-14, max_iter=60)
    w = data["w"].to_numpy(float)
    derivative = np.empty((len(data), len(COVS)))
    for i in range(len(data)):
        coefs = []
        for sign in (1.0, -1.0):
            bumped = w.copy()
            bumped[i] *= 1.0 + sign * h
            refit = fine_gray(data.assign(w=bumped), "time", "status", COVS, weights="w", tol=1e-14, max_iter=60)
            coefs.append(refit.summary["coef"].to_numpy())
        derivative[i] = (coefs[0] - coefs[1]) / (2.0 * h)
    return fit, derivative


@pytest.mark.parametrize("seed", [21, 22])
def test_influence_is_the_derivative_of_the_estimate_in_each_weight(seed):
    """The infinitesimal-jackknife identity, with no R code involved.

    ``beta`` solves ``U(beta; v) = 0``, so ``d beta / d v_i = I^-1 dU/dv_i``.
    At fixed ``G``, ``dU/dv_i = eta_i`` exactly; through ``G`` (the
    product-limit estimate, whose log changes by ``-[dN^c_i(u) - Y_i(u)
    c(u)/n(u)] / (n(u) - c(u))`` at each censoring time ``u``) it adds the
    censoring term with ``1 / (n(u) - c(u))``. So on untied data:

    1. ``I^-1 (eta_i + psi_i^PL)`` (``product_limit=True``) is the finite-
       difference derivative to ~1e-7 (central differences, h = 1e-4);
    2. crr's ``psi`` (the reported variance) divides by ``n(u)`` instead: its
       first-order version. The two differ by a factor ``n/(n - c) = 1 +
       O(1/n(u))`` per censoring time, so the reported variance is the IJ
       variance ``sum_i D_i D_i'`` up to a small relative gap (measured
       below); without censoring ``psi = 0`` and they are equal exactly.
    """
    data = _draw(seed, 50, tied=False)
    assert data["time"].nunique() == len(data) and (data["status"] == 0).sum() >= 10
    fit, derivative = _jackknife(data)
    beta = fit.summary["coef"].to_numpy()
    w = data["w"].to_numpy(float)
    kernel_fit, influence_pl = _internals(data, beta, product_limit=True)
    bread = np.linalg.inv(kernel_fit.info)
    expected = influence_pl @ bread  # rows: I^-1 v_i u_i (I symmetric)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(derivative, expected, rtol=0, atol=1e-6 * scale)
    # the product-limit influence also equals the O(n^2) definitions
    z, time, status = data[COVS].to_numpy(float), data["time"].to_numpy(float), data["status"].to_numpy()
    _, _, _, eta, psi_pl = weighted_definitions(time, status, z, w, beta, product_limit=True)
    np.testing.assert_allclose(influence_pl, w[:, None] * (eta + psi_pl), rtol=1e-9, atol=1e-12)
    # IJ variance (sum of squared weighted influences) vs the reported variance
    ij = derivative.T @ derivative
    ij_pl = bread @ influence_pl.T @ influence_pl @ bread
    np.testing.assert_allclose(ij_pl, ij, rtol=1e-5)
    gap = np.abs(np.diag(fit.vcov.to_numpy()) / np.diag(ij) - 1)
    assert gap.max() < 0.02, gap  # crr's first-order psi vs the exact derivative: measured 1e-4 .. 5e-3


def test_without_censoring_the_reported_variance_is_the_ij_variance():
    # No censoring: G = 1, psi = 0, and the reported sandwich is exactly sum_i D_i D_i'.
    data = _draw(23, 45, tied=False, censoring=False)
    assert (data["status"] == 0).sum() == 0
    fit, derivative = _jackknife(data)
    np.testing.assert_allclose(fit.vcov.to_numpy(), derivative.T @ derivative, rtol=1e-6)


# ------------------------------------------------------------------ R: finegray + coxph


def _eta_only_variance(data: pd.DataFrame, beta: np.ndarray, cluster: str, km: np.ndarray) -> np.ndarray:
    """I^-1 (sum_c E_c E_c') I^-1 with E_c = sum_{i in c} v_i eta_i: our variance without psi."""
    z, w = data[COVS].to_numpy(float), data["w"].to_numpy(float)
    _, _, info, eta, _ = weighted_definitions(
        data["time"].to_numpy(float), data["status"].to_numpy(), z, w, beta, km=km
    )
    codes = pd.factorize(data[cluster])[0]
    summed = np.zeros((codes.max() + 1, z.shape[1]))
    np.add.at(summed, codes, w[:, None] * eta)
    bread = np.linalg.inv(info)
    return bread @ summed.T @ summed @ bread


def _assert_finegray_coxph(data: pd.DataFrame, r: dict, msg: str = "") -> None:
    """Both censoring Kaplan-Meiers against coxph on finegray-expanded data (untied times).

    ``r["unweighted"]``: ``finegray(..., weights = w)`` as it is (its ``fgwt`` =
    case weight x censoring weight from the unweighted Kaplan-Meier).
    ``r["weighted"]``: the same rows with ``fgwt`` recomputed from
    ``survfit(Surv(time, status == 0) ~ 1, weights = w)``; the recomputation
    with the unweighted survfit reproduces finegray's own ``fgwt``
    (``r["fgwt_rebuilt_gap"]``), so only ``G`` differs between the two.
    """
    assert r["fgwt_rebuilt_gap"] < 1e-12, msg
    w = data["w"].to_numpy(float)
    for censoring_km, km in (("unweighted", np.ones_like(w)), ("weighted", w)):
        ref = r[censoring_km]
        where = f"{msg} censoring_km={censoring_km}"
        fit = fine_gray(data, "time", "status", COVS, weights="w", censoring_km=censoring_km, tol=1e-12, max_iter=50)
        beta = fit.summary["coef"].to_numpy()
        np.testing.assert_allclose(beta, ref["coef"], rtol=1e-9, err_msg=where)
        # the score-residual part of our variance is coxph's robust variance (cluster = id)
        np.testing.assert_allclose(
            _eta_only_variance(data, beta, "id", km), np.array(ref["robust_var"]), rtol=1e-8, err_msg=where
        )
        # our variance adds the censoring term: close to coxph's, but not equal (for one coefficient the term
        # can be below 1e-6 on some random draws, e.g. seed 2853040751: at least one must differ)
        ratio = np.diag(fit.vcov.to_numpy()) / np.diag(np.array(ref["robust_var"])) - 1
        assert np.all(np.abs(ratio) < 0.05) and np.any(np.abs(ratio) > 1e-6), (ratio, where)
        # predicted cumulative incidence = 1 - survfit(coxph, newdata) at our event times
        predicted = fit.predict_cif(pd.DataFrame(r["profiles"]))
        # (times pass through JSON with 15 significant digits)
        np.testing.assert_allclose(predicted["time"], r["times"], rtol=1e-13, err_msg=where)
        np.testing.assert_allclose(
            predicted.iloc[:, 1:].to_numpy(), 1.0 - np.array(ref["surv"]), rtol=1e-7, atol=1e-12, err_msg=where
        )
    # the two Kaplan-Meiers give different estimates (IPTW weights differ by arm)
    assert not np.allclose(r["weighted"]["coef"], r["unweighted"]["coef"], rtol=1e-6), msg


def test_untied_weighted_fit_equals_finegray_weighted_coxph_fixture(reference):
    ref = reference("finegray_weighted")
    data = pd.DataFrame(ref["data"])
    assert data["time"].nunique() == len(data) and data["w"].std() > 0.2
    _assert_finegray_coxph(data, ref["values"])


R_WEIGHTED = """
suppressPackageStartupMessages(library(survival))
df$status_f <- factor(df$status, 0:2, c("censor", "event", "competing"))
fg <- finegray(Surv(time, status_f) ~ treated + x + id, data = df, etype = "event", weights = w)
own_time <- df$time[match(fg$id, df$id)]
censoring_weight <- function(km_weights) {
  km <- survfit(Surv(time, status == 0) ~ 1, data = df, weights = km_weights)
  G <- stepfun(km$time, c(1, km$surv))
  # rows of the subject's own follow-up (fgstart < T) carry its case weight alone
  fg[["(weights)"]] * ifelse(fg$fgstart < own_time, 1, G(fg$fgstart) / G(own_time))
}
profiles <- data.frame(treated = c(0, 1), x = c(-0.5, 1))
times <- sort(unique(df$time[df$status == 1]))
fit_route <- function(wt) {
  fg$route_wt <- wt
  cx <- coxph(Surv(fgstart, fgstop, fgstatus) ~ treated + x, data = fg, weights = route_wt, cluster = id,
              control = coxph.control(eps = 1e-14, iter.max = 100))
  list(coef = unname(coef(cx)), robust_var = unname(cx$var),
       surv = unname(summary(survfit(cx, newdata = profiles), times = times)$surv))
}
result <- list(
  fgwt_rebuilt_gap = max(abs(censoring_weight(rep(1, nrow(df))) - fg$fgwt)),
  unweighted = fit_route(fg$fgwt),
  weighted = fit_route(censoring_weight(df$w)),
  profiles = profiles, times = times
)
"""


@pytest.mark.r
def test_untied_weighted_fit_equals_finegray_weighted_coxph_live():
    require_r("survival")
    seed = secrets.randbits(32)
    data = _draw(seed, 300, tied=False)
    r = run_r(R_WEIGHTED, {"df": data})
    _assert_finegray_coxph(data, r, msg=f"seed={seed}")


# ------------------------------------------------------------------ bad weights


def _small() -> pd.DataFrame:
    return _draw(5, 120, tied=True)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.nan, r"weight column 'w' has 3 missing value\(s\) out of 120 rows; every row needs a positive"),
        (np.inf, r"column 'w' has 3 infinite value\(s\) out of 120 rows; replace them"),
        (0.0, r"weight column 'w' has 3 value\(s\) <= 0 out of 120 rows .*drop those rows"),
        (-2.0, r"weight column 'w' has 3 value\(s\) <= 0 out of 120 rows \(smallest -2\)"),
    ],
)
def test_bad_weights_are_refused_with_count_and_advice(value, words):
    data = _small()
    data.loc[[3, 50, 99], "w"] = value
    with pytest.raises(InputError, match=r"^fine_gray data: " + words):
        fine_gray(data, "time", "status", COVS, weights="w")


def test_weight_column_missing_or_not_numeric():
    with pytest.raises(InputError, match="wt"):
        fine_gray(_small(), "time", "status", COVS, weights="wt")
    data = _small().astype({"w": object})
    data.loc[7, "w"] = "high"
    with pytest.raises(InputError, match=r"column 'w' has 1 non-numeric value\(s\) out of 120 rows"):
        fine_gray(data, "time", "status", COVS, weights="w")


def test_censoring_km_option_is_checked_and_ignored_without_weights():
    data = _small()
    with pytest.raises(InputError, match=r"censoring_km must be one of \['weighted', 'unweighted'\], got 'both'"):
        fine_gray(data, "time", "status", COVS, weights="w", censoring_km="both")  # type: ignore[arg-type]
    plain = fine_gray(data, "time", "status", COVS)
    other = fine_gray(data, "time", "status", COVS, censoring_km="unweighted")
    pd.testing.assert_frame_equal(other.vcov, plain.vcov, check_exact=True)
    assert plain.censoring_km is None and other.censoring_km is None
