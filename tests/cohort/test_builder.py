"""The cohort builder on hand-made MIMIC-IV folders: every rule of the study language, one patient per side.

Expected values are closed-form from the rule and the timestamps written here
(e.g. a dose of 2 g + 500 mg at 8.12 mEq/g is 20.3 mEq), never taken from the
builder itself. The study below is deliberately not the flagship.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.spec import parse_study_text

from .minimimic import MiniMimic

INDEX = pd.Timestamp("2150-03-10 10:00:00")
H = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)

STUDY = """
[study]
name = "builder_rules"
title = "Every rule of the study language"

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802]

[concepts.ihd]
table = "icu/procedureevents"
itemids = [225441]

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[concepts.mg]
table = "icu/inputevents"
itemids = [222011]
label = "IV magnesium"

[concepts.mg_lab]
table = "hosp/labevents"
itemids = [50960]

[concepts.creat]
table = "hosp/labevents"
itemids = [50912]

[index]
concept = "crrt_rows"
label = "CRRT start"

[[criteria]]
name = "mg_before"
label = "a serum Mg in the 24 h before the index"
rule = "include"
concept = "mg_lab"
window = "[-24h, 0h)"

[[criteria]]
name = "many_doses"
label = "three or more Mg doses in 48 h"
rule = "exclude"
concept = "mg"
window = "(0h, 48h]"
at_least = 3

[[criteria]]
name = "no_early_pressor"
label = "no noradrenaline started more than a day before the index"
rule = "include"
concept = "noradrenaline"
window = "(-inf, -24h)"
at_least = 0
at_most = 0

[exposure]
concept = "mg"
label = "Mg"
window = "(0h, 48h]"

[comparator]
kind = "none"
label = "no Mg"

[dose]
name = "mg_meq"
label = "Mg dose"
unit = "mEq"
amount_units = { grams = 1.0, mg = 0.001 }
factor = 8.12

[covariates.mg_first]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "first"

[covariates.mg_last]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "last"

[covariates.mg_min]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "min"

[covariates.mg_max]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "max"

[covariates.mg_mean]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "mean"

[covariates.mg_count]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "count"

[covariates.mg_near]
concept = "mg_lab"
window = "[-48h, 48h]"
summary = "nearest"

[covariates.pressor]
concept = "noradrenaline"
window = "[-1h, 1h]"
match = "overlap"
summary = "any"

[covariates.creat_median]
concept = "creat"
window = "[-12h, 0h]"
summary = "max"
missing = "median"

[covariates.creat_flag]
concept = "creat"
window = "[-12h, 0h]"
summary = "max"
missing = "indicator"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 30
primary = true

[outcomes.dialysis]
kind = "first"
label = "Intermittent dialysis"
concept = "ihd"
horizon_days = 30
competing = "death"
exclude_prior = "[-30d, 0h)"

[outcomes.dialysis_censored]
kind = "first"
label = "Intermittent dialysis, death censors"
concept = "ihd"
horizon_days = 30

