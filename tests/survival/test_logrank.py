"""Log-rank test against R's survdiff (fixtures from tests/reference/r/km.R),
a hand-calculated case, and a live R suite."""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrocohort.errors import InputError
from retrocohort.survival.km import logrank
from tests.rlive import run_r
from tests.survival.test_km import assert_close

LOGRANK_CASES = {
    # fixture: (group, strata)
    "logrank_lung_sex": ("sex", None),
    "logrank_lung_sex_strata": ("sex", "older"),
    "logrank_veteran_celltype": ("celltype", None),
    "logrank_veteran_trt_strata": ("trt", "celltype"),
    "logrank_tied_arm": ("arm", None),
    "logrank_tied_arm_strata": ("arm", "site"),
}


@pytest.mark.parametrize("name", sorted(LOGRANK_CASES))
def test_logrank_matches_survdiff(reference, name):
    ref = reference(name)
    group, strata = LOGRANK_CASES[name]
    values = ref["values"]
    result = logrank(pd.DataFrame.from_records(ref["data"]), "time", "event", group, strata=strata)
    assert result.df == values["df"]
    np.testing.assert_allclose(result.statistic, values["statistic"], rtol=1e-6)
    np.testing.assert_allclose(result.p_value, values["p_value"], rtol=1e-6)
    table = values["table"]
    assert [str(g) for g in result.table["group"]] == [row["group"] for row in table]
    assert_close(result.table["n"], [row["n"] for row in table], 0, f"{name} n")
    assert_close(result.table["observed"], [row["observed"] for row in table], 1e-12, f"{name} observed")
    assert_close(result.table["expected"], [row["expected"] for row in table], 1e-7, f"{name} expected")
    np.testing.assert_allclose(result.variance, np.asarray(values["variance"], dtype=float), rtol=1e-6, atol=1e-12)
    # survdiff prints (O-E)^2/E and (O-E)^2/V from the same pieces
    o, e = np.array([r["observed"] for r in table]), np.array([r["expected"] for r in table])
    v = np.diag(np.asarray(values["variance"], dtype=float))
    np.testing.assert_allclose(result.table["oe2_e"], (o - e) ** 2 / e, rtol=1e-6)
    np.testing.assert_allclose(result.table["oe2_v"], (o - e) ** 2 / v, rtol=1e-6)


def test_two_groups_by_hand():
    """Group a: times 1, 3, 4+ ; group b: 2, 3, 5 (``+`` censored).

    t=1: n=6 (a 3, b 3), d=1 (a): E_a = 3/6, V = 1*5/5 * 3/6 * 3/6 = 1/4
    t=2: n=5 (a 2, b 3), d=1 (b): E_a = 2/5, V = 2/5 * 3/5 = 6/25
    t=3: n=4 (a 2, b 2), d=2 (a, b): E_a = 2*2/4 = 1, V = 2*2/3 * 1/2 * 1/2 = 1/3
    t=5: n=1 (b), d=1: E_a = 0, V = 0
    O_a = 2, E_a = 1/2 + 2/5 + 1 = 19/10 (E_b = 5 events - 19/10), V = 1/4 + 6/25 + 1/3 = 247/300
    chi2 = (2 - 19/10)^2 / (247/300) = (1/100) * 300/247 = 3/247, df = 1
    """
    data = pd.DataFrame({"time": [1, 3, 4, 2, 3, 5], "event": [1, 1, 0, 1, 1, 1], "arm": list("aaabbb")})
    result = logrank(data, "time", "event", "arm")
    np.testing.assert_allclose(result.table["expected"], [19 / 10, 5 - 19 / 10], rtol=1e-14)
    np.testing.assert_allclose(result.variance[0, 0], 247 / 300, rtol=1e-14)
    np.testing.assert_allclose(result.statistic, 3 / 247, rtol=1e-12)
    assert result.df == 1
    np.testing.assert_allclose(result.p_value, stats.chi2.sf(3 / 247, 1), rtol=1e-12)


def test_single_group_is_refused():
    data = pd.DataFrame({"time": [1, 2, 3], "event": [1, 0, 1], "arm": ["a", "a", "a"]})
    with pytest.raises(InputError, match="single group"):
        logrank(data, "time", "event", "arm")


def test_statistic_invariant_to_group_relabelling(reference):
    """Which group survdiff drops for the singular variance must not matter."""
    data = pd.DataFrame.from_records(reference("logrank_tied_arm")["data"])
    relabelled = data.assign(arm=data["arm"].map({"control": "z", "magnesium": "a", "other": "m"}))
    np.testing.assert_allclose(
        logrank(data, "time", "event", "arm").statistic,
        logrank(relabelled, "time", "event", "arm").statistic,
        rtol=1e-10,
    )


@pytest.mark.r
def test_live_survdiff_with_strata():
    seed = secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 400))
    arm = rng.choice(["a", "b", "c"], n)
    event_day = np.ceil(rng.exponential(np.where(arm == "a", 40, 60)))
    censor_day = np.ceil(rng.uniform(5, 100, n))
    data = pd.DataFrame(
        {
            "time": np.minimum(event_day, censor_day),
            "event": (event_day <= censor_day).astype(int),
            "arm": arm,
            "site": rng.choice(["s1", "s2", "s3"], n),
        }
    )
    result = run_r(
        """library(survival)
        sd <- survdiff(Surv(time, event) ~ arm + strata(site), data = df)
        result <- list(chisq = sd$chisq, obs = rowSums(sd$obs), exp = rowSums(sd$exp), var = sd$var)""",
        {"df": data},
    )
    ours = logrank(data, "time", "event", "arm", strata="site")
    np.testing.assert_allclose(ours.statistic, result["chisq"], rtol=1e-6, err_msg=f"seed={seed}")
    np.testing.assert_allclose(ours.table["expected"], result["exp"], rtol=1e-7, err_msg=f"seed={seed}")
    np.testing.assert_allclose(ours.variance, np.asarray(result["var"]), rtol=1e-6, atol=1e-12, err_msg=f"seed={seed}")
