"""The pipeline's wiring on simulated analysis frames (the cohort contract), without the cohort builder.

Each test checks that a stage got the options the study asks for (by
recomputing it directly with the same public function), or that a too-small
cohort gives skipped models with reasons instead of a crash.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrocohort.matching import match_nearest, propensity_score
from retrocohort.spec import Study, covariate_type, load_study_file
from retrocohort.study.evalue import e_value_hr
from retrocohort.study.pipeline import analyse_cohort, data_fingerprint, study_stages
from retrocohort.survival import cox, fine_gray

FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


def default_study() -> Study:
    """The flagship study file (studies/magnesium_ckrt.toml)."""
    return load_study_file(FLAGSHIP)


def variant(matching: dict[str, Any] | None = None, **analysis: Any) -> Study:
    """The flagship with some [analysis] (and [analysis.matching]) settings changed."""
    study = default_study()
    spec = study.analysis
    if matching:
        spec = spec.model_copy(update={"matching": spec.matching.model_copy(update=matching)})
    return study.model_copy(update={"analysis": spec.model_copy(update=analysis)})


def make_cohort(
    n: int = 600,
    seed: int = 1,
    hr_death: float = 0.5,
    shr_krt: float = 1.8,
    exposed_share: float | None = None,
    death_rate: float = 0.006,
) -> SimpleNamespace:
    """An analysis frame with the cohort contract's columns and a planted exposure effect.

    Death: exponential hazard ``death_rate * HR^exposed * exp(0.03 (age - 65) + 0.08 (sofa - 10))``,
    whole-day times, censored at day 90. KRT liberation: a competing exponential
    time whose rate is multiplied by ``shr_krt`` for the exposed (a cause-specific
    effect; the Fine-Gray sHR is near it, not equal). Identifiers and dates are
    MIMIC-like so the no-identifier scans of the output tests have something to find.
    """
    rng = np.random.default_rng(seed)
    age = rng.normal(64, 13, n).clip(18, 95).round(0)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    sepsis = rng.binomial(1, 0.55, n)
    creat = np.exp(rng.normal(0.1, 0.4, n)).round(2)
    egfr = (142 * np.minimum(creat / 0.9, 1) ** -0.302 * np.maximum(creat / 0.9, 1) ** -1.2 * 0.9938**age).round(1)
    sofa = rng.integers(4, 19, n)
    serum_mg = rng.normal(2.1, 0.35, n).round(1)
    vaso = rng.binomial(1, 0.8, n)
    vent = rng.binomial(1, 0.6, n)
    if exposed_share is None:
        lin = -2.0 + 1.2 * (serum_mg < 1.9) + 0.05 * (sofa - 10) + 0.2 * sepsis
        exposed = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    else:
        exposed = (rng.random(n) < exposed_share).astype(int)
    dose = np.where(exposed == 1, rng.gamma(5.3, 4.6, n).round(1), 0.0)
    rate = death_rate * hr_death**exposed * np.exp(0.03 * (age - 65) + 0.08 * (sofa - 10))
    with np.errstate(divide="ignore"):  # death_rate=0 means nobody dies: infinite death times
        t_death = np.ceil(rng.exponential(1 / rate))
    death = (t_death <= 90).astype(int)
    death_time = np.minimum(t_death, 90.0)
    t_lib = np.ceil(rng.exponential(1 / (0.012 * shr_krt**exposed)))
    krt_status = np.where((t_lib < t_death) & (t_lib <= 90), 1, np.where(death == 1, 2, 0))
    krt_time = np.where(krt_status == 1, t_lib, death_time).astype(float)
    index_time = pd.Timestamp("2150-03-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D")
    data = pd.DataFrame(
        {
            "subject_id": 10_000_000 + rng.permutation(n) * 7 + 13,
            "stay_id": 30_000_000 + np.arange(n) * 11 + 5,
            "hadm_id": 20_000_000 + np.arange(n) * 3 + 1,
            "index_time": index_time,
            "exposed": exposed.astype(int),
            "mg_dose_meq": dose,
            "age": age,
            "sex": sex,
            "sepsis": sepsis,
            "creatinine_baseline": creat,
            "egfr_baseline": egfr,
            "sofa": sofa,
            "serum_mg": serum_mg,
            "vasopressor": vaso,
            "ventilation": vent,
            "death_time": death_time,
            "death_status": death,
            "krt_liberation_time": krt_time,
            "krt_liberation_status": krt_status.astype(int),
        }
    )
    screened = n + n // 2
    attrition = pd.DataFrame(
        {
            "step": ["CKRT with vasopressor or ventilation", "serum Mg on the index day", "alive at 48 h"],
            "remaining": [screened, n + n // 4, n],
            "excluded": [0, screened - (n + n // 4), n // 4],
            "reason": ["", "no serum Mg on the CKRT start day", "died within 48 h of CKRT start"],
        }
    )
    return SimpleNamespace(attrition=attrition, data=data, notes=("chartevents present",))


STUDY = default_study()


@pytest.fixture(scope="module")
def result():
    return analyse_cohort(make_cohort(), STUDY)


def test_counts_and_dose(result):
    cohort = make_cohort().data
    exposed = cohort[cohort.exposed == 1]
    assert result.counts["exposed"] == len(exposed)
    assert result.counts["comparator"] == len(cohort) - len(exposed)
    assert result.counts["indexed"] == 900
    assert result.dose["mean"] == pytest.approx(exposed.mg_dose_meq.mean())
    assert result.dose["sd"] == pytest.approx(exposed.mg_dose_meq.std(ddof=1))
    # 2:1 without replacement: at most two controls per matched exposed patient.
    assert 0 < result.counts["matched_exposed"] <= result.counts["exposed"]
    assert result.counts["matched_comparator"] <= 2 * result.counts["matched_exposed"]
    assert result.matched["subclass"].value_counts().max() <= 3


def test_matching_is_the_studys_design(result):
    study = default_study()
    data = result.cohort
    ps = propensity_score(data, "exposed", list(study.analysis.propensity))
    np.testing.assert_allclose(data["ps"], ps.score, rtol=1e-12)
    direct = match_nearest(
        data, "exposed", distance=ps.linear.to_numpy(), ratio=2, caliper=0.2, order="largest", replace=False
    )
    assert set(direct.matched.index) == set(result.matching.matched.index)
    np.testing.assert_array_equal(direct.subclass.to_numpy(), result.matching.subclass.to_numpy())


def test_cox_matched_is_clustered_on_matched_set(result):
    study = default_study()
    est = result.estimate("death", "cox_adjusted", "matched")
    direct = cox(
        result.matched,
        "death_time",
        "death_status",
        ["exposed", *study.analysis.adjust],
        weights="weight",
        cluster="subclass",
    )
    assert est.estimate == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)
    assert est.lower == pytest.approx(direct.summary.loc["exposed", "lower"], rel=1e-12)
    assert "cluster" in est.variance
    naive = cox(result.matched, "death_time", "death_status", ["exposed", *study.analysis.adjust])
    # The clustered CI differs from the naive one (the cluster option was really passed).
    assert est.lower != pytest.approx(naive.summary.loc["exposed", "lower"], rel=1e-9)


def test_fine_gray_matched_and_full(result):
    est = result.estimate("krt_liberation", "fine_gray_unadjusted", "matched")
    # As for Cox, the matching weights are used when some differ from 1 (an exposed patient
    # with fewer than `ratio` controls); fine_gray takes case weights since it can.
    weights = "weight" if not np.allclose(result.matched["weight"], 1.0) else None
    direct = fine_gray(
        result.matched, "krt_liberation_time", "krt_liberation_status", ["exposed"], cluster="subclass", weights=weights
    )
    assert est.estimate == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)
    assert est.n_events == int((result.matched["krt_liberation_status"] == 1).sum())
    full = result.estimate("krt_liberation", "fine_gray_adjusted", "full")
    assert full is not None and full.n == result.counts["eligible"]


def test_iptw_att_weights(result):
    data = result.cohort
    expected = np.where(data["exposed"] == 1, 1.0, data["ps"] / (1 - data["ps"]))
    np.testing.assert_allclose(data["iptw_weight"], expected, rtol=1e-12)
    est = result.estimate("death", "cox_unadjusted", "iptw")
    direct = cox(data, "death_time", "death_status", ["exposed"], weights="iptw_weight", robust=True)
    assert est.estimate == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)
    assert est.upper == pytest.approx(direct.summary.loc["exposed", "upper"], rel=1e-12)


def test_fine_gray_iptw_is_the_weighted_fit_with_robust_variance(result):
    # The IPTW Fine-Gray line is fine_gray(weights = ATT weights), each patient its own cluster.
    data = result.cohort
    est = result.estimate("krt_liberation", "fine_gray_unadjusted", "iptw")
    assert est is not None and "robust" in est.variance
    assert not [s for s in result.skipped if s.population == "iptw"]
    direct = fine_gray(data, "krt_liberation_time", "krt_liberation_status", ["exposed"], weights="iptw_weight")
    assert direct.variance == "robust"
    row = direct.summary.loc["exposed"]
    assert est.estimate == pytest.approx(row["hr"], rel=1e-12)
    assert (est.lower, est.upper, est.p) == pytest.approx((row["lower"], row["upper"], row["p"]), rel=1e-12)
    assert est.n == len(data) and est.n_events == int((data["krt_liberation_status"] == 1).sum())
    # the weights were really used: the unweighted fit to the same patients differs
    unweighted = fine_gray(data, "krt_liberation_time", "krt_liberation_status", ["exposed"])
    assert est.estimate != pytest.approx(unweighted.summary.loc["exposed", "hr"], rel=1e-6)


def test_e_value_of_primary_hr(result):
    primary = result.estimate("death", "cox_adjusted", "matched")
    share = float(np.average(result.matched["death_status"], weights=result.matched["weight"]))
    expected = e_value_hr(primary.estimate, primary.lower, primary.upper, share)
    assert result.e_value["point"] == pytest.approx(expected.point)
    assert result.e_value["ci"] == pytest.approx(expected.ci)
    assert ("common" in result.e_value_method) == (share >= 0.15)


def test_planted_effect_recovered(result):
    # 600 patients, planted HR 0.5: the 95% CI of the matched adjusted HR covers it
    # and excludes 1 for this fixed seed (a wiring error, e.g. a flipped arm, would not).
    est = result.estimate("death", "cox_adjusted", "matched")
    assert est.lower < 0.5 < est.upper


def test_km_logrank_cif_gray_present(result):
    assert set(result.outcomes["death"].km.table["group"].unique()) == {0, 1}
    assert 0 <= result.outcomes["death"].logrank.p_value <= 1
    assert result.outcomes["krt_liberation"].cif.table["cif"].between(0, 1).all()
    assert 0 <= result.outcomes["krt_liberation"].gray.p_value <= 1
    assert result.outcomes["death"].ph_test is not None
    assert result.outcomes["death"].ph_test_model == result.provenance["ph_test_model"] == "cox_adjusted"
    # no PH test on the competing outcome; curves of the right kind per outcome
    assert result.outcomes["krt_liberation"].ph_test is None
    assert result.outcomes["death"].cif is None and result.outcomes["krt_liberation"].km is None


def test_balance_before_and_after(result):
    before, after = result.balance_before, result.balance_after
    assert list(before.index) == list(after.index)
    # Matching on the propensity score improves the worst imbalance of its covariates.
    assert after["smd"].abs().max() < before["smd"].abs().max()
    assert result.table_one_before is not None and result.table_one_after is not None


def test_progress_reports_every_stage_in_order():
    events = []
    study = default_study()
    analyse_cohort(make_cohort(n=200, seed=3), study, progress=lambda k, label, s: events.append((k, s)))
    keys = [k for k, s in events if s == "start"]
    # Everything after the cohort stage, in the study's stage order, each started then done.
    assert keys == [k for k, _ in study_stages(study) if k != "cohort"]
    assert keys == [
        "propensity",
        "matching",
        "balance",
        "outcome:death",
        "outcome:krt_liberation",
        "sensitivity",
        "target_trial:death",
        "target_trial:krt_liberation",
        "provenance",
    ]
    assert [k for k, s in events if s == "done"] == keys


@pytest.mark.parametrize("n,exposed_share", [(6, None), (12, 0.5)])
def test_tiny_cohort_never_crashes(n, exposed_share):
    result = analyse_cohort(make_cohort(n=n, seed=5, exposed_share=exposed_share), STUDY)
    assert result.counts["eligible"] == n
    assert len(result.attrition) == 3
    assert result.skipped, "a cohort of a handful of patients must skip models"
    for s in result.skipped:
        assert len(s.reason) > 15
    fitted = {(e.outcome, e.model, e.population) for e in result.estimates}
    skipped = {(s.outcome, s.model, s.population) for s in result.skipped}
    # Every primary model is either fitted or skipped with a reason, never silently absent.
    for key in [("death", "cox_adjusted", "matched"), ("krt_liberation", "fine_gray_adjusted", "matched")]:
        assert (
            key in fitted
            or key in skipped
            or ("matching", "nearest", "matched") in {(s.outcome, s.model, s.population) for s in result.skipped}
        )


def test_no_exposed_patients():
    cohort = make_cohort(n=80, seed=2)
    cohort.data["exposed"] = 0
    cohort.data["mg_dose_meq"] = 0.0
    result = analyse_cohort(cohort, STUDY)
    assert result.counts["exposed"] == 0
    assert math.isnan(result.dose["mean"]) and result.dose["n"] == 0
    reasons = {s.outcome: s.reason for s in result.skipped}
    assert "has no exposed patients" in reasons["propensity"]
    assert result.matched is None and not result.estimates
    assert any(s.model == "cox_adjusted" and s.population == "full" for s in result.skipped)


def test_zero_events_skips_hazard_ratios():
    cohort = make_cohort(n=150, seed=4)
    cohort.data["death_status"] = 0
    cohort.data["death_time"] = 90.0
    cohort.data["krt_liberation_status"] = np.where(
        cohort.data["krt_liberation_status"] == 2, 0, cohort.data["krt_liberation_status"]
    )
    result = analyse_cohort(cohort, STUDY)
    death_skips = [s for s in result.skipped if s.outcome == "death" and s.model.startswith("cox")]
    assert {s.population for s in death_skips} >= {"matched", "full", "iptw"}
    assert all("no death events" in s.reason for s in death_skips)
    assert result.estimate("krt_liberation", "fine_gray_unadjusted", "matched") is not None
    assert result.e_value is None


def test_matching_that_finds_nobody_is_skipped():
    study = variant(matching={"caliper": 1e-9})
    # n = 300: at 120 the full cohort has fewer than MIN_EVENTS_PER_ARM exposed deaths
    result = analyse_cohort(make_cohort(n=300, seed=6), study)
    skipped = [s for s in result.skipped if s.outcome == "matching"]
    assert len(skipped) == 1 and skipped[0].reason
    assert result.matched is None
    assert result.estimate("death", "cox_adjusted", "full") is not None


def test_missing_covariate_is_an_attrition_line():
    cohort = make_cohort(n=200, seed=7)
    cohort.data.loc[[3, 10, 11], "serum_mg"] = np.nan
    result = analyse_cohort(cohort, STUDY)
    last = result.attrition.iloc[-1]
    assert last["excluded"] == 3 and last["remaining"] == 197
    assert "serum_mg" in last["reason"] and "3" not in last["reason"]  # no count below the threshold
    assert result.counts["eligible"] == 197


def test_data_fingerprint_uses_content_not_mtime(tmp_path):
    a = tmp_path / "a"
    (a / "hosp").mkdir(parents=True)
    (a / "hosp" / "patients.csv").write_text("subject_id\n1\n")
    first = data_fingerprint(a)
    import os

    os.utime(a / "hosp" / "patients.csv", (1, 1))
    assert data_fingerprint(a) == first
    (a / "hosp" / "patients.csv").write_text("subject_id\n2\n")
    assert data_fingerprint(a) != first


def test_matching_with_replacement_uses_per_patient_robust_variance():
    study = variant(matching={"replace": True})
    result = analyse_cohort(make_cohort(n=400, seed=8), study)
    est = result.estimate("death", "cox_unadjusted", "matched")
    assert est is not None and "replacement" in est.variance
    # With replacement a control can serve several exposed patients: weights are not all 1.
    direct = cox(result.matched, "death_time", "death_status", ["exposed"], weights="weight", robust=True)
    assert est.upper == pytest.approx(direct.summary.loc["exposed", "upper"], rel=1e-12)
    fg = result.estimate("krt_liberation", "fine_gray_unadjusted", "matched")
    assert fg is not None and "sandwich" in fg.variance


def test_probit_link_matches_on_the_logit_of_the_score():
    study = variant(link="probit")
    result = analyse_cohort(make_cohort(n=300, seed=9), study)
    ps = result.cohort["ps"].to_numpy()
    np.testing.assert_allclose(result.cohort["ps_logit"], np.log(ps / (1 - ps)), rtol=1e-12)
    np.testing.assert_allclose(result.matching.distance.to_numpy(), result.cohort["ps_logit"], rtol=1e-12)


def test_model_based_variance_when_not_clustering():
    study = variant(cluster_on_matched_set=False)
    result = analyse_cohort(make_cohort(n=400, seed=10), study)
    est = result.estimate("death", "cox_adjusted", "matched")
    assert "cluster" not in est.variance


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=0, max_value=10_000),
    share=st.sampled_from([0.0, 0.05, 0.3, 0.5, 1.0]),
    death_rate=st.sampled_from([0.0, 0.002, 0.05]),
)
def test_small_cohorts_never_crash(n, seed, share, death_rate):
    result = analyse_cohort(make_cohort(n=n, seed=seed, exposed_share=share, death_rate=death_rate), STUDY)
    assert result.counts["eligible"] == n
    assert result.counts["exposed"] + result.counts["comparator"] == n
    fitted = {(e.outcome, e.model, e.population) for e in result.estimates}
    skipped = {(s.outcome, s.model, s.population) for s in result.skipped}
    # Each main model is either fitted (finite CI around the estimate) or skipped with a reason.
    assert not fitted & skipped
    for e in result.estimates:
        assert 0 < e.lower <= e.estimate <= e.upper < math.inf
    for s in result.skipped:
        assert s.reason
        # no count of patients or events in a reason (only the fixed minimums and model terms)
        assert not re.search(r"\(events: |has \d+ (exposed|unexposed|comparator)|events \(\d+\)", s.reason), s.reason
    if ("death", "cox_adjusted", "full") not in fitted:
        assert ("death", "cox_adjusted", "full") in skipped


# --------------------------------------------------------------------------- minimum information


def _reasons(result, population: str) -> dict[tuple[str, str], str]:
    return {(s.outcome, s.model): s.reason for s in result.skipped if s.population == population}


@pytest.mark.parametrize("n_exposed", [1, 2])
def test_one_or_two_exposed_patients_give_no_full_cohort_or_iptw_estimate(n_exposed):
    # the study used to print a full-cohort Fine-Gray sHR of 15.5 (p = 3e-9) and an IPTW sHR of 1.00 here
    cohort = make_cohort(n=300, seed=12, exposed_share=0.0)
    cohort.data.loc[: n_exposed - 1, "exposed"] = 1
    cohort.data.loc[: n_exposed - 1, "mg_dose_meq"] = 20.0
    result = analyse_cohort(cohort, STUDY)
    assert not [e for e in result.estimates if e.population in ("full", "iptw")]
    for population, models in (
        ("full", [("death", "cox_adjusted"), ("krt_liberation", "fine_gray_adjusted")]),
        ("iptw", [("death", "cox_unadjusted"), ("krt_liberation", "fine_gray_unadjusted")]),
    ):
        reasons = _reasons(result, population)
        for key in models:
            assert key in reasons, (population, key, result.skipped)
            reason = reasons[key]
            # a rule of minimum information (or no event in an arm): never a count below the threshold
            assert "fewer than 10 exposed patients" in reason or "no " in reason, reason
            assert f"{n_exposed} exposed" not in reason


def test_minimum_information_rules_one_by_one():
    from retrocohort.study.pipeline import MIN_EVENTS_PER_ARM, MIN_PATIENTS_PER_ARM, _minimum_information

    frame = make_cohort(n=400, seed=13, exposed_share=0.5, death_rate=0.02).data
    event = frame["death_status"] == 1
    assert _minimum_information(STUDY, frame, event, "death", "full") is None
    # events per arm: keep MIN_EVENTS_PER_ARM - 1 exposed deaths
    exposed_deaths = frame.index[(frame["exposed"] == 1) & event]
    few = frame.copy()
    few.loc[exposed_deaths[MIN_EVENTS_PER_ARM - 1 :], "death_status"] = 0
    reason = _minimum_information(STUDY, few, few["death_status"] == 1, "death", "full")
    assert reason is not None and f"fewer than {MIN_EVENTS_PER_ARM} death events among the exposed" in reason
    # exactly the minimum passes
    enough = frame.copy()
    enough.loc[exposed_deaths[MIN_EVENTS_PER_ARM:], "death_status"] = 0
    assert _minimum_information(STUDY, enough, enough["death_status"] == 1, "death", "full") is None
    # patients per arm
    small = pd.concat([frame[frame["exposed"] == 0], frame[frame["exposed"] == 1].head(MIN_PATIENTS_PER_ARM - 1)])
    reason = _minimum_information(STUDY, small, small["death_status"] == 1, "death", "full")
    assert reason is not None and f"fewer than {MIN_PATIENTS_PER_ARM} exposed patients" in reason
    # effective sample size under weights: one unexposed patient carries almost all the weight
    weighted = frame.assign(w=1.0)
    weighted.loc[weighted.index[weighted["exposed"] == 0][0], "w"] = 1e4
    reason = _minimum_information(STUDY, weighted, event, "death", "iptw", weights="w")
    assert reason is not None and "unexposed arm" in reason and "effective sample size below" in reason
    assert _minimum_information(STUDY, weighted, event, "death", "iptw") is None  # unweighted: fine
    zero = frame.assign(w=np.where(frame["exposed"] == 1, 0.0, 1.0))  # an arm with no weight at all
    reason = _minimum_information(STUDY, zero, event, "death", "iptw", weights="w")
    assert reason is not None and "exposed arm" in reason and "effective sample size" in reason


def _separated_cohort(outcome: str) -> pd.DataFrame:
    """Exposed patients all leave follow-up (deaths and censoring by day 5) before any unexposed death."""
    frame = make_cohort(n=200, seed=14, exposed_share=0.2, death_rate=0.02).data.copy()
    exposed = frame["exposed"] == 1
    frame.loc[exposed, "death_time"] = np.where(np.arange(exposed.sum()) % 2 == 0, 2.0, 5.0)
    frame.loc[exposed, "death_status"] = (np.arange(exposed.sum()) % 2 == 0).astype(int)
    frame.loc[~exposed, "death_time"] = frame.loc[~exposed, "death_time"].clip(lower=6.0)
    if outcome == "krt_liberation":
        frame["krt_liberation_time"] = frame["death_time"]
        frame["krt_liberation_status"] = np.where(frame["death_status"] == 1, 1, 0)
    return frame


@pytest.mark.parametrize("outcome", ["death", "krt_liberation"])
def test_separation_is_detected_and_the_fit_agrees(outcome):
    from retrocohort.study.pipeline import _minimum_information

    frame = _separated_cohort(outcome)
    event = (frame["krt_liberation_status"] == 1) if outcome != "death" else (frame["death_status"] == 1)
    reason = _minimum_information(STUDY, frame, event, outcome, "full")
    assert reason is not None and "separation" in reason and "runs to infinity" in reason
    # the fits themselves see a coefficient running away (coxph warns; crr's drifts)
    import warnings as _w

    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        if outcome == "death":
            fit = cox(frame, "death_time", "death_status", ["exposed"])
        else:
            fit = fine_gray(frame, "krt_liberation_time", "krt_liberation_status", ["exposed"])
    messages = [str(w.message) for w in caught]
    assert fit.summary.loc["exposed", "coef"] > 2
    assert any("'exposed'" in m and ("infinite" in m or "monotone" in m) for m in messages), messages
    # through the pipeline: skipped with the reason, no number reported
    cohort = SimpleNamespace(attrition=make_cohort(n=200, seed=14).attrition, data=frame, notes=())
    result = analyse_cohort(cohort, variant(sensitivity_iptw=False))
    reasons = _reasons(result, "full")
    key = ("death", "cox_adjusted") if outcome == "death" else ("krt_liberation", "fine_gray_adjusted")
    assert "separation" in reasons[key]
    assert result.estimate(*key, "full") is None


def _score_limits(time, event, exposed, competing):
    """U(+inf) and U(-inf) of the exposure's (sub)distribution partial-likelihood score, by definition."""
    hi = lo = 0.0
    for i in np.flatnonzero(event):
        at_risk = (time >= time[i]) | (competing & (time < time[i]))
        hi += exposed[i] - exposed[at_risk].max()
        lo += exposed[i] - exposed[at_risk].min()
    return hi, lo


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 25), fine_gray_risk_set=st.booleans())
def test_separation_rule_equals_the_score_limits(seed, n, fine_gray_risk_set):
    # the MLE is finite exactly when U(+inf) < 0 < U(-inf); the rule must flag every other case with events
    from retrocohort.study.pipeline import _exposure_separation

    rng = np.random.default_rng(seed)
    time = rng.integers(1, 8, n).astype(float)
    status = rng.choice([0, 1, 2], n)
    exposed = rng.random(n) < 0.4
    event = status == 1
    competing = (status == 2) if fine_gray_risk_set else np.zeros(n, dtype=bool)
    if not event.any():
        return
    hi, lo = _score_limits(time, event, exposed.astype(float), competing)
    flagged = _exposure_separation(time, event, exposed, competing if fine_gray_risk_set else None)
    assert (flagged is None) == (hi < 0 < lo), (hi, lo, flagged)
    if flagged is not None:
        assert flagged[2] == ("infinity" if hi == 0 else "0")


