"""Test of proportional hazards, equal to ``survival::cox.zph(fit, transform=)`` (survival >= 3.0).

Since survival 3.0, ``cox.zph`` is a score test, not the Grambsch-Therneau
approximation from scaled Schoenfeld residuals. The Cox model is extended by
time-varying covariates ``x_j * g(t)``, where ``g(t) = 1 - S(t-)`` is one
minus the left-continuous Kaplan-Meier estimate of the pooled data by default
(unweighted, strata ignored), and the score test of ``gamma = 0`` is computed
at ``(beta_hat, 0)`` with the full information matrix of the extended model.
As cox.zph does, ``g`` is centred on its mean over the event rows and the
score of the p original coefficients is taken as exactly zero (its value at
the maximum); ``ph_test(score_at_fit="computed")`` uses the score actually
evaluated at the returned coefficients instead. The two agree when the fit
converged fully and differ (typically in the 6th digit) when it stopped
before the score vanished, e.g. with a loose ``eps`` or at ``max_iter``.
Because ``g`` is constant across everyone at risk at a death time ``t``, the
extended model's score and information are sums over death times of

    U_t (x part)          g_t U_t (time part)
    I_t  g_t I_t  /  g_t I_t  g_t^2 I_t

where ``U_t`` is the (Efron or Breslow) score contribution and ``I_t`` the
information contribution at ``t``. The statistic for a term with columns J
is ``u' V^{-1} u`` over the p x-columns plus the J time columns (df = |J|);
GLOBAL uses all 2p columns (df = p). With the computed score, shifting
``g`` by a constant is a reparametrisation and changes nothing; with the
beta score set to zero it shifts the time part of the score by a multiple
of the (small) remaining beta score, which is why the centring follows R.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from numba import njit
from scipy import stats

from ..errors import InputError
from .cox import CoxResult, _wald_quadratic

__all__ = ["PHTestResult", "ScoreAtFit", "Transform", "ph_test"]


@njit(cache=True)
def _zph_pass(stop, start, event, w, X, eta, gvals, sbounds, sorder, has_entry, efron):
    """Score (2p,) and information (2p, 2p) of the model extended by x*g(t), at gamma = 0."""
    n, p = X.shape
    u = np.zeros(2 * p)
    imat = np.zeros((2 * p, 2 * p))
    s1 = np.zeros(p)
    s2 = np.zeros((p, p))
    d1 = np.zeros(p)
    d2 = np.zeros((p, p))
    xw = np.zeros(p)
    xbar = np.zeros(p)
    ug = np.zeros(p)
    ig = np.zeros((p, p))
    r = np.empty(n)
    for i in range(n):
        r[i] = w[i] * np.exp(eta[i])
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        s0 = 0.0
        s1[:] = 0.0
        s2[:, :] = 0.0
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
            d2[:, :] = 0.0
            xw[:] = 0.0
            g = 0.0
            for k in range(j, i + 1):
                rk = r[k]
                s0 += rk
                for a in range(p):
                    xa = X[k, a] * rk
                    s1[a] += xa
                    for b in range(a, p):
                        s2[a, b] += xa * X[k, b]
                if event[k] != 0:
                    g = gvals[k]
                    nd += 1
                    dw += w[k]
                    d0 += rk
                    for a in range(p):
                        xa = X[k, a] * rk
                        d1[a] += xa
                        xw[a] += w[k] * X[k, a]
                        for b in range(a, p):
                            d2[a, b] += xa * X[k, b]
            if has_entry:
                while sp >= lo and start[sorder[sp]] >= t:
                    k = sorder[sp]
                    rk = r[k]
                    s0 -= rk
                    for a in range(p):
                        xa = X[k, a] * rk
                        s1[a] -= xa
                        for b in range(a, p):
                            s2[a, b] -= xa * X[k, b]
                    sp -= 1
            if nd == 0:
                i = j - 1
                continue
            ug[:] = 0.0
            ig[:, :] = 0.0
            for a in range(p):
                ug[a] = xw[a]
            if (not efron) or nd == 1:
                for a in range(p):
                    xbar[a] = s1[a] / s0
                for a in range(p):
                    ug[a] -= dw * xbar[a]
                    for b in range(a, p):
                        ig[a, b] += dw * (s2[a, b] / s0 - xbar[a] * xbar[b])
            else:
                meanwt = dw / nd
                for m in range(nd):
                    f = m / nd
                    e0 = s0 - f * d0
                    for a in range(p):
                        xbar[a] = (s1[a] - f * d1[a]) / e0
                    for a in range(p):
                        ug[a] -= meanwt * xbar[a]
                        for b in range(a, p):
                            ig[a, b] += meanwt * ((s2[a, b] - f * d2[a, b]) / e0 - xbar[a] * xbar[b])
            for a in range(p):
                u[a] += ug[a]
                u[p + a] += g * ug[a]
                for b in range(a, p):
                    v = ig[a, b]
                    imat[a, b] += v
                    imat[a, p + b] += g * v
                    imat[p + a, p + b] += g * g * v
                    if b != a:
                        imat[b, p + a] += g * v
            i = j - 1
    m2 = 2 * p
    for a in range(m2):
        for b in range(a):
            imat[a, b] = imat[b, a]
    return u, imat


def _km_transform(stop: np.ndarray, start: np.ndarray, event: np.ndarray, has_entry: bool) -> np.ndarray:
    """``1 - S(t-)`` at every row's stop time, S the pooled unweighted Kaplan-Meier.

    For (entry, stop] data the risk set at t is rows with entry < t <= stop.
    """
    death_times, n_death = np.unique(stop[event != 0], return_counts=True)
    stop_sorted = np.sort(stop)
    at_risk = len(stop) - np.searchsorted(stop_sorted, death_times, side="left")
    if has_entry:
        start_sorted = np.sort(start)
        at_risk -= len(start) - np.searchsorted(start_sorted, death_times, side="left")
    surv = np.cumprod(1.0 - n_death / at_risk)
    surv_before = np.concatenate(([1.0], surv[:-1]))
    idx = np.searchsorted(death_times, stop, side="left")
    # rows whose stop time is not a death time get S at the last death before (unused by the test)
    idx = np.minimum(idx, len(death_times) - 1)
    return 1.0 - surv_before[idx]


def _time_transform(
    transform: str, stop: np.ndarray, start: np.ndarray, event: np.ndarray, has_entry: bool
) -> np.ndarray:
    """g(t) of every row at its stop time (only the event rows enter the test), as cox.zph's ``transform``.

    "km": 1 - S(t-) of the pooled Kaplan-Meier; "identity": t; "log": log t;
    "rank": the rank of t among all rows' stop times, censored ones included (ties get their mean
    rank, as R's ``rank``); cox.zph ranks every row's time, not only the event times.
    """
    if transform == "km":
        return _km_transform(stop, start, event, has_entry)
    if transform == "identity":
        return stop.astype(float, copy=True)
    if transform == "log":
        # times are > 0 at every event (an event at time 0 has no log: refused, as log(0) = -Inf breaks R too)
        if np.any(stop[event != 0] <= 0):
            n_zero = int(np.sum(stop[event != 0] <= 0))
            raise InputError(
                f"ph_test: transform='log' needs event times > 0; {n_zero} event rows have time 0. "
                "Use transform='km' or 'rank', or shift the time origin"
            )
        return np.log(np.where(stop > 0, stop, 1.0))
    # "rank": as cox.zph, the rank of the stop time among ALL rows (censored ones too), ties averaged
    return stats.rankdata(stop, method="average")


@dataclass(frozen=True)
class PHTestResult:
    """Result of :func:`ph_test`; ``table`` equals ``cox.zph(fit, transform=)$table``.

    table : DataFrame indexed by term (or model column when ``terms=False``)
        plus "GLOBAL", with ``chisq``, ``df``, ``p``.
    transform : the time transform used ("km", "identity", "log" or "rank").
    """

    table: pd.DataFrame
    transform: str

    def __repr__(self) -> str:
        from .._printing import render_ph_test

        return render_ph_test(self)

    def _repr_html_(self) -> str:
        from .._printing import render_ph_test_html

        return render_ph_test_html(self)


ScoreAtFit = Literal["zero", "computed"]
_SCORE_AT_FIT: tuple[str, ...] = get_args(ScoreAtFit)
Transform = Literal["km", "identity", "log", "rank"]
_TRANSFORMS: tuple[str, ...] = get_args(Transform)


def ph_test(
    result: CoxResult, terms: bool = True, *, score_at_fit: ScoreAtFit = "zero", transform: Transform = "km"
) -> PHTestResult:
    """Score test of proportional hazards for each term and globally.

    Parameters
    ----------
    result : a fit from :func:`retrocohort.survival.cox.cox`.
    terms : test each covariate as a whole (a categorical covariate's k-1
        columns jointly, df = k-1), as ``cox.zph(terms=TRUE)``; False tests
        each model column separately.
    score_at_fit : "zero" (default, as ``cox.zph``) takes the score of the
        p original coefficients as exactly zero, which it is at the maximum;
        "computed" uses the score actually evaluated at the returned
        coefficients. The two differ only when the fit stopped before the
        score vanished (a loose ``eps``, ``max_iter`` reached), typically
        in the 6th digit of the statistic.
    transform : g(t), as cox.zph's ``transform``: "km" (default, 1 - the
        pooled Kaplan-Meier at t-), "identity" (t), "log" (log t) or "rank"
        (rank of t among every row's stop time, as cox.zph ranks them).
        A function is not accepted.

    Returns
    -------
    PHTestResult
        ``table`` agrees with ``cox.zph(fit, transform=)`` of survival 3.x
        to about 1e-10 relative. The test uses the model-based information
        (not a robust variance), as cox.zph does.
    """
    if not isinstance(result, CoxResult):
        raise InputError(
            f"ph_test: expects the result of retrocohort.cox(...), got {type(result).__name__}; "
            "fit the Cox model first and pass its result"
        )
    if score_at_fit not in _SCORE_AT_FIT:
        raise InputError(f"ph_test: score_at_fit={score_at_fit!r} is not supported; use one of {list(_SCORE_AT_FIT)}")
    if not isinstance(transform, str) or transform not in _TRANSFORMS:
        raise InputError(
            f"ph_test: transform={transform!r} is not supported; use one of {list(_TRANSFORMS)} "
            "(cox.zph's function-valued transform is not offered)"
        )
    f = result._fit
    p = f.X.shape[1]
    if p == 0:  # as cox.zph: "there are no score residuals for a Null model"
        raise InputError("ph_test: the fit is a null model (no covariates); there is nothing to test")
    gvals = _time_transform(transform, f.stop, f.start, f.event, f.has_entry)
    # cox.zph centres g on its mean over the event rows; with the beta part of the score taken as
    # zero that centring matters (it is a reparametrisation only for the score actually computed)
    gvals = gvals - gvals[f.event != 0].mean()
    eta = f.eta - f.eta.max()
    u, imat = _zph_pass(f.stop, f.start, f.event, f.weights, f.X, eta, gvals, f.sbounds, f.sorder, f.has_entry, f.efron)
    if score_at_fit == "zero":
        # cox.zph's score test is built with the beta part of the score set to 0 (its value at the
        # maximum), whatever the fitter left; only the time-varying part enters the statistic then
        u[:p] = 0.0
    columns = list(f.columns)
    if terms:
        groups = [(name, [columns.index(c) for c in cols]) for name, cols in f.terms]
    else:
        groups = [(c, [j]) for j, c in enumerate(columns)]
    rows = []
    base = list(range(p))
    for name, idx in groups:
        sel = base + [p + j for j in idx]
        stat = _wald_quadratic(imat[np.ix_(sel, sel)], u[sel])
        rows.append((name, stat, len(idx)))
    stat = _wald_quadratic(imat, u)
    rows.append(("GLOBAL", stat, p))
    table = pd.DataFrame(
        {
            "chisq": [r[1] for r in rows],
            "df": [r[2] for r in rows],
            "p": [float(stats.chi2.sf(r[1], r[2])) for r in rows],
        },
        index=pd.Index([r[0] for r in rows], name="term"),
    )
    return PHTestResult(table=table, transform=transform)
