"""Rows the round-2 new-user studies need, added to a generated synthetic EHR (the generator is untouched).

The synthetic EHR (``retrocohort synth``) gives no patient a proton-pump inhibitor, an H2 blocker,
heparin, hydrocortisone or albumin, and its blood cultures (``extra_tables``) all precede the ICU stay.
This appends, deterministically and per ICU stay (by the stay's position in ``icustays`` sorted by
``stay_id``), rows in the MIMIC-IV columns of the tables those drugs and cultures live in:

- ``hosp/prescriptions``: IV pantoprazole 40 mg (stays 0, 3, 6, ...) or IV famotidine 20 mg (stays 1, 4,
  7, ...) ordered 2 h after ICU admission; stays 2, 5, 8, ... get neither;
- ``hosp/emar`` + ``emar_detail``: subcutaneous heparin 5000 units 6 h after ICU admission (even stays),
  one administration each, "Administered"; stays 5, 15, 25, ... (no heparin given) get one "Not Given"
  (which must not count); and IV hydrocortisone 50 mg 3 h after the first norepinephrine start of every
  other patient with norepinephrine;
- ``icu/inputevents``: albumin 5% (itemid 220864), 250 mL, 3 h after ICU admission (stays 0, 4, 8, ...);
- ``icu/chartevents``: mean arterial pressure (itemid 220052, mmHg) every 4 h over the first 48 h of every
  stay, values 55-94, and the GCS motor score (223901, 4-6) at the same times for every other stay;
- ``hosp/microbiologyevents``: a positive blood culture (E. coli) 5 days after ICU admission (stays 0, 5,
  10, ...), and a negative one (no organism) 4 days after it (stays 1, 6, 11, ...).

:func:`expected` gives, per stay, which of those rows it received, so a test can count by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FMT = "%Y-%m-%d %H:%M:%S"


def _stays(folder: Path) -> pd.DataFrame:
    stays = pd.read_csv(folder / "icu" / "icustays.csv.gz", parse_dates=["intime", "outtime"])
    return stays.sort_values("stay_id").reset_index(drop=True)


def _append(folder: Path, table: str, rows: pd.DataFrame) -> None:
    path = folder / f"{table}.csv.gz"
    old = pd.read_csv(path, dtype=str, keep_default_na=False)
    new = rows.reindex(columns=old.columns).astype(object).where(rows.reindex(columns=old.columns).notna(), "")
    pd.concat([old, new.astype(str)], ignore_index=True).to_csv(path, index=False, compression="gzip")


def expected(folder: Path) -> pd.DataFrame:
    """One row per ICU stay: ``subject_id``, ``hadm_id``, ``stay_id``, ``intime`` and the flags of the rows added."""
    stays = _stays(folder)
    i = pd.Series(range(len(stays)))
    return stays.assign(
        pantoprazole=(i % 3 == 0).to_numpy(),
        famotidine=(i % 3 == 1).to_numpy(),
        heparin=(i % 2 == 0).to_numpy(),
        heparin_not_given=(i % 10 == 5).to_numpy(),
        albumin=(i % 4 == 0).to_numpy(),
        positive_culture=(i % 5 == 0).to_numpy(),
        negative_culture=(i % 5 == 1).to_numpy(),
    )[
        [
            "subject_id",
            "hadm_id",
            "stay_id",
            "intime",
            "pantoprazole",
            "famotidine",
            "heparin",
            "heparin_not_given",
            "albumin",
            "positive_culture",
            "negative_culture",
        ]
    ]


def add_round2_rows(folder: Path) -> None:
    """Append the rows described in the module docstring to the synthetic EHR in ``folder``."""
    e = expected(folder)
    rx = []
    for drug, flag, dose, code in (
        ("Pantoprazole", "pantoprazole", 40, "PANT40I"),
        ("Famotidine", "famotidine", 20, "FAMO20I"),
    ):
        s = e[e[flag]]
        rx.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "pharmacy_id": 9_000_000 + s.index,
                    "poe_id": s.subject_id.astype(str) + "-rx" + s.index.astype(str),
                    "poe_seq": 1,
                    "starttime": (s.intime + pd.Timedelta(hours=2)).dt.strftime(FMT),
                    "stoptime": (s.intime + pd.Timedelta(hours=50)).dt.strftime(FMT),
                    "drug_type": "MAIN",
                    "drug": drug,
                    "formulary_drug_cd": code,
                    "dose_val_rx": str(dose),
                    "dose_unit_rx": "mg",
                    "route": "IV",
                }
            )
        )
    _append(folder, "hosp/prescriptions", pd.concat(rx, ignore_index=True))

    # eMAR: heparin SC (and a "Not Given" row), hydrocortisone IV after the first norepinephrine start
    inputs = pd.read_csv(folder / "icu" / "inputevents.csv.gz", parse_dates=["starttime"])
    norepi = (
        inputs[inputs.itemid == 221906]
        .groupby("subject_id", as_index=False)
        .agg(hadm_id=("hadm_id", "first"), start=("starttime", "min"))
    )
    norepi = norepi.sort_values("subject_id").iloc[::2]
    given = []
    for label, s, when, medication, dose, unit, route, event in (
        (
            "hep",
            e[e.heparin],
            e[e.heparin].intime + pd.Timedelta(hours=6),
            "Heparin",
            "5000",
            "UNIT",
            "SC",
            "Administered",
        ),
        (
            "hepng",
            e[e.heparin_not_given],
            e[e.heparin_not_given].intime + pd.Timedelta(hours=8),
            "Heparin",
            "0",
            "UNIT",
            "SC",
            "Not Given",
        ),
        (
            "hc",
            norepi,
            norepi.start + pd.Timedelta(hours=3),
            "Hydrocortisone Na Succ.",
            "50",
            "mg",
            "IV",
            "Administered",
        ),
    ):
        ids = s.subject_id.astype(str) + f"-{label}" + pd.Series(range(len(s)), index=s.index).astype(str)
        given.append(
            pd.DataFrame(
                {
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "emar_id": ids,
                    "emar_seq": 900,
                    "charttime": when.dt.strftime(FMT),
                    "medication": medication,
                    "event_txt": event,
                    "scheduletime": when.dt.strftime(FMT),
                    "storetime": when.dt.strftime(FMT),
                    "dose": dose,
                    "unit": unit,
                    "route": route,
                }
            )
        )
    emar = pd.concat(given, ignore_index=True)
    _append(folder, "hosp/emar", emar)
    product = emar.assign(parent_field_ordinal="1.1", dose_given=emar.dose, dose_given_unit=emar.unit)
    parent = emar.assign(parent_field_ordinal="", dose_due=emar.dose, dose_due_unit=emar.unit)
    _append(folder, "hosp/emar_detail", pd.concat([product, parent], ignore_index=True))

    s = e[e.albumin]
    start = s.intime + pd.Timedelta(hours=3)
    _append(
        folder,
        "icu/inputevents",
        pd.DataFrame(
            {
                "subject_id": s.subject_id,
                "hadm_id": s.hadm_id,
                "stay_id": s.stay_id,
                "caregiver_id": 1,
                "starttime": start.dt.strftime(FMT),
                "endtime": (start + pd.Timedelta(hours=1)).dt.strftime(FMT),
                "storetime": start.dt.strftime(FMT),
                "itemid": 220864,
                "amount": "250",
                "amountuom": "ml",
                "orderid": 8_000_000 + s.index,
                "linkorderid": 8_000_000 + s.index,
                "ordercategoryname": "02-Fluids (Colloids)",
                "statusdescription": "FinishedRunning",
                "patientweight": "80",
            }
        ),
    )

    every4h = [
        e.assign(charttime=e.intime + pd.Timedelta(hours=h), value=55 + (e.index * 7 + h) % 40) for h in range(0, 48, 4)
    ]
    map_rows = pd.concat(every4h, ignore_index=True)
    # GCS motor (223901, 4-6) at the same times, for every other stay: a categorical covariate with levels
    # and a missing category
    gcs_rows = map_rows[map_rows.stay_id.isin(e.stay_id[e.index % 2 == 0])].assign(
        itemid=223901, value=lambda f: 4 + f.value % 3, valueuom=""
    )
    charted = pd.concat([map_rows.assign(itemid=220052, valueuom="mmHg"), gcs_rows], ignore_index=True)
    _append(
        folder,
        "icu/chartevents",
        pd.DataFrame(
            {
                "subject_id": charted.subject_id,
                "hadm_id": charted.hadm_id,
                "stay_id": charted.stay_id,
                "caregiver_id": 1,
                "charttime": charted.charttime.dt.strftime(FMT),
                "storetime": charted.charttime.dt.strftime(FMT),
                "itemid": charted.itemid,
                "value": charted.value.astype(int).astype(str),
                "valuenum": charted.value.astype(float),
                "valueuom": charted.valueuom,
                "warning": 0,
            }
        ),
    )

    cultures = []
    for flag, days, organism in (("positive_culture", 5, "ESCHERICHIA COLI"), ("negative_culture", 4, "")):
        s = e[e[flag]]
        when = s.intime + pd.Timedelta(days=days)
        cultures.append(
            pd.DataFrame(
                {
                    "microevent_id": 7_000_000 + s.index,
                    "subject_id": s.subject_id,
                    "hadm_id": s.hadm_id,
                    "micro_specimen_id": 7_000_000 + s.index + (0 if organism else 500_000),
                    "chartdate": when.dt.strftime("%Y-%m-%d 00:00:00"),
                    "charttime": when.dt.strftime(FMT),
                    "spec_itemid": 70012,
                    "spec_type_desc": "BLOOD CULTURE",
                    "org_name": organism,
                }
            )
        )
    _append(folder, "hosp/microbiologyevents", pd.concat(cultures, ignore_index=True))
