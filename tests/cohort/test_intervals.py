"""Time-varying covariates per grace interval (cohort/intervals.py) on a hand-made MIMIC-IV folder.

Grace window 2 days, intervals of 12 h: the cuts are 0, 12, 24, 36, 48 h and interval k's value is the
summary of the events in (cut_k-1, cut_k] (k >= 1), the study's value at the index for k = 0, carried
forward when nothing was measured. Expected values are read off the timestamps written here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.cohort.intervals import time_varying_values
from retrocohort.designs import clone_censor_weight
from retrocohort.errors import InputError
from retrocohort.spec import parse_study_text

from .minimimic import MiniMimic

INDEX = pd.Timestamp("2150-03-10 10:00:00")
H = pd.Timedelta(hours=1)
LACTATE = 50813

STUDY = """
[study]
name = "tv_intervals"
title = "Time-varying covariates over the grace window"

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802]

[concepts.mg]
table = "icu/inputevents"
itemids = [222011]

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[concepts.lact]
table = "hosp/labevents"
itemids = [50813]

[index]
concept = "crrt_rows"
label = "CRRT start"

[exposure]
concept = "mg"
label = "Mg"
window = "(0h, 48h]"

[comparator]
kind = "none"
label = "no Mg"

[covariates.age]
concept = "age"

[covariates.lact_max]
concept = "lact"
window = "[-24h, 0h]"
summary = "max"
missing = "median"

[covariates.lact_last]
concept = "lact"
window = "[-24h, 0h]"
summary = "last"
missing = "median"

[covariates.lact_first]
concept = "lact"
window = "[-24h, 0h]"
summary = "first"
missing = "median"

[covariates.lact_sum]
concept = "lact"
window = "[-24h, 0h]"
summary = "sum"
missing = "median"

[covariates.lact_count]
concept = "lact"
window = "[-24h, 0h]"
summary = "count"

[covariates.lact_normal]
concept = "lact"
window = "[-24h, 0h]"
summary = "min"
value_max = 2.0
missing = "median"

[covariates.pressor]
concept = "noradrenaline"
window = "[-1h, 0h]"
match = "overlap"
summary = "any"

