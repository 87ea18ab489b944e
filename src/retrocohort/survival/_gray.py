"""Score and covariance of Gray's (1988) K-sample test for one stratum (rho = 0).

Derived from Gray RJ (1988), "A class of K-sample tests for comparing the
cumulative incidence of a competing risk", Ann. Statist. 16:1141-1154, with
the tie handling settled by black-box comparison with
``cmprsk::cuminc(...)$Tests`` (see docs/survival-descriptive.md, "Gray's
test", for the derivation and what was settled how). This module replaced an
earlier implementation for provenance reasons.

Notation, for group r at a distinct time t of the stratum: ``Y_r`` at risk,
``d1_r`` events of the cause, ``d2_r`` events of any other cause, ``S_r`` the
group's all-cause Kaplan-Meier, ``F_r`` its Aalen-Johansen incidence of the
cause, ``t-`` just before t.

Score (the statistic with weight ``K_r = R_r``, i.e. rho = 0)::

    R_r(t) = Y_r (1 - F_r(t-)) / S_r(t-)          subdistribution risk set
    z_k = sum_t [ d1_k - R_k D1 / R. ]            D1 = sum_r d1_r, R. = sum_r R_r

Covariance: under H0 all groups share F, and the score is a sum of the
martingale increments of every group's cause-specific counting processes,

    z_k ~ sum_t sum_r S_r(t-)/Y_r [ (a_kr + c_kr u_r) dM1_r + c_kr v_r dM2_r ]

with, estimated under H0 with pooled quantities,

    h_r = Y_r / S_r(t-),  H = sum_r h_r
    dF0 = D1 / H,  F0 = cumulative sum of dF0,  dG0 = dF0 / (1 - F0(t-))
    a_kr(t) = h_k (1{k=r} - h_r / H)
    c_kr(t) = sum_{s > t} a_kr(s) dG0(s)
    u_r(t) = 1 - (1 - F0(t)) / S_r(t),  v_r(t) = -(1 - F0(t)) / S_r(t)

so that

    V_kk' = sum_t sum_r  w1_r (a_kr + c_kr u_r)(a_k'r + c_k'r u_r)
                       + w2_r (c_kr v_r)(c_k'r v_r)
    w1_r = S_r(t-) dF0 / Y_r * (H S_r(t-) - D1) / (H S_r(t-) - 1)
    w2_r = (S_r(t-) / Y_r)^2 d2_r (Y_r - d2_r) / (Y_r - 1)

The last factor of each weight is the correction for tied events (1 for a
single event). Terms where ``S_r(t) = 0`` have ``c_kr(t) = 0`` (nobody of
group r is at risk later) and are taken as 0. At a time with a single group
at risk ``a_kr = 0`` (its risk set is the pooled one), so that time adds
nothing to any ``c``; the pooled ``F0(t-)`` can have reached 1 there (the
last group's events after the others are gone), where ``dG0`` would be
infinite: such times are skipped rather than multiplied out as 0 * inf.
"""

from __future__ import annotations

import numba
import numpy as np

from ._risksets import grouped_risk_table

__all__ = ["gray_score_covariance"]


