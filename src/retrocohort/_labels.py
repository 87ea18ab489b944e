"""An outcome's label with its horizon, once: "Death" -> "Death by day 28"; "Death by day 28" unchanged."""

from __future__ import annotations

import re


def by_day(label: str, days: float) -> str:
    """The outcome label followed by " by day N", unless the label already states that horizon.

    Parameters
    ----------
    label : str
        The outcome's label as the study file writes it.
    days : float
        The outcome's horizon in days.

    Returns
    -------
    str
        ``"<label> by day <days>"``; the label itself when it already names the horizon ("Death by day
        28", "28-day mortality", "re-intubation within 7 days"), which a new user often writes and which
        would otherwise print as "Death by day 28 by day 28".
    """
    n = re.escape(f"{days:g}")
    already = rf"(\bdays?\s+{n}\b)|(\b{n}\s*-?\s*days?\b)|(\b{n}\s*d\b)"
    if re.search(already, label, flags=re.IGNORECASE):
        return label
    return f"{label} by day {days:g}"


def units(study: object, plural: bool = True) -> str:
    """The analysis unit in words: "ICU stays" with ``select = "first_per_stay"``, else "patients".

    Parameters
    ----------
    study : Study
        The study (its ``index.select`` decides the unit).
    plural : bool
        The plural ("ICU stays", "patients") or the singular ("ICU stay", "patient").
    """
    index = getattr(study, "index", None)
    by_stay = getattr(index, "select", None) == "first_per_stay"
    word = "ICU stay" if by_stay else "patient"
    return word + "s" if plural else word
