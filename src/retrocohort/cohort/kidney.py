"""Kidney function formulas on NumPy arrays (applied to the per-patient frame, identically for every engine).

Kept out of the SQL: Spark (Java) and DuckDB (C) ``pow`` can differ in the
last bit, and the two engines must give identical analysis frames.
"""

from __future__ import annotations

import numpy as np


def _parameters(female: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    female = np.asarray(female, dtype=bool)
    kappa = np.where(female, 0.7, 0.9)
    alpha = np.where(female, -0.241, -0.302)
    sex_factor = np.where(female, 1.012, 1.0)
    return kappa, alpha, sex_factor


def egfr_ckd_epi_2021(creatinine: np.ndarray, age: np.ndarray, female: np.ndarray) -> np.ndarray:
    """CKD-EPI 2021 race-free eGFR (mL/min/1.73 m2).

    ``142 * min(Scr/k, 1)^a * max(Scr/k, 1)^-1.200 * 0.9938^age * 1.012 [female]``,
    k = 0.7 (F) / 0.9 (M), a = -0.241 (F) / -0.302 (M) (Inker et al., NEJM 2021).

    Parameters
    ----------
    creatinine, age, female
        Arrays of shape (n,): serum creatinine in mg/dL, age in years, True for women.

    Returns
    -------
    ndarray, shape (n,)
        NaN where creatinine or age is missing.
    """
    creatinine = np.asarray(creatinine, dtype=float)
    age = np.asarray(age, dtype=float)
    kappa, alpha, sex_factor = _parameters(female)
    ratio = creatinine / kappa
    return 142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200 * 0.9938**age * sex_factor


def creatinine_for_egfr(egfr: float, age: np.ndarray, female: np.ndarray) -> np.ndarray:
    """The creatinine (mg/dL) at which CKD-EPI 2021 gives ``egfr``: the formula inverted.

    Used to back-calculate a baseline (KDIGO's assumed-normal eGFR 75) when no
    creatinine was measured before index.
    """
    age = np.asarray(age, dtype=float)
    kappa, alpha, sex_factor = _parameters(female)
    at_kappa = 142.0 * 0.9938**age * sex_factor  # eGFR when Scr = k
    above = kappa * (at_kappa / egfr) ** (1.0 / 1.2)  # Scr > k branch (exponent -1.200)
    below = kappa * (egfr / at_kappa) ** (1.0 / alpha)  # Scr <= k branch (exponent alpha)
    return np.where(at_kappa > egfr, above, below)
