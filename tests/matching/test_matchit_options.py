"""More of MatchIt's nearest-neighbour options and its summary(), checked against MatchIt itself (live R).

What MatchIt's tests (tests/testthat: test-method_nearest.R, test-summary.R) and its documented lalonde
examples use beyond test_matchit_suite.py: ``estimand = "ATC"``, ``discard`` ("treated", "control",
"both", a logical vector), and ``summary(m.out)`` with every column of its standardized table (Means,
Std. Mean Diff., Var. Ratio, eCDF Mean / Max, Std. Pair Dist.), ``interactions = TRUE`` and
``addlvariables``. MatchIt runs through tests/matching/matchit_summary.R (distance scaled by 2^k, see
there). Each case is compared on the matched sets, weights, subclass numbers, discarded units, the
sample-size table and both balance tables (to 1e-8), on lalonde and on fresh random data whose seed is
printed on failure.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError, ModelWarning
from retrocohort.matching import MatchSummary, get_matches, match_data, match_nearest, match_summary
from tests.rlive import run_r

HELPER = (Path(__file__).parent / "matchit_summary.R").as_posix()
LALONDE = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(*args, **kwargs)


def _r_value(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "c(" + ", ".join(_r_value(x) for x in v) + ")"
    return repr(v)


def _r_call(frame: str, rhs: str, dist: str, case: dict) -> str:
    args = {
        k.replace("reuse_max", "reuse.max"): v for k, v in case.items() if k not in ("discard_rule", "s_weights_rule")
    }
    if "s_weights_rule" in case:
        args["s.weights"] = None  # replaced below by an R expression
    if "discard_rule" in case:
        args["discard"] = None  # replaced below by an R expression
    parts = [f"{k} = {_r_value(v)}" for k, v in args.items() if k not in ("discard", "s.weights")]
    if "s_weights_rule" in case:
        parts.append(f"s.weights = {case['s_weights_rule']}")
    if "discard_rule" in case:
        parts.append(f"discard = {case['discard_rule']}")
    elif "discard" in case:
        parts.append(f"discard = {_r_value(case['discard'])}")
    return f'matchit_summary({frame}, "{rhs}", {dist}, {", ".join(parts)})'


def _ours(data: pd.DataFrame, dist: np.ndarray, case: dict, discard_mask=None):
    kwargs = {
        "ratio": case.get("ratio", 1),
        "caliper": case.get("caliper"),
        "order": case.get("order"),
        "replace": case.get("replace", False),
        "exact": case.get("exact"),
        "estimand": case.get("estimand", "ATT"),
        "discard": discard_mask if discard_mask is not None else case.get("discard", "none"),
        "reuse_max": case.get("reuse_max"),
    }
    if "s_weights_rule" in case:
        kwargs["s_weights"] = np.linspace(0.5, 2, len(data))
    return _quiet(data, "treat", dist, **kwargs)


def _frame(table) -> pd.DataFrame:
    values = np.array([[np.nan if v is None or v == "NA" else v for v in row] for row in table["values"]], dtype=float)
    return pd.DataFrame(values, index=table["rows"], columns=table["cols"])


def _assert_same(result, expected, msg: str) -> None:
    # Sets: focal unit -> its matches, as 0-based positions (MatchIt's match.matrix holds row numbers).
    pos = {label: i for i, label in enumerate(result.weights.index)}
    atc = result.options["estimand"] == "ATC"
    ours: dict = {}
    for row in result.pairs.itertuples():
        focal, other = (row.control, row.treated) if atc else (row.treated, row.control)
        ours.setdefault(pos[focal], set()).add(pos[other])
    theirs: dict = {}
    for f, row in zip(expected["focal"], expected["match_matrix"], strict=True):
        others = {int(v) - 1 for v in row if v is not None}
        if others:
            theirs[f - 1] = others
    assert ours == theirs, msg
    np.testing.assert_allclose(result.weights.to_numpy(), expected["weights"], rtol=1e-12, atol=1e-14, err_msg=msg)
    if expected["subclass"] is None or expected["subclass"] == {}:
        assert result.subclass.isna().all(), msg
    else:
        theirs_sc = np.array([-1 if v is None else v for v in expected["subclass"]], dtype=float)
        np.testing.assert_array_equal(result.subclass.astype("float").fillna(-1).to_numpy(), theirs_sc, err_msg=msg)
    np.testing.assert_array_equal(result.discarded.to_numpy(), np.asarray(expected["discarded"], dtype=bool))
    nn = _frame(expected["nn"])
    pd.testing.assert_frame_equal(result.counts.loc[nn.index, nn.columns], nn, rtol=1e-12, check_names=False)


EPS_SQRT = np.sqrt(np.finfo(float).eps)


def _assert_same_summary(summary: MatchSummary, expected, msg: str) -> int:
    """Equal to MatchIt's summary() but for its equal-means quirk; returns how many rows the quirk touched."""
    quirk_rows = 0
    for ours, key in ((summary.sum_all, "sum_all"), (summary.sum_matched, "sum_matched")):
        theirs = _frame(expected[key])
        assert ours is not None
        # MatchIt 4.5.1: where the means differ by <= sqrt(eps) it reports the raw difference as Std. Mean Diff.
        # and the raw pair distance as Std. Pair Dist. We divide by s; the difference must be exactly that.
        equal_means = (theirs["Means Treated"] - theirs["Means Control"]).abs() <= EPS_SQRT
        if equal_means.any():
            quirk_rows += int(equal_means.sum())
            s = summary.sd_denominator[equal_means[equal_means].index]
            assert s.notna().all() and (s > 0).all(), msg
            raw = ours.loc[equal_means, "Means Treated"] - ours.loc[equal_means, "Means Control"]
            np.testing.assert_allclose(theirs.loc[equal_means, "Std. Mean Diff."], raw, atol=1e-12, err_msg=msg)
            np.testing.assert_allclose(
                theirs.loc[equal_means, "Std. Pair Dist."].fillna(-1),
                (ours.loc[equal_means, "Std. Pair Dist."] * s).fillna(-1),
                rtol=1e-10,
                err_msg=msg,
            )
            ours = ours.copy()
            ours.loc[equal_means, ["Std. Mean Diff.", "Std. Pair Dist."]] = theirs.loc[
                equal_means, ["Std. Mean Diff.", "Std. Pair Dist."]
            ]
        assert list(ours.index) == list(theirs.index), msg
        assert list(ours.columns) == list(theirs.columns), msg
        # NA where MatchIt has NA (binary Var. Ratio; Std. Pair Dist. of the unmatched sample), equal elsewhere.
        np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(theirs.to_numpy()), err_msg=f"{msg} {key}")
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-8, atol=1e-10, err_msg=f"{msg} {key}")
    return quirk_rows


