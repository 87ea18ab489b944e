"""Convert a MIMIC-IV folder (csv.gz / csv) to typed Parquet, once, so every later study reads it fast.

A gzip CSV can only be decompressed by one thread, so on full MIMIC-IV most of
an extraction is spent decompressing ``chartevents`` (about 313 million rows
in v2.2). Parquet is read in parallel, column by column, with predicates
pushed into the row groups. ``retrocohort convert MIMIC_DIR PARQUET_DIR``
(and :func:`convert_mimic`) writes ``PARQUET_DIR/hosp/<table>.parquet`` and
``PARQUET_DIR/icu/<table>.parquet``; :class:`~retrocohort.sources.MimicIV`
reads either layout, so ``run`` takes the Parquet folder in place of the CSV one.

Why the conversion is shaped as it is:

- **Same types as the readers.** Each column the readers of
  :mod:`~retrocohort.sources.mimic_iv` type (:data:`SCHEMA` and
  :data:`CONCEPT_SCHEMA`) is parsed here with the same DuckDB ``read_csv``
  options and the same type, so a Parquet table reads back identical to the
  CSV view, and a value that does not parse fails here, naming file, column
  and line. Every other column is kept as text (what the CSV readers see too),
  so nothing is lost.
- **No half table that looks finished.** Each table is written to a hidden
  temporary name beside its target and renamed only once it is complete and
  its row count is verified; an interrupted or failed conversion removes its
  temporary file (a killed process leaves one whose name no reader matches).
- **Nothing overwritten by surprise.** An existing target table is an error
  unless ``force=True``.
- **Row counts verified.** The rows DuckDB parsed from the CSV (the same parse
  the readers do) must equal the rows in the written Parquet file. The CSV's
  lines are not counted independently: MIMIC-IV text columns may hold quoted
  line breaks, so a line count is not a row count.
"""

from __future__ import annotations

import contextlib
import difflib
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError, SourceError
from .mimic_iv import (
    _EXTENSIONS,
    CONCEPT_SCHEMA,
    DATE_FORMAT_DUCKDB,
    SCHEMA,
    TIMESTAMP_FORMAT_DUCKDB,
    MimicIV,
    SourceConnection,
    TableFile,
    _q,
    _read_type,
    _sql_string,
    _translate_read_error,
    _whole_sql,
)

#: ``progress(table, done_bytes, total_bytes)``: bytes of the source file read so far (an estimate from
#: DuckDB's query progress while a table converts; ``done == total`` once it is finished).
ProgressCallback = Callable[[str, int, int], None]

#: MIMIC-IV module folders (v2.0 and later).
MODULES: tuple[str, ...] = ("hosp", "icu")

