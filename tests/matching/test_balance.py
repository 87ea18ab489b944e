"""balance() and table_one() against tableone's formulas computed in R (fixtures, live R) and hand calculations."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.matching import balance, balance_before_after, table_one
from retrocohort.matching.balance import ks_statistic, smd_categorical
from tests.rlive import run_r

COVARIATES = ["age", "lactate", "sex", "sepsis", "stage"]


@pytest.mark.parametrize("weighted", [False, True])
def test_balance_equals_tableone_formulas(reference, weighted):
    ref = reference("smd_tableone")
    data = pd.DataFrame(ref["data"])
    expected = ref["values"]["weighted" if weighted else "unweighted"]
    weights = np.asarray(ref["values"]["weights"]) if weighted else None
    table = balance(data, "mg", COVARIATES, weights=weights)
    for name in ("age", "lactate"):
        row, exp = table.loc[name], expected[name]
        for column in ("mean_treated", "mean_control", "sd_treated", "sd_control", "smd", "variance_ratio"):
            assert row[column] == pytest.approx(exp[column], rel=1e-12), (name, column)
        assert row["type"] == "continuous"
    sex = expected["sex"]
    assert table.loc["sex = M", "mean_treated"] == pytest.approx(sex["p_treated"][1], rel=1e-12)
    assert table.loc["sex = M", "mean_control"] == pytest.approx(sex["p_control"][1], rel=1e-12)
    # A two-level variable: the per-level SMD is tableone's SMD for the variable.
    assert table.loc["sex = M", "smd"] == pytest.approx(sex["smd"], rel=1e-10)
    assert table.loc["sepsis", "type"] == "binary"
    assert table.loc["sepsis", "smd"] == pytest.approx(expected["sepsis"]["smd"], rel=1e-10)
    stage = expected["stage"]
    for i, level in enumerate(stage["levels"]):
        assert table.loc[f"stage = {level}", "mean_treated"] == pytest.approx(stage["p_treated"][i], rel=1e-12)
        assert table.loc[f"stage = {level}", "mean_control"] == pytest.approx(stage["p_control"][i], rel=1e-12)
    multi = smd_categorical(np.asarray(stage["p_treated"][1:]), np.asarray(stage["p_control"][1:]))
    assert multi == pytest.approx(stage["smd"], rel=1e-10)


def test_ks_hand_calculation():
    # Treated {1, 2, 3}, control {2, 3, 4, 5}: F_t - F_c at 1, 2, 3, 4 is 1/3, 2/3 - 1/4, 1 - 1/2, 1 - 3/4,
    # so the KS statistic is 1/2 (at 3).
    one = np.ones(7)
    assert ks_statistic(np.array([1.0, 2, 3]), one[:3], np.array([2.0, 3, 4, 5]), one[:4]) == pytest.approx(0.5)
    # Weighting the control at 2 by 3 (weights 3,1,1,1 -> F_c(2) = 1/2, F_c(3) = 2/3): gaps 1/3, 1/6, 1/3, 1/6.
    w0 = np.array([3.0, 1, 1, 1])
    assert ks_statistic(np.array([1.0, 2, 3]), one[:3], np.array([2.0, 3, 4, 5]), w0) == pytest.approx(1 / 3)


def test_constant_weights_change_nothing(reference):
    data = pd.DataFrame(reference("smd_tableone")["data"])
    plain = balance(data, "mg", COVARIATES)
    doubled = balance(data, "mg", COVARIATES, weights=np.full(len(data), 2.0))
    pd.testing.assert_frame_equal(plain, doubled, rtol=1e-12)


def test_zero_weights_equal_dropping_the_rows(reference):
    data = pd.DataFrame(reference("smd_tableone")["data"])
    w = np.asarray(reference("smd_tableone")["values"]["weights"])
    weighted = balance(data, "mg", COVARIATES, weights=w)
    kept = balance(data[w > 0], "mg", COVARIATES, weights=w[w > 0])
    pd.testing.assert_frame_equal(weighted, kept, rtol=1e-12)


def test_before_after_has_both_samples(reference):
    data = pd.DataFrame(reference("smd_tableone")["data"])
    w = np.asarray(reference("smd_tableone")["values"]["weights"])
    both = balance_before_after(data, "mg", COVARIATES, w)
    assert set(both["sample"]) == {"before", "after"}
    pd.testing.assert_frame_equal(
        both[both["sample"] == "before"].drop(columns="sample"), balance(data, "mg", COVARIATES)
    )


def test_balance_rejects_missing_and_negative_weights(reference):
    data = pd.DataFrame(reference("smd_tableone")["data"])
    with pytest.raises(InputError, match="negative"):
        balance(data, "mg", COVARIATES, weights=-np.ones(len(data)))
    data.loc[[1, 2], "lactate"] = np.nan
    with pytest.raises(InputError, match="'lactate': 2"):
        balance(data, "mg", COVARIATES)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_balance_and_table_one_refuse_infinite_values(reference, value):
    # they printed "inf (nan)" and an SMD of nan; the message names the column and the count
    data = pd.DataFrame(reference("smd_table_one_cells")["data"])
    data.loc[[2, 5], "lactate"] = value
    sign = r"\+inf" if value > 0 else "-inf"
    with pytest.raises(
        InputError,
        match=rf"balance: covariate 'lactate' has 2 infinite value\(s\) \({sign}\) out of "
        rf"{len(data)} rows.*drop those rows",
    ):
        balance(data, "mg", ["age", "lactate"])
    for nonnormal in ([], ["lactate"]):
        with pytest.raises(InputError, match=r"table_one: covariate 'lactate' has 2 infinite value"):
            table_one(data, "mg", ["age", "lactate"], nonnormal=nonnormal)
    # the same rows as missing values are described (and counted), not refused
    table = table_one(data.replace(value, np.nan), "mg", ["age", "lactate"])
    assert table.loc["lactate (mean (SD))", "missing"] == "2"


def test_table_one_cells_equal_tableone_print(reference):
    ref = reference("smd_table_one_cells")
    data = pd.DataFrame(ref["data"])
    table = table_one(data, "mg", ["age", "sex", "stage", "lactate"], nonnormal=["lactate"])
    assert list(table.index) == [row["label"] for row in ref["values"]["rows"]]
    for row in ref["values"]["rows"]:
        assert table.loc[row["label"], "0"] == row["control"], row["label"]
        assert table.loc[row["label"], "1"] == row["treated"], row["label"]
        assert table.loc[row["label"], "SMD"] == row["smd"], row["label"]


def test_table_one_weighted_uses_weighted_means_and_counts(reference):
    ref = reference("smd_tableone")
    data = pd.DataFrame(ref["data"])
    w = np.asarray(ref["values"]["weights"])
    table = table_one(data, "mg", ["age", "sex"], weights=w)
    exp = ref["values"]["weighted"]["age"]
    assert table.loc["age (mean (SD))", "1"] == f"{exp['mean_treated']:.2f} ({exp['sd_treated']:.2f})"
    assert table.loc["age (mean (SD))", "0"] == f"{exp['mean_control']:.2f} ({exp['sd_control']:.2f})"
    assert table.loc["n", "0"] == f"{w[data.mg == 0].sum():.1f}"
    assert table.loc["age (mean (SD))", "SMD"] == f"{exp['smd']:.3f}"


def test_table_one_missing_counts(reference):
    data = pd.DataFrame(reference("smd_table_one_cells")["data"])
    data.loc[[0, 3, 4], "age"] = np.nan
    data.loc[[7], "sex"] = None
    table = table_one(data, "mg", ["age", "sex"])
    assert table.loc["age (mean (SD))", "missing"] == "3"
    assert table.loc["sex = M (%)", "missing"] == "1"
    kept = data.dropna(subset=["age"])
    assert table.loc["age (mean (SD))", "1"] == (
        f"{kept.age[kept.mg == 1].mean():.2f} ({kept.age[kept.mg == 1].std():.2f})"
    )


@pytest.mark.r
def test_live_smd_formulas_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 800))
    data = pd.DataFrame(
        {
            "t": (rng.random(n) < 0.35).astype(int),
            "x": rng.gamma(2.0, 3.0, n),
            "g": rng.choice(["a", "b", "c", "d"], n),
            "w": np.where(rng.random(n) < 0.3, 0.0, rng.choice([0.5, 1.0, 2.0], n)),
        }
    )
    ref = run_r(
        """
        t1 <- df$t == 1
        svyvar_w <- function(x, w) { k <- w > 0; x <- x[k]; w <- w[k]; m <- sum(w * x) / sum(w)
                                     length(x) / (length(x) - 1) * sum(w * (x - m)^2) / sum(w) }
        m1 <- weighted.mean(df$x[t1], df$w[t1]); m0 <- weighted.mean(df$x[!t1], df$w[!t1])
        v1 <- svyvar_w(df$x[t1], df$w[t1]); v0 <- svyvar_w(df$x[!t1], df$w[!t1])
        p1 <- sapply(c("a","b","c","d"), function(l) sum(df$w[t1 & df$g == l]) / sum(df$w[t1]))
        p0 <- sapply(c("a","b","c","d"), function(l) sum(df$w[!t1 & df$g == l]) / sum(df$w[!t1]))
        smd_bin <- (p1 - p0) / sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
        result <- list(smd_x = abs(m1 - m0) / sqrt((v1 + v0) / 2), sd1 = sqrt(v1), sd0 = sqrt(v0),
                       smd_g = unname(abs(smd_bin)), p1 = unname(p1))
        """,
        {"df": data},
    )
    table = balance(data, "t", ["x", "g"], weights="w")
    msg = f"seed={seed}"
    assert table.loc["x", "smd"] == pytest.approx(ref["smd_x"], rel=1e-10), msg
    assert table.loc["x", "sd_treated"] == pytest.approx(ref["sd1"], rel=1e-10), msg
    assert table.loc["x", "sd_control"] == pytest.approx(ref["sd0"], rel=1e-10), msg
    np.testing.assert_allclose(table.loc[[f"g = {lv}" for lv in "abcd"], "smd"], ref["smd_g"], rtol=1e-10, err_msg=msg)
    np.testing.assert_allclose(
        table.loc[[f"g = {lv}" for lv in "abcd"], "mean_treated"], ref["p1"], rtol=1e-12, err_msg=msg
    )


def test_table_one_group_given_as_a_list_is_a_clear_error():
    from retrocohort.errors import InputError
    from retrocohort.matching import table_one

    frame = pd.DataFrame({"exposed": [0, 1, 0, 1], "age": [60.0, 70.0, 65.0, 72.0]})
    with pytest.raises(InputError, match="named by its name"):
        table_one(frame, group=["exposed"], variables=["age"])