# ------------------------------------------------------------------ lalonde

LALONDE_CASES = {
    "default": ("ps", {}),
    "atc": ("ps", {"estimand": "ATC"}),
    "atc-caliper-logit": ("lp", {"estimand": "ATC", "caliper": 0.2}),
    "atc-replace": ("ps", {"estimand": "ATC", "replace": True}),
    "atc-exact-largest": ("lp", {"estimand": "ATC", "exact": ["race"], "order": "largest"}),
    "discard-both-caliper": ("lp", {"discard": "both", "caliper": 0.1}),
    "discard-treated": ("ps", {"discard": "treated"}),
    "discard-control-atc": ("ps", {"discard": "control", "estimand": "ATC"}),
    "discard-logical": ("lp", {"discard_rule": "df$age > 40"}),
    "replace-ratio2": ("lp", {"replace": True, "ratio": 2}),
    "caliper-data-order": ("lp", {"caliper": 0.25, "order": "data"}),
    # reuse.max: a control serves at most that many treated units, in the processing order.
    "reuse-2": ("ps", {"reuse_max": 2}),
    "reuse-3-caliper-smallest": ("lp", {"reuse_max": 3, "caliper": 0.1, "order": "smallest"}),
    "reuse-2-atc": ("ps", {"reuse_max": 2, "estimand": "ATC"}),
    # s.weights (MatchIt's test-summary.R: seq(0.5, 2, length.out = n)): ESS rows, weighted summary, match.data.
    "s-weights": ("ps", {"s_weights_rule": "seq(0.5, 2, length.out = nrow(df))"}),
    "s-weights-atc-caliper": (
        "lp",
        {"s_weights_rule": "seq(0.5, 2, length.out = nrow(df))", "estimand": "ATC", "caliper": 0.3},
    ),
}


@pytest.fixture(scope="module")
def lalonde():
    calls = ", ".join(
        f"`{name}` = {_r_call('df', ' + '.join(LALONDE), f'df${dist}', case)}"
        for name, (dist, case) in LALONDE_CASES.items()
    )
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
data("lalonde", package = "MatchIt")
df <- lalonde
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
df$ps <- unname(matchit(f, data = df)$distance)
df$lp <- unname(matchit(f, data = df, link = "linear.logit")$distance)
inter <- matchit_summary(df, "age + educ + race + married + re74", df$ps, interactions = TRUE,
                         addl = c("nodegree", "re75"))
