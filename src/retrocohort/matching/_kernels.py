"""Numba kernels for nearest-neighbour matching on a scalar distance.

Controls are sorted once by (exact stratum, distance, data position). A
treated unit's nearest unused control is then next to its insertion point in
that order, so each query looks at a handful of neighbours instead of every
control (MatchIt scans all eligible controls for every treated unit, which is
O(n1 * n0)). Used controls are skipped with two "next unused" pointer arrays
(one per direction) compressed by path halving, so a query stays close to
O(log n0) however many controls are already taken.

Ties are resolved as MatchIt's C++ does (``which_min`` over the eligible
controls in data order): among the controls at the smallest absolute
difference the one earliest in the data wins. The set of controls at one
difference is contiguous on each side of the insertion point because
floating-point subtraction is monotone, so it is found by walking outward.
"""

from __future__ import annotations

import math

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
def match_without_replacement(
    treated_distance: np.ndarray,
    treated_block_start: np.ndarray,
    treated_block_end: np.ndarray,
    order: np.ndarray,
    control_distance_sorted: np.ndarray,
    control_position_sorted: np.ndarray,
    ratio: int,
    caliper: float,
) -> np.ndarray:
    """Greedy k:1 matching without replacement (MatchIt ``nn_matchC``, reuse.max = 1).

    Parameters
    ----------
    treated_distance : float64 (n1,)
        Distance of each treated unit, treated units in data order.
    treated_block_start, treated_block_end : int64 (n1,)
        Half-open range of the sorted controls in the treated unit's exact
        stratum (the whole range when there is no ``exact``).
    order : int64 (n1,)
        Processing order: indices into the treated units.
    control_distance_sorted, control_position_sorted : (n0,)
        Control distances sorted by (stratum, distance, position), and the
        data positions of those controls.
    ratio : int
        Controls per treated unit; round k gives every treated unit its k-th
        control before round k + 1 starts.
    caliper : float
        Largest allowed absolute difference (inclusive, ``<=`` as MatchIt);
        ``inf`` for none.

    Returns
    -------
    int64 (n1, ratio)
        Data positions of the matched controls, -1 where none was found.
    """
    n1 = treated_distance.shape[0]
    n0 = control_distance_sorted.shape[0]
    matches = np.full((n1, ratio), -1, dtype=np.int64)
    nxt = np.arange(n0 + 1, dtype=np.int64)
    prv = np.arange(n0 + 1, dtype=np.int64)
    insertion = np.empty(n1, dtype=np.int64)
    for t in range(n1):
        insertion[t] = _lower_bound(
            control_distance_sorted, treated_block_start[t], treated_block_end[t], treated_distance[t]
        )
    remaining = n0
    for k in range(ratio):
        for i in range(n1):
            if remaining == 0:
                break
            t = order[i]
            if k > 0 and matches[t, k - 1] < 0:
                # No earlier match means no eligible control was left; controls never come back.
                continue
            lo = treated_block_start[t]
            hi = treated_block_end[t]
            dt = treated_distance[t]
            ip = insertion[t]
            right = _find_right(nxt, ip) if ip < n0 else n0
            left = _find_left(prv, ip - 1) if ip > 0 else -1
            has_right = right < hi
            has_left = left >= lo
            if not has_right and not has_left:
                continue
            best = np.inf
            if has_right:
                best = abs(control_distance_sorted[right] - dt)
            if has_left:
                dl = abs(control_distance_sorted[left] - dt)
                if dl < best:
                    best = dl
            if not (best <= caliper):
                continue
            chosen = -1
            chosen_position = np.iinfo(np.int64).max
            j = right
            while j < hi and abs(control_distance_sorted[j] - dt) == best:
                if control_position_sorted[j] < chosen_position:
                    chosen_position = int(control_position_sorted[j])
                    chosen = j
                j = _find_right(nxt, j + 1) if j + 1 < n0 else n0
            j = left
            while j >= lo and abs(control_distance_sorted[j] - dt) == best:
                if control_position_sorted[j] < chosen_position:
                    chosen_position = int(control_position_sorted[j])
                    chosen = j
                j = _find_left(prv, j - 1) if j > 0 else -1
            matches[t, k] = chosen_position
            nxt[chosen] = chosen + 1
            prv[chosen + 1] = chosen
            remaining -= 1
    return matches


