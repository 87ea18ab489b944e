"""Publication figures of a study, drawn from result objects (no statistics computed here).

Each function takes results (and an optional ``ax``) and returns the
:class:`matplotlib.figure.Figure` it drew on. Figures are made without
``pyplot`` (see :mod:`._style`), so none stays open in a global registry;
:func:`save_figure` writes PNG (300 dpi) and SVG for a manuscript.

Counts printed on a figure (numbers at risk, flow-diagram boxes) follow the
small-cell rule of :mod:`.suppression`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from .._labels import by_day
from ..errors import InputError
from . import _style
from .formatting import (
    COVARIATE_LABELS,
    MODEL_LABELS,
    POPULATION_LABELS,
    covariate_label,
    exclusion_reason,
    format_p_inline,
    format_ratio,
    label_of,
    level_text,
    resolve_labels,
    step_label,
)
from .suppression import (
    COUNT_ALIASES,
    DEFAULT_THRESHOLD,
    StudyDisclosure,
    coarsen_curve,
    format_count,
    format_display,
    is_small,
    study_disclosure,
    suppress_counts_in_text,
)

__all__ = [
    "cumulative_incidence_plot",
    "flow_diagram",
    "forest_plot",
    "kaplan_meier_plot",
    "love_plot",
    "propensity_distributions",
    "save_figure",
    "study_figures",
]


# --------------------------------------------------------------------------- helpers


def _table_of(result: Any, what: str) -> pd.DataFrame:
    """The ``.table`` of a result object, or the frame itself."""
    table = result if isinstance(result, pd.DataFrame) else getattr(result, "table", None)
    if not isinstance(table, pd.DataFrame):
        raise InputError(
            f"{what}: expected a result with a `.table` DataFrame or a DataFrame; got {type(result).__name__}"
        )
    return table


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: columns {missing} missing (has {list(frame.columns)})")


def _root_figure(ax: Axes) -> Figure:
    # An Axes on a SubFigure has the SubFigure as .figure; the caller gets the Figure that is saved.
    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def _figure_and_axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    if ax is not None:
        return _root_figure(ax), ax
    fig = _style.new_figure(width, height)
    return fig, fig.add_subplot(1, 1, 1)


def _groups(table: pd.DataFrame) -> list[object]:
    """Group levels in the order the result lists them (factor order), or one unnamed group."""
    if "group" not in table.columns:
        return [None]
    return list(pd.unique(table["group"]))


def _rows(table: pd.DataFrame, group: object) -> pd.DataFrame:
    if group is None:
        return table
    return table[table["group"] == group]


def _step_from(times: np.ndarray, values: np.ndarray, start_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Prepend the curve's value at time 0 (survfit's and cuminc's implicit first point)."""
    if times.size and times[0] <= 0:
        return times, values
    return np.concatenate([[0.0], times]), np.concatenate([[start_value], values])


# --------------------------------------------------------------------------- balance


def _balance_series(balance: pd.DataFrame | None, what: str) -> pd.Series:
    if balance is None:
        return pd.Series(dtype=float)
    if not isinstance(balance, pd.DataFrame):
        raise InputError(f"{what}: expected a DataFrame of balance rows; got {type(balance).__name__}")
    _require(balance, ["smd"], what)
    names = balance["covariate"] if "covariate" in balance.columns else pd.Series(balance.index, index=balance.index)
    return pd.Series(balance["smd"].astype(float).abs().to_numpy(), index=[str(n) for n in names])


