"""Issue 11 (wiring): the emulated target trial as a design option of the study language.

Spec validation of ``[analysis.target_trial]`` (every bad input the issue names), the pipeline's trial block
against a direct call of ``bootstrap(clone_censor_weight ...)`` on the same frame, skipped trials with their
reason, results.json, the report section and figure, the printed summary line and the small-cell rule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from retrocohort import cli
from retrocohort.designs import bootstrap
from retrocohort.errors import InputError, StudySpecError
from retrocohort.report.figures import study_figures
from retrocohort.report.html import render_html
from retrocohort.report.suppression import study_disclosure
from retrocohort.spec import load_study_file
from retrocohort.spec.load import parse_study_text
from retrocohort.study.outputs import SCHEMA_VERSION, results_document, validate_results_document, write_outputs
from retrocohort.study.pipeline import analyse_cohort, study_stages
from tests.study.test_pipeline import make_cohort

FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"
TEXT = FLAGSHIP.read_text()
SECTION = TEXT[TEXT.index("[analysis.target_trial]") :]


def _with(old: str, new: str, text: str = TEXT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


#: the flagship's serum Mg (window "index_day") kept knowingly as a baseline covariate of the trial
PAST_MG = 'past_index_covariates = ["serum_mg"]\n'


def _trial(text: str) -> str:
    """The flagship with its [analysis.target_trial] section replaced by ``text``."""
    return TEXT.replace(SECTION, "[analysis.target_trial]\n" + text)


# --------------------------------------------------------------------------- the study language


def test_flagship_asks_for_the_trial_with_its_options():
    trial = load_study_file(FLAGSHIP).analysis.target_trial
    assert trial is not None and trial.enabled
    assert trial.not_applied == ("died_within_48h",)
    assert trial.truncate == (1.0, 99.0) and trial.interval_hours == 6 and trial.replicates == 500
    assert trial.seed is None  # the study's seed


def test_a_time_varying_covariate_leaves_the_default_baseline_set():
    from retrocohort.spec.study import trial_covariates

    text = _trial('not_applied = ["died_within_48h"]\ntime_varying = ["lactate"]\n' + PAST_MG) + (
        '\n[concepts.lactate_lab]\ntable = "hosp/labevents"\nitemids = [50813]\n\n'
        '[covariates.lactate]\nconcept = "lactate_lab"\nwindow = "[-24h, 0h]"\nsummary = "max"\n'
    )
    study = parse_study_text(text.replace('propensity = ["age",', 'propensity = ["lactate", "age",'))
    assert "lactate" in study.propensity_covariates
    assert trial_covariates(study) == tuple(c for c in study.propensity_covariates if c != "lactate")


def test_defaults_and_switching_it_off():
    study = parse_study_text(_trial('not_applied = ["died_within_48h"]\n' + PAST_MG))
    trial = study.analysis.target_trial
    assert trial.censoring_model == "pooled_logistic" and trial.covariates is None and trial.outcomes is None
    assert trial.replicates == 500 and trial.min_ess == 20 and trial.truncate == (0.0, 100.0)
    # without the section the study has no trial (and no trial stages); the death criterion is then fine
    plain = parse_study_text(TEXT.replace(SECTION, ""))
    assert plain.analysis.target_trial is None
    assert not [k for k, _ in study_stages(plain) if k.startswith("target_trial")]
    off = parse_study_text(_trial('enabled = false\nnot_applied = ["died_within_48h"]\n'))
    assert not [k for k, _ in study_stages(off) if k.startswith("target_trial")]
    # under [analysis]: false switches it off, true asks for it with every default (then the death rule holds)
    plain_text = TEXT.replace(SECTION, "")
    flag = "e_value = true\n"
    assert parse_study_text(plain_text.replace(flag, flag + "target_trial = false\n")).analysis.target_trial is None
    with pytest.raises(StudySpecError, match='not_applied = \\["died_within_48h"\\]'):
        parse_study_text(plain_text.replace(flag, flag + "target_trial = true\n"))


def test_the_flagship_trial_covariates_are_known_at_time_zero():
    from retrocohort.spec.study import looks_past_index, trial_covariates

    study = load_study_file(FLAGSHIP)
    names = trial_covariates(study)
    assert names and "serum_mg" not in names
    assert not [n for n in names if looks_past_index(study.covariates[n])]
    # the landmark analysis keeps the seed's serum Mg (its numbers do not move)
    assert "serum_mg" in study.propensity_covariates and "serum_mg" in study.adjustment_set


@pytest.mark.parametrize(
    "text,fragments",
    [
        (  # listed explicitly
            _with('covariates = ["age", "sex", "sepsis", "egfr_baseline", "sofa"]', 'covariates = ["age", "serum_mg"]'),
            [
                "analysis.target_trial.covariates",
                "'serum_mg' in covariates is measured in the window the index calendar day",
                "known at time zero",
                'past_index_covariates = ["serum_mg"]',
            ],
        ),
        (  # left out: the propensity covariates, which hold serum_mg
            _trial('not_applied = ["died_within_48h"]\n'),
            ["covariates (left out: the propensity covariates)", "'serum_mg'", "ends after the index"],
        ),
        (  # opted in for a covariate that is known at the index
            _trial('not_applied = ["died_within_48h"]\ncovariates = ["age"]\npast_index_covariates = ["age"]\n'),
            ["'age' is known at time zero", "remove it from past_index_covariates"],
        ),
        (  # opted in for a covariate the censoring model does not use
            _trial('not_applied = ["died_within_48h"]\ncovariates = ["age"]\n' + 'past_index_covariates = ["sofa"]\n'),
            ["'sofa' is not a baseline covariate of the trial's censoring model"],
        ),
        (  # opted in twice
            _trial('not_applied = ["died_within_48h"]\npast_index_covariates = ["serum_mg", "serum_mg"]\n'),
            ["past_index_covariates: listed twice: ['serum_mg']"],
        ),
    ],
    ids=["explicit", "default", "opt-in-at-index", "opt-in-unused", "opt-in-twice"],
)
def test_a_trial_covariate_that_looks_past_time_zero_is_refused(text, fragments):
    with pytest.raises(StudySpecError) as err:
        parse_study_text(text, where="m.toml")
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message


def test_a_covariate_past_time_zero_kept_knowingly_is_warned_about_in_the_protocol():
    from retrocohort.report.text import target_trial_protocol

    kept = parse_study_text(_trial('not_applied = ["died_within_48h"]\n' + PAST_MG))
    assert kept.analysis.target_trial.past_index_covariates == ("serum_mg",)
    text = target_trial_protocol(SimpleNamespace(study=kept, target_trial={}))
    assert "Warning: baseline covariates of the censoring model measured past time zero" in text
    assert "serum mg, mg/dl (" in text.lower()
    plain = target_trial_protocol(SimpleNamespace(study=load_study_file(FLAGSHIP), target_trial={}))
    assert "measured past time zero" not in plain


BAD = [
    # (what, text of the study, fragments the message must hold)
    (
        "death criterion looking past the index not listed",
        _trial("replicates = 10\n"),
        ["criteria[2].window", "died_within_48h", 'not_applied = ["died_within_48h"]', "line 80"],
    ),
    (
        "misspelt not_applied name",
        _trial('not_applied = ["died_within_48"]\n'),
        ["did you mean 'died_within_48h'", 'not_applied = ["died_within_48h"]'],
    ),
    (
        "not_applied on a criterion at the index",
        _with(
            'window = "index_day"\nvalue_min = 0                                  # a measured value',
            'window = "[-24h, 0h]"\nvalue_min = 0                                  # a measured value',
            _trial('not_applied = ["died_within_48h", "no_mg_index_day"]\n'),
        ),
        ["'no_mg_index_day' looks only at or before the index", "remove it from not_applied"],
    ),
    (
        "exposure window not starting at the index",
        _with('window = "(0h, 48h]"', 'window = "(6h, 48h]"'),
        ["grace window of the target trial is the exposure window", "must start at the index (0h)"],
    ),
    (
        "grace window not shorter than the horizon",
        _trial('not_applied = ["died_within_48h"]\noutcomes = ["death"]\n')
        .replace("horizon_days = 90\nprimary = true", "horizon_days = 2\nprimary = true")
        .replace("km_times_days = [0, 15, 30, 45, 60, 75, 90]", "km_times_days = [0, 1, 2]"),
        ["outcome 'death': its horizon (2 days) is not longer than the grace window (48h)"],
    ),
    (
        "active comparator",
        _with('kind = "none"', 'kind = "active"\nconcept = "serum_mg"'),
        ["two active strategies", "not offered yet"],
    ),
    (
        "interval wider than the grace window",
        _with("interval_hours = 6 ", "interval_hours = 72 "),
        ["interval_hours = 72 is longer than the grace window (48h)"],
    ),
    (
        "truncation percentiles reversed",
        _with("truncate = [1, 99]", "truncate = [99, 1]"),
        ["truncate = [99, 1] must be percentiles"],
    ),
    ("truncation as fractions above 100", _with("truncate = [1, 99]", "truncate = [1, 990]"), ["<= 100"]),
    (
        "unknown censoring model",
        _with('censoring_model = "pooled_logistic"', 'censoring_model = "coxph"'),
        ["'coxph' is not allowed", "did you mean 'cox'"],
    ),
    (
        "misspelt key",
        _with("replicates = 500", "replicate = 500"),
        ["unknown key 'analysis.target_trial.replicate'", "did you mean 'replicates'"],
    ),
    ("too few replicates", _with("replicates = 500", "replicates = 1"), ["replicates = 1 is invalid"]),
    ("true as a number", _with("replicates = 500", "replicates = true"), ["true/false is not a value here"]),
    (
        "unknown censoring covariate",
        _with('covariates = ["age", "sex",', 'covariates = ["agee", "sex",'),
        ["'agee' is not a covariate of this study (did you mean 'age'?)"],
    ),
    (
        "empty covariate list",
        _with('covariates = ["age", "sex", "sepsis", "egfr_baseline", "sofa"]', "covariates = []"),
        ["covariates is empty"],
    ),
    (
        "unknown outcome",
        _trial('not_applied = ["died_within_48h"]\noutcomes = ["deaht"]\n'),
        ["'deaht' is not an outcome of this study (did you mean 'death'?)"],
    ),
    (
        "outcome listed twice",
        _trial('not_applied = ["died_within_48h"]\noutcomes = ["death", "death"]\n'),
        ["analysis.target_trial.outcomes: listed twice: ['death']"],
    ),
    (
        "baseline covariate as time-varying",
        _trial('not_applied = ["died_within_48h"]\ntime_varying = ["sofa"]\n'),
        ["'sofa' is a baseline value", "time_varying"],
    ),
    (
        "time-varying covariate whose window ends after the index",
        _trial('not_applied = ["died_within_48h"]\ntime_varying = ["vasopressor"]\n'),
        ["'vasopressor' has window [-24h, 24h], which ends after the index"],
    ),
    (
        "time-varying covariate also a baseline covariate",
        _trial('not_applied = ["died_within_48h"]\ncovariates = ["age", "lactate"]\ntime_varying = ["lactate"]\n')
        + '\n[concepts.lactate_lab]\ntable = "hosp/labevents"\nitemids = [50813]\n\n'
        '[covariates.lactate]\nconcept = "lactate_lab"\nwindow = "[-24h, 0h]"\nsummary = "max"\n',
        ["'lactate' is also in covariates"],
    ),
    (
        "min_ess not positive",
        _with("min_ess = 20", "min_ess = 0"),
        ["min_ess = 0 is invalid"],
    ),
]


@pytest.mark.parametrize("what,text,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_target_trial_sections_name_line_key_and_fix(what, text, fragments):
    with pytest.raises(StudySpecError) as err:
        parse_study_text(text, where="m.toml")
    message = str(err.value)
    assert "m.toml, line" in message, message
    for fragment in fragments:
        assert fragment in message, (what, message)


# --------------------------------------------------------------------------- the pipeline


def trial_cohort(n: int = 500, seed: int = 4, starters: float | None = None, early: float = 0.08) -> SimpleNamespace:
    """make_cohort's frame with exposure_start_days: the exposed start in (0, 2] days; some die early."""
    cohort = make_cohort(n=n, seed=seed)
    data = cohort.data.copy()
    rng = np.random.default_rng(seed + 100)
    if starters is not None:
        data["exposed"] = (rng.random(n) < starters).astype(int)
    # with starters set, every start is before day 1 (make_cohort's times are whole days >= 1)
    latest = 0.9 if starters is not None else 2.0
    start = np.where(data["exposed"] == 1, rng.uniform(0.05, latest, n).round(3), np.nan)
    # early deaths: a few patients die inside the grace window (immortal time when excluded)
    early = rng.random(n) < early
    data.loc[early, "death_time"] = rng.uniform(0.2, 1.9, early.sum()).round(2)
    data.loc[early, "death_status"] = 1
    data.loc[early, "krt_liberation_time"] = data.loc[early, "death_time"]
    data.loc[early, "krt_liberation_status"] = 2
    data["exposure_start_days"] = start
    return SimpleNamespace(attrition=cohort.attrition, data=data, notes=())


