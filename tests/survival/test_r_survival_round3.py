"""R survival's tests after survfit1.R (round 3): zph.R's transforms, testnull.R, survtest.R's fh2 / null-Cox
identity and survfit's ``error = "tsiatis"``, and basehaz of an offset fit.

Part 1 (no R): zph.R's hand-calculated score tests (Therneau & Grambsch's test1 data, Breslow and Efron, with
``transform = "identity"``, ``"log"`` and ``"rank"``), re-derived in NumPy from the per-death score and
information that zph.R states as functions of ``r = exp(beta)``; survtest.R's identity between the
Fleming-Harrington curve of ``(start, stop]`` data and the survfit of the null Cox model.

Part 2 (marker ``r``): one R process computes ``cox.zph`` tables for every transform on lung (strata, weights,
Breslow / Efron), heart (``(start, stop]``) and veteran (a factor), testnull.R's bladder / bladder2 fits,
``survfit(error = "tsiatis")`` and ``basehaz`` of offset fits; compared at 1e-8 relative (the tolerance of the
other live ``cox.zph`` checks).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.survival import cox, cox_residuals, ph_test, survfit_cox, survival_curve
from retrocohort.survival.cox import baseline_hazard


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _test1() -> pd.DataFrame:
    # zph.R's test1 without the row whose status is NA (coxph drops it)
    return pd.DataFrame({"time": [9.0, 1, 1, 6, 6, 8], "status": [1, 1, 0, 1, 1, 0], "x": [0.0, 1, 1, 1, 0, 0]})


def _score_test(u: np.ndarray, imat: np.ndarray, g: np.ndarray) -> float:
    """zph.R: the score test of x * g(t) from the per-death score U and information imat."""
    u2 = np.array([u.sum(), (g * u).sum()])
    i2 = np.array([[imat.sum(), (g * imat).sum()], [(g * imat).sum(), (g * g * imat).sum()]])
    return float(u2 @ np.linalg.solve(i2, u2))


def _breslow_parts() -> tuple[float, np.ndarray, np.ndarray]:
    r = (3 + math.sqrt(33)) / 2  # the MLE of exp(beta)
    u = np.array([1 / (r + 1), 3 / (r + 3), -r / (r + 3), 0.0])
    imat = np.array([r / (r + 1) ** 2, 3 * r / (r + 3) ** 2, 3 * r / (r + 3) ** 2, 0.0])
    return r, u, imat


def _efron_parts() -> tuple[float, np.ndarray, np.ndarray]:
    phi = math.acos((45 / 23) * math.sqrt(3 / 23))
    r = 2 * math.sqrt(23 / 3) * math.cos(phi / 3)
    u = np.array([1 / (r + 1), 3 / (r + 3), -r / (r + 5), 0.0])
    imat = np.array([r / (r + 1) ** 2, 3 * r / (r + 3) ** 2, 5 * r / (r + 5) ** 2, 0.0])
    return r, u, imat


_DEATHS = np.array([1.0, 6, 6, 9])  # death times of test1, in order
_G = {
    "identity": _DEATHS,
    "log": np.log(_DEATHS),
    # cox.zph ranks every row's time (9, 1, 1, 6, 6, 8), censored rows too; ties share their mean rank
    "rank": np.array([1.5, 3.5, 3.5, 6.0]),
}


# ---------------------------------------------------------------- part 1: by hand


@pytest.mark.parametrize("transform", ["identity", "log", "rank"])
@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_zph_hand_score_test_per_transform(ties, transform):
    """zph.R fit1 / fit1b / fit4 / fit5: cox.zph(transform=) = the score test built from U and imat."""
    r, u, imat = _breslow_parts() if ties == "breslow" else _efron_parts()
    g = _G[transform] - _G[transform].mean()  # zph.R: centring makes no difference when sum(U) = 0
    expect = _score_test(u, imat, g)
    assert abs(_score_test(u, imat, _G[transform]) - expect) < 1e-12 * expect
    data = _test1()
    fit = cox(data, "time", "status", ["x"], ties=ties, eps=1e-12)
    assert abs(fit.coef.iloc[0] - math.log(r)) < 1e-9
    table = ph_test(fit, transform=transform).table
    assert abs(table.loc["x", "chisq"] - expect) < 1e-8 * expect
    assert table.loc["GLOBAL", "chisq"] == pytest.approx(table.loc["x", "chisq"], rel=1e-12)
    # the same with a dummy entry time 0 ((start, stop] path, zph.R's fit1b / fit5)
    fit_b = cox(data.assign(dummy=0.0), "time", "status", ["x"], entry="dummy", ties=ties, eps=1e-12)
    assert abs(ph_test(fit_b, transform=transform).table.loc["x", "chisq"] - expect) < 1e-8 * expect


@pytest.mark.parametrize("transform", ["log", "identity", "rank", "km"])
def test_zph_two_artificial_strata_double_the_statistic(transform):
    """zph.R fit6: test1 twice, as strata a / b: U and imat double, so does the statistic (g is pooled)."""
    data = _test1()
    one = ph_test(cox(data, "time", "status", ["x"], eps=1e-12), transform=transform).table.loc["x", "chisq"]
    two = pd.concat([data.assign(group="a"), data.assign(group="b")], ignore_index=True)
    fit = cox(two, "time", "status", ["x"], strata="group", eps=1e-12)
    # the pooled km transform changes when the data are doubled (it is a function of the pooled risk sets
    # only through S(t-), which is the same); the other transforms depend on the times alone
    assert ph_test(fit, transform=transform).table.loc["x", "chisq"] == pytest.approx(2 * one, rel=1e-8)


def test_zph_transforms_differ_and_are_reported():
    """Different g(t) give different statistics, and the result says which transform it used."""
    rng = np.random.default_rng(11)
    n = 120
    data = pd.DataFrame({"x": rng.normal(size=n), "z": rng.integers(0, 2, n).astype(float)})
    data["time"] = np.ceil(rng.exponential(20 / np.exp(0.5 * data["x"])))
    data["status"] = (rng.random(n) < 0.7).astype(int)
    fit = cox(data, "time", "status", ["x", "z"])
    stats = {t: ph_test(fit, transform=t) for t in ("km", "identity", "log", "rank")}
    assert len({round(s.table.loc["GLOBAL", "chisq"], 10) for s in stats.values()}) == 4
    assert all(s.transform == t for t, s in stats.items())


def test_zph_bad_transform_and_log_of_time_zero_are_refused():
    fit = cox(_test1(), "time", "status", ["x"])
    with pytest.raises(InputError, match="transform='spline' is not supported; use one of"):
        ph_test(fit, transform="spline")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="transform=<built-in function abs> is not supported"):
        ph_test(fit, transform=abs)  # type: ignore[arg-type]
    zero = pd.concat([_test1(), pd.DataFrame({"time": [0.0], "status": [1], "x": [1.0]})], ignore_index=True)
    fit0 = cox(zero, "time", "status", ["x"])
    with pytest.raises(InputError, match="transform='log' needs event times > 0; 1 event rows have time 0"):
        ph_test(fit0, transform="log")
    assert np.isfinite(ph_test(fit0, transform="rank").table["chisq"]).all()


def _test2() -> pd.DataFrame:
    """survtest.R's test2: (start, stop] rows."""
    return pd.DataFrame(
        {
            "start": [1.0, 2, 5, 2, 1, 7, 3, 4, 8, 8],
            "stop": [2.0, 3, 6, 7, 8, 9, 9, 9, 14, 17],
            "event": [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            "x": [1, 0, 0, 1, 0, 1, 1, 1, 0, 0],
        }
    )


def test_survtest_fh2_curve_equals_survfit_of_the_null_cox_model():
    """survtest.R fit1 / cfit1: type = 'fh2' on (start, stop] = survfit(coxph(~ 1)) (Efron): same n.risk,
    n.event, surv and std.err; the Efron hazard at two tied deaths in 5 is 1/5 + 1/4 (by hand)."""
    data = _test2()
    km = survival_curve(data, "stop", "event", entry="start", ctype="fleming-harrington", stype="exp").table
    cfit = survfit_cox(cox(data, "stop", "event", [], entry="start"), data.iloc[[0]])
    assert km["time"].tolist() == cfit["time"].tolist()
    for a, b in (("n_risk", "n_risk"), ("n_event", "n_event"), ("survival", "surv"), ("std_err", "std_err")):
        assert _rel(km[a], cfit[b]) < 1e-14, a
    d, n = km["n_event"].to_numpy(), km["n_risk"].to_numpy()
    by_hand = np.cumsum([1 / 2, 1 / 3, 1 / 5, 1 / 4, 1 / 4, 1 / 5 + 1 / 4, 0, 0])
    assert _rel(km["cumhaz"], by_hand) < 1e-14 and d.sum() == 7 and n[5] == 5


def test_survtest_fh2_by_group_from_start_time_equals_the_stratified_null_cox():
    """survtest.R fit2 / cfit2: fh2 by x with start.time = 3 equals the null Cox model stratified on x
    without row 1 (its only event, at 2, is before the start time), at the times with deaths."""
    data = _test2()
    km = survival_curve(
        data, "stop", "event", "x", entry="start", ctype="fleming-harrington", stype="exp", start_time=3
    ).table
    # a profile without the strata column gets a curve in every stratum (as survfit)
    cfit = survfit_cox(cox(data.iloc[1:], "stop", "event", [], entry="start", strata="x"), data.iloc[[1]][["stop"]])
    for level in (0, 1):
        k = km[(km["group"] == level) & (km["n_event"] > 0)]
        c = cfit[(cfit["strata"] == level) & (cfit["n_event"] > 0)]
        assert len(k) == len(c) > 0
        assert k["time"].tolist() == c["time"].tolist()
        assert _rel(k["n_risk"], c["n_risk"]) < 1e-14
        assert _rel(k["survival"], c["surv"]) < 1e-14


def test_start_time_after_a_group_died_out_restarts_the_product_limit():
    """survtest.R's fit2 data without type='fh2': group x = 1's only subject at risk at time 2 dies, so
    S(2) = 0; survfit(start.time = 3) still gives 2/3 and 2/9 at 7 and 9 (R: 0.667, 0.222), not 0 / 0."""
    tab = survival_curve(_test2(), "stop", "event", "x", entry="start", start_time=3).table
    one = tab[tab["group"] == 1]
    assert one["time"].tolist() == [7.0, 9.0] and one["n_risk"].tolist() == [3.0, 3.0]
    assert _rel(one["survival"], [2 / 3, 2 / 9]) < 1e-14
    assert _rel(one["std_err"], np.sqrt(np.cumsum([1 / (3 * 2), 2 / (3 * 1)]))) < 1e-14


def test_testci_trivial_competing_risks_by_hand():
    """testci.R's first data set: P(state 1) = 1/7 from time 2; P(state 2) = (6/7)(2/5) = 12/35 at 3 and
    1/7 + 12/35 + ... = 6/7 at 6 (the last subject at risk moves to state 2); n.risk 7, 5, 1 at the events."""
    from retrocohort.survival import cumulative_incidence

    data = pd.DataFrame(
        {
            "time": [1.0, 2, 2, 3, 3, 3, 5, 6],
            "status": [0, 1, 0, 1, 0, 1, 0, 1],
            "event": [1, 1, 2, 2, 1, 2, 3, 2],
        }
    )
    data["state"] = data["status"] * data["event"]  # factor(status * event): 0 censored, states 1 and 2
    one = cumulative_incidence(data, "time", "state", cause=1).table
    two = cumulative_incidence(data, "time", "state", cause=2).table
    assert one["time"].tolist() == [2.0] and one["n_risk"].tolist() == [7.0]
    assert _rel(one["cif"], [1 / 7]) < 1e-14
    assert two["time"].tolist() == [3.0, 6.0] and two["n_risk"].tolist() == [5.0, 1.0]
    assert two["n_event"].tolist() == [2.0, 1.0]
    assert _rel(two["cif"], [12 / 35, 6 / 7]) < 1e-14


def test_survfit2_modified_lower_limit_by_hand():
    """survfit2.R: conf.lower = 'modified' multiplies the variance by m/n (n at risk, m at risk at the last
    death): std * sqrt(1, 10/9, 1, 8/7, 1, 6/5, 6/4, 6/3, 1, 2/1) on times 1..10; upper limit unchanged."""
    data = pd.DataFrame({"time": np.arange(1.0, 11.0), "status": [1, 0, 1, 0, 1, 0, 0, 0, 1, 0]})
    usual = survival_curve(data, "time", "status").table
    modified = survival_curve(data, "time", "status", conf_lower="modified").table
    factor = np.array([1, 10 / 9, 1, 8 / 7, 1, 6 / 5, 6 / 4, 6 / 3, 1, 2 / 1])
    lower = np.exp(np.log(usual["survival"]) - 1.959963984540054 * usual["std_err"] * np.sqrt(factor))
    assert _rel(modified["lower"], lower) < 1e-13
    assert _rel(modified["upper"], usual["upper"]) == 0.0
    assert (modified["lower"] <= usual["lower"] + 1e-15).all()
    with pytest.raises(InputError, match="conf_lower='peto' is not supported; use one of"):
        survival_curve(data, "time", "status", conf_lower="peto")  # type: ignore[arg-type]


def test_survfit_cox_start_time_after_one_stratum_ended_keeps_the_others():
    """A stratum whose follow-up ends before start_time gets no curve; the other strata keep theirs."""
    data = _test2().assign(s=[0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    fit = cox(data, "stop", "event", [], entry="start", strata="s")
    curves = survfit_cox(fit, data.iloc[[0]][["stop"]], start_time=8.5)
    assert set(curves["strata"]) == {1} and curves["time"].min() == 9.0
    full = survfit_cox(fit, data.iloc[[0]][["stop"]])
    one = full[full["strata"] == 1]
    assert one["time"].min() == 9.0  # nothing of stratum 1 before 8.5: the conditional curve is the curve
    assert _rel(curves["surv"], one["surv"]) < 1e-14 and _rel(curves["std_err"], one["std_err"]) < 1e-14


def test_testnull_iter_zero_equals_the_null_model_by_hand():
    """testnull.R: coxph(~ rx + strata(number), iter.max = 0) has loglik[2] and residuals of the null model."""
    rng = np.random.default_rng(3)
    n = 60
    data = pd.DataFrame(
        {"stop": rng.integers(1, 30, n).astype(float), "event": rng.integers(0, 2, n), "rx": rng.integers(1, 3, n)}
    )
    data["number"] = rng.integers(1, 4, n)
    zero = cox(data, "stop", "event", ["rx"], strata="number", max_iter=0)
    null = cox(data, "stop", "event", [], strata="number")
    assert zero.loglik[1] == pytest.approx(null.loglik[1], rel=1e-13)
    assert np.allclose(np.ravel(cox_residuals(zero)), np.ravel(cox_residuals(null)), rtol=0, atol=1e-13)


# ---------------------------------------------------------------- part 2: live R

_ZPH_CASES = [
    # (name, data, formula, python kwargs)
    ("lung", "lung", "Surv(time, status) ~ age + sex + ph.karno", {"covariates": ["age", "sex", "ph.karno"]}),
    (
        "lung_strata_w",
        "lung",
        "Surv(time, status) ~ age + ph.karno + strata(sex)",
        {"covariates": ["age", "ph.karno"], "strata": "sex", "weights": "w"},
    ),
    (
        "heart",
        "heart",
        "Surv(start, stop, event) ~ age + surgery + transplant",
        {"covariates": ["age", "surgery", "transplant"], "entry": "start"},
    ),
    ("veteran", "veteran", "Surv(time, status) ~ karno + celltype", {"covariates": ["karno", "celltype"]}),
]
_TRANSFORMS = ["km", "identity", "log", "rank"]


@functools.lru_cache(maxsize=1)
def _r_batch() -> dict:
    """One R process: every cox.zph table, testnull.R's fits, tsiatis and offset basehaz."""
    from tests.rlive import run_r

    zph_lines = []
    for name, frame, formula, kw in _ZPH_CASES:
        w = ", weights = w" if "weights" in kw else ""
        for ties in ("efron", "breslow"):
            zph_lines.append(f'f <- coxph({formula}, {frame}, ties = "{ties}"{w})')
            for t in _TRANSFORMS:
                zph_lines.append(f'zph[["{name}_{ties}_{t}"]] <- unname(cox.zph(f, transform = "{t}")$table[, 1])')
    code = (
        """
suppressPackageStartupMessages(library(survival))
lung <- na.omit(lung[, c("time", "status", "age", "sex", "ph.karno")])
lung$status <- lung$status - 1
lung$w <- 1 + (lung$age %% 5) / 4
lung$o <- log(lung$ph.karno / 80)
veteran <- veteran
heart <- heart
zph <- list()
"""
        + "\n".join(zph_lines)
        + """
b1 <- coxph(Surv(stop, event) ~ rx + strata(number), bladder, iter.max = 0)
b2 <- coxph(Surv(stop, event) ~ strata(number), bladder)
c1 <- coxph(Surv(start, stop, event) ~ rx + strata(number), bladder2, iter.max = 0)
c2 <- coxph(Surv(start, stop, event) ~ strata(number), bladder2)
test2 <- data.frame(start = c(1, 2, 5, 2, 1, 7, 3, 4, 8, 8), stop = c(2, 3, 6, 7, 8, 9, 9, 9, 14, 17),
                    event = c(1, 1, 1, 1, 1, 1, 1, 0, 0, 0))
ts <- survfit(Surv(start, stop, event) ~ 1, test2, type = "fh2", error = "tsiatis")
t0 <- survfit(Surv(start, stop, event) ~ 1, test2, type = "fh2")
v <- survfit(Surv(time, status) ~ 1, veteran, type = "fh2", error = "tsiatis")
og <- coxph(Surv(time, status) ~ age + offset(o), lung)
os <- coxph(Surv(time, status) ~ age + offset(o) + strata(sex), lung, weights = w)
on <- coxph(Surv(time, status) ~ offset(o), lung)
m <- na.omit(mgus2[, c("age", "futime", "death", "sex", "mspike")])
m$stop <- m$age + m$futime / 12
mfit <- coxph(Surv(age, stop, death) ~ sex + mspike, m)
dummy <- data.frame(sex = "F", mspike = 1.3)
ev <- survfit(mfit, newdata = dummy)$time[survfit(mfit, newdata = dummy)$n.event > 0][50]
ms <- list(s80 = survfit(mfit, newdata = dummy, start.time = 80), sev = survfit(mfit, newdata = dummy, start.time = ev))
tdata <- data.frame(time = 1:10, status = c(1, 0, 1, 0, 1, 0, 0, 0, 1, 0))
modified <- list()
for (ct in c("log", "log-log", "plain", "logit", "arcsin")) {
  a <- survfit(Surv(time, status) ~ 1, tdata, conf.lower = "modified", conf.type = ct)
  b <- survfit(Surv(time, status) ~ sex, lung, conf.lower = "modified", conf.type = ct)
  h <- survfit(Surv(start, stop, event) ~ 1, heart, conf.lower = "modified", conf.type = ct)
  modified[[ct]] <- list(a = a$lower, b = b$lower, b_upper = b$upper, h = h$lower)
}
ms <- lapply(ms, function(x) list(time = x$time, surv = as.vector(x$surv), se = as.vector(x$std.err),
                                  cumhaz = as.vector(x$cumhaz)))
aml2 <- aml
aml2$off <- log(seq_len(nrow(aml2)))
fa <- coxph(Surv(time, status) ~ offset(off), aml2)
sa <- survfit(fa)  # a null offset fit's curve: at the mean offset
sa0 <- survfit(fa, newdata = data.frame(off = 0))
gs <- coxph(Surv(time, status) ~ strata(sex), lung, ties = "breslow")
sg <- survfit(gs)
curve <- function(x) list(time = x$time, surv = as.vector(x$surv), se = as.vector(x$std.err),
                          n = if (is.null(x$strata)) length(x$time) else unname(x$strata))
result <- list(
  modified = modified,
  aml2 = aml2[, c("time", "status", "off")], null_curves = list(sa = curve(sa), sa0 = curve(sa0), sg = curve(sg)),
  mgus2 = m, ms = ms, ev = ev,
  zph = zph, lung = lung, veteran = veteran, heart = heart,
  bladder = bladder[, c("stop", "event", "rx", "number")],
  bladder2 = bladder2[, c("start", "stop", "event", "rx", "number")],
  b1_loglik = b1$loglik, b2_loglik = b2$loglik, b_resid = unname(b2$residuals), b1_resid = unname(b1$residuals),
  c1_loglik = c1$loglik, c2_loglik = c2$loglik, c_resid = unname(c2$residuals),
  ts_se = ts$std.err, t0_se = t0$std.err, ts_surv = ts$surv, ts_time = ts$time,
  v_se = v$std.err, v_surv = v$surv, v_time = v$time,
  og = basehaz(og, centered = FALSE)$hazard, os = basehaz(os, centered = FALSE)$hazard,
  on = basehaz(on, centered = FALSE)$hazard
)
"""
    )
    return run_r(code)  # type: ignore[return-value]


def _frame(r: dict, key: str) -> pd.DataFrame:
    out = pd.DataFrame(r[key])
    if key == "veteran":
        out = out.astype({"celltype": "category"})
        out["celltype"] = out["celltype"].cat.reorder_categories(["squamous", "smallcell", "adeno", "large"])
    return out


@pytest.mark.r
@pytest.mark.parametrize("case", _ZPH_CASES, ids=[c[0] for c in _ZPH_CASES])
def test_zph_every_transform_matches_cox_zph(case):
    """cox.zph(fit, transform = km / identity / log / rank)$table: per term and GLOBAL, both ties."""
    r = _r_batch()
    name, frame, _formula, kw = case
    data = _frame(r, frame)
    for ties in ("efron", "breslow"):
        time, event = ("stop", "event") if frame == "heart" else ("time", "status")
        fit = cox(data, time, event, ties=ties, **kw)
        for t in _TRANSFORMS:
            got = ph_test(fit, transform=t).table["chisq"]
            assert _rel(got, r["zph"][f"{name}_{ties}_{t}"]) < 1e-8, (name, ties, t)


@pytest.mark.r
def test_testnull_bladder_iter_zero_equals_the_stratified_null_model():
    """testnull.R on bladder (right-censored) and bladder2 ((start, stop]): loglik and martingale residuals."""
    r = _r_batch()
    bladder = _frame(r, "bladder")
    zero = cox(bladder, "stop", "event", ["rx"], strata="number", max_iter=0)
    null = cox(bladder, "stop", "event", [], strata="number")
    assert _rel(zero.loglik, r["b1_loglik"]) < 1e-12
    assert _rel(null.loglik[1], r["b2_loglik"]) < 1e-12 and _rel(zero.loglik[1], null.loglik[1]) < 1e-13
    assert np.max(np.abs(np.ravel(cox_residuals(null)) - r["b_resid"])) < 1e-10
    assert np.max(np.abs(np.ravel(cox_residuals(zero)) - r["b1_resid"])) < 1e-10
    bladder2 = _frame(r, "bladder2")
    zero = cox(bladder2, "stop", "event", ["rx"], entry="start", strata="number", max_iter=0)
    null = cox(bladder2, "stop", "event", [], entry="start", strata="number")
    assert _rel(zero.loglik, r["c1_loglik"]) < 1e-12
    assert _rel(null.loglik[1], r["c2_loglik"]) < 1e-12
    assert np.max(np.abs(np.ravel(cox_residuals(null)) - r["c_resid"])) < 1e-10


@pytest.mark.r
def test_survfit_error_tsiatis_is_ignored_by_survival_3_and_equals_our_fh2_curve():
    """survtest.R's survfit(..., type = 'fh2', error = 'tsiatis'): survival 3.5 ignores `error`, so the
    std.err is the default one, which is ours (survival_curve(ctype = FH, stype = exp))."""
    r = _r_batch()
    assert r["ts_se"] == r["t0_se"]  # R: the argument changes nothing
    ours = survival_curve(_test2(), "stop", "event", entry="start", ctype="fleming-harrington", stype="exp").table
    assert ours["time"].tolist() == r["ts_time"]
    assert _rel(ours["survival"], r["ts_surv"]) < 1e-12 and _rel(ours["std_err"], r["ts_se"]) < 1e-12
    vet = _frame(r, "veteran")
    ours = survival_curve(vet, "time", "status", ctype="fleming-harrington", stype="exp").table
    assert ours["time"].tolist() == r["v_time"]
    assert _rel(ours["survival"], r["v_surv"]) < 1e-12
    keep = np.isfinite(np.asarray(r["v_se"], dtype=float))
    assert _rel(ours["std_err"].to_numpy()[keep], np.asarray(r["v_se"], dtype=float)[keep]) < 1e-12


@pytest.mark.r
def test_basehaz_of_offset_fits_matches_r():
    """basehaz(fit, centered = FALSE) of offset fits: plain, strata + non-integer weights, the null model."""
    r = _r_batch()
    lung = _frame(r, "lung")
    fits = {
        "og": cox(lung, "time", "status", ["age"], offset="o"),
        "os": cox(lung, "time", "status", ["age"], offset="o", strata="sex", weights="w"),
        "on": cox(lung, "time", "status", [], offset="o"),
    }
    for key, fit in fits.items():
        assert _rel(baseline_hazard(fit)["cumhaz"], r[key]) < 1e-9, key
    # the mean offset is part of basehaz's reference: without it the curve is off by exp(mean(o))
    raw = baseline_hazard(cox(lung, "time", "status", ["age"], offset="o"))["cumhaz"] / math.exp(lung["o"].mean())
    assert _rel(raw, r["og"]) > 1e-3


@pytest.mark.r
def test_survtest_survfit_cox_start_time_matches_r_on_mgus2():
    """survtest.R's last block: survfit(coxph(Surv(age, age + futime/12, death) ~ sex + mspike, mgus2),
    newdata, start.time = 80), and a start.time equal to an event time (which counts, as in survfit)."""
    r = _r_batch()
    mgus2 = _frame(r, "mgus2")
    fit = cox(mgus2, "stop", "death", ["sex", "mspike"], entry="age")
    profile = pd.DataFrame({"sex": ["F"], "mspike": [1.3]})
    full = survfit_cox(fit, profile)
    for key, start in (("s80", 80.0), ("sev", float(r["ev"]))):
        ref = r["ms"][key]
        ours = survfit_cox(fit, profile, start_time=start)
        assert np.array_equal(ours["time"].to_numpy(), np.asarray(ref["time"], dtype=float)), key
        assert _rel(ours["surv"], ref["surv"]) < 1e-10, key
        assert _rel(ours["cumhaz"], ref["cumhaz"]) < 1e-10, key
        assert _rel(ours["std_err"], ref["se"]) < 1e-10, key
        # survtest.R: the conditional curve is the full one divided by its value just before start
        before = full[full["time"] < start]["surv"].iloc[-1]
        after = full[full["time"] >= start]["surv"].to_numpy()
        assert _rel(ours["surv"], after / before) < 1e-12, key
    with pytest.raises(InputError, match="no time at or after start_time=1000"):
        survfit_cox(fit, profile, start_time=1000.0)
    with pytest.raises(InputError, match="start_time must be a finite number"):
        survfit_cox(fit, profile, start_time=float("nan"))


@pytest.mark.r
def test_null_model_curves_with_offset_and_strata_match_survfit():
    """Left from round 2: survfit of the null Cox model with an offset (doaml.R's offset(log(1:23)); R's
    curve without newdata is at the mean offset) and with strata (one curve per stratum), std.err too."""
    r = _r_batch()
    ref = r["null_curves"]
    aml = _frame(r, "aml2")
    fit = cox(aml, "time", "status", [], offset="off")
    for key, off in (("sa", float(aml["off"].mean())), ("sa0", 0.0)):
        ours = survfit_cox(fit, pd.DataFrame({"off": [off]}))
        assert np.array_equal(ours["time"].to_numpy(), np.asarray(ref[key]["time"], dtype=float)), key
        assert _rel(ours["surv"], ref[key]["surv"]) < 1e-10, key
        assert _rel(ours["std_err"], ref[key]["se"]) < 1e-10, key
    lung = _frame(r, "lung")
    strat = cox(lung, "time", "status", [], strata="sex", ties="breslow")
    ours = survfit_cox(strat, lung.iloc[[0]][["time"]])  # no strata column: a curve in every stratum
    assert ours.groupby("strata", sort=True).size().tolist() == ref["sg"]["n"]
    assert np.array_equal(ours["time"].to_numpy(), np.asarray(ref["sg"]["time"], dtype=float))
    assert _rel(ours["surv"], ref["sg"]["surv"]) < 1e-10
    assert _rel(ours["std_err"], ref["sg"]["se"]) < 1e-10


@pytest.mark.r
@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain", "logit", "arcsin"])
def test_survfit2_modified_lower_limit_matches_survfit(conf_type):
    """survfit(conf.lower = 'modified') for every conf.type: survfit2.R's data, lung by sex, heart (start, stop]."""
    r = _r_batch()
    ref = r["modified"][conf_type]

    def check(ours, theirs, what):
        theirs = np.array([np.nan if v is None else v for v in theirs], dtype=float)
        ours = np.asarray(ours, dtype=float)
        assert np.array_equal(np.isfinite(ours), np.isfinite(theirs)), what  # NaN where R gives NA
        keep = np.isfinite(theirs)
        assert _rel(ours[keep], theirs[keep]) < 1e-12, what

    data = pd.DataFrame({"time": np.arange(1.0, 11.0), "status": [1, 0, 1, 0, 1, 0, 0, 0, 1, 0]})
    kw = {"conf_type": conf_type, "conf_lower": "modified"}
    check(survival_curve(data, "time", "status", **kw).table["lower"], ref["a"], "survfit2.R")
    lung = survival_curve(_frame(r, "lung"), "time", "status", "sex", **kw).table
    check(lung["lower"], ref["b"], "lung by sex")
    check(lung["upper"], ref["b_upper"], "lung by sex, upper")
    heart = survival_curve(_frame(r, "heart"), "stop", "event", entry="start", **kw).table
    check(heart["lower"], ref["h"], "heart")
