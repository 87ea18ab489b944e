"""`retrocohort check DATA --rules`: the whole-data quality pass (every row of every table) in the CLI."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app
from retrocohort.sources import MimicIV
from retrocohort.sources.quality import TABLE_RULES, rules_table
from retrocohort.sources.synthetic import generate_synthetic
from tests.hostile_data.damage import edit_rows, read_rows, set_value, table_path

runner = CliRunner()
# One table row of the report: "table │ rule │ action │ count" (rich's vertical bar between cells).
ROW = re.compile(r"^\s*(\S+/\S+)\s+│\s+(.+?)\s+│\s+(.+?)\s+│\s+([\d,]+)\s*$")


def invoke(*args: object) -> tuple[int, str, str]:
    """Exit code, stdout (lines kept: the table is parsed) and stdout + stderr with whitespace collapsed."""
    # Consoles 1000 columns wide: no cell is folded over two lines, so each report row is one line.
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output, " ".join(text.split())


def counts(output: str) -> dict[tuple[str, str], int]:
    """(table, rule in words) -> count, from the printed rules table."""
    found: dict[tuple[str, str], int] = {}
    for line in output.splitlines():
        match = ROW.match(line)
        if match and match.group(3) != "status":
            found[(match.group(1), match.group(2))] = int(match.group(4).replace(",", ""))
    return found


@pytest.fixture(scope="module")
def base_ehr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rules") / "ehr"
    generate_synthetic(root, stays=200, seed=11)
    return root


@pytest.fixture
def ehr(base_ehr: Path, tmp_path: Path) -> Path:
    """A fresh copy of the base EHR to damage."""
    root = tmp_path / "ehr"
    shutil.copytree(base_ehr, root)
    return root


def _rows(root: Path, table: str) -> int:
    return len(read_rows(root, table)[1])


def test_clean_ehr_every_rule_counts_zero_and_every_table_appears(base_ehr):
    code, out, text = invoke("check", base_ehr, "--rules")
    assert code == 0, text
    found = counts(out)
    assert {table for table, _ in found} == set(TABLE_RULES)
    # Every rule of the docs' table appears (the rows-read line reads "every row of the table" here).
    expected = {(t, r) for t, r in rules_table()[["table", "rule"]].itertuples(index=False) if "rows read:" not in r}
    assert expected <= set(found)
    for (table, rule), n in found.items():
        if rule == "every row of the table":
            assert n == _rows(base_ehr, table), table
        else:
            assert n == 0, (table, rule)
    assert "Every row of every table was read" in text and "counts the same rules only on the rows it reads" in text


def test_damaged_copy_counts_equal_the_damage(ehr):
    negative = set_value(
        ehr, "icu/inputevents", "amount", "-5", lambda r: r["amount"] not in ("", "-5") and float(r["amount"]) > 0, 3
    )
    empty_key = set_value(ehr, "hosp/labevents", "itemid", "", lambda r: r["itemid"] != "", 2)

    def duplicate_first(_header: list[str], rows: list[list[str]]) -> list[list[str]]:
        return [*rows, list(rows[0])]

    edit_rows(ehr, "hosp/patients", duplicate_first)
    code, out, text = invoke("check", ehr, "--rules")
    assert code == 0, text
    found = counts(out)
    assert found[("icu/inputevents", "amount negative, infinite or NaN")] == negative["rows"] == 3
    assert found[("hosp/labevents", "subject_id, itemid or charttime is empty")] == empty_key["rows"] == 2
    assert found[("hosp/patients", "row equal to another in every column read")] == 1
    assert found[("hosp/patients", "every row of the table")] == _rows(ehr, "hosp/patients")
    damaged = {
        ("icu/inputevents", "amount negative, infinite or NaN"),
        ("hosp/labevents", "subject_id, itemid or charttime is empty"),
        ("hosp/patients", "row equal to another in every column read"),
    }
    # Nothing else found: the damage is counted once, under its own rule.
    assert all(n == 0 for key, n in found.items() if key not in damaged and key[1] != "every row of the table")


def test_conflicting_key_exits_2_naming_the_file(ehr):
    age = read_rows(ehr, "hosp/patients")[0].index("anchor_age")

    def conflicting_copy(_header: list[str], rows: list[list[str]]) -> list[list[str]]:
        copy = list(rows[0])
        copy[age] = str(int(copy[age]) + 1)  # same subject_id, another age: which row is true cannot be decided
        return [*rows, copy]

    edit_rows(ehr, "hosp/patients", conflicting_copy)
    code, out, text = invoke("check", ehr, "--rules")
    assert code == 2, text
    assert str(table_path(ehr, "hosp/patients")) in text and "subject_id" in text and "more than one row" in text
    assert "Data-quality rules on every row" not in out  # no table of partial counts


def test_headers_only_with_rules_is_refused(base_ehr):
    code, _, text = invoke("check", base_ehr, "--headers-only", "--rules")
    assert code == 2 and "--rules" in text and "--headers-only" in text and "not both" in text
    assert "MIMIC-IV tables in" not in text  # refused before anything is read


def test_study_with_rules_is_refused(base_ehr, tmp_path):
    code, _, text = invoke("check", base_ehr, "--study", tmp_path / "s.toml", "--rules")
    assert code == 2 and "run `check PATH --rules` and `check PATH --study STUDY.toml` separately" in text


def test_memory_limit_and_threads_reach_the_pass_with_rules(base_ehr):
    seen: list[object] = []
    original = MimicIV.connect

    def spy(self: MimicIV, *args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("duckdb_config"))
        return original(self, *args, **kwargs)

    with mock.patch.object(MimicIV, "connect", spy):
        code, _, text = invoke("check", base_ehr, "--rules", "--memory-limit", "1GB", "--threads", "1")
    assert code == 0, text
    assert seen == [{"memory_limit": "1GB", "threads": 1}]
    # A bad value is refused by name before any file is read; without --rules (or --study) they stay refused.
    code, _, text = invoke("check", base_ehr, "--rules", "--memory-limit", "lots")
    assert code == 2 and "--memory-limit 'lots' is not a memory size" in text and "MIMIC-IV tables in" not in text
    code, _, text = invoke("check", base_ehr, "--threads", "2")
    assert code == 2 and "apply only with --study or --rules" in text


def test_rules_output_names_no_subject(base_ehr):
    code, out, _ = invoke("check", base_ehr, "--rules")
    assert code == 0
    subjects = {row[0] for row in read_rows(base_ehr, "hosp/patients")[1]}
    assert subjects
    # No subject_id anywhere in the output, as a whole number (the counts are far smaller than any id).
    printed = set(re.findall(r"\d+", out.replace(",", "")))
    assert not printed & subjects
