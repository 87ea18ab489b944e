"""Small-cell suppression: the rule, its string form, frames and Table 1."""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError
from retrocohort.matching import table_one
from retrocohort.report import suppress_frame, suppress_small_cells, suppress_table_one
from retrocohort.report.suppression import (
    coarsen_curve,
    format_count,
    format_range,
    parse_count_display,
    protect_counts,
    reader_bounds,
    suppress_counts_in_text,
)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 60), threshold=st.integers(0, 12))
def test_rule_suppresses_exactly_the_small_positive_counts(n, threshold):
    shown = suppress_small_cells(n, threshold)
    if 0 < n < threshold:
        assert shown == f"<{threshold}"
    else:
        assert shown == n and isinstance(shown, int)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), pct=st.floats(0, 100), threshold=st.integers(1, 12))
def test_n_percent_cell_is_suppressed_whole(n, pct, threshold):
    cell = f"{n} ({pct:.1f})"
    shown = suppress_small_cells(cell, threshold)
    assert shown == (f"<{threshold}" if 0 < n < threshold else cell)


def test_whole_floats_become_counts_and_continuous_values_pass():
    assert suppress_small_cells(12.0, 5) == 12 and isinstance(suppress_small_cells(12.0, 5), int)
    assert suppress_small_cells(3.0, 5) == "<5"
    assert suppress_small_cells("65.2 (12.1)", 5) == "65.2 (12.1)"  # mean (SD) is not an n (%) cell unless labelled
    assert suppress_small_cells(None, 5) is None
    assert format_count(1234, 5) == "1,234"
    assert format_count(2, 10) == "<10"


@pytest.mark.parametrize("bad", [-1, 2.5, "5", True])
def test_bad_threshold_is_refused(bad):
    with pytest.raises(InputError, match="threshold"):
        suppress_small_cells(3, bad)


def test_frame_suppresses_only_the_named_count_columns():
    frame = pd.DataFrame({"n": [2, 10, 0], "events": [7, 1, 4], "mean": [1.5, 3.0, 2.0]}, index=["a", "b", "c"])
    out = suppress_frame(frame, ["n", "events"], threshold=5)
    assert out.shape == frame.shape and list(out.index) == list(frame.index)
    assert list(out["n"]) == ["<5", 10, 0]
    assert list(out["events"]) == [7, "<5", "<5"]
    assert out["mean"].equals(frame["mean"])  # continuous values untouched
    assert frame["n"].tolist() == [2, 10, 0]  # input not changed in place
    with pytest.raises(InputError, match="not in the frame"):
        suppress_frame(frame, ["nope"])


def test_zero_threshold_disables():
    frame = pd.DataFrame({"n": [1, 2, 3]})
    assert suppress_frame(frame, threshold=0)["n"].tolist() == [1, 2, 3]


def test_table_one_small_counts_hidden_continuous_kept():
    rng = np.random.default_rng(3)
    n = 60
    data = pd.DataFrame(
        {
            "exposed": np.r_[np.ones(20, int), np.zeros(40, int)],
            "age": rng.normal(60, 10, n),
            # 3 exposed women: a small cell in the exposed column of the sex row
            "sex": np.r_[["F"] * 3 + ["M"] * 17, ["F"] * 20 + ["M"] * 20],
        }
    )
    raw = table_one(data, "exposed", ["age", "sex"], categorical=["sex"])
    out = suppress_table_one(raw, threshold=5)
    assert out.shape == raw.shape
    sex_row = next(i for i in raw.index if str(i).startswith("sex"))
    exposed_col = next(c for c in raw.columns if str(c).strip() == "1")
    unexposed_col = next(c for c in raw.columns if str(c).strip() == "0")
    # "sex = M (%)" shows M: 20 unexposed kept; 17 of 20 exposed men would give the 3 exposed
    # women back (20 - 17), so the cell is the range a reader could derive anyway, without its %.
    assert out.loc[sex_row, unexposed_col] == raw.loc[sex_row, unexposed_col]
    assert out.loc[sex_row, exposed_col] == "16-19"
    assert out.loc["n"].tolist() == raw.loc["n"].tolist()
    high = suppress_table_one(raw, threshold=25)
    assert high.loc["n", exposed_col] == "<25" and high.loc["n", unexposed_col] == raw.loc["n", unexposed_col]
    assert high.loc[sex_row, exposed_col] == "<25"  # 17 (85.0) hidden whole, percentage too
    assert high.loc[sex_row, unexposed_col] == "<25"  # 20 (50.0)
    age_row = next(i for i in raw.index if str(i).startswith("age"))
    assert out.loc[age_row].tolist() == raw.loc[age_row].tolist()  # mean (SD) and SMD untouched
    # ... unless an arm has fewer patients than the threshold: its mean is (nearly) theirs, and so is the SMD.
    assert high.loc[age_row, exposed_col] == "withheld" and high.loc[age_row, "SMD"] == "withheld"


