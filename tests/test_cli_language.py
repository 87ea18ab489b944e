"""The study-language commands: `new`, `check --study`, `convert` (CliRunner; exit codes; no traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app
from retrocohort.sources.convert import available_tables
from retrocohort.spec import load_study_file
from retrocohort.spec.template import fill_examples
from tests.cohort.minimimic import MiniMimic

runner = CliRunner()
# the flagship (in the study language since issue 9)
LEGACY_STUDY = Path(__file__).resolve().parents[1] / "studies" / "magnesium_ckrt.toml"


def invoke(*args: object):
    # A wide terminal: rich folds a long line (a tmp path) at the console's width, and a folded path no longer
    # matches. The width is fixed when cli's consoles are made (COLUMNS=80 in a pytest-xdist worker), so
    # CliRunner(env=...) cannot widen them: the run gets consoles of 1000 columns instead.
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, " ".join(text.split())


def mimic() -> MiniMimic:
    """Norepinephrine for 4 patients, vasopressin (222315) for 2 of them."""
    m = MiniMimic()
    for subject in (1, 2, 3, 4):
        p = m.ckrt_patient(subject)
        if subject in (2, 4):
            m.input(
                subject,
                p["hadm_id"],
                p["stay_id"],
                222315,
                p["index"] + pd.Timedelta(hours=2),
                p["index"] + pd.Timedelta(hours=8),
                amount=2.4,
                amountuom="units",
            )
    return m


# --------------------------------------------------------------------------- new


def test_new_writes_a_template_that_loads_once_filled(tmp_path):
    path = tmp_path / "Thiamine Sepsis.toml"
    result, text = invoke("new", path)
    assert result.exit_code == 0, text
    assert "fill the 12 places marked" in text
    assert f"retrocohort check DATA --study {path}" in text
    assert f"retrocohort run {path} --mimic DATA --out OUT" in text  # `run` reads the language
    filled = tmp_path / "filled.toml"
    filled.write_text(fill_examples(path.read_text()))
    assert load_study_file(filled).study.name == "thiamine_sepsis"


def test_new_refuses_to_overwrite_and_bad_paths(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("# mine\n")
    result, text = invoke("new", path)
    assert result.exit_code == 2
    assert "already exists" in text and "--force" in text
    assert path.read_text() == "# mine\n"
    result, _ = invoke("new", path, "--force")
    assert result.exit_code == 0 and "<fill:" in path.read_text()
    result, text = invoke("new", tmp_path / "s.txt")
    assert result.exit_code == 2 and "ends in .toml" in text
    result, text = invoke("new", tmp_path / "no" / "such" / "s.toml")
    assert result.exit_code == 2 and "does not exist" in text
    (tmp_path / "dir.toml").mkdir()
    result, text = invoke("new", tmp_path / "dir.toml", "--force")
    assert result.exit_code == 2 and "is not a file" in text


# --------------------------------------------------------------------------- check --study


def test_check_study_on_raw_template_says_what_to_fill(tmp_path):
    folder = mimic().write(tmp_path / "csv")
    invoke("new", tmp_path / "s.toml")
    result, text = invoke("check", folder, "--study", tmp_path / "s.toml")
    assert result.exit_code == 2
    assert "12 place(s) of the template still to fill in" in text
    assert "exposure.window: still a placeholder" in text


def test_check_study_lists_concepts_tables_and_suppressed_counts(tmp_path):
    folder = mimic().write(tmp_path / "csv")
    invoke("new", tmp_path / "s.toml")
    study = tmp_path / "s.toml"
    study.write_text(fill_examples(study.read_text()))
    result, text = invoke("check", folder, "--study", study)
    assert result.exit_code == 0, text
    # 4 norepinephrine rows (4 patients) and 2 vasopressin rows: below the study's threshold of 5
    assert "index_event │ user │ icu/inputevents │ <5 │ <5 │ found" in text
    assert "treatment │ user │ icu/inputevents │ <5 │ <5 │ found" in text
    assert "age │ baseline" in text and "not counted" in text
    assert "Every table and column the study's concepts read is present" in text
    # with the threshold off, the exact counts
    study.write_text(study.read_text().replace("small_cell_threshold = 5", "small_cell_threshold = 0"))
    result, text = invoke("check", folder, "--study", study)
    assert "index_event │ user │ icu/inputevents │ 4 │ 4 │ found" in text
    assert "treatment │ user │ icu/inputevents │ 2 │ 2 │ found" in text


def test_check_study_exit_codes_for_absent_table_and_empty_concept(tmp_path):
    invoke("new", tmp_path / "s.toml")
    study = tmp_path / "s.toml"
    text_filled = fill_examples(study.read_text()).replace("itemids = [222315]", "itemids = [1]")
    study.write_text(text_filled)
    folder = mimic().write(tmp_path / "csv")
    result, text = invoke("check", folder, "--study", study)
    assert result.exit_code == 0, text  # a concept that finds nothing is a warning
    assert "warning: concept treatment: finds no rows in icu/inputevents" in text
    no_labs = mimic().write(tmp_path / "nolabs", omit=("hosp/labevents",))
    lab_study = tmp_path / "lab.toml"
    treatment = 'table = "icu/inputevents"\nitemids = [1]\nstatus_exclude = ["Rewritten"]'
    assert treatment in text_filled
    lab_study.write_text(text_filled.replace(treatment, 'table = "hosp/labevents"\nitemids = [50813]'))
    result, text = invoke("check", no_labs, "--study", lab_study)
    assert result.exit_code == 2
    assert "cannot be read from" in text and "treatment: reads hosp/labevents, absent from" in text
    result, text = invoke("check", tmp_path / "nowhere", "--study", study)
    assert result.exit_code == 2 and "is not a folder" in text
    result, text = invoke("check", folder, "--study", tmp_path / "missing.toml")
    assert result.exit_code == 2 and "not found" in text


def test_check_study_with_a_legacy_study_file_says_so(tmp_path):
    legacy = tmp_path / "legacy.toml"  # the head of the old format's flagship file
    legacy.write_text(
        '[study]\nname = "magnesium_ckrt"\n\n[cohort]\nfirst_stay_only = true\n\n'
        '[propensity]\ncovariates = ["age", "sex"]\n\n[models]\nties = "efron"\n'
    )
    result, text = invoke("check", mimic().write(tmp_path / "csv"), "--study", legacy)
    assert result.exit_code == 2
    assert "old study-file format" in text and "docs/study-language.md" in text


def test_check_study_no_count(tmp_path):
    invoke("new", tmp_path / "s.toml")
    study = tmp_path / "s.toml"
    study.write_text(fill_examples(study.read_text()))
    result, text = invoke("check", mimic().write(tmp_path / "csv"), "--study", study, "--no-count")
    assert result.exit_code == 0, text
    assert "index_event │ user │ icu/inputevents │ — │ — │ not counted" in text


# --------------------------------------------------------------------------- convert


def test_convert_then_run_reads_the_parquet_copy_with_identical_results(tmp_path):
    ehr, pq = tmp_path / "ehr", tmp_path / "pq"
    result, text = invoke("synth", "--out", ehr, "--stays", 200, "--seed", 3)
    assert result.exit_code == 0, text
    result, text = invoke("convert", ehr, pq)
    assert result.exit_code == 0, text
    # every table the generator wrote (their number grows with the synthetic studies), none left out
    assert f"Converted {len(available_tables(ehr))} table(s)" in text and "icu/inputevents" in text
    assert len(available_tables(pq)) == len(available_tables(ehr)) >= 11
    assert (pq / "SYNTHETIC.json").is_file() and (pq / "icu" / "chartevents.parquet").is_file()
    outputs = []
    for name, data in (("csv", ehr), ("parquet", pq)):
        result, text = invoke("run", LEGACY_STUDY, "--mimic", data, "--out", tmp_path / name)
        assert result.exit_code == 3, text  # the smallest EHR fits no model: outputs written, exit 3
        doc = json.loads((tmp_path / name / "results.json").read_text())
        doc.pop("provenance")
        outputs.append(doc)
    # the smallest synthetic EHR fits no model, but the cohort flow is there, and identical
    assert outputs[0]["attrition"] and outputs[0]["counts"]["indexed"] > 0
    assert outputs[0] == outputs[1]


def test_convert_refuses_overwrite_subset_and_errors(tmp_path):
    folder = mimic().write(tmp_path / "csv")
    pq = tmp_path / "pq"
    result, text = invoke("convert", folder, pq, "--table", "labevents", "--table", "icu/icustays")
    assert result.exit_code == 0, text
    assert sorted(p.name for p in pq.rglob("*.parquet")) == ["icustays.parquet", "labevents.parquet"]
    result, text = invoke("convert", folder, pq, "--table", "labevents")
    assert result.exit_code == 2 and "already converted" in text and "--force" in text
    result, text = invoke("convert", folder, pq, "--table", "labevents", "--force", "--memory-limit", "500MB")
    assert result.exit_code == 0, text
    result, text = invoke("convert", folder, tmp_path / "pq2", "--table", "hosp/labevnts")
    assert result.exit_code == 2 and "did you mean 'hosp/labevents'" in text
    result, text = invoke("convert", tmp_path / "missing", tmp_path / "pq3")
    assert result.exit_code == 2 and "not found" in text
    result, text = invoke("convert", folder, folder)
    assert result.exit_code == 2 and "is the MIMIC-IV folder itself" in text


def test_convert_truncated_gzip_exit_2_names_the_file(tmp_path):
    m = mimic()
    for i in range(3000):
        m.rows["hosp/labevents"].append(dict(m.rows["hosp/labevents"][0], labevent_id=10_000 + i, valuenum=i / 7))
    folder = m.write(tmp_path / "csv")
    labs = folder / "hosp" / "labevents.csv.gz"
    labs.write_bytes(labs.read_bytes()[: labs.stat().st_size // 2])
    result, text = invoke("convert", folder, tmp_path / "pq")
    assert result.exit_code == 2
    assert "labevents.csv.gz: the compressed file ends early or is damaged" in text and "download it again" in text
    assert not (tmp_path / "pq" / "hosp" / "labevents.parquet").exists()


@pytest.mark.parametrize("command", ["new", "convert"])
def test_help_has_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example: retrocohort " + command in " ".join(result.output.split())
