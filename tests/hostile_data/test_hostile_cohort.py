"""Damage to the rows of patients the flagship uses: each ends in a named, counted attrition step or a note.

The undamaged cohort is the reference: a patient whose rows are damaged leaves at the step the docs name
(``data_checks``, ``icu_stay``, ``missing_covariates``) and only there, so every other step's count is
unchanged; damage that carries no information (a duplicate row, lower-case sex) leaves the analysis frame
identical.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import retrocohort as rc

from .conftest import Baseline, check_counts
from .damage import edit_rows, read_rows, read_text, set_value, table_path, write_rows, write_text

P, A, ICU, INP, CE = "hosp/patients", "hosp/admissions", "icu/icustays", "icu/inputevents", "icu/chartevents"
MG_ITEMIDS = {"222011", "227524"}  # studies/magnesium_ckrt.toml, concept mg_iv


def steps(attrition: pd.DataFrame) -> dict[str, tuple[int, int]]:
    return {row.step: (int(row.remaining), int(row.excluded)) for row in attrition.itertuples()}


def assert_one_patient_leaves_at(cohort: rc.Cohort, baseline: Baseline, step: str) -> None:
    """The cohort equals the baseline's except that one patient leaves at ``step`` (and is not eligible)."""
    before, after = steps(baseline.attrition), steps(cohort.attrition)
    assert list(after) == list(before)
    passed = False
    for name, (remaining, excluded) in before.items():
        if name == step:
            passed = True
            assert after[name] == (remaining - 1, excluded + 1), name
        else:
            assert after[name] == (remaining - passed, excluded), name
    assert cohort.counts["eligible"] == baseline.counts["eligible"] - 1


def one_of_the_cohort(baseline: Baseline) -> str:
    return baseline.cohort_subjects[0]


def test_empty_sex_leaves_at_missing_covariates(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    set_value(ehr, P, "gender", "", lambda d: d["subject_id"] == subject)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "missing_covariates")


def test_sex_X_is_missing_not_a_category_of_one(ehr: Path, flagship: rc.Study, baseline: Baseline):
    # Before the fix, 'X' became a third sex holding one patient (a propensity-model column of one).
    subject = one_of_the_cohort(baseline)
    set_value(ehr, P, "gender", "X", lambda d: d["subject_id"] == subject)
    cohort = rc.build_cohort(flagship, ehr)
    assert_one_patient_leaves_at(cohort, baseline, "missing_covariates")
    assert set(cohort.data["sex"]) == {"F", "M"}


def test_blank_sex_is_missing(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    set_value(ehr, P, "gender", "  ", lambda d: d["subject_id"] == subject)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "missing_covariates")


def test_lower_case_sex_reads_the_same(ehr: Path, flagship: rc.Study, baseline: Baseline):
    set_value(ehr, P, "gender", "m", lambda d: d["gender"] == "M")
    set_value(ehr, P, "gender", " f", lambda d: d["gender"] == "F")
    pd.testing.assert_frame_equal(rc.build_cohort(flagship, ehr).data, baseline.data)


def test_a_patient_without_a_patients_row_leaves_at_icu_stay(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    edit_rows(ehr, P, lambda header, rows: [r for r in rows if r[0] != subject])
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "icu_stay")


def test_a_patient_without_admissions_leaves_at_icu_stay(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    edit_rows(ehr, A, lambda header, rows: [r for r in rows if r[0] != subject])
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "icu_stay")


def test_a_stay_whose_hadm_id_is_not_in_admissions_leaves_at_icu_stay(
    ehr: Path, flagship: rc.Study, baseline: Baseline
):
    subject = one_of_the_cohort(baseline)
    set_value(ehr, ICU, "hadm_id", "29999999", lambda d: d["subject_id"] == subject)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "icu_stay")


def test_an_impossible_age_leaves_at_data_checks(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    set_value(ehr, P, "anchor_age", "130", lambda d: d["subject_id"] == subject)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "data_checks")