def test_weighted_counts_of_a_matched_table_one_are_suppressed_too():
    """After matching, tableone counts are sums of matching weights ("36.9 (52.8)", n "70.0")."""
    raw = pd.DataFrame(
        {
            "0": ["70.0", "36.9 (52.8)", "3.5 (5.0)", "63.90 (14.10)"],
            "1": ["36.0", "20.0 (55.6)", "4.0 (11.1)", "62.39 (14.00)"],
            "SMD": ["", "0.056", "0.120", "0.108"],
        },
        index=["n", "sex = M (%)", "vasopressor = 1 (%)", "age (mean (SD))"],
    )
    out = suppress_table_one(raw, threshold=5)
    assert out.loc["vasopressor = 1 (%)", "0"] == "<5" and out.loc["vasopressor = 1 (%)", "1"] == "<5"
    assert out.loc["sex = M (%)"].tolist() == raw.loc["sex = M (%)"].tolist()
    assert out.loc["n", "0"] == "70" and out.loc["n", "1"] == "36"  # whole weighted n printed as a count
    assert out.loc["age (mean (SD))"].tolist() == raw.loc["age (mean (SD))"].tolist()
    assert suppress_table_one(raw, threshold=50).loc["n", "1"] == "<50"


def test_counts_in_free_text():
    from retrocohort.report import suppress_counts_in_text

    text = (
        "1 exposed (magnesium sulfate started in (index + 0 h, index + 48 h]), 6 unexposed; labevents 50960; 3 deaths"
    )
    out = suppress_counts_in_text(text, 5)
    assert out.startswith("<5 exposed") and "6 unexposed" in out and "<5 deaths" in out
    assert "50960" in out and "+ 0 h" in out and "48 h" in out  # itemids and hours untouched
    assert suppress_counts_in_text(text, 0) == text


# --------------------------------------------------------------------------- complementary suppression


def test_a_small_part_of_a_published_total_takes_its_complement_with_it():
    shown = protect_counts({"eligible": 100, "exposed": 1, "unexposed": 99}, [("eligible", ("exposed", "unexposed"))])
    # 99 exactly would give the 1 back (100 - 99); 96-99 is what "<5" already says.
    assert shown == {"eligible": 100, "exposed": "<5", "unexposed": "96-99"}
    # Two small parts pinned together (10 - 8 = 2 = 1 + 1) are freed the same way.
    shown = protect_counts({"t": 10, "a": 1, "b": 1, "c": 8}, [("t", ("a", "b", "c"))])
    assert shown["a"] == shown["b"] == "<5" and shown["c"] == "2-8"
    # Nothing small: nothing changes; threshold 0: nothing changes either.
    assert protect_counts({"t": 30, "a": 10, "b": 20}, [("t", ("a", "b"))]) == {"t": 30, "a": 10, "b": 20}
    assert protect_counts({"t": 10, "a": 1, "b": 9}, [("t", ("a", "b"))], threshold=0) == {"t": 10, "a": 1, "b": 9}


def test_an_attrition_chain_needs_a_withheld_cell_on_each_side():
    values = {"r0": 629, "r1": 600, "e1": 29, "r2": 598, "e2": 2, "r3": 560, "e3": 38}
    eqs = [("r0", ("r1", "e1")), ("r1", ("r2", "e2")), ("r2", ("r3", "e3"))]
    shown = protect_counts(values, eqs)
    assert shown["e2"] == "<5"
    # r2 alone would still be r3 + e3: the chain is cut on both sides of the small step.
    assert shown["r2"] == "596-599" and shown["e3"] == "36-39"
    assert [shown[k] for k in ("r0", "r1", "e1", "r3")] == [629, 600, 29, 560]