def love_plot(
    balance_before: pd.DataFrame,
    balance_after: pd.DataFrame | None,
    threshold: float = 0.1,
    ax: Axes | None = None,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Love plot: absolute standardized mean difference per covariate, before and after matching.

    Parameters
    ----------
    balance_before, balance_after : ``matching.balance`` output, one row per
        covariate (or level), with an ``smd`` column; covariate names from a
        ``covariate`` column or the index. ``balance_after`` may be None
        (matching skipped): only the before points are drawn.
    threshold : the balance line (0.1 by convention, Austin 2009).
    labels : display names by covariate; defaults to the study's words.

    Returns
    -------
    Figure. Artists: one ``Line2D`` of markers per period (gid ``love-before``,
    ``love-after``) and the threshold line (gid ``love-threshold``).
    """
    before = _balance_series(balance_before, "love_plot(balance_before)")
    after = _balance_series(balance_after, "love_plot(balance_after)")
    if before.empty and after.empty:
        raise InputError("love_plot: both balance tables are empty; nothing to draw")
    order = list(before.sort_values(ascending=True).index) if not before.empty else list(after.index)
    order += [c for c in after.index if c not in order]
    names = {**COVARIATE_LABELS, **(labels or {})}
    with _style.style():
        fig, ax = _figure_and_axes(ax, 5.5, 1.2 + 0.32 * len(order))
        y = np.arange(len(order))
        b = before.reindex(order).to_numpy(dtype=float)
        a = after.reindex(order).to_numpy(dtype=float)
        if not after.empty and not before.empty:
            for yi, bi, ai in zip(y, b, a, strict=True):
                if np.isfinite(bi) and np.isfinite(ai):
                    ax.plot([bi, ai], [yi, yi], color="#BBBBBB", linewidth=0.8, zorder=1)
        if not before.empty:
            ax.plot(
                b,
                y,
                linestyle="none",
                marker="o",
                markersize=6,
                markerfacecolor="white",
                markeredgecolor=_style.BEFORE_COLOUR,
                markeredgewidth=1.2,
                label="Before matching",
                gid="love-before",
                zorder=2,
            )
        if not after.empty:
            ax.plot(
                a,
                y,
                linestyle="none",
                marker="o",
                markersize=6,
                color=_style.AFTER_COLOUR,
                label="After matching",
                gid="love-after",
                zorder=3,
            )
        ax.axvline(threshold, color=_style.OKABE_ITO["black"], linestyle=":", linewidth=0.9, gid="love-threshold")
        ax.set_yticks(y)
        ax.set_yticklabels([names.get(c, covariate_label(c, labels)) for c in order])
        finite = np.concatenate([b[np.isfinite(b)], a[np.isfinite(a)], [threshold]])
        ax.set_xlim(0, max(float(finite.max()) * 1.1, threshold * 1.5))
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_xlabel("Absolute standardized mean difference")
        ax.grid(axis="y", color="#EEEEEE", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.legend(loc="lower right")
        fig.tight_layout()
    return fig


def propensity_distributions(
    score: Sequence[float] | np.ndarray | pd.Series,
    treated: Sequence[int] | np.ndarray | pd.Series,
    matched_mask: Sequence[bool] | np.ndarray | pd.Series | None,
    ax: Sequence[Axes] | None = None,
    labels: Mapping[Any, str] | Sequence[str] | None = None,
    bins: int = 25,
    threshold: int = DEFAULT_THRESHOLD,
    arm_counts: Mapping[tuple[str, int], object] | None = None,
) -> Figure:
    """Propensity-score distributions by arm, before and after matching (mirrored histograms).

    The exposed arm is drawn above the axis, the comparator below, each as the
    proportion of its arm per bin (so arms of very different size compare,
    and no bin shows a raw count).

    Parameters
    ----------
    score : propensity scores in [0, 1], one per eligible patient.
    treated : 0/1 exposure of each patient (same length).
    matched_mask : True for patients in the matched cohort; None draws the
        "before" panel only.
    ax : optional pair of Axes (before, after), or one Axes when ``matched_mask`` is None.
    labels : arm names, ``{0: "norepinephrine alone", 1: "vasopressin"}`` or ``[comparator, exposed]``.
    arm_counts : the n of each arm as the other outputs show it, by ``("before" | "after", arm)``
        (:func:`~retrocohort.report.suppression.study_disclosure`); default: the plain rule.
        An arm with fewer patients than the threshold is not drawn (its bars would place them).

    Returns
    -------
    Figure with one panel per period; each panel has one bar container per arm.
    """
    s = np.asarray(score, dtype=float).reshape(-1)
    t = np.asarray(treated).reshape(-1)
    if s.shape != t.shape:
        raise InputError(f"propensity_distributions: score has {s.size} values, treated {t.size}")
    if np.isnan(s).any() or (s.size and (s.min() < 0 or s.max() > 1)):
        raise InputError("propensity_distributions: scores must be probabilities in [0, 1] without NaN")
    bad = ~np.isin(t, [0, 1])
    if bad.any():
        raise InputError(f"propensity_distributions: treated must be 0/1; {int(bad.sum())} values are not")
    t = t.astype(int)
    panels: list[tuple[str, np.ndarray]] = [("Before matching", np.ones_like(s, dtype=bool))]
    if matched_mask is not None:
        m = np.asarray(matched_mask, dtype=bool).reshape(-1)
        if m.shape != s.shape:
            raise InputError(f"propensity_distributions: matched_mask has {m.size} values, score {s.size}")
        panels.append(("After matching", m))
    arm_names = resolve_labels([0, 1], labels if labels is not None else {0: "Comparator", 1: "Exposed"})
    edges = np.linspace(0.0, 1.0, bins + 1)
    with _style.style():
        if ax is None:
            fig = _style.new_figure(3.3 * len(panels), 3.2)
            axes = list(fig.subplots(1, len(panels), sharey=True, squeeze=False)[0])
        else:
            axes = [ax] if isinstance(ax, Axes) else list(ax)
            if len(axes) != len(panels):
                raise InputError(
                    f"propensity_distributions: {len(panels)} panels need {len(panels)} Axes; got {len(axes)}"
                )
            fig = _root_figure(axes[0])
        top = 0.0
        for panel_ax, (title, keep) in zip(axes, panels, strict=True):
            period = "before" if title.startswith("Before") else "after"
            for arm, sign in ((1, 1.0), (0, -1.0)):
                values = s[keep & (t == arm)]
                shown_n = (arm_counts or {}).get((period, arm))
                n_text = format_count(int(values.size), threshold) if shown_n is None else format_display(shown_n)
                if is_small(values.size, threshold):
                    # A histogram of two patients shows where each of them lies.
                    values = values[:0]
                counts, _ = np.histogram(values, bins=edges)
                share = counts / counts.sum() if counts.sum() else counts.astype(float)
                top = max(top, float(share.max()) if share.size else 0.0)
                style = _style.arm_style(arm)
                panel_ax.bar(
                    edges[:-1],
                    sign * share,
                    width=np.diff(edges),
                    align="edge",
                    color=style["color"],
                    alpha=0.75,
                    edgecolor="white",
                    linewidth=0.4,
                    label=f"{arm_names[arm]} (n = {n_text})",
                    gid=f"ps-arm-{arm}",
                )
            panel_ax.axhline(0, color="black", linewidth=0.6)
            panel_ax.set_title(title)
            panel_ax.set_xlim(0, 1)
            panel_ax.set_xlabel("Propensity score")
            panel_ax.legend(loc="upper right", fontsize=7)
        limit = max(top * 1.25, 0.05)
        for panel_ax in axes:
            panel_ax.set_ylim(-limit, limit)
            panel_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{abs(v):.2f}"))
        axes[0].set_ylabel(f"Proportion of arm\n(\u2191 {arm_names[1]}, \u2193 {arm_names[0]})")
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- survival


def _at_risk_counts(km_result: Any, table: pd.DataFrame, groups: list[object], times: np.ndarray) -> np.ndarray:
    """Numbers at risk (time >= t) per group and time: the result's own ``at_risk`` when it has one.

    Without it, the risk set of the first listed time >= t (summary.survfit's
    ``n.risk``), 0 beyond the last time.
    """
    at_risk = getattr(km_result, "at_risk", None)
    if callable(at_risk):
        frame = at_risk(times)
        return np.array(
            [
                [float(frame.loc[g].iloc[j]) if g is not None else float(frame.iloc[0, j]) for j in range(len(times))]
                for g in groups
            ]
        )
    out = np.zeros((len(groups), len(times)))
    for i, g in enumerate(groups):
        rows = _rows(table, g)
        tt = rows["time"].to_numpy(dtype=float)
        nr = rows["n_risk"].to_numpy(dtype=float)
        nxt = np.searchsorted(tt, times, side="left")
        out[i] = np.where(nxt < tt.size, nr[np.minimum(nxt, max(tt.size - 1, 0))], 0.0)
    return out


def _shown_at(frame: pd.DataFrame, group: Any, time: float) -> object:
    """The shown number at risk of ``group`` at ``time`` (columns are the report times)."""
    row = frame.iloc[0] if group is None else frame.loc[cast(Any, group)]
    for column in frame.columns:
        if float(column) == float(time):
            return row[column]
    raise InputError(f"kaplan_meier_plot: at_risk_shown has no column for day {time:g} (has {list(frame.columns)})")


def _draw_at_risk(
    table_ax: Axes, counts: np.ndarray, times: np.ndarray, names: list[str], threshold: int, shown: bool = False
) -> None:
    table_ax.set_ylim(-0.5, len(names) - 0.5)
    table_ax.set_yticks(range(len(names)))
    # First arm on top, as the legend lists it.
    table_ax.set_yticklabels(list(reversed(names)))
    for i in range(len(names)):
        y = len(names) - 1 - i
        colour = _style.arm_style(i)["color"]
        table_ax.get_yticklabels()[y].set_color(colour)
        for j, t in enumerate(times):
            text = format_display(counts[i, j]) if shown else format_count(counts[i, j], threshold)
            table_ax.text(t, y, text, ha="center", va="center", fontsize=8, color=colour, gid=f"at-risk-{i}-{j}")
    # Pad the arm names clear of the first column of numbers (centred on x = 0).
    table_ax.tick_params(axis="y", length=0, pad=16)
    table_ax.tick_params(axis="x", length=0, labelbottom=False)
    for spine in table_ax.spines.values():
        spine.set_visible(False)
    table_ax.set_title("Number at risk", loc="left", fontsize=8, fontweight="bold", pad=2)


def _curve_plot(
    table: pd.DataFrame,
    value_column: str,
    start_value: float,
    names: list[str],
    groups: list[object],
    ax: Axes,
    censor_ticks: bool,
    extend_to: list[tuple[float, float] | None] | None = None,
) -> None:
    for i, g in enumerate(groups):
        rows = _rows(table, g).sort_values("time")
        tail = extend_to[i] if extend_to else None
        if tail is not None and (rows.empty or tail[0] > float(rows["time"].iloc[-1])):
            # The table lists event times only; the curve (and its band) stays flat to the
            # arm's last follow-up, where the result's own cif_at gives the value.
            last = {c: (rows[c].iloc[-1] if len(rows) else np.nan) for c in rows.columns}
            last.update({"time": tail[0], value_column: tail[1]})
            rows = pd.concat([rows, pd.DataFrame([last])], ignore_index=True)
        tt = rows["time"].to_numpy(dtype=float)
        style = _style.arm_style(i)
        x, y = _step_from(tt, rows[value_column].to_numpy(dtype=float), start_value)
        ax.step(
            x,
            y,
            where="post",
            color=style["color"],
            linestyle=style["linestyle"],
            label=names[i],
            gid=f"curve-{i}",
            zorder=3,
        )
        if {"lower", "upper"} <= set(rows.columns):
            _, lo = _step_from(tt, rows["lower"].to_numpy(dtype=float), start_value)
            _, hi = _step_from(tt, rows["upper"].to_numpy(dtype=float), start_value)
            ax.fill_between(
                x, lo, hi, step="post", color=style["color"], alpha=0.15, linewidth=0, gid=f"band-{i}", zorder=1
            )
        if censor_ticks and "n_censor" in rows.columns:
            censored = rows["n_censor"].to_numpy(dtype=float) > 0
            ax.plot(
                tt[censored],
                rows[value_column].to_numpy(dtype=float)[censored],
                linestyle="none",
                marker="|",
                markersize=6,
                markeredgewidth=1.0,
                color=style["color"],
                gid=f"censor-{i}",
                zorder=4,
            )


def _cif_last_values(
    cif_result: Any, groups: list[object], horizon: float | None
) -> list[tuple[float, float] | None] | None:
    """(time, CIF) where each arm's curve ends: the last follow-up within the horizon.

    Uses the result's own ``cif_at`` (cmprsk::timepoints; NaN past an arm's last
    observed time) and ``_last_time`` when it has them; otherwise the curve
    ends at its last event.
    """
    cif_at = getattr(cif_result, "cif_at", None)
    last = getattr(cif_result, "_last_time", None)
    if not callable(cif_at) or last is None or len(last) != len(groups):
        return None
    ends: list[tuple[float, float] | None] = []
    for g, t_last in zip(groups, last, strict=True):
        t_end = float(min(t_last, horizon)) if horizon is not None else float(t_last)
        values = cif_at([t_end])
        if g is not None and "group" in values.columns:
            values = values[values["group"] == g]
        v = float(values["cif"].iloc[0]) if len(values) else float("nan")
        ends.append((t_end, v) if np.isfinite(v) else None)
    return ends


def kaplan_meier_plot(
    km_result: Any,
    at_risk_times: Sequence[float],
    labels: Mapping[Any, str] | Sequence[str] | None,
    logrank_p: float | None,
    ax: Axes | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    ylabel: str = "Survival probability",
    xlabel: str = "Days since index",
    at_risk_shown: pd.DataFrame | None = None,
    title: str | None = None,
) -> Figure:
    """Kaplan-Meier survival by arm with 95% CI bands, censor ticks, log-rank p and numbers at risk.

    Parameters
    ----------
    km_result : ``survival.kaplan_meier`` result (or its ``.table``): columns
        ``group``, ``time``, ``n_risk``, ``n_event``, ``n_censor``,
        ``survival``, ``lower``, ``upper`` (summary.survfit with censored=TRUE).
    at_risk_times : the x ticks and the columns of the at-risk table (days);
        the x axis spans 0 to the largest.
    labels : arm names by group value (``{0: "norepinephrine alone", 1: "vasopressin"}``) or in group order.
    logrank_p : p of the log-rank test (``survival.logrank(...).p_value``), or None.
    ax : draw the curves here; the at-risk table goes in an inset below it.
    threshold : small-cell threshold for the numbers at risk.
    at_risk_shown : the numbers at risk as every other output shows them (rows: groups,
        columns: times, :func:`~retrocohort.report.suppression.study_disclosure`); default:
        the plain rule on the result's own numbers.
    ylabel, xlabel, title : axis labels and title, in the study's words ("Days since <index label>").

    Returns
    -------
    Figure. Curves have gid ``curve-<i>``, bands ``band-<i>``, censor ticks
    ``censor-<i>`` and at-risk numbers ``at-risk-<i>-<j>`` (i: arm in group order).
    """
    table = _table_of(km_result, "kaplan_meier_plot")
    _require(table, ["time", "survival", "n_risk"], "kaplan_meier_plot")
    times = np.asarray(sorted(float(t) for t in at_risk_times))
    if times.size == 0:
        raise InputError("kaplan_meier_plot: at_risk_times is empty; give e.g. [0, 15, 30, 45, 60, 75, 90]")
    groups = _groups(table)
    names = resolve_labels(groups, labels) if groups != [None] else ["All patients"]
    with _style.style():
        if ax is None:
            fig = _style.new_figure(6.0, 4.8)
            grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.35 + 0.3 * len(groups)], hspace=0.28)
            ax = fig.add_subplot(grid[0])
            table_ax = fig.add_subplot(grid[1], sharex=ax)
        else:
            fig = _root_figure(ax)
            table_ax = ax.inset_axes((0.0, -0.42, 1.0, 0.22), sharex=ax)
        _curve_plot(table, "survival", 1.0, names, groups, ax, censor_ticks=True)
        ax.set_xlim(0, times.max() * 1.02)
        ax.set_xticks(times)
        ax.set_xticklabels([f"{t:g}" for t in times])
        ax.set_ylim(0, 1.02)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, gid="figure-title")
        ax.legend(loc="lower left", handlelength=2.5)
        if logrank_p is not None:
            ax.text(
                0.98,
                0.96,
                f"Log-rank {format_p_inline(logrank_p)}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                gid="logrank-p",
            )
        if at_risk_shown is not None:
            shown = np.array([[_shown_at(at_risk_shown, g, t) for t in times] for g in groups], dtype=object)
            _draw_at_risk(table_ax, shown, times, names, threshold, shown=True)
        else:
            _draw_at_risk(table_ax, _at_risk_counts(km_result, table, groups, times), times, names, threshold)
    return fig


def cumulative_incidence_plot(
    cif_result: Any,
    labels: Mapping[Any, str] | Sequence[str] | None,
    gray_p: float | None,
    ax: Axes | None = None,
    horizon: float | None = 90.0,
    ylabel: str = "Cumulative incidence",
    xlabel: str = "Days since index",
    competing: str = "death",
    title: str | None = None,
    times: Sequence[float] | None = None,
) -> Figure:
    """Cumulative incidence of one cause by arm (Aalen-Johansen), with its competing event noted.

    Parameters
    ----------
    cif_result : ``survival.cumulative_incidence`` result (or its ``.table``):
        ``group``, ``time``, ``cif`` and optionally ``lower``, ``upper``
        (as cmprsk::cuminc), for the cause of interest.
    labels : arm names by group value or in group order.
    gray_p : p of Gray's test (``survival.gray_test(...).p_value``), or None.
    horizon : right end of the x axis (days); None for the last time.
    competing : the competing event, named in the annotation.
    ylabel, xlabel, title : axis labels and title, in the study's words.
    times : x ticks (days); default seven from 0 to the horizon.

    Returns
    -------
    Figure. Curves have gid ``curve-<i>`` and bands ``band-<i>``.
    """
    table = _table_of(cif_result, "cumulative_incidence_plot")
    _require(table, ["time", "cif"], "cumulative_incidence_plot")
    groups = _groups(table)
    names = resolve_labels(groups, labels) if groups != [None] else ["All patients"]
    with _style.style():
        fig, ax = _figure_and_axes(ax, 6.0, 4.0)
        _curve_plot(
            table,
            "cif",
            0.0,
            names,
            groups,
            ax,
            censor_ticks=False,
            extend_to=_cif_last_values(cif_result, groups, horizon),
        )
        right = horizon if horizon is not None else float(table["time"].max())
        ax.set_xlim(0, right * 1.02)
        if times is not None and len(times):
            ax.set_xticks([float(t) for t in times])
            ax.set_xticklabels([f"{float(t):g}" for t in times])
        elif horizon is not None:
            ax.set_xticks(np.linspace(0, horizon, 7))
        ax.set_ylim(0, 1.02)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, gid="figure-title")
        ax.legend(loc="upper left", handlelength=2.5)
        note = f"{competing.capitalize()} as competing event"
        if gray_p is not None:
            note = f"Gray's test {format_p_inline(gray_p)}\n{note}"
        ax.text(0.98, 0.04, note, transform=ax.transAxes, ha="right", va="bottom", gid="gray-p")
        fig.tight_layout()
    return fig


def target_trial_curves(point: Any, threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The emulated trial's weighted risk curves, coarsened for output.

    Parameters
    ----------
    point : :class:`~retrocohort.designs.CloneCensorWeightResult` (``curves`` and ``rows``).
    threshold : the small-cell threshold.

    Returns
    -------
    DataFrame ``group`` (strategy), ``time``, ``risk``, ``n_event`` and ``n_risk``: the curves' own values,
    kept only where at least ``threshold`` *unweighted* outcome events have happened since the last kept step
    (:func:`~retrocohort.report.suppression.coarsen_curve` on the clones' own counts, not the weighted ones:
    a weight above 1 must not let a step of fewer patients through), and cut before fewer than ``threshold``
    clones remain at risk.
    """
    rows = point.rows
    parts = []
    for code, name in ((1, "start"), (0, "no_start")):
        curve = point.curves[point.curves["strategy"] == name].sort_values("time")
        mine = rows[rows["strategy"] == code]
        tstart = np.sort(mine["tstart"].to_numpy(dtype=float))
        tstop = np.sort(mine["tstop"].to_numpy(dtype=float))
        events = np.sort(mine.loc[mine["event"] == 1, "tstop"].to_numpy(dtype=float))
        t = curve["time"].to_numpy(dtype=float)
        parts.append(
            pd.DataFrame(
                {
                    "group": name,
                    "time": t,
                    "risk": curve["risk"].to_numpy(dtype=float),
                    "n_event": np.searchsorted(events, t, "right") - np.searchsorted(events, t, "left"),
                    "n_risk": np.searchsorted(tstart, t, "left") - np.searchsorted(tstop, t, "left"),
                }
            )
        )
    table = pd.concat(parts, ignore_index=True)
    return coarsen_curve(table, threshold) if threshold else table


