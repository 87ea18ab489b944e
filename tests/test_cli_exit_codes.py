"""Exit codes of every command (docs/cli.md, "Exit codes"): 0 analysed, 2 bad input / refused / interrupted,
3 ran and wrote what it could but nothing could be estimated; and the refusals of ``--out`` and Ctrl-C."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import EXIT_NOTHING_ESTIMATED, EXIT_USER_ERROR, app

runner = CliRunner()
STUDIES = Path(__file__).resolve().parents[1] / "studies"
VASO = STUDIES / "vasopressin_shock.toml"


def invoke(*args: object) -> tuple[int, str]:
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text, text
    # every ending is a deliberate exit, never an exception escaping the command
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(text.split())


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("exitcodes") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 600, "--seed", 3)
    assert code == 0, text
    return folder


def nobody_study(folder: Path) -> Path:
    """The vasopressin study with an age limit nobody reaches: a valid study whose eligible cohort is empty."""
    text = VASO.read_text()
    assert "\nmin_age = 18\n" in text
    path = folder / "nobody.toml"
    path.write_text(text.replace("\nmin_age = 18\n", "\nmin_age = 120\n"), encoding="utf-8")
    return path


def test_exit_codes_are_distinct_and_documented():
    assert (EXIT_USER_ERROR, EXIT_NOTHING_ESTIMATED) == (2, 3)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert "## Exit codes" in doc and "| 3 |" in doc and "| 2 |" in doc
    code, text = invoke("--help")
    assert code == 0 and "Exit codes: 0 done; 2 bad input" in text and "3 ran and wrote its outputs" in text


def test_run_that_estimates_exits_0(ehr, tmp_path):
    out = tmp_path / "out"
    code, text = invoke("run", VASO, "--mimic", ehr, "--out", out)
    doc = json.loads((out / "results.json").read_text())
    assert doc["estimates"], "the vasopressin study estimates hazard ratios on this EHR"
    assert code == 0, text
    assert "Nothing could be estimated" not in text


def test_run_with_an_empty_cohort_writes_its_outputs_and_exits_3(ehr, tmp_path):
    out = tmp_path / "out"
    code, text = invoke("run", nobody_study(tmp_path), "--mimic", ehr, "--out", out)
    assert code == EXIT_NOTHING_ESTIMATED, text
    assert "Nothing could be estimated" in text and "Exit code 3" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["estimates"] == [] and doc["counts"]["eligible"] == 0
    assert (out / "tables" / "attrition.csv").is_file() and (out / "report.html").is_file()


def test_validate_on_a_cohort_too_small_exits_3_and_writes_nothing(ehr, tmp_path):
    out = tmp_path / "check"
    code, text = invoke("validate", nobody_study(tmp_path), "--mimic", ehr, "--out", out, "--replicates", 2)
    assert code == EXIT_NOTHING_ESTIMATED, text
    assert "too small to simulate from" in text and "exit code 3" in text
    assert not out.exists()


def test_validate_bad_option_still_exits_2(ehr, tmp_path):
    code, text = invoke("validate", VASO, "--mimic", ehr, "--out", tmp_path / "o", "--effect", "0")
    assert code == EXIT_USER_ERROR, text


def test_check_study_with_a_table_every_study_reads_absent_exits_2_after_the_whole_inventory(ehr, tmp_path):
    folder = tmp_path / "mimic"
    shutil.copytree(ehr, folder)
    # read by the cohort builder only (no concept names it): it used to be a yellow line and exit 0
    (folder / "icu" / "icustays.csv.gz").unlink()
    code, text = invoke("check", folder, "--study", VASO, "--no-count")
    assert code == EXIT_USER_ERROR, text
    # the whole inventory is printed first: both tables, every concept of the study
    assert "Tables of vasopressin_shock" in text and "Concepts of the study" in text
    for concept in ("norepinephrine", "vasopressin", "lactate"):
        assert concept in text, concept
    assert "icu/icustays (read by every study) is absent" in text and "cannot run" in text
    # the folder complete: 0
    code, text = invoke("check", ehr, "--study", VASO, "--no-count")
    assert code == 0, text


def test_check_study_with_a_concept_table_absent_exits_2(ehr, tmp_path):
    folder = tmp_path / "mimic"
    shutil.copytree(ehr, folder)
    (folder / "icu" / "inputevents.csv.gz").unlink()
    code, text = invoke("check", folder, "--study", VASO, "--no-count")
    assert code == EXIT_USER_ERROR, text
    assert "icu/inputevents" in text and "Concepts of the study" in text


@pytest.mark.parametrize("command", ["run", "validate", "demo"])
def test_out_a_file_an_unwritable_place_or_a_foreign_folder_is_refused(command, ehr, tmp_path):
    args = {"run": ["run", VASO, "--mimic", ehr], "validate": ["validate", VASO, "--mimic", ehr], "demo": ["demo"]}
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    cases = [
        (a_file, (), "not a folder"),
        (a_file / "sub", (), "is a file"),
        ("/proc/retrocohort-out", (), "not writable"),
        (foreign, (), "already exists"),
        (foreign, ("--force",), "does not look like an earlier retrocohort output"),
    ]
    for out, extra, words in cases:
        code, text = invoke(*args[command], "--out", out, *extra)
        assert code == EXIT_USER_ERROR, (out, text)
        assert words in text, (out, words, text)
    assert a_file.read_text() == "keep" and [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_convert_into_a_file_an_unwritable_place_or_a_foreign_folder_is_refused(ehr, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    for out, words in (
        (a_file, "not a folder"),
        (a_file / "sub", "is a file"),
        ("/proc/parquet", "not writable"),
        (foreign, "not a Parquet copy"),
    ):
        code, text = invoke("convert", ehr, out, "--table", "patients")
        assert code == EXIT_USER_ERROR, (out, text)
        assert words in text and "PARQUET_DIR" in text and "--out" not in text, (out, text)
    assert a_file.read_text() == "keep" and [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # an earlier copy is not foreign: a further table goes beside it
    copy = tmp_path / "copy"
    assert invoke("convert", ehr, copy, "--table", "patients")[0] == 0
    code, text = invoke("convert", ehr, copy, "--table", "admissions")
    assert code == 0, text
    assert (copy / "hosp" / "patients.parquet").is_file() and (copy / "hosp" / "admissions.parquet").is_file()


def test_new_under_a_file_is_refused(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    code, text = invoke("new", a_file / "study.toml")
    assert code == EXIT_USER_ERROR and "is a file, not a folder" in text
    code, text = invoke("new", "/proc/study.toml")
    assert code == EXIT_USER_ERROR and "cannot be written" in text


def _interrupted(*args, **kwargs):
    raise KeyboardInterrupt


# Each command, with the function it calls once under way replaced by a Ctrl-C.
INTERRUPTS = {
    "run": ("retrocohort.study.pipeline.run_study", lambda ehr, tmp: ["run", VASO, "--mimic", ehr, "--out", tmp / "o"]),
    "validate": (
        "retrocohort.study.validate.validate",
        lambda ehr, tmp: ["validate", VASO, "--mimic", ehr, "--out", tmp / "o", "--replicates", 2],
    ),
    "demo": ("retrocohort.sources.synthetic.generate_synthetic", lambda ehr, tmp: ["demo", "--out", tmp / "o"]),
    "synth": ("retrocohort.sources.synthetic.generate_synthetic", lambda ehr, tmp: ["synth", "--out", tmp / "o"]),
    "check": ("retrocohort.sources.check_source", lambda ehr, tmp: ["check", ehr]),
    "check --study": ("retrocohort.cohort.inventory.study_inventory", lambda ehr, tmp: ["check", ehr, "--study", VASO]),
    "new": ("retrocohort.spec.template.template_text", lambda ehr, tmp: ["new", tmp / "s.toml"]),
    "convert": ("retrocohort.sources.convert.convert_mimic", lambda ehr, tmp: ["convert", ehr, tmp / "o"]),
}


@pytest.mark.parametrize("command", list(INTERRUPTS))
def test_ctrl_c_in_every_command_exits_2_without_a_traceback(command, ehr, tmp_path):
    target, args = INTERRUPTS[command]
    work = tmp_path / "work"
    work.mkdir()
    with mock.patch(target, _interrupted):
        code, text = invoke(*args(ehr, work))
    assert code == EXIT_USER_ERROR, text
    assert "interrupted" in text
    assert [p.name for p in work.iterdir()] == [], "nothing written"


def test_demo_on_an_ehr_too_small_for_any_model_writes_its_outputs_and_exits_3(tmp_path):
    out = tmp_path / "demo"
    code, text = invoke("demo", "--out", out, "--stays", 200, "--seed", 3, "--replicates", 2)
    doc = json.loads((out / "results.json").read_text())
    assert doc["estimates"] == [] and doc["skipped"]
    assert code == EXIT_NOTHING_ESTIMATED, text
    assert "Nothing could be estimated" in text and (out / "report.html").is_file()


def test_validate_that_fits_nothing_in_any_replicate_exits_3_after_writing(ehr, tmp_path):
    import pandas as pd

    from retrocohort.spec import load_study_file

    study = load_study_file(VASO)
    summary = pd.DataFrame(
        [
            {
                "effect": 0.7,
                "outcome": "death",
                "model": "cox_adjusted",
                "population": "matched",
                "fitted": 0,
                "skipped_share": 1.0,
            }
        ]
    )
    result = SimpleNamespace(summary=summary, notes=(), n_replicates=2, seed=1, study=study)
    written = []
    with (
        mock.patch("retrocohort.study.validate.validate", lambda *a, **k: result),
        mock.patch("retrocohort.study.validate.write_validation_outputs", lambda r, out, **k: written.append(out)),
    ):
        code, text = invoke("validate", VASO, "--mimic", ehr, "--out", tmp_path / "o", "--replicates", 2)
    assert code == EXIT_NOTHING_ESTIMATED, text
    assert written == [tmp_path / "o"] and "never fitted" in text and "Exit code 3" in text