result <- list(data = df, cases = list({calls}), inter = inter)
"""
    out = run_r(code)
    data = pd.DataFrame(out["data"])
    return out, data


@pytest.mark.r
@pytest.mark.parametrize("name", [name for name in LALONDE_CASES if name != "replace-ratio2"])
def test_lalonde_option_equals_matchit(lalonde, name):
    out, data = lalonde
    dist, case = LALONDE_CASES[name]
    expected = out["cases"][name]
    mask = (data["age"] > 40).to_numpy() if "discard_rule" in case else None
    scaled = data[dist].to_numpy() * expected["k"]
    result = _ours(data, scaled, case, mask)
    _assert_same(result, expected, name)
    if case.get("caliper") is not None:
        # MatchIt's caliper: caliper x SD of the distance over the units left after discard.
        assert result.caliper_distance / expected["k"] == pytest.approx(expected["caliper"], rel=1e-12)
    if "s_weights_rule" in case:
        # match.data() / get_matches() weights: matching weights times the sampling weights.
        np.testing.assert_allclose(match_data(result, data)["weights"], expected["md_weights"], rtol=1e-12)
        np.testing.assert_allclose(get_matches(result, data)["weights"], expected["gm_weights"], rtol=1e-12)
        unweighted = match_data(result, data, include_s_weights=False)["weights"]
        assert not np.allclose(unweighted, expected["md_weights"])
    summary = match_summary(result, data, LALONDE, improvement=True)
    quirk_rows = _assert_same_summary(summary, expected, name)
    # summary(improvement = TRUE)$reduction; where MatchIt's quirk (5) set the matched SMD to the raw difference
    # its reduction is computed from that, so those rows are compared on the other columns only.
    theirs = _frame(expected["reduction"])
    ours = summary.reduction
    assert ours is not None and list(ours.columns) == list(theirs.columns)
    sm = _frame(expected["sum_matched"])
    quirk = ((sm["Means Treated"] - sm["Means Control"]).abs() <= EPS_SQRT).to_numpy()
    np.testing.assert_allclose(
        ours.to_numpy()[~quirk], theirs.to_numpy()[~quirk], rtol=1e-8, atol=1e-8, err_msg=name, equal_nan=True
    )
    # lalonde's ATC match (no caliper) has racehispan's means exactly equal after matching: the quirk shows.
    assert quirk_rows == (1 if name == "atc" else quirk_rows)


@pytest.mark.r
def test_matchit_451_replace_with_ratio_above_one_repeats_the_first_control(lalonde):
    # Debian's MatchIt 4.5.1 vector path, replace = TRUE, ratio = 2: every treated unit gets its first control
    # twice (a defect; matchit_matrix.R's distance-matrix path, used by test_matchit_suite.py, gets the second
    # nearest, as we do). Our first controls are MatchIt's; the second ones are the next nearest instead.
    out, data = lalonde
    expected = out["cases"]["replace-ratio2"]
    theirs = np.array([[-1 if v is None else v - 1 for v in row] for row in expected["match_matrix"]])
    assert (theirs[:, 0] == theirs[:, 1]).all()  # the defect itself
    result = _quiet(data, "treat", data["lp"].to_numpy() * expected["k"], replace=True, ratio=2)
    pos = {label: i for i, label in enumerate(data.index)}
    ours = result.match_matrix.map(lambda v: pos[v]).to_numpy()
    np.testing.assert_array_equal(ours[:, 0], theirs[:, 0])
    assert (ours[:, 1] != ours[:, 0]).all()
    d = data["lp"].to_numpy()
    treated = np.flatnonzero(data["treat"].to_numpy() == 1)
    gap1, gap2 = np.abs(d[ours[:, 0]] - d[treated]), np.abs(d[ours[:, 1]] - d[treated])
    assert (gap2 >= gap1).all()
    controls = np.flatnonzero(data["treat"].to_numpy() == 0)
    for i, t in enumerate(treated):  # the second is the second-nearest control (no control closer but the first)
        others = np.setdiff1d(controls, [ours[i, 0]])
        assert gap2[i] == np.abs(d[others] - d[t]).min()


@pytest.mark.r
def test_lalonde_summary_interactions_and_addlvariables(lalonde):
    out, data = lalonde
    expected = out["inter"]
    result = _quiet(data, "treat", data["ps"].to_numpy() * expected["k"])
    _assert_same(result, expected, "interactions")
    summary = match_summary(
        result, data, ["age", "educ", "race", "married", "re74"], addlvariables=["nodegree", "re75"], interactions=True
    )
    # Squares of the non-binary terms, then the products of terms of different variables (none within race).
    assert "age²" in summary.sum_matched.index and "married²" not in summary.sum_matched.index
    assert "raceblack * racehispan" not in summary.sum_matched.index
    _assert_same_summary(summary, expected, "interactions")


@pytest.mark.r
def test_atc_is_the_att_with_the_arms_swapped(lalonde):
    # MatchIt: "Setting estimand = 'ATC' is equivalent to swapping all treated and control labels".
    _, data = lalonde
    atc = _quiet(data, "treat", "ps", estimand="ATC", caliper=0.3)
    swapped = _quiet(data.assign(treat=1 - data["treat"]), "treat", "ps", caliper=0.3, order="smallest")
    np.testing.assert_array_equal(atc.weights.to_numpy(), swapped.weights.to_numpy())
    pd.testing.assert_series_equal(atc.subclass, swapped.subclass)
    assert list(atc.pairs["control"]) == list(swapped.pairs["treated"])
    assert atc.options["order"] == "smallest"  # MatchIt's default for the ATC
    # The focal controls carry weight 1 and the SMD is scaled by the controls' SD.
    assert (atc.weights[(data["treat"] == 0) & (atc.weights > 0)] == 1).all()
    s = match_summary(atc, data, ["age"])
    sd_c = data.loc[data["treat"] == 0, "age"].std(ddof=1)
    row = s.sum_all.loc["age"]
    assert row["Std. Mean Diff."] == pytest.approx((row["Means Treated"] - row["Means Control"]) / sd_c, rel=1e-13)


# ------------------------------------------------------------------ fresh random data, live


@pytest.mark.r
def test_options_and_summary_equal_matchit_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 400))
    x1 = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    b = rng.random(n) < 0.4
    x2 = rng.integers(0, 2, n)
    lin = -0.8 + 0.9 * x1 + 0.6 * (g == "b") - 0.5 * b
    treat = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    # A continuous distance with no ties (tie rules are tested in test_matchit_suite.py).
    # z: constant among the treated, so MatchIt standardizes it by the pooled SD (ATT) instead.
    z = np.where(treat == 1, 0.0, rng.normal(size=n))
    df = pd.DataFrame({"treat": treat, "x1": x1, "x2": x2, "g": g, "b": b, "z": z, "d": lin + rng.normal(0, 0.5, n)})
    cases = {
        "att-caliper": {"caliper": 0.3},
        "atc": {"estimand": "ATC"},
        "atc-caliper-exact": {"estimand": "ATC", "caliper": 0.5, "exact": ["g"]},
        "discard-both": {"discard": "both", "caliper": 0.2},
        "discard-treated-smallest": {"discard": "treated", "order": "smallest"},
        "replace": {"replace": True},
        "atc-replace": {"estimand": "ATC", "replace": True},
        "exact-data-order": {"exact": ["g"], "order": "data", "caliper": 0.4},
    }
    calls = ", ".join(f"`{k}` = {_r_call('df', 'x1 + x2 + g + b + z', 'df$d', c)}" for k, c in cases.items())
    out = run_r(f'source("{HELPER}")\ndf$b <- as.logical(df$b)\nresult <- list({calls})', {"df": df})
    for name, case in cases.items():
        expected = out[name]
        msg = f"seed={seed} case={name}"
        result = _ours(df, df["d"].to_numpy() * expected["k"], case)
        _assert_same(result, expected, msg)
        _assert_same_summary(match_summary(result, df, ["x1", "x2", "g", "b", "z"]), expected, msg)


# ------------------------------------------------------------------ by hand, and what we refuse


@pytest.fixture
def small():
    rng = np.random.default_rng(5)
    n = 60
    return pd.DataFrame(
        {"treat": (rng.random(n) < 0.4).astype(int), "x": rng.normal(size=n), "g": rng.choice(["u", "v"], n)}
    )


def test_discard_both_drops_units_outside_the_other_arms_range(small):
    data = small.copy()
    t = data["treat"] == 1
    data.loc[t.idxmax(), "x"] = 10.0  # a treated unit above every control
    data.loc[(~t).idxmax(), "x"] = -10.0  # a control below every treated unit
    result = _quiet(data, "treat", "x", discard="both")
    assert set(data.index[result.discarded]) == {t.idxmax(), (~t).idxmax()}
    assert result.weights[result.discarded].eq(0).all()
    assert result.counts.loc["Discarded"].tolist() == [1.0, 1.0]
    n_t = int(t.sum())
    assert result.counts.loc["Unmatched", "Treated"] + result.counts.loc["Matched", "Treated"] == n_t - 1
    none = _quiet(data, "treat", "x")
    assert not none.discarded.any() and none.counts.loc["Discarded"].tolist() == [0.0, 0.0]


def test_std_pair_dist_by_hand():
    # Two pairs: treated x = 0, 2 matched to controls 1, 2.5; |diffs| 1 and 0.5; SD of treated x = sqrt(2).
    data = pd.DataFrame({"treat": [1, 1, 0, 0, 0], "x": [0.0, 2.0, 1.0, 2.5, 9.0]})
    result = _quiet(data, "treat", "x", order="data")
    s = match_summary(result, data, ["x"], distance=False)
    assert s.sum_matched.loc["x", "Std. Pair Dist."] == pytest.approx(0.75 / np.sqrt(2), rel=1e-14)
    assert np.isnan(s.sum_all.loc["x", "Std. Pair Dist."])
    assert s.sum_matched.loc["x", "eCDF Max"] == pytest.approx(0.5)  # F_t - F_c at x = 0 or 2 (0.5 / 0)
    assert list(s.nn.columns) == ["Control", "Treated"]
    assert "Summary of Balance for Matched Data" in repr(s)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"discard": "outside"}, r"discard='outside' is not allowed"),
        ({"discard": np.ones(3, dtype=bool)}, r"boolean array with one value per row of data \(60\)"),
        ({"discard": np.zeros(60)}, r"dtype float64"),
        ({"estimand": "ATE"}, r"estimand='ATE'.*ATT or the ATC"),
    ],
)
def test_bad_discard_and_estimand_are_refused(small, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        _quiet(small, "treat", "x", **kwargs)


def test_discard_that_leaves_an_arm_empty_is_refused():
    data = pd.DataFrame({"treat": [1, 1, 0, 0], "x": [5.0, 6.0, 0.0, 1.0]})
    with pytest.raises(InputError, match=r"left no treated unit to match.*do not overlap"):
        _quiet(data, "treat", "x", discard="treated")


def test_match_summary_refusals(small):
    result = _quiet(small, "treat", "x")
    # standardize=False is implemented now (tests/matching/test_matchit_round3.py); a non-bool is refused.
    with pytest.raises(InputError, match=r"standardize='no' must be True or False"):
        match_summary(result, small, ["x"], standardize="no")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"not the frame that was matched"):
        match_summary(result, small.iloc[:-1], ["x"])
    with pytest.raises(InputError, match=r"missing values in covariate\(s\) \{'x': 2\}"):
        match_summary(result, small.assign(x=[np.nan, np.nan, *small["x"][2:]]), ["x"])
    with pytest.raises(InputError, match=r"'x' has 1 infinite"):
        match_summary(result, small.assign(x=[np.inf, *small["x"][1:]]), ["x"])
    with pytest.raises(InputError, match=r"no column"):
        match_summary(result, small, ["nope"])
    with pytest.raises(InputError, match=r"must be a MatchResult"):
        match_summary(small, small, ["x"])  # type: ignore[arg-type]


# ------------------------------------------------------------------ MatchIt's scanning path, live on lalonde

FOUR = ["age", "educ", "re74", "re75"]
# name: (R arguments of matchit_general, our keyword arguments, covariates of the summary)
SCAN_CASES = {
    # ?method_nearest example m.out3: Mahalanobis within calipers on re74 and re75, exact on married and race.
    "mahal-exact-covcal": (
        'rhs = "age + educ + re74 + re75", distance = "mahalanobis", exact = c("married", "race"), '
        "caliper = c(re74 = .2, re75 = .15)",
        {
            "distance": "mahalanobis",
            "covariates": FOUR,
            "exact": ["married", "race"],
            "caliper": {"re74": 0.2, "re75": 0.15},
        },
        [*FOUR, "married", "race"],
    ),
    # ?distance example m.out5: Mahalanobis on all covariates within a 0.1 SD propensity-score caliper.
    "mahvars-caliper": (
        f'rhs = "{" + ".join(LALONDE)}", distance = df$ps, caliper = .1, mahvars = {_r_value(LALONDE)}',
        {"distance": "ps", "caliper": 0.1, "mahvars": LALONDE},
        LALONDE,
    ),
    "mahvars-smallest-atc": (
        f'rhs = "{" + ".join(LALONDE)}", distance = df$lp, caliper = .25, mahvars = {_r_value(FOUR)}, estimand = "ATC"',
        {"distance": "lp", "caliper": 0.25, "mahvars": FOUR, "estimand": "ATC"},
        LALONDE,
    ),
    "mahal-plain": (
        f'rhs = "{" + ".join(LALONDE)}", distance = "mahalanobis"',
        {"distance": "mahalanobis", "covariates": LALONDE},
        LALONDE,
    ),
    "scaled-euclidean": (
        'rhs = "age + educ + re74 + re75", distance = "scaled_euclidean"',
        {"distance": "scaled_euclidean", "covariates": FOUR},
        FOUR,
    ),
    "euclidean-ratio2": (
        'rhs = "age + educ + re74 + re75", distance = "euclidean", ratio = 2',
        {"distance": "euclidean", "covariates": FOUR, "ratio": 2},
        FOUR,
    ),
    "mahal-reuse2": (
        'rhs = "age + educ + re74 + re75", distance = "mahalanobis", reuse.max = 2',
        {"distance": "mahalanobis", "covariates": FOUR, "reuse_max": 2},
        FOUR,
    ),
    "mahal-ratio2-atc": (
        'rhs = "age + educ + re74 + re75", distance = "mahalanobis", ratio = 2, estimand = "ATC"',
        {"distance": "mahalanobis", "covariates": FOUR, "ratio": 2, "estimand": "ATC"},
        FOUR,
    ),
    "antiexact-ps": (
        f'rhs = "{" + ".join(LALONDE)}", distance = df$ps, antiexact = "married", caliper = .2',
        {"distance": "ps", "antiexact": "married", "caliper": 0.2},
        LALONDE,
    ),
    "covariate-caliper-raw": (
        f'rhs = "{" + ".join(LALONDE)}", distance = df$lp, caliper = c(.2, age = 3), std.caliper = c(TRUE, FALSE)',
        {"distance": "lp", "caliper": {"distance": 0.2, "age": 3}, "std_caliper": {"age": False}},
        LALONDE,
    ),
}


@pytest.fixture(scope="module")
def lalonde_scan():
    calls = ", ".join(f"`{name}` = matchit_general(df, {r_args})" for name, (r_args, _, _) in SCAN_CASES.items())
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
data("lalonde", package = "MatchIt")
df <- lalonde
f <- treat ~ age + educ + race + married + nodegree + re74 + re75
df$ps <- unname(matchit(f, data = df)$distance)
df$lp <- unname(matchit(f, data = df, link = "linear.logit")$distance)
result <- list(data = df, cases = list({calls}))
"""
    out = run_r(code)
    # jsonlite keeps lalonde's row names (NSW1, ...) as a column "_row": as the index, like match.data's.
    return out, pd.DataFrame(out["data"]).set_index("_row")


