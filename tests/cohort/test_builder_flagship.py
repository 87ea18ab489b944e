"""The flagship written in the study language gives today's cohort.

``studies/magnesium_ckrt.toml`` compiled by :mod:`retrocohort.cohort.builder`
must give exactly the cohort that :func:`tests.cohort.legacy.extract` (the
hand-written flagship definitions) gives: same eligible patients, attrition
counts, exposure, dose, covariates, outcome times and statuses. The data: a
synthetic EHR (2,000 ICU stays) with the rule-test miniature patients appended to
every table, so that every rule boundary of docs/cohort.md is exercised (deaths at
47/49 h, Mg at 23:59/00:01, carriers, rewritten rows, two CKRT episodes, dod-only
deaths, CRRT-mode charting).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.sources import generate_synthetic
from retrocohort.spec import load_study_file
from tests.cohort.legacy import extract

from .minimimic import HEADERS
from .test_rules import build as build_mini

FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


def _merge(first: Path, second: Path, out: Path) -> Path:
    """Each table of ``second`` appended to the same table of ``first`` (all values as text)."""
    con = duckdb.connect()
    for name in HEADERS:
        target = out / f"{name}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT * FROM read_csv('{first / name}.csv.gz', all_varchar = true, header = true) "
            f"UNION ALL BY NAME SELECT * FROM read_csv('{second / name}.csv.gz', all_varchar = true, header = true)) "
            f"TO '{target}' (FORMAT csv, HEADER true, COMPRESSION gzip)"
        )
    con.close()
    return out


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("flagship")
    generate_synthetic(root / "synthetic", stays=2000, seed=11)
    build_mini().write(root / "mini")
    folder = _merge(root / "synthetic", root / "mini", root / "both")
    return build_cohort(load_study_file(FLAGSHIP), folder), extract(folder)


# new column -> legacy column
SAME = {
    "stay_id": "stay_id",
    "hadm_id": "hadm_id",
    "index_time": "index_time",
    "exposed": "exposed",
    "mg_dose_meq": "mg_dose_meq",
    "age": "age",
    "sex": "sex",
    "sepsis": "sepsis",
    "creatinine_baseline": "creatinine_baseline",
    "egfr_baseline": "egfr_baseline",
    "sofa": "sofa",
    "serum_mg": "serum_mg",
    "vasopressor": "vasopressor",
    "ventilation": "ventilation",
    "death_time": "death_time",
    "death_status": "death",
    "krt_liberation_time": "krt_time",
    "krt_liberation_status": "krt_status",
}


def test_same_eligible_patients(cohorts):
    new, old = cohorts
    assert len(old.data) > 50  # a cohort worth comparing
    assert new.data["subject_id"].tolist() == old.data["subject_id"].tolist()


def test_same_attrition_counts(cohorts):
    new, old = cohorts
    legacy = pd.concat([old.screening, old.attrition.iloc[1:]])  # screening ends at "screened"
    legacy_counts = list(zip(legacy["remaining"], legacy["excluded"], strict=True))
    steps = new.attrition.set_index("step")
    ours = [
        tuple(steps.loc[s, ["remaining", "excluded"]])
        for s in [
            "index_event",
            "data_checks",
            "icu_stay",
            "adult",
            "support",
            "no_mg_index_day",
            "died_within_48h",
            "eligible",
        ]
    ]
    assert ours == legacy_counts
    # the line the flagship never needed drops nobody, and the chain of counts holds
    assert steps.loc["missing_covariates", "excluded"] == 0
    remaining = new.attrition["remaining"].to_numpy()
    assert (remaining[1:] == remaining[:-1] - new.attrition["excluded"].to_numpy()[1:]).all()


@pytest.mark.parametrize("column", list(SAME))
def test_same_values(cohorts, column):
    new, old = cohorts
    ours, theirs = new.data[column], old.data[SAME[column]]
    if ours.dtype.kind in "fi" and theirs.dtype.kind in "fi":
        # the dose is summed as g x 8.12 per row here and as (sum of g) x 8.12 there: equal to rounding
        np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=1e-12, atol=1e-12)
    else:
        assert ours.tolist() == theirs.tolist()


def test_outcomes_are_not_trivial(cohorts):
    new, _ = cohorts
    # every status occurs, so equality above is not equality of constants
    assert set(new.data["krt_liberation_status"]) == {0, 1, 2}
    assert set(new.data["death_status"]) == {0, 1}
    assert 0 < new.data["exposed"].sum() < len(new.data)


def test_the_value_source_note_quotes_no_small_count(cohorts):
    """'covariate X: where the value came from' never gives a group of 1-4 patients (nor its complement)."""
    new, _ = cohorts
    source_notes = [n for n in new.notes if n.startswith("covariate creatinine_baseline")]
    assert source_notes, new.notes
    for note in source_notes:
        counts = [int(m) for m in re.findall(r"(?<!than )\b(\d+) patients", note)]
        if "withheld" in note:
            assert counts == [] and "fewer than 5 patients" in note
        else:
            assert counts and all(c >= 5 for c in counts), note
            assert sum(counts) == len(new.data)
