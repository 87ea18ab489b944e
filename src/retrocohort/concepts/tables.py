"""User concepts: one declarative map per MIMIC-IV table, compiled to one filtered ibis projection.

Each :class:`TableMap` says which column of the table is the event's start,
end, value, amount and unit, and which column each selector of
:class:`~retrocohort.spec.concept.ConceptSpec` acts on. :func:`user_events`
applies every selector as a filter on the table's own columns *before* the
projection to :data:`EVENT_COLUMNS`, so the engine pushes the predicates into
its scan (one pass over chartevents however the concept is written).

Tables without a time per row get a documented rule (docs/concepts.md):

- ``hosp/diagnoses_icd``: dated at the admission's ``dischtime`` (a code is
  assigned at discharge, so it is only *known* then: a window before an index
  inside the same admission does not see it); ``dated_at = "admission"`` dates
  it at ``admittime`` instead (the condition was present on admission, as for
  comorbidities) and ``end_time`` is the discharge.
- ``hosp/procedures_icd``, ``hosp/omr``: ``chartdate`` at 00:00.
- ``hosp/microbiologyevents``: ``charttime``, else ``chartdate`` at 00:00; one
  event per specimen (the table has one row per organism and antibiotic).
- ``icu/datetimeevents``: the recorded datetime (``value``, e.g. the time of
  the last dialysis), else ``charttime``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from ..errors import SourceError
from ..spec.concept import ConceptSpec

EVENT_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "hadm_id",
    "stay_id",
    "start_time",
    "end_time",
    "value",
    "amount",
    "unit",
)
EVENT_TYPES: dict[str, str] = {
    "subject_id": "int64",
    "hadm_id": "int64",
    "stay_id": "int64",
    "start_time": "timestamp",
    "end_time": "timestamp",
    "value": "float64",
    "amount": "float64",
    "unit": "string",
}

# A number written as text (prescriptions dose_val_rx "2", "0.5"; omr "82.3"): anything else ("1-2",
# "120/80", "see note") is null rather than a guess. The regex runs before the cast so that DuckDB and
# Spark agree on every string (their TRY_CAST rules differ at the edges).
_NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"


@dataclass(frozen=True)
class TableMap:
    """How the rows of one table become events, and which column each selector reads."""

    start: str
    end: str | None = None
    value: str | None = None
    value_is_text: bool = False  # value parsed from a text column (_NUMBER)
    amount: str | None = None
    unit: str | None = None
    hadm: bool = True
    stay: bool = False
    itemid: str | None = None
    drug: str | None = None
    route: str | None = None
    status: str | None = None
    text: str | None = None  # `values`
    name: str | None = None  # `names`
    organism: str | None = None
    icd: bool = False
    date_start: bool = False  # start is a DATE column (00:00 of the day)


TABLE_MAPS: dict[str, TableMap] = {
    "icu/inputevents": TableMap(
        "starttime",
        "endtime",
        value="amount",
        amount="amount",
        unit="amountuom",
        stay=True,
        itemid="itemid",
        status="statusdescription",
    ),
    "icu/ingredientevents": TableMap(
        "starttime",
        "endtime",
        value="amount",
        amount="amount",
        unit="amountuom",
        stay=True,
        itemid="itemid",
        status="statusdescription",
    ),
    "icu/procedureevents": TableMap(
        "starttime", "endtime", value="value", unit="valueuom", stay=True, itemid="itemid", status="statusdescription"
    ),
    "icu/chartevents": TableMap(
        "charttime", value="valuenum", unit="valueuom", stay=True, itemid="itemid", text="value"
    ),
    "icu/outputevents": TableMap(
        "charttime", value="value", amount="value", unit="valueuom", stay=True, itemid="itemid"
    ),
    "icu/datetimeevents": TableMap("value", stay=True, itemid="itemid"),  # start: coalesce(value, charttime)
    "hosp/labevents": TableMap("charttime", value="valuenum", unit="valueuom", itemid="itemid", text="value"),
    "hosp/prescriptions": TableMap(
        "starttime",
        "stoptime",
        value="dose_val_rx",
        value_is_text=True,
        amount="dose_val_rx",
        unit="dose_unit_rx",
        drug="drug",
        route="route",
    ),
    "hosp/emar": TableMap(
        "charttime",
        value="dose_given",
        value_is_text=True,
        amount="dose_given",
        unit="dose_given_unit",
        drug="medication",
        route="route",
        status="event_txt",
    ),
    "hosp/pharmacy": TableMap("starttime", "stoptime", drug="medication", route="route", status="status"),
    # Dated through hosp/admissions (dischtime, or admittime with dated_at="admission"): see user_events.
    "hosp/diagnoses_icd": TableMap("dischtime", "dischtime", icd=True),
    "hosp/procedures_icd": TableMap("chartdate", icd=True, date_start=True),
    "hosp/microbiologyevents": TableMap("charttime", itemid="spec_itemid", name="spec_type_desc", organism="org_name"),
    "hosp/transfers": TableMap("intime", "outtime", name="careunit", text="eventtype"),
    "hosp/services": TableMap("transfertime", name="curr_service"),
    "hosp/omr": TableMap(
        "chartdate", value="result_value", value_is_text=True, hadm=False, name="result_name", date_start=True
    ),
}


def _lower_in(column: ir.StringValue, values: tuple[str, ...]) -> ir.BooleanValue:
    return column.strip().lower().isin([v.lower() for v in values])


def _contains_any(column: ir.StringValue, values: tuple[str, ...]) -> ir.BooleanValue:
    low = column.lower()
    return ibis.or_(*[low.contains(v.lower()) for v in values])


def text_number(column: ir.StringValue) -> ir.FloatingValue:
    """A text column read as a number where it is one (see _NUMBER), else null; same on every engine."""
    return ibis.cases((column.re_search(_NUMBER), column.strip().cast("float64")), else_=ibis.null("float64"))


def _require_column(conn: Any, table: str, column: str, selector: str) -> None:
    if not conn.concept_has_column(table, column):
        raise SourceError(
            f"{conn.source.path}: table {table} has no column {column!r}, which the concept selector {selector!r} "
            f"reads; use a MIMIC-IV release that has it (v2.2 and later) or remove the selector"
        )


def _emar(conn: Any, concept: ConceptSpec) -> ir.Table:
    """emar rows with route, dose and unit from emar_detail (one detail summary per emar_id)."""
    emar = conn.concept_table("hosp/emar")
    if not conn.concept_has_table("hosp/emar_detail"):
        if concept.routes:
            raise SourceError(
                f"{conn.source.path}: table hosp/emar_detail not found; the concept selector 'routes' on hosp/emar "
                "reads the route from it. Copy emar_detail.csv.gz into hosp/ or remove the selector"
            )
        return emar.mutate(
            route=ibis.null("string"),
            dose_given=ibis.null("string"),
            dose_given_unit=ibis.null("string"),
            dose_number=ibis.null("float64"),
        )
    detail = conn.concept_table("hosp/emar_detail")
    # emar_detail has one parent row per administration (parent_field_ordinal empty) and child rows per
    # product (1.1, 1.2...) carrying the dose given; the route sits on either. One summary per emar_id:
    # the summed numeric doses of the child rows (else the parent's), the first unit and route.
    dose = text_number(detail.dose_given)
    is_child = detail.parent_field_ordinal.notnull()
    summary = detail.group_by("emar_id").aggregate(
        child_dose=ibis.cases((is_child, dose), else_=ibis.null("float64")).sum(),
        parent_dose=ibis.cases((~is_child, dose), else_=ibis.null("float64")).max(),
        d_unit=detail.dose_given_unit.min(),
        d_route=detail.route.min(),
    )
    joined = emar.left_join(summary, emar.emar_id == summary.emar_id)
    total = ibis.coalesce(joined.child_dose, joined.parent_dose)
    return joined.select(
        *[joined[c] for c in emar.columns],
        route=joined.d_route,
        dose_given=total.cast("string"),  # re-read by text_number below; keeps one code path for value
        dose_given_unit=joined.d_unit,
        dose_number=total,
    )


def source_table(conn: Any, concept: ConceptSpec) -> ir.Table:
    """The table a concept's selectors filter: the concept view (emar: joined with its emar_detail summary)."""
    if concept.table == "hosp/emar":
        return _emar(conn, concept)
    return conn.concept_table(concept.table)


