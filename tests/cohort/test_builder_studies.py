"""The non-flagship studies of studies/ build on a synthetic EHR, checked against the raw files.

Each check recomputes a rule straight from the csv.gz files with DuckDB SQL
(independent of the builder and of the concepts package).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.sources import generate_synthetic
from retrocohort.spec import load_study_file

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    generate_synthetic(root, stays=2000, seed=11)
    return root


def _chain_holds(attrition) -> bool:
    remaining = attrition["remaining"].to_numpy()
    return bool((remaining[1:] == remaining[:-1] - attrition["excluded"].to_numpy()[1:]).all())


def _first_start(folder: Path, itemid: int) -> dict[int, np.datetime64]:
    rows = duckdb.sql(
        f"SELECT subject_id, min(starttime) FROM read_csv('{folder}/icu/inputevents.csv.gz') "
        f"WHERE itemid = {itemid} GROUP BY 1"
    ).fetchall()
    return {int(s): np.datetime64(t) for s, t in rows}


def _started_within(folder: Path, itemid: int, cohort, hours: float, subjects) -> set[int]:
    """Subjects with ``itemid`` (not rewritten) started in (index, index + hours]."""
    con = duckdb.connect()
    keys = cohort.data[["subject_id", "index_time"]]
    con.register("keys", keys)
    rows = con.execute(
        f"SELECT DISTINCT k.subject_id FROM read_csv('{folder}/icu/inputevents.csv.gz') i JOIN keys k "
        f"ON i.subject_id = k.subject_id WHERE i.itemid = {itemid} "
        "AND coalesce(i.statusdescription, '') <> 'Rewritten' "
        f"AND i.starttime > k.index_time AND i.starttime <= k.index_time + INTERVAL {int(hours)} HOUR"
    ).fetchall()
    return {int(r[0]) for r in rows} & set(subjects)


def test_vasopressin_shock(folder):
    cohort = build_cohort(load_study_file(STUDIES / "vasopressin_shock.toml"), folder)
    d = cohort.data
    assert len(d) >= 100 and 0 < d["exposed"].sum() < len(d)
    assert _chain_holds(cohort.attrition)
    # index = the patient's first norepinephrine start
    first = _first_start(folder, 221906)
    assert all(np.datetime64(t) == first[s] for s, t in zip(d["subject_id"], d["index_time"], strict=True))
    exposed = set(d.loc[d["exposed"] == 1, "subject_id"])
    assert exposed == _started_within(folder, 222315, cohort, 24, d["subject_id"])
    # the first rule excluded someone, every outcome status occurs, horizons are the study's
    assert cohort.attrition.set_index("step").loc["no_prior_krt", "excluded"] > 0
    assert set(d["krt_initiation_status"]) == {0, 1, 2}
    assert d["death_time"].max() == 28.0 and d["krt_initiation_time"].max() <= 28.0
    assert set(d["creatinine_max_missing"]) == {0, 1}


def test_second_vasopressor_active_comparator(folder):
    cohort = build_cohort(load_study_file(STUDIES / "second_vasopressor.toml"), folder)
    d = cohort.data
    a = cohort.attrition.set_index("step")
    assert a.loc["both_arms", "excluded"] >= 0 and a.loc["neither_arm", "excluded"] > 0
    assert _chain_holds(cohort.attrition)
    vaso = _started_within(folder, 222315, cohort, 48, d["subject_id"])
    phenyl = _started_within(folder, 221749, cohort, 48, d["subject_id"])
    assert not (vaso & phenyl)  # patients with both arms are excluded
    assert vaso | phenyl == set(d["subject_id"])  # and patients with neither
    assert set(d.loc[d["exposed"] == 1, "subject_id"]) == vaso
    assert (d["sofa"] >= 2).all()
    # shock: a lactate of at least 2 mmol/L near norepinephrine; the covariate reads the one before it
    assert a.loc["hyperlactatemia", "excluded"] > 0
    assert (d["lactate_max"] >= 2).all()


def test_concepts_without_rows_are_said_never_silent(folder):
    text = (STUDIES / "vasopressin_shock.toml").read_text()
    from retrocohort.spec import parse_study_text

    no_entry = build_cohort(parse_study_text(text.replace("itemids = [221906]", "itemids = [1]")), folder)
    assert len(no_entry.data) == 0 and (no_entry.attrition["remaining"] == 0).all()
    assert any("no patient has an index event" in n and "'norepinephrine'" in n for n in no_entry.notes)

    no_exposure = build_cohort(parse_study_text(text.replace("itemids = [222315]", "itemids = [1]")), folder)
    assert len(no_exposure.data) > 0 and no_exposure.data["exposed"].sum() == 0
    assert any("the vasopressin arm is empty" in n for n in no_exposure.notes)
    assert any("'vasopressin'" in n and "found no rows" in n for n in no_exposure.notes)


def test_a_covariate_named_like_a_builtin_detail(folder):
    """``sofa`` returns its components as details; a covariate ``sofa_renal`` beside it must not collide."""
    from retrocohort.spec import parse_study_text

    text = (
        (STUDIES / "vasopressin_shock.toml")
        .read_text()
        .replace("[covariates.age]", '[covariates.sofa_renal]\nconcept = "sofa_renal"\n\n[covariates.age]')
    )
    d = build_cohort(parse_study_text(text), folder).data
    assert (d["sofa_renal"] <= d["sofa"]).all() and d["sofa_renal"].between(0, 4).all()
    assert (d["sofa"] > d["sofa_renal"]).any()
