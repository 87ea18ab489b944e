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
from retrocohort.survival import cox, fine_gray

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
    second = meta["studies"]["second_vasopressor"]
    assert second["hr_death"] == studies_model.HR_SV_DEATH < 1.0
    assert second["outcomes"] == {
        "death": {"estimand": "hr", "value": studies_model.HR_SV_DEATH, "conditional_on": ["age", "sex", "sofa"]}
    }
    assert "shr_off_vasopressors" not in second  # no planted value for liberation: none printed
    assert abs(math.log(second["hr_death_adjusted_check"] / second["hr_death"])) < 0.08
    vaso = meta["studies"]["vasopressin_shock"]
    # a non-null planted effect on both outcomes, per outcome name with its estimand
    assert vaso["outcomes"]["death"] == {
        "estimand": "hr",
        "value": studies_model.HR_VASO_DEATH,
        "conditional_on": ["age", "sex", "sepsis", "sofa"],
    }
    assert vaso["outcomes"]["krt_initiation"]["estimand"] == "shr"
    assert vaso["outcomes"]["krt_initiation"]["value"] == studies_model.SHR_VASO_KRT < 1.0
    # the flat keys the pipeline prints beside its estimate carry the same numbers
    assert vaso["hr_death"] == studies_model.HR_VASO_DEATH and vaso["shr_krt_initiation"] == studies_model.SHR_VASO_KRT
    # the simulated adjusted fits (~34,000 eligible) agree with the planted values up to simulation error
    assert abs(math.log(vaso["hr_death_adjusted_check"] / vaso["hr_death"])) < 0.08
    assert abs(math.log(vaso["shr_krt_initiation_adjusted_check"] / vaso["shr_krt_initiation"])) < 0.10
    assert vaso["planted_eligible"] == int(default_ehr.planted_vasopressin["eligible"].sum())


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


def test_second_vasopressor_cohort_is_exactly_the_planted_eligible_patients(built, default_ehr):
    cohort = built["second_vasopressor"]
    data = cohort.data
    planted = default_ehr.planted_second_vasopressor
    eligible = planted[planted["eligible"]]
    assert len(eligible) >= 100
    # the flagship's null norepinephrine patients have no lactate; the vasopressin_shock patients get both or neither
    assert set(data["subject_id"]) == set(eligible["subject_id"])
    m = data.merge(eligible, on="subject_id", suffixes=("", "_planted"))
    for column in ("exposed", "age", "sofa"):
        np.testing.assert_array_equal(m[column].astype(float), m[f"{column}_planted"].astype(float), err_msg=column)
    assert (m["sex"] == m["sex_planted"]).all()
    np.testing.assert_array_equal(m["death_status"], m["death"])
    assert np.abs(m["death_time"] - m["death_time_planted"]).max() < 1.0 / 1440
    steps = cohort.attrition.set_index("step")["excluded"]
    by_cat = planted["category"].value_counts()
    assert steps["hyperlactatemia"] >= by_cat["excluded_lactate_below_2"] > 0
    assert steps["both_arms"] >= by_cat["excluded_both_agents"] > 0
    assert steps["neither_arm"] >= by_cat["excluded_neither_agent"] > 0


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


# ---- vasopressin_shock: its own patients, planted HR of death and sHR of KRT initiation ------------------

VASO_ADJUST = ["exposed", "age", "sex", "sepsis", "sofa"]


def test_vasopressin_cohort_is_exactly_the_planted_eligible_patients(default_ehr, built):
    cohort = built["vasopressin_shock"]
    data = cohort.data
    planted = default_ehr.planted_vasopressin
    eligible = planted[planted["eligible"]]
    assert len(eligible) >= 100
    # no flagship, background or thiamine patient enters: none of them has a lactate near norepinephrine
    assert set(data["subject_id"]) == set(eligible["subject_id"])
    m = data.merge(eligible, on="subject_id", suffixes=("", "_planted"))
    for column in ("exposed", "age", "sepsis", "sofa", "ventilated"):
        np.testing.assert_array_equal(m[column].astype(float), m[f"{column}_planted"].astype(float), err_msg=column)
    assert (m["sex"] == m["sex_planted"]).all()
    assert (m["index_time"] == m["index_time_planted"]).all()
    np.testing.assert_array_equal(m["death_status"], m["death"])
    np.testing.assert_array_equal(m["krt_initiation_status"], m["krt_status"])
    # in-hospital deaths and KRT sessions are recorded to the minute
    assert np.abs(m["death_time"] - m["death_time_planted"]).max() < 1.0 / 1440
    assert np.abs(m["krt_initiation_time"] - m["krt_time"]).max() < 1.0 / 1440
    missing = m["creatinine_max_planted"].isna()
    assert 0 < missing.sum() < len(m)
    np.testing.assert_array_equal(m["creatinine_max_missing"], missing.astype(int))
    np.testing.assert_allclose(m.loc[~missing, "creatinine_max"], m.loc[~missing, "creatinine_max_planted"])
    # every outcome status occurs: KRT, competing death first, neither
    assert set(m["krt_initiation_status"]) == {0, 1, 2}


