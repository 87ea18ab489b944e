"""Data checks end to end: run_study -> StudyResult.data_checks -> results.json, tables, report.html.

A synthetic EHR is run clean, then with every inputevents and patients row
written twice and every table in shuffled row order: the whole result (counts,
attrition, every estimate) must be identical, and only the duplicate counts
differ. The dirty miniature folder of the cohort tests checks the outputs:
small counts suppressed, every check present, the schema validated.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace

import duckdb
import pandas as pd
import pytest

from retrocohort.cohort import build_cohort
from retrocohort.sources import MimicIV, generate_synthetic, quality
from retrocohort.study.outputs import (
    build_tables,
    results_document,
    validate_results_document,
    write_outputs,
)
from retrocohort.study.pipeline import run_study
from retrocohort.study.results import StudyResult
from tests.cohort.minimimic import HEADERS
from tests.cohort.test_data_checks import dirty
from tests.report._build import load, with_threshold


def _rewrite(source, out, doubled: tuple[str, ...], seed: float) -> None:
    """Copy every table of ``source`` to ``out`` in a shuffled row order; ``doubled`` tables get every row twice."""
    con = duckdb.connect()
    con.execute(f"SELECT setseed({seed})")
    for path in sorted(source.rglob("*.csv.gz")):
        name = str(path.relative_to(source))[: -len(".csv.gz")]
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        scan = f"SELECT * FROM read_csv('{path}', all_varchar = true, header = true)"
        rows = f"{scan} UNION ALL {scan}" if name in doubled else scan
        con.execute(
            f"COPY (SELECT * FROM ({rows}) ORDER BY random()) TO '{target}' (FORMAT csv, HEADER true, COMPRESSION gzip)"
        )
    con.close()
    for marker in source.glob("*.json"):
        (out / marker.name).write_bytes(marker.read_bytes())


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dq_synthetic")
    generate_synthetic(root / "clean", stays=3000, seed=3)
    _rewrite(root / "clean", root / "dirty", ("icu/inputevents", "hosp/patients"), 0.25)
    _rewrite(root / "clean", root / "shuffled", (), 0.75)
    study = load("magnesium_ckrt")
    return {name: run_study(root / name, study) for name in ("clean", "dirty", "shuffled")} | {"root": root}


def _same_result(a: StudyResult, b: StudyResult) -> None:
    assert a.counts == b.counts
    pd.testing.assert_frame_equal(a.attrition, b.attrition, check_exact=True)
    pd.testing.assert_frame_equal(a.cohort, b.cohort, check_exact=True)
    assert a.estimates == b.estimates and a.skipped == b.skipped
    assert (a.dose is None) == (b.dose is None)
    if a.dose is not None:
        numbers = [k for k, v in a.dose.items() if isinstance(v, (int, float))]
        assert {k: a.dose[k] for k in numbers} == pytest.approx({k: b.dose[k] for k in numbers}, nan_ok=True)
        assert {k: v for k, v in a.dose.items() if k not in numbers} == {
            k: v for k, v in b.dose.items() if k not in numbers
        }


def test_duplicated_rows_leave_every_result_unchanged(synthetic_runs):
    clean, doubled = synthetic_runs["clean"], synthetic_runs["dirty"]
    assert clean.counts["exposed"] > 5 and len(clean.estimates) >= 3  # not vacuous
    _same_result(clean, doubled)
    counts = _rules(doubled)
    clean_counts = _rules(clean)
    assert (clean_counts == 0).all()  # the generator writes clean data
    assert counts["patients_exact_duplicates"] > 0 and counts["inputevents_exact_duplicates"] > 0
    assert (counts.drop(["patients_exact_duplicates", "inputevents_exact_duplicates"]) == 0).all()


def _rules(result: StudyResult) -> pd.Series:
    """check -> count of every rule, without the ``<table>_rows_read`` lines (the rows they are counted among)."""
    counts = result.data_checks.set_index("check")["count"]
    return counts[~counts.index.str.endswith("_rows_read")]


def test_duplicate_counts_equal_the_rows_written_twice(synthetic_runs):
    # A study run counts the rules among the rows it reads (one read per table, concepts/scan.py), not over
    # the whole table: patients are read whole, so each of their rows written twice is one duplicate; of
    # inputevents the flagship reads the magnesium and vasopressor rows of the indexed patients, and each of
    # those written twice is one duplicate: as many as the clean run read. (Before the checks moved into the
    # scan, the count was every inputevents row of the file.)
    doubled = synthetic_runs["dirty"].data_checks.set_index("check")["count"]
    clean = synthetic_runs["clean"].data_checks.set_index("check")["count"]
    folder = synthetic_runs["root"] / "clean"
    n_patients = len(pd.read_csv(folder / "hosp" / "patients.csv.gz"))
    assert clean["patients_rows_read"] == n_patients
    assert doubled["patients_rows_read"] == 2 * n_patients
    assert doubled["patients_exact_duplicates"] == n_patients
    n_inputevents = len(pd.read_csv(folder / "icu" / "inputevents.csv.gz"))
    assert 0 < clean["inputevents_rows_read"] < n_inputevents  # the study reads a part of the file
    assert doubled["inputevents_rows_read"] == 2 * clean["inputevents_rows_read"]
    assert doubled["inputevents_exact_duplicates"] == clean["inputevents_rows_read"]


def test_row_order_does_not_change_any_result(synthetic_runs):
    _same_result(synthetic_runs["clean"], synthetic_runs["shuffled"])
    pd.testing.assert_frame_equal(synthetic_runs["clean"].data_checks, synthetic_runs["shuffled"].data_checks)


# --- outputs ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dirty_folder(tmp_path_factory):
    return dirty().write(tmp_path_factory.mktemp("dq_dirty"))


def test_pipeline_carries_the_cohorts_data_checks(dirty_folder):
    assert "data_checks" in {f.name for f in fields(StudyResult)}
    study = load("magnesium_ckrt")
    result = run_study(dirty_folder, study)
    built = build_cohort(study, MimicIV(dirty_folder))
    pd.testing.assert_frame_equal(result.data_checks, built.data_checks)
    assert (result.data_checks["count"] > 0).sum() >= 10


@pytest.fixture(scope="module")
def outputs_result(synthetic_runs, dirty_folder):
    # The miniature cohort is too small for a full report (31 patients); the synthetic run carries the
    # miniature folder's data checks, which have counts of 0, 1-4 and more. They are taken from the legacy
    # extraction (the flagship oracle, tests/cohort/legacy) while build_cohort stops on that folder (see above).
    from tests.cohort.legacy import extract

    return replace(synthetic_runs["clean"], data_checks=extract(dirty_folder).data_checks)


def test_results_json_data_checks_are_suppressed_and_valid(outputs_result, tmp_path):
    dirty_result = outputs_result
    out = write_outputs(dirty_result, tmp_path / "out")
    doc = json.loads((out / "results.json").read_text())
    validate_results_document(doc)
    assert doc["schema_version"] == "2.1"
    exact = dirty_result.data_checks.set_index("check")["count"]
    written = {row["check"]: row["count"] for row in doc["data_checks"]}
    assert set(written) == set(exact.index) == set(quality.rules_table()["check"])
    for check, n in exact.items():
        assert written[check] == ("<5" if 0 < n < 5 else int(n)), check
    assert "<5" in written.values() and 0 in written.values()
    table = pd.read_csv(out / "tables" / "data_checks.csv")
    assert list(table.columns) == list(quality.COLUMNS)
    assert dict(zip(table["check"], table["count"].astype(str), strict=True)) == {k: str(v) for k, v in written.items()}
    html = (out / "report.html").read_text()
    assert 'id="data-checks"' in html and "Data checks" in html
    assert 'data-key="data_check_inputevents_amount" data-value="&lt;5">&lt;5<' in html
    assert 'data-key="data_check_patients_null_key" data-value="0">0<' in html
    for check, shown in written.items():
        assert f'data-key="data_check_{check}" data-value="{str(shown).replace("<", "&lt;")}"' in html, check


def test_threshold_zero_writes_exact_counts(outputs_result):
    dirty_result = outputs_result
    study = with_threshold(dirty_result.study, 0)
    doc = results_document(replace(dirty_result, study=study))
    exact = dirty_result.data_checks.set_index("check")["count"]
    assert {row["check"]: row["count"] for row in doc["data_checks"]} == {k: int(v) for k, v in exact.items()}


def test_schema_rejects_a_malformed_data_checks_block(outputs_result):
    dirty_result = outputs_result
    doc = results_document(dirty_result)
    doc["data_checks"][0]["count"] = 3  # an unsuppressed small count is a valid count type...
    validate_results_document(doc)
    doc["data_checks"][0]["unit"] = "people"  # ...but the unit is an enum
    with pytest.raises(Exception, match="unit"):
        validate_results_document(doc)
    del doc["data_checks"]
    with pytest.raises(Exception, match="data_checks"):
        validate_results_document(doc)


def test_results_without_data_checks_write_an_empty_block(outputs_result):
    dirty_result = outputs_result
    bare = replace(dirty_result, data_checks=None)
    assert results_document(bare)["data_checks"] == []
    assert build_tables(bare)["data_checks"].empty


def test_headers_of_the_minimimic_cover_every_checked_table():
    assert set(quality.TABLE_RULES) <= set(HEADERS)
