"""Figures: the right artists, drawn from the numbers of the results, without pyplot leaks."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from retrocohort.errors import InputError
from retrocohort.report import (
    cumulative_incidence_plot,
    flow_diagram,
    forest_plot,
    kaplan_meier_plot,
    love_plot,
    propensity_distributions,
    save_figure,
    study_figures,
)
from retrocohort.report.figures import matched_mask_of
from retrocohort.report.formatting import format_p_inline
from retrocohort.report.suppression import report_times

TIMES = [0, 15, 30, 45, 60, 75, 90]
LABELS = {0: "no Mg", 1: "Mg"}


def _by_gid(fig: Figure, prefix: str) -> list:
    return [a for a in fig.findobj() if (a.get_gid() or "").startswith(prefix)]


def test_km_curves_bands_censor_ticks_follow_the_table(result):
    fig = kaplan_meier_plot(result.outcomes["death"].km, TIMES, LABELS, result.outcomes["death"].logrank.p_value)
    table = result.outcomes["death"].km.table
    for i, group in enumerate([0, 1]):
        rows = table[table["group"] == group]
        (curve,) = _by_gid(fig, f"curve-{i}")
        x, y = curve.get_xdata(), curve.get_ydata()
        assert x[0] == 0 and y[0] == 1.0  # survfit's implicit (0, 1)
        np.testing.assert_allclose(y[1:], rows["survival"].to_numpy())
        assert np.all(np.diff(y) <= 0)
        assert len(_by_gid(fig, f"band-{i}")) == 1
        (ticks,) = _by_gid(fig, f"censor-{i}")
        assert len(ticks.get_xdata()) == int((rows["n_censor"] > 0).sum())
    main = fig.axes[0]
    assert main.get_ylim()[0] == 0 and main.get_ylim()[1] == pytest.approx(1.02)
    assert list(main.get_xticks()) == TIMES
    (annotation,) = _by_gid(fig, "logrank-p")
    assert annotation.get_text() == f"Log-rank {format_p_inline(result.outcomes['death'].logrank.p_value)}"


def test_km_numbers_at_risk_are_counts_of_the_matched_data(result):
    """Number at risk at t = patients of the arm with death_time >= t (counted here from the rows)."""
    fig = kaplan_meier_plot(result.outcomes["death"].km, TIMES, LABELS, None, threshold=0)
    matched = result.matched
    for i, group in enumerate([0, 1]):
        times = matched.loc[matched["exposed"] == group, "death_time"].to_numpy()
        for j, t in enumerate(TIMES):
            (text,) = _by_gid(fig, f"at-risk-{i}-{j}")
            assert text.get_text() == f"{int((times >= t).sum()):,}"
            assert text.get_position()[0] == t  # aligned to the x tick
    assert not _by_gid(fig, "logrank-p")


def test_km_numbers_at_risk_are_suppressed(result):
    fig = kaplan_meier_plot(result.outcomes["death"].km, TIMES, LABELS, 0.5, threshold=10_000)
    texts = {a.get_text() for a in _by_gid(fig, "at-risk-")}
    assert texts <= {"<10000", "0"} and "<10000" in texts


def test_cif_curves_start_at_zero_and_end_at_the_last_estimate(result):
    fig = cumulative_incidence_plot(result.outcomes["krt_liberation"].cif, LABELS, 0.0123)
    table = result.outcomes["krt_liberation"].cif.table
    for i, group in enumerate([0, 1]):
        (curve,) = _by_gid(fig, f"curve-{i}")
        y = curve.get_ydata()
        assert y[0] == 0.0 and np.all(np.diff(y) >= 0)
        assert y[-1] == pytest.approx(table.loc[table["group"] == group, "cif"].iloc[-1])
    (note,) = _by_gid(fig, "gray-p")
    assert f"Gray's test {format_p_inline(0.0123)}" in note.get_text() and "competing" in note.get_text()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["no Mg", "Mg"]


def test_love_plot_points_are_the_absolute_smds(result):
    fig = love_plot(result.balance_before, result.balance_after)
    (before,) = _by_gid(fig, "love-before")
    (after,) = _by_gid(fig, "love-after")
    (line,) = _by_gid(fig, "love-threshold")
    assert line.get_xdata()[0] == 0.1
    order = result.balance_before["smd"].abs().sort_values().index
    np.testing.assert_allclose(before.get_xdata(), result.balance_before.loc[order, "smd"].abs())
    np.testing.assert_allclose(after.get_xdata(), result.balance_after.loc[order, "smd"].abs())
    assert len(fig.axes[0].get_yticklabels()) == len(result.balance_before)


def test_ps_distributions_are_proportions_per_arm(result):
    mask = matched_mask_of(result)
    assert mask.sum() == len(result.matched)
    fig = propensity_distributions(result.cohort["ps"], result.cohort["exposed"], mask, labels=LABELS)
    assert [ax.get_title() for ax in fig.axes] == ["Before matching", "After matching"]
    for ax, keep in zip(fig.axes, [np.ones(len(mask), bool), mask], strict=True):
        containers = ax.containers
        assert len(containers) == 2
        heights = [np.array([bar.get_height() for bar in c]) for c in containers]
        assert heights[0].sum() == pytest.approx(1.0) and np.all(heights[0] >= 0)  # exposed above
        assert heights[1].sum() == pytest.approx(-1.0) and np.all(heights[1] <= 0)  # comparator below
        n_exposed = int((result.cohort["exposed"].to_numpy()[keep] == 1).sum())
        assert f"Mg (n = {n_exposed})" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_ps_distributions_refuses_bad_input():
    with pytest.raises(InputError, match="0/1"):
        propensity_distributions([0.2, 0.3], [0, 2], None)
    with pytest.raises(InputError, match="probabilities"):
        propensity_distributions([0.2, 1.3], [0, 1], None)


def test_flow_diagram_boxes_carry_attrition_counts_and_reasons(result):
    fig = flow_diagram(result.attrition, result.counts, labels=LABELS)
    text = {a.get_gid(): " ".join(a.get_text().replace("\u00a0", " ").split()) for a in _by_gid(fig, "flow-")}
    att = result.attrition
    assert f"n = {att['remaining'].iloc[0]}" in text["flow-screened"]
    assert f"n = {att['remaining'].iloc[-1]}" in text["flow-eligible"]
    assert f"n = {int(att['excluded'].sum())}" in text["flow-excluded"]
    for _, row in att.iloc[1:].iterrows():
        if row["excluded"] > 0:  # each exclusion reason with its count, without the log's "excluded:" prefix
            words = " ".join(row["reason"].removeprefix("excluded:").split()[:4])
            assert words in text["flow-excluded"] and f"(n = {row['excluded']})" in text["flow-excluded"]
    assert "excluded:" not in text["flow-excluded"]
    assert f"n = {result.counts['exposed']}" in text["flow-exposed"]
    assert f"n = {result.counts['matched_comparator']}" in text["flow-matched-unexposed"]
    unmatched = result.counts["comparator"] - result.counts["matched_comparator"]
    assert f"not matched: n = {unmatched}" in text["flow-matched-unexposed"]


def test_flow_diagram_suppresses_small_counts():
    attrition = pd.DataFrame(
        {"step": ["Screened", "Adults"], "remaining": [40, 37], "excluded": [0, 3], "reason": ["", "younger than 18"]}
    )
    fig = flow_diagram(attrition, {"exposed": 4, "unexposed": 33}, threshold=5)
    text = " ".join(a.get_text().replace("\u00a0", " ") for a in _by_gid(fig, "flow-"))
    assert "n < 5" in text and "(n = 3)" not in text and "(n = 4)" not in text and "n = 33" in text
    assert "flow-matched-exposed" not in {a.get_gid() for a in _by_gid(fig, "flow-")}


def test_forest_plot_one_errorbar_per_estimate(result):
    fig = forest_plot(result.estimates, reference={"death": 0.5})
    bars = {a.get_gid() for a in _by_gid(fig, "forest-") if not a.get_gid().startswith("forest-truth")}
    assert len(bars) == len(result.estimates)
    assert fig.axes[0].get_xscale() == "log"


def test_forest_plot_skips_an_outcome_whose_reference_is_none(result):
    outcomes = {e.outcome for e in result.estimates}
    assert "death" in outcomes and len(outcomes) > 1
    fig = forest_plot(result.estimates, reference={"death": None, **{o: 0.5 for o in outcomes - {"death"}}})
    truth_rows = [int(a.get_gid().rsplit("-", 1)[1]) for a in _by_gid(fig, "forest-truth-")]
    drawn = [e for e in result.estimates if np.isfinite(e.estimate)]  # the rows forest_plot draws, in order
    expected = [k for k, e in enumerate(drawn) if e.outcome != "death"]
    assert sorted(truth_rows) == expected


def test_a_figure_drawn_on_subfigure_axes_returns_the_root_figure():
    root = Figure()
    sub = root.subfigures(1, 2)[1]
    attrition = pd.DataFrame(
        {"step": ["Screened", "Adults"], "remaining": [40, 37], "excluded": [0, 3], "reason": ["", "younger than 18"]}
    )
    fig = flow_diagram(attrition, {"exposed": 14, "unexposed": 23}, ax=sub.add_subplot(1, 1, 1), threshold=5)
    assert fig is root


def test_study_figures_and_no_pyplot_leak(result, tmp_path):
    before = plt.get_fignums()
    figures = study_figures(result)
    assert set(figures) == {"flow", "love_plot", "ps_distribution", "km_death", "cif_krt_liberation", "forest"}
    assert all(isinstance(f, Figure) for f in figures.values())
    assert plt.get_fignums() == before  # never registered in pyplot's global manager
    png, svg = save_figure(figures["km_death"], tmp_path / "km")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "Number at risk" in svg.read_text()  # text kept as text in the SVG
    _, svg2 = save_figure(figures["km_death"], tmp_path / "again")
    assert svg.read_bytes() == svg2.read_bytes()  # reproducible: no date, fixed hash salt


def test_importing_the_report_leaves_the_backend_alone():
    """The report attaches Agg canvases itself; it must not switch a notebook's backend."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import retrocohort.report as r; "
        "import matplotlib as m; print(m.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_flow_has_no_matched_boxes_when_matching_was_skipped(result):
    from dataclasses import replace

    bare = replace(result, matched=None, matching=None, outcomes={}, estimates=())
    figures = study_figures(bare)
    assert set(figures) == {"flow", "love_plot", "ps_distribution"}
    gids = {a.get_gid() for a in _by_gid(figures["flow"], "flow-")}
    assert "flow-eligible" in gids and "flow-matched-exposed" not in gids


