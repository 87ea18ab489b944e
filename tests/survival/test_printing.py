"""Printed results against R's printed output (tests/reference/r/print.R: capture.output(print(fit))).

Lines are compared after stripping trailing blanks (R's cat() leaves one after
"number of events= 151"). Deliberate differences, documented in
docs/api.md ("Printed results"): the ``Call:`` line names our
function (``cox(Surv(time, status) ~ ..., ties = "efron")``), summary.coxph's
significance stars are not printed, crr's summary shows our call and counts,
and cuminc's print shows only the cause of the result.
"""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

from retrocohort._printing import coefficient_lines, format_numbers, format_pvalue, format_pvalues
from retrocohort.survival import cox, cumulative_incidence, fine_gray, gray_test, kaplan_meier, logrank, ph_test

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def lung(reference):
    ref = reference("print_lung")
    return ref["values"], pd.DataFrame(ref["data"])


@pytest.fixture(scope="module")
def mgus(reference):
    ref = reference("print_mgus2")
    return ref["values"], pd.DataFrame(ref["data"])


def _block(r_lines: list[str], first: str, n: int) -> list[str]:
    """n lines of R's output starting at the line that starts with ``first``."""
    start = next(i for i, line in enumerate(r_lines) if line.startswith(first))
    return [line.rstrip() for line in r_lines[start : start + n]]


def _ours(text: str, first: str, n: int) -> list[str]:
    return _block(text.splitlines(), first, n)


COVS = ["age", "sex", "ecog", "wt.loss"]


# ----------------------------------------------------------------- R's number formatting on known values


@pytest.mark.parametrize(
    ("values", "digits", "expected"),
    [
        ([0.013104, -0.009093, 1.0], 4, ["0.013104", "-0.009093", "1.000000"]),  # common decimals
        ([123456789.0], 7, ["123456789"]),
        ([1e-10, 1.0], 7, ["1e-10", "1e+00"]),  # scientific when narrower
        ([0.1 + 0.2], 7, ["0.3"]),
        ([float("nan"), 2.5], 3, ["NA", "2.5"]),
        ([-0.0000123], 3, ["-1.23e-05"]),
    ],
)
def test_format_numbers_as_r_format(values, digits, expected):
    assert [s.strip() for s in format_numbers(values, digits)] == expected


def test_format_pval_rules():
    # format.pval: below eps "<2e-16" (digits 1: no blank), fixed and scientific groups apart
    assert format_pvalue(1e-300, 1) == "<2e-16"
    assert format_pvalue(1e-300, 5) == "< 2.22e-16"
    assert format_pvalues([0.1755348, 0.000929, 0.0273, 7.08e-05], 3) == [
        "0.175535",
        "0.000929",
        "0.027300",
        "7.08e-05",
    ]
    assert format_pvalue(0.0019, 1) == "0.002"


def test_printcoefmat_rounds_zero_with_fewer_digits():
    lines = coefficient_lines(
        ["a", "b"], ["coef", "se", "z", "p"], np.array([[1e-9, 0.5, 0.0, 1.0], [2.0, 0.1, 20, 0.0]]), 4, 2
    )
    assert lines[0].split() == ["coef", "se", "z", "p"]
    assert lines[1].split()[1] == "1e-09"  # printCoefmat re-formats a value that rounding made 0
    assert lines[2].split()[-1] == "<2e-16"


# ----------------------------------------------------------------- against R's printed output


def test_cox_repr_matches_print_coxph(lung):
    values, d = lung
    fit = cox(d, "time", "status", COVS)
    text = repr(fit)
    r = values["coxph"]
    assert _ours(text, "             coef", 7) == _block(r, "             coef", 7)
    assert _ours(text, "Likelihood ratio test=", 2) == _block(r, "Likelihood ratio test=", 2)
    rs = values["coxph_summary"]
    assert _ours(text, "        exp(coef)", 7) == _block(rs, "        exp(coef)", 7)
    for label in ("Likelihood ratio test= ", "Wald test", "Score (logrank)"):
        assert _ours(text, label, 1) == _block(rs, label, 1)
    assert text.splitlines()[1] == 'cox(Surv(time, status) ~ age + sex + ecog + wt.loss, ties = "efron")'


