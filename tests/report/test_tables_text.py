"""Tables and paragraphs: the numbers of the result, formatted as journals print them, in the study's words."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
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
from retrocohort.report.suppression import report_times, study_disclosure
from retrocohort.report.tables import estimates_frame
from retrocohort.study.results import SkippedModel

from .conftest import SKIP_REASON

# Words of the flagship that no other study's report may contain (issue 9: nothing of it is hard-wired).
FLAGSHIP_WORDS = ("CKRT", "Mg", "magnesium", "KRT liberation", "mEq", "90-day")


def _with_threshold(result, threshold):
    study = result.study.model_copy(
        update={"report": result.study.report.model_copy(update={"small_cell_threshold": threshold})}
    )
    return replace(result, study=study)


def _without_published(result):
    study = result.study.model_copy(update={"report": result.study.report.model_copy(update={"published": {}})})
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
        assert decimals in (2, 3) and abs(value - p) <= 0.5 * 10**-decimals + 1e-12
        assert (value < 0.05) == (p < 0.05) or p == pytest.approx(0.05, abs=5e-4)


def test_p_format_examples_of_the_rule():
    # the rule in words: < 0.001; 3 decimals below 0.01; 2 decimals, 3 if 2 would cross 0.05
    assert [format_p(x) for x in (0.0004, 0.0042, 0.046, 0.0449, 0.31, 0.999, float("nan"))] == [
        "< 0.001",
        "0.004",
        "0.046",
        "0.04",
        "0.31",
        "> 0.99",
        "\u2014",
    ]


def test_results_table_rows_are_the_estimates_then_the_skipped(result):
    table = results_table(result)
    assert len(table) == len(result.estimates) + len(result.skipped)
    for k, e in enumerate(result.estimates):
        row = table.iloc[k]
        assert row["Outcome"] == result.study.outcomes[e.outcome].label
        assert row["Estimate (95% CI)"] == format_ratio(e.estimate, e.lower, e.upper)
        assert row["p"] == format_p(e.p)
        assert row["Ratio"] == ("sHR" if e.model.startswith("fine_gray") else "HR")
        # the published figure sits only beside the primary estimate of its outcome (here: death's adjusted Cox)
        primary = (e.outcome, e.model, e.population) == ("death", "cox_adjusted", "matched")
        assert (row["Published (95% CI)"] == f"0.38 (0.18{DASH}0.83)") == primary
        assert row["Planted truth"] == f"{result.planted[e.outcome]['value']:.2f}"
    skipped = table.iloc[-1]
    assert skipped["Estimate (95% CI)"] == "not estimated" and skipped["Variance"] == SKIP_REASON
    assert skipped["Outcome"] == "KRT liberation"


def test_results_table_without_published_or_truth(result):
    table = results_table(replace(_without_published(result), synthetic=False, planted=None))
    assert "Published (95% CI)" not in table.columns and "Planted truth" not in table.columns


def test_a_study_without_published_figures_shows_none(studies):
    # second_vasopressor declares no [report] published: no column, no sentence.
    result = studies["second_vasopressor"]
    assert "Published (95% CI)" not in results_table(result).columns
    assert "published study" not in results_paragraph(result)


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
    age = next(i for i in t1.index if i.startswith("Age, years"))
    assert "<1000" not in t1.loc[age].tolist()  # mean (SD) is not a count


def test_table_one_rows_and_arms_are_the_study_labels(result):
    t1 = table_one_combined(result)
    assert list(dict.fromkeys(t1.columns.get_level_values(0))) == ["Before matching", "After matching"]
    assert list(t1["Before matching"].columns[:2]) == ["no Mg", "Mg"]
    shown = study_disclosure(result)  # 2 exposed left unmatched: the matched n is a range everywhere
    assert t1.loc["n", ("After matching", "Mg")] == str(shown.count("matched_exposed"))
    assert t1.loc["n", ("Before matching", "no Mg")] == str(result.counts["comparator"])
    rows = [str(i) for i in t1.index]
    assert "Age, years (mean (SD))" in rows and "Serum Mg, mg/dL (mean (SD))" in rows
    assert "Sepsis (ICD codes) (%)" in rows  # a 0/1 covariate is one "label (%)" row
    assert not any(r.startswith(("age ", "serum_mg", "sepsis ")) for r in rows)  # no frame column names


def test_table_one_of_another_study_has_its_own_rows(studies):
    result = studies["second_vasopressor"]
    rows = [str(i) for i in table_one_combined(result).index]
    assert any(r.startswith("Highest lactate in the 24 h before, mmol/L") for r in rows)
    assert list(table_one_combined(result)["Before matching"].columns[:2]) == ["phenylephrine", "vasopressin"]
    assert not any("Mg" in r for r in rows)


def test_at_risk_table_counts_rows(result):
    km = result.outcomes["death"].km
    frame = at_risk_table(km, [0, 30, 90], {0: "no Mg", 1: "Mg"}, threshold=0)
    m = result.matched
    for arm, name in ((0, "no Mg"), (1, "Mg")):
        t = m.loc[m["exposed"] == arm, "death_time"]
        assert frame.loc[name].tolist() == [f"{int((t >= d).sum()):,}" for d in (0, 30, 90)]


def test_report_times_come_from_the_study_or_the_horizon(result, studies):
    assert report_times(result.study, 90) == [0, 15, 30, 45, 60, 75, 90]  # [analysis] km_times_days
    assert report_times(studies["second_vasopressor"].study, 28) == pytest.approx(
        [0, 28 / 6 * 1, 28 / 6 * 2, 14, 28 / 6 * 4, 28 / 6 * 5, 28]
    )


def test_ph_table_has_global_row(result):
    ph = result.outcomes[result.primary].ph_test
    table = ph_test_table(ph)
    assert table["Term"].iloc[-1] == "GLOBAL"
    assert table["p"].tolist() == [format_p(p) for p in ph.table["p"]]


def test_methods_paragraph_says_what_the_study_file_says(result):
    text = methods_paragraph(result)
    s = result.study
    positions = [text.index(c.label) for c in s.criteria]
    assert positions == sorted(positions)  # every criterion, in the order written
    assert "first CKRT start" in text and "from CKRT start (exclusive) to 2 days after CKRT start" in text
    assert "The comparator (no Mg) received none in that window" in text
    assert "summed in mEq" in text
    for cov in s.covariates.values():
        assert cov.label in text
    assert f"{s.analysis.matching.caliper:g} standard deviations of the logit" in text
    assert f"up to {s.analysis.matching.ratio} comparator" in text
    assert "followed by at least 7 days without it, alive" in text and "followed for 90 days" in text
    assert "Efron" in text and "Fine-Gray" in text and "Gray's test" in text
    assert "verified against R survival, cmprsk and MatchIt" in text
    blocks = text.split("\n\n")
    assert len(blocks) == 5 and blocks[2].startswith("A logistic regression") and "\n" not in "".join(blocks)
    analysis = s.analysis.model_copy(
        update={"matching": s.analysis.matching.model_copy(update={"caliper": 0.1, "ratio": 3})}
    )
    outcomes = {**s.outcomes, "krt_liberation": s.outcomes["krt_liberation"].model_copy(update={"absence_days": 14})}
    changed = methods_paragraph(
        replace(result, study=s.model_copy(update={"analysis": analysis, "outcomes": outcomes}))
    )
    assert "0.1 standard deviations" in changed and "up to 3 comparator" in changed
    assert "at least 14 days without it" in changed


@pytest.mark.parametrize("name", ["second_vasopressor", "thiamine_sepsis", "vasopressin_shock"])
def test_no_flagship_word_in_another_studys_paragraphs(studies, name):
    result = studies[name]
    text = methods_paragraph(result) + " " + results_paragraph(result)
    for word in FLAGSHIP_WORDS:
        assert word not in text, word
    assert result.study.index.label in text and result.study.exposure.label in text


def test_methods_of_an_active_comparator_and_of_subgroups(studies):
    active = methods_paragraph(studies["second_vasopressor"])
    assert "The active comparator (phenylephrine) was phenylephrine started in the same window" in active
    assert "The dose" not in active  # no [dose]: no dose sentence
    assert "followed for 28 days" in active and "followed for 90 days" in active
    sub = methods_paragraph(studies["vasopressin_shock"])
    assert "within the levels of Sepsis (ICD codes) and Sex" in sub and "interaction" in sub


def test_results_paragraph_is_written_from_the_numbers(result):
    text = results_paragraph(result)
    c = result.counts
    att = result.attrition
    assert (
        f"Of {att['remaining'].iloc[0]} patients with CKRT start, {att['remaining'].iloc[-1]} were eligible"
    ) in text
    assert f"({c['exposed']} with Mg, {c['comparator']} with no Mg)" in text
    assert f"{result.dose['mean']:.1f} \u00b1 {result.dose['sd']:.1f} mEq" in text
    main = result.estimate("death", "cox_adjusted", "matched")
    assert f"adjusted HR {main.estimate:.2f} (95% CI {main.lower:.2f}{DASH}{main.upper:.2f}" in text
    assert SKIP_REASON in text  # skipped model explained in words
    assert "synthetic" in text and f"HR of death {result.planted['death']['value']:.2f}" in text


def test_results_paragraph_of_subgroups_names_the_interaction(studies):
    result = studies["vasopressin_shock"]
    text = results_paragraph(result)
    for g in result.subgroups:
        assert f"interaction of exposure and {g.label[0].lower() + g.label[1:]}" in text


def test_results_paragraph_suppresses_small_counts(result):
    text = results_paragraph(_with_threshold(result, 1000))
    assert "Of <1000 patients with CKRT start, <1000 were eligible" in text
    for key in ("exposed", "comparator", "matched_exposed", "matched_comparator"):
        assert f" {result.counts[key]} " not in text


def test_results_paragraph_when_matching_and_models_were_skipped(result):
    skipped = (
        SkippedModel("matching", "matching", "matched", "no exposed patient had a control within the caliper"),
        SkippedModel("death", "cox_adjusted", "matched", "no matched cohort"),
    )
    bare = replace(
        _without_published(result),
        synthetic=False,
        planted=None,
        matched=None,
        matching=None,
        balance_after=None,
        outcomes={},
        estimates=(),
        skipped=skipped,
        e_value=None,
    )
    text = results_paragraph(bare)
    assert text.count("matching was not performed (no exposed patient had a control within the caliper)") == 1
    assert "not estimated: no matched cohort" in text
    assert "HR" not in text  # no estimate invented when none was fitted


def test_only_outcome_models_become_skipped_rows(result):
    extra = (
        *result.skipped,
        SkippedModel("death", "e_value", "matched", "no hazard ratio"),
        SkippedModel("matching", "matching", "matched", "nothing matched"),
    )
    table = results_table(replace(result, skipped=extra))
    assert len(table) == len(result.estimates) + len(result.skipped)
    assert "no hazard ratio" in results_paragraph(replace(result, skipped=extra))


def test_attrition_steps_are_named_by_the_study_not_title_cased_keys(result):
    att = attrition_table(result)
    steps = dict(zip(result.attrition["step"], att["Step"], strict=True))
    # a criterion's step is its label, capitalised
    assert result.study.criteria
    for crit in result.study.criteria:
        assert steps[crit.name] == crit.label[:1].upper() + crit.label[1:]
    # the builder's own steps have proper names ("ICU", not "Icu")
    log = pd.DataFrame(
        {
            "step": ["index_event", "icu_stay", "first_icu_stay", "adult", "eligible"],
            "remaining": [100, 90, 80, 70, 70],
            "excluded": [0, 10, 10, 10, 0],
        }
    )
    names = list(attrition_table(log, threshold=5)["Step"])
    assert names == ["Index event", "Index in an ICU stay", "First ICU stay", "Adults", "Eligible"]


def test_step_label_without_a_study():
    from retrocohort.report.formatting import step_label

    assert step_label("first_icu_stay") == "First ICU stay"
    assert step_label("prior_icu_readmission") == "Prior ICU readmission"
    assert step_label("no_prior_thiamine") == "No prior thiamine"
    assert step_label("support", {"support": "on vasopressor within 24 h"}) == "On vasopressor within 24 h"
