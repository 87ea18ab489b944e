"""Concepts compiled to ibis: user concepts (:class:`~retrocohort.spec.concept.ConceptSpec`) and built-ins.

Two entry points, both lazy (nothing runs until the caller executes):

- :func:`concept_events` turns a user concept, or the name of an ``"events"``
  built-in, into an ibis table with exactly :data:`EVENT_COLUMNS`;
- :func:`baseline_values` gives one value per patient at the index for a
  ``"baseline"`` built-in (age, SOFA, Charlson...).

Both work unchanged on DuckDB and Spark (``conn`` is a
:class:`~retrocohort.sources.mimic_iv.SourceConnection`). After executing a
baseline table, pass the frame through :func:`finish_baseline` (eGFR and the
imputed baseline creatinine are recomputed in NumPy so both engines agree to
the bit). Definitions: docs/concepts.md.
"""

from __future__ import annotations

import difflib
from typing import Any

import ibis.expr.types as ir

from ..errors import StudySpecError
from ..spec.catalogue import BASELINE_BUILTINS, BUILTIN_CONCEPTS, EVENT_BUILTINS
from ..spec.concept import ConceptSpec
from .builtins import BASELINE_BUILDERS, EVENT_BUILDERS, finish_baseline
from .tables import EVENT_COLUMNS, EVENT_TYPES, SharedEvents, shared_user_events, user_events

KEY_COLUMNS: tuple[str, ...] = ("subject_id", "hadm_id", "stay_id", "index_time")


def _unknown(name: str, allowed: tuple[str, ...], kind: str) -> StudySpecError:
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.5)
    hint = f" (did you mean {match[0]!r}?)" if match else ""
    other = BUILTIN_CONCEPTS.get(name)
    if other is not None:
        return StudySpecError(
            f"built-in concept {name!r} gives {other.kind} values, not {kind}; {kind} built-ins: {', '.join(allowed)}"
        )
    return StudySpecError(f"unknown built-in concept {name!r}{hint}; {kind} built-ins: {', '.join(allowed)}")


def concept_events(conn: Any, concept: ConceptSpec | str) -> ir.Table:
    """Event rows of a concept: a lazy ibis table with exactly :data:`EVENT_COLUMNS`.

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.mimic_iv.SourceConnection` (DuckDB or Spark).
    concept
        A :class:`~retrocohort.spec.concept.ConceptSpec`, or the name of an
        ``"events"`` built-in (``"krt"``, ``"vasopressors"``...).

    Returns
    -------
    ibis.Table
        ``subject_id`` int64, ``hadm_id`` int64 (nullable), ``stay_id`` int64
        (nullable), ``start_time`` timestamp, ``end_time`` timestamp (=
        start_time when instantaneous), ``value`` float64, ``amount`` float64,
        ``unit`` string; one row per event, in no particular order.

    Raises
    ------
    StudySpecError
        An unknown built-in name (with the closest one), or a baseline built-in.
    SourceError
        The concept's table, or a column a selector reads, is absent from the data.
    """
    if isinstance(concept, str):
        if concept not in EVENT_BUILDERS:
            raise _unknown(concept, EVENT_BUILTINS, "events")
        table = EVENT_BUILDERS[concept](conn)
    elif isinstance(concept, ConceptSpec):
        table = user_events(conn, concept)
    else:
        raise TypeError(f"concept must be a ConceptSpec or a built-in name, not {type(concept).__name__}")
    return table.select(*[table[c].cast(EVENT_TYPES[c]) for c in EVENT_COLUMNS])


def baseline_values(conn: Any, name: str, keys: ir.Table) -> ir.Table:
    """One value per patient at the index for a ``"baseline"`` built-in.

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.mimic_iv.SourceConnection`.
    name
        A baseline built-in (``"age"``, ``"sofa"``, ``"charlson"``...).
    keys
        One row per subject with ``subject_id``, ``hadm_id``, ``stay_id``,
        ``index_time`` (other columns are ignored).

    Returns
    -------
    ibis.Table
        ``subject_id``, the column ``name`` and optional detail columns
        prefixed ``f"{name}_"``; one row per subject of ``keys`` (nulls where unknown).
    """
    if name not in BASELINE_BUILDERS:
        raise _unknown(name, BASELINE_BUILTINS, "baseline")
    missing = [c for c in KEY_COLUMNS if c not in keys.columns]
    if missing:
        raise ValueError(f"keys lacks column(s) {missing}; it needs {list(KEY_COLUMNS)}")
    out = BASELINE_BUILDERS[name](conn, keys)
    cols = ["subject_id", name, *[c for c in out.columns if c.startswith(f"{name}_") and c != name]]
    return out.select(*cols)


__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "KEY_COLUMNS",
    "SharedEvents",
    "baseline_values",
    "concept_events",
    "finish_baseline",
    "shared_user_events",
]