def test_cox_repr_does_not_compute_concordance_but_shows_it_once_computed(lung):
    values, d = lung
    fit = cox(d, "time", "status", COVS)
    assert "not yet computed" in repr(fit)
    assert "_concordance_parts" not in fit.__dict__  # repr stayed cheap
    assert fit.concordance > 0.5
    assert _ours(repr(fit), "Concordance=", 1) == _block(values["coxph_summary"], "Concordance=", 1)


def test_robust_cox_repr_matches_r(lung):
    values, d = lung
    fit = cox(d, "time", "status", COVS, ties="breslow", robust=True)
    assert fit.concordance > 0.5
    text = repr(fit)
    assert _ours(text, "             coef", 7) == _block(values["coxph_robust"], "             coef", 7)
    rs = values["coxph_robust_summary"]
    assert _ours(text, "        exp(coef)", 7) == _block(rs, "        exp(coef)", 7)
    assert _ours(text, "Concordance=", 4) == _block(rs, "Concordance=", 4)  # "p=<2e-16" and "Robust = 26"
    assert _ours(text, "  (Note:", 2) == _block(rs, "  (Note:", 2)


def test_cox_html_has_both_tables(lung):
    _, d = lung
    page = cox(d, "time", "status", COVS)._repr_html_()
    assert page.count("<table") == 2
    assert "<th>exp(coef)</th>" in page and "0.000929" in page


def test_km_repr_matches_print_survfit(lung):
    values, d = lung
    assert repr(kaplan_meier(d, "time", "status", "sex")).splitlines()[2:] == _block(values["survfit_sex"], "     ", 3)
    assert repr(kaplan_meier(d, "time", "status")).splitlines()[2:] == _block(values["survfit_all"], "     ", 2)
    assert "<td style='text-align:right'>433</td>" in kaplan_meier(d, "time", "status", "sex")._repr_html_()


def test_logrank_repr_matches_print_survdiff(lung):
    values, d = lung
    text = repr(logrank(d, "time", "status", "sex"))
    r = values["survdiff_sex"]
    assert _ours(text, "             N", 3) == _block(r, "             N", 3)
    assert _ours(text, " Chisq=", 1) == _block(r, " Chisq=", 1)


def test_ph_test_repr_matches_print_cox_zph(lung):
    values, d = lung
    text = repr(ph_test(cox(d, "time", "status", COVS)))
    assert [line.rstrip() for line in text.splitlines()] == [line.rstrip() for line in values["cox_zph"]]


def test_finegray_repr_matches_summary_crr(mgus):
    values, d = mgus
    fit = fine_gray(d, "etime", "event", ["age", "sex", "hgb"], cause=1)
    text = repr(fit)
    r = values["crr_summary"]
    assert _ours(text, "         coef", 4) == _block(r, "         coef", 4)
    assert _ours(text, "     exp(coef)", 4) == _block(r, "     exp(coef)", 4)
    assert _ours(text, "Num. cases", 3) == _block(r, "Num. cases", 3)
    # plus the sHR with its interval, and print(crr)'s two-sided p-values agree with ours at R's precision
    assert "  sexM  sHR 0.785 (0.543 to 1.136)" in text.splitlines()
    r_p = [float(v) for v in _block(values["crr"], "two-sided", 3)[2].split()]
    assert np.allclose(r_p, [float(f"{p:.2g}") for p in fit.summary["p"]])


def test_cif_repr_matches_cuminc_estimates(mgus):
    values, d = mgus
    text = repr(cumulative_incidence(d, "etime", "event", cause=1, group="sex"))
    r = values["cuminc_sex"]
    ours_est = _ours(text, "$est", 4)
    r_est = _block(r, "$est", 5)
    assert ours_est[1].split() == r_est[1].split()  # the same pretty time points
    for row in ("F 1", "M 1"):
        mine = next(line for line in ours_est if line.startswith(row)).split()[2:]
        theirs = next(line for line in r_est if line.startswith(row)).split()[2:]
        assert mine == theirs
    r_var = _block(r, "$var", 5)
    mine_var = _ours(text, "$var", 4)
    for row in ("F 1", "M 1"):
        a = next(line for line in mine_var if line.startswith(row)).split()[2:]
        b = next(line for line in r_var if line.startswith(row)).split()[2:]
        assert [x == "NA" for x in a] == [x == "NA" for x in b]
        assert [float(x) for x in a if x != "NA"] == pytest.approx([float(x) for x in b if x != "NA"], rel=1e-6)