def target_trial_plot(
    curves: pd.DataFrame,
    labels: Mapping[Any, str],
    horizon: float,
    grace_days: float,
    ax: Axes | None = None,
    times: Sequence[float] | None = None,
    ylabel: str = "Risk",
    xlabel: str = "Days since index",
    title: str | None = None,
) -> Figure:
    """Weighted risk curves of the emulated trial's two strategies, the grace window shaded.

    Parameters
    ----------
    curves : :func:`target_trial_curves` (``group`` "start" / "no_start", ``time``, ``risk``).
    labels : strategy -> label in the study's words.
    horizon : right end of the x axis (days); grace_days : the grace window, shaded from 0.
    times : x ticks (days).

    Returns
    -------
    Figure. Curves have gid ``curve-<i>`` (0 = start), the grace window ``grace-window``.
    """
    _require(curves, ["group", "time", "risk"], "target_trial_plot")
    groups: list[object] = ["start", "no_start"]
    names = [labels.get(g, str(g)) for g in groups]
    with _style.style():
        fig, ax = _figure_and_axes(ax, 6.0, 4.0)
        ax.axvspan(0, grace_days, color="0.9", zorder=0, gid="grace-window", label="Grace window")
        _curve_plot(curves, "risk", 0.0, names, groups, ax, censor_ticks=False)
        ax.set_xlim(0, horizon * 1.02)
        if times is not None and len(times):
            ax.set_xticks([float(t) for t in times])
            ax.set_xticklabels([f"{float(t):g}" for t in times])
        ax.set_ylim(0, 1.02)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, gid="figure-title")
        ax.legend(loc="upper left", handlelength=2.5)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- flow diagram


