"""Compile a study written in the study language into the analysis frame and its attrition log.

:func:`build_cohort` takes a validated :class:`~retrocohort.spec.Study` and a
MIMIC-IV source and returns a :class:`BuiltCohort`: one row per eligible
patient (times in days from the index) and one attrition line per rule, in the
order the study file writes them. Everything up to the final per-patient table
is one lazy ibis expression per step, the same on DuckDB and Spark; the events
of each concept are read from their table once, restricted to the patients with
an index event, and cached for every rule that uses them.

The builder knows no clinical concept: the index, criteria, exposure,
covariates and outcomes are all concepts named by the study
(:func:`retrocohort.concepts.concept_events`, :func:`~retrocohort.concepts.baseline_values`).
The rules are stated in ``docs/study-language.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from ..errors import InputError, SourceError
from ..sources.mimic_iv import ENGINES, MimicIV, SourceConnection
from ..spec.study import Criterion, Study, covariate_type
from ..spec.window import Window

SECONDS_PER_DAY = 86_400
ATTRITION_COLUMNS = ["step", "remaining", "excluded", "reason"]


@dataclass(frozen=True)
class BuiltCohort:
    """The analysis cohort of one study on one data source.

    Attributes
    ----------
    data
        One row per eligible patient (per eligible ICU stay with ``select = "first_per_stay"``: a
        patient may then have several rows), sorted by ``subject_id`` (then ``stay_id``): ``subject_id``,
        ``stay_id``, ``hadm_id``, ``index_time``, ``exposed`` (1 = exposure arm,
        0 = comparator arm), ``exposure_start_days`` (days from the index to the first exposure start in
        the exposure window, NaN when none: the target trial's start time), the dose column when ``[dose]`` is
        declared, each
        covariate (and ``<name>_missing`` for ``missing = "indicator"``), then per
        outcome ``<name>_time`` (days from the index) and ``<name>_status``
        (0 censored, 1 the outcome, 2 the competing death).
    attrition
        ``step``, ``remaining``, ``excluded``, ``reason``: one line per rule in
        the order written; ``remaining[i] = remaining[i-1] - excluded[i]``.
    notes
        Data caveats in words (absent optional tables, concepts that found no
        rows, imputations, dose rows with an unknown unit).
    concepts
        Column -> where it came from, in words (for the report's methods).
    engine, source
        ``"duckdb"`` or ``"spark"``; the folder read.
    data_checks
        One row per data-quality rule applied (:mod:`retrocohort.sources.quality`) with its counts;
        patients an ``exclude`` rule removes leave at the ``data_checks`` attrition line.
    study
        The study the cohort was built for (its title, arm labels and small-cell threshold
        serve the printed form; ``None`` for a cohort made by hand).

    The printed form (``repr``, and ``_repr_html_`` in a notebook) shows the study's title, the
    attrition, the arms and the columns, never a row; counts below the study's small-cell
    threshold read as in the study's outputs (``<5``). The exact counts: ``counts``, ``attrition``.
    """

    data: pd.DataFrame
    attrition: pd.DataFrame
    notes: tuple[str, ...]
    concepts: dict[str, str] = field(default_factory=dict)
    engine: str = "duckdb"
    source: str = ""
    data_checks: pd.DataFrame | None = None
    # The study it was built for: its title, arm labels and small-cell threshold for the repr.
    study: Study | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        from .._printing import render_cohort

        return render_cohort(self)

    def _repr_html_(self) -> str:
        from .._printing import render_cohort_html

        return render_cohort_html(self)

    @property
    def counts(self) -> dict[str, int]:
        """Patients with an index event, eligible, exposed and comparator."""
        exposed = int(self.data["exposed"].sum())
        return {
            "indexed": int(self.attrition["remaining"].iloc[0]),
            "eligible": len(self.data),
            "exposed": exposed,
            "comparator": len(self.data) - exposed,
        }


def build_cohort(
    study: Study,
    source: MimicIV | str | Path,
    engine: Literal["duckdb", "spark"] = "duckdb",
    spark: Any = None,
    duckdb_config: dict[str, Any] | None = None,
) -> BuiltCohort:
    """Build the analysis cohort of ``study`` from a MIMIC-IV folder.

    Parameters
    ----------
    study
        A validated study (:func:`retrocohort.spec.load_study_file`).
    source
        A :class:`~retrocohort.sources.MimicIV` or the path of its folder.
    engine
        ``"duckdb"`` (embedded, default) or ``"spark"``.
    spark
        A running ``SparkSession`` for ``engine="spark"`` (None: a local one, stopped afterwards).
    duckdb_config
        DuckDB settings, e.g. ``{"memory_limit": "3GB"}``.

    Returns
    -------
    BuiltCohort

    Raises
    ------
    SourceError
        A table the study needs is absent (named with the concepts that read it and the MIMIC-IV module it
        ships in), or a value in a file does not parse. Tables the study does not read may be absent.
    """
    from ..sources.spark import spark_session
    from .inventory import table_needs

    if engine not in ENGINES:
        raise InputError(f"engine={engine!r} is not allowed; choose one of {list(ENGINES)}")
    source = source if isinstance(source, MimicIV) else MimicIV(source)
    # Only the tables the study reads must be there (a missing one names the concepts that read it).
    needs, reads = table_needs(study), table_needs(study, optional=True)
    if engine == "spark":
        source.validate(needs)
    session = spark_session(spark) if engine == "spark" else contextlib.nullcontext(None)
    with session as active:
        conn = source.connect(engine=engine, spark=active, duckdb_config=duckdb_config, needs=needs, reads=reads)
        try:
            return build_on(conn, study)
        finally:
            conn.close()


def build_on(conn: SourceConnection, study: Study) -> BuiltCohort:
    """:func:`build_cohort` on an open connection (left open)."""
    # The data checks run inside the single read of each table (concepts/scan.py): counted on the rows the
    # study reads; a conflicting key in patients, admissions or ICU stays stops the run at their read, the
    # first of all, before the cohort is built on it.
    compiler = _Compiler(conn, study)
    try:
        with conn.errors():
            facts = compiler.facts().to_pandas()
            found = compiler.rows_found()
            no_end = compiler.index_without_end
            n_no_end = 0 if no_end is None else int(no_end.to_pyarrow().as_py())
            checks = compiler.data_checks()
    finally:
        compiler.release()
    built = _assemble(facts, study, conn, found)
    notes = built.notes
    if n_no_end:
        threshold = study.report.small_cell_threshold
        # an event count below the small-cell threshold is not printed (it may be one patient)
        shown = f"fewer than {threshold}" if threshold and n_no_end < threshold else str(n_no_end)
        notes += (
            f"index at the end of {study.index.label}: {shown} entry events without an end time "
            "(none recorded, or a point event) were left out: an event without an end cannot be an index at its end",
        )
    return dataclasses.replace(built, data_checks=checks, notes=notes)


# ---------------------------------------------------------------------------------------------
# Time helpers (whole seconds: MIMIC-IV times are whole seconds; works on every ibis engine).
# ---------------------------------------------------------------------------------------------


def _shift(ts: ir.TimestampValue, hours: float) -> ir.TimestampValue:
    seconds = round(hours * 3600)
    if seconds >= 0:
        return ts + ibis.interval(seconds=seconds)
    return ts - ibis.interval(seconds=-seconds)


def _seconds(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    return later.delta(earlier, unit="second")


def _level_text(value: Any) -> str | None:
    """A categorical covariate's level as text (``4.0`` -> ``"4"``, ``"F"`` -> ``"F"``); None when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        return str(int(number)) if number.is_integer() else f"{number:g}"
    return str(value)


def _attach(base: ir.Table, other: ir.Table, keys: list[str]) -> ir.Table:
    """Left join ``other`` (unique on ``keys``) onto ``base``, keeping base's key columns once."""
    joined = base.left_join(other, keys)
    return joined.select(*[base[c] for c in base.columns], *[other[c] for c in other.columns if c not in keys])


def in_window(
    start: ir.TimestampValue,
    end: ir.TimestampValue | None,
    index: ir.TimestampValue,
    window: Window,
    match: str = "start",
) -> ir.BooleanValue:
    """Whether an event lies in ``window`` around ``index``.

    ``match = "start"``: the event starts in the window. ``"overlap"``: it runs
    at some time in the window (starts before the window's end and ends after its
    start; a missing end is the start). Open ends exclude the boundary time.
    """
    finish = start if end is None else ibis.coalesce(end, start)
    if window.calendar_day:
        if match == "overlap":
            return (start.date() <= index.date()) & (finish.date() >= index.date())
        return start.date() == index.date()
    first, last = (start, finish) if match == "overlap" else (start, start)
    conditions = []
    if math.isfinite(window.end_hours):
        bound = _shift(index, window.end_hours)
        conditions.append(first <= bound if window.end_closed else first < bound)
    if math.isfinite(window.start_hours):
        bound = _shift(index, window.start_hours)
        conditions.append(last >= bound if window.start_closed else last > bound)
    return ibis.and_(*conditions) if conditions else ibis.literal(True)


def _describe_window(window: Window, match: str) -> str:
    verb = "running at some time in" if match == "overlap" else "starting in"
    return f"{verb} {window.describe()} of the index" if not window.calendar_day else f"{verb} the index calendar day"


# ---------------------------------------------------------------------------------------------
# The compiler: one lazy table of per-patient facts.
# ---------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, conn: SourceConnection, study: Study) -> None:
        from ..concepts import concept_events  # imports ibis backends: load on use

        self.conn = conn
        self.study = study
        self._concept_events = concept_events
        self._events: dict[str, ir.Table] = {}
        self._requests: dict[str, dict[str, Any]] | None = None  # table -> reader -> row predicate
        self._scanned: set[str] = set()
        self._planned: set[str] = set()  # the concepts the pinned copies hold every row for
        self._shared_sets: list[Any] = []
        self._cached: list[ir.Table] = []
        self.subjects: ir.Table | None = None
        # With [index] at = "end": the entry events without an end time (left out of the index), counted lazily.
        self.index_without_end: ir.Scalar | None = None
        # The analysis unit: one row per patient, or per ICU stay with select = "first_per_stay"
        # (a patient may then enter once per stay; every per-unit fact is keyed on the stay too).
        self.by_stay = study.index.select == "first_per_stay"
        self.unit: list[str] = ["subject_id", "stay_id"] if self.by_stay else ["subject_id"]
        self._stay_rounds: int | None = None
        self._baseline_cache: dict[tuple[str, int], tuple[ir.Table, ir.Table]] = {}

    # -- events of a concept, restricted to the indexed patients and cached once ----------------

    def _cache(self, table: ir.Table) -> ir.Table:
        cached = table.cache()
        self._cached.append(cached)
        return cached

    def share(self, names: set[str] | tuple[str, ...]) -> None:
        """Scan each table the concepts ``names`` read once, for every concept of the study that reads it.

        Before the index is known (``self.subjects`` None) only the tables ``names`` read are scanned,
        with the predicates of *every* concept of the study on them and for all patients, so that
        the rules after the index find their rows in the same copy. Once the indexed patients are
        known, every other table the study reads is scanned, restricted to them. See
        ``retrocohort.concepts.scan``.
        """
        from ..concepts.scan import read_once, table_requests

        def resolved(concepts: set[str] | tuple[str, ...]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for n in sorted(concepts):
                with contextlib.suppress(Exception):  # an unknown name is reported where it is read
                    out[n] = self.study.resolve(n)
            return out

        if self._requests is None:
            study = self.study
            everything = set(study.index.concept) | _used_concepts(study) | ({"death"} if study.outcomes else set())
            self._requests = table_requests(resolved(everything))
            self._planned = everything
        wanted = None
        if self.subjects is None:
            wanted = table_requests(resolved(names))
            # The index reads the stays, admissions and patients (candidates): whole, once, for everyone.
            wanted.update({t: {} for t in _INDEX_TABLES})
            for t in _INDEX_TABLES:
                self._requests.setdefault(t, {})["(index)"] = None
        todo = {
            t: readers
            for t, readers in self._requests.items()
            if t not in self._scanned and (wanted is None or t in wanted)
        }
        if not todo:
            return
        self._scanned.update(todo)
        self._shared_sets.append(read_once(self.conn, todo, self.subjects, labels=self._label))

    def _reading(self, name: str) -> Any:
        """Where concept ``name`` reads its tables: the pinned copies if the plan covered it, else the files.

        A concept the plan did not include (a caller reusing the compiler for more concepts) would find only
        the rows narrowed for the others in a pinned copy: it reads the full tables instead (a scan of its own).
        """
        if self._requests is None or name in self._planned:
            return contextlib.nullcontext()
        return self.conn.unpinned()

    def _index_table(self, name: str) -> ir.Table:
        """A table as the index step reads it: the whole pinned copy for the stays, admissions and patients."""
        return self.conn.concept_table(name) if name in _INDEX_TABLES else self.conn.table(name)

    def _label(self, name: str) -> str:
        try:
            return f"{name!r} ({self.study.concept_label(name)})"
        except Exception:  # "(index)": the index step's own tables
            return name

    def events(self, name: str) -> ir.Table:
        if name not in self._events:
            try:
                # Tables already scanned are pinned on the connection: the concept reads its slice of the copy.
                with self._reading(name):
                    raw = self._concept_events(self.conn, self.study.resolve(name))
            except SourceError as exc:
                # Name the concept as well as the table: the user fixes the study or the data.
                raise SourceError(f"concept {name!r} ({self.study.concept_label(name)}): {exc}") from None
            raw = raw.filter(raw.start_time.notnull())
            if self.subjects is not None:
                raw = raw.semi_join(self.subjects, "subject_id")
            self._events[name] = self._cache(raw)
        return self._events[name]

    def union(self, names: tuple[str, ...], keys: bool = False) -> ir.Table:
        """The events of several concepts (an OR); without ``keys`` only subject, times and numbers.

        The event's own stay and admission are dropped before events are joined to the
        index keys: a rule counts every event of the patient in the window, whatever stay it was charted in.
        """
        wanted = ["subject_id", "hadm_id", "stay_id"] if keys else ["subject_id"]
        wanted += ["start_time", "end_time", "value", "amount", "unit"]
        tables = [self.events(n).select(*wanted) for n in names]
        out = tables[0]
        for t in tables[1:]:
            out = out.union(t, distinct=False)
        return out

    def rows_found(self) -> dict[str, int]:
        """Rows each concept found among the indexed patients (a zero becomes a note)."""
        return {name: int(t.count().to_pyarrow().as_py()) for name, t in self._events.items()}

    def data_checks(self) -> pd.DataFrame:
        """The data checks of the study's reads (:mod:`~retrocohort.sources.quality`), call before ``release``.

        Per table the study read: the rows read, and each drop rule, the exact duplicates and the key rule
        counted among them; then the patients each exclusion rule removes (patients and admissions are read
        whole, so those counts are table-wide). Tables the study does not read are not checked.
        """
        from ..sources.quality import checks_frame, exclusion_counts

        rows = [row for shared in self._shared_sets for lines in shared.checks.values() for row in lines]
        return checks_frame([*rows, *exclusion_counts(self._index_table, self.conn.has)])

    def release(self) -> None:
        for cached in self._cached:
            with contextlib.suppress(Exception):  # a failed query may have left nothing to drop
                cached.release()
        for shared in self._shared_sets:
            shared.release()

    # -- the index --------------------------------------------------------------------------------

    def candidates(self) -> ir.Table:
        """One row per (patient, ICU stay) with an entry event: the stay's first entry event."""
        study, conn = self.study, self.conn
        self.share(study.index.concept)
        entry = self.union(study.index.concept, keys=True)
        if study.index.at == "end":
            # The index is the event's end: an event without one cannot anchor it (left out, said in a note).
            # The concept layer gives a point event, and an interval whose end was not recorded, end = start;
            # so an end not after the start is no end (else a missing extubation time would index at intubation).
            # The end time takes the start's place, so placement in a stay and the per-stay minimum use it.
            has_end = entry.end_time.notnull() & (entry.end_time > entry.start_time)
            self.index_without_end = entry.filter(~has_end).count()
            entry = entry.filter(has_end).mutate(start_time=entry.end_time)
        stays = conn.concept_table("icu/icustays").select("subject_id", "stay_id", "hadm_id", "intime", "outtime")
        # An entry event from a hospital table has no stay: it belongs to the ICU stay it falls in, if any.
        placed = entry.filter(entry.stay_id.isnull()).select("subject_id", "start_time")
        s = stays.select(s_subject="subject_id", s_stay="stay_id", intime="intime", outtime="outtime")
        placed = placed.left_join(
            s, [placed.subject_id == s.s_subject, s.intime <= placed.start_time, s.outtime >= placed.start_time]
        ).select(subject_id=placed.subject_id, stay_id=s.s_stay, start_time=placed.start_time)
        located = (
            entry.filter(entry.stay_id.notnull())
            .select("subject_id", "stay_id", "start_time")
            .union(placed, distinct=False)
        )
        per_stay = located.group_by(["subject_id", "stay_id"]).aggregate(index_time=located.start_time.min())

        by_intime = ibis.window(group_by=stays.subject_id, order_by=[stays.intime, stays.stay_id])
        first_stay = (
            stays.mutate(stay_rank=ibis.row_number().over(by_intime))
            .filter(lambda t: t.stay_rank == 0)
            .select(first_stay_id="stay_id", fs_subject="subject_id")
        )
        adm = conn.concept_table("hosp/admissions").select("hadm_id", "admittime")
        # patient_row marks a joined patients row: an empty gender must not read as "no patient row".
        pat = conn.concept_table("hosp/patients").select(
            "subject_id", "gender", "anchor_age", "anchor_year", patient_row=ibis.literal(1)
        )
        cand = _attach(per_stay, stays.select("stay_id", stay_hadm_id="hadm_id"), ["stay_id"]).rename(
            hadm_id="stay_hadm_id"
        )
        cand = _attach(cand, adm, ["hadm_id"])
        cand = _attach(cand, pat, ["subject_id"])
        cand = cand.left_join(first_stay, cand.subject_id == first_stay.fs_subject).drop("fs_subject")
        from ..sources.quality import excluded_patients

        # The data checks' exclusion rules, on the copies of patients and admissions the index step read whole.
        excluded = excluded_patients(self._index_table, conn.has)
        if excluded is not None:
            flagged = excluded.select(x_subject="subject_id").mutate(data_excluded=ibis.literal(1))
            cand = cand.left_join(flagged, cand.subject_id == flagged.x_subject).drop("x_subject")
            cand = cand.mutate(f_data_ok=(ibis.coalesce(cand.data_excluded, 0) == 0).cast("int64"))
            cand = cand.drop("data_excluded")
        else:
            cand = cand.mutate(f_data_ok=ibis.literal(1).cast("int64"))
        age = (cand.anchor_age + cand.admittime.year() - cand.anchor_year).cast("float64")
        known = cand.stay_id.notnull() & cand.hadm_id.notnull() & cand.admittime.notnull() & cand.patient_row.notnull()
        idx = study.index
        adult = ibis.literal(True)
        if idx.min_age is not None:
            adult = adult & (age >= float(idx.min_age))
        if idx.max_age is not None:
            adult = adult & (age <= float(idx.max_age))
        return cand.mutate(
            index_age=age,
            f_known_stay=known.cast("int64"),
            f_first_stay=ibis.coalesce(cand.stay_id == cand.first_stay_id, False).cast("int64"),
            f_adult=(known & adult).cast("int64"),
        ).drop("anchor_age", "anchor_year", "first_stay_id", "patient_row")

    def facts(self) -> ir.Table:
        study = self.study
        cand = self._cache(self.candidates())
        self.subjects = cand.select("subject_id").distinct()
        self.share(_used_concepts(study))
        # The entry events stay cached as read; every later concept is restricted to these patients.
        first_stay = ["f_first_stay"] if study.index.first_icu_stay_only else []
        screens = ["f_data_ok", "f_known_stay", *first_stay, "f_adult"]
        event_criteria = [c for c in study.criteria if _is_event_rule(study, c)]

        if study.index.select == "first_per_stay":
            # every stay with an entry event is a unit; its index is the stay's first entry event
            chosen = self._cache(self._criteria_flags(cand, event_criteria))
            keyed = chosen
        elif study.index.select == "first":
            chosen = self._first(cand, order=[cand.index_time, cand.stay_id])
            chosen = self._cache(chosen)
            keyed = chosen
            chosen = self._criteria_flags(chosen, event_criteria)
        else:
            flagged = self._criteria_flags(cand, event_criteria)
            passes = ibis.and_(*[flagged[c] == 1 for c in screens + [f"f_{c.name}" for c in event_criteria]])
            flagged = flagged.mutate(pass_rank=ibis.cases((passes, 0), else_=1))
            order = [flagged.pass_rank, flagged.index_time, flagged.stay_id]
            chosen = self._first(flagged, order=order).drop("pass_rank")
            chosen = self._cache(chosen)
            keyed = chosen
        # Keys from the cached table (not from the criteria joins, which would be compiled and run again
        # inside every per-patient part below).
        keys = keyed.select("subject_id", "hadm_id", "stay_id", "index_time")

        facts = chosen
        for crit in study.criteria:
            # Two value rules on one built-in ("SOFA >= 2", then "SOFA <= 12") read the same column: attached once.
            if not _is_event_rule(study, crit) and f"crit_{crit.concept[0]}" not in facts.columns:
                facts = _attach(facts, self._baseline(crit.concept[0], keys, prefix="crit_"), self.unit)
        exposure = self._arm(study.exposure.concept, keys, "exp", dose=study.dose is not None)
        facts = _attach(facts, exposure, self.unit)
        if study.comparator.kind == "active":
            facts = _attach(facts, self._arm(study.comparator.concept, keys, "comp", dose=False), self.unit)
        for name, cov in study.covariates.items():
            if study.concept_kind(cov.concept[0]) == "baseline":
                facts = _attach(facts, self._baseline(cov.concept[0], keys, column=name), self.unit)
            else:
                facts = _attach(facts, self._summary(name, keys), self.unit)
        # Every outcome kind needs the death time: it is the event, a competing event, or it censors.
        if study.outcomes:
            # Only the patient and the time: the death rows carry a (null) stay_id of their own, which with
            # one row per stay would shadow the index's stay_id and match no stay (every death lost).
            death = self.events("death").select("subject_id", "start_time")
            j = death.join(keys.select(*self.unit), "subject_id")
            facts = _attach(facts, j.group_by(self.unit).aggregate(death_at=j.start_time.min()), self.unit)
        for name, out in study.outcomes.items():
            if out.kind != "death":
                facts = _attach(facts, self._outcome_events(name, keys), self.unit)
        return self._derive(facts)

    @staticmethod
    def _first(table: ir.Table, order: list[Any], by: list[str] | None = None) -> ir.Table:
        group = [table[c] for c in (by or ["subject_id"])]
        ranked = table.mutate(row_rank=ibis.row_number().over(ibis.window(group_by=group, order_by=order)))
        return ranked.filter(ranked.row_rank == 0).drop("row_rank")

    # -- criteria ---------------------------------------------------------------------------------

    def _criteria_flags(self, keys_table: ir.Table, criteria: list[Criterion]) -> ir.Table:
        out = keys_table
        base = keys_table.select("subject_id", "stay_id", "index_time")
        for crit in criteria:
            ev = self.union(crit.concept)
            j = ev.join(base, "subject_id")
            cond = in_window(j.start_time, j.end_time, j.index_time, crit.window, crit.match)  # type: ignore[arg-type]
            cond = cond & _value_filter(j.value, crit.value_min, crit.value_max)
            hits = j.filter(cond)
            counts = hits.group_by(["subject_id", "stay_id"]).aggregate(**{f"n_{crit.name}": hits.count()})
            out = _attach(out, counts, ["subject_id", "stay_id"])
            n = ibis.coalesce(out[f"n_{crit.name}"], 0)
            matched = n >= crit.at_least
            if crit.at_most is not None:
                matched = matched & (n <= crit.at_most)
            passed = matched if crit.rule == "include" else ~matched
            out = out.mutate(**{f"f_{crit.name}": passed.cast("int64")})
        return out

    def _baseline(self, concept: str, keys: ir.Table, prefix: str = "", column: str | None = None) -> ir.Table:
        from ..concepts import baseline_values

        # One expression per built-in and keys, reused by a criterion and a covariate on the same built-in:
        # two equal but separate copies of a large one (charlson) made ibis compare them node by node when
        # joined, past Python's recursion limit (a RecursionError traceback; tests/studies_newuser/round2).
        cache = self._baseline_cache
        cached = cache.get((concept, id(keys)))
        if cached is not None and cached[0] is keys:
            values = cached[1]
        else:
            with self._reading(concept):
                if self.by_stay:
                    values = self._baseline_by_stay(concept, keys)
                else:
                    values = baseline_values(self.conn, concept, keys)
            cache[(concept, id(keys))] = (keys, values)
        target = column or f"{prefix}{concept}"
        # Detail columns ("sofa_renal" of sofa) get a "__" name no study column can take ("sofa__renal"),
        # so a covariate named like a built-in's detail never collides with it.
        renamed = {
            f"{target}__{c.removeprefix(concept + '_')}": c
            for c in values.columns
            if c.startswith(concept + "_") and c != concept
        }
        return values.select(*self.unit, **{target: values[concept]}, **{k: values[v] for k, v in renamed.items()})

    def _baseline_by_stay(self, concept: str, keys: ir.Table) -> ir.Table:
        """A baseline built-in per (patient, stay) when a patient has several index stays.

        The built-ins compute one value per patient of ``keys``; the stays are therefore taken in
        rounds (a patient's 1st index stay, then its 2nd, ...), each round holding a patient once.
        """
        from ..concepts import baseline_values

        order = ibis.window(group_by=keys.subject_id, order_by=[keys.index_time, keys.stay_id])
        ranked = keys.mutate(stay_round=ibis.row_number().over(order))
        if self._stay_rounds is None:
            self._stay_rounds = int(ranked.stay_round.max().to_pyarrow().as_py() or 0) + 1
        parts = []
        for r in range(self._stay_rounds):
            k = ranked.filter(ranked.stay_round == r).drop("stay_round")
            values = baseline_values(self.conn, concept, k)
            stays = k.select(r_subject="subject_id", r_stay="stay_id")
            joined = values.join(stays, values.subject_id == stays.r_subject)
            parts.append(joined.mutate(stay_id=joined.r_stay).drop("r_subject", "r_stay"))
        out = parts[0]
        for part in parts[1:]:
            out = out.union(part, distinct=False)
        return out

    # -- exposure, comparator, dose ---------------------------------------------------------------

    def _arm(self, names: tuple[str, ...], keys: ir.Table, prefix: str, dose: bool) -> ir.Table:
        study = self.study
        ev = self.union(names)
        j = ev.join(keys.select(*self.unit, "index_time"), "subject_id")
        hits = j.filter(in_window(j.start_time, j.end_time, j.index_time, study.exposure.window, "start"))
        # the first start in the window: the target trial's time to exposure start (docs/target-trial.md)
        aggs: dict[str, Any] = {f"n_{prefix}": hits.count(), f"{prefix}_first": hits.start_time.min()}
        if dose and study.dose is not None:
            unit = hits.unit.strip().lower()
            factor = ibis.cases(
                *[(unit == u, f) for u, f in study.dose.amount_units.items()], else_=ibis.null("float64")
            )
            converted = hits.amount * factor
            aggs["dose_sum"] = converted.sum()
            aggs["n_dose_unknown_unit"] = ibis.cases((converted.isnull(), 1), else_=0).sum()
        return hits.group_by(self.unit).aggregate(**aggs)

    # -- covariates -------------------------------------------------------------------------------

    def _summary(self, name: str, keys: ir.Table) -> ir.Table:
        cov = self.study.covariates[name]
        ev = self.union(cov.concept)
        j = ev.join(keys.select(*self.unit, "index_time"), "subject_id")
        cond = in_window(j.start_time, j.end_time, j.index_time, cov.window, cov.match)  # type: ignore[arg-type]
        cond = cond & _value_filter(j.value, cov.value_min, cov.value_max)
        hits = j.filter(cond)
        summary = cov.summary
        unit = self.unit
        if summary == "count":
            return hits.group_by(unit).aggregate(**{name: hits.count()})
        if summary == "any":
            return hits.group_by(unit).aggregate(**{name: (hits.count() > 0).cast("int64")})
        if summary == "sum":
            # Amounts (infused volume, urine mL) where the rows have them, else the value.
            amount = ibis.coalesce(hits.amount, hits.value)
            return hits.group_by(unit).aggregate(**{name: amount.sum()})
        hits = hits.filter(hits.value.notnull())
        if summary in ("min", "max", "mean"):
            return hits.group_by(unit).aggregate(**{name: getattr(hits.value, summary)()})
        if summary == "nearest":
            hits = hits.mutate(distance=_seconds(hits.start_time, hits.index_time).abs())
            order = [hits.distance, hits.start_time, hits.value]
        elif summary == "first":
            order = [hits.start_time, hits.value]
        else:  # last
            order = [hits.start_time.desc(), hits.value.desc()]
        picked = self._first(hits, order, by=unit)
        return picked.select(*unit, **{name: picked.value, f"{name}_at": picked.start_time})

    # -- outcomes ---------------------------------------------------------------------------------

    def _outcome_events(self, name: str, keys: ir.Table) -> ir.Table:
        out = self.study.outcomes[name]
        ev = self.union(out.concept)
        j = ev.join(keys.select(*self.unit, "index_time"), "subject_id")
        horizon = _shift(j.index_time, out.horizon_days * 24.0)
        aggs: dict[str, Any] = {}
        if out.kind == "first":
            after = (j.start_time > j.index_time) & (j.start_time <= horizon)
            aggs[f"o_{name}_first"] = ibis.cases((after, j.start_time), else_=ibis.null("timestamp")).min()
        else:  # absence: the end of the last episode running after the index and starting within the horizon
            end = ibis.coalesce(j.end_time, j.start_time)
            live = (end >= j.index_time) & (j.start_time <= horizon)
            aggs[f"o_{name}_last_end"] = ibis.cases((live, end), else_=ibis.null("timestamp")).max()
        if out.exclude_prior is not None:
            prior = in_window(j.start_time, j.end_time, j.index_time, out.exclude_prior, "start")
            aggs[f"o_{name}_prior"] = ibis.cases((prior, 1), else_=0).sum()
        return j.group_by(self.unit).aggregate(**aggs)

    def _derive(self, facts: ir.Table) -> ir.Table:
        study = self.study
        cols: dict[str, Any] = {}
        if "exp_first" in facts.columns:
            cols["exp_first_seconds"] = _seconds(facts.exp_first, facts.index_time)
        if "death_at" in facts.columns:
            cols["death_seconds"] = _seconds(facts.death_at, facts.index_time)
        for name, out in study.outcomes.items():
            if out.kind == "first":
                cols[f"o_{name}_seconds"] = _seconds(facts[f"o_{name}_first"], facts.index_time)
            elif out.kind == "absence":
                cols[f"o_{name}_seconds"] = _seconds(facts[f"o_{name}_last_end"], facts.index_time)
        return facts.mutate(**cols) if cols else facts


#: Tables the index step (``candidates``) reads whole, besides the index concepts' own tables.
_INDEX_TABLES = ("icu/icustays", "hosp/admissions", "hosp/patients")


def _used_concepts(study: Study) -> set[str]:
    """Every concept name the rules after the index use."""
    names: set[str] = set(study.exposure.concept) | set(study.comparator.concept)
    for crit in study.criteria:
        names |= set(crit.concept)
    for cov in study.covariates.values():
        names |= set(cov.concept)
    for out in study.outcomes.values():
        names |= set(out.concept)
    return names


def _optional_tables_absent(study: Study, conn: SourceConnection) -> list[str]:
    """A note per built-in the study uses that does without an absent optional table (KDIGO without urine)."""
    from ..spec.catalogue import BUILTIN_CONCEPTS

    notes = []
    for name in sorted(_used_concepts(study)):
        info = BUILTIN_CONCEPTS.get(name)
        if info is None or name in study.concepts:
            continue
        absent = [t for t in info.optional_tables if not conn.concept_has_table(t)]
        if absent:
            notes.append(
                f"built-in {name!r} ({info.label}): {', '.join(absent)} absent from the data, so the parts of "
                "its rule that read it are not applied (its rule is in docs/concepts.md)"
            )
    return notes


def _is_event_rule(study: Study, crit: Criterion) -> bool:
    return study.concept_kind(crit.concept[0]) != "baseline"


def _value_filter(value: ir.FloatingValue, lo: float | None, hi: float | None) -> ir.BooleanValue:
    cond = ibis.literal(True)
    if lo is not None:
        cond = cond & (value >= lo)
    if hi is not None:
        cond = cond & (value <= hi)
    return cond


# ---------------------------------------------------------------------------------------------
# pandas: outcomes in days, the attrition log, missing-data rules, the frame.
# ---------------------------------------------------------------------------------------------


def _num(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.nan_to_num(_num(frame, column), nan=0.0) > 0


def _outcomes(facts: pd.DataFrame, study: Study) -> dict[str, np.ndarray]:
    """``<name>_time`` (days) and ``<name>_status`` per outcome, computed in whole seconds (exact on every engine)."""
    columns: dict[str, np.ndarray] = {}
    death_s = _num(facts, "death_seconds")
    for name, out in study.outcomes.items():
        horizon_s = out.horizon_days * SECONDS_PER_DAY
        died = ~np.isnan(death_s) & (death_s <= horizon_s)
        death_days = death_s / SECONDS_PER_DAY
        if out.kind == "death":
            status = died.astype(np.int64)
            time = np.where(died, death_days, out.horizon_days)
        else:
            event_s = _num(facts, f"o_{name}_seconds")
            if out.kind == "absence":
                free_s = float(out.absence_days) * SECONDS_PER_DAY  # type: ignore[arg-type]
                event = (
                    ~np.isnan(event_s)
                    & (event_s + free_s <= horizon_s)
                    & (np.isnan(death_s) | (death_s > event_s + free_s))
                )
            else:
                event = ~np.isnan(event_s) & (event_s <= horizon_s) & (np.isnan(death_s) | (event_s <= death_s))
            competing = died & ~event
            if out.competing == "death":
                status = np.where(event, 1, np.where(competing, 2, 0)).astype(np.int64)
            else:
                status = event.astype(np.int64)  # death without competing risks censors at the death time
            time = np.where(event, event_s / SECONDS_PER_DAY, np.where(competing, death_days, out.horizon_days))
        columns[f"{name}_time"] = time.astype(float)
        columns[f"{name}_status"] = status
    return columns


def _assemble(facts: pd.DataFrame, study: Study, conn: SourceConnection, found: dict[str, int]) -> BuiltCohort:
    by_stay = study.index.select == "first_per_stay"
    # the attrition and notes count analysis units: ICU stays when a patient may enter once per stay
    units = "ICU stays" if by_stay else "patients"
    order = ["subject_id", "stay_id"] if by_stay else ["subject_id"]
    facts = facts.sort_values(order, kind="mergesort").reset_index(drop=True)
    notes = list(conn.notes)
    rows: list[tuple[str, int, int, str]] = []
    keep = np.ones(len(facts), dtype=bool)

    def step(name: str, passed: np.ndarray, reason: str) -> None:
        nonlocal keep
        before = int(keep.sum())
        keep = keep & passed
        rows.append((name, int(keep.sum()), before - int(keep.sum()), reason))

    idx = study.index
    labels = ", ".join(study.concept_label(n) for n in idx.concept)
    chosen = {
        "first": "first event of the patient",
        "first_passing": "first event passing every rule",
        "first_per_stay": "first event of each ICU stay (a patient may enter once per stay)",
    }[idx.select]
    if idx.at == "end":
        chosen += ", at its end"
    entered = f"{units} with an index event: {idx.label} ({labels}); index = {chosen}"
    rows.append(("index_event", len(facts), 0, entered))
    step(
        "data_checks",
        _flag(facts, "f_data_ok"),
        "records pass the data checks: no impossible age, no death before an admission",
    )
    step("icu_stay", _flag(facts, "f_known_stay"), "index event in an ICU stay with its admission and patient rows")
    if idx.first_icu_stay_only:
        step("first_icu_stay", _flag(facts, "f_first_stay"), "index event in the patient's first ICU stay")
    if idx.min_age is not None or idx.max_age is not None:
        ages = " and ".join(
            ([f"age >= {idx.min_age:g}"] if idx.min_age is not None else [])
            + ([f"age <= {idx.max_age:g}"] if idx.max_age is not None else [])
        )
        step("adult" if idx.max_age is None else "age", _flag(facts, "f_adult"), f"{ages} years at the index admission")

    for crit in study.criteria:
        if _is_event_rule(study, crit):
            passed = _flag(facts, f"f_{crit.name}")
            names = ", ".join(study.concept_label(n) for n in crit.concept)
            count = f"at least {crit.at_least}" + (f" and at most {crit.at_most}" if crit.at_most is not None else "")
            where = _describe_window(crit.window, crit.match)  # type: ignore[arg-type]
            how = f"{crit.rule}: {count} event(s) of {names} {where}"
        elif crit.values is not None:
            # a categorical built-in (sex): the levels that match, compared as the data write them (any case)
            level = facts[f"crit_{crit.concept[0]}"].astype("string").str.strip().str.upper()
            inside = level.isin([v.upper() for v in crit.values]).fillna(False).to_numpy(dtype=bool)
            passed = inside if crit.rule == "include" else ~inside
            how = (
                f"{crit.rule}: {study.concept_label(crit.concept[0])} at the index is "
                f"{' or '.join(crit.values)} (unknown = no match)"
            )
        else:
            value = _num(facts, f"crit_{crit.concept[0]}")
            inside = ~np.isnan(value)
            if crit.value_min is not None:
                inside &= value >= crit.value_min
            if crit.value_max is not None:
                inside &= value <= crit.value_max
            passed = inside if crit.rule == "include" else ~inside
            rng = (
                f"[{crit.value_min if crit.value_min is not None else '-inf'}, "
                f"{crit.value_max if crit.value_max is not None else 'inf'}]"
            )
            how = f"{crit.rule}: {study.concept_label(crit.concept[0])} at the index in {rng} (unknown = not in range)"
        step(crit.name, passed, f"{crit.label} [{how}]")

    exposed = _flag(facts, "n_exp")
    if study.comparator.kind == "active":
        comparator = _flag(facts, "n_comp")
        window = study.exposure.window.describe()
        step(
            "both_arms",
            ~(exposed & comparator),
            f"excluded: both {study.exposure.label} and {study.comparator.label} started in {window}",
        )
        step(
            "neither_arm",
            exposed | comparator,
            f"excluded: neither {study.exposure.label} nor {study.comparator.label} started in {window}",
        )

    for name, out in study.outcomes.items():
        if out.exclude_prior is not None:
            step(
                f"prior_{name}",
                ~_flag(facts, f"o_{name}_prior"),
                f"excluded: {out.label} already in {out.exclude_prior.describe()} of the index",
            )

    frame = pd.DataFrame(
        {
            "subject_id": pd.to_numeric(facts["subject_id"]).astype("int64"),
            "stay_id": pd.to_numeric(facts["stay_id"]),
            "hadm_id": pd.to_numeric(facts["hadm_id"]),
            "index_time": pd.to_datetime(facts["index_time"]).astype("datetime64[ns]"),
            "exposed": exposed.astype(np.int64),
            # days from the index to the first exposure start in the exposure window (NaN: none there)
            "exposure_start_days": _num(facts, "exp_first_seconds") / SECONDS_PER_DAY,
        }
    )
    if study.dose is not None:
        frame[study.dose.name] = np.nan_to_num(_num(facts, "dose_sum"), nan=0.0) * study.dose.factor
        unknown = int(np.nan_to_num(_num(facts, "n_dose_unknown_unit"), nan=0)[keep].sum())
        if unknown:
            notes.append(
                f"{study.dose.label}: {unknown} exposure row(s) of eligible patients have an amount unit not "
                f"in [dose] amount_units {sorted(study.dose.amount_units)}: they count as exposure but add "
                "no dose"
            )
    for name, cov in study.covariates.items():
        ctype = covariate_type(study, name)
        if study.concept_kind(cov.concept[0]) != "baseline" and cov.summary in ("count", "any"):
            values: pd.Series = pd.Series(np.nan_to_num(_num(facts, name), nan=0.0).astype(np.int64))
        elif ctype == "categorical":
            # Levels as text: a user concept's numbers (a GCS score 4.0, 5.0) beside the "missing" category of
            # the indicator rule made a mixed column the models refused (every adjusted model skipped).
            values = facts[name].map(_level_text).astype(object)
        else:
            values = pd.Series(_num(facts, name))
        if ctype == "binary" and not values.isna().any():
            values = values.astype(np.int64)
        frame[name] = values.to_numpy()
    # One attrition line for every covariate whose missing rule is "drop", naming those that dropped patients.
    dropping = [n for n, c in study.covariates.items() if c.missing == "drop"]
    if dropping:
        unknown_by = {n: pd.isna(frame[n]).to_numpy() for n in dropping}
        any_unknown = np.zeros(len(frame), dtype=bool)
        for mask in unknown_by.values():
            any_unknown |= mask
        counts = [f"{n} {int((m & keep).sum())}" for n, m in unknown_by.items() if (m & keep).any()]
        step(
            "missing_covariates",
            ~any_unknown,
            'excluded: a covariate with missing = "drop" is unknown'
            + (f" ({', '.join(counts)} {units} before this step)" if counts else f" (none of {', '.join(dropping)})"),
        )
    for name, cov in study.covariates.items():
        if cov.missing == "drop":
            continue
        missing = pd.isna(frame[name]).to_numpy()
        n_missing = int((missing & keep).sum())
        ctype = covariate_type(study, name)
        if cov.missing == "indicator":
            frame[f"{name}_missing"] = missing.astype(np.int64)
            fill: Any = "missing" if ctype == "categorical" else 0.0
            frame[name] = frame[name].where(~missing, fill)
            rule = f"missing indicator {name}_missing; the value set to {fill!r}"
        else:
            observed = frame.loc[keep & ~missing, name]
            if ctype == "categorical":
                fill = observed.mode().iloc[0] if len(observed) else None
                rule = f"the most common category {fill!r}"
            else:
                fill = float(np.median(pd.to_numeric(observed))) if len(observed) else float("nan")
                rule = f"the median of the eligible {units}, {fill:g}"
            if not len(observed):
                rule = (
                    "no eligible patient has a value, so nothing can be imputed and the covariate stays "
                    "missing: remove it from the study or define it from data this source holds"
                )
            frame[name] = frame[name].where(~missing, fill)
        if n_missing:
            who = units if by_stay else "patient(s)"
            notes.append(f"covariate {name}: {n_missing} eligible {who} without a value; {rule}")

    # Where a built-in says where its value came from (e.g. a back-calculated baseline value), say how often.
    for name in study.covariates:
        source = facts.get(f"{name}__source")
        if source is not None and keep.any():
            tally = source[keep].fillna("unknown").value_counts()
            threshold = study.report.small_cell_threshold
            if any(0 < v < threshold for v in tally.to_numpy()):
                # A small group's count would be disclosive, and so would the others' (by subtraction
                # from the eligible total): name the sources without counts.
                kinds = ", ".join(str(k) for k in tally.index)
                notes.append(
                    f"covariate {name}: values come from {kinds} (counts withheld: a group has fewer "
                    f"than {threshold} {units})"
                )
            else:
                parts = ", ".join(f"{v} {units} {k}" for k, v in tally.items())
                notes.append(f"covariate {name}: where the value came from: {parts}")

    for column, outcome_values in _outcomes(facts, study).items():
        frame[column] = outcome_values

    n_exposed = int((exposed & keep).sum())
    exposure_names = ", ".join(study.concept_label(n) for n in study.exposure.concept)
    eligible_reason = (
        f"{n_exposed} {study.exposure.label} ({exposure_names} started in {study.exposure.window.describe()} "
        f"of the index), {int(keep.sum()) - n_exposed} {study.comparator.label}"
    )
    rows.append(("eligible", int(keep.sum()), 0, eligible_reason))
    if len(facts) == 0:
        notes.append(
            f"no patient has an index event: the index concept(s) {list(idx.concept)} found no rows in "
            + ('this data with an end time (at = "end")' if idx.at == "end" else "this data")
            + ", so the cohort is empty; check their table and selectors against the data"
        )
        found = {}
    elif keep.any() and (n_exposed == 0 or n_exposed == int(keep.sum())):
        empty = study.exposure.label if n_exposed == 0 else study.comparator.label
        notes.append(f"the {empty} arm is empty: no eligible patient is in it, so the arms cannot be compared")
    for name, n in found.items():
        if n == 0:
            notes.append(
                f"concept {name!r} ({study.concept_label(name)}) found no rows for the patients with an "
                "index event: every rule that uses it counts zero events"
            )
    notes.extend(_optional_tables_absent(study, conn))
    data = frame.loc[keep].reset_index(drop=True)
    for col in ("stay_id", "hadm_id"):
        data[col] = pd.to_numeric(data[col]).astype("int64")
    return BuiltCohort(
        data=data,
        attrition=pd.DataFrame(rows, columns=ATTRITION_COLUMNS),
        notes=tuple(notes),
        concepts=describe_columns(study),
        engine=conn.engine,
        source=str(conn.source.path),
        study=study,
    )


def describe_columns(study: Study) -> dict[str, str]:
    """Column -> where it comes from, in words (for the report's methods)."""
    from ..spec.catalogue import BUILTIN_CONCEPTS

    def names(concepts: tuple[str, ...]) -> str:
        return ", ".join(study.concept_label(n) for n in concepts)

    out = {
        "index_time": f"{study.index.label}: first event of {names(study.index.concept)}"
        + (" (its end time)" if study.index.at == "end" else ""),
        "exposed": f"1 = {study.exposure.label}: {names(study.exposure.concept)} started in "
        f"{study.exposure.window.describe()} of the index; 0 = {study.comparator.label}"
        + (f" ({names(study.comparator.concept)} in the same window)" if study.comparator.kind == "active" else ""),
    }
    if study.dose is not None:
        d = study.dose
        out[d.name] = f"{d.label}, {d.unit}: {d.factor:g} x sum of amount x {d.amount_units} over the exposure window"
    for name, cov in study.covariates.items():
        concept = cov.concept[0]
        if study.concept_kind(concept) == "baseline":
            out[name] = BUILTIN_CONCEPTS[concept].rule
        else:
            where = _describe_window(cov.window, cov.match)  # type: ignore[arg-type]
            out[name] = f"{cov.summary} of {names(cov.concept)} {where}"
        if cov.missing != "drop":
            out[name] += f"; missing: {cov.missing}"
    for name, o in study.outcomes.items():
        if o.kind == "death":
            rule = "death (admissions.deathtime, else patients.dod at 23:59:59)"
        elif o.kind == "first":
            rule = f"first {names(o.concept)} after the index"
        else:
            rule = f"end of the last {names(o.concept)} followed by {o.absence_days:g} days free of it, alive"
        rule += f", within {o.horizon_days:g} days" + ("; death competes (status 2)" if o.competing else "")
        out[f"{name}_status"] = rule
    return out


__all__ = ["ATTRITION_COLUMNS", "BuiltCohort", "build_cohort", "build_on", "describe_columns", "in_window"]
