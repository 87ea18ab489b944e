"""Live parity with R's coxph and cox.zph on fresh random data (pytest -m r).

Every run draws a new data set; the seed is in every assertion message so a
failure can be replayed with ``COX_SEED=<seed>``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest

from retrocohort.survival.cox import cox
from retrocohort.survival.zph import ph_test
from tests.rlive import require_r, run_r

pytestmark = pytest.mark.r

# name: (R formula, extra coxph arguments, our keyword arguments); conf_level
# in the keywords is passed to R as summary(fit, conf.int = ...)
SCENARIOS = {
    "efron": ("Surv(time, status) ~ trt + grp + x", "", dict()),
    "breslow_weights": (
        "Surv(time, status) ~ trt + grp + x",
        ", ties = 'breslow', weights = w, robust = FALSE",
        dict(ties="breslow", weights="w", robust=False, conf_level=0.99),
    ),
    "strata_cluster": (
        "Surv(time, status) ~ trt + grp + x + strata(site)",
        ", cluster = set",
        dict(strata="site", cluster="set", conf_level=0.90),
    ),
    "entry_weights_cluster": (
        "Surv(entry, time, status) ~ trt + grp + x + strata(site)",
        ", weights = w, cluster = set",
        dict(entry="entry", strata="site", weights="w", cluster="set"),
    ),
    "robust_breslow": (
        "Surv(time, status) ~ trt + grp + x",
        ", ties = 'breslow', robust = TRUE",
        dict(ties="breslow", robust=True, conf_level=0.80),
    ),
}

R_CODE = """
suppressPackageStartupMessages(library(survival))
one <- function(formula, extra, level) {
  fit <- eval(parse(text = paste0("coxph(", formula, ", data = df", extra, ")")))
  z <- cox.zph(fit, transform = "km")
  s <- summary(fit, conf.int = level)
  df_model <- sum(!is.na(coef(fit)))
  list(coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
       hr = unname(s$conf.int[, 1]), lower = unname(s$conf.int[, 3]), upper = unname(s$conf.int[, 4]),
       z = unname(s$coefficients[, "z"]), p = unname(s$coefficients[, "Pr(>|z|)"]),
       lr_p = pchisq(2 * diff(fit$loglik), df_model, lower.tail = FALSE),
       wald_p = pchisq(fit$wald.test, df_model, lower.tail = FALSE),
       score_p = pchisq(fit$score, df_model, lower.tail = FALSE),
       zph_p = unname(z$table[, "p"]),
       naive_se = unname(sqrt(diag(if (is.null(fit$naive.var)) fit$var else fit$naive.var))),
       loglik = fit$loglik, score = fit$score, wald = fit$wald.test,
       rscore = if (is.null(fit$rscore)) NA else fit$rscore,
       concordance = unname(fit$concordance["concordance"]), concordance_se = unname(fit$concordance["std"]),
       zph = unname(z$table[, "chisq"]), zph_rows = rownames(z$table))
}
result <- lapply(scenarios, function(s) one(s[[1]], s[[2]], s[[3]]))
"""


def _cohort(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    trt = rng.integers(0, 2, n)
    grp = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    lp = 0.5 * trt - 0.3 * (grp == "b") + 0.4 * (grp == "c") + 0.3 * x
    t = rng.exponential(20 / np.exp(lp))
    c = rng.uniform(5, 60, n)
    time_ = np.maximum(1.0, np.ceil(np.minimum(t, c)))  # whole days: many ties
    entry = np.where(rng.random(n) < 0.5, np.floor(rng.uniform(0, 10, n)), 0.0)
    return pd.DataFrame(
        {
            "time": time_,
            "status": (t <= c).astype(int),
            "entry": np.minimum(entry, time_ - 1).clip(0),
            "trt": trt,
            "grp": grp,
            "x": np.round(x, 6),
            "site": rng.choice(["north", "south"], n),
            "set": np.arange(n) // 3,
            "w": np.round(rng.uniform(0.5, 3, n), 3),
        }
    )


def test_cox_and_zph_match_r_on_fresh_data():
    require_r("survival")
    seed = int(os.environ.get("COX_SEED", time.time_ns() % 2**31))
    data = _cohort(seed)
    scen_r = (
        "scenarios <- list("
        + ", ".join(
            f'{name} = list("{formula}", "{extra}", {kw.get("conf_level", 0.95)!r})'
            for name, (formula, extra, kw) in SCENARIOS.items()
        )
        + ")\n"
    )
    ref = run_r(scen_r + R_CODE, data={"df": data})
    for name, (_, _, kwargs) in SCENARIOS.items():
        msg = f"seed={seed} scenario={name}"
        r = ref[name]
        fit = cox(data, "time", "status", ["trt", "grp", "x"], **kwargs)
        np.testing.assert_allclose(fit.summary["coef"], r["coef"], rtol=1e-7, err_msg=msg)
        np.testing.assert_allclose(fit.summary["se"], r["se"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.naive_se, r["naive_se"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.loglik, r["loglik"], rtol=1e-10, err_msg=msg)
        np.testing.assert_allclose(
            [fit.score.statistic, fit.wald.statistic], [r["score"], r["wald"]], rtol=1e-6, err_msg=msg
        )
        np.testing.assert_allclose(
            [fit.likelihood_ratio.p_value, fit.wald.p_value, fit.score.p_value],
            [r["lr_p"], r["wald_p"], r["score_p"]],
            rtol=1e-6,
            err_msg=msg,
        )
        # summary(fit, conf.int = level): hr from the coefficients (1e-7); the interval bounds, z
        # and p from the reported (robust when clustered) se (1e-6)
        table = fit.summary
        np.testing.assert_allclose(table["hr"], r["hr"], rtol=1e-7, err_msg=msg)
        np.testing.assert_allclose(table["lower"], r["lower"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(table["upper"], r["upper"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(table["z"], r["z"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(table["p"], r["p"], rtol=1e-6, err_msg=msg)
        if r["rscore"] is None:
            assert fit.robust_score is None, msg
        else:
            np.testing.assert_allclose(fit.robust_score.statistic, r["rscore"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.concordance, r["concordance"], rtol=1e-12, err_msg=msg)
        np.testing.assert_allclose(fit.concordance_se, r["concordance_se"], rtol=1e-6, err_msg=msg)
        zph = ph_test(fit).table
        assert list(zph.index) == r["zph_rows"], msg
        np.testing.assert_allclose(zph["chisq"], r["zph"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(zph["p"], r["zph_p"], rtol=1e-6, err_msg=msg)