# --------------------------------------------------------------------------- any study, not only the flagship


def _other_study() -> Study:
    """vasopressin_shock.toml: outcomes death (28 days) and krt_initiation (competing death), subgroups."""
    return load_study_file(FLAGSHIP.parent / "vasopressin_shock.toml")


def _other_cohort(n: int = 500, seed: int = 21) -> SimpleNamespace:
    """make_cohort's frame with the other study's columns: its covariates, its outcome names."""
    cohort = make_cohort(n=n, seed=seed)
    data = cohort.data.rename(
        columns={"krt_liberation_time": "krt_initiation_time", "krt_liberation_status": "krt_initiation_status"}
    )
    study = _other_study()
    rng = np.random.default_rng(seed)
    for name in study.covariates:
        if name not in data.columns:
            binary = covariate_type(study, name) == "binary"
            data[name] = rng.binomial(1, 0.4, n) if binary else rng.normal(1.0, 0.3, n).round(2)
    cohort.data = data.drop(columns=["mg_dose_meq"])
    return cohort


def test_another_study_is_analysed_under_its_own_names_and_labels():
    study = _other_study()
    result = analyse_cohort(_other_cohort(), study)
    assert list(result.outcomes) == list(study.outcomes) == ["death", "krt_initiation"]
    assert result.primary == "death" and result.outcomes["death"].primary
    death, krt = result.outcomes["death"], result.outcomes["krt_initiation"]
    assert not death.competing and death.km is not None and death.cif is None
    assert krt.competing and krt.cif is not None and krt.km is None and krt.gray is not None
    assert (krt.time, krt.status, krt.horizon_days) == ("krt_initiation_time", "krt_initiation_status", 28.0)
    assert result.dose is None  # no [dose] declared: no dose anywhere
    labels = [e.label for e in result.estimates]
    assert labels and all("by day 28" in label for label in labels), labels
    assert not any("90" in label or "KRT liberation" in label for label in labels)
    fg = result.estimate("krt_initiation", "fine_gray_adjusted", "matched")
    direct = fine_gray(
        result.matched,
        "krt_initiation_time",
        "krt_initiation_status",
        ["exposed", *study.adjustment_set],
        cluster="subclass",
    )
    assert fg.estimate == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)
    # the competing outcome's events: status 1 only (2 is the competing death)
    assert fg.n_events == int((result.matched["krt_initiation_status"] == 1).sum())


