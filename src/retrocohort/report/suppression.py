"""Small-cell suppression: no count below the study's threshold leaves the process, not even by subtraction.

Rule (``[report] small_cell_threshold``, default 5, 0 disables, 2 refused by the
study file): a count ``n`` with ``0 < n < threshold`` is shown as
``"<{threshold}"`` (primary suppression). Zero is shown: an empty cell identifies
nobody, and hiding it would hide that an arm has no events at all. A count that
would give a suppressed one back by subtraction from a total and its other cells
is shown as the range a reader could derive anyway, ``"96-99"`` (complementary
suppression, :func:`protect_counts`). Summary statistics of fewer patients than
the threshold (a mean dose, Table 1 means, SMDs) are withheld, and survival curves
are drawn and tabulated in steps of at least ``threshold`` events
(:func:`coarsen_curve`). Hazard ratios are model estimates and are shown.

:func:`study_disclosure` decides once per result how every count of a study is
shown; results.json, the CSV tables, the figures, the HTML, the paragraphs and
the printed summary all read it, so every output applies one rule and a count
reads the same everywhere.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, cast

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
_COUNT_WORDS = (
    r"exposed|unexposed|patients?|subjects?|stays?|admissions?|people|persons?|events?|deaths?|"
    r"controls?|treated|units?|matched|unmatched|liberations?|missing|rows?|cases?|individuals?"
)
# "at least 1 event(s) of Lactate" / "at most 2 events" are a criterion's rule (a design value), not a count.
_COUNT_IN_TEXT = re.compile(
    rf"(?<![\w.,+\-])(?<!at least )(?<!at most )(\d{{1,3}}(?:,\d{{3}})+|\d+)"
    rf"(?=\s+(?:(?:more|fewer|other|additional)\s+)?(?:{_COUNT_WORDS})\b)",
    re.IGNORECASE,
)
# "too few death events (3)", "patients (12)": the count in brackets after the word.
_COUNT_AFTER_WORD = re.compile(rf"(\b(?:{_COUNT_WORDS})\s*\()(\d+)(?=\))", re.IGNORECASE)
# "missing data on a model covariate or outcome (sofa: 3, age: 1)": per-column counts of patients.
_COLUMN_COUNTS = re.compile(r"(\b[A-Za-z_][\w ]*:\s*)(\d+)(?=\s*[,;)])")
# "effective sample size 3.2 of 4": a weighted count of patients, and the count itself.
_ESS = re.compile(r"(effective sample size\s+)(\d+(?:\.\d+)?)(\s+of\s+)(\d+)", re.IGNORECASE)


def suppress_counts_in_text(
    text: str,
    threshold: int = DEFAULT_THRESHOLD,
    ranges: Mapping[int, str] | None = None,
    count_words: Iterable[str] = (),
) -> str:
    """Free text with every small count of people suppressed: "1 exposed, 6 unexposed" -> "<5 exposed, 6 unexposed".

    A number counts as a count of people when a word like exposed, unexposed,
    patients, stays, events or deaths follows it (or it is in brackets right after
    one: "too few death events (3)"), when it is a per-column count of a
    "missing ..." sentence, or an effective sample size; itemids, hours and ages are
    left alone. ``ranges`` maps true values of counts withheld elsewhere as ranges
    (complementary suppression, :func:`study_disclosure`) to their display, so the
    text never gives such a count back exactly. ``count_words`` are more words a count of people
    precedes: the study's arm labels ("12 vasopressin (...), 40 norepinephrine alone", the cohort
    builder's eligible line).
    """
    threshold = _check_threshold(threshold)
    if not isinstance(text, str) or threshold == 0:
        return text
    ranges = ranges or {}

    def shown(number: str) -> str:
        value = float(number.replace(",", ""))
        if is_small(value, threshold):
            return f"<{threshold}"
        if value == int(value) and int(value) in ranges:
            return ranges[int(value)]
        return number

    out = _COUNT_IN_TEXT.sub(lambda m: shown(m.group(1)), text)
    out = _COUNT_AFTER_WORD.sub(lambda m: m.group(1) + shown(m.group(2)), out)
    if re.search(r"missing", out, re.IGNORECASE):
        out = _COLUMN_COUNTS.sub(lambda m: m.group(1) + shown(m.group(2)), out)
    out = _ESS.sub(lambda m: m.group(1) + shown(m.group(2)) + m.group(3) + shown(m.group(4)), out)
    for word in sorted({w for w in count_words if w}, key=len, reverse=True):
        out = re.sub(rf"(?<![\w.<>=-])(\d[\d,]*)(?= {re.escape(word)}(?!\w))", lambda m: shown(m.group(1)), out)
    return out


# --------------------------------------------------------------------------- complementary suppression
#
# Primary suppression ("<5") is not enough when a suppressed cell sits in a sum
# whose total and other terms are published: eligible 100, exposed "<5",
# unexposed 99 gives exposed = 1 back. The functions below model every published
# count as a variable and every additive relation between published counts as an
# equation ``total = part + part + ...`` (eligible = exposed + unexposed;
# remaining_before = remaining_after + excluded; at risk on day 15 = at risk on
# day 30 + those who died or were censored in between). Differences nobody
# publishes but anybody can take (the unmatched exposed with an event, the patients
# lost between two at-risk times) are *hidden* variables: never shown, but
# sensitive when small. A reader who knows the rule is the attacker: they bound
# every cell by interval propagation over the equations, then "shave" each
# suppressed cell (try each value, keep those the equations allow). Whenever a
# sensitive cell is pinned to one value, the smallest exact nonzero cell of an
# equation holding it is withheld as well (secondary suppression) and shown as the
# range the reader could derive anyway ("96-99"): honest, and no information the
# other cells did not already give.

_INF = math.inf


def format_range(low: float, high: float) -> str:
    """A count shown as a range: ``"96-99"`` (``">=96"`` when unbounded above)."""
    if math.isinf(high):
        return f">={int(low)}"
    return f"{int(low)}-{int(high)}"


def parse_count_display(text: object, threshold: int = DEFAULT_THRESHOLD) -> tuple[float, float] | None:
    """Bounds a reader takes from a shown count: ``12`` -> (12, 12), ``"<5"`` -> (1, 4), ``"96-99"``, ``">=96"``.

    Returns None for anything that is not a count display (text, blanks).
    """
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, Real):
        v = float(text)
        return (v, v) if math.isfinite(v) and v == int(v) else None
    s = str(text).strip().replace(",", "").replace("\u2013", "-")
    if re.fullmatch(r"\d+(\.0+)?", s):
        return (float(int(float(s))),) * 2
    m = re.fullmatch(r"<\s*(\d+)", s)
    if m:
        return (1.0, float(int(m.group(1)) - 1))
    m = re.fullmatch(r"(\d+)-(\d+)", s)
    if m:
        return (float(m.group(1)), float(m.group(2)))
    m = re.fullmatch(r">=\s*(\d+)", s)
    if m:
        return (float(m.group(1)), _INF)
    return None


Equation = tuple[str, tuple[str, ...]]


class _Reader:
    """The attacker: linear programs over the equations, one min and one max per variable asked about."""

    def __init__(self, names: list[str], equations: list[Equation]) -> None:
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        a = np.zeros((len(equations), len(names)))
        for r, (total, parts) in enumerate(equations):
            a[r, self.index[total]] += 1.0
            for p in parts:
                a[r, self.index[p]] -= 1.0
        self.a = a

    def solve(self, bounds: Mapping[str, tuple[float, float]], name: str, sense: int) -> Any:
        from scipy.optimize import linprog

        c = np.zeros(len(self.names))
        c[self.index[name]] = float(sense)
        box = [(max(bounds[n][0], 0.0), None if math.isinf(bounds[n][1]) else bounds[n][1]) for n in self.names]
        if not len(self.a):
            return linprog(c, bounds=box, method="highs")
        return linprog(c, A_eq=self.a, b_eq=np.zeros(len(self.a)), bounds=box, method="highs")

    def bounds_of(self, bounds: Mapping[str, tuple[float, float]], name: str) -> tuple[float, float]:
        low = self.solve(bounds, name, +1)
        high = self.solve(bounds, name, -1)
        # The true counts satisfy every equation, so only "solved" or "unbounded above" can come
        # back; anything else would make a leak look safe, so it stops the run instead.
        if low.status != 0 or high.status not in (0, 3):
            raise RuntimeError(
                f"small-cell check: the linear program for {name!r} failed "
                f"({low.message}; {high.message}); no output is written without it"
            )
        lo = math.ceil(low.fun - 1e-7)
        hi = -high.fun if high.status == 0 else _INF
        hi = math.floor(hi + 1e-7) if math.isfinite(hi) else _INF
        return float(lo), float(hi)

    def support(self, bounds: Mapping[str, tuple[float, float]], name: str) -> set[str]:
        """Variables whose shown bounds hold ``name`` where it is (nonzero bound multipliers)."""
        out: set[str] = set()
        for sense in (+1, -1):
            res = self.solve(bounds, name, sense)
            if res.status != 0:
                continue
            marginals = np.abs(res.lower.marginals) + np.abs(res.upper.marginals)
            out |= {self.names[i] for i in np.flatnonzero(marginals > 1e-9)}
        return out


def reader_bounds(
    known: Mapping[str, tuple[float, float]], equations: Iterable[Equation], names: Iterable[str] | None = None
) -> dict[str, tuple[float, float]]:
    """What a reader can derive: the tightest bounds of variables given the shown bounds and the equations.

    Parameters
    ----------
    known : bounds a reader reads off the outputs, per variable (hidden variables: ``(0, inf)``).
    equations : ``(total, parts)``: total = sum of parts, all counts >= 0.
    names : the variables to bound (default: all); each costs two small linear programs.

    Returns
    -------
    Bounds per asked variable (integers: the LP bounds rounded inwards).
    """
    eqs = [(t, tuple(p)) for t, p in equations]
    every = sorted(set(known) | {t for t, _ in eqs} | {p for _, ps in eqs for p in ps})
    bounds = {n: known.get(n, (0.0, _INF)) for n in every}
    reader = _Reader(every, eqs)
    return {n: reader.bounds_of(bounds, n) for n in (every if names is None else names)}


def protect_counts(
    values: Mapping[str, int],
    equations: Iterable[Equation],
    threshold: int = DEFAULT_THRESHOLD,
    hidden: Iterable[str] = (),
) -> dict[str, int | str]:
    """Show a family of related counts so that no small count is exact or recoverable.

    Parameters
    ----------
    values : true counts of every variable (published and hidden).
    equations : ``(total, parts)`` relations a reader can use (total = sum of parts).
    threshold : small-cell threshold; 0 disables (every published count exact).
    hidden : variables that are never shown (differences a reader can take); they are
        protected when small but get no display. The reader is modelled as knowing them as
        they would be shown (stronger than the real reader, so the result is safe for it).

    Returns
    -------
    Display per published variable: the count (int), ``"<threshold"`` (primary), or a
    range ``"lo-hi"`` (secondary: withheld because it would give a small cell back).
    """
    threshold = _check_threshold(threshold)
    eqs = [(t, tuple(p)) for t, p in equations]
    hidden_set = set(hidden)
    for name in {t for t, _ in eqs} | {p for _, ps in eqs for p in ps} | hidden_set:
        if name not in values:
            raise InputError(f"protect_counts: no value for {name!r} (has {sorted(values)})")
    vals = {k: int(v) for k, v in values.items()}
    negative = sorted(k for k, v in vals.items() if v < 0)
    if negative:
        raise InputError(f"protect_counts: counts cannot be negative: {negative}")
    wrong = [(t, ps) for t, ps in eqs if vals[t] != sum(vals[p] for p in ps)]
    if wrong:
        raise InputError(
            f"protect_counts: the values do not satisfy {wrong[:3]} (total = sum of parts); "
            "pass only relations that hold"
        )
    published = [k for k in vals if k not in hidden_set]
    if threshold == 0:
        return {k: vals[k] for k in published}
    # Hidden cells (differences nobody prints) are modelled as if the reader knew them as they
    # would be shown ("<5", or exact): a reader stronger than the real one, so what is safe for
    # this reader is safe, and the ranges printed (derived from its knowledge) tell the real
    # reader nothing more. Withholding a hidden cell from this reader costs nothing printed.
    primary = {k for k in vals if is_small(vals[k], threshold)}
    # With threshold 2, "<2" is exactly 1: the display itself tells, and no neighbour can help it.
    sensitive = sorted(k for k in primary if threshold > 2 or k in hidden_set)
    secondary: set[str] = set()
    reader = _Reader(sorted(vals), eqs)

    def shown_bounds() -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for k, value in vals.items():
            if k in secondary:
                out[k] = (0.0, _INF)
            elif k in primary:
                out[k] = (1.0, float(threshold - 1))
            else:
                out[k] = (float(value),) * 2
        return out

    for _ in range(2 * len(vals) + 1):
        bounds = shown_bounds()
        leaked = [k for k in sensitive if (b := reader.bounds_of(bounds, k))[0] == b[1]]
        if not leaked:
            break
        # Among the cells that hold a leaked cell in place (nonzero multipliers of the reader's
        # linear programs) withhold a hidden one first (nothing printed changes), else the
        # smallest exact count (least information lost), else another small cell as a range
        # (small cells holding each other: b + d = c2 with all three "<3").
        support = reader.support(bounds, leaked[0]) - secondary
        candidates = sorted((c for c in support if c in hidden_set and c not in leaked[:1]), key=lambda c: (vals[c], c))
        candidates += sorted(
            (c for c in support if c in published and c not in primary and vals[c] > 0), key=lambda c: (vals[c], c)
        )
        candidates += sorted(
            (c for c in support if c in published and c in primary and c not in leaked[:1]), key=lambda c: (vals[c], c)
        )
        if not candidates:
            # Nothing left to withhold around it (cannot happen while a total is shown exactly):
            # withhold every count rather than publish a recoverable cell.
            secondary |= {k for k in published if k not in primary}
            break
        primary.discard(candidates[0])
        secondary.add(candidates[0])
    bounds = shown_bounds()
    display: dict[str, int | str] = {}
    for k in published:
        if k in secondary:
            lo, hi = reader.bounds_of(bounds, k)
            display[k] = vals[k] if lo == hi else format_range(lo, hi)
        elif k in primary:
            display[k] = f"<{threshold}"
        else:
            display[k] = vals[k]
    return display


# --------------------------------------------------------------------------- one study's counts

# "outcome common (79% >= 15%)": an observed percentage of patients in the E-value's method.
_OBSERVED_PERCENT = re.compile(r"\(\d+(?:\.\d+)?%\s*(?=>=|<|>)")

# The eligible line of the attrition log says "12 exposed (...), 321 unexposed".
_ELIGIBLE_SPLIT = re.compile(r"^\s*(\d+) exposed\b.*?,\s*(\d+) unexposed\b", re.DOTALL)

#: The result's count names (study/results.py) and the names the disclosure family uses for them.
COUNT_ALIASES = {"indexed": "screened", "comparator": "unexposed", "matched_comparator": "matched_unexposed"}


def _eligible_split(study: Any) -> re.Pattern[str]:
    """The eligible line's "<x> <exposure label> (...), <y> <comparator label>" (cohort builder), or the
    generic "x exposed, y unexposed"."""
    exposure = getattr(getattr(study, "exposure", None), "label", None)
    comparator = getattr(getattr(study, "comparator", None), "label", None)
    if not isinstance(exposure, str) or not isinstance(comparator, str):
        return _ELIGIBLE_SPLIT
    return re.compile(
        rf"^\s*(\d+) (?:exposed\b|{re.escape(exposure)}(?!\w)).*?,\s*(\d+) "
        rf"(?:unexposed\b|{re.escape(comparator)}(?!\w))",
        re.DOTALL,
    )


def report_times(study: Any, horizon: float) -> list[float]:
    """The report times of a curve (days): ``[analysis] km_times_days`` up to ``horizon``, else 0 to the
    horizon in six equal steps. Every output of a curve (table, figure, numbers at risk) uses these."""
    analysis = getattr(study, "analysis", None)
    times = sorted({float(t) for t in getattr(analysis, "km_times_days", ()) or () if float(t) <= horizon})
    if not times:
        times = sorted({round(float(t), 6) for t in np.linspace(0.0, float(horizon), 7)})
    return times


@dataclass(frozen=True)
class StudyDisclosure:
    """How every count of one study run is shown, decided once for every output.

    Attributes
    ----------
    threshold : the study's small-cell threshold.
    counts : display of ``screened``, ``excluded`` (screened - eligible), ``eligible``, ``exposed``,
        ``unexposed`` and, when
        matching ran, ``matched``, ``matched_exposed``, ``matched_unexposed``,
        ``unmatched_exposed``, ``unmatched_unexposed``.
    attrition : per attrition row, (remaining, excluded) as shown.
    at_risk : numbers at risk of the primary (else first) Kaplan-Meier outcome (rows: the groups,
        columns: :func:`report_times`) as shown; None without a KM result.
    at_risk_by_outcome : the same, per outcome name, for every outcome with a Kaplan-Meier result.
    subgroup_counts : ``(covariate, level)`` -> (patients, events) of a subgroup level as shown.
    count_words : the study's arm labels: a number right before one is a count of people in free text.
    trial_counts : per target-trial outcome, ``eligible`` (at the index), ``started`` / ``not_started``
        (within the grace window) and ``events_start`` / ``events_no_start`` (outcome events counted in
        each strategy's clones) as shown (see :func:`_trial_family`).
    estimate_counts : ``(outcome, population)`` -> (patients, events) as shown.
    ranges : true value -> display of every count withheld as a range, for free text.
    few_exposed / few_matched : an arm of the eligible / matched cohort has fewer patients
        than the threshold, so summary statistics of it (dose, SMDs) are withheld.
    table_one : ``("before" | "after", row label, arm column "0" | "1")`` -> display of that
        ``n (%)`` cell's count (its complement in the arm and the unmatched patients with that
        characteristic, before minus after, are protected too).
    """

    threshold: int
    counts: dict[str, int | str]
    attrition: tuple[tuple[int | str, int | str], ...]
    at_risk: pd.DataFrame | None
    estimate_counts: dict[tuple[str, str], tuple[int | str, int | str]]
    ranges: dict[int, str]
    few_exposed: bool
    few_matched: bool
    table_one: dict[tuple[str, str, str], int | str] = field(default_factory=dict)
    at_risk_by_outcome: dict[str, pd.DataFrame] = field(default_factory=dict)
    subgroup_counts: dict[tuple[str, str], tuple[int | str, int | str]] = field(default_factory=dict)
    count_words: tuple[str, ...] = ()
    trial_counts: dict[str, dict[str, int | str]] = field(default_factory=dict)

    def count(self, name: str, value: object = None) -> object:
        """The display of a named count (``counts`` keys, or ``attrition_remaining_<i>`` /
        ``attrition_excluded_<i>``); ``value`` by the plain rule when the name is unknown.

        The result's own names (``indexed``, ``comparator``, ``matched_comparator``) are the same
        counts as ``screened``, ``unexposed``, ``matched_unexposed``.
        """
        name = COUNT_ALIASES.get(name, name)
        if name in self.counts:
            return self.counts[name]
        match = re.fullmatch(r"attrition_(remaining|excluded)_(\d+)", name)
        if match and int(match.group(2)) < len(self.attrition):
            return self.attrition[int(match.group(2))][0 if match.group(1) == "remaining" else 1]
        return suppress_small_cells(value, self.threshold)

    def text(self, text: str) -> str:
        """Free text (reasons, notes) with every count of people suppressed and no withheld count exact.

        The E-value's "outcome common (79% >= 15%)" loses its observed percentage when the matched
        cohort's size is not shown exactly (events / percentage would give it back).
        """
        out = suppress_counts_in_text(text, self.threshold, self.ranges, self.count_words)
        if not isinstance(self.counts.get("matched", 0), int):
            out = _OBSERVED_PERCENT.sub("(", out)
        return out


def _arm_count(frame: pd.DataFrame | None, arm: int) -> int:
    if frame is None or "exposed" not in frame.columns:
        return 0
    return int((frame["exposed"] == arm).sum())


# Results are frozen, so one decision per result object serves every output of it.
_DISCLOSURES: dict[int, tuple[weakref.ref, StudyDisclosure]] = {}


def study_disclosure(result: Any) -> StudyDisclosure:
    """Decide how every count of a :class:`~retrocohort.study.results.StudyResult` is shown (cached per result).

    See :func:`decide_disclosure`.
    """
    cached = _DISCLOSURES.get(id(result))
    if cached is not None and cached[0]() is result:
        return cached[1]
    decision = decide_disclosure(result)
    try:
        key = id(result)

        def forget(_ref: Any, key: int = key) -> None:
            _DISCLOSURES.pop(key, None)

        _DISCLOSURES[key] = (weakref.ref(result, forget), decision)
    except TypeError:  # not weak-referenceable (a plain stand-in): no cache
        pass
    return decision


def decide_disclosure(result: Any) -> StudyDisclosure:
    """Decide how every count of a :class:`~retrocohort.study.results.StudyResult` is shown.

    Builds the count family (attrition chain, eligible = exposed + unexposed, each arm =
    matched + unmatched, numbers at risk at the report times, patients and events of the
    estimates, and the differences between them a reader can take) and protects it with
    :func:`protect_counts`. Every output (results.json, the CSVs, the figures, the HTML,
    the printed summary) shows counts through this one object, so a count is shown the
    same way everywhere.
    """
    study = getattr(result, "study", None)
    threshold = _check_threshold(
        int(getattr(getattr(study, "report", None), "small_cell_threshold", DEFAULT_THRESHOLD))
    )
    values: dict[str, int] = {}
    equations: list[Equation] = []
    hidden: list[str] = []

    attrition: Any = getattr(result, "attrition", None)
    rows = 0 if attrition is None else len(attrition)
    remaining = [int(v) for v in attrition["remaining"]] if rows else []
    excluded = [int(v) for v in attrition["excluded"]] if rows else []
    for i in range(rows):
        values[f"attrition_remaining_{i}"] = remaining[i]
        values[f"attrition_excluded_{i}"] = excluded[i]
        if i > 0 and remaining[i - 1] == remaining[i] + excluded[i]:
            equations.append((f"attrition_remaining_{i - 1}", (f"attrition_remaining_{i}", f"attrition_excluded_{i}")))
    counts = {COUNT_ALIASES.get(k, k): v for k, v in (getattr(result, "counts", {}) or {}).items()}
    eligible_split = _eligible_split(study)
    for key in ("screened", "eligible", "exposed", "unexposed"):
        if counts.get(key) is not None:
            values[key] = int(counts[key])
    if rows and "screened" in values:
        equations.append(("screened", ("attrition_remaining_0",)))
    if rows and "eligible" in values:
        equations.append(("eligible", (f"attrition_remaining_{rows - 1}",)))
    if rows > 1 and remaining[0] >= remaining[-1]:
        # The flow diagram's and the printed summary's "excluded" total.
        values["excluded"] = remaining[0] - remaining[-1]
        equations.append(("attrition_remaining_0", (f"attrition_remaining_{rows - 1}", "excluded")))
    arms_add_up = {"eligible", "exposed", "unexposed"} <= set(values) and (
        values["eligible"] == values["exposed"] + values["unexposed"]
    )
    if arms_add_up:
        equations.append(("eligible", ("exposed", "unexposed")))
    # "x exposed, y unexposed" on the eligible line (before any complete-case step).
    for i in range(rows):
        reason = attrition["reason"].iloc[i] if "reason" in attrition.columns else None
        match = eligible_split.match(reason) if isinstance(reason, str) else None
        if match is None:
            continue
        x, y = int(match.group(1)), int(match.group(2))
        values[f"row{i}_exposed"], values[f"row{i}_unexposed"] = x, y
        if x + y == remaining[i]:
            equations.append((f"attrition_remaining_{i}", (f"row{i}_exposed", f"row{i}_unexposed")))
        for arm in ("exposed", "unexposed"):
            if arm in values and values[f"row{i}_{arm}"] >= values[arm]:
                # Complete-case exclusions per arm: a difference anyone can take.
                values[f"row{i}_{arm}_dropped"] = values[f"row{i}_{arm}"] - values[arm]
                hidden.append(f"row{i}_{arm}_dropped")
                equations.append((f"row{i}_{arm}", (arm, f"row{i}_{arm}_dropped")))

    matched = getattr(result, "matched", None)
    # The matched frame holds each matched patient once (with replacement too: a reused control is
    # one row with a larger weight), so matched + unmatched = the arm; checked below (no negative rest).
    unique = matched is not None
    if matched is not None:
        me, mu = int(counts.get("matched_exposed") or 0), int(counts.get("matched_unexposed") or 0)
        values.update(matched_exposed=me, matched_unexposed=mu, matched=me + mu)
        equations.append(("matched", ("matched_exposed", "matched_unexposed")))
        if unique and "exposed" in values and "unexposed" in values:
            values["unmatched_exposed"] = values["exposed"] - me
            values["unmatched_unexposed"] = values["unexposed"] - mu
            if min(values["unmatched_exposed"], values["unmatched_unexposed"]) >= 0:
                equations.append(("exposed", ("matched_exposed", "unmatched_exposed")))
                equations.append(("unexposed", ("matched_unexposed", "unmatched_unexposed")))
            else:
                del values["unmatched_exposed"], values["unmatched_unexposed"]

    # Numbers at risk at the report times of each Kaplan-Meier outcome: each a count, and each drop
    # between two a hidden difference.
    at_risk_true: dict[str, pd.DataFrame] = {}
    at_risk_times: dict[str, list[float]] = {}
    for outcome in (getattr(result, "outcomes", None) or {}).values():
        km = getattr(outcome, "km", None)
        if km is None or not callable(getattr(km, "at_risk", None)):
            continue
        times = report_times(study, float(outcome.horizon_days))
        frame = km.at_risk(times)
        at_risk_true[outcome.name], at_risk_times[outcome.name] = frame, times
        for g in frame.index:
            arm_total = None
            if matched is not None and unique and str(g) in ("0", "1"):
                arm_total = "matched_exposed" if str(g) == "1" else "matched_unexposed"
            previous = arm_total
            for j, _t in enumerate(times):
                name = f"at_risk_{outcome.name}_{g}_{j}"
                values[name] = int(frame.loc[g].iloc[j])
                if previous is not None and values[previous] >= values[name]:
                    drop = f"{name}_drop"
                    values[drop] = values[previous] - values[name]
                    hidden.append(drop)
                    equations.append((previous, (name, drop)))
                previous = name

    # Patients and events of the estimates; events of the full cohort minus those of the
    # matched cohort are the events among the unmatched.
    estimate_vars: dict[tuple[str, str], tuple[str, str]] = {}
    for e in getattr(result, "estimates", ()) or ():
        pair = (e.outcome, e.population)
        if pair in estimate_vars:
            continue
        n_name = f"{e.outcome}_{e.population}_n"
        ev_name = f"{e.outcome}_{e.population}_events"
        values[n_name], values[ev_name] = int(e.n), int(e.n_events)
        if e.population == "matched" and "matched" in values and values["matched"] == int(e.n):
            equations.append(("matched", (n_name,)))
        if e.population in ("full", "iptw") and values.get("eligible") == int(e.n):
            equations.append(("eligible", (n_name,)))
        estimate_vars[pair] = (n_name, ev_name)
    outcome_names = list(dict.fromkeys(e.outcome for e in getattr(result, "estimates", ()) or ()))
    for outcome in outcome_names:
        # IPTW weighs the full cohort: the same patients, the same events.
        full, iptw = estimate_vars.get((outcome, "full")), estimate_vars.get((outcome, "iptw"))
        if full and iptw:
            equations.append((full[1], (iptw[1],)))
    if unique:
        for outcome in outcome_names:
            full = estimate_vars.get((outcome, "full")) or estimate_vars.get((outcome, "iptw"))
            sub = estimate_vars.get((outcome, "matched"))
            if full and sub and values[full[1]] >= values[sub[1]]:
                diff = f"{outcome}_unmatched_events"
                values[diff] = values[full[1]] - values[sub[1]]
                hidden.append(diff)
                equations.append((full[1], (sub[1], diff)))

    subgroup_vars = _subgroup_family(result, values, equations, estimate_vars)
    trial_vars = _trial_family(result, values, equations, hidden)
    table_one_vars = _table_one_family(result, values, equations, hidden, unique)
    # Only relations that hold (an inconsistent log from a cohort builder is its own problem, and a
    # relation that does not hold tells a reader nothing exact).
    equations = [
        (t, ps)
        for t, ps in equations
        if t in values and all(p in values for p in ps) and values[t] == sum(values[p] for p in ps)
    ]
    display = protect_counts(values, equations, threshold, hidden=hidden)
    ranges = {
        values[k]: str(v)
        for k, v in display.items()
        if isinstance(v, str) and not v.startswith("<") and not k.startswith("t1|")
    }
    at_risk_shown = {
        name: pd.DataFrame(
            [[display[f"at_risk_{name}_{g}_{j}"] for j in range(len(at_risk_times[name]))] for g in frame.index],
            index=frame.index,
            columns=frame.columns,
            dtype=object,
        )
        for name, frame in at_risk_true.items()
    }
    primary = getattr(result, "primary", None)
    first_km = primary if primary in at_risk_shown else next(iter(at_risk_shown), None)
    shown_counts: dict[str, int | str] = {
        k: display[k]
        for k in (
            "screened",
            "excluded",
            "eligible",
            "exposed",
            "unexposed",
            "matched",
            "matched_exposed",
            "matched_unexposed",
            "unmatched_exposed",
            "unmatched_unexposed",
        )
        if k in display
    }
    few_exposed = any(is_small(values.get(k), threshold) for k in ("exposed", "unexposed"))
    few_matched = matched is not None and any(
        is_small(values.get(k), threshold) for k in ("matched_exposed", "matched_unexposed")
    )
    return StudyDisclosure(
        threshold=threshold,
        counts=shown_counts,
        attrition=tuple((display[f"attrition_remaining_{i}"], display[f"attrition_excluded_{i}"]) for i in range(rows)),
        at_risk=at_risk_shown.get(first_km) if first_km is not None else None,
        estimate_counts={k: (display[n], display[ev]) for k, (n, ev) in estimate_vars.items()},
        ranges=ranges,
        few_exposed=few_exposed,
        few_matched=few_matched,
        table_one={key: display[name] for key, name in table_one_vars.items()},
        at_risk_by_outcome=at_risk_shown,
        subgroup_counts={key: (display[n], display[ev]) for key, (n, ev) in subgroup_vars.items()},
        trial_counts={o: {k: display[v] for k, v in names.items()} for o, names in trial_vars.items()},
        count_words=tuple(
            str(w)
            for w in (
                getattr(getattr(study, "exposure", None), "label", None),
                getattr(getattr(study, "comparator", None), "label", None),
            )
            if isinstance(w, str)
        ),
    )


def _subgroup_family(
    result: Any,
    values: dict[str, int],
    equations: list[Equation],
    estimate_vars: Mapping[tuple[str, str], tuple[str, str]],
) -> dict[tuple[str, str], tuple[str, str]]:
    """Add each subgroup level's patients and events to the family: the levels of one covariate add
    up to the population the subgroup models were fitted in (and its events), so one small level
    could be given back by subtraction. Returns ``(covariate, level)`` -> (patients, events) names."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for sg in getattr(result, "subgroups", ()) or ():
        levels = getattr(sg, "levels", None)
        if not isinstance(levels, pd.DataFrame) or not {"level", "n", "n_events"} <= set(levels.columns):
            continue
        names_n, names_ev = [], []
        for _, row in levels.iterrows():
            key = (str(sg.covariate), str(row["level"]))
            n_name, ev_name = f"sg|{key[0]}|{key[1]}|n", f"sg|{key[0]}|{key[1]}|events"
            if pd.isna(row["n"]) or pd.isna(row["n_events"]) or n_name in values:
                continue
            values[n_name], values[ev_name] = int(row["n"]), int(row["n_events"])
            names_n.append(n_name)
            names_ev.append(ev_name)
            out[key] = (n_name, ev_name)
        population = "matched" if "matched" in str(getattr(sg, "model", "")).lower() else "full"
        total = estimate_vars.get((sg.outcome, population))
        if names_n:
            # Kept only when they hold (the filter in decide_disclosure): levels may leave out patients
            # with a missing value, and then the sum tells a reader nothing exact.
            equations.append(("matched" if population == "matched" else "eligible", tuple(names_n)))
            if total is not None:
                equations.append((total[0], tuple(names_n)))
                equations.append((total[1], tuple(names_ev)))
    return out


