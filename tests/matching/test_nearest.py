"""match_nearest against MatchIt (fixtures and live R through MatchIt's matrix path), properties, bad input.

MatchIt is driven through tests/matching/matchit_matrix.R: its vector path with the distance scaled by
2^k (Debian's MatchIt 4.5.1 truncates differences with C's integer abs(), issue 2) for ratio 1, its
distance-matrix path for ratio > 1 (the vector path skips a neighbour there; see that file).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError, ModelWarning
from retrocohort.matching import match_nearest
from tests.rlive import run_r

HERE = Path(__file__).parent


def _quiet_match(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        return match_nearest(*args, **kwargs)


def _r_null(value):
    # jsonlite writes R's NULL as {} or [].
    return None if value in ({}, [], None) else value


def _match_sets(result) -> dict:
    """treated label -> frozenset of control labels."""
    sets: dict = {}
    for row in result.pairs.itertuples():
        sets.setdefault(row.treated, set()).add(row.control)
    return {k: frozenset(v) for k, v in sets.items()}


def _r_match_sets(match_matrix, treated_rows) -> dict:
    """R's match.matrix (1-based rows, treated in data order) -> treated row label -> control rows (0-based)."""
    sets = {}
    for t, row in zip(treated_rows, match_matrix, strict=True):
        controls = frozenset(int(c) - 1 for c in row if c is not None)
        if controls:
            sets[t] = controls
    return sets


def _fixture_cases():
    import json

    path = HERE.parent / "reference" / "json" / "matchit_nearest.json"
    cases = json.loads(path.read_text())["values"]["cases"]
    return [
        pytest.param(
            i,
            id=f"{c['distance']}-r{c['ratio']}-cal{_r_null(c['caliper'])}-{c['order']}"
            f"{'-replace' if c['replace'] else ''}{'-exact' + '+'.join(c['exact']) if _r_null(c['exact']) else ''}",
        )
        for i, c in enumerate(cases)
    ]


@pytest.mark.parametrize("case_number", _fixture_cases())
def test_equals_matchit_fixture(reference, case_number):
    ref = reference("matchit_nearest")
    data = pd.DataFrame(ref["data"])
    case = ref["values"]["cases"][case_number]
    expected = case["result"]
    result = _quiet_match(
        data,
        "mg",
        case["distance"],
        ratio=case["ratio"],
        caliper=_r_null(case["caliper"]),
        order=case["order"],
        replace=case["replace"],
        exact=_r_null(case["exact"]),
    )
    treated_rows = list(np.flatnonzero(data["mg"].to_numpy() == 1))
    assert _match_sets(result) == _r_match_sets(expected["match_matrix"], treated_rows)
    np.testing.assert_allclose(result.weights.to_numpy(), expected["weights"], rtol=1e-12, atol=1e-14)
    subclass = _r_null(expected["subclass"])
    if subclass is None:
        assert result.subclass.isna().all()
    else:
        ours = result.subclass.astype("float").fillna(-1).to_numpy()
        theirs = np.array([-1 if v is None else v for v in subclass], dtype=float)
        np.testing.assert_array_equal(ours, theirs)
    nn = expected["nn"]
    np.testing.assert_allclose(result.counts.loc[nn["rows"], "Control"], nn["control"], rtol=1e-12)
    np.testing.assert_allclose(result.counts.loc[nn["rows"], "Treated"], nn["treated"], rtol=1e-12)
    if _r_null(case["caliper"]) is not None:
        assert result.caliper_distance == pytest.approx(expected["caliper_distance"], rel=1e-14)


def test_matched_frame_is_match_data(reference):
    ref = reference("matchit_nearest")
    data = pd.DataFrame(ref["data"])
    result = _quiet_match(data, "mg", "lp", ratio=2, caliper=0.2)
    assert (result.matched["weight"] > 0).all()
    assert result.matched.index.equals(result.weights.index[result.weights > 0])
    assert (result.matched["subclass"] == result.subclass[result.matched.index]).all()
    # Each subclass holds one treated unit and its controls.
    treated_per_set = result.matched.groupby("subclass")["mg"].sum()
    assert (treated_per_set == 1).all()


# ---------------------------------------------------------------- brute force


def _brute_force(d, is_treated, strata, ratio, caliper, processing, replace):
    """Transcription of MatchIt's vector-path loop (nn_matchC_vec) without its ratio > 1 index slip.

    All units sorted stably by distance; in round k each treated unit (processing order) takes the nearest
    eligible control to its left and to its right in that order, the left one on equal differences.
    """
    treated = np.flatnonzero(is_treated)
    order = np.argsort(d, kind="stable")
    where = np.empty(len(d), dtype=int)
    where[order] = np.arange(len(d))
    matches = np.full((len(treated), ratio), -1)
    used = set()
    for k in range(ratio):
        for i in processing if not replace else range(len(treated)):
            t = treated[i]
            own = set(matches[i, :k])
            if k > 0 and matches[i, k - 1] < 0:
                continue

            def scan(step, t=t, own=own):
                j = where[t] + step
                while 0 <= j < len(d):
                    c = order[j]
                    if not is_treated[c] and c not in own and (replace or c not in used) and strata[c] == strata[t]:
                        return c if abs(d[c] - d[t]) <= caliper else -1
                    j += step
                return -1

            left, right = scan(-1), scan(1)
            if left >= 0 and (right < 0 or abs(d[left] - d[t]) <= abs(d[right] - d[t])):
                best = left
            else:
                best = right
            if best >= 0:
                matches[i, k] = best
                used.add(best)
    return matches


