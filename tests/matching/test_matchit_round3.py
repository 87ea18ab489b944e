"""Variable-ratio matching, summary(standardize = FALSE), s.weights in the propensity model, reestimate.

All against MatchIt 4.5.1 live, in one R process (tests/matching/matchit_round3.R): on lalonde (MatchIt's
own data and documented examples) and on a simulated set. Variable-ratio matches are made by matchit() itself
with only its innermost kernel swapped for its own distance-matrix kernel (see matchit_round3.R for why), on
distances made tie-free by adding k * 2^-40 to unit k (the same numbers on both sides).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError, ModelWarning
from retrocohort.matching import get_matches, match_data, match_nearest, match_summary, propensity_score
from tests.matching.test_matchit_options import _assert_same, _assert_same_summary, _frame
from tests.rlive import run_r

HELPER = (Path(__file__).parent / "matchit_round3.R").as_posix()
LALONDE = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]
SIM = ["x1", "x2", "g", "b"]

# name -> (data set, matchit() arguments as R text, our keyword arguments)
CASES: dict[str, tuple[str, str, dict]] = {
    "vr-2-max3": ("lalonde", "ratio = 2, max.controls = 3", {"ratio": 2, "max_controls": 3}),
    "vr-2.5-min2-max4": (
        "lalonde",
        "ratio = 2.5, min.controls = 2, max.controls = 4",
        {"ratio": 2.5, "min_controls": 2, "max_controls": 4},
    ),
    "vr-caliper": (
        "lalonde",
        "ratio = 2, max.controls = 4, caliper = 0.2",
        {"ratio": 2, "max_controls": 4, "caliper": 0.2},
    ),
    "vr-discard-both": (
        "lalonde",
        'ratio = 2, max.controls = 3, discard = "both"',
        {"ratio": 2, "max_controls": 3, "discard": "both"},
    ),
    "vr-replace": (
        "lalonde",
        "ratio = 2, max.controls = 3, replace = TRUE",
        {"ratio": 2, "max_controls": 3, "replace": True},
    ),
    "vr-exact": (
        "lalonde",
        "ratio = 2, max.controls = 3, exact = ~ married",
        {"ratio": 2, "max_controls": 3, "exact": ["married"]},
    ),
    "vr-smallest": (
        "lalonde",
        'ratio = 3, max.controls = 5, m.order = "smallest"',
        {"ratio": 3, "max_controls": 5, "order": "smallest"},
    ),
    "vr-atc": ("lalonde", 'ratio = 1.5, max.controls = 3, estimand = "ATC"', {"ratio": 1.5, "max_controls": 3}),
    "fixed-2": ("lalonde", "ratio = 2", {"ratio": 2}),
    "sim-vr": ("sim", "ratio = 2, max.controls = 4", {"ratio": 2, "max_controls": 4}),
    "sim-vr-exact-caliper": (
        "sim",
        "ratio = 2.2, max.controls = 3, exact = ~ g, caliper = 0.3",
        {"ratio": 2.2, "max_controls": 3, "exact": ["g"], "caliper": 0.3},
    ),
    "sim-vr-atc-caliper": (
        "sim",
        'ratio = 1.5, max.controls = 2, estimand = "ATC", caliper = 0.25',
        {"ratio": 1.5, "max_controls": 2, "caliper": 0.25},
    ),
}
for _name, (_, _r, _ours) in CASES.items():
    if "ATC" in _r:
        _ours["estimand"] = "ATC"


def _sim_frame() -> pd.DataFrame:
    rng = np.random.default_rng(20261205)
    n = 500
    x1, x2 = rng.normal(size=n), rng.gamma(2.0, size=n)
    g = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    b = rng.integers(0, 2, n)
    lin = -0.6 + 0.8 * x1 - 0.3 * x2 + 0.5 * (g == "b") + 0.4 * b
    treat = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    # Only 3 distinct values of x3: MatchIt's eQQ takes its few-values branch for it.
    x3 = rng.integers(0, 3, n)
    return pd.DataFrame({"treat": treat, "x1": x1, "x2": x2, "g": g, "b": b, "x3": x3})


def _sim_matrix(sim: pd.DataFrame) -> pd.DataFrame:
    # A distance of our own choosing (treated x control, data order): MatchIt takes it as it is.
    t = sim["treat"].to_numpy() == 1
    a = sim[["x1", "x2"]].to_numpy() * [1.0, 0.5]
    return pd.DataFrame(np.sqrt(((a[t][:, None, :] - a[~t][None, :, :]) ** 2).sum(axis=2)))


@pytest.fixture(scope="module")
def r_round3():
    sim = _sim_frame()
    tie_free = "+ seq_len(nrow({0})) * 2^-40"
    calls = []
    for name, (which, args, _) in CASES.items():
        frame = "df" if which == "lalonde" else "sim"
        rhs = " + ".join(LALONDE if which == "lalonde" else SIM)
        addl = 'addl = "x3"' if which == "sim" else "addl = NULL"
        calls.append(f'`{name}` = match_case({frame}, "{rhs}", {frame}$d, {args}, {addl})')
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
data("lalonde", package = "MatchIt")
df <- lalonde
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
df$d <- unname(fitted(glm(f, binomial, df))) {tie_free.format("df")}
sim$g <- factor(sim$g)
sim$d <- unname(fitted(glm(treat ~ x1 + x2 + g + b, binomial, sim))) {tie_free.format("sim")}
cases <- list({", ".join(calls)})
# s.weights enter MatchIt's propensity model as glm's prior weights.
sw <- seq(0.5, 2, length.out = nrow(df))
msw <- matchit(f, data = df, s.weights = sw)
fit <- suppressWarnings(glm(f, binomial, df, weights = sw))
sfit <- coef(summary(fit))
swp <- list(distance = unname(msw$distance), coef = unname(sfit[, 1]), se = unname(sfit[, 2]),
            terms = rownames(sfit), deviance = fit$deviance, null_deviance = fit$null.deviance, aic = fit$aic,
            nn = tab3(summary(msw)$nn))
fitp <- suppressWarnings(glm(f, binomial(link = "probit"), df, weights = sw))
swp$probit <- list(coef = unname(coef(fitp)), se = unname(coef(summary(fitp))[, 2]), aic = fitp$aic,
                   deviance = fitp$deviance, fitted = unname(fitted(fitp)))
# reestimate = TRUE: the score refitted on the units kept after discard.
mre <- matchit(f, data = df, discard = "both", reestimate = TRUE, caliper = 0.2)
mno <- matchit(f, data = df, discard = "both", caliper = 0.2)
re <- list(distance = unname(mre$distance), discarded = unname(mre$discarded), caliper = unname(mre$caliper),
           distance_no = unname(mno$distance))
# Given distance matrices (treated x control, made in Python), robust Mahalanobis, unit.id.
dm <- unname(as.matrix(dm))
sim$unit <- ifelse(sim$treat == 1, seq_len(nrow(sim)), 10000 + seq_len(nrow(sim)) %/% 3)
robust_fixed <- fix_robust()
rhs <- "x1 + x2 + g + b"
more <- list(
  `matrix` = match_case(sim, rhs, dm),
  `matrix-ratio2-caliper-exact` = match_case(sim, rhs, dm, ratio = 2, caliper = 0.5, std.caliper = FALSE,
                                             exact = ~ g),
  # MatchIt 4.5.1 does not transpose a (treated x control) matrix for the ATC, and its kernel then reads the
  # matrix as control x treated, out of its bounds; the ATC is checked as the ATT with the arms swapped.
  `matrix-swapped` = match_case(transform(sim, treat = 1 - treat), rhs, t(dm)),
  `robust` = match_case(df, "age + educ + re74 + re75", "robust_mahalanobis"),
  `robust-ratio2-exact` = match_case(sim, "x1 + x2 + x3", "robust_mahalanobis", ratio = 2, exact = ~ b),
  `unit-ps` = match_case(sim, rhs, sim$d, ratio = 2, unit.id = ~ unit),
  `unit-mahal` = match_case(sim, rhs, "mahalanobis", unit.id = ~ unit),
  `unit-reuse` = match_case(sim, rhs, sim$d, reuse.max = 2, unit.id = ~ unit),
  # scaled_euclidean with a 0/1 covariate (MatchIt's pooled SD differs for it), with and without s.weights.
  `scaled-binary` = match_case(sim, "x1 + x2 + b", "scaled_euclidean"),
  `scaled-binary-sw` = match_case(sim, "x1 + x2 + b", "scaled_euclidean",
                                  s.weights = seq(0.5, 2, length.out = nrow(sim)))
)
xs <- as.matrix(sim[c("x1", "x2", "b")])
psd <- list(plain = unname(MatchIt:::pooled_sd(xs, sim$treat)),
            weighted = unname(MatchIt:::pooled_sd(xs, sim$treat, w = seq(0.5, 2, length.out = nrow(sim)))))
result <- list(lalonde = df, sim = sim, cases = cases, swp = swp, re = re, more = more,
               robust_fixed = robust_fixed, psd = psd)
"""
    out = run_r(code, {"sim": sim, "dm": _sim_matrix(sim)})
    return out, pd.DataFrame(out["lalonde"]), pd.DataFrame(out["sim"])


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(*args, **kwargs)