def _box(
    ax: Axes, x: float, y: float, text: str, width: int, gid: str, weight: str = "normal", align: str = "center"
) -> None:
    wrapped = _wrap(text, width)
    ax.text(
        x,
        y,
        wrapped,
        ha="center",
        va="center",
        fontsize=8,
        fontweight=weight,
        gid=gid,
        wrap=False,
        multialignment=align,
        bbox={"boxstyle": "square,pad=0.6", "facecolor": "white", "edgecolor": "black", "linewidth": 0.8},
        zorder=3,
    )


#: The padding of a flow box (0.6 x 8 pt), in inches.
_BOX_PAD_INCHES = 0.6 * 8 / 72


def _wrap(text: str, width: int) -> str:
    """A box's text wrapped at ``width`` characters (bullet lines indented under their bullet)."""
    return "\n".join(
        textwrap.fill(line, width=width)
        if not line.startswith("\u2022")
        else textwrap.fill(line, width=width, subsequent_indent="   ")
        for line in text.split("\n")
    )


def _box_size(text: str, width: int, weight: str = "normal") -> tuple[float, float]:
    """(width, height) in inches of a :func:`_box` holding ``text`` wrapped at ``width`` (current style)."""
    scratch = _style.new_figure(1.0, 1.0)
    artist = scratch.text(0, 0, _wrap(text, width), fontsize=8, fontweight=weight)
    extent = artist.get_window_extent(scratch.canvas.get_renderer())  # type: ignore[attr-defined]
    pad = 2 * _BOX_PAD_INCHES + 0.02
    return float(extent.width) / scratch.dpi + pad, float(extent.height) / scratch.dpi + pad


