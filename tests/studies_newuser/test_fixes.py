"""Bugs found by writing new-user studies, one test each (hand-made folders, exact expectations)."""

from __future__ import annotations

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.spec import parse_study_text
from tests.cohort.minimimic import MiniMimic

FIRST = pd.Timestamp("2150-03-10 10:00:00")
LATER = pd.Timestamp("2151-05-01 08:00:00")

PER_STAY = """
[study]
name = "per_stay_death"
title = "Death per ICU stay"

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802]

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[index]
concept = "crrt_rows"
label = "CRRT start"
select = "{select}"

[exposure]
concept = "noradrenaline"
label = "noradrenaline"
window = "(0h, 1h]"

[comparator]
kind = "none"
label = "none"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 30
primary = true

[outcomes.krt_again]
kind = "first"
label = "KRT again"
concept = "crrt_rows"
horizon_days = 30
competing = "death"
"""


@pytest.fixture(scope="module")
def two_stay_folder(tmp_path_factory):
    m = MiniMimic()
    # patient 1: two ICU stays with CRRT a year apart, dies 5 days after the second index
    m.ckrt_patient(1, index=str(FIRST), hadm_id=11, stay_id=110, dod="2151-05-06")
    m.ckrt_patient(1, index=str(LATER), hadm_id=12, stay_id=120)
    # patient 2: one stay, dies in hospital 3 days after the index
    m.ckrt_patient(2, index=str(FIRST), hadm_id=21, stay_id=210, deathtime="2150-03-13 10:00:00")
    # patient 3: alive
    m.ckrt_patient(3, index=str(FIRST), hadm_id=31, stay_id=310)
    return m.write(tmp_path_factory.mktemp("per_stay_death"))


def test_first_per_stay_keeps_the_deaths(two_stay_folder):
    # The death rows' own (null) stay_id shadowed the index's stay_id: every death was lost per stay.
    cohort = build_cohort(parse_study_text(PER_STAY.format(select="first_per_stay")), two_stay_folder)
    rows = {int(r.stay_id): (int(r.death_status), float(r.death_time)) for r in cohort.data.itertuples()}
    assert rows[110] == (0, 30.0)  # the death is a year later: past this stay's horizon
    died_second = (pd.Timestamp("2151-05-06 23:59:59") - LATER).total_seconds() / 86400
    assert rows[120][0] == 1 and rows[120][1] == pytest.approx(died_second)
    assert rows[210] == (1, 3.0)
    assert rows[310] == (0, 30.0)
    competing = {int(r.stay_id): int(r.krt_again_status) for r in cohort.data.itertuples()}
    assert competing[210] == 2 and competing[120] == 2 and competing[310] == 0


def test_first_per_stay_deaths_equal_first_per_patient_on_single_stays(two_stay_folder):
    per_stay = build_cohort(parse_study_text(PER_STAY.format(select="first_per_stay")), two_stay_folder).data
    first = build_cohort(parse_study_text(PER_STAY.format(select="first")), two_stay_folder).data
    single = per_stay[per_stay.subject_id != 1].reset_index(drop=True)
    pd.testing.assert_series_equal(
        single.death_status, first[first.subject_id != 1].death_status.reset_index(drop=True)
    )


def test_smd_of_a_variable_constant_in_both_arms_is_nan_without_a_warning():
    import math
    import warnings

    from retrocohort.matching.balance import smd_continuous

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning became a note "invalid value encountered in scalar divide"
        assert math.isnan(smd_continuous(0.0, 0.0, 0.0, 0.0))
        assert smd_continuous(1.0, 0.0, 0.0, 0.0) == math.inf
    assert smd_continuous(2.0, 1.0, 1.0, 1.0) == 1.0


def test_an_outcome_label_that_states_its_horizon_is_not_repeated():
    from retrocohort._labels import by_day

    assert by_day("Death", 28) == "Death by day 28"
    assert by_day("Death by day 28", 28) == "Death by day 28"
    assert by_day("28-day mortality", 28) == "28-day mortality"
    assert by_day("Re-intubation within 7 days", 7) == "Re-intubation within 7 days"
    assert by_day("Death within 7 days", 28) == "Death within 7 days by day 28"  # another number: kept
    assert by_day("Death by day 280", 28) == "Death by day 280 by day 28"


def test_the_unit_is_the_icu_stay_with_first_per_stay():
    from retrocohort._labels import units

    per_stay = parse_study_text(PER_STAY.format(select="first_per_stay"))
    first = parse_study_text(PER_STAY.format(select="first"))
    assert units(per_stay) == "ICU stays" and units(per_stay, plural=False) == "ICU stay"
    assert units(first) == "patients" and units(first, plural=False) == "patient"


def test_a_builtin_without_its_optional_table_says_so(tmp_path):
    # KDIGO stage without icu/outputevents scored creatinine and KRT only, silently: now a note says so.
    m = MiniMimic()
    m.ckrt_patient(1, index=str(FIRST), hadm_id=11, stay_id=110)
    m.ckrt_patient(2, index=str(FIRST), hadm_id=21, stay_id=210)
    text = PER_STAY.format(select="first").replace(
        "[outcomes.death]", '[covariates.kdigo]\nconcept = "kdigo_stage"\n\n[outcomes.death]'
    )
    without = m.write(tmp_path / "without", omit=("icu/outputevents",))
    notes = " ".join(build_cohort(parse_study_text(text), without).notes)
    assert "built-in 'kdigo_stage' (KDIGO AKI stage): icu/outputevents absent" in notes
    with_table = m.write(tmp_path / "with")
    import gzip

    with gzip.open(with_table / "icu" / "outputevents.csv.gz", "wt") as handle:  # the table, without rows
        handle.write("subject_id,hadm_id,stay_id,charttime,itemid,value,valueuom\n")
    assert "outputevents absent" not in " ".join(build_cohort(parse_study_text(text), with_table).notes)
