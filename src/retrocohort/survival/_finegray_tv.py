"""Fine-Gray with time-varying coefficients, crr's ``cov2`` / ``tf``: the direct O(n x event times) engine.

With ``cov2`` each subject's covariate vector at an event time ``t_k`` is
``z_i(t_k) = (z1_i, z2_i * tf(t_k))``: the risk scores change from one event
time to the next, so the running sums of :mod:`.finegray`'s fast kernels do
not apply. Here every quantity is summed over each event time's risk set
(subjects still at risk, plus competing-event subjects with weight
``G_g(t_k-) / G_g(T_j-)``), as crr does: O(n k p^2) per Newton step for ``k``
distinct event times of the cause. The definitions are those of
:func:`.finegray._influence` with ``z_j`` replaced by ``z_j(t_k)``:

* ``eta_i = sum_k (z_i(t_k) - zbar_k) (dN_i(t_k) - w_i(t_k) e_i(t_k) dLambda_k)``
* ``q(u) = sum_{competing j, T_j < u} sum_{t_k >= u} (e_j(t_k) / G(T_j-)) G(t_k-) (z_j(t_k) - zbar_k) dLambda_k``
* ``psi_i = sum_u q(u) / n(u) dM^c_i(u)`` over the censoring times of the subject's group.

``q`` is accumulated over competing subjects in time order into a per-event-time
buffer, so the censoring term costs O((c + m) k p), not O(c m k p).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class TVData(NamedTuple):
    """The time-varying part: ``z2`` (n, q) in sorted order and ``tfk`` (k, q) = tf at each event time."""

    z2: np.ndarray
    tfk: np.ndarray
    event_end: np.ndarray  # (k,) one past the last sorted row with time == event_time


@njit(cache=True)
def _covariates_at(z1, z2, tfk, i, k, out):  # pragma: no cover - compiled
    p1 = z1.shape[1]
    for a in range(p1):
        out[a] = z1[i, a]
    for b in range(z2.shape[1]):
        out[p1 + b] = z2[i, b] * tfk[k, b]


@njit(cache=True)
def _tv_evaluate_kernel(
    z1, z2, tfk, v, beta, cause, event_start, event_end, n_event, g_event, group, comp_rows, inv_g_comp, comp_before
):  # pragma: no cover - compiled
    n = z1.shape[0]
    p = z1.shape[1] + z2.shape[1]
    k_times = event_start.shape[0]
    loglik = 0.0
    score = np.zeros(p)
    info = np.zeros((p, p))
    zbar = np.empty((k_times, p))
    hazard = np.empty(k_times)  # d_k / S0_k on the scale exp(eta - shift_k)
    shift = np.empty(k_times)
    eta = np.empty(n)
    zi = np.empty(p)
    s1 = np.empty(p)
    s2 = np.empty((p, p))
    for k in range(k_times):
        top = -np.inf
        for i in range(n):
            _covariates_at(z1, z2, tfk, i, k, zi)
            acc = 0.0
            for a in range(p):
                acc += zi[a] * beta[a]
            eta[i] = acc
            if acc > top:
                top = acc
        shift[k] = top
        s0 = 0.0
        s1[:] = 0.0
        s2[:, :] = 0.0
        for c in range(comp_before[k] + (n - event_start[k])):
            if c < comp_before[k]:
                i = comp_rows[c]
                w = v[i] * g_event[group[i], k] * inv_g_comp[c]
            else:
                i = event_start[k] + c - comp_before[k]
                w = v[i]
            if w == 0.0:
                continue
            r = w * np.exp(eta[i] - top)
            _covariates_at(z1, z2, tfk, i, k, zi)
            s0 += r
            for a in range(p):
                s1[a] += r * zi[a]
                for b in range(a + 1):
                    s2[a, b] += r * zi[a] * zi[b]
        d = n_event[k]
        hazard[k] = d / s0
        loglik -= d * (np.log(s0) + top)
        for i in range(event_start[k], event_end[k]):
            if cause[i]:
                _covariates_at(z1, z2, tfk, i, k, zi)
                loglik += v[i] * eta[i]
                for a in range(p):
                    score[a] += v[i] * zi[a]
        for a in range(p):
            zbar[k, a] = s1[a] / s0
            score[a] -= d * zbar[k, a]
        for a in range(p):
            for b in range(a + 1):
                info[a, b] += d * (s2[a, b] / s0 - zbar[k, a] * zbar[k, b])
    for a in range(p):
        for b in range(a):
            info[b, a] = info[a, b]
    return loglik, score, info, zbar, hazard, shift


@njit(cache=True)
def _tv_influence_kernel(
    z1,
    z2,
    tfk,
    v,
    km_v,
    beta,
    time,
    cause,
    censored,
    competing,
    event_time,
    zbar,
    hazard,
    shift,
    g_event,
    g_left,
    group,
    comp_rows,
    inv_g_comp,
    comp_by_group,
    comp_block,
    cens_time,
    cens_block,
    cens_count,
    cens_at_risk,
    cens_events_upto,
    cens_comp_upto,
    cens_upto,
):  # pragma: no cover - compiled
    n = z1.shape[0]
    p = z1.shape[1] + z2.shape[1]
    k_times = event_time.shape[0]
    zi = np.empty(p)
    out = np.zeros((n, p))
    # eta_i: every event time the subject is in the risk set of (or has its event at)
    for i in range(n):
        for k in range(k_times):
            t = event_time[k]
            if time[i] >= t:
                w = 1.0
            elif competing[i]:
                w = g_event[group[i], k] / g_left[i]
            else:
                break  # censored or had the event before t: out of every later risk set
            _covariates_at(z1, z2, tfk, i, k, zi)
            acc = 0.0
            for a in range(p):
                acc += zi[a] * beta[a]
            r = w * np.exp(acc - shift[k]) * hazard[k]
            dn = 1.0 if (cause[i] and time[i] == t) else 0.0
            for a in range(p):
                out[i, a] += (zi[a] - zbar[k, a]) * (dn - r)
        for a in range(p):
            out[i, a] *= v[i]
    m_times = cens_count.shape[0]
    if m_times == 0 or comp_rows.shape[0] == 0:
        return out
    # q(u_m), group by group: competing subjects (time order) enter a per-event-time buffer
    # buf[k] = sum_j v_j e_j(t_k) / G(T_j-) (z_j(t_k) - zbar_k); q = sum_{k >= k0} G_g(t_k-) dL_k buf[k]
    q = np.zeros((m_times, p))
    buf = np.zeros((k_times, p))
    n_groups = g_event.shape[0]
    for gr in range(n_groups):
        buf[:, :] = 0.0
        c = comp_block[gr]
        for m in range(cens_block[gr], cens_block[gr + 1]):
            while c < cens_comp_upto[m]:
                idx = comp_by_group[c]
                j = comp_rows[idx]
                for k in range(k_times):
                    if event_time[k] <= time[j]:
                        continue  # only event times after the competing event use the weight
                    _covariates_at(z1, z2, tfk, j, k, zi)
                    acc = 0.0
                    for a in range(p):
                        acc += zi[a] * beta[a]
                    r = v[j] * np.exp(acc - shift[k]) * inv_g_comp[idx]
                    for a in range(p):
                        buf[k, a] += r * (zi[a] - zbar[k, a])
                c += 1
            for k in range(cens_events_upto[m], k_times):
                gh = g_event[gr, k] * hazard[k]
                for a in range(p):
                    q[m, a] += gh * buf[k, a]
    comp_sum = np.zeros((m_times + 1, p))
    for m in range(m_times):
        scale = cens_count[m] / (cens_at_risk[m] * cens_at_risk[m])
        for a in range(p):
            comp_sum[m + 1, a] = comp_sum[m, a] + q[m, a] * scale
    for i in range(n):
        j = cens_upto[i]
        b0 = cens_block[group[i]]
        for a in range(p):
            out[i, a] -= km_v[i] * (comp_sum[j, a] - comp_sum[b0, a])
        if censored[i]:
            for a in range(p):
                out[i, a] += km_v[i] * (q[j - 1, a] / cens_at_risk[j - 1])
    return out
