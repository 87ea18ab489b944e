"""The HTML report: one self-contained file (figures as inline base64 PNG, inline CSS).

:func:`render_html` reads a :class:`~retrocohort.study.results.StudyResult`
and returns the page as a string; the pipeline writes it to ``report.html``.
The page loads nothing from the network, prints cleanly (print CSS, A4), and
marks key numbers with ``data-key`` attributes (full-precision value in
``data-value``) so a test can compare the page with ``results.json``. No
subject identifier or date is rendered.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure

from .. import __version__
from .._labels import by_day, units
from .figures import figure_png_bytes, study_figures
from .formatting import (
    MODEL_LABELS,
    covariate_label,
    format_number,
    format_p_inline,
    format_ratio,
    is_number,
    label_of,
    study_labels,
)
from .suppression import (
    format_display,
    is_small,
    report_times,
    study_disclosure,
    suppress_small_cells,
)
from .tables import (
    arm_labels,
    at_risk_table,
    attrition_table,
    balance_table,
    index_label,
    outcome_label,
    outcome_names,
    ph_test_table,
    planted_for,
    primary_key,
    published_for,
    results_table,
    table_one_combined,
    target_trial_table,
    target_trial_weights_table,
    threshold_of,
)
from .text import methods_paragraph, results_paragraph, skipped_notes, target_trial_protocol, trial_skipped_notes


def _trial_context(result: Any, disclosure: Any, first_figure: int) -> list[dict[str, Any]]:
    """One block per target-trial outcome: counts as every output shows them, the estimates beside the
    landmark analysis, the weight distribution, the figure, or why the trial was not estimated."""
    blocks = []
    number = first_figure
    for name, trial in (getattr(result, "target_trial", None) or {}).items():
        shown = disclosure.trial_counts.get(name, {})
        table = target_trial_table(result, name)
        weights = target_trial_weights_table(result, name)
        block: dict[str, Any] = {
            "id": f"target-trial-{name}",
            "title": by_day(trial.label, float(trial.horizon_days)),
            "stem": f"target_trial_{name}",
            "eligible": format_display(shown.get("eligible")) if "eligible" in shown else "",
            "started": format_display(shown.get("started")) if "started" in shown else "",
            "eligible_value": _value(shown.get("eligible")),
            "started_value": _value(shown.get("started")),
            "skipped": disclosure.text(trial.skipped) if trial.skipped else "",
            "notes": [disclosure.text(n) for n in trial.notes],
            "columns": list(table.columns),
            "rows": table.to_dict("records"),
            "weight_columns": list(weights.columns),
            "weight_rows": weights.to_dict("records"),
            "number": "",
            "caption": "",
            "failed": "",
            "table_caption": "",
            "table_note": "",
        }
        if trial.bootstrap is not None:
            boot = trial.bootstrap
            block["number"] = f"Figure {number}."
            landmark = "; landmark analysis: the model's confidence interval" if len(table) > 5 else ""
            block["table_caption"] = (
                "Emulated trial beside the landmark analysis of the same outcome (trial: percentile bootstrap "
                f"over patients, {boot.n_replicates - boot.failed} of {boot.n_replicates} replicates, seed "
                f"{boot.seed}, the censoring model refitted in each{landmark})"
            )
            block["table_note"] = (
                "The two analyses answer different questions: the trial's risks are marginal, from time zero, "
                "early deaths included; the landmark hazard ratio is conditional on the covariates, among the "
                "patients the landmark design keeps."
            )
            block["caption"] = (
                "Weighted risk of each strategy of the emulated trial (inverse probability of censoring "
                "weights; the grace window shaded); steps of at least the small-cell threshold of events, so a "
                "curve ends where fewer events remain to be shown (the table's risks are from the full curve)."
            )
            number += 1
            if boot.failed:
                block["failed"] = (
                    f"{boot.failed} of {boot.n_replicates} bootstrap replicates could not be estimated "
                    "(e.g. nobody started in the resample) and are left out of the intervals."
                )
            iv = boot.intervals
            block["keys"] = [
                {
                    "key": f"target_trial/{name}/{k}/{f}",
                    "value": _value(iv.loc[k, c]),
                }
                for k in ("risk_start", "risk_no_start", "risk_difference", "risk_ratio", "hazard_ratio")
                for f, c in (("estimate", "estimate"), ("lower", "lower"), ("upper", "upper"))
            ]
        else:
            block["keys"] = []
        blocks.append(block)
    return blocks


__all__ = ["estimate_key", "render_html"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("retrocohort.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# A date or date-time anywhere in free text (provenance, notes) is dropped: no date leaves the process.
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\b")


def estimate_key(outcome: str, model: str, population: str, field: str = "estimate") -> str:
    """The ``data-key`` of one number of one estimate, e.g. ``death/cox_adjusted/matched/estimate``."""
    return f"{outcome}/{model}/{population}/{field}"


def _value(x: Any) -> str:
    """Full-precision value for ``data-value`` (repr of floats round-trips)."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x)).lower()
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return repr(float(x)) if math.isfinite(float(x)) else ""
    return "" if x is None else str(x)


