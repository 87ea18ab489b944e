"""The O(n p^2) Fine-Gray kernels against the O(n^2) definitions, written term by term.

``direct_fine_gray`` below spells out the weighted risk sets, the score
residuals eta_i and the censoring terms psi_i of Fine & Gray (1999) with
explicit loops over event times, censoring times and subjects, using the
conventions documented in retrocohort.survival.finegray (weights
G(t-)/G(T_j-); censoring at u acts on competing events strictly before u at
event times t >= u). The fast kernels rearrange these sums into cumulative
sums; here both must agree to rounding on tied data, at arbitrary beta.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrocohort.survival.finegray import _evaluate, _influence, _prepare, fine_gray


def _censoring_left_limit(time: np.ndarray, censored: np.ndarray):
    """G(s-) of the censoring Kaplan-Meier, everyone with T >= u at risk at u."""
    distinct = np.unique(time)
    at_risk = np.array([(time >= u).sum() for u in distinct], dtype=float)
    n_cens = np.array([(censored & (time == u)).sum() for u in distinct], dtype=float)

    def g_left(s: float) -> float:
        keep = distinct < s
        return float(np.prod(1.0 - n_cens[keep] / at_risk[keep]))

    return g_left, distinct, at_risk, n_cens


def direct_fine_gray(time, status, z, beta, cause=1, censor_code=0):
    """loglik, score (p,), information (p,p), eta (n,p) and psi (n,p) by the definitions."""
    n, p = z.shape
    is_cause = status == cause
    censored = status == censor_code
    competing = ~is_cause & ~censored
    g_left, distinct, at_risk, n_cens = _censoring_left_limit(time, censored)
    risk = np.exp(z @ beta)
    event_times = np.unique(time[is_cause])

    def weight(j: int, t: float) -> float:
        if time[j] >= t:
            return 1.0
        if competing[j]:
            return g_left(t) / g_left(time[j])
        return 0.0

    W = np.array([[weight(j, t) for j in range(n)] for t in event_times])  # (k, n)
    s0 = W @ risk
    s1 = W @ (risk[:, None] * z)
    zbar = s1 / s0[:, None]
    d = np.array([(is_cause & (time == t)).sum() for t in event_times], dtype=float)
    hazard = d / s0
    loglik = float((z[is_cause] @ beta).sum() - np.sum(d * np.log(s0)))
    score = z[is_cause].sum(axis=0) - d @ zbar
    info = np.zeros((p, p))
    for k in range(len(event_times)):
        s2 = (z * (W[k] * risk)[:, None]).T @ z
        info += d[k] * (s2 / s0[k] - np.outer(zbar[k], zbar[k]))

    eta = np.zeros((n, p))
    for i in range(n):
        for k, t in enumerate(event_times):
            dn = 1.0 if (is_cause[i] and time[i] == t) else 0.0
            eta[i] += (z[i] - zbar[k]) * (dn - W[k, i] * risk[i] * hazard[k])

    psi = np.zeros((n, p))
    for u, n_u, c_u in zip(distinct, at_risk, n_cens):
        if c_u == 0:
            continue
        q = np.zeros(p)
        for i in np.flatnonzero(competing & (time < u)):
            for k, t in enumerate(event_times):
                if t >= u:
                    q += (z[i] - zbar[k]) * W[k, i] * risk[i] * hazard[k]
        for j in range(n):
            dmc = (1.0 if (censored[j] and time[j] == u) else 0.0) - (1.0 if time[j] >= u else 0.0) * c_u / n_u
            psi[j] += q / n_u * dmc
    return loglik, score, info, eta, psi


def _tied_data(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    z = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.4, size=n)])
    t_event = np.ceil(rng.exponential(6.0, size=n))
    t_cens = np.ceil(rng.exponential(9.0, size=n))
    status = np.where(t_cens < t_event, 0, rng.choice([1, 2, 3], size=n, p=[0.5, 0.3, 0.2]))
    return np.minimum(t_event, t_cens).astype(float), status, z


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernels_equal_direct_definitions_on_tied_data(seed):
    time, status, z = _tied_data(seed)
    # ties of every kind must be present for the test to mean something
    assert len(np.unique(time)) < len(time)
    assert np.intersect1d(time[status == 0], time[status != 0]).size > 0
    beta = np.array([0.4, -0.7])
    s, order = _prepare(time, status, z, 1, 0)
    fit = _evaluate(s, beta)
    influence = np.empty_like(z)
    influence[order] = _influence(s, fit)
    loglik, score, info, eta, psi = direct_fine_gray(time, status, z, beta)
    np.testing.assert_allclose(fit.loglik, loglik, rtol=1e-12)
    np.testing.assert_allclose(fit.score, score, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.info, info, rtol=1e-10)
    np.testing.assert_allclose(influence, eta + psi, rtol=1e-9, atol=1e-12)
    # the censoring term is far from negligible here, so its convention is tested
    assert np.abs(psi).max() > 1e-3 * np.abs(eta).max()


def test_cluster_variance_equals_direct_cluster_sums():
    time, status, z = _tied_data(11, n=48)
    frame = pd.DataFrame({"time": time, "status": status, "x": z[:, 0], "b": z[:, 1]})
    frame["pair"] = np.arange(len(frame)) // 2
    fit = fine_gray(frame, "time", "status", ["x", "b"], cluster="pair")
    beta = fit.summary["coef"].to_numpy()
    _, _, info, eta, psi = direct_fine_gray(time, status, z, beta)
    influence = eta + psi
    summed = np.zeros((frame["pair"].nunique(), 2))
    np.add.at(summed, frame["pair"].to_numpy(), influence)
    bread = np.linalg.inv(info)
    expected = bread @ summed.T @ summed @ bread
    np.testing.assert_allclose(fit.vcov.to_numpy(), expected, rtol=1e-8)
    assert fit.n_clusters == 24
