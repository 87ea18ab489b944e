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
backward sum (event times after ``u``), so it is also a handful of cumulative
sums. ``tests/survival/test_finegray_direct.py`` checks these kernels against the
O(n^2) definitions written term by term.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from .._design import _is_categorical, design_matrix, require_columns
from ..errors import ConvergenceError, InputError, ModelWarning
from ._checks import check_status, check_time
from ._risksets import distinct_sorted

__all__ = ["fine_gray", "predict_cif", "FineGrayResult", "LogLik"]


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
    cause: np.ndarray  # (n,) bool, event of interest
    competing: np.ndarray  # (n,) bool
    censored: np.ndarray  # (n,) bool
    g_left: np.ndarray  # (n,) G(T_j-)
    event_time: np.ndarray  # (k,)
    event_start: np.ndarray  # (k,) first sorted row with time == event_time
    n_event: np.ndarray  # (k,) number of events of interest at event_time
    g_event: np.ndarray  # (k,) G(t-) at event_time
    events_upto: np.ndarray  # (n,) number of event times <= T_j
    comp_rows: np.ndarray  # (c,) sorted row indices of competing events
    comp_before_event: np.ndarray  # (k,) number of competing rows with time < event_time
    cens_time: np.ndarray  # (m,)
    cens_count: np.ndarray  # (m,) number censored at cens_time
    cens_at_risk: np.ndarray  # (m,) number with time >= cens_time
    cens_events_upto: np.ndarray  # (m,) number of event times < cens_time
    cens_comp_upto: np.ndarray  # (m,) number of competing rows with time < cens_time
    cens_upto: np.ndarray  # (n,) number of censoring times <= T_j
    z_comp: np.ndarray  # (c, p) covariates of the competing rows
    inv_g_comp: np.ndarray  # (c,) 1 / G(T_j-) of the competing rows
    sum_z_events: np.ndarray  # (p,)
    z_mean: np.ndarray  # (p,) column means removed from z


def _prepare(time: np.ndarray, status: np.ndarray, z: np.ndarray, cause: int, censor_code: int) -> tuple[_SortedData, np.ndarray]:
    """Sort once and tabulate everything that does not depend on beta.

    Returns the sorted data and the permutation used (sorted row -> input row).
    """
    order = np.argsort(time, kind="stable")
    t = time[order]
    st = status[order]
    zs = z[order]
    z_mean = zs.mean(axis=0)
    zs -= z_mean  # zs is a fresh copy (fancy indexing): centre in place
    is_cause = st == cause
    is_cens = st == censor_code
    is_comp = ~is_cause & ~is_cens
    n = t.shape[0]

    # Kaplan-Meier of the censoring distribution: everyone with T >= u is at
    # risk of censoring at u (survfit's convention), so an event tied with a
    # censoring counts in the censoring risk set.
    utime, ustart = distinct_sorted(t)
    at_risk = (n - ustart).astype(float)
    cens_per_time = np.add.reduceat(is_cens.astype(float), ustart)
    g_after = np.cumprod(1.0 - cens_per_time / at_risk)
    g_before = np.concatenate(([1.0], g_after[:-1]))  # G(u-) at each distinct time
    run = np.repeat(np.arange(utime.shape[0]), np.diff(np.append(ustart, n)))
    g_left = g_before[run]

    ev_per_time = np.add.reduceat(is_cause.astype(float), ustart)
    has_ev = ev_per_time > 0
    event_time = utime[has_ev]
    event_start = ustart[has_ev]
    n_event = ev_per_time[has_ev]
    g_event = g_before[has_ev]
    events_upto = np.searchsorted(event_time, t, side="right")

    comp_rows = np.flatnonzero(is_comp)
    comp_before_event = np.searchsorted(comp_rows, event_start, side="left")

    has_c = cens_per_time > 0
    cens_time = utime[has_c]
    cens_count = cens_per_time[has_c]
    cens_at_risk = at_risk[has_c]
    cens_events_upto = np.searchsorted(event_time, cens_time, side="left")
    cens_comp_upto = np.searchsorted(t[comp_rows], cens_time, side="left")
    cens_upto = np.searchsorted(cens_time, t, side="right")

    data = _SortedData(
        time=t, z=zs, cause=is_cause, competing=is_comp, censored=is_cens, g_left=g_left,
        event_time=event_time, event_start=event_start, n_event=n_event, g_event=g_event,
        events_upto=events_upto, comp_rows=comp_rows, comp_before_event=comp_before_event,
        cens_time=cens_time, cens_count=cens_count, cens_at_risk=cens_at_risk,
        cens_events_upto=cens_events_upto, cens_comp_upto=cens_comp_upto, cens_upto=cens_upto,
        z_comp=zs[comp_rows], inv_g_comp=1.0 / g_left[comp_rows],
        sum_z_events=zs[is_cause].sum(axis=0), z_mean=z_mean,
    )
    return data, order


