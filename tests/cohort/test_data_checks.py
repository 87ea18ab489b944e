"""The data-quality pass (``sources/quality.py``) on hand-made miniature MIMIC-IV folders (DuckDB).

One "dirty" folder holds the rule-test patients of ``test_rules.build`` plus,
for each rule, one bad row aimed at one patient whose result the bad row
would change. Each test checks the rule's count and that the patient's values
equal those of the clean folder; ``test_without_the_checks_the_bad_rows_change_results``
shows, with the checks switched off, that every aimed bad row does change them
(so the equalities are not vacuous). Conflicting keys are each tested on their
own folder, since they stop the run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.errors import InputError, RetrocohortError
from retrocohort.sources import mimic_iv, quality
from retrocohort.spec import load_study_file
from tests.cohort.legacy import extract

from .minimimic import MiniMimic, ts
from .test_rules import INDEX, MEQ, build

H = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)

# Patients added to the dirty folder, one per exclusion rule; none is in the clean folder.
AGE_130, AGE_AT_ADMISSION_125, DEATH_BEFORE_ADMISSION, DOD_BEFORE_ADMISSION = 40, 41, 42, 43


def _magnesium_rows(m: MiniMimic, subject_id: int) -> list[dict]:
    ids = {222011, 227524, 227523}  # magnesium sulfate and its carrier
    return [r for r in m.rows["icu/inputevents"] if r["subject_id"] == subject_id and r["itemid"] in ids]


def dirty() -> MiniMimic:
    m = build()
    # Exact duplicates: patient 7's magnesium rows (2 g with carrier, 1 g) and patient 1's whole patient row,
    # admission and ICU stay are repeated. Without deduplication patient 7's dose doubles.
    for row in _magnesium_rows(m, 7):
        m.rows["icu/inputevents"].append(dict(row))
    for table in ("hosp/patients", "hosp/admissions", "icu/icustays"):
        m.rows[table].append(dict(next(r for r in m.rows[table] if r["subject_id"] == 1)))
    # A labevents row repeated (harmless to any aggregate, but counted).
    m.rows["hosp/labevents"].append(dict(m.rows["hosp/labevents"][0]))
    # NULL keys: a 5 g magnesium row for patient 7 without subject_id can belong to nobody.
    m.input(None, 70, 700, 222011, INDEX + 5 * H, INDEX + 6 * H, amount=5.0, amountuom="grams")
    m.lab(None, 10, 50912, INDEX - 3 * DAY, 0.1)
    m.procedure(None, 10, 100, 225802, INDEX - 5 * DAY, INDEX - 4 * DAY)
    m.add("hosp/diagnoses_icd", subject_id=1, hadm_id="", seq_num=1, icd_code="A419", icd_version=10)
    m.chart(None, 10, 100, 227290, INDEX - 2 * DAY)
    # endtime before starttime: a norepinephrine row that would put patient 15 (no support) on support,
    # and a CRRT row that would move patient 1's KRT liberation from day 3 to day 6.
    m.input(
        15, 150, 1500, 221906, INDEX + 1 * H, INDEX - 1 * H, amount=1.0, amountuom="mg", rate=0.05, rateuom="mcg/kg/min"
    )
    m.procedure(1, 10, 100, 225802, INDEX + 10 * DAY, INDEX + 6 * DAY)
    # Impossible amounts and rates: a negative and an infinite magnesium dose for patient 9, a NaN one for
    # patient 8 (who is otherwise unexposed), an infinite norepinephrine rate for patient 1.
    m.input(9, 90, 900, 222011, INDEX + 10 * H, INDEX + 11 * H, amount=-2.0, amountuom="grams")
    m.input(9, 90, 900, 222011, INDEX + 12 * H, INDEX + 13 * H, amount="Inf", amountuom="grams")
    m.input(8, 80, 800, 222011, INDEX + 12 * H, INDEX + 13 * H, amount="NaN", amountuom="grams")
    m.input(
        1, 10, 100, 221906, INDEX - 2 * H, INDEX + 2 * H, amount=1.0, amountuom="mg", rate="Inf", rateuom="mcg/kg/min"
    )
    m.input(
        1, 10, 100, 221906, INDEX - 2 * H, INDEX + 2 * H, amount=1.0, amountuom="mg", rate=-3.0, rateuom="mcg/kg/min"
    )
    # A non-finite lab value: creatinine -Inf before patient 1's admission would be the lowest.
    m.lab(1, None, 50912, INDEX - 10 * DAY, "-Inf")
    # Patients with impossible ages or deaths before an admission (each otherwise eligible).
    m.ckrt_patient(AGE_130, anchor_age=130)
    m.ckrt_patient(AGE_AT_ADMISSION_125, anchor_age=60, anchor_year=2085)  # admitted in 2150: age 125
    m.ckrt_patient(DEATH_BEFORE_ADMISSION, deathtime=str(INDEX - 3 * DAY))  # admitted at index - 2 days
    m.ckrt_patient(DOD_BEFORE_ADMISSION, dod=str((INDEX - 5 * DAY).date()))
    return m


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return extract(build().write(tmp_path_factory.mktemp("clean")))


@pytest.fixture(scope="module")
def dirty_folder(tmp_path_factory):
    return dirty().write(tmp_path_factory.mktemp("dirty"))


@pytest.fixture(scope="module")
def checked(dirty_folder):
    return extract(dirty_folder)


def count(cohort, check: str) -> int:
    rows = cohort.data_checks.loc[cohort.data_checks["check"] == check, "count"]
    assert len(rows) == 1, f"check {check} not reported exactly once"
    return int(rows.iloc[0])


def row(cohort, subject_id):
    rows = cohort.data.loc[cohort.data.subject_id == subject_id]
    assert len(rows) == 1, f"subject {subject_id} not exactly once"
    return rows.iloc[0]


def test_every_rule_is_reported_once_with_its_words(checked):
    table = checked.data_checks
    assert list(table.columns) == list(quality.COLUMNS)
    assert table["check"].is_unique
    expected = set(quality.rules_table()["check"])
    assert set(table["check"]) == expected
    assert (table["rule"].str.len() > 5).all() and (table["count"] >= 0).all()
    assert set(table.loc[table["action"] == "patients excluded", "unit"]) == {"patients"}


FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


def test_a_study_run_counts_the_rules_among_the_rows_it_reads(dirty_folder, checked):
    # build_cohort counts the rules in its single read of each table (concepts/scan.py), on the rows the study
    # reads; the legacy extraction (``checked``) runs the whole-data pass. Every bad row of the dirty folder is
    # aimed at a row the flagship reads, so each rule finds the same rows, with one exception: the repeated
    # magnesium carrier row (itemid 227524/227523), which the flagship does not read.
    built = build_cohort(load_study_file(FLAGSHIP), dirty_folder)
    study = built.data_checks.set_index("check")["count"]
    wide = checked.data_checks.set_index("check")["count"]
    assert list(study.index) == list(wide.index)  # the same lines, in the same order
    assert (study <= wide).all()
    differ = {name for name in study.index if study[name] != wide[name]}
    assert differ == {"inputevents_exact_duplicates", "inputevents_rows_read", "diagnoses_icd_rows_read"}
    assert study["inputevents_exact_duplicates"] == 2 and wide["inputevents_exact_duplicates"] == 3
    # Read after the index, inputevents is narrowed to the indexed patients, yet the magnesium row without a
    # subject_id is still counted (and dropped): nothing a rule removes goes unseen.
    assert study["inputevents_null_key"] == wide["inputevents_null_key"] == 1
    rules = built.data_checks.set_index("check")["rule"]
    scope = "rows this study reads: the rows its concepts select, of the indexed patients"
    assert rules["inputevents_rows_read"] == scope
    assert rules["patients_rows_read"] == "rows this study reads: every row of the table"
    assert checked.data_checks.set_index("check")["rule"]["patients_rows_read"] == "every row of the table"
    # The exclusions act as in the whole-data pass: the same patients leave at the same step.
    steps = built.attrition.set_index("step")["excluded"]
    assert (
        steps["data_checks"]
        == dict(zip(checked.screening.step, checked.screening.excluded, strict=True))["data_checks"]
        == 4
    )


def test_every_rule_is_documented_with_its_action():
    page = (Path(__file__).parents[2] / "docs" / "data-checks.md").read_text(encoding="utf-8")
    for rule in quality.rules_table().itertuples():
        line = next((ln for ln in page.splitlines() if f"| `{rule.check}` |" in ln), None)
        assert line is not None, f"docs/data-checks.md lacks {rule.check}"
        assert rule.table in line and rule.action.split(":")[-1].strip() in line, line


def test_duplicated_inputevents_rows_give_the_same_dose(checked, clean):
    assert count(checked, "inputevents_exact_duplicates") == 3  # 2 g, its carrier, 1 g
    assert row(checked, 7).mg_dose_meq == pytest.approx((2.0 + 1.0) * MEQ)
    assert row(checked, 7).mg_dose_meq == row(clean, 7).mg_dose_meq


def test_exact_duplicate_key_rows_are_dropped_not_an_error(checked, clean):
    assert count(checked, "patients_exact_duplicates") == 1
    assert count(checked, "admissions_exact_duplicates") == 1
    assert count(checked, "icustays_exact_duplicates") == 1
    assert count(checked, "labevents_exact_duplicates") == 1
    assert count(checked, "patients_key") == 0
    pd.testing.assert_series_equal(row(checked, 1), row(clean, 1))


def test_null_keys_are_dropped_and_counted(checked, clean):
    assert count(checked, "inputevents_null_key") == 1
    assert count(checked, "labevents_null_key") == 1
    assert count(checked, "procedureevents_null_key") == 1
    assert count(checked, "diagnoses_icd_null_key") == 1
    assert count(checked, "chartevents_null_key") == 1
    assert row(checked, 1).sepsis == row(clean, 1).sepsis == 0  # the A419 row had no hadm_id


def test_end_before_start_rows_are_dropped(checked, clean):
    assert count(checked, "inputevents_end_before_start") == 1
    assert count(checked, "procedureevents_end_before_start") == 1
    assert 15 not in set(checked.data.subject_id)  # still no support
    assert row(checked, 1).krt_time == row(clean, 1).krt_time == pytest.approx(3.0)


def test_impossible_amounts_rates_and_lab_values_are_dropped(checked, clean):
    # -2 g and Inf g for patient 9; NaN g for patient 8: each is counted under the amount rule.
    assert count(checked, "inputevents_amount") == 3
    assert count(checked, "inputevents_rate") == 2
    assert count(checked, "labevents_valuenum_not_finite") == 1
    assert row(checked, 9).mg_dose_meq == row(clean, 9).mg_dose_meq == pytest.approx(4.0 * MEQ)
    assert row(checked, 8).exposed == row(clean, 8).exposed == 0
    assert row(checked, 1).sofa_cardiovascular == row(clean, 1).sofa_cardiovascular
    assert row(checked, 1).creatinine_baseline == row(clean, 1).creatinine_baseline


def test_impossible_ages_and_deaths_before_admission_exclude_the_patient(checked, clean):
    assert count(checked, "patients_age") == 1
    assert count(checked, "admissions_age") == 2  # AGE_130 is also 130 at admission
    assert count(checked, "admissions_death_before_admission") == 1
    assert count(checked, "patients_dod_before_admission") == 1
    for subject_id in (AGE_130, AGE_AT_ADMISSION_125, DEATH_BEFORE_ADMISSION, DOD_BEFORE_ADMISSION):
        assert subject_id not in set(checked.data.subject_id)
    steps = dict(zip(checked.screening.step, checked.screening.excluded, strict=True))
    assert steps["data_checks"] == 4
    assert dict(zip(clean.screening.step, clean.screening.excluded, strict=True))["data_checks"] == 0
    # Everyone else is untouched: the same screened population and the same exclusions downstream.
    assert checked.attrition.equals(clean.attrition)


def test_clean_patients_are_identical_to_the_clean_folder(checked, clean):
    # Patient 1 carries the CRRT/labs/rates aimed at the rules above; all their values must equal the clean run.
    pd.testing.assert_frame_equal(checked.data, clean.data, check_exact=True)


def test_without_the_checks_the_bad_rows_change_results(dirty_folder, clean, monkeypatch):
    # The cohort reads the raw views; the key check would see patient 1's repeated rows as a conflict.
    monkeypatch.setattr(mimic_iv, "checked_table", lambda name, raw: raw)
    monkeypatch.setattr(quality, "_conflicts", lambda *args: None)
    raw = extract(dirty_folder)
    assert row(raw, 7).mg_dose_meq == pytest.approx(2 * (2.0 + 1.0) * MEQ)  # every duplicate counted twice
    assert row(raw, 8).exposed == 1  # the NaN-gram row
    assert row(raw, 9).mg_dose_meq != row(clean, 9).mg_dose_meq
    assert row(raw, 1).krt_time == pytest.approx(6.0)
    assert row(raw, 1).sofa_cardiovascular == 4
    assert row(raw, 1).creatinine_baseline != row(clean, 1).creatinine_baseline
    assert 15 in set(raw.data.subject_id)


def _shuffled(m: MiniMimic, seed: int) -> MiniMimic:
    out = MiniMimic(rows={name: list(rows) for name, rows in m.rows.items()})
    rng = random.Random(seed)
    for rows in out.rows.values():
        rng.shuffle(rows)
    return out


def test_same_input_in_any_row_order_gives_identical_results(tmp_path, checked):
    for seed in (1, 2):
        again = extract(_shuffled(dirty(), seed).write(tmp_path / f"shuffled{seed}"))
        pd.testing.assert_frame_equal(again.data, checked.data, check_exact=True)
        pd.testing.assert_frame_equal(again.attrition, checked.attrition, check_exact=True)
        pd.testing.assert_frame_equal(again.screening, checked.screening, check_exact=True)
        pd.testing.assert_frame_equal(again.data_checks, checked.data_checks, check_exact=True)
        assert again.notes == checked.notes


# --- conflicting duplicates of a key stop the run ---------------------------------------------------------


def test_conflicting_patients_rows_are_an_error_naming_table_key_and_rows(tmp_path):
    m = build()
    first = next(r for r in m.rows["hosp/patients"] if r["subject_id"] == 11)
    m.rows["hosp/patients"].append({**first, "anchor_age": first["anchor_age"] + 30})
    with pytest.raises(InputError) as err:
        extract(m.write(tmp_path))
    message = str(err.value)
    assert "patients.csv.gz" in message and "subject_id" in message
    assert "1 subject_id value(s)" in message and "2 rows" in message and "e.g. subject_id 11" in message
    assert isinstance(err.value, RetrocohortError)


@pytest.mark.parametrize(
    ("table", "key", "change"),
    [
        ("hosp/admissions", "hadm_id", {"admittime": ts(INDEX - 9 * DAY)}),
        ("icu/icustays", "stay_id", {"outtime": ts(INDEX + 30 * DAY)}),
    ],
)
def test_conflicting_admission_and_stay_rows_are_errors(tmp_path, table, key, change):
    m = build()
    for subject_id in (3, 5):
        first = next(r for r in m.rows[table] if r["subject_id"] == subject_id)
        m.rows[table].append({**first, **change})
    with pytest.raises(InputError) as err:
        extract(m.write(tmp_path))
    message = str(err.value)
    assert table.split("/")[1] + ".csv.gz" in message and key in message
    assert f"2 {key} value(s)" in message and "4 rows" in message
    expected = sorted(r[key] for r in m.rows[table] if r["subject_id"] in (3, 5))
    assert f"e.g. {key} {expected[0]}, {expected[-1]}" in message


def test_conflict_examples_are_at_most_five_and_sorted(tmp_path):
    m = build()
    for subject_id in range(1, 9):
        first = next(r for r in m.rows["hosp/patients"] if r["subject_id"] == subject_id)
        m.rows["hosp/patients"].append({**first, "gender": "F" if first["gender"] == "M" else "M"})
    with pytest.raises(InputError) as err:
        extract(m.write(tmp_path))
    assert "8 subject_id value(s)" in str(err.value) and "e.g. subject_id 1, 2, 3, 4, 5)" in str(err.value)


def test_every_row_of_every_table_twice_gives_the_clean_cohort(tmp_path, clean):
    m = build()
    m.rows = {table: rows + [dict(r) for r in rows] for table, rows in m.rows.items()}
    doubled = extract(m.write(tmp_path))
    pd.testing.assert_frame_equal(doubled.data, clean.data, check_exact=True)
    pd.testing.assert_frame_equal(doubled.attrition, clean.attrition, check_exact=True)
    counts = doubled.data_checks.set_index("check")["count"]
    for table, rows in build().rows.items():
        name = table.split("/")[1]
        if quality.TABLE_RULES[table].deduplicate:
            assert counts[f"{name}_exact_duplicates"] == len(rows), table


def test_parquet_tables_are_checked_as_csv_ones(tmp_path, dirty_folder, checked):
    from retrocohort.sources.mimic_iv import to_parquet

    on_parquet = extract(to_parquet(dirty_folder, tmp_path / "parquet"))
    pd.testing.assert_frame_equal(on_parquet.data_checks, checked.data_checks, check_exact=True)
    pd.testing.assert_frame_equal(on_parquet.data, checked.data, check_exact=True)


def test_boundaries_are_not_violations(tmp_path):
    m = build()
    m.ckrt_patient(50, deathtime="2150-03-08 10:00:00")  # death at the admission time itself
    m.ckrt_patient(51, dod="2150-03-08")  # dod on the admission date
    m.ckrt_patient(52, anchor_age=120)
    m.ckrt_patient(53, anchor_age=0, anchor_year=2150)  # a newborn's age is possible (screened out as a minor)
    cohort = extract(m.write(tmp_path))
    counts = cohort.data_checks.set_index("check")["count"]
    assert counts[
        ["admissions_death_before_admission", "patients_dod_before_admission", "patients_age", "admissions_age"]
    ].tolist() == [0, 0, 0, 0]
    assert dict(zip(cohort.screening.step, cohort.screening.excluded, strict=True))["data_checks"] == 0
    assert 52 in set(cohort.data.subject_id)
