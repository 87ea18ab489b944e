"""cmprsk's own test cases (``tests/test.R`` of cmprsk) and its documented crr example, run on our engine.

The data are drawn in R with cmprsk's seeds (``set.seed(2)`` for test.R,
``set.seed(10)`` for the crr help page), so these are literally cmprsk's
cases; cuminc / crr are run live on the same data and compared with
``cumulative_incidence``, ``gray_test`` and ``fine_gray`` (marker ``r``).
What test.R also exercises and we do not support (crr's time-varying
``cov2``/``tf``, silently dropping NA rows) is checked to be refused or is
listed in docs/survival-finegray.md; ``cengroup`` is ``censoring_group=``
(tests/survival/test_finegray_cengroup.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.survival import cumulative_incidence, fine_gray, gray_test, predict_cif
from tests.rlive import run_r

pytestmark = pytest.mark.r

# cmprsk tests/test.R, first lines: the data every cuminc / crr call there uses
_TEST_R_DATA = """suppressPackageStartupMessages(library(cmprsk))
set.seed(2)
ss <- rexp(100)
gg <- factor(sample(1:3, 100, replace = TRUE), 1:3, c('a', 'b', 'c'))
cc <- sample(0:2, 100, replace = TRUE)
strt <- sample(1:2, 100, replace = TRUE)
dd <- data.frame(ss = abs(rnorm(100)))
d2 <- data.frame(ssd = ss, ggd = gg, ccd = cc, strtd = strt, X = c(rep(1, 80), rep(0, 20)))
gg2 <- gg
gg2[c(5, 10, 50)] <- NA
cv <- matrix(sample(0:1, 3 * 100, replace = TRUE), ncol = 3)
cv[c(1, 10, 20)] <- NA
data <- data.frame(ss = ss, ss2 = dd$ss, gg = as.character(gg), gg2 = as.character(gg2), cc = cc, strt = strt,
                   X = d2$X, cv1 = cv[, 1], cv2 = cv[, 2], cv3 = cv[, 3])
curves <- function(fit) {
  keep <- names(fit)[names(fit) != "Tests"]
  lapply(keep, function(k) list(name = k, time = fit[[k]]$time, est = fit[[k]]$est, var = fit[[k]]$var))
}
tests <- function(fit) if (is.null(fit$Tests)) NULL else list(stat = unname(fit$Tests[, "stat"]),
                                                              df = unname(fit$Tests[, "df"]))
"""


def _frame(r: dict) -> pd.DataFrame:
    data = pd.DataFrame(r["data"])
    for col in ("gg2", "cv1", "cv2", "cv3"):  # R's NA arrive as None
        data[col] = data[col].where(data[col].notna(), np.nan)
    return data


def _r_curve_at(curve: dict, times: np.ndarray, column: str) -> np.ndarray:
    """cuminc's step function read at ``times`` (its last point at or before each time: the value after a jump)."""
    t = np.asarray(curve["time"], dtype=float)
    idx = np.searchsorted(t, times, side="right") - 1
    return np.asarray(curve[column], dtype=float)[idx]


def _assert_cuminc(data: pd.DataFrame, time: str, group: str | None, r_curves: list[dict], what: str) -> None:
    checked = 0
    for curve in r_curves:
        label, cause = curve["name"].rsplit(" ", 1)
        fit = cumulative_incidence(data, time, "cc", cause=int(cause), group=group)
        table = fit.table if group is None else fit.table[fit.table["group"].astype(str) == label]
        times = table["time"].to_numpy()
        assert len(times) > 0, (what, curve["name"])
        np.testing.assert_allclose(table["cif"], _r_curve_at(curve, times, "est"), rtol=1e-7, err_msg=what)
        np.testing.assert_allclose(table["variance"], _r_curve_at(curve, times, "var"), rtol=1e-6, err_msg=what)
        # and every time cuminc's estimate steps up is one of our rows
        est = np.asarray(curve["est"], dtype=float)
        jumps = np.asarray(curve["time"], dtype=float)[1:][np.diff(est) > 0]
        assert set(jumps) <= set(times), (what, curve["name"])
        checked += 1
    assert checked == len(r_curves) > 0


def test_cuminc_without_groups():
    """test.R: ``cuminc(ss, cc)``, both causes."""
    r = run_r(_TEST_R_DATA + "result <- list(data = data, curves = curves(cuminc(ss, cc)))")
    assert isinstance(r, dict)
    _assert_cuminc(_frame(r), "ss", None, r["curves"], "cuminc(ss, cc)")


