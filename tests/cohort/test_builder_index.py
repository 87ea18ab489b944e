"""How the index is chosen: first per patient vs first passing every rule, first ICU stay only, an entry
event from a hospital table placed into the ICU stay it falls in, and the age limits (hand-made folder)."""

from __future__ import annotations

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.spec import parse_study_text

from .minimimic import MiniMimic

FIRST = pd.Timestamp("2150-03-10 10:00:00")
LATER = pd.Timestamp("2151-05-01 08:00:00")
H = pd.Timedelta(hours=1)

TEMPLATE = """
[study]
name = "index_rules"
title = "Index rules"

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802]

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[concepts.mg_lab]
table = "hosp/labevents"
itemids = [50960]

[index]
concept = "{entry}"
label = "entry"
select = "{select}"
first_icu_stay_only = {first_stay}
max_age = 80

[[criteria]]
name = "support"
label = "noradrenaline around the index"
rule = "include"
concept = "noradrenaline"
window = "[-24h, 24h]"
match = "overlap"

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
"""


def study(entry="crrt_rows", select="first", first_stay="false"):
    return parse_study_text(TEMPLATE.format(entry=entry, select=select, first_stay=first_stay))


def build() -> MiniMimic:
    m = MiniMimic()
    # 1: first CRRT stay without support, a later CRRT stay with support.
    m.ckrt_patient(1, index=str(FIRST), vasopressor=False, hadm_id=11, stay_id=110)
    m.ckrt_patient(1, index=str(LATER), vasopressor=True, hadm_id=12, stay_id=120)
    # 2: the first CRRT stay has support.
    m.ckrt_patient(2, index=str(FIRST), hadm_id=21, stay_id=210)
    m.ckrt_patient(2, index=str(LATER), hadm_id=22, stay_id=220)
    # 3: a first ICU stay without CRRT, CRRT only in the second stay.
    m.add(
        "hosp/admissions",
        subject_id=3,
        hadm_id=31,
        admittime="2149-01-01 08:00:00",
        dischtime="2149-01-10 08:00:00",
        deathtime="",
    )
    m.add(
        "icu/icustays",
        subject_id=3,
        hadm_id=31,
        stay_id=310,
        intime="2149-01-01 10:00:00",
        outtime="2149-01-05 10:00:00",
        los=4,
    )
    m.ckrt_patient(3, index=str(FIRST), hadm_id=32, stay_id=320)
    # 4: a serum Mg inside the ICU stay (no stay_id in labevents): placed into that stay.
    m.ckrt_patient(4, index=str(FIRST), hadm_id=41, stay_id=410, mg_at="same")
    # 5: the first serum Mg is in the ward before the ICU stay: no ICU stay for the index.
    m.ckrt_patient(5, index=str(FIRST), hadm_id=51, stay_id=510, mg_at="same")
    m.lab(5, 51, 50960, FIRST - pd.Timedelta(days=2) + H, 1.8)  # admitted at -2 d, ICU from -2 d + 2 h
    # 6: 85 years old: above max_age.
    m.ckrt_patient(6, index=str(FIRST), anchor_age=85, hadm_id=61, stay_id=610)
    return m


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build().write(tmp_path_factory.mktemp("index"))


def _index(cohort) -> dict[int, tuple[int, pd.Timestamp]]:
    return {int(r.subject_id): (int(r.stay_id), r.index_time) for r in cohort.data.itertuples()}


def test_first_is_never_re_indexed(folder):
    cohort = build_cohort(study(select="first"), folder)
    idx = _index(cohort)
    assert 1 not in idx  # its first CRRT stay failed the support rule
    assert idx[2] == (210, FIRST) and idx[3] == (320, FIRST)
    assert 6 not in idx
    a = cohort.attrition.set_index("step")
    assert a.loc["age", "excluded"] == 1 and "age <= 80" in a.loc["age", "reason"]
    assert a.loc["support", "excluded"] == 1


def test_first_passing_takes_the_later_stay(folder):
    idx = _index(build_cohort(study(select="first_passing"), folder))
    assert idx[1] == (120, LATER)
    assert idx[2] == (210, FIRST)  # the earliest passing stay, not a later one


def test_first_icu_stay_only(folder):
    cohort = build_cohort(study(first_stay="true"), folder)
    idx = _index(cohort)
    assert 3 not in idx and idx[2] == (210, FIRST)
    # only patient 3 (CRRT in its second ICU stay); patient 1's first CRRT stay is its first ICU stay,
    # so it passes this rule and fails the support rule instead
    assert cohort.attrition.set_index("step").loc["first_icu_stay", "excluded"] == 1


