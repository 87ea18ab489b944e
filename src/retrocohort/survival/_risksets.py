"""Sorted-time kernels shared by the survival estimators.

Pure NumPy, no Python loop over rows: one sort, boundaries of runs of equal
times, per-time sums with ``np.add.reduceat`` and numbers at risk as reverse
cumulative sums. Tied times are kept tied (never jittered): every quantity is
per *distinct* time, which is how R's survfit, survdiff and cuminc treat ties.

The kernels take arrays; validation lives in :mod:`._checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RiskTable", "risk_table", "distinct_sorted", "number_at_risk", "step_value", "group_order"]


@dataclass(frozen=True)
class RiskTable:
    """Per-distinct-time counts of one sample.

    Attributes
    ----------
    time : (m,) float64
        Distinct observed times, ascending.
    n_risk : (m,) float64
        (Weighted) number with observed time >= ``time``: the risk set just before ``time``.
    n_total : (m,) float64
        (Weighted) number whose observed time equals ``time`` (events and censorings).
    counts : (m, k) float64
        (Weighted) number at ``time`` carrying each of the ``k`` marks passed to :func:`risk_table`.
    """

    time: np.ndarray
    n_risk: np.ndarray
    n_total: np.ndarray
    counts: np.ndarray


def distinct_sorted(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an ascending array and the index where each run starts.

    Linear time, unlike ``np.unique`` which sorts again.
    """
    n = sorted_values.shape[0]
    if n == 0:
        return sorted_values[:0], np.zeros(0, dtype=np.int64)
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    return sorted_values[starts], starts


def risk_table(
    time: np.ndarray,
    marks: Sequence[np.ndarray] = (),
    weights: np.ndarray | None = None,
) -> RiskTable:
    """Tabulate one sample by distinct time.

    Parameters
    ----------
    time : (n,) float
        Observed times (event or censoring).
    marks : sequence of k (n,) bool arrays
        Row flags to count per time, e.g. ``event`` or ``status == cause``.
    weights : (n,) float, optional
        Case weights; counts become sums of weights.

    Returns
    -------
    RiskTable
    """
    time = np.asarray(time, dtype=float)
    n = time.shape[0]
    k = len(marks)
    if weights is None:
        # Counting needs no permutation: sort the times, and for each mark sort
        # only the marked times, then place its distinct times among all distinct
        # times. Two plain sorts are about 3x faster than one argsort + gathers.
        sorted_time = np.sort(time)
        distinct, starts = distinct_sorted(sorted_time)
        n_total = np.diff(np.append(starts, n)).astype(float)
        n_risk = (n - starts).astype(float)
        counts = np.zeros((distinct.shape[0], k), dtype=float)
        for j, mark in enumerate(marks):
            marked = np.sort(time[np.asarray(mark, dtype=bool)])
            if marked.shape[0] == 0:
                continue
            mark_times, mark_starts = distinct_sorted(marked)
            where = np.searchsorted(distinct, mark_times)
            counts[where, j] = np.diff(np.append(mark_starts, marked.shape[0]))
        return RiskTable(distinct, n_risk, n_total, counts)

    weights = np.asarray(weights, dtype=float)
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    sorted_weight = weights[order]
    distinct, starts = distinct_sorted(sorted_time)
    if distinct.shape[0] == 0:
        return RiskTable(distinct, distinct.copy(), distinct.copy(), np.zeros((0, k)))
    n_total = np.add.reduceat(sorted_weight, starts)
    n_risk = np.cumsum(n_total[::-1])[::-1]
    counts = np.zeros((distinct.shape[0], k), dtype=float)
    for j, mark in enumerate(marks):
        marked_weight = np.where(np.asarray(mark, dtype=bool)[order], sorted_weight, 0.0)
        counts[:, j] = np.add.reduceat(marked_weight, starts)
    return RiskTable(distinct, n_risk, n_total, counts)


def number_at_risk(sorted_time: np.ndarray, at: np.ndarray, cumulative_weight: np.ndarray | None = None) -> np.ndarray:
    """Number (or weight) with time >= each of ``at``, from ascending ``sorted_time``.

    ``cumulative_weight`` is the (n+1,) array ``[0, cumsum(sorted weights)]``
    when rows are weighted.
    """
    first = np.searchsorted(sorted_time, np.asarray(at, dtype=float), side="left")
    if cumulative_weight is None:
        return (sorted_time.shape[0] - first).astype(float)
    return cumulative_weight[-1] - cumulative_weight[first]


def step_value(step_time: np.ndarray, step_value_: np.ndarray, at: np.ndarray, initial: float) -> np.ndarray:
    """Right-continuous step function evaluated at ``at``.

    ``step_value_[i]`` holds on ``[step_time[i], step_time[i+1])``; before
    ``step_time[0]`` the value is ``initial``.
    """
    index = np.searchsorted(step_time, np.asarray(at, dtype=float), side="right") - 1
    out = np.where(index >= 0, step_value_[np.maximum(index, 0)] if step_value_.shape[0] else initial, initial)
    return out.astype(float)


def group_order(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Row indices of each group 0..n_groups-1 (a counting sort, linear time)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]