def _assert_frame(ours: pd.DataFrame, table: dict, msg: str) -> None:
    theirs = _frame(table)
    assert list(ours.index) == list(theirs.index), msg
    assert list(ours.columns) == list(theirs.columns), msg
    np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(theirs.to_numpy()), err_msg=msg)
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-10, atol=1e-12, err_msg=msg)


@pytest.mark.r
@pytest.mark.parametrize("name", list(CASES))
def test_variable_ratio_and_raw_summary_equal_matchit(r_round3, name):
    out, lalonde, sim = r_round3
    which, _, kwargs = CASES[name]
    data = lalonde if which == "lalonde" else sim
    covariates = LALONDE if which == "lalonde" else SIM
    expected = out["cases"][name]
    result = _quiet(data, "treat", data["d"].to_numpy(), **kwargs)
    _assert_same(result, expected, name)
    # match.data() / get_matches(): rows, ids in MatchIt's order, weights.
    md = match_data(result, data)
    assert [data.index.get_loc(i) + 1 for i in md.index] == expected["md_rows"]
    np.testing.assert_allclose(md["weights"], expected["md_weights"], rtol=1e-12)
    gm = get_matches(result, data)
    if not kwargs.get("replace"):  # with replacement MatchIt orders a set's matches its own way (see docs)
        assert [data.index.get_loc(i) + 1 for i in gm["id"]] == expected["gm_ids"]
        np.testing.assert_allclose(gm["weights"], expected["gm_weights"], rtol=1e-12)
    # Bit-identical weights (the raw eQQ statistics compare cumulative weights exactly).
    np.testing.assert_array_equal(result.weights.to_numpy(), np.array([float(v) for v in expected["weights17"]]))
    # (Not lalonde's ATC: 185 treated units for 429 focal controls are all used in round 1.)
    if "max_controls" in kwargs and name != "vr-atc":
        # Units really get different numbers of matches, between min and max.
        per_unit = result.match_matrix.notna().sum(axis=1)
        assert per_unit.max() > per_unit[per_unit > 0].min(), name
        assert per_unit.max() <= kwargs["max_controls"]
    addl = ["x3"] if which == "sim" else None
    _assert_same_summary(match_summary(result, data, covariates, addlvariables=addl), expected, name)
    raw = match_summary(result, data, covariates, addlvariables=addl, standardize=False, improvement=True)
    assert raw.sum_all is not None and raw.reduction is not None
    _assert_frame(raw.sum_all, expected["raw_all"], f"{name} raw sum.all")
    _assert_frame(raw.sum_matched, expected["raw_matched"], f"{name} raw sum.matched")
    _assert_frame(raw.reduction, expected["raw_reduction"], f"{name} raw reduction")
    inter = match_summary(result, data, covariates, standardize=False, interactions=True, un=False)
    _assert_frame(inter.sum_matched, expected["raw_inter_matched"], f"{name} raw interactions")