def _check_columns(conn: Any, concept: ConceptSpec) -> None:
    """Every column a selector reads is in the file (an absent optional column is all-null in the view)."""
    table = concept.table
    m = TABLE_MAPS[table]
    checks = [
        (concept.units, m.unit, "units"),
        (concept.values, m.text, "values"),
        (concept.status_exclude, m.status, "status_exclude"),
        (concept.routes, m.route, "routes"),
        (concept.names, m.name, "names"),
        (concept.organisms, m.organism, "organisms"),
        (concept.itemids, m.itemid, "itemids"),
        (concept.value_min is not None or concept.value_max is not None, m.value, "value_min/value_max"),
    ]
    for used, column, selector in checks:
        # emar's route, dose and unit come from emar_detail (checked by _emar).
        if (
            used
            and column is not None
            and not (table == "hosp/emar" and column in ("route", "dose_given", "dose_given_unit"))
        ):
            _require_column(conn, table, column, selector)


def selection(t: ir.Table, concept: ConceptSpec) -> tuple[list[ir.BooleanValue], ir.FloatingValue]:
    """The concept's row predicates on ``t`` (its source table) and its ``value`` expression."""
    table = concept.table
    m = TABLE_MAPS[table]
    preds: list[ir.BooleanValue] = []
    if concept.itemids:
        preds.append(t[m.itemid].isin(list(concept.itemids)))
    if concept.exclude_itemids:
        preds.append(t[m.itemid].isnull() | ~t[m.itemid].isin(list(concept.exclude_itemids)))
    if m.icd:
        code = t.icd_code.strip().upper().replace(".", "")
        icd_preds = []
        if concept.codes:
            icd_preds.append(code.isin(list(concept.codes)))
        icd_preds += [code.startswith(p) for p in concept.code_prefixes]
        if icd_preds:
            preds.append(ibis.or_(*icd_preds))
        if concept.icd_version is not None:
            preds.append(t.icd_version == concept.icd_version)
    if concept.drugs:
        preds.append(_contains_any(t[m.drug], concept.drugs))
    if concept.routes:
        preds.append(_lower_in(t[m.route], concept.routes))
    if concept.status_exclude:
        preds.append(t[m.status].isnull() | ~_lower_in(t[m.status], concept.status_exclude))
    if concept.values:
        preds.append(_lower_in(t[m.text], concept.values))
    if concept.names:
        preds.append(_lower_in(t[m.name], concept.names))
    if concept.organisms:
        preds.append(_contains_any(t[m.organism], concept.organisms))
    if concept.units:
        preds.append(_lower_in(t[m.unit], concept.units))

    if table == "hosp/emar":
        value = t.dose_number
    elif m.value is None:
        value = ibis.null("float64")
    elif m.value_is_text:
        value = text_number(t[m.value])
    else:
        value = t[m.value].cast("float64")
    if concept.value_min is not None:
        preds.append(value >= concept.value_min)
    if concept.value_max is not None:
        preds.append(value <= concept.value_max)
    return preds, value


