"""Data-quality checks of the raw MIMIC-IV tables, stated as data and applied lazily on either engine.

Every check is one :class:`Check` entry of :data:`CHECKS`: the table, the rule
in words (for ``docs/data-checks.md`` and the report), the ibis predicate that
marks a row breaking it, and what is done with such a row:

``drop``
    The row is removed from the table the cohort reads.
``exclude``
    The row stays, but its patient leaves the cohort at the screening step
    ``data_checks`` (an impossible age or a death before an admission cannot
    be repaired by dropping one row: the patient's timeline is in doubt).

Two more kinds of check are per table rather than per row (:data:`TABLE_RULES`):

* exact duplicates (rows equal in every column the study reads) are dropped,
  so a repeated inputevents row no longer doubles a dose;
* a key (``patients.subject_id``, ``admissions.hadm_id``, ``icustays.stay_id``)
  that still occurs on more than one row after that is an error: which of two
  conflicting patient rows is true cannot be decided, and choosing either would
  make the cohort depend on the order the engine reads the file.

:func:`checked_table` wraps a raw view in the drop rules and the deduplication
(lazily: the engine still streams the files and pushes the cohort's itemid
filters below the deduplication).

Counting, two ways:

* in a study run, :func:`scan_checked` counts every rule of a table on the rows
  the study reads from it, in the study's single read of the table
  (:func:`retrocohort.concepts.scan.read_once`), and applies them; a
  ``<table>_rows_read`` line says how many rows those were;
* :func:`run_checks`, the whole-data pass (no study), counts every rule over
  every row of every present table, reading each in full.

Both raise :class:`~retrocohort.errors.InputError` for a conflicting key and
give the rows of :data:`COLUMNS`; :func:`exclusion_counts` counts the patients
each ``exclude`` rule removes (on the whole patients and admissions tables).

Both engines compile the same expressions; no row is loaded into pandas.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd

from ..errors import InputError

Action = Literal["drop", "exclude"]

#: A predicate: the table (or the rule's frame) -> True for a row that breaks the rule.
Predicate = Callable[[ir.Table], ir.BooleanValue]
#: Builds the frame a cross-table rule is evaluated on, from a lookup of checked tables.
Frame = Callable[[Callable[[str], ir.Table]], ir.Table]

#: Ages (years) outside [0, MAX_AGE] are impossible; MIMIC-IV caps anchor_age at 91.
MAX_AGE = 120


@dataclass(frozen=True)
class Check:
    """One row-level rule: table, rule in words, predicate, action.

    ``frame``, when given, builds the rows the predicate is evaluated on from
    other (already checked) tables, e.g. admissions joined with the patient's
    ``dod``; it must keep ``subject_id``. Only ``exclude`` rules may have one.
    """

    key: str
    table: str
    rule: str
    action: Action
    predicate: Predicate
    frame: Frame | None = None


def _null(*columns: str) -> Predicate:
    return lambda t: ibis.or_(*[t[c].isnull() for c in columns])


# ibis 12 compiles isinf() to FALSE on Spark; |x| above the largest double is infinity on every engine.
_LARGEST_DOUBLE = ibis.literal(sys.float_info.max, type="float64")


def _infinite_or_nan(value: ir.FloatingValue) -> ir.BooleanValue:
    return value.isnan() | (value.abs() > _LARGEST_DOUBLE)


def _not_finite(column: str) -> Predicate:
    return lambda t: _infinite_or_nan(t[column])


def _ends_before_start(start: str, end: str) -> Predicate:
    return lambda t: t[end] < t[start]


def _admissions_with_patient(lookup: Callable[[str], ir.Table]) -> ir.Table:
    adm = lookup("hosp/admissions").select("subject_id", "admittime")
    pat = lookup("hosp/patients").select("subject_id", "anchor_age", "anchor_year", "dod")
    return adm.join(pat, "subject_id")


def _age_impossible(t: ir.Table) -> ir.BooleanValue:
    age = t.anchor_age + t.admittime.year() - t.anchor_year
    return (age < 0) | (age > MAX_AGE)


#: Every row-level rule, in the order applied (a row breaking two drop rules is counted under the first).
CHECKS: tuple[Check, ...] = (
    Check("patients_null_key", "hosp/patients", "subject_id is empty", "drop", _null("subject_id")),
    Check(
        "patients_age",
        "hosp/patients",
        f"anchor_age below 0 or above {MAX_AGE} years",
        "exclude",
        lambda t: (t.anchor_age < 0) | (t.anchor_age > MAX_AGE),
    ),
    Check(
        "admissions_null_key",
        "hosp/admissions",
        "subject_id or hadm_id is empty",
        "drop",
        _null("subject_id", "hadm_id"),
    ),
    Check(
        "admissions_age",
        "hosp/admissions",
        f"age at an admission (anchor_age + year(admittime) - anchor_year) below 0 or above {MAX_AGE} years",
        "exclude",
        _age_impossible,
        frame=_admissions_with_patient,
    ),
    Check(
        "admissions_death_before_admission",
        "hosp/admissions",
        "deathtime before admittime",
        "exclude",
        _ends_before_start("admittime", "deathtime"),
    ),
    Check(
        "patients_dod_before_admission",
        "hosp/patients",
        "dod (date of death) before the date of an admittime",
        "exclude",
        lambda t: t.dod < t.admittime.date(),
        frame=_admissions_with_patient,
    ),
    Check(
        "icustays_null_key", "icu/icustays", "subject_id or stay_id is empty", "drop", _null("subject_id", "stay_id")
    ),
    Check(
        "labevents_null_key",
        "hosp/labevents",
        "subject_id, itemid or charttime is empty",
        "drop",
        _null("subject_id", "itemid", "charttime"),
    ),
    Check(
        "labevents_valuenum_not_finite",
        "hosp/labevents",
        "valuenum is infinite or NaN",
        "drop",
        _not_finite("valuenum"),
    ),
    Check(
        "diagnoses_icd_null_key",
        "hosp/diagnoses_icd",
        "subject_id, hadm_id, icd_code or icd_version is empty",
        "drop",
        _null("subject_id", "hadm_id", "icd_code", "icd_version"),
    ),
    Check(
        "procedureevents_null_key",
        "icu/procedureevents",
        "subject_id, itemid or starttime is empty",
        "drop",
        _null("subject_id", "itemid", "starttime"),
    ),
    Check(
        "procedureevents_end_before_start",
        "icu/procedureevents",
        "endtime before starttime",
        "drop",
        _ends_before_start("starttime", "endtime"),
    ),
    Check(
        "inputevents_null_key",
        "icu/inputevents",
        "subject_id, itemid or starttime is empty",
        "drop",
        _null("subject_id", "itemid", "starttime"),
    ),
    Check(
        "inputevents_end_before_start",
        "icu/inputevents",
        "endtime before starttime",
        "drop",
        _ends_before_start("starttime", "endtime"),
    ),
    Check(
        "inputevents_amount",
        "icu/inputevents",
        "amount negative, infinite or NaN",
        "drop",
        lambda t: (t.amount < 0) | _infinite_or_nan(t.amount),
    ),
    Check(
        "inputevents_rate",
        "icu/inputevents",
        "rate negative, infinite or NaN",
        "drop",
        lambda t: (t.rate < 0) | _infinite_or_nan(t.rate),
    ),
    Check(
        "chartevents_null_key",
        "icu/chartevents",
        "subject_id, itemid or charttime is empty",
        "drop",
        _null("subject_id", "itemid", "charttime"),
    ),
)


@dataclass(frozen=True)
class TableRule:
    """Per-table rules: drop exact duplicates (``deduplicate``); ``key`` must then be unique (else an error)."""

    table: str
    deduplicate: bool
    key: tuple[str, ...] = ()
    why_not: str = ""  # why a table is not deduplicated (for the docs)


#: Per-table duplicate and key rules.
TABLE_RULES: dict[str, TableRule] = {
    "hosp/patients": TableRule("hosp/patients", True, ("subject_id",)),
    "hosp/admissions": TableRule("hosp/admissions", True, ("hadm_id",)),
    "icu/icustays": TableRule("icu/icustays", True, ("stay_id",)),
    "hosp/labevents": TableRule("hosp/labevents", True),
    "hosp/diagnoses_icd": TableRule("hosp/diagnoses_icd", True),
    "icu/procedureevents": TableRule("icu/procedureevents", True),
    "icu/inputevents": TableRule("icu/inputevents", True),
    # About 430 million rows, read for one itemid whose earliest/latest charttime is all the study uses:
    # a repeated row changes no result, and hashing the whole table to find it would cost more than reading it.
    "icu/chartevents": TableRule(
        "icu/chartevents",
        False,
        why_not="a repeated CRRT-mode chart row changes no result (only its earliest and latest time are used)",
    ),
}

ACTION_WORDS: dict[str, str] = {
    "read": "rows read and checked",
    "drop": "rows dropped",
    "exclude": "patients excluded",
    "duplicate": "exact duplicate rows dropped",
    "error": "conflicting rows: the run stops",
}

#: The ``<table>_rows_read`` line in words, for the docs (a run says which rows it read: :func:`scan_checked`).
READ_SCOPE_WORDS = "rows read: those the study reads (in a study run), or every row (the whole-data pass)"

#: Columns of :attr:`DataChecks.table`.
COLUMNS: tuple[str, ...] = ("table", "check", "rule", "action", "count", "unit")


def _is(predicate: Predicate, t: ir.Table) -> ir.BooleanValue:
    # A rule on a NULL value is not broken (NULL-key rules test NULL explicitly); without the
    # coalesce, NOT(NULL) would drop every row with a NULL in the tested column.
    return ibis.coalesce(predicate(t), False)


def drop_checks(table: str) -> tuple[Check, ...]:
    """The drop rules of ``table``, in order."""
    return tuple(c for c in CHECKS if c.table == table and c.action == "drop")


def checked_table(table: str, raw: ir.Table) -> ir.Table:
    """``raw`` without the rows the drop rules remove, and without exact duplicates (lazy).

    Parameters
    ----------
    table
        The MIMIC-IV table name (``"icu/inputevents"``).
    raw
        The raw ibis table of the view (the columns of ``SCHEMA``).

    Returns
    -------
    ibis Table with the same columns.
    """
    rules = drop_checks(table)
    out = raw
    if rules:
        out = out.filter(~ibis.or_(*[_is(c.predicate, raw) for c in rules]))
    rule = TABLE_RULES.get(table)
    if rule is not None and rule.deduplicate:
        out = out.distinct()
    return out


@dataclass(frozen=True)
class DataChecks:
    """What the data-quality pass found and did.

    Attributes
    ----------
    table
        One row per check, columns :data:`COLUMNS`: ``table`` (MIMIC-IV
        table), ``check`` (key), ``rule`` (in words), ``action`` (what was
        done), ``count`` (rows or patients affected, exact; suppress before
        writing), ``unit`` (``"rows"`` or ``"patients"``).
    excluded
        Lazy ibis table of the ``subject_id`` values the ``exclude`` rules
        remove from the cohort (distinct), or None when no such rule applies.
    """

    table: pd.DataFrame
    excluded: Any = field(default=None, repr=False)


def excluded_patients(lookup: Callable[[str], ir.Table], present: Callable[[str], bool]) -> ir.Table | None:
    """Distinct ``subject_id`` of every patient an ``exclude`` rule removes (lazy), or None."""
    parts = []
    for check in CHECKS:
        if check.action != "exclude" or not present(check.table):
            continue
        frame = check.frame(lookup) if check.frame is not None else lookup(check.table)
        parts.append(frame.filter(_is(check.predicate, frame)).select("subject_id"))
    if not parts:
        return None
    union = parts[0]
    for part in parts[1:]:
        union = union.union(part, distinct=False)
    return union.filter(union.subject_id.notnull()).distinct()


def _scalar(expr: Any) -> int:
    value = expr.execute()
    return 0 if value is None or pd.isna(value) else int(value)


def _conflicts(table: str, checked: ir.Table, key: tuple[str, ...], where: str) -> None:
    per_key = checked.group_by(list(key)).aggregate(rows=checked.count())
    conflicting = per_key.filter(per_key.rows > 1)
    summary = conflicting.aggregate(keys=conflicting.count(), rows=conflicting.rows.sum()).execute()
    n_keys = int(summary["keys"].iloc[0] or 0)
    if n_keys == 0:
        return
    n_rows = int(summary["rows"].iloc[0] or 0)
    # Sorted: the same examples every run. The console may name keys; no report output does.
    examples = conflicting.order_by(list(key)).limit(5).select(*key).execute()
    shown = ", ".join(str(tuple(r)) if len(key) > 1 else str(r[0]) for r in examples.itertuples(index=False))
    raise InputError(
        f"{where}: {n_keys} {'/'.join(key)} value(s) occur on more than one row with different values "
        f"({n_rows} rows in all; e.g. {'/'.join(key)} {shown}). Each {'/'.join(key)} must identify one row; "
        "exact duplicate rows are dropped automatically, but which of two differing rows is true cannot be "
        "decided. Remove or correct the conflicting rows, then rerun."
    )


def _count_rules(name: str, table: ir.Table, grouped: bool) -> tuple[int, list[tuple[str, str, str, str, int, str]]]:
    """Rows of ``table`` and the drop and duplicate rows of table ``name``, from one aggregate over ``table``.

    ``grouped``: ``table`` is the raw rows grouped by every column with their number in ``copies`` (the hash
    the deduplication needs anyway): each rule, a function of the columns, is then evaluated once per group
    and weighted by the group's size. A row is counted under the first drop rule it breaks.
    """
    rules = drop_checks(name)
    weight = table.copies if grouped else ibis.literal(1)
    hits = [_is(c.predicate, table) for c in rules]
    counts: dict[str, Any] = {"rows": weight.sum() if grouped else table.count()}
    for i, hit in enumerate(hits):
        first = hit if i == 0 else hit & ~ibis.or_(*hits[:i])
        counts[f"n{i}"] = ibis.cases((first, weight), else_=0).sum()
    if grouped:
        kept = ~ibis.or_(*hits) if hits else ibis.literal(True)
        counts["kept_rows"] = ibis.cases((kept, weight), else_=0).sum()
        counts["kept_distinct"] = ibis.cases((kept, 1), else_=0).sum()
    result = table.aggregate(**counts).execute()

    def value(column: str) -> int:
        v = result[column].iloc[0]
        return 0 if pd.isna(v) else int(v)  # an empty table sums to NULL

    rows = [
        (name, check.key, check.rule, ACTION_WORDS["drop"], value(f"n{i}"), "rows") for i, check in enumerate(rules)
    ]
    if grouped:
        rows.append(
            (
                name,
                f"{name.split('/')[1]}_exact_duplicates",
                "row equal to another in every column read",
                ACTION_WORDS["duplicate"],
                value("kept_rows") - value("kept_distinct"),
                "rows",
            )
        )
    return value("rows"), rows


def _key_row(name: str, key: tuple[str, ...]) -> tuple[str, str, str, str, int, str]:
    return (
        name,
        f"{name.split('/')[1]}_key",
        f"{'/'.join(key)} on more than one differing row",
        ACTION_WORDS["error"],
        0,
        "rows",
    )


def exclusion_counts(lookup: Callable[[str], ir.Table], present: Callable[[str], bool]) -> list[tuple[Any, ...]]:
    """One row of :data:`COLUMNS` per ``exclude`` rule: the distinct patients it removes (the tables from ``lookup``).

    ``lookup`` gives the checked patients and admissions whole (the study reads them whole), so each count
    is table-wide whichever way the tables were read.
    """
    rows: list[tuple[Any, ...]] = []
    for check in CHECKS:
        if check.action != "exclude" or not present(check.table):
            continue
        frame = check.frame(lookup) if check.frame is not None else lookup(check.table)
        hit = frame.filter(_is(check.predicate, frame))
        n = _scalar(hit.select("subject_id").distinct().count())
        rows.append((check.table, check.key, check.rule, ACTION_WORDS["exclude"], n, "patients"))
    return rows


def checks_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """The rows of :data:`COLUMNS` as a frame, tables in the order of :data:`TABLE_RULES` (stable within one)."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    order = {name: i for i, name in enumerate(TABLE_RULES)}
    frame = frame.sort_values("table", key=lambda s: s.map(order), kind="mergesort").reset_index(drop=True)
    frame["count"] = frame["count"].astype("int64")
    return frame