@pytest.mark.r
@pytest.mark.parametrize("name", list(SCAN_CASES))
def test_lalonde_scanning_path_equals_matchit(lalonde_scan, name):
    out, data = lalonde_scan
    _, kwargs, covariates = SCAN_CASES[name]
    expected = out["cases"][name]
    kwargs = dict(kwargs)
    if kwargs["distance"] in ("ps", "lp"):
        kwargs["distance"] = data[kwargs["distance"]].to_numpy() * expected["k"]
    result = _quiet(data, "treat", **kwargs)
    _assert_same(result, expected, name)
    # MatchIt's calipers in raw units (covariates: caliper x SD over all units unless std.caliper = FALSE).
    if expected["caliper"] is not None:
        theirs = dict(zip(expected["caliper_names"], expected["caliper"], strict=True))
        ours = dict(result.options["covariate_calipers"])
        if result.caliper_distance is not None:
            ours[""] = result.caliper_distance
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-12), key
    _assert_same_summary(match_summary(result, data, covariates), expected, name)
    _assert_same_match_data(result, data, expected, name)


def _assert_same_match_data(result, data, expected, msg):
    # match.data(): the kept rows in data order (MatchIt's row names are 1-based positions here), the columns
    # it appends, their values; get_matches(): one row per unit and set, in MatchIt's order, with its weights.
    md, theirs = match_data(result, data), expected["match_data"]
    positions = [int(data.index.get_loc(v)) + 1 for v in md.index]
    assert positions == theirs["rows"], msg
    assert list(md.columns) == theirs["names"], msg
    np.testing.assert_allclose(md["weights"], theirs["weights"], rtol=1e-12, err_msg=msg)
    if theirs["subclass"] is not None and theirs["subclass"] != {}:
        np.testing.assert_array_equal(md["subclass"].astype(int), theirs["subclass"], err_msg=msg)
    treated_rows = [data.index.get_loc(v) + 1 for v in match_data(result, data, group="treated").index]
    assert treated_rows == expected["match_data_treated"], msg
    gm, theirs = get_matches(result, data), expected["get_matches"]
    ids = [int(data.index.get_loc(v)) + 1 for v in gm["id"]]
    np.testing.assert_array_equal(gm["subclass"].astype(int), theirs["subclass"], err_msg=msg)
    np.testing.assert_allclose(gm["weights"], theirs["weights"], rtol=1e-12, err_msg=msg)
    assert list(gm.columns) == theirs["names"], msg
    if result.options["replace"] and result.options["ratio"] > 1:
        # MatchIt's scanning path lists a set's matches in its own order with replacement; the rows of each set
        # are the same.
        ours_sets = sorted(zip(gm["subclass"].astype(int), ids, strict=True))
        assert ours_sets == sorted(zip(theirs["subclass"], theirs["id"], strict=True)), msg
    else:
        assert ids == theirs["id"], msg