@st.composite
def _problems(draw):
    n = draw(st.integers(2, 40))
    is_treated = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if is_treated.all() or not is_treated.any():
        is_treated[0] = not is_treated[0]
    # Small integers (scaled) give many exact ties in distance and in difference.
    d = np.array(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)), dtype=float) / 4
    strata = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    return {
        "is_treated": is_treated,
        "d": d,
        "strata": strata,
        "ratio": draw(st.integers(1, 3)),
        "caliper": draw(st.sampled_from([None, 0.25, 1.0])),
        "order": draw(st.sampled_from(["largest", "smallest", "random", "data"])),
        "replace": draw(st.booleans()),
        "use_exact": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@settings(max_examples=50, deadline=None)
@given(_problems())
def test_equals_brute_force_matchit_loop(problem):
    data = pd.DataFrame({"t": problem["is_treated"].astype(int), "d": problem["d"], "s": problem["strata"]})
    n1 = int(problem["is_treated"].sum())
    strata = problem["strata"] if problem["use_exact"] else np.zeros(len(data), dtype=int)
    d = problem["d"]
    caliper = np.inf if problem["caliper"] is None else problem["caliper"]
    order = problem["order"]
    d1 = d[problem["is_treated"]]
    processing = {
        "largest": np.argsort(-d1, kind="stable"),
        "smallest": np.argsort(d1, kind="stable"),
        "random": np.random.default_rng(problem["seed"]).permutation(n1),
        "data": np.arange(n1),
    }[order]
    expected = _brute_force(d, problem["is_treated"], strata, problem["ratio"], caliper, processing, problem["replace"])
    try:
        result = _quiet_match(
            data,
            "t",
            "d",
            ratio=problem["ratio"],
            caliper=problem["caliper"],
            std_caliper=False,
            order=order,
            replace=problem["replace"],
            exact="s" if problem["use_exact"] else None,
            random_state=problem["seed"],
        )
    except InputError as err:
        assert (expected < 0).all(), err
        return
    got = result.match_matrix.map(lambda v: -1 if v is pd.NA else v).to_numpy(dtype=int)
    if problem["replace"]:
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(expected, axis=1))
    else:
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 3),
    st.sampled_from([None, 0.05, 0.3]),
    st.sampled_from(["largest", "smallest"]),
)
def test_no_reuse_caliper_respected_and_row_order_invariant(seed, ratio, caliper, order):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    data = pd.DataFrame({"t": (rng.random(n) < 0.3).astype(int), "ps": rng.beta(2, 5, n)})
    if data.t.nunique() < 2:
        data.loc[0, "t"] = 1 - data.t[0]
    data.index = [f"u{i}" for i in range(n)]
    try:
        result = _quiet_match(data, "t", "ps", ratio=ratio, caliper=caliper, order=order)
    except InputError:
        assert caliper is not None
        return
    pairs = result.pairs
    assert not pairs["control"].duplicated().any(), f"seed={seed}"
    if caliper is not None:
        assert (pairs["difference"] <= result.caliper_distance).all(), f"seed={seed}"
        assert result.caliper_distance == pytest.approx(caliper * data.ps.std(ddof=1))
    shuffled = data.sample(frac=1.0, random_state=seed % 1000)
    again = _quiet_match(shuffled, "t", "ps", ratio=ratio, caliper=caliper, order=order)
    assert _match_sets(again) == _match_sets(result), f"seed={seed}"
    pd.testing.assert_series_equal(again.weights.reindex(data.index), result.weights, rtol=1e-12)


def test_random_order_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(11)
    data = pd.DataFrame({"t": (rng.random(400) < 0.4).astype(int), "ps": rng.random(400)})
    a = match_nearest(data, "t", "ps", caliper=0.05, order="random", random_state=5)
    b = match_nearest(data, "t", "ps", caliper=0.05, order="random", random_state=5)
    c = match_nearest(data, "t", "ps", caliper=0.05, order="random", random_state=6)
    assert _match_sets(a) == _match_sets(b)
    assert _match_sets(a) != _match_sets(c)


# ---------------------------------------------------------------- bad input


@pytest.fixture()
def small():
    rng = np.random.default_rng(2)
    return pd.DataFrame({"t": (rng.random(60) < 0.3).astype(int), "ps": rng.random(60)})


def test_no_caliper_warns(small):
    with pytest.warns(ModelWarning, match="no caliper"):
        match_nearest(small, "t", "ps")


