"""The null Cox model, ``coxph(Surv(...) ~ 1)`` (R survival's testnull.R, doaml.R, survtest.R use it).

Part 1 (no R): book1.R's data with the log partial likelihood at beta = 0, the
hazard and the martingale residuals derived by hand; what R refuses (score,
Schoenfeld and dfbeta residuals, tests) is refused here too.

Part 2 (marker ``r``): lung (plain, strata, weights), aml (an offset) and heart
((start, stop] with strata) against live ``coxph`` / ``residuals`` /
``predict`` / ``basehaz`` / ``survfit``, 1e-8 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.survival import (
    baseline_hazard,
    cox,
    cox_residuals,
    ph_test,
    predict_cox,
    predict_survival,
    score_residuals,
    survfit_cox,
)


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))


def _test1() -> pd.DataFrame:
    # book1.R's test1 without its NA-status row, rows out of time order
    return pd.DataFrame({"time": [9.0, 1, 1, 6, 6, 8], "status": [1, 1, 0, 1, 1, 0], "x": [0.0, 1, 1, 1, 0, 0]})


# ---------------------------------------------------------------- part 1: by hand


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_book1_null_loglik_hazard_and_martingale_by_hand(ties):
    """Risk sets 6, 4 (two deaths), 1 at times 1, 6, 9: loglik, basehaz and residuals at beta = 0."""
    fit = cox(_test1(), "time", "status", [], ties=ties)
    # Breslow: -log 6 - 2 log 4 - log 1; Efron's second tied death sees 4 - 1/2 - 1/2 = 3
    expect = -math.log(6) - 2 * math.log(4) if ties == "breslow" else -math.log(6) - math.log(4) - math.log(3)
    assert fit.loglik[0] == fit.loglik[1]
    assert abs(fit.loglik[1] - expect) < 1e-13 * abs(expect)
    assert fit.summary.empty and fit.vcov.shape == (0, 0) and fit.iterations == 0 and fit.converged
    assert fit.likelihood_ratio is None and fit.wald is None and fit.score is None
    assert fit.is_null and fit.n == 6 and fit.n_events == 4
    # hazard increments: 1/6, then 2/4 (Breslow) or 1/4 + 1/3 (Efron), then 1/1
    step6 = 0.5 if ties == "breslow" else 1 / 4 + 1 / 3
    bh = baseline_hazard(fit)
    assert np.allclose(bh["time"], [1, 6, 8, 9]) and _rel(bh["cumhaz"], np.cumsum([1 / 6, step6, 0, 1])) < 1e-13
    cum = {1.0: 1 / 6, 6.0: 1 / 6 + step6, 8.0: 1 / 6 + step6, 9.0: 1 / 6 + step6 + 1}
    data = _test1()
    expected = data["time"].map(cum)
    if ties == "efron":
        # a death tied at 6 is at risk for all of the first step (1/4) but half of the second (1/3)
        expected[(data["time"] == 6).to_numpy()] = 1 / 6 + 1 / 4 + 0.5 / 3
    assert _abs(cox_residuals(fit), data["status"] - expected) < 1e-13
    assert _abs(predict_cox(fit, type="expected")["fit"], expected) < 1e-13
    lp = predict_cox(fit, data)["fit"]
    assert (lp == 0).all() and (predict_cox(fit, data, type="risk")["fit"] == 1).all()
    curve = survfit_cox(fit, data.iloc[[0]])
    assert _rel(curve["surv"], np.exp(-np.array(list(cum.values())))) < 1e-13


def test_null_refuses_what_r_refuses():
    fit = cox(_test1(), "time", "status", [])
    for kind in ("score", "schoenfeld", "scaledsch", "dfbeta", "dfbetas"):
        with pytest.raises(InputError, match="not defined for a null model"):
            cox_residuals(fit, kind)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="null model"):
        score_residuals(fit)
    with pytest.raises(InputError, match="no hazard ratios"):
        fit.plot()
    with pytest.raises(InputError, match="null model"):  # cox.zph refuses a null fit too
        ph_test(fit)
    with pytest.raises(InputError, match="init must hold 0 finite numbers"):
        cox(_test1(), "time", "status", [], init=[0.5])


def test_null_prints_like_coxph():
    fit = cox(_test1(), "time", "status", [], strata="x")
    text = repr(fit)
    assert "~ 1 + strata(x)" not in text and "~ strata(x)" in text
    assert "Null model" in text and f"log likelihood= {fit.loglik[1]:.7g}" in text
    assert "Null model" in fit._repr_html_() and "<pre>" in fit._repr_html_()
    assert "Surv(time, status) ~ 1," in repr(cox(_test1(), "time", "status", []))


def test_null_with_offset_has_lp_equal_to_offset():
    data = _test1().assign(off=np.log(np.arange(1.0, 7.0)))
    fit = cox(data, "time", "status", [], offset="off")
    assert _abs(predict_cox(fit)["fit"], data["off"] - data["off"].mean()) < 1e-13
    assert fit.loglik[0] == fit.loglik[1]
    assert fit.loglik[1] != cox(_test1(), "time", "status", []).loglik[1]


def test_null_survival_prediction_is_the_breslow_curve():
    data = _test1()
    fit = cox(data, "time", "status", [], ties="breslow")
    s = predict_survival(fit, data.iloc[[0, 1]], times=[1.0, 6.0, 9.0])
    assert _rel(s.iloc[:, 0], np.exp(-np.array([1 / 6, 2 / 3, 5 / 3]))) < 1e-13
    assert _abs(s.iloc[:, 0], s.iloc[:, 1]) == 0  # every profile has the same curve


# ---------------------------------------------------------------- part 2: live R

_R_NULL = """
suppressPackageStartupMessages(library(survival))
fit <- coxph({formula}, data = d, ties = "{ties}"{extra})
sf <- if ({curves}) survfit(fit) else list()  # a null fit's curve needs no newdata (survfit refuses it)
bh <- if ({basehaz}) basehaz(fit, centered = FALSE) else NULL
result <- list(
  loglik = fit$loglik, iter = fit$iter, ncoef = length(coef(fit)),
  mart = unname(residuals(fit, "martingale")), dev = unname(residuals(fit, "deviance")),
  lp = unname(predict(fit, type = "lp")), risk = unname(predict(fit, type = "risk")),
  expected = unname(predict(fit, type = "expected")),
  score_err = inherits(try(residuals(fit, "score"), silent = TRUE), "try-error"),
  bh_time = bh$time, bh_cumhaz = bh$hazard,
  sf_time = sf$time, sf_surv = unname(as.vector(sf$surv)), sf_se = unname(as.vector(sf$std.err)),
  sf_cumhaz = unname(as.vector(sf$cumhaz))
)
"""


def _r_frame(expr: str) -> pd.DataFrame:
    from tests.rlive import run_r

    return pd.DataFrame(run_r(f"suppressPackageStartupMessages(library(survival))\nresult <- as.list({expr})"))


def _run(
    data: pd.DataFrame, formula: str, ties: str, extra: str = "", basehaz: bool = True, curves: bool = True
) -> dict:
    from tests.rlive import run_r

    flags = {"basehaz": "TRUE" if basehaz else "FALSE", "curves": "TRUE" if curves else "FALSE"}
    code = _R_NULL.format(formula=formula, ties=ties, extra=extra, **flags)
    return run_r(code, {"d": data})  # type: ignore[return-value]


def _check(fit, data: pd.DataFrame, r: dict, what: str, curves: bool = True, tol: float = 1e-8) -> None:
    assert r["ncoef"] == 0 and fit.summary.empty, what
    # a null coxph fit has a single fit$loglik; ours is (null, final), both that value
    assert np.ndim(r["loglik"]) == 0 and _rel(fit.loglik, [r["loglik"]] * 2) < tol, what
    scale = float(np.max(np.abs(r["mart"])))
    assert _abs(cox_residuals(fit), r["mart"]) < tol * scale, what
    assert _abs(cox_residuals(fit, "deviance"), r["dev"]) < tol * float(np.max(np.abs(r["dev"]))), what
    assert _abs(predict_cox(fit)["fit"], r["lp"]) < tol, what
    assert _rel(predict_cox(fit, type="risk")["fit"], r["risk"]) < tol, what
    assert _rel(predict_cox(fit, type="expected")["fit"], r["expected"]) < tol, what
    assert r["score_err"], what  # R refuses score residuals of a null fit, as we do
    if r.get("bh_time"):  # NULL in R (an offset fit) arrives as {}
        bh = baseline_hazard(fit)
        assert np.array_equal(bh["time"].to_numpy(), np.asarray(r["bh_time"], dtype=float)), what
        assert _rel(bh["cumhaz"], r["bh_cumhaz"]) < tol, what
    if curves:
        c = survfit_cox(fit, data.iloc[[0]])
        assert np.array_equal(c["time"].to_numpy(), np.asarray(r["sf_time"], dtype=float)), what
        assert _rel(c["surv"], r["sf_surv"]) < tol, what
        assert _rel(c["cumhaz"], r["sf_cumhaz"]) < tol, what
        assert _rel(c["std_err"], r["sf_se"]) < tol, what


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_lung_null_matches_coxph(ties):
    """coxph(Surv(time, status) ~ 1) on lung; with strata(sex); with non-integer weights."""
    lung = _r_frame("lung")[["time", "status", "sex", "age"]].copy()
    lung["status"] = lung["status"] - 1
    lung["w"] = 1 + (lung["age"] % 7) / 10
    fit = cox(lung, "time", "status", [], ties=ties)
    _check(fit, lung, _run(lung, "Surv(time, status) ~ 1", ties), f"lung {ties}")
    fit = cox(lung, "time", "status", [], ties=ties, strata="sex")
    r = _run(lung, "Surv(time, status) ~ strata(sex)", ties, curves=False)
    _check(fit, lung, r, f"lung strata {ties}", curves=False)
    fit = cox(lung, "time", "status", [], ties=ties, weights="w")
    _check(fit, lung, _run(lung, "Surv(time, status) ~ 1", ties, ", weights = w"), f"lung weights {ties}")


@pytest.mark.r
def test_aml_null_with_offset_matches_coxph():
    """doaml.R: coxph(Surv(time, status) ~ offset(log(1:23)), aml) and its martingale residuals."""
    aml = _r_frame("aml")[["time", "status"]].copy()
    aml["off"] = np.log(np.arange(1.0, len(aml) + 1))
    fit = cox(aml, "time", "status", [], offset="off")
    r = _run(aml, "Surv(time, status) ~ offset(off)", "efron", curves=False)
    assert len(r["bh_time"]) > 0  # basehaz of an offset fit: at the mean offset (checked in _check)
    _check(fit, aml, r, "aml offset", curves=False)
    fit = cox(aml, "time", "status", [])
    _check(fit, aml, _run(aml, "Surv(time, status) ~ 1", "efron"), "aml")


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_heart_null_start_stop_matches_coxph(ties):
    """(start, stop] rows of heart, with and without strata(surgery)."""
    heart = _r_frame("heart")[["start", "stop", "event", "surgery"]].copy()
    fit = cox(heart, "stop", "event", [], entry="start", ties=ties)
    _check(fit, heart, _run(heart, "Surv(start, stop, event) ~ 1", ties), f"heart {ties}")
    fit = cox(heart, "stop", "event", [], entry="start", ties=ties, strata="surgery")
    r = _run(heart, "Surv(start, stop, event) ~ strata(surgery)", ties, curves=False)
    _check(fit, heart, r, f"heart strata {ties}", curves=False)


def test_book1_null_exact_ties_by_hand():
    """ties='exact': the two deaths at 6 are one of C(4, 2) = 6 pairs of the risk set: -log 6 - log 6."""
    fit = cox(_test1(), "time", "status", [], ties="exact")
    assert abs(fit.loglik[1] - (-2 * math.log(6))) < 1e-13 and fit.loglik[0] == fit.loglik[1]


def test_null_robust_or_cluster_has_no_variance_and_no_robust_score():
    data = _test1().assign(c=[1, 1, 2, 2, 3, 3])
    for fit in (cox(data, "time", "status", [], robust=True), cox(data, "time", "status", [], cluster="c")):
        assert fit.robust and fit.robust_score is None and fit.vcov.shape == (0, 0)
        assert "Null model" in repr(fit)
