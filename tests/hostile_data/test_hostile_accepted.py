"""Hostile raw data that a study may read: each case ends in a documented, counted handling.

Three kinds:

- **Harmless shapes** (Windows line ends, a byte-order mark, quoted or upper-case headers, reordered or
  extra columns, Parquet instead of csv.gz, ``10000032.0`` for an id, ...): the rows every study reads
  (``SourceConnection.table``: typed, after the data checks) are identical to the undamaged folder's.
- **Impossible values on patients the study never indexes** (NaN, infinite, negative, empty keys, exact
  duplicates, ages out of range, deaths before admission): the whole-data pass of the data checks counts
  exactly the damaged rows or patients under the rule docs/data-checks.md names, and the flagship's cohort
  is unchanged (one cohort build over all of them together).
- **Damage to patients the study uses**: the patient leaves the cohort at a named attrition step, counted,
  or the value is read as documented (a duplicated magnesium row does not double the dose).
"""

from __future__ import annotations

import csv
import gzip
import io
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

from .conftest import Baseline, check_counts, checked
from .damage import edit_rows, read_rows, read_text, set_value, table_path, write_rows, write_text

P, A, ICU = "hosp/patients", "hosp/admissions", "icu/icustays"
LAB, INP, PROC, DX = "hosp/labevents", "icu/inputevents", "icu/procedureevents", "hosp/diagnoses_icd"

_BASE_TABLES: dict[tuple[str, str], pd.DataFrame] = {}


def base_table(base_ehr: Path, table: str) -> pd.DataFrame:
    key = (str(base_ehr), table)
    if key not in _BASE_TABLES:
        _BASE_TABLES[key] = checked(base_ehr, table)
    return _BASE_TABLES[key]


def rewrite_text(root: Path, table: str, change: Callable[[str], str]) -> None:
    path = table_path(root, table)
    write_text(path, change(read_text(path)))


def rewrite_header(root: Path, table: str, change: Callable[[str], str]) -> None:
    def both(text: str) -> str:
        header, rest = text.split("\n", 1)
        return change(header) + "\n" + rest

    rewrite_text(root, table, both)


def as_parquet(root: Path, table: str, types: dict[str, pa.DataType] | None = None) -> None:
    """Replace the csv.gz by a Parquet file: every column text, except those typed in ``types``."""
    path = table_path(root, table)
    header = read_text(path).split("\n", 1)[0].split(",")
    column_types = {c: pa.string() for c in header} | (types or {})
    frame = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=column_types))
    pq.write_table(frame, root / f"{table}.parquet")
    path.unlink()


def reorder_and_extend(root: Path, table: str) -> None:
    header, rows = read_rows(root, table)
    write_rows(root, table, ["note", *header[::-1], "extra"], [["n", *r[::-1], "x"] for r in rows])


