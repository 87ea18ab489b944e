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
    # the horizon in months or years ("One-year mortality" with 365 days, "90-day" is above): once printed
    # as "One-year mortality by day 365"
    for count, unit in _calendar_horizons(days):
        words = "|".join(re.escape(w) for w in (str(count), _NUMBER_WORDS.get(count, str(count))))
        if re.search(rf"\b({words})[\s-]*{unit}s?\b", label, flags=re.IGNORECASE):
            return label
    return f"{label} by day {days:g}"


_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 12: "twelve"}


def _calendar_horizons(days: float) -> list[tuple[int, str]]:
    """The whole months (30.4 days, give or take a day or two) and years (365 or 366 days) a horizon is."""
    out = []
    years = round(days / 365.25)
    if years >= 1 and abs(days - 365.25 * years) <= years:
        out.append((years, "year"))
    months = round(days / 30.44)
    if months >= 1 and abs(days - 30.44 * months) <= 2 + months / 6:
        out.append((months, "month"))
    return out


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