@pytest.mark.r
def test_variable_ratio_allotment_follows_the_score(r_round3):
    # MatchIt: the treated units with the largest scores (treated mean > control mean) get min.controls, the
    # smallest max.controls, and the total is round(ratio * n1).
    _, lalonde, _ = r_round3
    m = _quiet(lalonde, "treat", lalonde["d"].to_numpy(), ratio=2, max_controls=3)
    per_unit = m.match_matrix.notna().sum(axis=1)
    assert int(per_unit.sum()) == round(2 * int(lalonde["treat"].sum()))
    d = lalonde["d"].reindex(per_unit.index)
    assert d[per_unit == 1].min() > d[per_unit == 3].max()
    assert m.options["min_controls"] == 1 and m.options["max_controls"] == 3 and m.options["ratio"] == 2.0


@pytest.mark.r
def test_s_weights_in_the_propensity_model_equal_glm_and_matchit(r_round3):
    out, lalonde, _ = r_round3
    expected = out["swp"]
    sw = np.linspace(0.5, 2, len(lalonde))
    fit = propensity_score(lalonde, "treat", LALONDE, weights=sw)
    assert list(fit.summary.index) == expected["terms"]
    np.testing.assert_allclose(fit.summary["estimate"], expected["coef"], rtol=1e-9)
    np.testing.assert_allclose(fit.summary["std_error"], expected["se"], rtol=1e-9)
    np.testing.assert_allclose(fit.score, expected["distance"], rtol=1e-9)
    assert fit.deviance == pytest.approx(expected["deviance"], rel=1e-10)
    assert fit.null_deviance == pytest.approx(expected["null_deviance"], rel=1e-10)
    assert fit.aic == pytest.approx(expected["aic"], rel=1e-10)
    # The unweighted fit differs: the weights are used.
    assert not np.allclose(propensity_score(lalonde, "treat", LALONDE).score, expected["distance"], rtol=1e-6)
    # The probit link with the same weights.
    probit = propensity_score(lalonde, "treat", LALONDE, link="probit", weights=sw)
    np.testing.assert_allclose(probit.summary["estimate"], expected["probit"]["coef"], rtol=1e-9)
    np.testing.assert_allclose(probit.summary["std_error"], expected["probit"]["se"], rtol=1e-9)
    np.testing.assert_allclose(probit.score, expected["probit"]["fitted"], rtol=1e-9)
    assert probit.aic == pytest.approx(expected["probit"]["aic"], rel=1e-10)
    assert probit.deviance == pytest.approx(expected["probit"]["deviance"], rel=1e-10)
    # ... and the match's ESS rows with the same weights are MatchIt's.
    m = _quiet(lalonde, "treat", fit.score, s_weights=sw)
    nn = _frame(expected["nn"])
    np.testing.assert_allclose(m.counts.loc["All (ESS)"], nn.loc["All (ESS)", ["Control", "Treated"]], rtol=1e-12)