@pytest.mark.parametrize("time", ["ss", "ss2"])
def test_cuminc_groups_and_stratified_gray_test(time):
    """test.R: ``cuminc(ss, cc, gg, strt)`` and ``cuminc(dd$ss, cc, gg, strt)``: curves and the stratified Tests."""
    r_time = "ss" if time == "ss" else "dd$ss"
    r = run_r(
        _TEST_R_DATA + f"fit <- cuminc({r_time}, cc, gg, strt)\nresult <- list(data = data, "
        "curves = curves(fit), tests = tests(fit))"
    )
    assert isinstance(r, dict)
    data = _frame(r)
    _assert_cuminc(data, time, "gg", r["curves"], f"cuminc({r_time}, cc, gg, strt)")
    for row, cause in enumerate((1, 2)):
        test = gray_test(data, time, "cc", "gg", cause=cause, strata="strt")
        assert abs(test.statistic - r["tests"]["stat"][row]) <= 1e-6 * r["tests"]["stat"][row], cause
        assert test.df == r["tests"]["df"][row]


def test_cuminc_subset_and_na_group():
    """test.R: ``cuminc(ssd, ccd, gg2, strtd, subset = X == 1)``; gg2 has 3 NA that cuminc drops, we refuse them."""
    r = run_r(
        _TEST_R_DATA + "fit <- cuminc(ss, cc, gg2, strt, subset = d2$X == 1)\n"
        "result <- list(data = data, curves = curves(fit), tests = tests(fit))"
    )
    assert isinstance(r, dict)
    data = _frame(r)
    subset = data[data["X"] == 1]
    with pytest.raises(InputError, match="gg2"):
        cumulative_incidence(subset, "ss", "cc", group="gg2")
    kept = subset[subset["gg2"].notna()].reset_index(drop=True)
    _assert_cuminc(kept, "ss", "gg2", r["curves"], "cuminc(..., gg2, subset = X == 1)")
    for row, cause in enumerate((1, 2)):
        test = gray_test(kept, "ss", "cc", "gg2", cause=cause, strata="strt")
        assert abs(test.statistic - r["tests"]["stat"][row]) <= 1e-6 * r["tests"]["stat"][row], cause


_CRR = """
fit_values <- function(z) list(coef = unname(z$coef), var = as.vector(z$var), loglik = z$loglik,
                               loglik_null = z$loglik.null, uftime = z$uftime, bfitj = z$bfitj, n = z$n)
"""


def _assert_crr(ours, r: dict, what: str) -> None:
    np.testing.assert_allclose(ours.summary["coef"], r["coef"], rtol=1e-6, err_msg=what)
    np.testing.assert_allclose(ours.vcov.to_numpy().ravel(order="F"), r["var"], rtol=1e-5, err_msg=what)
    np.testing.assert_allclose(ours.loglik[1], r["loglik"], rtol=1e-8, err_msg=what)
    np.testing.assert_allclose(ours.loglik[0], r["loglik_null"], rtol=1e-10, err_msg=what)
    np.testing.assert_allclose(ours.baseline["time"], r["uftime"], rtol=0, err_msg=what)
    np.testing.assert_allclose(ours.baseline["hazard"], r["bfitj"], rtol=1e-6, err_msg=what)
    assert ours.n == r["n"], what


@pytest.mark.parametrize(
    ("r_args", "kwargs"),
    [
        ("", {}),
        (", failcode = 2", {"cause": 2}),
        # cencode = 2: code 2 is censoring, 0 a competing event
        (", cencode = 2", {"censor_code": 2}),
    ],
)
def test_crr_on_test_r_data(r_args, kwargs):
    """test.R: ``crr(ss, cc, cv)`` (3 binary covariates, 3 NA rows crr drops), failcode = 2, cencode = 2.

    test.R adds ``cov2``/``tf``/``cengroup`` to the last two; those calls are in the next test.
    """
    r = run_r(_TEST_R_DATA + _CRR + f"result <- list(data = data, fit = fit_values(crr(ss, cc, cv{r_args})))")
    assert isinstance(r, dict)
    data = _frame(r)
    covs = ["cv1", "cv2", "cv3"]
    with pytest.raises(InputError, match="cv"):
        fine_gray(data, "ss", "cc", covs, **kwargs)
    complete = data.dropna(subset=covs).reset_index(drop=True)
    _assert_crr(fine_gray(complete, "ss", "cc", covs, **kwargs), r["fit"], f"crr(ss, cc, cv{r_args})")