def quote_everything(root: Path, table: str) -> None:
    header, rows = read_rows(root, table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(table_path(root, table), buffer.getvalue())


def append_to_values(root: Path, table: str, column: str, before: str, after: str) -> None:
    def edit(header: list[str], rows: list[list[str]]) -> None:
        at = header.index(column)
        for row in rows:
            if row[at]:
                row[at] = f"{before}{row[at]}{after}"

    edit_rows(root, table, edit)


def drop_column(root: Path, table: str, column: str) -> None:
    header, rows = read_rows(root, table)
    at = header.index(column)
    write_rows(root, table, header[:at] + header[at + 1 :], [r[:at] + r[at + 1 :] for r in rows])


HARMLESS: list[Any] = []


def harmless(table: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(damage: Callable[[Path], None]) -> Callable[[Path], None]:
        HARMLESS.append(pytest.param(table, damage, id=damage.__name__))
        return damage

    return register


@harmless(A)
def windows_line_ends(root: Path) -> None:
    rewrite_text(root, A, lambda t: t.replace("\n", "\r\n"))


@harmless(P)
def byte_order_mark(root: Path) -> None:
    rewrite_text(root, P, lambda t: "\ufeff" + t)


@harmless(ICU)
def byte_order_mark_and_windows_line_ends(root: Path) -> None:
    rewrite_text(root, ICU, lambda t: "\ufeff" + t.replace("\n", "\r\n"))


@harmless(P)
def upper_case_header(root: Path) -> None:
    rewrite_header(root, P, str.upper)


@harmless(P)
def quoted_header(root: Path) -> None:
    rewrite_header(root, P, lambda h: ",".join(f'"{c}"' for c in h.split(",")))


@harmless(P)
def spaces_around_header_names(root: Path) -> None:
    rewrite_header(root, P, lambda h: " , ".join(h.split(",")))


@harmless(ICU)
def columns_reordered_and_extra_columns(root: Path) -> None:
    reorder_and_extend(root, ICU)


@harmless(A)
def every_field_quoted_so_empty_is_a_quoted_empty_string(root: Path) -> None:
    quote_everything(root, A)


@harmless(ICU)
def no_newline_at_the_end(root: Path) -> None:
    rewrite_text(root, ICU, lambda t: t.rstrip("\n"))


@harmless(P)
def plain_csv_instead_of_csv_gz(root: Path) -> None:
    write_text(root / "hosp" / "patients.csv", read_text(table_path(root, P)))
    table_path(root, P).unlink()


@harmless(ICU)
def parquet_with_every_column_as_text(root: Path) -> None:
    as_parquet(root, ICU)


@harmless(ICU)
def parquet_with_ids_as_doubles_and_typed_times(root: Path) -> None:
    ids = {c: pa.float64() for c in ("subject_id", "hadm_id", "stay_id")}
    as_parquet(root, ICU, ids | {"intime": pa.timestamp("s"), "outtime": pa.timestamp("us")})


@harmless(ICU)
def ids_written_as_floats(root: Path) -> None:
    # pandas writes an integer column holding NaN as 10000032.0
    append_to_values(root, ICU, "subject_id", "", ".0")


@harmless(INP)
def itemids_written_as_floats(root: Path) -> None:
    append_to_values(root, INP, "itemid", "", ".0")


@harmless(P)
def spaces_around_numbers(root: Path) -> None:
    append_to_values(root, P, "anchor_age", "  ", " ")


@harmless(A)
def latin1_bytes_in_a_column_never_read(root: Path) -> None:
    text = read_text(table_path(root, A)).replace("WIDOWED", "VEUF\u00e9", 1)
    table_path(root, A).write_bytes(gzip.compress(text.encode("latin-1")))


@harmless(A)
def huge_text_in_a_column_never_read(root: Path) -> None:
    set_value(root, A, "insurance", "x" * 200_000, lambda d: True, limit=3)


@harmless(A)
def quoted_newlines_quotes_and_commas(root: Path) -> None:
    set_value(root, A, "insurance", 'Medic,aid\n"private"\r\nplan', lambda d: True, limit=50)


@harmless(A)
def emoji_in_a_column_never_read(root: Path) -> None:
    set_value(root, A, "race", "WHITE \U0001f9d1\u200d\u2695\ufe0f", lambda d: True)


@harmless(PROC)
def procedureevents_without_original_amount_and_rate(root: Path) -> None:
    # Columns present in some releases only (upper-case ORIGINALAMOUNT/ORIGINALRATE in v2.2); never read.
    drop_column(root, PROC, "ORIGINALAMOUNT")
    drop_column(root, PROC, "ORIGINALRATE")


@harmless(ICU)
def trailing_comma_on_every_line(root: Path) -> None:
    # Before the fix: an empty column name, refused by DuckDB with a traceback.
    rewrite_text(root, ICU, lambda t: "\n".join(line + "," if line else line for line in t.split("\n")))


@harmless(A)
def nul_byte_in_a_column_never_read(root: Path) -> None:
    set_value(root, A, "insurance", "Medi\x00caid", lambda d: True, limit=5)


@harmless(ICU)
def parquet_parts_with_text_and_typed_columns(root: Path) -> None:
    path = table_path(root, ICU)
    header = read_text(path).split("\n", 1)[0].split(",")
    text = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header}))
    typed = pacsv.read_csv(path)
    folder = root / "icu" / "icustays.parquet"
    folder.mkdir()
    pq.write_table(text.slice(0, 300), folder / "part-0.parquet")
    pq.write_table(typed.slice(300), folder / "part-1.parquet")
    path.unlink()


@pytest.mark.parametrize(("table", "damage"), HARMLESS)
def test_harmless_shapes_read_the_same_rows(table: str, damage: Callable[[Path], None], ehr: Path, base_ehr: Path):
    damage(ehr)
    pd.testing.assert_frame_equal(checked(ehr, table), base_table(base_ehr, table))


def test_a_missing_optional_column_is_a_note_and_the_other_columns_read_the_same(ehr: Path, base_ehr: Path):
    # statusdescription is optional (absent from some extracts): its loss is a note, not an error.
    drop_column(ehr, INP, "statusdescription")
    conn = rc.sources.MimicIV(ehr).connect()
    try:
        assert any("icu/inputevents column statusdescription absent" in note for note in conn.notes)
    finally:
        conn.close()
    expected = base_table(base_ehr, INP).drop(columns="statusdescription")
    got = checked(ehr, INP)
    pd.testing.assert_frame_equal(got, expected.sort_values(list(got.columns)).reset_index(drop=True))