def test_subgroups_within_levels_equal_direct_fits_and_small_levels_are_not_estimated():
    study = _other_study()
    assert study.analysis.subgroups == ("sepsis", "sex")
    cohort = _other_cohort(n=600, seed=22)
    result = analyse_cohort(cohort, study)
    by_name = {s.covariate: s for s in result.subgroups}
    assert set(by_name) == {"sepsis", "sex"}
    sex = by_name["sex"]
    assert sex.outcome == "death" and sex.label == study.covariates["sex"].label
    assert 0 <= sex.p_interaction <= 1 and "matched" in sex.model
    for level in ("F", "M"):
        part = result.matched[result.matched["sex"] == level]
        direct = cox(part, "death_time", "death_status", ["exposed"], weights="weight", cluster="subclass")
        row = sex.levels.set_index("level").loc[level]
        assert row["estimate"] == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)
        assert row["n"] == len(part) and row["n_events"] == int(part["death_status"].sum())
    # a level with almost nobody: counted, not estimated, and said so
    tiny = _other_cohort(n=600, seed=22)
    tiny.data["sepsis"] = 0
    tiny.data.loc[:3, "sepsis"] = 1
    small = {s.covariate: s for s in analyse_cohort(tiny, study).subgroups}["sepsis"]
    row = small.levels.set_index("level").loc[1]
    assert math.isnan(row["estimate"]) and math.isnan(row["p"])


