"""MatchIt's own test-nearest_snapshots.R, ported case by case and compared with MatchIt 4.5.1 live.

Upstream MatchIt pins ``match.matrix``, weights and subclass of ~70 nearest-neighbour matches on lalonde
(``tests/testthat/test-nearest_snapshots.R``, its ``_snaps``). Those snapshots were made by a newer MatchIt,
so each case here is rerun in MatchIt 4.5.1 (one R process, ``snap_case`` in matchit_round3.R) with the same
data and options, and ours must equal it: matched sets, weights, subclass numbers, discarded units, sample
sizes. Where the distance is a propensity score it is passed to both as a vector with ``k * 2^-40`` added to
unit k: lalonde's PSID controls share covariate values and so scores, 4.5.1's vector kernel is defective
(docs/matching.md) and its matrix kernel, used instead, breaks exact ties by data order where the vector rule
(ours) does not. Cases not ported, and why, are listed in docs/matching.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import ModelWarning
from retrocohort.matching import match_nearest
from tests.matching.test_matchit_options import _assert_same
from tests.rlive import run_r

HELPER = (Path(__file__).parent / "matchit_round3.R").as_posix()
FULL = "age + educ + race + married + nodegree + re74 + re75"
FOUR = "age + educ + re74 + re75"
MAH4 = ["age", "educ", "re74", "re75"]

# name -> (data: lalonde / sub / clust, distance, rhs, matchit() arguments as R text, our keyword arguments)
# distance: "ps" / "lp" / "probit" / "psw" (tie-broken scores), "matrix" (scaled_euclidean_dist on sub),
# "nxn" (as.matrix(dist(scale(X))) on sub), or a covariate distance name.
CASES: dict[str, tuple[str, str, str, str, dict]] = {
    "baseline: PS vector, largest": ("lalonde", "ps", FULL, "", {}),
    "baseline: Mahalanobis, data": ("lalonde", "ps", FULL, 'mahvars = ~ age + educ + re74 + re75, m.order = "data"',
                                    {"mahvars": MAH4, "order": "data"}),
    "baseline: distance matrix, data": ("sub", "matrix", FOUR, 'm.order = "data"', {"order": "data"}),
    "PS vector, data": ("lalonde", "ps", FULL, 'm.order = "data"', {"order": "data"}),
    "ratio=3": ("lalonde", "ps", FULL, "ratio = 3", {"ratio": 3}),
    "ratio=3, replace": ("lalonde", "ps", FULL, "ratio = 3, replace = TRUE", {"ratio": 3, "replace": True}),
    "ratio=2, caliper": ("lalonde", "ps", FULL, "ratio = 2, caliper = 0.1, std.caliper = FALSE",
                         {"ratio": 2, "caliper": 0.1, "std_caliper": False}),
    "caliper + replace + ratio=2": ("lalonde", "ps", FULL,
                                    "caliper = 0.1, std.caliper = FALSE, replace = TRUE, ratio = 2",
                                    {"caliper": 0.1, "std_caliper": False, "replace": True, "ratio": 2}),
    "largest + caliper": ("lalonde", "ps", FULL, 'm.order = "largest", caliper = 0.1, std.caliper = FALSE',
                          {"order": "largest", "caliper": 0.1, "std_caliper": False}),
    "smallest + caliper": ("lalonde", "ps", FULL, 'm.order = "smallest", caliper = 0.1, std.caliper = FALSE',
                           {"order": "smallest", "caliper": 0.1, "std_caliper": False}),
    "exact + ratio=2": ("lalonde", "ps", FULL, "exact = ~ race, ratio = 2", {"exact": ["race"], "ratio": 2}),
    "exact + caliper": ("lalonde", "ps", FULL, "exact = ~ race, caliper = 0.2, std.caliper = FALSE",
                        {"exact": ["race"], "caliper": 0.2, "std_caliper": False}),
    "exact + antiexact": ("lalonde", "ps", FULL, "exact = ~ race, antiexact = ~ married",
                          {"exact": ["race"], "antiexact": ["married"]}),
    "exact + replace + ratio=2": ("lalonde", "ps", FULL, "exact = ~ race, replace = TRUE, ratio = 2",
                                  {"exact": ["race"], "replace": True, "ratio": 2}),
    "mahvars + distance caliper": ("lalonde", "ps", FULL,
                                   "mahvars = ~ age + educ + re74 + re75, caliper = 0.2, std.caliper = FALSE",
                                   {"mahvars": MAH4, "caliper": 0.2, "std_caliper": False}),
    "mahvars + replace": ("lalonde", "ps", FULL, "mahvars = ~ age + educ + re74 + re75, replace = TRUE",
                          {"mahvars": MAH4, "replace": True}),
    "mahvars + antiexact": ("lalonde", "ps", FULL, "mahvars = ~ age + educ + re74 + re75, antiexact = ~ married",
                            {"mahvars": MAH4, "antiexact": ["married"]}),
    "reuse.max=3 + ratio=2": ("lalonde", "ps", FULL, "ratio = 2, reuse.max = 3", {"ratio": 2, "reuse_max": 3}),
    "reuse.max=2 + ratio=2 + caliper": ("lalonde", "ps", FULL,
                                        "ratio = 2, reuse.max = 2, caliper = 0.2, std.caliper = FALSE",
                                        {"ratio": 2, "reuse_max": 2, "caliper": 0.2, "std_caliper": False}),
    "distmat + reuse.max=3 + ratio=2": ("sub", "matrix", FOUR, "ratio = 2, reuse.max = 3",
                                        {"ratio": 2, "reuse_max": 3}),
    "variable ratio + caliper": ("lalonde", "ps", FULL,
                                 "ratio = 2, min.controls = 1, max.controls = 4, caliper = 0.2, std.caliper = FALSE",
                                 {"ratio": 2, "min_controls": 1, "max_controls": 4, "caliper": 0.2,
                                  "std_caliper": False}),
    "variable ratio + exact": ("lalonde", "ps", FULL, "ratio = 2, min.controls = 1, max.controls = 4, exact = ~ race",
                               {"ratio": 2, "min_controls": 1, "max_controls": 4, "exact": ["race"]}),
    "variable ratio baseline": ("lalonde", "ps", FULL, "ratio = 2, min.controls = 1, max.controls = 4",
                                {"ratio": 2, "min_controls": 1, "max_controls": 4}),
    "ATC baseline": ("lalonde", "ps", FULL, 'estimand = "ATC"', {"estimand": "ATC"}),
    "ATC + mahvars": ("lalonde", "ps", FULL, 'mahvars = ~ age + educ + re74 + re75, estimand = "ATC"',
                      {"mahvars": MAH4, "estimand": "ATC"}),
    "ATC + ratio=2 + exact": ("lalonde", "ps", FULL, 'estimand = "ATC", ratio = 2, exact = ~ race',
                              {"estimand": "ATC", "ratio": 2, "exact": ["race"]}),
    "covariate + distance caliper": ("lalonde", "ps", FULL, "caliper = c(.1, age = 2), std.caliper = FALSE",
                                     {"caliper": {"distance": 0.1, "age": 2}, "std_caliper": False}),
    "standardized caliper": ("lalonde", "ps", FULL, "caliper = 0.25, std.caliper = TRUE", {"caliper": 0.25}),
    "standardized covariate caliper": ("lalonde", "ps", FULL, "caliper = c(age = 1), std.caliper = TRUE",
                                       {"caliper": {"age": 1}}),
    "antiexact alone": ("lalonde", "ps", FULL, "antiexact = ~ married", {"antiexact": ["married"]}),
    "discard logical": ("lalonde", "ps", FULL, "discard = df$re74 > 15000", {"discard": "re74>15000"}),
    "discard + mahvars": ("lalonde", "ps", FULL, "mahvars = ~ age + educ + re74 + re75, discard = df$re74 > 15000",
                          {"mahvars": MAH4, "discard": "re74>15000"}),
    "unit.id = age": ("lalonde", "ps", FULL, 'unit.id = ~ age, kernel = "vector"', {"unit_id": "age"}),
    "distmat + exact + ratio=2": ("sub", "matrix", FOUR, "exact = ~ race, ratio = 2", {"exact": ["race"], "ratio": 2}),
    "distmat + replace + ratio=2": ("sub", "matrix", FOUR, "replace = TRUE, ratio = 2", {"replace": True, "ratio": 2}),
    "distmat + covariate caliper": ("sub", "matrix", FOUR, "caliper = c(age = 3), std.caliper = FALSE",
                                    {"caliper": {"age": 3}, "std_caliper": False}),
    "distmat + antiexact": ("sub", "matrix", FOUR, "antiexact = ~ married", {"antiexact": ["married"]}),
    "full Mahalanobis": ("lalonde", "mahalanobis", FOUR, "", {}),
    "full robust Mahalanobis": ("lalonde", "robust_mahalanobis", FOUR, "", {}),
    "full scaled Euclidean": ("lalonde", "scaled_euclidean", FOUR, "", {}),
    "full Euclidean": ("lalonde", "euclidean", FOUR, "", {}),
    "full Mahalanobis, single covariate": ("lalonde", "mahalanobis", "age", "", {}),
    "link probit": ("lalonde", "probit", FULL, "", {}),
    "linear.logit + caliper": ("lalonde", "lp", FULL, "caliper = 0.25", {"caliper": 0.25}),
    "s.weights + PS": ("lalonde", "psw", FULL, "s.weights = sw", {"s_weights": "sw"}),
    "s.weights + mahvars": ("lalonde", "ps", FULL, "mahvars = ~ age + educ + re74 + re75, s.weights = sw",
                            {"mahvars": MAH4, "s_weights": "sw"}),
    "discard both": ("lalonde", "ps", FULL, 'discard = "both"', {"discard": "both"}),
    "discard control": ("lalonde", "ps", FULL, 'discard = "control"', {"discard": "control"}),
    "mahvars + covariate caliper": ("lalonde", "ps", FULL,
                                    "mahvars = ~ age + educ + re74 + re75, caliper = c(age = 2), std.caliper = FALSE",
                                    {"mahvars": MAH4, "caliper": {"age": 2}, "std_caliper": False}),
    "mahvars + exact + covariate caliper": (
        "lalonde", "ps", FULL,
        "mahvars = ~ age + educ + re74 + re75, exact = ~ married, caliper = c(age = 2), std.caliper = FALSE",
        {"mahvars": MAH4, "exact": ["married"], "caliper": {"age": 2}, "std_caliper": False},
    ),
    "mahvars + smallest": ("lalonde", "ps", FULL, 'mahvars = ~ age + educ + re74 + re75, m.order = "smallest"',
                           {"mahvars": MAH4, "order": "smallest"}),
    "ATC + full Mahalanobis": ("lalonde", "mahalanobis", FOUR, 'estimand = "ATC"', {"estimand": "ATC"}),
    "unit.id + exact": ("clust", "ps", FULL, 'unit.id = ~ clust, exact = ~ race, kernel = "vector"',
                        {"unit_id": "clust", "exact": ["race"]}),
    "unit.id clusters, Mahalanobis + ratio=2": ("clust", "mahalanobis", FOUR, "unit.id = ~ clust, ratio = 2",
                                                {"unit_id": "clust", "ratio": 2}),
    "full n x n matrix": ("sub", "nxn", FOUR, "", {}),
    "multi exact + antiexact": ("lalonde", "ps", FULL, "exact = ~ married + nodegree, antiexact = ~ race",
                                {"exact": ["married", "nodegree"], "antiexact": ["race"]}),
    "mahvars + unit.id + ratio=2": ("clust", "ps", FULL,
                                    "mahvars = ~ age + educ + re74 + re75, unit.id = ~ clust, ratio = 2",
                                    {"mahvars": MAH4, "unit_id": "clust", "ratio": 2}),
}  # fmt: skip


@pytest.fixture(scope="module")
def snaps():
    calls = []
    for name, (which, dist, rhs, args, _) in CASES.items():
        frame = {"lalonde": "df", "sub": "sub", "clust": "clust"}[which]
        r_dist = {
            "ps": f"{frame}$ps",
            "lp": f"{frame}$lp",
            "probit": f"{frame}$probit",
            "psw": f"{frame}$psw",
            "matrix": "dse",
            "nxn": "dnn",
        }.get(dist, f'"{dist}"')
        extra = f", {args}" if args else ""
        calls.append(f'`{name}` = snap_case({frame}, "{rhs}", {r_dist}{extra})')
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
fix_robust()
data("lalonde", package = "MatchIt")
df <- lalonde
f <- treat ~ {FULL}
sw <- seq(0.5, 2, length.out = nrow(df))
tb <- seq_len(nrow(df)) * 2^-40  # tie-breaker, see the module docstring
df$ps <- unname(fitted(glm(f, binomial, df))) + tb
df$lp <- unname(predict(glm(f, binomial, df))) + tb
df$probit <- unname(fitted(glm(f, binomial(link = "probit"), df))) + tb
df$psw <- unname(fitted(suppressWarnings(glm(f, binomial, df, weights = sw)))) + tb
df$sw <- sw
sub <- df[c(1:50, 186:235), ]
dse <- unname(as.matrix(scaled_euclidean_dist(treat ~ age + educ + re74 + re75, data = sub)))
dnn <- unname(as.matrix(dist(scale(sub[c("age", "educ", "re74", "re75")]))))
clust <- df
clust$clust <- rep(seq_len(ceiling(nrow(df) / 3)), each = 3L)[seq_len(nrow(df))]
cases <- list({", ".join(calls)})
result <- list(df = df, dse = sprintf("%.17g", dse), dnn = sprintf("%.17g", dnn), n_sub = nrow(sub),
               n1_sub = sum(sub$treat == 1), cases = cases)
"""
    return run_r(code)


