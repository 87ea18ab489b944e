"""Small MIMIC-IV tables the synthetic EHR does not write, added beside it for the new-user studies.

The synthetic EHR (``retrocohort synth``) writes the tables of the shipped studies only. The new-user
studies also read ``microbiologyevents``, ``omr``, ``outputevents``, ``datetimeevents``,
``ingredientevents``, ``services``, ``pharmacy`` and ``procedures_icd``: this writes them with the
MIMIC-IV columns and a few rows per ICU stay (deterministic), so those concepts find rows, while the
drugs no synthetic patient receives (furosemide, statins, cefepime, ...) still find none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def add_extra_tables(folder: Path, seed: int = 5) -> None:
    """Write the eight extra tables into ``folder`` (a synthetic EHR) as csv.gz."""
    rng = np.random.default_rng(seed)
    stays = pd.read_csv(folder / "icu" / "icustays.csv.gz", parse_dates=["intime", "outtime"])
    stays = stays.sort_values("stay_id").reset_index(drop=True)
    n = len(stays)
    every3 = stays.iloc[::3]
    hours = pd.to_timedelta(rng.integers(1, 20, n), unit="h")
    fmt = "%Y-%m-%d %H:%M:%S"

    def write(name: str, frame: pd.DataFrame) -> None:
        frame.to_csv(folder / f"{name}.csv.gz", index=False, compression="gzip")

    write(
        "icu/outputevents",
        pd.DataFrame(
            {
                "subject_id": stays.subject_id,
                "hadm_id": stays.hadm_id,
                "stay_id": stays.stay_id,
                "caregiver_id": 1,
                "charttime": (stays.intime - hours).dt.strftime(fmt),
                "storetime": (stays.intime - hours).dt.strftime(fmt),
                "itemid": 226559,
                "value": rng.integers(50, 900, n).astype(float),
                "valueuom": "ml",
            }
        ),
    )
    write(
        "icu/datetimeevents",
        pd.DataFrame(
            {
                "subject_id": every3.subject_id,
                "hadm_id": every3.hadm_id,
                "stay_id": every3.stay_id,
                "caregiver_id": 1,
                "charttime": every3.intime.dt.strftime(fmt),
                "storetime": every3.intime.dt.strftime(fmt),
                "itemid": 225318,
                "value": (every3.intime - pd.Timedelta(days=30)).dt.strftime(fmt),
                "valueuom": "Date",
                "warning": 0,
            }
        ),
    )
    write(
        "icu/ingredientevents",
        pd.DataFrame(
            {
                "subject_id": stays.subject_id,
                "hadm_id": stays.hadm_id,
                "stay_id": stays.stay_id,
                "caregiver_id": 1,
                "starttime": (stays.intime - hours).dt.strftime(fmt),
                "endtime": (stays.intime - hours + pd.Timedelta(hours=1)).dt.strftime(fmt),
                "storetime": stays.intime.dt.strftime(fmt),
                "itemid": 220490,
                "amount": rng.integers(100, 500, n).astype(float),
                "amountuom": "mL",
                "rate": np.nan,
                "rateuom": "",
                "orderid": np.arange(n) + 1,
                "linkorderid": np.arange(n) + 1,
                "statusdescription": "FinishedRunning",
                "originalamount": 0.0,
                "originalrate": 0.0,
            }
        ),
    )
    write(
        "hosp/microbiologyevents",
        pd.DataFrame(
            {
                "microevent_id": np.arange(len(every3)) + 1,
                "subject_id": every3.subject_id,
                "hadm_id": every3.hadm_id,
                "micro_specimen_id": np.arange(len(every3)) + 100,
                "chartdate": (every3.intime - pd.Timedelta(days=2)).dt.strftime("%Y-%m-%d 00:00:00"),
                "charttime": (every3.intime - pd.Timedelta(days=2)).dt.strftime(fmt),
                "spec_itemid": 70012,
                "spec_type_desc": "BLOOD CULTURE",
                "org_name": np.where(np.arange(len(every3)) % 2 == 0, "STAPH AUREUS COAG +", ""),
            }
        ),
    )
    write(
        "hosp/omr",
        pd.DataFrame(
            {
                "subject_id": stays.subject_id,
                "chartdate": (stays.intime - pd.Timedelta(days=40)).dt.strftime("%Y-%m-%d"),
                "seq_num": 1,
                "result_name": "BMI (kg/m2)",
                "result_value": (rng.normal(28, 5, n)).round(1).astype(str),
            }
        ),
    )
    write(
        "hosp/services",
        pd.DataFrame(
            {
                "subject_id": stays.subject_id,
                "hadm_id": stays.hadm_id,
                "transfertime": (stays.intime - hours).dt.strftime(fmt),
                "prev_service": "",
                "curr_service": np.where(np.arange(n) % 4 == 0, "SURG", "MED"),
            }
        ),
    )
    write(
        "hosp/pharmacy",
        pd.DataFrame(
            {
                "subject_id": every3.subject_id,
                "hadm_id": every3.hadm_id,
                "pharmacy_id": np.arange(len(every3)) + 1,
                "poe_id": "",
                "starttime": (every3.intime + pd.Timedelta(hours=3)).dt.strftime(fmt),
                "stoptime": (every3.intime + pd.Timedelta(hours=30)).dt.strftime(fmt),
                "medication": "Heparin",
                "proc_type": "Unit Dose",
                "status": "Inactive (Due to a change order)",
                "route": "SC",
            }
        ),
    )
    write(
        "hosp/procedures_icd",
        pd.DataFrame(
            {
                "subject_id": every3.subject_id,
                "hadm_id": every3.hadm_id,
                "seq_num": 1,
                "chartdate": every3.intime.dt.strftime("%Y-%m-%d"),
                "icd_code": "5A1955Z",
                "icd_version": 10,
            }
        ),
    )
