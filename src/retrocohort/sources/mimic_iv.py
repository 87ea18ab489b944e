"""MIMIC-IV as PhysioNet ships it, read lazily by DuckDB or Spark through ibis.

A MIMIC-IV folder holds ``hosp/*.csv.gz`` and ``icu/*.csv.gz`` (v2.0 and
later; v1.0 kept patients/admissions in ``core/``). The same tables may be
given as ``.csv`` or as Parquet (``<table>.parquet``, a file or a folder of
parts). :class:`MimicIV` never loads a table into pandas: ``connect`` makes
one view per table over the files (DuckDB ``read_csv``/``read_parquet`` with
explicit column types, or Spark reads with an explicit schema) and hands
out lazy ibis tables, so the cohort definition (``retrocohort.cohort``) is
compiled once per engine and the engine streams the files, filtering by
``itemid`` and projecting only the columns the study needs. That matters at
full scale: ``labevents`` has about 160 million rows, ``chartevents`` about
430 million.

Column types are fixed by :data:`SCHEMA` rather than sniffed, so a value that
does not parse (a malformed timestamp, text in a numeric column) is an error
naming the file, the column and the line, not a silently different type.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

from ..errors import SourceError
from .quality import DataChecks, checked_table, run_checks
from .spark import local_spark_session

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")

# MIMIC-IV writes every timestamp as 'YYYY-MM-DD HH:MM:SS' and dates (dod) as 'YYYY-MM-DD'.
TIMESTAMP_FORMAT_DUCKDB = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT_DUCKDB = "%Y-%m-%d"
TIMESTAMP_FORMAT_SPARK = "yyyy-MM-dd HH:mm:ss"
DATE_FORMAT_SPARK = "yyyy-MM-dd"

ColumnType = Literal["int64", "int32", "float64", "string", "timestamp", "date"]

_DUCKDB_TYPES: dict[str, str] = {
    "int64": "BIGINT",
    "int32": "INTEGER",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}

# Whole-number columns are read as DOUBLE and cast in the view, because DuckDB's reader (like its casts) rounds
# a fraction into an integer column: a subject_id 10000032.5 became patient 10000033 and anchor_age 60.5 became
# 61. A double holds every whole number below 2**53 exactly, so the view can test that the value read is whole
# and in range, cast it, and stop the read on any other value (``error()``; the translation below names the
# file, column, line and how many rows).
_INTEGER_LIMITS: dict[str, int] = {"int64": 2**53 - 1, "int32": 2**31 - 1}
_NOT_WHOLE = "retrocohort: not a whole number"
_NOT_TYPED = "retrocohort: text that does not parse"
_CSV_PRUNING = "spark.sql.csv.parser.columnPruning.enabled"


def _read_type(kind: str) -> str:
    """The DuckDB type a CSV column of ``kind`` is parsed as (DOUBLE for whole numbers: see _INTEGER_LIMITS)."""
    return "DOUBLE" if kind in _INTEGER_LIMITS else _DUCKDB_TYPES[kind]


def _whole_sql(expr: str, kind: str, where: str, column: str) -> str:
    """SQL casting ``expr`` (a DOUBLE) to ``kind``; any value that is not a whole number in range stops the read.

    ``where`` (the file) and ``column`` travel in the error text, so the translation can find the rows.
    """
    if kind not in _INTEGER_LIMITS:
        return f"CAST({expr} AS {_DUCKDB_TYPES[kind]})"
    marker = _sql_string(f"{_NOT_WHOLE} | {where} | {column} | {kind} | ")
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} = trunc({expr}) AND abs({expr}) <= {_INTEGER_LIMITS[kind]} "
        f"THEN CAST({expr} AS {_DUCKDB_TYPES[kind]}) ELSE error({marker} || CAST({expr} AS VARCHAR)) END"
    )


SUPPORTED_VERSIONS = (
    "MIMIC-IV v2.2, v3.0 and v3.1 (any release since v2.0, which introduced the hosp/ and icu/ folders)"
)


@dataclass(frozen=True)
class Column:
    """One column the study reads: its type and the study concepts that need it."""

    type: ColumnType
    needed_by: str
    optional: bool = False
    degrades: str = ""  # what is lost when an optional column is absent


@dataclass(frozen=True)
class TableSpec:
    """One MIMIC-IV table: where it lives, whether the study needs it, and its columns."""

    name: str  # "hosp/patients"
    columns: dict[str, Column]
    required: bool = True
    needed_by: str = ""
    # What is lost when an optional table is absent (said in notes and the attrition log).
    degrades: str = ""
    version_note: str = SUPPORTED_VERSIONS


def _cols(**spec: tuple[str, str] | tuple[str, str, bool, str]) -> dict[str, Column]:
    return {name: Column(*value) for name, value in spec.items()}


#: The tables and columns the cohort builder and the data checks read, with explicit types. ``required``:
#: every study reads it (the index is placed in an ICU stay of a patient's admission; death comes from
#: admissions and patients); the others are needed only by the studies whose concepts read them
#: (:meth:`MimicIV.validate` with ``needs``). ``needed_by`` says what the table is; the built-in concepts
#: that read it are listed from the catalogue (:func:`table_readers`).
SCHEMA: dict[str, TableSpec] = {
    "hosp/patients": TableSpec(
        "hosp/patients",
        _cols(
            subject_id=("int64", "patient key"),
            gender=("string", "sex"),
            anchor_age=("int32", "age"),
            anchor_year=("int32", "age"),
            dod=("date", "date of death (out-of-hospital, day precision)"),
        ),
        needed_by="one row per patient: sex, age anchor, date of death (every study)",
    ),
    "hosp/admissions": TableSpec(
        "hosp/admissions",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            admittime=("timestamp", "age at the admission"),
            dischtime=("timestamp", "admission"),
            deathtime=("timestamp", "time of in-hospital death (minute precision)"),
        ),
        needed_by="hospital admissions: age at the index admission, in-hospital death (every study)",
    ),
    "hosp/labevents": TableSpec(
        "hosp/labevents",
        _cols(
            subject_id=("int64", "patient key"),
            specimen_id=("int64", "pairing of values of one specimen"),
            itemid=("int32", "laboratory item"),
            charttime=("timestamp", "laboratory time"),
            valuenum=("float64", "laboratory value"),
        ),
        required=False,
        needed_by="laboratory results (itemids of hosp/d_labitems)",
        degrades="concepts on laboratory results find no rows",
    ),
    "hosp/diagnoses_icd": TableSpec(
        "hosp/diagnoses_icd",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            icd_code=("string", "diagnosis code"),
            icd_version=("int32", "diagnosis code"),
        ),
        required=False,
        needed_by="ICD-9/ICD-10 diagnosis codes per admission",
        degrades="concepts on diagnosis codes find no rows",
    ),
    "icu/icustays": TableSpec(
        "icu/icustays",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            stay_id=("int64", "ICU stay"),
            intime=("timestamp", "ICU stay"),
            outtime=("timestamp", "ICU stay"),
        ),
        needed_by="ICU stays: the index is placed in one (every study)",
    ),
    "icu/procedureevents": TableSpec(
        "icu/procedureevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            stay_id=("int64", "ICU stay"),
            starttime=("timestamp", "procedure start"),
            endtime=("timestamp", "procedure end"),
            itemid=("int32", "procedure item"),
        ),
        required=False,
        needed_by="ICU procedures with start and end (itemids of icu/d_items)",
        degrades="concepts on ICU procedures find no rows",
    ),
    "icu/inputevents": TableSpec(
        "icu/inputevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            stay_id=("int64", "ICU stay"),
            starttime=("timestamp", "infusion start"),
            endtime=("timestamp", "infusion end"),
            itemid=("int32", "drug or fluid item"),
            amount=("float64", "amount given"),
            amountuom=("string", "unit of the amount"),
            rate=("float64", "infusion rate"),
            rateuom=("string", "unit of the rate"),
            patientweight=("float64", "rate per kg (mcg/min to mcg/kg/min)"),
            orderid=("int64", "order (rows of one order)"),
            statusdescription=(
                "string",
                "row status (status_exclude drops rewritten rows)",
                True,
                "rewritten rows cannot be recognised: a status_exclude selector keeps them, and they count in a dose",
            ),
        ),
        required=False,
        needed_by="ICU infusions and boluses with amounts and rates (itemids of icu/d_items)",
        degrades="concepts on ICU infusions find no rows",
    ),
    "icu/chartevents": TableSpec(
        "icu/chartevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            stay_id=("int64", "ICU stay"),
            charttime=("timestamp", "chart time"),
            itemid=("int32", "charted item"),
        ),
        required=False,
        needed_by="ICU charted observations (itemids of icu/d_items)",
        degrades="concepts on charted observations find no rows; built-ins that read it when present use "
        "their other tables only (see docs/concepts.md)",
    ),
}


def _by_concepts(concepts: Sequence[str]) -> str:
    return f"; read by the study's concept(s) {', '.join(repr(c) for c in concepts)}" if concepts else ""


def table_readers(table: str) -> tuple[str, ...]:
    """The built-in concepts that read ``table`` (from the catalogue), in catalogue order."""
    from ..spec.catalogue import BUILTIN_CONCEPTS

    return tuple(name for name, info in BUILTIN_CONCEPTS.items() if table in info.tables)


_EXTENSIONS = (".csv.gz", ".csv", ".parquet")


@dataclass(frozen=True)
class TableFile:
    """Where one table was found and its header (columns in file order, as spelt in the file)."""

    table: str
    path: Path
    format: Literal["csv", "parquet"]
    header: tuple[str, ...]


def _read_csv_header(path: Path) -> tuple[str, ...]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        # Bytes, then decode the header line alone: a text-mode read decodes a whole buffer, and a
        # non-UTF-8 byte in a data row would be blamed on the header.
        with opener(path, "rb") as handle:
            # Bounded: a file without line feeds (carriage returns alone) would otherwise be read whole.
            raw = handle.readline(_HEADER_LIMIT)
            blank_then_more = not raw.strip() and bool(raw) and any(rest.strip() for rest in handle)
            # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name;
            # DuckDB skips it too, so the names found here are the names the engine reads.
            line = raw.decode("utf-8-sig")
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder, not a file; a CSV table is one .csv.gz file") from None
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path}: the header line is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "MIMIC-IV files are UTF-8: is this the right file?"
        ) from None
    except (OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read the header line ({exc}); is the file a complete download?") from None
    if blank_then_more:
        raise SourceError(
            f"{path}: the first line is blank; MIMIC-IV files start with the header line. Remove the blank "
            "line(s) before the header, then rerun"
        )
    if not line.strip():
        raise SourceError(f"{path}: the file is empty; MIMIC-IV files start with a header line")
    if "\r" in line.rstrip("\r\n") or (len(raw) == _HEADER_LIMIT and not raw.endswith(b"\n")):
        raise SourceError(
            f"{path}: the first line does not end within {_HEADER_LIMIT // 1024} KiB or its lines end in a carriage "
            "return alone (classic Mac line ends); MIMIC-IV lines end in a line feed: convert them (e.g. tr "
            "'\\r' '\\n'), then rerun"
        )
    if "," not in line:
        # A semicolon- or tab-separated export reads as one column whose name is the whole header line.
        other = next((name for sep, name in _OTHER_SEPARATORS if sep in line), None)
        if other is not None:
            raise SourceError(
                f"{path}: the header line is separated by {other}, not commas ({line.strip()[:120]!r}); MIMIC-IV "
                "files are comma-separated: export the table again with ',' as the separator, then rerun"
            )
    names = [name.strip().strip('"') for name in line.rstrip("\r\n").split(",")]
    # An unnamed column (a trailing comma on every line, as some exports write) is read under a name of its
    # own: the engines are given every column's name, and an empty one is refused by DuckDB.
    return tuple(name or f"unnamed_column_{i + 1}" for i, name in enumerate(names))


_HEADER_LIMIT = 1 << 16
_OTHER_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars"))


def _has_data_row(tf: TableFile) -> bool:
    """Whether the table's file holds at least one row after its header (reads two lines or the footer)."""
    if tf.format == "parquet":
        import pyarrow.parquet as pq

        parts = [tf.path] if tf.path.is_file() else sorted(tf.path.glob("*.parquet"))
        try:
            return any(pq.ParquetFile(part).metadata.num_rows > 0 for part in parts)
        except Exception:  # an unreadable part is reported by the read itself, with its own message
            return True
    opener = gzip.open if tf.path.name.endswith(".gz") else open
    try:
        with opener(tf.path, "rb") as handle:
            handle.readline()
            return any(line.strip() for line in handle)
    except (OSError, EOFError):  # a cut file is reported by the read itself, with its own message
        return True