def _texts(fig: Figure) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text())


def test_curve_figures_are_titled_and_labelled_from_the_study(result):
    figures = study_figures(result)
    km, cif = figures["km_death"], figures["cif_krt_liberation"]
    assert km.axes[0].get_xlabel() == "Days since CKRT start" and cif.axes[0].get_xlabel() == "Days since CKRT start"
    assert km.axes[0].get_title() == "Death by day 90, matched cohort"
    assert cif.axes[0].get_ylabel() == "Cumulative incidence of KRT liberation"
    assert [t.get_text() for t in km.axes[0].get_legend().get_texts()] == ["no Mg", "Mg"]


def test_every_outcome_of_another_study_gets_its_figure_in_its_words(studies):
    result = studies["vasopressin_shock"]
    figures = study_figures(result)
    assert {"km_death", "cif_krt_initiation", "subgroups", "forest"} <= set(figures)
    assert not {"km_krt_initiation", "cif_death", "km_krt_liberation"} & set(figures)
    km = figures["km_death"]
    assert km.axes[0].get_xlabel() == "Days since norepinephrine start"
    np.testing.assert_allclose(km.axes[0].get_xticks(), report_times(result.study, 28))  # the study's times to day 28
    assert figures["cif_krt_initiation"].axes[0].get_title() == "KRT initiation by day 28, matched cohort"
    forest = _texts(figures["forest"])
    assert "Death:" in forest and "KRT initiation:" in forest
    for name in ("second_vasopressor", "thiamine_sepsis", "vasopressin_shock"):
        for stem, fig in study_figures(studies[name]).items():
            text = _texts(fig)
            for word in ("CKRT", "Mg", "KRT liberation", "90-day"):
                assert word not in text, (name, stem, word)


