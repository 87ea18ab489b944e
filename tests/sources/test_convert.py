"""convert_mimic: MIMIC-IV csv.gz -> typed Parquet that reads back identical to the CSV views."""

from __future__ import annotations

import gzip

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from retrocohort.concepts import concept_events
from retrocohort.errors import InputError, SourceError
from retrocohort.sources import MimicIV
from retrocohort.sources.convert import available_tables, convert_mimic
from retrocohort.spec import ConceptSpec
from tests.cohort.legacy import extract
from tests.cohort.minimimic import HEADERS, MiniMimic


def small() -> MiniMimic:
    m = MiniMimic()
    m.ckrt_patient(1)
    p = m.ckrt_patient(2)
    m.magnesium(2, p["hadm_id"], p["stay_id"], p["index"] + pd.Timedelta(hours=3))
    m.ckrt_patient(3, deathtime="2150-03-20 08:00:00")
    return m


def _rows(folder, table):
    tf = MimicIV(folder).locate(table)
    with gzip.open(tf.path, "rt") as handle:
        return sum(1 for _ in handle) - 1


def test_converts_every_table_with_reader_types_and_verified_counts(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    seen: list[tuple[str, int, int]] = []
    result = convert_mimic(csv_folder, tmp_path / "pq", progress=lambda t, d, n: seen.append((t, d, n)))
    assert {t.table for t in result.tables} == set(available_tables(csv_folder))
    for t in result.tables:
        assert t.target == tmp_path / "pq" / f"{t.table}.parquet"
        assert t.rows == _rows(csv_folder, t.table) == pq.ParquetFile(t.target).metadata.num_rows
        # the last progress call of a table says it is complete
        last = [s for s in seen if s[0] == t.table][-1]
        assert last[1] == last[2] == t.source_bytes > 0
    schema = pq.read_schema(tmp_path / "pq" / "icu" / "inputevents.parquet")
    assert str(schema.field("starttime").type) == "timestamp[us]"
    assert str(schema.field("amount").type) == "double"
    assert str(schema.field("itemid").type) == "int32"
    assert str(schema.field("caregiver_id").type) == "string"  # a column no reader types stays text
    assert schema.names == HEADERS["icu/inputevents"]  # every column kept, in file order, as spelt
    assert list(result.summary.columns) == ["table", "action", "rows", "source_mib", "parquet_mib", "seconds"]


def test_parquet_reads_back_identical_to_the_csv_views(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    pq_folder = convert_mimic(csv_folder, tmp_path / "pq").out
    for name in ("icu/inputevents", "hosp/labevents", "icu/procedureevents", "hosp/patients"):
        raw, checked = [], []
        for folder in (csv_folder, pq_folder):
            conn = MimicIV(folder).connect()
            try:
                raw.append(conn.raw_table(name).to_pandas())
                checked.append(conn.table(name).to_pandas())
            finally:
                conn.close()
        # the file as read: every row, in file order (the conversion drops and reorders nothing)
        pd.testing.assert_frame_equal(raw[0], raw[1])
        # the data-checked view removes duplicates with a set operation, which keeps no row order
        # on either engine: the same rows, compared order-independently
        assert len(checked[0]) >= 1
        by_all = list(checked[0].columns)
        pd.testing.assert_frame_equal(
            checked[0].sort_values(by_all).reset_index(drop=True), checked[1].sort_values(by_all).reset_index(drop=True)
        )
    # a concept view (CONCEPT_SCHEMA, more columns than the flagship's) too
    concept = ConceptSpec(table="icu/inputevents", itemids=[222011])
    events = []
    for folder in (csv_folder, pq_folder):
        conn = MimicIV(folder).connect()
        try:
            events.append(concept_events(conn, concept).to_pandas().sort_values(["subject_id", "start_time"]))
        finally:
            conn.close()
    assert len(events[0]) >= 1
    pd.testing.assert_frame_equal(events[0].reset_index(drop=True), events[1].reset_index(drop=True))
    pd.testing.assert_frame_equal(extract(pq_folder).data, extract(csv_folder).data)


def test_subset_short_names_and_unknown_table(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    result = convert_mimic(csv_folder, tmp_path / "pq", ["labevents", "icu/icustays"])
    assert [t.table for t in result.tables] == ["hosp/labevents", "icu/icustays"]
    assert sorted(p.name for p in (tmp_path / "pq").rglob("*.parquet")) == ["icustays.parquet", "labevents.parquet"]
    with pytest.raises(InputError, match=r"'hosp/labevent' is not in .*did you mean 'hosp/labevents'"):
        convert_mimic(csv_folder, tmp_path / "pq2", ["hosp/labevent"])
    with pytest.raises(InputError, match="no table chosen"):
        convert_mimic(csv_folder, tmp_path / "pq3", [])


def test_a_damaged_file_of_a_table_not_asked_for_is_no_obstacle(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    (csv_folder / "hosp" / "omr.csv.gz").write_bytes(b"")  # empty: its header cannot be read
    result = convert_mimic(csv_folder, tmp_path / "pq", ["hosp/patients"])
    assert [t.table for t in result.tables] == ["hosp/patients"]
    with pytest.raises(SourceError, match=r"omr\.csv\.gz: the file is empty"):
        convert_mimic(csv_folder, tmp_path / "pq_all")  # every table: the damaged one is named


def test_refuses_to_overwrite_unless_forced(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    out = tmp_path / "pq"
    convert_mimic(csv_folder, out, ["hosp/patients"])
    before = (out / "hosp" / "patients.parquet").stat().st_mtime_ns
    with pytest.raises(InputError, match=r"already converted .*hosp/patients.*--force"):
        convert_mimic(csv_folder, out, ["hosp/patients", "icu/icustays"])
    assert not (out / "icu" / "icustays.parquet").exists()  # nothing written when refusing
    result = convert_mimic(csv_folder, out, ["hosp/patients"], force=True)
    assert result.tables[0].rows == 3
    assert (out / "hosp" / "patients.parquet").stat().st_mtime_ns >= before


def test_refuses_the_source_folder_itself_and_a_csv_that_would_shadow(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    with pytest.raises(InputError, match="is the MIMIC-IV folder itself"):
        convert_mimic(csv_folder, csv_folder)
    shadow = small().write(tmp_path / "other")
    with pytest.raises(InputError, match="readers would open those instead"):
        convert_mimic(csv_folder, shadow, ["hosp/patients"])


def test_truncated_gzip_names_the_file_and_leaves_no_table(tmp_path):
    m = small()
    for i in range(3000):  # enough rows that a cut falls inside the compressed stream
        m.rows["hosp/labevents"].append(dict(m.rows["hosp/labevents"][0], labevent_id=10_000 + i, valuenum=i / 7))
    csv_folder = m.write(tmp_path / "csv")
    labs = csv_folder / "hosp" / "labevents.csv.gz"
    data = labs.read_bytes()
    labs.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "pq"
    # the words `run` and `check` use for the same cut file (one reading of the engine's errors)
    with pytest.raises(SourceError, match=r"labevents\.csv\.gz: the compressed file ends early .*download it again"):
        convert_mimic(csv_folder, out, ["hosp/patients", "hosp/labevents"])
    assert (out / "hosp" / "patients.parquet").is_file()  # finished before the error: kept
    assert not (out / "hosp" / "labevents.parquet").exists()
    assert list((out / "hosp").glob(".*partial*")) == []  # no temporary file left behind
    labs.write_bytes(b"this is not gzip at all")  # fails already at the header, still naming the file
    with pytest.raises(SourceError, match=r"labevents\.csv\.gz: cannot read the header line"):
        convert_mimic(csv_folder, out, ["hosp/labevents"])


def test_corrupt_gzip_body_names_the_file_and_the_line(tmp_path):
    m = small()
    for i in range(3000):
        m.rows["hosp/labevents"].append(dict(m.rows["hosp/labevents"][0], labevent_id=10_000 + i, valuenum=i / 7))
    csv_folder = m.write(tmp_path / "csv")
    labs = csv_folder / "hosp" / "labevents.csv.gz"
    data = bytearray(labs.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the compressed stream
    labs.write_bytes(bytes(data))
    # DuckDB sees garbage rows before the checksum fails; the archive is blamed, not a row to fix by hand
    with pytest.raises(SourceError, match=r"labevents\.csv\.gz: the compressed file ends early or is damaged"):
        convert_mimic(csv_folder, tmp_path / "pq", ["hosp/labevents"])
    assert not (tmp_path / "pq" / "hosp" / "labevents.parquet").exists()


def test_row_count_mismatch_is_an_error_and_the_table_is_not_kept(tmp_path, monkeypatch):
    from retrocohort.sources import convert

    csv_folder = small().write(tmp_path / "csv")
    real = convert._run_with_progress

    def lying(con, sql, table, total, progress):
        real(con, sql, table, total, progress)
        return [(10**6,)]  # as if DuckDB had parsed a million rows but written 3

    monkeypatch.setattr(convert, "_run_with_progress", lying)
    with pytest.raises(SourceError, match=r"patients\.csv\.gz: 1000000 rows read but 3 rows in the Parquet file"):
        convert_mimic(csv_folder, tmp_path / "pq", ["hosp/patients"])
    assert list((tmp_path / "pq" / "hosp").iterdir()) == []


def test_bad_value_names_file_column_line(tmp_path):
    m = small()
    m.rows["hosp/labevents"][0]["charttime"] = "2150-03-10 9:00"
    with pytest.raises(SourceError, match=r"labevents\.csv\.gz: column 'charttime', line 2"):
        convert_mimic(m.write(tmp_path / "bad"), tmp_path / "pq")
    assert not (tmp_path / "pq" / "hosp" / "labevents.parquet").exists()


def test_interrupted_conversion_leaves_no_finished_looking_table(tmp_path, monkeypatch):
    from retrocohort.sources import convert

    csv_folder = small().write(tmp_path / "csv")
    out = tmp_path / "pq"
    calls = {"n": 0}
    real = convert._convert_csv

    def interrupted(con, source, tf, tmp, progress):
        calls["n"] += 1
        if tf.table == "hosp/labevents":
            real(con, source, tf, tmp, progress)  # the temporary file is complete on disk...
            assert tmp.exists()
            raise KeyboardInterrupt  # ...and then the user presses Ctrl-C before the rename
        return real(con, source, tf, tmp, progress)

    monkeypatch.setattr(convert, "_convert_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_mimic(csv_folder, out, ["hosp/patients", "hosp/labevents"])
    assert calls["n"] == 2
    assert (out / "hosp" / "patients.parquet").is_file()
    assert not (out / "hosp" / "labevents.parquet").exists()
    assert [p.name for p in (out / "hosp").iterdir()] == ["patients.parquet"]
    # a stale temporary file of a killed run is removed by the next run of that table
    stale = out / "hosp" / ".labevents.parquet.partial-deadbeef"
    stale.write_bytes(b"half")
    monkeypatch.setattr(convert, "_convert_csv", real)
    convert_mimic(csv_folder, out, ["hosp/labevents"])
    assert not stale.exists()
    assert MimicIV(out).locate("hosp/labevents").format == "parquet"


def test_progress_poller_reports_and_hands_worker_errors_to_the_caller(tmp_path):
    from retrocohort.sources.convert import _run_with_progress

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    seen: list[int] = []
    rows = _run_with_progress(con, "SELECT count(*) FROM range(3)", "t", 100, lambda t, d, n: seen.append(d))
    assert rows == [(3,)]
    assert all(0 <= d <= 100 for d in seen)
    # an exception in the worker reaches the caller
    with pytest.raises(duckdb.Error):
        _run_with_progress(con, "SELECT * FROM no_such_table", "t", 100, None)


def test_ctrl_c_while_a_query_runs_stops_it_and_frees_the_connection():
    import time

    from retrocohort.sources.convert import _run_with_progress

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    calls = []

    def ctrl_c(table, done, total):
        calls.append(done)
        raise KeyboardInterrupt  # what Ctrl-C raises in the polling main thread

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        # minutes of work on 2 cores if it were not interrupted
        _run_with_progress(con, "SELECT sum(hash(i)) FROM range(20000000000) t(i)", "t", 100, ctrl_c)
    assert calls and time.perf_counter() - started < 30
    assert con.execute("SELECT 41 + 1").fetchall() == [(42,)]  # the query was stopped, not left running
    con.close()


def test_parquet_source_tables_are_copied(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    first = convert_mimic(csv_folder, tmp_path / "pq", ["hosp/patients"]).out
    second = convert_mimic(first, tmp_path / "pq2")
    assert [(t.table, t.action, t.rows) for t in second.tables] == [("hosp/patients", "copied", 3)]


def test_synthetic_marker_travels_and_missing_folder(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    (csv_folder / "SYNTHETIC.json").write_text("{}")
    result = convert_mimic(csv_folder, tmp_path / "pq", ["hosp/patients"])
    assert (tmp_path / "pq" / "SYNTHETIC.json").is_file()
    assert result.notes
    with pytest.raises(SourceError, match="not found"):
        convert_mimic(tmp_path / "nope", tmp_path / "pq9")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no MIMIC-IV tables found"):
        convert_mimic(tmp_path / "empty", tmp_path / "pq9")