def _box_height(text: str, width: int, weight: str = "normal") -> float:
    """Height in inches of a :func:`_box` holding ``text`` wrapped at ``width``."""
    return _box_size(text, width, weight)[1]


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 0.8, "shrinkA": 0, "shrinkB": 0},
        zorder=2,
    )


def flow_diagram(
    attrition: pd.DataFrame,
    counts: Mapping[str, int],
    ax: Axes | None = None,
    labels: Mapping[Any, str] | Sequence[str] | None = None,
    threshold: int = DEFAULT_THRESHOLD,
    disclosure: StudyDisclosure | None = None,
) -> Figure:
    """CONSORT-style flow diagram from the attrition log and the arm counts.

    screened -> excluded (each reason with its count) -> eligible, split by
    arm -> matched, by arm (with the number left unmatched).

    Parameters
    ----------
    attrition : the cohort's attrition log: ``step``, ``remaining``,
        ``excluded``, ``reason``; the first row is the screened population.
    counts : ``exposed``, ``unexposed`` and, when matching ran,
        ``matched_exposed``, ``matched_unexposed``.
    labels : arm names (``{0: comparator, 1: exposed}`` or ``[comparator, exposed]``).
    threshold : small-cell threshold for every count in a box.
    disclosure : how the study shows each count (:func:`~retrocohort.report.suppression.study_disclosure`):
        the boxes then show exactly what every other output shows, ranges included, and the
        total excluded (screened minus eligible) is protected like any other count.

    Returns
    -------
    Figure; each box is a text artist with gid ``flow-<name>``.
    """
    # The result's own names (comparator, matched_comparator) are the diagram's unexposed arm.
    counts = {COUNT_ALIASES.get(k, k): v for k, v in counts.items()}
    if not isinstance(attrition, pd.DataFrame) or attrition.empty:
        raise InputError(
            "flow_diagram: the attrition log is empty; the cohort step must record at least the screened row"
        )
    _require(attrition, ["step", "remaining", "excluded"], "flow_diagram(attrition)")
    for key in ("exposed", "unexposed"):
        if key not in counts:
            raise InputError(f"flow_diagram: counts lacks {key!r} (has {sorted(counts)})")
    comparator, exposed = resolve_labels([0, 1], labels if labels is not None else ["Comparator", "Exposed"])

    def n(value: object, key: str | None = None) -> str:
        # Non-breaking spaces keep "n = 12" on one line when a box wraps.
        if disclosure is not None and key is not None:
            shown = format_display(disclosure.count(key, value))
        else:
            shown = format_count(value, threshold)
        return f"n\u00a0<\u00a0{shown[1:]}" if shown.startswith("<") else f"n\u00a0=\u00a0{shown}"

    def text(value: str) -> str:
        return disclosure.text(value) if disclosure is not None else suppress_counts_in_text(value, threshold)

    first = attrition.iloc[0]
    reason_col = "reason" if "reason" in attrition.columns else "step"
    described = first[reason_col] if isinstance(first[reason_col], str) and first[reason_col] else ""
    # The first row's reason describes the screened population; print it under the count.
    described = text(described)
    screened_text = f"{step_label(first['step'])} ({n(first['remaining'], 'attrition_remaining_0')})" + (
        f"\n{described}" if described else ""
    )
    exclusions = attrition.iloc[1:]
    exclusions = exclusions[pd.to_numeric(exclusions["excluded"], errors="coerce").fillna(0) > 0]
    total_excluded = int(pd.to_numeric(exclusions["excluded"]).sum()) if len(exclusions) else 0
    lines = [f"Excluded ({n(total_excluded, 'excluded')})"]
    for position, row in exclusions.iterrows():
        reason = row[reason_col] if isinstance(row[reason_col], str) and row[reason_col] else step_label(row["step"])
        reason = text(exclusion_reason(reason))
        row_key = f"attrition_excluded_{attrition.index.get_loc(position)}"
        lines.append(f"\u2022 {reason} ({n(row['excluded'], row_key)})")
    eligible = int(attrition.iloc[-1]["remaining"])
    matched = "matched_exposed" in counts and counts.get("matched_exposed") is not None
    with _style.style():
        # The layout follows the boxes' wrapped text, top to bottom in inches: a long index label or many
        # exclusion reasons make their box taller, and the boxes below move down (never overlap, never
        # leave the figure).
        heights = {
            "screened": _box_height(screened_text, 46),
            "excluded": _box_height("\n".join(lines), 38),
            "eligible": _box_height("Eligible\n(n)", 40, "bold"),
            "arm": max(_box_height(f"{label}\n(n)", 24) for label in (exposed, comparator)),
            "matched": max(_box_height(f"Matched: {label}\n(n)\nn", 26, "bold") for label in (exposed, comparator)),
        }
        gap, margin = 0.22, 0.12
        tops = {"screened": margin}
        tops["excluded"] = tops["screened"] + heights["screened"] + gap
        tops["eligible"] = tops["excluded"] + heights["excluded"] + gap
        tops["arm"] = tops["eligible"] + heights["eligible"] + 0.45
        tops["matched"] = tops["arm"] + heights["arm"] + 0.5
        bottom = tops["matched" if matched else "arm"] + heights["matched" if matched else "arm"] + margin
        own = ax is None
        fig, ax = _figure_and_axes(ax, 6.5, bottom)
        if own:
            # the axes are the whole figure, so inches on the page are inches in the layout above
            ax.set_position((0.03, 0.0, 0.94, 1.0))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
        # axes height in inches: the caller's axes may be smaller than the layout, which is then compressed
        # (the text keeps its size, so very long labels may then touch the boxes below)
        axes_height = ax.get_position().height * fig.get_figheight()
        scale = min(1.0, axes_height / bottom)

        def centre(name: str) -> float:
            return 1.0 - (tops[name] + heights[name] / 2) * scale / axes_height

        def edge(name: str, side: str) -> float:
            inches = tops[name] + (heights[name] if side == "bottom" else 0.0)
            return 1.0 - inches * scale / axes_height

        ys = [centre("screened"), centre("excluded"), centre("eligible"), centre("arm")]
        ys += [centre("matched")] if matched else []
        _box(ax, 0.35, ys[0], screened_text, 46, "flow-screened")
        _box(ax, 0.76, ys[1], "\n".join(lines), 38, "flow-excluded", align="left")
        _box(
            ax,
            0.35,
            ys[2],
            f"Eligible\n({n(eligible, f'attrition_remaining_{len(attrition) - 1}')})",
            40,
            "flow-eligible",
            weight="bold",
        )
        _arrow(ax, (0.35, edge("screened", "bottom")), (0.35, edge("eligible", "top")))
        # to the left edge of the exclusions box (its width follows its text)
        excluded_left = 0.76 - _box_size("\n".join(lines), 38)[0] / 2 / (ax.get_position().width * fig.get_figwidth())
        _arrow(ax, (0.35, ys[1]), (max(0.36, excluded_left), ys[1]))
        _box(ax, 0.18, ys[3], f"{exposed}\n({n(counts['exposed'], 'exposed')})", 24, "flow-exposed")
        _box(ax, 0.56, ys[3], f"{comparator}\n({n(counts['unexposed'], 'unexposed')})", 24, "flow-unexposed")
        branch = (edge("eligible", "bottom") + edge("arm", "top")) / 2
        ax.plot([0.35, 0.35], [edge("eligible", "bottom"), branch], color="black", linewidth=0.8)
        ax.plot([0.18, 0.56], [branch, branch], color="black", linewidth=0.8)
        _arrow(ax, (0.18, branch), (0.18, edge("arm", "top")))
        _arrow(ax, (0.56, branch), (0.56, edge("arm", "top")))
        if matched:
            me, mu = counts["matched_exposed"], counts["matched_unexposed"]
            unmatched_e = int(counts["exposed"]) - int(me)
            unmatched_u = int(counts["unexposed"]) - int(mu)
            _box(
                ax,
                0.18,
                ys[4],
                f"Matched: {exposed}\n({n(me, 'matched_exposed')})\nnot matched: {n(unmatched_e, 'unmatched_exposed')}",
                26,
                "flow-matched-exposed",
                weight="bold",
            )
            _box(
                ax,
                0.56,
                ys[4],
                f"Matched: {comparator}\n({n(mu, 'matched_unexposed')})\n"
                f"not matched: {n(unmatched_u, 'unmatched_unexposed')}",
                26,
                "flow-matched-unexposed",
                weight="bold",
            )
            _arrow(ax, (0.18, edge("arm", "bottom")), (0.18, edge("matched", "top")))
            _arrow(ax, (0.56, edge("arm", "bottom")), (0.56, edge("matched", "top")))
            ax.text(
                0.37,
                (ys[3] + ys[4]) / 2,
                "Propensity score\nmatching",
                ha="center",
                va="center",
                fontsize=7,
                style="italic",
                color=_style.OKABE_ITO["grey"],
            )
    return fig