def _count_item(value: Any, threshold: int, shown: Any = None) -> dict[str, str] | None:
    """A key count for the page: its text and ``data-value``, both as every output shows it."""
    if value is None:
        return None
    if shown is None:
        shown = suppress_small_cells(value, threshold)
    return {"text": format_display(shown), "value": _value(shown)}


def _figure_markup(figures: dict[str, Figure], cache: dict[str, str]):
    def figure(stem: str, number: str, caption: str) -> Markup:
        fig = figures.get(stem)
        if fig is None:
            return Markup(
                '<p class="sans figure-missing" data-figure-missing="{}">{} not drawn: its results '
                "are not available for this run (see Models not estimated).</p>"
            ).format(stem, number)
        if stem not in cache:
            cache[stem] = base64.b64encode(figure_png_bytes(fig)).decode("ascii")
        # Shown at the figure's physical size (96 px per inch), never wider than the column.
        width = int(round(fig.get_figwidth() * 96))
        return Markup(
            '<figure id="fig-{stem}"><img src="data:image/png;base64,{data}" alt="{alt}" data-figure="{stem}" '
            'style="width: {width}px">'
            "<figcaption><b>{number}</b>{caption}</figcaption></figure>"
        ).format(stem=stem, data=cache[stem], alt=caption, number=number, caption=caption, width=width)

    return figure


def _table_one_context(result: Any) -> dict[str, Any] | None:
    combined = table_one_combined(result)
    if combined is None:
        return None
    groups: list[tuple[str, int]] = []
    for top in combined.columns.get_level_values(0):
        if groups and groups[-1][0] == top:
            groups[-1] = (top, groups[-1][1] + 1)
        else:
            groups.append((top, 1))
    columns = [str(c) for c in combined.columns.get_level_values(1)]
    columns = ["Missing" if c.lower() == "missing" else c for c in columns]
    rows = []
    for label, values in combined.iterrows():
        text = str(label)
        indent = text != text.lstrip()
        nice = text.strip()
        # table_one_combined has put the rows in the study's words already.
        shown = nice
        rows.append({"label": shown, "indent": indent, "cells": [str(v) for v in values.to_list()]})
    return {"groups": groups, "columns": columns, "rows": rows}