[covariates.lact_around]
concept = "lact"
window = "[-24h, 24h]"
summary = "max"
missing = "median"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 30
primary = true
"""


def build() -> MiniMimic:
    m = MiniMimic()
    # 1: lactate 2.0 before the index; 3.0 and 4.0 inside interval 0; 5.0 exactly at 12 h (the end of
    # interval 0, so known at the start of interval 1); nothing in (12 h, 24 h]; 1.5 at 30 h; 9.0 at 40 h
    # (inside the last interval: it can feed no interval). Noradrenaline -2 h .. +10 h (ckrt_patient).
    p = m.ckrt_patient(1, mg_at=None)
    for hours, value in ((-2, 2.0), (5, 3.0), (11, 4.0), (12, 5.0), (30, 1.5), (40, 9.0)):
        m.lab(1, p["hadm_id"], LACTATE, INDEX + hours * H, value)
    # 2: no lactate before the index (missing at the index: median imputation), first at 20 h;
    # no noradrenaline at the index, one infusion 26 h .. 27 h.
    p = m.ckrt_patient(2, mg_at=None, vasopressor=False)
    m.lab(2, p["hadm_id"], LACTATE, INDEX + 20 * H, 7.0)
    m.input(2, p["hadm_id"], p["stay_id"], 221906, INDEX + 26 * H, INDEX + 27 * H, amount=1.0, amountuom="mg")
    # 3: lactate 4.0 before the index only; another patient's events must not leak into it.
    p = m.ckrt_patient(3, mg_at=None)
    m.lab(3, p["hadm_id"], LACTATE, INDEX - 3 * H, 4.0)
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = build().write(tmp_path_factory.mktemp("tv"))
    study = parse_study_text(STUDY, where="tv_intervals.toml")
    cohort = build_cohort(study, folder)
    return folder, study, cohort


def values(setup, names, frame=None):
    folder, study, cohort = setup
    frame = cohort.data if frame is None else frame
    return time_varying_values(folder, study, frame, names, grace_days=2.0, interval_days=0.5)


def series(tv: pd.DataFrame, frame: pd.DataFrame, subject: int, name: str) -> list[float]:
    row = int(np.flatnonzero(frame["subject_id"].to_numpy() == subject)[0])
    return tv.loc[tv["row"] == row].sort_values("day")[name].tolist()


def test_shape_and_days(setup):
    cohort = setup[2]
    tv = values(setup, ["lact_max"])
    assert list(tv.columns) == ["row", "day", "lact_max"]
    assert len(tv) == 4 * len(cohort.data) == 12
    assert tv["day"].tolist()[:4] == [0.0, 0.5, 1.0, 1.5]
    assert tv["row"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_values_per_interval_carry_forward_and_no_look_ahead(setup):
    data = setup[2].data
    tv = values(setup, ["lact_max", "lact_last", "lact_count", "lact_normal"])
    # k=0: the study's value at the index (2.0); k=1: events of (0, 12 h] = 3.0, 4.0, 5.0 -> max 5.0, last 5.0
    # (the 12 h value sits on the cut); k=2: nothing in (12 h, 24 h] -> carried; k=3: 1.5 at 30 h.
    # Values measured inside an interval never appear in its own row (4.0 at 11 h is not interval 0's).
    assert series(tv, data, 1, "lact_max") == [2.0, 5.0, 5.0, 1.5]
    assert series(tv, data, 1, "lact_last") == [2.0, 5.0, 5.0, 1.5]
    # counts are not carried: an interval without a measurement has 0 of them
    assert series(tv, data, 1, "lact_count") == [1, 3, 0, 1]
    # value_max = 2.0 keeps only values <= 2: 2.0 at the index, none in (0, 12 h] (carried), 1.5 at 30 h
    assert series(tv, data, 1, "lact_normal") == [2.0, 2.0, 2.0, 1.5]
    assert series(tv, data, 3, "lact_max") == [4.0, 4.0, 4.0, 4.0]
    other = values(setup, ["lact_first", "lact_sum"])
    assert series(other, data, 1, "lact_first") == [2.0, 3.0, 3.0, 1.5]
    assert series(other, data, 1, "lact_sum") == [2.0, 12.0, 0.0, 1.5]  # a sum, like a count, is 0 without events
    assert series(tv, data, 3, "lact_count") == [1, 0, 0, 0]


def test_missing_before_the_first_measurement(setup):
    data = setup[2].data
    tv = values(setup, ["lact_max"])
    # patient 2 has no value at the index: the study imputes the median of the others (2.0 and 4.0 -> 3.0),
    # carried forward until the first measurement (7.0 at 20 h, known from 24 h)
    imputed = float(data.loc[data.subject_id == 2, "lact_max"].iloc[0])
    assert imputed == pytest.approx(3.0)
    assert series(tv, data, 2, "lact_max") == [3.0, 3.0, 7.0, 7.0]
    # without the study's imputation the value stays missing until then, and the design refuses it
    raw = data.assign(lact_max=data["lact_max"].where(data.subject_id != 2, np.nan))
    tv_raw = values(setup, ["lact_max"], raw)
    got = series(tv_raw, raw, 2, "lact_max")
    assert np.isnan(got[:2]).all() and got[2:] == [7.0, 7.0]
    frame = pd.DataFrame({"time": [30.0] * 3, "status": [1, 0, 0], "start": [0.3, np.nan, 1.2]})
    with pytest.raises(InputError, match="column 'lact_max' has 2 of 12 rows missing"):
        clone_censor_weight(
            frame,
            start_time="start",
            grace_days=2.0,
            time="time",
            status="status",
            covariates=[],
            horizon_days=28.0,
            interval_days=0.5,
            time_varying=tv_raw,
        )


def test_overlap_any(setup):
    data = setup[2].data
    tv = values(setup, ["pressor"])
    # patient 1: noradrenaline -2 h .. +10 h runs at the index and in (0, 12 h], not later
    assert series(tv, data, 1, "pressor") == [1, 1, 0, 0]
    # patient 2: none at the index; 26 h .. 27 h runs in (24 h, 36 h] -> interval 3
    assert series(tv, data, 2, "pressor") == [0, 0, 0, 1]


def test_frame_order_and_subset_follow_the_rows(setup):
    data = setup[2].data
    subset = data.iloc[[2, 0]].reset_index(drop=True)  # patient 3 then patient 1
    tv = values(setup, ["lact_max"], subset)
    assert tv.loc[tv.row == 0, "lact_max"].tolist() == [4.0, 4.0, 4.0, 4.0]
    assert tv.loc[tv.row == 1, "lact_max"].tolist() == [2.0, 5.0, 5.0, 1.5]


def test_a_patient_twice_gets_its_values_twice(setup):
    data = setup[2].data
    twice = data.iloc[[0, 0, 1]].reset_index(drop=True)  # as a bootstrap draw would
    tv = values(setup, ["lact_max"], twice)
    assert tv.loc[tv.row == 0, "lact_max"].tolist() == tv.loc[tv.row == 1, "lact_max"].tolist() == [2.0, 5.0, 5.0, 1.5]
    assert tv.loc[tv.row == 2, "lact_max"].tolist() == [3.0, 3.0, 7.0, 7.0]


def test_one_interval_needs_no_data(setup):
    folder, study, cohort = setup
    tv = time_varying_values(folder, study, cohort.data, ["lact_max"], grace_days=2.0, interval_days=2.0)
    assert tv["day"].tolist() == [0.0, 0.0, 0.0]
    assert tv["lact_max"].tolist() == cohort.data["lact_max"].tolist()


@pytest.mark.parametrize(
    "names, message",
    [
        (["age"], "built-in baseline 'age', fixed at the index"),
        (["nope"], "'nope' is not a covariate of study"),
        (["lact_around"], r"window \[-24h, 24h\].* ends after the index"),
        ([], "no covariate named"),
        (["lact_max", "lact_max"], "named more than once"),
    ],
)
def test_refused_covariates(setup, names, message):
    with pytest.raises(InputError, match=message):
        values(setup, names)


def test_bad_frames_and_options(setup):
    data = setup[2].data
    with pytest.raises(InputError, match="no column 'index_time'"):
        values(setup, ["lact_max"], data.drop(columns="index_time"))
    with pytest.raises(InputError, match="no column 'lact_max'"):
        values(setup, ["lact_max"], data.drop(columns="lact_max"))
    with pytest.raises(InputError, match="not a timestamp"):
        values(setup, ["lact_max"], data.assign(index_time="2150-03-10"))
    with pytest.raises(InputError, match="1 rows of the frame have no subject_id or index_time"):
        values(setup, ["lact_max"], data.assign(index_time=data["index_time"].where(data.subject_id != 2)))
    with pytest.raises(InputError, match="column 'subject_id' is object"):
        values(setup, ["lact_max"], data.assign(subject_id=data["subject_id"].astype(str)))
    with pytest.raises(InputError, match="expected the cohort's analysis frame"):
        values(setup, ["lact_max"], data.to_dict())
    folder, study, _ = setup
    with pytest.raises(InputError, match="interval_days must be a positive"):
        time_varying_values(folder, study, data, ["lact_max"], grace_days=2.0, interval_days=0)
    with pytest.raises(InputError, match="grace_days must be a positive"):
        time_varying_values(folder, study, data, ["lact_max"], grace_days=-1, interval_days=0.5)


def test_an_open_connection_is_used_and_left_open(setup):
    from retrocohort.sources import MimicIV

    folder, study, cohort = setup
    conn = MimicIV(folder).connect()
    try:
        tv = time_varying_values(conn, study, cohort.data, ["lact_max"], grace_days=2.0, interval_days=0.5)
        assert series(tv, cohort.data, 1, "lact_max") == [2.0, 5.0, 5.0, 1.5]
        assert conn.table("icu/icustays").count().to_pyarrow().as_py() == 3  # still open
    finally:
        conn.close()
    with pytest.raises(InputError, match="expected a MIMIC-IV folder"):
        time_varying_values(42, study, cohort.data, ["lact_max"], grace_days=2.0, interval_days=0.5)