@pytest.mark.r
def test_reestimate_is_a_refit_on_the_kept_units(r_round3):
    # MatchIt's reestimate = TRUE: discard on the first score, refit on the units kept, the kept units get the
    # new score (the discarded keep the old one), the caliper is in SDs of the new score over the kept units.
    out, lalonde, _ = r_round3
    expected = out["re"]
    first = propensity_score(lalonde, "treat", LALONDE)
    np.testing.assert_allclose(first.score, expected["distance_no"], rtol=1e-9)
    m0 = _quiet(lalonde, "treat", first.score, discard="both")
    kept = ~m0.discarded
    np.testing.assert_array_equal(m0.discarded.to_numpy(), expected["discarded"])
    refit = propensity_score(lalonde[kept], "treat", LALONDE)
    distance = first.score.copy()
    distance[kept] = refit.score
    np.testing.assert_allclose(distance, expected["distance"], rtol=1e-9)
    m = _quiet(lalonde, "treat", distance, discard=m0.discarded.to_numpy(), caliper=0.2)
    assert m.caliper_distance == pytest.approx(expected["caliper"], rel=1e-9)
    assert not np.allclose(distance, first.score)


MORE = {
    "matrix": {},
    "matrix-ratio2-caliper-exact": {"ratio": 2, "caliper": 0.5, "std_caliper": False, "exact": ["g"]},
    "matrix-swapped": {},
    "robust": {"covariates": ["age", "educ", "re74", "re75"]},
    "robust-ratio2-exact": {"covariates": ["x1", "x2", "x3"], "ratio": 2, "exact": ["b"]},
    "unit-ps": {"ratio": 2, "unit_id": "unit"},
    "unit-mahal": {"covariates": ["x1", "x2", "g", "b"], "unit_id": "unit"},
    "unit-reuse": {"reuse_max": 2, "unit_id": "unit"},
    "scaled-binary": {"covariates": ["x1", "x2", "b"]},
    "scaled-binary-sw": {"covariates": ["x1", "x2", "b"], "s_weights": "sw"},
}


