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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..errors import SourceError
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

SUPPORTED_VERSIONS = "MIMIC-IV v2.2, v3.0 and v3.1 (any release since v2.0, which introduced the hosp/ and icu/ folders)"


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


#: The tables and columns the cohort builder reads, with explicit types.
SCHEMA: dict[str, TableSpec] = {
    "hosp/patients": TableSpec(
        "hosp/patients",
        _cols(
            subject_id=("int64", "patient key"),
            gender=("string", "sex"),
            anchor_age=("int32", "age"),
            anchor_year=("int32", "age"),
            dod=("date", "death (out-of-hospital, day precision)"),
        ),
        needed_by="age, sex, death",
    ),
    "hosp/admissions": TableSpec(
        "hosp/admissions",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission key"),
            admittime=("timestamp", "age, baseline creatinine"),
            dischtime=("timestamp", "admission"),
            deathtime=("timestamp", "death (in-hospital, minute precision)"),
        ),
        needed_by="age, baseline creatinine, death",
    ),
    "hosp/labevents": TableSpec(
        "hosp/labevents",
        _cols(
            subject_id=("int64", "patient key"),
            specimen_id=("int64", "SOFA respiratory (PaO2/FiO2 pairing)"),
            itemid=("int32", "serum Mg, creatinine, SOFA labs"),
            charttime=("timestamp", "serum Mg, creatinine, SOFA labs"),
            valuenum=("float64", "serum Mg, creatinine, SOFA labs"),
        ),
        needed_by="serum Mg exclusion and covariate, baseline creatinine/eGFR, SOFA labs",
    ),
    "hosp/diagnoses_icd": TableSpec(
        "hosp/diagnoses_icd",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "sepsis"),
            icd_code=("string", "sepsis"),
            icd_version=("int32", "sepsis"),
        ),
        needed_by="sepsis",
    ),
    "icu/icustays": TableSpec(
        "icu/icustays",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "index admission"),
            stay_id=("int64", "index ICU stay"),
            intime=("timestamp", "index ICU stay"),
            outtime=("timestamp", "index ICU stay"),
        ),
        needed_by="index ICU stay",
    ),
    "icu/procedureevents": TableSpec(
        "icu/procedureevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "index admission"),
            stay_id=("int64", "index ICU stay"),
            starttime=("timestamp", "CKRT index, KRT liberation, ventilation"),
            endtime=("timestamp", "KRT liberation, ventilation"),
            itemid=("int32", "CKRT index, KRT liberation, ventilation"),
        ),
        needed_by="CKRT index, KRT sessions (liberation), invasive ventilation",
    ),
    "icu/inputevents": TableSpec(
        "icu/inputevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission"),
            stay_id=("int64", "ICU stay"),
            starttime=("timestamp", "vasopressors, Mg exposure"),
            endtime=("timestamp", "vasopressors"),
            itemid=("int32", "vasopressors, Mg exposure"),
            amount=("float64", "Mg dose"),
            amountuom=("string", "Mg dose"),
            rate=("float64", "SOFA cardiovascular"),
            rateuom=("string", "SOFA cardiovascular"),
            patientweight=("float64", "SOFA cardiovascular (mcg/min to mcg/kg/min)"),
            orderid=("int64", "Mg dose (carrier rows share the order)"),
            statusdescription=(
                "string",
                "Mg dose (rewritten rows are not counted)",
                True,
                "rewritten magnesium sulfate rows cannot be recognised and are counted in the dose",
            ),
        ),
        needed_by="vasopressor support, SOFA cardiovascular, Mg exposure and dose",
    ),
    "icu/chartevents": TableSpec(
        "icu/chartevents",
        _cols(
            subject_id=("int64", "patient key"),
            hadm_id=("int64", "admission"),
            stay_id=("int64", "ICU stay"),
            charttime=("timestamp", "CKRT index (CRRT mode charting)"),
            itemid=("int32", "CKRT index (CRRT mode charting)"),
        ),
        required=False,
        needed_by="CKRT index and KRT sessions from CRRT-mode charting (itemid 227290)",
        degrades="CRRT-mode charting (chartevents 227290) not used: the CKRT index and KRT sessions "
        "come from procedureevents only",
    ),
}

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
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            line = handle.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the header line ({exc}); is the file a complete download?") from None
    if not line.strip():
        raise SourceError(f"{path}: the file is empty; MIMIC-IV files start with a header line")
    return tuple(name.strip().strip('"') for name in line.rstrip("\r\n").split(","))


