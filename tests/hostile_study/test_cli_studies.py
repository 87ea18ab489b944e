"""A sample of the generated hostile study files through the CLI, as a user types it.

About thirty cases, one or more per error family, go through ``retrocohort check DATA --study F --no-count``
and ``retrocohort run F --mimic DATA --out O``: exit 2, the message names the file, the line and the key,
as the loader does, and ``run`` writes nothing. Two mutated studies that load run to the end on a small
synthetic EHR, and their outputs obey the study's small-cell rule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrocohort.errors import StudySpecError
from retrocohort.spec import parse_study_text

from .conftest import invoke
from .mutate import STUDY_FILES, Case, distinct_cases

CASES = distinct_cases()

#: One pattern per error family (the first case whose id matches is taken).
SAMPLE = [
    r"magnesium_ckrt:delete:delete:index\.concept$",
    r"magnesium_ckrt:delete:delete:exposure$",
    r":wrong_type:string:outcomes\.death\.horizon_days$",
    r":wrong_type:datetime:study\.seed$",
    r":wrong_type:table:criteria\.0\.window$",
    r":wrong_type:array:analysis\.matching\.ratio$",
    r":wrong_type:bool:dose\.amount_units\.grams$",
    r":empty:string:study\.title$",
    r":empty:array:analysis\.adjust$",
    r":number:nan:outcomes\.death\.horizon_days$",
    r":number:huge_float:outcomes\.death\.horizon_days$",
    r":number:huge_int:criteria\.\d\.at_least$",
    r":unicode:nul:index\.label$",
    r":unicode:rtl:exposure\.label$",
    r":unicode:long10k:study\.name$",
    r":unicode:newline:outcomes\.death\.label$",
    r":spaces:around:analysis\.ties$",
    r":case:upper:comparator\.kind$",
    r"magnesium_ckrt:duplicate:key:study\.title$",
    r"magnesium_ckrt:duplicate:table:exposure$",
    r":unknown_key:typo:outcomes\.death\.horizon_dasy$",
    r":reference:missing:analysis\.propensity$",
    r":reference:shadow_builtin:",
    r":reference:cycle_table:",
    r"magnesium_ckrt:window:reversed:exposure\.window$",
    r"thiamine_sepsis:window:grace_past_horizon:",
    r"magnesium_ckrt:setting:ratio_0:",
    r"magnesium_ckrt:setting:ratio_1\.5:",
    r"magnesium_ckrt:setting:caliper_negative:",
    r"magnesium_ckrt:setting:seed_negative:",
    r"magnesium_ckrt:setting:seed_huge:",
    r"magnesium_ckrt:output_name:dotdot:study\.name$",
    r"magnesium_ckrt:output_name:absolute:study\.name$",
    r"magnesium_ckrt:output_name:covariate_slash:",
]


def pick(pattern: str) -> Case:
    found = next((c for c in CASES if re.search(pattern, c.id)), None)
    assert found is not None, pattern
    return found


def first_problem(case: Case) -> str:
    """The loader's first problem line, without the file (the CLI names the file as the user gave it)."""
    with pytest.raises(StudySpecError) as caught:
        parse_study_text(case.text, where=f"{case.base}.toml")
    lines = str(caught.value).splitlines()
    problem = lines[1] if len(lines) > 1 else lines[0]
    return " ".join(problem.split(":", 1)[1].split())[:80]


@pytest.mark.parametrize("pattern", SAMPLE)
def test_a_hostile_study_file_is_refused_by_check_and_run_with_exit_2(pattern, ehr, tmp_path):
    case = pick(pattern)
    study_file = tmp_path / f"{case.base}.toml"
    study_file.write_text(case.text, encoding="utf-8")
    expected = first_problem(case)
    code, text = invoke("check", ehr, "--study", study_file, "--no-count")
    assert code == 2, text
    assert str(study_file) in text and "error:" in text
    assert expected in text, (expected, text)
    if case.line is not None and "not valid TOML" not in text:
        assert re.search(r"line \d+", text), text
    out = tmp_path / "out"
    code, run_text = invoke("run", study_file, "--mimic", ehr, "--out", out)
    assert code == 2 and expected in run_text, run_text
    assert not out.exists()


def test_the_sample_covers_every_error_family():
    families = {pick(p).family for p in SAMPLE}
    assert families >= {
        "delete",
        "wrong_type",
        "empty",
        "number",
        "unicode",
        "spaces",
        "case",
        "duplicate",
        "unknown_key",
        "reference",
        "window",
        "setting",
        "output_name",
    }
    assert 25 <= len(SAMPLE) <= 40