def _direct_frame(data: pd.DataFrame, outcome: str) -> pd.DataFrame:
    time_ = data[f"{outcome}_time"].to_numpy(float)
    start = data["exposure_start_days"].to_numpy(float)
    return pd.DataFrame(
        {
            "s": np.where(start <= time_, start, np.nan),
            "t": time_,
            "d": data[f"{outcome}_status"].to_numpy(int),
            "age": data["age"].to_numpy(float),
            "male": (data["sex"] == "M").astype(float).to_numpy(),
            "sepsis": data["sepsis"].to_numpy(float),
            "egfr": data["egfr_baseline"].to_numpy(float),
            "sofa": data["sofa"].to_numpy(float),
        }
    )


STUDY = load_study_file(FLAGSHIP)
COHORT = trial_cohort()


@pytest.fixture(scope="module")
def result():
    return analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=12)


@pytest.mark.parametrize("outcome,competing", [("death", False), ("krt_liberation", True)])
def test_trial_block_equals_a_direct_bootstrap_of_clone_censor_weight(result, outcome, competing):
    trial = result.target_trial[outcome]
    assert trial.skipped is None and trial.bootstrap is not None
    direct = bootstrap(
        _direct_frame(COHORT.data, outcome),
        n_replicates=12,
        seed=STUDY.study.seed,
        conf_level=0.95,
        start_time="s",
        grace_days=2.0,
        time="t",
        status="d",
        covariates=["age", "male", "sepsis", "egfr", "sofa"],
        horizon_days=90.0,
        censoring_model="pooled_logistic",
        interval_days=0.25,
        stabilised=True,
        truncate=(0.01, 0.99),
        competing=competing,
        min_ess=20.0,
    )
    pd.testing.assert_frame_equal(trial.bootstrap.intervals, direct.intervals)
    pd.testing.assert_frame_equal(trial.bootstrap.point.weights, direct.point.weights)
    assert trial.n_eligible == len(COHORT.data)
    # a start after this outcome's follow-up ended (e.g. after an early death) did not happen during it
    start, time_ = COHORT.data["exposure_start_days"], COHORT.data[f"{outcome}_time"]
    assert trial.n_started == int(((start <= 2) & (start <= time_)).sum())
    assert trial.not_applied == ("died_within_48h",)
    assert trial.past_index == ("support", "no_mg_index_day")
    # the trial does not touch the landmark analysis of the same cohort
    plain = analyse_cohort(
        COHORT, STUDY.model_copy(update={"analysis": STUDY.analysis.model_copy(update={"target_trial": None})})
    )
    assert [e.estimate for e in plain.estimates] == [e.estimate for e in result.estimates]


