"""PH test (cox.zph, transform="km"): independent recomputation and properties.

R parity is in test_cox_reference.py (fixtures, per term and per column) and
test_cox_rlive.py (live). Here the score test is recomputed a second way: the
time-varying covariates x*g(t) are made ordinary covariates by splitting every
row at every death time into (start, stop] pieces, and the score statistic of
the extended model at (beta_hat, 0) is taken from the Cox kernel's
counting-process path, which shares no code with the PH-test kernel.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.survival.cox import _cox_pass, cox
from retrocohort.survival.zph import _km_transform, ph_test


def _cohort(seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    trt = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    # hazard ratio of trt drifts with time so the test has something to find
    t = rng.weibull(np.where(trt == 1, 0.7, 1.4)) * 20 * np.exp(-0.3 * x)
    c = rng.uniform(5, 40, n)
    return pd.DataFrame(
        {
            "time": np.maximum(1, np.ceil(np.minimum(t, c))),
            "status": (t <= c).astype(int),
            "trt": trt,
            "x": x,
            "site": rng.choice(["n", "s"], n),
            "w": rng.uniform(0.5, 2, n),
        }
    )


def _split_score_statistic(data: pd.DataFrame, fit, ties: str, strata: str | None, weights: str | None) -> float:
    f = fit._fit
    beta = fit.summary["coef"].to_numpy()
    # g(t) = 1 - KM(t-) of the pooled data, at each death time
    g_rows = _km_transform(f.stop, f.start, f.event, f.has_entry)
    death_times = np.unique(f.stop[f.event != 0])
    g_at = dict(zip(f.stop[f.event != 0], g_rows[f.event != 0], strict=True))
    pieces = []
    for _, row in data.iterrows():
        cuts = [0.0] + [t for t in death_times if t < row["time"]] + [row["time"]]
        for a, b in pairwise(cuts):
            g = g_at.get(b, 0.0)
            pieces.append(
                {
                    "start": a,
                    "stop": b,
                    "status": int(row["status"]) if b == row["time"] else 0,
                    "trt": row["trt"],
                    "x": row["x"],
                    "trt_g": row["trt"] * g,
                    "x_g": row["x"] * g,
                    "stratum": row[strata] if strata else "",
                    "w": row[weights] if weights else 1.0,
                }
            )
    sp = pd.DataFrame(pieces)
    codes = pd.factorize(sp["stratum"], sort=True)[0]
    order = np.lexsort((sp["stop"].to_numpy(), codes))
    sp = sp.iloc[order].reset_index(drop=True)
    codes = codes[order]
    X = sp[["trt", "x", "trt_g", "x_g"]].to_numpy(dtype=float)
    eta = X[:, :2] @ beta
    sbounds = np.searchsorted(codes, np.arange(codes.max() + 2)).astype(np.int64)
    sorder = np.lexsort((sp["start"].to_numpy(), codes)).astype(np.int64)
    _, u, imat = _cox_pass(
        sp["stop"].to_numpy(float),
        sp["start"].to_numpy(float),
        sp["status"].to_numpy(np.int8),
        sp["w"].to_numpy(float),
        np.ascontiguousarray(X),
        eta,
        sbounds,
        sorder,
        True,
        ties == "efron",
    )
    return float(u @ np.linalg.solve(imat, u))


@pytest.mark.parametrize(
    "ties, strata, weights", [("efron", None, None), ("breslow", "site", None), ("efron", "site", "w")]
)
def test_global_statistic_equals_split_data_score_test(ties, strata, weights):
    data = _cohort(7)
    fit = cox(data, "time", "status", ["trt", "x"], ties=ties, strata=strata, weights=weights, robust=False)
    table = ph_test(fit).table
    expected = _split_score_statistic(data, fit, ties, strata, weights)
    assert table.loc["GLOBAL", "chisq"] == pytest.approx(expected, rel=1e-8)
    assert table.loc["GLOBAL", "df"] == 2


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100))
def test_invariant_to_time_rescaling(seed, scale):
    # the KM transform and the partial likelihood depend on times only through their order
    data = _cohort(seed)
    a = ph_test(cox(data, "time", "status", ["trt", "x"])).table
    b = ph_test(cox(data.assign(time=data["time"] * scale), "time", "status", ["trt", "x"])).table
    np.testing.assert_allclose(a["chisq"], b["chisq"], rtol=1e-7)


def test_terms_and_columns_agree_for_numeric_covariates_and_p_values_follow():
    fit = cox(_cohort(3), "time", "status", ["trt", "x"])
    by_term = ph_test(fit).table
    by_column = ph_test(fit, terms=False).table
    pd.testing.assert_frame_equal(by_term, by_column)
    from scipy import stats

    np.testing.assert_allclose(by_term["p"], stats.chi2.sf(by_term["chisq"], by_term["df"]), rtol=1e-12)
    assert list(by_term.index) == ["trt", "x", "GLOBAL"]


def test_categorical_term_is_tested_jointly():
    data = _cohort(4).assign(grp=lambda d: np.array(["a", "b", "c"])[np.arange(len(d)) % 3])
    table = ph_test(cox(data, "time", "status", ["trt", "grp"])).table
    assert table.loc["grp", "df"] == 2 and list(table.index) == ["trt", "grp", "GLOBAL"]
    cols = ph_test(cox(data, "time", "status", ["trt", "grp"]), terms=False).table
    assert list(cols.index) == ["trt", "grpb", "grpc", "GLOBAL"]
