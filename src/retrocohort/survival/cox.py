"""Cox proportional hazards regression, equal to R's ``survival::coxph``.

The fit sorts the data once by (stratum, stop time) and then, in every
Newton-Raphson iteration, sweeps each stratum from the latest time to the
earliest while keeping running sums of ``w*exp(eta)``, ``w*exp(eta)*x`` and
``w*exp(eta)*x x'`` over the risk set (rows are added at their stop time and,
with ``entry``, removed once the sweep reaches their entry time, which gives
(start, stop] risk sets). One iteration therefore costs O(n p^2). Tied deaths
are handled exactly as coxph does: Breslow uses the full risk set for each of
the ``d`` tied deaths; Efron removes ``k/d`` of the tied deaths' risk weight
for the k-th of them and gives each step the mean case weight of the tied
deaths.

The robust (sandwich) variance is ``D'D`` where ``D`` holds the dfbeta
residuals ``w_i * L_i V`` (``L_i`` the score residual, ``V`` the inverse
information) summed within clusters, as ``coxph(..., cluster=)`` computes it.
Score residuals come from a second O(n p) sweep with cumulative hazard sums.

Numerical kernels take NumPy arrays; :func:`cox` validates and converts.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from numba import njit, typed, types
from scipy import linalg, stats

from .._design import design_matrix, numeric_column, require_columns
from ..errors import ConvergenceError, InputError, ModelWarning
from ._checks import check_event, check_time, require_events
from ._concordance import concordance
from ._sorting import stable_argsort

Ties = Literal["efron", "breslow", "exact"]
_TIES: tuple[str, ...] = get_args(Ties)

__all__ = ["CoxResult", "TestResult", "baseline_hazard", "cox", "predict_survival", "score_residuals"]


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


@njit(cache=True)
def _cox_sweep(
    stop, start, event, w, X, eta, sbounds, sorder, has_entry, efron, r, c, xbar_buf, step_w, ghaz, gown, gexit
):
    """One O(n p) sweep: log partial likelihood, score and the pieces of the information.

    All arrays are sorted by (stratum, stop). ``sbounds`` (n_strata + 1,) holds
    the stratum row boundaries; ``sorder`` is a permutation of the sorted rows
    ordering them by (stratum, entry) ascending (only used if ``has_entry``).

    The information is sum over death steps of ``wt * (S2/S0 - xbar xbar')``.
    Its ``S2/S0`` part equals ``X' diag(r * c) X`` where ``c_i`` is the sum of
    the hazard increments ``wt/S0`` over the steps at which row i is at risk
    (a dying row counts with its Efron fraction ``1 - k/d`` in its own tied
    group), so it is one weighted cross-product after the sweep; the
    ``xbar xbar'`` part is another, over each step's ``xbar`` with weights
    ``wt``: the steps are collected in the small buffer ``xbar_buf`` (B, p)
    (weights in ``step_w`` (B,)) and added to the product whenever it fills,
    so the work memory does not grow with the number of deaths. Both
    products run here in :func:`_add_weighted_crossprod` rather than in
    BLAS: OpenBLAS's worker threads keep spinning after a call, which on a
    small shared machine halves the speed of the numba sweep that follows.
    ``r`` and ``c`` (n,) are work arrays (overwritten).

    ``c_i`` is not kept as the difference of the running hazard total at the
    row's exit and entry: the sweep runs from the latest time, where on a
    monotone likelihood the increments ``wt/S0`` can be 1e8 times those of
    the early times, so early rows' ``c_i`` would be small differences of
    huge totals (the information then came out negative near the divergence,
    where coxph still converges). Instead each death time's total increment
    goes to ``ghaz`` and its Efron share not carried by its dying rows to
    ``gown`` ((n_groups + 1,) each); a row keeps the index of the death times
    already swept at its entry (in ``c``) and, with ``entry``, at its exit
    (``gexit`` (n,)); after the sweep ``ghaz`` is turned into per-stratum
    sums from the earliest time on, so ``c_i`` is a difference of sums that
    are no larger than the hazard up to the row's own stop time.

    Returns (loglik, u (p,), information (p, p)).
    """
    n, p = X.shape
    n_buf = xbar_buf.shape[0]
    loglik = 0.0
    u = np.zeros(p)
    steps = np.zeros((p, p))  # sum over death steps of wt * xbar xbar' (upper triangle)
    s1 = np.zeros(p)
    d1 = np.zeros(p)
    xw = np.zeros(p)
    for i in range(n):
        r[i] = w[i] * np.exp(eta[i])
    m = 0
    g = 0  # death times swept so far, all strata (index into ghaz, gown)
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        g_first = g
        s0 = 0.0
        s1[:] = 0.0
        sp = hi - 1  # next row (in entry order) to leave the risk set
        i = hi - 1
        while i >= lo:
            t = stop[i]
            j = i
            while j - 1 >= lo and stop[j - 1] == t:
                j -= 1
            # rows j..i share stop time t: they enter the risk set
            nd = 0
            dw = 0.0
            d0 = 0.0
            etaw = 0.0
            for k in range(j, i + 1):
                rk = r[k]
                s0 += rk
                c[k] = g  # death times after this row's stop: not in its hazard
                for a in range(p):
                    s1[a] += X[k, a] * rk
                if event[k] != 0:
                    if nd == 0:
                        d1[:] = 0.0
                        xw[:] = 0.0
                    nd += 1
                    dw += w[k]
                    etaw += w[k] * eta[k]
                    d0 += rk
                    for a in range(p):
                        d1[a] += X[k, a] * rk
                        xw[a] += w[k] * X[k, a]
            if has_entry:
                # (start, stop]: a row whose entry is at or after t is not at risk at t
                while sp >= lo and start[sorder[sp]] >= t:
                    k = sorder[sp]
                    rk = r[k]
                    s0 -= rk
                    for a in range(p):
                        s1[a] -= X[k, a] * rk
                    gexit[k] = g
                    sp -= 1
            if nd > 0:
                loglik += etaw
                for a in range(p):
                    u[a] += xw[a]
                if (not efron) or nd == 1:
                    loglik -= dw * np.log(s0)
                    h = dw / s0
                    if m == n_buf:
                        _add_weighted_crossprod(steps, xbar_buf, step_w, m)
                        m = 0
                    for a in range(p):
                        xb = s1[a] / s0
                        u[a] -= dw * xb
                        xbar_buf[m, a] = xb
                    step_w[m] = dw
                    m += 1
                    ghaz[g] = h
                    gown[g] = 0.0
                else:
                    meanwt = dw / nd
                    own = 0.0  # sum of f * h: the share a dying row does not carry
                    htot = 0.0
                    for q in range(nd):
                        f = q / nd
                        e0 = s0 - f * d0
                        loglik -= meanwt * np.log(e0)
                        h = meanwt / e0
                        if m == n_buf:
                            _add_weighted_crossprod(steps, xbar_buf, step_w, m)
                            m = 0
                        for a in range(p):
                            xb = (s1[a] - f * d1[a]) / e0
                            u[a] -= meanwt * xb
                            xbar_buf[m, a] = xb
                        step_w[m] = meanwt
                        m += 1
                        htot += h
                        own += f * h
                    ghaz[g] = htot
                    gown[g] = own
                g += 1
            i = j - 1
        # rows still at risk at the stratum's earliest time leave now
        if has_entry:
            while sp >= lo:
                gexit[sorder[sp]] = g
                sp -= 1
        # ghaz[q] -> hazard summed over this stratum's death times at or before death time q, adding
        # from the earliest (smallest) increments on; ghaz[g] = 0 closes the stratum
        ghaz[g] = 0.0
        for q in range(g - 1, g_first - 1, -1):
            ghaz[q] += ghaz[q + 1]
        for k in range(lo, hi):
            q = int(c[k])
            v = ghaz[q] - (ghaz[gexit[k]] if has_entry else 0.0)
            if event[k] != 0:
                v -= gown[q]
            c[k] = v
        # (the closing zero at ghaz[g] is overwritten by the next stratum's first death time: it is used up)
    for i in range(n):
        # r c >= 0 in exact arithmetic; clip rounding so the weights are not negative
        v = r[i] * c[i]
        c[i] = v if v > 0.0 else 0.0
    _add_weighted_crossprod(steps, xbar_buf, step_w, m)
    imat = np.zeros((p, p))
    _add_weighted_crossprod(imat, X, c, n)
    imat -= steps
    for a in range(p):
        for b in range(a):
            imat[a, b] = imat[b, a]
    return loglik, u, imat


@njit(cache=True)
def _add_weighted_crossprod(acc, A, v, n):
    """Add ``A[:n]' diag(v[:n]) A[:n]`` to the upper triangle of ``acc`` (p, p); A (>= n, p), v (>= n,).

    Eight rows at a time (copied to a small C-ordered block), so each of the
    p(p+1)/2 running sums is loaded and stored once per eight rows; the
    eight products are added pairwise, in row order.
    """
    p = A.shape[1]
    xs = np.empty((8, p))
    n8 = n - n % 8
    for i in range(0, n8, 8):
        for k in range(8):
            for a in range(p):
                xs[k, a] = A[i + k, a]
        for a in range(p):
            t0 = v[i] * xs[0, a]
            t1 = v[i + 1] * xs[1, a]
            t2 = v[i + 2] * xs[2, a]
            t3 = v[i + 3] * xs[3, a]
            t4 = v[i + 4] * xs[4, a]
            t5 = v[i + 5] * xs[5, a]
            t6 = v[i + 6] * xs[6, a]
            t7 = v[i + 7] * xs[7, a]
            for b in range(a, p):
                acc[a, b] += ((t0 * xs[0, b] + t1 * xs[1, b]) + (t2 * xs[2, b] + t3 * xs[3, b])) + (
                    (t4 * xs[4, b] + t5 * xs[5, b]) + (t6 * xs[6, b] + t7 * xs[7, b])
                )
    for i in range(n8, n):
        for a in range(p):
            t = v[i] * A[i, a]
            for b in range(a, p):
                acc[a, b] += t * A[i, b]


@njit(cache=True)
def _xbeta(X, beta, out):
    """``out = X beta`` (n,), without BLAS (see :func:`_cox_sweep` on threads)."""
    n, p = X.shape
    for i in range(n):
        out[i] = 0.0
    for a in range(p):
        b = beta[a]
        for i in range(n):
            out[i] += X[i, a] * b
    return out


@njit(cache=True)
def _linear_predictor(X, beta, out):
    """``out = X beta - max(X beta)`` (n,), without BLAS.

    The shift by the maximum keeps ``exp(eta)`` from overflowing; the fit is
    invariant to it.
    """
    n = X.shape[0]
    _xbeta(X, beta, out)
    top = -np.inf
    for i in range(n):
        if out[i] > top:
            top = out[i]
    if n:
        for i in range(n):
            out[i] -= top
    return out


def _cox_pass(stop, start, event, w, X, eta, sbounds, sorder, has_entry, efron, scratch=None):
    """Log partial likelihood, score (p,) and information (p, p) at ``eta``.

    The O(n p^2) part of the information is a weighted cross-product (see
    :func:`_cox_sweep`); everything else is an O(n p) sweep. ``scratch``
    (from :func:`_pass_scratch`) reuses the large work arrays across
    Newton iterations instead of faulting in fresh pages each time.
    """
    if scratch is None:
        scratch = _pass_scratch(X, int(np.count_nonzero(event)), has_entry)
    return _cox_sweep(stop, start, event, w, X, eta, sbounds, sorder, has_entry, efron, *scratch)


_STEP_BUFFER = 256  # death steps collected before their xbar xbar' products are added


@njit(cache=True)
def _exact_pass(stop, start, event, X, eta, sbounds, has_entry):
    """Exact partial likelihood (coxph ``ties = "exact"``): loglik, score (p,), information (p, p).

    At a time with d tied deaths the likelihood term is the deaths' risk
    over the sum, over every d-subset of the risk set, of the subset's risk:
    ``exp(sum_D eta) / sum_{|S| = d} exp(sum_S eta)``. That sum (and its first
    and second derivatives in beta) follows Gail, Lubin and Rubinstein's
    recursion over the risk set, ``f(k, m) = f(k, m - 1) + r_m f(k - 1, m - 1)``:
    O(d m p^2) per time. The risk set is found by a scan of the stratum, so
    the whole pass is O(n x event times): meant for the small tied data sets
    this method is used on, not for a million rows.
    """
    p = X.shape[1]
    loglik = 0.0
    u = np.zeros(p)
    imat = np.zeros((p, p))
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        i = lo
        while i < hi:
            t = stop[i]
            j = i
            while j < hi and stop[j] == t:
                j += 1
            d = 0
            for k in range(i, j):
                if event[k] != 0:
                    d += 1
            if d > 0:
                # risk set: rows of the stratum with stop >= t (and entry < t)
                top = -np.inf
                for k in range(i, hi):
                    if (not has_entry or start[k] < t) and eta[k] > top:
                        top = eta[k]
                f = np.zeros(d + 1)
                g = np.zeros((d + 1, p))
                h = np.zeros((d + 1, p, p))
                f[0] = 1.0
                for m in range(i, hi):
                    if has_entry and start[m] >= t:
                        continue
                    r = np.exp(eta[m] - top)
                    x = X[m]
                    for k in range(d, 0, -1):
                        for a in range(p):
                            for b in range(p):
                                h[k, a, b] += r * (
                                    x[a] * x[b] * f[k - 1] + x[a] * g[k - 1, b] + g[k - 1, a] * x[b] + h[k - 1, a, b]
                                )
                        for a in range(p):
                            g[k, a] += r * (x[a] * f[k - 1] + g[k - 1, a])
                        f[k] += r * f[k - 1]
                loglik -= np.log(f[d]) + d * top
                for k in range(i, j):
                    if event[k] != 0:
                        loglik += eta[k]
                        for a in range(p):
                            u[a] += X[k, a]
                for a in range(p):
                    u[a] -= g[d, a] / f[d]
                    for b in range(p):
                        imat[a, b] += h[d, a, b] / f[d] - (g[d, a] / f[d]) * (g[d, b] / f[d])
            i = j
    return loglik, u, imat


def _pass_scratch(X: np.ndarray, n_events: int, has_entry: bool):
    """Work arrays for :func:`_cox_pass`: ``r``, ``c`` (n,), the step buffer (B, p) and its weights (B,),
    the per-death-time hazard and Efron shares (n_events + 1,) and the rows' exit indices (n,; 1 without entry).
    """
    n, p = X.shape
    return (
        np.empty(n),
        np.empty(n),
        np.empty((_STEP_BUFFER, p)),
        np.empty(_STEP_BUFFER),
        np.empty(n_events + 1),
        np.empty(n_events + 1),
        np.empty(n if has_entry else 1, dtype=np.int64),
    )


@njit(cache=True)
def _score_resid_kernel(stop, start, event, w, X, eta, sbounds, sorder, has_entry, efron, resid):
    """Unweighted score residuals L_i at ``eta``, written into ``resid`` (n, p), sorted order.

    Each row's first touch (its entry snapshot) assigns, so ``resid`` needs
    no zeroing and can be reused across calls.

    L_i = d_i (x_i - xbar_i) - sum over event times t in (start_i, stop_i] of
    exp(eta_i) (x_i - xbar(t)) dLambda(t), where for Efron ties the k-th step
    of a tied group has its own xbar and hazard increment and a row that dies
    in that group keeps only (1 - k/d) of its risk weight at step k.
    Running totals A = sum dLambda and B = sum dLambda*xbar over event times
    are snapshotted when a row enters (at its stop) and leaves (at its entry).
    """
    n, p = X.shape
    s1 = np.zeros(p)
    d1 = np.zeros(p)
    btot = np.zeros(p)
    bg = np.zeros(p)
    bd = np.zeros(p)
    xm = np.zeros(p)
    xbar = np.zeros(p)
    r = np.empty(n)
    ex = np.empty(n)
    for i in range(n):
        ex[i] = np.exp(eta[i])
        r[i] = w[i] * ex[i]
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        s0 = 0.0
        s1[:] = 0.0
        atot = 0.0
        btot[:] = 0.0
        sp = hi - 1
        i = hi - 1
        while i >= lo:
            t = stop[i]
            j = i
            while j - 1 >= lo and stop[j - 1] == t:
                j -= 1
            nd = 0
            dw = 0.0
            d0 = 0.0
            d1[:] = 0.0
            for k in range(j, i + 1):
                rk = r[k]
                s0 += rk
                for a in range(p):
                    s1[a] += X[k, a] * rk
                # entry snapshot: the row's integral starts below this group's hazard
                for a in range(p):
                    resid[k, a] = ex[k] * (X[k, a] * atot - btot[a])
                if event[k] != 0:
                    nd += 1
                    dw += w[k]
                    d0 += rk
                    for a in range(p):
                        d1[a] += X[k, a] * rk
            if has_entry:
                while sp >= lo and start[sorder[sp]] >= t:
                    k = sorder[sp]
                    rk = r[k]
                    s0 -= rk
                    for a in range(p):
                        s1[a] -= X[k, a] * rk
                    # exit snapshot: hazard of event times after its entry
                    for a in range(p):
                        resid[k, a] -= ex[k] * (X[k, a] * atot - btot[a])
                    sp -= 1
            if nd > 0:
                ag = 0.0  # hazard increment for rows at risk not dying here
                ad = 0.0  # same for the rows dying here (Efron down-weighting)
                bg[:] = 0.0
                bd[:] = 0.0
                xm[:] = 0.0
                if (not efron) or nd == 1:
                    h = dw / s0
                    ag = h
                    ad = h
                    for a in range(p):
                        xbar[a] = s1[a] / s0
                        bg[a] = h * xbar[a]
                        bd[a] = bg[a]
                        xm[a] = xbar[a]
                else:
                    meanwt = dw / nd
                    for m in range(nd):
                        f = m / nd
                        e0 = s0 - f * d0
                        h = meanwt / e0
                        ag += h
                        ad += (1.0 - f) * h
                        for a in range(p):
                            xb = (s1[a] - f * d1[a]) / e0
                            bg[a] += h * xb
                            bd[a] += (1.0 - f) * h * xb
                            xm[a] += xb / nd
                atot += ag
                for a in range(p):
                    btot[a] += bg[a]
                for k in range(j, i + 1):
                    if event[k] != 0:
                        for a in range(p):
                            resid[k, a] += X[k, a] - xm[a] + ex[k] * (X[k, a] * (ag - ad) - (bg[a] - bd[a]))
            i = j - 1
        # rows still at risk at the stratum's earliest time leave now
        if has_entry:
            while sp >= lo:
                k = sorder[sp]
                for a in range(p):
                    resid[k, a] -= ex[k] * (X[k, a] * atot - btot[a])
                sp -= 1
        else:
            for k in range(lo, hi):
                for a in range(p):
                    resid[k, a] -= ex[k] * (X[k, a] * atot - btot[a])
    return resid


@njit(cache=True)
def _hazard_kernel(stop, start, event, w, eta, sbounds, sorder, has_entry, efron):
    """Baseline hazard increments (risk scores exp(eta)) at every distinct stop time per stratum.

    Returns (row index of the time's first row, increment) per distinct
    (stratum, stop), in sorted order. The increment is ``dw/S0`` (Breslow)
    or ``sum_k (dw/d)/(S0 - k/d D0)`` (Efron), the tie correction coxph's
    survival curves use with Efron ties; 0 at times without events.
    """
    n = stop.shape[0]
    first = np.empty(n, dtype=np.int64)
    inc = np.empty(n)
    r = np.empty(n)
    for i in range(n):
        r[i] = w[i] * np.exp(eta[i])
    m = 0
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        s0 = 0.0
        sp = hi - 1
        i = hi - 1
        m_start = m
        while i >= lo:
            t = stop[i]
            j = i
            while j - 1 >= lo and stop[j - 1] == t:
                j -= 1
            nd = 0
            dw = 0.0
            d0 = 0.0
            for k in range(j, i + 1):
                s0 += r[k]
                if event[k] != 0:
                    nd += 1
                    dw += w[k]
                    d0 += r[k]
            if has_entry:
                while sp >= lo and start[sorder[sp]] >= t:
                    s0 -= r[sorder[sp]]
                    sp -= 1
            h = 0.0
            if nd > 0:
                if (not efron) or nd == 1:
                    h = dw / s0
                else:
                    for q in range(nd):
                        h += (dw / nd) / (s0 - (q / nd) * d0)
            first[m] = j
            inc[m] = h
            m += 1
            i = j - 1
        # this stratum's times were stored latest first: put them in time order
        first[m_start:m] = first[m_start:m][::-1].copy()
        inc[m_start:m] = inc[m_start:m][::-1].copy()
    return first[:m], inc[:m]


@njit(cache=True)
def _weighted_cluster_sums(resid, w, codes, n_clusters):
    """Sum of ``w_i * resid_i`` within clusters: (n_clusters, p)."""
    n, p = resid.shape
    out = np.zeros((n_clusters, p))
    for i in range(n):
        g = codes[i]
        for a in range(p):
            out[g, a] += w[i] * resid[i, a]
    return out


@njit(cache=True)
def _centre_columns(X, means):
    """``X -= means`` in place, column by column (X column-major)."""
    n, p = X.shape
    for j in range(p):
        m = means[j]
        for i in range(n):
            X[i, j] -= m


@njit(cache=True)
def _snap_sorted(values, distinct_start, cuts_keep):
    """Replace each sorted value by the first value of its run of tied distinct values.

    ``distinct_start`` (n,) is True where a new distinct value begins;
    ``cuts_keep`` (n_distinct,) is True where that distinct value starts a new
    run (its gap to the previous one is not a rounding tie).
    """
    n = values.shape[0]
    out = np.empty(n)
    d = -1
    cut = values[0] if n else 0.0
    for i in range(n):
        if distinct_start[i]:
            d += 1
            if cuts_keep[d]:
                cut = values[i]
        out[i] = cut
    return out


@njit(cache=True)
def _gather_checked(columns, order, out, n_bad, col_min, col_max, col_sum):
    """``out[k, j] = columns[j][order[k]]``, with each column's non-finite count, min, max and sum.

    ``columns`` is a typed list of p 1-D arrays (n,), possibly strided views
    of one 2-D pandas block. Rows are gathered in chunks of the order, all
    columns per chunk, so the source cache lines a chunk touches are reused
    by every column instead of being fetched again once per column.
    """
    n = order.shape[0]
    p = len(columns)
    chunk = 2048
    for j in range(p):
        n_bad[j] = 0
        col_min[j] = np.inf
        col_max[j] = -np.inf
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        for j in range(p):
            col = columns[j]
            total = 0.0
            bad = 0
            lo = col_min[j]
            hi = col_max[j]
            for k in range(s, e):
                v = col[order[k]]
                out[k, j] = v
                total += v
                if not np.isfinite(v):
                    bad += 1
                else:
                    if v < lo:
                        lo = v
                    if v > hi:
                        hi = v
            n_bad[j] += bad
            col_sum[j] += total
            col_min[j] = lo
            col_max[j] = hi


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    """A chi-square test: ``statistic`` on ``df`` degrees of freedom, ``p_value``."""

    statistic: float
    df: int
    p_value: float


@dataclass(frozen=True)
class _SortedFit:
    """What later computations (PH test, residuals) need, in fit order.

    Arrays are sorted by (stratum, stop); ``order`` maps back to input rows.
    ``X`` is the centered design, ``eta`` the linear predictor at the estimate.
    """

    stop: np.ndarray
    start: np.ndarray
    event: np.ndarray
    weights: np.ndarray
    X: np.ndarray
    eta: np.ndarray
    sbounds: np.ndarray
    sorder: np.ndarray
    has_entry: bool
    efron: bool
    order: np.ndarray
    columns: tuple[str, ...]
    terms: tuple[tuple[str, tuple[str, ...]], ...]
    means: np.ndarray
    beta: np.ndarray
    strata_columns: tuple[str, ...]
    strata_labels: tuple
    cluster_codes: np.ndarray | None = None
    offset: np.ndarray | None = None  # sorted order; already part of eta
    offset_column: str | None = None


@dataclass(frozen=True)
class CoxResult:
    """Result of :func:`cox`; matches ``summary(coxph(...))``.

    Attributes
    ----------
    summary : DataFrame indexed by model term name (R's, e.g. ``sexM``) with
        ``coef``, ``se``, ``hr``, ``lower``, ``upper``, ``z``, ``p`` and, when
        robust, ``naive_se`` (coxph's ``se(coef)``; ``se`` is then ``robust se``).
    vcov : DataFrame (p, p), ``vcov(fit)`` (robust when robust).
    naive_vcov : DataFrame (p, p), the inverse information (``fit$naive.var``
        when robust, else equal to ``vcov``).
    naive_se : Series, square roots of the diagonal of ``naive_vcov``.
    loglik : (null, final) log partial likelihood, ``fit$loglik``.
    n, n_events : rows used and number of event rows (unweighted), ``fit$n``, ``fit$nevent``.
    likelihood_ratio, wald, score : tests as ``summary.coxph`` prints them (None for the null model);
        ``robust_score`` is coxph's robust score test (``fit$rscore``) or None.
    concordance, concordance_se : Harrell's C and its infinitesimal-jackknife
        standard error, as ``fit$concordance[c("concordance", "std")]``;
        ``concordance_counts`` the weighted concordant, discordant and tied.x pair counts.
        Computed on first access (an O(n log n) pass that costs about as much
        as the fit itself at large n) and then cached on the result.
    iterations, converged : Newton-Raphson iterations (``fit$iter`` of a converged
        fit; coxph reports ``iter.max + 1`` when it runs out, we report
        ``max_iter``) and whether the relative log-likelihood change reached ``eps``.
    ties, robust, conf_level, notes.
    """

    summary: pd.DataFrame
    vcov: pd.DataFrame
    naive_vcov: pd.DataFrame
    naive_se: pd.Series
    loglik: tuple[float, float]
    n: int
    n_events: int
    likelihood_ratio: TestResult | None
    wald: TestResult | None
    score: TestResult | None
    robust_score: TestResult | None
    iterations: int
    converged: bool
    ties: str
    robust: bool
    conf_level: float
    notes: tuple[str, ...]
    _fit: _SortedFit = field(repr=False, compare=False)
    call: str = field(default="", compare=False)  # the fit in words, for the printed result

    @property
    def is_null(self) -> bool:
        """True for the null model (no covariates), ``coxph(Surv(...) ~ 1)``."""
        return len(self._fit.columns) == 0

    def _null_lines(self) -> list[str]:
        # print.coxph of a null fit: the call, then "Null model", its log likelihood and n / events
        lines = ["Call:", self.call, "", "Null model", f"  log likelihood= {self.loglik[1]:.7g} "]
        lines.append(f"  n= {self.n}, number of events= {self.n_events} ")
        return lines + (["", *self.notes] if self.notes else [])

    def __repr__(self) -> str:
        # print(coxph) + summary(coxph); the C index is lazy: shown only once computed (see docs/survival-cox.md)
        if self.is_null:
            return "\n".join(self._null_lines())
        from .._printing import render_cox

        return render_cox(self)

    def _repr_html_(self) -> str:
        if self.is_null:
            return "<pre>" + html.escape("\n".join(self._null_lines())) + "</pre>"
        from .._printing import render_cox_html

        return render_cox_html(self)

    def plot(self, ax: Any = None) -> Any:
        """Forest plot of the hazard ratios with their intervals; returns a matplotlib Figure."""
        if self.is_null:
            raise InputError("cox: the null model (no covariates) has no hazard ratios to plot")
        from .._printing import forest_of_terms

        return forest_of_terms(self.summary, "Hazard ratio", ax)

    @cached_property
    def _concordance_parts(self) -> tuple[float, float, dict[str, float]]:
        # cached_property writes to the instance __dict__ directly, so it works on this frozen dataclass
        return _concordance(self._fit)

    @property
    def concordance(self) -> float:
        """Harrell's C of the linear predictor, ``fit$concordance["concordance"]``."""
        return self._concordance_parts[0]

    @property
    def concordance_se(self) -> float:
        """Infinitesimal-jackknife standard error of the C index, ``fit$concordance["std"]``."""
        return self._concordance_parts[1]

    @property
    def concordance_counts(self) -> dict[str, float]:
        """Weighted concordant, discordant and tied.x pair counts (a fresh dict each access)."""
        return dict(self._concordance_parts[2])

    @property
    def coef(self) -> pd.Series:
        """Estimated log hazard ratios, indexed by term."""
        return self.summary["coef"]

    @property
    def terms(self) -> dict[str, tuple[str, ...]]:
        """Covariate name -> the model columns it expanded to."""
        return dict(self._fit.terms)


# ---------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def _event_column(data: pd.DataFrame, name: str, where: str) -> np.ndarray:
    """Event indicator as int8 (n,), 1 = event (checked as for every survival estimator)."""
    return check_event(data, name, where).view(np.int8)


def _group_codes(
    data: pd.DataFrame, columns: list[str], what: str, where: str, sort: bool = True
) -> tuple[np.ndarray, list]:
    """Integer codes 0..k-1 for the distinct values of ``columns`` (sorted unless ``sort=False``), and the values.

    Clusters need no order (their sums only enter ``D'D``), so they skip the sort; whole-number
    float ids are hashed as integers, which is about twice as fast.
    """
    require_columns(data, columns, where)
    missing = {c: int(data[c].isna().sum()) for c in columns if data[c].isna().any()}
    if missing:
        raise InputError(
            f"{where}: {what} column(s) have missing values {missing} (column: rows) out of "
            f"{len(data)} rows; give those rows a {what} value or drop them explicitly"
        )
    if len(columns) == 1:
        column = data[columns[0]]
        values: pd.Series | np.ndarray = column
        if not sort and pd.api.types.is_float_dtype(column.dtype):
            raw = column.to_numpy()
            if np.isfinite(raw).all() and np.abs(raw).max(initial=0.0) < 2.0**62:
                as_int = raw.astype(np.int64)
                if np.array_equal(as_int, raw):  # whole numbers (an id stored as float): same groups
                    values = as_int
        codes, uniques = pd.factorize(values, sort=sort)
        return codes.astype(np.int64), list(uniques)
    grouped = data.groupby(columns, sort=True, observed=True)
    return grouped.ngroup().to_numpy(dtype=np.int64), list(grouped.size().index)


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------


def _design(data: pd.DataFrame, covariates: list[str], where: str, order: np.ndarray):
    """Centred model matrix in sorted row order (n, p), Fortran order; each term's column names; column means, min, max.

    Plain numeric columns are gathered straight into place (checked for
    missing and infinite values in the same pass); categorical, string and
    boolean columns go through ``design_matrix`` for R's treatment contrasts.
    Each column's sum is taken while it is gathered and the columns are then
    centred on their means in place (coxph centres too; it changes nothing
    but the rounding). Column-major storage makes
    the per-column gather contiguous; the kernels stream the p columns in
    sorted order.
    """
    n = len(data)
    term_cols: list[tuple[str, tuple[str, ...]]] = []
    pieces: list[np.ndarray] = []
    numeric: list[tuple[str, int]] = []  # (covariate, its column in X)
    checked = 0  # numeric covariates before this position are known to be finite

    def nonfinite_error(cov: str, values: np.ndarray) -> InputError:
        n_nan = int(np.isnan(values).sum())
        n_bad = int((~np.isfinite(values)).sum())
        return InputError(
            f"{where}: covariate {cov!r} has {n_nan} missing and {n_bad - n_nan} infinite "
            f"value(s) out of {n} rows; drop or impute them explicitly before fitting"
        )

    for cov in covariates:
        col = data[cov]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            term_cols.append((cov, (cov,)))
            numeric.append((cov, len(pieces)))
            pieces.append(col.to_numpy(dtype=float))  # may be strided (a 2-D block): the gather reads it in place
        else:
            # earlier numeric covariates are checked first, so the first bad covariate is reported
            for name, j in numeric[checked:]:
                if not np.isfinite(pieces[j]).all():
                    raise nonfinite_error(name, pieces[j])
            checked = len(numeric)
            block = design_matrix(data, [cov], where)
            term_cols.append((cov, tuple(block.columns)))
            pieces.extend(block[c].to_numpy(dtype=float) for c in block.columns)
    p = len(pieces)
    X = np.empty((n, p), order="F")
    col_min, col_max, n_bad = np.empty(p), np.empty(p), np.zeros(p, dtype=np.int64)
    col_sum = np.zeros(p)
    typed_pieces = typed.List.empty_list(types.Array(types.float64, 1, "A"))
    for values in pieces:
        typed_pieces.append(values)
    # gather into sorted order and check in one pass (no temporaries: this is the fit's largest copy)
    _gather_checked(typed_pieces, order.astype(np.int64, copy=False), X, n_bad, col_min, col_max, col_sum)
    for cov, j in numeric:
        if n_bad[j]:
            raise nonfinite_error(cov, pieces[j])
    means = col_sum / max(n, 1)
    _centre_columns(X, means)
    return X, term_cols, means, col_min, col_max


def _timefix(stop: np.ndarray, start: np.ndarray | None, tolerance: float = np.sqrt(np.finfo(float).eps)):
    """Merge times that differ only by rounding, as ``survival::aeqSurv`` (coxph's ``timefix=TRUE``).

    Distinct finite times are sorted; neighbours whose gap is at most
    ``tolerance``, or at most ``tolerance`` relative to the mean absolute
    time (the ``all.equal`` rule), are considered equal, and every time in
    such a run is replaced by the smallest one. Entry and stop times are
    adjudicated together.
    """
    pool = stop if start is None else np.concatenate([stop, start])
    values = np.unique(pool[np.isfinite(pool)])
    if len(values) < 2:
        return stop, start
    gaps = np.diff(values)
    tied = (gaps <= tolerance) | (gaps / np.mean(np.abs(values)) <= tolerance)
    if not tied.any():
        return stop, start
    cuts = values[np.concatenate(([True], ~tied))]

    def snap(x: np.ndarray) -> np.ndarray:
        return cuts[np.searchsorted(cuts, x, side="right") - 1]

    return snap(stop), (None if start is None else snap(start))


@njit(cache=True)
def _has_near_ties(values, tolerance):
    """Whether two neighbouring distinct values of the sorted ``values`` are equal up to ``tolerance``.

    The test of :func:`_timefix_sorted` (absolute gap, or gap relative to the
    mean absolute distinct value), in two passes without temporaries: the
    usual answer at large n is "no", and then nothing else needs to be built.
    """
    n = values.shape[0]
    total = 0.0
    n_distinct = 0
    for i in range(n):
        if i == 0 or values[i] != values[i - 1]:
            total += abs(values[i])
            n_distinct += 1
    scale = total / n_distinct
    prev = values[0]
    for i in range(1, n):
        v = values[i]
        if v != prev:
            gap = v - prev
            if gap <= tolerance or gap / scale <= tolerance:
                return True
            prev = v
    return False


def _timefix_sorted(values: np.ndarray, tolerance: float = np.sqrt(np.finfo(float).eps)) -> np.ndarray:
    """:func:`_timefix` for right-censored times already sorted ascending, in O(n)."""
    if len(values) < 2 or not _has_near_ties(values, tolerance):
        return values
    new = np.empty(len(values), dtype=bool)
    new[0] = True
    np.not_equal(values[1:], values[:-1], out=new[1:])
    distinct = values[new]
    if len(distinct) < 2:
        return values
    gaps = np.diff(distinct)
    tied = (gaps <= tolerance) | (gaps / np.mean(np.abs(distinct)) <= tolerance)
    if not tied.any():
        return values
    # one linear walk instead of a binary search per row: the values are sorted
    return _snap_sorted(values, new, np.concatenate(([True], ~tied)))


def _chol_solve(imat: np.ndarray, rhs: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    try:
        factor = linalg.cho_factor(imat, lower=False, check_finite=True)
    except (linalg.LinAlgError, ValueError):
        _raise_singular(imat, columns)
    return linalg.cho_solve(factor, rhs)


def _scaled(imat: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """``diag(scale) imat diag(scale)``: the information of the columns divided by their spread."""
    return imat if scale is None else imat * np.outer(scale, scale)


def _pivots_above_tolerance(imat: np.ndarray, scale: np.ndarray | None = None) -> bool:
    """Whether every Cholesky pivot of ``imat`` exceeds coxph's ``toler.chol`` times its largest diagonal.

    A scipy Cholesky only fails on a pivot <= 0; a covariate that carries no
    information (constant within every stratum) can leave a pivot of rounding
    size, which coxph's tolerance treats as zero. coxph applies the tolerance
    to the information of its rescaled columns (it divides each by its mean
    absolute deviation); ``scale`` (p,) plays that part here (1 / the
    column's range), so a covariate's units do not decide.
    """
    if not np.all(np.isfinite(imat)):
        return False
    imat = _scaled(imat, scale)
    p = imat.shape[0]
    top = float(np.abs(np.diag(imat)).max(initial=0.0))
    if top <= 0.0:
        return False
    tol = np.finfo(float).eps ** 0.75 * top
    a = np.array(imat, dtype=float, copy=True)
    for j in range(p):
        piv = a[j, j]
        if not piv > tol:
            return False
        # eliminate column j from the trailing block (outer-product Cholesky on a copy)
        a[j + 1 :, j + 1 :] -= np.outer(a[j + 1 :, j], a[j, j + 1 :]) / piv
    return True


def _raise_singular(imat: np.ndarray, columns: Sequence[str], scale: np.ndarray | None = None) -> None:
    """Name the columns whose information is not positive given the earlier ones.

    Sequential Cholesky with coxph's tolerance (``toler.chol`` = eps^0.75
    times the largest diagonal element), the same rule by which coxph sets a
    coefficient to NA (on the columns scaled by ``scale``, see
    :func:`_pivots_above_tolerance`).
    """
    imat = _scaled(imat, scale)
    p = imat.shape[0]
    diag = np.abs(np.diag(imat))
    tol = np.finfo(float).eps ** 0.75 * (diag[np.isfinite(diag)].max(initial=0.0) or 1.0)
    bad: list[tuple[str, list[str]]] = []  # (column, the columns kept before it)
    kept: list[int] = []
    for j in range(p):
        idx = [*kept, j]
        sub = imat[np.ix_(idx, idx)]
        if not np.all(np.isfinite(sub)):
            bad.append((columns[j], [columns[k] for k in kept]))
            continue
        # Schur complement of column j given the kept ones
        if kept:
            a = imat[np.ix_(kept, kept)]
            b = imat[kept, j]
            schur = imat[j, j] - b @ np.linalg.solve(a, b)
        else:
            schur = imat[j, j]
        if not schur > tol:
            bad.append((columns[j], [columns[k] for k in kept]))
        else:
            kept.append(j)
    described = "; ".join(
        f"{col!r} is collinear with {earlier}" if earlier else f"{col!r} is constant" for col, earlier in bad
    )
    raise InputError(
        f"cox data: {described} within every stratum's risk sets (coxph would report NA for "
        f"{'it' if len(bad) == 1 else 'them'}); drop one of the terms involved or recode it"
    )


def _newton(
    fit_pass,
    p: int,
    columns: Sequence[str],
    max_iter: int,
    eps: float,
    scale: np.ndarray | None = None,
    init: np.ndarray | None = None,
):
    """Newton-Raphson with step halving, as coxph's fitter does.

    Starts at ``init`` (beta = 0 by default); the "null" quantities are those at
    the start. Converged when |1 - loglik_old/loglik_new| <= eps
    after a full (not halved) step; a step that lowers the log-likelihood is
    halved towards the previous estimate. Returns the estimate, the null and
    final quantities and the iteration count.
    """
    beta = np.zeros(p) if init is None else np.array(init, dtype=float)
    if init is not None:
        raw_pass = fit_pass

        def fit_pass(b):
            # far from 0 every risk score but one can underflow to 0 (an empty risk-set sum): treat that
            # point as not finite, so that Newton halves its step, or the start is reported below
            try:
                return raw_pass(b)
            except ZeroDivisionError:
                return -np.inf, np.full(p, np.nan), np.full((p, p), np.nan)

    loglik0, u0, imat0 = fit_pass(beta)
    if not np.isfinite(loglik0):
        raise ConvergenceError(
            f"cox: log partial likelihood is not finite at the starting beta {beta.tolist()}; "
            "check times, weights and init"
        )
    if not _pivots_above_tolerance(imat0, scale):
        if init is not None and np.any(beta != 0):
            _ll, _u, imat_zero = fit_pass(np.zeros(p))
            if _pivots_above_tolerance(imat_zero, scale):
                # the model is fine at 0: it is the starting point that drowns the information
                raise InputError(
                    f"cox: the information matrix is numerically singular at init {beta.tolist()} (one risk "
                    "score dominates every risk set); start closer to 0 or leave init out"
                )
            imat0 = imat_zero
        _raise_singular(imat0, columns, scale)  # e.g. constant within every stratum: rounding can leave a tiny pivot
    step0 = _chol_solve(imat0, u0, columns)
    score_stat = float(u0 @ step0)
    loglik = loglik0
    newbeta = beta + step0
    halving = 0
    converged = False
    iterations = 0
    u, imat, newlk = u0, imat0, loglik0
    if max_iter == 0:
        return beta, loglik0, u0, imat0, loglik0, u0, imat0, score_stat, 0, True
    for it in range(1, max_iter + 1):
        iterations = it
        newlk, u, imat = fit_pass(newbeta)
        finite = np.isfinite(newlk) and np.all(np.isfinite(u)) and np.all(np.isfinite(imat))
        if finite and halving == 0 and abs(1.0 - loglik / newlk) <= eps:
            converged = True
            beta = newbeta
            break
        if it == max_iter:
            break
        if (not finite) or newlk < loglik:
            halving += 1
            newbeta = (newbeta + beta) / 2.0
        else:
            halving = 0
            loglik = newlk
            beta = newbeta
            newbeta = beta + _chol_solve(imat, u, columns)
    if not converged:
        beta = newbeta
    return beta, loglik0, u0, imat0, newlk, u, imat, score_stat, iterations, converged


def _fit_pass_factory(sf: dict):
    scratch = _pass_scratch(sf["X"], int(np.count_nonzero(sf["event"])), sf["has_entry"])
    eta = np.empty(sf["X"].shape[0])

    def fit_pass(beta: np.ndarray):
        _linear_predictor(sf["X"], beta, eta)
        if sf.get("offset") is not None:
            np.add(eta, sf["offset"], out=eta)  # in place: eta belongs to the enclosing scope
            np.subtract(eta, eta.max(), out=eta)
        if sf.get("exact"):
            return _exact_pass(sf["stop"], sf["start"], sf["event"], sf["X"], eta, sf["sbounds"], sf["has_entry"])
        return _cox_pass(
            sf["stop"],
            sf["start"],
            sf["event"],
            sf["w"],
            sf["X"],
            eta,
            sf["sbounds"],
            sf["sorder"],
            sf["has_entry"],
            sf["efron"],
            scratch,
        )

    return fit_pass


def score_residuals(result: CoxResult, weighted: bool = False, at_null: bool = False) -> pd.DataFrame:
    """Score residuals of a fit, as ``residuals(fit, type="score")``.

    Parameters
    ----------
    result : CoxResult
    weighted : multiply by case weights (``weighted=TRUE``).
    at_null : evaluate at beta = 0 instead of the estimate.

    Returns
    -------
    DataFrame (n, p) in the input row order, columns the model terms.
    """
    if not result._fit.columns:
        raise InputError("score_residuals: score residuals are not defined for a null model (no covariates)")
    f = result._fit
    eta = np.zeros_like(f.eta) if at_null else f.eta
    resid = _score_resid_kernel(
        f.stop,
        f.start,
        f.event,
        f.weights,
        f.X,
        eta - eta.max(),
        f.sbounds,
        f.sorder,
        f.has_entry,
        f.efron,
        np.empty(f.X.shape),
    )
    if weighted:
        resid = resid * f.weights[:, None]
    out = np.empty_like(resid)
    out[f.order] = resid
    return pd.DataFrame(out, columns=list(f.columns))


def _wald_quadratic(var: np.ndarray, b: np.ndarray) -> float:
    """``b' var^- b`` with coxph's tolerant Cholesky (``coxph.wtest``).

    A pivot below ``toler.chol`` (eps^0.75) times the largest diagonal
    element marks a redundant direction, which is then skipped, so a
    rank-deficient matrix (e.g. a robust variance from fewer clusters than
    coefficients) gives a generalized-inverse statistic instead of an error.
    """
    m = var.shape[0]
    a = np.array(var, dtype=float, copy=True)
    tol = np.finfo(float).eps ** 0.75 * np.max(np.abs(np.diag(a)))
    diag = np.zeros(m)
    lower = np.eye(m)
    for i in range(m):
        piv = a[i, i] - np.sum(lower[i, :i] ** 2 * diag[:i])
        if not np.isfinite(piv) or piv < tol:
            diag[i] = 0.0
            continue
        diag[i] = piv
        for k in range(i + 1, m):
            lower[k, i] = (a[k, i] - np.sum(lower[k, :i] * lower[i, :i] * diag[:i])) / piv
    # solve L D L' x = b skipping zero pivots
    y = np.zeros(m)
    for i in range(m):
        y[i] = b[i] - lower[i, :i] @ y[:i]
    z = np.where(diag > 0, y / np.where(diag > 0, diag, 1.0), 0.0)
    x = np.zeros(m)
    for i in range(m - 1, -1, -1):
        x[i] = 0.0 if diag[i] == 0 else z[i] - lower[i + 1 :, i] @ x[i + 1 :]
    return float(b @ x)


def _offset_mean(f: _SortedFit) -> float:
    """Case-weighted mean of the fit's offset (0 without one): basehaz's reference offset."""
    if f.offset is None:
        return 0.0
    return float(np.average(f.offset, weights=np.asarray(f.weights, dtype=float)))


def _raw_baseline(result: CoxResult) -> pd.DataFrame:
    """Cumulative hazard at covariates 0 and offset 0 (the scale survfit multiplies by exp(x b + offset))."""
    f = result._fit
    eta = f.eta - f.eta.max()
    first, inc = _hazard_kernel(f.stop, f.start, f.event, f.weights, eta, f.sbounds, f.sorder, f.has_entry, f.efron)
    # eta is centred and shifted (and holds the offset): undo the shift and centring so that
    # the baseline refers to covariates 0 and offset 0
    shift = float(f.eta.max() + f.means @ f.beta)
    inc = inc * np.exp(-shift)
    stratum = np.searchsorted(f.sbounds, first, side="right") - 1
    cumhaz = np.empty_like(inc)
    for s in np.unique(stratum):
        sel = stratum == s
        cumhaz[sel] = np.cumsum(inc[sel])
    out = pd.DataFrame({"time": f.stop[first], "cumhaz": cumhaz})
    if f.strata_columns:
        labels = [f.strata_labels[s] for s in stratum]
        out.insert(0, "strata", labels)
    return out


def baseline_hazard(result: CoxResult) -> pd.DataFrame:
    """Cumulative baseline hazard at covariates 0, as ``basehaz(fit, centered = FALSE)``.

    One row per distinct stop time (per stratum), with columns ``strata``
    (when the fit has strata), ``time`` and ``cumhaz``. With Efron ties the
    increments carry Efron's tie correction, as coxph's ``survfit`` does.
    For a fit with an offset the curve is that of covariates 0 and the
    case-weighted mean offset (basehaz puts the mean offset in its reference
    profile: the hazard at offset 0 times ``exp(mean(offset))``, checked
    live against survival 3.5-3 with strata and weights).
    """
    out = _raw_baseline(result)
    if result._fit.offset is not None:
        out["cumhaz"] = out["cumhaz"] * math.exp(_offset_mean(result._fit))
    return out


def _profile_matrix(result: CoxResult, newdata: pd.DataFrame) -> np.ndarray:
    """Model columns for new covariate profiles, rebuilt from the fit's term names."""
    f = result._fit
    require_columns(newdata, [name for name, _ in f.terms], "newdata")
    cols = []
    for name, columns in f.terms:
        values = newdata[name]
        if columns == (name,):
            cols.append(numeric_column(newdata, name, "newdata"))
            continue
        for col in columns:
            level = col[len(name) :]
            if pd.api.types.is_bool_dtype(values):
                cols.append(np.asarray(values, dtype=float))
            else:
                cols.append((values.astype(str) == level).to_numpy(dtype=float))
    if not cols:  # the null model: every profile has linear predictor 0 (plus its offset)
        return np.zeros((len(newdata), 0))
    return np.column_stack(cols)


def predict_survival(result: CoxResult, newdata: pd.DataFrame, times=None) -> pd.DataFrame:
    """Survival curves for covariate profiles, ``exp(-H0(t) exp(x beta))`` as ``survfit(fit, newdata)``.

    Parameters
    ----------
    result : a fit without strata.
    newdata : one row per profile, with the fit's covariates.
    times : times (days) to evaluate; default every distinct stop time of the fit.

    Returns
    -------
    DataFrame indexed by time, one column per row of ``newdata`` (its index).
    """
    if result._fit.strata_columns:
        raise InputError(
            "predict_survival: the fit has strata; a survival curve needs a stratum "
            "(not supported yet: use baseline_hazard per stratum)"
        )
    # survfit.coxph gives a new row its offset as it is, on the hazard at offset 0
    base = _raw_baseline(result)
    grid = base["time"].to_numpy() if times is None else np.asarray(times, dtype=float)
    idx = np.searchsorted(base["time"].to_numpy(), grid, side="right") - 1
    h0 = np.where(idx >= 0, base["cumhaz"].to_numpy()[np.maximum(idx, 0)], 0.0)
    lp = _profile_matrix(result, newdata) @ result._fit.beta
    column = result._fit.offset_column
    if column is not None:
        lp = lp + numeric_column(newdata, column, "predict_survival newdata (the fit's offset column)")
    surv = np.exp(-np.outer(h0, np.exp(lp)))
    return pd.DataFrame(surv, index=pd.Index(grid, name="time"), columns=newdata.index)


def _concordance(f: _SortedFit) -> tuple[float, float, dict[str, float]]:
    """Harrell's C of the fit's linear predictor, its jackknife SE and the pair counts.

    As ``fit$concordance`` of coxph (``concordance(fit)``, reverse = TRUE):
    C = (concordant + tied.x / 2) / (concordant + discordant + tied.x); NaN
    without comparable pairs. The linear predictor is shift-invariant here,
    so the centring of ``X`` is irrelevant.
    """
    return concordance(f.stop, f.start, f.event, f.weights, f.eta, f.sbounds, f.sorder, f.has_entry, f.cluster_codes)


def _chisq_test(stat: float, df: int) -> TestResult:
    return TestResult(statistic=float(stat), df=int(df), p_value=float(stats.chi2.sf(stat, df)))


def cox(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    entry: str | None = None,
    ties: Ties = "efron",
    weights: str | None = None,
    strata: str | Sequence[str] | None = None,
    cluster: str | None = None,
    robust: bool | None = None,
    conf_level: float = 0.95,
    *,
    max_iter: int = 20,
    eps: float = 1e-9,
    timefix: bool = True,
    init: Sequence[float] | None = None,
    offset: str | None = None,
) -> CoxResult:
    """Fit a Cox proportional hazards model, as ``survival::coxph``.

    Parameters
    ----------
    data : DataFrame, one row per subject (or per (entry, time] interval).
    time : column of follow-up (stop) times, days, >= 0 (> entry when given).
    event : column, 1 = event at ``time``, 0 = censored (bool accepted).
    covariates : columns; categorical/string columns get R treatment
        contrasts (first level is the reference), so the terms are named as
        R names them (``sexM``). An empty list fits the null model,
        ``coxph(Surv(time, status) ~ 1)``: no coefficients, ``loglik`` twice
        the log partial likelihood at beta = 0, the tests ``None`` (see
        docs/survival-cox.md, "The null model").
    entry : column of entry (start) times: counting-process (entry, time] data,
        as ``Surv(entry, time, event)``.
    ties : "efron" (coxph's default), "breslow" or "exact" (the exact
        partial likelihood of tied deaths, coxph's ``"exact"``; without case
        weights, clusters or a robust variance, and O(n x event times), for
        small heavily tied data). The residuals of an exact fit
        (:func:`cox_residuals`) use the Breslow hazard, as coxph's do.
    weights : column of positive case weights, as coxph's ``weights=``.
    strata : column(s) defining strata, as ``strata()`` in the formula.
    cluster : column of cluster ids; gives the grouped sandwich variance of
        ``coxph(..., cluster=)``. ``robust=True`` without a cluster treats each
        row as its own cluster (``coxph(robust=TRUE)``). The default ``None``
        follows what coxph does (survival 3.5): robust when a cluster is given
        or some case weight is not an integer; integer weights are frequency
        weights and keep the model-based variance. ``robust=False`` forces the
        model-based variance (and is rejected together with a cluster).
    conf_level : confidence level of the hazard-ratio intervals.
    max_iter, eps : coxph's ``iter.max`` and ``eps``. As in coxph, the
        non-convergence and infinite-coefficient checks (ModelWarning) run
        only when ``max_iter > 1``; ``max_iter=0`` returns beta = 0 and
        ``max_iter=1`` one Newton step, without a warning (``converged`` is
        False unless that step met the criterion; a note says so).
    timefix : treat times equal up to floating-point rounding as tied, as
        coxph does by default (``coxph.control(timefix=TRUE)``, ``aeqSurv``).
    init : starting coefficients, one per model column (after factor
        expansion), as coxph's ``init=``. The first ``loglik``, the score test,
        the robust score test and the likelihood-ratio test then refer to
        ``init`` instead of 0 (as in coxph); with ``max_iter=0`` the fit is
        evaluated at ``init`` (survival's tests use this for the score test
        at a given beta).
    offset : column added to the linear predictor with coefficient 1, as
        ``+ offset(col)`` in coxph's formula (e.g. a log exposure time).

    Returns
    -------
    CoxResult
        Coefficients, variances and tests agree with coxph to about 1e-12
        relative on the reference fixtures (see docs/survival-cox.md).

    Raises
    ------
    InputError for negative/missing times, bad event codes, no events,
    non-positive weights, constant or collinear covariates.
    """
    where = "cox data"
    if ties not in _TIES:
        raise InputError(f"cox: ties={ties!r} is not supported; use one of {list(_TIES)}")
    if not 0 < conf_level < 1:
        raise InputError(f"cox: conf_level must be in (0, 1), got {conf_level!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise InputError(f"cox: max_iter must be a non-negative integer (coxph's iter.max), got {max_iter!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise InputError(f"cox: eps must be in (0, 1) (coxph's eps, default 1e-9), got {eps!r}")
    covariates = _as_list(covariates)
    if ties == "exact" and (weights is not None or cluster is not None or robust):
        raise InputError(
            "cox: ties='exact' is fitted without case weights, clusters or a robust variance "
            "(not implemented for the exact partial likelihood); use ties='efron' for those"
        )
    strata_cols = _as_list(strata)
    needed = (
        [time, event]
        + covariates
        + ([entry] if entry else [])
        + ([weights] if weights else [])
        + strata_cols
        + ([cluster] if cluster else [])
        + ([offset] if offset else [])
    )
    require_columns(data, needed, where)
    n = len(data)
    notes: list[str] = []

    stop = check_time(data, time, where)
    status = _event_column(data, event, where)
    if entry is not None:
        start = numeric_column(data, entry, where)
        bad = int((start >= stop).sum())
        if bad:
            raise InputError(
                f"{where}: {bad} of {n} rows have entry column {entry!r} >= time column {time!r}; "
                "each (entry, time] interval must have positive length: fix or drop those rows"
            )
    else:
        start = np.zeros(n)
    if timefix and entry is not None:
        # with right-censored data the (cheaper) adjudication runs on the sorted times below
        stop, start = _timefix(stop, start)
        bad = int((start >= stop).sum())
        if bad:
            raise InputError(
                f"{where}: {bad} of {n} rows have entry and time equal up to rounding "
                f"(columns {entry!r}, {time!r}); fix them or pass timefix=False"
            )
    if weights is not None:
        w = numeric_column(data, weights, where)
        if (w <= 0).any():
            raise InputError(
                f"{where}: weights column {weights!r} has {int((w <= 0).sum())} value(s) <= 0 out of "
                f"{n} rows; case weights must be positive (drop zero-weight rows explicitly)"
            )
    else:
        w = None  # unit weights: see s_w below
    require_events(int(status.sum()), n, event, where)

    if strata_cols:
        scode, slabels = _group_codes(data, strata_cols, "strata", where)
    else:
        scode, slabels = None, [None]

    order = stable_argsort(stop)
    s_stop = stop[order]
    if timefix and entry is None:
        s_stop = _timefix_sorted(s_stop)  # monotone, so the order stays valid
    if scode is not None:  # exactly when strata_cols; the None test is what lets mypy index scode
        by_stratum = np.argsort(scode[order], kind="stable")
        order = order[by_stratum]
        s_stop = s_stop[by_stratum]
    s_stop = np.ascontiguousarray(s_stop)
    s_start = np.ascontiguousarray(start[order]) if entry is not None else np.zeros(n)
    s_event = np.ascontiguousarray(status[order])
    # unit weights are a read-only stride-0 view: no n-row array is written for them
    s_w = np.ascontiguousarray(w[order]) if w is not None else np.broadcast_to(1.0, (n,))

    s_X, term_cols, means, col_min, col_max = _design(data, covariates, where, order)
    columns = tuple(c for _, cols in term_cols for c in cols)
    if len(set(columns)) != len(columns):
        raise InputError(f"cox: covariates expand to duplicate column names {columns}; give each covariate once")
    p = s_X.shape[1]
    for j in np.flatnonzero(col_min == col_max):
        raise InputError(
            f"{where}: covariate column {columns[j]!r} is constant ({float(col_min[j]):g}) in all "
            f"{n} rows; a constant covariate has no coefficient: drop it from the covariates"
        )
    n_strata = len(slabels)
    if scode is not None:
        s_code = scode[order]
        sbounds = np.searchsorted(s_code, np.arange(n_strata + 1)).astype(np.int64)
    else:
        s_code = None
        sbounds = np.array([0, n], dtype=np.int64)
    if entry is not None:
        sorder = np.lexsort((s_start, s_code)) if strata_cols else np.argsort(s_start, kind="stable")
        sorder = sorder.astype(np.int64)
    else:
        sorder = np.zeros(1, dtype=np.int64)
    if strata_cols:
        ev_per = np.add.reduceat(s_event.astype(np.int64), sbounds[:-1]) if n else np.zeros(0)

        def describe(label) -> dict:
            values = label if isinstance(label, tuple) else (label,)
            return {c: (v.item() if isinstance(v, np.generic) else v) for c, v in zip(strata_cols, values, strict=True)}

        empty = [lab for lab, ne in zip(slabels, ev_per, strict=True) if ne == 0]
        if len(empty) == 1:
            notes.append(
                f"stratum {describe(empty[0])} has no events; it contributes nothing to the partial likelihood"
            )
        elif empty:
            shown = [describe(lab) for lab in empty[:5]]
            notes.append(
                f"{len(empty)} of {len(slabels)} strata have no events (e.g. {shown}); "
                "they contribute nothing to the partial likelihood"
            )

    sf = dict(
        stop=s_stop,
        start=s_start,
        event=s_event,
        w=s_w,
        X=s_X,
        sbounds=sbounds,
        sorder=sorder,
        has_entry=entry is not None,
        efron=ties == "efron",
        exact=ties == "exact",
        offset=None if offset is None else np.ascontiguousarray(numeric_column(data, offset, where)[order]),
    )
    fit_pass = _fit_pass_factory(sf)

    # a singular information at beta = 0 (constant within strata, collinear) raises inside _newton;
    # the tolerance is applied with each column divided by its range (no constant column is left here)
    spread = 1.0 / (col_max - col_min)
    start_beta = None
    if init is not None:
        try:
            start_beta = np.asarray(init, dtype=float).ravel()
        except (TypeError, ValueError):
            start_beta = np.full(p + 1, np.nan)  # reported below with the values given
        if start_beta.shape != (p,) or not np.isfinite(start_beta).all():
            raise InputError(
                f"cox: init must hold {p} finite numbers, one per model column {list(columns)}; "
                f"got {list(np.asarray(init, dtype=object).ravel())}"
            )
    if p == 0:
        # the null model, coxph(Surv(...) ~ 1): nothing to estimate, so no Newton iterations (coxph reports
        # iter = 0) and both log-likelihoods are the partial likelihood at beta = 0 (plus any offset)
        ll0, _u0, _imat0 = fit_pass(np.zeros(0))
        beta, ll1, score_stat, iterations, converged = np.zeros(0), ll0, 0.0, 0, True
        naive_var = np.zeros((0, 0))
    else:
        beta, ll0, _u0, _imat0, ll1, u1, imat1, score_stat, iterations, converged = _newton(
            fit_pass, p, columns, max_iter, eps, spread, start_beta
        )
        try:
            naive_var = linalg.cho_solve(linalg.cho_factor(imat1), np.eye(p))
        except linalg.LinAlgError:
            _raise_singular(imat1, columns, spread)
        naive_var = (naive_var + naive_var.T) / 2

    if p == 0:
        pass  # no coefficient, so no convergence or infinite-coefficient check
    elif max_iter <= 1:
        # coxph checks convergence and infinite coefficients only when more than one iteration is
        # allowed: iter.max = 0 evaluates at the start (e.g. for the score test), 1 takes one step
        converged = converged and max_iter == 1  # max_iter=0 checked nothing
        if not converged:
            notes.append(
                f"max_iter={max_iter}: {'no Newton step' if max_iter == 0 else 'one Newton step'} "
                f"from beta = {'0' if start_beta is None else start_beta.tolist()} and no convergence check, "
                f"as coxph(iter.max = {max_iter}); the "
                "coefficients are not the maximum of the partial likelihood"
            )
    elif not converged:
        msg = (
            f"cox: Newton-Raphson did not converge in {max_iter} iterations (relative log-likelihood change "
            f"above {eps}); the estimates are not reliable"
        )
        warnings.warn(msg, ModelWarning, stacklevel=2)
        notes.append(msg)
    else:
        # coxph's check: a remaining Newton step that is large relative to the coefficient
        step = np.abs(u1 @ naive_var)
        infinite = (step > eps) & (step > np.sqrt(eps) * np.abs(beta))
        if infinite.any():
            names = [columns[j] for j in np.flatnonzero(infinite)]
            msg = (
                f"cox: Loglik converged before variable(s) {names}; coefficient may be infinite "
                "(monotone likelihood: an event pattern fully separated by the covariate)"
            )
            warnings.warn(msg, ModelWarning, stacklevel=2)
            notes.append(msg)

    eta = _xbeta(s_X, beta, np.empty(n))
    if sf["offset"] is not None:
        eta += sf["offset"]
    cluster_codes = None
    if cluster is not None:
        cluster_codes = _group_codes(data, [cluster], "cluster", where, sort=False)[0][order]
    fitdata = _SortedFit(
        stop=s_stop,
        start=s_start,
        event=s_event,
        weights=s_w,
        X=s_X,
        eta=eta,
        sbounds=sbounds,
        sorder=sorder,
        has_entry=entry is not None,
        efron=ties == "efron",
        order=order,
        columns=columns,
        terms=tuple(term_cols),
        means=means,
        beta=beta,
        strata_columns=tuple(strata_cols),
        strata_labels=tuple(slabels),
        cluster_codes=cluster_codes,
        offset=sf["offset"],
        offset_column=offset,
    )

    if robust is None:
        # coxph's rule (survival 3.x code; its help page says "not 0 or 1"): integer case weights are
        # frequency weights (a weight of 2 is two identical rows), so the model-based variance stands;
        # a non-integer weight (a sampling or IPTW weight) makes the sandwich the default
        robust = cluster is not None or (w is not None and bool(np.any(w != np.floor(w))))
    elif not robust and cluster is not None:
        raise InputError(
            "cox: cluster given with robust=False; a cluster only changes the (robust) variance, "
            "so drop the cluster or leave robust at its default"
        )
    robust = bool(robust)
    robust_score = None
    var = naive_var
    if robust and p > 0:  # the null model has no coefficient to give a (robust) variance for
        eta_shift = eta - eta.max()
        # per-row residuals, summed within clusters right away, so one (n, p) array serves both passes
        buf = np.empty(s_X.shape)
        resid = _score_resid_kernel(
            s_stop, s_start, s_event, s_w, s_X, eta_shift, sbounds, sorder, sf["has_entry"], sf["efron"], buf
        )
        if cluster_codes is not None:
            n_cl = int(cluster_codes.max()) + 1
            resid = _weighted_cluster_sums(resid, s_w, cluster_codes, n_cl)
            buf_again = buf
        else:
            resid *= s_w[:, None]
            buf_again = np.empty(s_X.shape)
        # coxph's robust score test uses the score residuals at the initial coefficients (0 or init)
        eta0 = np.zeros(n) if start_beta is None else _xbeta(s_X, start_beta, np.empty(n))
        if sf["offset"] is not None:
            eta0 += sf["offset"]
        eta0 -= eta0.max() if n else 0.0
        resid0 = _score_resid_kernel(
            s_stop, s_start, s_event, s_w, s_X, eta0, sbounds, sorder, sf["has_entry"], sf["efron"], buf_again
        )
        if cluster_codes is not None:
            resid0 = _weighted_cluster_sums(resid0, s_w, cluster_codes, n_cl)
        else:
            resid0 *= s_w[:, None]
        dfbeta = resid @ naive_var
        var = dfbeta.T @ dfbeta
        u_r = resid0.sum(axis=0)
        robust_score = _chisq_test(_wald_quadratic(resid0.T @ resid0, u_r), p)
        if resid.shape[0] < p:
            notes.append(
                f"robust variance from {resid.shape[0]} clusters for {p} coefficients is singular; "
                "the Wald and robust score tests use a generalized inverse, as coxph does"
            )

    se = np.sqrt(np.diag(var))
    naive_se = np.sqrt(np.diag(naive_var))
    zcrit = stats.norm.ppf(1 - (1 - conf_level) / 2)
    z = beta / se
    with np.errstate(over="ignore"):  # a diverging coefficient gives an infinite bound, as in R
        summary = pd.DataFrame(
            {
                "coef": beta,
                "se": se,
                "hr": np.exp(beta),
                "lower": np.exp(beta - zcrit * se),
                "upper": np.exp(beta + zcrit * se),
                "z": z,
                "p": 2 * stats.norm.sf(np.abs(z)),
            },
            index=pd.Index(columns, name="term"),
        )
    if robust:
        summary.insert(2, "naive_se", naive_se)
    wald_stat = _wald_quadratic(var, beta) if p else 0.0

    return CoxResult(
        summary=summary,
        vcov=pd.DataFrame(var, index=list(columns), columns=list(columns)),
        naive_vcov=pd.DataFrame(naive_var, index=list(columns), columns=list(columns)),
        naive_se=pd.Series(naive_se, index=list(columns), name="naive_se"),
        loglik=(float(ll0), float(ll1)),
        n=int(n),
        n_events=int(status.sum()),
        # coxph's null fit has no tests (summary prints "Null model"): None here
        likelihood_ratio=_chisq_test(2 * (ll1 - ll0), p) if p else None,
        wald=_chisq_test(wald_stat, p) if p else None,
        score=_chisq_test(score_stat, p) if p else None,
        robust_score=robust_score,
        iterations=int(iterations),
        converged=bool(converged),
        ties=ties,
        robust=robust,
        conf_level=float(conf_level),
        notes=tuple(notes),
        _fit=fitdata,
        call=_call_in_words(time, event, covariates, entry, ties, weights, strata, cluster, robust, offset),
    )


def _call_in_words(
    time: str,
    event: str,
    covariates: Sequence[str],
    entry: str | None,
    ties: str,
    weights: str | None,
    strata: str | Sequence[str] | None,
    cluster: str | None,
    robust: bool | None,
    offset: str | None = None,
) -> str:
    # coxph's Call: line, written as the Python call that made the fit
    surv = f"Surv({entry}, {time}, {event})" if entry else f"Surv({time}, {event})"
    rhs = " + ".join(
        _as_list(covariates) + [f"strata({s})" for s in _as_list(strata)] + ([f"offset({offset})"] if offset else [])
    )
    rhs = rhs or "1"  # the null model, as R writes it
    extra = [f'ties = "{ties}"']
    extra += [f"weights = {weights}"] if weights else []
    extra += [f"cluster = {cluster}"] if cluster else []
    extra += ["robust = True"] if robust and not cluster else []
    return f"cox({surv} ~ {rhs}, {', '.join(extra)})"
