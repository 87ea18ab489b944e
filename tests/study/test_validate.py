"""`retrocohort validate`: the design check on simulated cohorts (truth known), reproducibility, bad input, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.errors import InputError, RetrocohortError
from retrocohort.report.design_check import design_check_table
from retrocohort.study.validate import validate, validate_cohort, write_validation_outputs
from tests.study.test_outputs import identifiers, leaked
from tests.study.test_pipeline import make_cohort, variant


def death_only(**analysis):
    """The flagship with its death outcome only (a fast study for many replicates)."""
    study = variant(**analysis)
    return study.model_copy(update={"outcomes": {"death": study.outcomes["death"]}})


@pytest.fixture(scope="module")
def coverage_result():
    """300 replicates of a matched Cox study on a 600-patient simulated cohort, planted HR 0.6."""
    study = death_only(sensitivity_full_cohort=True, sensitivity_iptw=False, e_value=False)
    cohort = make_cohort(n=600, seed=11, death_rate=0.01)
    return validate_cohort(cohort, study, replicates=300, effects=(0.6,), seed=2024, processes=1)


def row(result, model, population="matched"):
    s = result.summary
    found = s.loc[(s["model"] == model) & (s["population"] == population)]
    assert len(found) == 1, s[["model", "population"]]
    return found.iloc[0]


def test_matched_cox_cluster_robust_interval_covers_at_the_nominal_rate(coverage_result):
    """Outcome model correctly specified by construction: coverage within Monte Carlo error of 95%.

    300 replicates give a Monte Carlo SE of about 1.3 points for coverage and about 4% for the
    empirical SE; a variance off by a factor 1.4 in SE would fail the SE ratio (and coverage) bounds.
    """
    adjusted = row(coverage_result, "cox_adjusted")
    assert adjusted["skipped_share"] == 0 and adjusted["fitted"] == 300
    assert adjusted["truth"] == pytest.approx(0.6) and adjusted["truth_kind"] == "conditional"
    assert abs(adjusted["coverage"] - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 300)
    assert 0.85 < adjusted["se_ratio"] < 1.15
    assert abs(adjusted["bias_log"]) < 3 * adjusted["bias_log_mcse"] + 0.02
    assert adjusted["power"] > 0.5  # HR 0.6 with ~200 deaths is detectable


def test_unadjusted_estimates_are_judged_against_the_marginal_truth(coverage_result):
    unadjusted = row(coverage_result, "cox_unadjusted")
    assert unadjusted["truth_kind"] == "marginal (ATT)"
    # non-collapsibility: the marginal HR is nearer 1 than the planted conditional one
    assert 0.6 < unadjusted["truth"] < 1.0
    assert unadjusted["truth_conditional"] == pytest.approx(0.6)
    full = row(coverage_result, "cox_adjusted", "full")
    assert abs(full["coverage"] - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 300)


def test_matched_sizes_and_estimate_rows(coverage_result):
    adjusted = row(coverage_result, "cox_adjusted")
    assert adjusted["n_min"] <= adjusted["n_mean"] <= adjusted["n_max"] < 600
    reps = coverage_result.replicates
    assert set(reps["replicate"]) == set(range(300))
    assert (reps["matched_exposed"] > 0).all()


def test_same_seed_same_table_with_one_or_two_processes():
    study = death_only(sensitivity_full_cohort=False, sensitivity_iptw=True, e_value=False)
    cohort = make_cohort(n=300, seed=12)
    one = validate_cohort(cohort, study, replicates=6, effects=(1.0, 0.7), seed=7, processes=1)
    two = validate_cohort(cohort, study, replicates=6, effects=(1.0, 0.7), seed=7, processes=2)
    pd.testing.assert_frame_equal(one.summary, two.summary)
    pd.testing.assert_frame_equal(one.replicates, two.replicates)
    other = validate_cohort(cohort, study, replicates=6, effects=(1.0, 0.7), seed=8, processes=1)
    assert not one.replicates["estimate"].equals(other.replicates["estimate"])
    assert one.seed == 7 and one.options["processes"] == 1 and two.options["processes"] == 2


def test_models_skipped_in_most_replicates_are_reported_loudly(tmp_path):
    """Few exposed patients: the matched models fail the minimum-information rule in most replicates."""
    study = death_only(sensitivity_full_cohort=False, sensitivity_iptw=False, e_value=False)
    cohort = make_cohort(n=400, seed=13, exposed_share=0.035, death_rate=0.0015)
    result = validate_cohort(cohort, study, replicates=8, effects=(1.0,), seed=1, processes=1)
    loud = result.mostly_skipped
    assert len(loud) >= 1
    assert all(loud["skip_reason"].str.len() > 0)
    assert any(
        ("skipped in" in note and "do not describe the design" in note) or "never fitted in" in note
        for note in result.notes
    )
    # and in every output: the CSV flag, the report's banner and the row's marker
    write_validation_outputs(result, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "design_check.csv")
    assert table["mostly_skipped"].sum() == len(loud)
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'data-key="design_check_warnings"' in html and "skipped in most replicates" in html


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"effects": (0,)}, "finite number > 0"),
        ({"effects": (-0.7,)}, "finite number > 0"),
        ({"effects": (float("nan"),)}, "finite number > 0"),
        ({"effects": (float("inf"),)}, "finite number > 0"),
        ({"effects": ()}, "at least one"),
        ({"replicates": 0}, "from 1 to"),
        ({"replicates": 10**7}, "from 1 to"),
        ({"replicates": 2.5}, "whole number"),
        ({"processes": 0}, "processes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_input_errors(options, message):
    study = death_only()
    with pytest.raises(InputError, match=message):
        validate_cohort(make_cohort(n=200, seed=1), study, **options)


def test_a_cohort_too_small_says_what_is_needed_and_what_there_is():
    study = death_only()
    cohort = make_cohort(n=200, seed=14, exposed_share=0.02)
    with pytest.raises(InputError, match=r"too small to simulate.*exposed.*at least 10 per arm"):
        validate_cohort(cohort, study, replicates=2)


def test_an_outcome_with_no_events_is_an_error():
    study = death_only()
    with pytest.raises(InputError, match=r"0 death events \(at least 10"):
        validate_cohort(make_cohort(n=200, seed=15, death_rate=0.0), study, replicates=2)


def test_missing_data_folder_is_an_input_error(tmp_path):
    with pytest.raises(RetrocohortError, match="does not exist"):
        validate(death_only(), tmp_path / "nowhere", replicates=2)


def test_small_sizes_are_suppressed_in_the_written_table():
    study = death_only(sensitivity_full_cohort=False, sensitivity_iptw=False, e_value=False)
    result = validate_cohort(make_cohort(n=300, seed=16), study, replicates=2, effects=(1.0,), seed=3, processes=1)
    summary = result.summary.copy()
    summary.loc[0, ["n_mean", "n_min", "n_max"]] = [4.5, 3, 60]
    table = design_check_table(dataclasses.replace(result, summary=summary))
    assert table.loc[0, "n_min"] == "<5" and table.loc[0, "n_mean"] == "<5" and table.loc[0, "n_max"] == 60


# --------------------------------------------------------------------------- CLI on a synthetic EHR

STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


@pytest.fixture(scope="module")
def synthetic_ehr(tmp_path_factory) -> Path:
    from retrocohort.sources.synthetic import generate_synthetic

    path = tmp_path_factory.mktemp("ehr") / "ehr"
    generate_synthetic(path)  # default size: the flagship's 333 eligible patients
    return path


def invoke(*args):
    from typer.testing import CliRunner

    from retrocohort.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result, " ".join(text.split())


def test_cli_writes_the_design_check(tmp_path, synthetic_ehr):
    out = tmp_path / "check"
    result, text = invoke(
        "validate", STUDY_FILE, "--mimic", synthetic_ehr, "--replicates", 3, "--seed", 5, "--processes", 1, "--out", out
    )
    assert result.exit_code == 0, text
    # one printed line per effect and estimate: 2 effects x 2 outcomes x (4 estimates + the emulated
    # trial's RD, RR, HR)
    assert text.count("planted ") == 28 and "coverage" in text
    assert "emulated trial" in text and "coverage not checked" in text
    # the trial's point estimates have no reported SE: said in words, never printed as "nan"
    assert "empirical / none reported" in text and "nan" not in text.lower()
    table = pd.read_csv(out / "design_check.csv")
    assert len(table) == 28 and set(table["effect"]) == {1.0, 0.7}
    assert set(table["population"]) == {"matched", "full", "iptw", "trial"}
    assert set(table.loc[table["population"] == "trial", "outcome"]) == {"death", "krt_liberation"}
    document = json.loads((out / "design_check.json").read_text())
    assert document["seed"] == 5 and document["replicates"] == 3 and document["study"]["name"] == "magnesium_ckrt"
    assert "numpy" in document["provenance"]["packages"]
    sizes = document["matched_sizes"]["0.7"]["exposed"]
    assert 0 < sizes["min"] <= sizes["mean"] <= sizes["max"] < 100  # about 37 exposed are drawn per replicate
    html = (out / "report.html").read_text()
    assert "Design check" in html and 'data-table="design_check"' in html
    assert "death: trial risk difference, emulated target trial" in html and "(strategies)" in html
    assert (out / "figures" / "design_check.png").is_file()
    # no identifier or date of the cohort in any output
    from retrocohort.cohort.builder import build_cohort
    from retrocohort.sources import MimicIV
    from retrocohort.spec import load_study_file

    cohort = build_cohort(load_study_file(STUDY_FILE), MimicIV(synthetic_ehr))
    ids, dates = identifiers(cohort.data)
    for path in (out / "design_check.csv", out / "design_check.json", out / "report.html"):
        assert not leaked(path, ids, dates), path
    # never over an existing output without --force
    again, text = invoke("validate", STUDY_FILE, "--mimic", synthetic_ehr, "--replicates", 1, "--out", out)
    assert again.exit_code == 2 and "Traceback" not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--effect", "0"), "finite number > 0"),
        (("--effect", "-1"), "finite number > 0"),
        (("--effect", "nan"), "finite number > 0"),
        (("--replicates", "0"), "from 1 to"),
        (("--engine", "sqlite"), "not supported"),
        (("--seed", "-1"), "seed -1"),
        (("--processes", "0"), "processes 0"),
        (("--replicates", "200000"), "from 1 to"),
        (("--trial-replicates", "1"), "--trial-replicates 1"),
        (("--trial-replicates", "0"), "whole number >= 2"),
    ],
)
def test_cli_bad_options_exit_2_with_one_message(tmp_path, synthetic_ehr, args, message):
    result, text = invoke("validate", STUDY_FILE, "--mimic", synthetic_ehr, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, text
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- the emulated target trial


def with_starts(cohort, seed: int = 5):
    """``make_cohort`` with exposure start times: the exposed start within the 2-day grace window."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data = cohort.data.copy()
    exposed = data["exposed"].to_numpy() == 1
    data["exposure_start_days"] = np.where(exposed, rng.uniform(0.05, 2.0, len(data)), np.nan)
    cohort.data = data
    return cohort