# ---------------------------------------------------------------------------------------------
# Mutated studies that load, run to the end on data.
# ---------------------------------------------------------------------------------------------

VASOPRESSIN = next(p for p in STUDY_FILES if p.stem == "vasopressin_shock")


def _mutated(replacements: list[tuple[str, str]]) -> str:
    text = VASOPRESSIN.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


#: (id, replacements of the shipped text, threshold): each loads (semantically right) and runs.
RUNS: list[tuple[str, list[tuple[str, str]], int]] = [
    # everything small: every count of the report is below 1,000 and must be hidden
    ("threshold_1000", [("small_cell_threshold = 5", "small_cell_threshold = 1000")], 1000),
    # no suppression: the same counts shown exactly (the rule above is the threshold's doing, not an accident)
    ("threshold_0", [("small_cell_threshold = 5", "small_cell_threshold = 0")], 0),
    # odd but valid values together: a label with spaces and non-ASCII (stripped), the largest seed, a caliper
    # so wide it matches everyone, a description over two lines
    (
        "odd_values",
        [
            ('label = "vasopressin"', 'label = "  vasopressine 💉 début  "'),
            ("seed = 20240101", "seed = 9223372036854775807"),
            ('description = """New-user', 'description = """Two\nlines. New-user'),
            ("caliper = 0.2", "caliper = 1e308"),
        ],
        5,
    ),
]


@pytest.fixture(scope="module")
def runs(ehr: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    folder = tmp_path_factory.mktemp("hostile_runs")
    done = {}
    for cid, replacements, _ in RUNS:
        study_file = folder / f"{cid}.toml"
        study_file.write_text(_mutated(replacements), encoding="utf-8")
        out = folder / f"{cid}-out"
        code, text = invoke("run", study_file, "--mimic", ehr, "--out", out)
        done[cid] = (code, text, out)
    return done


def _shown_counts(out: Path) -> list[Any]:
    """Every patient count the outputs show: results.json counts and attrition, counts.csv, attrition.csv."""
    doc = json.loads((out / "results.json").read_text())
    shown: list[Any] = list(doc["counts"].values())
    for row in doc["attrition"]:
        shown += [row["remaining"], row["excluded"]]
    shown += pd.read_csv(out / "tables" / "counts.csv", dtype=str)["value"].tolist()
    attrition = pd.read_csv(out / "tables" / "attrition.csv", dtype=str)
    shown += attrition["remaining"].tolist() + attrition["excluded"].tolist()
    return shown


def _exact_small(shown: list[Any], threshold: int) -> list[Any]:
    small = []
    for value in shown:
        text = str(value).strip()
        if re.fullmatch(r"\d+", text) and 0 < int(text) < threshold:
            small.append(value)
    return small


@pytest.mark.parametrize(("cid", "threshold"), [(r[0], r[2]) for r in RUNS])
def test_a_loadable_mutation_runs_and_its_outputs_obey_the_small_cell_rule(cid, threshold, runs):
    code, text, out = runs[cid]
    results = json.loads((out / "results.json").read_text())
    # 0 when something was estimated; 3 (outputs written) when nothing could be (docs/cli.md, Exit codes)
    assert code == (0 if results["estimates"] else 3), text
    assert results["small_cell_threshold"] == threshold
    shown = _shown_counts(out)
    assert not _exact_small(shown, threshold), _exact_small(shown, threshold)
    if threshold == 0:
        assert all(re.fullmatch(r"\d+", str(v).strip()) for v in shown), shown
        assert _exact_small(shown, 1000), "the cohort has counts below 1,000 for the threshold_1000 run to hide"
    if threshold == 1000:
        # the rule was exercised: counts are there, hidden ("<1000" or a range), not left out
        hidden = [v for v in shown if not re.fullmatch(r"\d+", str(v).strip())]
        assert hidden and any(str(v).startswith("<") for v in hidden), shown


def test_the_odd_values_reach_the_outputs_as_loaded(runs):
    _, _, out = runs["odd_values"]
    results = json.loads((out / "results.json").read_text())
    assert results["study"]["exposure_label"] == "vasopressine 💉 début"  # stripped, kept otherwise
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "vasopressine 💉 début" in html


def test_the_small_cell_checker_finds_an_exact_small_count():
    assert _exact_small([12, "<5", "3", "0", 4, "11-12"], 5) == ["3", 4]
