"""Tables of a study for the report and the CSV outputs, read from a :class:`StudyResult`.

Every function formats numbers the result already holds; nothing is
estimated here. Counts go through the small-cell rule of
:mod:`.suppression` with the study's threshold (``[report] small_cell_threshold``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._labels import units
from ..errors import InputError
from .formatting import (
    MODEL_LABELS,
    POPULATION_LABELS,
    exclusion_reason,
    format_number,
    format_p,
    format_ratio,
    is_number,
    label_of,
    outcome_labels,
    resolve_labels,
    step_label,
    study_labels,
)
from .suppression import (
    DEFAULT_THRESHOLD,
    format_count,
    format_display,
    format_range,
    is_small,
    study_disclosure,
    suppress_counts_in_text,
    suppress_small_cells,
)

__all__ = [
    "arm_labels",
    "at_risk_table",
    "attrition_table",
    "balance_table",
    "estimates_frame",
    "index_label",
    "outcome_label",
    "outcome_names",
    "ph_test_table",
    "planted_for",
    "primary_key",
    "published_for",
    "results_table",
    "strategy_labels",
    "suppress_table_one",
    "table_one_combined",
    "target_trial_table",
    "target_trial_weights_table",
    "threshold_of",
]


def _study(result: Any) -> Any:
    return getattr(result, "study", None)


def outcome_names(result: Any) -> list[str]:
    """The study's outcome names in the study's order (those of the estimates when there is no study)."""
    outcomes = getattr(_study(result), "outcomes", None)
    if outcomes:
        return [str(k) for k in outcomes]
    return list(dict.fromkeys(str(e.outcome) for e in getattr(result, "estimates", ())))


def outcome_label(result: Any, outcome: str) -> str:
    """The study's label of an outcome (``[outcomes.<name>] label``); the name when unknown."""
    return outcome_labels(_study(result)).get(outcome, outcome.replace("_", " "))


def is_competing(result: Any, outcome: str) -> bool:
    """Whether the study gives the outcome a competing event (CIF, Gray, Fine-Gray)."""
    spec = (getattr(_study(result), "outcomes", None) or {}).get(outcome)
    if spec is not None:
        return getattr(spec, "competing", None) is not None
    return any(e.model.startswith("fine_gray") for e in getattr(result, "estimates", ()) if e.outcome == outcome)


def primary_key(result: Any, outcome: str) -> tuple[str, str, str]:
    """(outcome, model, population) of the estimate an outcome is reported by: the adjusted model
    (Fine-Gray with a competing event, else Cox) in the matched cohort; published figures sit beside it."""
    return outcome, "fine_gray_adjusted" if is_competing(result, outcome) else "cox_adjusted", "matched"


def index_label(result: Any) -> str:
    """The study's index label ("ICU admission", "norepinephrine start", ...): the x axis says "Days since <it>"."""
    return str(getattr(getattr(_study(result), "index", None), "label", "") or "index")


def threshold_of(result: Any) -> int:
    """The study's small-cell threshold (default 5 when the result carries no study)."""
    study = getattr(result, "study", None)
    report = getattr(study, "report", None)
    value = getattr(report, "small_cell_threshold", DEFAULT_THRESHOLD)
    return int(value) if value is not None else DEFAULT_THRESHOLD


def arm_labels(result: Any) -> dict[int, str]:
    """``{0: comparator, 1: exposed}`` in the study's words (``[comparator] label``, ``[exposure] label``)."""
    study = _study(result)
    comparator = getattr(getattr(study, "comparator", None), "label", None) or "Comparator"
    exposed = getattr(getattr(study, "exposure", None), "label", None) or "Exposed"
    return {0: str(comparator), 1: str(exposed)}


def published_for(result: Any, outcome: str) -> tuple[float, float, float] | None:
    """Published (estimate, lower, upper) of an outcome from ``[report] published``, or None."""
    report = getattr(_study(result), "report", None)
    value = (getattr(report, "published", None) or {}).get(outcome)
    if not value:
        return None
    estimate, lower, upper = (float(v) for v in value)  # the spec types it as a 3-tuple
    return estimate, lower, upper


