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

import numba
import numpy as np

__all__ = [
    "GroupedRiskTable",
    "RiskTable",
    "distinct_sorted",
    "group_order",
    "grouped_risk_table",
    "merge_near_tied_times",
    "merge_near_ties",
    "near_tie_representatives",
    "number_at_risk",
    "risk_table",
    "step_value",
]


# survival's aeqSurv tolerance: sqrt(double epsilon)
_TIMEFIX_TOLERANCE = float(np.sqrt(np.finfo(float).eps))


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
    rows_at_risk : (m,) float64
        Unweighted number of rows with observed time >= ``time`` (equals
        ``n_risk`` when unweighted): the patients a numbers-at-risk table shows.
    """

    time: np.ndarray
    n_risk: np.ndarray
    n_total: np.ndarray
    counts: np.ndarray
    rows_at_risk: np.ndarray


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
    timefix: bool = False,
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
    timefix : merge the sample's own near-tied times as survfit's timefix
        does (:func:`merge_near_tied_times`); right when this sample's times
        are the whole grid (one group).

    Returns
    -------
    RiskTable
    """
    time = np.asarray(time, dtype=float)
    n = time.shape[0]
    k = len(marks)
    if weights is None:
        return _unweighted_risk_table(time, [np.asarray(mark, dtype=bool) for mark in marks], timefix)

    weights = np.asarray(weights, dtype=float)
    order = np.argsort(time, kind="stable")
    sorted_time = time[order]
    sorted_weight = weights[order]
    distinct, starts = distinct_sorted(sorted_time)
    if distinct.shape[0] == 0:
        return RiskTable(distinct, distinct.copy(), distinct.copy(), np.zeros((0, k)), distinct.copy())
    n_total = np.add.reduceat(sorted_weight, starts)
    n_risk = np.cumsum(n_total[::-1])[::-1]
    counts = np.zeros((distinct.shape[0], k), dtype=float)
    for j, mark in enumerate(marks):
        marked_weight = np.where(np.asarray(mark, dtype=bool)[order], sorted_weight, 0.0)
        counts[:, j] = np.add.reduceat(marked_weight, starts)
    table = RiskTable(distinct, n_risk, n_total, counts, (n - starts).astype(float))
    return merge_near_tied_times(table) if timefix else table


