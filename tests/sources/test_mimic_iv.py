"""The MIMIC-IV reader: missing tables/columns, malformed values, Parquet, check_source."""

from __future__ import annotations

import gzip

import duckdb
import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.errors import SourceError
from retrocohort.sources import SCHEMA, MimicIV, check_source
from retrocohort.spec import load_study_file
from retrocohort.study import FLAGSHIP_STUDY as FLAGSHIP
from tests.cohort.legacy import extract
from tests.cohort.minimimic import HEADERS, MiniMimic


def small() -> MiniMimic:
    m = MiniMimic()
    m.ckrt_patient(1)
    p = m.ckrt_patient(2)
    m.magnesium(2, p["hadm_id"], p["stay_id"], p["index"] + pd.Timedelta(hours=3))
    m.ckrt_patient(3, deathtime="2150-03-20 08:00:00")
    return m


def test_missing_folder():
    with pytest.raises(SourceError, match="not found"):
        MimicIV("/nonexistent/mimic")


def test_missing_required_table_names_file_and_version(tmp_path):
    folder = small().write(tmp_path, omit=("hosp/labevents",))
    with pytest.raises(SourceError) as err:
        build_cohort(load_study_file(FLAGSHIP), folder)
    message = str(err.value)
    assert "hosp/labevents" in message and "labevents.csv.gz" in message
    assert "v2.2" in message and "v3.1" in message
    # the concepts of the study that read it, and the module it ships in
    assert "'serum_mg'" in message and "hosp module" in message


def test_a_table_every_study_reads_is_required_without_a_study(tmp_path):
    folder = small().write(tmp_path, omit=("icu/icustays",))
    with pytest.raises(SourceError, match=r"icu/icustays not found.*every study reads it.*icu module"):
        MimicIV(folder).validate()
    # a table only some studies read is not required without a study
    assert MimicIV(small().write(tmp_path / "nolabs", omit=("hosp/labevents",))).validate()["hosp/labevents"] is None


def test_missing_required_column_names_file_and_column(tmp_path):
    folder = small().write(tmp_path, drop_columns={"hosp/labevents": ["valuenum"]})
    with pytest.raises(SourceError) as err:
        build_cohort(load_study_file(FLAGSHIP), folder)
    message = str(err.value)
    assert str(folder / "hosp" / "labevents.csv.gz") in message
    assert "'valuenum'" in message and "v2.2" in message


def test_malformed_timestamp_names_file_column_and_line(tmp_path):
    m = small()
    n_rows = len(m.rows["hosp/admissions"])
    header = HEADERS["hosp/admissions"]
    bad = {c: "" for c in header} | {"subject_id": "1", "hadm_id": "19", "admittime": "2150-03-08 25:00:00"}
    folder = m.write(tmp_path, raw_lines={"hosp/admissions": [",".join(bad[c] for c in header)]})
    with pytest.raises(SourceError) as err:
        extract(folder)
    message = str(err.value)
    assert "admissions.csv.gz" in message
    assert "'admittime'" in message
    # Line 1 is the header; the bad row was written after the n_rows good ones.
    assert f"line {n_rows + 2}" in message
    assert "2150-03-08 25:00:00" in message and "YYYY-MM-DD HH:MM:SS" in message


def test_malformed_date_in_dod(tmp_path):
    m = small()
    m.rows["hosp/patients"][1]["dod"] = "20/03/2150"
    folder = m.write(tmp_path)
    with pytest.raises(SourceError, match=r"patients\.csv\.gz: column 'dod', line 3"):
        extract(folder)


def test_absent_optional_table_is_reported_not_fatal(tmp_path):
    folder = small().write(tmp_path, omit=("icu/chartevents",))
    conn = MimicIV(folder).connect()
    try:
        assert conn.absent == ("icu/chartevents",)
        assert not conn.has("icu/chartevents") and conn.has("icu/inputevents")
        assert any("icu/chartevents absent: concepts on charted observations" in note for note in conn.notes)
        with pytest.raises(SourceError, match="optional table icu/chartevents is absent"):
            conn.table("icu/chartevents")
    finally:
        conn.close()


def test_views_have_explicit_types_and_lowercase_names(tmp_path):
    folder = small().write(tmp_path)
    conn = MimicIV(folder).connect()
    try:
        for name, spec in SCHEMA.items():
            schema = conn.table(name).schema()
            assert list(schema.names) == [c for c in spec.columns if conn.has_column(name, c)]
        pe = conn.table("icu/procedureevents").schema()
        assert str(pe["starttime"]).startswith("timestamp") and str(pe["itemid"]) == "int32"
        assert str(conn.table("hosp/patients").schema()["dod"]) == "date"
    finally:
        conn.close()