def user_events(conn: Any, concept: ConceptSpec, base: ir.Table | None = None) -> ir.Table:
    """The event rows of a user concept: exactly :data:`EVENT_COLUMNS`, lazily.

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.mimic_iv.SourceConnection` (DuckDB or Spark).
    concept
        The concept: its table and selectors.
    base
        Rows of the concept's source table already read (a cached, pre-filtered
        copy with the same columns, see :func:`shared_user_events`); None reads the table.

    Raises
    ------
    SourceError
        The table, or a column a selector reads, is absent from the data (both named).
    """
    table = concept.table
    m = TABLE_MAPS[table]
    t = base if base is not None else source_table(conn, concept)
    _check_columns(conn, concept)
    # Row selection on the table's own columns: the engine pushes it into the scan.
    preds, value = selection(t, concept)

    # --- times ----------------------------------------------------------------------------------
    if table == "hosp/diagnoses_icd":
        # Filter the codes first, then date them by their admission (a small join after the scan).
        picked = t.filter(*preds) if preds else t
        adm = conn.concept_table("hosp/admissions").select("hadm_id", a_admit="admittime", a_disch="dischtime")
        j = picked.join(adm, picked.hadm_id == adm.hadm_id)
        # Dated at discharge: an instant (the code becomes known). Dated at admission: the whole admission.
        start = j.a_admit if concept.dated_at == "admission" else j.a_disch
        end = j.a_disch
        out = j.select(
            subject_id=j.subject_id.cast("int64"),
            hadm_id=j.hadm_id.cast("int64"),
            stay_id=ibis.null("int64"),
            start_time=start.cast("timestamp"),
            end_time=end.cast("timestamp"),
            value=ibis.null("float64"),
            amount=ibis.null("float64"),
            unit=ibis.null("string"),
        )
        return out.filter(out.start_time.notnull())

    if m.date_start:
        start = t[m.start].cast("timestamp")
    elif table == "icu/datetimeevents":
        start = ibis.coalesce(t.value, t.charttime)
    elif table == "hosp/microbiologyevents":
        start = ibis.coalesce(t.charttime, t.chartdate)
    else:
        start = t[m.start]
    end = ibis.coalesce(t[m.end], start) if m.end is not None else start

    if m.amount is None:
        amount = ibis.null("float64")
    elif table == "hosp/emar":
        amount = t.dose_number
    elif m.value_is_text and m.amount == m.value:
        amount = value
    else:
        amount = t[m.amount].cast("float64")

    picked = t.filter(*preds) if preds else t
    # Expressions built on t are dereferenced by ibis onto the filtered table (same columns).
    out = picked.select(
        subject_id=picked.subject_id.cast("int64"),
        hadm_id=picked.hadm_id.cast("int64") if m.hadm else ibis.null("int64"),
        stay_id=picked.stay_id.cast("int64") if m.stay else ibis.null("int64"),
        start_time=start.cast("timestamp"),
        end_time=end.cast("timestamp"),
        value=value.cast("float64"),
        amount=amount.cast("float64"),
        unit=picked[m.unit].cast("string") if m.unit is not None else ibis.null("string"),
    )
    out = out.filter(out.start_time.notnull())
    if table == "hosp/microbiologyevents":
        # One row per organism x antibiotic in the table: one event per specimen and time.
        keyed = picked.select(
            subject_id=picked.subject_id.cast("int64"),
            hadm_id=picked.hadm_id.cast("int64"),
            specimen=picked.micro_specimen_id,
            start_time=start.cast("timestamp"),
        ).distinct()
        out = keyed.filter(keyed.start_time.notnull()).select(
            "subject_id",
            "hadm_id",
            stay_id=ibis.null("int64"),
            start_time="start_time",
            end_time="start_time",
            value=ibis.null("float64"),
            amount=ibis.null("float64"),
            unit=ibis.null("string"),
        )
    return out


