"""Harrell's C of a fitted risk score and its infinitesimal-jackknife variance, as survival's ``concordance``.

A pair of rows is comparable when one dies at time t and the other is at
risk at t without dying at t (a row censored at t is still at risk, tied
deaths are not compared). It is concordant when the row that dies has the
larger risk score (``concordance(fit)`` of coxph, ``reverse = TRUE``), and
tied on the score when both scores are equal. Pairs are formed only within
strata and, with entry times, only while both rows are under observation.

The kernel sweeps each stratum from its latest time to its earliest with two
weighted rank counters over the risk scores: one holds the comparable risk
set, the other the deaths already passed. A row's pairs as the longer-lived
member are the difference of two readings of the death counter (when the
row joins the risk set at its stop time and when it leaves at its entry
time), so each row costs O(log n).

Each counter keeps the weight at every rank (``at``) plus a Fenwick tree
over blocks of ``_BLOCK`` consecutive ranks. A prefix sum is the tree's sum
over the blocks below plus a short contiguous scan inside the block: the
tree is ``_BLOCK`` times smaller than one over single ranks, so it stays in
cache, and the scan reads one or two cache lines that the exact-rank lookup
reads anyway. Both counters share one interleaved array, so the risk-set and
death readings of a row touch the same memory.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._sorting import _radix_argsort, sortable_keys

__all__ = ["concordance", "dense_rank"]

_BLOCK = 32  # ranks per block of the Fenwick trees


@njit(cache=True)
def _dense_rank_sorted(values, order, rank):
    """Dense 0-based ranks (equal values share one) given the ascending ``order``; returns their number."""
    n = values.shape[0]
    d = -1
    prev = 0.0
    for q in range(n):
        i = order[q]
        v = values[i]
        if q == 0 or v != prev:
            d += 1
            prev = v
        rank[i] = d
    return d + 1


def dense_rank(values: np.ndarray) -> tuple[np.ndarray, int]:
    """0-based dense ranks (n,) int64 of finite float values, and the number of distinct values.

    The values are sorted by a radix sort of keys that order as the floats
    do (:func:`._sorting.sortable_keys`).
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    n = values.shape[0]
    rank = np.empty(n, dtype=np.int64)
    if n == 0:
        return rank, 0
    keys = sortable_keys(values)
    order = _radix_argsort(keys, np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.uint64))
    n_rank = _dense_rank_sorted(values, order, rank)
    return rank, int(n_rank)


@njit(cache=True)
def _add(tree, at, col, rk, val):
    """Add ``val`` at rank ``rk`` to counter ``col`` (0 risk set, 1 deaths)."""
    at[rk, col] += val
    m = tree.shape[0]
    pos = rk // _BLOCK + 1
    while pos <= m:
        tree[pos - 1, col] += val
        pos += pos & (-pos)


@njit(cache=True)
def _clear(tree, at, rk):
    """Zero both counters along the paths that rank ``rk`` used."""
    at[rk, 0] = 0.0
    at[rk, 1] = 0.0
    m = tree.shape[0]
    pos = rk // _BLOCK + 1
    while pos <= m:
        tree[pos - 1, 0] = 0.0
        tree[pos - 1, 1] = 0.0
        pos += pos & (-pos)


@njit(cache=True)
def _below(tree, at, col, rk):
    """Weight of counter ``col`` at ranks below ``rk``."""
    block = rk // _BLOCK
    total = 0.0
    for q in range(block * _BLOCK, rk):
        total += at[q, col]
    pos = block
    while pos > 0:
        total += tree[pos - 1, col]
        pos -= pos & (-pos)
    return total


