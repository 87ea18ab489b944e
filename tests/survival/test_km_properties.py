"""Properties of Kaplan-Meier, log-rank, cumulative incidence and Gray's test (hypothesis).

Each property holds for every data set, so any counterexample is a bug:
- S in [0, 1], non-increasing; confidence limits bracket S; SE >= 0.
- results do not depend on row order; rescaling time rescales the table's
  times and changes nothing else (medians scale too).
- cumulative incidences of all causes add up to 1 - all-cause Kaplan-Meier at
  every event time (the Aalen-Johansen identity, with or without censoring),
  hence to at most 1; with a single cause the CIF is 1 - KM.
- Gray's and the log-rank statistic do not depend on the order or the names
  of the groups.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from retrocohort.errors import InputError
from retrocohort.survival.competing import cumulative_incidence, gray_test
from retrocohort.survival.km import kaplan_meier, logrank

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def cohorts(draw, n_causes: int = 2, min_rows: int = 2, max_rows: int = 60):
    """Whole-day times (many ties), status 0..n_causes, two groups, at least one event of cause 1."""
    n = draw(st.integers(min_rows, max_rows))
    time = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    status = draw(st.lists(st.integers(0, n_causes), min_size=n, max_size=n))
    arm = draw(st.lists(st.sampled_from(["a", "b"]), min_size=n, max_size=n))
    weight = draw(st.lists(st.floats(0.1, 5.0), min_size=n, max_size=n))
    status[draw(st.integers(0, n - 1))] = 1
    return pd.DataFrame(
        {
            "time": np.asarray(time, dtype=float),
            "status": status,
            "event": (np.asarray(status) > 0).astype(int),
            "arm": arm,
            "w": weight,
        }
    )


@SETTINGS
@given(cohorts(), st.sampled_from(["log", "log-log", "plain"]), st.booleans())
def test_survival_is_a_non_increasing_probability(data, conf_type, weighted):
    table = kaplan_meier(
        data, "time", "event", group="arm", weights="w" if weighted else None, conf_type=conf_type
    ).table
    for _, curve in table.groupby("group"):
        s = curve["survival"].to_numpy()
        assert np.all((s >= 0) & (s <= 1))
        assert np.all(np.diff(s) <= 1e-15)
        assert np.all(curve["n_risk"].diff().dropna() < 0)  # risk sets shrink at every distinct time
    defined = table["lower"].notna()
    assert np.all(table.loc[defined, "lower"] <= table.loc[defined, "survival"] + 1e-12)
    assert np.all(table.loc[defined, "upper"] >= table.loc[defined, "survival"] - 1e-12)
    assert np.all(table["std_err"].dropna() >= 0)


@SETTINGS
@given(cohorts(), st.integers(0, 2**32 - 1), st.sampled_from([1 / 7, 24.0, 365.25]))
def test_row_order_and_time_scale_do_not_matter(data, seed, scale):
    reference = kaplan_meier(data, "time", "event", group="arm")
    shuffled = data.sample(frac=1.0, random_state=seed % 2**32).reset_index(drop=True)
    pd.testing.assert_frame_equal(kaplan_meier(shuffled, "time", "event", group="arm").table, reference.table)
    rescaled = kaplan_meier(data.assign(time=data["time"] * scale), "time", "event", group="arm")
    np.testing.assert_allclose(rescaled.table["time"], reference.table["time"] * scale, rtol=1e-14)
    for column in ["n_risk", "n_event", "n_censor", "survival", "std_err", "lower", "upper"]:
        np.testing.assert_allclose(rescaled.table[column], reference.table[column], rtol=1e-12)
    np.testing.assert_allclose(rescaled.median["median"], reference.median["median"] * scale, rtol=1e-12)
    cif = cumulative_incidence(data, "time", "status", group="arm").table
    cif_shuffled = cumulative_incidence(shuffled, "time", "status", group="arm").table
    pd.testing.assert_frame_equal(cif_shuffled, cif)


@SETTINGS
@given(cohorts(n_causes=3))
def test_incidences_add_up_to_one_minus_kaplan_meier(data):
    km = kaplan_meier(data, "time", "event")
    causes = sorted(set(data["status"]) - {0})
    times = km.table.loc[km.table["n_event"] > 0, "time"].to_numpy()
    total = np.zeros_like(times)
    for cause in causes:
        total += cumulative_incidence(data, "time", "status", cause=cause).cif_at(times)["cif"].to_numpy()
    np.testing.assert_allclose(total, 1.0 - km.survival_at(times)["survival"].to_numpy(), rtol=1e-12, atol=1e-14)
    assert np.all(total <= 1.0 + 1e-12)


@SETTINGS
@given(cohorts(n_causes=1))
def test_single_cause_incidence_is_one_minus_kaplan_meier(data):
    cif = cumulative_incidence(data, "time", "status").table
    km = kaplan_meier(data, "time", "event").survival_at(cif["time"])
    np.testing.assert_allclose(cif["cif"], 1.0 - km["survival"], rtol=1e-12, atol=1e-14)
    assert np.all(cif["variance"] >= -1e-15)


@SETTINGS
@given(cohorts())
def test_tests_ignore_group_names_and_order(data):
    swapped = data.assign(arm=data["arm"].map({"a": "z", "b": "m"}))
    if data["arm"].nunique() < 2:
        return
    try:
        gray = gray_test(data, "time", "status", "arm")
    except InputError as error:  # no one of a group at risk at any event time: cuminc reports -1
        assert "singular" in str(error)
        assume(False)
    gray_swapped = gray_test(swapped, "time", "status", "arm")
    np.testing.assert_allclose(gray_swapped.statistic, gray.statistic, rtol=1e-9, atol=1e-12)
    assert gray.statistic >= -1e-12
    np.testing.assert_allclose(gray.score.sum(), 0.0, atol=1e-9)  # scores of all groups cancel
    if data["event"].sum() > 0:
        try:
            lr = logrank(data, "time", "event", "arm")
        except InputError as error:  # everyone at risk fails at every event time: no variance
            assert "singular" in str(error)
            return
        np.testing.assert_allclose(
            logrank(swapped, "time", "event", "arm").statistic, lr.statistic, rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(lr.table["observed"].sum(), lr.table["expected"].sum(), rtol=1e-12)