def test_the_bootstrap_gives_the_same_result_in_one_or_two_processes():
    one = analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=6, trial_processes=1)
    two = analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=6, trial_processes=2)
    for name in ("death", "krt_liberation"):
        a, b = one.target_trial[name].bootstrap, two.target_trial[name].bootstrap
        pd.testing.assert_frame_equal(a.replicates, b.replicates)
        pd.testing.assert_frame_equal(a.intervals, b.intervals)
        assert a.replicates.notna().all().all()
    assert one.notes == two.notes


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_trial_processes_must_be_a_whole_number_of_one_or_more(bad):
    with pytest.raises(InputError, match="trial_processes must be a whole number >= 1"):
        analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=3, trial_processes=bad)


def test_the_default_is_the_available_cores(monkeypatch):
    import retrocohort.designs as designs
    from retrocohort.study import pipeline

    seen = []
    real = designs.bootstrap

    def spy(*args, **kwargs):
        seen.append(kwargs["processes"])
        return real(*args, **{**kwargs, "processes": 1})

    monkeypatch.setattr(designs, "bootstrap", spy)  # _target_trial imports it from the package at call time
    monkeypatch.setattr(pipeline, "available_cores", lambda: 7)
    analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=3)
    assert seen == [3, 3]  # min(cores, replicates): no idle workers
    analyse_cohort(COHORT, STUDY, trial_cohort=COHORT, trial_replicates=9)
    assert seen[2:] == [7, 7]