def test_entry_from_a_hospital_table_is_placed_in_its_icu_stay(folder):
    cohort = build_cohort(study(entry="mg_lab"), folder)
    idx = _index(cohort)
    assert idx[4] == (410, FIRST - H)  # the Mg one hour before CRRT, inside stay 410
    assert 5 not in idx
    assert cohort.attrition.set_index("step").loc["icu_stay", "excluded"] == 1


def test_a_concept_on_an_absent_table_names_concept_and_table(folder):
    from retrocohort.errors import SourceError

    text = TEMPLATE.format(entry="crrt_rows", select="first", first_stay="false").replace(
        '[concepts.noradrenaline]\ntable = "icu/inputevents"\nitemids = [221906]',
        '[concepts.noradrenaline]\ntable = "hosp/prescriptions"\ndrugs = ["norepinephrine"]',
    )
    with pytest.raises(SourceError) as info:
        build_cohort(parse_study_text(text), folder)
    assert "concept 'noradrenaline'" in str(info.value) and "hosp/prescriptions" in str(info.value)


def test_first_per_stay_gives_one_index_per_icu_stay(folder):
    cohort = build_cohort(study(select="first_per_stay"), folder)
    rows = sorted((int(r.subject_id), int(r.stay_id), r.index_time) for r in cohort.data.itertuples())
    # patient 1: its first CRRT stay fails the support rule, its second passes; patient 2: both stays pass
    assert (1, 110, FIRST) not in rows and (1, 120, LATER) in rows
    assert (2, 210, FIRST) in rows and (2, 220, LATER) in rows
    assert cohort.data.groupby("subject_id").size().max() == 2
    a = cohort.attrition.set_index("step")
    assert a.loc["index_event", "reason"].startswith("ICU stays with an index event")
    assert "each ICU stay" in a.loc["index_event", "reason"]
    # every (patient, stay) candidate counts: patient 1 has 2, patient 2 has 2, patient 3 has 1 CRRT stay, ...
    assert a.loc["index_event", "remaining"] == 8
    assert a.loc["support", "excluded"] >= 1


def test_first_per_stay_with_first_icu_stay_only_is_first_per_patient(folder):
    per_stay = build_cohort(study(select="first_per_stay", first_stay="true"), folder)
    first = build_cohort(study(select="first", first_stay="true"), folder)
    # the first ICU stay is one stay per patient: both selections then give the same cohort
    assert _index(per_stay) == _index(first)
    assert per_stay.data["subject_id"].is_unique


def test_first_per_stay_computes_baseline_covariates_per_stay(folder):
    text = TEMPLATE.format(entry="crrt_rows", select="first_per_stay", first_stay="false")
    text = text.replace("[outcomes.death]", '[covariates.age]\nconcept = "age"\n\n[outcomes.death]')
    cohort = build_cohort(parse_study_text(text), folder)
    ages = {(int(r.subject_id), int(r.stay_id)): float(r.age) for r in cohort.data.itertuples()}
    # the same patient is one calendar year older at its second stay (2151 vs 2150): each stay its own age
    assert ages[(2, 220)] == ages[(2, 210)] + 1
    assert len(cohort.data) == len(ages)


def test_only_the_tables_the_study_reads_are_required(tmp_path):
    from retrocohort.errors import SourceError

    folder = build().write(tmp_path / "no_procedures", omit=("icu/procedureevents",))
    # entry from labevents, rules on inputevents: procedureevents is not read (crrt_rows is defined, never named)
    cohort = build_cohort(study(entry="mg_lab"), folder)
    assert _index(cohort)[4][0] == 410
    assert not any("procedureevents" in note for note in cohort.notes)
    # a study whose index reads procedureevents: the table, the concept and the module are named
    with pytest.raises(SourceError) as info:
        build_cohort(study(entry="crrt_rows"), folder)
    message = str(info.value)
    assert "icu/procedureevents not found" in message and "concept 'crrt_rows'" in message
    assert "icu module" in message and "remove those concepts" in message
    # a built-in names its tables the same way (sofa reads procedureevents for ventilation)
    text = TEMPLATE.format(entry="mg_lab", select="first", first_stay="false")
    text = text.replace("[outcomes.death]", '[covariates.sofa]\nconcept = "sofa"\n\n[outcomes.death]')
    with pytest.raises(SourceError, match=r"icu/procedureevents not found.*concept 'sofa'"):
        build_cohort(parse_study_text(text), folder)


def test_a_table_the_study_does_not_read_may_even_lack_columns(tmp_path):
    from retrocohort.errors import SourceError

    folder = build().write(tmp_path / "cut", drop_columns={"icu/procedureevents": ["endtime"]})
    cohort = build_cohort(study(entry="mg_lab"), folder)  # procedureevents is not read
    assert _index(cohort)[4][0] == 410
    with pytest.raises(SourceError, match=r"procedureevents.*column 'endtime' missing.*'crrt_rows'"):
        build_cohort(study(entry="crrt_rows"), folder)