@dataclass(frozen=True)
class ScannedTable:
    """One table read once for a study, with its data checks counted on the rows read.

    Attributes
    ----------
    rows
        The checked rows (lazy, over ``cache``): the drop rules and the deduplication applied, as
        :func:`checked_table` of the rows read.
    cache
        The cached copy of the rows read (before the checks; grouped by every column with their number
        in ``copies`` when the table is deduplicated): release it when the study is built.
    checks
        Rows of :data:`COLUMNS`: first the rows read (``<table>_rows_read``), then each drop rule, the exact
        duplicates and the key rule, counted among those rows.
    """

    rows: ir.Table
    cache: Any = field(repr=False)
    checks: tuple[tuple[Any, ...], ...]


def scan_checked(name: str, read: ir.Table, scope: str, where: str) -> ScannedTable:
    """Read ``read`` (the rows of table ``name`` a study reads) once, count the data checks on them, apply them.

    Parameters
    ----------
    name
        A table of :data:`TABLE_RULES` (``"icu/chartevents"``).
    read
        The raw rows the study reads (narrowed by its readers' predicates and patients, lazy).
    scope
        Which rows those are, in words, for the ``<table>_rows_read`` line (e.g. "the rows the study's
        concepts select").
    where
        How to name the table's file in an error.

    Returns
    -------
    ScannedTable

    Raises
    ------
    InputError
        The table's key (:data:`TABLE_RULES`) occurs on several rows that differ.

    Notes
    -----
    One read of the file: the rows read are cached (grouped by every column, as the deduplication hashes
    them anyway, when the table is deduplicated); the counts are one aggregate over the cache, and the checked
    rows a filter of it. A row a drop rule removes is counted here, among the rows the study reads.
    """
    rule = TABLE_RULES[name]
    frame = read.group_by(list(read.columns)).aggregate(copies=read.count()) if rule.deduplicate else read
    cache = frame.cache()
    try:
        n_read, counted = _count_rules(name, cache, rule.deduplicate)
        rules = drop_checks(name)
        rows = cache.filter(~ibis.or_(*[_is(c.predicate, cache) for c in rules])) if rules else cache
        if rule.deduplicate:
            rows = rows.drop("copies")
        if rule.key:
            _conflicts(name, rows, rule.key, where)
            counted.append(_key_row(name, rule.key))
    except BaseException:
        with contextlib.suppress(Exception):  # a failed query may have left nothing to drop
            cache.release()
        raise
    read_row = (name, f"{name.split('/')[1]}_rows_read", scope, ACTION_WORDS["read"], n_read, "rows")
    return ScannedTable(rows, cache, (read_row, *counted))


