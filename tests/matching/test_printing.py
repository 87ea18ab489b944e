"""Printed matching results: the propensity model against R's print(summary(glm)) (tests/reference/r/print.R),
the sample-size, balance and Table 1 layouts, and the plots drawn from results."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from retrocohort.matching import balance, balance_before_after, match_nearest, propensity_score, table_one
from retrocohort.matching._tables import BalanceTable, TableOne

matplotlib.use("Agg")

COVS = ["age", "sex", "sepsis", "stage", "lactate"]


@pytest.fixture(scope="module")
def glm_case(reference):
    ref = reference("print_glm")
    return ref["values"]["summary_glm"], pd.DataFrame(ref["data"])


def _strip_stars(line: str) -> str:
    # summary.glm's significance stars are not printed by us (a deliberate difference)
    return re.sub(r"\s+(\*{1,3}|\.)?\s*$", "", line).rstrip()


def test_propensity_repr_matches_summary_glm(glm_case):
    r, data = glm_case
    text = repr(propensity_score(data, "mg", COVS))
    start = r.index("Coefficients:")
    theirs = [_strip_stars(line) for line in r[start + 1 : start + 9]]
    ours_lines = text.splitlines()
    mine = ours_lines[ours_lines.index("Coefficients:") + 1 :][:8]
    assert mine == theirs
    for label in ("    Null deviance", "Residual deviance", "AIC", "Number of Fisher"):
        assert next(x for x in ours_lines if x.startswith(label)) == next(x.rstrip() for x in r if x.startswith(label))


def test_match_repr_shows_sample_sizes(glm_case):
    _, data = glm_case
    ps = propensity_score(data, "mg", COVS)
    m = match_nearest(data, "mg", distance=ps.score, ratio=2, caliper=0.2)
    lines = repr(m).splitlines()
    assert lines[0].startswith(
        'Nearest-neighbour matching (MatchIt method = "nearest") of mg: 2:1, without replacement'
    )
    matched = next(line for line in lines if line.startswith("Matched") and "(ESS)" not in line)
    assert [float(x) for x in matched.split()[1:]] == [
        m.counts.loc["Matched", "Control"],
        m.counts.loc["Matched", "Treated"],
    ]
    assert "<caption style='text-align:left'>Sample sizes</caption>" in m._repr_html_()


def test_balance_is_a_dataframe_that_prints_and_plots(glm_case):
    _, data = glm_case
    ps = propensity_score(data, "mg", COVS)
    m = match_nearest(data, "mg", distance=ps.score, caliper=0.2)
    before = balance(data, "mg", COVS)
    assert isinstance(before, BalanceTable) and isinstance(before, pd.DataFrame)
    assert isinstance(before[before["smd"] > 0.1], BalanceTable)  # derived frames keep the type (pandas' advice)
    assert repr(before[["smd"]]) == repr(pd.DataFrame(before[["smd"]]))  # without its columns: pandas' repr
    text = repr(before)
    assert text.splitlines()[1].split()[:5] == ["type", "mean", "treated", "mean", "control"]
    n_over = int((before["smd"] > 0.1).sum())
    assert text.splitlines()[-1] == f"{n_over} of {len(before)} rows above SMD 0.1"
    both = balance_before_after(data, "mg", COVS, m.weights)
    fig = both.plot()
    gids = {line.get_gid() for line in fig.axes[0].get_lines()}
    assert {"love-before", "love-after"} <= gids
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(before)
    fig2 = before.plot(after=balance(data, "mg", COVS, m.weights))
    assert {"love-before", "love-after"} <= {line.get_gid() for line in fig2.axes[0].get_lines()}


def test_table_one_prints_like_tableone(glm_case):
    _, data = glm_case
    t = table_one(data, "mg", ["age", "sex", "stage"])
    assert isinstance(t, TableOne)
    lines = repr(t).splitlines()
    assert lines[1].startswith("n ")
    # labels left-aligned, cells right-aligned: every body line is as long as the widest one or shorter
    assert lines[2].startswith("age (mean (SD))")
    assert re.search(r"\d+\.\d\d \(\d+\.\d\d\)", lines[2])
    assert "<th>SMD</th>" in t._repr_html_()


def test_ps_plot_before_and_after(glm_case):
    _, data = glm_case
    ps = propensity_score(data, "mg", COVS)
    fig = ps.plot()
    assert len(fig.axes) == 1 and len(fig.axes[0].containers) == 2  # one bar set per arm
    m = match_nearest(data, "mg", distance=ps.score, caliper=0.2)
    fig = ps.plot(matched=m, labels=["control", "Mg"])
    assert [ax.get_title() for ax in fig.axes] == ["Before matching", "After matching"]
    assert any("Mg (n = " in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    heights = np.concatenate([[b.get_height() for b in c] for c in fig.axes[1].containers])
    assert heights.max() > 0 and heights.min() < 0  # exposed above, comparator below


def test_ps_plot_refuses_a_match_from_other_rows(glm_case):
    from retrocohort.errors import InputError

    _, data = glm_case
    ps = propensity_score(data, "mg", COVS)
    half = data.iloc[: len(data) // 2]
    m = match_nearest(half, "mg", distance=ps.score.loc[half.index], caliper=0.2)
    with pytest.raises(InputError, match=r"covers 120 of the 240 rows scored \(120 rows have no matching weight\)"):
        ps.plot(matched=m)