def test_crr_time_varying_and_censoring_groups_of_test_r():
    """test.R's crr calls with ``cov2 = cbind(cv[, 1], cv[, 1])``, ``tf = cbind(uft, uft^2)``: without cengroup
    (everything equal), with ``cengroup = cv[, 3]`` for causes 1 and 2 and cencode = 2 (coefficients,
    logliks, bfitj equal; the variance is ours, see docs/survival-finegray.md), the predict.crr call, and
    ``crr(ss, cc, cov2 = cv[, 1], tf = function(x) x)``."""
    r = run_r(
        _TEST_R_DATA
        + _CRR
        + """cov2 <- cbind(cv[, 1], cv[, 1])
tf <- function(uft) cbind(uft, uft^2)
plain <- crr(ss, cc, cv, cov2, tf = tf)
ww <- crr(ss, cc, cv, cov2, tf = tf, cengroup = cv[, 3])
wp <- predict(ww, rbind(c(1, 1, 1), c(0, 0, 0)), rbind(c(1, 1), c(0, 0)))
result <- list(data = data, plain = fit_values(plain), ww = fit_values(ww), wp1 = wp[, 2], wp2 = wp[, 3],
               f2 = fit_values(crr(ss, cc, cv, cov2, tf = tf, cengroup = cv[, 3], failcode = 2)),
               c2 = fit_values(crr(ss, cc, cv, cov2, tf = tf, cengroup = cv[, 3], cencode = 2)),
               only = fit_values(crr(ss, cc, cov2 = cv[, 1], tf = function(x) x)))"""
    )
    assert isinstance(r, dict)
    data = _frame(r).dropna(subset=["cv1"]).reset_index(drop=True)  # crr drops the 3 NA rows
    data["cv1b"] = data["cv1"]
    covs, cov2 = ["cv1", "cv2", "cv3"], ["cv1", "cv1b"]

    def tf(t):
        return np.column_stack([t, t**2])

    _assert_crr(fine_gray(data, "ss", "cc", covs, cov2=cov2, tf=tf), r["plain"], "crr(ss, cc, cv, cov2, tf)")
    only = fine_gray(data, "ss", "cc", [], cov2=["cv1"], tf=lambda t: t)
    _assert_crr(only, r["only"], "crr(ss, cc, cov2 = cv[, 1], tf = function(x) x)")
    for key, kwargs in (("ww", {}), ("f2", {"cause": 2}), ("c2", {"censor_code": 2})):
        fit = fine_gray(data, "ss", "cc", covs, cov2=cov2, tf=tf, censoring_group="cv3", **kwargs)
        ref = r[key]
        np.testing.assert_allclose(fit.summary["coef"], ref["coef"], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose([fit.loglik.null, fit.loglik.final], [ref["loglik_null"], ref["loglik"]], rtol=1e-8)
        np.testing.assert_allclose(fit.baseline["hazard"], ref["bfitj"], rtol=1e-6, err_msg=key)
        # not crr's variance with several censoring groups (documented): the standard errors are close
        se_r = np.sqrt(np.diag(np.asarray(ref["var"]).reshape(len(fit.summary), -1)))
        rel = np.max(np.abs(fit.summary["se"].to_numpy() / se_r - 1))
        assert rel < 0.05, (key, rel)
        if key == "ww":
            profiles = pd.DataFrame({"cv1": [1.0, 0.0], "cv2": [1.0, 0.0], "cv3": [1.0, 0.0], "cv1b": [1.0, 0.0]})
            pred = fit.predict_cif(profiles)
            np.testing.assert_allclose(pred[0], r["wp1"], rtol=1e-6)
            np.testing.assert_allclose(pred[1], r["wp2"], rtol=1e-6)


def test_crr_single_covariate():
    """test.R: ``crr(ss, cc, cv[, 1])``."""
    r = run_r(_TEST_R_DATA + _CRR + "result <- list(data = data, fit = fit_values(crr(ss, cc, cv[, 1])))")
    assert isinstance(r, dict)
    data = _frame(r).dropna(subset=["cv1"]).reset_index(drop=True)
    _assert_crr(fine_gray(data, "ss", "cc", ["cv1"]), r["fit"], "crr(ss, cc, cv[, 1])")


def test_crr_help_page_example():
    """crr's help-page example: set.seed(10), 200 rows, 3 uniform covariates; crr, failcode = 2 and predict."""
    r = run_r(
        """suppressPackageStartupMessages(library(cmprsk))
set.seed(10)
ftime <- rexp(200)
fstatus <- sample(0:2, 200, replace = TRUE)
cov <- matrix(runif(600), nrow = 200)
dimnames(cov)[[2]] <- c('x1', 'x2', 'x3')
z <- crr(ftime, fstatus, cov)
z2 <- crr(ftime, fstatus, cov, failcode = 2)
zp <- predict(z, rbind(c(.1, .5, .8), c(.1, .5, .2)))
"""
        + _CRR
        + """result <- list(data = data.frame(ftime = ftime, fstatus = fstatus, cov), fit = fit_values(z),
               fit2 = fit_values(z2), pred_time = zp[, 1], pred1 = zp[, 2], pred2 = zp[, 3])"""
    )
    assert isinstance(r, dict)
    data = pd.DataFrame(r["data"])
    covs = ["x1", "x2", "x3"]
    ours = fine_gray(data, "ftime", "fstatus", covs)
    _assert_crr(ours, r["fit"], "crr(ftime, fstatus, cov)")
    _assert_crr(fine_gray(data, "ftime", "fstatus", covs, cause=2), r["fit2"], "failcode = 2")
    pred = predict_cif(ours, pd.DataFrame({"x1": [0.1, 0.1], "x2": [0.5, 0.5], "x3": [0.8, 0.2]}))
    # predict.crr: one row per uftime, CIF = 1 - exp(-cumsum(bfitj) exp(x beta))
    np.testing.assert_allclose(pred["time"], r["pred_time"], rtol=0)
    np.testing.assert_allclose(pred[0], r["pred1"], rtol=1e-6)
    np.testing.assert_allclose(pred[1], r["pred2"], rtol=1e-6)


def _edge_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 60
    x = rng.normal(size=n)
    g = rng.integers(0, 2, n)
    t = np.round(rng.exponential(1, n) * 10)  # whole days from 0: ties, and events at time 0
    st = rng.integers(0, 3, n)
    return {
        "no_competing": pd.DataFrame({"t": t + 1, "s": np.where(st == 2, 1, st), "x": x, "g": g}),
        "no_censoring": pd.DataFrame({"t": t + 1, "s": np.where(st == 0, 2, st), "x": x, "g": g}),
        "time_zero": pd.DataFrame({"t": t, "s": st, "x": x, "g": g}),
        "competing_before_all_events": pd.DataFrame({"t": np.where(st == 2, 0.5, t + 1), "s": st, "x": x, "g": g}),
    }


@pytest.mark.parametrize("name", sorted(_edge_data()))
def test_edge_data_sets_match_crr_and_cuminc(name):
    """Hostile-but-valid data: no competing events, no censoring, events at time 0, every competing event first."""
    data = _edge_data()[name]
    r = run_r(
        """suppressPackageStartupMessages(library(cmprsk))
z <- crr(d$t, d$s, cbind(d$x, d$g))
ci <- cuminc(d$t, d$s, d$g)
result <- list(fit = list(coef = unname(z$coef), var = as.vector(z$var), loglik = z$loglik,
                          loglik_null = z$loglik.null, uftime = z$uftime, bfitj = z$bfitj, n = z$n),
               curves = lapply(c("0 1", "1 1"), function(k) list(name = k, time = ci[[k]]$time, est = ci[[k]]$est,
                                                                 var = ci[[k]]$var)),
               stat = unname(ci$Tests[1, "stat"]))""",
        {"d": data},
    )
    assert isinstance(r, dict)
    _assert_crr(fine_gray(data, "t", "s", ["x", "g"]), r["fit"], name)
    data = data.rename(columns={"s": "cc"})
    _assert_cuminc(data, "t", "g", r["curves"], name)
    test = gray_test(data, "t", "cc", "g")
    assert abs(test.statistic - r["stat"]) <= 1e-6 * r["stat"], name


def test_monotone_subdistribution_likelihood_warns():
    """Every event of cause 1 has m = 1 (and m = 1 has no other outcome): crr's coefficient runs off; we warn."""
    from retrocohort.errors import ModelWarning

    rng = np.random.default_rng(3)
    n = 60
    m = (np.arange(n) % 2).astype(float)
    status = np.where(m == 1, 1, rng.integers(0, 3, n) * (rng.integers(0, 3, n) != 1))
    status = np.where((m == 0) & (status == 1), 2, status)
    data = pd.DataFrame({"t": rng.exponential(1, n), "s": status, "m": m, "z": rng.normal(size=n)})
    r = run_r(
        "suppressPackageStartupMessages(library(cmprsk))\nz <- crr(d$t, d$s, cbind(d$m, d$z))\n"
        "result <- list(coef = unname(z$coef), converged = z$converged)",
        {"d": data},
    )
    assert isinstance(r, dict)
    with pytest.warns(ModelWarning, match="m"):
        ours = fine_gray(data, "t", "s", ["m", "z"])
    assert ours.summary.loc["m", "coef"] > 5 and r["coef"][0] > 5