def _results_context(result: Any) -> dict[str, Any]:
    table = results_table(result)
    threshold = threshold_of(result)
    shown_counts = study_disclosure(result).estimate_counts
    # The variance type goes to the table note (one line), the skip reasons to their own section.
    estimate_col = next(c for c in table.columns if c.startswith("Estimate"))
    table.loc[table[estimate_col] == "not estimated", estimate_col] = "not estimated (see below)"
    table = table.drop(columns=["Variance"])
    columns = list(table.columns)
    numeric = {"Patients", "Events", "p", "Planted truth"} | {
        c for c in columns if c.startswith(("Estimate", "Published"))
    }
    estimates = list(result.estimates)
    rows = []
    for k, (_, row) in enumerate(table.iterrows()):
        est = estimates[k] if k < len(estimates) else None
        cells = []
        for col in columns:
            cell: dict[str, Any] = {"text": str(row[col]), "num": col in numeric, "key": "", "value": ""}
            if est is not None:
                if col.startswith("Estimate"):
                    cell["key"] = estimate_key(est.outcome, est.model, est.population, "estimate")
                    cell["value"] = _value(est.estimate)
                    # The limits go in their own attributes on the same cell.
                    cell["text"] = Markup(
                        '{} <span hidden data-key="{}" data-value="{}"></span>'
                        '<span hidden data-key="{}" data-value="{}"></span>'
                    ).format(
                        row[col],
                        estimate_key(est.outcome, est.model, est.population, "lower"),
                        _value(est.lower),
                        estimate_key(est.outcome, est.model, est.population, "upper"),
                        _value(est.upper),
                    )
                elif col == "p":
                    cell["key"] = estimate_key(est.outcome, est.model, est.population, "p")
                    cell["value"] = _value(est.p)
                elif col == "Patients":
                    cell["key"] = estimate_key(est.outcome, est.model, est.population, "n")
                    cell["value"] = _value(
                        shown_counts.get((est.outcome, est.population), (suppress_small_cells(est.n, threshold),))[0]
                    )
                elif col == "Events":
                    cell["key"] = estimate_key(est.outcome, est.model, est.population, "n_events")
                    cell["value"] = _value(
                        shown_counts.get(
                            (est.outcome, est.population), (None, suppress_small_cells(est.n_events, threshold))
                        )[1]
                    )
            cells.append(cell)
        if est is None:
            cls = "skipped"
        else:
            cls = "primary" if primary_key(result, est.outcome) == (est.outcome, est.model, est.population) else ""
        rows.append({"cells": cells, "cls": cls})
    variance = {e.variance for e in estimates if e.variance}
    note = "Variance: " + "; ".join(sorted(variance)) + "." if variance else ""
    # the count column in the analysis unit's words ("ICU stays" with one index per stay)
    unit = units(result.study)
    head = {"Patients": unit[0].upper() + unit[1:]}
    return {
        "columns": columns,
        "headers": [head.get(c, c) for c in columns],
        "numeric": numeric,
        "rows": rows,
        "note": note,
    }


def _term_label(term: str, arms: dict[int, str], labels: dict[str, str] | None = None) -> str:
    if term == "exposed":
        return f"{arms[1]} (exposure)"
    if term == "GLOBAL":
        return "Global"
    return covariate_label(term, labels)


def _primary_keys(result: Any) -> list[dict[str, str]]:
    """The key fact of each outcome: its primary estimate (data-key ``primary/<outcome>``), published and planted."""
    out = []
    for outcome in outcome_names(result):
        _o, model, population = primary_key(result, outcome)
        e = result.estimate(outcome, model, population)
        if e is None:
            continue
        ratio = "sHR" if model.startswith("fine_gray") else "HR"
        truth = planted_for(result, outcome) if result.synthetic else None
        published = published_for(result, outcome)
        caption = (
            f"{outcome_label(result, outcome)}, adjusted {ratio} ({100 * result.study.analysis.conf_level:g}% CI), "
            "matched"
        )
        if published:
            caption += f"; published {format_ratio(*published)}"
        out.append(
            {
                "key": f"primary/{outcome}",
                "value": _value(e.estimate),
                "text": format_ratio(e.estimate, e.lower, e.upper),
                "caption": caption,
                "truth": format_number(truth) if truth is not None else "",
                "truth_value": _value(truth) if truth is not None else "",
            }
        )
    return out


