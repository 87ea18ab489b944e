"""``fine_gray(cov2=, tf=)``: crr's time-varying coefficients, on the direct O(n x event times) engine.

Part 1 (no R): with ``tf = 1`` the time-varying model is the fixed one, so the direct engine must give the
fast engine's coefficients, information, variance, log-likelihoods and baseline (two independent codes);
bad ``tf`` results are refused with the reason.

Part 2 (marker ``r``): against ``crr(ftime, fstatus, cov1, cov2, tf)`` live on tied data (coef 1e-9,
variance and information 1e-8, loglik 1e-12, bfitj 1e-9, ``predict.crr`` with cov2 1e-9), including crr's
help-page call ``crr(ftime, fstatus, cov, cbind(cov[, 1], cov[, 1]), function(Uft) cbind(Uft, Uft^2))``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.survival import fine_gray


def _draw(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"x": rng.normal(size=n), "z": rng.integers(0, 2, n).astype(float)})
    t_event = np.ceil(rng.exponential(30, n) * np.exp(-0.4 * data["x"]))
    t_cens = np.ceil(rng.exponential(40, n))
    data["time"] = np.minimum(t_event, t_cens)
    data["status"] = np.where(t_cens < t_event, 0, rng.choice([1, 2], n, p=[0.6, 0.4]))
    data["site"] = rng.choice(["a", "b"], n)
    return data


@pytest.mark.parametrize("group", [None, "site"])
def test_constant_tf_is_the_fixed_model(group):
    """cov2 = x with tf = 1 is the model with x fixed: the two engines agree term by term."""
    data = _draw(1, 150)
    fixed = fine_gray(data, "time", "status", ["z", "x"], censoring_group=group)
    varying = fine_gray(data, "time", "status", ["z"], cov2=["x"], tf=lambda t: np.ones_like(t), censoring_group=group)
    assert list(varying.summary.index) == ["z", "x:tf1"]
    np.testing.assert_allclose(varying.summary["coef"], fixed.summary["coef"], rtol=1e-10)
    np.testing.assert_allclose(varying.information, fixed.information, rtol=1e-10)
    np.testing.assert_allclose(varying.vcov, fixed.vcov, rtol=1e-9)
    np.testing.assert_allclose(list(varying.loglik), list(fixed.loglik), rtol=1e-12)
    np.testing.assert_allclose(varying.baseline["hazard"], fixed.baseline["hazard"], rtol=1e-10)
    profile = pd.DataFrame({"z": [0.0, 1.0], "x": [0.5, -1.0]})
    np.testing.assert_allclose(varying.predict_cif(profile)[0], fixed.predict_cif(profile)[0], rtol=1e-10)
    # only cov2 (no fixed covariate), as crr allows
    only = fine_gray(data, "time", "status", [], cov2=["x"], tf=lambda t: np.ones_like(t))
    np.testing.assert_allclose(
        only.summary["coef"], fine_gray(data, "time", "status", ["x"]).summary["coef"], rtol=1e-10
    )


def test_constant_tf_with_case_weights_and_clusters_is_the_fixed_model():
    data = _draw(4, 120)
    data["w"] = 0.5 + (np.arange(len(data)) % 4) / 3
    data["pair"] = np.arange(len(data)) // 2
    for kw in ({"weights": "w"}, {"cluster": "pair"}, {"weights": "w", "censoring_km": "unweighted"}):
        fixed = fine_gray(data, "time", "status", ["z", "x"], **kw)
        varying = fine_gray(data, "time", "status", ["z"], cov2=["x"], tf=lambda t: np.ones_like(t), **kw)
        np.testing.assert_allclose(varying.summary["coef"], fixed.summary["coef"], rtol=1e-10, err_msg=str(kw))
        np.testing.assert_allclose(varying.vcov, fixed.vcov, rtol=1e-9, err_msg=str(kw))
        np.testing.assert_allclose(list(varying.loglik), list(fixed.loglik), rtol=1e-12, err_msg=str(kw))


def test_a_time_trend_changes_the_fit():
    data = _draw(2, 150)
    trend = fine_gray(data, "time", "status", ["x"], cov2=["x"], tf=lambda t: t / 30)
    assert trend.summary.shape[0] == 2 and trend.time_varying == ("x",)
    text = repr(trend)
    assert "~ x + (x) x tf(t)" in text and "x:tf1" in text and "crr's sandwich variance" in text
    grouped = fine_gray(data, "time", "status", ["x"], censoring_group="site")
    assert "censoring_group = site" in repr(grouped) and "not crr's exactly" in repr(grouped)
    assert abs(trend.summary.loc["x:tf1", "coef"]) > 1e-6  # a free coefficient, estimated


def test_bad_tf_is_refused():
    data = _draw(3, 80)
    with pytest.raises(InputError, match="give cov2 and tf together"):
        fine_gray(data, "time", "status", ["x"], cov2=["x"])
    with pytest.raises(InputError, match="give cov2 and tf together"):
        fine_gray(data, "time", "status", ["x"], tf=np.log)
    with pytest.raises(InputError, match="tf must be a function"):
        fine_gray(data, "time", "status", ["x"], cov2=["x"], tf=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"must return \d+ rows .* and 2 column\(s\)"):
        fine_gray(data, "time", "status", ["x"], cov2=["x", "z"], tf=lambda t: t)
    with pytest.raises(InputError, match="tf\\(times\\) raised ZeroDivisionError"):
        fine_gray(data, "time", "status", ["x"], cov2=["x"], tf=lambda t: 1 / 0)
    zero = pd.concat([data, pd.DataFrame({"x": [0.3], "z": [1.0], "time": [0.0], "status": [1], "site": ["a"]})])
    with np.errstate(divide="ignore"), pytest.raises(InputError, match="non-finite value"):
        fine_gray(zero, "time", "status", ["x"], cov2=["x"], tf=np.log)
    with pytest.raises(InputError, match="'z:tf1' carries no information"):
        fine_gray(data, "time", "status", ["x"], cov2=["z"], tf=lambda t: np.zeros_like(t))
    with pytest.raises(InputError, match="term 'x:tf1' is collinear with the other terms"):
        fine_gray(data, "time", "status", ["x"], cov2=["x"], tf=lambda t: np.full(len(t), 2.0))
    with pytest.raises(InputError, match="site"):
        fine_gray(data, "time", "status", ["x"], cov2=["site"], tf=lambda t: t)


@pytest.mark.r
def test_time_varying_coefficients_match_crr():
    from tests.rlive import run_r

    data = _draw(5, 200)
    code = """suppressPackageStartupMessages(library(cmprsk))