@pytest.fixture(scope="module")
def trial_check():
    """The death-only flagship with its target trial (on the same cohort), 12 replicates, HR 0.7 of starting."""
    study = death_only(sensitivity_full_cohort=True, sensitivity_iptw=False, e_value=False)
    cohort = with_starts(make_cohort(n=400, seed=21, death_rate=0.01))
    with_trial = validate_cohort(
        cohort, study, replicates=12, effects=(0.7,), seed=99, processes=1, trial_cohort=cohort
    )
    return study, cohort, with_trial


def test_the_trial_estimates_are_checked_against_the_strategies_truth(trial_check):
    _study, _cohort, result = trial_check
    s = result.summary.set_index("model")
    for model in ("trial_risk_difference", "trial_risk_ratio", "trial_hazard_ratio"):
        assert s.loc[model, "population"] == "trial"
        assert s.loc[model, "truth_kind"] == "trial strategies (counterfactual)"
        assert s.loc[model, "fitted"] == 12 and s.loc[model, "skipped_share"] == 0
        # point estimates only by default: no interval, so coverage and power are not claimed
        assert math.isnan(s.loc[model, "coverage"]) and math.isnan(s.loc[model, "power"])
    rd = s.loc["trial_risk_difference"]
    assert rd["scale"] == "difference" and s.loc["trial_risk_ratio", "scale"] == "log"
    # starting lowers the risk (HR 0.7 from the start on) and the truth says so on every scale
    truth = result.options["trial_truth"]["0.7"]["death"]
    assert truth["risk_difference"] < 0 and truth["risk_ratio"] < 1 and truth["hazard_ratio"] < 1
    assert rd["truth"] == truth["risk_difference"]
    assert rd["bias_log"] == pytest.approx(rd["mean_estimate"] - truth["risk_difference"])
    assert math.isnan(rd["bias_ratio"])


