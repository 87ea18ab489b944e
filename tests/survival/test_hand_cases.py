"""Tiny hand-calculated cases: Cox (Efron and Breslow), the PH test and Fine-Gray.

Each case is a 6-row data set with one binary covariate ``x``, built so that
the score equation can be solved by hand. With ``r = exp(beta)`` and a binary
covariate, a risk set holding total weight ``w1`` of subjects with x = 1 and
``w0`` with x = 0 has

    S0 = w1 r + w0,   zbar = p = w1 r / S0,   variance of x = p (1 - p),

so every score term is ``x_dead - p`` and every information term ``p (1 - p)``.
Expected values are the closed forms derived in each test (no typed-in
numbers); where a formula is a sum of many terms it is evaluated from first
principles in a few lines of plain NumPy, independent of the library.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrocohort.survival.cox import cox
from retrocohort.survival.finegray import fine_gray
from retrocohort.survival.zph import ph_test

# coxph's default stopping rule (relative change of the log-likelihood < 1e-9)
# leaves beta about 1e-9 short of the root on these tiny data; the closed forms
# are the exact roots, so Newton is run to convergence.
EXACT = 1e-14

# ------------------------------------------------------------------- Cox, tied


def _tied_cox_data() -> pd.DataFrame:
    """Rows (time, status, x): A 1 1 1 | B 1 1 1 | C 2 1 0 | D 3 0 1 | E 4 1 0 | F 5 0 0."""
    return pd.DataFrame(
        {
            "time": [1.0, 1, 2, 3, 4, 5],
            "status": [1, 1, 1, 0, 1, 0],
            "x": [1.0, 1, 0, 1, 0, 0],
        }
    )


def test_cox_efron_with_a_tie_hand_solved():
    """Efron: two tied deaths (both x = 1) at t = 1; the score equation is a cubic with a trigonometric root.

    Risk sets (x = 1 | x = 0):
      t = 1: {A, B, D} | {C, E, F}; deaths A, B (both x = 1), d = 2.
             Efron removes the mean death weight (r + r)/2 = r for the second
             term: S0 = 3r + 3, then 2r + 3; p = 3r/(3r+3) = r/(r+1), then 2r/(2r+3).
      t = 2: {D} | {C, E, F}; death C (x = 0): S0 = r + 3, p = r/(r+3).
      t = 4: {} | {E, F}; death E (x = 0): S0 = 2, p = 0 (no contribution to U or I).
    Score U(r) = 2 - r/(r+1) - 2r/(2r+3) - r/(r+3)
               = 1/(r+1) + 3/(2r+3) - r/(r+3).
    Multiplying by (r+1)(2r+3)(r+3):
      (2r+3)(r+3) + 3(r+1)(r+3) - r(r+1)(2r+3) = -2r^3 + 18r + 18 = 0,
    i.e. r^3 - 9r - 9 = 0, a depressed cubic t^3 + pt + q with p = q = -9 and
    three real roots; the positive one is
      r = 2 sqrt(-p/3) cos(arccos((3q/(2p)) sqrt(-3/p)) / 3)
        = 2 sqrt(3) cos(arccos(sqrt(3)/2) / 3) = 2 sqrt(3) cos(pi/18).
    Information I = p1(1-p1) + p2(1-p2) + p3(1-p3) with the three p above;
    se = I^-1/2. Log partial likelihood (Efron):
      l(beta) = 2 beta - log(3r+3) - log(2r+3) - log(r+3) - log 2,
    and at beta = 0 (r = 1): -log 6 - log 5 - log 4 - log 2.
    Score test at beta = 0: U(1)^2 / I(1) with U(1) = 1/2 + 3/5 - 1/4 and
    I(1) = 1/4 + 6/25 + 3/16.
    """
    fit = cox(_tied_cox_data(), "time", "status", ["x"], ties="efron", eps=EXACT)
    r = 2 * math.sqrt(3) * math.cos(math.pi / 18)
    assert r**3 - 9 * r - 9 == pytest.approx(0, abs=1e-12)  # the root solves the cubic
    beta = math.log(r)
    p = np.array([r / (r + 1), 2 * r / (2 * r + 3), r / (r + 3)])
    info = float(np.sum(p * (1 - p)))
    assert fit.summary.loc["x", "coef"] == pytest.approx(beta, rel=1e-10)
    assert fit.summary.loc["x", "se"] == pytest.approx(1 / math.sqrt(info), rel=1e-10)
    final = 2 * beta - math.log(3 * r + 3) - math.log(2 * r + 3) - math.log(r + 3) - math.log(2)
    null = -math.log(6) - math.log(5) - math.log(4) - math.log(2)
    np.testing.assert_allclose(fit.loglik, [null, final], rtol=1e-12)
    u0, i0 = 1 / 2 + 3 / 5 - 1 / 4, 1 / 4 + 6 / 25 + 3 / 16
    assert fit.score.statistic == pytest.approx(u0**2 / i0, rel=1e-12)
    assert fit.likelihood_ratio.statistic == pytest.approx(2 * (final - null), rel=1e-10)
    assert fit.wald.statistic == pytest.approx(beta**2 * info, rel=1e-9)
    assert fit.n == 6 and fit.n_events == 4


def test_cox_breslow_with_a_tie_hand_solved():
    """Breslow on the same data: both tied deaths see the full risk set, giving a quadratic.

    t = 1: S0 = 3r + 3 for both deaths, p = r/(r+1) twice; t = 2: p = r/(r+3); t = 4: p = 0.
    U(r) = 2 - 2r/(r+1) - r/(r+3) = 2/(r+1) - r/(r+3) = 0
      <=> 2(r+3) = r(r+1) <=> r^2 - r - 6 = 0 <=> r = 3, beta = log 3.
    I = 2 (3/4)(1/4) + (1/2)(1/2) = 5/8, so se = sqrt(8/5).
    l(beta) = 2 beta - 2 log(3r+3) - log(r+3) - log 2 = 2 log 3 - 2 log 12 - log 6 - log 2;
    at beta = 0: -2 log 6 - log 4 - log 2.
    """
    fit = cox(_tied_cox_data(), "time", "status", ["x"], ties="breslow", eps=EXACT)
    assert fit.summary.loc["x", "coef"] == pytest.approx(math.log(3), rel=1e-10)
    assert fit.summary.loc["x", "se"] == pytest.approx(math.sqrt(8 / 5), rel=1e-10)
    final = 2 * math.log(3) - 2 * math.log(12) - math.log(6) - math.log(2)
    null = -2 * math.log(6) - math.log(4) - math.log(2)
    np.testing.assert_allclose(fit.loglik, [null, final], rtol=1e-12)
    hr = fit.summary.loc["x"]
    z975 = stats.norm.ppf(0.975)
    assert hr["hr"] == pytest.approx(3.0, rel=1e-10)
    assert hr["lower"] == pytest.approx(3.0 * math.exp(-z975 * math.sqrt(8 / 5)), rel=1e-9)
    assert hr["z"] == pytest.approx(math.log(3) / math.sqrt(8 / 5), rel=1e-10)


# ------------------------------------------------------------ Cox, untied + PH


def _untied_cox_data() -> pd.DataFrame:
    """Rows (time, status, x): A 1 1 1 | B 2 0 0 | C 3 1 0 | D 4 1 1 | E 5 0 1 | F 6 1 0."""
    return pd.DataFrame(
        {
            "time": [1.0, 2, 3, 4, 5, 6],
            "status": [1, 0, 1, 1, 0, 1],
            "x": [1.0, 0, 0, 1, 1, 0],
        }
    )


def _golden_fit_values():
    """Closed forms for the untied data (no ties, so Efron = Breslow).

    Risk sets (x = 1 | x = 0) and deaths:
      t = 1: {A, D, E} | {B, C, F}, death A (x=1): p = 3r/(3r+3) = r/(r+1), U += 1/(r+1)
      t = 3: {D, E} | {C, F},       death C (x=0): p = 2r/(2r+2) = r/(r+1), U -= r/(r+1)
      t = 4: {D, E} | {F},          death D (x=1): p = 2r/(2r+1),           U += 1/(2r+1)
      t = 6: {} | {F},              death F (x=0): p = 0, nothing
    U = (1 - r)/(r+1) + 1/(2r+1) = 0 <=> (1-r)(2r+1) + (r+1) = 0 <=> r^2 - r - 1 = 0,
    so r is the golden ratio (1 + sqrt 5)/2 and beta = log r.
    """
    r = (1 + math.sqrt(5)) / 2
    p = np.array([r / (r + 1), r / (r + 1), 2 * r / (2 * r + 1)])
    u_t = np.array([1.0, 0.0, 1.0]) - p  # x of the death minus p, at t = 1, 3, 4
    return r, p, u_t


def test_cox_untied_golden_ratio():
    """Untied data: r^2 - r - 1 = 0 (see _golden_fit_values); Efron and Breslow agree.

    I = 2 r/(r+1)^2 + 2r/(2r+1)^2;  l = 2 beta - log(3r+3) - log(2r+2) - log(2r+1) - log 1;
    at beta = 0: -log 6 - log 4 - log 3.
    """
    r, p, u_t = _golden_fit_values()
    assert u_t.sum() == pytest.approx(0, abs=1e-15)
    info = float(np.sum(p * (1 - p)))
    assert info == pytest.approx(2 * r / (r + 1) ** 2 + 2 * r / (2 * r + 1) ** 2, rel=1e-14)
    beta = math.log(r)
    final = 2 * beta - math.log(3 * r + 3) - math.log(2 * r + 2) - math.log(2 * r + 1)
    null = -math.log(6) - math.log(4) - math.log(3)
    for ties in ("efron", "breslow"):
        fit = cox(_untied_cox_data(), "time", "status", ["x"], ties=ties, eps=EXACT)
        assert fit.summary.loc["x", "coef"] == pytest.approx(beta, rel=1e-10), ties
        assert fit.summary.loc["x", "se"] == pytest.approx(1 / math.sqrt(info), rel=1e-10), ties
        np.testing.assert_allclose(fit.loglik, [null, final], rtol=1e-12, err_msg=ties)


def _zph_first_principles(time, status, x, beta):
    """cox.zph(fit, transform = "km") for one covariate and untied times, in plain NumPy.

    survival 3.x's cox.zph is the score test of gamma = 0 in the model with
    hazard exp(beta x + gamma x g(t)), evaluated at (beta_hat, 0) with the full
    2 x 2 information of the extended model (Grambsch & Therneau 1994; the
    cox.zph documentation). For transform = "km", g(t) = 1 - S(t-), the
    left-continuous Kaplan-Meier of the pooled data. At each death time t, with
    Z_i(t) = (x_i, x_i g(t)) over the risk set:
      U += Z_dead(t) - S1/S0,   V += S2/S0 - S1 S1'/S0^2,
    and the statistic is U' V^-1 U (1 df).
    """
    order = np.argsort(time)
    time, status, x = time[order], status[order], x[order]
    n = len(time)
    at_risk = n - np.arange(n)
    km_after = np.cumprod(1 - status / at_risk)  # S(t_i), untied
    km_before = np.concatenate([[1.0], km_after[:-1]])  # S(t_i-)
    u = np.zeros(2)
    v = np.zeros((2, 2))
    for i in np.flatnonzero(status == 1):
        g = 1 - km_before[i]
        risk = slice(i, n)
        zz = np.column_stack([x[risk], x[risk] * g])
        w = np.exp(beta * x[risk])
        s0, s1, s2 = w.sum(), w @ zz, (zz * w[:, None]).T @ zz
        u += zz[0] - s1 / s0
        v += s2 / s0 - np.outer(s1, s1) / s0**2
    return float(u @ np.linalg.solve(v, u)), u


def test_ph_test_hand_calculated():
    """PH test on the untied data at the closed-form beta = log(golden ratio).

    KM of the pooled data: S = 1 before t=1, 5/6 on [1, 3), 5/6 * 3/4 = 5/8 on
    [3, 4), 5/8 * 2/3 = 5/12 on [4, 6), 0 from 6. g(t) = 1 - S(t-) at the
    deaths that contribute: g(1) = 0, g(3) = 1/6, g(4) = 3/8 (t = 6 has only
    F at risk and adds nothing). Because g(t) is the same for everyone at risk
    at t, the extended score and information are, with U_t and I_t = p(1-p)
    from _golden_fit_values:
      U_beta = sum U_t = 0 (at beta_hat),  U_gamma = sum g_t U_t,
      V = [[sum I_t, sum g_t I_t], [sum g_t I_t, sum g_t^2 I_t]],
    so the statistic is U_gamma^2 / (V_gg - V_gb^2 / V_bb), df = 1, and
    p = P(chi2_1 > stat). GLOBAL equals the single term's row. The closed form
    is also checked against the first-principles extended-model sums.
    """
    data = _untied_cox_data()
    r, p, u_t = _golden_fit_values()
    i_t = p * (1 - p)
    g = np.array([0.0, 1 / 6, 3 / 8])
    u_gamma = float(g @ u_t)
    v_bb, v_gb, v_gg = i_t.sum(), g @ i_t, g**2 @ i_t
    chisq = u_gamma**2 / (v_gg - v_gb**2 / v_bb)
    direct, u = _zph_first_principles(
        data["time"].to_numpy(), data["status"].to_numpy(float), data["x"].to_numpy(), math.log(r)
    )
    assert u[0] == pytest.approx(0, abs=1e-14) and u[1] == pytest.approx(u_gamma, rel=1e-12)
    assert direct == pytest.approx(chisq, rel=1e-12)

    fit = cox(data, "time", "status", ["x"], eps=EXACT)
    table = ph_test(fit).table
    assert list(table.index) == ["x", "GLOBAL"]
    np.testing.assert_allclose(table["chisq"], [chisq, chisq], rtol=1e-8)
    np.testing.assert_allclose(table["p"], stats.chi2.sf(chisq, 1), rtol=1e-8)
    assert table["df"].tolist() == [1, 1]


# ---------------------------------------------------------- Fine-Gray, censored


def _finegray_data() -> pd.DataFrame:
    """Rows (time, status, x): A 1 2 1 | B 2 1 0 | C 3 0 1 | D 4 1 1 | E 5 2 0 | F 6 0 0.

    status 1 = event of interest, 2 = competing event, 0 = censored.
    """
    return pd.DataFrame(
        {
            "time": [1.0, 2, 3, 4, 5, 6],
            "status": [2, 1, 0, 1, 2, 0],
            "x": [1.0, 0, 1, 1, 0, 0],
        }
    )


def test_fine_gray_with_censoring_hand_solved():
    """Coefficient from the hand-solved score equation; variance from Fine & Gray's sandwich (section 4).

    Censoring distribution (Kaplan-Meier of the censorings, events before
    censorings at a tie): censorings at u = 3 (at risk n(3) = 4: C, D, E, F)
    and u = 6 (n(6) = 1). G(t-) = 1 for t <= 3, 3/4 on (3, 6].
    A competing-event subject j stays at risk of the cause after T_j with
    weight w_j(t) = G(t-)/G(T_j-). A (x = 1, competing at 1) therefore has
    weight 1 at t = 2 and 3/4 at t = 4.

    Subdistribution risk sets at the events of interest (weight of x = 1 | x = 0):
      t = 2: A 1, C 1, D 1 | B, E, F: w1 = 3, w0 = 3; death B (x = 0):
             zbar_2 = r/(r+1), score term -r/(r+1), dLambda_2 = 1/(3r+3)
      t = 4: D 1, A 3/4 | E, F:       w1 = 7/4, w0 = 2; death D (x = 1):
             zbar_4 = 7r/(7r+8), score term 8/(7r+8), dLambda_4 = 4/(7r+8)
    U = 8/(7r+8) - r/(r+1) = 0 <=> 8(r+1) = r(7r+8) <=> 7 r^2 = 8,
    so r = sqrt(8/7), beta = log(8/7)/2.
    Information I = zbar_2 (1 - zbar_2) + zbar_4 (1 - zbar_4) = r/(r+1)^2 + 56 r/(7r+8)^2.
    Log pseudo-likelihood: beta - log(3r+3) - log(7r/4+2).

    Variance (Fine & Gray 1999, section 4): I^-1 sum_i (eta_i + psi_i)^2 I^-1 with
      eta_i = sum_t (x_i - zbar_t) (dN_i(t) - w_i(t) r^x_i dLambda_t)   (score residuals)
      psi_i = sum_u q(u)/n(u) (dN^c_i(u) - 1{T_i >= u} c(u)/n(u))         (censoring term)
      q(u)  = sum over competing j with T_j < u, event times t >= u, of
              (x_j - zbar_t) w_j(t) r^x_j dLambda_t.
    By hand: only u = 3 has q != 0 (no event time >= 6), and only A qualifies:
      q(3) = (1 - zbar_4) (3/4) r dLambda_4;  n(3) = 4, c(3) = 1, so
      psi_C = q(3)/4 (1 - 1/4) = 3 q(3)/16,  psi_D = psi_E = psi_F = -q(3)/16,  psi_A = psi_B = 0.
    eta_i, by hand:
      A: -(1 - zbar_2) r dL_2 - (3/4)(1 - zbar_4) r dL_4
      B: -zbar_2 (1 - dL_2)
      C: -(1 - zbar_2) r dL_2
      D: -(1 - zbar_2) r dL_2 + (1 - zbar_4)(1 - r dL_4)
      E, F: zbar_2 dL_2 + zbar_4 dL_4
    The eta_i and psi_i are also recomputed below from their definitions with
    plain NumPy loops over the weighted risk sets (not the hand expressions).
    """
    r = math.sqrt(8 / 7)
    beta = math.log(8 / 7) / 2
    zbar2, zbar4 = r / (r + 1), 7 * r / (7 * r + 8)
    dl2, dl4 = 1 / (3 * r + 3), 4 / (7 * r + 8)
    assert 8 / (7 * r + 8) - r / (r + 1) == pytest.approx(0, abs=1e-15)
    info = zbar2 * (1 - zbar2) + zbar4 * (1 - zbar4)
    assert info == pytest.approx(r / (r + 1) ** 2 + 56 * r / (7 * r + 8) ** 2, rel=1e-14)
    q3 = (1 - zbar4) * 0.75 * r * dl4
    psi = np.array([0.0, 0.0, 3 * q3 / 16, -q3 / 16, -q3 / 16, -q3 / 16])
    eta_ef = zbar2 * dl2 + zbar4 * dl4
    eta = np.array(
        [
            -(1 - zbar2) * r * dl2 - 0.75 * (1 - zbar4) * r * dl4,
            -zbar2 * (1 - dl2),
            -(1 - zbar2) * r * dl2,
            -(1 - zbar2) * r * dl2 + (1 - zbar4) * (1 - r * dl4),
            eta_ef,
            eta_ef,
        ]
    )
    variance = float(np.sum((eta + psi) ** 2)) / info**2

    # the same eta and psi from the definitions, looping over risk sets
    data = _finegray_data()
    time, status, x = data["time"].to_numpy(), data["status"].to_numpy(), data["x"].to_numpy()
    censored, competing, cause = status == 0, status == 2, status == 1
    n_at = np.array([(time >= u).sum() for u in time])  # n(u) at each subject's own time
    g_after = np.cumprod(np.where(censored, 1 - 1 / n_at, 1.0))  # rows are in time order, untied
    g_left = np.concatenate([[1.0], g_after[:-1]])  # G(T_i-)
    event_rows = np.flatnonzero(cause)
    weights = np.array(
        [
            [1.0 if time[j] >= time[k] else (g_left[k] / g_left[j] if competing[j] else 0.0) for j in range(6)]
            for k in event_rows
        ]
    )  # (event times, subjects)
    risk = np.exp(beta * x)
    s0 = weights @ risk
    zbar = (weights @ (risk * x)) / s0
    dlam = 1 / s0
    np.testing.assert_allclose([zbar[0], zbar[1], dlam[0], dlam[1]], [zbar2, zbar4, dl2, dl4], rtol=1e-14)
    died = (np.arange(6)[None, :] == event_rows[:, None]).astype(float)
    eta_def = ((x[None, :] - zbar[:, None]) * (died - weights * risk[None, :] * dlam[:, None])).sum(axis=0)
    psi_def = np.zeros(6)
    for m in np.flatnonzero(censored):
        u, n_u = time[m], n_at[m]
        q = sum(
            (x[j] - zbar[k]) * weights[k, j] * risk[j] * dlam[k]
            for j in np.flatnonzero(competing & (time < u))
            for k in range(len(event_rows))
            if time[event_rows[k]] >= u
        )
        psi_def += q / n_u * ((np.arange(6) == m) - (time >= u) / n_u)
    np.testing.assert_allclose(eta_def, eta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(psi_def, psi, rtol=1e-12, atol=1e-15)
    assert abs(q3) > 0.01 and psi.sum() == pytest.approx(0, abs=1e-15)

    fit = fine_gray(data, "time", "status", ["x"], tol=1e-12, max_iter=50)
    assert fit.summary.loc["x", "coef"] == pytest.approx(beta, rel=1e-10)
    assert fit.information.iloc[0, 0] == pytest.approx(info, rel=1e-10)
    assert fit.loglik.final == pytest.approx(beta - math.log(3 * r + 3) - math.log(7 * r / 4 + 2), rel=1e-12)
    assert fit.loglik.null == pytest.approx(-math.log(6) - math.log(7 / 4 + 2), rel=1e-12)
    np.testing.assert_allclose(fit.baseline["hazard"], [dl2, dl4], rtol=1e-10)
    assert fit.vcov.iloc[0, 0] == pytest.approx(variance, rel=1e-9)
    # the censoring term matters here: the variance without psi is measurably different
    assert abs(float(np.sum(eta**2)) / info**2 / variance - 1) > 1e-3
    # one subject per cluster reproduces the same (crr) variance
    clustered = fine_gray(data.assign(id=np.arange(6)), "time", "status", ["x"], cluster="id", tol=1e-12, max_iter=50)
    assert clustered.vcov.iloc[0, 0] == pytest.approx(variance, rel=1e-10)