def _first_parquet(path: Path) -> Path:
    first = path if path.is_file() else next(iter(sorted(path.glob("*.parquet"))), None)
    if first is None:
        raise SourceError(f"{path}: a Parquet folder with no *.parquet files")
    return first


def _parquet_schema(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = _first_parquet(path)
    try:
        return pq.read_schema(first)
    except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid is a ValueError: a cut or foreign file
        raise SourceError(
            f"{first}: not a readable Parquet file ({str(exc)[:200]}); is it a complete download or conversion? "
            "Write it again, then rerun."
        ) from None


def _read_parquet_header(path: Path) -> tuple[str, ...]:
    names = tuple(_parquet_schema(path).names)
    if path.is_dir():
        _same_columns_in_every_part(path, names)
    return names


def _same_columns_in_every_part(path: Path, names: tuple[str, ...]) -> None:
    """A folder of Parquet parts is one table: every part must have the first part's columns (footers only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(path.glob("*.parquet"))
    expected = {n.lower() for n in names}
    for part in parts[1:]:
        try:
            found = {n.lower() for n in pq.read_schema(part).names}
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise SourceError(
                f"{part}: not a readable Parquet file ({str(exc)[:200]}); write it again, then rerun"
            ) from None
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            raise SourceError(
                f"{part}: its columns differ from those of {parts[0].name} in the same table folder ("
                + "; ".join(
                    f"{what}: {', '.join(cols)}" for what, cols in (("missing", missing), ("extra", extra)) if cols
                )
                + "); every part of a table must have the same columns: write the table again, then rerun"
            )


def _duplicate_columns(tf: TableFile) -> None:
    """A header naming a column twice (engines match names case-insensitively) cannot be read by name."""
    lower = [c.lower() for c in tf.header]
    twice = sorted({c for c in tf.header if lower.count(c.lower()) > 1}, key=str.lower)
    if twice:
        raise SourceError(
            f"{tf.path}: the header names column(s) {', '.join(repr(c) for c in twice)} more than once "
            f"(columns: {', '.join(tf.header)}); rename or remove the extra column, then rerun"
        )


# Arrow types a Parquet column may have for each SCHEMA type (the view casts them). Text is accepted
# everywhere (an all-text conversion of the csv.gz is common; a value that does not parse is reported
# with its column when read); a time stored as a number or a number stored as a time cannot be cast.
def _parquet_type_ok(kind: str, arrow_type: Any) -> bool:
    import pyarrow.types as pat

    if pat.is_string(arrow_type) or pat.is_large_string(arrow_type):
        return True
    if kind in ("int64", "int32", "float64"):
        return pat.is_integer(arrow_type) or pat.is_floating(arrow_type) or pat.is_decimal(arrow_type)
    if kind in ("timestamp", "date"):
        return pat.is_timestamp(arrow_type) or pat.is_date(arrow_type)
    return not (pat.is_nested(arrow_type) or pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type))


_KIND_WORDS = {
    "int64": "whole numbers (int64)",
    "int32": "whole numbers (int32)",
    "float64": "numbers (double)",
    "string": "text",
    "timestamp": "timestamps",
    "date": "dates",
}


def _parquet_type_problems(spec: TableSpec, tf: TableFile) -> list[str]:
    schema = _parquet_schema(tf.path)
    by_lower = {name.lower(): schema.field(name) for name in schema.names}
    problems = []
    for col, column in spec.columns.items():
        found = by_lower.get(col)
        if found is not None and not _parquet_type_ok(column.type, found.type):
            problems.append(
                f"{_first_parquet(tf.path)}: column {found.name!r} is stored as {found.type}, but the study reads it "
                f"as {_KIND_WORDS[column.type]} ({column.needed_by}); write the Parquet file again with that type "
                "(retrocohort.sources.to_parquet converts the csv.gz with the right types)"
            )
    return problems


def layout_hint(path: Path) -> str:
    """When required tables are missing: how the folder is laid out instead of hosp/ + icu/ and what to do.

    Returns "" when no other layout is recognised; else a new line (indented) to append to the error.
    Recognised: table files directly in ``path``, a v1.0 ``core/`` folder, ``hosp/`` and ``icu/`` one level
    deeper (the user pointed at the parent).
    """
    names = ("patients", "admissions", "icustays")
    flat = [f"{n}{ext}" for n in names for ext in _EXTENSIONS if (path / f"{n}{ext}").exists()]
    if flat:
        return (
            f"\n  The table files are directly in {path} ({', '.join(flat)}), not in hosp/ and icu/ subfolders as "
            "PhysioNet ships them: move icustays, inputevents, procedureevents, chartevents (and the other icu "
            "tables) into icu/ and the rest into hosp/, then rerun"
        )
    if (path / "core").is_dir():
        return (
            f"\n  {path} has a core/ folder: that is the MIMIC-IV v1.0 layout; {SUPPORTED_VERSIONS} keep "
            "patients and admissions in hosp/. Use a later release (or move core/*.csv.gz into hosp/), then rerun"
        )
    with contextlib.suppress(OSError):
        other_case = sorted(
            d.name
            for d in path.iterdir()
            if d.is_dir() and d.name.lower() in ("hosp", "icu") and d.name not in ("hosp", "icu")
        )
        if other_case:
            return (
                f"\n  {path} has {', '.join(other_case)}: the folders are named in lower case (hosp/, icu/) and "
                "file names are matched exactly; rename them, then rerun"
            )
        deeper = sorted(d for d in path.iterdir() if d.is_dir() and (d / "hosp").is_dir() and (d / "icu").is_dir())
        if deeper:
            return (
                f"\n  {path} holds no hosp/ and icu/ folders, but {deeper[0]} does: pass that folder "
                "(the one holding hosp/ and icu/) instead"
            )
    return ""


def _parts_hint(path: Path, table: str) -> str:
    """When a table is missing but files named like its parts are there (labevents_1.csv.gz, ...): say so."""
    folder, short = (path / table).parent, table.split("/")[1]
    with contextlib.suppress(OSError):
        parts = sorted(
            p.name
            for p in folder.iterdir()
            if p.name.lower().startswith(short) and p.name[len(short) : len(short) + 1] in ("_", "-", ".", "0", "1")
        )
        if parts:
            shown = ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")
            return (
                f". Found {shown} there: a table split into several CSV files is not read as one (MIMIC-IV ships one "
                f"file per table); join them into {short}.csv.gz with a single header line, or write a Parquet folder "
                f"{short}.parquet/ of parts, then rerun"
            )
    return ""


class MimicIV:
    """A MIMIC-IV folder (``hosp/`` and ``icu/``), read lazily.

    Parameters
    ----------
    path
        The release folder, e.g. ``physionet.org/files/mimiciv/3.1`` or a
        synthetic EHR written by :func:`retrocohort.sources.generate_synthetic`.
    duckdb_config
        DuckDB settings for every connection opened on this folder when :meth:`connect` is given none
        (e.g. ``{"memory_limit": "1GB", "threads": 2}``; the CLI's ``--memory-limit`` / ``--threads``).

    Raises
    ------
    SourceError
        The folder does not exist.

    Notes
    -----
    Construction only looks for files; :meth:`validate` (called by
    :meth:`connect`) reads their header lines and raises a
    :class:`~retrocohort.errors.SourceError` for a missing required table or
    column. No table is read until the engine executes a query.
    """

    def __init__(self, path: str | Path, duckdb_config: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path).expanduser()  # "~/mimic" given as text (quoted, from a config) means the home
        # Kept on the source so that a run's every connection (cohort, trial cohort) gets the same settings
        # without each caller threading them through.
        self.duckdb_config: dict[str, Any] = dict(duckdb_config or {})
        if self.path.exists() and not self.path.is_dir():
            raise SourceError(
                f"{str(self.path)!r} is a file, not a folder; pass the MIMIC-IV folder that holds hosp/ and icu/ "
                f"({SUPPORTED_VERSIONS})"
            )
        if not self.path.is_dir():
            raise SourceError(
                f"MIMIC-IV folder {str(self.path)!r} not found; pass the folder that holds hosp/ and icu/ "
                f"({SUPPORTED_VERSIONS})"
            )

    def __repr__(self) -> str:
        return f"MimicIV({str(self.path)!r})"

    @property
    def synthetic(self) -> bool:
        """True when the folder was written by the synthetic EHR generator (it leaves SYNTHETIC.json)."""
        return (self.path / "SYNTHETIC.json").is_file()

    def locate(self, table: str) -> TableFile | None:
        """The file of ``table`` ("hosp/labevents"), or None when absent."""
        candidates = [self.path / f"{table}{ext}" for ext in _EXTENSIONS]
        for candidate in candidates:
            if candidate.is_symlink() and not candidate.exists():
                raise SourceError(
                    f"{candidate}: a symbolic link to a file that does not exist (or a link loop); point the link at "
                    "the table's file or replace it with the file, then rerun"
                )
        present = [c for c in candidates if c.exists()]
        for candidate in present:
            if not (candidate.is_file() or candidate.is_dir()):
                # A named pipe or device would block the header read forever (a pipe waits for a writer).
                raise SourceError(
                    f"{candidate}: not a regular file (a named pipe, socket or device); copy the table's file "
                    "itself into the folder, then rerun"
                )
        if len(present) > 1:
            # Which copy is meant cannot be known (an edited .csv beside the downloaded .csv.gz gives other
            # results than the .csv.gz), so no copy is chosen silently.
            raise SourceError(
                f"table {table} is in {len(present)} files: {', '.join(str(c) for c in present)}; keep one "
                "(move the others out of the folder), then rerun"
            )
        for ext in _EXTENSIONS:
            candidate = self.path / f"{table}{ext}"
            if candidate.exists():
                fmt: Literal["csv", "parquet"] = "parquet" if ext == ".parquet" else "csv"
                header = _read_parquet_header(candidate) if fmt == "parquet" else _read_csv_header(candidate)
                found = TableFile(table, candidate, fmt, header)
                _duplicate_columns(found)
                return found
        return None

    def validate(self, needs: Mapping[str, Sequence[str]] | None = None) -> dict[str, TableFile | None]:
        """Locate the tables of :data:`SCHEMA` and check the columns of those a study needs.

        Parameters
        ----------
        needs
            Table -> the study's concepts that cannot run without it
            (:func:`retrocohort.cohort.inventory.table_needs`). The tables every study reads
            (``required`` in :data:`SCHEMA`) are always needed; any other table may be absent
            unless ``needs`` names it. None: only those every study reads.

        Returns
        -------
        dict
            table name -> :class:`TableFile` (None for a table that is absent, or present but
            unreadable by the schema and not needed).

        Raises
        ------
        SourceError
            A needed table is absent, or lacks a column; the message names the file or table, the
            column, the concepts that need it, and the MIMIC-IV module it ships in.
        """
        needs = {name: tuple(concepts) for name, concepts in (needs or {}).items()}
        found: dict[str, TableFile | None] = {}
        problems: list[str] = []
        for name, spec in SCHEMA.items():
            needed = spec.required or name in needs
            tf = self.locate(name)
            if tf is None:
                if needed:
                    problems.append(self._absent(name, needs.get(name, ()), spec))
                found[name] = None
                continue
            lower = {c.lower() for c in tf.header}
            wrong = [
                f"{tf.path}: column {col!r} missing (needed for {column.needed_by}"
                f"{_by_concepts(needs.get(name, ()))}); {spec.version_note} have it. Columns found: "
                f"{', '.join(tf.header)}"
                for col, column in spec.columns.items()
                if col not in lower and not column.optional
            ]
            if tf.format == "parquet" and not wrong:
                wrong = _parquet_type_problems(spec, tf)
            if spec.required and not wrong and not _has_data_row(tf):
                # Read on, no table would find a patient: the cohort would be empty without saying why.
                wrong = [
                    f"{tf.path}: the file has a header but no data rows; every study reads {name} "
                    f"({spec.needed_by}). Is it a complete download or export? Get the file again, then rerun"
                ]
            if wrong and not needed:
                # A table the study does not read cannot stop it: left out, as if absent.
                found[name] = None
                continue
            problems += wrong
            found[name] = tf
        # Tables only concepts read (prescriptions, emar, ...): present now, their columns checked when opened.
        for name, concepts in needs.items():
            if name not in SCHEMA and self.locate(name) is None:
                problems.append(self._absent(name, concepts, None))
        if problems:
            hint = layout_hint(self.path) if any(found.get(n) is None for n, s in SCHEMA.items() if s.required) else ""
            # The layout hint first: it explains every missing table at once.
            raise SourceError("MIMIC-IV source is incomplete or mistyped:" + hint + "\n  " + "\n  ".join(problems))
        return found

    def _absent(self, name: str, concepts: Sequence[str], spec: TableSpec | None) -> str:
        tried = ", ".join(f"{name}{ext}" for ext in _EXTENSIONS)
        why = (
            (
                f"concept {concepts[0]!r} of the study reads it"
                if len(concepts) == 1
                else f"concepts {', '.join(repr(c) for c in concepts)} of the study read it"
            )
            if concepts
            else f"every study reads it ({spec.needed_by if spec is not None else name})"
        )
        module = name.split("/")[0]
        return (
            f"table {name} not found in {self.path} (looked for {tried}); {why}. It ships in the {module} "
            f"module of {SUPPORTED_VERSIONS}: copy it into the folder"
            + (", or remove those concepts from the study" if concepts else "")
            + _parts_hint(self.path, name)
        )

    def connect(
        self,
        engine: Engine = "duckdb",
        spark: Any = None,
        duckdb_config: dict[str, Any] | None = None,
        needs: Mapping[str, Sequence[str]] | None = None,
        reads: Mapping[str, Sequence[str]] | None = None,
    ) -> SourceConnection:
        """Open the tables on an engine and return lazy ibis tables.

        Parameters
        ----------
        engine
            ``"duckdb"`` (embedded, default) or ``"spark"``.
        spark
            A running ``pyspark.sql.SparkSession`` for ``engine="spark"``;
            None starts (or reuses) a ``local[*]`` session.
        duckdb_config
            DuckDB settings (e.g. ``{"memory_limit": "3GB", "threads": 2}``); None: the source's own
            (``MimicIV(path, duckdb_config=...)``), else DuckDB's defaults.
        needs
            Table -> the study's concepts that need it (see :meth:`validate`); None: the tables every
            study reads.
        reads
            Table -> the study's concepts that read it, needed or only when present: the notes then
            speak only of absent tables the study reads. None: of every absent table.
        """
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r} is not allowed; choose one of {list(ENGINES)}")
        files = self.validate(needs)
        config = self.duckdb_config if duckdb_config is None else duckdb_config
        conn = _connect_duckdb(self, files, config) if engine == "duckdb" else None
        if conn is None:
            conn = _connect_spark(self, files, spark)
        if reads is not None:
            conn.reads = {name: tuple(concepts) for name, concepts in reads.items()}
        return conn


@dataclass
class SourceConnection:
    """Lazy ibis tables over one MIMIC-IV folder on one engine."""

    source: MimicIV
    engine: Engine
    backend: Any  # the ibis backend
    files: dict[str, TableFile | None]
    views: dict[str, str]
    optional_present: dict[str, tuple[str, ...]] = field(default_factory=dict)
    spark_time_zone: str | None = None  # the caller's session time zone, restored on close
    # Views of CONCEPT_SCHEMA tables, opened on first use by concept_table (a study that uses no
    # concept on a table never opens it); table -> (view name, optional columns present).
    concept_views: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # Table -> the study's concepts that read it (None: not known; notes then cover every absent table).
    reads: dict[str, tuple[str, ...]] | None = None
    # Narrow cached copies of concept tables (retrocohort.concepts.scan.read_once): while pinned,
    # concept_table returns the copy, so every concept filters the rows read in one scan.
    scans: dict[str, Any] = field(default_factory=dict)
    spark_pruning: str | None = None  # the caller's spark.sql.csv.parser.columnPruning.enabled, restored on close

    def table(self, name: str) -> Any:
        """The ibis table of ``name`` ("icu/inputevents") as the cohort reads it: the columns of :data:`SCHEMA`,
        without the rows the drop rules and the exact-duplicate rule of :mod:`~retrocohort.sources.quality` remove.
        """
        return checked_table(name, self.raw_table(name))

    def raw_table(self, name: str) -> Any:
        """The ibis table of ``name`` as the file holds it (columns of :data:`SCHEMA`), before any data check."""
        if name not in SCHEMA:
            raise KeyError(f"{name!r} is not a table the study reads; known: {list(SCHEMA)}")
        if name not in self.views:
            raise SourceError(f"optional table {name} is absent from {self.source.path}")
        return self.backend.table(self.views[name])

    def has(self, name: str) -> bool:
        """Whether table ``name`` is present."""
        return name in self.views

    def concept_table(self, name: str) -> Any:
        """The ibis table of ``name`` with every column of :data:`CONCEPT_SCHEMA`, opened on first use,
        without the rows the data checks of :mod:`~retrocohort.sources.quality` drop (as :meth:`table`).

        An optional column absent from the file is a typed null column
        (:meth:`concept_has_column` says which are real).

        Raises
        ------
        SourceError
            The table is not in the folder, or lacks a required column (both named).
        """
        if name not in CONCEPT_SCHEMA:
            raise KeyError(f"{name!r} is not a table concepts read; known: {list(CONCEPT_SCHEMA)}")
        if name in self.scans:
            return self.scans[name]
        # The same data checks as the cohort's own tables: drop rules and exact duplicates
        # (a duplicated patients or inputevents row must not multiply a concept's rows).
        return checked_table(name, self.raw_concept_table(name))

    def raw_concept_table(self, name: str, where: Callable[[Any], Any] | None = None) -> Any:
        """The concept view of ``name`` before the data checks, optionally narrowed by ``where`` first.

        ``checked_table(name, raw_concept_table(name, where))`` equals ``concept_table(name)`` narrowed by
        ``where`` when ``where`` keeps or drops whole rows (a row filter, a semi-join on subject_id): the
        checks are per row and exact duplicates stay duplicates; narrowing first makes the deduplication
        hash only the rows kept (the engine does not move a semi-join below a DISTINCT by itself).
        """
        if name not in CONCEPT_SCHEMA:
            raise KeyError(f"{name!r} is not a table concepts read; known: {list(CONCEPT_SCHEMA)}")
        if name not in self.concept_views:
            self.concept_views[name] = _open_concept_view(self, name)
        raw = self.backend.table(self.concept_views[name][0])
        return where(raw) if where is not None else raw

    def pin(self, name: str, table: Any) -> None:
        """Serve ``concept_table(name)`` from ``table``: a cached copy of the rows every reader of it needs.

        The copy must have the concept view's columns and be checked as :meth:`concept_table` is;
        :func:`retrocohort.concepts.scan.read_once` makes it. :meth:`unpin` reads the files again.
        """
        if name not in CONCEPT_SCHEMA:
            raise KeyError(f"{name!r} is not a table concepts read; known: {list(CONCEPT_SCHEMA)}")
        self.scans[name] = table

    def unpin(self, name: str) -> None:
        """Read ``name`` from its files again (after :meth:`pin`)."""
        self.scans.pop(name, None)

    @contextlib.contextmanager
    def unpinned(self) -> Iterator[None]:
        """Within the block, :meth:`concept_table` reads the files (for a reader the pinned copies were not
        narrowed for: the expressions built here keep the full tables)."""
        saved, self.scans = self.scans, {}
        try:
            yield
        finally:
            self.scans = saved

    def pinned(self, name: str) -> bool:
        """Whether ``concept_table(name)`` serves a pinned copy."""
        return name in self.scans

    def concept_has_table(self, name: str) -> bool:
        """Whether the folder holds table ``name`` (without opening it)."""
        if name in self.concept_views or self.files.get(name) is not None:
            return True
        return self.source.locate(name) is not None

    def concept_has_column(self, table: str, column: str) -> bool:
        """Whether ``column`` of a :data:`CONCEPT_SCHEMA` table is in the file (opens the table)."""
        self.concept_table(table)
        spec = CONCEPT_SCHEMA[table].columns[column]
        return not spec.optional or column in self.concept_views[table][1]

    def has_column(self, table: str, column: str) -> bool:
        """Whether an optional column is present in its table."""
        return column in self.optional_present.get(table, ()) or (
            table in SCHEMA and column in SCHEMA[table].columns and not SCHEMA[table].columns[column].optional
        )

    def file_label(self, name: str) -> str:
        """How to name table ``name`` in an error: its file's path, or the table's name when not found."""
        tf = self.files.get(name)
        if tf is None:
            with contextlib.suppress(SourceError):
                tf = self.source.locate(name)
        return str(tf.path) if tf is not None else name

    def data_checks(self) -> DataChecks:
        """Run the data-quality checks of :mod:`~retrocohort.sources.quality` on every row of every present table.

        The whole-data pass (every table read in full). A study run does not call it: it counts the same
        rules on the rows it reads, in its single read of each table (:func:`retrocohort.concepts.scan.read_once`).

        Raises
        ------
        InputError
            A key (patients.subject_id, admissions.hadm_id, icustays.stay_id) on several differing rows.
        """
        return run_checks(self.raw_table, self.table, self.has, where=self.file_label)

    @property
    def absent(self) -> tuple[str, ...]:
        """Optional tables that are not in the folder."""
        return tuple(name for name, tf in self.files.items() if tf is None)

    @property
    def notes(self) -> tuple[str, ...]:
        """What each absent optional table or column costs the study."""
        if self.reads is None:
            notes = [f"{name} absent: {SCHEMA[name].degrades}" for name in self.absent]
        else:
            # Only tables the study reads; the concepts that read an absent one use their other tables.
            notes = [
                f"{name} absent: {', '.join(self.reads[name])} use(s) their other tables only"
                for name in self.absent
                if self.reads.get(name)
            ]
        for name, tf in self.files.items():
            if tf is None:
                continue
            for col, column in SCHEMA[name].columns.items():
                if column.optional and col not in self.optional_present.get(name, ()):
                    notes.append(f"{name} column {col} absent: {column.degrades}")
        return tuple(notes)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn engine read errors (a malformed value in a file) into a SourceError naming file, column, line."""
        try:
            yield
        except SourceError:
            raise
        except Exception as exc:  # engine exceptions have no common base class
            translated = _translate_read_error(self, exc)
            if translated is None:
                raise
            raise translated from None

    def close(self) -> None:
        """Drop the views (Spark) or the in-memory database (DuckDB)."""
        if self.engine == "duckdb":
            # Tables cached by ibis are dropped by weakref finalizers; one that runs at interpreter exit,
            # after the connection is closed, prints a "Connection already closed" traceback under the
            # user's error message. The in-memory database goes with the connection, so detach them.
            with contextlib.suppress(Exception):
                for entry in list(self.backend._cache_name_to_entry.values()):
                    entry.finalizer.detach()
                self.backend._cache_name_to_entry.clear()
                self.backend._cache_op_to_entry.clear()
            with contextlib.suppress(Exception):
                self.backend.disconnect()
        else:
            session = self.backend._session
            for view in [*self.views.values(), *(v for v, _ in self.concept_views.values())]:
                with contextlib.suppress(Exception):
                    session.catalog.dropTempView(view)
            if self.spark_time_zone is not None:
                session.conf.set("spark.sql.session.timeZone", self.spark_time_zone)
            if self.spark_pruning is not None:
                session.conf.set(_CSV_PRUNING, self.spark_pruning)


def _present_columns(spec: TableSpec, tf: TableFile) -> tuple[dict[str, str], tuple[str, ...]]:
    """Needed column -> name as spelt in the file; and the optional columns present."""
    by_lower = {c.lower(): c for c in tf.header}
    spelt = {col: by_lower[col] for col in spec.columns if col in by_lower}
    optional = tuple(col for col, c in spec.columns.items() if c.optional and col in by_lower)
    return spelt, optional


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _csv_column_type(spec: TableSpec, wanted: dict[str, str], file_column: str) -> str:
    # DuckDB type of a csv header column: ours when we read it (wanted: lower-case file name -> ours), else VARCHAR
    ours = wanted.get(file_column.lower())
    return _read_type(spec.columns[ours].type) if ours is not None else "VARCHAR"


def _q(name: str) -> str:
    """A column name quoted for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def _parquet_cast(tf: TableFile, file_col: str, kind: str) -> str:
    """SQL reading a Parquet column as ``kind``: a whole-number column stored as a double, a decimal or text is
    tested as the CSV reader's are (a plain CAST would round 10000032.5 to another patient)."""
    value = _q(file_col)
    where = str(_first_parquet(tf.path))
    if kind != "string" and _parquet_kinds(tf, file_col) & {"text"}:
        # An empty text is an empty value, as in a CSV (an all-text conversion writes "" for an empty date), and
        # a text that does not parse stops the read with the column named (a cast of the trimmed text would not).
        text = f"NULLIF(trim({value}), '')"
        target = "DOUBLE" if kind in _INTEGER_LIMITS else _DUCKDB_TYPES[kind]
        marker = _sql_string(f"{_NOT_TYPED} | {where} | {file_col} | {kind} | ")
        value = (
            f"(CASE WHEN {text} IS NULL THEN NULL WHEN TRY_CAST({text} AS {target}) IS NULL "
            f"THEN error({marker} || {value}) ELSE TRY_CAST({text} AS {target}) END)"
        )
    if kind in _INTEGER_LIMITS and _parquet_kinds(tf, file_col) - {"integer"}:
        return _whole_sql(f"CAST({value} AS DOUBLE)", kind, str(_first_parquet(tf.path)), file_col)
    return f"CAST({value} AS {_DUCKDB_TYPES[kind]})"


def _parquet_kinds(tf: TableFile, file_col: str) -> set[str]:
    """How the parts of a Parquet table store a column: "integer", "text" or "other", one per part type.

    Every part of a folder: the engines cast a later part to the first part's type, rounding a double there.
    """
    import pyarrow.parquet as pq
    import pyarrow.types as pat

    parts = [tf.path] if tf.path.is_file() else sorted(tf.path.glob("*.parquet"))
    kinds = set()
    for part in parts:
        schema = pq.read_schema(part)
        if file_col in schema.names:
            arrow_type = schema.field(file_col).type
            if pat.is_dictionary(arrow_type):
                arrow_type = arrow_type.value_type
            text = pat.is_string(arrow_type) or pat.is_large_string(arrow_type)
            kinds.add("integer" if pat.is_integer(arrow_type) else "text" if text else "other")
    return kinds


def _connect_duckdb(source: MimicIV, files: dict[str, TableFile | None], config: dict[str, Any]) -> SourceConnection:
    import ibis

    backend = ibis.duckdb.connect()
    con = backend.con
    # Insertion order is irrelevant to a cohort query; dropping it lets DuckDB stream with less memory.
    con.execute("SET preserve_insertion_order = false")
    for key, value in config.items():
        con.execute(f"SET {key} = {_sql_string(str(value)) if isinstance(value, str) else value}")
    # A Parquet timestamp with a time zone (pandas' tz-aware columns) is cast to MIMIC-IV's wall-clock
    # TIMESTAMP in the session time zone, which DuckDB takes from the machine: the same file gave other
    # times in New York than in UTC. UTC, as the Spark reader uses; after the caller's settings, on purpose.
    con.execute("SET TimeZone = 'UTC'")
    views: dict[str, str] = {}
    optional_present: dict[str, tuple[str, ...]] = {}
    for name, tf in files.items():
        if tf is None:
            continue
        spec = SCHEMA[name]
        spelt, optional = _present_columns(spec, tf)
        optional_present[name] = optional
        view = name.replace("/", "_")
        if tf.format == "csv":
            # Every column typed explicitly (the ones we do not use as VARCHAR): no sniffing, so a bad
            # value is an error rather than a different type, and unused columns cost nothing.
            wanted = {v.lower(): k for k, v in spelt.items()}
            columns = ", ".join(
                f"{_sql_string(c)}: {_sql_string(_csv_column_type(spec, wanted, c))}" for c in tf.header
            )
            relation = (
                f"read_csv({_sql_string(str(tf.path))}, header = true, auto_detect = false, delim = ',', "
                f"quote = '\"', escape = '\"', columns = {{{columns}}}, "
                f"timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, "
                f"dateformat = {_sql_string(DATE_FORMAT_DUCKDB)})"
            )
            select = ", ".join(
                f"{_whole_sql(f'{_q(file_col)}', spec.columns[col].type, str(tf.path), file_col)} AS {col}"
                for col, file_col in spelt.items()
            )
        else:
            pattern = str(tf.path) if tf.path.is_file() else str(tf.path / "*.parquet")
            relation = f"read_parquet({_sql_string(pattern)})"
            select = ", ".join(
                f"{_parquet_cast(tf, file_col, spec.columns[col].type)} AS {col}" for col, file_col in spelt.items()
            )
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {relation}")
        views[name] = view
    return SourceConnection(source, "duckdb", backend, files, views, optional_present)


def _spark_type(kind: str) -> Any:
    from pyspark.sql import types as T

    return {
        "int64": T.LongType(),
        "int32": T.IntegerType(),
        "float64": T.DoubleType(),
        "string": T.StringType(),
        # Wall-clock timestamps without a time zone, as MIMIC-IV writes them: no session-time-zone shifts.
        "timestamp": T.TimestampNTZType(),
        "date": T.DateType(),
    }[kind]


_NOT_UTF8 = "retrocohort: not UTF-8"


def _spark_frame(session: Any, tf: TableFile, spec: TableSpec, spelt: dict[str, str]) -> Any:
    """A Spark frame of the columns ``spelt`` (ours -> as in the file) of one table file, read as DuckDB reads it.

    Spark's CSV reader accepts what DuckDB refuses, so the same study would end differently on the two engines.
    Here: whole-number columns are parsed as doubles and tested (a fraction stops the read, as on DuckDB, and
    "10000032.0" reads as 10000032, which Spark's integer parser refused); ``multiLine`` so that a quoted line
    break stays inside its value (without it a quoted CRLF split the row in two); ``FAILFAST`` with column
    pruning off (set on the session in _connect_spark) so that a row with an extra field is refused, not cut;
    and a text column holding U+FFFD, which Spark puts for bytes that are not UTF-8, stops the read.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    wanted = {v.lower(): k for k, v in spelt.items()}

    def read_kind(kind: str) -> Any:
        return T.DoubleType() if kind in _INTEGER_LIMITS else _spark_type(kind)

    if tf.format == "csv":
        schema = T.StructType(
            [
                T.StructField(
                    c, read_kind(spec.columns[wanted[c.lower()]].type) if c.lower() in wanted else T.StringType()
                )
                for c in tf.header
            ]
        )
        frame = (
            session.read.option("header", "true")
            .option("mode", "FAILFAST")
            .option("multiLine", "true")
            .option("encoding", "UTF-8")
            .option("timestampNTZFormat", TIMESTAMP_FORMAT_SPARK)
            .option("timestampFormat", TIMESTAMP_FORMAT_SPARK)
            .option("dateFormat", DATE_FORMAT_SPARK)
            .option("escape", '"')
            .schema(schema)
            .csv(str(tf.path))
        )
    else:
        try:
            frame = session.read.parquet(str(tf.path))
        except Exception as exc:  # pyspark's AnalysisException; no common base class to name
            if "PARQUET_TYPE_ILLEGAL" not in str(exc):
                raise
            raise SourceError(
                f"{tf.path}: Spark cannot read a column type of this Parquet file ({str(exc).splitlines()[0][:160]}); "
                "timestamps in nanoseconds (pandas' default) are the usual cause. Write the file again with "
                "microsecond timestamps (pyarrow: coerce_timestamps='us'; retrocohort convert does), or run on DuckDB"
            ) from None
    where = str(tf.path if tf.format == "csv" else _first_parquet(tf.path))
    columns = []
    for col, file_col in spelt.items():
        kind = spec.columns[col].type
        value = F.col(f"`{file_col}`")
        stored = _parquet_kinds(tf, file_col) if tf.format == "parquet" else {"text"}
        if tf.format == "parquet" and kind != "string" and "text" in stored:
            # An empty text is an empty value, as in a CSV, and a text that does not parse stops the read with
            # the message DuckDB's view gives (see _parquet_cast); Spark's own cast error names no column.
            text = F.when(F.trim(value) == "", F.lit(None)).otherwise(F.trim(value))
            parsed = text.try_cast(T.DoubleType() if kind in _INTEGER_LIMITS else _spark_type(kind))
            marker = F.lit(f"{_NOT_TYPED} | {where} | {file_col} | {kind} | ")
            refuse = F.raise_error(F.concat(marker, value.cast("string")))
            value = F.when(text.isNull(), F.lit(None)).when(parsed.isNull(), refuse).otherwise(parsed)
        if kind in _INTEGER_LIMITS and stored - {"integer"}:
            number = value.cast(T.DoubleType())
            refuse = F.raise_error(
                F.concat(F.lit(f"{_NOT_WHOLE} | {where} | {file_col} | {kind} | "), value.cast("string"))
            )
            whole = (number == F.floor(number)) & (F.abs(number) <= F.lit(float(_INTEGER_LIMITS[kind])))
            value = F.when(number.isNull(), F.lit(None)).when(whole, number.cast(_spark_type(kind))).otherwise(refuse)
        elif kind == "string" and tf.format == "csv":
            refuse = F.raise_error(F.lit(f"{_NOT_UTF8} | {where} | {file_col} | "))
            value = F.when(value.contains("\ufffd"), refuse).otherwise(value)
        columns.append(value.cast(_spark_type(kind)).alias(col))
    if tf.format == "parquet" and tf.path.is_dir():
        import pyarrow.parquet as pq

        parts = sorted(tf.path.glob("*.parquet"))
        if len({pq.read_schema(part).remove_metadata() for part in parts}) > 1:
            # Spark reads a folder with the first part's types and fails on a part that stores a column otherwise
            # (int32 beside int64 or double), which DuckDB reads; each part is read and cast on its own instead.
            frames = [session.read.parquet(str(part)).select(*columns) for part in parts]
            united = frames[0]
            for more in frames[1:]:
                united = united.unionByName(more)
            return united, [F.col(col) for col in spelt]
    return frame, columns


def _connect_spark(source: MimicIV, files: dict[str, TableFile | None], spark: Any) -> SourceConnection:
    import ibis

    session = spark if spark is not None else local_spark_session()
    # Date arithmetic (dod cast to a timestamp) goes through Spark's zoned TIMESTAMP type; in a session
    # time zone with daylight saving a duration could gain or lose an hour. Work in UTC and give the
    # caller's session its own setting back in close().
    previous_zone = session.conf.get("spark.sql.session.timeZone")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    # With column pruning Spark's CSV parser reads only the selected fields and never sees a row's extra field
    # (DuckDB refuses the row); without it FAILFAST does. Given back in close().
    previous_pruning = session.conf.get(_CSV_PRUNING, "true")
    session.conf.set(_CSV_PRUNING, "false")
    backend = ibis.pyspark.connect(session)
    token = uuid.uuid4().hex[:8]
    views: dict[str, str] = {}
    optional_present: dict[str, tuple[str, ...]] = {}
    for name, tf in files.items():
        if tf is None:
            continue
        spec = SCHEMA[name]
        spelt, optional = _present_columns(spec, tf)
        optional_present[name] = optional
        frame, columns = _spark_frame(session, tf, spec, spelt)
        frame = frame.select(*columns)
        view = f"rc_{token}_{name.replace('/', '_')}"
        frame.createOrReplaceTempView(view)
        views[name] = view
    return SourceConnection(
        source, "spark", backend, files, views, optional_present, previous_zone, spark_pruning=previous_pruning
    )


_DUCKDB_CSV_ERROR = re.compile(r"CSV Error on Line: (\d+)")
_DUCKDB_COLUMN = re.compile(r'converting column "([^"]+)"')
# Greedy to the last '" to': the value itself may hold quotes (a field written as """""" holds "").
_DUCKDB_VALUE = re.compile(r'Could not convert string "(.*)" to \'?(\w+)')
_DUCKDB_UNICODE = "Invalid unicode"
_DUCKDB_FILE = re.compile(r"file = (.+)")
_DUCKDB_WIDTHS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


# A text Parquet column cast to a date or timestamp words it otherwise ("invalid date field format: ...").
_DUCKDB_CAST_TIME = re.compile(r'invalid (\w+) field format: "([^"]*)".*? when casting from source column (\w+)')
_DUCKDB_CAST_COLUMN = re.compile(r"Could not convert string '([^']*)' to (\w+) when casting from source column (\w+)")
_GZIP_TROUBLE = ("gzip", "zlib", "unexpected end of", "inflate")
_GZ_PATH = re.compile(r"(\S+\.gz)\b")


def _integer_kind(column: str | None) -> str | None:
    """The whole-number kind ("int64", "int32") the readers give a column (same in every table), else None."""
    for schema in (SCHEMA, CONCEPT_SCHEMA):
        for spec in schema.values():
            found = spec.columns.get((column or "").lower())
            if found is not None and found.type in _INTEGER_LIMITS:
                return found.type
    return None


def _not_whole(text: str) -> SourceError:
    """The error for a value of a whole-number column that is not one (raised by the view's test, _whole_sql).

    The engine stops at the first such value it reads, without a line; the file is read again here (only after
    the read failed) to name the first such line and count the rows.
    """
    tail = text[text.index(_NOT_WHOLE) + len(_NOT_WHOLE) :]
    _, where, column, kind, value = (part.strip() for part in tail.split(" | ", 4))
    # The engine's own rendering of the double (Spark: 3.00006185E7, then its error text): the shortest form.
    value = value.split()[0] if value.split() else value
    with contextlib.suppress(ValueError):
        value = repr(float(value))
    limit = _INTEGER_LIMITS.get(kind, _INTEGER_LIMITS["int64"])
    path = Path(where)
    found = _find_not_whole(path, column, limit) if not path.name.endswith(".parquet") else None
    sql_kind = _DUCKDB_TYPES.get(kind, kind)
    if found is None:
        located, example = "", value
    else:
        line, example, rows = found
        located = f", line {line} of the file (data row {line - 1} after the header; the first of {rows} row(s))"
    return SourceError(
        f"{where}: column {column!r}{located}: the value {example!r} is not a whole number within the range "
        f"of {sql_kind} ({kind}), and {column} is read as whole numbers. Rounding it would turn it into another "
        f"value (10000032.5 is neither 10000032 nor 10000033; for a key, another patient, admission or item), so "
        "the file is refused. Fix or remove that row; if many rows have such values, the export turned whole "
        "numbers into fractions or text (a spreadsheet, a float conversion): export the table again, then rerun."
    )


def _not_typed(tail: str) -> SourceError:
    """The error for a Parquet text value that does not parse as its column's type (raised by _parquet_cast)."""
    _, where, column, kind, value = (part.strip() for part in tail.split(" | ", 4))
    # Spark ends the message line with its error class's SQLSTATE; DuckDB with nothing.
    value = re.sub(r"\s*SQLSTATE: \w+$", "", value.splitlines()[0]) if value else value
    return SourceError(
        f"{where}: column {column!r} holds the text {value!r}, which is not "
        f"{_KIND_WORDS.get(kind, kind)}; fix or remove that row, or write the Parquet file again with the column "
        "typed (retrocohort.sources.to_parquet)"
    )


def _not_utf8(path: Path) -> SourceError:
    """The error DuckDB's reader gives for bytes that are not UTF-8, for a file Spark read (it puts U+FFFD)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    with contextlib.suppress(OSError, EOFError), opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):  # noqa: B007 - the line found is used after the loop
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                break
        else:
            number = 0
    where = f"line {number} of the file (data row {number - 1} after the header)" if number else "a line"
    return SourceError(
        f"{path}: {where} is not UTF-8 text (e.g. Latin-1 or Windows-1252 bytes from a re-saved export); MIMIC-IV "
        "files are UTF-8. Convert the file (e.g. iconv -f latin1 -t utf-8) or get it again, then rerun."
    )


def _find_not_whole(path: Path, column: str, limit: int) -> tuple[int, str, int] | None:
    """(first line, its value, rows) of the values of ``column`` in a CSV file that are not whole numbers in range."""
    import csv
    import io
    import math

    opener = gzip.open if path.name.endswith(".gz") else open
    first: tuple[int, str] | None = None
    try:
        with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.reader(f)
            header = [name.strip().strip('"').lower() for name in next(reader, [])]
            if column.lower() not in header:
                return None
            at = header.index(column.lower())
            for row in reader:
                text = row[at].strip() if at < len(row) else ""
                if not text:
                    continue
                try:
                    number = float(text)
                    whole = math.isfinite(number) and number.is_integer() and abs(number) <= limit
                except ValueError:
                    whole = False
                if not whole:
                    first = (reader.line_num, text)
                    break
    except (OSError, EOFError, csv.Error):
        return None
    if first is None:
        return None
    # The first line by Python (exact line numbers, and it stops there); the count by DuckDB, which reads the
    # whole file many times faster than Python's csv module (minutes saved on chartevents).
    rows = _count_not_whole(path, column, limit)
    return (first[0], first[1], rows if rows is not None else 1)


def _count_not_whole(path: Path, column: str, limit: int) -> int | None:
    """How many values of ``column`` in a CSV file are not whole numbers within ``limit`` (None: cannot count)."""
    import duckdb

    value = f"trim({_q(column)})"
    number = f"TRY_CAST({value} AS DOUBLE)"
    con = duckdb.connect()
    try:
        # Every column as text, named from the header as the readers name them (the same quoting rules).
        columns = ", ".join(f"{_sql_string(c)}: 'VARCHAR'" for c in _read_csv_header(path))
        relation = (
            f"read_csv({_sql_string(str(path))}, header = true, auto_detect = false, delim = ',', quote = '\"', "
            f"escape = '\"', columns = {{{columns}}})"
        )
        whole = f"coalesce({number} = trunc({number}) AND abs({number}) <= {limit}, false)"
        found = con.execute(f"SELECT count(*) FROM {relation} WHERE {value} <> '' AND NOT {whole}").fetchone()
        return int(found[0]) if found else None
    except (duckdb.Error, SourceError):
        return None
    finally:
        con.close()


def _translate_read_error(conn: SourceConnection, exc: Exception) -> SourceError | None:
    text = str(exc)
    if _NOT_WHOLE in text:
        return _not_whole(text)
    if _NOT_TYPED in text:
        return _not_typed(text[text.index(_NOT_TYPED) + len(_NOT_TYPED) :])
    if _NOT_UTF8 in text:
        where = text[text.index(_NOT_UTF8) + len(_NOT_UTF8) :].split(" | ")[1].strip()
        return _not_utf8(Path(where))
    line = _DUCKDB_CSV_ERROR.search(text)
    if line:
        # A damaged gzip stream often decompresses to garbage rows before its checksum fails at the end,
        # so DuckDB reports a broken row. Say what is really wrong (and what to do: download again) when
        # the archive itself is damaged; only an intact file has a broken row worth fixing by hand.
        file_match = _DUCKDB_FILE.search(text)
        damaged = _damaged_archive(Path(file_match.group(1).strip())) if file_match else None
        if damaged is not None:
            return damaged
    elif any(word in text.lower() for word in _GZIP_TROUBLE):
        return _broken_archive(conn, text)
    cast = _DUCKDB_CAST_COLUMN.search(text) or _DUCKDB_CAST_TIME.search(text)
    if cast:
        value, kind, column = cast.groups()
        if cast.re is _DUCKDB_CAST_TIME:
            kind, value = value, kind
        files = [
            str(tf.path)
            for name, tf in conn.files.items()
            if tf is not None and tf.format == "parquet" and column.lower() in {c.lower() for c in tf.header}
        ]
        where = " or ".join(files) if files else f"a Parquet file under {conn.source.path}"
        return SourceError(
            f"{where}: column {column!r} holds the text {value!r}, which is not {kind.lower()}; fix or remove "
            "that row, or write the Parquet file again with the column typed (retrocohort.sources.to_parquet)"
        )
    if line and _DUCKDB_UNICODE in text:
        file_match = _DUCKDB_FILE.search(text)
        number = int(line.group(1))
        return SourceError(
            f"{file_match.group(1).strip() if file_match else 'a MIMIC-IV file'}: line {number} of the file (data row "
            f"{number - 1} after the header) is not UTF-8 text (e.g. Latin-1 or Windows-1252 bytes from a re-saved "
            "export); MIMIC-IV files are UTF-8. Convert the file (e.g. iconv -f latin1 -t utf-8) or get it again, "
            "then rerun."
        )
    if line and ("unterminated quote" in text or "Maximum line size" in text):
        file_match = _DUCKDB_FILE.search(text)
        number = int(line.group(1))
        why = (
            "opens a quoted field that is never closed (a stray '\"'), so the rest of the file reads as one value"
            if "unterminated quote" in text
            else "is longer than the reader's limit of 2,000,000 bytes (a field that long is not MIMIC-IV data; "
            "an unclosed quote can swallow the lines after it)"
        )
        return SourceError(
            f"{file_match.group(1).strip() if file_match else 'a MIMIC-IV file'}: line {number} of the file (data row "
            f"{number - 1} after the header) {why}. Fix or remove that row, or get the file again, then rerun."
        )
    widths = _DUCKDB_WIDTHS.search(text)
    if line and widths:
        file_match = _DUCKDB_FILE.search(text)
        number = int(line.group(1))
        return SourceError(
            f"{file_match.group(1).strip() if file_match else 'a MIMIC-IV file'}: line {number} of the file (data row "
            f"{number - 1} after the header) has {widths.group(2)} fields where the header has {widths.group(1)}: the "
            "row is broken, or the file ends in the middle of a row (an interrupted download or copy?). Fix or remove "
            "that row, or get the file again, then rerun."
        )
    if line:
        file_match = _DUCKDB_FILE.search(text)
        column = _DUCKDB_COLUMN.search(text)
        value = _DUCKDB_VALUE.search(text)
        kind = value.group(2) if value else None
        integer = _integer_kind(column.group(1) if column else None)
        if kind == "DOUBLE" and integer is not None:
            # Whole-number columns are parsed as DOUBLE (see _INTEGER_LIMITS): name the type the study reads.
            kind = _DUCKDB_TYPES[integer]
        return _malformed(
            file_match.group(1).strip() if file_match else "a MIMIC-IV file",
            column.group(1) if column else None,
            int(line.group(1)),
            value.group(1) if value else None,
            kind,
        )
    if "MALFORMED_RECORD" in text or "Malformed records" in text or "CANNOT_PARSE" in text.upper():
        # Spark does not say where; find the first bad value with a DuckDB scan of the same files.
        located = locate_malformed(conn.source, conn.files)
        if located is not None:
            return located
        return SourceError(
            f"Spark could not parse a value in the MIMIC-IV files under {conn.source.path}: {text[:500]}"
        )
    return None


def _broken_archive(conn: SourceConnection, text: str) -> SourceError:
    """A csv.gz that ends early or is damaged; DuckDB does not always say which file, so find it."""
    named = next((tf.path for tf in conn.files.values() if tf is not None and str(tf.path) in text), None)
    if named is None:
        # A concept table is opened apart from conn.files; DuckDB often names its file in the message.
        mentioned = _GZ_PATH.search(text)
        if mentioned is not None and Path(mentioned.group(1)).is_file():
            named = Path(mentioned.group(1))
    # Reading the named file (else every csv.gz, smallest first) gives the precise reason in Python's
    # words; the engines' own wording ranges from a file name only (Spark) to no file at all (DuckDB).
    candidates = (
        [named]
        if named is not None
        else sorted(
            (tf.path for tf in conn.files.values() if tf is not None and tf.path.name.endswith(".gz")),
            key=lambda p: p.stat().st_size,
        )
    )
    for path in candidates:
        try:
            read_through(path)
        except SourceError as exc:
            return exc
    return SourceError(
        f"{named or 'a csv.gz file under ' + str(conn.source.path)}: the compressed file ends early or is damaged "
        f"({text.splitlines()[0][:160]}). {_REDOWNLOAD}"
    )


def _damaged_archive(path: Path) -> SourceError | None:
    """The error of :func:`read_through` if ``path`` is a csv.gz that is cut or damaged, else None.

    Decompresses the whole file, so it is only called once a read has already failed.
    """
    if not path.name.endswith(".gz") or not path.is_file():
        return None
    try:
        read_through(path)
    except SourceError as exc:
        return exc
    return None


_REDOWNLOAD = (
    "It is probably an interrupted or corrupted download: download it again (PhysioNet lists each file's "
    "SHA-256 in SHA256SUMS.txt) and run `retrocohort check` on the folder."
)


def read_through(path: str | Path, on_bytes: Callable[[int], None] | None = None, chunk: int = 1 << 20) -> int:
    """Read a table file to its end, so that a cut or damaged file is found before a study runs.

    A csv.gz is decompressed to its end (its CRC and length are checked); a Parquet file or folder has
    each part's footer read and every row group's metadata checked. Used by ``retrocohort check``.

    Parameters
    ----------
    path
        A ``.csv.gz``, ``.csv`` or ``.parquet`` file (or a folder of Parquet parts).
    on_bytes
        Called with the number of bytes of the file read since the last call (for a progress bar).
    chunk
        Bytes decompressed per read.

    Returns
    -------
    int
        The file's size on disk, in bytes.

    Raises
    ------
    SourceError
        The file ends early, is not what its name says, or cannot be read; names the file and what to do.
    """
    import zlib

    path = Path(path)
    report = on_bytes or (lambda n: None)
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [path] if path.is_file() else sorted(path.glob("*.parquet"))
        total = 0
        for part in parts:
            try:
                meta = pq.ParquetFile(part).metadata
                size = part.stat().st_size
                for group in range(meta.num_row_groups):
                    meta.row_group(group)
            except (OSError, ValueError, pa.ArrowException) as exc:  # ArrowInvalid: a cut file has no footer
                raise SourceError(
                    f"{part}: not a complete Parquet file ({str(exc)[:160]}); write or download it again, then rerun"
                ) from None
            report(size)
            total += size
        return total
    size = path.stat().st_size
    try:
        with open(path, "rb") as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw) as stream:
                    done = 0
                    while stream.read(chunk):
                        now = raw.tell()
                        report(now - done)
                        done = now
            else:
                while block := raw.read(chunk):
                    report(len(block))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(f"{path}: the compressed file ends early or is damaged ({exc}). {_REDOWNLOAD}") from None
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot be read to its end ({exc.strerror or exc}); check the disk and permissions"
        ) from None
    return size


def _malformed(file: str, column: str | None, line: int, value: str | None, kind: str | None) -> SourceError:
    expected = {
        "TIMESTAMP": "a timestamp 'YYYY-MM-DD HH:MM:SS' (e.g. '2150-01-01 10:00:00')",
        "DATE": "a date 'YYYY-MM-DD'",
    }.get((kind or "").upper(), f"a {kind or 'typed'} value")
    col = f"column {column!r}" if column else "a column"
    got = f" {value!r}" if value is not None else ""
    return SourceError(
        f"{file}: {col}, line {line} of the file (data row {line - 1} after the header): the value{got} is not "
        f"{expected}. Fix or remove that row (MIMIC-IV as downloaded from PhysioNet has none), then rerun."
    )


def locate_malformed(source: MimicIV, files: dict[str, TableFile | None] | None = None) -> SourceError | None:
    """Scan the typed columns of every CSV table with DuckDB; return an error for the first bad value, or None."""
    import duckdb

    files = files if files is not None else source.validate()
    # The flagship's tables, then every concept table in the folder with the columns concepts type.
    tables: list[tuple[str, TableFile | None, TableSpec]] = [(n, tf, SCHEMA[n]) for n, tf in files.items()]
    for name, spec in CONCEPT_SCHEMA.items():
        with contextlib.suppress(SourceError):  # an unreadable header is not the error being located
            tables.append((name, files.get(name) or source.locate(name), spec))
    con = duckdb.connect()
    try:
        for _name, tf, spec in tables:
            if tf is None or tf.format != "csv":
                continue
            spelt, _ = _present_columns(spec, tf)
            wanted = {v.lower(): k for k, v in spelt.items()}
            columns = ", ".join(
                f"{_sql_string(c)}: {_sql_string(_csv_column_type(spec, wanted, c))}" for c in tf.header
            )
            # count() of each typed column, so that projection pushdown cannot skip parsing it; whole-number
            # columns through the test the views apply.
            select = ", ".join(
                f"count({_whole_sql(_q(c), spec.columns[col].type, str(tf.path), c)})" for col, c in spelt.items()
            )
            try:
                con.execute(
                    f"SELECT {select} FROM (SELECT * FROM read_csv({_sql_string(str(tf.path))}, header = true, "
                    f"auto_detect = false, columns = {{{columns}}}, "
                    f"timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, "
                    f"dateformat = {_sql_string(DATE_FORMAT_DUCKDB)}))"
                ).fetchall()
            except duckdb.Error as exc:
                translated = _translate_read_error(SourceConnection(source, "duckdb", None, files, {}), exc)
                if translated is not None:
                    return translated
        return None
    finally:
        con.close()


def to_parquet(path: str | Path, out: str | Path, tables: tuple[str, ...] | None = None) -> Path:
    """Convert the flagship's tables of a MIMIC-IV folder from csv.gz to Parquet (one file per table).

    Kept for existing callers: a thin wrapper over
    :func:`retrocohort.sources.convert.convert_mimic` (which converts every table, verifies row
    counts, reports progress and refuses to overwrite unless forced); this one converts the tables
    of :data:`SCHEMA` present (or ``tables``) and replaces earlier copies, as it always did.

    Returns
    -------
    Path
        ``out``.
    """
    from .convert import convert_mimic

    source = MimicIV(path)
    files = source.validate()
    chosen = tuple(tables) if tables is not None else tuple(n for n, tf in files.items() if tf is not None)
    for name in chosen:
        tf = files.get(name)
        if tf is not None and tf.format != "csv":
            raise SourceError(f"{tf.path}: already {tf.format}; to_parquet converts CSV tables")
    return convert_mimic(source.path, out, chosen, force=True).out


def check_source(path: str | Path) -> pd.DataFrame:
    """Which tables and columns of a MIMIC-IV folder are present, and what each supports.

    Never raises for missing pieces (that is what it reports); used by
    ``retrocohort check``.

    Returns
    -------
    pandas.DataFrame
        One row per (table, column) of :data:`SCHEMA`, columns ``table``,
        ``column``, ``file`` (path or ""), ``present`` (bool), ``required``
        (bool: no study can run without it), ``needed_by`` (what the column is for).
        Which built-in concepts read a table: :func:`table_readers`.
    """
    source = MimicIV(path)
    rows = []
    for name, spec in SCHEMA.items():
        tf = source.locate(name)
        lower = {c.lower() for c in tf.header} if tf is not None else set()
        for col, column in spec.columns.items():
            rows.append(
                {
                    "table": name,
                    "column": col,
                    "file": str(tf.path) if tf is not None else "",
                    "present": tf is not None and col in lower,
                    "required": spec.required and not column.optional,
                    "needed_by": column.needed_by,
                }
            )
    return pd.DataFrame(rows, columns=["table", "column", "file", "present", "required", "needed_by"])


# ---------------------------------------------------------------------------------------------
# Concept tables: every table a study concept may read (retrocohort.concepts), with the columns
# concepts use. Opened lazily by SourceConnection.concept_table, never by connect(), so the flagship
# path (SCHEMA) reads exactly what it read before and a folder without, say, emar is fine until a
# study asks for it. Types as in docs/shared mimic-iv-columns (measured quantities double, ids bigint).
# ---------------------------------------------------------------------------------------------

_CONCEPT = "study concepts"


def _ccols(required: tuple[tuple[str, str], ...], optional: tuple[tuple[str, str], ...] = ()) -> dict[str, Column]:
    # the kinds come from module constants typed str; each is one of ColumnType
    cols = {name: Column(cast(ColumnType, kind), _CONCEPT) for name, kind in required}
    lost = "selectors on this column cannot be used"
    cols.update({name: Column(cast(ColumnType, kind), _CONCEPT, True, lost) for name, kind in optional})
    return cols


_KEYS3 = (("subject_id", "int64"), ("hadm_id", "int64"), ("stay_id", "int64"))
_KEYS2 = (("subject_id", "int64"), ("hadm_id", "int64"))

#: Table -> columns that concepts read (a superset of SCHEMA's columns for the 8 flagship tables).
CONCEPT_SCHEMA: dict[str, TableSpec] = {
    name: TableSpec(name, columns, required=False, needed_by=_CONCEPT, degrades="concepts on this table find nothing")
    for name, columns in {
        "hosp/patients": _ccols(
            (
                ("subject_id", "int64"),
                ("gender", "string"),
                ("anchor_age", "int32"),
                ("anchor_year", "int32"),
                ("dod", "date"),
            )
        ),
        "hosp/admissions": _ccols(
            (*_KEYS2, ("admittime", "timestamp"), ("dischtime", "timestamp"), ("deathtime", "timestamp"))
        ),
        "icu/icustays": _ccols((*_KEYS3, ("intime", "timestamp"), ("outtime", "timestamp"))),
        "icu/inputevents": _ccols(
            (
                *_KEYS3,
                ("starttime", "timestamp"),
                ("endtime", "timestamp"),
                ("itemid", "int32"),
                ("amount", "float64"),
                ("amountuom", "string"),
                ("rate", "float64"),
                ("rateuom", "string"),
                ("patientweight", "float64"),
                ("orderid", "int64"),
            ),
            (("statusdescription", "string"),),
        ),
        "icu/ingredientevents": _ccols(
            (
                *_KEYS3,
                ("starttime", "timestamp"),
                ("endtime", "timestamp"),
                ("itemid", "int32"),
                ("amount", "float64"),
                ("amountuom", "string"),
                ("rate", "float64"),
                ("rateuom", "string"),
            ),
            (("statusdescription", "string"),),
        ),
        "icu/procedureevents": _ccols(
            (*_KEYS3, ("starttime", "timestamp"), ("endtime", "timestamp"), ("itemid", "int32")),
            (("value", "float64"), ("valueuom", "string"), ("statusdescription", "string")),
        ),
        "icu/chartevents": _ccols(
            (*_KEYS3, ("charttime", "timestamp"), ("itemid", "int32")),
            (("value", "string"), ("valuenum", "float64"), ("valueuom", "string")),
        ),
        "icu/outputevents": _ccols(
            (*_KEYS3, ("charttime", "timestamp"), ("itemid", "int32"), ("value", "float64")),
            (("valueuom", "string"),),
        ),
        "icu/datetimeevents": _ccols(
            (*_KEYS3, ("charttime", "timestamp"), ("itemid", "int32"), ("value", "timestamp"))
        ),
        "hosp/labevents": _ccols(
            (("subject_id", "int64"), ("itemid", "int32"), ("charttime", "timestamp"), ("valuenum", "float64")),
            (("hadm_id", "int64"), ("specimen_id", "int64"), ("value", "string"), ("valueuom", "string")),
        ),
        "hosp/prescriptions": _ccols(
            (*_KEYS2, ("starttime", "timestamp"), ("stoptime", "timestamp"), ("drug", "string")),
            (("dose_val_rx", "string"), ("dose_unit_rx", "string"), ("route", "string")),
        ),
        "hosp/emar": _ccols(
            (*_KEYS2, ("emar_id", "string"), ("charttime", "timestamp"), ("medication", "string")),
            (("event_txt", "string"),),
        ),
        "hosp/emar_detail": _ccols(
            (("subject_id", "int64"), ("emar_id", "string")),
            (
                ("parent_field_ordinal", "string"),
                ("dose_given", "string"),
                ("dose_given_unit", "string"),
                ("route", "string"),
            ),
        ),
        "hosp/pharmacy": _ccols(
            (*_KEYS2, ("starttime", "timestamp"), ("stoptime", "timestamp"), ("medication", "string")),
            (("route", "string"), ("status", "string")),
        ),
        "hosp/diagnoses_icd": _ccols((*_KEYS2, ("icd_code", "string"), ("icd_version", "int32"))),
        "hosp/procedures_icd": _ccols(
            (*_KEYS2, ("chartdate", "date"), ("icd_code", "string"), ("icd_version", "int32"))
        ),
        "hosp/microbiologyevents": _ccols(
            (
                ("subject_id", "int64"),
                ("hadm_id", "int64"),
                ("micro_specimen_id", "int64"),
                ("chartdate", "timestamp"),
                ("charttime", "timestamp"),
            ),
            (("spec_itemid", "int64"), ("spec_type_desc", "string"), ("org_name", "string")),
        ),
        "hosp/transfers": _ccols(
            (
                *_KEYS2,
                ("eventtype", "string"),
                ("careunit", "string"),
                ("intime", "timestamp"),
                ("outtime", "timestamp"),
            )
        ),
        "hosp/services": _ccols(
            (*_KEYS2, ("transfertime", "timestamp"), ("curr_service", "string")), (("prev_service", "string"),)
        ),
        "hosp/omr": _ccols(
            (("subject_id", "int64"), ("chartdate", "date"), ("result_name", "string"), ("result_value", "string")),
            (("seq_num", "int64"),),
        ),
    }.items()
}


def _open_concept_view(conn: SourceConnection, name: str) -> tuple[str, tuple[str, ...]]:
    """Create the view of one CONCEPT_SCHEMA table on the connection's engine; (view name, optional present)."""
    spec = CONCEPT_SCHEMA[name]
    tf = conn.files.get(name) or conn.source.locate(name)
    if tf is None:
        tried = ", ".join(f"{name}{ext}" for ext in _EXTENSIONS)
        raise SourceError(
            f"table {name} not found in {conn.source.path} (looked for {tried}); a concept of the study reads it. "
            f"It ships in the {name.split('/')[0]} module of {SUPPORTED_VERSIONS}: copy it into the folder, or "
            "remove the concepts that read it"
        )
    spelt, optional = _present_columns(spec, tf)
    missing = [col for col, c in spec.columns.items() if col not in spelt and not c.optional]
    if missing:
        raise SourceError(
            f"{tf.path}: column(s) {', '.join(repr(m) for m in missing)} missing; a concept of the study reads "
            f"them ({SUPPORTED_VERSIONS} have them). Columns found: {', '.join(tf.header)}"
        )
    view = f"rc_concept_{uuid.uuid4().hex[:8]}_{name.replace('/', '_')}"
    if conn.engine == "duckdb":
        if tf.format == "csv":
            wanted = {v.lower(): k for k, v in spelt.items()}
            types = {c: _csv_column_type(spec, wanted, c) for c in tf.header}
            columns = ", ".join(f"{_sql_string(c)}: {_sql_string(kind)}" for c, kind in types.items())
            relation = (
                f"read_csv({_sql_string(str(tf.path))}, header = true, auto_detect = false, delim = ',', "
                f"quote = '\"', escape = '\"', columns = {{{columns}}}, "
                f"timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, "
                f"dateformat = {_sql_string(DATE_FORMAT_DUCKDB)})"
            )
            present = [
                f"{_whole_sql(_q(spelt[col]), spec.columns[col].type, str(tf.path), spelt[col])} AS {col}"
                for col in spec.columns
                if col in spelt
            ]
        else:
            pattern = str(tf.path) if tf.path.is_file() else str(tf.path / "*.parquet")
            relation = f"read_parquet({_sql_string(pattern)})"
            present = [
                f"{_parquet_cast(tf, spelt[col], spec.columns[col].type)} AS {col}"
                for col in spec.columns
                if col in spelt
            ]
        # An optional column absent from the file is a typed null, so every concept sees the same columns.
        absent = [
            f"CAST(NULL AS {_DUCKDB_TYPES[c.type]}) AS {col}" for col, c in spec.columns.items() if col not in spelt
        ]
        select = ", ".join(present + absent)
        conn.backend.con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {select} FROM {relation}")
    else:
        from pyspark.sql import functions as F

        session = conn.backend._session
        frame, present = _spark_frame(session, tf, spec, spelt)
        by_name = dict(zip(spelt, present, strict=True))
        cols = [by_name.get(col) for col in spec.columns]
        cols = [
            c if c is not None else F.lit(None).cast(_spark_type(spec.columns[col].type)).alias(col)
            for c, col in zip(cols, spec.columns, strict=True)
        ]
        frame.select(*cols).createOrReplaceTempView(view)
    return view, optional


__all__ = [
    "CONCEPT_SCHEMA",
    "SCHEMA",
    "Column",
    "MimicIV",
    "SourceConnection",
    "TableFile",
    "TableSpec",
    "check_source",
    "layout_hint",
    "locate_malformed",
    "read_through",
    "table_readers",
    "to_parquet",
]