f <- crr(df$time, df$status, cbind(df$x, df$z), cbind(df$x, df$z), function(t) cbind(t, log(t)))
f2 <- crr(df$time, df$status, cbind(df$z), cbind(df$x), function(t) t / 10)
p <- predict(f2, cbind(c(0, 1)), cbind(c(1, -1)))
set.seed(10)
ftime <- rexp(200)
fstatus <- sample(0:2, 200, replace = TRUE)
cov <- matrix(runif(600), nrow = 200)
h <- crr(ftime, fstatus, cov, cbind(cov[, 1], cov[, 1]), function(Uft) cbind(Uft, Uft^2))
one <- function(f) list(coef = unname(f$coef), var = as.vector(f$var), inf = as.vector(f$inf), loglik = f$loglik,
                        null = f$loglik.null, bfitj = f$bfitj)
result <- list(f = one(f), f2 = one(f2), p1 = p[, 2], p2 = p[, 3], h = one(h),
               help = data.frame(ftime = ftime, fstatus = fstatus, x1 = cov[, 1], x2 = cov[, 2], x3 = cov[, 3]))
"""
    r = run_r(code, {"df": data})
    assert isinstance(r, dict)

    def check(fit, ref, what):
        np.testing.assert_allclose(fit.summary["coef"], ref["coef"], rtol=1e-9, err_msg=what)
        np.testing.assert_allclose(fit.vcov.to_numpy().ravel(), ref["var"], rtol=1e-8, err_msg=what)
        np.testing.assert_allclose(fit.information.to_numpy().ravel(), ref["inf"], rtol=1e-8, err_msg=what)
        np.testing.assert_allclose([fit.loglik.null, fit.loglik.final], [ref["null"], ref["loglik"]], rtol=1e-12)
        np.testing.assert_allclose(fit.baseline["hazard"], ref["bfitj"], rtol=1e-9, err_msg=what)

    fit = fine_gray(data, "time", "status", ["x", "z"], cov2=["x", "z"], tf=lambda t: np.column_stack([t, np.log(t)]))
    check(fit, r["f"], "cov2 = (x, z), tf = (t, log t)")
    fit2 = fine_gray(data, "time", "status", ["z"], cov2=["x"], tf=lambda t: t / 10)
    check(fit2, r["f2"], "cov2 = x, tf = t / 10")
    pred = fit2.predict_cif(pd.DataFrame({"z": [0.0, 1.0], "x": [1.0, -1.0]}))
    np.testing.assert_allclose(pred[0], r["p1"], rtol=1e-9)
    np.testing.assert_allclose(pred[1], r["p2"], rtol=1e-9)
    help_data = pd.DataFrame(r["help"])
    fit_h = fine_gray(
        help_data.assign(x1b=help_data["x1"]),
        "ftime",
        "fstatus",
        ["x1", "x2", "x3"],
        cov2=["x1", "x1b"],
        tf=lambda t: np.column_stack([t, t**2]),
    )
    check(fit_h, r["h"], "crr help page: cbind(cov[, 1], cov[, 1]), cbind(Uft, Uft^2)")
