"""One scan per table (concepts/scan.py): each file is read once per study, and nothing changes.

Two kinds of check:

- every built-in read through its declared reads (:data:`BUILTIN_READS`, a narrow
  pinned copy of each table) gives the same rows as from the full tables, on the
  hand-made patients of test_builtins (a wrong declaration drops rows: checked too);
- DuckDB's own file-system log counts the times each file is opened while a study is
  built, data checks included (they are counted in the same read): exactly once, for
  the flagship and for a study with SOFA, baseline creatinine, KDIGO and user lab concepts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import ibis
import pandas as pd
import pytest

from retrocohort.cohort.builder import build_on
from retrocohort.concepts import baseline_values, concept_events, finish_baseline
from retrocohort.concepts.builtins import BASELINE_BUILDERS, EVENT_BUILDERS
from retrocohort.concepts.scan import BUILTIN_READS, read_once, table_requests
from retrocohort.sources import MimicIV, generate_synthetic, quality
from retrocohort.spec import load_study_file

from .test_builtins import KEYS
from .test_builtins import build as build_builtins

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_builtins().write(tmp_path_factory.mktemp("scan"))


def _frame(conn, name: str) -> pd.DataFrame:
    if name in EVENT_BUILDERS:
        out = conn.backend.execute(concept_events(conn, name))
    else:
        out = finish_baseline(name, conn.backend.execute(baseline_values(conn, name, ibis.memtable(KEYS))))
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def _through_scan(folder: Path, name: str, reads=None) -> tuple[pd.DataFrame, set[str]]:
    conn = MimicIV(folder).connect()
    try:
        requests = table_requests({name: name}) if reads is None else {t: {name: p} for t, p in reads.items()}
        scans = read_once(conn, requests)
        try:
            return _frame(conn, name), set(scans.tables)
        finally:
            scans.release()
            assert not conn.scans  # released: the connection reads the files again
    finally:
        conn.close()


def test_every_builtin_declares_its_reads():
    assert set(BUILTIN_READS) == set(EVENT_BUILDERS) | set(BASELINE_BUILDERS)


@pytest.mark.parametrize("name", sorted(set(EVENT_BUILDERS) | set(BASELINE_BUILDERS)))
def test_builtin_through_its_declared_reads_is_unchanged(folder, name):
    conn = MimicIV(folder).connect()
    try:
        full = _frame(conn, name)
    finally:
        conn.close()
    narrow, pinned = _through_scan(folder, name)
    assert pinned == {t for t in BUILTIN_READS[name] if (folder / f"{t}.csv.gz").exists()}
    pd.testing.assert_frame_equal(narrow, full)


def test_a_wrong_declaration_would_be_seen(folder):
    # The check above can fail: declaring only lactate for the creatinine built-in loses its rows.
    full_conn = MimicIV(folder).connect()
    try:
        full = _frame(full_conn, "creatinine")
    finally:
        full_conn.close()
    assert len(full) > 0
    wrong = {"hosp/labevents": lambda t: t.itemid == 50813}
    narrow, _ = _through_scan(folder, "creatinine", reads=wrong)
    assert len(narrow) < len(full)


# ---------------------------------------------------------------------------------------- scans


def _opens(conn) -> Counter:
    """Files DuckDB opened since logging was enabled, from its FileSystem log (one OPEN per scan)."""
    rows = conn.backend.con.execute("SELECT message FROM duckdb_logs WHERE type = 'FileSystem'").fetchall()
    out: Counter = Counter()
    for (message,) in rows:
        entry = json.loads(message)
        if entry.get("op") == "OPEN" and entry["path"].endswith(".csv.gz"):
            out[Path(entry["path"]).name.removesuffix(".csv.gz")] += 1
    return out


def _log(conn) -> None:
    conn.backend.con.execute("CALL truncate_duckdb_logs()")
    conn.backend.con.execute("CALL enable_logging(['FileSystem'])")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan_synthetic")
    generate_synthetic(root, stays=1500, seed=5)
    return root


LAB_STUDY = """
[study]
name = "scan_labs"
title = "SOFA, baseline creatinine and lab concepts"

[concepts.creatinine_lab]
table = "hosp/labevents"
itemids = [50912]

[concepts.magnesium_lab]
table = "hosp/labevents"
itemids = [50960]

[concepts.lactate_lab]
table = "hosp/labevents"
itemids = [50813]
value_min = 0

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802, 225803, 225809, 225955]

[index]
concept = "crrt_rows"
label = "CRRT start"
select = "first"
min_age = 18

[[criteria]]
name = "creatinine_measured"
label = "a creatinine in the 48 h before"
rule = "include"
concept = "creatinine_lab"
window = "[-48h, 0h]"

