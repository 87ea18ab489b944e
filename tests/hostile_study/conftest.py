"""Shared by the hostile CLI tests: one small synthetic EHR for the folder, and the CLI as a user types it."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app

runner = CliRunner()


def invoke(*args: object, cwd: Path | None = None) -> tuple[int, str]:
    """Run the CLI; return the exit code and its whole output on one line. Fails on a traceback."""
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        if cwd is not None:
            with runner.isolated_filesystem(temp_dir=cwd):
                result = runner.invoke(app, [str(a) for a in args])
        else:
            result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    # click's error box draws borders; the words are what matter
    return result.exit_code, " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


@pytest.fixture(scope="package")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-stay synthetic EHR (seed 3), written once for the folder."""
    folder = tmp_path_factory.mktemp("hostile_study") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 400, "--seed", 3)
    assert code == 0, text
    return folder


@pytest.fixture(scope="package")
def empty_ehr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shaped like MIMIC-IV (hosp/, icu/) with no tables: for refusals made before any data are read."""
    folder = tmp_path_factory.mktemp("hostile_study_empty") / "mimic"
    (folder / "hosp").mkdir(parents=True)
    (folder / "icu").mkdir()
    return folder
