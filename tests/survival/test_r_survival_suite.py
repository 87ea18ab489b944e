"""R survival's own test cases, run on our engine.

Part 1 (no R needed): the hand-calculated cases of Therneau & Grambsch's
appendix E, which R survival checks in ``tests/book1.R`` .. ``tests/book4.R``
(therneau/survival). The *formulas* (log-likelihood, score, information,
hazard increments, residuals as functions of ``r = exp(beta)``) are the ones
those files state; they are re-derived here in a few lines of NumPy, and the
expected numbers are evaluated from them, never typed in from our output.

Part 2 (marker ``r``): cases and edge cases from R survival's tests that have
no closed form (and hostile inputs), compared with survival run live through
``tests/rlive.py``; and inputs we refuse, with the error we give.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from retrocohort.errors import InputError, ModelWarning
from retrocohort.survival import (
    baseline_hazard,
    cox,
    kaplan_meier,
    logrank,
    ph_test,
    predict_survival,
    score_residuals,
)

# Newton is run to convergence here: the closed forms are the exact roots,
# coxph's default eps leaves beta ~1e-9 short of them.
EXACT = 1e-14


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ---------------------------------------------------------------- book1 / book2: data set 1


def _test1() -> pd.DataFrame:
    """book1.R's ``test1`` without its NA-status row (coxph drops it; we refuse NA, see below).

    Rows are deliberately not in time order (book1.R: "to also test sorting").
    """
    return pd.DataFrame({"time": [9.0, 1, 1, 6, 6, 8], "status": [1, 1, 0, 1, 1, 0], "x": [0.0, 1, 1, 1, 0, 0]})


# test1 in time order (the order book1.R's byhand vectors use) as positions in _test1()
_T1_SORTED = [1, 2, 3, 4, 5, 0]


def _book1(beta: float) -> dict[str, np.ndarray | float]:
    """Breslow on data set 1, Therneau & Grambsch E.1 (book1.R's ``byhand1``)."""
    r = math.exp(beta)
    a, b = 3 * (r + 1) ** 2, (r + 3) ** 2
    return {
        "loglik": 2 * beta - (math.log(3 * r + 3) + 2 * math.log(r + 3)),
        "u": (6 + 3 * r - r * r) / ((r + 1) * (r + 3)),
        "imat": r / (r + 1) ** 2 + 6 * r / (r + 3) ** 2,
        # hazard increments at times 1, 6, 8, 9 (x = 0)
        "haz": np.array([1 / (3 * r + 3), 2 / (r + 3), 0.0, 1.0]),
        # score residuals in time order
        "score": np.array(
            [
                (2 * r + 3) / a,
                -r / a,
                -r / a + 3 * (3 - r) / b,
                r / a - r * (r + 1) / b,
                r / a + 2 * r / b,
                r / a + 2 * r / b,
            ]
        ),
    }


def test_book1_breslow_at_beta_zero():
    """book1.R ``fit0``: iter = 0 gives the loglik and inverse information at beta = 0."""
    fit = cox(_test1(), "time", "status", ["x"], ties="breslow", max_iter=0)
    truth = _book1(0.0)
    assert fit.summary.loc["x", "coef"] == 0.0
    assert _rel(fit.loglik[0], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-12
    resid = score_residuals(fit).loc[_T1_SORTED, "x"].to_numpy()
    assert _rel(resid, truth["score"]) < 1e-12
    # book1.R also states them as fractions (input order): 5/24, 5/12, -1/12, 7/24, -1/24, 5/24
    assert _rel(score_residuals(fit)["x"], np.array([5, 10, -2, 7, -1, 5]) / 24) < 1e-12
    # the score test at beta = 0 is u^2 / imat (book3.R states it as fit0$score)
    assert _rel(fit.score.statistic, truth["u"] ** 2 / truth["imat"]) < 1e-12


def test_book1_breslow_one_newton_step_is_8_over_5():
    """book1.R ``fit1``: one Newton step from 0 is u(0)/imat(0) = 1 / (5/8) = 8/5."""
    fit = cox(_test1(), "time", "status", ["x"], ties="breslow", max_iter=1)
    truth = _book1(0.0)
    assert _rel(fit.summary.loc["x", "coef"], truth["u"] / truth["imat"]) < 1e-12
    assert _rel(fit.summary.loc["x", "coef"], 8 / 5) < 1e-12


def test_book1_breslow_converged():
    """book1.R ``fit``: the score (6 + 3r - r^2) vanishes at r = (3 + sqrt(33)) / 2."""
    fit = cox(_test1(), "time", "status", ["x"], ties="breslow", eps=EXACT, max_iter=50)
    beta = math.log((3 + math.sqrt(33)) / 2)
    truth = _book1(beta)
    assert _rel(fit.summary.loc["x", "coef"], beta) < 1e-10
    assert _rel(fit.loglik[1], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-10
    assert _rel(score_residuals(fit).loc[_T1_SORTED, "x"], truth["score"]) < 1e-9
    base = baseline_hazard(fit)
    assert base["time"].tolist() == [1.0, 6.0, 8.0, 9.0]
    assert _rel(base["cumhaz"], np.cumsum(truth["haz"])) < 1e-10
    # book1.R's survfit(fit, list(x = newx)): exp(-cumsum(haz) exp(beta newx)), here for newx = 0 and 2
    surv = predict_survival(fit, pd.DataFrame({"x": [0.0, 2.0]}))
    assert _rel(surv[0], np.exp(-np.cumsum(truth["haz"]))) < 1e-10
    assert _rel(surv[1], np.exp(-np.cumsum(truth["haz"]) * math.exp(2 * beta))) < 1e-10


def _book2(beta: float) -> dict[str, np.ndarray | float]:
    """Efron on data set 1, Therneau & Grambsch E.2 (book2.R's ``byhand``)."""
    r = math.exp(beta)
    a, b, d = r + 1, r + 3, r + 5

    def tfun(p: float) -> float:
        return p - p * p

    # weight of each row (time order) in the risk set of each death: times 1, 6, 6 (second, Efron), 9
    wt = (
        np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0.5, 0.5, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=float).T
        * np.array([r, r, r, 1, 1, 1])[:, None]
    )
    big = 177 + r * (282 + r * (182 + r * (50 + 5 * r)))
    return {
        "loglik": 2 * beta - (math.log(3 * r + 3) + math.log((r + 5) / 2) + math.log(r + 3)),
        "u": (30 + 23 * r - r**3) / (a * b * d),
        "imat": tfun(r / (r + 1)) + tfun(r / (r + 5)) + tfun(r / (r + 3)),
        "haz": 1 / wt.sum(axis=0),
        "score": np.array(
            [
                (2 * r + 3) / (3 * a * a),
                -r / (3 * a * a),
                (675 + r * (1305 + r * (756 + r * (-4 + r * (-79 - 13 * r))))) / (3 * (a * b * d) ** 2),
                r * (1 / (3 * a * a) - a / (2 * b * b) - b / (2 * d * d)),
                2 * r * big / (3 * (a * b * d) ** 2),
                2 * r * big / (3 * (a * b * d) ** 2),
            ]
        ),
    }


def test_book2_efron_at_beta_zero():
    """book2.R ``fit0``: Efron loglik, variance and score residuals at beta = 0."""
    fit = cox(_test1(), "time", "status", ["x"], ties="efron", max_iter=0)
    truth = _book2(0.0)
    assert _rel(fit.loglik[0], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-12
    assert _rel(score_residuals(fit).loc[_T1_SORTED, "x"], truth["score"]) < 1e-12


def test_book2_efron_converged_trigonometric_root():
    """book2.R: the Efron score 30 + 23r - r^3 = 0 has the root 2 sqrt(23/3) cos(acos((45/23) sqrt(3/23)) / 3)."""
    fit = cox(_test1(), "time", "status", ["x"], ties="efron", eps=EXACT, max_iter=50)
    beta = math.log(math.cos(math.acos((45 / 23) * math.sqrt(3 / 23)) / 3) * 2 * math.sqrt(23 / 3))
    truth = _book2(beta)
    assert abs(truth["u"]) < 1e-12  # the formula's root really is the root
    assert _rel(fit.summary.loc["x", "coef"], beta) < 1e-10
    assert _rel(fit.loglik[1], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-10
    assert _rel(score_residuals(fit).loc[_T1_SORTED, "x"], truth["score"]) < 1e-9
    # survfit(fit, x = 0) at times 1, 6, 9: the two Efron increments at t = 6 add up
    cum = np.cumsum(truth["haz"])[[0, 2, 3]]
    base = baseline_hazard(fit).set_index("time")["cumhaz"]
    assert _rel(base.loc[[1.0, 6.0, 9.0]], cum) < 1e-10


# ---------------------------------------------------------------- book3 / book4: data set 2, (start, stop]


def _test2() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start": [1.0, 2, 5, 2, 1, 7, 3, 4, 8, 8],
            "stop": [2.0, 3, 6, 7, 8, 9, 9, 9, 14, 17],
            "event": [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "x": [1.0, 0, 0, 1, 0, 1, 1, 1, 0, 0],
        }
    )


def _book3(beta: float) -> dict[str, np.ndarray | float]:
    """Breslow on (start, stop] data set 2, Therneau & Grambsch E.3 (book3.R's ``byhand``)."""
    r = math.exp(beta)
    hazard = np.array([1 / (r + 1), 1 / (r + 2), 1 / (3 * r + 2), 1 / (3 * r + 1), 1 / (3 * r + 1), 2 / (3 * r + 2)])
    # at-risk indicator: rows x death times 2, 3, 6, 7, 8, 9
    at_risk = np.array(
        [
            [1, 0, 0, 0, 1, 0, 0, 0, 0, 0],
            [0, 1, 0, 1, 1, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 0, 1, 1, 0, 0],
            [0, 0, 0, 1, 1, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        ],
        dtype=float,
    ).T
    x = np.array([1.0, 0, 0, 1, 0, 1, 1, 1, 0, 0])
    wt = at_risk * np.where(x == 1, r, 1.0)[:, None]
    xbar = (wt * x[:, None]).sum(axis=0) / wt.sum(axis=0)
    dm = -wt * hazard[None, :]
    for i in range(6):
        dm[i, i] += 1
    dm[6, 5] += 1
    return {
        "loglik": 4 * beta - math.log(r + 1) - math.log(r + 2) - 3 * math.log(3 * r + 2) - 2 * math.log(3 * r + 1),
        "u": 1 / (r + 1)
        + 1 / (3 * r + 1)
        + 4 / (3 * r + 2)
        - (r / (r + 2) + 3 * r / (3 * r + 2) + 3 * r / (3 * r + 1)),
        "imat": r / (r + 1) ** 2
        + 2 * r / (r + 2) ** 2
        + 6 * r / (3 * r + 2) ** 2
        + 3 * r / (3 * r + 1) ** 2
        + 3 * r / (3 * r + 1) ** 2
        + 12 * r / (3 * r + 2) ** 2,
        "haz": hazard,
        "score": (dm * (x[:, None] - xbar[None, :])).sum(axis=1),
    }


def test_book3_breslow_counting_process():
    """book3.R: (start, stop] Breslow, at beta = 0, one step, and converged (root of the book's score)."""
    data = _test2()
    fit0 = cox(data, "stop", "event", ["x"], entry="start", ties="breslow", max_iter=0)
    t0 = _book3(0.0)
    assert _rel(fit0.loglik[0], t0["loglik"]) < 1e-12
    assert _rel(fit0.vcov.loc["x", "x"], 1 / t0["imat"]) < 1e-12
    assert _rel(fit0.score.statistic, t0["u"] ** 2 / t0["imat"]) < 1e-12
    assert _rel(score_residuals(fit0)["x"], t0["score"]) < 1e-12
    fit1 = cox(data, "stop", "event", ["x"], entry="start", ties="breslow", max_iter=1)
    assert _rel(fit1.summary.loc["x", "coef"], t0["u"] / t0["imat"]) < 1e-12

    beta = optimize.brentq(lambda b: _book3(b)["u"], -2, 2, xtol=1e-15)
    assert round(beta, 9) == -0.084526081  # book3.R's value, a check on the transcribed formula
    fit = cox(data, "stop", "event", ["x"], entry="start", ties="breslow", eps=EXACT, max_iter=50)
    truth = _book3(beta)
    assert _rel(fit.summary.loc["x", "coef"], beta) < 1e-9
    assert _rel(fit.loglik[1], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-10
    assert _rel(score_residuals(fit)["x"], truth["score"]) < 1e-8
    base = baseline_hazard(fit).set_index("time")["cumhaz"]
    assert _rel(base.loc[[2.0, 3, 6, 7, 8, 9]], np.cumsum(truth["haz"])) < 1e-10


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_book3_book4_strata_keep_risk_sets_apart(ties):
    """book3.R / book4.R reprise: three copies shifted by 1, 2, 3 in time as strata give 3x loglik and information."""
    base = _test2()
    parts = []
    for g in (1, 2, 3):
        part = base.copy()
        part["group"] = g
        part["start"] += g
        part["stop"] += g
        parts.append(part)
    data = pd.concat(parts, ignore_index=True)
    single0 = cox(base, "stop", "event", ["x"], entry="start", ties=ties, max_iter=0)
    fit0 = cox(data, "stop", "event", ["x"], entry="start", ties=ties, strata="group", max_iter=0)
    assert _rel(fit0.loglik[0], 3 * single0.loglik[0]) < 1e-12
    assert _rel(1 / fit0.vcov.loc["x", "x"], 3 / single0.vcov.loc["x", "x"]) < 1e-12
    assert _rel(score_residuals(fit0)["x"], np.tile(score_residuals(single0)["x"], 3)) < 1e-12
    truth = _book3(0.0) if ties == "breslow" else _book4(0.0)
    assert _rel(fit0.loglik[0], 3 * truth["loglik"]) < 1e-12
    single = cox(base, "stop", "event", ["x"], entry="start", ties=ties, eps=EXACT, max_iter=50)
    fit = cox(data, "stop", "event", ["x"], entry="start", ties=ties, strata="group", eps=EXACT, max_iter=50)
    assert _rel(fit.summary.loc["x", "coef"], single.summary.loc["x", "coef"]) < 1e-10
    assert _rel(fit.loglik[1], 3 * single.loglik[1]) < 1e-12


def _book4(beta: float) -> dict[str, float]:
    """Efron on (start, stop] data set 2, Therneau & Grambsch E.4 (book4.R's ``byhand``)."""
    r = math.exp(beta)
    return {
        "loglik": 4 * beta
        - (math.log(r + 1) + math.log(r + 2) + 2 * math.log(3 * r + 2) + 2 * math.log(3 * r + 1) + math.log(2 * r + 2)),
        "u": 1 / (r + 1)
        + 1 / (3 * r + 1)
        + 2 * (1 / (3 * r + 2) + 1 / (2 * r + 2))
        - (r / (r + 2) + 3 * r / (3 * r + 2) + 3 * r / (3 * r + 1)),
        "imat": r
        * (
            1 / (r + 1) ** 2
            + 2 / (r + 2) ** 2
            + 6 / (3 * r + 2) ** 2
            + 6 / (3 * r + 1) ** 2
            + 6 / (3 * r + 2) ** 2
            + 4 / (2 * r + 2) ** 2
        ),
    }


def test_book4_efron_counting_process():
    """book4.R: (start, stop] Efron at beta = 0 and at the root of the book's score."""
    data = _test2()
    fit0 = cox(data, "stop", "event", ["x"], entry="start", ties="efron", max_iter=0)
    t0 = _book4(0.0)
    assert _rel(fit0.loglik[0], t0["loglik"]) < 1e-12
    assert _rel(fit0.vcov.loc["x", "x"], 1 / t0["imat"]) < 1e-12
    beta = optimize.brentq(lambda b: _book4(b)["u"], -2, 2, xtol=1e-15)
    fit = cox(data, "stop", "event", ["x"], entry="start", ties="efron", eps=EXACT, max_iter=50)
    truth = _book4(beta)
    assert _rel(fit.summary.loc["x", "coef"], beta) < 1e-9
    assert _rel(fit.loglik[1], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-10


def test_book1_na_status_is_refused_not_dropped():
    """book1.R's test1 has an NA status, which coxph drops (na.action); we refuse and say how many."""
    data = pd.DataFrame(
        {"time": [9.0, 3, 1, 1, 6, 6, 8], "status": [1, np.nan, 1, 0, 1, 1, 0], "x": [0.0, 2, 1, 1, 1, 0, 0]}
    )
    with pytest.raises(InputError, match=r"'status' has 1 missing value\(s\) out of 7 rows"):
        cox(data, "time", "status", ["x"], ties="breslow")


def test_singtest_epoch_constant_within_risk_sets_is_refused():
    """singtest.R: ``x * factor(epoch)`` on non-overlapping epochs; coxph gives NA for the epoch terms, we refuse.

    The epochs' (start, stop] windows do not overlap, so every risk set holds
    one epoch only and its dummies carry no information.
    """
    base = pd.DataFrame({"time": [4.0, 1, 1, 2, 2, 3], "status": [1, 1, 0, 1, 1, 0], "x": [0.0, 1, 1, 1, 0, 0]})
    parts = []
    for epoch in range(4):
        part = base.copy()
        part["start"] = 10.0 * epoch
        part["stop"] = 10.0 * epoch + part["time"]
        part["x"] = part["x"] + (np.arange(1, 7) if epoch == 0 else 0)
        part["epoch"] = str(epoch + 1)
        parts.append(part)
    data = pd.concat(parts, ignore_index=True)
    with pytest.raises(InputError, match="epoch2") as err:
        cox(data, "stop", "status", ["x", "epoch"], entry="start")
    assert "coxph would report NA" in str(err.value)


def test_counting_r_split_rows_give_the_same_fit():
    """counting.R: test1 rewritten as (start, stop] pieces per id (times relabelled, order kept) fits identically.

    Cox depends on the time order only, so fit, score residuals summed per id
    (``resid(fitb, collapse = id)``), the per-id sandwich and the PH test equal
    those of test1. (test1b's id 2 has x = NA, which coxph drops; it is left out.)
    """
    test1b = pd.DataFrame(
        {
            "start": [0.0, 3, 0, 0, 5, 0, 6, 14, 0, 0, 10, 20, 30],
            "stop": [3.0, 10, 10, 5, 20, 6, 14, 20, 30, 10, 20, 30, 40],
            "status": [0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1],
            "x": [1.0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            "id": [3, 3, 4, 5, 5, 6, 6, 6, 7, 1, 1, 1, 1],
        }
    )
    # test1's rows in _test1() order are ids 1, 3, 4, 5, 6, 7
    ids = [1, 3, 4, 5, 6, 7]
    for ties in ("efron", "breslow"):
        for max_iter in (0, 20):
            plain = cox(_test1(), "time", "status", ["x"], ties=ties, max_iter=max_iter, robust=True)
            split = cox(test1b, "stop", "status", ["x"], entry="start", ties=ties, max_iter=max_iter, cluster="id")
            what = f"{ties} max_iter={max_iter}"
            assert _rel(split.summary["coef"], plain.summary["coef"]) < 1e-12, what
            assert _rel(split.loglik, plain.loglik) < 1e-12, what
            assert _rel(split.naive_vcov.to_numpy(), plain.naive_vcov.to_numpy()) < 1e-12, what
            collapsed = score_residuals(split)["x"].groupby(test1b["id"]).sum().loc[ids]
            assert _rel(collapsed, score_residuals(plain)["x"]) < 1e-10, what
            assert _rel(split.vcov.to_numpy(), plain.vcov.to_numpy()) < 1e-10, what
        assert _rel(ph_test(split).table["chisq"], ph_test(plain).table["chisq"]) < 1e-10, ties


# ---------------------------------------------------------------- doweight.R: case weights


def _testw1() -> pd.DataFrame:
    """doweight.R's ``testw1``: weights, a tied time with deaths and a censoring, a censored last subject."""
    return pd.DataFrame(
        {
            "time": [1.0, 1, 2, 2, 2, 2, 3, 4, 5],
            "status": [1, 0, 1, 1, 1, 0, 0, 1, 0],
            "x": [2.0, 0, 1, 1, 0, 1, 0, 1, 0],
            "wt": [1.0, 2, 3, 4, 3, 2, 1, 2, 1],
        }
    )


def _doweight_breslow_cumhaz(beta: float) -> np.ndarray:
    """doweight.R ``texp``: the weighted Breslow baseline cumulative hazard at the death times 1, 2, 4."""
    r = math.exp(beta)
    return np.cumsum([1 / (r * r + 11 * r + 7), 10 / (11 * r + 5), 2 / (2 * r + 1)])


def _doweight_efron(beta: float) -> dict[str, float]:
    """doweight.R ``lfun``, ``ufun``, ``ifun``: the weighted Efron loglik, score and information."""
    r = math.exp(beta)
    a, b = 7 * r + 3, 4 * r + 2
    loglik = 11 * beta - (
        math.log(r * r + 11 * r + 7)
        + (10 / 3) * (math.log(a + b) + math.log(2 * a / 3 + b) + math.log(a / 3 + b))
        + 2 * math.log(2 * r + 1)
    )
    xbar1 = (2 * r * r + 11 * r) / (r * r + 11 * r + 7)
    xbar2 = 11 * r / (11 * r + 5)
    xbar3 = 2 * r / (2 * r + 1)
    xbar2b = 26 * r / (26 * r + 12)
    xbar2c = 19 * r / (19 * r + 9)
    u = 11 - (xbar1 + 2 * xbar3) - (10 / 3) * (xbar2 + xbar2b + xbar2c)
    imat = (
        ((4 * r * r + 11 * r) / (r * r + 11 * r + 7) - xbar1**2)
        + 2 * (xbar3 - xbar3**2)
        + (10 / 3) * ((xbar2 - xbar2**2) + (xbar2b - xbar2b**2) + (xbar2c - xbar2c**2))
    )
    return {"loglik": loglik, "u": u, "imat": imat}


def test_doweight_breslow_weights_equal_replicated_rows():
    """doweight.R: weighted Breslow equals the data with each row repeated ``wt`` times; baseline hazard as texp()."""
    w1 = _testw1()
    w2 = w1.loc[w1.index.repeat(w1["wt"].astype(int))].drop(columns="wt").reset_index(drop=True)
    # texp(0) as doweight.R verifies it: 1/19, 103/152, 613/456 at the death times
    assert _rel(_doweight_breslow_cumhaz(0.0), [1 / 19, 103 / 152, 613 / 456]) < 1e-15
    for max_iter in (0, 20):
        fit = cox(w1, "time", "status", ["x"], ties="breslow", weights="wt", max_iter=max_iter)
        rep = cox(w2, "time", "status", ["x"], ties="breslow", max_iter=max_iter)
        assert not fit.robust  # integer weights are frequency weights (coxph's rule)
        assert _rel(fit.summary["coef"], rep.summary["coef"]) < 1e-10
        assert _rel(fit.vcov.to_numpy(), rep.vcov.to_numpy()) < 1e-10
        assert _rel(fit.loglik, rep.loglik) < 1e-12
        base = baseline_hazard(fit).set_index("time")["cumhaz"]
        beta = float(fit.summary.loc["x", "coef"])
        assert _rel(base.loc[[1.0, 2.0, 4.0]], _doweight_breslow_cumhaz(beta)) < 1e-10
        # score residuals of a weighted row equal those of each of its copies (doweight.R's indx)
        first_copy = np.concatenate([[0], np.cumsum(w1["wt"].astype(int))[:-1]])
        assert _rel(score_residuals(fit)["x"], score_residuals(rep)["x"].to_numpy()[first_copy]) < 1e-10
        assert _rel(score_residuals(fit, weighted=True)["x"] / score_residuals(fit)["x"], w1["wt"]) < 1e-12


def test_doweight_efron_weighted_loglik_score_information():
    """doweight.R lfun/ufun/ifun: weighted Efron (each tied death carries the mean weight) at 0 and at the fit."""
    w1 = _testw1()
    fit0 = cox(w1, "time", "status", ["x"], weights="wt", max_iter=0)
    t0 = _doweight_efron(0.0)
    assert _rel(fit0.loglik[0], t0["loglik"]) < 1e-12
    assert _rel(fit0.vcov.loc["x", "x"], 1 / t0["imat"]) < 1e-12
    beta = optimize.brentq(lambda b: _doweight_efron(b)["u"], -3, 3, xtol=1e-15)
    fit = cox(w1, "time", "status", ["x"], weights="wt", eps=EXACT, max_iter=50)
    truth = _doweight_efron(beta)
    assert _rel(fit.summary.loc["x", "coef"], beta) < 1e-9
    assert _rel(fit.loglik[1], truth["loglik"]) < 1e-12
    assert _rel(fit.vcov.loc["x", "x"], 1 / truth["imat"]) < 1e-9


def test_doweight_robust_variance_with_weights():
    """doweight.R: a weight of 3 with cluster = id gives var = sum(dfbeta^2 W^2); 3 replicated ids give sum(dfbeta^2 W).

    dfbeta = (unweighted score residual) x (inverse information), as resid(fit, "dfbeta", weighted = FALSE).
    """
    test1 = pd.DataFrame(
        {
            "time": [9.0, 1, 1, 6, 6, 8],
            "status": [1, 1, 0, 1, 1, 0],
            "x": [0.0, 1, 1, 1, 0, 0],
            "wt": [3.0, 1, 1, 1, 1, 1],
            "id": [1, 3, 4, 5, 6, 7],
        }
    )
    testx = pd.DataFrame(
        {
            "time": [4.0, 4, 4, 1, 1, 2, 2, 3],
            "status": [1, 1, 1, 1, 0, 1, 1, 0],
            "x": [0.0, 0, 0, 1, 1, 1, 0, 0],
            "id": range(1, 9),
        }
    )
    fit1 = cox(test1, "time", "status", ["x"], ties="breslow", weights="wt", cluster="id")
    fit2 = cox(testx, "time", "status", ["x"], ties="breslow", cluster="id")
    assert fit1.robust and fit2.robust
    db1 = score_residuals(fit1)["x"].to_numpy() * fit1.naive_vcov.loc["x", "x"]
    db2 = score_residuals(fit2)["x"].to_numpy() * fit2.naive_vcov.loc["x", "x"]
    # testx is test1 in time order with the weight-3 row (time 9 -> 4) written out three times
    assert _rel(db1[[1, 2, 3, 4, 5, 0]], db2[[3, 4, 5, 6, 7, 0]]) < 1e-10
    w = test1["wt"].to_numpy()
    assert _rel(fit2.vcov.loc["x", "x"], np.sum(db1 * db1 * w)) < 1e-10
    assert _rel(fit1.vcov.loc["x", "x"], np.sum(db1 * db1 * w * w)) < 1e-10


# ---------------------------------------------------------------- zph.R: cox.zph is a score test


def _zph_score_test(u: np.ndarray, imat: np.ndarray, g: np.ndarray) -> float:
    """zph.R's check: the score test of adding ``x * g(t)``, from per-death scores and informations.

    At the MLE sum(u) = 0, so only the g-weighted score enters; the 2 x 2
    information is [[sum i, sum g i], [sum g i, sum g^2 i]].
    """
    u2 = np.array([u.sum(), (g * u).sum()])
    i2 = np.array([[imat.sum(), (g * imat).sum()], [(g * imat).sum(), (g * g * imat).sum()]])
    return float(u2 @ np.linalg.solve(i2, u2))


# cox.zph(transform = "km") uses g(t) = 1 - S(t-), S the Kaplan-Meier of test1: S = 1 before t = 1,
# 5/6 on [1, 6), 5/12 on [6, 9); the deaths are at 1, 6, 6, 9
_ZPH_G_KM = 1 - np.array([1, 5 / 6, 5 / 6, 5 / 12])


@pytest.mark.parametrize("entry", [False, True])
def test_zph_breslow_is_the_score_test(entry):
    """zph.R: Breslow on test1, r = (3 + sqrt(33))/2; per-death U and information as zph.R states them.

    zph.R checks the identity and log transforms; ours is cox.zph's default
    "km" transform, the same formula with g = 1 - S(t-). With a dummy entry
    time of 0 (zph.R's ``fit1b``) the result is the same.
    """
    r = (3 + math.sqrt(33)) / 2
    u = np.array([1 / (r + 1), 3 / (r + 3), -r / (r + 3), 0])
    imat = np.array([r / (r + 1) ** 2, 3 * r / (r + 3) ** 2, 3 * r / (r + 3) ** 2, 0])
    data = _test1().assign(entry=0.0)
    fit = cox(data, "time", "status", ["x"], ties="breslow", entry="entry" if entry else None, eps=EXACT, max_iter=50)
    assert _rel(fit.summary.loc["x", "coef"], math.log(r)) < 1e-10
    table = ph_test(fit).table
    expected = _zph_score_test(u, imat, _ZPH_G_KM)
    assert _rel(table.loc["x", "chisq"], expected) < 1e-9
    assert _rel(table.loc["GLOBAL", "chisq"], expected) < 1e-9


def test_zph_efron_and_artificial_strata():
    """zph.R: Efron on test1 (the trigonometric root); test1 twice as two strata doubles the statistic."""
    r = 2 * math.sqrt(23 / 3) * math.cos(math.acos((45 / 23) * math.sqrt(3 / 23)) / 3)
    u = np.array([1 / (r + 1), 3 / (r + 3), -r / (r + 5), 0])
    imat = np.array([r / (r + 1) ** 2, 3 * r / (r + 3) ** 2, 5 * r / (r + 5) ** 2, 0])
    expected = _zph_score_test(u, imat, _ZPH_G_KM)
    fit = cox(_test1(), "time", "status", ["x"], ties="efron", eps=EXACT, max_iter=50)
    assert _rel(fit.summary.loc["x", "coef"], math.log(r)) < 1e-10
    assert _rel(ph_test(fit).table.loc["x", "chisq"], expected) < 1e-9
    doubled = pd.concat([_test1().assign(group="a"), _test1().assign(group="b")], ignore_index=True)
    fit2 = cox(doubled, "time", "status", ["x"], ties="efron", strata="group", eps=EXACT, max_iter=50)
    assert _rel(ph_test(fit2).table.loc["x", "chisq"], 2 * expected) < 1e-9


# ---------------------------------------------------------------- Part 2: live R (marker r)


def _r_coxph(data: pd.DataFrame, formula: str, extra: str = "") -> dict:
    """coxph on ``data`` in R: coef, var, loglik, score test, iterations (full precision)."""
    from tests.rlive import run_r

    code = f"""
suppressPackageStartupMessages(library(survival))
fit <- coxph({formula}, data = d{extra})
result <- list(coef = unname(coef(fit)), var = unname(as.vector(vcov(fit))), loglik = unname(fit$loglik),
               score = unname(fit$score), wald = unname(fit$wald.test), iter = fit$iter,
               concordance = unname(fit$concordance[c("concordance", "std")]))
"""
    return run_r(code, {"d": data})  # type: ignore[return-value]


def _assert_cox_equal(ours, r: dict, what: str, coef_tol: float = 1e-7, se_tol: float = 1e-6) -> None:
    assert _rel(ours.summary["coef"], r["coef"]) < coef_tol, what
    assert _rel(ours.vcov.to_numpy().ravel(order="F"), r["var"]) < se_tol, what
    assert _rel(ours.loglik, r["loglik"]) < 1e-10, what
    assert _rel(ours.score.statistic, r["score"]) < se_tol, what
    # concordance.R's territory: the C index and its jackknife se (coxph's fit$concordance)
    assert _rel([ours.concordance, ours.concordance_se], r["concordance"]) < 1e-8, what


@functools.cache
def _r_dataset_cached(expr: str) -> pd.DataFrame:
    from tests.rlive import run_r

    cols = run_r(f"suppressPackageStartupMessages(library(survival))\nresult <- as.list({expr})")
    return pd.DataFrame(cols)


def _r_dataset(expr: str) -> pd.DataFrame:
    """A data set shipped with R survival, as R holds it (``expr`` evaluated in R; fetched once per session)."""
    return _r_dataset_cached(expr).copy()


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_ovarian_as_in_r_tests(ties):
    """ovarian.R: coxph on the ovarian data (age, ecog.ps, rx), with and without strata(rx)."""
    data = _r_dataset("ovarian")
    ours = cox(data, "futime", "fustat", ["age", "ecog.ps", "rx"], ties=ties)
    _assert_cox_equal(ours, _r_coxph(data, "Surv(futime, fustat) ~ age + ecog.ps + rx", f", ties = '{ties}'"), ties)
    ours = cox(data, "futime", "fustat", ["age", "ecog.ps"], ties=ties, strata="rx")
    r = _r_coxph(data, "Surv(futime, fustat) ~ age + ecog.ps + strata(rx)", f", ties = '{ties}'")
    _assert_cox_equal(ours, r, ties + " strata")


@pytest.mark.r
def test_heart_counting_process_with_cluster():
    """The Stanford heart data (jasa1, the ``heart`` data of R's counting-process tests): (start, stop], cluster=id."""
    data = _r_dataset("heart")
    data["transplant"] = data["transplant"].astype(float)  # a factor (0, 1) in R
    data["age_transplant"] = data["age"] * data["transplant"]
    covs = ["age", "surgery", "transplant", "age_transplant"]
    for ties in ("efron", "breslow"):
        ours = cox(data, "stop", "event", covs, entry="start", ties=ties, cluster="id")
        r = _r_coxph(
            data,
            "Surv(start, stop, event) ~ age + surgery + transplant + age_transplant",
            f", ties = '{ties}', cluster = id",
        )
        _assert_cox_equal(ours, r, ties)
        assert _rel(ours.wald.statistic, r["wald"]) < 1e-6, ties


# hostile-but-valid data sets that R survival fits; each is compared with coxph live
_EDGE = {
    # one event, covariate value in the middle: a finite maximum
    "single_event": pd.DataFrame(
        {"time": [1.0, 2, 3, 4, 5, 6], "status": [0, 0, 1, 0, 0, 0], "x": [0.3, 1.2, 0.5, 0.1, 0.9, 0.7]}
    ),
    # every death at one time: one Efron step with d = n
    "all_one_time": pd.DataFrame(
        {
            "time": [5.0] * 6,
            "status": [1, 1, 1, 1, 0, 1],
            "x": [0.0, 1, 0, 1, 0, 1],
            "z": [0.3, 1.2, 0.5, 0.1, 0.9, 0.7],
        }
    ),
    # events at time 0, tied with censorings at 0
    "time_zero": pd.DataFrame(
        {
            "time": [0.0, 0, 0, 1, 2, 3, 4, 5, 6, 6],
            "status": [1, 0, 1, 1, 1, 0, 1, 0, 1, 1],
            "x": [1.0, 0, 0, 1, 0, 1, 0, 1, 0, 1],
        }
    ),
}


@pytest.mark.r
@pytest.mark.parametrize("name", sorted(_EDGE))
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_edge_data_sets_match_coxph(name, ties):
    data = _EDGE[name]
    covs = [c for c in data.columns if c not in ("time", "status")]
    ours = cox(data, "time", "status", covs, ties=ties)
    r = _r_coxph(data, "Surv(time, status) ~ " + " + ".join(covs), f", ties = '{ties}'")
    _assert_cox_equal(ours, r, name)


@pytest.mark.r
@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_huge_and_tiny_time_scales_match_coxph_and_survfit(scale):
    """Times multiplied by 1e-8 or 1e8: cox and kaplan_meier equal coxph and survfit, timefix on and off.

    Found here: coxph's default ``timefix`` (aeqSurv) merges times closer than
    about sqrt(machine eps) in *absolute* terms, so at a 1e-8 scale whole days
    (1e-8 apart) collapse into fewer tied times and coxph's coefficient
    changes; ours changes the same way (same ties, same number). With
    ``timefix=False`` the fit does not depend on the scale.
    """
    from tests.rlive import run_r

    rng = np.random.default_rng(20261205)
    n = 60
    x = rng.normal(size=n)
    days = np.round(rng.exponential(np.exp(-0.5 * x)) * 20) + 1  # whole days: many ties
    status = (rng.random(n) < 0.7).astype(int)
    data = pd.DataFrame({"time": days * scale, "status": status, "x": x})
    unscaled = cox(data.assign(time=days), "time", "status", ["x"], timefix=False)
    exact = cox(data, "time", "status", ["x"], timefix=False)
    assert _rel(exact.summary["coef"], unscaled.summary["coef"]) < 1e-10
    ours = cox(data, "time", "status", ["x"])
    r = run_r(
        """suppressPackageStartupMessages(library(survival))
fit <- coxph(Surv(time, status) ~ x, d)
fit0 <- coxph(Surv(time, status) ~ x, d, control = coxph.control(timefix = FALSE))
km <- summary(survfit(Surv(time, status) ~ 1, d), censored = TRUE)
result <- list(coef = unname(coef(fit)), coef0 = unname(coef(fit0)), var = unname(as.vector(vcov(fit))),
               km_time = km$time, km_surv = km$surv, km_se = km$std.err)""",
        {"d": data},
    )
    assert _rel(ours.summary["coef"], r["coef"]) < 1e-7
    assert _rel(ours.vcov.to_numpy().ravel(), r["var"]) < 1e-6
    assert _rel(exact.summary["coef"], r["coef0"]) < 1e-7
    km = kaplan_meier(data, "time", "status").table
    assert len(km) == len(r["km_time"])
    assert _rel(km["survival"], r["km_surv"]) < 1e-10
    assert _rel(km["std_err"], r["km_se"]) < 1e-8


@pytest.mark.r
def test_monotone_likelihood_warns_like_coxph():
    """All x = 1 subjects die before every x = 0 subject: R warns "coefficient may be infinite"; so do we.

    The coefficient is where coxph stops (a large finite number), and the
    iteration count is coxph's.
    """
    data = pd.DataFrame(
        {"time": [1.0, 2, 3, 4, 5, 6, 7, 8], "status": [1, 1, 1, 1, 1, 0, 1, 1], "x": [1.0, 1, 1, 1, 0, 0, 0, 0]}
    )
    with pytest.warns(ModelWarning, match="coefficient may be infinite"):
        ours = cox(data, "time", "status", ["x"])
    r = _r_coxph(data, "Surv(time, status) ~ x")
    assert ours.summary.loc["x", "coef"] > 10
    assert abs(ours.summary.loc["x", "coef"] - r["coef"]) < 1e-6 * abs(r["coef"])
    assert ours.iterations == r["iter"]


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_doweight_counting_process_weights_match_coxph(ties):
    """doweight.R's ``testw3``: weighted (begin, time] rows of 9 subjects; compared with coxph live."""
    data = pd.DataFrame(
        {
            "id": [1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 7, 8, 8, 9],
            "begin": [0.0, 5, 0, 0, 10, 15, 0, 0, 14, 0, 0, 0, 23, 0],
            "time": [5.0, 10, 10, 10, 15, 20, 20, 14, 20, 20, 30, 23, 40, 50],
            "status": [0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0],
            "x": [2.0, 2, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0],
            "wt": [1.0, 1, 2, 3, 3, 3, 4, 3, 3, 2, 1, 2, 2, 1],
        }
    )
    ours = cox(data, "time", "status", ["x"], entry="begin", ties=ties, weights="wt")
    _assert_cox_equal(ours, _r_coxph(data, "Surv(begin, time, status) ~ x", f", weights = wt, ties = '{ties}'"), ties)
    ours = cox(data, "time", "status", ["x"], entry="begin", ties=ties, weights="wt", cluster="id")
    r = _r_coxph(data, "Surv(begin, time, status) ~ x", f", weights = wt, ties = '{ties}', cluster = id")
    _assert_cox_equal(ours, r, ties + " cluster")


def _r_survdiff(data: pd.DataFrame, formula: str) -> dict:
    from tests.rlive import run_r

    code = f"""suppressPackageStartupMessages(library(survival))
fit <- survdiff({formula}, data = d)
e <- if (is.matrix(fit$exp)) rowSums(fit$exp) else fit$exp
# print.survdiff's degrees of freedom: groups with a positive expected count, minus one
result <- list(chisq = fit$chisq, df = sum(e > 0) - 1, exp = as.vector(e))"""
    return run_r(code, {"d": data})  # type: ignore[return-value]


@pytest.mark.r
def test_difftest_dummy_group_of_early_censorings():
    """difftest.R: aml plus a third group censored before any death; survdiff gives the same chi-square.

    The dummy group's expected count is 0, so it drops out of the degrees of
    freedom (print.survdiff's ``sum(exp > 0) - 1``).
    """
    aml = _r_dataset("aml")
    dummy = pd.DataFrame({"time": [1.0, 2, 2, 3, 3, 3, 4], "status": [0] * 7, "x": ["Dummy"] * 7})
    aml3 = pd.concat([aml, dummy], ignore_index=True)
    two = logrank(aml, "time", "status", "x")
    three = logrank(aml3, "time", "status", "x")
    r = _r_survdiff(aml3, "Surv(time, status) ~ x")
    assert _rel(three.statistic, r["chisq"]) < 1e-10
    assert _rel(two.statistic, three.statistic) < 1e-12
    assert two.df == three.df == r["df"] == 1
    table = three.table.set_index("group")
    assert table.loc["Dummy", "expected"] == 0.0 and table.loc["Dummy", "observed"] == 0.0


@pytest.mark.r
def test_difftest_stratified_logrank_on_lung():
    """difftest.R: ``survdiff(Surv(time, status) ~ pat.karno + strata(inst), lung)`` (NA rows removed first)."""
    lung = _r_dataset("lung")[["time", "status", "pat.karno", "inst"]].dropna().reset_index(drop=True)
    lung["status"] = lung["status"].astype(int) - 1
    lung["pat.karno"] = lung["pat.karno"].astype(int).astype(str)
    ours = logrank(lung, "time", "status", "pat.karno", strata="inst")
    r = _r_survdiff(lung, "Surv(time, status) ~ pat.karno + strata(inst)")
    assert _rel(ours.statistic, r["chisq"]) < 1e-8
    assert ours.df == r["df"]
    # our levels are strings ("100" sorts before "30"); R's are numbers: compare per level
    by_level = ours.table.assign(level=ours.table["group"].astype(int)).sort_values("level")
    assert _rel(by_level["expected"], r["exp"]) < 1e-8


@pytest.mark.r
def test_zph_pbcseq_counting_process_matches_cox_zph():
    """zph.R's ``pfit``: pbcseq built with tmerge into (tstart, tstop] rows, 5 covariates, Efron; cox.zph(km)."""
    from tests.rlive import run_r

    r = run_r(
        """suppressPackageStartupMessages(library(survival))
p1 <- pbcseq[!duplicated(pbcseq$id), 1:6]
pdata <- tmerge(p1[, c("id", "trt", "age", "sex")], p1, id = id, death = event(futime, status == 2))
pdata <- tmerge(pdata, pbcseq, id = id, bili = tdc(day, bili), edema = tdc(day, edema),
                albumin = tdc(day, albumin), protime = tdc(day, protime))
pdata$lbili <- log(pdata$bili); pdata$lprotime <- log(pdata$protime)
pfit <- coxph(Surv(tstart, tstop, death) ~ lbili + albumin + edema + age + lprotime, data = pdata)
zp <- cox.zph(pfit)
result <- list(data = pdata[, c("tstart", "tstop", "death", "lbili", "albumin", "edema", "age", "lprotime")],
               coef = unname(coef(pfit)), var = as.vector(vcov(pfit)), chisq = unname(zp$table[, "chisq"]))"""
    )
    data = pd.DataFrame(r["data"])
    covs = ["lbili", "albumin", "edema", "age", "lprotime"]
    fit = cox(data, "tstop", "death", covs, entry="tstart")
    assert _rel(fit.summary["coef"], r["coef"]) < 1e-7
    assert _rel(fit.vcov.to_numpy().ravel(), r["var"]) < 1e-6
    assert _rel(ph_test(fit).table["chisq"], r["chisq"]) < 1e-6


# ---------------------------------------------------------------- Kaplan-Meier (survfit)


def test_book1_kaplan_meier_by_hand():
    """test1 of book1.R: S = 5/6 after t = 1 (1 death of 6), x 2/4 after t = 6, 0 after t = 9.

    Greenwood: var(log S) = sum d / (n (n - d)), so 1/30 at t = 1 and 1/30 + 2/8 at t = 6.
    """
    km = kaplan_meier(_test1(), "time", "status").table.set_index("time")
    assert km["n_risk"].tolist() == [6, 4, 2, 1]
    assert _rel(km["survival"].iloc[:3], [5 / 6, 5 / 12, 5 / 12]) < 1e-15
    assert km["survival"].iloc[3] == 0.0
    se = np.array([5 / 6 * math.sqrt(1 / 30), 5 / 12 * math.sqrt(1 / 30 + 1 / 4)])
    assert _rel(km["std_err"].iloc[:2], se) < 1e-14


_KM_EDGE = {
    # events and censorings at time 0, last subject dies (S = 0)
    "time_zero": pd.DataFrame(
        {"time": [0.0, 0, 0, 1, 2, 3, 4, 5, 6, 6], "status": [1, 0, 1, 1, 1, 0, 1, 0, 1, 0], "w": [1.0] * 10}
    ),
    # zero case weights, also on a death tied with a weighted death (survfit allows weights >= 0)
    "zero_weights": pd.DataFrame(
        {
            "time": [1.0, 1, 2, 2, 3, 4, 4, 5, 6, 7],
            "status": [1, 1, 1, 0, 1, 1, 1, 0, 1, 0],
            "w": [0.0, 2, 1, 0, 3, 1, 0, 2, 1, 1],
        }
    ),
    # a single event among censorings
    "single_event": pd.DataFrame({"time": [1.0, 2, 3, 4, 5, 6], "status": [0, 0, 1, 0, 0, 0], "w": [1.0] * 6}),
    # non-integer weights: survfit switches to the robust (infinitesimal jackknife) variance
    "fractional_weights": pd.DataFrame(
        {
            "time": [1.0, 1, 2, 2, 3, 4, 4, 5, 6, 7],
            "status": [1, 1, 1, 0, 1, 1, 1, 0, 1, 0],
            "w": [0.5, 2, 1.5, 1, 3, 1, 0.25, 2, 1, 1],
        }
    ),
}


@pytest.mark.r
@pytest.mark.parametrize("name", sorted(_KM_EDGE))
def test_kaplan_meier_edge_data_sets_match_survfit(name):
    from tests.rlive import run_r

    data = _KM_EDGE[name]
    r = run_r(
        """suppressPackageStartupMessages(library(survival))
s <- summary(survfit(Surv(time, status) ~ 1, d, weights = w), censored = TRUE)
result <- list(time = s$time, n_risk = s$n.risk, n_event = s$n.event, surv = s$surv, se = s$std.err,
               lower = s$lower, upper = s$upper)""",
        {"d": data},
    )
    km = kaplan_meier(data, "time", "status", weights="w").table
    assert km["time"].tolist() == r["time"]
    assert _rel(km["n_risk"], r["n_risk"]) < 1e-12
    assert _rel(km["n_event"], r["n_event"]) < 1e-12
    assert _rel(km["survival"], r["surv"]) < 1e-10
    finite = np.isfinite(km["std_err"].to_numpy())
    r_se = np.array([np.nan if v is None else v for v in r["se"]], dtype=float)
    assert np.array_equal(finite, np.isfinite(r_se)), (km["std_err"].tolist(), r["se"])
    assert _rel(km["std_err"][finite], r_se[finite]) < 1e-8


# ---------------------------------------------------------------- what R fits and we refuse (clear InputError)

_BASE = pd.DataFrame(
    {
        "start": [0.0, 0, 1, 0, 2, 0, 0, 1],
        "time": [1.0, 2, 3, 4, 5, 6, 7, 8],
        "status": [1, 0, 1, 1, 0, 1, 1, 0],
        "x": [0.5, 1.5, 0.2, 0.9, 1.1, 0.3, 0.8, 1.7],
        "w": [1.0, 2, 1, 0, 1, 1, 3, 1],
    }
)


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        # coxph(ties = "exact") is the discrete (conditional logistic) likelihood: not implemented
        ({}, {"ties": "discrete"}, r"ties='discrete' is not supported"),
        # coxph accepts zero weights (the row drops out); we make the caller drop it
        ({}, {"weights": "w"}, r"weights column 'w' has 1 value\(s\) <= 0 out of 8 rows"),
        # zero-length (start, stop]: coxph stops with "Stop time must be > start time"
        ({"start": [0.0, 0, 3, 0, 2, 0, 0, 1]}, {"entry": "start"}, r"1 of 8 rows have entry column 'start' >= time"),
        # survival allows negative times; ours are days from the index time
        ({"time": [-1.0, 2, 3, 4, 5, 6, 7, 8]}, {}, r"1 negative time\(s\) out of 8 rows \(smallest -1\)"),
        # all censored: coxph returns a fit with coefficient 0 and NA tests; we say there is nothing to estimate
        ({"status": [0] * 8}, {}, r"column 'status' has no events"),
        ({"x": [0.5, np.inf, 0.2, 0.9, 1.1, 0.3, 0.8, 1.7]}, {}, r"'x'"),
        ({"x": [0.5, np.nan, 0.2, 0.9, 1.1, 0.3, 0.8, 1.7]}, {}, r"'x'"),
        ({"time": [1.0, np.inf, 3, 4, 5, 6, 7, 8]}, {}, r"'time'"),
        # a constant covariate: coxph reports NA for it
        ({"x": [1.0] * 8}, {}, r"covariate column 'x' is constant"),
        # constant within each stratum (but not overall): coxph reports NA too
        (
            {"s": [1, 1, 1, 1, 2, 2, 2, 2], "x": [1.0] * 4 + [2.0] * 4},
            {"strata": "s"},
            r"'x' is constant within every stratum",
        ),
    ],
)
def test_cox_refuses_what_it_does_not_fit(change, kwargs, message):
    data = _BASE.assign(**change)
    with pytest.raises(InputError, match=message):
        cox(data, "time", "status", ["x"], **kwargs)


def test_predict_survival_of_a_stratified_fit_is_refused():
    """coxsurv*.R predict per stratum (``survfit(fit, newdata)``); ours has no stratum argument yet: refused."""
    fit = cox(_BASE.assign(s=[1, 2] * 4), "time", "status", ["x"], strata="s")
    with pytest.raises(InputError, match="the fit has strata"):
        predict_survival(fit, pd.DataFrame({"x": [0.0]}))


@pytest.mark.parametrize("fn", ["kaplan_meier", "logrank"])
def test_descriptive_all_censored_is_refused(fn):
    """survfit gives S = 1 throughout and survdiff a 0 statistic for all-censored data; we raise instead."""
    data = _BASE.assign(status=0, g=["a", "b"] * 4)
    with pytest.raises(InputError, match="has no events"):
        if fn == "kaplan_meier":
            kaplan_meier(data, "time", "status")
        else:
            logrank(data, "time", "status", "g")


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_baseline_hazard_per_stratum_matches_basehaz(ties):
    """coxsurv.R territory: ``basehaz(fit, centered = FALSE)`` of a stratified (start, stop] fit (heart, by surgery)."""
    from tests.rlive import run_r

    data = _r_dataset("heart")
    data["transplant"] = data["transplant"].astype(float)
    fit = cox(data, "stop", "event", ["age", "transplant"], entry="start", ties=ties, strata="surgery")
    r = run_r(
        f"""suppressPackageStartupMessages(library(survival))
fit <- coxph(Surv(start, stop, event) ~ age + transplant + strata(surgery), d, ties = '{ties}')
b <- basehaz(fit, centered = FALSE)
result <- list(time = b$time, hazard = b$hazard, strata = as.character(b$strata))""",
        {"d": data},
    )
    ours = baseline_hazard(fit)
    assert len(ours) == len(r["time"])
    assert np.array_equal(ours["time"], r["time"])
    assert [str(s).split("=")[-1] for s in ours["strata"]] == [s.split("=")[-1] for s in r["strata"]]
    assert _rel(ours["cumhaz"], r["hazard"]) < 1e-7


def _km_groups_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = 40
    frac = pd.DataFrame(
        {
            "time": np.round(rng.exponential(5, n)),
            "status": (rng.random(n) < 0.7).astype(int),
            "g": rng.choice(["a", "b"], n),
            "w": rng.uniform(0.2, 3, n),
        }
    )
    return {
        # group a's curve sits exactly at 0.5 on [2, 3): survfit's median is the midpoint 2.5
        "exact_half": pd.DataFrame(
            {
                "time": [1.0, 2, 3, 4, 1, 2, 3, 4, 5, 6],
                "status": [1, 1, 1, 1, 1, 1, 0, 1, 1, 0],
                "g": ["a"] * 4 + ["b"] * 6,
                "w": [1.0] * 10,
            }
        ),
        "fractional_weights": frac,
        "integer_weights": frac.assign(w=rng.integers(1, 4, n).astype(float)),
    }


@pytest.mark.r
@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
@pytest.mark.parametrize("name", sorted(_km_groups_data()))
def test_kaplan_meier_groups_medians_and_bands_match_survfit(name, conf_type):
    """survfit by group with case weights and each conf.type: table and print(survfit) medians with their limits."""
    from tests.rlive import run_r

    data = _km_groups_data()[name]
    r = run_r(
        f"""suppressPackageStartupMessages(library(survival))
f <- survfit(Surv(time, status) ~ g, d, weights = w, conf.type = '{conf_type}')
s <- summary(f, censored = TRUE)
tab <- summary(f)$table
result <- list(surv = s$surv, se = s$std.err, lower = s$lower, upper = s$upper, time = s$time,
               median = unname(tab[, "median"]), lcl = unname(tab[, "0.95LCL"]), ucl = unname(tab[, "0.95UCL"]),
               n = unname(tab[, "n.max"]), events = unname(tab[, "events"]))""",
        {"d": data},
    )
    km = kaplan_meier(data, "time", "status", group="g", weights="w", conf_type=conf_type)

    def as_float(values) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    for ours, theirs in [
        (km.table["time"], r["time"]),
        (km.table["survival"], r["surv"]),
        (km.table["std_err"], r["se"]),
        (km.table["lower"], r["lower"]),
        (km.table["upper"], r["upper"]),
        (km.median["median"], r["median"]),
        (km.median["lower"], r["lcl"]),
        (km.median["upper"], r["ucl"]),
        (km.median["n"], r["n"]),
        (km.median["events"], r["events"]),
    ]:
        np.testing.assert_allclose(np.asarray(ours, dtype=float), as_float(theirs), rtol=1e-9, atol=1e-14)


def _near_collinear(noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(9)
    n = 100
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "time": rng.exponential(np.exp(-0.5 * x)),
            "status": (rng.random(n) < 0.8).astype(int),
            "x": x,
            "x2": x + noise * rng.normal(size=n),
        }
    )


@pytest.mark.r
@pytest.mark.parametrize("noise", [1e-4, 1e-8])
def test_near_collinear_covariates_fit_where_coxph_fits_and_are_refused_where_it_gives_na(noise):
    """x2 = x + noise: coxph fits (huge opposite coefficients) at 1e-4 and reports NA for x2 at 1e-8 (toler.chol)."""
    from tests.rlive import run_r

    data = _near_collinear(noise)
    r = run_r(
        "suppressPackageStartupMessages(library(survival))\nf <- coxph(Surv(time, status) ~ x + x2, d)\n"
        "result <- list(coef = unname(coef(f)))",
        {"d": data},
    )
    assert isinstance(r, dict)
    if r["coef"][1] is None:
        with pytest.raises(InputError, match=r"'x2' is collinear with \['x'\]"):
            cox(data, "time", "status", ["x", "x2"])
        assert noise == 1e-8
    else:
        assert noise == 1e-4
        ours = cox(data, "time", "status", ["x", "x2"])
        assert abs(ours.summary.loc["x", "coef"]) > 100  # the near-collinear pair really is ill-conditioned
        assert _rel(ours.summary["coef"], r["coef"]) < 1e-7


@pytest.mark.r
def test_factor_level_without_events_diverges_like_coxph():
    """A level of a categorical covariate with no events: coxph warns, stops at the same iterate; so do we."""
    rng = np.random.default_rng(9)
    n = 100
    x = rng.normal(size=n)
    g = np.where(np.arange(n) < 5, "z", np.where(x > 0, "a", "b"))
    data = pd.DataFrame(
        {
            "time": rng.exponential(np.exp(-0.5 * x)),
            "status": np.where(g == "z", 0, (rng.random(n) < 0.8).astype(int)),
            "g": g,
            "x": x,
        }
    )
    with pytest.warns(ModelWarning, match=r"\['gz'\]; coefficient may be infinite"):
        ours = cox(data, "time", "status", ["g", "x"])
    r = _r_coxph(data, "Surv(time, status) ~ g + x")
    assert ours.iterations == r["iter"]
    assert _rel(ours.summary["coef"], r["coef"]) < 1e-7


@pytest.mark.r
@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("max_iter", [1, 2, 20])
def test_zph_with_every_option_and_early_stops_matches_cox_zph(ties, max_iter):
    """cox.zph on (entry, time] + weights + strata + cluster + a 3-level factor, after 1, 2 and 20 iterations.

    (cox.zph itself stops with "system is exactly singular" on an iter.max = 0
    fit of these data, so 0 is not compared.)
    """
    from tests.rlive import run_r

    rng = np.random.default_rng(4)
    n = 120
    x = rng.normal(size=n)
    entry = np.round(rng.uniform(0, 3, n))
    data = pd.DataFrame(
        {
            "entry": entry,
            "time": entry + np.round(rng.exponential(np.exp(-0.4 * x)) * 10) + 1,
            "status": (rng.random(n) < 0.7).astype(int),
            "x": x,
            "g": rng.choice(["a", "b", "c"], n),
            "s": rng.integers(0, 2, n),
            "w": rng.uniform(0.5, 2, n),
            "id": np.arange(n) // 2,
        }
    )
    r = run_r(
        f"""suppressPackageStartupMessages(library(survival))
f <- suppressWarnings(coxph(Surv(entry, time, status) ~ x + g + strata(s), d, weights = w, cluster = id,
                            ties = '{ties}', iter.max = {max_iter}))
z <- cox.zph(f)
result <- list(chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]), coef = unname(coef(f)))""",
        {"d": data},
    )
    assert isinstance(r, dict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)  # 1 or 2 iterations: not converged, as in R
        fit = cox(
            data,
            "time",
            "status",
            ["x", "g"],
            entry="entry",
            strata="s",
            weights="w",
            cluster="id",
            ties=ties,
            max_iter=max_iter,
        )
    assert _rel(fit.summary["coef"], r["coef"]) < 1e-7
    table = ph_test(fit).table
    assert table["df"].tolist() == r["df"]  # x, g (2 df), GLOBAL
    assert _rel(table["chisq"], r["chisq"]) < 1e-6


@pytest.mark.r
def test_kaplan_meier_group_without_events_matches_survfit():
    """One group has no events at all: survfit gives S = 1 with se 0 and an NA median; so do we."""
    from tests.rlive import run_r

    data = pd.DataFrame(
        {"time": [1.0, 2, 3, 4, 5, 1, 2, 3, 4], "status": [1, 0, 1, 1, 0, 0, 0, 0, 0], "g": ["a"] * 5 + ["b"] * 4}
    )
    r = run_r(
        """suppressPackageStartupMessages(library(survival))
f <- survfit(Surv(time, status) ~ g, d)
s <- summary(f, censored = TRUE)
result <- list(surv = s$surv, se = s$std.err, lower = s$lower, upper = s$upper,
               median = unname(summary(f)$table[, "median"]))""",
        {"d": data},
    )
    assert isinstance(r, dict)
    km = kaplan_meier(data, "time", "status", group="g")
    for column, key in [("survival", "surv"), ("std_err", "se"), ("lower", "lower"), ("upper", "upper")]:
        np.testing.assert_allclose(km.table[column], r[key], rtol=1e-12)
    assert km.median["median"].iloc[0] == r["median"][0] and r["median"][1] is None
    assert np.isnan(km.median["median"].iloc[1])