def test_vasopressin_attrition_removes_each_planted_category(default_ehr, built):
    planted = default_ehr.planted_vasopressin
    steps = built["vasopressin_shock"].attrition.set_index("step")["excluded"]
    by_cat = planted["category"].value_counts()
    # the lactate rule removes every flagship norepinephrine patient too, so it removes at least the planted ones
    assert steps["hyperlactatemia"] >= by_cat["excluded_lactate_below_2"] > 0
    assert steps["no_prior_krt"] == by_cat["excluded_krt_before_norepinephrine"] > 0
    assert steps["died_within_24h"] == by_cat["excluded_died_within_24h"] > 0


def test_each_studys_own_patients_enter_its_cohort_and_no_other(default_ehr, built):
    own = {
        "thiamine_sepsis": default_ehr.planted_thiamine,
        "vasopressin_shock": default_ehr.planted_vasopressin,
        "second_vasopressor": default_ehr.planted_second_vasopressor,
    }
    for study, planted in own.items():
        ours = set(planted["subject_id"])
        for name, cohort in built.items():
            inside = ours & set(cohort.data["subject_id"])
            if name == study:
                assert inside == set(planted.loc[planted["eligible"], "subject_id"]), name
            else:
                assert not inside, (study, name)
    ours = set(default_ehr.planted_vasopressin["subject_id"])
    # second_vasopressor sees them (first norepinephrine) and excludes them: both arms or neither in 48 h
    assert built["second_vasopressor"].counts["indexed"] >= len(ours)
    # the flagship's flow is the published one, exactly as without them
    assert built["magnesium_ckrt"].counts["eligible"] == 333 and built["magnesium_ckrt"].counts["exposed"] == 37


def _vaso_draws(n: int, seed: int) -> pd.DataFrame:
    """The generator's own draws (no EHR written): the eligible patients' covariates and outcomes."""
    d = studies_model._vaso_draw(np.random.default_rng(seed), n)
    keep = d["cat"] == studies_model.V_ELIGIBLE
    frame = {k: d[k][keep].astype(int) for k in ("exposed", "age", "male", "sepsis", "sofa")}
    return pd.DataFrame({**frame, **studies_model.vaso_observed(d["death_d"][keep], d["krt_d"][keep])})


def test_the_generator_draws_recover_the_planted_hr_and_shr():
    """On ~20,000 eligible draws the adjusted Cox HR and the adjusted Fine-Gray sHR sit within 4 standard
    errors of the planted values (a false alarm about 1 in 16,000), and both crude ratios are biased."""
    df = _vaso_draws(24_000, seed=5)
    assert len(df) > 19_000 and (df["krt_status"] == 1).sum() > 2_500
    adjust = ["exposed", "age", "male", "sepsis", "sofa"]
    hr = cox(df, "death_time", "death", adjust).summary.loc["exposed"]
    shr = fine_gray(df, "krt_time", "krt_status", adjust).summary.loc["exposed"]
    assert abs(hr["coef"] - math.log(studies_model.HR_VASO_DEATH)) < 4 * hr["se"], hr
    assert abs(shr["coef"] - math.log(studies_model.SHR_VASO_KRT)) < 4 * shr["se"], shr
    assert (
        hr["se"] < 0.03 and shr["se"] < 0.045
    )  # the tolerance is tight: 4 SE is about +-0.12 / +-0.18 on the log scale
    # confounding: sepsis and SOFA raise vasopressin, death and KRT, so the crude ratios are biased toward harm
    crude_hr = cox(df, "death_time", "death", ["exposed"]).summary.loc["exposed", "coef"]
    crude_shr = fine_gray(df, "krt_time", "krt_status", ["exposed"]).summary.loc["exposed", "coef"]
    assert crude_hr - hr["coef"] > 0.06 and crude_shr - shr["coef"] > 0.06


def test_krt_cumulative_incidence_is_the_fine_gray_cif_and_death_its_own_ph_model():
    """For one covariate pattern, the empirical P(KRT by t, before death) equals the planted F1(t | x) and
    the empirical survival equals S_D(t | x), within 4 binomial standard errors, at several times."""
    n = 100_000
    rng = np.random.default_rng(11)
    for eta_d, eta_k in ((0.0, 0.0), (1.2, 1.0), (-0.4, math.log(studies_model.SHR_VASO_KRT))):
        death, krt = studies_model.vaso_outcome_days(rng, np.full(n, eta_d), np.full(n, eta_k))
        for t in (2.0, 5.0, 10.0, 28.0):
            cif = np.mean((krt <= t) & (krt < death))
            f1 = float(studies_model.vaso_krt_cif(np.array([t]), np.array([eta_k]))[0])
            assert abs(cif - f1) < 4 * math.sqrt(f1 * (1 - f1) / n) + 1e-4, (eta_d, eta_k, t, cif, f1)
            surv = np.mean(death > t)
            s = float(studies_model.vaso_death_survival(np.array([t]), np.array([eta_d]))[0])
            assert abs(surv - s) < 4 * math.sqrt(s * (1 - s) / n) + 1e-4, (eta_d, t, surv, s)


