"""One scan per table: every row a study's concepts read from a table, read once and cached.

A study names user concepts and built-ins; several of them read the same table
(the flagship reads procedureevents for CRRT, intermittent dialysis, ventilation,
SOFA and KDIGO; labevents for serum magnesium, the baseline creatinine, SOFA and
KDIGO). Each would scan the file again. Instead, the builder asks
:func:`table_requests` for the rows each concept needs from each table (a row
predicate: ``itemid IN (...)``, codes, drug names; ``None`` = every row), and
:func:`read_once` reads each table once with the OR of those predicates (pushed
into the engine's scan), optionally restricted to the indexed patients,
materialises the narrow result (a DuckDB temp table, a cached Spark frame) and
*pins* it on the connection: from then on ``conn.concept_table(name)`` returns
the narrow copy, so every concept (user or built-in) filters its own slice of it
with its own, unchanged, code.

The narrow copy holds every row any reader needs, with the same columns, after
the same data checks (drop rules, exact duplicates): each reader's own filter
then selects exactly the rows it would have found in the full table. The data checks are counted in
that same read, on the rows read (:func:`~retrocohort.sources.quality.scan_checked`): a study reads
each file once, checks included. Built-ins
declare what they read in :data:`BUILTIN_READS` (a test checks every built-in
gives the same answer through its declared reads as from the full tables).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir

from ..errors import SourceError
from ..sources.quality import TABLE_RULES, checked_table, scan_checked
from ..spec.concept import ConceptSpec
from . import builtins as b
from .tables import selection

#: A row predicate on a table's concept view; None = every row of the table.
RowPredicate = Callable[[ir.Table], ir.BooleanValue] | None
#: table -> the predicates of the rows read from it (one per reader).
Requests = dict[str, list[RowPredicate]]


def _itemids(*ids: int) -> Callable[[ir.Table], ir.BooleanValue]:
    wanted = sorted(set(ids))
    return lambda t: t.itemid.isin(wanted)


def _antibiotic_rows(t: ir.Table) -> ir.BooleanValue:
    drug = t.drug.lower()
    return ibis.or_(*[drug.contains(n) for n in b.ANTIBIOTIC_NAMES])


def _sepsis_codes(t: ir.Table) -> ir.BooleanValue:
    # A superset of icd_match (any version), as one regular expression: icd_match's 13 prefix tests each
    # trim, upper-case and strip dots again, which costs seconds on diagnoses_icd (EXPLAIN ANALYZE).
    prefixes = "|".join(re.escape(p) for p in sorted({*b.SEPSIS_ICD9, *b.SEPSIS_ICD10}))
    return t.icd_code.upper().replace(".", "").re_search(rf"^\s*({prefixes})")


_KRT_PROCEDURES = _itemids(*b.CRRT_ITEMIDS, *b.INTERMITTENT_KRT_ITEMIDS)
_CRRT_MODE = _itemids(b.CRRT_MODE_ITEMID)
_SOFA_LABS = _itemids(b.PLATELETS_ITEMID, b.BILIRUBIN_ITEMID, b.PAO2_ITEMID, b.FIO2_ITEMID, b.CREATININE_ITEMID)
_SOFA_INFUSIONS = _itemids(b.NOREPINEPHRINE, b.EPINEPHRINE, b.DOPAMINE, b.DOBUTAMINE)

#: Built-in -> (table -> row predicate) of every table it reads, its own and those of the built-ins it
#: uses. A built-in reading a table only when present (chartevents for CRRT-mode charting) lists it too:
#: absent tables are skipped. Keep in step with builtins.py: tests/concepts/test_scan.py checks each entry.
BUILTIN_READS: dict[str, dict[str, RowPredicate]] = {
    "krt": {"icu/procedureevents": _KRT_PROCEDURES, "icu/chartevents": _CRRT_MODE},
    "crrt": {"icu/procedureevents": _itemids(*b.CRRT_ITEMIDS), "icu/chartevents": _CRRT_MODE},
    "intermittent_krt": {"icu/procedureevents": _itemids(*b.INTERMITTENT_KRT_ITEMIDS)},
    "invasive_ventilation": {"icu/procedureevents": _itemids(*b.VENTILATION_ITEMIDS)},
    "vasopressors": {"icu/inputevents": _itemids(*b.VASOPRESSOR_ITEMIDS)},
    "lactate": {"hosp/labevents": _itemids(b.LACTATE_ITEMID)},
    "mean_arterial_pressure": {"icu/chartevents": _itemids(*b.MAP_ITEMIDS)},
    "weight": {"icu/chartevents": _itemids(*b.WEIGHT_ITEMIDS)},
    "creatinine": {"hosp/labevents": _itemids(b.CREATININE_ITEMID)},
    "serum_magnesium": {"hosp/labevents": _itemids(b.MAGNESIUM_ITEMID)},
    "urine_output": {"icu/outputevents": _itemids(*b.URINE_ITEMIDS, b.GU_IRRIGANT_IN)},
    "death": {"hosp/admissions": None, "hosp/patients": None},
    "antibiotics": {"hosp/prescriptions": _antibiotic_rows},
    "cultures": {"hosp/microbiologyevents": None},
    "suspected_infection": {"hosp/prescriptions": _antibiotic_rows, "hosp/microbiologyevents": None},
    "age": {"hosp/admissions": None, "hosp/patients": None},
    "sex": {"hosp/patients": None},
    "sepsis": {"hosp/diagnoses_icd": _sepsis_codes},
    "charlson": {"hosp/admissions": None, "hosp/diagnoses_icd": None},
    "icu_admission": {"icu/icustays": None},
}
_SOFA: dict[str, RowPredicate] = {
    "hosp/labevents": _SOFA_LABS,
    "icu/inputevents": _SOFA_INFUSIONS,
    "icu/procedureevents": lambda t: _KRT_PROCEDURES(t) | t.itemid.isin(list(b.VENTILATION_ITEMIDS)),
    "icu/chartevents": _CRRT_MODE,
}
for _part in ("sofa", "sofa_respiratory", "sofa_cardiovascular", "sofa_renal", "sofa_coagulation", "sofa_liver"):
    BUILTIN_READS[_part] = _SOFA
_CREATININE_BASELINE: dict[str, RowPredicate] = {
    "hosp/admissions": None,
    "hosp/patients": None,
    "hosp/labevents": _itemids(b.CREATININE_ITEMID),
}
BUILTIN_READS["creatinine_baseline"] = _CREATININE_BASELINE
BUILTIN_READS["egfr_baseline"] = _CREATININE_BASELINE


def _merge(*parts: dict[str, RowPredicate]) -> dict[str, list[RowPredicate]]:
    out: dict[str, list[RowPredicate]] = {}
    for part in parts:
        for table, predicate in part.items():
            out.setdefault(table, []).append(predicate)
    return out


def _any_of(predicates: list[RowPredicate]) -> RowPredicate:
    """The OR of several readers' predicates (None if any reads every row)."""
    if any(p is None for p in predicates):
        return None
    kept = [p for p in predicates if p is not None]
    return lambda t: ibis.or_(*[p(t) for p in kept])


