"""End-to-end tests of the ``retrocohort`` command (typer's CliRunner, in process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from retrocohort.cli import app
from retrocohort.report import figures as report_figures
from retrocohort.study.outputs import validate_results_document
from tests.study.test_outputs import identifiers, leaked

runner = CliRunner()
STUDY_FILE = Path(__file__).resolve().parents[1] / "studies" / "magnesium_ckrt.toml"


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result, " ".join(text.split())


@pytest.fixture(scope="module")
def small_ehr(tmp_path_factory) -> Path:
    """The smallest synthetic EHR the generator writes (a cohort of a handful of patients), via `synth`."""
    path = tmp_path_factory.mktemp("ehr") / "small"
    result, text = invoke("synth", "--out", path, "--stays", 200, "--seed", 3)
    assert result.exit_code == 0, text
    truth = json.loads((path / "SYNTHETIC.json").read_text())["studies"]
    # the planted effects of every shipped study, by outcome name
    assert f"magnesium_ckrt: hr_death = {truth['magnesium_ckrt']['hr_death']:g}" in text
    assert f"shr_krt_liberation = {truth['magnesium_ckrt']['shr_krt_liberation']:g}" in text
    assert (path / "hosp" / "patients.csv.gz").is_file() and (path / "icu" / "procedureevents.csv.gz").is_file()
    return path


def test_help_lists_commands_with_examples():
    result, text = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "run", "synth", "check"):
        assert command in text
    assert "retrocohort demo --out" in text
    result, text = invoke("run", "--help")
    assert result.exit_code == 0 and "--mimic" in text and "Example" in text


def test_bad_study_file_is_a_readable_error(tmp_path, small_ehr):
    bad = tmp_path / "bad.toml"
    text = STUDY_FILE.read_text().replace("caliper = 0.2", "calipr = 0.2")
    bad.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if ln.startswith("calipr"))
    result, out = invoke("run", bad, "--mimic", small_ehr, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert f"line {line}" in out and "did you mean 'caliper'" in out
    assert "Traceback" not in out
    assert not (tmp_path / "out").exists()


def test_bad_value_names_the_allowed_ones(tmp_path, small_ehr):
    bad = tmp_path / "bad.toml"
    bad.write_text(STUDY_FILE.read_text().replace('order = "largest"', 'order = "biggest"'))
    result, out = invoke("run", bad, "--mimic", small_ehr, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "biggest" in out and "largest" in out and "Traceback" not in out


def test_existing_output_folder_without_force(tmp_path, small_ehr):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result, text = invoke("run", STUDY_FILE, "--mimic", small_ehr, "--out", out)
    assert result.exit_code == 2
    assert "already exists" in text and "--force" in text and "Traceback" not in text
    assert (out / "mine.txt").read_text() == "keep"


def test_missing_table(tmp_path, small_ehr):
    broken = tmp_path / "mimic"
    shutil.copytree(small_ehr, broken)
    (broken / "hosp" / "labevents.csv.gz").unlink()
    # without a study, check cannot know labevents is needed: it says it is absent and who reads it
    result, text = invoke("check", broken, "--headers-only")
    assert result.exit_code == 0, text
    assert "hosp/labevents" in text and "absent" in text and "creatinine" in text
    # the study reads it: check --study and run fail, naming the table and the study's concepts
    result, text = invoke("run", STUDY_FILE, "--mimic", broken, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "labevents" in text and "serum_mg" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()
    (broken / "icu" / "icustays.csv.gz").unlink()
    result, text = invoke("check", broken, "--headers-only")
    assert result.exit_code == 2 and "icu/icustays" in text and "no study can run" in text


def test_check_complete_folder(small_ehr):
    result, text = invoke("check", small_ehr)
    assert result.exit_code == 0, text
    assert "icu/procedureevents" in text and "Every required table" in text


def test_tiny_cohort_run_says_why_models_were_skipped(tmp_path, small_ehr):
    out = tmp_path / "tiny"
    result, text = invoke("run", STUDY_FILE, "--mimic", small_ehr, "--out", out)
    # Nothing estimable on a handful of patients: the outputs are written, but the exit code says so (3).
    assert result.exit_code == 3, text
    assert "Nothing could be estimated" in text and "Exit code 3" in text and "Traceback" not in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["estimates"] == []
    validate_results_document(doc)
    assert doc["synthetic"] is True and doc["planted"]["death"] == {
        "estimand": "hr",
        "value": json.loads((small_ehr / "SYNTHETIC.json").read_text())["truth"]["hr_death"],
    }
    assert doc["skipped"], "a cohort of a handful of patients must skip some models"
    assert "skipped" in text
    for skipped in doc["skipped"]:
        assert skipped["reason"] in " ".join(text.split()) or len(skipped["reason"]) > 20
    assert (out / "tables" / "attrition.csv").is_file() and (out / "tables" / "table1_before.csv").is_file()
    assert doc["attrition"][0]["step"]


def test_interrupted_run_leaves_no_report(tmp_path, small_ehr, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_figures, "flow_diagram", interrupted)
    out = tmp_path / "out"
    result, _ = invoke("run", STUDY_FILE, "--mimic", small_ehr, "--out", out)
    assert result.exit_code != 0
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_synth_refuses_non_empty_folder(tmp_path):
    target = tmp_path / "ehr"
    target.mkdir()
    (target / "x.txt").write_text("x")
    for extra in ((), ("--force",)):
        result, text = invoke("synth", "--out", target, "--stays", 200, "--seed", 1, *extra)
        assert result.exit_code == 2 and "not a synthetic EHR" in text
    assert [p.name for p in target.iterdir()] == ["x.txt"]


@pytest.mark.slow
def test_demo_runs_the_flagship_study_file(tmp_path):
    out, data = tmp_path / "demo", tmp_path / "data"
    result, text = invoke("demo", "--out", out, "--data", data)
    assert result.exit_code == 0, text
    doc = json.loads((out / "results.json").read_text())
    validate_results_document(doc)
    counts = doc["counts"]
    # the published flow (ASN Kidney Week 2023): 629 screened, 333 eligible, 37 + 296
    assert (counts["eligible"], counts["exposed"], counts["comparator"]) == (333, 37, 296)
    steps = {line["step"]: line["remaining"] for line in doc["attrition"]}
    assert steps["support"] == 629 and doc["attrition"][0]["remaining"] == counts["indexed"] > 629
    # Matched cohort close to the published 34 + 68.
    # A matched count may be shown as a range (it would give the few unmatched exposed back).
    from retrocohort.report.suppression import parse_count_display

    me, mu = (parse_count_display(counts[k]) for k in ("matched_exposed", "matched_comparator"))
    assert abs(me[0] - 34) <= 4 and abs(mu[0] - 68) <= 8
    assert mu[0] <= 2 * me[1]
    main = {(e["outcome"], e["model"], e["population"]): e for e in doc["estimates"]}
    death = main[("death", "cox_adjusted", "matched")]
    assert death["lower"] < death["estimate"] < death["upper"]
    assert ("krt_liberation", "fine_gray_adjusted", "matched") in main
    # The terminal shows ours next to the published HRs of the study file, with its labels.
    # (a narrow terminal wraps the table cells, so the numbers are looked for one by one)
    for number in ("0.38", "0.18", "0.83", "2.07", "1.23", "3.49"):
        assert number in text, number
    assert "Death by day" in text and "KRT liberation by day" in text and "Mg dose" in text

    # No identifier and no index date of the cohort in any output file.
    from tests.cohort.legacy import extract

    cohort = extract(data)
    patients = pd.read_csv(data / "hosp" / "patients.csv.gz", usecols=["subject_id"])
    ids, dates = identifiers(cohort.data)
    ids |= set(patients["subject_id"].astype(str))
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert not leaked(path, ids, dates), f"{path.name} leaks identifiers or index dates"


def test_run_refuses_a_legacy_study_file_with_directions(tmp_path, small_ehr):
    legacy = tmp_path / "legacy.toml"
    legacy.write_text('[study]\nname = "old"\n[cohort]\nfirst_stay_only = true\n[models]\nties = "efron"\n')
    result, text = invoke("run", legacy, "--mimic", small_ehr, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in text
    assert "old study-file format" in text and "docs/study-language.md" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["vasopressin_shock", "thiamine_sepsis"])
def test_run_a_non_flagship_study_labels_everything_from_it(tmp_path, small_ehr, name):
    # the issue: another study's file must not print the flagship's labels, outcomes or planted truth
    out = tmp_path / name
    result, text = invoke("run", STUDY_FILE.parent / f"{name}.toml", "--mimic", small_ehr, "--out", out)
    # 0 when something was estimated on this small EHR, 3 (outputs written) when nothing could be
    assert result.exit_code == (0 if json.loads((out / "results.json").read_text())["estimates"] else 3), text
    for flagship_only in ("Mg", "CKRT", "KRT liberation", "by day 90", "0.38", "2.07"):
        assert flagship_only not in text, flagship_only
    assert "Death by day 28" in text
    doc = json.loads((out / "results.json").read_text())
    planted = json.loads((small_ehr / "SYNTHETIC.json").read_text())["studies"][name]
    assert doc["planted"]["death"]["value"] == planted["hr_death"]


def test_help_shows_section_names_in_brackets():
    # rich markup once swallowed "[analysis.target_trial]" from the --replicates help of run and demo
    for command in ("run", "demo"):
        result, text = invoke(command, "--help")
        assert result.exit_code == 0 and "([analysis.target_trial])" in text, text


def test_shared_options_are_declared_alike_in_every_command():
    import typer.main

    group = typer.main.get_command(app)
    params = {
        name: {p.name: p for p in group.commands[name].params}  # type: ignore[attr-defined]
        for name in ("run", "validate", "demo", "check", "convert")
    }
    for option, commands in (
        ("mimic", ("run", "validate")),
        ("study_file", ("run", "validate")),
        ("replicates", ("run", "demo")),
        ("processes", ("run", "demo")),
        ("memory_limit", ("run", "validate", "demo")),
        ("threads", ("run", "validate", "demo")),
    ):
        first = params[commands[0]][option]
        for command in commands[1:]:
            other = params[command][option]
            described = [(p.opts, p.help, p.default, p.required, getattr(p, "min", None)) for p in (first, other)]
            assert described[0] == described[1], (option, command)
    assert params["run"]["mimic"].required and getattr(params["demo"]["replicates"], "min", None) == 2
