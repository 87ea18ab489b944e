"""propensity_score against R's glm (fixtures from tests/reference/r/matching.R and live R)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError, ModelWarning
from retrocohort.matching import propensity_score
from tests.rlive import run_r

COVARIATES = ["age", "sex", "sepsis", "stage", "lactate"]


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_summary_equals_glm(reference, link):
    ref = reference(f"glm_{link}")
    data = pd.DataFrame(ref["data"])
    values = ref["values"]
    fit = propensity_score(data, "mg", COVARIATES, link=link)
    assert list(fit.summary.index) == values["terms"]
    for column, key in [("estimate", "estimate"), ("std_error", "std_error"), ("z", "z")]:
        np.testing.assert_allclose(fit.summary[column], values[key], rtol=1e-7, err_msg=column)
    np.testing.assert_allclose(fit.summary["p"], values["p"], rtol=1e-6)
    np.testing.assert_allclose(fit.score, values["fitted"], rtol=1e-9)
    np.testing.assert_allclose(fit.linear, values["linear"], rtol=1e-8, atol=1e-12)
    assert fit.deviance == pytest.approx(values["deviance"], rel=1e-10)
    assert fit.null_deviance == pytest.approx(values["null_deviance"], rel=1e-10)
    assert fit.aic == pytest.approx(values["aic"], rel=1e-10)
    assert fit.iterations == values["iter"]
    assert fit.score.index.equals(data.index)


def test_treatment_coding_bool_and_labels_give_the_same_fit(reference):
    data = pd.DataFrame(reference("glm_logit")["data"])
    base = propensity_score(data, "mg", COVARIATES)
    as_bool = propensity_score(data.assign(mg=data.mg == 1), "mg", COVARIATES)
    as_text = propensity_score(data.assign(mg=np.where(data.mg == 1, "Mg", "none")), "mg", COVARIATES, treated="Mg")
    for other in (as_bool, as_text):
        np.testing.assert_allclose(other.summary["estimate"], base.summary["estimate"], rtol=1e-12)
    # Without treated=, the second sorted level ("none") is treated: the coefficients flip sign.
    flipped = propensity_score(data.assign(mg=np.where(data.mg == 1, "Mg", "none")), "mg", COVARIATES)
    np.testing.assert_allclose(flipped.summary["estimate"], -base.summary["estimate"], rtol=1e-8)
    assert flipped.options["treated_value"] == "none"


def test_score_aligned_to_a_non_default_index(reference):
    data = pd.DataFrame(reference("glm_logit")["data"])
    shuffled = data.sample(frac=1.0, random_state=3)
    shuffled.index = [f"p{i}" for i in shuffled.index]
    fit = propensity_score(shuffled, "mg", COVARIATES)
    expected = np.asarray(reference("glm_logit")["values"]["fitted"])[[int(i[1:]) for i in shuffled.index]]
    np.testing.assert_allclose(fit.score.to_numpy(), expected, rtol=1e-9)
    assert list(fit.score.index) == list(shuffled.index)


def test_missing_values_name_columns_and_counts(reference):
    data = pd.DataFrame(reference("glm_logit")["data"])
    data.loc[[0, 5, 9], "age"] = np.nan
    data.loc[[2], "stage"] = None
    with pytest.raises(InputError) as err:
        propensity_score(data, "mg", COVARIATES)
    assert "'age': 3" in str(err.value) and "'stage': 1" in str(err.value)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [([0, 1, 2, 1], "3 distinct values"), ([1, 1, 1, 1], "no treated or no control"), ([0, 2, 0, 2], "not 0/1")],
)
def test_treatment_must_be_two_valued(values, fragment):
    data = pd.DataFrame({"t": values, "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(InputError, match=fragment):
        propensity_score(data, "t", ["x"])


def test_collinear_covariates_are_rejected():
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"t": rng.integers(0, 2, 50), "x": rng.normal(size=50)})
    data["x2"] = 2 * data["x"] + 1
    with pytest.raises(InputError, match="x2"):
        propensity_score(data, "t", ["x", "x2"])


def test_quasi_complete_separation_warns_naming_the_covariate():
    rng = np.random.default_rng(7)
    n = 200
    data = pd.DataFrame({"age": rng.normal(60, 10, n), "dialysis": rng.integers(0, 2, n)})
    data["t"] = rng.integers(0, 2, n)
    # Everyone on dialysis is treated: quasi-complete separation by 'dialysis'.
    data.loc[data.dialysis == 1, "t"] = 1
    with pytest.warns(ModelWarning, match="dialysis") as record:
        fit = propensity_score(data, "t", ["age", "dialysis"])
    assert "age" not in str(record[0].message).split("responsible")[1]
    assert fit.notes and "dialysis" in fit.notes[0]


def test_complete_separation_by_a_continuous_covariate_warns():
    data = pd.DataFrame({"lactate": np.arange(40.0), "other": np.tile([0.0, 1.0], 20)})
    data["t"] = (data.lactate >= 20).astype(int)
    with pytest.warns(ModelWarning, match="lactate"):
        propensity_score(data, "t", ["lactate", "other"])


def test_no_warning_without_separation(reference):
    data = pd.DataFrame(reference("glm_logit")["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelWarning)
        fit = propensity_score(data, "mg", COVARIATES)
    assert fit.converged and fit.notes == ()


def test_bad_link_names_allowed_values(reference):
    data = pd.DataFrame(reference("glm_logit")["data"])
    with pytest.raises(InputError, match=r"cloglog.*logit"):
        propensity_score(data, "mg", COVARIATES, link="cloglog")


@pytest.mark.r
def test_live_glm_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 1500))
    data = pd.DataFrame(
        {
            "age": rng.normal(65, 12, n),
            "sex": rng.choice(["F", "M"], n),
            "ward": rng.choice(["MICU", "SICU", "CCU", "TSICU"], n),
            "sofa": rng.integers(0, 20, n).astype(float),
        }
    )
    eta = -1 + 0.03 * (data.age - 65) + 0.4 * (data.sex == "M") + 0.08 * data.sofa - 0.5 * (data.ward == "CCU")
    data["exposed"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    link = ["logit", "probit"][seed % 2]
    fit = propensity_score(data, "exposed", ["age", "sex", "ward", "sofa"], link=link)
    ref = run_r(
        f'f <- glm(exposed ~ age + sex + ward + sofa, data = df, family = binomial("{link}")); '
        "s <- coef(summary(f)); result <- list(terms = rownames(s), est = unname(s[, 1]), se = unname(s[, 2]), "
        "fitted = unname(fitted(f)))",
        {"df": data},
    )
    msg = f"seed={seed} link={link}"
    assert list(fit.summary.index) == ref["terms"], msg
    np.testing.assert_allclose(fit.summary["estimate"], ref["est"], rtol=1e-7, err_msg=msg)
    np.testing.assert_allclose(fit.summary["std_error"], ref["se"], rtol=1e-7, err_msg=msg)
    np.testing.assert_allclose(fit.score, ref["fitted"], rtol=1e-8, err_msg=msg)


def test_same_mle_as_statsmodels_glm(reference):
    # A second, independent oracle: statsmodels' GLM converged tightly reaches the same MLE and
    # (at the MLE) the same inverse-information SEs, to the precision of glm's stopping rule.
    import statsmodels.api as sm

    data = pd.DataFrame(reference("glm_logit")["data"])
    fit = propensity_score(data, "mg", COVARIATES)
    x = pd.get_dummies(data[COVARIATES], columns=["sex", "stage"], drop_first=True, dtype=float)
    x.insert(0, "(Intercept)", 1.0)
    x = x.rename(columns={"sex_M": "sexM", "stage_II": "stageII", "stage_III": "stageIII"})[list(fit.summary.index)]
    sm_fit = sm.GLM(data["mg"].astype(float), x, family=sm.families.Binomial()).fit(tol=1e-14)
    np.testing.assert_allclose(fit.summary["estimate"].to_numpy(), sm_fit.params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fit.summary["std_error"].to_numpy(), sm_fit.bse.to_numpy(), rtol=1e-5)


def test_unused_categorical_levels_are_dropped_as_glm_drops_them():
    """glm's model.frame drops unused factor levels (drop.unused.levels = TRUE), so an empty
    Categorical level changes nothing, and an empty first level moves the reference to the next one."""
    rng = np.random.default_rng(5)
    n = 400
    used = rng.choice(["b", "c", "d"], n)
    x = rng.normal(size=n)
    treat = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * x + (used == "c"))))).astype(int)
    plain = pd.DataFrame({"treat": treat, "x": x, "site": pd.Categorical(used, categories=["b", "c", "d"])})
    padded = plain.assign(site=pd.Categorical(used, categories=["a", "b", "c", "x", "d"]))
    fit_plain = propensity_score(plain, "treat", ["x", "site"])
    fit_padded = propensity_score(padded, "treat", ["x", "site"])
    assert list(fit_padded.summary.index) == list(fit_plain.summary.index)  # reference b: terms sitec, sited
    np.testing.assert_allclose(fit_padded.summary["estimate"], fit_plain.summary["estimate"], rtol=1e-12)
    np.testing.assert_allclose(fit_padded.score, fit_plain.score, rtol=1e-12)