def test_text_columns_keep_unicode_exactly(ehr: Path, baseline: Baseline):
    value = "A41\U0001f9a0\u00e9"
    set_value(ehr, DX, "icd_code", value, lambda d: d["subject_id"] in baseline.bystanders, limit=1)
    codes = checked(ehr, DX)["icd_code"]
    assert (codes == value).sum() == 1


def test_far_years_are_read_as_written(ehr: Path, baseline: Baseline):
    # Event times outside a patient's admissions are not a data check (docs/data-checks.md): read exactly.
    first, second = sorted(baseline.bystanders)[:2]
    set_value(ehr, LAB, "charttime", "9999-12-31 23:59:59", lambda d: d["subject_id"] == first, limit=1)
    set_value(ehr, LAB, "charttime", "1800-01-01 00:00:00", lambda d: d["subject_id"] == second, limit=1)
    times = checked(ehr, LAB)["charttime"]
    assert (times == pd.Timestamp("9999-12-31 23:59:59")).sum() == 1
    assert (times == pd.Timestamp("1800-01-01 00:00:00")).sum() == 1


# ------------------------------------------------------------------------------------------- counted by the data checks

_BASE_COUNTS: dict[str, dict[str, int]] = {}


def base_counts(base_ehr: Path) -> dict[str, int]:
    if str(base_ehr) not in _BASE_COUNTS:
        _BASE_COUNTS[str(base_ehr)] = check_counts(base_ehr)
    return _BASE_COUNTS[str(base_ehr)]


@dataclass(frozen=True)
class Counted:
    id: str
    damage: Callable[[Path, Baseline], None]
    expected: dict[str, int]  # check -> count added by the damage (every other check: unchanged)


COUNTED: list[Counted] = []


def counted(expected: dict[str, int]) -> Callable[[Callable[[Path, Baseline], None]], Callable[[Path, Baseline], None]]:
    def register(damage: Callable[[Path, Baseline], None]) -> Callable[[Path, Baseline], None]:
        COUNTED.append(Counted(damage.__name__, damage, expected))
        return damage

    return register


def bad_value(table: str, column: str, value: str, n: int) -> Callable[[Path, Baseline], None]:
    def damage(root: Path, base: Baseline) -> None:
        subject = base.spare[n]
        # An empty rate is not a rule (an infusion without a rate still runs): damage a row that has one.
        set_value(root, table, column, value, lambda d: d["subject_id"] == subject and d[column] != "", limit=1)

    return damage


for _id, _table, _column, _value, _n, _check in [
    ("valuenum_NaN", LAB, "valuenum", "NaN", 0, "labevents_valuenum_not_finite"),
    ("valuenum_inf", LAB, "valuenum", "inf", 1, "labevents_valuenum_not_finite"),
    ("valuenum_minus_Infinity", LAB, "valuenum", "-Infinity", 2, "labevents_valuenum_not_finite"),
    ("amount_inf", INP, "amount", "inf", 3, "inputevents_amount"),
    ("amount_1e309_overflows_to_inf", INP, "amount", "1e309", 4, "inputevents_amount"),
    ("amount_negative", INP, "amount", "-5", 5, "inputevents_amount"),
    ("amount_nan", INP, "amount", "nan", 6, "inputevents_amount"),
    ("rate_negative", INP, "rate", "-0.5", 7, "inputevents_rate"),
    ("endtime_before_starttime", INP, "endtime", "2000-01-01 00:00:00", 8, "inputevents_end_before_start"),
    ("labevents_empty_subject_id", LAB, "subject_id", "", 9, "labevents_null_key"),
    ("labevents_empty_charttime", LAB, "charttime", "", 10, "labevents_null_key"),
    ("inputevents_empty_itemid", INP, "itemid", "", 11, "inputevents_null_key"),
    ("diagnoses_empty_icd_code", DX, "icd_code", "", 12, "diagnoses_icd_null_key"),
    ("icustays_empty_stay_id", ICU, "stay_id", "", 13, "icustays_null_key"),
    ("admissions_empty_hadm_id", A, "hadm_id", "", 14, "admissions_null_key"),
    ("patients_empty_subject_id", P, "subject_id", "", 15, "patients_null_key"),
]:
    COUNTED.append(Counted(_id, bad_value(_table, _column, _value, _n), {_check: 1}))


def duplicate_rows(table: str, n: int, copies: int) -> Callable[[Path, Baseline], None]:
    def damage(root: Path, base: Baseline) -> None:
        subject = base.spare[n]
        key = 1 if table == LAB else 0
        header, rows = read_rows(root, table)
        first = next(r for r in rows if r[key] == subject)
        write_rows(root, table, header, rows + [list(first) for _ in range(copies)])

    return damage