def test_hidden_differences_between_numbers_at_risk_are_protected():
    # 50 at risk, then 47 (3 lost: a hidden difference), then 30.
    shown = protect_counts(
        {"n0": 50, "n1": 47, "lost1": 3, "n2": 30, "lost2": 17},
        [("n0", ("n1", "lost1")), ("n1", ("n2", "lost2"))],
        hidden=["lost1", "lost2"],
    )
    assert "lost1" not in shown and shown["n0"] == 50 and shown["n2"] == 30
    # 50 - 47 cannot be taken any more: n1 is the range "3 lost" allows as "<5" (46-49).
    assert shown["n1"] == "46-49"


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(st.integers(0, 9), min_size=2, max_size=4), threshold=st.integers(3, 6))
def test_no_small_part_is_pinned_brute_force(parts, threshold):
    """Enumerate every assignment a reader could hold: each small part keeps at least two values.

    (Threshold 2 is left out: "<2" is exactly 1 by itself.)
    """
    names = [f"p{i}" for i in range(len(parts))]
    values = {"total": sum(parts), **dict(zip(names, parts, strict=True))}
    shown = protect_counts(values, [("total", tuple(names))], threshold=threshold)
    ranges = {k: parse_count_display(v, threshold) for k, v in shown.items()}
    for k, v in values.items():
        lo, hi = ranges[k]
        assert lo <= v <= hi, (k, v, shown[k])  # honest
    cap = values["total"] + 1
    options = [range(int(ranges[n][0]), int(min(ranges[n][1], cap)) + 1) for n in names]
    feasible = [combo for combo in product(*options) if ranges["total"][0] <= sum(combo) <= ranges["total"][1]]
    for i, n in enumerate(names):
        if 0 < values[n] < threshold:
            assert len({combo[i] for combo in feasible}) >= 2, (values, shown)


def test_reader_bounds_and_displays():
    bounds = reader_bounds({"t": (10, 10), "a": (1, 4), "b": (8, 8)}, [("t", ("a", "b"))])
    assert bounds["a"] == (2.0, 2.0)  # what a reader gets from 10 - 8
    assert format_range(96, 99) == "96-99" and format_range(5, float("inf")) == ">=5"
    assert parse_count_display("<5") == (1, 4) and parse_count_display("96-99") == (96, 99)
    assert parse_count_display(12) == (12, 12) and parse_count_display("withheld") is None


def test_counts_in_reasons_and_notes():
    assert (
        suppress_counts_in_text("too few death events (3) for a model with 9 terms", 5)
        == "too few death events (<5) for a model with 9 terms"
    )
    text = "complete-case analysis: 3 patient(s) excluded for missing data (sofa: 3, age: 12)"
    out = suppress_counts_in_text(text, 5)
    assert out == "complete-case analysis: <5 patient(s) excluded for missing data (sofa: <5, age: 12)"
    assert suppress_counts_in_text("effective sample size 3.2 of 40", 5) == "effective sample size <5 of 40"
    # A count withheld elsewhere as a range is never exact in text.
    assert suppress_counts_in_text("1 exposed and 99 unexposed", 5, {99: "96-99"}) == "<5 exposed and 96-99 unexposed"


def test_coarse_curve_steps_hold_at_least_threshold_events():
    table = pd.DataFrame(
        {
            "group": [0] * 6 + [1] * 2,
            "time": [1.0, 2.0, 4.0, 7.0, 9.0, 12.0, 3.0, 5.0],
            "n_event": [1, 2, 2, 1, 4, 1, 1, 1],
            "n_censor": [0, 1, 0, 2, 0, 1, 0, 0],
            "survival": [0.95, 0.85, 0.75, 0.7, 0.5, 0.45, 0.9, 0.8],
        }
    )
    coarse = coarsen_curve(table, 5)
    arm0 = coarse[coarse["group"] == 0]
    # 1 + 2 + 2 = 5 events by day 4; 1 + 4 = 5 more by day 9; the last 1 is not shown.
    assert arm0["time"].tolist() == [4.0, 9.0] and arm0["n_event"].tolist() == [5, 5]
    assert arm0["survival"].tolist() == [0.75, 0.5]  # the curve's own values at those times
    assert (coarse["n_censor"] == 0).all()
    # An arm with fewer events than the threshold is a flat line from day 0.
    arm1 = coarse[coarse["group"] == 1]
    assert arm1["time"].tolist() == [0.0] and arm1["survival"].tolist() == [1.0]
    assert coarsen_curve(table, 0).equals(table)
    # With the risk set known, the curve stops before fewer than the threshold would remain.
    at_risk = table.assign(n_risk=[30, 29, 26, 8, 6, 2, 10, 9])
    cut = coarsen_curve(at_risk, 5)
    assert cut.loc[cut["group"] == 0, "time"].tolist() == [4.0]  # day 9: 6 at risk - 4 deaths = 2 left


