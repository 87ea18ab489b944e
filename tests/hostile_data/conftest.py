"""One small synthetic EHR per session; each hostile case copies it and damages one file."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import retrocohort as rc
from retrocohort.sources import MimicIV
from retrocohort.sources.synthetic import generate_synthetic

from .damage import read_rows

STUDIES = Path(__file__).resolve().parents[2] / "studies"
FLAGSHIP = STUDIES / "magnesium_ckrt.toml"
OTHER_STUDY = STUDIES / "vasopressin_shock.toml"  # a non-flagship study (vasopressors, no CKRT)


@dataclass(frozen=True)
class Baseline:
    """What the undamaged EHR gives: the flagship cohort's counts and attrition, and who can be damaged safely."""

    counts: dict[str, int]
    attrition: pd.DataFrame
    data: pd.DataFrame  # the analysis frame, one row per eligible patient
    cohort_subjects: tuple[str, ...]  # subject_id of eligible patients (text, as in the files)
    # Patients with no CKRT row (no procedureevents or chartevents row at all): they can never be indexed by
    # the flagship, so damage confined to their rows must leave its numbers unchanged.
    bystanders: frozenset[str]
    # Bystanders with rows in every table the value cases damage, sorted: case k damages spare[k] only.
    spare: tuple[str, ...]


@pytest.fixture(scope="session")
def base_ehr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "ehr"
    generate_synthetic(root, stays=1000, seed=7)
    return root


@pytest.fixture(scope="session")
def flagship() -> rc.Study:
    return rc.load_study(FLAGSHIP)


@pytest.fixture(scope="session")
def baseline(base_ehr: Path, flagship: rc.Study) -> Baseline:
    cohort = rc.build_cohort(flagship, base_ehr)
    _, proc = read_rows(base_ehr, "icu/procedureevents")
    _, chart = read_rows(base_ehr, "icu/chartevents")
    _, patients = read_rows(base_ehr, "hosp/patients")
    touched = {r[0] for r in proc} | {r[0] for r in chart}
    bystanders = frozenset(r[0] for r in patients) - touched
    spare = set(bystanders)
    for table in ("hosp/admissions", "icu/icustays", "hosp/labevents", "icu/inputevents", "hosp/diagnoses_icd"):
        header, rows = read_rows(base_ehr, table)
        at = header.index("subject_id")
        spare &= {r[at] for r in rows}
    return Baseline(
        counts=dict(cohort.counts),
        attrition=cohort.attrition,
        data=cohort.data,
        cohort_subjects=tuple(str(s) for s in sorted(cohort.data["subject_id"])),
        bystanders=bystanders,
        spare=tuple(sorted(spare)),
    )


@pytest.fixture
def ehr(base_ehr: Path, tmp_path: Path) -> Path:
    """A fresh copy of the base EHR for one case to damage."""
    root = tmp_path / "ehr"
    shutil.copytree(base_ehr, root)
    return root


def checked(root: Path, table: str) -> pd.DataFrame:
    """The rows of ``table`` as every study reads them (typed, after the data checks), in a fixed order."""
    conn = MimicIV(root).connect()
    try:
        with conn.errors():
            frame = conn.table(table).to_pandas()
    finally:
        conn.close()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def check_counts(root: Path) -> dict[str, int]:
    """The whole-data pass of the data checks (every row of every table): check -> count."""
    conn = MimicIV(root).connect()
    try:
        with conn.errors():
            table = conn.data_checks().table
    finally:
        conn.close()
    # Only the rules: a "<table>_rows_read" line (how many rows the others are counted among, added by the
    # single-scan work) is not a rule, and rows added by a damage change it.
    return {c: int(n) for c, n in zip(table["check"], table["count"], strict=True) if not c.endswith("_rows_read")}
