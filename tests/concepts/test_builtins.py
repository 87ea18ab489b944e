"""Built-in concepts on hand-made patients: each expectation follows from the rule and the rows written here."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from retrocohort.cohort.kidney import creatinine_for_egfr, egfr_ckd_epi_2021
from retrocohort.concepts import baseline_values, concept_events, finish_baseline
from retrocohort.sources import MimicIV

from .mini import ConceptMimic, ts

T = pd.Timestamp("2150-03-10 10:00:00")  # every patient's index
H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


def _patient(m: ConceptMimic, sid: int, *, gender="M", age=60, dod="", deathtime="", intime=None) -> tuple[int, int]:
    hadm, stay = sid * 10, sid * 100
    m.patient(sid, gender=gender, anchor_age=age, anchor_year=2148, dod=dod)
    m.admission(sid, hadm, str(T - 2 * D), str(T + 10 * D), deathtime=deathtime)
    m.stay(sid, hadm, stay, str(intime if intime is not None else T - 2 * D), str(T + 5 * D))
    return hadm, stay


def build() -> ConceptMimic:
    m = ConceptMimic()
    # 1: CRRT (no end), intermittent HD, CRRT-mode charting; died in hospital (deathtime beats dod).
    h, s = _patient(m, 1, dod="2150-03-12", deathtime="2150-03-12 06:00:00")
    m.add(
        "icu/procedureevents",
        subject_id=1,
        hadm_id=h,
        stay_id=s,
        starttime=ts(T),
        endtime="",
        itemid=225802,
        value="",
        valueuom="",
        statusdescription="",
    )
    m.procedure(1, h, s, 225441, T - 30 * H, T - 26 * H)
    m.chart(1, h, s, 227290, T + H)
    # 2: vasopressors in mcg/min with weight, vasopressin in units; dod only; MAP and weights in/out of range.
    h, s = _patient(m, 2, dod="2150-04-01")
    m.input(
        2, h, s, 221906, T - 3 * H, T + H, amount=1.0, amountuom="mg", rate=8.0, rateuom="mcg/min", patientweight=80.0
    )
    m.input(2, h, s, 222315, T - 3 * H, T + H, amount=2.4, amountuom="units", rate=2.4, rateuom="units/hour")
    m.chart_num(2, h, s, 220181, T - H, 62.0, "mmHg")
    m.chart_num(2, h, s, 220181, T - H, 5.0, "mmHg")  # artefact
    m.chart_num(2, h, s, 226512, T - 40 * H, 80.0, "kg")
    m.chart_num(2, h, s, 224639, T - 20 * H, 900.0, "kg")  # artefact
    m.output(2, h, s, 226559, T - 2 * H, 100.0)
    m.output(2, h, s, 227488, T - 2 * H, 30.0)  # irrigant in: subtracted
    # 3: sepsis-3 (culture 10 h before an IV antibiotic, in window) with SOFA >= 2; septic shock.
    h, s = _patient(m, 3, gender="F", age=70)
    m.culture(3, h, 31, T - 20 * H)
    m.prescription(3, h, "Vancomycin", T - 10 * H, T + D, dose="1", unit="g", route="IV")
    m.prescription(3, h, "Bacitracin Ointment", T - 10 * H, None, route="TP")  # not systemic
    m.input(3, h, s, 221906, T - 5 * H, T, amount=1.0, amountuom="mg", rate=0.2, rateuom="mcg/kg/min")
    m.lab(3, h, 50813, T - 2 * H, 3.5)  # lactate > 2
    m.lab(3, h, 51265, T - 4 * H, 40.0)  # platelets: coagulation 3
    m.lab(3, h, 50885, T - 4 * H, 2.5)  # bilirubin: liver 2
    # 4: antibiotic then culture 30 h later (too late), lactate exactly 2: no sepsis-3, no shock; SOFA renal from Cr.
    h, s = _patient(m, 4)
    m.prescription(4, h, "Cefepime", T - 40 * H, None, route="IV")
    m.culture(4, h, 41, T - 10 * H)
    m.lab(4, h, 50912, T - 100 * D, 1.0)  # baseline (before admission, within 365 d)
    m.lab(4, h, 50912, T - 10 * H, 3.6)  # SOFA renal 3; KDIGO: 3.6x baseline -> stage 3
    # 5: antibiotic then culture within 24 h (onset = antibiotic); culture then antibiotic after 80 h elsewhere.
    h, s = _patient(m, 5)
    m.prescription(5, h, "Piperacillin-Tazobactam", T - 6 * H, None, route="IV")
    m.culture(5, h, 51, T + 10 * H)
    m.culture(5, h, 52, T - 200 * H)
    # 6: KDIGO creatinine: baseline 1.0 in the admission, 1.2 -> 1.5 within 48 h (rise 0.3: stage 1).
    h, s = _patient(m, 6)
    m.lab(6, h, 50912, T - 45 * H, 1.0)
    m.lab(6, h, 50912, T - 30 * H, 1.2)
    m.lab(6, h, 50912, T - 5 * H, 1.5)
    # 7: KDIGO urine, 70 kg, in ICU 30 h before index: 6 h 150 mL (0.36 mL/kg/h), 12 h 300 mL (0.36), 24 h 600
    # (0.357) -> stage 2; creatinine stage 0 (1.0 vs baseline 1.0).
    h, s = _patient(m, 7, intime=T - 30 * H)
    m.chart_num(7, h, s, 226512, T - 29 * H, 70.0, "kg")
    m.lab(7, h, 50912, T - 20 * H, 1.0)
    for k in range(24):
        m.output(7, h, s, 226559, T - k * H, 25.0)
    # 8: Charlson: CHF (ICD-9, prior admission) 1 + complicated diabetes 2 (uncomplicated suppressed) +
    # metastatic 6 (malignancy suppressed) = 9; a later admission's code is not counted.
    h, s = _patient(m, 8, gender="F", age=80)  # no creatinine ever: imputed baseline
    m.admission(8, 81, "2149-01-01 08:00:00", "2149-01-05 08:00:00")
    m.diagnosis(8, 81, "4280", 9)
    m.diagnosis(8, h, "E11.2", 10)
    m.diagnosis(8, h, "E119", 10)
    m.diagnosis(8, h, "C787", 10)
    m.diagnosis(8, h, "C509", 10)
    m.admission(8, 82, "2151-01-01 08:00:00", "2151-01-05 08:00:00")
    m.diagnosis(8, 82, "F01", 10)  # dementia, after index
    m.diagnosis(8, h, "A41.9", 10)  # sepsis (explicit) on the index admission
    # 9: stable creatinine 4.5 (CKD): KDIGO 0; 10: baseline 3.0, now 4.6 (1.53x): stage 3 by the 4.0 rule.
    h, s = _patient(m, 9)
    m.lab(9, h, 50912, T - 100 * D, 4.5)
    m.lab(9, h, 50912, T - 5 * H, 4.5)
    h, s = _patient(m, 10)
    m.lab(10, h, 50912, T - 100 * D, 3.0)
    m.lab(10, h, 50912, T - 5 * H, 4.6)
    return m


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    c = MimicIV(build().write(tmp_path_factory.mktemp("builtins"))).connect()
    yield c
    c.close()


KEYS = pd.DataFrame(
    {
        "subject_id": range(1, 9),
        "hadm_id": [i * 10 for i in range(1, 9)],
        "stay_id": [i * 100 for i in range(1, 9)],
        "index_time": [T] * 8,
    }
)


def ev(conn, name) -> pd.DataFrame:
    return (
        conn.backend.execute(concept_events(conn, name))
        .sort_values(["subject_id", "start_time"])
        .reset_index(drop=True)
    )


def base(conn, name) -> pd.Series:
    frame = finish_baseline(name, conn.backend.execute(baseline_values(conn, name, ibis.memtable(KEYS))))
    assert sorted(frame.subject_id) == list(KEYS.subject_id)  # one row per key
    return frame.set_index("subject_id")[name].sort_index()


def test_krt_sessions(conn):
    krt = ev(conn, "krt")
    assert len(krt[krt.subject_id == 1]) == 3
    crrt = ev(conn, "crrt")
    assert list(crrt.start_time) == [T, T + H]
    assert (crrt.end_time == crrt.start_time).all()  # no endtime; charting is instantaneous
    ihd = ev(conn, "intermittent_krt")
    assert list(ihd.end_time - ihd.start_time) == [4 * H]


def test_vasopressors_rate_per_kg(conn):
    v = ev(conn, "vasopressors")
    two = v[v.subject_id == 2].sort_values("value", na_position="last")
    assert two.value.iloc[0] == pytest.approx(0.1) and pd.isna(two.value.iloc[1])  # 8 mcg/min / 80 kg; vasopressin
    assert list(two.unit) == ["mcg/kg/min", "units/hour"] and two.amount.isna().all()


def test_chart_ranges_and_urine(conn):
    assert list(ev(conn, "mean_arterial_pressure").value) == [62.0]
    w = ev(conn, "weight")
    assert list(w[w.subject_id == 2].value) == [80.0]
    uo = ev(conn, "urine_output")
    assert sorted(uo[uo.subject_id == 2].value) == [-30.0, 100.0]


def test_death_prefers_deathtime_then_end_of_dod(conn):
    d = ev(conn, "death")
    assert list(d.subject_id) == [1, 2]
    assert d.start_time[0] == pd.Timestamp("2150-03-12 06:00:00") and d.hadm_id[0] == 10
    assert d.start_time[1] == pd.Timestamp("2150-04-01 23:59:59") and pd.isna(d.hadm_id[1])


def test_antibiotics_cultures_and_suspected_infection(conn):
    ab = ev(conn, "antibiotics")
    assert list(ab.subject_id) == [3, 4, 5]  # the ointment is not systemic
    assert list(ev(conn, "cultures").subject_id) == [3, 4, 5, 5]
    si = ev(conn, "suspected_infection")
    assert list(si.subject_id) == [3, 5]
    assert si.start_time[0] == T - 20 * H  # culture first: onset at the culture
    assert si.start_time[1] == T - 6 * H  # antibiotic first: onset at the antibiotic


def test_age_and_sex(conn):
    assert list(base(conn, "age")) == [62.0, 62.0, 72.0, 62.0, 62.0, 62.0, 62.0, 82.0]  # anchor 2148, admitted 2150
    assert list(base(conn, "sex")) == ["M", "M", "F", "M", "M", "M", "M", "F"]


def test_sofa_components(conn):
    assert base(conn, "sofa_renal")[1] == 4 and base(conn, "sofa_renal")[4] == 3
    assert base(conn, "sofa_cardiovascular")[3] == 4 and base(conn, "sofa_cardiovascular")[2] == 3
    assert base(conn, "sofa_coagulation")[3] == 3 and base(conn, "sofa_liver")[3] == 2
    sofa = base(conn, "sofa")
    assert sofa[3] == 4 + 3 + 2 and sofa[5] == 0


def test_sepsis_codes_sepsis3_and_shock(conn):
    assert list(base(conn, "sepsis")) == [0, 0, 0, 0, 0, 0, 0, 1]
    s3 = base(conn, "sepsis3")
    assert s3[3] == 1 and s3[4] == 0  # 4: no suspected infection
    assert s3[5] == 0  # suspected infection but SOFA 0
    shock = base(conn, "septic_shock")
    assert list(shock) == [0, 0, 1, 0, 0, 0, 0, 0]


def test_kdigo_creatinine_and_urine(conn):
    frame = conn.backend.execute(baseline_values(conn, "kdigo_stage", ibis.memtable(KEYS))).set_index("subject_id")
    assert frame.kdigo_stage[1] == 3  # on KRT
    assert frame.kdigo_stage[4] == 3 and frame.kdigo_stage_creatinine[4] == 3
    assert frame.kdigo_stage[6] == 1  # rise of 0.3 within 48 h (1.5 / 1.0 is exactly 1.5x too)
    assert frame.kdigo_stage_creatinine[7] == 0 and frame.kdigo_stage_urine[7] == 2
    assert frame.kdigo_stage[7] == 2
    assert pd.isna(frame.kdigo_stage_urine[8])  # no weight: urine output cannot be scored


def test_charlson_with_hierarchy_and_window(conn):
    ch = base(conn, "charlson")
    assert ch[8] == 1 + 2 + 6 and ch[1] == 0
    detail = conn.backend.execute(baseline_values(conn, "charlson", ibis.memtable(KEYS))).set_index("subject_id")
    assert detail.charlson_malignancy[8] == 0 and detail.charlson_dementia[8] == 0


def test_baseline_creatinine_imputed_and_egfr(conn):
    cr = base(conn, "creatinine_baseline")
    assert cr[4] == 1.0 and cr[6] == 1.0
    want = creatinine_for_egfr(75.0, np.array([82.0]), np.array([True]))[0]
    assert cr[8] == want
    egfr = base(conn, "egfr_baseline")
    assert egfr[8] == pytest.approx(75.0, rel=1e-12)
    assert egfr[4] == egfr_ckd_epi_2021(np.array([1.0]), np.array([62.0]), np.array([False]))[0]


def test_unknown_baseline_and_bad_keys(conn):
    from retrocohort.errors import StudySpecError

    with pytest.raises(StudySpecError, match="did you mean 'charlson'"):
        baseline_values(conn, "charlsen", ibis.memtable(KEYS))
    with pytest.raises(StudySpecError, match="gives events values"):
        baseline_values(conn, "lactate", ibis.memtable(KEYS))
    with pytest.raises(ValueError, match="index_time"):
        baseline_values(conn, "age", ibis.memtable(KEYS.drop(columns="index_time")))


CHARLSON_EXAMPLES = [
    # (code as clinicians write it, version, the one condition it must fall in)
    ("I21.4", 10, "myocardial_infarction"),
    ("412", 9, "myocardial_infarction"),
    ("428.0", 9, "congestive_heart_failure"),
    ("I50.9", 10, "congestive_heart_failure"),
    ("443.9", 9, "peripheral_vascular_disease"),
    ("I70.0", 10, "peripheral_vascular_disease"),
    ("434.91", 9, "cerebrovascular_disease"),
    ("I63.9", 10, "cerebrovascular_disease"),
    ("290.0", 9, "dementia"),
    ("F03.90", 10, "dementia"),
    ("496", 9, "chronic_pulmonary_disease"),
    ("J44.9", 10, "chronic_pulmonary_disease"),
    ("714.0", 9, "rheumatic_disease"),
    ("M06.9", 10, "rheumatic_disease"),
    ("531.90", 9, "peptic_ulcer_disease"),
    ("K25.9", 10, "peptic_ulcer_disease"),
    ("571.5", 9, "mild_liver_disease"),
    ("K74.60", 10, "mild_liver_disease"),
    ("250.00", 9, "diabetes_without_complication"),
    ("E11.9", 10, "diabetes_without_complication"),
    ("250.40", 9, "diabetes_with_complication"),
    ("E11.22", 10, "diabetes_with_complication"),
    ("342.90", 9, "hemiplegia_or_paraplegia"),
    ("G81.90", 10, "hemiplegia_or_paraplegia"),
    ("585.6", 9, "renal_disease"),
    ("N18.6", 10, "renal_disease"),
    ("174.9", 9, "malignancy"),
    ("C50.911", 10, "malignancy"),
    ("C91.00", 10, "malignancy"),
    ("572.2", 9, "severe_liver_disease"),
    ("K72.10", 10, "severe_liver_disease"),
    ("I85.00", 10, "severe_liver_disease"),
    ("198.5", 9, "metastatic_solid_tumour"),
    ("C79.51", 10, "metastatic_solid_tumour"),
    ("042", 9, "aids"),
    ("B20", 10, "aids"),
]


@pytest.mark.parametrize("code, version, condition", CHARLSON_EXAMPLES)
def test_charlson_code_lists(code, version, condition):
    from retrocohort.concepts.builtins import CHARLSON

    clean = code.replace(".", "")
    hits = {name for name, _, i9, i10 in CHARLSON if any(clean.startswith(p) for p in (i9 if version == 9 else i10))}
    assert hits == {condition}


def test_charlson_ignores_unrelated_codes():
    from retrocohort.concepts.builtins import CHARLSON

    for code, version in (("4019", 9), ("I10", 10), ("A419", 10), ("E872", 10), ("5849", 9), ("N179", 10)):
        lists = [(i9 if version == 9 else i10) for _, _, i9, i10 in CHARLSON]
        assert not any(code.startswith(p) for prefixes in lists for p in prefixes), code


def test_kdigo_high_creatinine_needs_an_acute_rise(conn):
    keys = pd.DataFrame({"subject_id": [9, 10], "hadm_id": [90, 100], "stay_id": [900, 1000], "index_time": [T, T]})
    frame = conn.backend.execute(baseline_values(conn, "kdigo_stage", ibis.memtable(keys))).set_index("subject_id")
    assert frame.kdigo_stage[9] == 0
    assert frame.kdigo_stage[10] == 3  # 1.53x alone would be stage 1


def test_baseline_creatinine_without_an_admission_looks_back_from_the_index(conn):
    keys = pd.DataFrame({"subject_id": [4], "hadm_id": [None], "stay_id": [None], "index_time": [T]})
    keys = keys.astype({"hadm_id": "Int64", "stay_id": "Int64"})
    frame = conn.backend.execute(baseline_values(conn, "creatinine_baseline", ibis.memtable(keys)))
    # 1.0 (100 days before) is in the 365-day look-back before the index; 3.6 (10 h before) would be the
    # "during admission" value, but the look-back wins as it does with an admission.
    assert frame.creatinine_baseline[0] == 1.0 and frame.creatinine_baseline_source[0] == "before admission"
    age = conn.backend.execute(baseline_values(conn, "age", ibis.memtable(keys)))
    assert age.age[0] == 62.0  # the index time's year


def test_icu_admission_one_event_per_stay_intime_to_outtime(tmp_path):
    m = ConceptMimic()
    m.patient(1, gender="F", anchor_age=50, anchor_year=2148, dod="")
    m.admission(1, 10, str(T - 2 * D), str(T + 20 * D))
    m.stay(1, 10, 100, str(T - D), str(T + 2 * D))
    m.stay(1, 10, 101, str(T + 5 * D), str(T + 9 * D))  # a readmission to the ICU: its own event
    m.add(  # a stay still open in the extract: no outtime, so the event ends at its intime
        "icu/icustays",
        subject_id=1,
        hadm_id=10,
        stay_id=102,
        first_careunit="MICU",
        last_careunit="MICU",
        intime=ts(T + 12 * D),
        outtime="",
        los="",
    )
    c = MimicIV(m.write(tmp_path)).connect()
    try:
        icu = ev(c, "icu_admission")
    finally:
        c.close()
    assert list(icu.stay_id) == [100, 101, 102] and (icu.hadm_id == 10).all()
    assert list(icu.start_time) == [T - D, T + 5 * D, T + 12 * D]
    assert list(icu.end_time) == [T + 2 * D, T + 9 * D, T + 12 * D]
    assert icu.value.isna().all() and icu.amount.isna().all()