def test_replicate_progress_is_called_per_replicate():
    calls = []
    analyse_cohort(
        COHORT, STUDY, trial_cohort=COHORT, trial_replicates=3, replicate_progress=lambda *a: calls.append(a)
    )
    assert calls == [(f"target_trial:{o}", d, 3) for o in ("death", "krt_liberation") for d in (1, 2, 3)]


def test_without_the_trial_cohort_the_trial_is_skipped_with_the_reason():
    res = analyse_cohort(COHORT, STUDY, trial_replicates=3)
    for trial in res.target_trial.values():
        assert trial.bootstrap is None
        assert "died_within_48h" in trial.skipped and "trial_cohort" in trial.skipped


def test_a_frame_without_exposure_start_days_is_skipped_with_the_reason():
    cohort = make_cohort(n=200, seed=2)
    res = analyse_cohort(cohort, STUDY, trial_cohort=cohort, trial_replicates=3)
    assert all("exposure_start_days" in t.skipped for t in res.target_trial.values())


@pytest.mark.parametrize(
    "starters,fragment",
    [(0.0, "no patient starts the exposure within the grace window"), (1.0, "all 500 patients start")],
)
def test_nobody_or_everybody_starting_is_a_skipped_trial_not_a_crash(starters, fragment):
    cohort = trial_cohort(starters=starters, early=0.0)
    res = analyse_cohort(cohort, STUDY, trial_cohort=cohort, trial_replicates=3)
    for trial in res.target_trial.values():
        assert trial.bootstrap is None and fragment in trial.skipped
    # the landmark analysis still ran (or said why not) and results.json still validates
    validate_results_document(results_document(res))


