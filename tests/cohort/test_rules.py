"""Each cohort rule on a hand-built miniature MIMIC-IV folder (DuckDB engine).

Every patient below is built to sit on one side of one rule; expected values
are closed-form from the rule (e.g. dose = grams x 8.12 mEq/g) and computed
in the test from the same timestamps the folder holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.cohort.legacy import ANALYSIS_COLUMNS, default_study, extract

from .minimimic import MiniMimic

INDEX = pd.Timestamp("2150-03-10 10:00:00")
H = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
STUDY = default_study()
MEQ = STUDY.exposure.meq_per_gram


def _days(delta: pd.Timedelta) -> float:
    return delta / DAY


def build() -> MiniMimic:
    m = MiniMimic()
    m.ckrt_patient(1)  # plain unexposed patient, CRRT for 72 h then free
    m.ckrt_patient(2, deathtime=str(INDEX + 47 * H))  # dies at 47 h: excluded
    m.ckrt_patient(3, deathtime=str(INDEX + 49 * H))  # dies at 49 h: kept, died on CRRT
    m.ckrt_patient(4, mg_at=str(pd.Timestamp("2150-03-11 00:01:00")))  # Mg only next day 00:01: excluded
    m.ckrt_patient(5, mg_at=None)
    m.lab(5, 50, 50960, "2150-03-10 23:59:00", 2.3)  # Mg on the index day at 23:59: kept
    m.ckrt_patient(6, mg_at=None)  # two Mg values 2 h either side of index: the earlier wins the tie
    m.lab(6, 60, 50960, INDEX - 2 * H, 1.5)
    m.lab(6, 60, 50960, INDEX + 2 * H, 2.1)
    m.lab(6, 60, 50960, INDEX + 30 * H, 1.0)  # next day: never the index-day value
    p = m.ckrt_patient(7)  # 2 g 222011 with its 227523 carrier, plus 1 g 227524 at 47 h
    m.magnesium(7, p["hadm_id"], p["stay_id"], INDEX + 5 * H, grams=2.0, carrier=True)
    m.magnesium(7, p["hadm_id"], p["stay_id"], INDEX + 47 * H, grams=1.0, carrier=False, itemid=227524)
    p = m.ckrt_patient(8)  # Mg exactly at index and just after 48 h: outside (index, index + 48 h]
    m.magnesium(8, p["hadm_id"], p["stay_id"], INDEX, grams=2.0)
    m.magnesium(8, p["hadm_id"], p["stay_id"], INDEX + 48 * H + pd.Timedelta(minutes=1), grams=2.0)
    p = m.ckrt_patient(9)  # Mg exactly at 48 h: inside; a rewritten row is not counted
    m.magnesium(9, p["hadm_id"], p["stay_id"], INDEX + 48 * H, grams=4.0)
    m.input(
        9,
        p["hadm_id"],
        p["stay_id"],
        222011,
        INDEX + 6 * H,
        INDEX + 7 * H,
        amount=2.0,
        amountuom="grams",
        statusdescription="Rewritten",
    )
    # Two CKRT episodes, then intermittent dialysis: liberation at the end of the last session.
    p = m.ckrt_patient(10, crrt_hours=48)
    m.procedure(10, p["hadm_id"], p["stay_id"], 225809, INDEX + 4 * DAY, INDEX + 5 * DAY)
    m.procedure(10, p["hadm_id"], p["stay_id"], 225441, INDEX + 8 * DAY, INDEX + 8 * DAY + 4 * H)
    # Readmission: CKRT only in the second admission; baseline creatinine from the first one.
    m.ckrt_patient(11, anchor_age=70, anchor_year=2150, index="2151-03-10 10:00:00", hadm_id=112, stay_id=1120)
    m.add(
        "hosp/admissions",
        subject_id=11,
        hadm_id=111,
        admittime="2150-06-05 08:00:00",
        dischtime="2150-06-15 08:00:00",
        deathtime="",
    )
    m.add(
        "icu/icustays",
        subject_id=11,
        hadm_id=111,
        stay_id=1110,
        intime="2150-06-05 10:00:00",
        outtime="2150-06-08 10:00:00",
        los=3,
    )
    m.lab(11, 111, 50912, "2150-06-06 08:00:00", 0.9)
    m.lab(11, 111, 50912, "2150-06-07 08:00:00", 1.1)
    m.lab(11, None, 50912, "2149-01-01 08:00:00", 0.5)  # outside the 365-day lookback
    # dod without deathtime: the day after index -> within 48 h; two days after -> kept.
    m.ckrt_patient(12, dod="2150-03-11")
    m.ckrt_patient(13, dod="2150-03-12")
    m.ckrt_patient(14, anchor_age=17)  # minor
    m.ckrt_patient(15, vasopressor=False)  # no support
    p = m.ckrt_patient(16, vasopressor=False)  # ventilation only, ending 23 h before index
    m.procedure(16, p["hadm_id"], p["stay_id"], 225792, INDEX - 30 * H, INDEX - 23 * H)
    p = m.ckrt_patient(17, vasopressor=False)  # vasopressor ended 25 h before index: no support
    m.input(
        17,
        p["hadm_id"],
        p["stay_id"],
        221906,
        INDEX - 30 * H,
        INDEX - 25 * H,
        amount=1.0,
        amountuom="mg",
        rate=0.05,
        rateuom="mcg/kg/min",
    )
    p = m.ckrt_patient(18)
    m.diagnosis(18, p["hadm_id"], "A419", 10)  # sepsis on the index admission
    p = m.ckrt_patient(19)
    m.diagnosis(19, 999, "99592", 9)  # sepsis code on another admission: not counted
    m.diagnosis(19, p["hadm_id"], "5849", 9)  # AKI, not sepsis
    # SOFA components in the 24 h before index.
    p = m.ckrt_patient(20, vasopressor=False)
    m.input(
        20,
        p["hadm_id"],
        p["stay_id"],
        221906,
        INDEX - 3 * H,
        INDEX + 5 * H,
        amount=8.0,
        amountuom="mg",
        rate=0.2,
        rateuom="mcg/kg/min",
    )
    m.procedure(20, p["hadm_id"], p["stay_id"], 225792, INDEX - 10 * H, INDEX + 40 * H)
    m.lab(20, 200, 51265, INDEX - 3 * H, 45.0)
    m.lab(20, 200, 51265, INDEX - 25 * H, 10.0)  # outside the 24 h window
    m.lab(20, 200, 50885, INDEX - 5 * H, 2.5)
    m.lab(20, 200, 50821, INDEX - 2 * H, 80.0, specimen_id=777)
    m.lab(20, 200, 50816, INDEX - 2 * H, 60.0, specimen_id=777)
    m.ckrt_patient(21, gender="F", anchor_age=45)  # female; creatinine below kappa
    m.lab(21, 210, 50912, INDEX - 30 * H, 0.6)
    p = m.ckrt_patient(22)  # back on KRT at day 85: not liberated within 90 days, alive: censored
    m.procedure(22, p["hadm_id"], p["stay_id"], 225441, INDEX + 85 * DAY, INDEX + 85 * DAY + 4 * H)
    m.ckrt_patient(23, deathtime=str(INDEX + 30 * DAY))  # liberated (day 3), dies day 30
    m.ckrt_patient(24, deathtime=str(INDEX + 3 * DAY + 5 * DAY))  # off CRRT day 3, dies day 8: died first
    m.ckrt_patient(25, crrt_hours=24)
    m.chart(25, 250, 2500, 227290, INDEX - 3 * H)  # CRRT-mode charting before the procedure row
    m.ckrt_patient(26, deathtime=str(INDEX + 100 * DAY))  # death after the horizon: censored at 90 d
    # First CKRT stay without support, a later stay with support.
    m.ckrt_patient(27, vasopressor=False)
    m.ckrt_patient(27, index="2150-09-10 10:00:00", hadm_id=271, stay_id=2710)
    # No creatinine before index at all: back-calculated baseline.
    m.ckrt_patient(28, gender="F", anchor_age=80)
    m.rows["hosp/labevents"] = [r for r in m.rows["hosp/labevents"] if (r["subject_id"], r["itemid"]) != (28, 50912)]
    m.lab(28, 280, 50912, INDEX + 2 * H, 3.0)  # after index: never the baseline
    # SOFA cardiovascular bands: dopamine 7 mcg/kg/min; norepinephrine 12 mcg/min at 80 kg; vasopressin only.
    p = m.ckrt_patient(29, vasopressor=False)
    m.input(
        29,
        p["hadm_id"],
        p["stay_id"],
        221662,
        INDEX - 4 * H,
        INDEX + 4 * H,
        amount=200.0,
        amountuom="mg",
        rate=7.0,
        rateuom="mcg/kg/min",
    )
    p = m.ckrt_patient(30, vasopressor=False)
    m.input(
        30,
        p["hadm_id"],
        p["stay_id"],
        221906,
        INDEX - 4 * H,
        INDEX + 4 * H,
        amount=4.0,
        amountuom="mg",
        rate=12.0,
        rateuom="mcg/min",
        patientweight=80.0,
    )
    p = m.ckrt_patient(31, vasopressor=False)
    m.input(
        31,
        p["hadm_id"],
        p["stay_id"],
        222315,
        INDEX - 4 * H,
        INDEX + 4 * H,
        amount=10.0,
        amountuom="units",
        rate=2.4,
        rateuom="units/hour",
    )
    return m


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build().write(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def cohort(folder):
    return extract(folder)


def row(cohort, subject_id):
    rows = cohort.data.loc[cohort.data.subject_id == subject_id]
    assert len(rows) == 1, f"subject {subject_id} not exactly once in the analysis frame"
    return rows.iloc[0]


def absent(cohort, subject_id):
    return subject_id not in set(cohort.data.subject_id)


def test_analysis_frame_columns_and_one_row_per_patient(cohort):
    assert list(cohort.data.columns[: len(ANALYSIS_COLUMNS)]) == list(ANALYSIS_COLUMNS)
    assert cohort.data.subject_id.is_unique
    assert cohort.data.exposed.isin([0, 1]).all() and cohort.data.krt_status.isin([0, 1, 2]).all()
    assert (cohort.data.death_time <= STUDY.outcomes.horizon_days).all()
    assert (cohort.data.krt_time <= STUDY.outcomes.horizon_days).all()


def test_attrition_log_counts_add_up(cohort):
    log = cohort.attrition
    assert list(log.columns) == ["step", "remaining", "excluded", "reason"]
    assert log.step.iloc[0] == "screened" and log.step.iloc[-1] == "eligible"
    assert (log.remaining.shift(1).iloc[1:] - log.excluded.iloc[1:] == log.remaining.iloc[1:]).all()
    assert log.remaining.iloc[-1] == len(cohort.data)
    screening = cohort.screening
    assert screening.remaining.iloc[-1] == log.remaining.iloc[0]
    # 31 patients have CKRT; 14 (minor), 15 and 17 (no support) and 27 (first CKRT stay unsupported) leave.
    assert screening.remaining.iloc[0] == 31
    assert dict(zip(screening.step, screening.excluded, strict=True))["known_icu_stay"] == 0
    assert dict(zip(screening.step, screening.excluded, strict=True))["adult"] == 1
    assert dict(zip(screening.step, screening.excluded, strict=True))["support"] == 3
    by_step = dict(zip(log.step, log.excluded, strict=True))
    assert by_step["no_mg_index_day"] == 1  # patient 4
    assert by_step["died_within_48h"] == 2  # patients 2 and 12


def test_death_at_47_hours_excluded_at_49_kept(cohort):
    assert absent(cohort, 2)
    r = row(cohort, 3)
    assert r.death == 1 and r.death_time == pytest.approx(49 / 24)
    assert r.krt_status == 2 and r.krt_time == pytest.approx(49 / 24)  # died while on CRRT


def test_mg_on_index_day_until_midnight(cohort):
    assert absent(cohort, 4)  # 00:01 the next day does not count
    assert row(cohort, 5).serum_mg == 2.3  # 23:59 the same day does
    # Equidistant values 2 h before and after index: the earlier one; the next-day value never.
    assert row(cohort, 6).serum_mg == 1.5


def test_dose_counts_grams_not_the_carrier(cohort):
    r = row(cohort, 7)
    assert r.exposed == 1
    assert r.mg_dose_meq == pytest.approx((2.0 + 1.0) * MEQ)  # the 50 mL carrier would add 50 x 8.12


def test_exposure_window_is_open_at_index_closed_at_48h(cohort):
    r8, r9 = row(cohort, 8), row(cohort, 9)
    assert r8.exposed == 0 and r8.mg_dose_meq == 0.0
    assert r9.exposed == 1 and r9.mg_dose_meq == pytest.approx(4.0 * MEQ)  # rewritten 2 g row not counted


def test_two_ckrt_episodes_index_first_liberation_after_last_session(cohort):
    r = row(cohort, 10)
    assert r.index_time == INDEX
    assert r.krt_status == 1
    assert r.krt_time == pytest.approx(_days(8 * DAY + 4 * H))  # end of the intermittent session


def test_readmission_age_and_baseline_creatinine(cohort):
    r = row(cohort, 11)
    assert r.hadm_id == 112 and r.stay_id == 1120
    assert r.index_time == pd.Timestamp("2151-03-10 10:00:00")
    assert r.age == 70 + (2151 - 2150)
    assert r.creatinine_baseline == 0.9  # lowest in the year before the admission (0.5 is older)
    assert r.creatinine_baseline_source == "before admission"


def test_dod_is_read_as_end_of_day(cohort):
    # dod the day after a 10:00 index is at most 37 h 59 min 59 s later: excluded.
    assert absent(cohort, 12)
    r = row(cohort, 13)
    expected = _days(pd.Timestamp("2150-03-12 23:59:59") - INDEX)
    assert r.death == 1 and r.death_time == pytest.approx(expected)
    assert r.death_source == "dod"


def test_support_window(cohort):
    assert absent(cohort, 14) and absent(cohort, 15) and absent(cohort, 17)
    r = row(cohort, 16)
    assert (r.vasopressor, r.ventilation) == (0, 1)


def test_sepsis_only_on_index_admission(cohort):
    assert row(cohort, 18).sepsis == 1
    assert row(cohort, 19).sepsis == 0
    assert row(cohort, 1).sepsis == 0


def test_sofa_components(cohort):
    r = row(cohort, 20)
    # norepinephrine 0.2 mcg/kg/min > 0.1 -> 4; P/F 80 / 0.60 = 133 on ventilation -> 3; renal on CKRT -> 4;
    # platelets 45 -> 3 (the 10 from 25 h before is outside the window); bilirubin 2.5 -> 2.
    parts = (r.sofa_cardiovascular, r.sofa_respiratory, r.sofa_renal, r.sofa_coagulation, r.sofa_liver)
    assert parts == (4, 3, 4, 3, 2)
    assert r.sofa == sum(parts)
    plain = row(cohort, 1)  # norepinephrine 0.08 -> 3, nothing else but renal
    assert (plain.sofa_cardiovascular, plain.sofa_respiratory, plain.sofa) == (3, 0, 7)


def test_sofa_cardiovascular_bands(cohort):
    assert row(cohort, 29).sofa_cardiovascular == 3  # dopamine > 5 and <= 15 mcg/kg/min
    assert row(cohort, 30).sofa_cardiovascular == 4  # 12 mcg/min / 80 kg = 0.15 mcg/kg/min > 0.1
    r = row(cohort, 31)  # vasopressin: support, but not a SOFA drug
    assert (r.vasopressor, r.sofa_cardiovascular) == (1, 0)


def test_egfr_ckd_epi_2021(cohort):
    r = row(cohort, 21)
    # Lowest creatinine in the admission is 0.6 mg/dL; female, kappa 0.7, alpha -0.241:
    # 142 x (0.6/0.7)^-0.241 x 1^-1.2 x 0.9938^45 x 1.012.
    assert r.creatinine_baseline == 0.6
    assert r.egfr_baseline == pytest.approx(142 * (0.6 / 0.7) ** -0.241 * 0.9938**45 * 1.012)
    m = row(cohort, 1)  # male, 2.4 mg/dL, age 60: above kappa 0.9
    assert m.egfr_baseline == pytest.approx(142 * (2.4 / 0.9) ** -1.2 * 0.9938**60)


def test_baseline_creatinine_back_calculated_for_egfr_75_when_never_measured(cohort):
    r = row(cohort, 28)
    assert r.creatinine_baseline_source == "imputed (eGFR 75)"
    assert r.egfr_baseline == pytest.approx(75.0, rel=1e-10)
    assert r.creatinine_baseline != 3.0
    assert any("back-calculated" in note for note in cohort.notes)


def test_krt_liberation_competing_risks(cohort):
    r1 = row(cohort, 1)
    assert (r1.krt_status, r1.krt_time, r1.death, r1.death_time) == (1, 3.0, 0, 90.0)
    r22 = row(cohort, 22)  # last session ends at day 85: 7 free days would end after day 90
    assert (r22.krt_status, r22.krt_time) == (0, 90.0)
    r23 = row(cohort, 23)  # liberated first; death later is the death outcome only
    assert (r23.krt_status, r23.krt_time, r23.death, r23.death_time) == (1, 3.0, 1, 30.0)
    r24 = row(cohort, 24)  # died 5 days after the last session: not 7 free days alive
    assert (r24.krt_status, r24.krt_time) == (2, 8.0)
    r26 = row(cohort, 26)  # death after the horizon is censored at 90 days
    assert (r26.death, r26.death_time) == (0, 90.0)


def test_crrt_mode_charting_sets_index_when_earlier(cohort):
    assert row(cohort, 25).index_time == INDEX - 3 * H


def test_first_stay_only_versus_first_qualifying_stay(folder, cohort):
    assert absent(cohort, 27)
    study = default_study().model_copy(update={"cohort": STUDY.cohort.model_copy(update={"first_stay_only": False})})
    other = extract(folder, study)
    r = row(other, 27)
    assert r.stay_id == 2710 and r.index_time == pd.Timestamp("2150-09-10 10:00:00")
    # Everyone else keeps the same index.
    shared = other.data.loc[other.data.subject_id != 27].reset_index(drop=True)
    pd.testing.assert_frame_equal(shared, cohort.data)


def test_missing_chartevents_degrades_index_and_says_so(tmp_path, cohort):
    folder = build().write(tmp_path, omit=("icu/chartevents",))
    degraded = extract(folder)
    assert any("chartevents absent" in note for note in degraded.notes)
    assert "chartevents absent" in degraded.attrition.reason.iloc[0]
    assert not any("chartevents absent" in note for note in cohort.notes)
    assert row(degraded, 25).index_time == INDEX  # the procedure row only
    others = degraded.data.loc[degraded.data.subject_id != 25].reset_index(drop=True)
    mine = cohort.data.loc[cohort.data.subject_id != 25].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, mine)


def test_concepts_name_sofa_components(cohort):
    text = cohort.concepts["sofa"]
    for part in ("cardiovascular", "respiratory", "renal = 4", "coagulation", "liver", "not scored"):
        assert part in text
    assert np.isfinite(cohort.data[["age", "creatinine_baseline", "egfr_baseline", "serum_mg"]].to_numpy()).all()
