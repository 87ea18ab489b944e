"""Propensity score, nearest-neighbour matching and balance cross-checked against MatchIt itself.

Modelled on MatchIt's own test suite (kosukeimai/MatchIt tests/testthat: test-method_nearest.R,
test-nearest_snapshots.R, test-summary.R) and its documented lalonde examples: the same data
(``data("lalonde", package = "MatchIt")``, read from R), the same settings, compared on the matched
sets themselves (who is matched to whom, subclass numbers), the weights, ``summary(m)$nn`` and
``summary(m)``'s balance table, plus MatchIt's invariants for what cannot be compared draw by draw
(``m.order = "random"``: R's RNG is not NumPy's).

How MatchIt is run (tests/matching/matchit_matrix.R): Debian's MatchIt 4.5.1 truncates distance
differences with C's integer ``abs()`` in its vector path, so the distance goes in multiplied by 2^k
(exact), which gives MatchIt's own algorithm and tie-breaking at full resolution; ratio > 1 goes
through the distance-matrix path because the vector path skips a neighbour in rounds after the first
(see docs/matching.md, "Checked against MatchIt").
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError, ModelWarning
from retrocohort.matching import balance, balance_before_after, match_nearest, propensity_score
from tests.rlive import run_r

HERE = Path(__file__).parent
HELPER = (HERE / "matchit_matrix.R").as_posix()
COVARIATES = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]
FORMULA = "treat ~ age + educ + race + married + nodegree + re74 + re75"


def _quiet_match(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(*args, **kwargs)


def _r_null(value):
    return None if value in ({}, [], None) else value


def _sets(result) -> dict:
    """treated position -> frozenset of control positions (positions in the frame, 0-based)."""
    pos = {label: i for i, label in enumerate(result.weights.index)}
    sets: dict = {}
    for row in result.pairs.itertuples():
        sets.setdefault(pos[row.treated], set()).add(pos[row.control])
    return {k: frozenset(v) for k, v in sets.items()}


def _r_sets(match_matrix, treated_positions) -> dict:
    """MatchIt's match.matrix (1-based rows; treated in data order) -> treated position -> control positions."""
    sets = {}
    for t, row in zip(treated_positions, match_matrix, strict=True):
        controls = frozenset(int(c) - 1 for c in row if c is not None)
        if controls:
            sets[t] = controls
    return sets


def _assert_same_match(result, expected, data, msg=""):
    treated_positions = list(np.flatnonzero(data["treat"].to_numpy() == 1))
    assert _sets(result) == _r_sets(expected["match_matrix"], treated_positions), msg
    np.testing.assert_allclose(result.weights.to_numpy(), expected["weights"], rtol=1e-12, atol=1e-14, err_msg=msg)
    subclass = _r_null(expected["subclass"])
    if subclass is None:
        assert result.subclass.isna().all(), msg
    else:
        theirs = np.array([-1 if v is None else v for v in subclass], dtype=float)
        np.testing.assert_array_equal(result.subclass.astype("float").fillna(-1).to_numpy(), theirs, err_msg=msg)
    nn = expected["nn"]
    np.testing.assert_allclose(result.counts.loc[nn["rows"], "Control"], nn["control"], rtol=1e-12, err_msg=msg)
    np.testing.assert_allclose(result.counts.loc[nn["rows"], "Treated"], nn["treated"], rtol=1e-12, err_msg=msg)


# ------------------------------------------------------------------ lalonde, computed once in R