def run_checks(
    raw: Callable[[str], ir.Table],
    checked: Callable[[str], ir.Table],
    present: Callable[[str], bool],
    where: Callable[[str], str] = lambda name: name,
) -> DataChecks:
    """Count every rule on every row of every present table, stop on a conflicting key, return the counts.

    The whole-data pass (``retrocohort check``-style quality review; no study): a study run counts the
    rules on the rows it reads instead, in the same read (:func:`scan_checked`).

    Parameters
    ----------
    raw
        Table name -> the raw ibis table (before any rule).
    checked
        Table name -> the checked table (:func:`checked_table` of the raw one).
    present
        Whether a table is in the source (absent optional tables are skipped).
    where
        Table name -> how to name it in an error (the file path).

    Returns
    -------
    DataChecks
        With a ``<table>_rows_read`` line per table: every row of it.

    Raises
    ------
    InputError
        A key of :data:`TABLE_RULES` occurs on several rows that differ: the
        message names the file, the key, how many keys and rows, and a few keys.

    Notes
    -----
    Cost: one pass over each table (grouped by every column read, the hash
    the deduplication needs; chartevents, not deduplicated, only scanned),
    and small queries on the patient tables for keys and exclusions.
    """
    rows: list[tuple[Any, ...]] = []
    for name in (name for name in TABLE_RULES if present(name)):
        table = raw(name)
        rule = TABLE_RULES[name]
        grouped = table.group_by(list(table.columns)).aggregate(copies=table.count()) if rule.deduplicate else table
        n_read, counted = _count_rules(name, grouped, rule.deduplicate)
        rows.append(
            (name, f"{name.split('/')[1]}_rows_read", "every row of the table", ACTION_WORDS["read"], n_read, "rows")
        )
        rows += counted
        if rule.key:
            _conflicts(name, checked(name), rule.key, where(name))
            rows.append(_key_row(name, rule.key))
    rows += exclusion_counts(checked, present)
    return DataChecks(checks_frame(rows), excluded_patients(checked, present))