def planted_for(result: Any, outcome: str) -> float | None:
    """The planted (true) ratio of an outcome on synthetic data (``planted[outcome]["value"]``), or None."""
    planted = getattr(result, "planted", None) or {}
    entry = planted.get(outcome)
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def estimates_frame(result: Any) -> pd.DataFrame:
    """The estimates as numbers, one row per (outcome, model, population), counts suppressed.

    Columns ``outcome``, ``model``, ``population``, ``estimate``, ``lower``,
    ``upper``, ``p``, ``n``, ``n_events``, ``variance``, ``label``,
    ``note``; the schema of ``results.json``'s ``estimates``.
    """
    threshold = threshold_of(result)
    disclosure = study_disclosure(result) if hasattr(result, "attrition") else None
    rows = []
    for e in getattr(result, "estimates", ()):
        shown: Any = disclosure.estimate_counts.get((e.outcome, e.population)) if disclosure else None
        if shown is None:
            shown = (suppress_small_cells(e.n, threshold), suppress_small_cells(e.n_events, threshold))
        rows.append(
            {
                "outcome": e.outcome,
                "model": e.model,
                "population": e.population,
                "estimate": float(e.estimate),
                "lower": float(e.lower),
                "upper": float(e.upper),
                "p": float(e.p),
                "n": shown[0],
                "n_events": shown[1],
                "variance": e.variance,
                "label": e.label,
                "note": e.note,
            }
        )
    columns = [
        "outcome",
        "model",
        "population",
        "estimate",
        "lower",
        "upper",
        "p",
        "n",
        "n_events",
        "variance",
        "label",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def _estimate_count(disclosure: Any, estimate: Any, which: int, threshold: int) -> str:
    """Patients (0) or events (1) of an estimate as every output shows them."""
    shown = disclosure.estimate_counts.get((estimate.outcome, estimate.population)) if disclosure else None
    if shown is not None:
        return format_display(shown[which])
    return format_count(estimate.n if which == 0 else estimate.n_events, threshold)


def _ratio_name(model: str) -> str:
    return "sHR" if model.startswith("fine_gray") else "HR"


def results_table(result: Any) -> pd.DataFrame:
    """The results table as printed: one row per estimate, skipped models last.

    Columns: ``Outcome``, ``Model``, ``Population``, ``Patients``, ``Events``,
    ``Ratio`` (HR or sHR), ``Estimate (95% CI)``, ``p``, ``Variance``, and
    when set, ``Published (95% CI)`` (beside the primary estimate of each
    outcome) and ``Planted truth`` (synthetic data). A skipped model is a row
    with ``Estimate (95% CI)`` = "not estimated" and the reason in ``Variance``.
    """
    threshold = threshold_of(result)
    disclosure = study_disclosure(result) if hasattr(result, "attrition") else None
    conf = int(round(100 * float(getattr(getattr(_study(result), "analysis", None), "conf_level", 0.95))))
    estimate_col = f"Estimate ({conf}% CI)"
    names = outcome_names(result)
    show_published = any(published_for(result, o) for o in names)
    show_planted = bool(getattr(result, "synthetic", False)) and any(planted_for(result, o) is not None for o in names)
    rows = []
    for e in getattr(result, "estimates", ()):
        row = {
            "Outcome": outcome_label(result, e.outcome),
            "Model": label_of(MODEL_LABELS, e.model),
            "Population": label_of(POPULATION_LABELS, e.population),
            "Patients": _estimate_count(disclosure, e, 0, threshold),
            "Events": _estimate_count(disclosure, e, 1, threshold),
            "Ratio": _ratio_name(e.model),
            estimate_col: format_ratio(e.estimate, e.lower, e.upper),
            "p": format_p(e.p),
            "Variance": e.variance,
        }
        if show_published:
            published = published_for(result, e.outcome)
            is_primary = primary_key(result, e.outcome) == (e.outcome, e.model, e.population)
            row["Published (95% CI)"] = format_ratio(*published) if (published and is_primary) else ""
        if show_planted:
            truth = planted_for(result, e.outcome)
            row["Planted truth"] = format_number(truth) if truth is not None else ""
        rows.append(row)
    for s in getattr(result, "skipped", ()):
        # Only outcome models are lines of the table (an E-value or matching skip is said in the text).
        if s.outcome not in names or not s.model.startswith(("cox", "fine_gray")):
            continue
        row = {
            "Outcome": outcome_label(result, s.outcome),
            "Model": label_of(MODEL_LABELS, s.model),
            "Population": label_of(POPULATION_LABELS, s.population),
            "Patients": "",
            "Events": "",
            "Ratio": _ratio_name(s.model),
            estimate_col: "not estimated",
            "p": "",
            "Variance": disclosure.text(s.reason) if disclosure else suppress_counts_in_text(s.reason, threshold),
        }
        if show_published:
            row["Published (95% CI)"] = ""
        if show_planted:
            row["Planted truth"] = ""
        rows.append(row)
    columns = ["Outcome", "Model", "Population", "Patients", "Events", "Ratio", estimate_col, "p", "Variance"]
    columns += ["Published (95% CI)"] * show_published + ["Planted truth"] * show_planted
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- Table 1

_COUNT_ROW = re.compile(r"(^n$)|(\(%\))|(n \(%\))", re.IGNORECASE)
_NON_COUNT_COLUMNS = {"smd", "p", "test", "missing", "level", "variable", "characteristic"}


def _label_column(table: pd.DataFrame) -> pd.Series:
    """Row labels of a tableone-style frame: a label column when there is one, else the index."""
    for name in ("variable", "characteristic", "Characteristic", "label", ""):
        if name in table.columns and table[name].dtype == object:
            return table[name].astype(str)
    return pd.Series([str(i) for i in table.index], index=table.index)


def _count_rows(labels: pd.Series) -> np.ndarray:
    """Which rows hold counts: ``n``, any ``(%)`` row, and the indented level rows under a ``(%)`` header."""
    is_count = np.zeros(len(labels), dtype=bool)
    under_percent_header = False
    for k, raw in enumerate(labels):
        stripped = raw.strip()
        indented = raw != raw.lstrip() and stripped != ""
        if indented and under_percent_header:
            is_count[k] = True
            continue
        under_percent_header = bool(re.search(r"\(%\)", stripped))
        is_count[k] = bool(_COUNT_ROW.search(stripped))
    return is_count


def _as_number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


WITHHELD = "withheld"


def suppress_table_one(
    table: pd.DataFrame,
    threshold: int = DEFAULT_THRESHOLD,
    arm_counts: Mapping[str, object] | None = None,
    cell_counts: Mapping[tuple[str, str], object] | None = None,
) -> pd.DataFrame:
    """Table 1 with small counts suppressed: the ``n`` row and every ``n (%)`` cell.

    An ``n (%)`` cell whose n is small becomes ``"<{threshold}"`` whole (the
    percentage would give the count back). A yes/no row (``sepsis = 1 (%)``) whose
    complement (the arm's n minus the cell) is small shows the range a reader could
    derive anyway, without its percentage. Where an arm's n is not shown exactly
    (``arm_counts`` gives it as ``"<5"`` or a range, the way every other output shows
    it), its cells lose their percentages (n = count / percentage). Means, SDs and
    medians of an arm with fewer patients than the threshold, and the SMDs beside
    such an arm, are ``"withheld"``. Missing-value counts are counts and are
    suppressed too.

    Parameters
    ----------
    table : tableone-style frame (rows: ``n``, ``x (mean (SD))``, ``x = level (%)``; columns: arms,
        ``missing``, ``SMD``).
    threshold : the small-cell threshold.
    arm_counts : the display of each arm column's n (e.g. from
        :func:`~retrocohort.report.suppression.study_disclosure`); default: the n row by the plain rule.
    cell_counts : ``(row label, arm column) -> display`` of the ``n (%)`` cells decided with the rest
        of the study's counts (``StudyDisclosure.table_one``); these replace the yes/no complement rule.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"suppress_table_one: expected a DataFrame; got {type(table).__name__}")
    out = table.copy()
    labels = _label_column(out)
    count_rows = _count_rows(labels)
    label_name = next(
        (
            c
            for c in ("variable", "characteristic", "Characteristic", "label", "")
            if c in out.columns and out[c].dtype == object
        ),
        None,
    )
    for column in out.columns:
        if column == label_name:
            continue
        name = str(column[-1] if isinstance(column, tuple) else column).strip().lower()
        if name in _NON_COUNT_COLUMNS - {"missing"}:
            continue
        values = out[column].to_numpy(dtype=object).copy()
        rows = np.ones(len(out), dtype=bool) if name == "missing" else count_rows
        for k in np.flatnonzero(rows):
            v = values[k]
            number = _as_number(v)
            if number is not None:
                # A bare count ("294", or a weighted "70.0" / "36.9" after matching).
                shown = suppress_small_cells(number, threshold)
                values[k] = shown if isinstance(shown, str) else (str(shown) if isinstance(shown, int) else v)
            else:
                values[k] = suppress_small_cells(v, threshold)
        out[column] = pd.Series(values, index=out.index, dtype=object)
    return _protect_table_one(
        table, out, labels, count_rows, label_name, threshold, arm_counts or {}, cell_counts or {}
    )


def _protect_table_one(
    raw: pd.DataFrame,
    out: pd.DataFrame,
    labels: pd.Series,
    count_rows: np.ndarray,
    label_name: Any,
    threshold: int,
    arm_counts: Mapping[str, object],
    cell_counts: Mapping[tuple[str, str], object],
) -> pd.DataFrame:
    """Complements of yes/no rows, percentages of inexact arms, statistics of small arms (see suppress_table_one)."""
    if threshold == 0:
        return out
    stripped = [str(x).strip() for x in labels]
    n_rows = [k for k, x in enumerate(stripped) if x.lower() == "n"]
    if not n_rows:
        return out
    n_row = n_rows[0]
    arm_columns = [c for c in out.columns if c != label_name and str(c).strip().lower() not in _NON_COUNT_COLUMNS]
    # A yes/no row: "x = level (%)" with no indented level rows under it.
    binary = np.array(
        [
            bool(re.search(r"=.*\(%\)", x))
            and not (
                k + 1 < len(labels) and str(labels.iloc[k + 1]) != str(labels.iloc[k + 1]).lstrip() and stripped[k + 1]
            )
            for k, x in enumerate(stripped)
        ]
    )
    small_arm = False
    for column in arm_columns:
        n_true = _as_number(raw[column].iloc[n_row])
        if n_true is None:
            continue
        shown_n: Any = arm_counts.get(str(column).strip())
        if shown_n is None:
            shown_n = suppress_small_cells(n_true, threshold)
        exact = isinstance(shown_n, (int, float)) and not isinstance(shown_n, bool)
        values = out[column].to_numpy(dtype=object).copy()
        values[n_row] = (
            str(int(shown_n))
            if exact and float(shown_n) == int(shown_n)
            else (values[n_row] if exact else str(shown_n))
        )
        few = is_small(n_true, threshold)
        small_arm |= few
        for k in range(len(values)):
            if k == n_row:
                continue
            cell = raw[column].iloc[k]
            if count_rows[k]:
                match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*\(", str(cell))
                if match is None or (isinstance(values[k], str) and values[k].startswith("<")):
                    continue
                count = float(match.group(1))
                decided = cell_counts.get((str(raw.index[k]), str(column).strip()))
                if decided is not None and not isinstance(decided, (int, float)):
                    values[k] = str(decided)  # "<5" or a range: no percentage
                elif not exact:
                    values[k] = f"{count:g}"
                elif decided is not None:
                    continue  # exact, with its percentage
                elif binary[k] and is_small(n_true - count, threshold):
                    values[k] = format_range(max(n_true - threshold + 1, 0), n_true - 1)
            elif few and str(cell).strip() not in ("", "nan"):
                values[k] = WITHHELD
        out[column] = pd.Series(values, index=out.index, dtype=object)
    if small_arm:
        for column in out.columns:
            if str(column).strip().lower() == "smd":
                out[column] = [WITHHELD if str(v).strip() else v for v in out[column]]
    return out


def _arm_columns(table: pd.DataFrame) -> list[Any]:
    return [c for c in table.columns if str(c).strip().lower() not in _NON_COUNT_COLUMNS]


def _rename_arm(column: Any, labels: Mapping[int, str]) -> str:
    text = str(column).strip()
    for value, name in labels.items():
        if text in (str(value), f"{value}.0", name):
            return name
    return text


def table_one_row_label(row: str, labels: Mapping[str, str]) -> str:
    """A Table 1 row (tableone's ``age (mean (SD))``, ``sepsis = 1 (%)``, ``sex = M (%)``) in the study's
    words (``Age, years (mean (SD))``, ``Sepsis (%)``, ``Sex = M (%)``); level rows and ``n`` unchanged."""
    if not row or row != row.lstrip() or row == "n":
        return row
    for name in sorted(labels, key=len, reverse=True):
        label = labels[name]
        for yes in (f"{name} = 1 (%)", f"{name} = 1.0 (%)", f"{name} = True (%)"):
            if row.startswith(yes):
                return f"{label} (%)" + row[len(yes) :]
        if row.startswith((f"{name} (", f"{name} = ")):
            return label + row[len(name) :]
    return row


def table_one_combined(result: Any) -> pd.DataFrame | None:
    """Table 1 before and after matching side by side, counts suppressed.

    Returns a frame indexed by characteristic with two-level columns
    (``Before matching`` / ``After matching``) x (each arm, ``SMD``), or None
    when the result has no Table 1. Rows follow the before-matching table;
    a row missing after matching is blank there.
    """
    before = getattr(result, "table_one_before", None)
    after = getattr(result, "table_one_after", None)
    if before is None and after is None:
        return None
    threshold = threshold_of(result)
    labels = arm_labels(result)
    covariate_names = study_labels(_study(result))
    disclosure = study_disclosure(result) if hasattr(result, "attrition") else None
    parts, keys = [], []
    for title, table in (("Before matching", before), ("After matching", after)):
        if table is None:
            continue
        arm_counts = None
        if disclosure is not None:
            names = ("unexposed", "exposed") if title.startswith("Before") else ("matched_unexposed", "matched_exposed")
            arm_counts = {"0": disclosure.counts.get(names[0]), "1": disclosure.counts.get(names[1])}
        when = "before" if title.startswith("Before") else "after"
        cells = (
            {(label, arm): v for (w, label, arm), v in disclosure.table_one.items() if w == when}
            if disclosure is not None
            else None
        )
        shown = suppress_table_one(table, threshold, arm_counts=arm_counts, cell_counts=cells)
        label_name = next(
            (
                c
                for c in ("variable", "characteristic", "Characteristic", "label", "")
                if c in shown.columns and shown[c].dtype == object
            ),
            None,
        )
        if label_name is not None:
            shown = shown.set_index(label_name)
        shown.index = [table_one_row_label(str(i), covariate_names) for i in shown.index]
        # the count row counts the analysis unit: ICU stays with one index per stay (select = "first_per_stay")
        unit = units(_study(result))
        shown.index = [f"n ({unit})" if str(i) == "n" and unit != "patients" else i for i in shown.index]
        keep = [c for c in shown.columns if str(c).strip().lower() not in {"p", "test"}]
        shown = shown[keep]
        shown.columns = [_rename_arm(c, labels) if str(c).strip().lower() != "smd" else "SMD" for c in shown.columns]
        # Comparator first, then exposed, then the rest (SMD, missing), as the published tables read.
        order = [labels[0], labels[1]]
        cols = [c for c in order if c in shown.columns] + [c for c in shown.columns if c not in order]
        parts.append(shown[cols])
        keys.append(title)
    combined = pd.concat(parts, axis=1, keys=keys, sort=False)
    first_index = list(parts[0].index)
    rest = [i for p in parts[1:] for i in p.index if i not in first_index]
    combined = combined.reindex(first_index + list(dict.fromkeys(rest)))
    combined.index.name = "Characteristic"
    combined = combined.fillna("")
    # tableone prints NaN (an SD or SMD of an arm of one) as "nan"; a journal prints a dash.
    combined = combined.map(lambda v: re.sub(r"\bnan\b", "\u2014", v) if isinstance(v, str) else v)
    # A missing-values column with nothing missing is noise in a published Table 1.
    empty_missing = [
        c
        for c in combined.columns
        if str(c[1]).strip().lower() == "missing" and set(map(str, combined[c])) <= {"", "0"}
    ]
    return combined.drop(columns=empty_missing)


# --------------------------------------------------------------------------- other tables


def _step_labels(study: Any) -> dict[str, str]:
    """Attrition step key -> the study's words for it: each criterion's label, ``prior_<outcome>`` lines."""
    if study is None:
        return {}
    labels = {c.name: c.label for c in getattr(study, "criteria", ())}
    for name, outcome in getattr(study, "outcomes", {}).items():
        label = outcome.label
        # "Death" -> "prior death"; an acronym ("ICU readmission") keeps its capitals
        label = label if len(label) > 1 and label[1].isupper() else label[:1].lower() + label[1:]
        labels[f"prior_{name}"] = f"prior {label}"
    return labels


def attrition_table(result_or_attrition: Any, threshold: int | None = None) -> pd.DataFrame:
    """The attrition log as printed: ``Step``, ``Remaining``, ``Excluded``, ``Reason``, counts suppressed."""
    attrition = getattr(result_or_attrition, "attrition", result_or_attrition)
    if not isinstance(attrition, pd.DataFrame):
        raise InputError("attrition_table: expected a StudyResult or the attrition DataFrame")
    missing = [c for c in ("step", "remaining", "excluded") if c not in attrition.columns]
    if missing:
        raise InputError(f"attrition_table: attrition lacks columns {missing} (has {list(attrition.columns)})")
    t = threshold if threshold is not None else threshold_of(result_or_attrition)
    reason = attrition["reason"] if "reason" in attrition.columns else pd.Series([""] * len(attrition))
    if attrition is not result_or_attrition:
        # A whole result: the counts as every other output shows them (complementary suppression).
        disclosure = study_disclosure(result_or_attrition)
        remaining = [format_display(shown[0]) for shown in disclosure.attrition]
        excluded = [format_display(shown[1]) if k > 0 else "" for k, shown in enumerate(disclosure.attrition)]
        scrub = disclosure.text
    else:
        remaining = [format_count(v, t) for v in attrition["remaining"]]
        excluded = [format_count(v, t) if k > 0 else "" for k, v in enumerate(attrition["excluded"])]

        def scrub(text: str) -> str:
            return suppress_counts_in_text(text, t)

    study = getattr(result_or_attrition, "study", None)
    return pd.DataFrame(
        {
            "Step": [step_label(v, _step_labels(study)) for v in attrition["step"]],
            "Remaining": remaining,
            "Excluded": excluded,
            "Reason": [
                ("" if (r is None or (isinstance(r, float) and np.isnan(r))) else scrub(exclusion_reason(r)))
                for r in reason
            ],
        }
    )


def at_risk_table(
    km_result: Any,
    times: Sequence[float],
    labels: Mapping[Any, str] | Sequence[str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    shown: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Numbers at risk by arm (rows) at ``times`` (columns, days), counts suppressed.

    Uses ``km_result.at_risk(times)`` (rows with time >= t, unweighted) when
    the result has it, else the ``n_risk`` of the first listed time >= t.
    ``shown`` (rows: groups, columns: times) gives the numbers as the study shows them
    everywhere (:func:`~retrocohort.report.suppression.study_disclosure`), ranges included.
    """
    from .figures import _at_risk_counts, _groups, _table_of

    table = _table_of(km_result, "at_risk_table")
    groups = _groups(table)
    names = resolve_labels(groups, labels) if groups != [None] else ["All patients"]
    at = np.asarray(sorted(float(t) for t in times))
    if shown is not None and {float(t) for t in at} <= {float(c) for c in shown.columns}:
        from .figures import _shown_at

        cells = [[format_display(_shown_at(shown, g, t)) for t in at] for g in groups]
    else:
        cells = [[format_count(v, threshold) for v in row] for row in _at_risk_counts(km_result, table, groups, at)]
    frame = pd.DataFrame(cells, index=pd.Index(names, name="Arm"), columns=[f"{t:g}" for t in at])
    frame.columns.name = "Day"
    return frame


def ph_test_table(result_or_ph: Any) -> pd.DataFrame | None:
    """The proportional-hazards test (cox.zph) as printed: ``Term``, ``Chi-square``, ``df``, ``p``."""
    ph = getattr(result_or_ph, "ph_test", result_or_ph)
    table = ph if isinstance(ph, pd.DataFrame) else getattr(ph, "table", None)
    if table is None:
        return None
    if not isinstance(table, pd.DataFrame) or "chisq" not in table.columns:
        raise InputError("ph_test_table: expected cox.zph-style rows with columns chisq, df, p")
    terms = table["term"] if "term" in table.columns else pd.Series(table.index, index=table.index)
    return pd.DataFrame(
        {
            "Term": [str(t) for t in terms],
            "Chi-square": [format_number(v, 2) for v in table["chisq"]],
            "df": [format_number(v, 0) if float(v) == int(v) else format_number(v, 2) for v in table["df"]],
            "p": [format_p(v) for v in table["p"]],
        }
    )


def balance_table(result: Any) -> pd.DataFrame | None:
    """Absolute SMD per covariate before and after matching (the Love plot's numbers)."""
    before = getattr(result, "balance_before", None)
    after = getattr(result, "balance_after", None)
    if before is None:
        return None
    frame = pd.DataFrame({"smd_before": before["smd"].abs()})
    if after is not None:
        frame["smd_after"] = after["smd"].abs().reindex(frame.index)
    frame.index = [str(i) for i in frame.index]
    frame.index.name = "covariate"
    return frame


# --------------------------------------------------------------------------- target trial


def strategy_labels(result: Any) -> dict[str, str]:
    """The emulated trial's two strategies in the study's words: ``{"start": "<exposure> started within 48 h"}``."""
    study = _study(result)
    hours = float(study.exposure.window.end_hours)
    grace = f"{hours / 24:g} days" if hours >= 72 and hours % 24 == 0 else f"{hours:g} h"
    return {
        "start": f"{study.exposure.label} started within {grace}",
        "no_start": f"{study.comparator.label} within {grace}",
    }


def _percent(x: float | None) -> str:
    return "\u2014" if x is None or not is_number(x) else f"{100 * float(x):.1f}%"


def _points_interval(est: float, lo: float, hi: float) -> str:
    """A risk difference in percentage points, ``-15.8 (-27.5 to -3.8)``: " to " as the limits are often negative
    (a dash between two negative numbers reads as a range of positive ones)."""

    def points(x: float) -> str:
        return "\u2014" if x is None or not is_number(x) else f"{100 * float(x):.1f}".replace("-", "\u2212")

    return f"{points(est)} ({points(lo)} to {points(hi)})"


def target_trial_table(result: Any, outcome: str) -> pd.DataFrame:
    """The emulated trial's estimates of one outcome beside the landmark analysis of the same outcome.

    Columns ``Analysis``, ``Estimand``, ``Estimate (95% CI)``: the risk at the horizon per strategy, the risk
    difference and ratio and the weighted Cox hazard ratio (percentile bootstrap intervals), then the
    landmark analysis's primary (s)HR of the outcome in the matched cohort. Empty when the trial was skipped.
    """
    trial = (getattr(result, "target_trial", None) or {}).get(outcome)
    conf = int(round(100 * float(_study(result).analysis.conf_level)))
    column = f"Estimate ({conf}% CI)"
    rows: list[dict[str, str]] = []
    if trial is None or trial.bootstrap is None:
        return pd.DataFrame(rows, columns=["Analysis", "Estimand", column])
    iv = trial.bootstrap.intervals
    names = strategy_labels(result)
    horizon = f"day {float(trial.horizon_days):g}"
    what = "Cumulative incidence" if trial.competing else "Risk"
    tt = "Target trial (clone, censor, weight)"

    def interval(key: str, percent: bool) -> str:
        est, lo, hi = (iv.loc[key, c] for c in ("estimate", "lower", "upper"))
        if percent:
            return f"{_percent(est)} ({_percent(lo)}\u2013{_percent(hi)})"
        return format_ratio(est, lo, hi)

    # Hernan's words: the risk under each strategy, and their contrasts (the per-protocol effect)
    rows.append(
        {
            "Analysis": tt,
            "Estimand": f"{what} by {horizon} under the strategy \u201c{names['start']}\u201d",
            column: interval("risk_start", True),
        }
    )
    rows.append(
        {
            "Analysis": tt,
            "Estimand": f"{what} by {horizon} under the strategy \u201c{names['no_start']}\u201d",
            column: interval("risk_no_start", True),
        }
    )
    measure = "cumulative incidence" if trial.competing else "risk"
    rows.append(
        {
            "Analysis": tt,
            "Estimand": f"{measure.capitalize()} difference by {horizon} (start \u2212 no start), percentage points",
            column: _points_interval(*(iv.loc["risk_difference", c] for c in ("estimate", "lower", "upper"))),
        }
    )
    rows.append(
        {
            "Analysis": tt,
            "Estimand": f"{measure.capitalize()} ratio by {horizon} (start / no start)",
            column: interval("risk_ratio", False),
        }
    )
    hr = "Cause-specific hazard ratio" if trial.competing else "Hazard ratio"
    rows.append(
        {
            "Analysis": tt,
            "Estimand": f"{hr} to {horizon}, start vs no start (weighted Cox)",
            column: interval("hazard_ratio", False),
        }
    )
    key = primary_key(result, outcome)
    landmark = result.estimate(*key) if hasattr(result, "estimate") else None
    if landmark is not None:
        # what the landmark design keeps and the trial does not: the reader must not compare like with like
        criteria = {c.name: c for c in _study(result).criteria}
        dropped = [criteria[n].label or n for n in trial.not_applied if n in criteria]
        left_out = f"; excluded: {', '.join(dropped)}" if dropped else ""
        rows.append(
            {
                "Analysis": f"Landmark analysis ({label_of(POPULATION_LABELS, key[2]).lower()}{left_out})",
                "Estimand": f"{_ratio_name(key[1])}, {label_of(MODEL_LABELS, key[1])}",
                column: format_ratio(landmark.estimate, landmark.lower, landmark.upper),
            }
        )
    return pd.DataFrame(rows, columns=["Analysis", "Estimand", column])


def target_trial_weights_table(result: Any, outcome: str) -> pd.DataFrame:
    """The weight distribution per strategy after truncation: min, percentiles, max, mean, ESS, rows truncated.

    Rows truncated are clone-interval rows, shown by the small-cell rule like any count.
    """
    trial = (getattr(result, "target_trial", None) or {}).get(outcome)
    columns = ["Strategy", "Min", "1%", "25%", "Median", "75%", "99%", "Max", "Mean", "ESS", "Rows truncated"]
    if trial is None or trial.bootstrap is None:
        return pd.DataFrame([], columns=columns)
    names = strategy_labels(result)
    threshold = threshold_of(result)
    rows = []
    for strategy, w in trial.bootstrap.point.weights.iterrows():
        rows.append(
            [
                names.get(str(strategy), str(strategy)),
                *(format_number(w[k], 3) for k in ("min", "p01", "p25", "median", "p75", "p99", "max", "mean")),
                format_number(w["ess"], 1),
                format_count(int(w["truncated_rows"]), threshold),
            ]
        )
    return pd.DataFrame(rows, columns=columns)
