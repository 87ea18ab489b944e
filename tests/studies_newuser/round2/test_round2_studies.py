"""Round 2 of the new-user studies: six designs written from the docs only, run end to end on a synthetic EHR.

Each is checked (``retrocohort check --study``) and run (``retrocohort run``) through the command line on a
synthetic EHR of 600 stays with the tables of ``extra_tables`` and the rows of ``extra_rows`` added. What must
hold for all: no traceback, exit 0 when something was estimated and 3 when nothing could be (docs/cli.md),
the attrition lines in the order written with their labels, the labels in the terminal and the report. Two
designs are also counted by hand from the raw tables (pandas, not the builder): the active comparator of
prescriptions and the eMAR exposure with a microbiology washout.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app
from retrocohort.spec import load_study_file

from ..answer import expected_exit
from ..extra_tables import add_extra_tables
from .extra_rows import add_round2_rows, expected

HERE = Path(__file__).resolve().parent
STUDIES = sorted(HERE.glob("*.toml"))
runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(text.split())


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("round2") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 600, "--seed", 3)
    assert code == 0, text
    add_extra_tables(folder)
    add_round2_rows(folder)
    return folder


@pytest.fixture(scope="module")
def runs(ehr, tmp_path_factory) -> dict[str, tuple[int, str, dict]]:
    """Each study run once: exit code, terminal text, results.json."""
    done = {}
    for path in STUDIES:
        out = tmp_path_factory.mktemp("out") / path.stem
        code, text = invoke("run", path, "--mimic", ehr, "--out", out)
        done[path.stem] = (code, text, json.loads((out / "results.json").read_text()), out)
    return done


def _attrition(results: dict) -> dict[str, dict]:
    return {row["step"]: row for row in results["attrition"]}


def test_six_designs_unlike_round_one():
    assert len(STUDIES) == 6
    first_round = {load_study_file(p).study.name for p in HERE.parent.glob("*.toml")}
    assert not first_round & {load_study_file(p).study.name for p in STUDIES}


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_round2_study_checks_and_runs(path, ehr, runs):
    study = load_study_file(path)
    raw = tomllib.loads(path.read_text())
    code, text = invoke("check", ehr, "--study", path, "--no-count")
    assert code == 0, text

    code, text, results, out = runs[path.stem]
    assert code == expected_exit(results), text
    if code == 3:
        assert "Nothing could be estimated" in text or "No primary estimate" in text
    assert study.study.title in text and (out / "report.html").is_file()
    steps = [row["step"] for row in results["attrition"]]
    written = [c["name"] for c in raw.get("criteria", [])]
    assert [s for s in steps if s in written] == written
    by_step = _attrition(results)
    for crit in raw.get("criteria", []):
        assert crit["label"] in by_step[crit["name"]]["reason"]
    assert results["study"]["exposure_label"] == study.exposure.label


def test_active_comparator_of_prescriptions_counted_by_hand(ehr, runs):
    code, _, results, _ = runs["ppi_vs_h2"]
    # by hand: the first ICU stay of each patient, adult, alive at 24 h; the IV orders in [intime, intime + 24 h]
    stays = expected(ehr).sort_values(["subject_id", "intime", "stay_id"]).groupby("subject_id").head(1)
    patients = pd.read_csv(ehr / "hosp" / "patients.csv.gz")
    admissions = pd.read_csv(ehr / "hosp" / "admissions.csv.gz", parse_dates=["admittime", "deathtime"])
    frame = stays.merge(admissions[["hadm_id", "admittime", "deathtime"]], on="hadm_id").merge(
        patients[["subject_id", "anchor_age", "anchor_year", "dod"]], on="subject_id"
    )
    frame["age"] = frame.anchor_age + frame.admittime.dt.year - frame.anchor_year
    death = frame.deathtime.fillna(pd.to_datetime(frame.dod) + pd.Timedelta(seconds=86399))
    frame = frame[(frame.age >= 18) & ~(death <= frame.intime + pd.Timedelta(hours=24))]
    rx = pd.read_csv(ehr / "hosp" / "prescriptions.csv.gz", parse_dates=["starttime"])

    def started(drug: str) -> pd.Series:
        rows = rx[rx.drug.str.lower().str.contains(drug) & (rx.route.str.strip().str.upper() == "IV")]
        hits = frame[["subject_id", "intime"]].merge(rows[["subject_id", "starttime"]], on="subject_id")
        inside = hits[(hits.starttime >= hits.intime) & (hits.starttime <= hits.intime + pd.Timedelta(hours=24))]
        return frame.subject_id.isin(inside.subject_id)

    pant, famo = started("pantoprazole"), started("famotidine")
    steps = _attrition(results)
    assert steps["alive_24h"]["remaining"] == len(frame)
    assert steps["both_arms"]["excluded"] == int((pant & famo).sum())
    assert steps["neither_arm"]["excluded"] == int((~pant & ~famo).sum()) > 0
    assert results["counts"]["exposed"] == int((pant & ~famo).sum()) > 100
    assert results["counts"]["comparator"] == int((famo & ~pant).sum()) > 100
    assert code == 0 and any(e["outcome"] == "death" for e in results["estimates"])


def test_emar_exposure_and_culture_washout_counted_by_hand(ehr, runs):
    code, _, results, _ = runs["heparin_bsi"]
    stays = expected(ehr).sort_values(["subject_id", "intime", "stay_id"]).groupby("subject_id").head(1)
    patients = pd.read_csv(ehr / "hosp" / "patients.csv.gz")
    admissions = pd.read_csv(ehr / "hosp" / "admissions.csv.gz", parse_dates=["admittime"])
    frame = stays.merge(admissions[["hadm_id", "admittime"]], on="hadm_id").merge(patients, on="subject_id")
    frame = frame[frame.anchor_age + frame.admittime.dt.year - frame.anchor_year >= 18]
    micro = pd.read_csv(ehr / "hosp" / "microbiologyevents.csv.gz", parse_dates=["charttime"])
    positive = micro[(micro.spec_type_desc == "BLOOD CULTURE") & micro.org_name.notna()]
    hits = frame[["subject_id", "intime"]].merge(positive[["subject_id", "charttime"]], on="subject_id")
    prior = hits[(hits.charttime >= hits.intime - pd.Timedelta(days=7)) & (hits.charttime < hits.intime)]
    kept = frame[~frame.subject_id.isin(prior.subject_id)]
    emar = pd.read_csv(ehr / "hosp" / "emar.csv.gz", parse_dates=["charttime"])
    detail = pd.read_csv(ehr / "hosp" / "emar_detail.csv.gz", dtype={"route": str})
    sc = detail[detail.route.str.strip().str.upper() == "SC"].emar_id
    given = emar[
        emar.medication.str.lower().str.contains("heparin")
        & ~emar.event_txt.isin(["Not Given", "Held"])
        & emar.emar_id.isin(sc)
    ]
    h = kept[["subject_id", "intime"]].merge(given[["subject_id", "charttime"]], on="subject_id")
    exposed = h[(h.charttime > h.intime) & (h.charttime <= h.intime + pd.Timedelta(hours=24))].subject_id.nunique()

    # "Not Given" rows do not expose (status_exclude): counting them would expose more patients
    charted = emar[emar.medication.str.lower().str.contains("heparin") & emar.emar_id.isin(sc)]
    c = kept[["subject_id", "intime"]].merge(charted[["subject_id", "charttime"]], on="subject_id")
    with_not_given = c[(c.charttime > c.intime) & (c.charttime <= c.intime + pd.Timedelta(hours=24))]
    assert with_not_given.subject_id.nunique() > exposed
    steps = _attrition(results)
    assert steps["prior_bsi"]["excluded"] == len(frame) - len(kept) > 0
    assert results["counts"]["eligible"] == len(kept)
    assert results["counts"]["exposed"] == exposed > 100
    # a criterion and a covariate on the same built-in (charlson): once a RecursionError traceback
    assert code == 0 and {e["outcome"] for e in results["estimates"]} == {"bsi", "death"}


def test_index_on_a_lab_value_with_its_unit(runs):
    code, text, results, _ = runs["lactate_norepinephrine"]
    steps = _attrition(results)
    assert "first lactate > 4 mmol/L" in steps["index_event"]["reason"]
    assert 0 < steps["eligible"]["remaining"] < steps["index_event"]["remaining"]
    # MAP rows exist (extra_rows), so the median rule had values: nobody is lost to a missing MAP
    notes = " ".join(results["notes"])
    assert "map_min" not in " ".join(r["reason"] for r in results["attrition"] if r["excluded"])
    assert "no eligible patient has a value" not in notes
    # almost everyone starts norepinephrine within 6 h here: too few comparators for a model
    assert code == expected_exit(results), text


def test_categorical_covariate_with_a_missing_category_and_counts_criterion(runs):
    code, text, results, out = runs["hydrocortisone_shock"]
    notes = " ".join(results["notes"])
    assert "gcs_motor_missing" in notes and "'missing'" in notes
    steps = _attrition(results)
    assert steps["few_icu_admissions"]["excluded"] == 0  # nobody has 3 ICU admissions in a year here
    assert code == 0, text
    # GCS levels are numbers ("4", "5", "6") beside "missing": once refused by the models as a numeric column
    # with a typo, so every adjusted model was skipped
    assert not [s for s in results["skipped"] if "gcs_motor" in s["reason"]], results["skipped"]
    fitted = {(e["outcome"], e["model"], e["population"]) for e in results["estimates"]}
    assert {("death", "cox_adjusted", "matched"), ("vasopressor_free", "fine_gray_adjusted", "matched")} <= fitted
    table1 = pd.read_csv(out / "tables" / "table1_before.csv")
    levels = [str(v).strip() for v in table1.iloc[:, 0]]
    start = levels.index(next(v for v in levels if v.startswith("GCS motor score")))
    assert levels[start + 1 : start + 5] == ["4", "5", "6", "missing"]
    # subgroups by it: one line per level, in that order
    (sub,) = [s for s in results["subgroups"] if s["covariate"] == "gcs_motor"]
    assert [str(level["level"]) for level in sub["levels"]] == ["4", "5", "6", "missing"]


def test_one_index_per_icu_stay_with_a_kdigo_criterion(runs):
    code, text, results, _ = runs["albumin_aki"]
    assert "ICU stays" in results["attrition"][0]["reason"]
    steps = _attrition(results)
    assert steps["aki"]["excluded"] > 0 and "KDIGO" in steps["aki"]["reason"]
    assert code == expected_exit(results), text


def test_an_index_nobody_has_ends_with_exit_3_and_says_why(runs):
    code, text, results, _ = runs["transfusion_anaemia"]
    assert code == 3, text
    assert results["counts"]["eligible"] == 0 and results["estimates"] == []
    notes = " ".join(results["notes"])
    assert "no patient has an index event" in notes and "hb_low" in notes
    assert re.search(r"Nothing could be estimated", text)


def test_two_value_rules_on_one_built_in_and_many_built_ins_at_once(ehr, runs, tmp_path):
    # Found writing round 2: two criteria on one built-in stopped with "Duplicate column name 'crit_charlson'"
    # (a traceback), and a criterion plus a covariate on charlson with a RecursionError.
    text = (HERE / "heparin_bsi.toml").read_text()
    extra_rules = "".join(
        f'\n[[criteria]]\nname = "{name}"\nlabel = "{label}"\nrule = "include"\nconcept = "{concept}"\n{bound}\n'
        for name, label, concept, bound in (
            ("charlson_at_least_0", "Charlson 0 or more", "charlson", "value_min = 0"),
            ("sofa_at_most_20", "SOFA at most 20", "sofa", "value_max = 20"),
            ("kdigo_at_most_3", "KDIGO stage at most 3", "kdigo_stage", "value_max = 3"),
        )
    )
    covariates = "".join(
        f'\n[covariates.{name}]\nconcept = "{concept}"\n'
        for name, concept in (("sepsis3", "sepsis3"), ("kdigo", "kdigo_stage"), ("egfr", "egfr_baseline"))
    )
    head, tail = text.split("[exposure]")
    path = tmp_path / "sink.toml"
    path.write_text(head + extra_rules + "\n[exposure]" + tail + covariates, encoding="utf-8")
    out = tmp_path / "out"
    code, out_text = invoke("run", path, "--mimic", ehr, "--out", out)
    results = json.loads((out / "results.json").read_text())
    assert code == expected_exit(results), out_text
    steps = _attrition(results)
    for name in ("charlson_max_6", "charlson_at_least_0", "sofa_at_most_20", "kdigo_at_most_3"):
        assert name in steps
    # each rule reads the one charlson column: the first as in the study alone, the second drops nobody
    alone = _attrition(runs["heparin_bsi"][2])
    assert steps["charlson_max_6"]["remaining"] == alone["charlson_max_6"]["remaining"]
    assert steps["charlson_at_least_0"]["excluded"] == 0


@pytest.mark.parametrize("key", ["organisms", "routes"])
def test_an_empty_selector_list_is_refused_not_read_as_no_filter(key, tmp_path):
    # `organisms = []` was read as no organism filter: "positive blood culture" became every blood culture
    from retrocohort.errors import StudySpecError

    text = (HERE / "heparin_bsi.toml").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = ["))
    number = text.splitlines().index(line) + 1
    path = tmp_path / "empty.toml"
    path.write_text(text.replace(line, f"{key} = []"), encoding="utf-8")
    expected_message = rf"line {number}: concepts\.\w+\.{key} = \[\] .*empty list selects nothing"
    with pytest.raises(StudySpecError, match=expected_message):
        load_study_file(path)