def test_parquet_folder_gives_the_same_cohort(tmp_path):
    csv_folder = small().write(tmp_path / "csv")
    pq_folder = tmp_path / "parquet"
    con = duckdb.connect()
    for name in HEADERS:
        out = pq_folder / f"{name}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        # All-VARCHAR Parquet: the reader must cast to the schema's types itself.
        con.execute(
            f"COPY (SELECT * FROM read_csv('{csv_folder / name}.csv.gz', all_varchar = true, header = true)) "
            f"TO '{out}' (FORMAT parquet)"
        )
    con.close()
    from_csv = extract(csv_folder)
    from_parquet = extract(pq_folder)
    assert MimicIV(pq_folder).locate("icu/inputevents").format == "parquet"
    pd.testing.assert_frame_equal(from_parquet.data, from_csv.data)
    pd.testing.assert_frame_equal(from_parquet.attrition, from_csv.attrition)
    assert len(from_csv.data) == 3


def test_to_parquet_converts_with_types_and_gives_the_same_cohort(tmp_path):
    from retrocohort.sources.mimic_iv import to_parquet

    csv_folder = small().write(tmp_path / "csv")
    out = to_parquet(csv_folder, tmp_path / "pq")
    import pyarrow.parquet as pq

    schema = pq.read_schema(out / "icu" / "procedureevents.parquet")
    assert str(schema.field("starttime").type).startswith("timestamp")
    assert schema.names[-2:] == ["ORIGINALAMOUNT", "ORIGINALRATE"]  # every column kept, as spelt
    pd.testing.assert_frame_equal(extract(out).data, extract(csv_folder).data)
    m = small()
    m.rows["hosp/labevents"][0]["charttime"] = "2150-03-10 9:00"
    with pytest.raises(SourceError, match=r"labevents\.csv\.gz: column 'charttime', line 2"):
        to_parquet(m.write(tmp_path / "bad"), tmp_path / "pq_bad")


def test_check_source_reports_presence(tmp_path):
    folder = small().write(tmp_path, omit=("icu/chartevents",), drop_columns={"icu/inputevents": ["statusdescription"]})
    report = check_source(folder)
    assert list(report.columns) == ["table", "column", "file", "present", "required", "needed_by"]
    assert len(report) == sum(len(spec.columns) for spec in SCHEMA.values())
    charted = report[report.table == "icu/chartevents"]
    assert not charted.present.any() and not charted.required.any()
    status = report[(report.table == "icu/inputevents") & (report.column == "statusdescription")].iloc[0]
    assert not status.present and not status.required
    rest = report[(report.table != "icu/chartevents") & (report.column != "statusdescription")]
    assert rest.present.all()
    # study-neutral: only the tables every study reads are required
    every = {"hosp/patients", "hosp/admissions", "icu/icustays"}
    assert set(rest.loc[rest.required, "table"]) == every
    assert not rest.loc[~rest.table.isin(every), "required"].any()


def test_upper_case_header_columns_are_kept(tmp_path):
    folder = small().write(tmp_path)
    with gzip.open(folder / "icu" / "procedureevents.csv.gz", "rt") as handle:
        header = handle.readline().strip().split(",")
    assert header[-2:] == ["ORIGINALAMOUNT", "ORIGINALRATE"]
    assert MimicIV(folder).locate("icu/procedureevents").header == tuple(header)


def test_locate_malformed_scans_every_typed_column(tmp_path):
    # Used when Spark reports a malformed record without saying where: DuckDB finds the file and line.
    from retrocohort.sources.mimic_iv import locate_malformed

    m = small()
    good = m.write(tmp_path / "good")
    assert locate_malformed(MimicIV(good)) is None
    m.rows["icu/inputevents"][0]["endtime"] = "2150-03-10T12:00"
    bad = m.write(tmp_path / "bad")
    error = locate_malformed(MimicIV(bad))
    assert isinstance(error, SourceError)
    assert "inputevents.csv.gz: column 'endtime', line 2" in str(error)


def test_absent_optional_column_is_said_and_the_rest_unchanged(tmp_path):
    full = extract(small().write(tmp_path / "full"))
    without = extract(small().write(tmp_path / "without", drop_columns={"icu/inputevents": ["statusdescription"]}))
    assert any("statusdescription absent" in note for note in without.notes)
    assert not any("statusdescription" in note for note in full.notes)
    # small() has no rewritten rows, so the cohort is the same.
    pd.testing.assert_frame_equal(without.data, full.data)


def test_engine_must_be_known(tmp_path):
    folder = small().write(tmp_path)
    with pytest.raises(ValueError, match=r"engine='postgres'.*\['duckdb', 'spark'\]"):
        extract(folder, engine="postgres")
    with pytest.raises(ValueError, match="engine='polars'"):
        MimicIV(folder).connect(engine="polars")


def test_unused_columns_are_never_parsed(tmp_path):
    # Real MIMIC-IV has text like '<0.5' in value, non-numeric reference ranges and quoted commas in
    # comments: the columns the study does not read are typed as text and cannot break a run.
    plain = extract(small().write(tmp_path / "plain"))
    m = small()
    for lab in m.rows["hosp/labevents"]:
        lab.update(value="<0.5", ref_range_lower="see note", comments='drawn late, "repeat", ok', flag="abnormal")
    for event in m.rows["icu/inputevents"]:
        event.update(totalamount="n/a", isopenbag="yes")
    messy = extract(m.write(tmp_path / "messy"))
    pd.testing.assert_frame_equal(messy.data, plain.data)
