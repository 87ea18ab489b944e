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

SCENARIOS = {
    "efron": ("Surv(time, status) ~ trt + grp + x", "", dict()),
    "breslow_weights": ("Surv(time, status) ~ trt + grp + x", ", ties = 'breslow', weights = w, robust = FALSE",
                        dict(ties="breslow", weights="w", robust=False)),
    "strata_cluster": ("Surv(time, status) ~ trt + grp + x + strata(site)", ", cluster = set",
                       dict(strata="site", cluster="set")),
    "entry_weights_cluster": ("Surv(entry, time, status) ~ trt + grp + x + strata(site)",
                              ", weights = w, cluster = set", dict(entry="entry", strata="site", weights="w",
                                                                  cluster="set")),
    "robust_breslow": ("Surv(time, status) ~ trt + grp + x", ", ties = 'breslow', robust = TRUE",
                       dict(ties="breslow", robust=True)),
}

R_CODE = """
suppressPackageStartupMessages(library(survival))
one <- function(formula, extra) {
  fit <- eval(parse(text = paste0("coxph(", formula, ", data = df", extra, ")")))
  z <- cox.zph(fit, transform = "km")
  list(coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
       naive_se = unname(sqrt(diag(if (is.null(fit$naive.var)) fit$var else fit$naive.var))),
       loglik = fit$loglik, score = fit$score, wald = fit$wald.test,
       rscore = if (is.null(fit$rscore)) NA else fit$rscore,
       concordance = unname(fit$concordance["concordance"]), concordance_se = unname(fit$concordance["std"]),
       zph = unname(z$table[, "chisq"]), zph_rows = rownames(z$table))
}
result <- lapply(scenarios, function(s) one(s[[1]], s[[2]]))
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
    return pd.DataFrame({
        "time": time_, "status": (t <= c).astype(int), "entry": np.minimum(entry, time_ - 1).clip(0),
        "trt": trt, "grp": grp, "x": np.round(x, 6), "site": rng.choice(["north", "south"], n),
        "set": np.arange(n) // 3, "w": np.round(rng.uniform(0.5, 3, n), 3),
    })


def test_cox_and_zph_match_r_on_fresh_data():
    require_r("survival")
    seed = int(os.environ.get("COX_SEED", time.time_ns() % 2**31))
    data = _cohort(seed)
    scen_r = "scenarios <- list(" + ", ".join(
        f'{name} = list("{formula}", "{extra}")' for name, (formula, extra, _) in SCENARIOS.items()) + ")\n"
    ref = run_r(scen_r + R_CODE, data={"df": data})
    for name, (_, _, kwargs) in SCENARIOS.items():
        msg = f"seed={seed} scenario={name}"
        r = ref[name]
        fit = cox(data, "time", "status", ["trt", "grp", "x"], **kwargs)
        np.testing.assert_allclose(fit.summary["coef"], r["coef"], rtol=1e-7, err_msg=msg)
        np.testing.assert_allclose(fit.summary["se"], r["se"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.naive_se, r["naive_se"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.loglik, r["loglik"], rtol=1e-10, err_msg=msg)
        np.testing.assert_allclose([fit.score.statistic, fit.wald.statistic], [r["score"], r["wald"]],
                                   rtol=1e-6, err_msg=msg)
        if r["rscore"] is None:
            assert fit.robust_score is None, msg
        else:
            np.testing.assert_allclose(fit.robust_score.statistic, r["rscore"], rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(fit.concordance, r["concordance"], rtol=1e-12, err_msg=msg)
        np.testing.assert_allclose(fit.concordance_se, r["concordance_se"], rtol=1e-6, err_msg=msg)
        table = ph_test(fit).table
        assert list(table.index) == r["zph_rows"], msg
        np.testing.assert_allclose(table["chisq"], r["zph"], rtol=1e-6, err_msg=msg)
