"""The commands a user points at damaged data: `check`, `convert`, `run` (flagship and a second study).

In process through typer's CliRunner, as tests/test_cli.py does. A fault ends with exit code 2, the file
named, no traceback; a harmless shape ends with exit 0 and the same numbers as the undamaged folder.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli import invoke

from .conftest import FLAGSHIP, OTHER_STUDY, Baseline, checked
from .damage import read_rows, read_text, set_value, table_path, write_rows, write_text

P, A, ICU, LAB = "hosp/patients", "hosp/admissions", "icu/icustays", "hosp/labevents"


def fails(*args: object, words: tuple[str, ...]) -> str:
    result, text = invoke(*[str(a) for a in args])
    assert result.exit_code == 2, text
    assert "Traceback" not in text and "error:" in text
    for word in words:
        assert word in text, f"{word!r} not in: {text}"
    return text


def harmless_shapes(root: Path) -> None:
    """Windows line ends and a byte-order mark, an upper-case quoted header, columns reordered, one extra."""
    for table in (P, A):
        path = table_path(root, table)
        write_text(path, "\ufeff" + read_text(path).replace("\n", "\r\n"))
    path = table_path(root, ICU)
    header, rest = read_text(path).split("\n", 1)
    write_text(path, ",".join(f'"{c.upper()}"' for c in header.split(",")) + "\n" + rest)
    header, rows = read_rows(root, LAB)
    write_rows(root, LAB, [*header[::-1], "extra"], [[*r[::-1], "x"] for r in rows])


# ------------------------------------------------------------------------------------------- check


def test_check_names_a_cut_download(ehr: Path):
    path = table_path(ehr, LAB)
    path.write_bytes(path.read_bytes()[:-100])
    fails("check", ehr, words=("labevents.csv.gz", "ends early or is damaged", "download it again"))


def test_check_reads_to_the_end_and_finds_a_bad_checksum(ehr: Path):
    # The engines never verify a gzip's CRC (its rows are intact): `check` reads every file to its end, and a
    # study run verifies the trailer of each csv.gz it reads (test_hostile_round3.py, the same message).
    path = table_path(ehr, P)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    fails("check", ehr, words=("patients.csv.gz", "download it again"))


def test_check_names_files_flat_in_one_folder(ehr: Path):
    for sub in ("hosp", "icu"):
        for path in (ehr / sub).iterdir():
            path.rename(ehr / path.name)
        (ehr / sub).rmdir()
    fails("check", ehr, words=("directly in", "move icustays"))


def test_check_names_a_header_only_required_table(ehr: Path):
    path = table_path(ehr, A)
    write_text(path, read_text(path).split("\n", 1)[0] + "\n")
    fails("check", ehr, words=("admissions.csv.gz", "header but no data rows"))


def test_check_refuses_two_files_of_one_table(ehr: Path):
    write_text(ehr / "icu" / "icustays.csv", read_text(table_path(ehr, ICU)))
    fails("check", ehr, words=("icustays.csv.gz", "icustays.csv", "keep one"))


def test_check_names_a_semicolon_export(ehr: Path):
    path = table_path(ehr, P)
    write_text(path, read_text(path).replace(",", ";"))
    fails("check", ehr, words=("patients.csv.gz", "separated by semicolons"))


def test_check_does_not_hang_on_a_named_pipe(ehr: Path):
    path = table_path(ehr, ICU)
    path.unlink()
    os.mkfifo(path)
    fails("check", ehr, words=("icustays.csv.gz", "not a regular file"))


def test_check_on_a_file_instead_of_a_folder(ehr: Path):
    fails("check", table_path(ehr, P), words=("is not a folder",))


def test_check_accepts_harmless_shapes(ehr: Path):
    harmless_shapes(ehr)
    result, text = invoke("check", ehr)
    assert result.exit_code == 0, text
    assert "Every required table and column is present" in text


def test_check_accepts_spaces_non_ascii_relative_and_home_paths(
    ehr: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    odd = tmp_path / "my data" / "MIMIC-IV é 数据"
    odd.parent.mkdir()
    ehr.rename(odd)
    result, text = invoke("check", "--headers-only", odd)
    assert result.exit_code == 0, text
    monkeypatch.chdir(tmp_path / "my data")
    result, text = invoke("check", "--headers-only", "MIMIC-IV é 数据")
    assert result.exit_code == 0, text
    monkeypatch.setenv("HOME", str(tmp_path))
    result, text = invoke("check", "--headers-only", "~/my data/MIMIC-IV é 数据")  # quoted: the shell left ~
    assert result.exit_code == 0, text


# ------------------------------------------------------------------------------------------- convert


def test_convert_names_the_bad_value(ehr: Path, tmp_path: Path, baseline: Baseline):
    facts = set_value(ehr, LAB, "valuenum", "high", lambda d: d["subject_id"] in baseline.bystanders, limit=1)
    fails(
        "convert",
        ehr,
        tmp_path / "parquet",
        words=("labevents.csv.gz", "'valuenum'", f"line {facts['line']}", "'high'", "Fix or remove that row"),
    )


def test_convert_names_a_cut_download(ehr: Path, tmp_path: Path):
    path = table_path(ehr, ICU)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fails("convert", ehr, tmp_path / "parquet", words=("icustays.csv.gz", "ends early or is damaged"))


def test_convert_of_harmless_shapes_reads_back_the_same_rows(ehr: Path, tmp_path: Path, base_ehr: Path):
    harmless_shapes(ehr)
    out = tmp_path / "parquet"
    result, text = invoke("convert", ehr, out)
    assert result.exit_code == 0, text
    for table in (P, A, ICU, LAB):
        assert (out / f"{table}.parquet").is_file()
        pd.testing.assert_frame_equal(checked(out, table), checked(base_ehr, table))


# ------------------------------------------------------------------------------------------- run


def test_run_names_a_missing_table(ehr: Path, tmp_path: Path):
    table_path(ehr, P).unlink()
    fails("run", FLAGSHIP, "--mimic", ehr, "--out", tmp_path / "out", words=("hosp/patients not found",))
    assert not (tmp_path / "out").exists()


def test_run_names_a_bad_value_with_its_line(ehr: Path, tmp_path: Path, baseline: Baseline):
    facts = set_value(ehr, ICU, "intime", "05/12/2150", lambda d: True, limit=1)
    fails(
        "run",
        FLAGSHIP,
        "--mimic",
        ehr,
        "--out",
        tmp_path / "out",
        words=("icustays.csv.gz", "'intime'", f"line {facts['line']}", "'05/12/2150'", "Fix or remove that row"),
    )


def test_run_names_conflicting_keys(ehr: Path, tmp_path: Path):
    header, rows = read_rows(ehr, ICU)
    copy = list(rows[0])
    copy[header.index("outtime")] = "2199-01-01 00:00:00"
    write_rows(ehr, ICU, header, [*rows, copy])
    fails("run", FLAGSHIP, "--mimic", ehr, "--out", tmp_path / "out", words=("icustays.csv.gz", "stay_id"))


def test_run_of_a_second_study_names_a_bad_timestamp(ehr: Path, tmp_path: Path, baseline: Baseline):
    facts = set_value(ehr, A, "admittime", "2150-05-12T10:00:00", lambda d: True, limit=1)
    fails(
        "run",
        OTHER_STUDY,
        "--mimic",
        ehr,
        "--out",
        tmp_path / "out",
        words=("admissions.csv.gz", "'admittime'", f"line {facts['line']}", "YYYY-MM-DD HH:MM:SS"),
    )


def test_run_of_a_second_study_names_a_latin1_file(ehr: Path, tmp_path: Path):
    path = table_path(ehr, P)
    lines = read_text(path).split("\n")
    lines[2] = lines[2].replace(",F,", ",F\u00e9,").replace(",M,", ",M\u00e9,")
    path.write_bytes(gzip.compress("\n".join(lines).encode("latin-1")))
    fails("run", OTHER_STUDY, "--mimic", ehr, "--out", tmp_path / "out", words=("patients.csv.gz", "line 3", "UTF-8"))


def test_run_on_a_file_and_on_nothing(ehr: Path, tmp_path: Path):
    fails("run", FLAGSHIP, "--mimic", table_path(ehr, P), "--out", tmp_path / "o1", words=("is not a folder",))
    fails("run", FLAGSHIP, "--mimic", tmp_path / "nowhere", "--out", tmp_path / "o2", words=("is not a folder",))


@pytest.mark.slow  # the whole analysis and report (about 10 s of CPU): the one end-to-end run of the suite
def test_run_on_harmless_shapes_gives_the_undamaged_numbers(ehr: Path, tmp_path: Path, baseline: Baseline):
    harmless_shapes(ehr)
    out = tmp_path / "out"
    result, text = invoke("run", FLAGSHIP, "--mimic", ehr, "--out", out, "--replicates", 2, "--processes", 1)
    # This small EHR leaves fewer than 5 comparators: the outputs are written but the primary hazard ratio cannot
    # be estimated, which the CLI reports with exit 3 (docs/cli.md); the counts below are the undamaged ones.
    assert result.exit_code == 3 and "No primary estimate" in text, text
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["indexed"] == baseline.counts["indexed"]
    assert results["counts"]["eligible"] == baseline.counts["eligible"]
    assert [row["step"] for row in results["attrition"]] == list(baseline.attrition["step"])
    # Counts below the small-cell threshold are written as text ("<5"); every other one is exact.
    written = [row["remaining"] for row in results["attrition"]]
    exact = [int(n) for n in baseline.attrition["remaining"]]
    assert all(w == e for w, e in zip(written, exact, strict=True) if isinstance(w, int))
    assert sum(isinstance(w, int) for w in written) >= len(written) - 1
    shutil.rmtree(out)


def test_validate_names_a_bad_value(ehr: Path, tmp_path: Path, baseline: Baseline):
    facts = set_value(ehr, P, "anchor_age", "sixty", lambda d: d["subject_id"] in baseline.bystanders, limit=1)
    fails(
        "validate",
        FLAGSHIP,
        "--mimic",
        ehr,
        "--out",
        tmp_path / "out",
        "--replicates",
        2,
        words=("patients.csv.gz", "'anchor_age'", f"line {facts['line']}", "'sixty'"),
    )


def test_check_with_a_study_names_a_bad_value(ehr: Path, baseline: Baseline):
    facts = set_value(ehr, LAB, "charttime", "yesterday", lambda d: d["subject_id"] in baseline.bystanders, limit=1)
    fails("check", ehr, "--study", FLAGSHIP, words=("labevents.csv.gz", "'charttime'", f"line {facts['line']}"))


def test_run_expands_a_quoted_tilde_in_mimic(tmp_path, monkeypatch):
    """A quoted "~/ehr" reaches the CLI unexpanded: it must name the (empty) folder under HOME, not 'not a folder'."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ehr").mkdir()
    text = fails("run", FLAGSHIP, "--mimic", "~/ehr", "--out", tmp_path / "o", words=("ehr",))
    assert "is not a folder" not in text
