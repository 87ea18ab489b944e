"""Numba kernels for nearest-neighbour matching on a scalar distance.

Controls are sorted once, stably, by (exact stratum, distance, data position). A
treated unit's nearest unused control is then next to its insertion point in
that order, so each query looks at a handful of neighbours instead of every
control (MatchIt scans all eligible controls for every treated unit, which is
O(n1 * n0)). Used controls are skipped with two "next unused" pointer arrays
(one per direction) compressed by path halving, so a query stays close to
O(log n0) however many controls are already taken.

Ties are resolved as MatchIt's vector path (``nn_matchC_vec``) resolves
them: all units sorted stably by distance, a treated unit takes the nearest
unused control on its left or its right in that order, the left one when the
two differences are equal. (MatchIt's distance-matrix path instead takes the
control earliest in the data among equal differences; the default
``distance = "glm"`` uses the vector path.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit


@njit(cache=True)
def _find_right(nxt: np.ndarray, i: int) -> int:
    # Smallest unused sorted index >= i (len(nxt) - 1 is the sentinel "none").
    while nxt[i] != i:
        nxt[i] = nxt[nxt[i]]
        i = nxt[i]
    return i


@njit(cache=True)
def _find_left(prv: np.ndarray, i: int) -> int:
    # Largest unused sorted index <= i, stored with offset +1 so that 0 means "none".
    j = i + 1
    while prv[j] != j:
        prv[j] = prv[prv[j]]
        j = prv[j]
    return j - 1


@njit(cache=True)
def _lower_bound(values: np.ndarray, lo: int, hi: int, x: float) -> int:
    # First index in [lo, hi) with values[index] >= x.
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _upper_bound(values: np.ndarray, lo: int, hi: int, x: float) -> int:
    # First index in [lo, hi) with values[index] > x.
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _insertion_point(
    control_distance_sorted: np.ndarray,
    control_position_sorted: np.ndarray,
    lo: int,
    hi: int,
    dt: float,
    t_position: int,
) -> int:
    # Where the treated unit sits among its block's controls when all units are sorted stably by distance
    # (MatchIt's sort.list: equal distances keep data order): after controls with a smaller distance and
    # after the tied controls that come earlier in the data.
    # Binary searches, not a walk: a model with only categorical covariates gives few distinct distances,
    # and walking the tied controls for every treated unit would be O(n1 * n0).
    first = _lower_bound(control_distance_sorted, lo, hi, dt)
    end = _upper_bound(control_distance_sorted, first, hi, dt)
    # Within the tied block positions ascend (stable sort): first control placed after the treated unit.
    a, b = first, end
    while a < b:
        mid = (a + b) >> 1
        if control_position_sorted[mid] < t_position:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True)
def _is_own(matches: np.ndarray, t: int, k: int, position: Any) -> bool:
    # A plain loop: numba does not compile any() over a generator.
    for r in range(k):  # noqa: SIM110
        if matches[t, r] == position:
            return True
    return False


@njit(cache=True)
def match_without_replacement(
    treated_distance: np.ndarray,
    treated_position: np.ndarray,
    treated_block_start: np.ndarray,
    treated_block_end: np.ndarray,
    order: np.ndarray,
    control_distance_sorted: np.ndarray,
    control_position_sorted: np.ndarray,
    ratios: np.ndarray,
    caliper: float,
    reuse_max: int,
    unit_sorted: np.ndarray,
) -> np.ndarray:
    """Greedy k:1 matching without replacement (MatchIt ``nn_matchC_vec``), or with ``reuse.max``.

    Parameters
    ----------
    treated_distance : float64 (n1,)
        Distance of each treated unit, treated units in data order.
    treated_position : int64 (n1,)
        Data position of each treated unit (decides its place among controls of equal distance).
    treated_block_start, treated_block_end : int64 (n1,)
        Half-open range of the sorted controls in the treated unit's exact
        stratum (the whole range when there is no ``exact``).
    order : int64 (n1,)
        Processing order: indices into the treated units.
    control_distance_sorted, control_position_sorted : (n0,)
        Control distances sorted stably by (stratum, distance, data position),
        and the data positions of those controls.
    ratios : int64 (n1,)
        Controls wanted by each treated unit (all equal but for MatchIt's
        variable ratio, ``min.controls`` / ``max.controls``); round k gives
        every treated unit that wants a k-th control its k-th control before
        round k + 1 starts.
    caliper : float
        Largest allowed absolute difference (inclusive, ``<=`` as MatchIt);
        ``inf`` for none.
    reuse_max : int
        How many treated units one control may serve (MatchIt ``reuse.max``;
        1 = without replacement). A control leaves the pool when it reaches
        it; a treated unit never takes the same control twice.
    unit_sorted : int64 (n0,)
        MatchIt's ``unit.id`` code of each sorted control (-1: none): taking a
        control counts as a use of every control with the same code.

    Returns
    -------
    int64 (n1, max(ratios))
        Data positions of the matched controls, -1 where none was found.

    Notes
    -----
    MatchIt sorts all units by distance (ties in data order) and gives a
    treated unit the nearest unused control to its left or to its right in
    that order, the left one when both differences are equal. So ties go to
    the lower distance, and among controls of equal distance to the one
    nearest in that order: below the treated unit the last in data order,
    at or above it the first.
    """
    n1 = treated_distance.shape[0]
    n0 = control_distance_sorted.shape[0]
    ratio = ratios.max() if n1 > 0 else 0
    matches = np.full((n1, ratio), -1, dtype=np.int64)
    nxt = np.arange(n0 + 1, dtype=np.int64)
    prv = np.arange(n0 + 1, dtype=np.int64)
    insertion = np.empty(n1, dtype=np.int64)
    uses = np.zeros(n0, dtype=np.int64)
    for t in range(n1):
        insertion[t] = _insertion_point(
            control_distance_sorted,
            control_position_sorted,
            treated_block_start[t],
            treated_block_end[t],
            treated_distance[t],
            treated_position[t],
        )
    remaining = n0
    for k in range(ratio):
        for i in range(n1):
            if remaining == 0:
                break
            t = order[i]
            if ratios[t] <= k:
                continue
            if k > 0 and matches[t, k - 1] < 0:
                # No earlier match means no eligible control was left; controls never come back.
                continue
            lo = treated_block_start[t]
            hi = treated_block_end[t]
            dt = treated_distance[t]
            ip = insertion[t]
            right = _find_right(nxt, ip) if ip < n0 else n0
            left = _find_left(prv, ip - 1) if ip > 0 else -1
            if reuse_max > 1 and k > 0:
                # Still in the pool but already this unit's: step over (at most k of them on each side).
                while right < n0 and _is_own(matches, t, k, control_position_sorted[right]):
                    right = _find_right(nxt, right + 1)
                while left >= 0 and _is_own(matches, t, k, control_position_sorted[left]):
                    left = _find_left(prv, left - 1) if left > 0 else -1
            dr = abs(control_distance_sorted[right] - dt) if right < hi else np.inf
            dl = abs(control_distance_sorted[left] - dt) if left >= lo else np.inf
            # MatchIt drops a side whose nearest control is outside the caliper, then prefers the left.
            # inf marks "no control on that side"; the caliper itself may be inf.
            ok_right = dr < np.inf and dr <= caliper
            ok_left = dl < np.inf and dl <= caliper
            if ok_left and (not ok_right or dl <= dr):
                chosen = left
            elif ok_right:
                chosen = right
            else:
                continue
            matches[t, k] = control_position_sorted[chosen]
            if unit_sorted[chosen] >= 0:
                # unit.id: all controls of that unit are used with it (a scan over the controls; rare option).
                for j in range(n0):
                    if unit_sorted[j] == unit_sorted[chosen] and uses[j] < reuse_max:
                        uses[j] += 1
                        if uses[j] >= reuse_max:
                            nxt[j] = j + 1
                            prv[j + 1] = j
                            remaining -= 1
            else:
                uses[chosen] += 1
                if uses[chosen] >= reuse_max:
                    nxt[chosen] = chosen + 1
                    prv[chosen + 1] = chosen
                    remaining -= 1
    return matches


@njit(cache=True)
def match_with_replacement(
    treated_distance: np.ndarray,
    treated_position: np.ndarray,
    treated_block_start: np.ndarray,
    treated_block_end: np.ndarray,
    control_distance_sorted: np.ndarray,
    control_position_sorted: np.ndarray,
    ratios: np.ndarray,
    caliper: float,
) -> np.ndarray:
    """Each treated unit takes its ``ratio`` nearest controls, reuse allowed (MatchIt ``replace = TRUE``).

    Same arguments and result as :func:`match_without_replacement` except
    that there is no processing order (units do not compete). The k-th
    control is the nearest to the left or right in the stable distance order
    not yet taken by this unit, the left one on equal differences (MatchIt).
    """
    n1 = treated_distance.shape[0]
    matches = np.full((n1, ratios.max() if n1 > 0 else 0), -1, dtype=np.int64)
    for t in range(n1):
        lo = treated_block_start[t]
        hi = treated_block_end[t]
        dt = treated_distance[t]
        ip = _insertion_point(control_distance_sorted, control_position_sorted, lo, hi, dt, treated_position[t])
        left = ip - 1
        right = ip
        for q in range(ratios[t]):
            dr = abs(control_distance_sorted[right] - dt) if right < hi else np.inf
            dl = abs(control_distance_sorted[left] - dt) if left >= lo else np.inf
            ok_right = dr < np.inf and dr <= caliper
            ok_left = dl < np.inf and dl <= caliper
            if ok_left and (not ok_right or dl <= dr):
                matches[t, q] = control_position_sorted[left]
                left -= 1
            elif ok_right:
                matches[t, q] = control_position_sorted[right]
                right += 1
            else:
                break
    return matches


# ---------------------------------------------------------------- binomial GLM (IRLS)
#
# One pass over the rows per IRLS step instead of NumPy's several temporaries of size n x p.
# The link functions are clamped as R's binomial() family clamps them, so the iterates equal glm's.

_DBL_EPS = float(np.finfo(np.float64).eps)
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_SQRT_2 = np.sqrt(2.0)


@njit(cache=True)
def _inverse_link(eta: float, probit: bool, probit_thresh: float) -> float:
    if probit:
        e = min(max(eta, -probit_thresh), probit_thresh)
        return 0.5 * math.erfc(-e / _SQRT_2)
    # R's logit_linkinv: exp() replaced by DBL_EPSILON / 1/DBL_EPSILON beyond |eta| > 30.
    if eta < -30.0:
        t = _DBL_EPS
    elif eta > 30.0:
        t = 1.0 / _DBL_EPS
    else:
        t = math.exp(eta)
    return t / (1.0 + t)


@njit(cache=True)
def _mu_eta(eta: float, probit: bool) -> float:
    if probit:
        return max(math.exp(-0.5 * eta * eta) / _SQRT_2PI, _DBL_EPS)
    if eta > 30.0 or eta < -30.0:
        return _DBL_EPS
    t = math.exp(eta)
    return t / ((1.0 + t) * (1.0 + t))


@njit(cache=True)
def binomial_mean_and_deviance(eta: np.ndarray, y: np.ndarray, probit: bool, probit_thresh: float, prior: np.ndarray):
    """mu = linkinv(eta) (n,) and the binomial deviance sum(-2 prior log(mu or 1 - mu)) (rows of prior 0 left out)."""
    n = eta.shape[0]
    mu = np.empty(n)
    dev = 0.0
    for i in range(n):
        m = _inverse_link(eta[i], probit, probit_thresh)
        mu[i] = m
        if prior[i] > 0.0:
            dev += -2.0 * prior[i] * math.log(m if y[i] > 0.5 else 1.0 - m)
    return mu, dev


@njit(cache=True)
def binomial_normal_equations(
    x: np.ndarray, eta: np.ndarray, mu: np.ndarray, y: np.ndarray, probit: bool, prior: np.ndarray
):
    """X' W X (p, p) and X' W z (p,) for the IRLS step at (eta, mu).

    w = prior mu.eta^2 / var and z = eta + (y - mu) / mu.eta; rows of prior weight 0 are left out.
    """
    n, p = x.shape
    xtwx = np.zeros((p, p))
    xtwz = np.zeros(p)
    for i in range(n):
        if prior[i] <= 0.0:
            continue  # glm.fit leaves rows of weight 0 out of the fit
        d = _mu_eta(eta[i], probit)
        w = prior[i] * d * d / (mu[i] * (1.0 - mu[i]))
        z = eta[i] + (y[i] - mu[i]) / d
        for j in range(p):
            xw = x[i, j] * w
            xtwz[j] += xw * z
            for k in range(j + 1):
                xtwx[j, k] += xw * x[i, k]
    for j in range(p):
        for k in range(j):
            xtwx[k, j] = xtwx[j, k]
    return xtwx, xtwz


# ---------------------------------------------------------------- matching on a covariate distance (scan)


@njit(cache=True)
def match_scan(
    focal_position: np.ndarray,
    order: np.ndarray,
    other_position: np.ndarray,
    x: np.ndarray,
    transform: np.ndarray,
    vector_ties: bool,
    strata: np.ndarray,
    antiexact: np.ndarray,
    caliper_values: np.ndarray,
    caliper_widths: np.ndarray,
    ratios: np.ndarray,
    reuse_max: int,
    dmat: np.ndarray,
    dmat_caliper: float,
    unit: np.ndarray,
) -> np.ndarray:
    """Greedy matching under constraints a sorted walk cannot use (MatchIt's ``nn_matchC`` and friends).

    The path taken for Mahalanobis / Euclidean distances, ``mahvars``,
    covariate calipers and ``antiexact``: every focal unit scans every unit of
    the other arm, O(n1 * n0 * p^2).

    Parameters
    ----------
    focal_position : int64 (n1,)
        Data positions of the focal units (treated for the ATT).
    order : int64 (n1,)
        Processing order: indices into ``focal_position``.
    other_position : int64 (n0,)
        Data positions of the units that can be matched, in data order.
    x : float64 (n, p)
        Covariates (or the scalar distance, p = 1).
    transform : float64 (s, p, r)
        The distance between units i and j of exact stratum h is
        ||(x_i - x_j) @ transform[h]|| (MatchIt scales within each stratum).
        The difference is taken *before* the transform, so that differences
        equal in the data (a control 2 years older or 2 years younger) give
        exactly equal distances, ties MatchIt then breaks by data order.
        Distances within a relative 1e-10 of each other count as tied: MatchIt
        transforms before differencing, so its last bits, not the data, would
        otherwise decide between such candidates.
    vector_ties : bool
        Ties as MatchIt's distance-vector path breaks them (p = 1, a
        propensity score): among equal |differences| a control below the
        focal unit in the stable distance order beats one above, and the one
        nearest in that order wins. Otherwise the first in data order wins
        (MatchIt's covariate-distance path).
    strata : int64 (n,)
        Exact-matching stratum of each unit (all 0 without ``exact``).
    antiexact : int64 (n, q)
        Codes of the anti-exact variables: a pair must differ on every one.
    caliper_values : float64 (n, c), caliper_widths : float64 (c,)
        A pair is allowed only if |value_i - value_j| <= width for every column.
    ratios : int64 (n1,)
        Matches wanted by each focal unit; round k gives each focal unit that
        wants a k-th match its k-th match before round k + 1 starts.
    reuse_max : int
        How many focal units one unit of the other arm may be matched to (1:
        without replacement; at least n1 for MatchIt's ``replace = TRUE``).
    dmat : float64 (n1, n0) or (0, 0)
        A given distance matrix (focal units by units of the other arm, in
        the order of ``focal_position`` and ``other_position``), used instead
        of ``x`` when it has rows; the first unit in data order wins among
        equal distances (MatchIt's distance-matrix path).
    dmat_caliper : float
        Largest allowed ``dmat`` value (``inf`` for none).
    unit : int64 (n,)
        MatchIt's ``unit.id`` codes (-1: none): taking a unit counts as a use
        of every unit with the same code. Without ``vector_ties`` (MatchIt's
        ``nn_matchC``: covariate distances, ``mahvars``, a matrix) that
        includes focal units, which then take no further matches; MatchIt's
        vector kernel (``vector_ties``) leaves focal units alone.

    Returns
    -------
    int64 (n1, max(ratios))
        Data positions of the matches, -1 where none was found.
    """
    n1 = focal_position.shape[0]
    n0 = other_position.shape[0]
    p = x.shape[1]
    r_dim = transform.shape[2]
    q = antiexact.shape[1]
    c = caliper_widths.shape[0]
    ratio = ratios.max() if n1 > 0 else 0
    matches = np.full((n1, ratio), -1, dtype=np.int64)
    used = np.zeros(x.shape[0], dtype=np.int64)
    diff = np.empty(p)
    for k in range(ratio):
        for i in range(n1):
            t = order[i]
            if ratios[t] <= k:
                continue
            if k > 0 and matches[t, k - 1] < 0:
                continue
            tp = focal_position[t]
            if not vector_ties and used[tp] > 0:
                continue  # nn_matchC: a focal unit whose unit.id was used by a match takes no more matches
            best = -1
            best_d = np.inf
            best_left = False
            for j in range(n0):
                cp = other_position[j]
                if strata[cp] != strata[tp]:
                    continue
                if used[cp] >= reuse_max:
                    continue
                if reuse_max > 1:
                    mine = False
                    for r in range(k):
                        if matches[t, r] == cp:
                            mine = True
                            break
                    if mine:
                        continue
                ok = True
                for a in range(q):
                    if antiexact[cp, a] == antiexact[tp, a]:
                        ok = False
                        break
                if not ok:
                    continue
                for a in range(c):
                    if abs(caliper_values[cp, a] - caliper_values[tp, a]) > caliper_widths[a]:
                        ok = False
                        break
                if not ok:
                    continue
                if dmat.shape[0] > 0:
                    dist = dmat[t, j]
                    if dist > dmat_caliper:
                        continue
                    if dist < best_d:
                        best_d = dist
                        best = cp
                    continue
                if vector_ties:
                    dist = abs(x[cp, 0] - x[tp, 0])
                    left = x[cp, 0] < x[tp, 0] or (x[cp, 0] == x[tp, 0] and cp < tp)
                    if dist < best_d:
                        take = True
                    elif dist == best_d:
                        # Left beats right; on the left the nearest in sort order is the last in the data,
                        # on the right the first (already held: scanning in data order).
                        take = left and (not best_left or cp > best)
                    else:
                        take = False
                    if take:
                        best_d = dist
                        best = cp
                        best_left = left
                    continue
                for a in range(p):
                    diff[a] = x[cp, a] - x[tp, a]
                h = strata[tp]
                dist = 0.0
                for b in range(r_dim):
                    z = 0.0
                    for a in range(p):
                        z += diff[a] * transform[h, a, b]
                    dist += z * z
                # Strictly smaller (beyond rounding): among equal distances the first in data order stays.
                if dist < best_d * (1.0 - 1e-10):
                    best_d = dist
                    best = cp
            if best >= 0:
                matches[t, k] = best
                if unit[best] >= 0:
                    # unit.id: every unit with the same id (both arms, as MatchIt counts) is used with it.
                    for q_ in range(unit.shape[0]):
                        if unit[q_] == unit[best]:
                            used[q_] += 1
                else:
                    used[best] += 1
    return matches