# (distance column, ratio, caliper in SD or None, m.order, replace, exact). "lp"/"ps": MatchIt's
# distance = "glm" with link = "linear.logit" / "logit". "lpj"/"psj": the same plus (row / n) * 1e-6, so
# that no two units share a distance (ratio > 1 goes through the matrix path, whose tie rule differs).
LALONDE_CASES = [
    ("ps", 1, None, "largest", False, None),  # matchit(f, data = lalonde): the documented default
    ("ps", 1, None, "smallest", False, None),
    ("ps", 1, None, "data", False, None),
    ("lp", 1, 0.2, "largest", False, None),  # caliper on the logit scale (Austin 2011)
    ("ps", 1, 0.2, "largest", False, None),  # the same caliper on the propensity scale
    ("lp", 1, 0.05, "smallest", False, None),
    ("lp", 1, 0.1, "largest", False, ["race"]),  # exact matching combined with a caliper
    ("ps", 1, None, "largest", False, ["married", "nodegree"]),
    ("ps", 1, None, "largest", True, None),  # with replacement: control weights > 1
    ("lp", 1, 0.2, "largest", True, None),
    ("lpj", 2, 0.2, "largest", False, None),
    ("lpj", 3, 0.1, "largest", False, None),  # ratio 3 with a caliper: some treated get fewer controls
    ("lpj", 3, 0.1, "smallest", False, ["race"]),
    ("psj", 2, None, "largest", True, None),
    ("lpj", 2, 0.1, "data", True, None),
]


def _r_list(values):
    return "NULL" if values is None else "c(" + ", ".join(f'"{v}"' for v in values) + ")"


@pytest.fixture(scope="module")
def lalonde_r():
    calls = []
    for dist, ratio, caliper, order, replace, exact in LALONDE_CASES:
        cal = "NULL" if caliper is None else repr(caliper)
        calls.append(
            f'matchit_matrix(lalonde, "treat", lalonde${dist}, ratio = {ratio}, caliper = {cal}, '
            f'order = "{order}", replace = {"TRUE" if replace else "FALSE"}, exact = {_r_list(exact)})'
        )
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
data("lalonde", package = "MatchIt")
f <- {FORMULA}
m_ps <- matchit(f, data = lalonde)
m_lp <- matchit(f, data = lalonde, link = "linear.logit")
lalonde$ps <- unname(m_ps$distance)
lalonde$lp <- unname(m_lp$distance)
jitter <- seq_len(nrow(lalonde)) / nrow(lalonde) * 1e-6
lalonde$psj <- lalonde$ps + jitter
lalonde$lpj <- lalonde$lp + jitter
glm_fit <- glm(f, data = lalonde, family = binomial())
scale2 <- function(d) 2^floor(log2(2^29 / max(abs(d))))
# std.caliper = TRUE inside MatchIt (not pre-multiplied): which SD MatchIt uses.
k_lp <- scale2(lalonde$lp)
m_std <- suppressWarnings(matchit(treat ~ 1, data = lalonde, distance = lalonde$lp * k_lp, caliper = 0.1,
                                  std.caliper = TRUE))
# m.order = "random": R's draw, for invariants only.
set.seed(20261205)
m_rand <- matchit(treat ~ 1, data = lalonde, distance = lalonde$ps * scale2(lalonde$ps), m.order = "random")
# summary(): 1:1 with a logit caliper (unit weights) and 1:1 with replacement (control weights != 1).
m_a <- suppressWarnings(matchit(f, data = lalonde, distance = lalonde$lp * k_lp, caliper = 0.2))
m_b <- matchit(f, data = lalonde, distance = lalonde$ps * scale2(lalonde$ps), replace = TRUE)
tab <- function(s) list(rows = rownames(s), mt = unname(s[, "Means Treated"]), mc = unname(s[, "Means Control"]),
                        smd = unname(s[, "Std. Mean Diff."]), vr = unname(s[, "Var. Ratio"]),
                        ecdf_max = unname(s[, "eCDF Max"]))