@njit(cache=True)
def _concordance_kernel(stop, start, event, w, rank, n_rank, sbounds, sorder, has_entry, tree, at, per_row):
    """Weighted concordant, discordant and score-tied pair counts, overall and per row.

    Arrays are in fit order (sorted by stratum, then stop time); ``sorder``
    orders the rows by (stratum, entry) when ``has_entry``. ``tree``
    (ceil(n_rank / _BLOCK), 2) and ``at`` (n_rank, 2) are zeroed work arrays.
    ``per_row`` (n, 2) receives, for each row, its concordant plus half its
    tied pairs (column 0) and all its comparable pairs (column 1), unweighted
    by its own weight, which is what the jackknife needs. Returns the
    weighted totals (concordant, discordant, tied).
    """
    conc = 0.0
    disc = 0.0
    tied_x = 0.0
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        risk_total = 0.0
        dead_total = 0.0
        sp = hi - 1
        i = hi - 1
        while i >= lo:
            t = stop[i]
            j = i
            while j - 1 >= lo and stop[j - 1] == t:
                j -= 1
            for k in range(j, i + 1):
                if event[k] == 0:
                    rk = rank[k]
                    _add(tree, at, 0, rk, w[k])
                    risk_total += w[k]
                    # entry reading before this time's deaths: a row censored at t is compared with them
                    below = _below(tree, at, 1, rk)
                    same = at[rk, 1]
                    per_row[k, 0] -= dead_total - below - 0.5 * same
                    per_row[k, 1] -= dead_total
            if has_entry:
                while sp >= lo and start[sorder[sp]] >= t:
                    k = sorder[sp]
                    rk = rank[k]
                    # entry >= t implies stop > t, so the row was added by an earlier group
                    _add(tree, at, 0, rk, -w[k])
                    risk_total -= w[k]
                    below = _below(tree, at, 1, rk)
                    same = at[rk, 1]
                    per_row[k, 0] += dead_total - below - 0.5 * same
                    per_row[k, 1] += dead_total
                    sp -= 1
            for k in range(j, i + 1):
                if event[k] != 0:
                    rk = rank[k]
                    below = _below(tree, at, 0, rk)
                    same = at[rk, 0]
                    above = risk_total - below - same
                    conc += w[k] * below
                    tied_x += w[k] * same
                    disc += w[k] * above
                    per_row[k, 0] += below + 0.5 * same
                    per_row[k, 1] += risk_total
            for k in range(j, i + 1):
                if event[k] != 0:
                    rk = rank[k]
                    _add(tree, at, 0, rk, w[k])
                    _add(tree, at, 1, rk, w[k])
                    risk_total += w[k]
                    dead_total += w[k]
            for k in range(j, i + 1):
                if event[k] != 0:
                    # entry reading after this time's deaths: tied deaths are not compared
                    rk = rank[k]
                    below = _below(tree, at, 1, rk)
                    same = at[rk, 1]
                    per_row[k, 0] -= dead_total - below - 0.5 * same
                    per_row[k, 1] -= dead_total
            i = j - 1
        # exit reading for rows still at risk at the stratum's earliest time
        if has_entry:
            while sp >= lo:
                k = sorder[sp]
                rk = rank[k]
                below = _below(tree, at, 1, rk)
                same = at[rk, 1]
                per_row[k, 0] += dead_total - below - 0.5 * same
                per_row[k, 1] += dead_total
                sp -= 1
        elif 4 * (hi - lo) >= n_rank:
            # a large stratum: the death counter is final now, so prefix sums over the ranks
            # answer every row at once
            below_of = np.empty(n_rank)
            acc = 0.0
            for q in range(n_rank):
                below_of[q] = acc
                acc += at[q, 1]
            for k in range(lo, hi):
                rk = rank[k]
                per_row[k, 0] += dead_total - below_of[rk] - 0.5 * at[rk, 1]
                per_row[k, 1] += dead_total
        else:
            for k in range(lo, hi):
                rk = rank[k]
                below = _below(tree, at, 1, rk)
                same = at[rk, 1]
                per_row[k, 0] += dead_total - below - 0.5 * same
                per_row[k, 1] += dead_total
        if s == sbounds.shape[0] - 2:
            break
        if 16 * (hi - lo) >= n_rank:
            tree[:] = 0.0
            at[:] = 0.0
        else:
            # a small stratum: empty the counters along the paths it used (zeroing them whole
            # would cost O(n_rank) per stratum, too much with many small strata)
            for k in range(lo, hi):
                _clear(tree, at, rank[k])
    return conc, disc, tied_x


@njit(cache=True)
def _jackknife_sum_of_squares(per_row, w, c_index, denom, cluster_codes, n_clusters):
    """Sum of squared infinitesimal-jackknife influences of C (one per row, or per cluster).

    The influence of row k is the derivative of C in its case weight,
    ``w_k (score_k - C pairs_k) / denom``; with clusters (``n_clusters`` > 0)
    the influences are first added up within clusters.
    """
    n = per_row.shape[0]
    if n_clusters > 0:
        by_cluster = np.zeros(n_clusters)
        for k in range(n):
            by_cluster[cluster_codes[k]] += w[k] * (per_row[k, 0] - c_index * per_row[k, 1]) / denom
        total = 0.0
        for g in range(n_clusters):
            total += by_cluster[g] * by_cluster[g]
        return total
    total = 0.0
    for k in range(n):
        v = w[k] * (per_row[k, 0] - c_index * per_row[k, 1]) / denom
        total += v * v
    return total


def concordance(stop, start, event, weights, risk_score, sbounds, sorder, has_entry, cluster_codes=None):
    """Harrell's C, its infinitesimal-jackknife SE and the weighted pair counts, as coxph's ``concordance``.

    Inputs are in fit order (see :func:`_concordance_kernel`); ``risk_score``
    (n,) is the linear predictor (any shift). C = (concordant + tied / 2) /
    (concordant + discordant + tied), NaN without comparable pairs. The SE
    is survival's: the square root of the summed squared influences, added
    up within ``cluster_codes`` (n,) when given (coxph passes its cluster on).

    Returns (C, SE, {"concordant", "discordant", "tied_x"}).
    """
    rank, n_rank = dense_rank(risk_score)
    n = rank.shape[0]
    tree = np.zeros(((n_rank + _BLOCK - 1) // _BLOCK, 2))
    at = np.zeros((max(n_rank, 1), 2))
    per_row = np.zeros((n, 2))
    conc, disc, tied_x = _concordance_kernel(
        stop, start, event, weights, rank, n_rank, sbounds, sorder, has_entry, tree, at, per_row
    )
    del tree, at, rank
    denom = conc + disc + tied_x
    if denom > 0:
        c_index = (conc + tied_x / 2) / denom
        if cluster_codes is None:
            codes, n_clusters = np.zeros(1, dtype=np.int64), 0
        else:
            codes = np.asarray(cluster_codes, dtype=np.int64)
            n_clusters = int(codes.max()) + 1 if n else 0
        c_se = float(np.sqrt(_jackknife_sum_of_squares(per_row, weights, c_index, denom, codes, n_clusters)))
    else:
        c_index, c_se = float("nan"), float("nan")
    counts = {"concordant": float(conc), "discordant": float(disc), "tied_x": float(tied_x)}
    return float(c_index), c_se, counts