def test_planted_truth_is_read_for_the_study_that_runs_only(tmp_path):
    import json

    from retrocohort.study.pipeline import read_synthetic_info

    (tmp_path / "SYNTHETIC.json").write_text(
        json.dumps(
            {
                "studies": {
                    "magnesium_ckrt": {"hr_death": 0.4, "shr_krt_liberation": 2.28, "hr_krt_liberation": 9.0},
                    "vasopressin_shock": {"hr_death": 1.0, "shr_krt_initiation": 1.0},
                }
            }
        )
    )
    synthetic, planted, _ = read_synthetic_info(tmp_path, default_study())
    assert synthetic
    # the estimand follows the outcome: sHR for the competing one, HR for the other
    assert planted == {"death": {"estimand": "hr", "value": 0.4}, "krt_liberation": {"estimand": "shr", "value": 2.28}}
    _, other, _ = read_synthetic_info(tmp_path, _other_study())
    assert other == {"death": {"estimand": "hr", "value": 1.0}, "krt_initiation": {"estimand": "shr", "value": 1.0}}
    # a study the data record no truth for gets none (never another study's)
    thiamine = load_study_file(FLAGSHIP.parent / "thiamine_sepsis.toml")
    assert read_synthetic_info(tmp_path, thiamine) == (True, None, None)


