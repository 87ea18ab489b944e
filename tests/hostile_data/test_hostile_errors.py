"""Hostile raw data that must stop a study with a clear error: which file, which column, which line, what to do.

Each case copies the session's synthetic EHR, damages one file and builds the flagship cohort
(``rc.build_cohort``, the first stage of ``rc.run_study`` and ``retrocohort run``). It must end in a
:class:`~retrocohort.errors.RetrocohortError` (the CLI prints it without a traceback and exits 2) whose message
holds every expected word: never a traceback, never a cohort built on silently changed rows.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import retrocohort as rc
from retrocohort.errors import RetrocohortError, SourceError

from .conftest import Baseline
from .damage import read_rows, read_text, set_value, table_path, write_rows, write_text

P, A, ICU = "hosp/patients", "hosp/admissions", "icu/icustays"
LAB, INP, DX = "hosp/labevents", "icu/inputevents", "hosp/diagnoses_icd"

Facts = dict[str, Any] | None


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[Path, Baseline], Facts]
    # Words the message must hold; "{line}" and the like are filled from the facts the damage returns.
    words: tuple[str, ...]


CASES: list[Case] = []


def case(*words: str, id: str | None = None) -> Callable[[Callable[[Path, Baseline], Facts]], Any]:
    def register(damage: Callable[[Path, Baseline], Facts]) -> Callable[[Path, Baseline], Facts]:
        CASES.append(Case(id or damage.__name__, damage, words))
        return damage

    return register


def bystander(base: Baseline) -> Callable[[dict[str, str]], bool]:
    return lambda row: row["subject_id"] in base.bystanders


def one_value(table: str, column: str, value: str) -> Callable[[Path, Baseline], Facts]:
    """Damage: ``value`` in ``column`` of the first row of a patient the study never indexes."""
    return lambda root, base: set_value(root, table, column, value, bystander(base), limit=1)


def drop_column(root: Path, table: str, column: str) -> None:
    header, rows = read_rows(root, table)
    at = header.index(column)
    write_rows(root, table, header[:at] + header[at + 1 :], [r[:at] + r[at + 1 :] for r in rows])


def header_only(root: Path, table: str) -> None:
    path = table_path(root, table)
    write_text(path, read_text(path).split("\n", 1)[0] + "\n")


def to_parquet_file(root: Path, table: str, change: Callable[[pa.Table], pa.Table] = lambda t: t) -> Path:
    """Replace the csv.gz of ``table`` by a Parquet file of its rows (all columns as text unless ``change``d)."""
    path = table_path(root, table)
    header = read_text(path).split("\n", 1)[0].split(",")
    options = pacsv.ConvertOptions(column_types={c: pa.string() for c in header})
    frame = change(pacsv.read_csv(path, convert_options=options))
    target = root / f"{table}.parquet"
    pq.write_table(frame, target)
    path.unlink()
    return target


# ------------------------------------------------------------------------------------------- missing / empty files


@case("hosp/patients not found", "copy it into the folder")
def missing_patients(root: Path, base: Baseline) -> Facts:
    table_path(root, P).unlink()


@case("icu/icustays not found", "copy it into the folder", "every study reads it")
def missing_icustays(root: Path, base: Baseline) -> Facts:
    table_path(root, ICU).unlink()


@case("hosp/admissions not found", "copy it into the folder")
def missing_admissions(root: Path, base: Baseline) -> Facts:
    table_path(root, A).unlink()


@case("hosp/labevents not found", "'serum_mg'", "remove those concepts from the study")
def missing_labevents_a_concept_needs(root: Path, base: Baseline) -> Facts:
    table_path(root, LAB).unlink()


@case("icu/inputevents not found", "'mg_iv'", "remove those concepts")
def missing_inputevents_a_concept_needs(root: Path, base: Baseline) -> Facts:
    table_path(root, INP).unlink()


@case("hosp/patients.csv.gz", "the file is empty", "header line")
def zero_byte_file(root: Path, base: Baseline) -> Facts:
    table_path(root, P).write_bytes(b"")


@case("hosp/patients.csv", "the file is empty", "header line")
def zero_byte_plain_csv(root: Path, base: Baseline) -> Facts:
    table_path(root, P).unlink()
    (root / "hosp" / "patients.csv").write_bytes(b"")


@case("icu/icustays.csv.gz", "the file is empty")
def gzip_of_nothing(root: Path, base: Baseline) -> Facts:
    write_text(table_path(root, ICU), "")


@case("hosp/admissions.csv.gz", "header but no data rows", "every study reads hosp/admissions", "Get the file again")
def header_only_admissions(root: Path, base: Baseline) -> Facts:
    header_only(root, A)


@case("hosp/patients.csv.gz", "header but no data rows", "Get the file again")
def header_only_patients(root: Path, base: Baseline) -> Facts:
    header_only(root, P)


@case("icu/icustays.csv.gz", "header but no data rows")
def header_only_icustays_with_blank_lines(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    write_text(path, read_text(path).split("\n", 1)[0] + "\n\n\n")


@case("icu/icustays.parquet", "header but no data rows")
def parquet_with_no_rows(root: Path, base: Baseline) -> Facts:
    to_parquet_file(root, ICU, lambda t: t.slice(0, 0))


# ------------------------------------------------------------------------------------------- damaged archives


@case("hosp/labevents.csv.gz", "ends early or is damaged", "download it again")
def truncated_gzip_half(root: Path, base: Baseline) -> Facts:
    path = table_path(root, LAB)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@case("icu/icustays.csv.gz", "ends early or is damaged", "download it again")
def truncated_gzip_last_bytes(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    path.write_bytes(path.read_bytes()[:-5])


@case("hosp/patients.csv.gz", "cannot read the header line", "Not a gzipped file", "complete download")
def plain_text_named_gz(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    path.write_bytes(read_text(path).encode())


@case("icu/icustays.csv.gz", "cannot read the header line", "complete download")
def random_bytes(root: Path, base: Baseline) -> Facts:
    table_path(root, ICU).write_bytes(bytes(range(256)) * 20)


@case("hosp/patients.csv.gz", "not UTF-8", "is this the right file")
def compressed_twice(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    path.write_bytes(gzip.compress(path.read_bytes()))


@case("hosp/patients.csv.gz", "not UTF-8", "MIMIC-IV files are UTF-8")
def utf16_text(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    write_text(path, read_text(path), encoding="utf-16")


@case("icu/icustays.parquet", "not a readable Parquet file", "Write it again")
def corrupt_parquet(root: Path, base: Baseline) -> Facts:
    table_path(root, ICU).unlink()
    (root / "icu" / "icustays.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")


@case("icu/icustays.parquet", "not a readable Parquet file")
def truncated_parquet(root: Path, base: Baseline) -> Facts:
    target = to_parquet_file(root, ICU)
    target.write_bytes(target.read_bytes()[:-30])


@case("icu/icustays.parquet", "'intime'", "stored as int64", "timestamps", "write the Parquet file again")
def parquet_time_stored_as_numbers(root: Path, base: Baseline) -> Facts:
    def change(t: pa.Table) -> pa.Table:
        return t.set_column(t.schema.get_field_index("intime"), "intime", pa.array([5] * len(t)))

    to_parquet_file(root, ICU, change)


@case("hosp/patients.parquet", "'anchor_age'", "holds the text 'old'", "write the Parquet file again")
def parquet_text_in_a_number_column(root: Path, base: Baseline) -> Facts:
    def change(t: pa.Table) -> pa.Table:
        ages = t.column("anchor_age").to_pylist()
        ages[3] = "old"
        return t.set_column(t.schema.get_field_index("anchor_age"), "anchor_age", pa.array(ages))

    to_parquet_file(root, P, change)


@case("icu/icustays.parquet", "a Parquet folder with no *.parquet files")
def parquet_folder_without_parts(root: Path, base: Baseline) -> Facts:
    table_path(root, ICU).unlink()
    (root / "icu" / "icustays.parquet").mkdir()


# ------------------------------------------------------------------------------------------- the wrong kind of file


@case("hosp/patients.csv.gz", "is a folder, not a file")
def folder_where_the_file_should_be(root: Path, base: Baseline) -> Facts:
    table_path(root, P).unlink()
    table_path(root, P).mkdir()


@case("hosp/patients.csv.gz", "symbolic link", "link loop", "rerun")
def symlink_loop(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    path.unlink()
    os.symlink(path, path)


@case("hosp/patients.csv.gz", "symbolic link", "does not exist", "point the link at")
def dangling_symlink(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    path.unlink()
    os.symlink(root / "moved-away.csv.gz", path)


@case("icu/icustays.csv.gz", "not a regular file", "named pipe")
def named_pipe(root: Path, base: Baseline) -> Facts:
    # Before the fix, reading the header opened the pipe and waited for a writer forever.
    path = table_path(root, ICU)
    path.unlink()
    os.mkfifo(path)


@case("hosp/patients.csv.gz", "hosp/patients.csv", "in 2 files", "keep one")
def csv_beside_csv_gz(root: Path, base: Baseline) -> Facts:
    # An edited, unpacked copy beside the download: which one is meant cannot be known.
    path = table_path(root, P)
    write_text(root / "hosp" / "patients.csv", read_text(path).replace(",M,", ",F,"))


@case("hosp/patients.csv.gz", "hosp/patients.parquet", "in 2 files", "keep one")
def parquet_beside_csv_gz(root: Path, base: Baseline) -> Facts:
    pq.write_table(pacsv.read_csv(table_path(root, P)), root / "hosp" / "patients.parquet")


# ------------------------------------------------------------------------------------------- headers


@case("hosp/patients.csv.gz", "separated by semicolons", "comma-separated", "export the table again")
def semicolon_separated(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    write_text(path, read_text(path).replace(",", ";"))


@case("icu/icustays.csv.gz", "separated by tabs", "comma-separated")
def tab_separated(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    write_text(path, read_text(path).replace(",", "\t"))


@case("icu/icustays.csv.gz", "'intime'", "more than once", "rename or remove the extra column")
def duplicate_column_name(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, ICU)
    write_rows(root, ICU, [*header, "intime"], [[*r, r[header.index("intime")]] for r in rows])


@case("icu/icustays.csv.gz", "'INTIME'", "'intime'", "more than once")
def duplicate_column_name_other_case(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, ICU)
    write_rows(root, ICU, [*header, "INTIME"], [[*r, "2150-01-01 00:00:00"] for r in rows])


@case("icu/icustays.csv.gz", "column 'intime' missing", "Columns found")
def required_column_missing(root: Path, base: Baseline) -> Facts:
    drop_column(root, ICU, "intime")


@case("hosp/patients.csv.gz", "column 'anchor_age' missing", "age")
def patients_column_missing(root: Path, base: Baseline) -> Facts:
    drop_column(root, P, "anchor_age")


@case("icu/inputevents.csv.gz", "column 'amount' missing", "'mg_iv'")
def column_missing_in_a_table_a_concept_needs(root: Path, base: Baseline) -> Facts:
    drop_column(root, INP, "amount")


# ------------------------------------------------------------------------------------------- broken rows


@case("icu/icustays.csv.gz", "line 6 of the file", "9 fields where the header has 8", "Fix or remove that row")
def row_with_too_many_fields(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    lines = read_text(path).split("\n")
    lines[5] += ",extra"
    write_text(path, "\n".join(lines))


@case("icu/icustays.csv.gz", "line 6 of the file", "3 fields where the header has 8", "Fix or remove that row")
def row_with_too_few_fields(root: Path, base: Baseline) -> Facts:
    path = table_path(root, ICU)
    lines = read_text(path).split("\n")
    lines[5] = ",".join(lines[5].split(",")[:3])
    write_text(path, "\n".join(lines))


@case("icu/icustays.csv.gz", "fields where the header has 8", "rerun")
def file_cut_in_the_middle_of_a_row(root: Path, base: Baseline) -> Facts:
    # A complete gzip of a text that stops mid-row (a CSV cut before it was compressed).
    path = table_path(root, ICU)
    text = read_text(path)
    write_text(path, text[: len(text) // 2 - 7])


@case("icu/icustays.csv.gz", "line 6 of the file", "quoted field that is never closed", "Fix or remove that row")
def unterminated_quote(root: Path, base: Baseline) -> Facts:
    # Before the fix: "a column ... the value is not a typed value", which named nothing.
    path = table_path(root, ICU)
    lines = read_text(path).split("\n")
    fields = lines[5].split(",")
    fields[3] = '"' + fields[3]
    lines[5] = ",".join(fields)
    write_text(path, "\n".join(lines))


@case("hosp/admissions.csv.gz", "line 2 of the file", "longer than the reader's limit", "Fix or remove that row")
def three_megabyte_field(root: Path, base: Baseline) -> Facts:
    set_value(root, A, "insurance", "x" * 3_000_000, lambda d: True, limit=1)


@case("hosp/patients.csv.gz", "line {line}", "not UTF-8 text", "iconv")
def latin1_bytes_in_a_column_read(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    lines = read_text(path).split("\n")
    fields = lines[3].split(",")
    fields[1] = "F\u00e9"  # gender, a column the study reads
    lines[3] = ",".join(fields)
    path.write_bytes(gzip.compress("\n".join(lines).encode("latin-1")))
    return {"line": 4}


# ------------------------------------------------------------------------------------------- values that do not parse

_TS = "is not a timestamp 'YYYY-MM-DD HH:MM:SS'"
_ROW = "Fix or remove that row"

for _id, _table, _column, _value, _kind in [
    ("text_in_itemid", INP, "itemid", "abc", "INTEGER"),
    ("text_in_amount", INP, "amount", "ten", "DOUBLE"),
    ("text_in_rate", INP, "rate", "fast", "DOUBLE"),
    ("text_in_valuenum", LAB, "valuenum", "high", "DOUBLE"),
    ("text_in_subject_id", P, "subject_id", "P123", "BIGINT"),
    ("text_in_stay_id", ICU, "stay_id", "stay-1", "BIGINT"),
    ("text_in_anchor_age", P, "anchor_age", "sixty", "INTEGER"),
    ("text_in_icd_version", DX, "icd_version", "ICD10", "INTEGER"),
    ("subject_id_beyond_int64", LAB, "subject_id", "99999999999999999999999", "BIGINT"),
    ("itemid_beyond_int32", INP, "itemid", "99999999999", "INTEGER"),
    ("infinity_in_an_integer_column", P, "anchor_age", "inf", "INTEGER"),
]:
    case(f"{_table}.csv.gz", f"column '{_column}'", "line {line}", f"'{_value}'", _kind, _ROW, id=_id)(
        one_value(_table, _column, _value)
    )

for _id, _value in [
    ("date_in_another_format", "05/12/2150"),
    ("timestamp_with_a_time_zone", "2150-05-12 10:00:00+02:00"),
    ("timestamp_with_fractional_seconds", "2150-05-12 10:00:00.123"),
    ("timestamp_given_as_a_date", "2150-05-12"),
    ("timestamp_with_a_T", "2150-05-12T10:00:00"),
    ("timestamp_NaT_text", "NaT"),
    ("timestamp_NULL_text", "NULL"),
    ("timestamp_hour_24", "2150-05-12 24:00:00"),
    ("timestamp_february_30", "2150-02-30 10:00:00"),
    ("timestamp_year_10000", "10000-01-01 00:00:00"),
    ("timestamp_without_seconds", "2150-05-12 10:00"),
]:
    case(f"{A}.csv.gz", "column 'admittime'", "line {line}", f"'{_value}'", _TS, _ROW, id=_id)(
        one_value(A, "admittime", _value)
    )

case(f"{A}.csv.gz", "column 'deathtime'", "line {line}", _TS, _ROW, id="timestamp_of_two_quote_characters")(
    one_value(A, "deathtime", '""')
)
case(f"{P}.csv.gz", "column 'dod'", "line {line}", "is not a date 'YYYY-MM-DD'", _ROW, id="date_with_a_time")(
    one_value(P, "dod", "2150-01-01 00:00:00")
)


@case("hosp/patients.csv.gz", "the first line is blank", "Remove the blank line(s)")
def blank_line_before_the_header(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    write_text(path, "\n\n" + read_text(path))


@case("icu/icustays.csv.gz", "carriage return alone", "convert them")
def classic_mac_line_ends(root: Path, base: Baseline) -> Facts:
    # Before the fix the whole file was read as one header line and reported as columns named twice.
    path = table_path(root, ICU)
    write_text(path, read_text(path).replace("\n", "\r"))


@case("hosp/patients.csv.gz", "column 'subject_id' missing", "Columns found: # exported")
def comment_line_before_the_header(root: Path, base: Baseline) -> Facts:
    path = table_path(root, P)
    write_text(path, "# exported 2024-01-01\n" + read_text(path))


@case("icu/icustays.csv.gz", "column 'subject_id'", "line {line}", "'subject_id'", "Fix or remove that row")
def two_downloads_concatenated(root: Path, base: Baseline) -> Facts:
    # `cat a.csv.gz a.csv.gz`: a valid multi-member gzip whose second header is a data row.
    path = table_path(root, ICU)
    data = path.read_bytes()
    lines = read_text(path).count("\n")
    path.write_bytes(data + data)
    return {"line": lines + 1}


@case("icu/icustays.csv.gz", "Not a gzipped file (b'PK')")
def zip_archive_named_gz(root: Path, base: Baseline) -> Facts:
    import zipfile

    with zipfile.ZipFile(root / "icustays.zip", "w") as archive:
        archive.writestr("icustays.csv", read_text(table_path(root, ICU)))
    table_path(root, ICU).write_bytes((root / "icustays.zip").read_bytes())


@case("icustays.parquet/part-1.parquet", "columns differ from those of part-0.parquet", "missing: intime")
def parquet_parts_with_different_columns(root: Path, base: Baseline) -> Facts:
    # Before the fix: a DuckDB binder error with a traceback.
    table = pacsv.read_csv(table_path(root, ICU))
    folder = root / "icu" / "icustays.parquet"
    folder.mkdir()
    pq.write_table(table.slice(0, 100), folder / "part-0.parquet")
    pq.write_table(table.slice(100).drop_columns(["intime"]), folder / "part-1.parquet")
    table_path(root, ICU).unlink()


@case("HOSP", "lower case", "rename them")
def folders_in_upper_case(root: Path, base: Baseline) -> Facts:
    (root / "hosp").rename(root / "HOSP")


# ------------------------------------------------------------------------------------------- keys that conflict


@case("icu/icustays.csv.gz", "1 stay_id value(s)", "2 rows in all", "Remove or correct the conflicting rows")
def stay_id_on_two_differing_rows(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, ICU)
    copy = list(rows[0])
    copy[header.index("intime")] = "2100-01-01 00:00:00"
    write_rows(root, ICU, header, [*rows, copy])


@case("hosp/patients.csv.gz", "1 subject_id value(s)", "2 rows in all", "Remove or correct")
def patient_on_two_rows_with_different_ages(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, P)
    copy = list(rows[0])
    copy[header.index("anchor_age")] = str(int(copy[header.index("anchor_age")]) + 1)
    write_rows(root, P, header, [*rows, copy])


@case("hosp/admissions.csv.gz", "hadm_id value(s)", "Remove or correct")
def admission_on_two_differing_rows(root: Path, base: Baseline) -> Facts:
    header, rows = read_rows(root, A)
    copy = list(rows[0])
    copy[header.index("dischtime")] = "2199-01-01 00:00:00"
    write_rows(root, A, header, [*rows, copy])


# ------------------------------------------------------------------------------------------- folder shapes


@case("directly in", "not in hosp/ and icu/", "move")
def files_flat_in_one_folder(root: Path, base: Baseline) -> Facts:
    for sub in ("hosp", "icu"):
        for path in (root / sub).iterdir():
            path.rename(root / path.name)
        (root / sub).rmdir()


@case("hosp/patients not found", "icu/icustays not found")
def empty_folder(root: Path, base: Baseline) -> Facts:
    for sub in ("hosp", "icu"):
        for path in (root / sub).iterdir():
            path.unlink()


@case("icu/icustays not found", "icu module")
def icu_module_not_downloaded(root: Path, base: Baseline) -> Facts:
    for path in (root / "icu").iterdir():
        path.unlink()
    (root / "icu").rmdir()


@case("core/ folder", "v1.0 layout", "hosp/")
def version_1_layout_with_core(root: Path, base: Baseline) -> Facts:
    (root / "core").mkdir()
    for name in ("patients", "admissions"):
        table_path(root, f"hosp/{name}").rename(root / "core" / f"{name}.csv.gz")


@pytest.mark.parametrize("hostile", CASES, ids=[c.id for c in CASES])
def test_hostile_data_stops_with_a_named_error(hostile: Case, ehr: Path, flagship: rc.Study, baseline: Baseline):
    facts = hostile.damage(ehr, baseline) or {}
    with pytest.raises(RetrocohortError) as info:
        rc.build_cohort(flagship, ehr)
    message = str(info.value)
    for word in hostile.words:
        assert word.format(**facts) in message, f"{word.format(**facts)!r} not in: {message}"
    assert "Traceback" not in message


def test_the_suite_has_enough_error_cases():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_folder_one_level_too_high_names_the_folder_to_pass(ehr: Path, flagship: rc.Study):
    inner = ehr / "mimic-iv-2.2"
    inner.mkdir()
    for sub in ("hosp", "icu"):
        (ehr / sub).rename(inner / sub)
    with pytest.raises(SourceError) as info:
        rc.build_cohort(flagship, ehr)
    assert f"but {inner} does: pass that folder" in str(info.value)


def test_a_file_given_as_the_folder(ehr: Path, flagship: rc.Study):
    with pytest.raises(SourceError, match="is a file, not a folder"):
        rc.build_cohort(flagship, table_path(ehr, P))


def test_a_folder_that_does_not_exist(tmp_path: Path, flagship: rc.Study):
    with pytest.raises(SourceError, match="not found; pass the folder that holds hosp/ and icu/"):
        rc.build_cohort(flagship, tmp_path / "no-such-folder")


def test_an_unreadable_file_is_named(ehr: Path, flagship: rc.Study, monkeypatch: pytest.MonkeyPatch):
    path = table_path(ehr, P)
    if os.geteuid() != 0:
        path.chmod(0)
    else:
        # root reads a mode-000 file anyway, so the permission error the kernel would give is raised by the
        # opener the header read uses, for this one file.
        from retrocohort.sources import mimic_iv

        real = mimic_iv.gzip.open

        def refuse(name: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(name) == path:
                raise PermissionError(13, "Permission denied", str(name))
            return real(name, *args, **kwargs)

        monkeypatch.setattr(mimic_iv.gzip, "open", refuse)
    try:
        with pytest.raises(SourceError) as info:
            rc.build_cohort(flagship, ehr)
    finally:
        path.chmod(0o644)
    assert str(path) in str(info.value) and "Permission denied" in str(info.value)