@numba.njit(cache=True)
def _tabulate_sorted_keys(
    key: np.ndarray, shift: int, offset: np.uint64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct time bit patterns, rows per time, marked rows per time and numbers at risk from sorted keys.

    ``key = time_code << shift | marks`` with mark j in bit ``shift - 1 - j``:
    keys of one time differ only in the low ``shift`` bits (``shift`` is 1 or 2). A nonzero code is
    the time's bit pattern minus ``offset`` (0 stays 0), see
    :func:`_two_mark_keys`. One pass instead of xor, flatnonzero, reduceat,
    cumsum and casts over n-long temporaries; counts come out as float64.
    """
    n = key.shape[0]
    distinct = np.empty(n, dtype=np.uint64)
    total = np.empty(n, dtype=np.float64)
    marked = np.empty((n, max(shift, 1)), dtype=np.float64)
    n_risk = np.empty(n, dtype=np.float64)
    s = np.uint64(shift)
    one = np.uint64(1)
    high_mark = np.uint64(shift - 1)
    # integer running counts of the current time, written out when it ends
    m = -1
    previous = np.uint64(0)
    rows = 0
    first = np.uint64(0)
    second = np.uint64(0)
    for i in range(n):
        value = key[i]
        code = value >> s
        if m < 0 or code != previous:
            if m >= 0:
                total[m] = rows
                marked[m, 0] = first
                if shift == 2:
                    marked[m, 1] = second
            m += 1
            distinct[m] = code + offset if code != 0 else code
            n_risk[m] = n - i  # rows at or after the first row of this time
            previous = code
            rows = 0
            first = np.uint64(0)
            second = np.uint64(0)
        rows += 1
        first += (value >> high_mark) & one
        second += value & one
    if m >= 0:
        total[m] = rows
        marked[m, 0] = first
        if shift == 2:
            marked[m, 1] = second
    # views, not copies: copying ~n-long outputs would double the memory traffic
    return distinct[: m + 1], total[: m + 1], marked[: m + 1, :shift], n_risk[: m + 1], n_risk[: m + 1].copy()


@numba.njit(cache=True)
def _positive_bit_range(bits: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """Smallest positive and largest bit pattern of non-negative doubles (1, 0 when all are zero)."""
    low = np.uint64(0xFFFFFFFFFFFFFFFF)
    high = np.uint64(0)
    for i in range(bits.shape[0]):
        b = bits[i]
        if b > high:
            high = b
        if b != 0 and b < low:
            low = b
    if high == 0:
        low = np.uint64(1)  # all times 0: every code is 0, no offset needed
    return low, high


@numba.njit(cache=True)
def _two_mark_keys(bits: np.ndarray, low: np.uint64, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``code << 2 | first << 1 | second`` with code = 0 for time 0, else bits - low + 1 (order kept)."""
    n = bits.shape[0]
    key = np.empty(n, dtype=np.uint64)
    offset = np.uint64(low) - np.uint64(1)
    zero = np.uint64(0)
    one = np.uint64(1)
    two = np.uint64(2)
    for i in range(n):
        b = bits[i]
        code = zero
        if b != zero:
            code = b - offset
        mark_bits = zero
        if first[i]:
            mark_bits |= two
        if second[i]:
            mark_bits |= one
        key[i] = (code << two) | mark_bits
    return key


@numba.njit(cache=True)
def _merge_runs(
    representative: np.ndarray, n_risk: np.ndarray, n_total: np.ndarray, counts: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Collapse consecutive rows that share a representative time (one pass)."""
    m = representative.shape[0]
    k = counts.shape[1]
    time_out = np.empty(m)
    risk_out = np.empty(m)
    total_out = np.empty(m)
    counts_out = np.empty((m, k))
    rows_out = np.empty(m)
    r = -1
    for i in range(m):
        if r < 0 or representative[i] != time_out[r]:
            r += 1
            time_out[r] = representative[i]
            risk_out[r] = n_risk[i]
            rows_out[r] = rows[i]
            total_out[r] = 0.0
            for j in range(k):
                counts_out[r, j] = 0.0
        total_out[r] += n_total[i]
        for j in range(k):
            counts_out[r, j] += counts[i, j]
    r += 1
    return time_out[:r], risk_out[:r], total_out[:r], counts_out[:r], rows_out[:r]


def _unweighted_risk_table(time: np.ndarray, marks: list[np.ndarray], timefix: bool = False) -> RiskTable:
    """Counting without a permutation.

    The marks ride along in the sort: for times >= 0 the IEEE-754 bit
    pattern of a double orders like the number, so ``bits << 1 | mark`` sorts
    by time (ties broken by the mark, which is harmless) and one plain sort of
    integers replaces an argsort plus gathers (about 3x faster). Two marks
    need two free bits: the bit patterns are first shifted down to start at 1
    (0 stays 0), which leaves room whenever the positive times span fewer than
    2**62 patterns (about 1000 binary orders of magnitude, i.e. always in
    practice); otherwise, and for further marks, they sort only their own rows.
    ``+ 0.0`` turns -0.0 into 0.0 so its sign bit cannot misorder it.
    ``timefix`` merges near ties (:func:`merge_near_tied_times`) before the
    marks not carried in the key are placed, so they land on merged times.
    """
    tolerance = _TIMEFIX_TOLERANCE
    n = time.shape[0]
    k = len(marks)
    if n == 0:
        empty = np.zeros(0)
        return RiskTable(empty, empty, empty, np.zeros((0, k)), empty)
    bits = (time + 0.0).view(np.uint64)
    low = np.uint64(0)
    in_key = min(k, 1)
    if k >= 2:
        low, high = _positive_bit_range(bits)
        if high < low or high - low < np.uint64(1) << np.uint64(61):
            in_key = 2
    if in_key == 2:
        key = _two_mark_keys(bits, low, marks[0].view(np.uint8), marks[1].view(np.uint8))
    else:
        key = bits << np.uint64(1)
        if k:
            # in place, casting the flag chunk by chunk (no n-long uint64 temporary)
            np.bitwise_or(key, marks[0].view(np.uint8), out=key, casting="unsafe")
    key.sort()
    offset = np.uint64(low) - np.uint64(1) if in_key == 2 else np.uint64(0)
    bit_patterns, n_total, in_key_counts, n_risk, rows_at_risk = _tabulate_sorted_keys(key, max(in_key, 1), offset)
    distinct = bit_patterns.view(np.float64)
    if timefix and distinct.shape[0] > 1:
        threshold = max(tolerance, tolerance * float(np.mean(distinct)))  # times are >= 0
        # in place: the tabulation's buffers are ours, and fresh ones would cost page faults
        m = _merge_near_tied_rows_inplace(distinct, n_risk, n_total, in_key_counts, rows_at_risk, threshold)
        distinct, n_risk, n_total = distinct[:m], n_risk[:m], n_total[:m]
        in_key_counts, rows_at_risk = in_key_counts[:m], rows_at_risk[:m]
    if in_key == k and k > 0:
        counts = in_key_counts
    else:
        counts = np.zeros((distinct.shape[0], k), dtype=float)
        counts[:, :in_key] = in_key_counts[:, :in_key]
    for j in range(in_key, k):
        marked = np.sort(time[marks[j]])
        if marked.shape[0] == 0:
            continue
        mark_times, mark_starts = distinct_sorted(marked)
        # the (merged) time each marked time belongs to: the last one <= it
        where = np.searchsorted(distinct, mark_times, side="right") - 1
        np.add.at(counts[:, j], where, np.diff(np.append(mark_starts, marked.shape[0])).astype(float))
    return RiskTable(distinct, n_risk, n_total, counts, rows_at_risk)


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
    # numpy's stable sort is a radix sort for integers of 16 bits or less
    small = codes.astype(np.int16) if n_groups <= np.iinfo(np.int16).max else codes
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


@dataclass(frozen=True)
class GroupedRiskTable:
    """Per-group counts on the pooled grid of distinct times.

    Attributes
    ----------
    time : (m,) distinct times of all groups together, ascending.
    n_risk : (K, m) (weighted) number at risk in each group just before each time.
    n_total : (K, m) (weighted) number leaving each group at each time.
    counts : (K, m, k) (weighted) number of each mark per group and time.
    """

    time: np.ndarray
    n_risk: np.ndarray
    n_total: np.ndarray
    counts: np.ndarray


def grouped_risk_table(
    time: np.ndarray,
    marks: Sequence[np.ndarray],
    codes: np.ndarray,
    n_groups: int,
    weights: np.ndarray | None = None,
    timefix: bool = False,
) -> GroupedRiskTable:
    """Tabulate K groups on one grid: one :func:`risk_table` per group, then a merge.

    No per-row inverse index (``np.unique(..., return_inverse=True)`` costs an
    argsort): each group's distinct times are placed on the pooled grid by
    binary search, which is O(m log m) in the number of distinct times.
    ``timefix=True`` first merges near-tied times found on the pooled grid
    (:func:`near_tie_representatives`), as survdiff/survfit do.
    """
    members = group_order(codes, n_groups)
    tables = []
    for rows in members:
        tables.append(
            risk_table(
                time[rows], [np.asarray(mark)[rows] for mark in marks], None if weights is None else weights[rows]
            )
        )
    # timsort: the concatenation is K sorted runs, merged in linear time
    merged = np.sort(np.concatenate([table.time for table in tables]), kind="stable")
    grid, _ = distinct_sorted(merged)
    if timefix:
        representative = near_tie_representatives(grid)
        if representative is not None:
            tables = [merge_near_ties(table, representative[np.searchsorted(grid, table.time)]) for table in tables]
            grid, _ = distinct_sorted(representative)
    m = grid.shape[0]
    n_total = np.zeros((n_groups, m))
    counts = np.zeros((n_groups, m, len(marks)))
    for g, table in enumerate(tables):
        if table.time.shape[0] == 0:
            continue
        place = np.searchsorted(grid, table.time)
        n_total[g, place] = table.n_total
        counts[g, place, :] = table.counts
    # a group's risk set at grid time t is everyone of it leaving at t or later
    n_risk = np.cumsum(n_total[:, ::-1], axis=1)[:, ::-1]
    return GroupedRiskTable(grid, n_risk, n_total, counts)


def near_tie_representatives(
    distinct: np.ndarray, tolerance: float = float(np.sqrt(np.finfo(float).eps))
) -> np.ndarray | None:
    """Times that differ only by floating-point rounding, mapped to the smallest of their run.

    The rule of survival's ``aeqSurv`` (survfit/survdiff/coxph ``timefix=TRUE``,
    documented as all.equal's): consecutive distinct times ``y`` are the same
    time when their gap is <= ``tolerance`` or <= ``tolerance * mean(|y|)``.
    Returns None when there are no such near ties (the usual case), else an
    array like ``distinct`` holding each time's representative. O(m).
    """
    if distinct.shape[0] < 2:
        return None
    gaps = np.diff(distinct)
    scale = np.mean(np.abs(distinct))
    tied = (gaps <= tolerance) | (gaps <= tolerance * scale)
    if not tied.any():
        return None
    run_start = np.concatenate([[True], ~tied])
    first_of_run = np.maximum.accumulate(np.where(run_start, np.arange(distinct.shape[0]), 0))
    return distinct[first_of_run]


def merge_near_ties(table: RiskTable, representative: np.ndarray) -> RiskTable:
    """Merge consecutive rows of ``table`` whose times share a representative (see above)."""
    if table.time.shape[0] == 0:
        return table
    time, n_risk, n_total, counts, rows = _merge_runs(
        np.ascontiguousarray(representative, dtype=np.float64),
        table.n_risk,
        table.n_total,
        np.ascontiguousarray(table.counts, dtype=np.float64),
        table.rows_at_risk,
    )
    return RiskTable(time=time, n_risk=n_risk, n_total=n_total, counts=counts, rows_at_risk=rows)


def merge_near_tied_times(table: RiskTable, tolerance: float = _TIMEFIX_TOLERANCE) -> RiskTable:
    """One table's own near ties merged (timefix when the table's times are the whole grid).

    Equal to ``merge_near_ties(table, near_tie_representatives(table.time))``:
    the gap rule ``gap <= tolerance or gap <= tolerance * mean(|time|)`` is
    ``gap <= max(tolerance, tolerance * mean(|time|))``. Returns ``table``
    itself when nothing is merged.
    """
    time = table.time
    if time.shape[0] < 2:
        return table
    threshold = max(tolerance, tolerance * float(np.mean(np.abs(time))))
    # the in-place kernel on float copies (the table itself is left as it is)
    time_c, risk_c, total_c, counts_c, rows_c = (
        np.array(x, dtype=np.float64) for x in (time, table.n_risk, table.n_total, table.counts, table.rows_at_risk)
    )
    m = _merge_near_tied_rows_inplace(time_c, risk_c, total_c, counts_c, rows_c, threshold)
    if m == time.shape[0]:
        return table
    return RiskTable(
        time=time_c[:m], n_risk=risk_c[:m], n_total=total_c[:m], counts=counts_c[:m], rows_at_risk=rows_c[:m]
    )


@numba.njit(cache=True)
def _merge_near_tied_rows_inplace(
    time: np.ndarray,
    n_risk: np.ndarray,
    n_total: np.ndarray,
    counts: np.ndarray,
    rows: np.ndarray,
    threshold: float,
) -> int:
    """Merge consecutive rows whose time gap is <= ``threshold`` into the first row of their run, in place.

    Same rule and sums as :func:`near_tie_representatives` followed by
    :func:`merge_near_ties`, compacting into the input arrays with no
    temporaries; returns the merged length.

    The gap is always taken between the original consecutive times (read
    before row ``i`` can be overwritten, since the write index never passes
    the read index).
    """
    m = time.shape[0]
    k = counts.shape[1]
    r = 0
    previous = time[0]
    for i in range(1, m):
        current = time[i]
        if current - previous <= threshold:
            n_total[r] += n_total[i]
            for j in range(k):
                counts[r, j] += counts[i, j]
        else:
            r += 1
            time[r] = current
            n_risk[r] = n_risk[i]
            rows[r] = rows[i]
            n_total[r] = n_total[i]
            for j in range(k):
                counts[r, j] = counts[i, j]
        previous = current
    return r + 1
