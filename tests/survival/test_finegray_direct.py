"""The O(n p^2) Fine-Gray kernels against the O(n^2) definitions, written term by term.

``direct_fine_gray`` (the shared definitions in finegray_definitions.py,
with unit weights) spells out the weighted risk sets, the score residuals
eta_i and the censoring terms psi_i of Fine & Gray (1999) with explicit
loops over event times, censoring times and subjects, using the
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
from tests.survival.finegray_definitions import weighted_definitions


def direct_fine_gray(time, status, z, beta, cause=1, censor_code=0):
    """loglik, score (p,), information (p,p), eta (n,p) and psi (n,p) by the definitions (crr: unit weights)."""
    return weighted_definitions(time, status, z, np.ones(len(time)), beta, cause=cause, censor_code=censor_code)


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