@pytest.mark.r
@pytest.mark.parametrize("name", list(MORE))
def test_matrix_robust_and_unit_id_equal_matchit(r_round3, name):
    out, lalonde, sim = r_round3
    assert out["robust_fixed"] == 3  # the three substitutions of fix_robust() were made
    expected = out["more"][name]
    data = lalonde if name == "robust" else sim
    kwargs = dict(MORE[name])
    if name == "matrix-swapped":
        data = sim.assign(treat=1 - sim["treat"])
        distance = _sim_matrix(sim).to_numpy().T
    elif name.startswith("matrix"):
        distance = _sim_matrix(sim).to_numpy()
    elif name.startswith("robust"):
        distance = "robust_mahalanobis"
    elif name == "unit-mahal":
        distance = "mahalanobis"
    elif name.startswith("scaled"):
        distance = "scaled_euclidean"
        data = sim.assign(sw=np.linspace(0.5, 2, len(sim)))
    else:
        distance = sim["d"].to_numpy()
    result = _quiet(data, "treat", distance, **kwargs)
    _assert_same(result, expected, name)
    np.testing.assert_array_equal(result.weights.to_numpy(), np.array([float(v) for v in expected["weights17"]]))
    covariates = {
        "robust": ["age", "educ", "re74", "re75"],
        "robust-ratio2-exact": ["x1", "x2", "x3", "b"],
        "scaled-binary": ["x1", "x2", "b"],
        "scaled-binary-sw": ["x1", "x2", "b"],
    }.get(name, SIM)
    summary = match_summary(result, data, covariates)
    _assert_same_summary(summary, expected, name)
    if name.startswith("unit"):
        # No unit gives two control rows (the point of unit.id), and without it some would.
        controls = result.pairs["control"].map(sim["unit"])
        assert controls.is_unique if "reuse" not in name else controls.value_counts().max() <= 2
        kwargs.pop("unit_id")
        plain = _quiet(data, "treat", distance, **kwargs)
        assert not plain.pairs["control"].map(sim["unit"]).value_counts().max() <= (1 if "reuse" not in name else 2)
    if name == "matrix-swapped":
        # Our ATC on the unswapped data (the treated x control matrix transposed inside) is that match.
        atc = _quiet(sim, "treat", _sim_matrix(sim).to_numpy(), estimand="ATC")
        pd.testing.assert_series_equal(atc.weights, result.weights)
        pd.testing.assert_series_equal(atc.subclass, result.subclass)
        assert list(atc.pairs["control"]) == list(result.pairs["treated"])
    if name == "matrix":
        # The n x n form (rows and columns in data order) gives the same match, and pairs carry the matrix entry.
        t = sim["treat"].to_numpy() == 1
        full = np.full((len(sim), len(sim)), 99.0)
        full[np.ix_(t, ~t)] = distance
        same = _quiet(sim, "treat", full)
        pd.testing.assert_series_equal(same.weights, result.weights)
        first = result.pairs.iloc[0]
        pos_t = int(np.flatnonzero(sim.index[t] == first["treated"])[0])
        pos_c = int(np.flatnonzero(sim.index[~t] == first["control"])[0])
        assert first["difference"] == distance[pos_t, pos_c]