# --------------------------------------------------------------------------- forest plot


def _lower_first(text: str) -> str:
    """ "Eligible cohort, IPTW (ATT)" -> "eligible cohort, IPTW (ATT)" (acronyms kept)."""
    if len(text) > 1 and text[1].isupper():
        return text  # an acronym ("ICU admission", "IPTW") keeps its capitals
    return text[:1].lower() + text[1:]


def forest_plot(
    estimates: Sequence[Any],
    ax: Axes | None = None,
    reference: Mapping[str, float | None] | None = None,
    outcome_labels: Mapping[str, str] | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Forest plot of the results table: one line per (outcome, model, population) on a log scale.

    ``conf_level`` (the study's ``[analysis] conf_level``) names the intervals on the axis.

    Parameters
    ----------
    estimates : ``StudyResult.estimates`` (objects with ``outcome``, ``model``,
        ``population``, ``estimate``, ``lower``, ``upper``).
    reference : optional value per outcome drawn as a marked tick (the
        planted truth of synthetic data), e.g. ``{"death": 0.5}``.
    outcome_labels : the study's outcome labels by outcome name (default: the name).

    Returns
    -------
    Figure with one errorbar per estimate (gid ``forest-<k>``).
    """
    rows = [e for e in estimates if np.isfinite(getattr(e, "estimate", np.nan))]
    if not rows:
        raise InputError("forest_plot: no estimates to draw (every model was skipped)")
    palette = [
        _style.OKABE_ITO[c]
        for c in ("blue", "bluish_green", "orange", "reddish_purple", "sky_blue")
        if c in _style.OKABE_ITO
    ] or ["black"]
    order = list(dict.fromkeys(e.outcome for e in rows))
    with _style.style():
        fig, ax = _figure_and_axes(ax, 7.2, 1.1 + 0.36 * len(rows))
        y = np.arange(len(rows))[::-1]
        for k, (yk, e) in enumerate(zip(y, rows, strict=True)):
            colour = palette[order.index(e.outcome) % len(palette)]
            lo, hi = float(e.lower), float(e.upper)
            ax.errorbar(
                [e.estimate],
                [yk],
                xerr=[[e.estimate - lo], [hi - e.estimate]],
                fmt="s",
                color=colour,
                markersize=4,
                capsize=2,
                linewidth=1.0,
                gid=f"forest-{k}",
            )
            truth = reference.get(e.outcome) if reference else None
            if truth is not None:
                ax.plot(
                    [truth],
                    [yk],
                    marker="x",
                    color=_style.OKABE_ITO["vermillion"],
                    markersize=5,
                    linestyle="none",
                    gid=f"forest-truth-{k}",
                )
            ax.text(
                1.03, yk, format_ratio(e.estimate, lo, hi), transform=ax.get_yaxis_transform(), va="center", fontsize=8
            )
        ax.axvline(1.0, color="black", linewidth=0.7)
        ax.set_xscale("log")
        values = [v for e in rows for v in (e.lower, e.upper, e.estimate) if np.isfinite(v) and v > 0]
        values += [v for v in (reference or {}).values() if v is not None and np.isfinite(v) and v > 0] + [1.0]
        left, right = min(values) / 1.25, max(values) * 1.25
        ax.set_xlim(left, right)
        candidates = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 4, 5, 10, 20]
        ax.xaxis.set_major_locator(FixedLocator([c for c in candidates if left <= c <= right]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y)
        ax.set_yticklabels(
            [
                f"{(outcome_labels or {}).get(e.outcome, e.outcome)}: {label_of(MODEL_LABELS, e.model)}, "
                f"{_lower_first(label_of(POPULATION_LABELS, e.population))}"
                for e in rows
            ],
            fontsize=8,
        )
        ax.set_xlabel(f"Hazard ratio ({100 * conf_level:g}% CI), log scale")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        fig.tight_layout()
    return fig


def subgroup_forest_plot(
    subgroups: Sequence[Any],
    covariate_labels: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    outcome_label: str | None = None,
    conf_level: float = 0.95,
) -> Figure:
    """Subgroup forest plot: the primary outcome's hazard ratio within each level of each subgroup covariate.

    ``conf_level`` (the study's ``[analysis] conf_level``) names the intervals on the axis.

    Parameters
    ----------
    subgroups : ``StudyResult.subgroups`` (``covariate``, ``label``, ``levels`` with ``level``,
        ``estimate``, ``lower``, ``upper``, and ``p_interaction``).
    covariate_labels : the study's covariate labels (the subgroup's own ``label`` first).
    outcome_label : the outcome, named in the axis label.

    Returns
    -------
    Figure: one heading per covariate with its interaction p (gid ``subgroup-head-<i>``) and one
    errorbar per level (gid ``subgroup-<i>-<j>``); a level whose ratio is not finite is listed as
    "not estimated". No counts are drawn.
    """
    lines: list[tuple[str, Any, str]] = []
    for i, sg in enumerate(subgroups):
        name = sg.label or (covariate_labels or {}).get(sg.covariate, sg.covariate)
        tested = np.isfinite(sg.p_interaction)
        interaction = f"interaction {format_p_inline(sg.p_interaction)}" if tested else "interaction not tested"
        lines.append((f"{name} ({interaction})", None, f"subgroup-head-{i}"))
        for j, (_, row) in enumerate(sg.levels.iterrows()):
            lines.append((f"   {level_text(row['level'])}", row, f"subgroup-{i}-{j}"))
    if not lines:
        raise InputError("subgroup_forest_plot: no subgroups to draw")
    with _style.style():
        fig, ax = _figure_and_axes(ax, 7.2, 1.1 + 0.32 * len(lines))
        y = np.arange(len(lines))[::-1]
        values = [1.0]
        for yk, (text, row, gid) in zip(y, lines, strict=True):
            if row is None:
                ax.text(
                    0.0,
                    yk,
                    text,
                    transform=ax.get_yaxis_transform(),
                    ha="right",
                    va="center",
                    fontsize=8,
                    fontweight="bold",
                    gid=gid,
                    clip_on=False,
                )
                continue
            est, lo, hi = (float(row.get(k, np.nan)) for k in ("estimate", "lower", "upper"))
            if all(np.isfinite(v) and v > 0 for v in (est, lo, hi)):
                ax.errorbar(
                    [est],
                    [yk],
                    xerr=[[est - lo], [hi - est]],
                    fmt="s",
                    color=_style.OKABE_ITO["blue"],
                    markersize=4,
                    capsize=2,
                    linewidth=1.0,
                    gid=gid,
                )
                values += [est, lo, hi]
                shown = format_ratio(est, lo, hi)
            else:
                shown = "not estimated"
            ax.text(1.03, yk, shown, transform=ax.get_yaxis_transform(), va="center", fontsize=8)
            ax.text(
                0.0,
                yk,
                f"{text}  ",
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="center",
                fontsize=8,
                clip_on=False,
            )
        ax.axvline(1.0, color="black", linewidth=0.7)
        ax.set_xscale("log")
        left, right = min(values) / 1.25, max(values) * 1.25
        ax.set_xlim(left, right)
        candidates = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
        ax.xaxis.set_major_locator(FixedLocator([c for c in candidates if left <= c <= right]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks([])
        what = f" of {outcome_label.lower()}" if outcome_label else ""
        ax.set_xlabel(f"Hazard ratio{what} ({100 * conf_level:g}% CI), log scale")
        ax.set_ylim(-0.7, len(lines) - 0.3)
        fig.tight_layout()
        fig.subplots_adjust(left=0.42)
    return fig


# --------------------------------------------------------------------------- export


def save_figure(fig: Figure, path_stem: str | Path, dpi: int = 300) -> tuple[Path, Path]:
    """Write ``<path_stem>.png`` (``dpi``, default 300) and ``<path_stem>.svg``; return both paths.

    SVG text stays text, and the files carry no creation date, so two runs on
    the same results write identical SVG files.
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    with _style.style():
        fig.savefig(png, dpi=dpi, bbox_inches="tight", facecolor="white", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", facecolor="white", metadata={"Date": None, "Creator": None})
    return png, svg


def figure_png_bytes(fig: Figure, dpi: int = 200) -> bytes:
    """The figure as PNG bytes (for embedding in the HTML report)."""
    import io

    buffer = io.BytesIO()
    with _style.style():
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


# --------------------------------------------------------------------------- all figures of a study


def matched_mask_of(result: Any) -> np.ndarray | None:
    """Which rows of ``result.cohort`` are in the matched cohort (None when matching was skipped)."""
    if getattr(result, "matched", None) is None:
        return None
    cohort = result.cohort
    subclass = getattr(getattr(result, "matching", None), "subclass", None)
    if isinstance(subclass, pd.Series) and subclass.index.isin(cohort.index).all() and len(subclass) == len(cohort):
        return subclass.reindex(cohort.index).notna().to_numpy()
    return cohort.index.isin(result.matched.index)


def _propensity_of(result: Any) -> np.ndarray | None:
    cohort = result.cohort
    if "ps" in cohort.columns:
        return cohort["ps"].to_numpy(dtype=float)
    score = getattr(getattr(result, "propensity", None), "score", None)
    if isinstance(score, pd.Series) and len(score) == len(cohort):
        return score.reindex(cohort.index).to_numpy(dtype=float)
    return None


def study_figures(result: Any) -> dict[str, Figure]:
    """Every figure of a study run, by file stem, drawn from a :class:`StudyResult`.

    Stems: ``flow``, ``love_plot``, ``ps_distribution``, one ``km_<outcome>`` (Kaplan-Meier) or
    ``cif_<outcome>`` (cumulative incidence, competing event) per outcome of the study, ``forest`` and,
    when the study declares subgroups, ``subgroups``; a figure whose results are absent (a skipped
    model or matching) is left out. Titles, axes and arms are in the study's words. The caller saves
    them with :func:`save_figure`; the figures are not in pyplot's registry, so dropping the dict
    frees them.
    """
    from .formatting import outcome_labels, study_labels
    from .suppression import report_times
    from .tables import arm_labels, index_label, planted_for, threshold_of

    threshold = threshold_of(result)
    labels = arm_labels(result)
    study = result.study
    since = f"Days since {index_label(result)}"
    figures: dict[str, Figure] = {}
    counts: dict[str, int] = {str(COUNT_ALIASES.get(k, k)): v for k, v in dict(result.counts).items()}
    if result.matched is None:
        # Matching was skipped: no matched boxes (rather than boxes of zeros).
        counts.pop("matched_exposed", None)
        counts.pop("matched_unexposed", None)
    disclosure = study_disclosure(result)
    figures["flow"] = flow_diagram(result.attrition, counts, labels=labels, threshold=threshold, disclosure=disclosure)
    if result.balance_before is not None and not disclosure.few_exposed:
        # SMDs against an arm of fewer patients than the threshold are withheld (as in balance.csv).
        after = None if disclosure.few_matched else result.balance_after
        figures["love_plot"] = love_plot(result.balance_before, after, labels=study_labels(study))
    score = _propensity_of(result)
    if score is not None and "exposed" in result.cohort.columns:
        figures["ps_distribution"] = propensity_distributions(
            score,
            result.cohort["exposed"].to_numpy(),
            matched_mask_of(result),
            labels=labels,
            threshold=threshold,
            arm_counts={
                ("before", 1): disclosure.count("exposed"),
                ("before", 0): disclosure.count("comparator"),
                ("after", 1): disclosure.count("matched_exposed"),
                ("after", 0): disclosure.count("matched_comparator"),
            },
        )
    for name, fitted in result.outcomes.items():
        horizon = float(fitted.horizon_days)
        times = report_times(study, horizon)
        title = f"{by_day(fitted.label, horizon)}, matched cohort"
        if not fitted.competing and fitted.km is not None:
            shown = disclosure.at_risk_by_outcome.get(name)
            # Curves drawn with steps of at least threshold events and no censor ticks (coarsen_curve):
            # a step of one event, or a tick at one patient's last day, would show that patient.
            figures[f"km_{name}"] = kaplan_meier_plot(
                coarsen_curve(fitted.km.table, threshold) if threshold else fitted.km,
                times,
                labels,
                getattr(fitted.logrank, "p_value", None),
                threshold=threshold,
                ylabel="Survival probability"
                if fitted.kind == "death"
                else f"Probability without {_lower_first(fitted.label)}",
                xlabel=since,
                title=title,
                at_risk_shown=shown
                if shown is not None and {float(t) for t in times} <= {float(c) for c in shown.columns}
                else None,
            )
        elif fitted.competing and fitted.cif is not None:
            competing = getattr(study.outcomes[name], "competing", None) or "death"
            figures[f"cif_{name}"] = cumulative_incidence_plot(
                coarsen_curve(fitted.cif.table, threshold) if threshold else fitted.cif,
                labels,
                getattr(fitted.gray, "p_value", None),
                horizon=horizon,
                ylabel=f"Cumulative incidence of {_lower_first(fitted.label)}",
                xlabel=since,
                title=title,
                competing=competing,
                times=times,
            )
    finite = [e for e in result.estimates if np.isfinite(e.estimate)]
    names = outcome_labels(study)
    if finite:
        truth = {o: planted_for(result, o) for o in names} if result.synthetic else None
        figures["forest"] = forest_plot(
            finite, reference=truth, outcome_labels=names, conf_level=study.analysis.conf_level
        )
    if result.subgroups:
        figures["subgroups"] = subgroup_forest_plot(
            result.subgroups,
            study_labels(study),
            outcome_label=names.get(result.primary),
            conf_level=study.analysis.conf_level,
        )
    from .tables import strategy_labels

    for name, trial in (getattr(result, "target_trial", None) or {}).items():
        if trial.bootstrap is None:
            continue
        horizon = float(trial.horizon_days)
        what = "Cumulative incidence" if trial.competing else "Risk"
        figures[f"target_trial_{name}"] = target_trial_plot(
            target_trial_curves(trial.bootstrap.point, threshold),
            strategy_labels(result),
            horizon,
            float(trial.grace_days),
            times=report_times(study, horizon),
            ylabel=f"{what} of {_lower_first(trial.label)} (weighted)",
            xlabel=since,
            title=f"{by_day(trial.label, horizon)}, emulated target trial",
        )
    return figures