def rules_table() -> pd.DataFrame:
    """Every rule in words (for the docs): ``table``, ``check``, ``rule``, ``action``.

    First, per table, the ``<table>_rows_read`` line: not a rule but the rows the others are counted among
    (in a study run, the rows the study reads; in the whole-data pass, every row).
    """
    rows = [(name, f"{name.split('/')[1]}_rows_read", READ_SCOPE_WORDS, ACTION_WORDS["read"]) for name in TABLE_RULES]
    rows += [(c.table, c.key, c.rule, ACTION_WORDS[c.action]) for c in CHECKS]
    for name, rule in TABLE_RULES.items():
        if rule.deduplicate:
            rows.append(
                (
                    name,
                    f"{name.split('/')[1]}_exact_duplicates",
                    "row equal to another in every column read",
                    ACTION_WORDS["duplicate"],
                )
            )
        if rule.key:
            rows.append(
                (
                    name,
                    f"{name.split('/')[1]}_key",
                    f"{'/'.join(rule.key)} on more than one differing row",
                    ACTION_WORDS["error"],
                )
            )
    return pd.DataFrame(rows, columns=["table", "check", "rule", "action"])


__all__ = [
    "CHECKS",
    "COLUMNS",
    "MAX_AGE",
    "TABLE_RULES",
    "Check",
    "DataChecks",
    "ScannedTable",
    "TableRule",
    "checked_table",
    "checks_frame",
    "drop_checks",
    "excluded_patients",
    "exclusion_counts",
    "rules_table",
    "run_checks",
    "scan_checked",
]