def test_adding_the_trial_does_not_change_the_landmark_estimates(trial_check):
    study, cohort, with_trial = trial_check
    without = validate_cohort(cohort, study, replicates=12, effects=(0.7,), seed=99, processes=1)
    assert not (without.summary["population"] == "trial").any()
    assert any("target trial not checked" in note for note in without.notes)
    a = with_trial.replicates.loc[with_trial.replicates["population"] != "trial"].reset_index(drop=True)
    b = without.replicates.reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns=["effect"]), b.drop(columns=["effect"]))


def test_trial_bootstrap_inside_replicates_gives_intervals_and_is_reproducible():
    study = death_only(sensitivity_full_cohort=False, sensitivity_iptw=False, e_value=False)
    cohort = with_starts(make_cohort(n=300, seed=22, death_rate=0.01))
    runs = [
        validate_cohort(
            cohort, study, replicates=3, effects=(1.0,), seed=5, processes=p, trial_cohort=cohort, trial_replicates=4
        )
        for p in (1, 2)
    ]
    trial = runs[0].replicates.loc[runs[0].replicates["population"] == "trial"]
    assert len(trial) == 9 and trial["lower"].notna().all() and (trial["lower"] <= trial["upper"]).all()
    s = runs[0].summary.set_index("model")
    assert 0 <= s.loc["trial_hazard_ratio", "coverage"] <= 1
    assert s.loc["trial_risk_difference", "truth"] == 0.0  # planted 1: the strategies are equal
    assert any("from 4 bootstrap replicates" in note for note in runs[0].notes)
    pd.testing.assert_frame_equal(runs[0].summary, runs[1].summary)


