"""study_inventory: the tables and columns each concept needs, which are present, rows each concept finds."""

from __future__ import annotations

import pandas as pd
import pytest

from retrocohort.cohort.inventory import concept_needs, study_inventory, used_concepts
from retrocohort.errors import SourceError
from retrocohort.sources.convert import convert_mimic
from retrocohort.spec import parse_study_text
from tests.cohort.minimimic import MiniMimic

STUDY = """
[study]
name = "inventory"
title = "Inventory of concepts"

[concepts.crrt_rows]
table = "icu/procedureevents"
itemids = [225802]

[concepts.mg]
table = "icu/inputevents"
itemids = [222011]
status_exclude = ["Rewritten"]

[concepts.mg_lab]
table = "hosp/labevents"
itemids = [50960]
value_min = 0

[concepts.wrong_itemid]
table = "hosp/labevents"
itemids = [99999999]

[concepts.thiamine]
table = "hosp/prescriptions"
drugs = ["thiamine"]

[index]
concept = "crrt_rows"
label = "CRRT start"

[[criteria]]
name = "died_early"
label = "died within 48 h"
rule = "exclude"
concept = "death"
window = "(-inf, 48h]"

[[criteria]]
name = "lab"
label = "a lab"
rule = "include"
concept = "wrong_itemid"
window = "[-24h, 0h]"

[exposure]
concept = "mg"
label = "Mg"
window = "(0h, 48h]"

[comparator]
kind = "none"
label = "no Mg"

[covariates.age]
concept = "age"

[covariates.mg_lab]
concept = "mg_lab"
window = "[-24h, 0h]"
summary = "last"

[covariates.thiamine]
concept = "thiamine"
window = "[-24h, 0h]"
summary = "any"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 90
primary = true

[outcomes.krt_again]
kind = "first"
label = "KRT"
concept = "krt"
horizon_days = 90
"""


def mimic() -> MiniMimic:
    m = MiniMimic()
    m.ckrt_patient(1)
    p = m.ckrt_patient(2)
    m.magnesium(2, p["hadm_id"], p["stay_id"], p["index"] + pd.Timedelta(hours=3))
    m.magnesium(2, p["hadm_id"], p["stay_id"], p["index"] + pd.Timedelta(hours=9))
    m.ckrt_patient(3, deathtime="2150-03-20 08:00:00")
    q = m.ckrt_patient(4)
    m.magnesium(4, q["hadm_id"], q["stay_id"], q["index"] + pd.Timedelta(hours=1))
    return m


def hand_count(m: MiniMimic, table: str, itemid: int) -> tuple[int, int]:
    rows = [r for r in m.rows[table] if r["itemid"] == itemid]
    return len(rows), len({r["subject_id"] for r in rows})


@pytest.fixture
def study():
    return parse_study_text(STUDY, where="inventory.toml")


def by_concept(inv) -> dict[str, dict]:
    return {r["concept"]: r for r in inv.concepts.to_dict("records")}


def test_counts_rows_and_patients_of_each_concept(tmp_path, study):
    m = mimic()
    inv = study_inventory(study, m.write(tmp_path / "csv"))
    rows = by_concept(inv)
    assert list(rows) == list(used_concepts(study))
    assert (rows["mg"]["rows"], rows["mg"]["patients"]) == hand_count(m, "icu/inputevents", 222011) == (3, 2)
    assert (rows["mg_lab"]["rows"], rows["mg_lab"]["patients"]) == hand_count(m, "hosp/labevents", 50960) == (4, 4)
    assert (rows["crrt_rows"]["rows"], rows["crrt_rows"]["patients"]) == (4, 4)
    assert rows["death"]["rows"] == 1 and rows["death"]["status"] == "found"  # patient 3's deathtime
    assert rows["krt"]["rows"] == 4 and rows["krt"]["kind"] == "events"
    assert rows["age"]["status"] == "not counted" and pd.isna(rows["age"]["rows"])
    assert inv.concepts["rows"].dtype == "Int64"


def test_no_rows_and_absent_table_are_named_and_the_rest_still_counted(tmp_path, study):
    inv = study_inventory(study, mimic().write(tmp_path / "csv"))
    rows = by_concept(inv)
    assert rows["wrong_itemid"]["status"] == "no rows" and rows["wrong_itemid"]["rows"] == 0
    assert rows["thiamine"]["status"] == "table absent"
    assert "hosp/prescriptions" in rows["thiamine"]["message"]
    assert pd.isna(rows["thiamine"]["rows"])
    assert not inv.ok
    assert len(inv.problems) == 2
    assert any(p.startswith("concept 'wrong_itemid': finds no rows in hosp/labevents") for p in inv.problems)
    tables = inv.tables.set_index("table")
    assert not tables.loc["hosp/prescriptions", "present"]
    assert tables.loc["hosp/prescriptions", "used_by"] == "thiamine"
    assert tables.loc["icu/inputevents", "format"] == "csv"


