"""Concepts compiled to ibis: user concepts (:class:`~retrocohort.spec.concept.ConceptSpec`) and built-ins.

STUB (interface only; the implementation follows on this branch).
"""

from __future__ import annotations

from typing import Any

EVENT_COLUMNS: tuple[str, ...] = ("subject_id", "hadm_id", "stay_id", "start_time", "end_time", "value", "amount", "unit")


def concept_events(conn: Any, concept: Any) -> Any:
    """A ConceptSpec or the name of an "events" built-in -> lazy ibis table with exactly EVENT_COLUMNS."""
    raise NotImplementedError


def baseline_values(conn: Any, name: str, keys: Any) -> Any:
    """keys (subject_id, hadm_id, stay_id, index_time) -> subject_id + column ``name`` (+ ``name_*`` details)."""
    raise NotImplementedError


__all__ = ["EVENT_COLUMNS", "baseline_values", "concept_events"]
