"""The attrition log: counts of the inclusion and exclusion flags, applied in the study's order.

The flags themselves are defined in ``definitions.py`` (ibis); here they are
only counted, one line per step, so that nothing leaves the cohort without a
line saying why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import Study

COLUMNS = ["step", "remaining", "excluded", "reason"]


def _flag(facts: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(facts[column]).fillna(0).to_numpy() > 0


def screening_log(facts: pd.DataFrame, study: Study) -> tuple[pd.DataFrame, np.ndarray]:
    """From every patient with a CKRT record to the screened population.

    Returns the log (columns ``step``, ``remaining``, ``excluded``, ``reason``)
    and the boolean mask of screened patients over ``facts`` rows.
    """
    c = study.cohort
    rows = []
    keep = np.ones(len(facts), dtype=bool)
    rows.append(
        ("ckrt_patients", int(keep.sum()), 0, "patients with a CKRT record (CRRT procedure or CRRT-mode charting)")
    )
    steps = [
        (
            "data_checks",
            _flag(facts, "data_ok"),
            "records pass the data checks: no impossible age, no death before an admission",
        ),
        (
            "known_icu_stay",
            _flag(facts, "known_stay"),
            "CKRT record in an ICU stay with its admission and patient rows",
        ),
        ("adult", _flag(facts, "adult"), f"age >= {c.min_age:g} years at the index admission"),
    ]
    if c.require_support:
        lo, hi = c.support_window_hours
        steps.append(
            (
                "support",
                _flag(facts, "supported"),
                f"vasopressor or invasive ventilation running within [{lo:+g} h, {hi:+g} h] of CKRT start",
            )
        )
    for step, passed, reason in steps:
        before = int(keep.sum())
        keep &= passed
        rows.append((step, int(keep.sum()), before - int(keep.sum()), reason))
    return pd.DataFrame(rows, columns=COLUMNS), keep


def attrition_log(
    facts: pd.DataFrame, screened: np.ndarray, study: Study, degraded: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, np.ndarray]:
    """The published-style flow: screened, each exclusion, eligible.

    Parameters
    ----------
    facts
        One row per CKRT patient (from :func:`~retrocohort.cohort.definitions.patient_facts`).
    screened
        Boolean mask of screened rows (:func:`screening_log`).
    study
        The design (which exclusions apply).
    degraded
        Notes on absent optional tables; shown on the screened line.

    Returns
    -------
    (DataFrame, ndarray)
        The log and the boolean mask of eligible rows.
    """
    c, x = study.cohort, study.exclusions
    lo, hi = c.support_window_hours
    first = "first CKRT episode of each patient" if c.first_stay_only else "first qualifying ICU stay with CKRT"
    support = (
        f"on vasopressor and/or invasive ventilation within [{lo:+g} h, {hi:+g} h] of CKRT start; "
        if c.require_support
        else ""
    )
    reason = f"adults (>= {c.min_age:g} y) with CKRT; {support}index = {first}"
    if degraded:
        reason += " [" + "; ".join(degraded) + "]"
    keep = screened.copy()
    rows = [("screened", int(keep.sum()), 0, reason)]
    steps = []
    if x.require_mg_on_index_day:
        steps.append(
            (
                "no_mg_index_day",
                _flag(facts, "has_mg_index_day"),
                f"excluded: no serum Mg (labevents {study.labs.serum_mg_itemid}) on the CKRT start calendar day",
            )
        )
    if x.min_survival_hours > 0:
        steps.append(
            (
                "died_within_48h" if x.min_survival_hours == 48 else f"died_within_{x.min_survival_hours:g}h",
                ~_flag(facts, "died_early"),
                f"excluded: died within {x.min_survival_hours:g} h of CKRT start "
                "(deathtime, else dod read as 23:59:59)",
            )
        )
    for step, passed, why in steps:
        before = int(keep.sum())
        keep &= passed
        rows.append((step, int(keep.sum()), before - int(keep.sum()), why))
    exposed = int((_flag(facts, "exposed") & keep).sum())
    e = study.exposure
    rows.append(
        (
            "eligible",
            int(keep.sum()),
            0,
            f"{exposed} exposed ({e.name} started in "
            f"(index + {e.window_hours[0]:g} h, index + {e.window_hours[1]:g} h]), "
            f"{int(keep.sum()) - exposed} unexposed",
        )
    )
    return pd.DataFrame(rows, columns=COLUMNS), keep
