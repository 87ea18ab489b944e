"""Round 3 of hostile raw data: values the readers used to mangle silently, and shapes not tried before.

Every case copies the session's synthetic EHR, damages one table and reads it the way every study does
(``SourceConnection.table``: typed, after the data checks). It ends one of two ways, asserted:

- **refused**: a :class:`~retrocohort.errors.SourceError` whose message holds the file, the column, the line
  and what to do (the words listed with the case);
- **read the same**: the rows equal the undamaged folder's (the damage is a harmless shape).

The cases marked for both engines run again on Spark (``test_spark_ends_as_duckdb``, one Spark session for
all of them): the same study on the same data must end the same way on both engines. Spark runs those where
the engines used to differ, or might (about 2.5 s a case on 2 cores), not every harmless shape.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import retrocohort as rc
from retrocohort.errors import RetrocohortError, SourceError
from retrocohort.sources import MimicIV

from .conftest import Baseline, checked
from .damage import read_rows, read_text, set_value, table_path, write_rows, write_text

P, A, ICU = "hosp/patients", "hosp/admissions", "icu/icustays"
LAB, INP = "hosp/labevents", "icu/inputevents"

Facts = dict[str, Any] | None


@dataclass(frozen=True)
class Case:
    id: str
    table: str  # the table read
    damage: Callable[[Path, Baseline], Facts]
    words: tuple[str, ...]  # empty: the rows read are the undamaged rows; else the words the error must hold
    spark: bool  # run on Spark too


CASES: list[Case] = []


def case(table: str, *words: str, spark: bool = False) -> Callable[[Callable[[Path, Baseline], Facts]], Any]:
    def register(damage: Callable[[Path, Baseline], Facts]) -> Callable[[Path, Baseline], Facts]:
        CASES.append(Case(damage.__name__, table, damage, words, spark))
        return damage

    return register


def bystander(base: Baseline) -> Callable[[dict[str, str]], bool]:
    return lambda row: row["subject_id"] in base.bystanders


def typed_parquet(root: Path, table: str, types: dict[str, pa.DataType], rows: slice | None = None) -> pa.Table:
    """The csv.gz of ``table`` as an Arrow table: the columns in ``types`` typed so, the others text."""
    path = table_path(root, table)
    header = read_text(path).split("\n", 1)[0].split(",")
    options = pacsv.ConvertOptions(column_types={c: pa.string() for c in header} | types)
    return pacsv.read_csv(path, convert_options=options)


def replace_by_parquet(root: Path, table: str, frame: pa.Table, **write: Any) -> Path:
    target = root / f"{table}.parquet"
    pq.write_table(frame, target, **write)
    table_path(root, table).unlink()
    return target


def with_value(frame: pa.Table, column: str, row: int, value: Any) -> pa.Table:
    values = frame.column(column).to_pylist()
    values[row] = value
    at = frame.schema.get_field_index(column)
    return frame.set_column(at, frame.schema.field(at), pa.array(values, type=frame.schema.field(at).type))


# ------------------------------------------------------------------------------------------- item 1: fractions in ids

_NOT_WHOLE = "is not a whole number"
_WHAT_TO_DO = "export the table again"


@case(
    P,
    "hosp/patients.csv.gz",
    "column 'subject_id'",
    "line {line}",
    "'{value}'",
    _NOT_WHOLE,
    "first of 1 row(s)",
    _WHAT_TO_DO,
    spark=True,
)
def fraction_in_a_subject_id(root: Path, base: Baseline) -> Facts:
    # Before: DuckDB read 10000032.5 as 10000033, another patient (or a key conflict with that patient).
    subject = base.spare[0]
    facts = set_value(root, P, "subject_id", f"{subject}.5", lambda d: d["subject_id"] == subject, limit=1)
    return facts | {"value": f"{subject}.5"}


@case(P, "column 'anchor_age'", "line {line}", "'60.5'", _NOT_WHOLE, "INTEGER")
def fraction_in_an_age(root: Path, base: Baseline) -> Facts:
    return set_value(root, P, "anchor_age", "60.5", bystander(base), limit=1)


@case(A, "hosp/admissions.csv.gz", "column 'hadm_id'", "line {line}", _NOT_WHOLE, "first of 3 row(s)")
def fractions_in_three_admission_ids(root: Path, base: Baseline) -> Facts:
    def shift(d: dict[str, str]) -> bool:
        return d["subject_id"] in base.bystanders

    header, rows = read_rows(root, A)
    at, lines, changed = header.index("hadm_id"), [], 0
    for i, row in enumerate(rows):
        if changed < 3 and shift(dict(zip(header, row, strict=True))):
            row[at] += ".25"
            lines.append(i + 2)
            changed += 1
    write_rows(root, A, header, rows)
    return {"line": lines[0]}


@case(INP, "icu/inputevents.csv.gz", "column 'itemid'", "line {line}", _NOT_WHOLE, "INTEGER", spark=True)
def fraction_in_an_itemid(root: Path, base: Baseline) -> Facts:
    # A bystander's row: the study's itemid filter tests every row's itemid, so the fraction is seen anyway.
    row = base.spare[1]
    return set_value(root, INP, "itemid", "225166.5", lambda d: d["subject_id"] == row, limit=1)


@case(INP, "column 'itemid'", "line {line}", "'0x10'", "INTEGER", "Fix or remove that row", spark=True)
def hexadecimal_itemid(root: Path, base: Baseline) -> Facts:
    # Before: DuckDB's integer parser read 0x10 as 16.
    return set_value(root, INP, "itemid", "0x10", bystander(base), limit=1)


@case(P, "column 'subject_id'", "line {line}", "'10,000,032'", "BIGINT")
def thousands_separator_in_a_quoted_id(root: Path, base: Baseline) -> Facts:
    return set_value(root, P, "subject_id", "10,000,032", bystander(base), limit=1)


@case(P, "column 'anchor_age'", "line {line}", "'true'", "INTEGER")
def boolean_in_an_integer_column(root: Path, base: Baseline) -> Facts:
    return set_value(root, P, "anchor_age", "true", bystander(base), limit=1)


@case(ICU, "icustays.parquet", "column 'stay_id'", _NOT_WHOLE, "int64", spark=True)
def parquet_ids_as_doubles_with_a_fraction(root: Path, base: Baseline) -> Facts:
    # Before: the view's CAST(double AS BIGINT) rounded 30000001.5 to the next stay.
    frame = typed_parquet(root, ICU, {"stay_id": pa.float64()})
    replace_by_parquet(root, ICU, with_value(frame, "stay_id", 5, frame.column("stay_id")[5].as_py() + 0.5))


@case(ICU, "icustays.parquet", "column 'subject_id'", _NOT_WHOLE)
def parquet_ids_as_text_with_a_fraction(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, ICU, {})
    replace_by_parquet(root, ICU, with_value(frame, "subject_id", 7, frame.column("subject_id")[7].as_py() + ".5"))


@case(ICU, "icustays.parquet", "column 'hadm_id'", _NOT_WHOLE)
def parquet_ids_as_decimals_with_a_fraction(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, ICU, {"hadm_id": pa.decimal128(12, 1)})
    import decimal

    replace_by_parquet(
        root, ICU, with_value(frame, "hadm_id", 3, frame.column("hadm_id")[3].as_py() + decimal.Decimal("0.5"))
    )


@case(INP, "column 'itemid'", _NOT_WHOLE, "INTEGER")
def itemid_beyond_int32_in_a_parquet_double(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, INP, {"itemid": pa.float64()})
    replace_by_parquet(root, INP, with_value(frame, "itemid", 0, 3.0e9))


# Accepted: a whole number written in another way reads as that number.


@case(ICU, spark=True)
def ids_written_as_floats_on_both_engines(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: its integer parser refused 10000032.0, which DuckDB read.
    def edit(header: list[str], rows: list[list[str]]) -> None:
        for column in ("subject_id", "stay_id"):
            at = header.index(column)
            for row in rows:
                row[at] += ".0"

    header, rows = read_rows(root, ICU)
    edit(header, rows)
    write_rows(root, ICU, header, rows)


@case(P, spark=True)
def ages_with_a_leading_plus(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, P)
    at = header.index("anchor_age")
    write_rows(root, P, header, [[*r[:at], "+" + r[at], *r[at + 1 :]] for r in rows])


@case(P)
def ages_in_scientific_notation(root: Path, base: Baseline) -> Facts:
    # 6.5e1 is the whole number 65: read as such (documented); 6.55e1 (65.5) would be refused as a fraction.
    header, rows = read_rows(root, P)
    at = header.index("anchor_age")
    for row in rows:
        row[at] = f"{int(row[at]) / 10}e1"
    write_rows(root, P, header, rows)


# ------------------------------------------------------------------------------------------- item 2: Spark's leniencies


@case(ICU, "icu/icustays.csv.gz", "line 6 of the file", "9 fields where the header has 8", spark=True)
def extra_field_in_a_row(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: the extra field was dropped (its CSV parser reads only the columns selected).
    path = table_path(root, ICU)
    lines = read_text(path).split("\n")
    lines[5] += ",extra"
    write_text(path, "\n".join(lines))


@case(ICU, "icu/icustays.csv.gz", "line 6 of the file", "Fix or remove that row", spark=True)
def unclosed_quote_in_a_row(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: the quote was dropped and the row read (DuckDB: "never closed").
    path = table_path(root, ICU)
    lines = read_text(path).split("\n")
    fields = lines[5].split(",")
    fields[3] = '"' + fields[3]
    lines[5] = ",".join(fields)
    write_text(path, "\n".join(lines))


@case(P, "hosp/patients.csv.gz", "line 4", "not UTF-8 text", "iconv", spark=True)
def latin1_byte_in_a_column_read(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: the byte became U+FFFD and "F\ufffd" a third sex.
    path = table_path(root, P)
    lines = read_text(path).split("\n")
    fields = lines[3].split(",")
    fields[1] = "F\u00e9"
    lines[3] = ",".join(fields)
    path.write_bytes(gzip.compress("\n".join(lines).encode("latin-1")))


@case(A, spark=True)
def crlf_inside_quoted_values(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: a quoted line break split the row in two (its reader was line by line).
    set_value(root, A, "insurance", "Medic,aid\r\nplan", lambda d: True, limit=20)


@case(ICU)
def trailing_empty_lines(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    write_text(path, read_text(path) + "\n\n\n")


# ------------------------------------------------------------------------------------------- item 4: Parquet shapes


@case(ICU)
def parquet_ids_as_int32(root: Path, base: Baseline) -> Facts:
    types = {c: pa.int32() for c in ("subject_id", "hadm_id", "stay_id")}
    replace_by_parquet(root, ICU, typed_parquet(root, ICU, types | {"intime": pa.timestamp("s")}))


@case(ICU, spark=True)
def parquet_ids_as_whole_decimals(root: Path, base: Baseline) -> Facts:
    types = {c: pa.decimal128(12, 0) for c in ("subject_id", "hadm_id", "stay_id")}
    replace_by_parquet(root, ICU, typed_parquet(root, ICU, types))


@case(P)
def parquet_dictionary_encoded_text(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, P, {"subject_id": pa.int64()})
    at = frame.schema.get_field_index("gender")
    frame = frame.set_column(at, "gender", frame.column("gender").dictionary_encode())
    replace_by_parquet(root, P, frame)


@case(A)
def parquet_with_a_list_column_never_read(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, A, {})
    replace_by_parquet(root, A, frame.append_column("tags", pa.array([["x", "y"]] * frame.num_rows)))


@case(P, "column 'anchor_age' is stored as list", "write the Parquet file again")
def parquet_with_a_list_in_a_column_read(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, P, {})
    at = frame.schema.get_field_index("anchor_age")
    replace_by_parquet(root, P, frame.set_column(at, "anchor_age", pa.array([[1]] * frame.num_rows)))


@case(ICU, spark=True)
def parquet_parts_with_int32_int64_and_double_ids(root: Path, base: Baseline) -> Facts:
    folder = root / "icu" / "icustays.parquet"
    folder.mkdir()
    for i, kind in enumerate((pa.int32(), pa.int64(), pa.float64())):
        frame = typed_parquet(root, ICU, {c: kind for c in ("subject_id", "hadm_id", "stay_id")})
        pq.write_table(frame.slice(i * 300, 300 if i < 2 else None), folder / f"part-{i}.parquet")
    table_path(root, ICU).unlink()


@case(ICU)
def parquet_times_in_seconds_and_milliseconds(root: Path, base: Baseline) -> Facts:
    types = {"intime": pa.timestamp("s"), "outtime": pa.timestamp("ms")}
    replace_by_parquet(root, ICU, typed_parquet(root, ICU, types))


@case(ICU, spark=True)
def parquet_times_in_nanoseconds(root: Path, base: Baseline) -> Facts:
    # pandas' default unit. DuckDB reads it; Spark cannot (SPARK_ENDS_OTHERWISE says how it ends there).
    replace_by_parquet(root, ICU, typed_parquet(root, ICU, {"intime": pa.timestamp("ns")}))


@case(ICU)
def parquet_with_many_small_row_groups(root: Path, base: Baseline) -> Facts:
    replace_by_parquet(root, ICU, typed_parquet(root, ICU, {}), row_group_size=7)


@case(ICU, "no data rows", "Get the file again")
def parquet_with_zero_row_groups(root: Path, base: Baseline) -> Facts:
    frame = typed_parquet(root, ICU, {})
    replace_by_parquet(root, ICU, frame.slice(0, 0))


# ------------------------------------------------------------------------------------------- item 4: more CSV shapes


@case(P)
def ids_and_ages_quoted(root: Path, base: Baseline) -> Facts:
    import csv
    import io

    header, rows = read_rows(root, P)
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, *rows])
    write_text(table_path(root, P), buffer.getvalue())


@case(ICU, "icu/icustays.csv.gz", "column 'subject_id'", "line {line}", "'subject_id'", "Fix or remove that row")
def header_repeated_in_the_middle(root: Path, base: Baseline) -> Facts:
    # Two exports concatenated as text (not as gzip members): the second header is a data row.
    path = table_path(root, ICU)
    header, rest = read_text(path).split("\n", 1)
    lines = rest.split("\n")
    write_text(path, "\n".join([header, *lines[:10], header, *lines[10:]]))
    return {"line": 12}


@case(A, "hosp/admissions.csv.gz", "column 'subject_id', line 5 of the file", "is not a BIGINT value", "Fix or remove")
def data_rows_separated_by_semicolons(root: Path, base: Baseline) -> Facts:
    # A comma header over ';' rows (an edited export): each row is one field.
    path = table_path(root, A)
    lines = read_text(path).split("\n")
    lines[4] = lines[4].replace(",", ";")
    write_text(path, "\n".join(lines))


@case(P, "patients.parquet: column 'anchor_age' holds the text 'old'", "write the Parquet file again", spark=True)
def parquet_text_that_is_not_a_number(root: Path, base: Baseline) -> Facts:
    # Before, on Spark: its cast error (CAST_INVALID_INPUT) came out untranslated, with a traceback.
    frame = typed_parquet(root, P, {})
    replace_by_parquet(root, P, with_value(frame, "anchor_age", 3, "old"))


# ------------------------------------------------------------------------------------------- the tests


def read_ending(root: Path, table: str, engine: str = "duckdb", spark: Any = None) -> pd.DataFrame | str:
    """The rows of ``table`` as every study reads them, or the message of the error that stops the read."""
    try:
        conn = MimicIV(root).connect(engine=engine, spark=spark)  # type: ignore[arg-type]
    except RetrocohortError as exc:
        return str(exc)
    try:
        with conn.errors():
            frame = conn.table(table).to_pandas()
    except RetrocohortError as exc:
        return str(exc)
    except Exception as exc:  # an engine error that was not translated: a failure of the case, said as such
        return f"Traceback (untranslated {type(exc).__name__}): {str(exc)[:300]}"
    finally:
        conn.close()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def assert_ends_as_expected(ending: pd.DataFrame | str, hostile: Case, facts: dict[str, Any], base_ehr: Path) -> None:
    if hostile.words:
        assert isinstance(ending, str), f"{hostile.id}: read without an error"
        for word in hostile.words:
            assert word.format(**facts) in ending, f"{word.format(**facts)!r} not in: {ending}"
        assert "Traceback" not in ending and "retrocohort: not" not in ending
    else:
        assert not isinstance(ending, str), ending
        pd.testing.assert_frame_equal(ending, checked(base_ehr, hostile.table), check_dtype=False)


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_duckdb_ends_as_documented(hostile: Case, ehr: Path, base_ehr: Path, baseline: Baseline):
    facts = hostile.damage(ehr, baseline) or {}
    assert_ends_as_expected(read_ending(ehr, hostile.table), hostile, facts, base_ehr)


def test_a_fraction_in_a_key_stops_the_study_run(ehr: Path, flagship: rc.Study, baseline: Baseline):
    # The whole study, not only the reader: an eligible patient's ICU stay with a fractional stay_id.
    subject = baseline.cohort_subjects[0]
    set_value(ehr, ICU, "stay_id", "30000000.5", lambda d: d["subject_id"] == subject, limit=1)
    with pytest.raises(SourceError, match=r"column 'stay_id', line \d+ .* is not a whole number"):
        rc.build_cohort(flagship, ehr)


def test_convert_refuses_a_fraction_too(ehr: Path, tmp_path: Path, baseline: Baseline):
    from retrocohort.sources.convert import convert_mimic

    set_value(ehr, P, "anchor_age", "70.5", bystander(baseline), limit=1)
    with pytest.raises(SourceError, match=r"column 'anchor_age', line \d+ .*'70\.5' is not a whole number"):
        convert_mimic(ehr, tmp_path / "parquet", ("hosp/patients",))


SPARK_CASES = [c for c in CASES if c.spark]
#: Cases that end otherwise on Spark, with the words its error holds (docs/cohort.md says so).
SPARK_ENDS_OTHERWISE: dict[str, tuple[str, ...]] = {
    "parquet_times_in_nanoseconds": ("icustays.parquet", "Spark cannot read", "nanoseconds", "coerce_timestamps='us'"),
}


@pytest.fixture(scope="module")
def spark_session() -> Any:
    from retrocohort.sources.spark import local_spark_session

    session = local_spark_session()
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_ends_as_duckdb(spark_session: Any, base_ehr: Path, baseline: Baseline, tmp_path: Path):
    # One test for every case (one Spark session, no per-case fixture cost); each case on a fresh copy.
    import shutil

    failures = []
    for i, hostile in enumerate(SPARK_CASES):
        root = tmp_path / f"case{i}"
        shutil.copytree(base_ehr, root)
        facts = hostile.damage(root, baseline) or {}
        on_duckdb = read_ending(root, hostile.table)
        on_spark = read_ending(root, hostile.table, "spark", spark_session)
        try:
            if hostile.id in SPARK_ENDS_OTHERWISE:
                hostile = dataclasses.replace(hostile, words=SPARK_ENDS_OTHERWISE[hostile.id])
            assert_ends_as_expected(on_spark, hostile, facts, base_ehr)
            if isinstance(on_duckdb, str):
                assert on_spark == on_duckdb
        except AssertionError as exc:
            failures.append(f"{hostile.id}: {exc}")
        shutil.rmtree(root)
    assert not failures, "\n".join(failures)
    assert len(SPARK_CASES) >= 12


# ------------------------------------------------------------------------------------------- item 3: gzip trailer


def flip_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the first byte of the CRC-32 in the gzip trailer; the deflate stream is intact
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("table", [P, LAB], ids=["patients", "labevents"])
def test_a_wrong_gzip_checksum_stops_the_study_as_check_does(table: str, ehr: Path, flagship: rc.Study):
    from retrocohort.sources.mimic_iv import read_through

    path = table_path(ehr, table)
    flip_crc(path)
    with pytest.raises(SourceError) as by_check:
        read_through(path)  # what `retrocohort check` runs on every file
    with pytest.raises(SourceError) as by_run:
        rc.build_cohort(flagship, ehr)
    assert str(by_run.value) == str(by_check.value)
    assert str(path) in str(by_run.value) and "CRC check failed" in str(by_run.value)


def test_each_archive_is_verified_once_per_process(ehr: Path, flagship: rc.Study, monkeypatch: pytest.MonkeyPatch):
    from retrocohort.sources import mimic_iv

    verified: list[str] = []
    real = mimic_iv.read_through

    def counting(path: Any, *args: Any, **kwargs: Any) -> int:
        verified.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mimic_iv, "read_through", counting)
    first = rc.build_cohort(flagship, ehr)
    once = sorted(verified)
    # Every csv.gz the flagship reads, each once, although the flagship reads several tables in two phases.
    assert once == sorted(set(once))
    assert {"patients.csv.gz", "admissions.csv.gz", "icustays.csv.gz", "labevents.csv.gz"} <= set(once)
    second = rc.build_cohort(flagship, ehr)
    assert sorted(verified) == once  # unchanged files are not verified again
    assert second.counts == first.counts


def test_parquet_text_that_is_not_a_date_names_the_column(ehr: Path, base_ehr: Path, baseline: Baseline):
    # Before: the trimmed text was cast without its column, and an empty text in a date column stopped the read.
    frame = typed_parquet(ehr, P, {})
    replace_by_parquet(ehr, P, with_value(frame, "dod", 2, "05/12/2150"))
    ending = read_ending(ehr, P)
    assert isinstance(ending, str)
    assert "patients.parquet: column 'dod' holds the text '05/12/2150', which is not dates" in ending


def test_a_table_split_into_parts_is_named_with_what_to_do(ehr: Path, flagship: rc.Study):
    # The docs promise one file per table (or a Parquet folder of parts); parts of a CSV are not joined silently.
    path = table_path(ehr, LAB)
    header, rest = read_text(path).split("\n", 1)
    lines = rest.rstrip("\n").split("\n")
    write_text(ehr / "hosp" / "labevents_1.csv.gz", "\n".join([header, *lines[:100]]) + "\n")
    write_text(ehr / "hosp" / "labevents_2.csv.gz", "\n".join([header, *lines[100:]]) + "\n")
    path.unlink()
    with pytest.raises(SourceError) as info:
        rc.build_cohort(flagship, ehr)
    message = str(info.value)
    assert "table hosp/labevents not found" in message
    assert "Found labevents_1.csv.gz, labevents_2.csv.gz there" in message and "single header line" in message