for _id, _table, _n, _copies, _check in [
    ("exact_duplicate_patient_row", P, 16, 1, "patients_exact_duplicates"),
    ("exact_duplicate_icu_stay_row", ICU, 17, 1, "icustays_exact_duplicates"),
    ("lab_row_exported_four_times", LAB, 18, 3, "labevents_exact_duplicates"),
    ("exact_duplicate_diagnosis_row", DX, 19, 1, "diagnoses_icd_exact_duplicates"),
    ("exact_duplicate_admission_row", A, 20, 1, "admissions_exact_duplicates"),
]:
    COUNTED.append(Counted(_id, duplicate_rows(_table, _n, _copies), {_check: _copies}))


@counted({"patients_age": 1, "admissions_age": 1})
def anchor_age_130(root: Path, base: Baseline) -> None:
    # Age 130 at the anchor year is also above 120 at every admission: both rules name the patient.
    subject = base.spare[21]
    set_value(root, P, "anchor_age", "130", lambda d: d["subject_id"] == subject)


@counted({"admissions_age": 1})
def age_at_admission_above_120(root: Path, base: Baseline) -> None:
    # anchor_age is fine (91, MIMIC's cap), but an anchor year 40 years before the admissions makes 131.
    subject = base.spare[22]
    header, rows = read_rows(root, A)
    first_year = min(int(r[header.index("admittime")][:4]) for r in rows if r[0] == subject)
    set_value(root, P, "anchor_age", "91", lambda d: d["subject_id"] == subject)
    set_value(root, P, "anchor_year", str(first_year - 40), lambda d: d["subject_id"] == subject)


@counted({"admissions_death_before_admission": 1})
def deathtime_before_admittime(root: Path, base: Baseline) -> None:
    subject = base.spare[23]
    set_value(root, A, "deathtime", "2000-01-01 00:00:00", lambda d: d["subject_id"] == subject, limit=1)


@counted({"patients_dod_before_admission": 1})
def dod_before_an_admission(root: Path, base: Baseline) -> None:
    subject = base.spare[24]
    set_value(root, P, "dod", "2000-01-01", lambda d: d["subject_id"] == subject)


@pytest.mark.parametrize("case", COUNTED, ids=[c.id for c in COUNTED])
def test_impossible_values_are_counted_by_their_rule(case: Counted, ehr: Path, base_ehr: Path, baseline: Baseline):
    case.damage(ehr, baseline)
    before = base_counts(base_ehr)
    expected = {check: count + case.expected.get(check, 0) for check, count in before.items()}
    assert set(case.expected) <= set(before)
    assert check_counts(ehr) == expected


def test_all_of_them_together_leave_the_flagship_unchanged(
    ehr: Path, base_ehr: Path, baseline: Baseline, flagship: rc.Study
):
    # Every damage above at once (each on its own patient, none of whom the flagship can index): counted
    # exactly as one by one, and the cohort's counts and attrition are those of the undamaged folder.
    total: dict[str, int] = {}
    for case in COUNTED:
        case.damage(ehr, baseline)
        for check, count in case.expected.items():
            total[check] = total.get(check, 0) + count
    before = base_counts(base_ehr)
    assert check_counts(ehr) == {check: count + total.get(check, 0) for check, count in before.items()}
    cohort = rc.build_cohort(flagship, ehr)
    assert cohort.counts == baseline.counts
    pd.testing.assert_frame_equal(cohort.attrition, baseline.attrition)


def test_parquet_times_with_a_time_zone_read_the_same_on_any_machine(ehr: Path, base_ehr: Path):
    # pandas writes tz-aware columns as TIMESTAMP WITH TIME ZONE; DuckDB casts them to wall-clock time in the
    # machine's zone (here as if the machine were in New York): before the fix 10:00 UTC read as 05:00.
    path = table_path(ehr, ICU)
    frame = pacsv.read_csv(path)
    for column in ("intime", "outtime"):
        at = frame.schema.get_field_index(column)
        frame = frame.set_column(at, column, frame.column(column).cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(frame, ehr / "icu" / "icustays.parquet")
    path.unlink()
    conn = rc.sources.MimicIV(ehr, duckdb_config={"TimeZone": "America/New_York"}).connect()
    try:
        got = conn.table(ICU).to_pandas()
    finally:
        conn.close()
    got = got.sort_values(list(got.columns)).reset_index(drop=True)
    expected = base_table(base_ehr, ICU)
    pd.testing.assert_series_equal(got["intime"], expected["intime"], check_dtype=False)
    pd.testing.assert_series_equal(got["outtime"], expected["outtime"], check_dtype=False)
