"""Rows the round-3 new-user studies need, added to a generated synthetic EHR (the generator is untouched).

The synthetic EHR (``retrocohort synth``) has no ACE inhibitor or calcium-channel blocker orders, few
potassium values, no dobutamine, crystalloid boluses, propofol or midazolam, no intubation procedure rows,
no heart rate / SpO2 / temperature charting, no emergency-department transfers and no alcohol-use-disorder
codes beyond a handful. This appends, deterministically and per ICU stay (``i`` = the stay's position in
``icustays`` sorted by ``stay_id``), rows in the MIMIC-IV columns of the tables they live in:

- ``hosp/prescriptions``: oral lisinopril 10 mg (``i % 4 == 0``) or amlodipine 5 mg (``i % 4 == 1``) 2 h after
  ICU admission, both for ``i % 20 == 2``; a lisinopril order 100 days before ICU admission for
  ``i % 20 == 5`` (an amlodipine user the one-year washout must drop);
- ``hosp/labevents``: potassium (50971) 1 h before ICU admission for every stay (3.5-4.9 mEq/L), 6.4 mEq/L
  ``2 + i % 10`` days after it for ``i % 3 == 0`` (hyperkalaemia), 6.2 mEq/L 12 h before it for
  ``i % 11 == 0`` (already hyperkalaemic: ``exclude_prior``);
- ``icu/inputevents``: dobutamine 2 h after ICU admission (``i % 3 == 0``); 1000 mL of lactated Ringer's
  (``i % 2 == 0``) or 0.9% saline (``i % 2 == 1``) 1 h after it, and 500 mL of Ringer's (below the bolus
  threshold) for ``i % 6 == 1``; propofol (``i % 4 == 0``) or midazolam (``i % 4 == 2``) 1 h after the
  intubation;
- ``icu/procedureevents``: an intubation (224385) 1 h after ICU admission for even ``i``;
- ``icu/chartevents``: heart rate (220045) 3 h and 1 h before ICU admission, SpO2 (220277) 3 h and 1 h before,
  temperature (223762) 2 h before for ``i % 3 != 0`` (missing otherwise);
- ``hosp/transfers``: an emergency-department stay ending 1 h before ICU admission for ``i % 3 != 2``;
- ``hosp/emar`` + ``emar_detail``: IV thiamine 500 mg (``i % 3 == 0``) or 100 mg (``i % 3 == 1``) 3 h after ICU
  admission; a "Not Given" 500 mg row for ``i % 9 == 4`` (a standard-dose patient; it must not count);
- ``hosp/diagnoses_icd``: alcohol use disorder, ICD-10 F1020 (``i % 4 == 0``) or ICD-9 3039 (``i % 4 == 2``);
- AKI for ``i % 4 == 1``: creatinine (50912) 0.9 mg/dL 60 days before ICU admission (an outpatient value, the
  baseline) and 2.4 mg/dL 3 h before it (KDIGO stage 2); continuous KRT (procedureevents 225802) starting
  ``6 + i % 30`` hours after ICU admission, for 24 h, for ``i % 8 == 1`` (half of them).

:func:`expected` gives, per stay, which of those rows it received, so a test can count by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..round2.extra_rows import FMT, _append, _stays


def expected(folder: Path) -> pd.DataFrame:
    """One row per ICU stay: ``subject_id``, ``hadm_id``, ``stay_id``, ``intime``, ``i`` and the flags of the rows."""
    stays = _stays(folder)
    i = stays.index.to_series()
    return stays.assign(
        i=i,
        lisinopril=(i % 4 == 0) | (i % 20 == 2),
        amlodipine=(i % 4 == 1) | (i % 20 == 2),
        prior_lisinopril=i % 20 == 5,
        hyperkalaemia=i % 3 == 0,
        prior_hyperkalaemia=i % 11 == 0,
        dobutamine=i % 3 == 0,
        ringer=i % 2 == 0,
        saline=i % 2 == 1,
        small_ringer=i % 6 == 1,
        intubated=i % 2 == 0,
        propofol=i % 4 == 0,
        midazolam=i % 4 == 2,
        temperature=i % 3 != 0,
        from_ed=i % 3 != 2,
        thiamine_high=i % 3 == 0,
        thiamine_standard=i % 3 == 1,
        thiamine_not_given=i % 9 == 4,
        alcohol_icd10=i % 4 == 0,
        alcohol_icd9=i % 4 == 2,
        aki=i % 4 == 1,
        early_krt=i % 8 == 1,
    )[["subject_id", "hadm_id", "stay_id", "intime", "outtime", "i", *_FLAGS]]


_FLAGS = [
    "lisinopril",
    "amlodipine",
    "prior_lisinopril",
    "hyperkalaemia",
    "prior_hyperkalaemia",
    "dobutamine",
    "ringer",
    "saline",
    "small_ringer",
    "intubated",
    "propofol",
    "midazolam",
    "temperature",
    "from_ed",
    "thiamine_high",
    "thiamine_standard",
    "thiamine_not_given",
    "alcohol_icd10",
    "alcohol_icd9",
    "aki",
    "early_krt",
]


def _hours(s: pd.DataFrame, hours: float, base: str = "intime") -> pd.Series:
    return s[base] + pd.Timedelta(hours=hours)


def add_round3_rows(folder: Path) -> None:
    """Append the rows described in the module docstring to the synthetic EHR in ``folder``."""
    e = expected(folder)

    rx = []
    for name, flag, when, dose, code in (
        ("Lisinopril", "lisinopril", 2, "10", "LISI10"),
        ("Amlodipine", "amlodipine", 2, "5", "AMLO5"),
        ("Lisinopril", "prior_lisinopril", -2400, "10", "LISI10"),
    ):
        s = e[e[flag]]
        start = _hours(s, when)
        rx.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "pharmacy_id": 9_500_000 + s.i + (100_000 if when < 0 else 0) + 50_000 * (flag == "amlodipine"),
                    "poe_id": s.subject_id.astype(str) + f"-{code}-" + s.i.astype(str),
                    "poe_seq": 1,
                    "starttime": start.dt.strftime(FMT),
                    "stoptime": (start + pd.Timedelta(days=5)).dt.strftime(FMT),
                    "drug_type": "MAIN",
                    "drug": name,
                    "formulary_drug_cd": code,
                    "dose_val_rx": dose,
                    "dose_unit_rx": "mg",
                    "route": "PO",
                }
            )
        )
    _append(folder, "hosp/prescriptions", pd.concat(rx, ignore_index=True))

    labs = []
    for flag, when, value in (
        (None, pd.to_timedelta(-1, unit="h"), 3.5 + (e.i % 15) / 10),
        ("hyperkalaemia", pd.to_timedelta(2 + e.i % 10, unit="D"), 6.4),
        ("prior_hyperkalaemia", pd.to_timedelta(-12, unit="h"), 6.2),
    ):
        mask = e[flag] if flag else pd.Series(True, index=e.index)
        s = e[mask]
        at = s.intime + (when[mask] if isinstance(when, pd.Series) else when)
        vals = value[mask] if isinstance(value, pd.Series) else pd.Series(value, index=s.index)
        labs.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "itemid": 50971,
                    "charttime": at.dt.strftime(FMT),
                    "storetime": at.dt.strftime(FMT),
                    "value": vals.round(1).astype(str),
                    "valuenum": vals.round(1),
                    "valueuom": "mEq/L",
                }
            )
        )
    s = e[e.aki]
    for when, value in ((pd.Timedelta(days=-60), 0.9), (pd.Timedelta(hours=-3), 2.4)):
        at = s.intime + when
        labs.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    # the value 60 days before is an outpatient one: no admission
                    "hadm_id": s.hadm_id if when > pd.Timedelta(days=-1) else pd.NA,
                    "itemid": 50912,
                    "charttime": at.dt.strftime(FMT),
                    "storetime": at.dt.strftime(FMT),
                    "value": str(value),
                    "valuenum": value,
                    "valueuom": "mg/dL",
                }
            )
        )
    lab = pd.concat(labs, ignore_index=True)
    lab.insert(0, "labevent_id", range(8_000_000, 8_000_000 + len(lab)))
    _append(folder, "hosp/labevents", lab)

    inputs = []
    for flag, itemid, when, amount, unit, category, base in (
        ("dobutamine", 221653, 2, "250", "mg", "01-Drips", "intime"),
        ("ringer", 225828, 1, "1000", "mL", "03-IV Fluid Bolus", "intime"),
        ("saline", 225158, 1, "1000", "mL", "03-IV Fluid Bolus", "intime"),
        ("small_ringer", 225828, 1.5, "500", "mL", "03-IV Fluid Bolus", "intime"),
        ("propofol", 222168, 2, "500", "mg", "01-Drips", "intime"),
        ("midazolam", 221668, 2, "20", "mg", "01-Drips", "intime"),
    ):
        s = e[e[flag]]
        start = _hours(s, when, base)
        inputs.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "stay_id": s.stay_id,
                    "caregiver_id": 1,
                    "starttime": start.dt.strftime(FMT),
                    "endtime": (start + pd.Timedelta(hours=2)).dt.strftime(FMT),
                    "storetime": start.dt.strftime(FMT),
                    "itemid": itemid,
                    "amount": amount,
                    "amountuom": unit,
                    "orderid": 8_500_000 + itemid % 1000 * 10_000 + s.i,
                    "linkorderid": 8_500_000 + itemid % 1000 * 10_000 + s.i,
                    "ordercategoryname": category,
                    "statusdescription": "FinishedRunning",
                    "patientweight": "80",
                }
            )
        )
    _append(folder, "icu/inputevents", pd.concat(inputs, ignore_index=True))

    procedures = []
    for flag, itemid, start, length in (
        ("intubated", 224385, lambda s: _hours(s, 1), pd.Timedelta(minutes=1)),
        ("early_krt", 225802, lambda s: s.intime + pd.to_timedelta(6 + s.i % 30, unit="h"), pd.Timedelta(hours=24)),
    ):
        s = e[e[flag]]
        begin = start(s)
        procedures.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "stay_id": s.stay_id,
                    "caregiver_id": 1,
                    "starttime": begin.dt.strftime(FMT),
                    "endtime": (begin + length).dt.strftime(FMT),
                    "storetime": begin.dt.strftime(FMT),
                    "itemid": itemid,
                    "value": "1" if itemid == 224385 else "1440",
                    "valueuom": "None" if itemid == 224385 else "min",
                    "orderid": 8_900_000 + itemid % 1000 * 10_000 + s.i,
                    "linkorderid": 8_900_000 + itemid % 1000 * 10_000 + s.i,
                    "ordercategoryname": "Procedures" if itemid == 224385 else "Dialysis",
                    "statusdescription": "FinishedRunning",
                    "patientweight": "80",
                }
            )
        )
    _append(folder, "icu/procedureevents", pd.concat(procedures, ignore_index=True))

    charted = []
    for flag, itemid, when, value, unit in (
        (None, 220045, -3, 70 + e.i % 40, "bpm"),
        (None, 220045, -1, 80 + e.i % 50, "bpm"),
        (None, 220277, -3, 99 - e.i % 3, "%"),
        (None, 220277, -1, 90 + e.i % 10, "%"),
        ("temperature", 223762, -2, 36.5 + (e.i % 5) / 2, "°C"),
    ):
        mask = e[flag] if flag else pd.Series(True, index=e.index)
        s = e[mask]
        at = _hours(s, when)
        charted.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "stay_id": s.stay_id,
                    "caregiver_id": 1,
                    "charttime": at.dt.strftime(FMT),
                    "storetime": at.dt.strftime(FMT),
                    "itemid": itemid,
                    "value": value[mask].astype(float).astype(str),
                    "valuenum": value[mask].astype(float),
                    "valueuom": unit,
                    "warning": 0,
                }
            )
        )
    _append(folder, "icu/chartevents", pd.concat(charted, ignore_index=True))

    s = e[e.from_ed]
    _append(
        folder,
        "hosp/transfers",
        pd.DataFrame(
            {
                "subject_id": s.subject_id,
                "hadm_id": s.hadm_id,
                "transfer_id": 39_000_000 + s.i,
                "eventtype": "ED",
                "careunit": "Emergency Department",
                "intime": _hours(s, -6).dt.strftime(FMT),
                "outtime": _hours(s, -1).dt.strftime(FMT),
            }
        ),
    )

    given = []
    for label, flag, when, dose, event in (
        ("thh", "thiamine_high", 3, "500", "Administered"),
        ("ths", "thiamine_standard", 3, "100", "Administered"),
        ("thn", "thiamine_not_given", 4, "500", "Not Given"),
    ):
        s = e[e[flag]]
        at = _hours(s, when)
        given.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "emar_id": s.subject_id.astype(str) + f"-{label}" + s.i.astype(str),
                    "emar_seq": 950,
                    "charttime": at.dt.strftime(FMT),
                    "medication": "Thiamine",
                    "event_txt": event,
                    "scheduletime": at.dt.strftime(FMT),
                    "storetime": at.dt.strftime(FMT),
                    "dose": dose,
                    "unit": "mg",
                    "route": "IV",
                }
            )
        )
    emar = pd.concat(given, ignore_index=True)
    _append(folder, "hosp/emar", emar)
    product = emar.assign(parent_field_ordinal="1.1", dose_given=emar.dose, dose_given_unit=emar.unit)
    parent = emar.assign(parent_field_ordinal="", dose_due=emar.dose, dose_due_unit=emar.unit)
    _append(folder, "hosp/emar_detail", pd.concat([product, parent], ignore_index=True))

    codes = []
    for flag, code, version in (("alcohol_icd10", "F1020", 10), ("alcohol_icd9", "3039", 9)):
        s = e[e[flag]]
        codes.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "seq_num": 40,
                    "icd_code": code,
                    "icd_version": version,
                }
            )
        )
    _append(folder, "hosp/diagnoses_icd", pd.concat(codes, ignore_index=True).drop_duplicates(["hadm_id", "icd_code"]))