def test_a_skipped_trial_is_a_model_not_estimated_in_the_report_and_skipped_models_csv(tmp_path):
    cohort = trial_cohort(starters=0.0, early=0.0)
    res = analyse_cohort(cohort, STUDY, trial_cohort=cohort, trial_replicates=3)
    write_outputs(res, tmp_path / "out")
    skipped = pd.read_csv(tmp_path / "out" / "tables" / "skipped_models.csv")
    rows = skipped[skipped["model"] == "target_trial"]
    assert list(rows["outcome"]) == ["death", "krt_liberation"] and set(rows["population"]) == {"trial"}
    assert all("no patient starts the exposure within the grace window" in r for r in rows["reason"])
    page = (tmp_path / "out" / "report.html").read_text()
    section = page[page.index('<section id="skipped">') :]
    section = section[: section.index("</section>")]
    assert "The target trial emulation of death was not estimated: no patient starts the exposure" in section
    # no estimates of a skipped trial; its counts are still there
    assert pd.read_csv(tmp_path / "out" / "tables" / "target_trial.csv").empty
    counts = pd.read_csv(tmp_path / "out" / "tables" / "target_trial_counts.csv")
    assert set(counts["outcome"]) == {"death", "krt_liberation"}


def test_trial_tables_hold_the_estimates_weights_and_counts(result, tmp_path):
    write_outputs(result, tmp_path / "out")
    tables = tmp_path / "out" / "tables"
    est = pd.read_csv(tables / "target_trial.csv")
    for name in ("death", "krt_liberation"):
        boot = result.target_trial[name].bootstrap
        rows = est[est["outcome"] == name].set_index("quantity")
        assert list(rows.index) == ["risk_start", "risk_no_start", "risk_difference", "risk_ratio", "hazard_ratio"]
        for col in ("estimate", "lower", "upper"):
            np.testing.assert_allclose(rows[col], boot.intervals.loc[rows.index, col], rtol=1e-12)
        assert set(rows["interval"]) == {
            f"percentile bootstrap over patients, 12 of 12 replicates, seed {STUDY.study.seed}"
        }
        assert (rows["horizon_days"] == 90).all() and (rows["grace_days"] == 2).all()
    words = dict(zip(est["quantity"] + "/" + est["outcome"], est["estimand"], strict=True))
    assert words["risk_start/death"] == "risk under the strategy: start within the grace window"
    assert words["risk_start/krt_liberation"].startswith("cumulative incidence under the strategy")
    assert words["hazard_ratio/krt_liberation"].startswith("cause-specific hazard ratio")
    weights = pd.read_csv(tables / "target_trial_weights.csv")
    assert len(weights) == 4 and set(weights["strategy"]) == {"start", "no_start"}
    w = result.target_trial["death"].bootstrap.point.weights
    got = weights[weights["outcome"] == "death"].set_index("strategy")
    np.testing.assert_allclose(got.loc[w.index, "ess"], w["ess"], rtol=1e-12)
    np.testing.assert_allclose(got.loc[w.index, "p99"], w["p99"], rtol=1e-12)
    counts = pd.read_csv(tables / "target_trial_counts.csv", dtype=str)
    shown = study_disclosure(result).trial_counts["death"]
    assert dict(zip(counts[counts["outcome"] == "death"]["quantity"], counts["value"], strict=False)) == {
        k: str(v) for k, v in shown.items()
    }