def test_a_run_needs_a_study():
    from retrocohort.errors import InputError

    with pytest.raises(InputError, match="load_study"):
        analyse_cohort(make_cohort(n=50), None)  # type: ignore[arg-type]


def test_a_study_without_covariates_skips_the_propensity_model_with_the_reason():
    study = default_study()
    bare = study.model_copy(
        update={"covariates": {}, "analysis": study.analysis.model_copy(update={"propensity": (), "adjust": ()})}
    )
    result = analyse_cohort(make_cohort(n=300, seed=23), bare)
    reasons = {(s.outcome, s.model): s.reason for s in result.skipped}
    assert "no covariates" in reasons[("propensity", "logistic")]
    assert ("matching", "nearest") in reasons and result.matched is None
    # the full-cohort models still run, on the exposure alone
    full = result.estimate("death", "cox_adjusted", "full")
    direct = cox(result.cohort, "death_time", "death_status", ["exposed"])
    assert full.estimate == pytest.approx(direct.summary.loc["exposed", "hr"], rel=1e-12)


@pytest.mark.parametrize(
    ("column", "value", "expect"),
    [
        ("death_status", 3, "outside codes 0, 1"),
        ("krt_liberation_status", 5, "outside codes 0, 1, 2"),
        ("death_time", -1.0, "outside finite days >= 0"),
        ("krt_liberation_time", np.inf, "outside finite days >= 0"),
    ],
)
def test_an_outcome_column_outside_its_codes_is_an_error_naming_it(column, value, expect):
    from retrocohort.errors import InputError

    cohort = make_cohort(n=100, seed=24)
    cohort.data.loc[:2, column] = value
    with pytest.raises(InputError, match=rf"column '{column}' has 3 row\(s\) {re.escape(expect)}"):
        analyse_cohort(cohort, STUDY)
