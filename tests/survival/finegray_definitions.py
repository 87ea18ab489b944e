"""Fine-Gray quantities by their definitions, in plain O(n^2) loops: the oracle the kernel tests compare with.

Shared by tests/survival/test_finegray_direct.py (unit weights: crr's
estimator) and tests/survival/test_finegray_weights.py (case weights).
"""

from __future__ import annotations

import numpy as np


def weighted_definitions(time, status, z, v, beta, cause=1, censor_code=0, product_limit=False, km=None):
    """loglik, score (p,), information (p, p), eta (n, p) and psi (n, p) by the weighted definitions.

    Plain loops over event and censoring times (O(n^2)), independent of the
    kernels' cumulative sums. Case weights ``v``: the censoring distribution is
    the weighted Kaplan-Meier ``G(s-) = prod_{u < s} (1 - c(u) / n(u))`` with
    ``c(u)`` the weight censored at ``u`` and ``n(u)`` the weight with
    ``T >= u``, weights ``km`` (default ``v``; all 1 for survival::finegray's
    unweighted ``G``); subject ``j`` enters the risk set at event time ``t`` with
    ``v_j w_j(t) exp(z_j' beta)``, ``w_j(t) = 1`` while ``T_j >= t`` and
    ``G(t-) / G(T_j-)`` after a competing event; ``d(t)`` is the weight of
    the events at ``t`` (Breslow). eta is per unit of case weight and psi per
    unit of Kaplan-Meier weight: ``sum_i (v_i eta_i + km_i psi_i)`` linearises
    the weighted estimating equation.
    psi uses crr's censoring-martingale term ``q(u) / n(u) dM^c_i(u)``; with
    ``product_limit`` it is ``q(u) / (n(u) - c(u)) dM^c_i(u)``, the exact
    derivative of the product-limit ``G`` in ``v_i``.
    """
    n, p = z.shape
    is_cause = status == cause
    censored = status == censor_code
    competing = ~is_cause & ~censored
    km = v if km is None else km
    distinct = np.unique(time)
    at_risk = np.array([km[time >= u].sum() for u in distinct])
    cens = np.array([km[censored & (time == u)].sum() for u in distinct])

    def g_left(s: float) -> float:
        keep = distinct < s
        return float(np.prod(1.0 - cens[keep] / at_risk[keep]))

    risk = np.exp(z @ beta)
    event_times = np.unique(time[is_cause])
    W = np.array(
        [
            [1.0 if time[j] >= t else (g_left(t) / g_left(time[j]) if competing[j] else 0.0) for j in range(n)]
            for t in event_times
        ]
    )
    s0 = W @ (v * risk)
    zbar = W @ ((v * risk)[:, None] * z) / s0[:, None]
    d = np.array([v[is_cause & (time == t)].sum() for t in event_times])
    hazard = d / s0
    loglik = float(v[is_cause] @ (z[is_cause] @ beta) - d @ np.log(s0))
    score = (v[is_cause, None] * z[is_cause]).sum(axis=0) - d @ zbar
    info = np.zeros((p, p))
    for k in range(len(event_times)):
        s2 = (z * (W[k] * v * risk)[:, None]).T @ z
        info += d[k] * (s2 / s0[k] - np.outer(zbar[k], zbar[k]))
    eta = np.zeros((n, p))
    for i in range(n):
        for k, t in enumerate(event_times):
            dn = 1.0 if (is_cause[i] and time[i] == t) else 0.0
            eta[i] += (z[i] - zbar[k]) * (dn - W[k, i] * risk[i] * hazard[k])
    psi = np.zeros((n, p))
    for u, n_u, c_u in zip(distinct, at_risk, cens, strict=True):
        if c_u == 0:
            continue
        q = np.zeros(p)
        for j in np.flatnonzero(competing & (time < u)):
            for k, t in enumerate(event_times):
                if t >= u:
                    q += v[j] * (z[j] - zbar[k]) * W[k, j] * risk[j] * hazard[k]
        denominator = (n_u - c_u) if product_limit else n_u
        if denominator <= 0:
            assert not q.any()  # nobody left after u: no event time after it either (untied data)
            continue
        for i in range(n):
            dmc = (1.0 if (censored[i] and time[i] == u) else 0.0) - (1.0 if time[i] >= u else 0.0) * c_u / n_u
            psi[i] += q / denominator * dmc
    return loglik, score, info, eta, psi