@pytest.mark.r
def test_scanning_path_equals_matchit_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 300))
    # Continuous covariates: MatchIt breaks ties of a covariate distance by its own rounding (it transforms
    # the covariates before differencing, so a control 2 years older and one 2 years younger are not exactly
    # tied there), which cannot be reproduced; ties are covered by lalonde above, where the rule holds.
    df = pd.DataFrame(
        {
            "a": rng.normal(30, 5, n),
            # On a 1/64 grid, so that es = e x 2^10 below is a whole number and MatchIt's integer abs() is exact.
            "e": np.round(rng.normal(12, 2, n) * 64) / 64,
            "x": rng.normal(size=n),
            "g": rng.choice(["p", "q", "r"], n),
            "m": rng.integers(0, 2, n),
        }
    )
    lin = -1 + 0.08 * (df["a"] - 30) + 0.5 * df["x"] + 0.4 * (df["g"] == "q")
    df["treat"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    df["d"] = lin + rng.normal(0, 0.3, n)
    df["es"] = df["e"] * 1024.0
    cases = {
        "mahal": ('rhs = "a + e + x + g", distance = "mahalanobis"', {"distance": "mahalanobis"}),
        "mahal-ratio2-exact": (
            'rhs = "a + e + x", distance = "mahalanobis", ratio = 2, exact = "m"',
            {"distance": "mahalanobis", "ratio": 2, "exact": "m"},
        ),
        "mahal-replace-ratio2": (
            'rhs = "a + e + x", distance = "mahalanobis", ratio = 2, replace = TRUE',
            {"distance": "mahalanobis", "ratio": 2, "replace": True},
        ),
        "mahvars-replace-ratio3-atc": (
            'rhs = "a + e + x + g", distance = df$d, mahvars = c("a", "e", "x"), ratio = 3, replace = TRUE, '
            'estimand = "ATC", caliper = .5',
            {
                "distance": "d",
                "mahvars": ["a", "e", "x"],
                "ratio": 3,
                "replace": True,
                "estimand": "ATC",
                "caliper": 0.5,
            },
        ),
        "scaled-covcal-atc": (
            'rhs = "a + e + x", distance = "scaled_euclidean", caliper = c(a = .5), estimand = "ATC"',
            {"distance": "scaled_euclidean", "caliper": {"a": 0.5}, "estimand": "ATC"},
        ),
        "mahvars-caliper": (
            'rhs = "a + e + x + g", distance = df$d, mahvars = c("a", "x"), caliper = .3',
            {"distance": "d", "mahvars": ["a", "x"], "caliper": 0.3},
        ),
        # es = e x 2^10, whole numbers: MatchIt 4.5.1's integer abs() truncates covariate-caliper differences too,
        # so a raw caliper is checked on a column whose differences are integers (the caliper scaled alike).
        "antiexact-covcal": (
            'rhs = "a + es + x + g", distance = df$d, antiexact = "m", caliper = c(.5, es = 1024), '
            "std.caliper = c(TRUE, FALSE)",
            {"distance": "d", "antiexact": "m", "caliper": {"distance": 0.5, "es": 1024}, "std_caliper": {"es": False}},
        ),
    }
    calls = ", ".join(f"`{k}` = matchit_general(df, {r})" for k, (r, _) in cases.items())
    out = run_r(f'source("{HELPER}")\nresult <- list({calls})', {"df": df})
    for name, (_, kwargs) in cases.items():
        msg = f"seed={seed} case={name}"
        expected = out[name]
        kwargs = dict(kwargs)
        if kwargs["distance"] == "d":
            kwargs["distance"] = df["d"].to_numpy() * expected["k"]
        else:
            kwargs["covariates"] = ["a", "e", "x", "g"] if name == "mahal" else ["a", "e", "x"]
        result = _quiet(df, "treat", **kwargs)
        _assert_same(result, expected, msg)
        covariates = ["a", "e", "x", "g"] if "g" in cases[name][0] else ["a", "e", "x"]
        if "+ es +" in cases[name][0]:
            covariates[1] = "es"
        if "exact" in kwargs:
            covariates.append("m")
        if "antiexact" in kwargs:
            covariates.append("m")
        _assert_same_summary(match_summary(result, df, covariates), expected, msg)
        _assert_same_match_data(result, df, expected, msg)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"distance": "x", "caliper": {"nope": 0.2}}, r"no column\(s\) \['nope'\]"),
        ({"distance": "x", "caliper": {"g": 0.2}}, r"caliper column 'g' must be numeric"),
        ({"distance": "x", "caliper": {}}, r"caliper=\{\} is empty"),
        ({"distance": "x", "caliper": {"x": -1}}, r"caliper=\{'x': -1\} must be a positive finite number"),
        ({"distance": "x", "caliper": 0.2, "std_caliper": "yes"}, r"std_caliper='yes' must be True/False"),
        ({"distance": "mahalanobis", "covariates": ["x"], "order": "largest"}, r"order='largest' sorts by a prop"),
        ({"distance": "mahalanobis", "covariates": ["x"], "caliper": 0.2}, r"caliper on the distance needs a prop"),
        ({"distance": "mahalanobis", "covariates": ["x"], "discard": "both"}, r"discard=.both. needs a prop"),
        ({"distance": "mahalanobis", "covariates": ["x"], "mahvars": ["x"]}, r"mahvars needs a propensity score"),
        ({"distance": "mahalanobis", "covariates": ["zz"]}, r"no column\(s\) \['zz'\]"),
        ({"distance": "x", "antiexact": "zz"}, r"\(antiexact\) has no column\(s\) \['zz'\]"),
        ({"distance": "x", "caliper": {"x": 1e-12}}, r"no treated unit has a control within the calipers on \['x'\]"),
        ({"distance": "x", "discard": pd.Series(False, index=range(100, 160))}, r"discard Series is not indexed"),
    ],
)
def test_bad_scanning_options_are_refused(small, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        _quiet(small, "treat", **kwargs)


def test_missing_or_impossible_covariate_constraints_are_refused(small):
    with pytest.raises(InputError, match=r"missing values in covariates column\(s\) \{'x': 3\}"):
        _quiet(small.assign(x=[np.nan] * 3 + list(small["x"][3:])), "treat", "mahalanobis", covariates=["x"])
    with pytest.raises(InputError, match=r"covariates column 'x' has 1 infinite"):
        _quiet(small.assign(x=[np.inf, *small["x"][1:]]), "treat", "mahalanobis", covariates=["x"])
    with pytest.raises(InputError, match=r"missing values in antiexact column\(s\) \{'a': 2\}"):
        _quiet(small.assign(a=[None, None] + ["p"] * 58), "treat", "x", antiexact="a")
    with pytest.raises(InputError, match=r"differing on the antiexact columns \['one'\]"):
        _quiet(small.assign(one=1), "treat", "x", antiexact="one")


def test_antiexact_and_covariate_calipers_hold_in_every_pair(small):
    data = small.assign(k=np.arange(60) % 3)
    result = _quiet(data, "treat", "x", antiexact="k", caliper={"x": 0.5}, std_caliper={"x": False})
    t = data.loc[result.pairs["treated"]].reset_index(drop=True)
    c = data.loc[result.pairs["control"]].reset_index(drop=True)
    assert len(t) > 0
    assert (t["k"] != c["k"]).all()
    assert ((t["x"] - c["x"]).abs() <= 0.5).all()
    assert result.options["covariate_calipers"] == {"x": 0.5}


def test_match_data_and_get_matches_refusals(small):
    result = _quiet(small, "treat", "x", caliper=0.5)
    with pytest.raises(InputError, match=r"already has column\(s\) \['weights'\]"):
        match_data(result, small.assign(weights=1))
    with pytest.raises(InputError, match=r"must differ from each other"):
        match_data(result, small, weights="w", subclass="w")
    with pytest.raises(InputError, match=r"group='both' is not allowed"):
        match_data(result, small, group="both")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"it has 10 rows and the match 60 units"):
        get_matches(result, small.iloc[:10])
    with pytest.raises(InputError, match=r"it has 120 rows and the match 60 units"):
        match_data(result, pd.concat([small, small]))
    with pytest.raises(InputError, match=r"drop_unmatched=False needs the matched frame"):
        match_data(result, drop_unmatched=False)
    # A reordered frame is aligned by index label (MatchIt trusts row positions instead).
    pd.testing.assert_frame_equal(match_data(result, small.iloc[::-1]), match_data(result, small))
    pd.testing.assert_frame_equal(get_matches(result, small.iloc[::-1]), get_matches(result, small))
    # Without data: the matched rows the result keeps.
    pd.testing.assert_frame_equal(match_data(result), match_data(result, small))
    pd.testing.assert_frame_equal(get_matches(result), get_matches(result, small))
    gm = get_matches(result)
    assert (gm.groupby("subclass", observed=True)["treat"].agg(["sum", "size"]) == [1, 2]).all().all()
    md = match_data(result, small)
    assert (md["weights"] > 0).all() and len(md) == int((result.weights > 0).sum())
    assert len(match_data(result, small, drop_unmatched=False)) == len(small)