[exposure]
concept = "vasopressors"
label = "vasopressor"
window = "(0h, 24h]"

[comparator]
kind = "none"
label = "none"

[covariates.sofa]
concept = "sofa"

[covariates.creatinine_baseline]
concept = "creatinine_baseline"

[covariates.kdigo]
concept = "kdigo_stage"

[covariates.magnesium]
concept = "magnesium_lab"
window = "[-24h, 0h]"
summary = "max"
missing = "indicator"

[covariates.lactate]
concept = "lactate_lab"
window = "[-24h, 0h]"
summary = "max"
missing = "indicator"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 30
primary = true
"""


def _build_opens(folder: Path, study) -> tuple[Counter, int, pd.DataFrame]:
    """(files opened by the whole build, data checks included; eligible patients; the data checks)."""
    conn = MimicIV(folder).connect()
    try:
        _log(conn)
        cohort = build_on(conn, study)
        return _opens(conn), len(cohort.data), cohort.data_checks
    finally:
        conn.close()


@pytest.mark.parametrize("which", ["flagship", "labs"])
def test_each_table_is_read_once_per_study(synthetic, tmp_path, which):
    if which == "flagship":
        study = load_study_file(STUDIES / "magnesium_ckrt.toml")
    else:
        path = tmp_path / "labs.toml"
        path.write_text(LAB_STUDY)
        study = load_study_file(path)
    build, eligible, checks = _build_opens(synthetic, study)
    assert eligible > 0
    # The study reads these files (its concepts, the built-ins they use, the index's stays): the whole build,
    # its data checks included (counted in the same read), opens each exactly once, however many concepts
    # read it. Before the checks moved into the scan, every checked table was opened twice.
    read = {"procedureevents", "labevents", "inputevents", "admissions", "patients", "icustays"}
    if which == "flagship":
        read |= {"chartevents", "diagnoses_icd"}  # CRRT mode; sepsis codes
    else:
        read |= {"chartevents", "outputevents"} & {p.name.removesuffix(".csv.gz") for p in synthetic.rglob("*.gz")}
    assert set(build) == read
    assert all(build[n] == 1 for n in read), build
    # ... and the data checks were counted for each checked table it read, on the rows it read.
    checked = {t.split("/")[1] for t in checks["table"]}
    assert checked == read & {t.split("/")[1] for t in quality.TABLE_RULES}
    rows_read = checks.loc[checks["check"].str.endswith("_rows_read")].set_index("table")["count"]
    assert (rows_read > 0).all()


def test_the_whole_data_pass_reads_each_table_again(synthetic):
    # The table-wide pass (conn.data_checks(), no study) opens every checked table once more: the log sees it,
    # so the exact-once count above would catch a study run that still ran it.
    conn = MimicIV(synthetic).connect()
    try:
        _log(conn)
        conn.data_checks()
        opened = _opens(conn)
    finally:
        conn.close()
    assert opened["labevents"] >= 1 and opened["chartevents"] >= 1


def test_the_count_would_see_a_second_scan(synthetic):
    # Without the pinned copies each concept scans its table: the log sees labevents opened again.
    study = load_study_file(STUDIES / "magnesium_ckrt.toml")
    conn = MimicIV(synthetic).connect()
    try:
        _log(conn)
        for name in ("creatinine", "serum_magnesium"):
            conn.backend.execute(concept_events(conn, name).count())
        assert _opens(conn)["labevents"] == 2
    finally:
        conn.close()
    assert study.concepts  # the flagship parsed (same file as above)


def test_a_concept_outside_the_plan_reads_the_full_tables(synthetic):
    # The flagship's plan narrows chartevents to CRRT-mode rows; weight (226512) is not in it. Read through
    # the compiler afterwards (as a caller reusing it for more concepts would), weight must still find its
    # rows: the pinned copy has none.
    from retrocohort.cohort.builder import _Compiler

    study = load_study_file(STUDIES / "magnesium_ckrt.toml")
    conn = MimicIV(synthetic).connect()
    compiler = _Compiler(conn, study)
    try:
        compiler.facts()  # scans and pins every table of the plan
        assert conn.pinned("icu/chartevents")
        pinned_weight = conn.backend.execute(concept_events(conn, "weight").count())
        through_compiler = conn.backend.execute(compiler.events("weight").count())
        with conn.unpinned():
            full = concept_events(conn, "weight")
            expected = conn.backend.execute(full.semi_join(compiler.subjects, "subject_id").count())
        assert conn.pinned("icu/chartevents")  # restored after the block
    finally:
        compiler.release()
        conn.close()
    assert pinned_weight == 0  # what a reader outside the plan would have seen without the guard
    assert through_compiler == expected > 0