#: The target trial's counts that outputs publish, per outcome.
TRIAL_COUNTS = ("eligible", "started", "not_started", "events_start", "events_no_start")


def _trial_family(
    result: Any, values: dict[str, int], equations: list[Equation], hidden: list[str]
) -> dict[str, dict[str, str]]:
    """Add each target-trial outcome's counts to the family: eligible at the index = started within the
    grace window + not started; the trial's cohort holds the study's eligible patients and those the
    criteria left out of the trial removed (a difference a reader can take), and its starters hold the
    exposed arm. Returns outcome -> count name (``TRIAL_COUNTS``) -> variable name."""
    out: dict[str, dict[str, str]] = {}
    for name, trial in (getattr(result, "target_trial", None) or {}).items():
        n_eligible, n_started = getattr(trial, "n_eligible", None), getattr(trial, "n_started", None)
        if not isinstance(n_eligible, int) or not isinstance(n_started, int) or n_eligible <= 0:
            continue
        names = {k: f"tt|{name}|{k}" for k in TRIAL_COUNTS[:3]}
        values[names["eligible"]], values[names["started"]] = n_eligible, n_started
        values[names["not_started"]] = n_eligible - n_started
        equations.append((names["eligible"], (names["started"], names["not_started"])))
        counts = getattr(getattr(getattr(trial, "bootstrap", None), "point", None), "counts", None)
        if isinstance(counts, pd.DataFrame) and "events" in counts.columns:
            for strategy in ("start", "no_start"):
                if strategy in counts.index:
                    names[f"events_{strategy}"] = f"tt|{name}|events_{strategy}"
                    values[names[f"events_{strategy}"]] = int(
                        counts["events"].to_numpy()[list(counts.index).index(strategy)]
                    )
        # Differences a reader can take against the study's own counts (kept only where they hold exactly).
        for total, part, what in ((names["eligible"], "eligible", "extra"), (names["started"], "exposed", "extra")):
            if part in values and values[total] >= values[part]:
                diff = f"{total}|{what}"
                values[diff] = values[total] - values[part]
                hidden.append(diff)
                equations.append((total, (part, diff)))
        # The patients the trial keeps and the study does not are often exactly those its not_applied criteria
        # excluded (a small "died within 48 h" line must not come back as trial eligible - eligible).
        attrition = getattr(result, "attrition", None)
        extra = f"{names['eligible']}|extra"
        if extra in values and attrition is not None and len(attrition) and "step" in attrition.columns:
            steps = [str(x) for x in attrition["step"]]
            rows = [f"attrition_excluded_{i}" for i, st in enumerate(steps) if st in set(trial.not_applied)]
            if rows:
                equations.append((extra, tuple(rows)))
        out[name] = names
    return out


