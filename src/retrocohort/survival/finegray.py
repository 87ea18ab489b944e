"""Fine-Gray proportional subdistribution hazards regression, equal to ``cmprsk::crr``.

The model (Fine & Gray 1999, JASA 94:496-509) is a Cox-type model for the
subdistribution hazard of one cause. Subjects who had a *competing* event stay
in the risk set after their event, with weight ``G(t-) / G(T_i-)`` where ``G``
is the Kaplan-Meier estimate of the censoring distribution. Censored subjects
leave the risk set at their censoring time. Tied event times are handled with
Breslow's approximation, as ``crr`` does.

Why this is O(n p^2) and not O(n^2) like ``crr``
--------------------------------------------------
The weight of a competing-event subject ``j`` at a later event time ``t``
factorises as ``G(t-) * (1 / G(T_j-))``. So every risk-set sum splits into

    S_r(t) = sum_{T_j >= t} e_j z_j^r  +  G(t-) * sum_{competing j, T_j < t} e_j z_j^r / G(T_j-)

with ``e_j = exp(z_j' beta)``: a reverse cumulative sum over the subjects still
at risk plus ``G(t-)`` times a forward cumulative sum over earlier competing
events. The information matrix is rearranged so that no ``p x p`` matrix is
kept per event time: ``sum_t d(t) S_2(t) / S_0(t) = sum_j e_j a_j z_j z_j'``
with ``a_j`` the subject's accumulated (weighted) baseline hazard. The
censoring term of crr's sandwich variance (``psi`` in Fine & Gray's section 3)
is an integral over censoring times of ``q(u) / pi(u) dM^c_j(u)`` and ``q(u)``
is itself a product of a forward sum (competing events before ``u``) and a
backward sum (event times from ``u`` on), so it is also a handful of cumulative
sums. The sums run in two numba kernels (one pass over the sorted rows per
sum, no ``n x p`` temporaries). ``tests/survival/test_finegray_direct.py``
checks these kernels against the O(n^2) definitions written term by term.

Case weights
------------
With ``weights=`` (positive case weights ``v``, e.g. IPTW) every count is a
sum of weights: the censoring distribution is the weighted Kaplan-Meier,
each subject enters the risk-set sums, the event counts ``d(t)`` and the log
pseudo-likelihood with its weight, and each influence term ``u_i`` is
multiplied by ``v_i`` before the outer product (robust sandwich, per
subject or per cluster). The kernels take ``v`` as an array and multiply
by it; for the unweighted fit ``v`` is all 1.0, and every product with 1.0
and every sum of 1.0's is exact, so unit weights reproduce crr's fit bit
for bit. The variance is derived in docs/survival-finegray.md.

Conventions (checked against crr 2.2-11 on whole-day tied data)
---------------------------------------------------------------
* ``G`` is the Kaplan-Meier estimate of the censoring survivor function with
  the usual survfit convention that subjects with an event at ``t`` are still
  at risk of censoring at ``t`` (events precede censorings at a tie).
* Weights use the left limit ``G(t-)`` both at the event time and at the
  competing subject's own time, as crr does (it evaluates ``G`` just below
  each observed time).
* A competing event at the same time as an event of interest is in that
  event's risk set with weight 1 (its own time is not before ``t``).
* Ties between events of interest: Breslow.
* In the censoring term of the variance, a censoring at ``u`` acts on the
  weights of competing events strictly before ``u`` at event times ``t >= u``
  (crr's discretisation of ``q(u)``; with ``t > u`` or ``T_i <= u`` the
  variance on tied data is off crr's by about 1e-3 relative).
* Stopping rule: crr's. Newton-Raphson from zero stops as soon as
  ``max_j |U_j| * max(|beta_j|, 1) < gtol * max(|loglik|, 1)`` with crr's
  ``gtol = 1e-6`` and at most ``maxiter = 10`` iterations, so the
  coefficients equal crr's to about 1e-12; a smaller ``tol`` gives the fully
  converged maximum (which differs from crr's default answer by up to about
  1e-6 relative).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from numba import njit
from scipy import stats

from .._design import _is_categorical, design_matrix, numeric_column, require_columns
from ..errors import ConvergenceError, InputError, ModelWarning
from ._checks import check_status, check_time
from ._finegray_tv import TVData, _tv_evaluate_kernel, _tv_influence_kernel
from ._risksets import distinct_sorted

__all__ = ["CensoringKM", "FineGrayResult", "LogLik", "fine_gray", "predict_cif"]

CensoringKM = Literal["weighted", "unweighted"]
CENSORING_KM: tuple[str, ...] = ("weighted", "unweighted")


# --------------------------------------------------------------------------
# kernels: arrays in, arrays out
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _SortedData:
    """Subjects sorted by time with the censoring distribution and index maps.

    Shapes: ``n`` subjects, ``p`` covariates, ``k`` distinct times with an
    event of interest, ``m`` distinct times with a censoring.
    """

    time: np.ndarray  # (n,) ascending
    z: np.ndarray  # (n, p) covariates, centred (coefficients do not change)
    case_weight: np.ndarray  # (n,) case weights v_j (all 1 for crr's unweighted fit)
    km_weight: np.ndarray  # (n,) each subject's weight in the censoring Kaplan-Meier (v_j, or 1)
    cause: np.ndarray  # (n,) bool, event of interest
    competing: np.ndarray  # (n,) bool
    censored: np.ndarray  # (n,) bool
    g_left: np.ndarray  # (n,) G(T_j-) of the subject's own censoring group
    event_time: np.ndarray  # (k,)
    event_start: np.ndarray  # (k,) first sorted row with time == event_time
    n_event: np.ndarray  # (k,) weighted number of events of interest at event_time, sum of v
    g_event: np.ndarray  # (q, k) G_g(t-) at event_time, per censoring group g (q = 1 without cengroup)
    events_upto: np.ndarray  # (n,) number of event times <= T_j
    group: np.ndarray  # (n,) censoring group of each row, 0..q-1
    comp_rows: np.ndarray  # (c,) sorted row indices of competing events
    comp_before_event: np.ndarray  # (k,) number of competing rows with time < event_time
    # censoring times are (group, time) pairs, ordered by group then time; m pairs in all
    cens_time: np.ndarray  # (m,)
    cens_group: np.ndarray  # (m,) the pair's censoring group
    cens_block: np.ndarray  # (q + 1,) pairs of group g are cens_block[g]:cens_block[g + 1]
    cens_count: np.ndarray  # (m,) weighted number censored at cens_time in the group
    cens_at_risk: np.ndarray  # (m,) weighted number of the group with time >= cens_time
    cens_events_upto: np.ndarray  # (m,) number of event times < cens_time
    comp_by_group: np.ndarray  # (c,) positions in comp_rows, ordered by group then time
    comp_block: np.ndarray  # (q + 1,) competing rows of group g are comp_by_group[comp_block[g]:comp_block[g+1]]
    cens_comp_upto: np.ndarray  # (m,) index in comp_by_group past the group's competing rows with time < cens_time
    cens_upto: np.ndarray  # (n,) index past the last pair of the row's group with cens_time <= T_j
    inv_g_comp: np.ndarray  # (c,) 1 / G(T_j-) of the competing rows
    inv_g_row: np.ndarray  # (n,) 1 / G(T_j-) for competing rows, 0 for the others
    sum_z_events: np.ndarray  # (p,) sum of v_j z_j over events of interest
    z_mean: np.ndarray  # (p,) column means removed from z


def _prepare(
    time: np.ndarray,
    status: np.ndarray,
    z: np.ndarray,
    cause: int,
    censor_code: int,
    weights: np.ndarray | None = None,
    censoring_weighted: bool = True,
    cengroup: np.ndarray | None = None,
) -> tuple[_SortedData, np.ndarray]:
    """Sort once and tabulate everything that does not depend on beta.

    ``weights`` (n,) are positive case weights (None: all 1). Every count
    below (events, censorings, the censoring risk set) is then a sum of
    weights, so unit weights give exactly the unweighted numbers (sums of
    1.0 are exact integers). ``censoring_weighted=False`` counts every
    subject once in the censoring Kaplan-Meier (survival::finegray's ``G``).
    ``cengroup`` (n,) are integer codes 0..q-1 of crr's censoring groups:
    each group gets its own censoring Kaplan-Meier ``G_g`` and a competing
    subject's weight is ``G_g(t-) / G_g(T_j-)`` of its own group (None: one group).

    Returns the sorted data and the permutation used (sorted row -> input row).
    """
    order = np.argsort(time, kind="stable")
    t = time[order]
    st = status[order]
    zs = z[order]
    v = np.ones(t.shape[0]) if weights is None else np.asarray(weights, dtype=float)[order]
    km_v = v if censoring_weighted else np.ones(t.shape[0])
    grp = np.zeros(t.shape[0], dtype=np.int64) if cengroup is None else np.asarray(cengroup, dtype=np.int64)[order]
    n_groups = int(grp.max()) + 1 if t.shape[0] else 1
    z_mean = zs.mean(axis=0)
    zs -= z_mean  # zs is a fresh copy (fancy indexing): centre in place
    is_cause = st == cause
    is_cens = st == censor_code
    is_comp = ~is_cause & ~is_cens
    n = t.shape[0]

    # Kaplan-Meier of the censoring distribution, per censoring group: everyone of the group with
    # T >= u is at risk of censoring at u (survfit's convention), so an event tied with a censoring
    # counts in the censoring risk set. With case weights it is by default the weighted Kaplan-Meier.
    utime, ustart = distinct_sorted(t)
    run = np.repeat(np.arange(utime.shape[0]), np.diff(np.append(ustart, n)))
    g_before = np.empty((n_groups, utime.shape[0]))  # G_g(u-) at each distinct time
    at_risk = np.empty((n_groups, utime.shape[0]))
    cens_per_time = np.empty((n_groups, utime.shape[0]))
    for g in range(n_groups):
        in_g = grp == g
        kv = np.where(in_g, km_v, 0.0)
        weight_from = np.cumsum(kv[::-1])[::-1]  # sum of the group's km_v over sorted rows >= i
        at_risk[g] = weight_from[ustart]
        cens_per_time[g] = np.add.reduceat(np.where(is_cens & in_g, km_v, 0.0), ustart)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(cens_per_time[g] > 0, 1.0 - cens_per_time[g] / at_risk[g], 1.0)
        g_after = np.cumprod(factor)
        g_before[g] = np.concatenate(([1.0], g_after[:-1]))
        if n_groups > 1:
            # crr evaluates each group's G only up to that group's last time and takes it as 0
            # beyond (its approx(..., rule = 2) with a 0 just after the maximum)
            last = t[in_g].max()
            g_before[g, utime > last] = 0.0
    g_left = g_before[grp, run]

    ev_per_time = np.add.reduceat(np.where(is_cause, v, 0.0), ustart)
    has_ev = ev_per_time > 0
    event_time = utime[has_ev]
    event_start = ustart[has_ev]
    n_event = ev_per_time[has_ev]
    g_event = np.ascontiguousarray(g_before[:, has_ev])
    events_upto = np.searchsorted(event_time, t, side="right")

    comp_rows = np.flatnonzero(is_comp)
    comp_before_event = np.searchsorted(comp_rows, event_start, side="left")
    comp_group = grp[comp_rows]
    comp_by_group = np.lexsort((np.arange(comp_rows.shape[0]), comp_group))  # group, then time order
    comp_block = np.searchsorted(comp_group[comp_by_group], np.arange(n_groups + 1), side="left")

    cens_time_l, cens_group_l, cens_count_l, cens_at_risk_l, cens_comp_l = [], [], [], [], []
    cens_block = np.zeros(n_groups + 1, dtype=np.int64)
    cens_upto = np.zeros(n, dtype=np.int64)
    for g in range(n_groups):
        has_c = cens_per_time[g] > 0
        ctime = utime[has_c]
        base = int(cens_block[g])
        cens_time_l.append(ctime)
        cens_group_l.append(np.full(ctime.shape[0], g, dtype=np.int64))
        cens_count_l.append(cens_per_time[g][has_c])
        cens_at_risk_l.append(at_risk[g][has_c])
        times_g = t[comp_rows[comp_by_group[comp_block[g] : comp_block[g + 1]]]]
        cens_comp_l.append(comp_block[g] + np.searchsorted(times_g, ctime, side="left"))
        cens_block[g + 1] = base + ctime.shape[0]
        in_g = grp == g
        cens_upto[in_g] = base + np.searchsorted(ctime, t[in_g], side="right")
    cens_time = np.concatenate(cens_time_l)
    data = _SortedData(
        time=t,
        z=zs,
        case_weight=v,
        km_weight=km_v,
        cause=is_cause,
        competing=is_comp,
        censored=is_cens,
        g_left=g_left,
        event_time=event_time,
        event_start=event_start,
        n_event=n_event,
        g_event=g_event,
        events_upto=events_upto,
        group=grp,
        comp_rows=comp_rows,
        comp_before_event=comp_before_event,
        cens_time=cens_time,
        cens_group=np.concatenate(cens_group_l),
        cens_block=cens_block,
        cens_count=np.concatenate(cens_count_l),
        cens_at_risk=np.concatenate(cens_at_risk_l),
        cens_events_upto=np.searchsorted(event_time, cens_time, side="left"),
        comp_by_group=comp_by_group.astype(np.int64),
        comp_block=comp_block.astype(np.int64),
        cens_comp_upto=np.concatenate(cens_comp_l).astype(np.int64),
        cens_upto=cens_upto,
        inv_g_comp=1.0 / g_left[comp_rows],
        inv_g_row=np.where(is_comp, 1.0 / np.where(is_comp, g_left, 1.0), 0.0),
        sum_z_events=(zs[is_cause] * v[is_cause, None]).sum(axis=0),
        z_mean=z_mean,
    )
    return data, order


class _Fit(NamedTuple):
    loglik: float
    score: np.ndarray  # (p,)
    info: np.ndarray  # (p, p)
    e: np.ndarray  # (n,) exp(eta - shift)
    shift: float
    zbar: np.ndarray  # (k, p)
    hazard: np.ndarray  # (k,) baseline jumps d/S0, on the shifted scale
    cum_hazard: np.ndarray  # (n,) Lambda(T_j) on the shifted scale
    tail_g_hazard: np.ndarray  # (q, k + 1,) [g, i] = sum_{k >= i} G_g(t_k-) dLambda(t_k)


@njit(cache=True)
def _evaluate_kernel(
    z,
    v,
    beta,
    cause,
    event_start,
    n_event,
    g_event,
    comp_rows,
    inv_g_comp,
    comp_before_event,
    events_upto,
    inv_g_row,
    group,
):  # pragma: no cover - compiled
    """One fused pass per quantity of :func:`_evaluate` (same sums, no n x p temporaries).

    ``v`` are the case weights: every subject's term of a risk-set sum and of
    the log pseudo-likelihood is multiplied by its weight (times 1.0 when
    unweighted, which leaves every floating-point result unchanged).
    """
    n, p = z.shape
    k_times = event_start.shape[0]
    eta = np.empty(n)
    shift = -np.inf
    for i in range(n):
        acc = 0.0
        for a in range(p):
            acc += z[i, a] * beta[a]
        eta[i] = acc
        if acc > shift:
            shift = acc
    e = np.empty(n)
    loglik = 0.0
    for i in range(n):
        e[i] = np.exp(eta[i] - shift)
        if cause[i]:
            loglik += v[i] * eta[i]
    # Subjects still at risk at event time k (rows >= event_start[k]): summed backwards.
    s0 = np.empty(k_times)
    s1 = np.empty((k_times, p))
    r0 = 0.0
    r1 = np.zeros(p)
    end = n
    for k in range(k_times - 1, -1, -1):
        for i in range(event_start[k], end):
            ve = v[i] * e[i]
            r0 += ve
            for a in range(p):
                r1[a] += ve * z[i, a]
        end = event_start[k]
        s0[k] = r0
        for a in range(p):
            s1[k, a] = r1[a]
    # Competing events before event time k, weighted G_g(t_k-) / G_g(T_j-) of their censoring
    # group g: summed forwards per group.
    n_groups = g_event.shape[0]
    c0 = np.zeros(n_groups)
    c1 = np.zeros((n_groups, p))
    m = 0
    for k in range(k_times):
        while m < comp_before_event[k]:
            row = comp_rows[m]
            gr = group[row]
            w = v[row] * e[row] * inv_g_comp[m]
            c0[gr] += w
            for a in range(p):
                c1[gr, a] += w * z[row, a]
            m += 1
        for gr in range(n_groups):
            g = g_event[gr, k]
            s0[k] += g * c0[gr]
            for a in range(p):
                s1[k, a] += g * c1[gr, a]
    zbar = np.empty((k_times, p))
    hazard = np.empty(k_times)
    score_events = np.zeros(p)
    info = np.zeros((p, p))
    for k in range(k_times):
        d = n_event[k]
        hazard[k] = d / s0[k]
        loglik -= d * (np.log(s0[k]) + shift)
        for a in range(p):
            zbar[k, a] = s1[k, a] / s0[k]
            score_events[a] += d * zbar[k, a]
        for a in range(p):
            for b in range(a + 1):
                info[a, b] -= d * zbar[k, a] * zbar[k, b]
    cum = np.zeros(k_times + 1)
    for k in range(k_times):
        cum[k + 1] = cum[k] + hazard[k]
    tail = np.zeros((n_groups, k_times + 1))
    for gr in range(n_groups):
        for k in range(k_times - 1, -1, -1):
            tail[gr, k] = tail[gr, k + 1] + g_event[gr, k] * hazard[k]
    # sum_k d_k S2_k / S0_k rearranged per subject: e_j a_j z_j z_j', with a_j the
    # subject's accrued (weighted) baseline hazard; no p x p matrix per event time.
    cum_hazard = np.empty(n)
    for i in range(n):
        pos = events_upto[i]
        cum_hazard[i] = cum[pos]
        w = v[i] * e[i] * (cum[pos] + tail[group[i], pos] * inv_g_row[i])
        for a in range(p):
            wa = w * z[i, a]
            for b in range(a + 1):
                info[a, b] += wa * z[i, b]
    for a in range(p):
        for b in range(a):
            info[b, a] = info[a, b]
    return loglik, score_events, info, e, shift, zbar, hazard, cum_hazard, tail


def _evaluate(s: _SortedData, beta: np.ndarray) -> _Fit:
    """Log pseudo-likelihood, score and information at ``beta`` in O(n p^2)."""
    loglik, score_events, info, e, shift, zbar, hazard, cum_hazard, tail = _evaluate_kernel(
        s.z,
        s.case_weight,
        np.ascontiguousarray(beta, dtype=float),
        s.cause,
        s.event_start,
        s.n_event,
        s.g_event,
        s.comp_rows,
        s.inv_g_comp,
        s.comp_before_event,
        s.events_upto,
        s.inv_g_row,
        s.group,
    )
    return _Fit(float(loglik), s.sum_z_events - score_events, info, e, float(shift), zbar, hazard, cum_hazard, tail)


@njit(cache=True)
def _influence_kernel(
    z,
    v,
    km_v,
    e,
    cause,
    censored,
    events_upto,
    zbar,
    hazard,
    cum_hazard,
    tail,
    g_event,
    inv_g_row,
    comp_rows,
    inv_g_comp,
    group,
    comp_by_group,
    comp_block,
    cens_block,
    cens_count,
    cens_at_risk,
    cens_events_upto,
    cens_comp_upto,
    cens_upto,
    product_limit,
):  # pragma: no cover - compiled
    """v_i eta_i + km_v_i psi_i for every subject (n, p); see :func:`_influence`."""
    n, p = z.shape
    k_times = hazard.shape[0]
    n_groups = g_event.shape[0]
    # cumulative sums over event times of zbar_k dL_k (forward) and G_g(t_k-) zbar_k dL_k (backward, per group)
    cum_zh = np.zeros((k_times + 1, p))
    for k in range(k_times):
        for a in range(p):
            cum_zh[k + 1, a] = cum_zh[k, a] + zbar[k, a] * hazard[k]
    tail_gzh = np.zeros((n_groups, k_times + 1, p))
    for gr in range(n_groups):
        for k in range(k_times - 1, -1, -1):
            for a in range(p):
                tail_gzh[gr, k, a] = tail_gzh[gr, k + 1, a] + g_event[gr, k] * zbar[k, a] * hazard[k]
    out = np.empty((n, p))
    for i in range(n):
        pos = events_upto[i]
        gi = group[i]
        w_comp = e[i] * inv_g_row[i]
        for a in range(p):
            val = -e[i] * (z[i, a] * cum_hazard[i] - cum_zh[pos, a])
            if cause[i]:
                val += z[i, a] - zbar[pos - 1, a]
            if w_comp > 0.0:
                val -= w_comp * (z[i, a] * tail[gi, pos] - tail_gzh[gi, pos, a])
            out[i, a] = v[i] * val
    m_times = cens_count.shape[0]
    if m_times == 0 or comp_rows.shape[0] == 0:
        return out
    # q(u_m) = F1(u_m) B0(u_m) - F0(u_m) B1(u_m) within the censoring group of the pair m: the group's
    # competing events strictly before u_m (forward sums) times event times on or after u_m (backward sums).
    q = np.empty((m_times, p))
    for gr in range(n_groups):
        f0 = 0.0
        f1 = np.zeros(p)
        c = comp_block[gr]  # the group's competing rows are comp_by_group[comp_block[gr]:comp_block[gr + 1]]
        for m in range(cens_block[gr], cens_block[gr + 1]):
            while c < cens_comp_upto[m]:
                idx = comp_by_group[c]
                row = comp_rows[idx]
                w = v[row] * e[row] * inv_g_comp[idx]
                f0 += w
                for a in range(p):
                    f1[a] += w * z[row, a]
                c += 1
            k = cens_events_upto[m]
            for a in range(p):
                q[m, a] = f1[a] * tail[gr, k] - f0 * tail_gzh[gr, k, a]
    # psi_i = sum_m q(u_m) / n(u_m) dM^c_i(u_m) over the pairs of i's group,
    # dM^c_i = dN^c_i - 1{T_i >= u_m} c(u_m) / n(u_m) (n, c weighted, within the group).
    # product_limit: the exact derivative of the Kaplan-Meier product in the subject's weight,
    # which divides by n(u_m) - c(u_m) instead of n(u_m) (used by the tests' infinitesimal-jackknife
    # check only).
    denom = np.empty(m_times)
    for m in range(m_times):
        denom[m] = cens_at_risk[m]
        if product_limit:
            left = cens_at_risk[m] - cens_count[m]
            # nobody left after u_m: no event time after it, q(u_m) only holds events at u_m
            denom[m] = left if left > 0.0 else np.inf
    comp_sum = np.zeros((m_times + 1, p))  # prefix sums over all pairs; a group's part is a difference
    for m in range(m_times):
        scale = cens_count[m] / (cens_at_risk[m] * denom[m])
        for a in range(p):
            comp_sum[m + 1, a] = comp_sum[m, a] + q[m, a] * scale
    # the subject's censoring martingale counts with its weight in the Kaplan-Meier
    for i in range(n):
        j = cens_upto[i]
        b0 = cens_block[group[i]]
        for a in range(p):
            out[i, a] -= km_v[i] * (comp_sum[j, a] - comp_sum[b0, a])
        if censored[i]:
            for a in range(p):
                out[i, a] += km_v[i] * (q[j - 1, a] / denom[j - 1])
    return out


def _influence(s: _SortedData, f: _Fit, product_limit: bool = False) -> np.ndarray:
    """Per-subject influence terms ``v_i eta_i + k_i psi_i`` (n, p), sorted order.

    ``v_i`` is the case weight, ``k_i`` the subject's weight in the censoring
    Kaplan-Meier (``v_i`` by default, 1 with ``censoring_km="unweighted"``);
    both are 1 without case weights.

    ``eta_i`` is the subject's score residual under the subdistribution risk
    set, ``sum_t (z_i - zbar(t)) (dN_i(t) - w_i(t) e_i dLambda(t))``;
    ``psi_i = sum_u q(u) / n(u) dM^c_i(u)`` is the effect of the subject's
    censoring-process martingale on the estimated weights (Fine & Gray 1999,
    section 3), with ``q(u)`` the sum over competing events strictly before
    ``u`` of ``(e_i / G(T_i-)) sum_{t_k >= u} G(t_k-) (z_i - zbar_k) dLambda_k``
    (crr's discretisation; see the module notes). The sandwich
    ``I^-1 (sum_i u_i u_i') I^-1`` with ``u_i = eta_i + psi_i`` is crr's ``var``.

    With case weights ``v`` every risk-set sum, event count and ``q(u)``
    (over competing subjects ``j``, each with ``v_j``) is weighted, and
    ``n(u)``, ``c(u)`` are those of the censoring Kaplan-Meier (weighted by
    ``k``). The rows sum to the first-order change of the weighted estimating
    equation: ``beta - beta0 ~ I^-1 sum_i (v_i eta_i + k_i psi_i)``.

    ``product_limit=True`` replaces ``1/n(u)`` of the censoring martingale by
    ``1/(n(u) - c(u))``: then, with the weighted Kaplan-Meier, ``I^-1 u_i /
    v_i`` is exactly ``d beta / d v_i`` (the derivative of the product-limit
    ``G`` in ``v_i``) on untied data; crr's ``psi`` (the default) is its
    first-order version. Tests only.
    """
    return _influence_kernel(
        s.z,
        s.case_weight,
        s.km_weight,
        f.e,
        s.cause,
        s.censored,
        s.events_upto,
        f.zbar,
        f.hazard,
        f.cum_hazard,
        f.tail_g_hazard,
        s.g_event,
        s.inv_g_row,
        s.comp_rows,
        s.inv_g_comp,
        s.group,
        s.comp_by_group,
        s.comp_block,
        s.cens_block,
        s.cens_count,
        s.cens_at_risk,
        s.cens_events_upto,
        s.cens_comp_upto,
        s.cens_upto,
        bool(product_limit),
    )


class _Solution(NamedTuple):
    beta: np.ndarray
    fit: _Fit
    iterations: int
    converged: bool
    initial_loglik: float  # log pseudo-likelihood at ``init``
    steps: np.ndarray  # (iterations, p) the steps taken, in order


def _newton(
    s: _SortedData, init: np.ndarray, tol: float, max_iter: int, evaluate: Callable[..., Any] | None = None
) -> _Solution:
    """Newton-Raphson with crr's stopping rule and step halving.

    Stops when ``max_j |U_j| * max(|beta_j|, 1) < tol * max(|loglik|, 1)``
    (crr's rule). A step that lowers the log pseudo-likelihood, or overflows,
    is halved (up to 30 times), as any safeguarded Newton method does; on
    well-posed data the full step is always taken, so the path equals crr's.
    """
    if evaluate is None:
        evaluate = _evaluate
    beta = init.astype(float).copy()
    fit = evaluate(s, beta)
    initial_loglik = fit.loglik
    steps: list[np.ndarray] = []
    for iteration in range(max_iter + 1):
        if np.max(np.abs(fit.score) * np.maximum(np.abs(beta), 1.0)) < tol * max(abs(fit.loglik), 1.0):
            return _Solution(beta, fit, iteration, True, initial_loglik, np.array(steps).reshape(-1, beta.size))
        if iteration == max_iter:
            break
        try:
            step = np.linalg.solve(fit.info, fit.score)
        except np.linalg.LinAlgError:
            break
        for _ in range(31):
            trial_beta = beta + step
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                trial = evaluate(s, trial_beta)
            if np.isfinite(trial.loglik) and trial.loglik >= fit.loglik - 1e-12 * max(abs(fit.loglik), 1.0):
                break
            step = step / 2.0
        else:
            break
        steps.append(step)
        beta, fit = trial_beta, trial
    return _Solution(beta, fit, iteration, False, initial_loglik, np.array(steps).reshape(-1, beta.size))


def _drifting_terms(terms: list[str], steps: np.ndarray, fit: _Fit) -> list[str]:
    """Terms whose coefficient drifts to infinity (monotone pseudo-likelihood).

    On a monotone pseudo-likelihood the score and the information of the
    coefficient vanish together, so Newton keeps stepping by about one unit
    in the same direction while the likelihood gains almost nothing. On a
    regular problem Newton's steps shrink quadratically. A term is flagged
    when its last three steps (the two last taken and the one Newton would
    take next, or three taken) all exceed 0.3 in size with one sign; the next
    step is included because crr's stopping rule can be met, when
    ``|loglik|`` is large, while a coefficient still drifts.
    """
    try:
        next_step = np.linalg.solve(fit.info, fit.score)
    except np.linalg.LinAlgError:
        next_step = np.full(len(terms), np.nan)
    recent = np.vstack([steps, next_step[None, :]])[-3:]
    if recent.shape[0] < 3:
        return []
    same_sign = np.all(np.sign(recent) == np.sign(recent[-1]), axis=0)
    large = np.all(np.abs(recent) > 0.3, axis=0)
    return [t for t, flag in zip(terms, same_sign & large, strict=True) if flag]


def _cluster_sums(influence: np.ndarray, cluster_codes: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum the rows of ``influence`` (n, p) within clusters -> (n_clusters, p)."""
    out = np.empty((n_clusters, influence.shape[1]))
    for j in range(influence.shape[1]):
        out[:, j] = np.bincount(cluster_codes, weights=influence[:, j], minlength=n_clusters)
    return out


# --------------------------------------------------------------------------
# DataFrame-facing layer
# --------------------------------------------------------------------------


class LogLik(NamedTuple):
    """Log pseudo partial likelihood as crr reports it: at beta = 0 and at the estimate."""

    null: float
    final: float


@dataclass(frozen=True)
class FineGrayResult:
    """Fine-Gray subdistribution hazard model for one cause.

    Attributes
    ----------
    summary : DataFrame, index = model terms (R names, treatment contrasts)
        ``coef`` (log subdistribution hazard ratio), ``se``, ``hr`` =
        exp(coef), ``lower``/``upper`` (Wald interval of ``hr`` at
        ``conf_level``), ``z`` = coef / se, ``p`` (two-sided). ``coef``
        equals ``crr(...)$coef`` and ``se`` equals ``sqrt(diag(crr(...)$var))``
        (or the cluster-robust version when ``cluster`` was given).
    vcov : DataFrame (p, p)
        Sandwich variance of ``coef``: crr's ``var`` or the cluster-robust one.
    information : DataFrame (p, p)
        Minus the Hessian of the log pseudo-likelihood, crr's ``inf``.
    loglik : LogLik
        (null, final), crr's ``loglik.null`` and ``loglik``.
    baseline : DataFrame
        ``time`` (crr's ``uftime``), ``hazard`` (crr's ``bfitj``, the
        Breslow-type jump of the baseline cumulative subdistribution hazard at
        covariates all zero) and ``cumulative_hazard``.
    n, n_events, n_competing, n_censored : int
        Rows, events of the cause, competing events, censored rows.
    n_clusters : int or None
        Number of clusters when ``cluster`` was given.
    converged : bool
    iterations : int
        Newton-Raphson iterations taken.
    cause, censor_code : int
    variance : str
        ``"crr"`` (crr's sandwich), ``"cluster"`` (influence terms summed
        within ``cluster``) or ``"robust"`` (case weights without a cluster:
        each subject its own cluster, weighted influence terms).
    weights : str or None
        The case-weight column, or None for the unweighted (crr) fit.
    censoring_km : str or None
        ``"weighted"`` or ``"unweighted"`` censoring Kaplan-Meier of a weighted
        fit; None without weights.
    time_varying : tuple of str
        The ``cov2`` columns (crr's time-varying coefficients), empty without.
    censoring_group : str or None
        crr's ``cengroup`` column, or None for one censoring distribution.
    """

    summary: pd.DataFrame
    vcov: pd.DataFrame
    information: pd.DataFrame
    loglik: LogLik
    baseline: pd.DataFrame
    n: int
    n_events: int
    n_competing: int
    n_censored: int
    n_clusters: int | None
    converged: bool
    iterations: int
    cause: int
    censor_code: int
    variance: str
    conf_level: float
    covariates: tuple[str, ...]
    weights: str | None
    censoring_km: str | None
    _levels: dict = field(repr=False, compare=False)
    time_varying: tuple[str, ...] = ()
    _tf: Any = field(default=None, repr=False, compare=False)
    censoring_group: str | None = None

    def __repr__(self) -> str:
        from .._printing import render_finegray

        return render_finegray(self)

    def _repr_html_(self) -> str:
        from .._printing import render_finegray_html

        return render_finegray_html(self)

    def plot(self, ax: Any = None) -> Any:
        """Forest plot of the subdistribution hazard ratios with their intervals; returns a Figure."""
        from .._printing import forest_of_terms

        return forest_of_terms(self.summary, "Subdistribution hazard ratio", ax)

    def predict_cif(self, profile: pd.DataFrame) -> pd.DataFrame:
        """Predicted cumulative incidence of the cause for covariate profiles.

        ``CIF(t | x) = 1 - exp(-exp(x' beta) * Lambda_0(t))`` at every distinct
        time with an event of the cause, as ``predict.crr(fit, cov1)``. For a
        weighted fit ``Lambda_0`` is the weighted Breslow estimate (weighted
        events over the weighted subdistribution risk set), as
        ``survfit(coxph(..., weights =), newdata =)`` on ``survival::finegray``
        data computes it (untied data; see docs/survival-finegray.md).

        Parameters
        ----------
        profile : DataFrame
            One row per profile with the fitted covariate columns (raw
            columns; categorical levels must be among the fitted ones).

        Returns
        -------
        DataFrame
            Column ``time`` then one column per profile row, labelled by the
            profile's index, shape (k, 1 + rows).
        """
        coef = self.summary["coef"].to_numpy()
        if self.time_varying:
            return _predict_cif_tv(self, profile, coef)
        x = _profile_matrix(profile, self.covariates, self._levels, list(self.summary.index))
        lin = x @ coef
        cum = self.baseline["cumulative_hazard"].to_numpy()
        cif = 1.0 - np.exp(-np.outer(cum, np.exp(lin)))
        out = pd.DataFrame(cif, columns=list(profile.index))
        out.insert(0, "time", self.baseline["time"].to_numpy())
        return out


def _predict_cif_tv(result: FineGrayResult, profile: pd.DataFrame, coef: np.ndarray) -> pd.DataFrame:
    """predict.crr with cov2: ``1 - exp(-cumsum(bfitj exp(x1'b1 + (x2 * tf(t))'b2)))`` at each uftime."""
    p1 = len(coef) - len(result.time_varying)
    if result.covariates:
        x1 = _profile_matrix(profile, result.covariates, result._levels, list(result.summary.index[:p1]))
    else:
        x1 = np.zeros((len(profile), 0))
    x2 = np.column_stack([numeric_column(profile, c, "profile") for c in result.time_varying])
    times = result.baseline["time"].to_numpy()
    tfk = _tf_matrix(result._tf, times, len(result.time_varying), "predict_cif")
    lin = (x1 @ coef[:p1])[None, :] + tfk @ (x2 * coef[p1:]).T  # (k, profiles)
    cum = np.cumsum(result.baseline["hazard"].to_numpy()[:, None] * np.exp(lin), axis=0)
    out = pd.DataFrame(1.0 - np.exp(-cum), columns=list(profile.index))
    out.insert(0, "time", times)
    return out


def _tf_matrix(tf: Callable[[np.ndarray], Any], times: np.ndarray, q: int, where: str) -> np.ndarray:
    """crr's ``tf(uft)``: a (k, q) matrix of the time functions at the event times, checked."""
    try:
        raw = tf(times.copy())
    except Exception as exc:  # the user's function: say which call failed and why
        raise InputError(f"{where}: tf(times) raised {type(exc).__name__}: {exc}") from exc
    values = np.asarray(raw, dtype=float)
    if values.ndim == 1 and q == 1:
        values = values[:, None]
    if values.shape != (times.shape[0], q):
        raise InputError(
            f"{where}: tf(times) must return {times.shape[0]} rows (one per event time of the cause) and {q} "
            f"column(s) (one per cov2 column), got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise InputError(
            f"{where}: tf(times) returned {bad} non-finite value(s) (e.g. log(0) at an event at time 0); "
            "every event time needs a finite value"
        )
    return np.ascontiguousarray(values)


def predict_cif(result: FineGrayResult, profile: pd.DataFrame) -> pd.DataFrame:
    """Predicted cumulative incidence for covariate profiles; see :meth:`FineGrayResult.predict_cif`."""
    return result.predict_cif(profile)


def _categorical_levels(data: pd.DataFrame, covariates: Sequence[str]) -> dict[str, list]:
    """Levels design_matrix uses for each categorical covariate (first = reference)."""
    levels: dict[str, list] = {}
    for name in covariates:
        col = data[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels[name] = list(col.cat.categories)
        elif _is_categorical(col):
            levels[name] = list(col.astype("category").cat.categories)
    return levels


def _profile_matrix(profile: pd.DataFrame, covariates: Sequence[str], levels: dict, terms: list[str]) -> np.ndarray:
    """Design rows for prediction with the fitted levels, columns in ``terms`` order."""
    require_columns(profile, covariates, "profile")
    frame = profile[list(covariates)].copy()
    for name, lv in levels.items():
        unknown = sorted(set(frame[name].dropna().astype(object)) - set(lv), key=str)
        if unknown:
            raise InputError(f"profile: covariate {name!r} has level(s) {unknown} not seen in the fit; known: {lv}")
        frame[name] = pd.Categorical(frame[name].astype(object), categories=lv)
    x = design_matrix(frame, covariates, "profile", unused_levels="keep")  # a profile uses some of the levels
    return x[terms].to_numpy(dtype=float)


def _check_design(terms: list[str], values: np.ndarray, centred: np.ndarray, where: str) -> None:
    """Refuse constant or collinear terms, naming them (crr would fail on a singular information).

    ``values`` is the (n, p) design, ``centred`` the same with column means removed.
    """
    constant = [name for name, col in zip(terms, values.T, strict=True) if col.min() == col.max()]
    if constant:
        raise InputError(
            f"{where}: covariate term(s) {constant} are constant over all {values.shape[0]} rows; "
            "a constant has no coefficient in a model without intercept: drop it"
        )
    cross = centred.T @ centred
    norm = np.sqrt(np.diag(cross))
    gram = cross / np.outer(norm, norm)  # correlation matrix of the terms
    kept: list[int] = []
    for j in range(gram.shape[0]):
        trial = [*kept, j]
        eig = np.linalg.eigvalsh(gram[np.ix_(trial, trial)])
        if eig.min() < 1e-10:
            raise InputError(
                f"{where}: covariate term {terms[j]!r} is collinear with {[terms[k] for k in kept]} "
                "(a linear combination of them); drop one of the terms"
            )
        kept.append(j)


def _case_weights(data: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Positive, finite case weights (n,) from ``column``; anything else raises InputError."""
    require_columns(data, [column], where)
    n = len(data)
    n_missing = int(data[column].isna().sum())
    if n_missing:
        raise InputError(
            f"{where}: weight column {column!r} has {n_missing} missing value(s) out of {n} rows; every row "
            "needs a positive case weight: compute the weight for those rows or drop them explicitly"
        )
    values = numeric_column(data, column, where)  # non-numeric and infinite values raise here
    not_positive = int((values <= 0).sum())
    if not_positive:
        raise InputError(
            f"{where}: weight column {column!r} has {not_positive} value(s) <= 0 out of {n} rows (smallest "
            f"{values.min():g}); fine_gray needs positive case weights: drop those rows explicitly, or check "
            "how the weights were computed (an IPTW weight is never 0)"
        )
    return values


def _tv_evaluate(s: _SortedData, tv: TVData, beta: np.ndarray) -> _Fit:
    """Log pseudo-likelihood, score and information with cov2 * tf(t) (direct engine)."""
    loglik, score, info, zbar, hazard, shift = _tv_evaluate_kernel(
        s.z,
        tv.z2,
        tv.tfk,
        s.case_weight,
        np.ascontiguousarray(beta, dtype=float),
        s.cause,
        s.event_start,
        tv.event_end,
        s.n_event,
        s.g_event,
        s.group,
        s.comp_rows,
        s.inv_g_comp,
        s.comp_before_event,
    )
    # shift is per event time here (an array in the float slot: only the baseline uses it)
    empty = np.empty(0)
    return _Fit(float(loglik), score, info, empty, shift, zbar, hazard, empty, empty)


def _tv_influence(s: _SortedData, tv: TVData, fit: _Fit, beta: np.ndarray) -> np.ndarray:
    """Influence terms ``v_i eta_i + k_i psi_i`` (n, p) with cov2 * tf(t), sorted order."""
    return _tv_influence_kernel(
        s.z,
        tv.z2,
        tv.tfk,
        s.case_weight,
        s.km_weight,
        np.ascontiguousarray(beta, dtype=float),
        s.time,
        s.cause,
        s.censored,
        s.competing,
        s.event_time,
        fit.zbar,
        fit.hazard,
        np.asarray(fit.shift),
        s.g_event,
        s.g_left,
        s.group,
        s.comp_rows,
        s.inv_g_comp,
        s.comp_by_group,
        s.comp_block,
        s.cens_time,
        s.cens_block,
        s.cens_count,
        s.cens_at_risk,
        s.cens_events_upto,
        s.cens_comp_upto,
        s.cens_upto,
    )


def _check_tv_design(terms: list[str], tv: TVData, s: _SortedData, where: str) -> None:
    """A cov2 term that is constant over subjects, or whose tf is 0 at every event time, has no information."""
    for j, name in enumerate(terms):
        if np.ptp(tv.z2[:, j]) == 0 or not np.any(tv.tfk[:, j] != 0):
            raise InputError(
                f"{where}: time-varying term {name!r} carries no information (its cov2 column is constant or "
                "tf is 0 at every event time); drop it"
            )


def _check_tv_collinear(terms: list[str], info: np.ndarray, where: str) -> None:
    """Refuse terms the information at beta = 0 cannot separate (e.g. x and x * tf with tf constant)."""
    scale = np.sqrt(np.maximum(np.diag(info), 1e-300))
    corr = info / np.outer(scale, scale)
    eig = np.linalg.eigvalsh(corr)
    if eig[0] <= 1e-10 * eig[-1]:
        # the term whose removal restores full rank is the one named (the last such, as coxph's NA)
        bad = [
            t
            for j, t in enumerate(terms)
            if np.linalg.eigvalsh(np.delete(np.delete(corr, j, 0), j, 1))[0] > 1e-10 * eig[-1]
        ]
        name = bad[-1] if bad else terms[-1]
        raise InputError(
            f"{where}: term {name!r} is collinear with the other terms in the risk sets (for a time-varying "
            "term: its tf is constant over the event times, or a multiple of another term's); drop it"
        )


def _censoring_groups(data: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Integer codes 0..q-1 of crr's ``cengroup`` column (missing values refused)."""
    values = data[column]
    n_missing = int(values.isna().sum())
    if n_missing:
        raise InputError(
            f"{where}: censoring_group column {column!r} has {n_missing} missing value(s) out of {len(data)} "
            "rows; give every row a censoring group (crr's cengroup cannot be NA)"
        )
    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) > _MAX_CENSORING_GROUPS:
        # each group needs its own Kaplan-Meier (O(n) work and memory per group); a column with this
        # many values is almost surely an id or a continuous variable given by mistake
        raise InputError(
            f"{where}: censoring_group column {column!r} has {len(uniques)} distinct values; at most "
            f"{_MAX_CENSORING_GROUPS} censoring groups are supported (each needs enough subjects for its "
            "own censoring Kaplan-Meier): pass a coarser grouping"
        )
    return codes.astype(np.int64)


_MAX_CENSORING_GROUPS = 1000


def fine_gray(
    data: pd.DataFrame,
    time: str,
    status: str,
    covariates: Sequence[str],
    cause: int = 1,
    censor_code: int = 0,
    cluster: str | None = None,
    conf_level: float = 0.95,
    *,
    competing_codes: Sequence[int] | None = None,
    weights: str | None = None,
    censoring_km: CensoringKM = "weighted",
    censoring_group: str | None = None,
    cov2: Sequence[str] | None = None,
    tf: Callable[[np.ndarray], Any] | None = None,
    tol: float = 1e-6,
    max_iter: int = 10,
) -> FineGrayResult:
    """Fine-Gray proportional subdistribution hazards model, as ``cmprsk::crr``.

    Parameters
    ----------
    data : DataFrame
        One row per subject.
    time : str
        Follow-up time column (days from index), >= 0.
    status : str
        Integer status column: ``censor_code`` for censored, ``cause`` for the
        event of interest, any other code a competing event.
    covariates : sequence of str
        Covariate columns; categorical/string columns are expanded with
        treatment contrasts (first level reference) as ``model.matrix``.
    cause, censor_code : int
        crr's ``failcode`` and ``cencode``.
    cluster : str, optional
        Cluster column (e.g. the matched set). Each subject's crr influence
        term (score residual plus censoring-distribution term) is summed
        within its cluster before the outer product:
        ``V = I^-1 (sum_c u_c u_c') I^-1``. With one subject per cluster this
        is exactly crr's ``var``. No small-sample factor (as coxph).
    conf_level : float
        Level of the Wald intervals of ``hr``.
    competing_codes : sequence of int, optional
        Declared competing-event codes; any status outside
        ``{censor_code, cause, *competing_codes}`` then raises. When omitted,
        every code other than ``censor_code`` and ``cause`` is competing (crr).
    weights : str, optional
        Column of positive case weights (e.g. inverse probability of
        treatment weights). The estimate solves the weighted Fine-Gray
        estimating equation with ``G`` the censoring Kaplan-Meier chosen by
        ``censoring_km``; on untied data it equals ``coxph(Surv(fgstart,
        fgstop, fgstatus) ~ ..., weights = fgwt)`` on ``survival::finegray``
        data with ``fgwt`` from that Kaplan-Meier (see
        docs/survival-finegray.md). The variance is then robust: the sandwich
        of the influence terms ``v_i eta_i + k_i psi_i`` (``k_i`` the
        subject's weight in the Kaplan-Meier), summed within ``cluster`` or
        per subject (``variance = "robust"``). Unit weights give crr's
        results exactly.
    censoring_km : {"weighted", "unweighted"}
        With ``weights``: the censoring distribution ``G`` is the Kaplan-Meier
        weighted by the case weights (default: the weighted population's
        censoring distribution; an integer weight then equals replicated
        rows), or the unweighted Kaplan-Meier, which is what
        ``survival::finegray(..., weights =)`` uses (its ``fgwt`` is the case
        weight times the unweighted censoring weight). Ignored without weights.
    censoring_group : str, optional
        crr's ``cengroup``: a column whose values split the subjects into
        groups with their own censoring distribution (e.g. hospitals or
        calendar periods with different follow-up). Each group gets its own
        censoring Kaplan-Meier ``G_g``; a competing subject's weight is
        ``G_g(t-) / G_g(T_j-)`` of its group (0 after the group's last
        time, as crr), and the censoring term of the variance is summed per
        group. Missing values are refused. Default: one group.
    cov2, tf : sequence of str, callable, optional
        crr's time-varying coefficients: numeric columns ``cov2`` whose
        effect at event time ``t`` is ``cov2[:, j] * tf(t)[:, j]``. ``tf``
        takes the array of distinct event times of the cause (crr's
        ``uftime``) and returns a (k, len(cov2)) array (or a length-k array
        for one column). Terms are named ``"{col}:tf{j}"``. This fit runs on
        a direct O(n x event times) engine (see ``_finegray_tv``), as slow
        as crr. Give both or neither; ``covariates`` may then be empty.
    tol, max_iter : float, int
        crr's ``gtol`` and ``maxiter`` (same stopping rule; see module notes).
        With ``weights`` the rule is applied to the weights divided by their
        mean, so multiplying every weight by a constant changes neither the
        coefficients nor their variance (``loglik`` and ``information`` are
        reported for the weights as given).

    Returns
    -------
    FineGrayResult

    Raises
    ------
    InputError
        Bad columns or codes, no events of the cause, constant or collinear terms.
    ConvergenceError
        Newton-Raphson did not meet the stopping rule in ``max_iter`` iterations.

    Warns
    -----
    ModelWarning
        Monotone pseudo-likelihood (a coefficient drifting to infinity),
        naming the covariate term.
    """
    where = "fine_gray data"
    if not isinstance(conf_level, (int, float)) or not 0 < conf_level < 1:
        raise InputError(f"fine_gray: conf_level must be in (0, 1), got {conf_level!r}")
    if int(cause) == int(censor_code):
        raise InputError(f"fine_gray: cause ({cause}) and censor_code ({censor_code}) must differ")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 0:
        raise InputError(f"fine_gray: max_iter must be a non-negative integer, got {max_iter!r}")
    if not tol > 0:
        raise InputError(f"fine_gray: tol must be > 0, got {tol!r}")
    if censoring_km not in CENSORING_KM:
        raise InputError(f"fine_gray: censoring_km must be one of {list(CENSORING_KM)}, got {censoring_km!r}")
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    cov2 = [] if cov2 is None else ([cov2] if isinstance(cov2, str) else list(cov2))
    if bool(cov2) != (tf is not None):
        raise InputError("fine_gray: give cov2 and tf together (crr's time-varying coefficients), or neither")
    if tf is not None and not callable(tf):
        raise InputError(f"fine_gray: tf must be a function of the event times, got {type(tf).__name__}")
    if not covariates and not cov2:
        raise InputError("fine_gray: give at least one covariate (crr needs cov1 or cov2)")
    require_columns(
        data,
        [time, status, *covariates]
        + ([cluster] if cluster else [])
        + ([weights] if weights else [])
        + ([censoring_group] if censoring_group else [])
        + cov2,
        where,
    )
    if len(data) == 0:
        raise InputError(f"{where} has no rows")
    times = check_time(data, time, where)
    case_weights = None if weights is None else _case_weights(data, weights, where)
    declared = None if competing_codes is None else [int(cause), *map(int, competing_codes)]
    codes = check_status(data, status, censor_code=int(censor_code), causes=declared, where=where)
    n_events = int((codes == cause).sum())
    if n_events == 0:
        present = sorted(set(np.unique(codes).tolist()))
        raise InputError(
            f"{where}: no events of cause {cause} in column {status!r} among its {len(data)} rows (codes present: "
            f"{present}); the subdistribution hazard of that cause cannot be estimated: check the cause and "
            "censor_code against the status coding"
        )
    if covariates:
        x = design_matrix(data, covariates, where)
        terms = list(x.columns)
        z = x.to_numpy(dtype=float)
    else:
        terms, z = [], np.zeros((len(data), 0))
    z2 = np.column_stack([numeric_column(data, c, where) for c in cov2]) if cov2 else None
    tv_terms = [f"{c}:tf{j + 1}" for j, c in enumerate(cov2)]
    # The fit runs on weights of mean 1. The coefficients and the sandwich are invariant to a common
    # factor in the weights, but crr's stopping rule compares the score with max(|loglik|, 1), and both
    # shrink with the weights: weights * 1e-7 would stop at beta = 0. Unit weights are left untouched
    # (their mean is exactly 1.0), so crr's unweighted fit is reproduced bit for bit.
    # (the mean of w / max(w) times max(w): no overflow for weights near 1e308, and exactly 1.0 for unit weights)
    top = 1.0 if case_weights is None else float(case_weights.max())
    weight_scale = 1.0 if case_weights is None else float(np.mean(case_weights / top)) * top
    if case_weights is not None and weight_scale != 1.0:
        case_weights = case_weights / weight_scale
    group_codes = None if censoring_group is None else _censoring_groups(data, censoring_group, where)
    s, order = _prepare(
        times,
        codes,
        z,
        int(cause),
        int(censor_code),
        case_weights,
        censoring_weighted=censoring_km == "weighted",
        cengroup=group_codes,
    )
    if terms:
        _check_design(terms, z, s.z, where)
    tv: TVData | None = None
    if z2 is not None and tf is not None:
        tfk = _tf_matrix(tf, s.event_time, len(cov2), "fine_gray")
        event_end = np.searchsorted(s.time, s.event_time, side="right")
        tv = TVData(z2=np.ascontiguousarray(z2[order]), tfk=tfk, event_end=event_end)
        _check_tv_design(tv_terms, tv, s, where)
        terms = terms + tv_terms
    evaluate = None if tv is None else (lambda sd, b: _tv_evaluate(sd, tv, b))
    if tv is not None:
        _check_tv_collinear(terms, _tv_evaluate(s, tv, np.zeros(len(terms))).info, where)
    sol = _newton(s, np.zeros(len(terms)), float(tol), int(max_iter), evaluate)
    beta, fit = sol.beta, sol.fit
    drifting = _drifting_terms(terms, sol.steps, fit)
    if not sol.converged and not drifting:
        raise ConvergenceError(
            f"fine_gray: Newton-Raphson did not converge in {sol.iterations} iteration(s) "
            f"(max_iter={max_iter}, tol={tol}); current coefficients "
            f"{dict(zip(terms, np.round(sol.beta, 6).tolist(), strict=True))}. "
            "Raise max_iter, or check for separation / a covariate with extreme values"
        )
    if drifting:
        warnings.warn(
            f"fine_gray: the log pseudo-likelihood is monotone in {drifting}: the coefficient(s) drift to "
            f"infinity (stopped after {sol.iterations} iterations with the log pseudo-likelihood flat); "
            "typically all events of the cause are on one side of the covariate. The estimates and standard "
            "errors of these terms are not usable",
            ModelWarning,
            stacklevel=2,
        )
    info_inv = np.linalg.inv(fit.info)

    influence = _influence(s, fit) if tv is None else _tv_influence(s, tv, fit, beta)  # v_i eta_i + k_i psi_i
    n_clusters: int | None = None
    if cluster is not None:
        cluster_col = data[cluster]
        n_missing = int(cluster_col.isna().sum())
        if n_missing:
            raise InputError(
                f"{where}: cluster column {cluster!r} has {n_missing} missing value(s) out of {len(data)} "
                "rows; give every row a cluster (e.g. its own id when it was not matched)"
            )
        cluster_codes, uniques = pd.factorize(cluster_col)
        n_clusters = len(uniques)
        summed = _cluster_sums(influence, cluster_codes[order], n_clusters)
        meat = summed.T @ summed
    else:
        meat = influence.T @ influence
    vcov = info_inv @ meat @ info_inv
    vcov = (vcov + vcov.T) / 2.0

    se = np.sqrt(np.diag(vcov))
    crit = stats.norm.ppf(0.5 + conf_level / 2.0)
    zstat = beta / se
    summary = pd.DataFrame(
        {
            "coef": beta,
            "se": se,
            "hr": np.exp(beta),
            "lower": np.exp(beta - crit * se),
            "upper": np.exp(beta + crit * se),
            "z": zstat,
            "p": 2.0 * stats.norm.sf(np.abs(zstat)),
        },
        index=pd.Index(terms, name="term"),
    )
    # Baseline jumps at covariates all zero on the raw (uncentred) scale (shift per event time with cov2).
    hazard = fit.hazard * np.exp(-np.asarray(fit.shift) - float(s.z_mean @ beta[: s.z.shape[1]]))
    baseline = pd.DataFrame({"time": s.event_time, "hazard": hazard, "cumulative_hazard": np.cumsum(hazard)})
    null_loglik = sol.initial_loglik  # Newton starts at beta = 0, where crr's loglik.null is taken
    final_loglik = fit.loglik
    information = fit.info
    if weight_scale != 1.0:
        # back to the caller's weights: sum v eta - sum d log S0 with v = c u gives c (L_u - D_u log c)
        events_weight = float(s.n_event.sum())
        null_loglik = weight_scale * (null_loglik - events_weight * np.log(weight_scale))
        final_loglik = weight_scale * (final_loglik - events_weight * np.log(weight_scale))
        information = information * weight_scale
    return FineGrayResult(
        summary=summary,
        vcov=pd.DataFrame(vcov, index=terms, columns=terms),
        information=pd.DataFrame(information, index=terms, columns=terms),
        loglik=LogLik(null=null_loglik, final=final_loglik),
        baseline=baseline,
        n=int(len(data)),
        n_events=n_events,
        n_competing=int(s.competing.sum()),
        n_censored=int(s.censored.sum()),
        n_clusters=n_clusters,
        converged=sol.converged,
        iterations=sol.iterations,
        cause=int(cause),
        censor_code=int(censor_code),
        variance="cluster" if cluster is not None else "robust" if weights is not None else "crr",
        conf_level=float(conf_level),
        covariates=tuple(covariates),
        weights=weights,
        censoring_km=censoring_km if weights is not None else None,
        _levels=_categorical_levels(data, covariates),
        time_varying=tuple(cov2),
        _tf=tf,
        censoring_group=censoring_group,
    )