def test_the_latent_krt_distribution_is_a_distribution_for_every_patient():
    # H(28 d | x) <= 1 at the worst covariates, else no latent time could have the Fine-Gray CIF
    worst = studies_model.vaso_worst_latent_krt_mass()
    assert 0.3 < worst < 1.0
    # every drawn patient's H is non-decreasing and at most the worst corner's (so the corner is the worst)
    d = studies_model._vaso_draw(np.random.default_rng(2), 3_000)
    x = (d["age"], d["male"], d["sepsis"], d["sofa"])
    h = studies_model.vaso_latent_krt_cdf(
        studies_model.vaso_lp(*x, studies_model.VASO_KRT_COEF), studies_model.vaso_lp(*x, studies_model.VASO_DEATH_COEF)
    )
    assert (np.diff(h, axis=1) >= 0).all() and (h[:, -1] <= worst + 1e-12).all()
    assert h[:, -1].max() > 0.3  # and the corner is not far from the patients actually drawn
    # no KRT before the 12-h delay (the SOFA window stays free of KRT), none after the horizon
    df = _vaso_draws(5_000, seed=3)
    had = df["krt_status"] == 1
    assert df.loc[had, "krt_time"].min() >= studies_model.VASO_KRT_DELAY_DAYS
    assert df.loc[had, "krt_time"].max() <= studies_model.VASO_HORIZON_DAYS


def test_vasopressin_effects_are_recovered_through_the_ehr(tmp_path):
    """Through the raw rows and the study file: the adjusted Cox CI covers 0.70 and the adjusted Fine-Gray
    CI covers 0.60 on ~2,500 eligible patients (seed fixed, not chosen)."""
    info = generate_synthetic(tmp_path, stays=300, seed=17, study_patients=3000)
    data = build_cohort(load_study_file(STUDIES / "vasopressin_shock.toml"), info.path).data
    assert len(data) > 2_400
    truth = info.studies["vasopressin_shock"]
    hr = cox(data, "death_time", "death_status", VASO_ADJUST).summary.loc["exposed"]
    shr = fine_gray(data, "krt_initiation_time", "krt_initiation_status", VASO_ADJUST).summary.loc["exposed"]
    assert hr["lower"] <= truth["hr_death"] <= hr["upper"], hr
    assert shr["lower"] <= truth["shr_krt_initiation"] <= shr["upper"], shr
    assert shr["upper"] < 1.0  # the direction: vasopressin lowers KRT initiation
    # second_vasopressor on the same EHR (3,000 patients of its own): the adjusted Cox CI covers 0.80
    data = build_cohort(load_study_file(STUDIES / "second_vasopressor.toml"), info.path).data
    assert len(data) > 2_400
    row = cox(data, "death_time", "death_status", ["exposed", "age", "sex", "sofa"]).summary.loc["exposed"]
    assert row["lower"] <= info.studies["second_vasopressor"]["hr_death"] <= row["upper"], row


def test_default_size_writes_the_documented_number_of_vasopressin_patients(default_ehr):
    assert len(default_ehr.planted_vasopressin) == studies_model.vasopressin_patients_for(DEFAULT_STAYS) == 900
    assert studies_model.vasopressin_patients_for(200) == studies_model.VASO_MIN_PATIENTS
    assert len(default_ehr.planted_second_vasopressor) == studies_model.second_vasopressor_patients_for(10_000) == 600


def test_second_vasopressor_draws_recover_the_planted_hr():
    """On ~20,000 eligible draws of the generator (no EHR) the adjusted Cox HR is within 4 SE of 0.80."""
    d = studies_model._sv_draw(np.random.default_rng(8), 24_000)
    keep = d["cat"] == studies_model.S_ELIGIBLE
    tau = studies_model.SV_HORIZON_DAYS
    df = pd.DataFrame({k: d[k][keep].astype(int) for k in ("exposed", "age", "male", "sofa")})
    df["time"] = np.minimum(d["death_d"][keep], tau)
    df["death"] = (d["death_d"][keep] <= tau).astype(int)
    hr = cox(df, "time", "death", ["exposed", "age", "male", "sofa"]).summary.loc["exposed"]
    assert hr["se"] < 0.035
    assert abs(hr["coef"] - math.log(studies_model.HR_SV_DEATH)) < 4 * hr["se"], hr