def _outcome_sections(result: Any, disclosure: Any, threshold: int, first_figure: int) -> list[dict[str, Any]]:
    """One report section per outcome of the study, in its order: figure, test and numbers at risk."""
    arms = arm_labels(result)
    conf = f"{100 * result.study.analysis.conf_level:g}%"
    sections = []
    number = first_figure
    fits = getattr(result, "outcomes", None) or {}
    # Every outcome of the study has its section, fitted or not (then the figure says it was not drawn).
    for name, spec in result.study.outcomes.items():
        fitted = fits.get(name)
        competing = spec.competing is not None
        label = outcome_label(result, name)
        horizon = float(spec.horizon_days)
        test = getattr(fitted, "gray" if competing else "logrank", None)
        p = getattr(test, "p_value", None)
        test_name = "Gray's test" if competing else "Log-rank test"
        if competing:
            stem = f"cif_{name}"
            caption = (
                f"Cumulative incidence of {label} by arm in the matched cohort to day {horizon:g}, "
                f"{spec.competing} as competing event (Aalen-Johansen)."
            )
        else:
            stem = f"km_{name}"
            caption = (
                f"Kaplan-Meier estimates of {label} by arm in the matched cohort to day {horizon:g}, with "
                f"{conf} confidence bands and numbers at risk."
            )
        if is_number(p):
            caption += f" {test_name} {format_p_inline(p)}."
        at_risk = None
        shown = disclosure.at_risk_by_outcome.get(name)
        if fitted is not None and fitted.km is not None and not competing:
            frame = at_risk_table(fitted.km, report_times(result.study, horizon), arms, threshold, shown=shown)
            at_risk = {
                "columns": list(frame.columns),
                "rows": [
                    {"label": idx, "cells": list(r)} for idx, r in zip(frame.index, frame.to_numpy(), strict=True)
                ],
            }
        sections.append(
            {
                "id": f"outcome-{name}",
                "title": by_day(label, horizon) + (" (primary)" if spec.primary else ""),
                "stem": stem,
                "number": f"Figure {number}.",
                "caption": caption,
                "test_name": test_name,
                "test_key": f"test/{name}",
                "test_text": format_p_inline(p) if is_number(p) else "",
                "test_value": _value(p),
                "at_risk": at_risk,
            }
        )
        number += 1
    return sections


def _subgroup_context(result: Any, disclosure: Any) -> list[dict[str, Any]]:
    from ..study.outputs import subgroup_levels

    out = []
    for g in getattr(result, "subgroups", ()) or ():
        levels = subgroup_levels(result, g, disclosure)
        out.append(
            {
                "label": g.label or g.covariate,
                "model": g.model,
                "p_interaction": format_p_inline(g.p_interaction) if is_number(g.p_interaction) else "",
                "interaction_note": getattr(g, "interaction_note", ""),
                "p_value": _value(g.p_interaction),
                "key": f"subgroup/{g.covariate}/p_interaction",
                "rows": [
                    {
                        "level": str(r["level"]),
                        "n": format_display(r["n"]),
                        "events": format_display(r["n_events"]),
                        "estimate": format_ratio(r["estimate"], r["lower"], r["upper"])
                        if is_number(r["estimate"])
                        else "not estimated",
                        "p": format_p_inline(r["p"]).replace("p = ", "").replace("p ", "") if is_number(r["p"]) else "",
                    }
                    for _, r in levels.iterrows()
                ],
            }
        )
    return out


