"""Tables and paragraphs: the numbers of the result, formatted as journals print them, counts suppressed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.report import (
    at_risk_table,
    attrition_table,
    methods_paragraph,
    ph_test_table,
    results_paragraph,
    results_table,
    table_one_combined,
)
from retrocohort.report.formatting import DASH, format_p, format_ratio
from retrocohort.report.tables import estimates_frame
from retrocohort.study.spec import default_study


def _with_threshold(result, threshold):
    study = result.study.model_copy(update={"report": result.study.report.model_copy(
        update={"small_cell_threshold": threshold})})
    return replace(result, study=study)


@settings(max_examples=50, deadline=None)
@given(p=st.floats(0, 1))
def test_p_format_keeps_the_side_of_0_05_and_the_precision_rule(p):
    text = format_p(p)
    if p < 0.001:
        assert text == "< 0.001"
    elif p > 0.99:
        assert text == "> 0.99"
    else:
        value = float(text)
        decimals = len(text.split(".")[1])
        assert decimals == (3 if p < 0.01 else decimals)
        assert decimals in (2, 3) and abs(value - p) <= 0.5 * 10 ** -decimals + 1e-12
        assert (value < 0.05) == (p < 0.05) or p == pytest.approx(0.05, abs=5e-4)


def test_p_format_examples_of_the_rule():
    # the rule in words: < 0.001; 3 decimals below 0.01; 2 decimals, 3 if 2 would cross 0.05
    assert [format_p(x) for x in (0.0004, 0.0042, 0.046, 0.0449, 0.31, 0.999, float("nan"))] == [
        "< 0.001", "0.004", "0.046", "0.04", "0.31", "> 0.99", "\u2014"]


def test_results_table_rows_are_the_estimates_then_the_skipped(result):
    table = results_table(result)
    assert len(table) == len(result.estimates) + len(result.skipped)
    for k, e in enumerate(result.estimates):
        row = table.iloc[k]
        assert row["Estimate (95% CI)"] == format_ratio(e.estimate, e.lower, e.upper)
        assert row["p"] == format_p(e.p)
        assert row["Patients"] == f"{e.n:,}" and row["Events"] == f"{e.n_events:,}"
        assert row["Ratio"] == ("sHR" if e.model.startswith("fine_gray") else "HR")
        primary = (e.outcome, e.model, e.population) == ("death_90d", "cox_adjusted", "matched")
        assert (row["Published (95% CI)"] == f"0.38 (0.18{DASH}0.83)") == primary
        assert row["Planted truth"] == f"{result.planted['hr_death' if e.outcome == 'death_90d' else 'shr_krt']:.2f}"
    skipped = table.iloc[-1]
    assert skipped["Estimate (95% CI)"] == "not estimated" and skipped["Variance"] == result.skipped[0].reason


def test_results_table_without_published_or_truth(result):
    study = result.study.model_copy(update={"report": result.study.report.model_copy(
        update={"published_hr_death": None, "published_hr_krt": None})})
    table = results_table(replace(result, study=study, synthetic=False, planted=None))
    assert "Published (95% CI)" not in table.columns and "Planted truth" not in table.columns


def test_counts_suppressed_in_tables(result):
    big = _with_threshold(result, 1000)
    table = results_table(big)
    assert set(table["Patients"].iloc[: len(result.estimates)]) == {"<1000"}
    frame = estimates_frame(big)
    assert set(frame["n"]) == {"<1000"} and frame["estimate"].tolist() == [e.estimate for e in result.estimates]
    att = attrition_table(big)
    assert set(att["Remaining"]) == {"<1000"}
    t1 = table_one_combined(big)
    assert (t1.loc["n"].drop(labels=[c for c in t1.columns if c[1] in ("SMD", "missing")]) == "<1000").all()
    age = next(i for i in t1.index if i.startswith("age"))
    assert "<1000" not in t1.loc[age].tolist()  # mean (SD) is not a count


def test_table_one_combined_has_both_periods_and_arm_labels(result):
    t1 = table_one_combined(result)
    assert list(dict.fromkeys(t1.columns.get_level_values(0))) == ["Before matching", "After matching"]
    assert list(t1["Before matching"].columns[:2]) == ["no Mg", "Mg"]
    assert t1.loc["n", ("After matching", "Mg")] == str(result.counts["matched_exposed"])
    assert t1.loc["n", ("Before matching", "no Mg")] == str(result.counts["unexposed"])


def test_at_risk_table_counts_rows(result):
    frame = at_risk_table(result.km, [0, 30, 90], {0: "no Mg", 1: "Mg"}, threshold=0)
    m = result.matched
    for arm, name in ((0, "no Mg"), (1, "Mg")):
        t = m.loc[m["exposed"] == arm, "death_time"]
        assert frame.loc[name].tolist() == [f"{int((t >= d).sum()):,}" for d in (0, 30, 90)]


def test_ph_table_has_global_row(result):
    table = ph_test_table(result)
    assert table["Term"].iloc[-1] == "GLOBAL"
    assert table["p"].tolist() == [format_p(p) for p in result.ph_test.table["p"]]


def test_methods_paragraph_cites_the_study_file(result):
    text = methods_paragraph(result)
    s = result.study
    for itemid in (*s.cohort.crrt_itemids, *s.exposure.itemids, s.labs.serum_mg_itemid):
        assert str(itemid) in text
    assert "Dialysis - CVVHDF" in text and "magnesium sulfate" in text
    assert f"{s.matching.caliper:g} standard deviations of the logit" in text
    assert f"up to {s.matching.ratio} unexposed" in text
    assert f"at least {s.outcomes.krt_free_days:g} KRT-free days alive" in text
    assert "Efron" in text and "Fine-Gray" in text and "Gray's test" in text
    assert "verified against R survival, cmprsk and MatchIt" in text
    blocks = text.split("\n\n")
    assert len(blocks) == 5 and blocks[2].startswith("A logistic regression") and "\n" not in "".join(blocks)
    other = default_study().model_copy(update={
        "matching": s.matching.model_copy(update={"caliper": 0.1, "ratio": 3}),
        "outcomes": s.outcomes.model_copy(update={"krt_free_days": 14})})
    changed = methods_paragraph(replace(result, study=other))
    assert "0.1 standard deviations" in changed and "up to 3 unexposed" in changed and "14 KRT-free days" in changed


def test_results_paragraph_is_written_from_the_numbers(result):
    text = results_paragraph(result)
    c = result.counts
    att = result.attrition
    assert f"Of {att['remaining'].iloc[0]} screened patients, {att['remaining'].iloc[-1]} were eligible" in text
    assert f"({c['exposed']} with Mg, {c['unexposed']} with no Mg)" in text
    assert f"{c['matched_unexposed']} patients with no Mg and {c['matched_exposed']} with Mg were analysed" in text
    assert f"{result.dose_meq['mean']:.1f} \u00b1 {result.dose_meq['sd']:.1f} mEq" in text
    main = result.estimate("death_90d", "cox_adjusted", "matched")
    assert f"adjusted HR {main.estimate:.2f} (95% CI {main.lower:.2f}{DASH}{main.upper:.2f}" in text
    assert result.skipped[0].reason in text  # skipped model explained in words
    assert "synthetic" in text and f"{result.planted['hr_death']:.2f}" in text


def test_results_paragraph_suppresses_small_counts(result):
    text = results_paragraph(_with_threshold(result, 1000))
    assert "Of <1000 screened patients, <1000 were eligible" in text
    for key in ("exposed", "unexposed", "matched_exposed", "matched_unexposed"):
        assert f" {result.counts[key]} " not in text


def test_results_paragraph_when_matching_and_models_were_skipped(result):
    from retrocohort.study.results import SkippedModel

    skipped = (SkippedModel("matching", "matching", "matched", "no exposed patient had a control within the caliper"),
               SkippedModel("death_90d", "cox_adjusted", "matched", "no matched cohort"))
    study = result.study.model_copy(update={"report": result.study.report.model_copy(
        update={"published_hr_death": None, "published_hr_krt": None})})
    bare = replace(result, study=study, synthetic=False, planted=None, matched=None, matching=None, balance_after=None, km=None, logrank=None, cif=None,
                   gray=None, ph_test=None, estimates=(), skipped=skipped, e_value=None)
    text = results_paragraph(bare)
    assert text.count("matching was not performed (no exposed patient had a control within the caliper)") == 1
    assert "not estimated: no matched cohort" in text
    assert "HR" not in text  # no estimate invented when none was fitted


def test_only_outcome_models_become_skipped_rows(result):
    from retrocohort.study.results import SkippedModel

    extra = (*result.skipped, SkippedModel("death_90d", "e_value", "matched", "no hazard ratio"),
             SkippedModel("matching", "matching", "matched", "nothing matched"))
    table = results_table(replace(result, skipped=extra))
    assert len(table) == len(result.estimates) + len(result.skipped)
    assert "no hazard ratio" in results_paragraph(replace(result, skipped=extra))
