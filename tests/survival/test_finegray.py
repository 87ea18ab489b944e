"""fine_gray against cmprsk::crr fixtures, a hand-solved case, properties and bad input.

Fixtures are written by tests/reference/r/finegray.R (through
tests/reference/make_reference.R) with the input data embedded.
Tolerances: coefficients, baseline jumps and predicted CIF 1e-7 relative;
variances 1e-6 relative; log pseudo-likelihoods 1e-9 relative.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import ConvergenceError, InputError, ModelWarning
from retrocohort.survival.finegray import FineGrayResult, fine_gray, predict_cif

COEF_RTOL = 1e-7
VAR_RTOL = 1e-6


def _frame(ref: dict) -> pd.DataFrame:
    return pd.DataFrame(ref["data"])


def _assert_crr(fit: FineGrayResult, values: dict, coef_key: str = "coef", var_key: str = "var") -> None:
    assert list(fit.summary.index) == values["terms"]
    np.testing.assert_allclose(fit.summary["coef"], values[coef_key], rtol=COEF_RTOL)
    np.testing.assert_allclose(fit.vcov.to_numpy(), np.array(values[var_key]), rtol=VAR_RTOL)
    np.testing.assert_allclose(fit.summary["se"], np.sqrt(np.diag(np.array(values[var_key]))), rtol=VAR_RTOL)


# ----------------------------------------------------------------- fixtures


def test_mgus2_progression_equals_crr(reference):
    ref = reference("finegray_mgus2")
    values = ref["values"]
    data = _frame(ref)
    fit = fine_gray(data, "etime", "event", ["age", "sex", "hgb"], cause=1, censor_code=0)
    _assert_crr(fit, values)
    np.testing.assert_allclose(fit.information.to_numpy(), np.array(values["inf"]), rtol=1e-9)
    np.testing.assert_allclose(fit.loglik.final, values["loglik"], rtol=1e-9)
    np.testing.assert_allclose(fit.loglik.null, values["loglik_null"], rtol=1e-9)
    np.testing.assert_allclose(fit.baseline["time"], values["uftime"], rtol=0)
    np.testing.assert_allclose(fit.baseline["hazard"], values["bfitj"], rtol=COEF_RTOL)
    assert fit.n == values["n"] == len(data)
    assert fit.n_events == int((data["event"] == 1).sum())
    assert fit.n_competing == int((data["event"] == 2).sum())
    assert fit.converged is bool(values["converged"])
    # Wald interval and test from coef and se
    row = fit.summary.loc["sexM"]
    assert row["lower"] == pytest.approx(math.exp(row["coef"] - 1.959963984540054 * row["se"]), rel=1e-12)
    assert row["p"] == pytest.approx(math.erfc(abs(row["coef"] / row["se"]) / math.sqrt(2)), rel=1e-10)


def test_mgus2_predicted_cif_equals_predict_crr(reference):
    ref = reference("finegray_mgus2")
    values = ref["values"]
    fit = fine_gray(_frame(ref), "etime", "event", ["age", "sex", "hgb"])
    profiles = pd.DataFrame(values["profiles"])
    predicted = predict_cif(fit, profiles)
    expected = np.array(values["predict"])
    np.testing.assert_allclose(predicted["time"], expected[:, 0], rtol=0)
    np.testing.assert_allclose(predicted.iloc[:, 1:].to_numpy(), expected[:, 1:], rtol=COEF_RTOL)


def test_mgus2_death_as_cause_equals_crr(reference):
    ref = reference("finegray_mgus2_death")
    fit = fine_gray(_frame(ref), "etime", "event", ["age", "sex", "hgb"], cause=2)
    _assert_crr(fit, ref["values"])


def test_whole_day_ties_binary_and_categorical_equal_crr(reference):
    ref = reference("finegray_ties")
    values = ref["values"]
    data = _frame(ref)
    assert values["n_tied_event_censor_days"] > 0  # events and censorings share days
    fit = fine_gray(data, "time", "status", ["age", "treated", "stage"])
    _assert_crr(fit, values)
    predicted = fit.predict_cif(pd.DataFrame(values["profiles"]))
    np.testing.assert_allclose(predicted.iloc[:, 1:].to_numpy(), np.array(values["predict"])[:, 1:], rtol=COEF_RTOL)
    # competing cause as the event of interest
    _assert_crr(
        fine_gray(data, "time", "status", ["age", "treated", "stage"], cause=2), values, "coef_cause2", "var_cause2"
    )


def test_tight_tolerance_equals_crr_run_to_convergence(reference):
    ref = reference("finegray_ties")
    fit = fine_gray(_frame(ref), "time", "status", ["age", "treated", "stage"], tol=1e-12, max_iter=50)
    _assert_crr(fit, ref["values"], "coef_tight", "var_tight")


def test_p10_with_recoded_status_equals_crr(reference):
    ref = reference("finegray_p10")
    values = ref["values"]
    fit = fine_gray(_frame(ref), "time", "status", values["terms"], cause=3, censor_code=9)
    _assert_crr(fit, values)
    np.testing.assert_allclose(fit.loglik.final, values["loglik"], rtol=1e-9)


def test_cluster_variance_with_one_subject_per_cluster_is_crr_var(reference):
    ref = reference("finegray_clusters")
    values = ref["values"]
    data = _frame(ref)
    data["subject"] = np.arange(len(data))
    fit = fine_gray(data, "time", "status", ["treated", "score"], cluster="subject")
    _assert_crr(fit, values)
    assert fit.variance == "cluster" and fit.n_clusters == len(data)
    matched = fine_gray(data, "time", "status", ["treated", "score"], cluster="set_id")
    # same coefficients, different (matched-set) variance
    np.testing.assert_array_equal(matched.summary["coef"], fit.summary["coef"])
    assert matched.n_clusters == data["set_id"].nunique()
    assert not np.allclose(matched.summary["se"], fit.summary["se"], rtol=1e-3)


def test_untied_coefficients_equal_finegray_coxph(reference):
    # survival::finegray + coxph(weights = fgwt) solves the same estimating
    # equation when no times are tied; with ties its coefficients differ.
    ref = reference("finegray_clusters")
    values = ref["values"]
    data = _frame(ref)
    assert data["time"].nunique() == len(data)
    # Both sides are run to the exact maximum (ours tol=1e-12, coxph eps=1e-10); measured
    # agreement is ~5e-15 relative, so 1e-10 is far tighter than the 1e-7 yet robust.
    fit = fine_gray(data, "time", "status", ["treated", "score"], tol=1e-12, max_iter=50)
    np.testing.assert_allclose(fit.summary["coef"], values["coef_tight"], rtol=COEF_RTOL)
    np.testing.assert_allclose(fit.summary["coef"], values["finegray_coxph_coef"], rtol=1e-10)


def _eta_only_cluster_variance(data: pd.DataFrame, covariates: list[str], beta: np.ndarray, cluster: str):
    """I^-1 (sum_c E_c E_c') I^-1 with E_c the summed score residuals eta_i only (no censoring term psi).

    Plain NumPy by the definitions, for untied times (one subject per time):
    G(s-) is the left-continuous Kaplan-Meier of the censoring times; a
    competing-event subject j stays in the risk set of a later event time t
    with weight G(t-)/G(T_j-); eta_i = sum_t (z_i - zbar(t)) (dN_i(t) - w_i(t) r_i dLambda(t)).
    """
    time = data["time"].to_numpy(float)
    status = data["status"].to_numpy()
    z = data[covariates].to_numpy(float)
    n = len(time)
    assert len(np.unique(time)) == n
    censored, competing, event = status == 0, status == 2, status == 1
    order = np.argsort(time)
    at_risk = n - np.arange(n)  # subjects with T >= T_(i), times sorted
    g_after = np.cumprod(np.where(censored[order], 1 - 1 / at_risk, 1.0))
    g_left = np.empty(n)
    g_left[order] = np.concatenate([[1.0], g_after[:-1]])
    t_k = time[event]
    weight = np.where(
        time[None, :] >= t_k[:, None],
        1.0,
        np.where(competing[None, :] & (time[None, :] < t_k[:, None]), g_left[event][:, None] / g_left[None, :], 0.0),
    )  # (k, n)
    risk = np.exp(z @ beta)
    s0 = weight @ risk
    zbar = (weight * risk) @ z / s0[:, None]
    info = sum((z * (weight[k] * risk)[:, None]).T @ z / s0[k] - np.outer(zbar[k], zbar[k]) for k in range(len(t_k)))
    residual = (time[None, :] == t_k[:, None]) & event[None, :]
    residual = residual - weight * risk[None, :] / s0[:, None]  # dN_i(t) - w_i(t) r_i dLambda(t), (k, n)
    eta = z * residual.sum(axis=0)[:, None] - residual.T @ zbar
    codes = pd.factorize(data[cluster])[0]
    summed = np.zeros((codes.max() + 1, z.shape[1]))
    np.add.at(summed, codes, eta)
    bread = np.linalg.inv(info)
    return bread @ summed.T @ summed @ bread


def test_cluster_variance_differs_from_finegray_coxph_by_the_censoring_term(reference):
    """Our matched-set variance vs ``coxph(cluster = set_id)`` on finegray-expanded data (untied times).

    The docs say our cluster-robust variance sums each subject's full crr
    influence term ``eta_i + psi_i`` (score residual plus the censoring-
    distribution term) within clusters, while coxph's cluster sandwich on the
    finegray expansion uses the weighted Cox score residuals only, i.e. omits
    ``psi``. Three checks back that statement on the fixture:

    1. the sandwich of the ``eta_i`` alone, computed here in plain NumPy by the
       definitions, equals coxph's robust variance (1e-8 relative; measured
       2e-14) -- so the two routes share the same coefficients, information and
       score residuals;
    2. our diagonal is within 1% of coxph's (measured +0.11% and +0.22%): the
       censoring term is a small correction on these data;
    3. yet it is not coxph's: every diagonal element differs by more than 1e-4
       relative (far beyond the 1e-6 variance tolerance), the size of the
       omitted ``psi`` contribution.
    """
    ref = reference("finegray_clusters")
    values = ref["values"]
    data = _frame(ref)
    coxph_var = np.array(values["finegray_coxph_robust_var"])
    ours = fine_gray(data, "time", "status", ["treated", "score"], cluster="set_id", tol=1e-12, max_iter=50)
    beta = ours.summary["coef"].to_numpy()
    eta_only = _eta_only_cluster_variance(data, ["treated", "score"], beta, "set_id")
    np.testing.assert_allclose(eta_only, coxph_var, rtol=1e-8)
    ratio = np.diag(ours.vcov.to_numpy()) / np.diag(coxph_var) - 1
    assert np.all(np.abs(ratio) < 1e-2), ratio
    assert np.all(np.abs(ratio) > 1e-4), ratio


def test_tied_data_finegray_coxph_differs_and_we_match_crr(reference):
    # The documented caveat, measured: with whole-day ties, finegray + coxph
    # is not crr's estimator; our coefficients are crr's.
    ref = reference("finegray_ties")
    values = ref["values"]
    fit = fine_gray(_frame(ref), "time", "status", ["age", "treated", "stage"], tol=1e-12, max_iter=50)
    np.testing.assert_allclose(fit.summary["coef"], values["coef_tight"], rtol=COEF_RTOL)
    gap = np.abs(np.array(values["finegray_coxph_coef"]) / np.array(values["coef_tight"]) - 1)
    # docs: 0.7% to 3.8% relative on this fixture (measured 0.75%-3.78%)
    assert gap.min() > 7e-3 and gap.max() < 3.9e-2, gap


@pytest.mark.parametrize("cause", [1, 2])
def test_mgus2_with_ties_finegray_coxph_differs_from_crr_as_documented(reference, cause):
    """mgus2 (1371 rows, 267 distinct whole-month times): finegray + coxph is not crr's estimator.

    Backs the docs' statement: on mgus2 the finegray + weighted coxph
    coefficients differ from crr's by 0.16% to 0.93% relative with
    progression as the cause (0.34% to 0.64% with death as the cause). Both
    R fits are run to the exact maximum; we assert our exact maximum equals
    crr's (1e-7; crr with gtol = 1e-12 reports converged = FALSE for
    progression and stops 6e-8 relative short of the root, where our score is
    ~1e-13) and that every coefficient's gap to finegray + coxph lies between
    0.1% and 1%.
    """
    ref = reference("finegray_mgus2_finegray_coxph")
    values = ref["values"]
    data = _frame(ref)
    assert values["n_distinct_times"] < len(data) / 4  # heavily tied
    fit = fine_gray(data, "etime", "event", ["age", "sex", "hgb"], cause=cause, tol=1e-12, max_iter=50)
    assert list(fit.summary.index) == values["terms"]
    by_cause = values[f"cause{cause}"]
    np.testing.assert_allclose(fit.summary["coef"], by_cause["crr_coef_tight"], rtol=COEF_RTOL)
    gap = np.abs(fit.summary["coef"].to_numpy() / np.array(by_cause["finegray_coxph_coef"]) - 1)
    assert np.all((gap > 1e-3) & (gap < 1e-2)), gap


# ------------------------------------------------------------ hand-solved case


def test_six_rows_closed_form():
    # No censoring, so G = 1 and a competing-event subject stays in the risk
    # set with weight 1. Rows (time, x, status):
    #   A 1 1 1 | B 2 0 2 | C 3 0 1 | D 4 1 2 | E 5 1 1 | F 6 0 2
    # With r = exp(beta), risk sets at the events of interest:
    #   t=1 all six: S0 = 3r + 3, event x=1
    #   t=3 without A: x=1 {D, E}, x=0 {B (competing, stays), C, F}: S0 = 2r + 3, event x=0
    #   t=5 without A, C: x=1 {D, E}, x=0 {B, F}: S0 = 2r + 2, event x=1
    # score = 2 - 2r/(r+1) - 2r/(2r+3) = 0  <=>  r^2 - r - 3 = 0  <=>  r = (1 + sqrt(13)) / 2
    # information = 2 r/(r+1)^2 + 6 r/(2r+3)^2 (sum of p(1-p) of x in each risk set)
    # Baseline jumps 1/S0 at beta-hat; loglik = 2 beta - sum log S0.
    # No censoring: psi = 0, eta_i = sum_t (x_i - p_t)(dN_i(t) - Y_i(t) r^{x_i} / S0(t)).
    data = pd.DataFrame(
        {
            "time": [1.0, 2, 3, 4, 5, 6],
            "x": [1.0, 0, 0, 1, 1, 0],
            "status": [1, 2, 1, 2, 1, 2],
        }
    )
    fit = fine_gray(data, "time", "status", ["x"], tol=1e-14, max_iter=50)
    r = (1 + math.sqrt(13)) / 2
    beta = math.log(r)
    assert fit.summary.loc["x", "coef"] == pytest.approx(beta, rel=1e-12)
    info = 2 * r / (r + 1) ** 2 + 6 * r / (2 * r + 3) ** 2
    assert fit.information.iloc[0, 0] == pytest.approx(info, rel=1e-12)
    s0 = np.array([3 * r + 3, 2 * r + 3, 2 * r + 2])
    np.testing.assert_allclose(fit.baseline["hazard"], 1 / s0, rtol=1e-12)
    assert fit.loglik.final == pytest.approx(2 * beta - np.log(s0).sum(), rel=1e-12)
    assert fit.loglik.null == pytest.approx(-np.log([6.0, 5.0, 4.0]).sum(), rel=1e-12)
    # p_t = share of x=1 in each risk set; Y = membership (rows A..F) in each risk set
    p = np.array([r / (r + 1), 2 * r / (2 * r + 3), r / (r + 1)])
    member = np.array([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 1]], dtype=float)
    event = np.array([[1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]], dtype=float)
    x = data["x"].to_numpy()
    eta = ((x[None, :] - p[:, None]) * (event - member * r ** x[None, :] / s0[:, None])).sum(axis=0)
    assert fit.vcov.iloc[0, 0] == pytest.approx((eta**2).sum() / info**2, rel=1e-10)


# ------------------------------------------------------------------ properties


def _random_frame(seed: int, n: int, competing: bool = True, censoring: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    b = rng.binomial(1, 0.5, size=n)
    t_event = np.ceil(rng.exponential(10.0, size=n) * np.exp(-0.4 * x))
    codes = rng.choice([1, 2], size=n) if competing else np.ones(n, dtype=int)
    if censoring:
        t_cens = np.ceil(rng.exponential(15.0, size=n))
        status = np.where(t_cens < t_event, 0, codes)
        time = np.minimum(t_event, t_cens)
    else:
        status, time = codes, t_event
    return pd.DataFrame({"time": time.astype(float), "status": status, "x": x, "b": b.astype(float)})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3))
def test_invariant_to_row_order_and_time_scale(seed, scale):
    data = _random_frame(seed, 80)
    if (data["status"] == 1).sum() < 5:
        return
    base = fine_gray(data, "time", "status", ["x", "b"], tol=1e-12, max_iter=50)
    shuffled = data.sample(frac=1.0, random_state=seed % 2**31).reset_index(drop=True)
    rescaled = shuffled.assign(time=shuffled["time"] * scale)
    other = fine_gray(rescaled, "time", "status", ["x", "b"], tol=1e-12, max_iter=50)
    np.testing.assert_allclose(other.summary["coef"], base.summary["coef"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(other.vcov.to_numpy(), base.vcov.to_numpy(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(other.baseline["time"], base.baseline["time"] * scale, rtol=1e-12)


def _cox_breslow(time: np.ndarray, event: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Cox partial likelihood with Breslow ties by direct sums over risk sets (Newton)."""
    beta = np.zeros(z.shape[1])
    event_times = np.unique(time[event])
    for _ in range(60):
        risk = np.exp(z @ beta)
        score = np.zeros_like(beta)
        info = np.zeros((len(beta), len(beta)))
        for t in event_times:
            at_risk = time >= t
            dead = event & (time == t)
            w = risk[at_risk]
            zr = z[at_risk]
            mean = w @ zr / w.sum()
            second = (zr * w[:, None]).T @ zr / w.sum()
            d = dead.sum()
            score += z[dead].sum(axis=0) - d * mean
            info += d * (second - np.outer(mean, mean))
        step = np.linalg.solve(info, score)
        beta = beta + step
        if np.abs(step).max() < 1e-13:
            break
    return beta


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), censoring=st.booleans())
def test_no_competing_events_is_cox_breslow(seed, censoring):
    # Without competing events the subdistribution risk set is the ordinary
    # one, so the pseudo-likelihood is Cox's partial likelihood (Breslow ties).
    data = _random_frame(seed, 50, competing=False, censoring=censoring)
    if (data["status"] == 1).sum() < 5:
        return
    fit = fine_gray(data, "time", "status", ["x", "b"], tol=1e-13, max_iter=60)
    expected = _cox_breslow(data["time"].to_numpy(), data["status"].to_numpy() == 1, data[["x", "b"]].to_numpy())
    np.testing.assert_allclose(fit.summary["coef"], expected, rtol=1e-8, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_one_subject_per_cluster_is_crr_variance_and_cif_is_a_distribution(seed):
    data = _random_frame(seed, 70).assign(subject=lambda f: np.arange(len(f))[::-1])
    if (data["status"] == 1).sum() < 5:
        return
    plain = fine_gray(data, "time", "status", ["x", "b"])
    clustered = fine_gray(data, "time", "status", ["x", "b"], cluster="subject")
    np.testing.assert_allclose(clustered.vcov.to_numpy(), plain.vcov.to_numpy(), rtol=1e-12, atol=1e-16)
    cif = plain.predict_cif(pd.DataFrame({"x": [-1.0, 0.0, 2.0], "b": [0.0, 1.0, 1.0]})).iloc[:, 1:].to_numpy()
    assert np.all((cif >= 0) & (cif <= 1))
    assert np.all(np.diff(cif, axis=0) >= 0)


# ------------------------------------------------------------------ bad input


def _small() -> pd.DataFrame:
    return _random_frame(5, 120)


def test_status_code_outside_declared_codes():
    data = _small()
    data.loc[:4, "status"] = 7
    with pytest.raises(InputError, match=r"status code\(s\) \[7\]"):
        fine_gray(data, "time", "status", ["x"], competing_codes=[2])
    # without declared codes, 7 is one more competing cause (crr's behaviour)
    assert fine_gray(data, "time", "status", ["x"]).n_competing == int(data["status"].isin([2, 7]).sum())


def test_no_events_of_the_cause():
    data = _small()
    with pytest.raises(InputError, match="no events of cause 3"):
        fine_gray(data, "time", "status", ["x"], cause=3)


def test_constant_and_collinear_covariates_are_named():
    data = _small().assign(site=1.0, x2=lambda f: 2 * f["x"] + 1)
    with pytest.raises(InputError, match="'site'"):
        fine_gray(data, "time", "status", ["x", "site"])
    with pytest.raises(InputError, match="'x2' is collinear"):
        fine_gray(data, "time", "status", ["x", "x2"])


def test_negative_time_and_missing_values():
    data = _small()
    data.loc[3, "time"] = -1.0
    with pytest.raises(InputError, match="negative"):
        fine_gray(data, "time", "status", ["x"])
    data = _small()
    data.loc[3, "x"] = np.nan
    with pytest.raises(InputError, match="missing"):
        fine_gray(data, "time", "status", ["x"])
    data = _small().assign(pair=1.0)
    data.loc[2, "pair"] = np.nan
    with pytest.raises(InputError, match="cluster column 'pair'"):
        fine_gray(data, "time", "status", ["x"], cluster="pair")


def test_bad_options():
    data = _small()
    with pytest.raises(InputError, match="must differ"):
        fine_gray(data, "time", "status", ["x"], cause=0)
    with pytest.raises(InputError, match="conf_level"):
        fine_gray(data, "time", "status", ["x"], conf_level=95)
    with pytest.raises(InputError, match="at least one covariate"):
        fine_gray(data, "time", "status", [])


@pytest.mark.parametrize("n", [200, 5000])
def test_monotone_likelihood_warns_and_names_covariate(n):
    # every subject with marker = 1 has the event of interest, no one else
    # does: the pseudo-likelihood keeps rising as the coefficient grows.
    rng = np.random.default_rng(3)
    marker = rng.binomial(1, 0.5, size=n).astype(float)
    data = pd.DataFrame(
        {
            "time": np.ceil(rng.exponential(10, size=n)),
            "status": np.where(marker == 1, 1, rng.choice([0, 2], size=n)),
            "marker": marker,
            "noise": rng.normal(size=n),
        }
    )
    with pytest.warns(ModelWarning, match=r"monotone in \['marker'\]"):
        fit = fine_gray(data, "time", "status", ["marker", "noise"])
    assert fit.converged is False
    assert fit.summary.loc["marker", "coef"] > 5


def test_non_convergence_raises_instead_of_returning():
    data = _small()
    with pytest.raises(ConvergenceError, match="did not converge in 1 iteration"):
        fine_gray(data, "time", "status", ["x", "b"], tol=1e-14, max_iter=1)


def test_regular_fits_do_not_warn_even_with_a_strong_effect():
    rng = np.random.default_rng(8)
    n = 400
    exposed = rng.binomial(1, 0.5, size=n)
    # cause-specific hazard ratio e^3 (subdistribution coefficient about 1.1), both groups
    # have events: a large but finite estimate that must not be taken for a monotone one
    strong = pd.DataFrame(
        {
            "time": rng.exponential(40.0, size=n) * np.exp(-3.0 * exposed),
            "status": rng.choice([1, 2], size=n, p=[0.9, 0.1]),
            "exposed": exposed.astype(float),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fine_gray(_small(), "time", "status", ["x", "b"])
        strong_fit = fine_gray(strong, "time", "status", ["exposed"])
    assert fit.converged and 0 < fit.iterations <= 10
    assert strong_fit.converged and strong_fit.summary.loc["exposed", "coef"] > 1.0


def test_prediction_rejects_unknown_level(reference):
    ref = reference("finegray_ties")
    fit = fine_gray(_frame(ref), "time", "status", ["age", "treated", "stage"])
    with pytest.raises(InputError, match="'IV'"):
        fit.predict_cif(pd.DataFrame({"age": [60.0], "treated": [1], "stage": ["IV"]}))


def test_result_is_frozen():
    fit = fine_gray(_small(), "time", "status", ["x"])
    with pytest.raises(AttributeError):
        fit.n = 3  # type: ignore[misc]