def test_weights_below_the_ess_floor_are_refused_with_the_ess():
    trial = STUDY.analysis.target_trial.model_copy(update={"min_ess": 10_000.0})
    study = STUDY.model_copy(update={"analysis": STUDY.analysis.model_copy(update={"target_trial": trial})})
    res = analyse_cohort(COHORT, study, trial_cohort=COHORT, trial_replicates=3)
    reason = res.target_trial["death"].skipped
    assert "effective sample size" in reason and "below the floor of 10000" in reason


def test_patients_without_follow_up_after_the_index_are_left_out_with_a_note():
    cohort = trial_cohort()
    data = cohort.data.copy()
    data.loc[:6, "death_time"] = 0.0  # died at the index time
    data.loc[:6, "krt_liberation_time"] = 0.0
    cohort = SimpleNamespace(attrition=cohort.attrition, data=data, notes=())
    res = analyse_cohort(cohort, STUDY, trial_cohort=cohort, trial_replicates=3)
    trial = res.target_trial["death"]
    assert trial.n_eligible == len(data) - 7
    assert any("7 patients with no follow-up after the index" in n for n in trial.notes)


def test_trial_replicates_must_be_an_integer_of_two_or_more():
    for bad in (1, 2.5, True, "10"):
        with pytest.raises(InputError, match="trial_replicates must be an integer >= 2"):
            analyse_cohort(COHORT, STUDY, trial_replicates=bad)


# --------------------------------------------------------------------------- outputs


