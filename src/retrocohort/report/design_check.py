"""The design check's outputs: table, JSON document, figure and the "Design check" report page.

Reads a :class:`retrocohort.study.validate.ValidationResult` only. Patient
counts (the estimates' population sizes, the real cohort's counts) below the
study's small-cell threshold are shown as "<N"; the replicate-level table
never leaves memory.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from . import _style
from .figures import figure_png_bytes
from .html import _ENV
from .suppression import format_count, suppress_small_cells

__all__ = ["design_check_document", "design_check_figure", "design_check_table", "render_design_check_html"]

_COUNT_COLUMNS = ("n_mean", "n_min", "n_max")
_POPULATION_WORDS = {
    "matched": "matched",
    "full": "full eligible cohort",
    "iptw": "IPTW (ATT)",
    "trial": "emulated target trial",
}


def _threshold(result: Any) -> int:
    return int(result.study.report.small_cell_threshold)


def _shown_count(value: Any, threshold: int) -> Any:
    """A patient count (or a mean of counts) as an output shows it: "<N" when small, else the number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    shown = suppress_small_cells(round(float(value), 1) if isinstance(value, float) else int(value), threshold)
    return shown


def design_check_table(result: Any) -> pd.DataFrame:
    """The summary as written to ``design_check.csv``: one row per planted effect and estimate.

    The columns of ``ValidationResult.summary``; ``n_mean``/``n_min``/``n_max`` below the
    study's small-cell threshold are "<N".
    """
    threshold = _threshold(result)
    table = result.summary.copy()
    for column in _COUNT_COLUMNS:
        table[column] = [_shown_count(v, threshold) for v in table[column]]
    table["mostly_skipped"] = table["skipped_share"] > 0.5
    return table


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