sa <- summary(m_a); sb <- summary(m_b)
result <- list(
  data = lalonde[, c("treat", "age", "educ", "race", "married", "nodegree", "re74", "re75",
                     "ps", "lp", "psj", "lpj")],
  rownames = rownames(lalonde),
  glm_coef = unname(coef(glm_fit)), glm_names = names(coef(glm_fit)),
  cases = list({", ".join(calls)}),
  std = list(match_matrix = matrix(as.integer(match(m_std$match.matrix, rownames(lalonde))),
                                   ncol = 1), weights = unname(m_std$weights)),
  rand_nn = list(rows = rownames(summary(m_rand)$nn), control = unname(summary(m_rand)$nn[, "Control"]),
                 treated = unname(summary(m_rand)$nn[, "Treated"])),
  w_a = unname(m_a$weights), w_b = unname(m_b$weights),
  sum_a_all = tab(sa$sum.all), sum_a_matched = tab(sa$sum.matched),
  sum_b_all = tab(sb$sum.all), sum_b_matched = tab(sb$sum.matched),
  matchit_version = as.character(packageVersion("MatchIt"))
)
"""
    out = run_r(code)
    data = pd.DataFrame(out["data"])
    data.index = pd.Index(out["rownames"])
    return out, data


def _lalonde_case_id(case):
    dist, ratio, caliper, order, replace, exact = case
    return f"{dist}-r{ratio}-cal{caliper}-{order}{'-replace' if replace else ''}{'-exact' if exact else ''}"


@pytest.mark.r
def test_lalonde_propensity_score_is_matchits_glm_distance(lalonde_r):
    out, data = lalonde_r
    ps = propensity_score(data, "treat", COVARIATES)
    # race is a text column here, expanded as R's factor (black first): raceblack is the baseline.
    assert list(ps.summary.index) == out["glm_names"]
    np.testing.assert_allclose(ps.summary["estimate"].to_numpy(), out["glm_coef"], rtol=1e-9)
    # MatchIt's distance = "glm" is fitted(glm); link = "linear.logit" is its linear predictor.
    np.testing.assert_allclose(ps.score.to_numpy(), data["ps"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ps.linear.to_numpy(), data["lp"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert ps.score.index.equals(data.index)


@pytest.mark.r
@pytest.mark.parametrize("case_number", range(len(LALONDE_CASES)), ids=[_lalonde_case_id(c) for c in LALONDE_CASES])
def test_lalonde_nearest_equals_matchit(lalonde_r, case_number):
    out, data = lalonde_r
    dist, ratio, caliper, order, replace, exact = LALONDE_CASES[case_number]
    expected = out["cases"][case_number]
    result = _quiet_match(data, "treat", dist, ratio=ratio, caliper=caliper, order=order, replace=replace, exact=exact)
    _assert_same_match(result, expected, data, _lalonde_case_id(LALONDE_CASES[case_number]))
    if caliper is not None:
        assert result.caliper_distance == pytest.approx(expected["caliper_distance"], rel=1e-14)
        assert (result.pairs["difference"] <= result.caliper_distance).all()
    # Matched rows are labelled as in lalonde (NSW.../PSID...), as match.data() keeps row names.
    assert set(result.matched.index) <= set(data.index)


@pytest.mark.r
def test_lalonde_default_match_is_matchits_documented_default(lalonde_r):
    out, data = lalonde_r
    # matchit(treat ~ ..., data = lalonde): glm propensity score, 1:1, largest first, no caliper.
    ps = propensity_score(data, "treat", COVARIATES)
    result = _quiet_match(data, "treat", ps.score)
    _assert_same_match(result, out["cases"][0], data)
    assert result.counts.loc["Matched", "Treated"] == 185 and result.counts.loc["Matched", "Control"] == 185
    # The first pairs as MatchIt's own snapshot (tests/testthat/_snaps/nearest_snapshots.md, baseline) lists
    # them; NSW8, NSW16 and NSW27 are decided by MatchIt's tie rule (equal distances among PSID controls).
    expected = {
        "NSW1": "PSID300",
        "NSW2": "PSID205",
        "NSW3": "PSID41",
        "NSW8": "PSID374",
        "NSW10": "PSID344",
        "NSW16": "PSID373",
        "NSW27": "PSID392",
        "NSW42": "PSID275",
    }
    assert {t: result.match_matrix.loc[t, 1] for t in expected} == expected


@pytest.mark.r
def test_std_caliper_uses_the_sd_of_the_distance_over_all_units(lalonde_r):
    out, data = lalonde_r
    # MatchIt's own std.caliper = TRUE (caliper 0.1 SD of the logit), not a pre-multiplied caliper.
    result = _quiet_match(data, "treat", "lp", caliper=0.1)
    assert result.caliper_distance == pytest.approx(0.1 * data["lp"].std(ddof=1), rel=1e-15)
    treated_positions = list(np.flatnonzero(data["treat"].to_numpy() == 1))
    assert _sets(result) == _r_sets(out["std"]["match_matrix"], treated_positions)
    np.testing.assert_allclose(result.weights.to_numpy(), out["std"]["weights"], rtol=1e-12)
    # std_caliper=False: the same number in raw distance units gives the same match.
    raw = _quiet_match(data, "treat", "lp", caliper=result.caliper_distance, std_caliper=False)
    assert _sets(raw) == _sets(result)


@pytest.mark.r
def test_caliper_scale_matters_logit_versus_propensity(lalonde_r):
    out, data = lalonde_r
    on_logit = _quiet_match(data, "treat", "lp", caliper=0.2)
    on_ps = _quiet_match(data, "treat", "ps", caliper=0.2)
    # Both equal MatchIt (cases 3 and 4) and they are not the same match: the scale is part of the option.
    _assert_same_match(on_logit, out["cases"][3], data)
    _assert_same_match(on_ps, out["cases"][4], data)
    assert _sets(on_logit) != _sets(on_ps)


@pytest.mark.r
def test_random_order_invariants(lalonde_r):
    out, data = lalonde_r
    # R's sample.int draw cannot be reproduced; what MatchIt guarantees for any order must hold.
    runs = [_quiet_match(data, "treat", "ps", order="random", random_state=s) for s in (1, 2)]
    for result in runs:
        # Without a caliper and with more controls than treated, every order matches everyone (as R did).
        np.testing.assert_allclose(result.counts.loc[out["rand_nn"]["rows"], "Treated"], out["rand_nn"]["treated"])
        np.testing.assert_allclose(result.counts.loc[out["rand_nn"]["rows"], "Control"], out["rand_nn"]["control"])
        assert result.pairs["control"].is_unique  # without replacement
    again = _quiet_match(data, "treat", "ps", order="random", random_state=1)
    assert _sets(again) == _sets(runs[0])
    assert _sets(runs[0]) != _sets(runs[1])  # the order matters when controls compete


def _summary_frame(table) -> pd.DataFrame:
    return pd.DataFrame(
        {"mt": table["mt"], "mc": table["mc"], "smd": table["smd"], "vr": table["vr"], "ecdf_max": table["ecdf_max"]},
        index=table["rows"],
    )


def _our_rows(bal: pd.DataFrame) -> pd.DataFrame:
    # MatchIt names factor levels "raceblack"; balance() names them "race = black". Two-level 0/1 as is.
    renamed = bal.rename(index=lambda s: s.replace(" = ", ""))
    return renamed


@pytest.mark.r
@pytest.mark.parametrize("case", ["a", "b"])
def test_summary_balance_table_equals_matchit(lalonde_r, case):
    out, data = lalonde_r
    weights = pd.Series(out[f"w_{case}"], index=data.index)
    # Our own match gives the same weights (case a: 1:1 with a 0.2 SD logit caliper; b: with replacement).
    ours = (
        _quiet_match(data, "treat", "lp", caliper=0.2)
        if case == "a"
        else _quiet_match(data, "treat", "ps", replace=True)
    )
    np.testing.assert_allclose(ours.weights.to_numpy(), weights.to_numpy(), rtol=1e-12)
    for sample, w in (("all", None), ("matched", ours.weights)):
        theirs = _summary_frame(out[f"sum_{case}_{sample}"]).drop(index="distance")
        bal = _our_rows(balance(data, "treat", COVARIATES, weights=w, smd_denominator="treated"))
        # balance shows every level of a 3-level factor, like summary(); same rows, same order.
        assert list(bal.index) == list(theirs.index)
        np.testing.assert_allclose(bal["mean_treated"], theirs["mt"], rtol=1e-12)
        np.testing.assert_allclose(bal["mean_control"], theirs["mc"], rtol=1e-12)
        # Std. Mean Diff.: signed, over the SD of the treated in the full sample (sqrt(p(1-p)) if binary).
        np.testing.assert_allclose(bal["smd_signed"], theirs["smd"], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(bal["ks"], theirs["ecdf_max"], rtol=1e-10, atol=1e-13)
        continuous = bal["type"] == "continuous"
        assert list(continuous[continuous].index) == ["age", "educ", "re74", "re75"]
        assert np.isnan(theirs.loc[~continuous.to_numpy(), "vr"].astype(float)).all()
        if case == "a" or sample == "all":
            # With unit weights the variance ratio is the ordinary one in both.
            np.testing.assert_allclose(bal.loc[continuous, "variance_ratio"], theirs.loc[continuous, "vr"], rtol=1e-10)
        else:
            # With unequal weights MatchIt's weighted variance uses sum(w)/(sum(w)^2 - sum(w^2)), ours survey's
            # n/(n - 1) (tableone): documented difference, same direction.
            ratio = bal.loc[continuous, "variance_ratio"] / theirs.loc[continuous, "vr"]
            assert ((ratio > 0.5) & (ratio < 2)).all()


@pytest.mark.r
def test_pooled_and_treated_denominators_differ_only_in_the_smd(lalonde_r):
    _, data = lalonde_r
    pooled = balance(data, "treat", COVARIATES)
    treated = balance(data, "treat", COVARIATES, smd_denominator="treated")
    for column in ("mean_treated", "mean_control", "sd_treated", "sd_control", "variance_ratio", "ks"):
        pd.testing.assert_series_equal(pooled[column], treated[column])
    sd_t = data.loc[data["treat"] == 1, "age"].std(ddof=1)
    diff = pooled.loc["age", "mean_treated"] - pooled.loc["age", "mean_control"]
    assert treated.loc["age", "smd_signed"] == pytest.approx(diff / sd_t, rel=1e-13)
    assert pooled.loc["age", "smd"] != pytest.approx(treated.loc["age", "smd"], rel=1e-3)
    both = balance_before_after(data, "treat", COVARIATES, data["treat"] * 0 + 1.0, smd_denominator="treated")
    np.testing.assert_allclose(both.loc[both["sample"] == "before", "smd"], treated["smd"])


# ------------------------------------------------------------------ random data with ties, live


@pytest.mark.r
def test_ties_follow_matchits_vector_path_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    # A dyadic grid (multiples of 1/16): many equal distances and equal differences, all exact in binary.
    d = rng.integers(0, 48, n) / 16.0
    df = pd.DataFrame({"treat": (rng.random(n) < 0.3).astype(int), "d": d, "g": rng.integers(0, 2, n)})
    configs = [
        ("largest", False, None, None),
        ("smallest", False, 0.05, None),
        ("data", False, None, ["g"]),
        ("largest", True, None, None),
        ("largest", False, 0.1, ["g"]),
    ]
    calls = ", ".join(
        f'matchit_matrix(df, "treat", df$d, ratio = 1, caliper = {"NULL" if c is None else c}, order = "{o}", '
        f"replace = {'TRUE' if r else 'FALSE'}, exact = {_r_list(e)})"
        for o, r, c, e in configs
    )
    out = run_r(f'source("{HELPER}")\nresult <- list({calls})', {"df": df})
    for (order, replace, caliper, exact), expected in zip(configs, out, strict=True):
        try:
            result = _quiet_match(df, "treat", "d", caliper=caliper, order=order, replace=replace, exact=exact)
        except InputError:
            assert all(all(v is None for v in row) for row in expected["match_matrix"]), f"seed={seed}"
            continue
        _assert_same_match(result, expected, df, f"seed={seed} order={order} replace={replace} cal={caliper}")


# ------------------------------------------------------------------ what we refuse, and how


@pytest.fixture
def small():
    rng = np.random.default_rng(7)
    n = 80
    return pd.DataFrame(
        {"treat": (rng.random(n) < 0.3).astype(int), "x": rng.normal(size=n), "g": rng.choice(["a", "b"], n)}
    )


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"method": "optimal"}, ["method='optimal'", "nearest"]),
        ({"method": "full"}, ["method='full'", "nearest"]),
        ({"method": "genetic"}, ["method='genetic'", "nearest"]),
        ({"estimand": "ATE"}, ["estimand='ATE'", "ATT"]),
        ({"estimand": "ATO"}, ["estimand='ATO'", "ATT or the ATC"]),
    ],
)
def test_unsupported_matchit_options_are_refused_by_name(small, kwargs, fragments):
    with pytest.raises(InputError) as err:
        _quiet_match(small, "treat", "x", **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize("name", ["glm", "gbm", "lasso"])
def test_matchit_distance_names_are_refused_with_what_to_pass(small, name):
    with pytest.raises(InputError, match=rf"distance='{name}'.*not supported.*propensity_score"):
        _quiet_match(small, "treat", name)


@pytest.mark.parametrize("name", ["mahalanobis", "robust_mahalanobis", "euclidean", "scaled_euclidean"])
def test_covariate_distances_need_their_covariates(small, name):
    with pytest.raises(InputError, match=rf"distance='{name}' is computed from covariates: pass covariates="):
        _quiet_match(small, "treat", name)


def test_a_column_named_like_a_matchit_distance_is_still_a_column(small):
    data = small.assign(glm=small["x"])
    assert _sets(_quiet_match(data, "treat", "glm")) == _sets(_quiet_match(small, "treat", "x"))


@pytest.mark.parametrize("value", [0, 1])
def test_all_treated_or_none(small, value):
    data = small.assign(treat=value)
    for call in (
        lambda: propensity_score(data, "treat", ["x"]),
        lambda: _quiet_match(data, "treat", "x"),
        lambda: balance(data, "treat", ["x"]),
    ):
        with pytest.raises(InputError, match=r"single value .* no treated or no control"):
            call()


def test_one_treated_unit_gets_its_nearest_control(small):
    data = small.assign(treat=0)
    data.loc[5, "treat"] = 1
    ps = propensity_score(data, "treat", ["x"])
    result = _quiet_match(data, "treat", ps.linear)
    controls = np.flatnonzero(data["treat"].to_numpy() == 0)
    nearest = controls[np.argmin(np.abs(ps.linear.to_numpy()[controls] - ps.linear[5]))]
    assert result.match_matrix.loc[5, 1] == data.index[nearest]
    assert result.counts.loc["Matched", "Treated"] == 1


def test_separation_warns_naming_the_covariate_and_a_caliper_then_refuses(small):
    data = small.copy()
    data["x"] = np.where(data["treat"] == 1, 10 + data["x"].abs(), -data["x"].abs())
    with pytest.warns(ModelWarning, match=r"numerically 0 or 1 .*\['x'\]"):
        ps = propensity_score(data, "treat", ["x"])
    assert ps.notes and "'x'" in ps.notes[0]
    # Scores pinned at 0 and 1 by glm's clamping: no control is within 0.2 SD of any treated unit.
    assert ps.score[data["treat"] == 1].min() > 1 - 1e-8
    with pytest.raises(InputError, match="no treated unit has a control within the caliper"):
        _quiet_match(data, "treat", ps.linear, caliper=0.2)


def test_missing_covariate_is_named_with_its_count(small):
    data = small.copy()
    data.loc[[3, 9, 11], "x"] = np.nan
    with pytest.raises(InputError, match=r"'x' has 3 missing"):
        propensity_score(data, "treat", ["x", "g"])
    with pytest.raises(InputError, match=r"'x': 3"):
        balance(data, "treat", ["x"])


def test_level_found_in_one_arm_only_is_named(small):
    data = small.copy()
    data.loc[data["treat"] == 1, "g"] = "a"
    with pytest.warns(ModelWarning, match=r"separates the arms.*\['gb'\]"):
        ps = propensity_score(data, "treat", ["x", "g"])
    # The MLE of that coefficient is -infinity; glm stops where its deviance criterion says, far out.
    assert ps.summary.loc["gb", "estimate"] < -10


def test_caliper_so_small_nobody_matches(small):
    with pytest.raises(InputError, match=r"no treated unit has a control within the caliper.*wider"):
        match_nearest(small, "treat", "x", caliper=1e-12)


def test_ratio_larger_than_the_controls_available_warns_and_uses_them_all(small):
    n0 = int((small["treat"] == 0).sum())
    with pytest.warns(ModelWarning, match=r"ratio=40 asks for more controls than there are") as record:
        result = match_nearest(small, "treat", "x", ratio=40, caliper=5)
    assert not any(str(n0) in str(w.message) for w in record)  # no counts (small cells) in the text
    assert result.counts.loc["Matched", "Control"] == n0
    per_treated = result.pairs.groupby("treated").size()
    assert per_treated.max() > per_treated.min()  # some treated units got fewer controls
    assert result.pairs["control"].is_unique


def test_duplicate_index_labels_are_refused(small):
    data = small.copy()
    data.index = [0, 0, *range(2, len(data))]
    with pytest.raises(InputError, match=r"1 duplicate label\(s\) among 80 rows.*reset_index") as err:
        _quiet_match(data, "treat", "x")
    assert "[0]" not in str(err.value)  # labels may be identifiers: not echoed
    with pytest.raises(InputError, match="duplicate label"):
        balance(data, "treat", ["x"])


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ([1, 2], "not 0/1; pass treated="),
        ([0, 0.5], "not 0/1; pass treated="),
        ([0, 1, 2], "must be two-valued"),
    ],
)
def test_non_binary_treatment(small, values, fragment):
    data = small.assign(treat=np.resize(values, len(small)))
    for call in (lambda: propensity_score(data, "treat", ["x"]), lambda: _quiet_match(data, "treat", "x")):
        with pytest.raises(InputError, match=fragment):
            call()


def test_treated_value_given_explicitly_for_a_1_2_coding(small):
    recoded = small.assign(treat=small["treat"] + 1)
    ours = _quiet_match(recoded, "treat", "x", treated=2, caliper=0.5)
    assert _sets(ours) == _sets(_quiet_match(small, "treat", "x", caliper=0.5))


def test_bad_smd_denominator_names_the_choices(small):
    with pytest.raises(InputError, match=r"smd_denominator='control'.*\['pooled', 'treated'\]"):
        balance(small, "treat", ["x"], smd_denominator="control")


def test_heavy_ties_stay_fast():
    # 16 distinct distances (a propensity model of categorical covariates only): the kernels used to walk
    # the tied controls for every treated unit (about 25 s here with replacement); now binary searches.
    rng = np.random.default_rng(11)
    n = 100_000
    data = pd.DataFrame({"treat": (rng.random(n) < 0.3).astype(int), "d": rng.integers(0, 16, n) / 16.0})
    _quiet_match(data.iloc[:500], "treat", "d", replace=True)  # compile outside the clock
    start = time.perf_counter()
    result = _quiet_match(data, "treat", "d", replace=True, ratio=2)
    assert time.perf_counter() - start < 8.0
    assert result.counts.loc["Matched", "Treated"] == (data["treat"] == 1).sum()
    # Every treated unit's controls sit at its own distance (16 values, ~4,000 controls each).
    assert (result.pairs["difference"] == 0).all()


# ------------------------------------------------------------------ the MatchIt 4.5.1 ratio > 1 slip, live


def _vector_path(d, is_treated, ratio, caliper, processing, slip):
    """MatchIt's vector-path loop; ``slip=True`` adds its index slip: in rounds after the first a treated
    unit also skips the control right after (0-based data position + 1) each control it already has."""
    order = np.argsort(d, kind="stable")
    where = np.empty(len(d), dtype=int)
    where[order] = np.arange(len(d))
    treated = np.flatnonzero(is_treated)
    matches = np.full((len(treated), ratio), -1)
    used: set = set()
    for k in range(ratio):
        for i in processing:
            t = treated[i]
            if k > 0 and matches[i, k - 1] < 0:
                continue
            own = set(matches[i, :k])
            skip = own | ({c + 1 for c in own} if slip else set())

            def scan(step, t=t, skip=skip):
                j = where[t] + step
                while 0 <= j < len(d):
                    c = order[j]
                    if not is_treated[c] and c not in used and c not in skip:
                        return c if abs(d[c] - d[t]) <= caliper else -1
                    j += step
                return -1

            left, right = scan(-1), scan(1)
            best = left if left >= 0 and (right < 0 or abs(d[left] - d[t]) <= abs(d[right] - d[t])) else right
            if best >= 0:
                matches[i, k] = best
                used.add(best)
    return matches


@pytest.mark.r
def test_matchit_451_ratio_above_one_differs_only_by_its_index_slip():
    # A fixed draw (it was seeded from the clock, and on a few draws in a hundred the slip changed nothing, so the
    # test failed by chance); this one shows the slip, and every seed is checked the same way.
    seed = 20251205
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 300))
    df = pd.DataFrame({"treat": (rng.random(n) < 0.35).astype(int), "d": rng.normal(size=n)})
    # Rows in distance order: a unit's next-nearest control is then often the row after its first one,
    # exactly the control the slip skips, so the difference shows on every draw.
    df = df.sort_values("d").reset_index(drop=True)
    configs = [(2, None), (3, 0.25)]
    calls = ", ".join(
        "{ m <- suppressWarnings(matchit(treat ~ 1, data = df, distance = df$d * k, ratio = "
        f"{r}, caliper = {'NULL' if c is None else f'{c} * sd(df$d) * k'}, std.caliper = FALSE)); "
        "matrix(as.integer(m$match.matrix), nrow = nrow(m$match.matrix)) }"
        for r, c in configs
    )
    code = (
        "suppressPackageStartupMessages(library(MatchIt))\n"
        "k <- 2^floor(log2(2^29 / max(abs(df$d))))\n"
        f"result <- list({calls})"
    )
    out = run_r(code, {"df": df})
    d = df["d"].to_numpy()
    is_treated = df["treat"].to_numpy() == 1
    processing = np.argsort(-d[is_treated], kind="stable")
    slipped_somewhere = False
    for (ratio, caliper), r_mm in zip(configs, out, strict=True):
        cal = np.inf if caliper is None else caliper * df["d"].std(ddof=1)
        theirs = np.array([[-1 if v is None else v - 1 for v in row] for row in r_mm])
        with_slip = _vector_path(d, is_treated, ratio, cal, processing, slip=True)
        np.testing.assert_array_equal(with_slip, theirs, err_msg=f"seed={seed} ratio={ratio}")
        ours = _quiet_match(df, "treat", "d", ratio=ratio, caliper=caliper)
        got = ours.match_matrix.map(lambda v: -1 if v is pd.NA else v).to_numpy(dtype=int)
        np.testing.assert_array_equal(got, _vector_path(d, is_treated, ratio, cal, processing, slip=False))
        slipped_somewhere |= not np.array_equal(got, theirs)
    assert slipped_somewhere, f"seed={seed}: MatchIt's slip changed nothing on this draw"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(np.nan, r"'z' has 50 missing"), (np.inf, r"'z' has 50 infinite"), (-np.inf, r"'z' has 50 infinite")],
)
def test_matchit_inputs_missing_and_infinite_covariates(value, fragment):
    # MatchIt's test-matchit_inputs.R: NA, NaN, Inf and -Inf in a covariate are errors, not dropped rows.
    rng = np.random.default_rng(3254)
    data = pd.DataFrame({"treat": rng.integers(0, 2, 100), "x1": rng.normal(size=100)})
    data["z"] = np.r_[np.full(50, value), rng.normal(size=50)]
    with pytest.raises(InputError, match=fragment):
        propensity_score(data, "treat", ["x1", "z"])
    with pytest.raises(InputError, match=r"no column\(s\) \['abc'\]"):
        propensity_score(data, "treat", ["abc", "x1"])
    with pytest.raises(InputError, match=r"missing values in exact-matching column\(s\) \{'e': 2\}"):
        _quiet_match(data.assign(e=[None, None] + ["a"] * 98), "treat", "x1", exact="e")
