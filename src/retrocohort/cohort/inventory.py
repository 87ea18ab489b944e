"""What a study needs from a data folder and what the folder holds: ``retrocohort check DATA --study STUDY.toml``.

For each concept a study uses (its own ``[concepts.*]`` and the built-ins it
names), :func:`study_inventory` lists the tables and columns the concept
reads, which of them the folder has, and how many event rows (and patients)
the concept finds in the whole folder: one lazy DuckDB count per concept, the
concept's selectors pushed into the scan, nothing loaded into pandas.

It never raises for a missing piece (reporting those is its purpose): a
concept whose table or column is absent, or whose file has a value that does
not parse, gets a status and a message naming the table and the column, and
the others are still counted. A new user runs it before the first ``run`` to
see, for instance, that an itemid they typed finds no rows.

Baseline built-ins (age, SOFA, Charlson...) are one value per patient at the
index; they are not counted here (there is no index before the cohort is
built), only their tables are checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import RetrocohortError, SourceError
from ..sources.mimic_iv import (
    _EXTENSIONS,
    CONCEPT_SCHEMA,
    SCHEMA,
    MimicIV,
    _connect_duckdb,
)
from ..spec.catalogue import BUILTIN_CONCEPTS
from ..spec.study import Study

#: Status of a concept in the inventory.
STATUSES: tuple[str, ...] = ("found", "no rows", "table absent", "column absent", "unreadable", "not counted")

# The columns each selector of a user concept reads, by table (see concepts.tables.TABLE_MAPS).
_SELECTOR_FIELDS: tuple[tuple[str, str], ...] = (
    ("itemids", "itemid"),
    ("exclude_itemids", "itemid"),
    ("units", "unit"),
    ("values", "text"),
    ("status_exclude", "status"),
    ("routes", "route"),
    ("names", "name"),
    ("organisms", "organism"),
    ("drugs", "drug"),
)


@dataclass(frozen=True)
class ConceptNeeds:
    """The tables and columns one concept reads (columns as ``"table.column"``)."""

    tables: tuple[str, ...]
    columns: tuple[str, ...]
    # Tables read when present (emar_detail for an emar concept without a route selector).
    optional_tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudyInventory:
    """What a study needs from a folder and what the folder holds.

    Attributes
    ----------
    path
        The data folder.
    concepts
        One row per concept, in the order the study first names it: ``concept``, ``kind``
        (user / events / baseline), ``label``, ``tables``, ``missing_tables``, ``missing_columns``,
        ``rows`` and ``patients`` (event rows and distinct patients found; None when not counted),
        ``status`` (one of :data:`STATUSES`), ``message``.
    tables
        One row per table the study reads: ``table``, ``file`` ("" when absent), ``format``,
        ``present``, ``missing_columns``, ``used_by`` (concept names).
    notes
        Caveats in words (e.g. tables the cohort builder requires although no concept names them).
    """

    path: Path
    concepts: pd.DataFrame
    tables: pd.DataFrame
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per concept that cannot run or finds nothing, naming the concept, table and column."""
        out = []
        for _, row in self.concepts.iterrows():
            if row["status"] in ("found", "not counted"):
                continue
            out.append(f"concept {row['concept']!r}: {row['message']}")
        return tuple(out)

    @property
    def ok(self) -> bool:
        """True when every concept's tables and columns are present and every counted concept found rows."""
        return not self.problems


def concept_needs(study: Study, name: str) -> ConceptNeeds:
    """Tables and columns that concept ``name`` of ``study`` reads.

    A user concept reads its table's keys and times plus the column each of its
    selectors filters on; a built-in reads the tables listed in its catalogue
    entry (their required columns).
    """
    from ..concepts.tables import TABLE_MAPS

    spec = study.concepts.get(name)
    if spec is None:
        info = BUILTIN_CONCEPTS[name]
        # tables the built-in reads only when present (CRRT-mode charting for krt) are not needed
        builtin_tables = [t for t in info.tables if t not in info.optional_tables]
        builtin_columns = [
            f"{t}.{c}" for t in builtin_tables for c, col in CONCEPT_SCHEMA[t].columns.items() if not col.optional
        ]
        return ConceptNeeds(tuple(builtin_tables), tuple(builtin_columns), tuple(info.optional_tables))
    table = spec.table
    m = TABLE_MAPS[table]
    required = [c for c, col in CONCEPT_SCHEMA[table].columns.items() if not col.optional]
    selected = []
    for selector, attr in _SELECTOR_FIELDS:
        column = getattr(m, attr)
        if getattr(spec, selector) and column is not None:
            selected.append(column)
    if (spec.value_min is not None or spec.value_max is not None) and m.value is not None:
        selected.append(m.value)
    tables = [table]
    optional_tables: list[str] = []
    if table == "hosp/diagnoses_icd":  # dated by its admission
        tables.append("hosp/admissions")
        required_adm = ["hadm_id", "admittime", "dischtime"]
        columns = [f"{table}.{c}" for c in dict.fromkeys(required + selected)] + [
            f"hosp/admissions.{c}" for c in required_adm
        ]
        return ConceptNeeds(tuple(tables), tuple(columns))
    if table == "hosp/emar":
        # route, dose and unit come from emar_detail: needed for a route selector, used when present.
        detail = [c for c in selected if c in ("route", "dose_given", "dose_given_unit")]
        selected = [c for c in selected if c not in detail]
        if spec.routes:
            tables.append("hosp/emar_detail")
        else:
            optional_tables.append("hosp/emar_detail")
        columns = [f"{table}.{c}" for c in dict.fromkeys(required + selected)]
        columns += [f"hosp/emar_detail.{c}" for c in ("emar_id", *(("route",) if spec.routes else ()))]
        return ConceptNeeds(tuple(tables), tuple(columns), tuple(optional_tables))
    columns = [f"{table}.{c}" for c in dict.fromkeys(required + selected)]
    return ConceptNeeds(tuple(tables), tuple(columns))