def _combine(*parts: dict[str, RowPredicate]) -> dict[str, RowPredicate]:
    return {table: _any_of(predicates) for table, predicates in _merge(*parts).items()}


BUILTIN_READS["sepsis3"] = _combine(BUILTIN_READS["suspected_infection"], _SOFA)
BUILTIN_READS["septic_shock"] = _combine(
    BUILTIN_READS["sepsis3"], BUILTIN_READS["vasopressors"], BUILTIN_READS["lactate"]
)
BUILTIN_READS["kdigo_stage"] = _combine(
    _CREATININE_BASELINE,
    BUILTIN_READS["krt"],
    BUILTIN_READS["weight"],
    BUILTIN_READS["urine_output"],
    {"icu/icustays": None},
)


def concept_reads(concept: ConceptSpec | str) -> dict[str, RowPredicate]:
    """Table -> row predicate of the rows one concept reads (a user concept, or a built-in by name).

    An unknown built-in reads nothing here: reading it later raises the error that names it.
    """
    if isinstance(concept, str):
        return dict(BUILTIN_READS.get(concept, {}))
    if concept.table == "hosp/emar":
        # The selectors act on emar joined with its emar_detail summary (route, dose): read both whole.
        return {"hosp/emar": None, "hosp/emar_detail": None}

    def rows(t: ir.Table) -> ir.BooleanValue:
        preds, _ = selection(t, concept)
        return ibis.and_(*preds) if preds else ibis.literal(True)

    out: dict[str, RowPredicate] = {concept.table: rows}
    if concept.table == "hosp/diagnoses_icd":
        out["hosp/admissions"] = None  # codes are dated by their admission
    return out


