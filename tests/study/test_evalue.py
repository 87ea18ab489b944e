"""E-value (VanderWeele & Ding 2017) against its closed form and its properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError
from retrocohort.study.evalue import e_value_hr, e_value_rr, hr_to_rr


def test_worked_example_of_the_paper():
    # VanderWeele & Ding (2017), Ann Intern Med, worked example: RR = 3.9 gives
    # E = 3.9 + sqrt(3.9 * 2.9), which the paper prints as 7.26.
    assert e_value_rr(3.9) == pytest.approx(3.9 + math.sqrt(3.9 * 2.9), rel=1e-12)
    assert round(e_value_rr(3.9), 2) == 7.26


def test_protective_ratio_is_inverted():
    # For RR < 1 the formula applies to 1/RR: 0.5 -> 2 + sqrt(2).
    assert e_value_rr(0.5) == pytest.approx(2 + math.sqrt(2), rel=1e-12)
    assert e_value_rr(1.0) == 1.0


def test_common_outcome_uses_square_root_transform():
    hr, lo, hi = 0.38, 0.18, 0.83
    res = e_value_hr(hr, lo, hi, outcome_proportion=0.40)
    # Hand calculation: RR = (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)); E on 1/RR.
    rr = (1 - 0.5 ** math.sqrt(hr)) / (1 - 0.5 ** math.sqrt(1 / hr))
    expected = 1 / rr + math.sqrt(1 / rr * (1 / rr - 1))
    assert res.transform == "common"
    assert res.rr == pytest.approx(rr, rel=1e-12)
    assert res.point == pytest.approx(expected, rel=1e-12)
    # CI E-value uses the limit closest to the null: the upper one here.
    rr_hi = (1 - 0.5 ** math.sqrt(hi)) / (1 - 0.5 ** math.sqrt(1 / hi))
    assert res.ci == pytest.approx(1 / rr_hi + math.sqrt(1 / rr_hi * (1 / rr_hi - 1)), rel=1e-12)
    assert "common" in res.method and "sqrt" in res.method


def test_rare_outcome_uses_hr_as_rr():
    res = e_value_hr(2.0, 1.5, 2.7, outcome_proportion=0.05)
    assert res.transform == "rare"
    assert res.rr == 2.0
    assert res.point == pytest.approx(2 + math.sqrt(2), rel=1e-12)
    assert res.ci == pytest.approx(1.5 + math.sqrt(1.5 * 0.5), rel=1e-12)


def test_ci_crossing_null_gives_one():
    assert e_value_hr(0.8, 0.5, 1.3, outcome_proportion=0.3).ci == 1.0
    assert e_value_hr(1.2, 0.9, 1.6, outcome_proportion=0.01).ci == 1.0


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.05, max_value=20.0), st.booleans())
def test_properties(hr, common):
    rr = hr_to_rr(hr, common)
    # The transform keeps the direction of the effect and is symmetric on the log scale.
    assert (rr - 1) * (hr - 1) >= -1e-12
    assert hr_to_rr(1 / hr, common) == pytest.approx(1 / rr, rel=1e-9)
    e = e_value_rr(rr)
    assert e >= 1.0
    assert e == pytest.approx(e_value_rr(1 / rr), rel=1e-9)
    # The square-root transform is closer to the null than the HR itself.
    if common:
        assert abs(math.log(rr)) <= abs(math.log(hr)) + 1e-12


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_input(bad):
    with pytest.raises(InputError):
        e_value_rr(bad)
    with pytest.raises(InputError):
        e_value_hr(bad, 0.5, 2.0, 0.2)