def test_results_json_block(result):
    doc = results_document(result)
    validate_results_document(doc)
    assert doc["schema_version"] == SCHEMA_VERSION == "2.1"
    block = doc["target_trial"]["death"]
    iv = result.target_trial["death"].bootstrap.intervals
    for key in ("risk_start", "risk_no_start", "risk_difference", "risk_ratio", "hazard_ratio"):
        assert block["estimates"][key] == {
            "estimate": iv.loc[key, "estimate"],
            "lower": iv.loc[key, "lower"],
            "upper": iv.loc[key, "upper"],
        }
    assert block["bootstrap"] == {"replicates": 12, "succeeded": 12, "failed": 0, "seed": 20231103, "conf_level": 0.95}
    assert block["protocol"]["not_applied"] == ["died_within_48h"]
    assert block["protocol"]["truncate_percentiles"] == [1.0, 99.0]
    assert block["protocol"]["covariates"] == ["age", "sex_M", "sepsis", "egfr_baseline", "sofa"]
    shown = study_disclosure(result).trial_counts["death"]
    assert block["counts"] == shown
    assert block["counts"]["eligible"] == 500 and block["counts"]["started"] == result.target_trial["death"].n_started
    w = result.target_trial["death"].bootstrap.point.weights
    assert block["weights"]["no_start"]["ess"] == w.loc["no_start", "ess"]
    assert doc["target_trial"]["krt_liberation"]["competing"] is True
    # a block naming an outcome the study lacks is refused
    doc["target_trial"]["nope"] = doc["target_trial"]["death"]
    with pytest.raises(InputError, match="target_trial: outcome 'nope'"):
        validate_results_document(doc)


def test_report_section_figure_and_summary_line(result, capsys):
    figures = study_figures(result)
    assert {"target_trial_death", "target_trial_krt_liberation"} <= set(figures)
    page = render_html(result, figures=figures)
    assert '<section id="target-trial">' in page and 'data-figure="target_trial_death"' in page
    # after the main results, before the methods
    assert page.index('id="results"') < page.index('id="target-trial"') < page.index('id="methods"')
    iv = result.target_trial["death"].bootstrap.intervals
    assert (
        f'data-key="target_trial/death/hazard_ratio/estimate" '
        f'data-value="{float(iv.loc["hazard_ratio", "estimate"])!r}"' in page
    )
    section = page[page.index('<section id="target-trial">') : page.index('<section id="methods">')]
    assert "not applied: died within 48 h of CKRT start" in section
    assert "Warning: applied criteria that look past time zero" in section
    landmark = result.estimate("death", "cox_adjusted", "matched")
    assert f"{landmark.estimate:.2f} ({landmark.lower:.2f}" in section  # the landmark HR beside the trial
    # what a reviewer looks for: the estimands named, the horizon, the interval's method, what the landmark drops
    assert "per-protocol effects" in section and "at the horizon of each outcome (day 90)" in section
    assert "Risk by day 90 under the strategy \u201cMg started within 48 h\u201d" in section
    assert f"percentile bootstrap over patients, 12 of 12 replicates, seed {STUDY.study.seed}" in section
    assert "Landmark analysis (matched cohort; excluded: died within 48 h of CKRT start)" in section
    assert "percentage points" in section and "Cumulative incidence difference by day 90" in section
    rd = result.target_trial["death"].bootstrap.intervals.loc["risk_difference"]
    shown = " ".join(f"{100 * rd[c]:.1f}".replace("-", "\u2212") for c in ("estimate", "lower", "upper"))
    assert "{} ({} to {})".format(*shown.split()) in section  # no "-27.5--3.8"
    assert "The two analyses answer different questions" in section
    cli.print_summary(result)
    out = capsys.readouterr().out
    hr = iv.loc["hazard_ratio"]
    line = re.sub(r"\s+", " ", out)
    assert (
        f"Target trial, Death by day 90: risk {100 * iv.loc['risk_start', 'estimate']:.1f}% (start) vs "
        f"{100 * iv.loc['risk_no_start', 'estimate']:.1f}% (no start); "
        f"RD {100 * iv.loc['risk_difference', 'estimate']:.1f} points "
        f"({100 * iv.loc['risk_difference', 'lower']:.1f} to {100 * iv.loc['risk_difference', 'upper']:.1f})"
        in line
        and f"95% percentile bootstrap CI, 12 of 12 replicates, seed {STUDY.study.seed})" in line
        and f"HR {hr['estimate']:.2f} ({hr['lower']:.2f}–{hr['upper']:.2f})" in line
    ), out
    assert "Target trial, KRT liberation by day 90" in line and "cause-specific HR" in line