@pytest.mark.r
def test_matchit_451_truncates_covariate_caliper_differences_and_we_do_not():
    # MatchIt 4.5.1's vector path checks a raw covariate caliper of 1 on |z_t - z_c| truncated to an integer, so
    # pairs up to 1.99 apart get through; the same column times 2^10 with a caliper of 2^10 (exact) is checked at
    # full precision and equals our match on z with a caliper of 1: the only difference is the truncation.
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = 300
    # z on a 1/64 grid: z x 2^10 has whole-number differences, which the integer abs() leaves exact.
    df = pd.DataFrame({"z": np.round(rng.normal(0, 3, n) * 64) / 64, "d": rng.normal(size=n)})
    df["treat"] = (rng.random(n) < 1 / (1 + np.exp(1 - df["d"]))).astype(int)
    df["zs"] = df["z"] * 1024.0
    out = run_r(
        f'source("{HELPER}")\n'
        "result <- list("
        'raw = matchit_general(df, rhs = "z", distance = df$d, caliper = c(.5, z = 1), std.caliper = c(TRUE, FALSE)), '
        'scaled = matchit_general(df, rhs = "zs", distance = df$d, caliper = c(.5, zs = 1024), '
        "std.caliper = c(TRUE, FALSE)))",
        {"df": df},
    )
    z = df["z"].to_numpy()

    def gaps(expected):
        return np.array(
            [
                abs(z[f - 1] - z[row[0] - 1])
                for f, row in zip(expected["focal"], expected["match_matrix"], strict=True)
                if row[0] is not None
            ]
        )

    raw_gaps = gaps(out["raw"])
    assert raw_gaps.max() < 2 and (raw_gaps > 1).any(), f"seed={seed}"  # the truncation, visible
    ours = _quiet(
        df, "treat", df["d"].to_numpy() * out["raw"]["k"], caliper={"distance": 0.5, "z": 1}, std_caliper={"z": False}
    )
    _assert_same(ours, out["scaled"], f"seed={seed}")
    assert (gaps(out["scaled"]) <= 1).all()