def test_trial_replicates_below_two_are_refused():
    study = death_only()
    cohort = with_starts(make_cohort(n=200, seed=3))
    with pytest.raises(InputError, match="trial_replicates"):
        validate_cohort(cohort, study, replicates=2, trial_cohort=cohort, trial_replicates=1)


def test_lean_analysis_fits_the_same_estimates_and_skips_presentation_only_work():
    """validate's replicates run analyse_cohort(lean=True): same models and options, no tables or curves."""
    from retrocohort.study.pipeline import analyse_cohort

    study = variant()
    study = study.model_copy(update={"analysis": study.analysis.model_copy(update={"target_trial": None})})
    cohort = make_cohort(n=400, seed=8)
    full = analyse_cohort(cohort, study)
    lean = analyse_cohort(cohort, study, lean=True)
    key = ["outcome", "model", "population"]
    a = pd.DataFrame([e.__dict__ for e in full.estimates]).sort_values(key).reset_index(drop=True)
    b = pd.DataFrame([e.__dict__ for e in lean.estimates]).sort_values(key).reset_index(drop=True)
    assert len(a) >= 8
    pd.testing.assert_frame_equal(
        a[[*key, "estimate", "lower", "upper", "n"]], b[[*key, "estimate", "lower", "upper", "n"]]
    )
    assert full.balance_after is not None and lean.balance_after is None and lean.table_one_before is None
    assert full.outcomes["death"].km is not None and full.e_value is not None
    assert lean.outcomes["death"].km is None and lean.e_value is None and lean.subgroups == ()


def test_a_trial_skipped_in_every_replicate_is_reported_not_hidden():
    """min_ess above the trial's size: every replicate's clone-censor-weight analysis is refused."""
    study = death_only(sensitivity_full_cohort=False, sensitivity_iptw=False, e_value=False)
    trial = study.analysis.target_trial.model_copy(update={"min_ess": 10_000})
    study = study.model_copy(update={"analysis": study.analysis.model_copy(update={"target_trial": trial})})
    cohort = with_starts(make_cohort(n=300, seed=23, death_rate=0.01))
    result = validate_cohort(cohort, study, replicates=3, effects=(0.7,), seed=1, processes=1, trial_cohort=cohort)
    rows = result.summary.loc[result.summary["population"] == "trial"]
    assert len(rows) == 3 and (rows["fitted"] == 0).all() and (rows["skipped_share"] == 1).all()
    assert rows["skip_reason"].str.contains("target trial not estimated").all()
    assert any("trial_risk_difference" in note and "never fitted" in note for note in result.notes)
