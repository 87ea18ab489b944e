"""The built-in concepts a clinician expects by name: data only (names, kinds, labels, units, rules).

The study language validates names against :data:`BUILTIN_CONCEPTS`
(did-you-mean on a typo) without importing any engine code; the ibis
expressions live in ``retrocohort.concepts``. ``rule`` is the definition in
words, printed in docs/concepts.md and in the report.

Kinds:

- ``"events"``: time-stamped event rows like a user concept (usable as an
  index, in criteria windows, as exposure or outcome, or summarised as a covariate);
- ``"baseline"``: one value per patient at the index (a covariate or a value filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BuiltinInfo:
    """One built-in concept: its kind, report label, unit, value type and definition in words."""

    kind: Literal["events", "baseline"]
    label: str
    unit: str
    rule: str
    # numeric / binary / categorical: what the value is (a covariate's type must fit it)
    value_type: Literal["numeric", "binary", "categorical", "none"] = "numeric"
    tables: tuple[str, ...] = ()
    # Tables of ``tables`` read only when present (the built-in then uses the others): a folder without
    # them still runs a study that names the built-in.
    optional_tables: tuple[str, ...] = ()


_B = BuiltinInfo

BUILTIN_CONCEPTS: dict[str, BuiltinInfo] = {
    # ------------------------------------------------------------------ events
    "krt": _B(
        "events",
        "Kidney replacement therapy",
        "",
        "Every KRT session: continuous (procedureevents 225802 CRRT, 225803 CVVHD, 225809 CVVHDF, 225955 SCUF) "
        "or intermittent (225441 hemodialysis), start to end (a missing end is the start); and every "
        "CRRT-mode chart row (chartevents 227290) as a zero-length session at its charttime.",
        "none",
        ("icu/procedureevents", "icu/chartevents"),
        ("icu/chartevents",),
    ),
    "crrt": _B(
        "events",
        "Continuous KRT",
        "",
        "Continuous KRT sessions: procedureevents 225802, 225803, 225809, 225955 (start to end) and CRRT-mode "
        "chart rows (chartevents 227290) as zero-length sessions.",
        "none",
        ("icu/procedureevents", "icu/chartevents"),
        ("icu/chartevents",),
    ),
    "intermittent_krt": _B(
        "events",
        "Intermittent hemodialysis",
        "",
        "Intermittent hemodialysis sessions: procedureevents 225441, start to end.",
        "none",
        ("icu/procedureevents",),
    ),
    "icu_admission": _B(
        "events",
        "ICU admission",
        "",
        "One event per ICU stay: icustays.intime to icustays.outtime (a missing outtime is the intime), with "
        "the stay's stay_id and hadm_id; every ICU stay of the folder, first or later.",
        "none",
        ("icu/icustays",),
    ),
    "invasive_ventilation": _B(
        "events",
        "Invasive ventilation",
        "",
        "Invasive ventilation episodes: procedureevents 225792, start to end.",
        "none",
        ("icu/procedureevents",),
    ),
    "vasopressors": _B(
        "events",
        "Vasopressor infusion",
        "mcg/kg/min",
        "Vasopressor infusions (inputevents norepinephrine 221906, epinephrine 221289, dopamine 221662, "
        "phenylephrine 221749, vasopressin 222315), start to end; value = rate in mcg/kg/min where the row "
        "gives mcg/kg/min or mcg/min with a patient weight, else null (unit: the row's rate unit); amount null "
        "(doses of different drugs do not add up: use a user concept per drug). Every row counts, rewritten or "
        "not (as the flagship's support screen).",
        "numeric",
        ("icu/inputevents",),
    ),
    "lactate": _B(
        "events",
        "Lactate",
        "mmol/L",
        "Blood lactate: labevents 50813, valuenum in mmol/L, at charttime.",
        "numeric",
        ("hosp/labevents",),
    ),
    "mean_arterial_pressure": _B(
        "events",
        "Mean arterial pressure",
        "mmHg",
        "Mean arterial pressure: chartevents 220052 (arterial line), 220181 (non-invasive) and 225312 (ART BP "
        "mean), valuenum in mmHg within 10-300 (values outside are artefacts), at charttime.",
        "numeric",
        ("icu/chartevents",),
    ),
    "weight": _B(
        "events",
        "Weight",
        "kg",
        "Body weight in kg: chartevents 226512 (admission weight) and 224639 (daily weight), valuenum within "
        "20-400 kg, at charttime.",
        "numeric",
        ("icu/chartevents",),
    ),
    "creatinine": _B(
        "events",
        "Serum creatinine",
        "mg/dL",
        "Serum creatinine: labevents 50912, valuenum in mg/dL, at charttime.",
        "numeric",
        ("hosp/labevents",),
    ),
    "serum_magnesium": _B(
        "events",
        "Serum magnesium",
        "mg/dL",
        "Serum magnesium: labevents 50960, valuenum in mg/dL, at charttime.",
        "numeric",
        ("hosp/labevents",),
    ),
    "urine_output": _B(
        "events",
        "Urine output",
        "mL",
        "Urine output: outputevents 226559 Foley, 226560 void, 226561 condom cath, 226584 ileoconduit, "
        "226563 suprapubic, 226564 R nephrostomy, 226565 L nephrostomy, 226567 straight cath, 226557 R ureteral "
        "stent, 226558 L ureteral stent, 227488 GU irrigant volume in (subtracted: value and amount negated), "
        "227489 GU irrigant/urine volume out; value and amount in mL, at charttime.",
        "numeric",
        ("icu/outputevents",),
    ),
    "death": _B(
        "events",
        "Death",
        "",
        "Death: admissions.deathtime when recorded (in-hospital, minute precision), else patients.dod (a date) "
        "read as 23:59:59 of that day; one row per patient who died.",
        "none",
        ("hosp/admissions", "hosp/patients"),
    ),
    "antibiotics": _B(
        "events",
        "Systemic antibiotic",
        "",
        "Systemic antibiotic orders: prescriptions whose drug names a systemic antibacterial (list in "
        "docs/concepts.md), route not topical/ophthalmic/otic (no OU, OS, OD, AU, AS, AD, TP, EX, VG, NU), "
        "at starttime.",
        "none",
        ("hosp/prescriptions",),
    ),
    "cultures": _B(
        "events",
        "Body-fluid culture",
        "",
        "Cultures sent: one row per microbiology specimen (micro_specimen_id), at charttime (chartdate at "
        "00:00 when the time is missing).",
        "none",
        ("hosp/microbiologyevents",),
    ),
    "suspected_infection": _B(
        "events",
        "Suspected infection",
        "",
        "Suspected infection (Seymour 2016): a systemic antibiotic with a culture sent within 24 h after it, "
        "or a culture followed by an antibiotic within 72 h; the event time is the earlier of the two.",
        "none",
        ("hosp/prescriptions", "hosp/microbiologyevents"),
    ),
    # ---------------------------------------------------------------- baseline
    "age": _B(
        "baseline",
        "Age",
        "years",
        "Age at the index admission: anchor_age + (year of admittime - anchor_year) (MIMIC-IV shifts dates "
        "per patient; ages above 89 are recorded as 91); the index time's year when the index has no admission.",
        "numeric",
        ("hosp/patients", "hosp/admissions"),
    ),
    "sex": _B(
        "baseline",
        "Sex",
        "",
        "Sex as recorded: patients.gender, 'F' or 'M' (any other value, e.g. blank or 'X', is missing).",
        "categorical",
        ("hosp/patients",),
    ),
    "sofa": _B(
        "baseline",
        "SOFA score",
        "points",
        "SOFA (Vincent 1996) at index, worst value in [index - 24 h, index], the sum of the respiratory, "
        "cardiovascular, renal, coagulation and liver components (CNS is not charted reliably and scores 0).",
        "numeric",
        ("hosp/labevents", "icu/inputevents", "icu/procedureevents"),
    ),
    "sofa_respiratory": _B(
        "baseline",
        "SOFA respiratory",
        "points",
        "Lowest PaO2/FiO2 in [index - 24 h, index] (PaO2 labevents 50821 paired with FiO2 50816 of the same "
        "specimen; FiO2 > 1 read as %): <100 with ventilation 4, <200 with ventilation 3, <300 2, <400 1; "
        "ventilated without a blood gas 2.",
        "numeric",
        ("hosp/labevents", "icu/procedureevents"),
    ),
    "sofa_cardiovascular": _B(
        "baseline",
        "SOFA cardiovascular",
        "points",
        "Highest vasoactive dose running in [index - 24 h, index]: norepinephrine/epinephrine > 0.1 mcg/kg/min "
        "or dopamine > 15: 4; norepinephrine/epinephrine any or dopamine > 5: 3; dopamine any or dobutamine: "
        "2; else 0 (MAP < 70 is not scored).",
        "numeric",
        ("icu/inputevents",),
    ),
    "sofa_renal": _B(
        "baseline",
        "SOFA renal",
        "points",
        "KRT running or started in [index - 24 h, index]: 4; else highest creatinine in the window: >= 5.0 "
        "mg/dL 4, >= 3.5 3, >= 2.0 2, >= 1.2 1, else 0 (urine output is not scored).",
        "numeric",
        ("hosp/labevents", "icu/procedureevents"),
    ),
    "sofa_coagulation": _B(
        "baseline",
        "SOFA coagulation",
        "points",
        "Lowest platelets (labevents 51265) in [index - 24 h, index]: <20 4, <50 3, <100 2, <150 1, else 0.",
        "numeric",
        ("hosp/labevents",),
    ),
    "sofa_liver": _B(
        "baseline",
        "SOFA liver",
        "points",
        "Highest total bilirubin (labevents 50885) in [index - 24 h, index]: >= 12 4, >= 6 3, >= 2 2, >= 1.2 1, "
        "else 0.",
        "numeric",
        ("hosp/labevents",),
    ),
    "sepsis": _B(
        "baseline",
        "Sepsis (explicit ICD codes)",
        "",
        "1 when the index admission carries an explicit sepsis code (Angus 2001 / Martin 2003): ICD-9 038*, "
        "99591, 99592, 78552; ICD-10 A40*, A41*, A021, A227, A267, A327, A427, B377, R652*; else 0.",
        "binary",
        ("hosp/diagnoses_icd",),
    ),
    "sepsis3": _B(
        "baseline",
        "Sepsis-3",
        "",
        "1 when a suspected infection (see suspected_infection) falls in [index - 48 h, index + 24 h] and SOFA "
        "at index is >= 2 (Singer 2016; the baseline SOFA is taken as 0); else 0.",
        "binary",
        ("hosp/prescriptions", "hosp/microbiologyevents", "hosp/labevents", "icu/inputevents"),
    ),
    "septic_shock": _B(
        "baseline",
        "Septic shock",
        "",
        "1 when Sepsis-3 holds, a vasopressor runs in [index - 24 h, index] and the highest lactate in that "
        "window is > 2 mmol/L (Singer 2016); else 0.",
        "binary",
        ("hosp/prescriptions", "hosp/microbiologyevents", "hosp/labevents", "icu/inputevents"),
    ),
    "kdigo_stage": _B(
        "baseline",
        "KDIGO AKI stage",
        "stage",
        "Highest KDIGO stage (0-3) in [index - 48 h, index]: creatinine (highest in the window) vs baseline "
        "creatinine: >= 3.0x, or >= 4.0 mg/dL with an acute rise (>= 1.5x or >= 0.3 mg/dL within 48 h), or KRT "
        "3; >= 2.0x 2; >= 1.5x or a rise >= 0.3 mg/dL within 48 h 1 (a stable high creatinine is CKD, not AKI); "
        "urine output (outputevents, per kg of the first weight) in the 24 h before index < 0.3 mL/kg/h: "
        "3, in the 12 h before index < 0.5 mL/kg/h: 2, in the 6 h before index < 0.5 mL/kg/h: 1 (only where "
        "the stay has been charted for the whole span).",
        "numeric",
        ("hosp/labevents", "icu/outputevents", "icu/chartevents", "icu/procedureevents"),
        ("icu/outputevents", "icu/chartevents"),
    ),
    "creatinine_baseline": _B(
        "baseline",
        "Baseline creatinine",
        "mg/dL",
        "Lowest serum creatinine (labevents 50912) in the 365 days before the index admission; else the "
        "lowest in the index admission up to index; else back-calculated from an assumed eGFR of 75 "
        "(KDIGO) with CKD-EPI 2021 for the patient's age and sex. Without an index admission the index time "
        "stands for the admission time.",
        "numeric",
        ("hosp/labevents", "hosp/admissions", "hosp/patients"),
    ),
    "egfr_baseline": _B(
        "baseline",
        "Baseline eGFR",
        "mL/min/1.73 m2",
        "CKD-EPI 2021 race-free eGFR (Inker 2021) from creatinine_baseline, age and sex.",
        "numeric",
        ("hosp/labevents", "hosp/admissions", "hosp/patients"),
    ),
    "charlson": _B(
        "baseline",
        "Charlson comorbidity index",
        "points",
        "Charlson comorbidity index (Charlson 1987 weights) from the ICD-9-CM and ICD-10 codes of Quan 2005 on "
        "admissions discharged before the index admission and on the index admission itself; age points are "
        "not added. The more severe of paired conditions counts once (diabetes, liver disease, cancer).",
        "numeric",
        ("hosp/diagnoses_icd", "hosp/admissions"),
    ),
}

EVENT_BUILTINS: tuple[str, ...] = tuple(n for n, b in BUILTIN_CONCEPTS.items() if b.kind == "events")
BASELINE_BUILTINS: tuple[str, ...] = tuple(n for n, b in BUILTIN_CONCEPTS.items() if b.kind == "baseline")

__all__ = ["BASELINE_BUILTINS", "BUILTIN_CONCEPTS", "EVENT_BUILTINS", "BuiltinInfo"]


#: What a built-in gives up when a table it reads only when present is absent (check --study's last line).
OPTIONAL_TABLE_LOSSES: dict[tuple[str, str], str] = {
    ("kdigo_stage", "icu/outputevents"): "the urine-output criterion of kdigo_stage (staged on creatinine only)",
    ("kdigo_stage", "icu/chartevents"): "the weight kdigo_stage's urine output per kg uses (urine criterion)",
    ("krt", "icu/chartevents"): "the CRRT-mode charting krt also counts",
    ("crrt", "icu/chartevents"): "the CRRT-mode charting crrt also counts",
}