def used_concepts(study: Study) -> tuple[str, ...]:
    """Every concept the study defines or names, in the order first written (user concepts first)."""
    names: list[str] = list(study.concepts)
    names += list(study.index.concept)
    for crit in study.criteria:
        names += list(crit.concept)
    names += list(study.exposure.concept) + list(study.comparator.concept)
    for cov in study.covariates.values():
        names += list(cov.concept)
    for out in study.outcomes.values():
        names += list(out.concept)
        if out.kind == "death" or out.competing == "death":
            names.append("death")
    # Only names the study knows (validated studies have no others).
    return tuple(n for n in dict.fromkeys(names) if n in study.concepts or n in BUILTIN_CONCEPTS)


def study_concepts(study: Study) -> tuple[str, ...]:
    """The concepts a build of ``study`` reads: those its rules name, and death when it has outcomes.

    A ``[concepts.NAME]`` the study defines but never names is not read (unlike :func:`used_concepts`).
    """
    names: list[str] = list(study.index.concept)
    for crit in study.criteria:
        names += list(crit.concept)
    names += list(study.exposure.concept) + list(study.comparator.concept)
    for cov in study.covariates.values():
        names += list(cov.concept)
    for out in study.outcomes.values():
        names += list(out.concept)
    if study.outcomes:  # every outcome needs the death time (the event, a competing event, or censoring)
        names.append("death")
    return tuple(n for n in dict.fromkeys(names) if n in study.concepts or n in BUILTIN_CONCEPTS)


def table_needs(study: Study, optional: bool = False) -> dict[str, tuple[str, ...]]:
    """Table -> the concepts of ``study`` that read it (:func:`study_concepts`), in the order first named.

    Parameters
    ----------
    study
        A validated study.
    optional
        Also list the tables a concept reads only when present (krt's CRRT-mode charting); False: only
        the tables without which a concept cannot run (what :meth:`MimicIV.validate` demands).
    """
    out: dict[str, list[str]] = {}
    for name in study_concepts(study):
        need = concept_needs(study, name)
        for table in (*need.tables, *(need.optional_tables if optional else ())):
            out.setdefault(table, [])
            if name not in out[table]:
                out[table].append(name)
    return {table: tuple(names) for table, names in out.items()}


def _headers(source: MimicIV, tables: list[str]) -> dict[str, tuple[str, str, set[str]] | None]:
    """table -> (file, format, lower-case column names), or None when absent / unreadable header."""
    found: dict[str, tuple[str, str, set[str]] | None] = {}
    for table in tables:
        try:
            tf = source.locate(table)
        except SourceError:
            tf = None
        found[table] = None if tf is None else (str(tf.path), tf.format, {c.lower() for c in tf.header})
    return found


def _column_absent(headers: dict[str, tuple[str, str, set[str]] | None], qualified: str) -> bool:
    """Whether ``"table.column"`` is missing from a table that is present (an absent table is said apart)."""
    table, column = qualified.split(".", 1)
    header = headers[table]
    return header is not None and column not in header[2]