def test_repr_names_the_options_beyond_a_propensity_score(small):
    data = small.assign(k=np.arange(60) % 2, y=np.linspace(-1, 1, 60))
    text = repr(
        _quiet(data, "treat", "x", estimand="ATC", mahvars=["x", "y"], antiexact="k", caliper={"distance": 1, "y": 2})
    )
    for fragment in ("estimand ATC", "Mahalanobis distance on x, y (mahvars)", "antiexact on k", "calipers y"):
        assert fragment in text
    plain = repr(_quiet(small, "treat", "x"))
    assert "estimand" not in plain and "mahvars" not in plain and "discard" not in plain
    assert "mahalanobis distance on x" in repr(_quiet(small, "treat", "mahalanobis", covariates=["x"]))


def test_addlvariables_forms_and_duplicates(small):
    data = small.assign(age=np.linspace(20, 80, 60))
    result = _quiet(data, "treat", "x", caliper=0.5)
    base = match_summary(result, data, ["x", "g"])
    # Names already in the model add nothing (MatchIt's test-summary.R); new names add their rows.
    same = match_summary(result, data, ["x", "g"], addlvariables=["x", "g"])
    pd.testing.assert_frame_equal(same.sum_all, base.sum_all)
    by_name = match_summary(result, data, ["x", "g"], addlvariables=["age"])
    frame = pd.DataFrame({"age": data["age"], "twice_age": data["age"] * 2}, index=data.index)
    by_frame = match_summary(result, data, ["x", "g"], addlvariables=frame)
    assert list(by_frame.sum_all.index) == [*base.sum_all.index, "age", "twice_age"]
    pd.testing.assert_frame_equal(by_frame.sum_matched.loc[by_name.sum_matched.index], by_name.sum_matched)
    # Standardized statistics do not change when a variable is doubled; the means do.
    doubled = by_frame.sum_matched.loc["twice_age"]
    once = by_frame.sum_matched.loc["age"]
    np.testing.assert_allclose(doubled.iloc[2:], once.iloc[2:], rtol=1e-12)
    assert doubled["Means Treated"] == pytest.approx(2 * once["Means Treated"])
    with pytest.raises(InputError, match=r"addlvariables has 3 rows indexed unlike data"):
        match_summary(result, data, ["x"], addlvariables=frame.iloc[:3])
    with pytest.raises(InputError, match=r"differ from data's columns of the same name"):
        match_summary(result, data, ["x"], addlvariables=frame.assign(age=0.0))
    # improvement needs the unmatched sample, as in MatchIt.
    assert match_summary(result, data, ["x"], un=False, improvement=True).reduction is None
    red = match_summary(result, data, ["x"], improvement=True).reduction
    assert red is not None and red["Std. Pair Dist."].isna().all()
    assert "Percent Balance Improvement" in repr(match_summary(result, data, ["x"], improvement=True))


