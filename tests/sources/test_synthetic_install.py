"""``generate_synthetic`` (and ``retrocohort synth``) never leaves a half-written EHR.

The files are written into a hidden sibling folder and moved into place at the end; a failure while
writing (a full disk, Ctrl-C) removes the sibling and leaves ``out`` as it was: absent, empty, or an
earlier synthetic EHR intact.
"""

from __future__ import annotations

import errno
import json

import pytest
from typer.testing import CliRunner

from retrocohort.cli import app
from retrocohort.sources import synthetic
from retrocohort.sources.synthetic import generate_synthetic

STAYS = 300


def _fail_after(monkeypatch, n: int, exc: BaseException) -> None:
    """Make the CSV writer raise ``exc`` after ``n`` files were written."""
    real = synthetic._write_csv_gz
    calls = {"n": 0}

    def writer(table, path):
        if calls["n"] >= n:
            raise exc
        calls["n"] += 1
        real(table, path)

    monkeypatch.setattr(synthetic, "_write_csv_gz", writer)


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_full_disk_leaves_no_folder_and_no_partial_sibling(tmp_path, monkeypatch):
    out = tmp_path / "ehr"
    _fail_after(monkeypatch, 3, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        generate_synthetic(out, stays=STAYS)
    assert not out.exists()
    assert _siblings(out) == []


def test_ctrl_c_keeps_an_earlier_synthetic_ehr_intact(tmp_path, monkeypatch):
    out = tmp_path / "ehr"
    generate_synthetic(out, stays=STAYS, seed=1)
    (out / "notes.txt").write_text("mine")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _fail_after(monkeypatch, 5, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(out, stays=STAYS, seed=2)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the seed-1 EHR, byte for byte, and the user's own file
    assert json.loads((out / "SYNTHETIC.json").read_text())["seed"] == 1
    assert _siblings(out) == []


def test_a_complete_run_replaces_the_earlier_ehr_and_keeps_other_files(tmp_path):
    out = tmp_path / "ehr"
    generate_synthetic(out, stays=STAYS, seed=1)
    (out / "notes.txt").write_text("mine")
    generate_synthetic(out, stays=STAYS, seed=2)
    assert json.loads((out / "SYNTHETIC.json").read_text())["seed"] == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "hosp" / "patients.csv.gz").is_file() and _siblings(out) == []


def test_an_empty_folder_is_filled(tmp_path):
    out = tmp_path / "ehr"
    out.mkdir()
    generate_synthetic(out, stays=STAYS)
    assert (out / "icu" / "icustays.csv.gz").is_file() and _siblings(out) == []


def test_synth_command_interrupted_writes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "ehr"
    _fail_after(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--stays", str(STAYS)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "No space left on device" in text and "nothing was written" in text and "Traceback" not in text
    assert not out.exists() and _siblings(out) == []


def test_synth_command_ctrl_c_says_nothing_is_left(tmp_path, monkeypatch):
    out = tmp_path / "ehr"
    _fail_after(monkeypatch, 2, KeyboardInterrupt())
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--stays", str(STAYS)])
    assert result.exit_code == 2
    assert "interrupted" in result.output and "nothing half-written" in " ".join(result.output.split())
    assert not out.exists() and _siblings(out) == []