def table_requests(concepts: dict[str, ConceptSpec | str]) -> dict[str, dict[str, RowPredicate]]:
    """Table -> (concept name -> row predicate) for every table the named concepts read."""
    out: dict[str, dict[str, RowPredicate]] = {}
    for name, concept in concepts.items():
        for table, predicate in concept_reads(concept).items():
            out.setdefault(table, {})[name] = predicate
    return out


@dataclass(frozen=True)
class TableScans:
    """The narrow copies :func:`read_once` pinned on a connection; ``release`` unpins and drops them.

    ``checks``: table -> the data-check lines counted on the rows read from it (rows of
    :data:`retrocohort.sources.quality.COLUMNS`), for each table the checks cover.
    """

    conn: Any
    tables: dict[str, ir.Table]
    checks: dict[str, tuple[tuple[Any, ...], ...]] = field(default_factory=dict)
    caches: tuple[Any, ...] = ()

    def release(self) -> None:
        """Unpin the copies (``conn.concept_table`` reads the files again) and drop the caches."""
        for name in self.tables:
            self.conn.unpin(name)
        for cache in self.caches:
            with contextlib.suppress(Exception):  # a failed query may have left nothing to drop
                cache.release()


def _scope(predicate: RowPredicate, subjects: ir.Table | None) -> str:
    """Which rows of a table a study reads, in words (the ``<table>_rows_read`` line of the data checks)."""
    rows = "every row of the table" if predicate is None else "the rows its concepts select"
    return f"rows this study reads: {rows}" + (", of the indexed patients" if subjects is not None else "")