def test_gray_repr_matches_cuminc_tests(mgus):
    values, d = mgus
    text = repr(gray_test(d, "etime", "event", "sex", cause=1))
    ours = _ours(text, "1 ", 1)[0].split()
    theirs = _block(values["cuminc_sex"], "1 ", 1)[0].split()
    assert ours[0] == theirs[0] and ours[1] == theirs[1] and ours[3] == theirs[3]
    assert float(ours[2]) == pytest.approx(float(theirs[2]), rel=1e-6)  # R formats pv with cause 2's row


def test_results_stay_frozen_after_repr(lung):
    _, d = lung
    fit = cox(d, "time", "status", COVS)
    repr(fit)
    with pytest.raises(AttributeError):
        fit.n = 3  # type: ignore[misc]


# ----------------------------------------------------------------- plots


def test_km_plot_draws_one_curve_per_group(lung):
    _, d = lung
    fig = kaplan_meier(d, "time", "status", "sex").plot()
    curves = [a for ax in fig.axes for a in ax.get_lines() if (a.get_gid() or "").startswith("curve-")]
    assert len(curves) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["female", "male"]


def test_km_plot_on_given_axes(lung):
    from matplotlib.figure import Figure

    _, d = lung
    fig = Figure()
    ax = fig.add_subplot()
    assert kaplan_meier(d, "time", "status").plot(ax=ax) is fig


def test_cif_plot_and_forest_plots(mgus):
    _, d = mgus
    fig = cumulative_incidence(d, "etime", "event", cause=1, group="sex").plot(gray_p=0.3)
    curves = [a for a in fig.axes[0].get_lines() if (a.get_gid() or "").startswith("curve-")]
    assert len(curves) == 2
    assert "Gray's test" in next(t.get_text() for t in fig.axes[0].texts if t.get_gid() == "gray-p")
    fg = fine_gray(d, "etime", "event", ["age", "sex", "hgb"], cause=1)
    forest = fg.plot()
    bars = forest.axes[0].containers  # one errorbar per term
    assert len(forest.axes[0].get_yticklabels()) == 3
    assert any("age" in t.get_text() for t in forest.axes[0].get_yticklabels())
    assert len(bars) == 3


def test_html_cells_keep_a_p_value_below_eps_whole():
    # "< 2e-16" can have a blank in it: the HTML table must keep it as one cell, not split it
    rng = np.random.default_rng(7)
    x = np.r_[np.zeros(1000), np.ones(1000)]
    y = rng.normal(size=2000)
    big = pd.DataFrame({"t": np.ceil(rng.exponential(1 / np.exp(1.5 * x + 0.1 * y)) * 100), "e": 1, "x": x, "y": y})
    fit = cox(big, "t", "e", ["x", "y"])
    coef_table = repr(fit).splitlines()[3:6]
    page = fit._repr_html_()
    shown = re.search(r"(< ?2e-16)$", coef_table[1]).group(1)  # the data make x's p underflow
    assert f"<td style='text-align:right'>{shown.replace('<', '&lt;')}</td>" in page
    rows = re.findall(r"<tr><th style='text-align:left'>(\w+)</th>((?:<td[^>]*>[^<]*</td>)+)</tr>", page)
    assert [name for name, _ in rows[:2]] == ["x", "y"]
    assert all(cells.count("<td") == 5 for _, cells in rows[:2])  # coef, exp(coef), se(coef), z, p


def test_every_survival_result_renders_an_html_table(lung, mgus):
    _, d = lung
    _, mg = mgus
    results = [
        kaplan_meier(d, "time", "status"),
        logrank(d, "time", "status", "sex"),
        ph_test(cox(d, "time", "status", COVS)),
        cumulative_incidence(mg, "etime", "event", cause=1),
        gray_test(mg, "etime", "event", "sex", cause=1),
        fine_gray(mg, "etime", "event", ["age", "sex", "hgb"], cause=1),
    ]
    for result in results:
        page = result._repr_html_()
        assert page.startswith("<div class='retrocohort-result'>") and "<table" in page, type(result).__name__
    ungrouped_cif = repr(results[3]).splitlines()
    assert next(line for line in ungrouped_cif if line.startswith("1 ")).split()[1] != "NA"