@numba.njit(cache=True, error_model="numpy")
def _forward_pass(
    n_risk: np.ndarray, n_cause: np.ndarray, n_other: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score, group S(t-) and S(t), pooled dF0 and F0 over the (K, m) risk table, in time order.

    One loop over the distinct times keeps per-group running S and F and
    writes only what the backward pass needs.
    """
    k, m = n_risk.shape
    score = np.zeros(k)
    s_before = np.empty((k, m))
    s_after = np.empty((k, m))
    pooled_step = np.zeros(m)
    pooled_cif = np.empty(m)
    survival = np.ones(k)
    cif = np.zeros(k)
    risk = np.empty(k)
    f0 = 0.0
    for t in range(m):
        d1_total = 0.0
        risk_total = 0.0
        h_total = 0.0
        for r in range(k):
            s_before[r, t] = survival[r]
            y = n_risk[r, t]
            if y > 0:
                risk[r] = y * (1.0 - cif[r]) / survival[r]
                h_total += y / survival[r]
            else:
                risk[r] = 0.0
            risk_total += risk[r]
            d1_total += n_cause[r, t]
        if d1_total > 0:
            for r in range(k):
                score[r] += n_cause[r, t] - risk[r] * d1_total / risk_total
            pooled_step[t] = d1_total / h_total
            f0 += pooled_step[t]
        pooled_cif[t] = f0
        # the group's own S and F move after the pooled quantities that use S(t-), F(t-)
        for r in range(k):
            y = n_risk[r, t]
            if y > 0:
                cif[r] += survival[r] * n_cause[r, t] / y
                survival[r] *= 1.0 - (n_cause[r, t] + n_other[r, t]) / y
            s_after[r, t] = survival[r]
    return score, s_before, s_after, pooled_step, pooled_cif


@numba.njit(cache=True, error_model="numpy")
def _backward_pass(
    n_risk: np.ndarray,
    n_cause: np.ndarray,
    n_other: np.ndarray,
    s_before: np.ndarray,
    s_after: np.ndarray,
    pooled_step: np.ndarray,
    pooled_cif: np.ndarray,
) -> np.ndarray:
    """(K, K) covariance, walking the times backwards.

    ``c_kr(t)`` is a sum over later times, so it is a K x K running sum that
    is used at t before t's own ``a_kr dG0`` is added. No (K, K, m) array.
    """
    k, m = n_risk.shape
    covariance = np.zeros((k, k))
    c = np.zeros((k, k))
    a = np.zeros((k, k))
    h = np.empty(k)
    b = np.empty(k)
    for t in range(m - 1, -1, -1):
        d1_total = 0.0
        d2_total = 0.0
        h_total = 0.0
        groups_at_risk = 0
        for r in range(k):
            d1_total += n_cause[r, t]
            d2_total += n_other[r, t]
            if n_risk[r, t] > 0:
                h[r] = n_risk[r, t] / s_before[r, t]
                groups_at_risk += 1
            else:
                h[r] = 0.0
            h_total += h[r]
        if d1_total == 0 and d2_total == 0:
            continue  # censorings only: no term, and a dG0 of 0 leaves c unchanged
        survivor_cif = 1.0 - pooled_cif[t]  # 1 - F0(t)
        if d1_total > 0:
            for q in range(k):
                for r in range(k):
                    a[q, r] = h[q] * ((1.0 if q == r else 0.0) - h[r] / h_total)
            for r in range(k):
                y = n_risk[r, t]
                if not y > 0:
                    continue
                weight = s_before[r, t] * pooled_step[t] / y
                if d1_total > 1:
                    # tied events of the cause (settled against cuminc): a hypergeometric-type
                    # factor with the pooled risk set in group r's units, H S_r(t-)
                    pooled_in_r = h_total * s_before[r, t]
                    weight *= (pooled_in_r - d1_total) / (pooled_in_r - 1.0)
                u = 1.0 - survivor_cif / s_after[r, t] if s_after[r, t] > 0 else 0.0
                for q in range(k):
                    b[q] = a[q, r] + c[q, r] * u
                for q in range(k):
                    for p in range(k):
                        covariance[q, p] += weight * b[q] * b[p]
        if d2_total > 0:
            for r in range(k):
                d2 = n_other[r, t]
                if not d2 > 0 or not s_after[r, t] > 0:
                    continue  # S_r(t) = 0: nobody of group r later, c[:, r] = 0
                y = n_risk[r, t]
                weight = (s_before[r, t] / y) ** 2 * d2
                if d2 > 1:
                    weight *= (y - d2) / (y - 1.0)
                v = -survivor_cif / s_after[r, t]
                for q in range(k):
                    b[q] = c[q, r] * v
                for q in range(k):
                    for p in range(k):
                        covariance[q, p] += weight * b[q] * b[p]
        if d1_total > 0 and groups_at_risk > 1:
            # dG0(t) = dF0(t) / (1 - F0(t-)); a(t) was filled above. With a single group at
            # risk a(t) = 0 exactly and adds nothing to c; skipping it matters when the pooled
            # F0(t-) has reached 1 (dG0 infinite, 0 * inf = NaN): cuminc then also counts
            # nothing (its statistic is finite; tests/survival/test_gray.py).
            step = pooled_step[t] / (survivor_cif + pooled_step[t])
            for q in range(k):
                for r in range(k):
                    c[q, r] += a[q, r] * step
    return covariance


def gray_score_covariance(
    time: np.ndarray, is_cause: np.ndarray, is_other: np.ndarray, group_codes: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Score and covariance of Gray's test (rho = 0) in one stratum.

    Parameters
    ----------
    time : (n,) float, follow-up times (days).
    is_cause : (n,) bool, event of the cause tested.
    is_other : (n,) bool, event of any other cause (neither flag: censored).
    group_codes : (n,) int in 0..n_groups-1.
    n_groups : K.

    Returns
    -------
    score : (K,) observed minus expected events of the cause on the
        subdistribution risk sets.
    covariance : (K, K) its estimated covariance under H0.

    Summed over strata, these give ``cmprsk::cuminc(...)$Tests`` (see
    :func:`retrocohort.survival.competing.gray_test`). Tied times are kept
    tied; the formulas are in the module docstring.
    """
    table = grouped_risk_table(time, [is_cause, is_other], group_codes, n_groups)
    # strided views of the counts: numba reads them in place, no (K, m) copies
    n_risk, n_cause, n_other = table.n_risk, table.counts[:, :, 0], table.counts[:, :, 1]
    score, s_before, s_after, pooled_step, pooled_cif = _forward_pass(n_risk, n_cause, n_other)
    covariance = _backward_pass(n_risk, n_cause, n_other, s_before, s_after, pooled_step, pooled_cif)
    return score, covariance
