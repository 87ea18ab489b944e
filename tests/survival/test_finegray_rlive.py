"""Live parity with cmprsk::crr on fresh random data (``pytest -m r``).

Each run draws a new seed (printed in every assertion message) so that, over
time, the suite explores data the fixtures never saw: whole-day ties between
events, competing events and censorings, a categorical covariate, a second
cause code, and the cluster variance with one subject per cluster.
"""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest

from retrocohort.survival.finegray import fine_gray
from tests.rlive import require_r, run_r

pytestmark = pytest.mark.r


def _draw(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": np.round(rng.normal(65, 10, size=n), 1),
        "treated": rng.binomial(1, 0.5, size=n),
        "stage": rng.choice(["I", "II", "III"], size=n, p=[0.5, 0.3, 0.2]),
    })
    lp = 0.03 * (frame["age"] - 65) - 0.5 * frame["treated"] + 0.4 * (frame["stage"] == "III")
    t_event = np.ceil(rng.exponential(30.0, size=n) * np.exp(-lp))
    t_cens = np.ceil(rng.exponential(rng.uniform(20, 80), size=n))
    cause = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15])
    frame["time"] = np.minimum(t_event, t_cens).astype(float)
    frame["status"] = np.where(t_cens < t_event, 0, cause)
    frame["subject"] = rng.permutation(n)
    return frame


R_FIT = """
library(cmprsk)
cov <- model.matrix(~ age + treated + stage, data = df)[, -1]
f1 <- crr(df$time, df$status, cov, failcode = 1, cencode = 0)
f2 <- crr(df$time, df$status, cov, failcode = 2, cencode = 0)
prof <- rbind(c(55, 0, 0, 0), c(75, 1, 0, 1))
result <- list(coef1 = unname(f1$coef), var1 = unname(f1$var), loglik1 = f1$loglik, null1 = f1$loglik.null,
               bfitj1 = f1$bfitj, pred1 = unname(unclass(predict(f1, prof))),
               coef2 = unname(f2$coef), var2 = unname(f2$var), terms = colnames(cov))
"""


def test_crr_parity_on_fresh_tied_data():
    require_r("cmprsk")
    seed = secrets.randbits(32)
    data = _draw(seed, 500)
    msg = f"seed={seed}"
    assert data["time"].nunique() < len(data), msg
    r = run_r(R_FIT, {"df": data})
    covs = ["age", "treated", "stage"]
    fit = fine_gray(data, "time", "status", covs, cause=1, censor_code=0)
    assert list(fit.summary.index) == r["terms"], msg
    np.testing.assert_allclose(fit.summary["coef"], r["coef1"], rtol=1e-7, err_msg=msg)
    np.testing.assert_allclose(fit.vcov.to_numpy(), np.array(r["var1"]), rtol=1e-6, err_msg=msg)
    np.testing.assert_allclose(fit.loglik.final, r["loglik1"], rtol=1e-9, err_msg=msg)
    np.testing.assert_allclose(fit.loglik.null, r["null1"], rtol=1e-9, err_msg=msg)
    np.testing.assert_allclose(fit.baseline["hazard"], r["bfitj1"], rtol=1e-7, err_msg=msg)
    profiles = pd.DataFrame({"age": [55.0, 75.0], "treated": [0, 1], "stage": ["I", "III"]})
    pred = np.array(r["pred1"])
    np.testing.assert_allclose(fit.predict_cif(profiles).iloc[:, 1:].to_numpy(), pred[:, 1:], rtol=1e-7, err_msg=msg)

    # cause 2 of three causes; cause 3 is competing for it, as in crr
    fit2 = fine_gray(data, "time", "status", covs, cause=2)
    np.testing.assert_allclose(fit2.summary["coef"], r["coef2"], rtol=1e-7, err_msg=msg)
    np.testing.assert_allclose(fit2.vcov.to_numpy(), np.array(r["var2"]), rtol=1e-6, err_msg=msg)

    # cluster variance, one subject per cluster: crr's var exactly
    clustered = fine_gray(data, "time", "status", covs, cluster="subject")
    np.testing.assert_allclose(clustered.vcov.to_numpy(), np.array(r["var1"]), rtol=1e-6, err_msg=msg)
