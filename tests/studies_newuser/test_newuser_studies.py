"""The new-user studies (written from the docs only) run end to end on a small synthetic EHR.

Each is loaded, checked (``retrocohort check --study``) and run (``retrocohort run``) through the
command line; what must hold: exit 0 without a traceback, the labels of the file in the terminal,
the report and results.json, the attrition lines in the order written, every concept that finds no
rows named in the notes, the analysis unit in words, and no word of the flagship study.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app
from retrocohort.spec import load_study_file

from .answer import expected_exit
from .extra_tables import add_extra_tables

HERE = Path(__file__).resolve().parent
STUDIES = sorted(HERE.glob("*.toml"))
runner = CliRunner()

#: Concepts the synthetic EHR holds no rows for (drugs nobody there receives): each must be a note.
NO_ROWS = {
    "furosemide_aki": ["furosemide_iv", "furosemide_rx"],
    "statin_prevalent": ["statin", "statin_pharmacy"],
    "antibiotic_comparator": ["cefepime", "piptazo", "vancomycin"],
    "reintubation": ["unplanned_extubation", "tracheostomy", "dexamethasone"],
}
#: Index concepts that find nobody: the run ends cleanly with the empty cohort said in words.
NO_INDEX: dict[str, str] = {}
FLAGSHIP = re.compile(r"(?i:magnesium|ckrt)|\bMg\b")


def invoke(*args: object) -> tuple[int, str]:
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(text.split())


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("newuser") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 600, "--seed", 3)
    assert code == 0, text
    add_extra_tables(folder)
    return folder


def _report_text(path: Path) -> str:
    s = path.read_text()
    s = re.sub(r"<script.*?</script>|<style.*?</style>|<img[^>]*>", " ", s, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", s).split())


def test_at_least_five_designs_each_table_of_the_issue_once():
    assert len(STUDIES) >= 5
    tables = set()
    for path in STUDIES:
        study = load_study_file(path)
        tables |= {c.table for c in study.concepts.values()}
    for table in (
        "hosp/microbiologyevents",
        "hosp/omr",
        "icu/outputevents",
        "icu/datetimeevents",
        "icu/ingredientevents",
        "hosp/services",
        "hosp/transfers",
        "hosp/pharmacy",
        "hosp/procedures_icd",
        "hosp/emar",
        "hosp/prescriptions",
        "icu/procedureevents",
        "icu/chartevents",
        "icu/inputevents",
    ):
        assert table in tables, table


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_new_user_study_runs_end_to_end(path, ehr, tmp_path):
    raw = tomllib.loads(path.read_text())
    study = load_study_file(path)
    name = study.study.name

    code, text = invoke("check", ehr, "--study", path)
    assert code == 0, text
    for concept in NO_ROWS.get(name, []):
        assert re.search(rf"\b{concept}\b.*?no rows", text), concept

    out = tmp_path / "out"
    code, text = invoke("run", path, "--mimic", ehr, "--out", out)
    results = json.loads((out / "results.json").read_text())
    # 0 with the primary estimate; 3 (outputs written) without it (docs/cli.md, Exit codes)
    assert code == expected_exit(results), text
    report = _report_text(out / "report.html")

    # labels from the file, in the terminal, the report and results.json
    assert study.study.title in text and study.study.title in report
    assert results["study"]["title"] == study.study.title
    assert results["study"]["exposure_label"] == study.exposure.label
    assert results["study"]["comparator_label"] == study.comparator.label
    assert study.exposure.label in text and study.comparator.label in text
    for outcome in study.outcomes.values():
        assert outcome.label in text and outcome.label in report
        assert f"by day {outcome.horizon_days:g} by day" not in text + report

    # the attrition log: the study's own rules in the order written, each with its label
    steps = [row["step"] for row in results["attrition"]]
    written = [c["name"] for c in raw.get("criteria", [])]
    assert [s for s in steps if s in written] == written
    assert steps[0] == "index_event" and steps[-1] == "eligible"
    by_step = {row["step"]: row["reason"] for row in results["attrition"]}
    for crit in raw.get("criteria", []):
        assert crit["label"] in by_step[crit["name"]]
    remaining = [row["remaining"] for row in results["attrition"] if isinstance(row["remaining"], int)]
    assert remaining == sorted(remaining, reverse=True)  # (suppressed counts are text)

    # concepts that find nothing are said, never a silent empty cohort
    notes = " ".join(results["notes"])
    for concept in NO_ROWS.get(name, []):
        assert f"concept '{concept}'" in notes and "found no rows" in notes
    if name in NO_INDEX:
        assert "no patient has an index event" in notes and NO_INDEX[name] in notes
        assert results["counts"]["eligible"] == 0
    if study.index.at == "end":  # the index at the entry event's end is said in the attrition log
        assert "at its end" in by_step["index_event"]
        assert "The index time was" in report and "taken at the event" in report  # (the ' is escaped)

    # the unit: ICU stays with one index per stay, else patients
    unit = "ICU stays" if study.index.select == "first_per_stay" else "patients"
    assert f"┃ {unit}" in text or f"{unit} " in text
    if results["counts"].get("indexed"):
        assert re.search(rf"Of [0-9,<\-]+ {unit} with", report), report[:2000]
    if unit == "ICU stays":
        assert "Flow of ICU stays" in report
        if results["counts"].get("exposed"):  # Table 1 needs both arms
            assert "n (ICU stays)" in report
        assert "comparator ICU stays by nearest-neighbour matching" in report
        html = (out / "report.html").read_text()
        assert '<th class="num">ICU stays</th>' in html and '<th class="num">Patients</th>' not in html
        assert not re.search(r"Of [0-9,<\-]+ patients with", report)

    # nothing of the flagship in a study that does not name it
    if not FLAGSHIP.search(path.read_text()):
        assert not FLAGSHIP.search(report), FLAGSHIP.search(report)
        assert not FLAGSHIP.search(json.dumps(results["notes"] + results["attrition"]))
    # no row-level identifier
    assert not re.search(r"\b1\d{7}\b", json.dumps(results["attrition"]) + report)
