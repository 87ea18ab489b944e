"""Small-cell suppression: the rule, its string form, frames and Table 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError
from retrocohort.matching import table_one
from retrocohort.report import suppress_frame, suppress_small_cells, suppress_table_one
from retrocohort.report.suppression import format_count


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
    data = pd.DataFrame({
        "exposed": np.r_[np.ones(20, int), np.zeros(40, int)],
        "age": rng.normal(60, 10, n),
        # 3 exposed women: a small cell in the exposed column of the sex row
        "sex": np.r_[["F"] * 3 + ["M"] * 17, ["F"] * 20 + ["M"] * 20],
    })
    raw = table_one(data, "exposed", ["age", "sex"], categorical=["sex"])
    out = suppress_table_one(raw, threshold=5)
    assert out.shape == raw.shape
    sex_row = next(i for i in raw.index if str(i).startswith("sex"))
    # "sex = M (%)" shows M: 17 exposed, 20 unexposed: kept; the n row kept (20, 40)
    assert out.loc[sex_row].tolist() == raw.loc[sex_row].tolist()
    high = suppress_table_one(raw, threshold=25)
    exposed_col = next(c for c in raw.columns if str(c).strip() == "1")
    unexposed_col = next(c for c in raw.columns if str(c).strip() == "0")
    assert high.loc["n", exposed_col] == "<25" and high.loc["n", unexposed_col] == raw.loc["n", unexposed_col]
    assert high.loc[sex_row, exposed_col] == "<25"  # 17 (85.0) hidden whole, percentage too
    assert high.loc[sex_row, unexposed_col] == "<25"  # 20 (50.0)
    age_row = next(i for i in raw.index if str(i).startswith("age"))
    assert high.loc[age_row].tolist() == raw.loc[age_row].tolist()  # mean (SD) and SMD untouched


def test_weighted_counts_of_a_matched_table_one_are_suppressed_too():
    """After matching, tableone counts are sums of matching weights ("36.9 (52.8)", n "70.0")."""
    raw = pd.DataFrame({"0": ["70.0", "36.9 (52.8)", "3.5 (5.0)", "63.90 (14.10)"],
                        "1": ["36.0", "20.0 (55.6)", "4.0 (11.1)", "62.39 (14.00)"],
                        "SMD": ["", "0.056", "0.120", "0.108"]},
                       index=["n", "sex = M (%)", "vasopressor = 1 (%)", "age (mean (SD))"])
    out = suppress_table_one(raw, threshold=5)
    assert out.loc["vasopressor = 1 (%)", "0"] == "<5" and out.loc["vasopressor = 1 (%)", "1"] == "<5"
    assert out.loc["sex = M (%)"].tolist() == raw.loc["sex = M (%)"].tolist()
    assert out.loc["n", "0"] == "70" and out.loc["n", "1"] == "36"  # whole weighted n printed as a count
    assert out.loc["age (mean (SD))"].tolist() == raw.loc["age (mean (SD))"].tolist()
    assert suppress_table_one(raw, threshold=50).loc["n", "1"] == "<50"


def test_counts_in_free_text():
    from retrocohort.report import suppress_counts_in_text

    text = "1 exposed (magnesium sulfate started in (index + 0 h, index + 48 h]), 6 unexposed; labevents 50960; 3 deaths"
    out = suppress_counts_in_text(text, 5)
    assert out.startswith("<5 exposed") and "6 unexposed" in out and "<5 deaths" in out
    assert "50960" in out and "+ 0 h" in out and "48 h" in out  # itemids and hours untouched
    assert suppress_counts_in_text(text, 0) == text