def _table_one_family(
    result: Any, values: dict[str, int], equations: list[Equation], hidden: list[str], unique: bool
) -> dict[tuple[str, str, str], str]:
    """Add Table 1's counts to the family: each ``n (%)`` cell, its complement in the arm, and the
    difference between before and after matching (the unmatched patients with that characteristic).

    Returns ``(when, row label, arm column) -> variable name``; weighted tables (non-whole counts)
    and tables whose ``n`` row does not match the arm counts are left to the plain rule.
    """
    out: dict[tuple[str, str, str], str] = {}
    arm_names = {
        "before": {"0": "unexposed", "1": "exposed"},
        "after": {"0": "matched_unexposed", "1": "matched_exposed"},
    }
    for when in ("before", "after"):
        table = getattr(result, f"table_one_{when}", None)
        if not isinstance(table, pd.DataFrame) or "n" not in [str(i).strip() for i in table.index]:
            continue
        for column in table.columns:
            arm = str(column).strip()
            total = arm_names[when].get(arm)
            if total is None or total not in values:
                continue
            n_cell = str(table[column].iloc[[str(i).strip() for i in table.index].index("n")]).strip()
            if not re.fullmatch(r"\d+(\.0+)?", n_cell) or int(float(n_cell)) != values[total]:
                continue
            cells: dict[str, int] = {}
            for label, cell in table[column].items():
                match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*\(", str(cell))
                if match is None or ("(%)" not in str(label) and str(label) == str(label).lstrip()):
                    continue
                count = float(match.group(1))
                if count != int(count):
                    cells = {}
                    break  # a weighted table: its counts are not patients to subtract
                cells[str(label)] = int(count)
            for label, count in cells.items():
                if count > values[total]:
                    continue
                name = f"t1|{when}|{label}|{arm}"
                rest = f"{name}|rest"
                values[name], values[rest] = count, values[total] - count
                hidden.append(rest)
                equations.append((total, (name, rest)))
                out[(when, label, arm)] = name
    if unique:
        for (when, label, arm), name in list(out.items()):
            after = out.get(("after", label, arm)) if when == "before" else None
            if after is not None and values[name] >= values[after]:
                diff = f"{name}|unmatched"
                values[diff] = values[name] - values[after]
                hidden.append(diff)
                equations.append((name, (after, diff)))
                unmatched = "unmatched_exposed" if arm == "1" else "unmatched_unexposed"
                if unmatched in values and values[unmatched] >= values[diff]:
                    # ... and they are some of the unmatched patients of that arm.
                    values[f"{diff}|rest"] = values[unmatched] - values[diff]
                    hidden.append(f"{diff}|rest")
                    equations.append((unmatched, (diff, f"{diff}|rest")))
    return out


def format_display(shown: object) -> str:
    """A count as :class:`StudyDisclosure` shows it, as report text: ``"1,234"``, ``"<5"``, ``"96-99"``, "—"."""
    if shown is None or (isinstance(shown, float) and math.isnan(shown)):
        return "\u2014"
    if isinstance(shown, bool):
        return str(shown)
    if isinstance(shown, Real) and float(shown) == int(cast(Any, shown)):
        return f"{int(cast(Any, shown)):,}"
    return str(shown)


def coarsen_curve(table: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """A survival or cumulative-incidence table with steps of at least ``threshold`` events.

    Parameters
    ----------
    table : per-event-time rows (``time``, ``n_event``, the curve's value and limits; optionally
        ``group``, ``n_censor``), as ``kaplan_meier(...).table`` or ``cumulative_incidence(...).table``.
    threshold : the small-cell threshold; 0 returns the table unchanged.

    Returns
    -------
    Per group, only the rows at which the events since the last kept row (weighted, as the
    table counts them) reach the threshold, with ``n_event`` = those events and ``n_censor`` = 0.
    The values kept are the curve's own at those times, so the coarse curve is the curve read
    at fewer times: every step drawn or tabulated is at least ``threshold`` events, no step
    of one death gives that death back, and no censor tick marks one patient's last day.
    Events after the last kept row (fewer than the threshold) are not shown, and the curve
    stops before the first time after which fewer than ``threshold`` remain at risk (``n_risk``
    minus the events there), as curves are commonly cut when few patients remain.
    """
    threshold = _check_threshold(threshold)
    if threshold == 0 or table.empty:
        return table.copy()
    if "n_event" not in table.columns or "time" not in table.columns:
        raise InputError(f"coarsen_curve: the table needs columns time and n_event (has {list(table.columns)})")
    parts = (
        [table] if "group" not in table.columns else [table[table["group"] == g] for g in dict.fromkeys(table["group"])]
    )
    kept = []
    for part in parts:
        part = part.sort_values("time", kind="stable")
        events = part["n_event"].to_numpy(dtype=float)
        at_risk = part["n_risk"].to_numpy(dtype=float) if "n_risk" in part.columns else None
        rows, steps, since = [], [], 0.0
        for k, d in enumerate(events):
            if at_risk is not None and at_risk[k] - d < threshold - 1e-9:
                # Fewer than the threshold left after this time: the curve's level would be a
                # count of them (survival x arm size = those alive, without censoring). Stop here.
                break
            since += d
            if since >= threshold - 1e-9:
                rows.append(k)
                steps.append(since)
                since = 0.0
        coarse = part.iloc[rows].copy()
        coarse["n_event"] = steps
        if coarse.empty and len(part):
            # Fewer events than the threshold in this arm: a flat curve from time 0, so the arm
            # is still drawn (and named in the legend) without showing any of its steps.
            start = part.iloc[:1].copy()
            for column in start.columns:
                if column not in ("group",) and pd.api.types.is_numeric_dtype(start[column]):
                    start[column] = np.nan
            start["time"], start["n_event"] = 0.0, 0.0
            for column, flat in (("survival", 1.0), ("cif", 0.0)):
                if column in start.columns:
                    start[column] = flat
                    for limit in ("lower", "upper"):
                        if limit in start.columns:
                            start[limit] = flat if column == "survival" else np.nan
            coarse = start
        kept.append(coarse)
    out = pd.concat(kept, ignore_index=True) if kept else table.iloc[:0].copy()
    if "n_censor" in out.columns:
        out["n_censor"] = 0.0
    return out