def read_once(
    conn: Any,
    requests: dict[str, dict[str, RowPredicate]],
    subjects: ir.Table | None = None,
    labels: Callable[[str], str] | None = None,
) -> TableScans:
    """Read each requested table once (the OR of its readers' predicates), check it, cache it and pin it on ``conn``.

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.mimic_iv.SourceConnection` (DuckDB or Spark).
    requests
        Table -> (reader name -> row predicate or None), as :func:`table_requests` returns.
        Tables the folder does not hold are skipped (the reader that needs one raises its own error).
    subjects
        A table with ``subject_id`` (the indexed patients): only their rows are kept. None keeps all.
    labels
        Reader name -> how to name it in an error (default: the name quoted).

    Returns
    -------
    TableScans
        The pinned copies and the data checks counted on them; call ``.release()`` when the study is built.

    Raises
    ------
    SourceError
        A requested table lacks a required column: the message names the concepts that read it.
    InputError
        A key of :data:`retrocohort.sources.quality.TABLE_RULES` (patients, admissions, ICU stays) occurs on
        several differing rows among the rows read.

    Notes
    -----
    The data checks of :mod:`~retrocohort.sources.quality` are counted in the same read
    (:func:`~retrocohort.sources.quality.scan_checked`): among the rows the study reads, not table-wide.
    A row without a ``subject_id`` is kept by the patient restriction of a checked table, so that the
    rule that drops it counts it (it belongs to no patient, but the user sees it was there).
    """
    label = labels or repr
    pinned: dict[str, ir.Table] = {}
    checks: dict[str, tuple[tuple[Any, ...], ...]] = {}
    caches: list[Any] = []
    verifying = _verify_archives(conn, [t for t in requests if not conn.pinned(t)])
    try:
        for table, readers in requests.items():
            # Pinned already (by an earlier phase): its copy holds this phase's rows too.
            if table in pinned or conn.pinned(table) or not conn.concept_has_table(table):
                continue
            predicate = _any_of(list(readers.values()))
            counted = table in TABLE_RULES

            def narrowed(raw: ir.Table, predicate: RowPredicate = predicate, counted: bool = counted) -> ir.Table:
                out = raw.filter(predicate(raw)) if predicate is not None else raw
                if subjects is None:
                    return out
                ids = subjects.select(scan_subject="subject_id").distinct()
                if not counted:
                    return out.semi_join(ids, out.subject_id == ids.scan_subject)
                # Distinct ids: the left join adds no row; it keeps the rows without a subject_id (the
                # null-key rule drops and counts them) in the same single read of the file.
                joined = out.left_join(ids, out.subject_id == ids.scan_subject)
                kept = joined.filter(joined.scan_subject.notnull() | joined.subject_id.isnull())
                return kept.select(*out.columns)

            try:
                # The rows are narrowed before the data checks (drop rules, exact duplicates): both act row
                # by row, so the result is the checked table narrowed, and deduplication hashes fewer rows.
                raw = conn.raw_concept_table(table, narrowed)
            except SourceError as exc:
                raise SourceError(f"concept {', '.join(label(n) for n in sorted(readers))}: {exc}") from None
            if counted:
                scanned = scan_checked(table, raw, _scope(predicate, subjects), conn.file_label(table))
                caches.append(scanned.cache)
                checks[table] = scanned.checks
                copy = scanned.rows
            else:
                copy = checked_table(table, raw).cache()
                caches.append(copy)
            pinned[table] = copy
            conn.pin(table, copy)
        for verified in verifying:
            verified.result()  # the SourceError `retrocohort check` gives for the same file
    except BaseException:
        for pending in verifying:
            pending.cancel()
        TableScans(conn, pinned, checks, tuple(caches)).release()
        raise
    return TableScans(conn, pinned, checks, tuple(caches))


# csv.gz files whose gzip trailer (CRC-32 and length) was verified: (path, size, mtime) -> True.
_VERIFIED: dict[tuple[str, int, int], bool] = {}
_VERIFIER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrocohort-gzip-crc")


def _verify_archives(conn: Any, tables: list[str]) -> list[Future[Any]]:
    """Verify the gzip trailer of each table's csv.gz in a background thread, while the engine reads it.

    The engines decompress a csv.gz without checking its CRC-32 and length, so a file whose stream is intact
    but whose content differs from what was written (a flipped bit in a stored byte decodes silently) was read
    by a study; only ``retrocohort check`` (:func:`~retrocohort.sources.mimic_iv.read_through`) found it. zlib
    releases the GIL, so the check runs beside the engine's read (on another core) rather than after it; a file
    verified once (same size and modification time) is not verified again in the process.
    """
    from ..sources.mimic_iv import read_through

    futures = []
    for table in tables:
        try:
            path = Path(conn.file_label(table))
            if not path.name.endswith(".gz") or not path.is_file():
                continue
            stat = path.stat()
        except (OSError, SourceError):  # an absent or unreadable file is reported by the read itself
            continue
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key in _VERIFIED:
            continue

        def verify(path: Path = path, key: tuple[str, int, int] = key) -> None:
            read_through(path)
            _VERIFIED[key] = True

        futures.append(_VERIFIER.submit(verify))
    return futures


__all__ = ["BUILTIN_READS", "RowPredicate", "TableScans", "concept_reads", "read_once", "table_requests"]