def _read_parquet_header(path: Path) -> tuple[str, ...]:
    import pyarrow.parquet as pq

    first = path if path.is_file() else next(iter(sorted(path.glob("*.parquet"))), None)
    if first is None:
        raise SourceError(f"{path}: a Parquet folder with no *.parquet files")
    return tuple(pq.read_schema(first).names)


class MimicIV:
    """A MIMIC-IV folder (``hosp/`` and ``icu/``), read lazily.

    Parameters
    ----------
    path
        The release folder, e.g. ``physionet.org/files/mimiciv/3.1`` or a
        synthetic EHR written by :func:`retrocohort.sources.generate_synthetic`.

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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
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
        for ext in _EXTENSIONS:
            candidate = self.path / f"{table}{ext}"
            if candidate.exists():
                fmt: Literal["csv", "parquet"] = "parquet" if ext == ".parquet" else "csv"
                header = _read_parquet_header(candidate) if fmt == "parquet" else _read_csv_header(candidate)
                return TableFile(table, candidate, fmt, header)
        return None

    def validate(self) -> dict[str, TableFile | None]:
        """Locate every table of :data:`SCHEMA` and check the needed columns.

        Returns
        -------
        dict
            table name -> :class:`TableFile` (None for an absent optional table).

        Raises
        ------
        SourceError
            A required table is absent, or a table lacks a required column;
            the message names the file, the column and the MIMIC-IV releases
            that have it.
        """
        found: dict[str, TableFile | None] = {}
        problems: list[str] = []
        for name, spec in SCHEMA.items():
            tf = self.locate(name)
            if tf is None:
                if spec.required:
                    tried = ", ".join(f"{name}{ext}" for ext in _EXTENSIONS)
                    problems.append(
                        f"table {name} not found in {self.path} (looked for {tried}); it is needed for "
                        f"{spec.needed_by} and ships in the {name.split('/')[0]} module of {spec.version_note}"
                    )
                found[name] = None
                continue
            lower = {c.lower() for c in tf.header}
            for col, column in spec.columns.items():
                if col not in lower and not column.optional:
                    problems.append(
                        f"{tf.path}: column {col!r} missing (needed for {column.needed_by}); {spec.version_note} "
                        f"have it. Columns found: {', '.join(tf.header)}"
                    )
            found[name] = tf
        if problems:
            raise SourceError("MIMIC-IV source is incomplete:\n  " + "\n  ".join(problems))
        return found

    def connect(
        self,
        engine: Engine = "duckdb",
        spark: Any = None,
        duckdb_config: dict[str, Any] | None = None,
    ) -> "SourceConnection":
        """Open the tables on an engine and return lazy ibis tables.

        Parameters
        ----------
        engine
            ``"duckdb"`` (embedded, default) or ``"spark"``.
        spark
            A running ``pyspark.sql.SparkSession`` for ``engine="spark"``;
            None starts (or reuses) a ``local[*]`` session.
        duckdb_config
            DuckDB settings (e.g. ``{"memory_limit": "3GB", "threads": 2}``).
        """
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r} is not allowed; choose one of {list(ENGINES)}")
        files = self.validate()
        if engine == "duckdb":
            return _connect_duckdb(self, files, duckdb_config or {})
        return _connect_spark(self, files, spark)


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

    def table(self, name: str) -> Any:
        """The ibis table of ``name`` ("icu/inputevents"), with the columns of :data:`SCHEMA`."""
        if name not in SCHEMA:
            raise KeyError(f"{name!r} is not a table the study reads; known: {list(SCHEMA)}")
        if name not in self.views:
            raise SourceError(f"optional table {name} is absent from {self.source.path}")
        return self.backend.table(self.views[name])

    def has(self, name: str) -> bool:
        """Whether table ``name`` is present."""
        return name in self.views

    def has_column(self, table: str, column: str) -> bool:
        """Whether an optional column is present in its table."""
        return column in self.optional_present.get(table, ()) or (
            table in SCHEMA and column in SCHEMA[table].columns and not SCHEMA[table].columns[column].optional
        )

    @property
    def absent(self) -> tuple[str, ...]:
        """Optional tables that are not in the folder."""
        return tuple(name for name, tf in self.files.items() if tf is None)

    @property
    def notes(self) -> tuple[str, ...]:
        """What each absent optional table or column costs the study."""
        notes = [f"{name} absent: {SCHEMA[name].degrades}" for name in self.absent]
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
            with contextlib.suppress(Exception):
                self.backend.disconnect()
        else:
            session = self.backend._session
            for view in self.views.values():
                with contextlib.suppress(Exception):
                    session.catalog.dropTempView(view)
            if self.spark_time_zone is not None:
                session.conf.set("spark.sql.session.timeZone", self.spark_time_zone)


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
    return _DUCKDB_TYPES[spec.columns[ours].type] if ours is not None else "VARCHAR"


def _connect_duckdb(source: MimicIV, files: dict[str, TableFile | None], config: dict[str, Any]) -> SourceConnection:
    import ibis

    backend = ibis.duckdb.connect()
    con = backend.con
    # Insertion order is irrelevant to a cohort query; dropping it lets DuckDB stream with less memory.
    con.execute("SET preserve_insertion_order = false")
    for key, value in config.items():
        con.execute(f"SET {key} = {_sql_string(str(value)) if isinstance(value, str) else value}")
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
                f"{_sql_string(c)}: {_sql_string(_csv_column_type(spec, wanted, c))}"
                for c in tf.header
            )
            relation = (
                f"read_csv({_sql_string(str(tf.path))}, header = true, auto_detect = false, delim = ',', "
                f"quote = '\"', escape = '\"', columns = {{{columns}}}, "
                f"timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, "
                f"dateformat = {_sql_string(DATE_FORMAT_DUCKDB)})"
            )
            select = ", ".join(f'"{file_col}" AS {col}' for col, file_col in spelt.items())
        else:
            pattern = str(tf.path) if tf.path.is_file() else str(tf.path / "*.parquet")
            relation = f"read_parquet({_sql_string(pattern)})"
            select = ", ".join(
                f'CAST("{file_col}" AS {_DUCKDB_TYPES[spec.columns[col].type]}) AS {col}' for col, file_col in spelt.items()
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


def _connect_spark(source: MimicIV, files: dict[str, TableFile | None], spark: Any) -> SourceConnection:
    import ibis
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    session = spark if spark is not None else local_spark_session()
    # Date arithmetic (dod cast to a timestamp) goes through Spark's zoned TIMESTAMP type; in a session
    # time zone with daylight saving a duration could gain or lose an hour. Work in UTC and give the
    # caller's session its own setting back in close().
    previous_zone = session.conf.get("spark.sql.session.timeZone")
    session.conf.set("spark.sql.session.timeZone", "UTC")
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
        wanted = {v.lower(): k for k, v in spelt.items()}
        if tf.format == "csv":
            schema = T.StructType(
                [
                    T.StructField(c, _spark_type(spec.columns[wanted[c.lower()]].type) if c.lower() in wanted else T.StringType())
                    for c in tf.header
                ]
            )
            frame = (
                session.read.option("header", "true")
                .option("mode", "FAILFAST")
                .option("timestampNTZFormat", TIMESTAMP_FORMAT_SPARK)
                .option("timestampFormat", TIMESTAMP_FORMAT_SPARK)
                .option("dateFormat", DATE_FORMAT_SPARK)
                .option("escape", '"')
                .schema(schema)
                .csv(str(tf.path))
            )
            frame = frame.select(*[F.col(f"`{file_col}`").alias(col) for col, file_col in spelt.items()])
        else:
            frame = session.read.parquet(str(tf.path))
            frame = frame.select(
                *[F.col(f"`{file_col}`").cast(_spark_type(spec.columns[col].type)).alias(col) for col, file_col in spelt.items()]
            )
        view = f"rc_{token}_{name.replace('/', '_')}"
        frame.createOrReplaceTempView(view)
        views[name] = view
    return SourceConnection(source, "spark", backend, files, views, optional_present, previous_zone)


_DUCKDB_CSV_ERROR = re.compile(r"CSV Error on Line: (\d+)")
_DUCKDB_COLUMN = re.compile(r'converting column "([^"]+)"')
_DUCKDB_VALUE = re.compile(r'Could not convert string "([^"]*)" to \'?(\w+)')
_DUCKDB_FILE = re.compile(r"file = (.+)")


def _translate_read_error(conn: SourceConnection, exc: Exception) -> SourceError | None:
    text = str(exc)
    line = _DUCKDB_CSV_ERROR.search(text)
    if line:
        file_match = _DUCKDB_FILE.search(text)
        column = _DUCKDB_COLUMN.search(text)
        value = _DUCKDB_VALUE.search(text)
        return _malformed(
            file_match.group(1).strip() if file_match else "a MIMIC-IV file",
            column.group(1) if column else None,
            int(line.group(1)),
            value.group(1) if value else None,
            value.group(2) if value else None,
        )
    if "MALFORMED_RECORD" in text or "Malformed records" in text or "CANNOT_PARSE" in text.upper():
        # Spark does not say where; find the first bad value with a DuckDB scan of the same files.
        located = locate_malformed(conn.source, conn.files)
        if located is not None:
            return located
        return SourceError(f"Spark could not parse a value in the MIMIC-IV files under {conn.source.path}: {text[:500]}")
    return None


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
    con = duckdb.connect()
    try:
        for name, tf in files.items():
            if tf is None or tf.format != "csv":
                continue
            spec = SCHEMA[name]
            spelt, _ = _present_columns(spec, tf)
            wanted = {v.lower(): k for k, v in spelt.items()}
            columns = ", ".join(
                f"{_sql_string(c)}: {_sql_string(_csv_column_type(spec, wanted, c))}"
                for c in tf.header
            )
            # count() of each typed column, so that projection pushdown cannot skip parsing it.
            select = ", ".join(f'count("{c}")' for c in spelt.values())
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
    """Convert the study's tables of a MIMIC-IV folder from csv.gz to Parquet (one file per table).

    A gzip CSV can only be decompressed by one thread, so on full MIMIC-IV
    (chartevents about 430 million rows) most of an extraction is spent
    decompressing; Parquet is read in parallel and only the needed columns.
    Convert once, then pass ``out`` to :func:`~retrocohort.cohort.extract`.
    Columns the study uses get the types of :data:`SCHEMA` (so a bad value
    fails here, with its line); the others are kept as text.

    Parameters
    ----------
    path
        The MIMIC-IV folder (hosp/, icu/ with csv.gz).
    out
        The folder to write (``hosp/<table>.parquet``, ``icu/<table>.parquet``).
    tables
        Which tables (default: every table of :data:`SCHEMA` present).

    Returns
    -------
    Path
        ``out``.
    """
    import duckdb

    source = MimicIV(path)
    out = Path(out)
    files = source.validate()
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        for name, tf in files.items():
            if tf is None or (tables is not None and name not in tables):
                continue
            if tf.format != "csv":
                raise SourceError(f"{tf.path}: already {tf.format}; to_parquet converts CSV tables")
            spec = SCHEMA[name]
            spelt, _ = _present_columns(spec, tf)
            wanted = {v.lower(): k for k, v in spelt.items()}
            columns = ", ".join(
                f"{_sql_string(c)}: {_sql_string(_csv_column_type(spec, wanted, c))}"
                for c in tf.header
            )
            target = out / f"{name}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                con.execute(
                    f"COPY (SELECT * FROM read_csv({_sql_string(str(tf.path))}, header = true, auto_detect = false, "
                    f"columns = {{{columns}}}, timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, "
                    f"dateformat = {_sql_string(DATE_FORMAT_DUCKDB)})) TO {_sql_string(str(target))} (FORMAT parquet)"
                )
            except duckdb.Error as exc:
                translated = _translate_read_error(SourceConnection(source, "duckdb", None, files, {}), exc)
                raise (translated or SourceError(f"{tf.path}: could not convert to Parquet: {exc}")) from None
    finally:
        con.close()
    return out


def check_source(path: str | Path) -> pd.DataFrame:
    """Which tables and columns of a MIMIC-IV folder are present, and what each supports.

    Never raises for missing pieces (that is what it reports); used by
    ``retrocohort check``.

    Returns
    -------
    pandas.DataFrame
        One row per (table, column) of :data:`SCHEMA`, columns ``table``,
        ``column``, ``file`` (path or ""), ``present`` (bool), ``required``
        (bool: the study cannot run without it), ``needed_by`` (study concepts).
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


__all__ = [
    "SCHEMA",
    "Column",
    "MimicIV",
    "SourceConnection",
    "TableFile",
    "TableSpec",
    "check_source",
    "locate_malformed",
    "to_parquet",
]
