"""MatchIt's own test-method_nearest.R, ported: four ways of stating one distance give one match.

MatchIt (tests/testthat/test-method_nearest.R, "distance vector, mah vars, and distance matrix yield identical
results") matches ``a ~ p + p_`` (``p_`` a copy of ``p``) on its simulated data with the distance vector
``d$p``, with ``distance = "euclidean"``, with ``mahvars = ~ p + p_`` and with the distance matrix
``euclidean_dist(a ~ p)``, under a grid of options, and expects the same ``match.matrix`` from each. Here each
of our four variants must equal the others *and* MatchIt 4.5.1's own match for that option set (its data and
matches made live in one R process, tests/matching/matchit_round3.R). Left out: ``m.order = "closest"`` and
``"farthest"`` (not in MatchIt 4.5.1); the variants MatchIt itself leaves out (no Euclidean / matrix with
``largest`` / ``smallest``, variable ratio or a distance caliper) are left out here too.
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
ALL, SCORE_ONLY = (1, 2, 3, 4), (1, 3)

# name -> (matchit() arguments as R text, our keyword arguments, variants as in MatchIt's test)
GRID: dict[str, tuple[str, dict, tuple[int, ...]]] = {
    "data": ('m.order = "data"', {"order": "data"}, ALL),
    "largest": ('m.order = "largest"', {"order": "largest"}, SCORE_ONLY),
    "smallest": ('m.order = "smallest"', {"order": "smallest"}, SCORE_ONLY),
    "ratio2": ('m.order = "data", ratio = 2', {"order": "data", "ratio": 2}, ALL),
    "vr": (
        'm.order = "data", ratio = 2, max.controls = 3',
        {"order": "data", "ratio": 2, "max_controls": 3},
        SCORE_ONLY,
    ),
    "vr-largest": (
        'm.order = "largest", ratio = 2, max.controls = 3',
        {"order": "largest", "ratio": 2, "max_controls": 3},
        SCORE_ONLY,
    ),
    "replace": ('m.order = "data", ratio = 2, replace = TRUE', {"order": "data", "ratio": 2, "replace": True}, ALL),
    "reuse3": ('m.order = "data", ratio = 2, reuse.max = 3', {"order": "data", "ratio": 2, "reuse_max": 3}, ALL),
    "caliper": (
        'm.order = "data", ratio = 2, caliper = .001, std.caliper = FALSE',
        {"order": "data", "ratio": 2, "caliper": 0.001, "std_caliper": False},
        SCORE_ONLY,
    ),
    "caliper-largest": (
        'm.order = "largest", ratio = 2, caliper = .001, std.caliper = FALSE',
        {"order": "largest", "ratio": 2, "caliper": 0.001, "std_caliper": False},
        SCORE_ONLY,
    ),
    "covariate-caliper": (
        'm.order = "data", ratio = 2, caliper = c(p = .001), std.caliper = FALSE',
        {"order": "data", "ratio": 2, "caliper": {"p": 0.001}, "std_caliper": False},
        ALL,
    ),
    "covariate-caliper-reuse3": (
        'm.order = "data", ratio = 2, caliper = c(p = .001), std.caliper = FALSE, reuse.max = 3',
        {"order": "data", "ratio": 2, "caliper": {"p": 0.001}, "std_caliper": False, "reuse_max": 3},
        ALL,
    ),
    "exact": ('m.order = "data", ratio = 2, exact = ~g', {"order": "data", "ratio": 2, "exact": ["g"]}, ALL),
    "exact-replace": (
        'm.order = "data", ratio = 2, exact = ~g, replace = TRUE',
        {"order": "data", "ratio": 2, "exact": ["g"], "replace": True},
        ALL,
    ),
    "antiexact": (
        'm.order = "data", ratio = 2, antiexact = ~g',
        {"order": "data", "ratio": 2, "antiexact": ["g"]},
        ALL,
    ),
    "antiexact-replace": (
        'm.order = "data", ratio = 2, antiexact = ~g, replace = TRUE',
        {"order": "data", "ratio": 2, "antiexact": ["g"], "replace": True},
        ALL,
    ),
    "discard": ('m.order = "data", ratio = 2, discard = d$dis', {"order": "data", "ratio": 2, "discard": "dis"}, ALL),
    "unit": ('m.order = "data", ratio = 2, unit.id = ~u', {"order": "data", "ratio": 2, "unit_id": "u"}, ALL),
    "unit-reuse3": (
        'm.order = "data", ratio = 2, unit.id = ~u, reuse.max = 3',
        {"order": "data", "ratio": 2, "unit_id": "u", "reuse_max": 3},
        ALL,
    ),
    "unit-replace": (
        'm.order = "data", ratio = 2, unit.id = ~u, replace = TRUE',
        {"order": "data", "ratio": 2, "unit_id": "u", "replace": True},
        ALL,
    ),
}


@pytest.fixture(scope="module")
def grid():
    calls = ", ".join(f"`{name}` = nearest_grid_case(d, {args})" for name, (args, _, _) in GRID.items())
    code = f"""
suppressPackageStartupMessages(library(MatchIt))
source("{HELPER}")
d <- nearest_grid_data()
result <- list(data = d, cases = list({calls}))
"""
    out = run_r(code)
    return out, pd.DataFrame(out["data"])


def _variant(d: pd.DataFrame, which: int, kwargs: dict):
    kwargs = dict(kwargs)
    if kwargs.get("discard") == "dis":
        kwargs["discard"] = d["dis"].to_numpy(dtype=bool)
    p = d["p"].to_numpy()
    if which == 1:
        distance = p
    elif which == 2:
        distance, kwargs["covariates"] = "euclidean", ["p", "p_"]
    elif which == 3:
        distance, kwargs["mahvars"] = p, ["p", "p_"]
    else:
        t = d["a"].to_numpy() == 1
        distance = np.abs(p[t][:, None] - p[~t][None, :])  # MatchIt's euclidean_dist(a ~ p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(d, "a", distance, **kwargs)


@pytest.mark.r
@pytest.mark.parametrize("name", list(GRID))
def test_matchit_nearest_grid(grid, name):
    out, d = grid
    _, kwargs, variants = GRID[name]
    expected = out["cases"][name]
    results = {which: _variant(d, which, kwargs) for which in variants}
    for which, result in results.items():
        _assert_same(result, expected, f"{name} variant {which}")
    # The four agree with each other on the matrix too (MatchIt's own assertion), column by column.
    first = results[variants[0]].match_matrix
    for which in variants[1:]:
        pd.testing.assert_frame_equal(results[which].match_matrix, first, check_dtype=False, obj=f"{name} {which}")
    if name.startswith("unit") and "replace" not in name:
        # unit.id did something: without it some unit gives two control rows.
        kw = {k: v for k, v in kwargs.items() if k != "unit_id"}
        plain = _variant(d, 1, kw).pairs["control"].map(d["u"]).value_counts().max()
        with_unit = results[1].pairs["control"].map(d["u"]).value_counts().max()
        assert with_unit <= kw.get("reuse_max", 1) < plain