def _provenance_rows(result: Any) -> list[tuple[str, str, str]]:
    prov = dict(getattr(result, "provenance", {}) or {})
    rows: list[tuple[str, str, str]] = []
    study = result.study
    rows.append(("Study", study.study.name, "study"))
    rows.append(("Study file SHA-256", str(prov.pop("study_fingerprint", study.fingerprint)), "study_fingerprint"))
    names = {
        "data_fingerprint": "Data fingerprint",
        "data_fingerprint_method": "Fingerprint method",
        "engine": "Engine",
        "seed": "Seed",
        "python": "Python",
        "elapsed_seconds": "Run time, s",
    }
    for key, label in names.items():
        if key in prov:
            value = prov.pop(key)
            if key == "elapsed_seconds" and is_number(value):
                value = f"{float(value):.1f}"
            rows.append((label, str(value), key))
    packages = prov.pop("packages", None)
    if isinstance(packages, dict) and packages:
        rows.append(("Packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items())), "packages"))
    rows.append(("retrocohort", __version__, "retrocohort"))
    for key, value in sorted(prov.items()):
        if isinstance(value, (dict, list, tuple)):
            value = (
                ", ".join(f"{k}: {v}" for k, v in value.items())
                if isinstance(value, dict)
                else ", ".join(map(str, value))
            )
        rows.append((key.replace("_", " ").capitalize(), str(value), key))
    # No date or time stamp leaves the process, even in provenance (e.g. a file's modification time).
    return [(label, _DATE.sub("[date removed]", text), key) for label, text, key in rows]


def _data_checks_rows(result: Any, threshold: int) -> list[dict[str, str]] | None:
    """The data checks (``sources/quality.py``) as report rows; counts suppressed; None when not run."""
    checks = getattr(result, "data_checks", None)
    if checks is None or not len(checks):
        return None
    return [
        {
            "table": str(row["table"]),
            "rule": str(row["rule"]),
            "action": str(row["action"]),
            "check": str(row["check"]),
            **(_count_item(row["count"], threshold) or {"text": "—", "value": ""}),
        }
        for _, row in checks.iterrows()
    ]


def render_html(result: Any, figures: dict[str, Figure] | None = None) -> str:
    """Render the study report as one self-contained HTML page.

    Parameters
    ----------
    result : StudyResult of a run (``study/results.py``).
    figures : optional figures already drawn by :func:`figures.study_figures`
        (the pipeline draws them once for the PNG/SVG files and passes them
        here); drawn from ``result`` when omitted.

    Returns
    -------
    str
        UTF-8 HTML: figures as base64 PNG ``<img>``, inline CSS, one inline
        diagnostic script; no external URL. Key numbers carry ``data-key``
        (e.g. ``matched_exposed``, ``primary/death``, ``test/death``,
        ``death/cox_adjusted/matched/estimate``) with the full-precision
        value in ``data-value``.
    """
    figures = study_figures(result) if figures is None else figures
    threshold = threshold_of(result)
    disclosure = study_disclosure(result)
    arms = arm_labels(result)
    counts = result.counts or {}
    att = result.attrition
    last = len(att) - 1
    keyfacts = {
        "indexed": _count_item(
            att.iloc[0]["remaining"] if len(att) else None, threshold, disclosure.count("attrition_remaining_0")
        ),
        "eligible": _count_item(
            att.iloc[-1]["remaining"] if len(att) else None, threshold, disclosure.count(f"attrition_remaining_{last}")
        ),
        "exposed": _count_item(counts.get("exposed"), threshold, disclosure.count("exposed", counts.get("exposed"))),
        "comparator": _count_item(
            counts.get("comparator"), threshold, disclosure.count("comparator", counts.get("comparator"))
        ),
        "matched_exposed": _count_item(counts.get("matched_exposed"), threshold, disclosure.count("matched_exposed"))
        if result.matched is not None
        else None,
        "matched_comparator": _count_item(
            counts.get("matched_comparator"), threshold, disclosure.count("matched_comparator")
        )
        if result.matched is not None
        else None,
    }
    dose = None
    # The dose of a handful of exposed patients is nearly an individual's dose: not shown
    # when the exposed count itself is suppressed. Only a study that declares [dose] has one.
    declared = result.study.dose is not None and result.dose is not None
    dosed = result.dose.get("n", counts.get("exposed")) if declared and result.dose else counts.get("exposed")
    few_exposed = is_small(dosed, threshold)
    if declared and is_number(result.dose.get("mean")) and not few_exposed:
        dose = {
            "mean": format_number(result.dose["mean"], 1),
            "sd": format_number(result.dose.get("sd"), 1),
            "mean_value": _value(result.dose["mean"]),
            "sd_value": _value(result.dose.get("sd")),
            "label": str(result.dose.get("label", result.study.dose.label)),
            "unit": str(result.dose.get("unit", result.study.dose.unit)),
        }
    covariates = study_labels(result.study)
    balance = []
    # SMDs against an arm of fewer patients than the threshold are withheld (as in balance.csv).
    bt = None if disclosure.few_exposed else balance_table(result)
    if bt is not None and disclosure.few_matched and "smd_after" in bt.columns:
        bt = bt.assign(smd_after=float("nan"))
    if bt is not None:
        for term, row in bt.iterrows():
            after = row.get("smd_after", float("nan"))
            balance.append(
                {
                    "term": term,
                    "label": covariate_label(str(term), covariates),
                    "before": format_number(row["smd_before"], 3),
                    "after": format_number(after, 3),
                    "before_value": _value(row["smd_before"]),
                    "after_value": _value(after),
                }
            )
    primary = (getattr(result, "outcomes", None) or {}).get(getattr(result, "primary", ""))
    ph_test = getattr(primary, "ph_test", None)
    ph = ph_test_table(ph_test) if ph_test is not None else None
    ph_model = getattr(primary, "ph_test_model", None) or ""
    e_value = None
    ev = result.e_value or {}
    if is_number(ev.get("point")):
        e_value = {
            "point": format_number(ev["point"]),
            "point_value": _value(ev["point"]),
            "ci": format_number(ev.get("ci")) if is_number(ev.get("ci")) else "",
            "ci_value": _value(ev.get("ci")),
            "method": disclosure.text(getattr(result, "e_value_method", None) or ""),
        }
    outcome_sections = _outcome_sections(result, disclosure, threshold, first_figure=4)
    forest_number = f"Figure {4 + len(outcome_sections)}."
    subgroup_number = f"Figure {5 + len(outcome_sections)}."
    sections = [("flow", "Study flow"), ("table1", "Baseline characteristics"), ("balance", "Covariate balance")]
    sections += [(sec["id"], sec["title"]) for sec in outcome_sections]
    sections += [("results", "Estimates")]
    subgroups = _subgroup_context(result, disclosure)
    if subgroups or "subgroups" in figures:
        sections.append(("subgroups", "Subgroups"))
    trial_number = 6 + len(outcome_sections) if (subgroups or "subgroups" in figures) else 5 + len(outcome_sections)
    trial_sections = _trial_context(result, disclosure, trial_number)
    if trial_sections:
        sections.append(("target-trial", "Target trial emulation"))
    sections += [("methods", "Methods"), ("results-text", "Results")]
    skipped = skipped_notes(result) + trial_skipped_notes(result)
    if skipped:
        sections.append(("skipped", "Models not estimated"))
    sections += [("data-checks", "Data checks"), ("data-notes", "Data notes"), ("reproducibility", "Reproducibility")]
    context = {
        "version": __version__,
        "conf": f"{100 * result.study.analysis.conf_level:g}%",
        "index_label": index_label(result),
        "synthetic": bool(result.synthetic),
        "title": result.study.study.title,
        "description": result.study.study.description,
        "exposed": arms[1],
        "comparator": arms[0],
        "k": keyfacts,
        "primary_keys": _primary_keys(result),
        "sections": sections,
        "figure": _figure_markup(figures, {}),
        "attrition": [
            {**row, "value": _value(shown[0])}
            for row, shown in zip(attrition_table(result).to_dict("records"), disclosure.attrition, strict=True)
        ],
        "dose": dose,
        "few_exposed": few_exposed,
        "dose_window": result.study.exposure.window.describe(),
        "table_one": _table_one_context(result),
        "threshold": threshold,
        "units": units(result.study),
        "units_title": units(result.study)[0].upper() + units(result.study)[1:],
        "ci_words": f"{100 * result.study.analysis.conf_level:g}% CI",
        "balance": balance,
        "outcome_sections": outcome_sections,
        "figure_has_subgroups": "subgroups" in figures,
        "declared_dose": declared,
        "forest_number": forest_number,
        "subgroup_number": subgroup_number,
        "subgroups": subgroups,
        "trial_sections": trial_sections,
        "trial_protocol": target_trial_protocol(result) if trial_sections else "",
        "results": _results_context(result),
        "ph_table": [{**row, "Term": _term_label(row["Term"], arms, covariates)} for row in ph.to_dict("records")]
        if ph is not None
        else None,
        "ph_model": (
            f"{outcome_label(result, result.primary)}, {label_of(MODEL_LABELS, ph_model)}" if ph_model else ""
        ),
        "e_value": e_value,
        "methods": methods_paragraph(result),
        "results_text": results_paragraph(result),
        "skipped": skipped,
        "notes": [disclosure.text(_DATE.sub("[date removed]", str(n))) for n in result.notes],
        "provenance": _provenance_rows(result),
        "data_checks": _data_checks_rows(result, threshold),
    }
    return _ENV.get_template("report.html.j2").render(**context)