@dataclass(frozen=True)
class SharedEvents:
    """Event tables of several user concepts, each source table read once; ``release`` drops the caches."""

    events: dict[str, ir.Table]
    cached: tuple[ir.Table, ...] = ()

    def release(self) -> None:
        """Drop the cached source rows (temp tables in DuckDB, persisted frames in Spark)."""
        for table in self.cached:
            with contextlib.suppress(Exception):  # a failed query may have left nothing to drop
                table.release()


def shared_user_events(conn: Any, concepts: dict[str, ConceptSpec], subjects: ir.Table | None = None) -> SharedEvents:
    """Event tables of several user concepts, reading each source table once.

    Concepts on the same table are answered from one cached copy of the rows
    that any of them selects (the OR of their predicates, pushed into the one
    scan), optionally restricted to ``subjects`` first; each concept's events
    are then a filter of that copy. A table read by a single concept is not
    cached (its expression stays lazy: cache it where it is used).

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.mimic_iv.SourceConnection`.
    concepts
        name -> concept.
    subjects
        A table with a ``subject_id`` column (e.g. the indexed patients): only
        their rows are kept in the shared copies. None keeps every patient.

    Returns
    -------
    SharedEvents
        ``.events[name]`` has exactly :data:`EVENT_COLUMNS`; call ``.release()`` when done.
    """
    by_table: dict[str, list[str]] = {}
    for name, concept in concepts.items():
        by_table.setdefault(concept.table, []).append(name)
    events: dict[str, ir.Table] = {}
    cached: list[ir.Table] = []
    try:
        for names in by_table.values():
            if len(names) == 1 and subjects is None:
                events[names[0]] = user_events(conn, concepts[names[0]])
                continue
            # emar's source joins emar_detail; a concept with `routes` makes a missing detail table an error.
            first = next((concepts[n] for n in names if concepts[n].routes), concepts[names[0]])
            src = source_table(conn, first)
            alternatives = []
            for n in names:
                _check_columns(conn, concepts[n])
                preds, _ = selection(src, concepts[n])
                alternatives.append(ibis.and_(*preds) if preds else ibis.literal(True))
            base = src.filter(ibis.or_(*alternatives))
            if subjects is not None:
                ids = subjects.select("subject_id").distinct()
                base = base.semi_join(ids, base.subject_id == ids.subject_id)
            base = base.cache()
            cached.append(base)
            for n in names:
                events[n] = user_events(conn, concepts[n], base=base)
    except BaseException:
        SharedEvents({}, tuple(cached)).release()
        raise
    return SharedEvents(events, tuple(cached))


__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "TABLE_MAPS",
    "SharedEvents",
    "TableMap",
    "selection",
    "shared_user_events",
    "source_table",
    "text_number",
    "user_events",
]
