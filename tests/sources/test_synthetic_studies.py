"""The synthetic EHR serves every study in studies/, with a planted effect per study.

The studies are built with the study-language cohort builder (not with the generator's own
bookkeeping), so these tests check the generator against the rules a study states. The
large-sample coverage of each study's planted truth is a benchmark: benchmarks/bench_study_truth.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.errors import InputError
from retrocohort.sources import _synthetic_studies as studies_model
from retrocohort.sources.synthetic import DEFAULT_STAYS, generate_synthetic
from retrocohort.spec import load_study_file
from retrocohort.survival import cox

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.toml"))


@pytest.fixture(scope="module")
def default_ehr(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def built(default_ehr):
    return {f.stem: build_cohort(load_study_file(f), default_ehr.path) for f in STUDY_FILES}


def test_four_studies_ship_in_studies_next():
    names = {f.stem for f in STUDY_FILES}
    assert {"magnesium_ckrt", "vasopressin_shock", "second_vasopressor", "thiamine_sepsis"} <= names


@pytest.mark.parametrize("study", [f.stem for f in STUDY_FILES])
def test_each_study_has_100_eligible_and_both_arms_on_the_default_ehr(built, study):
    counts = built[study].counts
    assert counts["eligible"] >= 100, counts
    # both arms populated well beyond a small cell (5)
    assert counts["exposed"] >= 20 and counts["comparator"] >= 20, counts
    assert built[study].attrition["remaining"].iloc[-1] == counts["eligible"]


def test_synthetic_json_records_a_planted_truth_for_every_non_flagship_study(default_ehr):
    meta = json.loads((default_ehr.path / "SYNTHETIC.json").read_text())
    names = {load_study_file(f).study.name for f in STUDY_FILES} - {"magnesium_ckrt"}
    assert names <= set(meta["studies"]), sorted(meta["studies"])
    assert meta["studies"] == default_ehr.studies
    thiamine = meta["studies"]["thiamine_sepsis"]
    assert thiamine["hr_death"] == studies_model.HR_THIAMINE
    # the simulated adjusted Cox HR agrees with the planted conditional HR (simulation error only)
    assert abs(math.log(thiamine["hr_death_adjusted_check"] / thiamine["hr_death"])) < 0.03
    # the flagship's truth stays where it was
    assert meta["truth"]["hr_death"] == pytest.approx(0.40)
    for name in ("vasopressin_shock", "second_vasopressor"):
        assert meta["studies"][name]["hr_death"] == 1.0


def test_thiamine_cohort_is_exactly_the_planted_eligible_patients(default_ehr, built):
    data = built["thiamine_sepsis"].data
    planted = default_ehr.planted_thiamine
    eligible = planted[planted["eligible"]]
    assert set(data["subject_id"]) == set(eligible["subject_id"])
    m = data.merge(eligible, on="subject_id", suffixes=("", "_planted"))
    for column in ("exposed", "age", "sofa", "lactate_max", "alcohol"):
        np.testing.assert_array_equal(m[column].astype(float), m[f"{column}_planted"].astype(float), err_msg=column)
    assert (m["sex"] == m["sex_planted"]).all()
    np.testing.assert_array_equal(m["death_status"], m["death"])
    # deaths in hospital are recorded to the minute
    assert np.abs(m["death_time"] - m["death_time_planted"]).max() < 1.0 / 1440
    # the eMAR dose (emar_detail child rows) is summed in the window: 200 mg per IV administration
    dose = data.loc[data["exposed"] == 1, "thiamine_mg"]
    assert (dose > 0).all() and (dose % 200 == 0).all()
    assert (data.loc[data["exposed"] == 0, "thiamine_mg"] == 0).all()


def test_thiamine_attrition_removes_each_planted_category(default_ehr, built):
    planted = default_ehr.planted_thiamine
    steps = built["thiamine_sepsis"].attrition.set_index("step")["excluded"]
    by_cat = planted["category"].value_counts()
    # only the study's patients have lactate, so after that rule the counts are the planted ones
    assert steps["no_prior_thiamine"] == by_cat["excluded_thiamine_prescribed_before_icu"] > 0
    assert steps["died_within_24h"] == by_cat["excluded_died_within_24h"] > 0
    assert steps["hyperlactatemia"] >= by_cat["excluded_lactate_below_2"] > 0


def test_thiamine_distractors_are_written_and_never_count_as_exposure(default_ehr, built):
    emar = pacsv.read_csv(default_ehr.path / "hosp" / "emar.csv.gz").to_pandas()
    detail = pacsv.read_csv(default_ehr.path / "hosp" / "emar_detail.csv.gz").to_pandas()
    route = detail.dropna(subset=["route"]).groupby("emar_id")["route"].first()
    emar["route"] = emar["emar_id"].map(route)
    data = built["thiamine_sepsis"].data.set_index("subject_id")
    index = data["index_time"]
    emar = emar[emar["subject_id"].isin(data.index)]
    hours = (pd.to_datetime(emar["charttime"]) - emar["subject_id"].map(index)).dt.total_seconds() / 3600
    in_window = (hours > 0) & (hours <= 24)
    kinds = {
        "not given": in_window & (emar["event_txt"] == "Not Given"),
        "oral": in_window & (emar["route"] == "PO/NG"),
        "late IV": (hours > 24) & (emar["route"] == "IV") & (emar["event_txt"] == "Administered"),
    }
    iv_in_window = set(
        emar.loc[in_window & (emar["route"] == "IV") & (emar["event_txt"] == "Administered"), "subject_id"]
    )
    for kind, rows in kinds.items():
        subjects = set(emar.loc[rows, "subject_id"]) - iv_in_window
        assert len(subjects) >= 10, kind
        assert (data.loc[sorted(subjects), "exposed"] == 0).all(), kind
    assert (data.loc[sorted(iv_in_window), "exposed"] == 1).all()


def test_transfers_hold_one_icu_row_per_icu_stay(default_ehr):
    stays = pacsv.read_csv(default_ehr.path / "icu" / "icustays.csv.gz").to_pandas()
    transfers = pacsv.read_csv(default_ehr.path / "hosp" / "transfers.csv.gz").to_pandas()
    assert len(transfers) == len(stays) == default_ehr.stays
    assert transfers["transfer_id"].is_unique
    m = stays.merge(transfers, on=["subject_id", "hadm_id", "intime", "outtime"], how="left")
    assert (m["careunit"] == m["first_careunit"]).all()


def test_an_admission_lists_each_diagnosis_code_once(default_ehr):
    """As in MIMIC-IV: a code once per admission, so the exact-duplicate data check finds nothing to drop."""
    codes = pacsv.read_csv(default_ehr.path / "hosp" / "diagnoses_icd.csv.gz").to_pandas()
    assert len(codes) > 1000
    repeated = codes.duplicated(["subject_id", "hadm_id", "icd_code", "icd_version"])
    assert not repeated.any(), codes[repeated].head()
    assert codes.groupby("hadm_id")["icd_code"].size().max() >= 4  # admissions with several codes exist


def test_flagship_rows_do_not_depend_on_the_study_patients(tmp_path):
    without = generate_synthetic(tmp_path / "without", stays=400, seed=5, study_patients=0)
    with_ = generate_synthetic(tmp_path / "with", stays=400, seed=5)
    assert len(with_.planted_thiamine) == studies_model.thiamine_patients_for(400) > 0
    assert json.dumps(without.truth, sort_keys=True) == json.dumps(with_.truth, sort_keys=True)
    pd.testing.assert_frame_equal(without.planted, with_.planted)
    for path in sorted((tmp_path / "without").rglob("*.csv.gz")):
        a = pacsv.read_csv(path)
        if a.num_rows == 0:  # the study tables, empty without study patients
            assert path.name in ("prescriptions.csv.gz", "emar.csv.gz", "emar_detail.csv.gz"), path.name
            continue
        b = pacsv.read_csv(tmp_path / "with" / path.relative_to(tmp_path / "without"))
        key = "subject_id" if "subject_id" in a.column_names else a.column_names[0]
        b = b.filter(pc.is_in(b[key], a[key].unique()))
        assert b.equals(a), path.name
    assert pacsv.read_csv(tmp_path / "with" / "hosp" / "emar.csv.gz").num_rows > 0


def test_thiamine_effect_is_recovered_by_the_adjusted_cox_model(tmp_path):
    info = generate_synthetic(tmp_path, stays=300, seed=17, study_patients=3000)
    data = build_cohort(load_study_file(STUDIES / "thiamine_sepsis.toml"), info.path).data
    assert len(data) > 2000
    adjusted = cox(data, "death_time", "death_status", ["exposed", "age", "sex", "sofa", "lactate_max", "alcohol"])
    row = adjusted.summary.loc["exposed"]
    truth = info.studies["thiamine_sepsis"]["hr_death"]
    assert row["lower"] <= truth <= row["upper"]
    assert row["upper"] < 1.0  # the direction: thiamine protects
    # confounding is real: the crude HR is biased toward harm (alcohol raises both thiamine and death)
    crude = cox(data, "death_time", "death_status", ["exposed"]).summary.loc["exposed", "hr"]
    assert math.log(crude) - math.log(row["hr"]) > 0.15


@pytest.mark.parametrize(
    "study, covariates",
    [
        ("vasopressin_shock", ["exposed", "age", "sex", "sepsis", "sofa"]),
        ("second_vasopressor", ["exposed", "age", "sex", "sofa"]),
    ],
)
def test_vasopressin_studies_recover_their_planted_null(built, default_ehr, study, covariates):
    data = built[study].data
    row = cox(data, "death_time", "death_status", covariates).summary.loc["exposed"]
    assert row["lower"] <= default_ehr.studies[study]["hr_death"] <= row["upper"]


def test_parquet_and_csv_give_the_same_study_cohorts(tmp_path):
    csv = generate_synthetic(tmp_path / "csv", stays=300, seed=3, study_patients=400)
    parquet = generate_synthetic(tmp_path / "pq", stays=300, seed=3, study_patients=400, fmt="parquet")
    for name in ("thiamine_sepsis", "vasopressin_shock"):
        study = load_study_file(STUDIES / f"{name}.toml")
        a = build_cohort(study, csv.path).data.reset_index(drop=True)
        b = build_cohort(study, parquet.path).data.reset_index(drop=True)
        assert len(a) > 50, name
        pd.testing.assert_frame_equal(a, b)


def test_study_patients_must_be_a_non_negative_integer(tmp_path):
    with pytest.raises(InputError, match="study_patients=-3"):
        generate_synthetic(tmp_path / "a", stays=300, study_patients=-3)
    with pytest.raises(InputError, match=r"study_patients=2\.5"):
        generate_synthetic(tmp_path / "b", stays=300, study_patients=2.5)
    with pytest.raises(InputError, match="study_patients=True"):
        generate_synthetic(tmp_path / "c", stays=300, study_patients=True)
    assert not (tmp_path / "a").exists()  # nothing written before the arguments are checked
    # a bad value never deletes an earlier synthetic EHR in the folder
    generate_synthetic(tmp_path / "d", stays=300, study_patients=0)
    with pytest.raises(InputError, match="study_patients=-1"):
        generate_synthetic(tmp_path / "d", stays=300, study_patients=-1)
    assert (tmp_path / "d" / "icu" / "icustays.csv.gz").is_file()


def test_default_size_writes_the_documented_number_of_study_patients(default_ehr):
    assert len(default_ehr.planted_thiamine) == studies_model.thiamine_patients_for(DEFAULT_STAYS) == 900
