"""CKD-EPI 2021 and its inverse (the eGFR-75 back-calculated baseline)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.cohort.kidney import creatinine_for_egfr, egfr_ckd_epi_2021


def test_egfr_matches_the_published_equation_on_both_branches():
    # Hand-evaluated from Inker 2021: woman 50 y, Scr 0.5 (below kappa 0.7) and man 70 y, Scr 1.8 (above 0.9).
    got = egfr_ckd_epi_2021(np.array([0.5, 1.8]), np.array([50.0, 70.0]), np.array([True, False]))
    woman = 142 * (0.5 / 0.7) ** -0.241 * 0.9938**50 * 1.012
    man = 142 * (1.8 / 0.9) ** -1.200 * 0.9938**70
    np.testing.assert_allclose(got, [woman, man], rtol=1e-14)


def test_missing_creatinine_gives_nan():
    assert np.isnan(egfr_ckd_epi_2021(np.array([np.nan]), np.array([60.0]), np.array([False])))[0]


@settings(max_examples=50, deadline=None)
@given(
    egfr=st.floats(15, 140),
    age=st.floats(18, 95),
    female=st.booleans(),
)
def test_back_calculated_creatinine_reproduces_the_egfr(egfr, age, female):
    scr = creatinine_for_egfr(egfr, np.array([age]), np.array([female]))
    back = egfr_ckd_epi_2021(scr, np.array([age]), np.array([female]))
    np.testing.assert_allclose(back, [egfr], rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(age=st.floats(18, 95), female=st.booleans(), low=st.floats(0.3, 5), step=st.floats(0.01, 5))
def test_egfr_decreases_with_creatinine(age, female, low, step):
    values = egfr_ckd_epi_2021(np.array([low, low + step]), np.array([age, age]), np.array([female, female]))
    assert values[0] > values[1]