@pytest.mark.r
def test_scaled_euclidean_pooled_sds_are_matchits(r_round3):
    # MatchIt's pooled_sd: a 0/1 column pooled as sum s_a (1 - s_a / n_a) / n, others over n - 2 (or weighted);
    # the matches above rarely depend on it (only near-ties do), so the SDs themselves are compared.
    from retrocohort.matching.nearest import _pooled_variances

    out, _, sim = r_round3
    x = sim[["x1", "x2", "b"]].to_numpy(dtype=float)
    t = sim["treat"].to_numpy() == 1
    np.testing.assert_allclose(np.sqrt(_pooled_variances(x, t, None)), out["psd"]["plain"], rtol=1e-12)
    w = np.linspace(0.5, 2, len(sim))
    np.testing.assert_allclose(np.sqrt(_pooled_variances(x, t, w)), out["psd"]["weighted"], rtol=1e-12)


# ------------------------------------------------------------------ bad arguments (no R)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(1)
    n = 60
    return pd.DataFrame({"treat": np.r_[np.ones(15, int), np.zeros(45, int)], "d": rng.random(n), "x": rng.random(n)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 2.5}, "must be a whole number"),
        ({"ratio": 2, "min_controls": 1}, "without max_controls"),
        ({"ratio": 1, "max_controls": 3}, "greater than 1"),
        ({"ratio": 3, "max_controls": 3}, "must be greater than ratio"),
        ({"ratio": 2, "max_controls": 3, "min_controls": 2}, "must be less than ratio"),
        ({"ratio": 2, "max_controls": 3, "min_controls": 0}, "must be >= 1"),
        ({"ratio": 2, "max_controls": "3"}, "finite numbers"),
        ({"ratio": 2, "max_controls": float("nan")}, "finite numbers"),
        ({"ratio": 0.5}, ">= 1"),
        ({"ratio": True}, ">= 1"),
    ],
)
def test_variable_ratio_arguments_are_checked(small, kwargs, message):
    with pytest.raises(InputError, match=message):
        _quiet(small, "treat", "d", **kwargs)


def test_variable_ratio_needs_a_propensity_score(small):
    with pytest.raises(InputError, match="allots matches by the propensity score"):
        _quiet(small, "treat", "mahalanobis", covariates=["x"], ratio=2, max_controls=3)


def test_variable_ratio_that_cannot_be_allotted_is_refused(small):
    # 15 treated, ratio 2.95 with max 3: round(44.25) = 44 matches need kmax = 14.5 -> 15 units at 3 (MatchIt:
    # rep() with a negative count, an R error).
    with pytest.raises(InputError, match="cannot be allotted"):
        _quiet(small, "treat", "d", ratio=2.95, max_controls=3)


def test_variable_ratio_total_and_bounds(small):
    # 15 treated, round(37.5) = 38 (half to even): kmax = floor((38 - 2 * 14) / 2) = 5 units get 4, 9 get 2 and the
    # remainder 0 becomes 1, taken from the next unit (a 4 -> 3): MatchIt's allotment, below min_controls once.
    m = _quiet(small, "treat", "d", ratio=2.5, min_controls=2, max_controls=4)
    per_unit = m.match_matrix.notna().sum(axis=1)
    assert sorted(per_unit) == [1] + [2] * 9 + [3] + [4] * 4
    assert m.match_matrix.shape[1] == 4
    # Every control used once: without replacement.
    assert m.pairs["control"].is_unique


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.r_[np.ones(59), -1.0], "negative"),
        (np.r_[np.ones(59), np.nan], "missing"),
        (np.ones(10), "one value per row"),
        (np.r_[np.zeros(15), np.ones(45)], "0 for every unit of one arm"),
        ("nope", "not found"),
        (pd.Series(np.ones(60), index=np.arange(60) + 100), "not indexed like data"),
        (np.array(["a"] * 60), "must be numbers"),
    ],
)
def test_propensity_weights_are_checked(small, weights, message):
    with pytest.raises(InputError, match=message):
        propensity_score(small, "treat", ["x"], weights=weights)