@njit(cache=True)
def match_with_replacement(
    treated_distance: np.ndarray,
    treated_block_start: np.ndarray,
    treated_block_end: np.ndarray,
    control_distance_sorted: np.ndarray,
    control_position_sorted: np.ndarray,
    ratio: int,
    caliper: float,
) -> np.ndarray:
    """Each treated unit takes its ``ratio`` nearest controls, reuse allowed (MatchIt ``replace = TRUE``).

    Same arguments and result as :func:`match_without_replacement` except
    that there is no processing order (units do not compete). Ties at the
    k-th distance go to the controls earliest in the data.
    """
    n1 = treated_distance.shape[0]
    matches = np.full((n1, ratio), -1, dtype=np.int64)
    for t in range(n1):
        lo = treated_block_start[t]
        hi = treated_block_end[t]
        dt = treated_distance[t]
        ip = _lower_bound(control_distance_sorted, lo, hi, dt)
        left = ip - 1
        right = ip
        # Merge outward until ratio controls are taken; remember the last difference.
        taken = 0
        last = -1.0
        while taken < ratio:
            dr = abs(control_distance_sorted[right] - dt) if right < hi else np.inf
            dl = abs(control_distance_sorted[left] - dt) if left >= lo else np.inf
            d = min(dr, dl)
            if d == np.inf or not (d <= caliper):
                # inf: no control left on either side (distances themselves are finite).
                break
            if dr <= dl:
                right += 1
            else:
                left -= 1
            last = d
            taken += 1
        if taken == 0:
            continue
        # Everything strictly closer than `last` is in; among those exactly at `last`
        # take the earliest in data order, as many as are still needed.
        left_edge = ip - 1
        while left_edge >= lo and abs(control_distance_sorted[left_edge] - dt) <= last:
            left_edge -= 1
        right_edge = ip
        while right_edge < hi and abs(control_distance_sorted[right_edge] - dt) <= last:
            right_edge += 1
        m = right_edge - left_edge - 1
        positions = np.empty(m, dtype=np.int64)
        diffs = np.empty(m, dtype=np.float64)
        for q in range(m):
            j = left_edge + 1 + q
            positions[q] = control_position_sorted[j]
            diffs[q] = abs(control_distance_sorted[j] - dt)
        # Order by (difference, position); m is at most ratio plus the tied controls.
        keys = np.argsort(positions, kind="mergesort")
        positions = positions[keys]
        diffs = diffs[keys]
        keys = np.argsort(diffs, kind="mergesort")
        for q in range(taken):
            matches[t, q] = positions[keys[q]]
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
def binomial_mean_and_deviance(eta: np.ndarray, y: np.ndarray, probit: bool, probit_thresh: float):
    """mu = linkinv(eta) (n,) and the binomial deviance sum(-2 log(mu or 1 - mu))."""
    n = eta.shape[0]
    mu = np.empty(n)
    dev = 0.0
    for i in range(n):
        m = _inverse_link(eta[i], probit, probit_thresh)
        mu[i] = m
        dev += -2.0 * math.log(m if y[i] > 0.5 else 1.0 - m)
    return mu, dev


@njit(cache=True)
def binomial_normal_equations(x: np.ndarray, eta: np.ndarray, mu: np.ndarray, y: np.ndarray, probit: bool):
    """X' W X (p, p) and X' W z (p,) for the IRLS step at (eta, mu): w = mu.eta^2 / var, z = eta + (y - mu) / mu.eta."""
    n, p = x.shape
    xtwx = np.zeros((p, p))
    xtwz = np.zeros(p)
    for i in range(n):
        d = _mu_eta(eta[i], probit)
        w = d * d / (mu[i] * (1.0 - mu[i]))
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
