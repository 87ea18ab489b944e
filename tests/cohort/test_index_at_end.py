"""``[index] at = "end"``: the index at the entry event's end (e.g. extubation = the end of invasive
ventilation), on a hand-made folder; an outcome "first" then needs a new start after that end."""

from __future__ import annotations

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort, describe_columns
from retrocohort.errors import StudySpecError
from retrocohort.spec import parse_study_text

from .minimimic import MiniMimic

DAY0 = pd.Timestamp("2150-03-10 00:00:00")
H = pd.Timedelta(hours=1)
VENT = 225792  # invasive ventilation (procedureevents)

TEMPLATE = """
[study]
name = "index_end"
title = "Index at the end of ventilation"

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[index]
concept = "invasive_ventilation"
label = "end of invasive ventilation"
{at}

[exposure]
concept = "noradrenaline"
label = "noradrenaline"
window = "[-24h, 0h]"

[comparator]
kind = "none"
label = "none"

[outcomes.reintubation]
kind = "first"
label = "Re-intubation"
concept = "invasive_ventilation"
horizon_days = 7
primary = true
"""


def study(at: str = ""):
    return parse_study_text(TEMPLATE.format(at=at))


def build() -> MiniMimic:
    m = MiniMimic()
    # 1: ventilated 10:00-20:00 on day 0, re-intubated on day 2 at 10:00.
    p = m.ckrt_patient(1, index=str(DAY0 + 10 * H), mg_at=None)
    m.procedure(1, p["hadm_id"], p["stay_id"], VENT, DAY0 + 10 * H, DAY0 + 20 * H)
    m.procedure(1, p["hadm_id"], p["stay_id"], VENT, DAY0 + 58 * H, DAY0 + 70 * H)
    # 2: ventilation without an end time: no index at its end.
    p = m.ckrt_patient(2, index=str(DAY0 + 10 * H), mg_at=None)
    row = m.procedure(2, p["hadm_id"], p["stay_id"], VENT, DAY0 + 10 * H, DAY0 + 20 * H)
    row["endtime"] = ""
    # 3: ventilated 10:00-20:00, never re-intubated.
    p = m.ckrt_patient(3, index=str(DAY0 + 10 * H), mg_at=None)
    m.procedure(3, p["hadm_id"], p["stay_id"], VENT, DAY0 + 10 * H, DAY0 + 20 * H)
    return m


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build().write(tmp_path_factory.mktemp("index_end"))


def _rows(cohort) -> dict[int, tuple[pd.Timestamp, float, int]]:
    return {
        int(r.subject_id): (r.index_time, float(r.reintubation_time), int(r.reintubation_status))
        for r in cohort.data.itertuples()
    }


def test_default_index_is_the_start(folder):
    rows = _rows(build_cohort(study(), folder))
    assert rows[1][0] == DAY0 + 10 * H
    assert rows[2][0] == DAY0 + 10 * H  # the missing end does not matter at the start
    # the episode starting at the index is not its own outcome: the re-intubation 48 h later is
    assert rows[1][1:] == (pytest.approx(2.0), 1)


def test_index_at_the_end(folder):
    cohort = build_cohort(study('at = "end"'), folder)
    rows = _rows(cohort)
    assert rows[1][0] == DAY0 + 20 * H and rows[3][0] == DAY0 + 20 * H
    # the first outcome is a NEW start after the end: the re-intubation 38 h later, not the episode itself
    assert rows[1][1:] == (pytest.approx(38 / 24), 1)
    assert rows[3][1:] == (pytest.approx(7.0), 0)
    # the event without an end time is left out, and said (a count of 1 below the threshold is not printed)
    assert 2 not in rows
    note = [n for n in cohort.notes if "without an end time" in n]
    assert len(note) == 1 and "fewer than 5" in note[0] and " 1 " not in note[0]
    assert "at its end" in cohort.attrition.set_index("step").loc["index_event", "reason"]
    assert "(its end time)" in describe_columns(study('at = "end"'))["index_time"]


def _exposed(text: str, folder) -> dict[int, int]:
    return {int(r.subject_id): int(r.exposed) for r in build_cohort(parse_study_text(text), folder).data.itertuples()}


def test_windows_are_relative_to_the_end(folder):
    # noradrenaline starts 2 h before the ventilation start (08:00): 12 h before its end
    text = TEMPLATE.format(at='at = "end"').replace('window = "[-24h, 0h]"', 'window = "[-11h, 0h]"')
    exposed = _exposed(text, folder)
    assert exposed == {1: 0, 3: 0}
    text = TEMPLATE.format(at="").replace('window = "[-24h, 0h]"', 'window = "[-11h, 0h]"')
    exposed = _exposed(text, folder)
    assert exposed == {1: 1, 2: 1, 3: 1}


def test_no_note_at_the_start(folder):
    assert not [n for n in build_cohort(study(), folder).notes if "without an end time" in n]


@pytest.mark.parametrize(
    ("line", "needle"),
    [('at = "ending"', "did you mean 'end'"), ('att = "end"', "did you mean 'at'"), ("at = 1", "index.at")],
)
def test_bad_at_is_a_clear_error(line, needle):
    with pytest.raises(StudySpecError) as info:
        study(line)
    assert needle in str(info.value)


def test_point_events_have_no_end_and_find_no_index(folder):
    # a lab value is a point event (end = start): at = "end" leaves every one out, said in the notes
    text = TEMPLATE.format(at='at = "end"').replace(
        'concept = "invasive_ventilation"\nlabel = "end of invasive ventilation"',
        'concept = "creatinine_lab"\nlabel = "creatinine"',
    )
    text = text.replace("[index]", '[concepts.creatinine_lab]\ntable = "hosp/labevents"\nitemids = [50912]\n\n[index]')
    cohort = build_cohort(parse_study_text(text), folder)
    assert len(cohort.data) == 0
    note = [n for n in cohort.notes if "without an end time" in n]
    assert len(note) == 1 and "fewer than 5" in note[0]
    assert any("no patient has an index event" in n and "with an end time" in n for n in cohort.notes)


def test_first_per_stay_at_the_end(tmp_path):
    m = build()
    # patient 1 again in a second stay: ventilated 08:00-09:30 a year later
    later = pd.Timestamp("2151-05-01 00:00:00")
    p = m.ckrt_patient(1, index=str(later + 8 * H), mg_at=None, hadm_id=12, stay_id=120)
    m.procedure(1, p["hadm_id"], p["stay_id"], VENT, later + 8 * H, later + 9.5 * H)
    folder = m.write(tmp_path / "stays")
    text = TEMPLATE.format(at='at = "end"\nselect = "first_per_stay"')
    rows = sorted(
        (int(r.subject_id), r.index_time) for r in build_cohort(parse_study_text(text), folder).data.itertuples()
    )
    assert (1, DAY0 + 20 * H) in rows and (1, later + 9.5 * H) in rows
    assert all(s != 2 for s, _ in rows)
