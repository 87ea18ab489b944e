"""Build miniature MIMIC-IV folders (hosp/*.csv.gz, icu/*.csv.gz, real v2.2 headers) from Python dicts.

Tests describe patients as rows; :class:`MiniMimic` writes them with the
header PhysioNet ships (e.g. procedureevents ending in upper-case
``ORIGINALAMOUNT,ORIGINALRATE``) and empty strings for unset columns.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

HEADERS: dict[str, list[str]] = {
    "hosp/patients": ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
    "hosp/admissions": [
        "subject_id",
        "hadm_id",
        "admittime",
        "dischtime",
        "deathtime",
        "admission_type",
        "admit_provider_id",
        "admission_location",
        "discharge_location",
        "insurance",
        "language",
        "marital_status",
        "race",
        "edregtime",
        "edouttime",
        "hospital_expire_flag",
    ],
    "hosp/labevents": [
        "labevent_id",
        "subject_id",
        "hadm_id",
        "specimen_id",
        "itemid",
        "order_provider_id",
        "charttime",
        "storetime",
        "value",
        "valuenum",
        "valueuom",
        "ref_range_lower",
        "ref_range_upper",
        "flag",
        "priority",
        "comments",
    ],
    "hosp/diagnoses_icd": ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
    "icu/icustays": ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"],
    "icu/procedureevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "starttime",
        "endtime",
        "storetime",
        "itemid",
        "value",
        "valueuom",
        "location",
        "locationcategory",
        "orderid",
        "linkorderid",
        "ordercategoryname",
        "ordercategorydescription",
        "patientweight",
        "isopenbag",
        "continueinnextdept",
        "statusdescription",
        "ORIGINALAMOUNT",
        "ORIGINALRATE",
    ],
    "icu/inputevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "starttime",
        "endtime",
        "storetime",
        "itemid",
        "amount",
        "amountuom",
        "rate",
        "rateuom",
        "orderid",
        "linkorderid",
        "ordercategoryname",
        "secondaryordercategoryname",
        "ordercomponenttypedescription",
        "ordercategorydescription",
        "patientweight",
        "totalamount",
        "totalamountuom",
        "isopenbag",
        "continueinnextdept",
        "statusdescription",
        "originalamount",
        "originalrate",
    ],
    "icu/chartevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "charttime",
        "storetime",
        "itemid",
        "value",
        "valuenum",
        "valueuom",
        "warning",
    ],
}


def ts(value: str | pd.Timestamp) -> str:
    """A MIMIC-IV timestamp string."""
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class MiniMimic:
    """Rows per table; ``write`` makes the folder."""

    rows: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in HEADERS})
    _next_id: int = 1_000

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add(self, table: str, **row) -> dict:
        self.rows[table].append(row)
        return row

    # --- a standard qualifying patient ------------------------------------------------------
    def ckrt_patient(
        self,
        subject_id: int,
        index: str = "2150-03-10 10:00:00",
        *,
        gender: str = "M",
        anchor_age: int = 60,
        anchor_year: int = 2150,
        admit: str | None = None,
        mg_at: str | None = "same",
        crrt_hours: float = 72.0,
        vasopressor: bool = True,
        dod: str | None = None,
        deathtime: str | None = None,
        hadm_id: int | None = None,
        stay_id: int | None = None,
    ) -> dict:
        """A patient admitted 2 days before ``index`` with CRRT from ``index`` and norepinephrine at index."""
        index_t = pd.Timestamp(index)
        hadm_id = hadm_id or subject_id * 10
        stay_id = stay_id or subject_id * 100
        admit_t = pd.Timestamp(admit) if admit else index_t - pd.Timedelta(days=2)
        if not any(p["subject_id"] == subject_id for p in self.rows["hosp/patients"]):
            self.add(
                "hosp/patients",
                subject_id=subject_id,
                gender=gender,
                anchor_age=anchor_age,
                anchor_year=anchor_year,
                anchor_year_group="2017 - 2019",
                dod=dod or "",
            )
        self.add(
            "hosp/admissions",
            subject_id=subject_id,
            hadm_id=hadm_id,
            admittime=ts(admit_t),
            dischtime=ts(index_t + pd.Timedelta(days=20)),
            deathtime=deathtime or "",
            admission_type="EW EMER.",
            race="WHITE",
            hospital_expire_flag=1 if deathtime else 0,
        )
        self.add(
            "icu/icustays",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            first_careunit="MICU",
            last_careunit="MICU",
            intime=ts(admit_t + pd.Timedelta(hours=2)),
            outtime=ts(index_t + pd.Timedelta(days=10)),
            los=10.0,
        )
        self.procedure(subject_id, hadm_id, stay_id, 225802, index_t, index_t + pd.Timedelta(hours=crrt_hours))
        if vasopressor:
            self.input(
                subject_id,
                hadm_id,
                stay_id,
                221906,
                index_t - pd.Timedelta(hours=2),
                index_t + pd.Timedelta(hours=10),
                amount=5.0,
                amountuom="mg",
                rate=0.08,
                rateuom="mcg/kg/min",
            )
        if mg_at is not None:
            self.lab(subject_id, hadm_id, 50960, index_t - pd.Timedelta(hours=1) if mg_at == "same" else mg_at, 1.9)
        self.lab(subject_id, hadm_id, 50912, admit_t + pd.Timedelta(hours=3), 2.4)
        return {"subject_id": subject_id, "hadm_id": hadm_id, "stay_id": stay_id, "index": index_t}

    def procedure(self, subject_id, hadm_id, stay_id, itemid, start, end, **extra) -> dict:
        return self.add(
            "icu/procedureevents",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            caregiver_id=1,
            starttime=ts(start),
            endtime=ts(end),
            storetime=ts(end),
            itemid=itemid,
            value=(pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() / 60,
            valueuom="min",
            orderid=self.next_id(),
            statusdescription="FinishedRunning",
            ORIGINALAMOUNT="",
            ORIGINALRATE="",
            **extra,
        )

    def input(
        self,
        subject_id,
        hadm_id,
        stay_id,
        itemid,
        start,
        end,
        *,
        amount,
        amountuom,
        rate="",
        rateuom="",
        orderid=None,
        statusdescription="FinishedRunning",
        patientweight=80.0,
    ) -> dict:
        return self.add(
            "icu/inputevents",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            caregiver_id=1,
            starttime=ts(start),
            endtime=ts(end),
            storetime=ts(end),
            itemid=itemid,
            amount=amount,
            amountuom=amountuom,
            rate=rate,
            rateuom=rateuom,
            orderid=orderid or self.next_id(),
            linkorderid=orderid or "",
            ordercategoryname="",
            patientweight=patientweight,
            statusdescription=statusdescription,
            originalamount=amount,
            originalrate=rate,
        )

    def magnesium(self, subject_id, hadm_id, stay_id, start, grams=2.0, carrier=True, itemid=222011) -> int:
        """A magnesium sulfate bolus (grams) and, like MIMIC-IV, its 50 mL carrier row on the same order."""
        order = self.next_id()
        end = pd.Timestamp(start) + pd.Timedelta(hours=1)
        self.input(subject_id, hadm_id, stay_id, itemid, start, end, amount=grams, amountuom="grams", orderid=order)
        if carrier:
            self.input(subject_id, hadm_id, stay_id, 227523, start, end, amount=50.0, amountuom="mL", orderid=order)
        return order

    def lab(self, subject_id, hadm_id, itemid, charttime, valuenum, specimen_id=None) -> dict:
        return self.add(
            "hosp/labevents",
            labevent_id=self.next_id(),
            subject_id=subject_id,
            hadm_id=hadm_id or "",
            specimen_id=specimen_id or self.next_id(),
            itemid=itemid,
            charttime=ts(charttime),
            storetime=ts(pd.Timestamp(charttime) + pd.Timedelta(hours=1)),
            value=str(valuenum),
            valuenum=valuenum,
            valueuom="mg/dL",
            priority="ROUTINE",
        )

    def chart(self, subject_id, hadm_id, stay_id, itemid, charttime, value="CVVHDF") -> dict:
        return self.add(
            "icu/chartevents",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            caregiver_id=1,
            charttime=ts(charttime),
            storetime=ts(charttime),
            itemid=itemid,
            value=value,
            valuenum="",
            valueuom="",
            warning=0,
        )

    def diagnosis(self, subject_id, hadm_id, icd_code, icd_version, seq_num=1) -> dict:
        return self.add(
            "hosp/diagnoses_icd",
            subject_id=subject_id,
            hadm_id=hadm_id,
            seq_num=seq_num,
            icd_code=icd_code,
            icd_version=icd_version,
        )

    # --- writing ----------------------------------------------------------------------------
    def headers(self) -> dict[str, list[str]]:
        """The tables ``write`` writes and their header lines (subclasses add tables)."""
        return HEADERS

    def write(
        self,
        folder: Path,
        omit: tuple[str, ...] = (),
        drop_columns: dict[str, list[str]] | None = None,
        raw_lines: dict[str, list[str]] | None = None,
    ) -> Path:
        """Write every table as csv.gz; ``omit`` tables are not written; ``raw_lines`` appends lines verbatim."""
        drop_columns = drop_columns or {}
        raw_lines = raw_lines or {}
        for table, header in self.headers().items():
            if table in omit:
                continue
            header = [c for c in header if c not in drop_columns.get(table, [])]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in self.rows[table]:
                writer.writerow({c: ("" if row.get(c) is None else row.get(c, "")) for c in header})
            for line in raw_lines.get(table, []):
                buffer.write(line + "\n")
            path = folder / f"{table}.csv.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(path, "wt", encoding="utf-8") as handle:
                handle.write(buffer.getvalue())
        return folder