def _prefix(x: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading zero: ``out[i] = sum(x[:i])`` (axis 0)."""
    out = np.zeros((x.shape[0] + 1,) + x.shape[1:])
    np.cumsum(x, axis=0, out=out[1:])
    return out


def _suffix(x: np.ndarray) -> np.ndarray:
    """Reverse cumulative sum with a trailing zero: ``out[i] = sum(x[i:])`` (axis 0).

    Summed from the end rather than as total minus prefix, so that late,
    small tails keep their relative precision.
    """
    out = np.zeros((x.shape[0] + 1,) + x.shape[1:])
    np.cumsum(x[::-1], axis=0, out=out[-2::-1])
    return out


class _Fit(NamedTuple):
    loglik: float
    score: np.ndarray  # (p,)
    info: np.ndarray  # (p, p)
    e: np.ndarray  # (n,) exp(eta - shift)
    shift: float
    zbar: np.ndarray  # (k, p)
    hazard: np.ndarray  # (k,) baseline jumps d/S0, on the shifted scale
    cum_hazard: np.ndarray  # (n,) Lambda(T_j) on the shifted scale
    tail_g_hazard: np.ndarray  # (k + 1,) [i] = sum_{k >= i} G(t_k-) dLambda(t_k)


def _evaluate(s: _SortedData, beta: np.ndarray) -> _Fit:
    """Log pseudo-likelihood, score and information at ``beta`` in O(n p^2)."""
    eta = s.z @ beta
    shift = float(eta.max())
    e = np.exp(eta - shift)
    ez = s.z * e[:, None]

    # Subjects still at risk at event time k: sorted rows >= event_start[k].
    block = np.add.reduceat(e, s.event_start)
    r0 = _suffix(block)[:-1]
    r1 = _suffix(np.add.reduceat(ez, s.event_start, axis=0))[:-1]
    # Competing events strictly before event time k, weighted by 1 / G(T_j-).
    w_comp = e[s.comp_rows] * s.inv_g_comp
    c0 = _prefix(w_comp)[s.comp_before_event]
    c1 = _prefix(s.z_comp * w_comp[:, None])[s.comp_before_event]
    s0 = r0 + s.g_event * c0
    s1 = r1 + s.g_event[:, None] * c1

    zbar = s1 / s0[:, None]
    hazard = s.n_event / s0
    loglik = float(eta[s.cause].sum() - np.sum(s.n_event * (np.log(s0) + shift)))
    score = s.sum_z_events - s.n_event @ zbar

    # sum_k d_k S2_k / S0_k rearranged per subject (no p x p per event time).
    cum_hazard = _prefix(hazard)[s.events_upto]
    tail_g_hazard = _suffix(s.g_event * hazard)
    accrued = cum_hazard.copy()
    comp = s.comp_rows
    accrued[comp] += tail_g_hazard[s.events_upto[comp]] * s.inv_g_comp
    ez *= accrued[:, None]  # reuse the buffer: rows become e_j a_j z_j
    info = ez.T @ s.z - (zbar.T * s.n_event) @ zbar
    return _Fit(loglik, score, info, e, shift, zbar, hazard, cum_hazard, tail_g_hazard)


def _influence(s: _SortedData, f: _Fit) -> np.ndarray:
    """Per-subject influence terms ``eta_i + psi_i`` (n, p), sorted order.

    ``eta_i`` is the subject's score residual under the subdistribution risk
    set; ``psi_i`` is the effect of the subject's censoring-process martingale
    on the estimated weights (Fine & Gray 1999, section 3). The sandwich
    ``I^-1 (sum_i u_i u_i') I^-1`` with ``u_i = eta_i + psi_i`` is crr's
    ``var``.
    """
    z, e = s.z, f.e
    pos = s.events_upto
    zbar_hazard = f.zbar * f.hazard[:, None]
    cum_zbar_hazard = _prefix(zbar_hazard)[pos]  # sum_{t_k <= T_j} zbar_k dL_k
    g_zbar_hazard = _suffix(zbar_hazard * s.g_event[:, None])  # (k+1, p)

    # eta: own event minus the compensator over the time the subject is in the risk set.
    eta = -(e[:, None] * (z * f.cum_hazard[:, None] - cum_zbar_hazard))
    ev = np.flatnonzero(s.cause)
    eta[ev] += z[ev] - f.zbar[pos[ev] - 1]
    comp = s.comp_rows
    wcomp = e[comp] * s.inv_g_comp
    pos_comp = pos[comp]
    eta[comp] -= wcomp[:, None] * (s.z_comp * f.tail_g_hazard[pos_comp][:, None] - g_zbar_hazard[pos_comp])

    # psi: q(u) at censoring times u = sum over competing events with T_i < u of
    # (e_i / G(T_i-)) * sum_{t_k >= u} G(t_k-) (z_i - zbar_k) dL_k
    # (crr's discretisation; see the module notes).
    if s.cens_time.shape[0] == 0 or comp.shape[0] == 0:
        return eta
    f0 = _prefix(wcomp)[s.cens_comp_upto]
    f1 = _prefix(s.z_comp * wcomp[:, None])[s.cens_comp_upto]
    b0 = f.tail_g_hazard[s.cens_events_upto]
    b1 = g_zbar_hazard[s.cens_events_upto]
    q = f1 * b0[:, None] - f0[:, None] * b1  # (m, p)
    # dM^c_j(u) = dN^c_j(u) - 1{T_j >= u} dLambda^c(u), dLambda^c = c(u) / n(u).
    compensator = _prefix(q * (s.cens_count / s.cens_at_risk**2)[:, None])[s.cens_upto]
    psi = -compensator
    cens = np.flatnonzero(s.censored)
    own = s.cens_upto[cens] - 1
    psi[cens] += q[own] / s.cens_at_risk[own][:, None]
    return eta + psi


class _Solution(NamedTuple):
    beta: np.ndarray
    fit: _Fit
    iterations: int
    converged: bool
    initial_loglik: float  # log pseudo-likelihood at ``init``
    steps: np.ndarray  # (iterations, p) the steps taken, in order


def _newton(s: _SortedData, init: np.ndarray, tol: float, max_iter: int) -> _Solution:
    """Newton-Raphson with crr's stopping rule and step halving.

    Stops when ``max_j |U_j| * max(|beta_j|, 1) < tol * max(|loglik|, 1)``
    (crr's rule). A step that lowers the log pseudo-likelihood, or overflows,
    is halved (up to 30 times), as any safeguarded Newton method does; on
    well-posed data the full step is always taken, so the path equals crr's.
    """
    beta = init.astype(float).copy()
    fit = _evaluate(s, beta)
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
                trial = _evaluate(s, trial_beta)
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
    return [t for t, flag in zip(terms, same_sign & large) if flag]


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
        ``"crr"`` or ``"cluster"``.
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
    _levels: dict = field(repr=False, compare=False)

    def predict_cif(self, profile: pd.DataFrame) -> pd.DataFrame:
        """Predicted cumulative incidence of the cause for covariate profiles.

        ``CIF(t | x) = 1 - exp(-exp(x' beta) * Lambda_0(t))`` at every distinct
        time with an event of the cause, as ``predict.crr(fit, cov1)``.

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
        x = _profile_matrix(profile, self.covariates, self._levels, list(self.summary.index))
        lin = x @ self.summary["coef"].to_numpy()
        cum = self.baseline["cumulative_hazard"].to_numpy()
        cif = 1.0 - np.exp(-np.outer(cum, np.exp(lin)))
        out = pd.DataFrame(cif, columns=list(profile.index))
        out.insert(0, "time", self.baseline["time"].to_numpy())
        return out


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
    x = design_matrix(frame, covariates, "profile")
    return x[terms].to_numpy(dtype=float)


def _check_design(terms: list[str], values: np.ndarray, centred: np.ndarray, where: str) -> None:
    """Refuse constant or collinear terms, naming them (crr would fail on a singular information).

    ``values`` is the (n, p) design, ``centred`` the same with column means removed.
    """
    constant = [name for name, col in zip(terms, values.T) if col.min() == col.max()]
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
        trial = kept + [j]
        eig = np.linalg.eigvalsh(gram[np.ix_(trial, trial)])
        if eig.min() < 1e-10:
            raise InputError(
                f"{where}: covariate term {terms[j]!r} is collinear with {[terms[k] for k in kept]} "
                "(a linear combination of them); drop one of the terms"
            )
        kept.append(j)


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
    tol, max_iter : float, int
        crr's ``gtol`` and ``maxiter`` (same stopping rule; see module notes).

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
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    if not covariates:
        raise InputError("fine_gray: give at least one covariate (crr needs cov1)")
    require_columns(data, [time, status, *covariates] + ([cluster] if cluster else []), where)
    if len(data) == 0:
        raise InputError(f"{where} has no rows")
    times = check_time(data, time, where)
    declared = None if competing_codes is None else [int(cause), *map(int, competing_codes)]
    codes = check_status(data, status, censor_code=int(censor_code), causes=declared, where=where)
    n_events = int((codes == cause).sum())
    if n_events == 0:
        present = sorted(set(np.unique(codes).tolist()))
        raise InputError(
            f"{where}: no events of cause {cause} in column {status!r} (codes present: {present}); "
            "the subdistribution hazard of that cause cannot be estimated"
        )
    x = design_matrix(data, covariates, where)
    terms = list(x.columns)
    z = x.to_numpy(dtype=float)
    s, order = _prepare(times, codes, z, int(cause), int(censor_code))
    _check_design(terms, z, s.z, where)
    sol = _newton(s, np.zeros(z.shape[1]), float(tol), int(max_iter))
    beta, fit = sol.beta, sol.fit
    drifting = _drifting_terms(terms, sol.steps, fit)
    if not sol.converged and not drifting:
        raise ConvergenceError(
            f"fine_gray: Newton-Raphson did not converge in {sol.iterations} iteration(s) "
            f"(max_iter={max_iter}, tol={tol}); current coefficients {dict(zip(terms, np.round(sol.beta, 6).tolist()))}. "
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

    influence = _influence(s, fit)
    n_clusters: int | None = None
    if cluster is not None:
        cluster_col = data[cluster]
        n_missing = int(cluster_col.isna().sum())
        if n_missing:
            raise InputError(f"{where}: cluster column {cluster!r} has {n_missing} missing value(s); give every row a cluster")
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
    # Baseline jumps at covariates all zero on the raw (uncentred) scale.
    hazard = fit.hazard * np.exp(-fit.shift - float(s.z_mean @ beta))
    baseline = pd.DataFrame({"time": s.event_time, "hazard": hazard, "cumulative_hazard": np.cumsum(hazard)})
    null_loglik = sol.initial_loglik  # Newton starts at beta = 0, where crr's loglik.null is taken
    return FineGrayResult(
        summary=summary,
        vcov=pd.DataFrame(vcov, index=terms, columns=terms),
        information=pd.DataFrame(fit.info, index=terms, columns=terms),
        loglik=LogLik(null=null_loglik, final=fit.loglik),
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
        variance="crr" if cluster is None else "cluster",
        conf_level=float(conf_level),
        covariates=tuple(covariates),
        _levels=_categorical_levels(data, covariates),
    )