def test_a_death_before_the_admission_leaves_at_data_checks(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    set_value(ehr, A, "deathtime", "2000-01-01 00:00:00", lambda d: d["subject_id"] == subject, limit=1)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "data_checks")


def test_magnesium_rows_exported_twice_do_not_double_the_dose(ehr: Path, flagship: rc.Study, baseline: Baseline):
    exposed = set(baseline.cohort_subjects)
    header, rows = read_rows(ehr, INP)
    mg = [r for r in rows if r[0] in exposed and r[header.index("itemid")] in MG_ITEMIDS]
    assert mg, "the synthetic cohort has magnesium rows"
    write_rows(ehr, INP, header, rows + [list(r) for r in mg])
    assert check_counts(ehr)["inputevents_exact_duplicates"] == len(mg)
    pd.testing.assert_frame_equal(rc.build_cohort(flagship, ehr).data, baseline.data)


def test_an_icu_stay_exported_twice_changes_nothing(ehr: Path, flagship: rc.Study, baseline: Baseline):
    subject = one_of_the_cohort(baseline)
    header, rows = read_rows(ehr, ICU)
    write_rows(ehr, ICU, header, rows + [list(r) for r in rows if r[0] == subject])
    pd.testing.assert_frame_equal(rc.build_cohort(flagship, ehr).data, baseline.data)


def test_inputevents_with_a_header_only_is_said_in_the_notes(ehr: Path, flagship: rc.Study, baseline: Baseline):
    # An optional table the study reads, present but empty: the study runs and says what found nothing.
    path = table_path(ehr, INP)
    write_text(path, read_text(path).split("\n", 1)[0] + "\n")
    cohort = rc.build_cohort(flagship, ehr)
    notes = " ".join(cohort.notes)
    assert "'mg_iv'" in notes and "found no rows" in notes and "the Mg arm is empty" in notes
    assert cohort.counts["exposed"] == 0 and baseline.counts["exposed"] > 0


def test_chartevents_with_a_header_only_is_a_note_and_the_procedures_still_index(
    ehr: Path, flagship: rc.Study, baseline: Baseline
):
    path = table_path(ehr, CE)
    write_text(path, read_text(path).split("\n", 1)[0] + "\n")
    cohort = rc.build_cohort(flagship, ehr)
    assert any("'crrt_mode'" in note and "found no rows" in note for note in cohort.notes)
    # The CKRT index also reads procedureevents; the synthetic EHR charts the mode only within those episodes.
    assert cohort.counts["indexed"] <= baseline.counts["indexed"]
    assert steps(cohort.attrition)["index_event"][0] == cohort.counts["indexed"]


def test_an_icustays_table_of_one_row_is_counted_at_icu_stay(ehr: Path, flagship: rc.Study, baseline: Baseline):
    header, rows = read_rows(ehr, ICU)
    write_rows(ehr, ICU, header, rows[:1])
    cohort = rc.build_cohort(flagship, ehr)
    indexed, _ = steps(cohort.attrition)["index_event"]
    remaining, excluded = steps(cohort.attrition)["icu_stay"]
    assert remaining <= 1 and excluded == indexed - remaining and indexed == baseline.counts["indexed"]


def test_age_zero_is_possible_and_leaves_at_the_adult_screen(ehr: Path, flagship: rc.Study, baseline: Baseline):
    # 0 is inside [0, 120] (not a data error); the study's own age rule excludes the patient, counted.
    subject = one_of_the_cohort(baseline)
    header, rows = read_rows(ehr, A)
    years = {int(r[header.index("admittime")][:4]) for r in rows if r[0] == subject}
    set_value(ehr, P, "anchor_age", "0", lambda d: d["subject_id"] == subject)
    set_value(ehr, P, "anchor_year", str(max(years)), lambda d: d["subject_id"] == subject)
    assert_one_patient_leaves_at(rc.build_cohort(flagship, ehr), baseline, "adult")