# How often the progress of a running table is polled, in seconds.
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class ConvertedTable:
    """One table of a conversion: where it came from, where it went, rows and sizes."""

    table: str  # "icu/chartevents"
    source: Path
    target: Path
    action: str  # "converted" (CSV -> Parquet) or "copied" (already Parquet)
    rows: int
    source_bytes: int
    target_bytes: int
    seconds: float


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_mimic` wrote.

    Attributes
    ----------
    out
        The Parquet folder.
    tables
        One :class:`ConvertedTable` per table, in the order converted.
    notes
        Files copied beside the tables (``SYNTHETIC.json``) and anything else worth saying.
    """

    out: Path
    tables: tuple[ConvertedTable, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per table: ``table``, ``action``, ``rows``, ``source_mib``, ``parquet_mib``, ``seconds``."""
        return pd.DataFrame(
            [
                {
                    "table": t.table,
                    "action": t.action,
                    "rows": t.rows,
                    "source_mib": t.source_bytes / 2**20,
                    "parquet_mib": t.target_bytes / 2**20,
                    "seconds": t.seconds,
                }
                for t in self.tables
            ],
            columns=["table", "action", "rows", "source_mib", "parquet_mib", "seconds"],
        )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _stem(path: Path) -> str:
    name = path.name
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def table_names(path: str | Path) -> list[str]:
    """Every table of a MIMIC-IV folder (``"hosp/labevents"``...), from the file names only (no file is opened).

    Raises
    ------
    SourceError
        The folder does not exist or holds no table under ``hosp/`` or ``icu/``.
    """
    source = MimicIV(path)
    names: list[str] = []
    for module in MODULES:
        folder = source.path / module
        if folder.is_dir():
            stems = {_stem(p) for p in folder.iterdir() if not p.name.startswith(".") and _stem(p) != p.name}
            names += [f"{module}/{stem}" for stem in sorted(stems)]
    if not names:
        raise SourceError(
            f"{source.path}: no MIMIC-IV tables found (looked for hosp/*.csv.gz, hosp/*.csv, icu/*.csv.gz, "
            "icu/*.csv and *.parquet); pass the release folder that holds hosp/ and icu/"
        )
    return names


def available_tables(path: str | Path, tables: list[str] | None = None) -> dict[str, TableFile]:
    """Tables of a MIMIC-IV folder -> their file, as the readers would open it (:meth:`MimicIV.locate`).

    A table present as ``.csv.gz`` and ``.parquet`` is the ``.csv.gz``. Dictionary tables (``d_items``...)
    are included. Only ``tables`` (default: all) have their header read, so a damaged file of a table
    not asked for is no obstacle.

    Raises
    ------
    SourceError
        The folder does not exist or holds no table, or a header is unreadable (file named).
    """
    source = MimicIV(path)
    found: dict[str, TableFile] = {}
    for name in tables if tables is not None else table_names(source.path):
        tf = source.locate(name)
        if tf is not None:
            found[tf.table] = tf
    return found


def _column_types(tf: TableFile) -> dict[str, str]:
    """File column (as spelt) -> DuckDB type: the readers' type where they read the column, else VARCHAR."""
    typed: dict[str, str] = {}
    for schema in (SCHEMA, CONCEPT_SCHEMA):
        spec = schema.get(tf.table)
        if spec is not None:
            typed.update({col: c.type for col, c in spec.columns.items()})
    return {c: typed.get(c.lower(), "") for c in tf.header}


def _read_csv_sql(tf: TableFile) -> str:
    """The readers' ``read_csv`` call for one file (same options as ``mimic_iv._connect_duckdb``)."""
    columns = ", ".join(
        f"{_sql_string(c)}: {_sql_string(_read_type(kind) if kind else 'VARCHAR')}"
        for c, kind in _column_types(tf).items()
    )
    return (
        f"read_csv({_sql_string(str(tf.path))}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}}, "
        f"timestampformat = {_sql_string(TIMESTAMP_FORMAT_DUCKDB)}, dateformat = {_sql_string(DATE_FORMAT_DUCKDB)})"
    )


def _select_tables(found: list[str], tables: tuple[str, ...] | list[str] | None, where: Path) -> list[str]:
    if tables is None:
        return list(found)
    chosen: list[str] = []
    for name in tables:
        name = name.strip().strip("/")
        if name in found:
            chosen.append(name)
            continue
        # "labevents" for "hosp/labevents": accept the short name when it is unambiguous.
        by_short = [t for t in found if t.split("/", 1)[1] == name]
        if len(by_short) == 1:
            chosen.append(by_short[0])
            continue
        match = difflib.get_close_matches(name, list(found), n=1, cutoff=0.5)
        hint = f" (did you mean {match[0]!r}?)" if match else ""
        raise InputError(f"table {name!r} is not in {where}{hint}; tables found: {', '.join(found)}")
    return list(dict.fromkeys(chosen))


def _target(out: Path, table: str) -> Path:
    return out / f"{table}.parquet"


def _check_targets(source: Path, out: Path, chosen: list[str], force: bool) -> None:
    if out.resolve() == source.resolve():
        raise InputError(
            f"PARQUET_DIR {str(out)!r} is the MIMIC-IV folder itself; the readers prefer .csv.gz over .parquet, "
            "so the copy would never be read. Choose another folder"
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"PARQUET_DIR {str(out)!r} exists and is not a folder; choose another path")
    existing = [t for t in chosen if _target(out, t).exists()]
    if existing and not force:
        raise InputError(
            f"{len(existing)} table(s) already converted in {out}: {', '.join(existing[:8])}"
            + (" ..." if len(existing) > 8 else "")
            + "; pass --force (force=True) to replace them, or choose another folder"
        )
    # A CSV beside the Parquet target would shadow it (the readers open .csv.gz first).
    shadowed = [t for t in chosen for ext in (".csv.gz", ".csv") if (out / f"{t}{ext}").exists()]
    if shadowed:
        raise InputError(
            f"{out} already holds CSV file(s) for {', '.join(shadowed[:8])}; the readers would open those instead "
            "of the Parquet copy. Choose an empty folder"
        )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _run_with_progress(con: Any, sql: str, table: str, total: int, progress: ProgressCallback | None) -> Any:
    """Execute ``sql`` in a worker thread, reporting DuckDB's query progress as bytes of the source file.

    The main thread keeps polling, so Ctrl-C reaches it: the query is interrupted and the caller's
    ``finally`` removes the temporary file.
    """
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            outcome["rows"] = con.execute(sql).fetchall()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    worker = threading.Thread(target=work, name=f"convert-{table}", daemon=True)
    worker.start()
    last = -1
    try:
        # Event.wait, not Thread.join: a join interrupted by Ctrl-C can return early afterwards on
        # CPython 3.11, and the connection would be closed under the running query.
        while not finished.wait(_POLL_SECONDS):
            if progress is None:
                continue
            with contextlib.suppress(Exception):  # progress is best effort, never an error
                percent = con.query_progress()
                done = int(total * min(max(percent, 0.0), 100.0) / 100.0)
                if done > last:
                    last = done
                    progress(table, done, total)
    except BaseException:
        # Ctrl-C (or an error in the progress callback): stop the query, wait until DuckDB has let go
        # of the connection and the file, then let the caller remove the temporary file.
        with contextlib.suppress(Exception):
            con.interrupt()
        while not finished.wait(0.1):
            pass
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["rows"]


def _convert_csv(con: Any, source: MimicIV, tf: TableFile, tmp: Path, progress: ProgressCallback | None) -> int:
    import duckdb

    total = tf.path.stat().st_size
    # Whole-number columns through the readers' test (a fraction is refused, not rounded into another id).
    select = ", ".join(
        f"{_whole_sql(_q(c), kind, str(tf.path), c)} AS {_q(c)}" if kind else _q(c)
        for c, kind in _column_types(tf).items()
    )
    sql = f"COPY (SELECT {select} FROM {_read_csv_sql(tf)}) TO {_sql_string(str(tmp))} (FORMAT parquet)"
    try:
        copied = _run_with_progress(con, sql, tf.table, total, progress)
    except duckdb.Error as exc:
        text = str(exc)
        # The same reading of the engine's error as `run` and `check` give for the same damaged file
        # (a cut or corrupt gzip, a broken row, a bad value), naming this file.
        translated = _translate_read_error(SourceConnection(source, "duckdb", None, {tf.table: tf}, {}), exc)
        if translated is not None:
            raise translated from None
        raise SourceError(f"{tf.path}: could not convert to Parquet: {text.strip()}") from None
    rows_read = int(copied[0][0]) if copied and copied[0] else -1
    written = int(con.execute(f"SELECT count(*) FROM read_parquet({_sql_string(str(tmp))})").fetchone()[0])
    if rows_read != written:
        raise SourceError(
            f"{tf.path}: {rows_read} rows read but {written} rows in the Parquet file written; the conversion "
            "was not kept. Check the free disk space of the output folder and rerun"
        )
    return written


def _copy_parquet(con: Any, tf: TableFile, tmp: Path) -> int:
    if tf.path.is_dir():
        shutil.copytree(tf.path, tmp)
        pattern = str(tmp / "*.parquet")
    else:
        shutil.copy2(tf.path, tmp)
        pattern = str(tmp)
    source_pattern = str(tf.path) if tf.path.is_file() else str(tf.path / "*.parquet")
    rows = int(con.execute(f"SELECT count(*) FROM read_parquet({_sql_string(source_pattern)})").fetchone()[0])
    copied = int(con.execute(f"SELECT count(*) FROM read_parquet({_sql_string(pattern)})").fetchone()[0])
    if rows != copied:
        raise SourceError(f"{tf.path}: {rows} rows in the source but {copied} in the copy; the copy was not kept")
    return copied


def convert_mimic(
    path: str | Path,
    out: str | Path,
    tables: tuple[str, ...] | list[str] | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    duckdb_config: dict[str, Any] | None = None,
) -> ConversionResult:
    """Convert a MIMIC-IV folder (``hosp/``, ``icu/``; csv.gz or csv) to typed Parquet.

    Parameters
    ----------
    path
        The MIMIC-IV release folder (or a synthetic EHR).
    out
        The folder to write: ``out/hosp/<table>.parquet``, ``out/icu/<table>.parquet``.
        Must not be ``path`` itself.
    tables
        Which tables (``"hosp/labevents"``, or ``"labevents"`` when unambiguous); default every
        table found under ``hosp/`` and ``icu/``, dictionaries included.
    force
        Replace tables already in ``out``; without it an existing table is an error and nothing is written.
    progress
        ``progress(table, done_bytes, total_bytes)``, called as each table advances (bytes of the
        source file; an estimate while it runs, exact at the end).
    duckdb_config
        DuckDB settings for the conversion (e.g. ``{"memory_limit": "2GB", "threads": 2}``).

    Returns
    -------
    ConversionResult
        Per table: rows (verified), sizes, seconds.

    Raises
    ------
    SourceError
        A truncated or corrupt gzip file, or a value that does not parse (file, column, line named),
        or a row-count mismatch. Tables finished before the error are kept; the failing one is not.
    InputError
        An unknown table name, an existing target without ``force``, or ``out`` equal to ``path``.
    """
    import duckdb

    source = MimicIV(path)
    out = Path(out)
    chosen = _select_tables(table_names(source.path), tables, source.path)
    if not chosen:
        raise InputError("no table chosen to convert; name at least one table, or none to convert every table")
    _check_targets(source.path, out, chosen, force)
    found = available_tables(source.path, chosen)  # reads the header lines of the chosen tables only

    con = duckdb.connect()
    done: list[ConvertedTable] = []
    notes: list[str] = []
    try:
        # Insertion order is irrelevant to the readers; dropping it lets COPY stream with bounded memory.
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        for key, value in (duckdb_config or {}).items():
            con.execute(f"SET {key} = {_sql_string(value) if isinstance(value, str) else value}")
        for name in chosen:
            tf = found[name]
            target = _target(out, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Leftovers of a killed run of the same table; never matched by a reader, but they take space.
            for stale in target.parent.glob(f".{target.name}.partial-*"):
                _remove(stale)
            tmp = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            total = _size(tf.path)
            if progress is not None:
                progress(name, 0, total)
            try:
                if tf.format == "csv":
                    rows = _convert_csv(con, source, tf, tmp, progress)
                    action = "converted"
                else:
                    rows = _copy_parquet(con, tf, tmp)
                    action = "copied"
                if target.is_dir() or tmp.is_dir():  # a folder of parts: no atomic replace exists
                    _remove(target)
                    tmp.rename(target)
                else:  # atomic: a reader sees the old table or the new one, never neither
                    tmp.replace(target)
            finally:
                _remove(tmp)
            if progress is not None:
                progress(name, total, total)
            done.append(
                ConvertedTable(name, tf.path, target, action, rows, total, _size(target), time.perf_counter() - started)
            )
    finally:
        with contextlib.suppress(Exception):  # never hide the error that brought us here
            con.close()
    marker = source.path / "SYNTHETIC.json"
    if marker.is_file():
        # The synthetic EHR's planted truth travels with its data, so the report still says SYNTHETIC.
        shutil.copy2(marker, out / "SYNTHETIC.json")
        notes.append("SYNTHETIC.json copied: the folder is a synthetic EHR")
    return ConversionResult(out, tuple(done), tuple(notes))


__all__ = ["ConversionResult", "ConvertedTable", "ProgressCallback", "available_tables", "convert_mimic", "table_names"]
