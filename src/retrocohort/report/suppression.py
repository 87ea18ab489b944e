"""Small-cell suppression: no count below the study's threshold leaves the process.

Rule (``[report] small_cell_threshold``, default 5, 0 disables): a count ``n``
with ``0 < n < threshold`` is shown as ``"<{threshold}"``. Zero is shown:
an empty cell identifies nobody, and hiding it would hide that an arm has no
events at all. Applies to counts only (patients, events, numbers at risk,
the ``n`` and its percentage in an ``n (%)`` cell of Table 1), never to
continuous summaries (means, SDs, medians, hazard ratios).

The pipeline uses the same functions for ``results.json`` and the CSV tables,
so every output applies one rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from numbers import Real

import numpy as np
import pandas as pd

from ..errors import InputError

DEFAULT_THRESHOLD = 5

# "12 (32.4)", "12 (32.4%)", "12 ( 3.2)" or, in a weighted (matched) table, "36.9 (52.8)":
# tableone's n (%) cell. The n may be a weighted count, and a small one is as disclosive.
_N_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\(\s*-?[\d.]+\s*%?\s*\)\s*$")


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise InputError(f"small-cell threshold must be an integer >= 0 (0 disables); got {threshold!r}")
    if float(threshold) != int(threshold):
        raise InputError(f"small-cell threshold must be a whole number; got {threshold!r}")
    return int(threshold)


def is_small(value: object, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """True when ``value`` is a count that must be suppressed (``0 < value < threshold``)."""
    threshold = _check_threshold(threshold)
    if threshold == 0 or value is None or isinstance(value, bool):
        return False
    if isinstance(value, Real):
        v = float(value)
        return math.isfinite(v) and 0 < v < threshold
    return False


def suppress_small_cells(value: object, threshold: int = DEFAULT_THRESHOLD) -> object:
    """One count, suppressed when small.

    Parameters
    ----------
    value : a count (int or whole float), an ``"n (pct)"`` string, or anything else.
    threshold : counts with ``0 < n < threshold`` are replaced; 0 disables.

    Returns
    -------
    The count as an ``int`` (whole floats are converted, since counts are
    integers), the string ``"<{threshold}"`` when suppressed, an ``"n (pct)"``
    string replaced whole by ``"<{threshold}"`` when its n is small, and any
    other value unchanged.
    """
    threshold = _check_threshold(threshold)
    if isinstance(value, str):
        match = _N_PERCENT.match(value)
        if match and is_small(float(match.group(1)), threshold):
            return f"<{threshold}"
        return value
    if is_small(value, threshold):
        return f"<{threshold}"
    if isinstance(value, Real) and not isinstance(value, bool):
        v = float(value)
        if math.isfinite(v) and v == int(v):
            return int(v)
    return value


def format_count(value: object, threshold: int = DEFAULT_THRESHOLD) -> str:
    """A count as text for a report: suppressed, thousands separated, "—" when missing."""
    shown = suppress_small_cells(value, threshold)
    if shown is None or (isinstance(shown, float) and math.isnan(shown)):
        return "—"
    if isinstance(shown, int):
        return f"{shown:,}"
    if isinstance(shown, float):
        # Weighted counts are not whole; one decimal is enough to read them.
        return f"{shown:,.1f}"
    return str(shown)


def suppress_frame(
    frame: pd.DataFrame,
    columns: Iterable[str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    rows: Iterable[object] | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` with small counts suppressed in the given count cells.

    Parameters
    ----------
    frame : any DataFrame.
    columns : the count columns; ``None`` means every column.
    threshold : as :func:`suppress_small_cells`.
    rows : restrict to these index labels (e.g. the ``n`` and ``n (%)`` rows of
        Table 1); ``None`` means every row.

    Returns
    -------
    DataFrame of the same shape; the touched columns become ``object`` dtype
    (they mix integers and ``"<5"`` strings). Continuous columns the caller
    does not name are left alone.
    """
    threshold = _check_threshold(threshold)
    out = frame.copy()
    cols = list(out.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in out.columns]
    if missing:
        raise InputError(f"suppress_frame: columns {missing} not in the frame (it has {list(out.columns)})")
    mask = np.ones(len(out), dtype=bool) if rows is None else out.index.isin(list(rows))
    for col in cols:
        values = out[col].to_numpy(dtype=object).copy()
        values[mask] = [suppress_small_cells(v, threshold) for v in values[mask]]
        out[col] = pd.Series(values, index=out.index, dtype=object)
    return out


# A number of people in free text ("1 exposed", "6 unexposed patients", "3 stays"): the
# attrition reasons and notes other modules write can carry counts too.
_COUNT_IN_TEXT = re.compile(
    r"(?<![\w.+\-])(\d+)(?=\s+(?:exposed|unexposed|patients?|subjects?|stays?|admissions?|people|persons?|"
    r"events?|deaths?|controls?|treated)\b)",
    re.IGNORECASE,
)


def suppress_counts_in_text(text: str, threshold: int = DEFAULT_THRESHOLD) -> str:
    """Free text with every small count of people suppressed: "1 exposed, 6 unexposed" -> "<5 exposed, 6 unexposed".

    A number counts as a count of people when a word like exposed, unexposed,
    patients, stays, events or deaths follows it; itemids, hours and ages are left alone.
    """
    threshold = _check_threshold(threshold)
    if not isinstance(text, str) or threshold == 0:
        return text
    return _COUNT_IN_TEXT.sub(lambda m: str(suppress_small_cells(int(m.group(1)), threshold)), text)