[outcomes.off_crrt]
kind = "absence"
label = "Off CRRT"
concept = "crrt_rows"
absence_days = 3
horizon_days = 30
"""


def _patient(m: MiniMimic, subject: int, **kw) -> dict:
    kw.setdefault("mg_at", None)
    kw.setdefault("crrt_hours", 24.0)
    p = m.ckrt_patient(subject, **kw)
    m.lab(subject, p["hadm_id"], 50960, INDEX - 2 * H, 2.0)  # passes mg_before
    return p


def build() -> MiniMimic:
    m = MiniMimic()
    _patient(m, 1)  # plain: kept, no Mg, alive
    p = m.ckrt_patient(2, mg_at=None)  # Mg exactly at the index: [-24h, 0h) is open there -> excluded
    m.lab(2, p["hadm_id"], 50960, INDEX, 2.0)
    p = m.ckrt_patient(3, mg_at=None)  # Mg exactly 24 h before: the closed end -> kept
    m.lab(3, p["hadm_id"], 50960, INDEX - 24 * H, 2.2)
    p = _patient(m, 4)  # three doses -> excluded by many_doses
    for hours in (1, 2, 3):
        m.magnesium(4, p["hadm_id"], p["stay_id"], INDEX + hours * H, carrier=False)
    p = _patient(m, 5)  # two doses, one in mg and one of unknown unit -> exposed, 2 g + 500 mg counted
    m.magnesium(5, p["hadm_id"], p["stay_id"], INDEX + 5 * H, grams=2.0, carrier=False)
    m.input(5, p["hadm_id"], p["stay_id"], 222011, INDEX + 6 * H, INDEX + 7 * H, amount=500.0, amountuom="mg")
    p = _patient(m, 6)  # a dose at exactly 48 h (closed) and one at the index (open): one counts
    m.magnesium(6, p["hadm_id"], p["stay_id"], INDEX + 48 * H, grams=1.0, carrier=False)
    m.magnesium(6, p["hadm_id"], p["stay_id"], INDEX, grams=4.0, carrier=False)
    p = _patient(m, 7)  # unknown unit only: exposed, dose 0, noted
    m.input(7, p["hadm_id"], p["stay_id"], 222011, INDEX + 2 * H, INDEX + 3 * H, amount=50.0, amountuom="mL")
    p = _patient(m, 8, vasopressor=False)  # noradrenaline started 25 h before: excluded (none allowed)
    m.input(8, p["hadm_id"], p["stay_id"], 221906, INDEX - 25 * H, INDEX - 20 * H, amount=1.0, amountuom="mg")
    p = _patient(m, 9, vasopressor=False)  # noradrenaline started exactly 24 h before: the open end -> kept
    m.input(9, p["hadm_id"], p["stay_id"], 221906, INDEX - 24 * H, INDEX - 2 * H, amount=1.0, amountuom="mg")
    # Lab summaries: values at -30 h (1.1), -2 h (2.0, from _patient), +2 h (2.6), +40 h (0.9); -50 h outside.
    p = _patient(m, 10)
    for hours, value in ((-30, 1.1), (2, 2.6), (40, 0.9), (-50, 9.9)):
        m.lab(10, p["hadm_id"], 50960, INDEX + hours * H, value)
    m.lab(10, p["hadm_id"], 50912, INDEX - 3 * H, 3.0)  # creatinine: 3.0 and 4.0 in [-12 h, 0 h]
    m.lab(10, p["hadm_id"], 50912, INDEX - 1 * H, 4.0)
    p = _patient(m, 11)
    m.lab(11, p["hadm_id"], 50912, INDEX - 1 * H, 1.0)  # creatinine 1.0 (median with patient 10's 4.0 = 2.5)
    # Outcomes. 12: dialysis at day 5 then dies day 20. 13: dies day 4 without dialysis.
    p = _patient(m, 12, deathtime=str(INDEX + 20 * DAY))
    m.procedure(12, p["hadm_id"], p["stay_id"], 225441, INDEX + 5 * DAY, INDEX + 5 * DAY + 4 * H)
    _patient(m, 13, deathtime=str(INDEX + 4 * DAY))
    p = _patient(m, 14)  # dialysis 5 days before the index: prior outcome -> excluded
    m.procedure(14, p["hadm_id"], p["stay_id"], 225441, INDEX - 5 * DAY, INDEX - 5 * DAY + 4 * H)
    # CRRT again on day 2-3: off CRRT from the end of the last session (day 3 + 24 h = day 4) if 3 days free.
    p = _patient(m, 15)
    m.procedure(15, p["hadm_id"], p["stay_id"], 225802, INDEX + 2 * DAY, INDEX + 4 * DAY)
    # Dies 2 days after stopping CRRT: never 3 days off alive; death censors (no competing risk).
    _patient(m, 16, deathtime=str(INDEX + 1 * DAY + 2 * DAY))
    _patient(m, 17, anchor_age=16)  # a minor
    return m


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = build().write(tmp_path_factory.mktemp("builder"))
    return build_cohort(parse_study_text(STUDY, where="builder_rules.toml"), folder)


def _row(cohort, subject):
    rows = cohort.data.loc[cohort.data["subject_id"] == subject]
    assert len(rows) == 1, f"subject {subject} not in the cohort"
    return rows.iloc[0]


def _absent(cohort, subject):
    return not (cohort.data["subject_id"] == subject).any()


def test_attrition_in_the_order_written(cohort):
    a = cohort.attrition.set_index("step")
    assert list(a.index) == [
        "index_event",
        "data_checks",
        "icu_stay",
        "adult",
        "mg_before",
        "many_doses",
        "no_early_pressor",
        "prior_dialysis",
        "missing_covariates",
        "eligible",
    ]
    assert a.loc["index_event", "remaining"] == 17
    assert a.loc["adult", "excluded"] == 1
    assert a.loc["mg_before", "excluded"] == 1  # patient 2 (Mg exactly at the index)
    assert a.loc["many_doses", "excluded"] == 1
    assert a.loc["no_early_pressor", "excluded"] == 1
    assert a.loc["prior_dialysis", "excluded"] == 1
    assert a.loc["eligible", "remaining"] == len(cohort.data) == 12
    assert "a serum Mg in the 24 h before the index" in a.loc["mg_before", "reason"]
    remaining = cohort.attrition["remaining"].to_numpy()
    assert (remaining[1:] == remaining[:-1] - cohort.attrition["excluded"].to_numpy()[1:]).all()


def test_window_ends_open_and_closed(cohort):
    assert _absent(cohort, 2) and not _absent(cohort, 3)
    assert _absent(cohort, 8) and not _absent(cohort, 9)


def test_counts_at_least_and_none(cohort):
    assert _absent(cohort, 4)
    assert _row(cohort, 5)["exposed"] == 1  # two doses are fewer than three


def test_exposure_window_and_dose_conversion(cohort):
    assert _row(cohort, 5)["mg_meq"] == pytest.approx((2.0 + 500 * 0.001) * 8.12, rel=1e-12)
    six = _row(cohort, 6)
    assert six["exposed"] == 1 and six["mg_meq"] == pytest.approx(1.0 * 8.12, rel=1e-12)
    seven = _row(cohort, 7)
    assert seven["exposed"] == 1 and seven["mg_meq"] == 0.0
    assert _row(cohort, 1)["exposed"] == 0 and _row(cohort, 1)["mg_meq"] == 0.0
    assert any("1 exposure row(s)" in n and "'grams', 'mg'" in n for n in cohort.notes)


def test_value_summaries(cohort):
    ten = _row(cohort, 10)
    values = {-30: 1.1, -2: 2.0, 2: 2.6, 40: 0.9}
    assert ten["mg_first"] == values[-30]
    assert ten["mg_last"] == values[40]
    assert ten["mg_min"] == min(values.values())
    assert ten["mg_max"] == max(values.values())
    assert ten["mg_mean"] == pytest.approx(np.mean(list(values.values())), rel=1e-12)
    assert ten["mg_count"] == 4
    assert ten["mg_near"] == values[-2]  # -2 h and +2 h tie on distance: the earlier wins


def test_any_with_overlap(cohort):
    assert _row(cohort, 1)["pressor"] == 1  # default infusion runs from -2 h to +10 h
    assert _row(cohort, 9)["pressor"] == 0  # ran from -24 h to -2 h: ended before the window [-1 h, 1 h]


def test_missing_rules(cohort):
    observed = {10: 4.0, 11: 1.0}
    median = float(np.median(list(observed.values())))
    assert _row(cohort, 10)["creat_median"] == 4.0 and _row(cohort, 11)["creat_median"] == 1.0
    assert _row(cohort, 1)["creat_median"] == median
    assert _row(cohort, 1)["creat_flag_missing"] == 1 and _row(cohort, 1)["creat_flag"] == 0.0
    assert _row(cohort, 10)["creat_flag_missing"] == 0 and _row(cohort, 10)["creat_flag"] == 4.0
    assert any("creat_median" in n and f"{median:g}" in n for n in cohort.notes)


def test_outcomes_first_with_and_without_competing_death(cohort):
    twelve, thirteen, one = _row(cohort, 12), _row(cohort, 13), _row(cohort, 1)
    assert (twelve["dialysis_status"], twelve["dialysis_time"]) == (1, 5.0)
    assert (twelve["death_status"], twelve["death_time"]) == (1, 20.0)
    assert (thirteen["dialysis_status"], thirteen["dialysis_time"]) == (2, 4.0)
    assert (thirteen["dialysis_censored_status"], thirteen["dialysis_censored_time"]) == (0, 4.0)
    assert (one["dialysis_status"], one["dialysis_time"], one["death_status"]) == (0, 30.0, 0)


def test_outcome_absence(cohort):
    fifteen, one, sixteen = _row(cohort, 15), _row(cohort, 1), _row(cohort, 16)
    assert (one["off_crrt_status"], one["off_crrt_time"]) == (1, 1.0)  # CRRT ended at 24 h
    assert (fifteen["off_crrt_status"], fifteen["off_crrt_time"]) == (1, 4.0)
    assert (sixteen["off_crrt_status"], sixteen["off_crrt_time"]) == (0, 3.0)  # censored at death


def test_frame_shape(cohort):
    d = cohort.data
    assert d["subject_id"].is_unique and d["subject_id"].is_monotonic_increasing
    assert d["exposed"].dtype == np.int64 and d["pressor"].dtype == np.int64
    assert {"dialysis_time", "dialysis_status", "death_time", "off_crrt_status"} <= set(d.columns)
    assert "index_time" in cohort.concepts and "mg_meq" in cohort.concepts


def test_exposure_start_days_is_the_first_start_inside_the_window(cohort):
    # the target trial's time to exposure start: days from the index to the first dose in (0h, 48h]
    assert _row(cohort, 5)["exposure_start_days"] == pytest.approx(5 / 24, rel=1e-12)
    assert _row(cohort, 6)["exposure_start_days"] == pytest.approx(2.0, rel=1e-12)  # the index dose is outside
    assert _row(cohort, 7)["exposure_start_days"] == pytest.approx(2 / 24, rel=1e-12)
    assert np.isnan(_row(cohort, 1)["exposure_start_days"])
    d = cohort.data
    assert (d["exposure_start_days"].notna() == (d["exposed"] == 1)).all()