def test_atc_with_more_controls_than_treated_warns_and_leaves_controls_unmatched(small):
    # MatchIt's test-method_nearest.R: ATC without replacement warns that not all controls get a match, the
    # match matrix has a row per control (NA for the unmatched), every treated unit is used once.
    n1, n0 = int(small["treat"].sum()), int((small["treat"] == 0).sum())
    assert n0 > n1
    with pytest.warns(ModelWarning, match=r"asks for more treated units than there are"):
        result = match_nearest(small, "treat", "x", estimand="ATC", caliper=5)
    assert len(result.match_matrix) == n0
    assert int(result.match_matrix[1].isna().sum()) == n0 - n1
    assert result.subclass.dropna().nunique() == n1 and int(result.subclass.notna().sum()) == 2 * n1


@pytest.mark.parametrize(
    ("s_weights", "fragment"),
    [
        ("nope", r"\(s_weights\) has no column\(s\) \['nope'\]"),
        (np.ones(3), r"one value per row of data \(60\), got shape \(3,\)"),
        (np.r_[np.nan, np.ones(59)], r"1 sampling weight\(s\) are missing, infinite or negative out of 60"),
        (np.r_[-1.0, np.ones(59)], r"1 sampling weight\(s\) are missing, infinite or negative"),
        (pd.Series(1.0, index=range(100, 160)), r"s_weights Series is not indexed like data"),
        (np.array(["a"] * 60), r"s_weights must be numbers"),
    ],
)
def test_bad_sampling_weights_are_refused(small, s_weights, fragment):
    with pytest.raises(InputError, match=fragment):
        _quiet(small, "treat", "x", s_weights=s_weights)


def test_sampling_weights_of_zero_in_one_arm_are_refused_and_unit_weights_change_nothing(small):
    with pytest.raises(InputError, match=r"0 for every unit of one arm"):
        _quiet(small, "treat", "x", s_weights=np.where(small["treat"] == 1, 0.0, 1.0))
    plain = _quiet(small, "treat", "x", caliper=0.5)
    ones = _quiet(small.assign(sw=1.0), "treat", "x", caliper=0.5, s_weights="sw")
    pd.testing.assert_frame_equal(ones.counts, plain.counts)
    pd.testing.assert_frame_equal(
        match_summary(ones, small, ["x", "g"]).sum_matched, match_summary(plain, small, ["x", "g"]).sum_matched
    )


def test_reuse_max_limits_and_equivalences(small):
    plain = _quiet(small, "treat", "x", caliper=0.5)
    once = _quiet(small, "treat", "x", caliper=0.5, reuse_max=1, replace=True)  # replace ignored, as in MatchIt
    pd.testing.assert_series_equal(once.weights, plain.weights)
    pd.testing.assert_series_equal(once.subclass, plain.subclass)
    for kwargs in ({}, {"distance": "mahalanobis", "covariates": ["x"]}):
        kw = {"distance": "x", **kwargs}
        result = _quiet(small, "treat", ratio=3, reuse_max=2, **kw)
        uses = result.pairs["control"].value_counts()
        assert uses.max() == 2  # the limit is reached and never passed
        assert not result.pairs.duplicated(["treated", "control"]).any()  # never the same control twice in a set
        assert result.subclass.isna().all()  # as with replacement: no subclass
    with pytest.raises(InputError, match=r"reuse_max=0 must be a whole number >= 1"):
        _quiet(small, "treat", "x", reuse_max=0)
    with pytest.raises(InputError, match=r"reuse_max=1.5 must be a whole number"):
        _quiet(small, "treat", "x", reuse_max=1.5)


def test_a_discard_array_that_drops_an_arm_says_so(small):
    with pytest.raises(InputError, match=r"left no treated unit to match: the discard array marks every one"):
        _quiet(small, "treat", "x", discard=(small["treat"] == 1).to_numpy())