def test_absent_selector_column_is_named(tmp_path, study):
    folder = mimic().write(tmp_path / "csv", drop_columns={"icu/inputevents": ["statusdescription"]})
    rows = by_concept(study_inventory(study, folder))
    assert rows["mg"]["status"] == "column absent"
    assert "icu/inputevents.statusdescription" in rows["mg"]["message"]
    assert rows["mg_lab"]["status"] == "found"  # other concepts unaffected


def test_absent_required_column_and_builder_tables(tmp_path, study):
    folder = mimic().write(
        tmp_path / "csv", drop_columns={"hosp/labevents": ["valuenum"]}, omit=("hosp/diagnoses_icd",)
    )
    inv = study_inventory(study, folder)
    rows = by_concept(inv)
    assert rows["mg_lab"]["status"] == "column absent" and "hosp/labevents.valuenum" in rows["mg_lab"]["message"]
    # diagnoses_icd is read by no concept of this study: its absence is no problem any more
    assert not any("hosp/diagnoses_icd" in n for n in inv.notes)
    without_stays = study_inventory(study, mimic().write(tmp_path / "nostays", omit=("icu/icustays",)), count=False)
    assert any("icu/icustays" in n and "every study reads" in n for n in without_stays.notes)


def test_malformed_value_is_reported_with_file_column_line(tmp_path, study):
    m = mimic()
    m.rows["icu/inputevents"][1]["starttime"] = "yesterday"
    rows = by_concept(study_inventory(study, m.write(tmp_path / "csv")))
    assert rows["mg"]["status"] == "unreadable"
    assert "inputevents.csv.gz" in rows["mg"]["message"] and "'starttime'" in rows["mg"]["message"]
    assert rows["mg_lab"]["status"] == "found"


def test_truncated_gzip_is_unreadable_and_named(tmp_path, study):
    m = mimic()
    for i in range(3000):
        m.rows["hosp/labevents"].append(dict(m.rows["hosp/labevents"][0], labevent_id=10_000 + i, valuenum=i / 7))
    folder = m.write(tmp_path / "csv")
    labs = folder / "hosp" / "labevents.csv.gz"
    labs.write_bytes(labs.read_bytes()[: labs.stat().st_size // 2])
    rows = by_concept(study_inventory(study, folder))
    assert rows["mg_lab"]["status"] == "unreadable"
    # named as `run`, `convert` and `check` name it
    assert "labevents.csv.gz: the compressed file ends early" in rows["mg_lab"]["message"]
    assert "download it again" in rows["mg_lab"]["message"]
    assert rows["mg"]["status"] == "found"


def test_count_false_reads_only_headers(tmp_path, study):
    inv = study_inventory(study, mimic().write(tmp_path / "csv"), count=False)
    rows = by_concept(inv)
    assert rows["mg"]["status"] == "not counted" and pd.isna(rows["mg"]["rows"])
    assert rows["thiamine"]["status"] == "table absent"  # presence is still checked


def test_parquet_copy_gives_the_same_inventory(tmp_path, study):
    csv_folder = mimic().write(tmp_path / "csv")
    pq_folder = convert_mimic(csv_folder, tmp_path / "pq").out
    a = study_inventory(study, csv_folder).concepts
    b = study_inventory(study, pq_folder).concepts
    pd.testing.assert_frame_equal(a.drop(columns="message"), b.drop(columns="message"))
    assert set(study_inventory(study, pq_folder).tables["format"]) <= {"parquet", ""}


def test_concept_needs_lists_selector_columns(study):
    assert concept_needs(study, "mg").columns[-1] == "icu/inputevents.statusdescription"
    assert "hosp/labevents.valuenum" in concept_needs(study, "mg_lab").columns
    assert concept_needs(study, "death").tables == ("hosp/admissions", "hosp/patients")
    dx = parse_study_text(
        STUDY.replace(
            'table = "hosp/prescriptions"\ndrugs = ["thiamine"]',
            'table = "hosp/diagnoses_icd"\ncode_prefixes = ["E51"]',
        )
    )
    assert concept_needs(dx, "thiamine").tables == ("hosp/diagnoses_icd", "hosp/admissions")


def test_missing_folder(tmp_path, study):
    with pytest.raises(SourceError, match="not found"):
        study_inventory(study, tmp_path / "nope")