def test_small_counts_of_the_trial_are_not_published(tmp_path):
    # 3 starters: below the threshold of 5; neither they nor the non-starters (eligible - 3) may be exact
    cohort = trial_cohort(n=300, seed=9)
    data = cohort.data.copy()
    starters = np.flatnonzero(data["exposure_start_days"].notna().to_numpy())
    data.loc[starters[3:], "exposure_start_days"] = np.nan
    cohort = SimpleNamespace(attrition=cohort.attrition, data=data, notes=())
    res = analyse_cohort(cohort, STUDY, trial_cohort=cohort, trial_replicates=3)
    assert res.target_trial["death"].n_started == 3
    shown = study_disclosure(res).trial_counts["death"]
    assert shown["started"] == "<5" and not isinstance(shown["not_started"], int)
    out = tmp_path / "out"
    write_outputs(res, out)
    doc = json.loads((out / "results.json").read_text())
    assert doc["target_trial"]["death"]["counts"]["started"] == "<5"
    page = (out / "report.html").read_text()
    assert 'data-key="target_trial/death/started" data-value="&lt;5"' in page
    not_started = doc["target_trial"]["death"]["counts"]["not_started"]
    assert not isinstance(not_started, int), not_started
    assert not re.search(rf"(?<![\d.]){len(data) - 3}(?![\d.])", json.dumps(doc["target_trial"]))


def test_cli_run_with_replicates_prints_the_trial_lines_and_writes_the_block(tmp_path):
    from typer.testing import CliRunner

    from retrocohort.sources.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "ehr", stays=200, seed=3)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(
        cli.app, ["run", str(FLAGSHIP), "--mimic", str(tmp_path / "ehr"), "--out", str(out), "--replicates", "3"]
    )
    text = re.sub(r"\s+", " ", res.output)
    # 200 stays leave too few patients for any model: the run writes everything and exits 3 (docs/cli.md,
    # "Exit codes"); the trial lines and the results.json block must be there all the same.
    assert res.exit_code == 3, res.output
    assert "Target trial, Death by day 90:" in text and "Target trial, KRT liberation by day 90:" in text
    doc = json.loads((out / "results.json").read_text())
    assert {t["bootstrap"]["replicates"] for t in doc["target_trial"].values()} == {3}
    bad = runner.invoke(
        cli.app, ["run", str(FLAGSHIP), "--mimic", str(tmp_path / "ehr"), "--out", str(out), "--replicates", "1"]
    )
    assert bad.exit_code == 2 and "--replicates" in bad.output
    bad = runner.invoke(
        cli.app, ["run", str(FLAGSHIP), "--mimic", str(tmp_path / "ehr"), "--out", str(out), "--processes", "0"]
    )
    assert bad.exit_code == 2 and "--processes" in bad.output


def test_time_varying_covariates_reach_the_censoring_model(tmp_path):
    from retrocohort.sources.synthetic import generate_synthetic
    from retrocohort.study.pipeline import run_study

    generate_synthetic(tmp_path / "ehr")
    text = _with("replicates = 500", 'replicates = 3\ntime_varying = ["mg_recent"]') + (
        '\n[covariates.mg_recent]\nconcept = "serum_mg"\nlabel = "Serum Mg, last in 24 h"\n'
        'window = "[-24h, 0h]"\nsummary = "last"\nmissing = "median"\n'
    )
    study = parse_study_text(text)
    res = run_study(tmp_path / "ehr", study)
    trial = res.target_trial["death"]
    assert trial.skipped is None, trial.skipped
    assert "mg_recent" in trial.bootstrap.point.censoring_coef.index
    assert "mg_recent" not in trial.options["covariates"] and trial.options["time_varying"] == ["mg_recent"]