def design_check_document(result: Any) -> dict[str, Any]:
    """``design_check.json``: study, options, seed, versions, the cohort's (suppressed) counts and the table."""
    threshold = _threshold(result)
    table = design_check_table(result)
    return {
        "kind": "retrocohort design check (plasmode simulation)",
        "study": {"name": result.study.study.name, "title": result.study.study.title},
        "effects": list(result.effects),
        "replicates": result.n_replicates,
        "seed": result.seed,
        "options": {k: _plain(v) for k, v in result.options.items()},
        "cohort": {k: _plain(_shown_count(v, threshold)) for k, v in result.cohort_counts.items()},
        "small_cell_threshold": threshold,
        "matched_sizes": _matched_sizes(result, threshold),
        "fitted_effects": {k: _plain(v) for k, v in result.fitted_effects.items()},
        "observed_estimates": {k: _plain(v) for k, v in result.observed.items()},
        "estimates": [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")],
        "notes": list(result.notes),
        "provenance": result.provenance,
        "method": (
            "Plasmode simulation (Franklin et al. 2014): covariates kept; exposure drawn from the fitted "
            "propensity model; outcomes from the fitted Cox (Fine-Gray) model with the exposure coefficient "
            "replaced by the planted log (s)HR; censoring from a fitted censoring model. The emulated target "
            "trial (population 'trial'): start times from a fitted model of the time to start, the planted HR "
            "applying from the start on, truth of the strategies by counterfactual simulation; the risk "
            "difference's bias is on the difference scale (column scale). See docs/validate.md."
        ),
    }


def _matched_sizes(result: Any, threshold: int) -> dict[str, Any]:
    """Matched exposed / comparator patients per planted effect: mean, min, max over replicates (suppressed)."""
    table = result.replicates
    out: dict[str, Any] = {}
    if not len(table):
        return out
    per_replicate = table.drop_duplicates(["effect_index", "replicate"])
    for e, effect in enumerate(result.effects):
        rows = per_replicate.loc[per_replicate["effect_index"] == e]
        out[f"{effect:g}"] = {
            arm: {
                "mean": _plain(_shown_count(float(rows[column].mean()), threshold)),
                "min": _plain(_shown_count(int(rows[column].min()), threshold)),
                "max": _plain(_shown_count(int(rows[column].max()), threshold)),
            }
            for arm, column in (("exposed", "matched_exposed"), ("comparator", "matched_comparator"))
        }
    return out


_TRUTH_WORDS = {"conditional": "cond.", "marginal (ATT)": "marg.", "trial strategies (counterfactual)": "strategies"}


def _row_label(row: Any) -> str:
    model = str(row.model).replace("fine_gray", "Fine-Gray").replace("cox", "Cox").replace("_", " ")
    return f"{row.outcome}: {model}, {_POPULATION_WORDS.get(row.population, row.population)}"


def design_check_figure(result: Any) -> Any:
    """Coverage (left) and bias of the log estimate (right) per estimate, one marker per planted effect.

    Error bars are +-1.96 Monte Carlo SE; the dashed lines are the nominal coverage and zero bias.
    Estimates with no fitted replicate are left out of the panels.
    """
    summary = result.summary
    labels = list(dict.fromkeys(_row_label(r) for r in summary.itertuples()))
    height = 1.0 + 0.32 * len(labels)
    with _style.style():
        fig = _style.new_figure(9.0, height)
        ax_cov, ax_bias = fig.subplots(1, 2, sharey=True)
        colours = list(_style.OKABE_ITO.values())
        for k, effect in enumerate(result.effects):
            rows = summary.loc[(summary["effect"] == effect) & (summary["fitted"] > 0)]
            y = np.array([labels.index(_row_label(r)) for r in rows.itertuples()], dtype=float)
            y = y + (k - (len(result.effects) - 1) / 2) * 0.18
            colour = colours[(k + 1) % len(colours)]
            ax_cov.errorbar(
                rows["coverage"],
                y,
                xerr=1.96 * rows["coverage_mcse"].fillna(0),
                fmt="o",
                color=colour,
                ms=4,
                label=f"planted {effect:g}",
            )
            ax_bias.errorbar(
                rows["bias_log"], y, xerr=1.96 * rows["bias_log_mcse"].fillna(0), fmt="o", color=colour, ms=4
            )
        conf = float(result.options.get("conf_level", 0.95))
        ax_cov.axvline(conf, color="0.4", linestyle="--", linewidth=0.8)
        ax_bias.axvline(0.0, color="0.4", linestyle="--", linewidth=0.8)
        ax_cov.set_yticks(range(len(labels)), labels)
        ax_cov.invert_yaxis()
        ax_cov.set_xlabel(f"Coverage of the {conf:.0%} CI")
        ax_bias.set_xlabel("Bias: mean log estimate - log truth (trial risk difference: on its own scale)")
        ax_cov.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
    return fig


def _pct(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _css() -> str:
    """The study report's own stylesheet (one look for every page the tool writes)."""
    source = _ENV.loader.get_source(_ENV, "report.html.j2")[0] if _ENV.loader is not None else ""
    found = re.search(r"<style>(.*?)</style>", source, re.S)
    return found.group(1) if found else ""


def render_design_check_html(result: Any, figure: Any | None = None) -> str:
    """``report.html`` of a design check: a "Design check" section with the table and the figure."""
    threshold = _threshold(result)
    rows = []
    for row in design_check_table(result).itertuples():
        mcse = float(row.coverage_mcse)  # type: ignore[arg-type]
        rows.append(
            {
                "effect": f"{row.effect:g}",
                "estimate": _row_label(row),
                "truth": f"{row.truth:.3f} ({_TRUTH_WORDS.get(str(row.truth_kind), 'marg.')})",
                "fitted": f"{row.fitted} of {row.replicates}",
                "skipped": _pct(row.skipped_share),
                "loud": bool(row.mostly_skipped),
                "bias": _num(row.bias_log) + (" (diff.)" if getattr(row, "scale", "log") == "difference" else ""),
                "bias_ratio": _num(row.bias_ratio),
                "emp_se": _num(row.empirical_se),
                "rep_se": _num(row.mean_reported_se),
                "coverage": f"{_pct(row.coverage)} ± {_pct(1.96 * mcse)}" if math.isfinite(mcse) else "—",
                "power": _pct(row.power),
                "n": f"{format_count(row.n_mean, threshold)} ({format_count(row.n_min, threshold)}–"
                f"{format_count(row.n_max, threshold)})",
            }
        )
    image = None
    if figure is not None:
        image = Markup(
            '<img src="data:image/png;base64,{}" alt="Coverage and bias per estimate" style="width:{}px">'
        ).format(base64.b64encode(figure_png_bytes(figure)).decode("ascii"), int(round(figure.get_figwidth() * 96)))
    template = _ENV.get_template("design_check.html.j2")
    return template.render(
        css=Markup(_css()),
        title=result.study.study.title or result.study.study.name,
        name=result.study.study.name,
        effects=", ".join(f"{e:g}" for e in result.effects),
        replicates=f"{result.n_replicates:,}",
        seed=result.seed,
        cohort={k: format_count(v, threshold) for k, v in result.cohort_counts.items()},
        rows=rows,
        notes=list(result.notes),
        image=image,
        conf=f"{float(result.options.get('conf_level', 0.95)):.0%}",
        threshold=threshold,
    )
