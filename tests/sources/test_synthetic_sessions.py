"""Properties of the generator's building blocks: KRT session timelines and stratified uniforms."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retrocohort.sources import _synthetic_model as model
from retrocohort.sources.synthetic import _krt_sessions

DAY = 1440  # minutes


def _timelines(seed: int, n: int):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, 10**6, n) * 1.0
    proc = np.where(rng.random(n) < 0.2, rng.integers(60, 181, n), 0)
    lib_d = 1.0 + rng.exponential(20.0, n)
    crrt_len = 1.5 + 7.5 * rng.random(n)
    only_crrt = lib_d - crrt_len < 0.5
    krt_end = np.minimum(lib_d, 98.0)
    crrt_end = np.where(only_crrt, krt_end, crrt_len)
    death_d = np.where(rng.random(n) < 0.4, 10 / 24 + rng.exponential(15.0, n), np.inf)
    death = index + np.rint(death_d * DAY)
    s = _krt_sessions(rng, index + proc, index, crrt_end, krt_end, only_crrt, death)
    return index, proc, krt_end, death, s


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_sessions_never_overlap_and_leave_no_seven_day_gap_before_the_end(seed, n):
    index, proc, krt_end, death, s = _timelines(seed, n)
    owner, start, end = s["owner"], s["start"], s["end"]
    assert (end > start).all()
    assert (np.diff(owner) >= 0).all()
    same = owner[1:] == owner[:-1]
    gap = start[1:] - end[:-1]
    # sessions of one patient follow each other, with gaps shorter than 3.5 days (so the only
    # 7-day KRT-free stretch is after the last session: liberation is never read too early)
    assert (gap[same] > 0).all()
    assert (gap[same] < 3.5 * DAY).all()
    # every patient has KRT from the first CRRT start; CRRT comes before intermittent HD
    assert set(owner) == set(range(n))
    first = np.r_[0, np.flatnonzero(~same) + 1]
    assert (start[first] == (index + proc)[owner[first]]).all()
    crrt_after_hd = (~s["crrt"][:-1]) & s["crrt"][1:] & same
    assert not crrt_after_hd.any()
    # KRT stops before death; survivors' last session ends at the planted liberation time
    assert (end <= death[owner] - 60).all()
    last = np.r_[np.flatnonzero(~same), owner.size - 1]
    alive = np.isinf(death[owner[last]])
    planted_end = index[owner[last]] + krt_end[owner[last]] * DAY
    assert np.all(np.abs(end[last][alive] - planted_end[alive]) <= 1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(1, 200), min_size=1, max_size=5))
def test_stratified_uniforms_put_one_draw_in_each_slice_of_every_stratum(seed, sizes):
    rng = np.random.default_rng(seed)
    strata = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    u = model.stratified_uniforms(rng, strata)
    assert ((u > 0) & (u < 1)).all()
    for k, m in enumerate(sizes):
        slices = np.floor(u[strata == k] * m).astype(int)
        assert sorted(slices) == list(range(m))