def _ours(out, name: str):
    which, dist, rhs, _, kwargs = CASES[name]
    df = pd.DataFrame(out["df"])
    kwargs = dict(kwargs)
    if which == "sub":
        data = df.iloc[list(range(50)) + list(range(185, 235))].reset_index(drop=True)
    elif which == "clust":
        data = df.assign(clust=np.repeat(np.arange(1, len(df) // 3 + 2), 3)[: len(df)])
    else:
        data = df
    if kwargs.get("discard") == "re74>15000":
        kwargs["discard"] = (data["re74"] > 15000).to_numpy()
    if dist in ("ps", "lp", "probit", "psw"):
        distance = data[dist].to_numpy()
    elif dist == "matrix":
        n1 = out["n1_sub"]
        # R's matrix, column-major: n1 x n0
        distance = np.array([float(v) for v in out["dse"]]).reshape((len(data) - n1, n1)).T
    elif dist == "nxn":
        distance = np.array([float(v) for v in out["dnn"]]).reshape((len(data), len(data))).T
    else:
        distance = dist
        kwargs["covariates"] = [c.strip() for c in rhs.split("+")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(data, "treat", distance, **kwargs)


@pytest.mark.r
@pytest.mark.parametrize("name", list(CASES))
def test_matchit_snapshot_case(snaps, name):
    _assert_same(_ours(snaps, name), snaps["cases"][name], name)


def test_order_is_ignored_with_replacement():
    # Upstream's invariant "m.order is ignored when matching with replacement" (no R needed).
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"treat": rng.integers(0, 2, 200), "d": rng.random(200)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        runs = [
            match_nearest(data, "treat", "d", replace=True, ratio=2, order=o) for o in ("data", "largest", "smallest")
        ]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(other.match_matrix, runs[0].match_matrix)


def test_mahvars_and_full_mahalanobis_agree_with_data_order():
    # Upstream's "mahvars and distance='mahalanobis' agree on the same covariates" (m.order = "data").
    rng = np.random.default_rng(6)
    data = pd.DataFrame({"treat": rng.integers(0, 2, 150), "x": rng.normal(size=150), "y": rng.normal(size=150)})
    data["ps"] = rng.random(150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        m1 = match_nearest(data, "treat", "ps", mahvars=["x", "y"], order="data")
        m2 = match_nearest(data, "treat", "mahalanobis", covariates=["x", "y"])
    pd.testing.assert_frame_equal(m1.match_matrix, m2.match_matrix)
    pd.testing.assert_series_equal(m1.weights, m2.weights)