def test_subgroup_forest_plot_has_a_heading_per_covariate_and_a_bar_per_level(studies):
    result = studies["vasopressin_shock"]
    fig = study_figures(result)["subgroups"]
    heads = _by_gid(fig, "subgroup-head-")
    assert [h.get_text() for h in heads] == [
        f"{g.label} (interaction {format_p_inline(g.p_interaction)})"
        if np.isfinite(g.p_interaction)
        else f"{g.label} (interaction not tested)"
        for g in result.subgroups
    ]
    for i, g in enumerate(result.subgroups):
        bars = [a for a in _by_gid(fig, f"subgroup-{i}-") if a.get_gid().count("-") == 2]
        assert len({a.get_gid() for a in bars}) == int(np.isfinite(g.levels["estimate"]).sum())
    assert "subgroups" not in study_figures(studies["second_vasopressor"])  # no [analysis] subgroups


def test_a_label_with_dollar_signs_is_text_not_mathtext(result, tmp_path):
    # A study label is the user's text: "$\frac$" would stop matplotlib's math parser with a traceback.
    from dataclasses import replace

    label = r"IV $\frac$ dose"
    study = result.study.model_copy(update={"exposure": result.study.exposure.model_copy(update={"label": label})})
    figures = study_figures(replace(result, study=study))
    _, svg = save_figure(figures["flow"], tmp_path / "flow")
    assert "frac" in svg.read_text()
    assert label in [t.get_text() for t in figures["km_death"].axes[0].get_legend().get_texts()]


@pytest.mark.parametrize("words", [20, 90, 200])
def test_flow_boxes_never_overlap_nor_leave_the_figure_with_a_long_index_label(words):
    label = " ".join(["norepinephrine"] * words)
    attrition = pd.DataFrame(
        {
            "step": ["index_event", "icu_stay", "adult", "support", "eligible"],
            "remaining": [1200, 1150, 1100, 900, 900],
            "excluded": [0, 50, 50, 200, 0],
            "reason": [f"patients with an index event: {label}", "in an ICU stay", "adults", "on support", "x"],
        }
    )
    counts = {"exposed": 300, "unexposed": 600, "matched_exposed": 280, "matched_unexposed": 280}
    fig = flow_diagram(attrition, counts, labels=LABELS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = {a.get_gid(): a.get_bbox_patch().get_window_extent(renderer) for a in _by_gid(fig, "flow-")}
    page = fig.bbox
    for gid, box in boxes.items():
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, gid
    names = sorted(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    # the whole label is in the first box (wrapped, not cut)
    text = next(a for a in _by_gid(fig, "flow-screened")).get_text()
    assert text.replace("\n", " ").count("norepinephrine") == words
    plt.close(fig)