def test_zero_weight_units_are_left_out_of_the_fit_but_scored(small):
    w = np.r_[np.ones(50), np.zeros(10)]
    full = propensity_score(small, "treat", ["x"], weights=w)
    sub = propensity_score(small.iloc[:50], "treat", ["x"])
    np.testing.assert_allclose(full.summary["estimate"], sub.summary["estimate"], rtol=1e-10)
    assert full.score.notna().all() and len(full.score) == 60
    # Unit weights are the unweighted fit.
    unit = propensity_score(small, "treat", ["x"], weights=np.ones(60))
    np.testing.assert_allclose(unit.summary, propensity_score(small, "treat", ["x"]).summary)


def test_standardize_must_be_a_bool(small):
    m = _quiet(small, "treat", "d")
    with pytest.raises(InputError, match="True or False"):
        match_summary(m, small, ["x"], standardize="no")


def _matrix(small: pd.DataFrame) -> np.ndarray:
    t = small["treat"].to_numpy() == 1
    return np.abs(small["x"].to_numpy()[t][:, None] - small["x"].to_numpy()[~t][None, :])


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda m: m[:, :-1], {}, r"must be n x n \(60 x 60.*or treated x control \(15 x 45"),
        (lambda m: np.where(m > 0.5, np.nan, m), {}, "missing or infinite"),
        (lambda m: -m, {}, "negative"),
        (lambda m: m.astype(str).astype(object) + "x", {}, "must hold numbers"),
        (lambda m: m, {"caliper": 0.1}, "std_caliper=False"),
        (lambda m: m, {"mahvars": ["x"]}, "not a distance matrix"),
        (lambda m: m, {"discard": "both"}, "needs a propensity score, and a distance matrix has none"),
        (lambda m: m, {"order": "largest"}, "a distance matrix has none"),
        (lambda m: m, {"ratio": 2, "max_controls": 3}, "allots matches by the propensity score"),
    ],
)
def test_distance_matrix_is_checked(small, make, kwargs, message):
    with pytest.raises(InputError, match=message):
        _quiet(small, "treat", make(_matrix(small)), **kwargs)


def test_distance_matrix_frame_must_be_indexed_like_data(small):
    full = pd.DataFrame(np.ones((60, 60)), index=small.index, columns=small.index)
    assert _quiet(small, "treat", full).counts.loc["Matched", "Treated"] == 15
    with pytest.raises(InputError, match=r"data\.index as its index and columns"):
        _quiet(small, "treat", full.set_axis(np.arange(60) + 1, axis=0))


def test_distance_matrix_caliper_and_ties(small):
    m = _matrix(small)
    # Raw caliper on the matrix: no pair beyond it.
    res = _quiet(small, "treat", m, caliper=0.003, std_caliper=False)
    assert (res.pairs["difference"] <= 0.003).all() and res.counts.loc["Unmatched", "Treated"] > 0
    # All distances equal: each treated unit (data order) takes the first unused control in data order.
    tied = _quiet(small, "treat", np.ones_like(m)).pairs.sort_values("treated")
    assert list(tied["control"]) == list(small.index[small["treat"] == 0][:15])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit_id": "nope"}, "no column|not found|nope"),
        ({"unit_id": "u_nan"}, r"missing values in unit_id column\(s\) \{'u_nan': 1\}"),
    ],
)
def test_unit_id_is_checked(small, kwargs, message):
    data = small.assign(u_nan=[np.nan, *range(59)])
    with pytest.raises(InputError, match=message):
        _quiet(data, "treat", "d", **kwargs)