@settings(max_examples=40, deadline=None)
@given(
    cells=st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 12]), min_size=4, max_size=4), threshold=st.integers(3, 6)
)
def test_a_two_by_two_table_with_its_margins_brute_force(cells, threshold):
    """Matched / unmatched by arm with both margins and the total (the flow diagram's shape)."""
    a, b, c, d = cells
    values = {
        "a": a,
        "b": b,
        "c": c,
        "d": d,
        "r1": a + b,
        "r2": c + d,
        "c1": a + c,
        "c2": b + d,
        "total": a + b + c + d,
    }
    eqs = [
        ("r1", ("a", "b")),
        ("r2", ("c", "d")),
        ("c1", ("a", "c")),
        ("c2", ("b", "d")),
        ("total", ("r1", "r2")),
        ("total", ("c1", "c2")),
    ]
    shown = protect_counts(values, eqs, threshold=threshold)
    ranges = {k: parse_count_display(v, threshold) for k, v in shown.items()}
    assert all(ranges[k][0] <= v <= ranges[k][1] for k, v in values.items())
    cap = values["total"] + 1
    feasible = []
    for combo in product(*[range(int(ranges[n][0]), int(min(ranges[n][1], cap)) + 1) for n in "abcd"]):
        w, x, y, z = combo
        sums = {"r1": w + x, "r2": y + z, "c1": w + y, "c2": x + z, "total": w + x + y + z}
        if all(ranges[k][0] <= v <= ranges[k][1] for k, v in sums.items()):
            feasible.append({"a": w, "b": x, "c": y, "d": z, **sums})
    for name, value in values.items():
        if 0 < value < threshold:
            assert len({f[name] for f in feasible}) >= 2, (name, values, shown)


def test_relations_that_do_not_hold_are_refused():
    with pytest.raises(InputError, match="do not satisfy"):
        protect_counts({"t": 5, "a": 1, "b": 3}, [("t", ("a", "b"))])
    with pytest.raises(InputError, match="negative"):
        protect_counts({"t": 5, "a": -1, "b": 6}, [("t", ("a", "b"))])
    with pytest.raises(InputError, match="no value"):
        protect_counts({"t": 5, "a": 1}, [("t", ("a", "b"))])


def test_the_disclosure_cache_forgets_a_result_once_it_is_gone():
    import gc

    from retrocohort.report import suppression

    class Stand:  # weak-referenceable, no attrition or estimates
        pass

    before = len(suppression._DISCLOSURES)
    stand = Stand()
    first = suppression.study_disclosure(stand)
    assert suppression.study_disclosure(stand) is first and len(suppression._DISCLOSURES) == before + 1
    del stand
    gc.collect()
    assert len(suppression._DISCLOSURES) == before


def test_a_count_before_an_arm_label_is_a_count_of_people():
    # The cohort builder's eligible line names the arms by the study's labels, not "exposed"/"unexposed".
    from retrocohort.report.suppression import suppress_counts_in_text

    line = "2 vasopressin (Vasopressin started in (0h, 48h] of the index), 40 norepinephrine alone"
    out = suppress_counts_in_text(line, 5, count_words=("vasopressin", "norepinephrine alone"))
    assert out.startswith("<5 vasopressin (") and out.endswith(", 40 norepinephrine alone")
    assert suppress_counts_in_text("48 h of vasopressin", 5, count_words=("vasopressin",)) == "48 h of vasopressin"
    assert suppress_counts_in_text(line, 5).startswith("2 vasopressin")  # without the labels: not a count word


def test_a_criterions_rule_in_a_reason_is_not_a_count():
    reason = "no KRT in the year before [exclude: at least 1 event(s) of KRT starting in [-365d, 0h)]; 3 patients"
    out = suppress_counts_in_text(reason, 5)
    assert "at least 1 event(s) of KRT" in out and out.endswith("<5 patients")