def study_inventory(
    study: Study,
    path: str | Path,
    *,
    count: bool = True,
    duckdb_config: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> StudyInventory:
    """Which of a study's concepts and tables a data folder holds, and how many rows each concept finds.

    Parameters
    ----------
    study
        A validated study (:func:`retrocohort.spec.load_study_file`).
    path
        A MIMIC-IV folder (csv.gz, csv or Parquet; see :func:`retrocohort.sources.convert.convert_mimic`).
    count
        Count each concept's event rows and patients (one DuckDB query per concept); False only
        checks the tables and columns (reads the header lines, instantly).
    duckdb_config
        DuckDB settings for the counts (e.g. ``{"memory_limit": "2GB", "threads": 2}``).
    progress
        ``progress(concept, done, total)`` after each concept is counted.

    Returns
    -------
    StudyInventory

    Raises
    ------
    SourceError
        Only when ``path`` is not a folder.
    """
    from ..concepts import concept_events

    source = MimicIV(path)
    names = used_concepts(study)
    needs = {name: concept_needs(study, name) for name in names}
    all_tables = list(dict.fromkeys(t for n in needs.values() for t in (*n.tables, *n.optional_tables)))
    # Every study reads the ICU stays, admissions and patients (the index is placed in an ICU stay of an
    # admission; death comes from admissions and patients), whichever concepts it names: check those too.
    builder_tables = [name for name, spec in SCHEMA.items() if spec.required]
    headers = _headers(source, list(dict.fromkeys(all_tables + builder_tables)))

    rows: list[dict[str, Any]] = []
    for name in names:
        need = needs[name]
        kind = study.concept_kind(name) or "?"
        missing_tables = tuple(t for t in need.tables if headers[t] is None)
        missing_columns = tuple(c for c in need.columns if _column_absent(headers, c))
        if missing_tables:
            status = "table absent"
            tried = ", ".join(f"{t}{{{','.join(_EXTENSIONS)}}}" for t in missing_tables)
            message = f"reads {', '.join(missing_tables)}, absent from {source.path} (looked for {tried})"
        elif missing_columns:
            status = "column absent"
            message = f"reads column(s) {', '.join(missing_columns)}, absent from the file(s) in {source.path}"
        elif kind == "baseline" or not count:
            status, message = (
                "not counted",
                (
                    "a value per patient at the index (counted when the cohort is built)"
                    if kind == "baseline"
                    else "counting skipped"
                ),
            )
        else:
            status, message = "", ""
        rows.append(
            {
                "concept": name,
                "kind": kind,
                "label": study.concept_label(name),
                "tables": ", ".join(need.tables),
                "missing_tables": ", ".join(missing_tables),
                "missing_columns": ", ".join(missing_columns),
                "rows": None,
                "patients": None,
                "status": status,
                "message": message,
            }
        )

    to_count = [r for r in rows if r["status"] == ""]
    if to_count:
        conn = _connect_duckdb(source, {}, duckdb_config or {})
        try:
            for done, row in enumerate(to_count, start=1):
                name = row["concept"]
                try:
                    with conn.errors():
                        events = concept_events(conn, study.resolve(name))
                        counted = (
                            events.aggregate(rows=events.count(), patients=events.subject_id.nunique())
                            .to_pyarrow()
                            .to_pylist()[0]
                        )
                    row["rows"], row["patients"] = int(counted["rows"] or 0), int(counted["patients"] or 0)
                    if row["rows"]:
                        row["status"], row["message"] = "found", ""
                    else:
                        row["status"] = "no rows"
                        row["message"] = (
                            f"finds no rows in {row['tables']}; check its selectors (itemids in icu/d_items or "
                            "hosp/d_labitems, codes, drug names) against the data"
                        )
                except RetrocohortError as exc:
                    row["status"], row["message"] = "unreadable", str(exc)
                # An engine error we cannot translate: say it, and keep counting the other concepts.
                except Exception as exc:
                    text = str(exc).strip()
                    hint = (
                        "; the gzip file is truncated or corrupt: download it again (check it with `gzip -t`)"
                        if "gzip" in text.lower()
                        else ""
                    )
                    row["status"], row["message"] = "unreadable", f"{text[:300]}{hint}"
                if progress is not None:
                    progress(name, done, len(to_count))
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    used_by: dict[str, list[str]] = {t: [] for t in headers}
    for name, need in needs.items():
        for t in (*need.tables, *need.optional_tables):
            used_by[t].append(name)
    table_rows = []
    for table, header in headers.items():
        cols = [c.split(".", 1)[1] for n in needs.values() for c in n.columns if c.split(".", 1)[0] == table]
        if table in builder_tables:
            cols += [c for c, col in SCHEMA[table].columns.items() if not col.optional]
        cols = list(dict.fromkeys(cols))
        table_rows.append(
            {
                "table": table,
                "file": header[0] if header else "",
                "format": header[1] if header else "",
                "present": header is not None,
                "missing_columns": ", ".join(c for c in cols if header is not None and c not in header[2]),
                "used_by": ", ".join(used_by[table]) or "(cohort builder)",
            }
        )
    notes = []
    builder_only = [t for t in builder_tables if not used_by.get(t) and headers[t] is None]
    if builder_only:
        notes.append(
            f"every study reads {', '.join(builder_only)} (the index is placed in an ICU stay of an admission) "
            "although no concept of the study names them; copy them into the folder before `run`"
        )
    concepts = pd.DataFrame(
        rows,
        columns=[
            "concept",
            "kind",
            "label",
            "tables",
            "missing_tables",
            "missing_columns",
            "rows",
            "patients",
            "status",
            "message",
        ],
    )
    # Counts are whole numbers with gaps (not counted): nullable integers, not floats with NaN.
    concepts = concepts.astype({"rows": "Int64", "patients": "Int64"})
    return StudyInventory(
        source.path,
        concepts,
        pd.DataFrame(table_rows, columns=["table", "file", "format", "present", "missing_columns", "used_by"]),
        tuple(notes),
    )


__all__ = [
    "STATUSES",
    "ConceptNeeds",
    "StudyInventory",
    "concept_needs",
    "study_concepts",
    "study_inventory",
    "table_needs",
    "used_concepts",
]