def test_caliper_too_tight_suggests_wider(small):
    small = small.assign(ps=np.where(small.t == 1, small.ps + 10, small.ps))
    with pytest.raises(InputError, match="wider caliper"):
        match_nearest(small, "t", "ps", caliper=0.1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_distance(small, bad):
    small.loc[3, "ps"] = bad
    with pytest.raises(InputError, match="1 "):
        match_nearest(small, "t", "ps", caliper=0.2)


def test_treatment_not_two_valued(small):
    with pytest.raises(InputError, match="two-valued"):
        match_nearest(small.assign(t=np.arange(60) % 3), "t", "ps", caliper=0.2)


@pytest.mark.parametrize("value", [0, 1])
def test_no_treated_or_no_controls(small, value):
    with pytest.raises(InputError, match="no treated or no control"):
        match_nearest(small.assign(t=value), "t", "ps", caliper=0.2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"order": "closest"}, "order='closest'"),
        ({"ratio": 0}, "ratio=0"),
        ({"caliper": -1.0}, "caliper=-1.0"),
        # a caliper given as text (e.g. straight from a config file) used to end in numpy's TypeError
        ({"caliper": "0.2"}, "caliper='0.2'"),
        ({"caliper": True}, "caliper=True"),
    ],
)
def test_bad_options_name_the_value(small, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        match_nearest(small, "t", "ps", **{"caliper": 0.2, **kwargs})


def test_distance_array_must_have_one_value_per_row(small):
    with pytest.raises(InputError, match="one value per row"):
        match_nearest(small, "t", np.zeros(10), caliper=0.2)


# ---------------------------------------------------------------- live R


@pytest.mark.r
def test_live_matchit_matrix_path_on_fresh_data():
    seed = int(time.time() * 1000) % 2**31
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 600))
    data = pd.DataFrame(
        {
            "t": (rng.random(n) < rng.uniform(0.15, 0.35)).astype(int),
            "d": rng.normal(size=n),
            "g": rng.choice(["a", "b"], n),
        }
    )
    configs = [
        dict(ratio=int(rng.integers(1, 4)), caliper=float(rng.choice([0.1, 0.2, 0.5])), order=o)
        for o in ("largest", "smallest", "data")
    ] + [
        dict(ratio=2, caliper=None, order="largest"),
        dict(ratio=2, caliper=0.25, order="largest", exact=["g"]),
        dict(ratio=int(rng.integers(1, 4)), caliper=0.3, order="largest", replace=True),
    ]

    def r_call(c):
        cal = "NULL" if c["caliper"] is None else repr(c["caliper"])
        exact = 'c("g")' if c.get("exact") else "NULL"
        replace = "TRUE" if c.get("replace") else "FALSE"
        return (
            f'matchit_matrix(df, "t", df$d, ratio = {c["ratio"]}, caliper = {cal}, order = "{c["order"]}", '
            f"replace = {replace}, exact = {exact})"
        )

    code = (
        f'source("{(HERE / "matchit_matrix.R").as_posix()}")\nresult <- list('
        + ", ".join(r_call(c) for c in configs)
        + ")"
    )
    reference = run_r(code, {"df": data})
    treated_rows = list(np.flatnonzero(data.t.to_numpy() == 1))
    for config, expected in zip(configs, reference, strict=True):
        result = _quiet_match(
            data,
            "t",
            "d",
            ratio=config["ratio"],
            caliper=config["caliper"],
            order=config["order"],
            replace=config.get("replace", False),
            exact=config.get("exact"),
        )
        msg = f"seed={seed} config={config}"
        assert _match_sets(result) == _r_match_sets(expected["match_matrix"], treated_rows), msg
        np.testing.assert_allclose(result.weights.to_numpy(), expected["weights"], rtol=1e-12, atol=1e-14, err_msg=msg)
        if _r_null(expected["subclass"]) is not None:
            theirs = np.array([-1 if v is None else v for v in expected["subclass"]], dtype=float)
            np.testing.assert_array_equal(result.subclass.astype("float").fillna(-1).to_numpy(), theirs, err_msg=msg)


@pytest.mark.parametrize("replace", [False, True])
def test_treated_in_a_stratum_without_controls_stays_unmatched(replace):
    # Found by the property test: a stratum with treated units only must not reach past its block.
    data = pd.DataFrame({"t": [0, 0, 1, 1, 1], "d": [1.25, 0.0, 0.0, 2.5, 0.0], "s": [0, 0, 0, 0, 1]})
    result = _quiet_match(data, "t", "d", exact="s", replace=replace)
    assert result.weights[4] == 0
    assert pd.isna(result.match_matrix.loc[4, 1])
    assert result.match_matrix.loc[2, 1] == 1  # |0 - 0| beats |0 - 1.25|


def test_result_is_frozen_and_carries_what_the_figures_need(small):
    import dataclasses

    result = match_nearest(small, "t", "ps", ratio=2, caliper=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.weights = None  # type: ignore[misc]
    # Scores and arms before (all rows) and after (weight > 0) matching, aligned to the data.
    assert result.distance.index.equals(small.index) and result.treated.index.equals(small.index)
    np.testing.assert_array_equal(result.distance.to_numpy(), small["ps"].to_numpy())
    np.testing.assert_array_equal(result.treated.to_numpy(), small["t"].to_numpy() == 1)
    assert result.matched["t"].sum() == result.counts.loc["Matched", "Treated"]