def test_unit_id_is_ignored_with_replacement_and_with_distinct_ids(small):
    data = small.assign(u=np.arange(60) // 2, own=np.arange(60))
    with_rep = _quiet(data, "treat", "d", replace=True, unit_id="u")
    pd.testing.assert_series_equal(with_rep.weights, _quiet(data, "treat", "d", replace=True).weights)
    distinct = _quiet(data, "treat", "d", ratio=2, unit_id="own")
    pd.testing.assert_series_equal(distinct.weights, _quiet(data, "treat", "d", ratio=2).weights)
    shared = _quiet(data, "treat", "d", ratio=2, unit_id="u")
    assert shared.pairs["control"].map(data["u"]).is_unique


def test_robust_mahalanobis_with_constant_covariates_falls_back(small):
    # MatchIt: no covariate varies -> Euclidean distance; every pair ties, so data order decides.
    data = small.assign(c=1.0)
    res = _quiet(data, "treat", "robust_mahalanobis", covariates=["c"]).pairs.sort_values("treated")
    assert list(res["control"]) == list(data.index[data["treat"] == 0][:15])
    # A constant column next to a varying one is dropped (it would divide by a zero variance).
    both = _quiet(data, "treat", "robust_mahalanobis", covariates=["c", "x"])
    alone = _quiet(data, "treat", "robust_mahalanobis", covariates=["x"])
    pd.testing.assert_series_equal(both.weights, alone.weights)


def test_summary_addlvariables_forms_and_pair_dist(small):
    # MatchIt's test-summary.R: addlvariables as a matrix (unnamed columns V1, ...), a wrongly sized matrix and an
    # unaccepted form are errors naming addlvariables; pair.dist = FALSE blanks that column only.
    m = _quiet(small, "treat", "d")
    s = match_summary(m, small, ["x"], addlvariables=np.column_stack([small["x"] * 3]))
    assert list(s.sum_matched.index) == ["distance", "x", "V1"]
    np.testing.assert_allclose(s.sum_all.loc["V1", "Means Treated"], 3 * s.sum_all.loc["x", "Means Treated"])
    with pytest.raises(InputError, match="addlvariables has 5 rows and data 60"):
        match_summary(m, small, ["x"], addlvariables=np.ones((5, 1)))
    for bad in (list(range(60)), 5, {"a": 1}):
        with pytest.raises(InputError, match="addlvariables must be column names"):
            match_summary(m, small, ["x"], addlvariables=bad)  # type: ignore[arg-type]
    without = match_summary(m, small, ["x"], pair_dist=False).sum_matched
    with_pd = match_summary(m, small, ["x"]).sum_matched
    assert without["Std. Pair Dist."].isna().all() and with_pd["Std. Pair Dist."].notna().all()
    pd.testing.assert_frame_equal(without.iloc[:, :6], with_pd.iloc[:, :6])
    # standardize=False keeps the group means and changes the difference columns (and their names).
    raw = match_summary(m, small, ["x"], standardize=False).sum_matched
    assert list(raw.columns[2:]) == ["Mean Diff.", "Var. Ratio", "eQQ Mean", "eQQ Max", "Pair Dist."]
    pd.testing.assert_frame_equal(raw.iloc[:, :2], with_pd.iloc[:, :2])
    assert not np.allclose(raw["Mean Diff."], with_pd["Std. Mean Diff."])


def test_printing_names_the_new_options(small):
    data = small.assign(u=np.arange(60) // 2)
    text = repr(_quiet(data, "treat", "d", ratio=2.5, max_controls=4, unit_id="u"))
    assert "variable ratio 1 to 4:1 (average 2.5)" in text and "unit.id u" in text
    assert "a given distance matrix" in repr(_quiet(small, "treat", _matrix(small)))
