"""User concepts on every table: each selector, each table's time rule, types, absent tables and columns.

A hand-made folder; each expectation is read off the rows written here.
"""

from __future__ import annotations

import ibis
import pandas as pd
import pytest

from retrocohort.concepts import EVENT_COLUMNS, concept_events
from retrocohort.errors import SourceError, StudySpecError
from retrocohort.sources import MimicIV
from retrocohort.spec.concept import ConceptSpec

from .mini import EXTRA_HEADERS, ConceptMimic, ts

T0 = pd.Timestamp("2150-03-10 10:00:00")
H = pd.Timedelta(hours=1)


def build() -> ConceptMimic:
    m = ConceptMimic()
    m.patient(1)
    m.patient(2, gender="F")
    m.admission(1, 10, "2150-03-09 08:00:00", "2150-03-20 12:00:00")
    m.admission(2, 20, "2150-04-01 08:00:00", "2150-04-05 12:00:00")
    m.stay(1, 10, 100, "2150-03-09 10:00:00", "2150-03-15 10:00:00")
    m.stay(2, 20, 200, "2150-04-01 10:00:00", "2150-04-03 10:00:00")
    # inputevents: vasopressin x2 (one rewritten), norepinephrine, an open-ended row.
    m.input(1, 10, 100, 222315, T0, T0 + 2 * H, amount=2.4, amountuom="units", rate=2.4, rateuom="units/hour")
    m.input(1, 10, 100, 222315, T0 + H, T0 + 3 * H, amount=9.9, amountuom="units", statusdescription="Rewritten")
    m.input(1, 10, 100, 221906, T0, T0 + 5 * H, amount=4.0, amountuom="mg", rate=0.1, rateuom="mcg/kg/min")
    m.add(
        "icu/inputevents",
        subject_id=2,
        hadm_id=20,
        stay_id=200,
        starttime=ts("2150-04-01 12:00:00"),
        endtime="",
        itemid=222315,
        amount=1.0,
        amountuom="units",
        orderid=7,
        statusdescription="",
    )
    # chartevents: MAP numbers in and out of range, CRRT mode text.
    m.chart_num(1, 10, 100, 220052, T0, 65.0, "mmHg")
    m.chart_num(1, 10, 100, 220052, T0 + H, 400.0, "mmHg")
    m.chart(1, 10, 100, 227290, T0, value="CVVHDF")
    m.chart(1, 10, 100, 227290, T0 + H, value="SCUF")
    # labevents: lactate in mmol/L and a text-only row; a lab without hadm_id (outpatient).
    m.lab(1, 10, 50813, T0, 4.2)
    m.lab(1, None, 50813, T0 - 30 * 24 * H, 1.1)
    m.rows["hosp/labevents"][-1]["valueuom"] = "mmol/L"
    m.rows["hosp/labevents"][-2]["valueuom"] = "mmol/L"
    m.add(
        "hosp/labevents",
        labevent_id=99,
        subject_id=2,
        hadm_id=20,
        specimen_id=98,
        itemid=50813,
        charttime=ts("2150-04-01 11:00:00"),
        value="HEMOLYZED",
        valuenum="",
        valueuom="mmol/L",
    )
    # procedureevents: value/valueuom.
    m.procedure(1, 10, 100, 225792, T0 - 5 * H, T0 + 20 * H)
    # outputevents, datetimeevents, ingredientevents.
    m.output(1, 10, 100, 226559, T0, 120.0)
    m.output(1, 10, 100, 226560, T0 + H, 80.0)
    m.add(
        "icu/datetimeevents",
        subject_id=1,
        hadm_id=10,
        stay_id=100,
        caregiver_id=1,
        charttime=ts(T0),
        storetime=ts(T0),
        itemid=225318,
        value=ts(T0 - 48 * H),
        valueuom="Date and Time",
        warning=0,
    )
    m.add(
        "icu/datetimeevents",
        subject_id=2,
        hadm_id=20,
        stay_id=200,
        caregiver_id=1,
        charttime=ts("2150-04-01 12:00:00"),
        storetime="",
        itemid=225318,
        value="",
        valueuom="",
        warning=0,
    )
    m.add(
        "icu/ingredientevents",
        subject_id=1,
        hadm_id=10,
        stay_id=100,
        caregiver_id=1,
        starttime=ts(T0),
        endtime=ts(T0 + H),
        storetime=ts(T0),
        itemid=220490,
        amount=50.0,
        amountuom="mL",
        rate=50.0,
        rateuom="mL/hour",
        orderid=5,
        linkorderid=5,
        statusdescription="FinishedRunning",
    )
    # prescriptions: numeric dose, range dose, a topical route.
    m.prescription(1, 10, "Thiamine", T0 + H, T0 + 25 * H, dose="100", unit="mg", route="IV")
    m.prescription(1, 10, "Thiamine HCl", T0 + 2 * H, None, dose="100-200", unit="mg", route="PO/NG")
    m.prescription(2, 20, "Neomycin-Polymyxin", "2150-04-01 12:00:00", None, dose="1", unit="app", route="TP")
    # emar + emar_detail: given (parent row + child with dose), not given.
    m.add(
        "hosp/emar",
        subject_id=1,
        hadm_id=10,
        emar_id="1-1",
        emar_seq=1,
        charttime=ts(T0 + 3 * H),
        medication="Furosemide",
        event_txt="Administered",
    )
    m.add(
        "hosp/emar_detail",
        subject_id=1,
        emar_id="1-1",
        emar_seq=1,
        parent_field_ordinal="",
        route="IV",
        dose_given="",
        dose_given_unit="",
    )
    m.add(
        "hosp/emar_detail",
        subject_id=1,
        emar_id="1-1",
        emar_seq=1,
        parent_field_ordinal="1.1",
        route="",
        dose_given="40",
        dose_given_unit="mg",
    )
    m.add(
        "hosp/emar_detail",
        subject_id=1,
        emar_id="1-1",
        emar_seq=1,
        parent_field_ordinal="1.2",
        route="",
        dose_given="20",
        dose_given_unit="mg",
    )
    m.add(
        "hosp/emar",
        subject_id=1,
        hadm_id=10,
        emar_id="1-2",
        emar_seq=2,
        charttime=ts(T0 + 9 * H),
        medication="furosemide",
        event_txt="Not Given",
    )
    # pharmacy.
    m.add(
        "hosp/pharmacy",
        subject_id=2,
        hadm_id=20,
        pharmacy_id=1,
        starttime=ts("2150-04-01 12:00:00"),
        stoptime=ts("2150-04-02 12:00:00"),
        medication="Atorvastatin",
        route="PO",
        status="Discontinued",
    )
    # diagnoses and procedures.
    m.diagnosis(1, 10, "A419", 10)
    m.diagnosis(2, 20, "0389", 9)
    m.diagnosis(2, 20, "A41", 9)  # not a real ICD-9 code: version filter must keep it out of ICD-10 queries
    m.add(
        "hosp/procedures_icd",
        subject_id=1,
        hadm_id=10,
        seq_num=1,
        chartdate="2150-03-11",
        icd_code="5A1D70Z",
        icd_version=10,
    )
    # microbiology: one specimen with two organisms x antibiotics (4 rows), one date-only specimen.
    for org in ("ESCHERICHIA COLI", "ESCHERICHIA COLI", "KLEBSIELLA", "KLEBSIELLA"):
        m.culture(1, 10, 555, T0 - 2 * H, org_name=org)
    m.culture(2, 20, 777, None, spec_type="URINE", chartdate="2150-04-02")
    # transfers, services, omr.
    m.add(
        "hosp/transfers",
        subject_id=1,
        hadm_id=10,
        transfer_id=1,
        eventtype="admit",
        careunit="Emergency Department",
        intime=ts("2150-03-09 08:00:00"),
        outtime=ts("2150-03-09 10:00:00"),
    )
    m.add(
        "hosp/transfers",
        subject_id=1,
        hadm_id=10,
        transfer_id=2,
        eventtype="transfer",
        careunit="Medical Intensive Care Unit (MICU)",
        intime=ts("2150-03-09 10:00:00"),
        outtime=ts("2150-03-15 10:00:00"),
    )
    m.add(
        "hosp/transfers",
        subject_id=1,
        hadm_id=10,
        transfer_id=3,
        eventtype="discharge",
        careunit="",
        intime=ts("2150-03-20 12:00:00"),
        outtime="",
    )
    m.add(
        "hosp/services",
        subject_id=2,
        hadm_id=20,
        transfertime=ts("2150-04-01 08:00:00"),
        prev_service="",
        curr_service="CSURG",
    )
    m.add("hosp/omr", subject_id=1, chartdate="2149-12-01", seq_num=1, result_name="Weight (Lbs)", result_value="180.5")
    m.add(
        "hosp/omr", subject_id=1, chartdate="2149-12-01", seq_num=1, result_name="Blood Pressure", result_value="120/80"
    )
    return m


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build().write(tmp_path_factory.mktemp("tables"))


@pytest.fixture(scope="module")
def conn(folder):
    c = MimicIV(folder).connect()
    yield c
    c.close()


def run(conn, **spec) -> pd.DataFrame:
    expr = concept_events(conn, ConceptSpec(**spec))
    assert tuple(expr.columns) == EVENT_COLUMNS
    return conn.backend.execute(expr).sort_values(["subject_id", "start_time"]).reset_index(drop=True)


def test_event_schema(conn):
    expr = concept_events(conn, ConceptSpec(table="icu/inputevents", itemids=[222315]))
    schema = expr.schema()
    assert [str(schema[c]).replace("!", "") for c in EVENT_COLUMNS] == [
        "int64",
        "int64",
        "int64",
        "timestamp",
        "timestamp",
        "float64",
        "float64",
        "string",
    ]


def test_inputevents_itemids_status_and_open_end(conn):
    got = run(conn, table="icu/inputevents", itemids=[222315])
    assert len(got) == 3
    got = run(conn, table="icu/inputevents", itemids=[222315], status_exclude=["rewritten"])
    assert list(got.amount) == [2.4, 1.0] and list(got.unit) == ["units", "units"]
    assert list(got.stay_id) == [100, 200]
    # No endtime: instantaneous (end = start).
    assert got.end_time[1] == got.start_time[1] == pd.Timestamp("2150-04-01 12:00:00")
    assert got.end_time[0] == T0 + 2 * H
    got = run(conn, table="icu/inputevents", exclude_itemids=[222315])
    assert list(got.amount) == [4.0]


def test_value_range_and_units(conn):
    got = run(conn, table="icu/chartevents", itemids=[220052], value_min=10, value_max=300)
    assert list(got.value) == [65.0] and list(got.unit) == ["mmHg"]
    assert run(conn, table="icu/chartevents", itemids=[220052], units=["mmhg"]).shape[0] == 2
    assert run(conn, table="icu/chartevents", itemids=[220052], units=["kPa"]).empty
    # Bounds are closed.
    assert list(run(conn, table="icu/chartevents", itemids=[220052], value_min=65, value_max=65).value) == [65.0]


def test_chartevents_text_values(conn):
    got = run(conn, table="icu/chartevents", itemids=[227290], values=["scuf"])
    assert list(got.start_time) == [T0 + H] and got.value.isna().all()


def test_labevents_nullable_admission_and_text_only_rows(conn):
    got = run(conn, table="hosp/labevents", itemids=[50813])
    assert len(got) == 3
    assert pd.isna(got.hadm_id[0]) and got.hadm_id[1] == 10 and got.stay_id.isna().all()
    assert got.value.isna().sum() == 1  # 'HEMOLYZED' has no number
    assert list(run(conn, table="hosp/labevents", itemids=[50813], values=["hemolyzed"]).subject_id) == [2]
    assert list(run(conn, table="hosp/labevents", itemids=[50813], value_min=2.0).value) == [4.2]


def test_procedureevents_value_and_unit(conn):
    got = run(conn, table="icu/procedureevents", itemids=[225792])
    assert list(got.value) == [25 * 60.0] and list(got.unit) == ["min"]
    assert got.end_time[0] - got.start_time[0] == 25 * H


def test_outputevents_amount_is_the_volume(conn):
    got = run(conn, table="icu/outputevents", itemids=[226559, 226560])
    assert list(got.amount) == [120.0, 80.0] and list(got.value) == [120.0, 80.0]


def test_datetimeevents_dated_by_the_recorded_time(conn):
    got = run(conn, table="icu/datetimeevents", itemids=[225318])
    assert list(got.start_time) == [T0 - 48 * H, pd.Timestamp("2150-04-01 12:00:00")]  # else charttime


def test_ingredientevents(conn):
    got = run(conn, table="icu/ingredientevents", itemids=[220490], units=["ml"])
    assert list(got.amount) == [50.0] and got.end_time[0] == T0 + H


def test_prescriptions_drug_substring_route_and_dose_text(conn):
    got = run(conn, table="hosp/prescriptions", drugs=["THIAMINE"])
    assert len(got) == 2
    assert got.value[0] == 100.0 and pd.isna(got.value[1])  # "100-200" is not a number: null, not 100
    assert got.end_time[1] == got.start_time[1]  # no stoptime
    assert len(run(conn, table="hosp/prescriptions", drugs=["thiamine"], routes=["iv"])) == 1
    assert run(conn, table="hosp/prescriptions", drugs=["thiamine"], value_min=150).empty
    assert list(run(conn, table="hosp/prescriptions", drugs=["neomycin", "thiamine"]).subject_id) == [1, 1, 2]


def test_emar_dose_from_detail_and_not_given_status(conn):
    got = run(conn, table="hosp/emar", drugs=["furosemide"])
    assert len(got) == 2
    got = run(conn, table="hosp/emar", drugs=["furosemide"], status_exclude=["Not Given"])
    assert list(got.amount) == [60.0] and list(got.unit) == ["mg"]  # 40 + 20 from the child rows
    assert len(run(conn, table="hosp/emar", drugs=["furosemide"], routes=["IV"])) == 1


def test_pharmacy(conn):
    got = run(conn, table="hosp/pharmacy", drugs=["statin"], routes=["po"])
    assert list(got.subject_id) == [2] and got.end_time[0] == pd.Timestamp("2150-04-02 12:00:00")
    assert run(conn, table="hosp/pharmacy", drugs=["statin"], status_exclude=["discontinued"]).empty


def test_diagnoses_dated_at_discharge_or_admission(conn):
    got = run(conn, table="hosp/diagnoses_icd", code_prefixes=["A41"], icd_version=10)
    assert list(got.subject_id) == [1]
    assert got.start_time[0] == pd.Timestamp("2150-03-20 12:00:00")  # known at discharge
    got = run(conn, table="hosp/diagnoses_icd", code_prefixes=["A41"], icd_version=10, dated_at="admission")
    assert got.start_time[0] == pd.Timestamp("2150-03-09 08:00:00")
    assert got.end_time[0] == pd.Timestamp("2150-03-20 12:00:00")
    # Without a version both match; exact codes ignore dots.
    assert len(run(conn, table="hosp/diagnoses_icd", code_prefixes=["A41"])) == 2
    assert list(run(conn, table="hosp/diagnoses_icd", codes=["038.9"]).subject_id) == [2]


def test_procedures_icd_at_chartdate(conn):
    got = run(conn, table="hosp/procedures_icd", codes=["5A1D70Z"])
    assert list(got.start_time) == [pd.Timestamp("2150-03-11 00:00:00")]


def test_microbiology_one_event_per_specimen(conn):
    got = run(conn, table="hosp/microbiologyevents", names=["blood culture"])
    assert len(got) == 1 and got.start_time[0] == T0 - 2 * H
    assert len(run(conn, table="hosp/microbiologyevents", organisms=["klebsiella"])) == 1
    urine = run(conn, table="hosp/microbiologyevents", names=["URINE"])
    assert list(urine.start_time) == [pd.Timestamp("2150-04-02 00:00:00")]  # chartdate when no charttime


def test_transfers_services_omr(conn):
    got = run(conn, table="hosp/transfers", names=["medical intensive care unit (micu)"])
    assert list(got.end_time) == [pd.Timestamp("2150-03-15 10:00:00")]
    assert len(run(conn, table="hosp/transfers", values=["discharge"])) == 1
    assert len(run(conn, table="hosp/transfers")) == 3
    assert list(run(conn, table="hosp/services", names=["csurg"]).hadm_id) == [20]
    omr = run(conn, table="hosp/omr", names=["Weight (Lbs)", "Blood Pressure"])
    assert sorted(omr.value.dropna()) == [180.5]  # "120/80" is not one number
    assert omr.hadm_id.isna().all()
    assert len(run(conn, table="hosp/omr", names=["Weight (Lbs)"], value_min=200)) == 0


def test_predicates_are_pushed_into_the_scan(conn):
    expr = concept_events(conn, ConceptSpec(table="icu/chartevents", itemids=[220052], value_min=10))
    sql = str(ibis.to_sql(expr, dialect="duckdb"))
    # One SELECT over the chartevents view, filtered in its own WHERE (no subquery between scan and filter).
    assert sql.count("FROM") == 1 and "WHERE" in sql and "220052" in sql


def test_unknown_builtin_and_wrong_kind(conn):
    with pytest.raises(StudySpecError, match="did you mean 'lactate'"):
        concept_events(conn, "lactat")
    with pytest.raises(StudySpecError, match="gives baseline values"):
        concept_events(conn, "sofa")


def test_absent_table_is_named_and_connect_does_not_need_it(tmp_path):
    folder = build().write(tmp_path, omit=("hosp/prescriptions",))
    conn = MimicIV(folder).connect()  # the flagship tables are all there: fine
    try:
        with pytest.raises(SourceError, match=r"hosp/prescriptions not found.*concept"):
            concept_events(conn, ConceptSpec(table="hosp/prescriptions", drugs=["x"]))
        assert not conn.concept_has_table("hosp/prescriptions") and conn.concept_has_table("hosp/pharmacy")
    finally:
        conn.close()


def test_absent_column_a_selector_needs_is_named(tmp_path):
    folder = build().write(
        tmp_path, drop_columns={"hosp/labevents": ["valueuom"], "hosp/emar_detail": []}, omit=("hosp/emar_detail",)
    )
    conn = MimicIV(folder).connect()
    try:
        # Without the selector the concept still works (unit is null).
        assert (
            conn.backend.execute(concept_events(conn, ConceptSpec(table="hosp/labevents", itemids=[50813])))
            .unit.isna()
            .all()
        )
        with pytest.raises(SourceError, match=r"hosp/labevents has no column 'valueuom'.*'units'"):
            concept_events(conn, ConceptSpec(table="hosp/labevents", itemids=[50813], units=["mmol/L"]))
        with pytest.raises(SourceError, match=r"emar_detail not found.*'routes'"):
            concept_events(conn, ConceptSpec(table="hosp/emar", drugs=["furosemide"], routes=["IV"]))
        got = conn.backend.execute(concept_events(conn, ConceptSpec(table="hosp/emar", drugs=["furosemide"])))
        assert len(got) == 2 and got.amount.isna().all()
    finally:
        conn.close()


def test_required_column_missing_names_file_and_column(tmp_path):
    folder = build().write(tmp_path, drop_columns={"hosp/prescriptions": ["drug"]})
    conn = MimicIV(folder).connect()
    try:
        with pytest.raises(SourceError, match=r"prescriptions\.csv\.gz: column\(s\) 'drug' missing"):
            concept_events(conn, ConceptSpec(table="hosp/prescriptions", drugs=["x"]))
    finally:
        conn.close()


def test_malformed_value_in_a_concept_table_names_file_column_line(tmp_path):
    m = build()
    header = EXTRA_HEADERS["hosp/prescriptions"]
    row = {c: "" for c in header} | {
        "subject_id": "3",
        "hadm_id": "30",
        "starttime": "2150-13-45 25:00:00",
        "drug": "x",
    }
    bad = ",".join(row[c] for c in header)
    folder = m.write(tmp_path, raw_lines={"hosp/prescriptions": [bad]})
    conn = MimicIV(folder).connect()
    try:
        with pytest.raises(SourceError, match=r"prescriptions.*starttime.*line"), conn.errors():
            conn.backend.execute(concept_events(conn, ConceptSpec(table="hosp/prescriptions", drugs=["x"])))
    finally:
        conn.close()


def test_parquet_copy_gives_the_same_events(folder, conn, tmp_path):
    import duckdb

    out = tmp_path / "parquet"
    con = duckdb.connect()
    for path in sorted(folder.glob("*/*.csv.gz")):
        target = out / path.parent.name / path.name.replace(".csv.gz", ".parquet")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Text columns, as a generic conversion writes them: the concept views cast to the declared types.
        con.execute(
            f"COPY (SELECT * FROM read_csv('{path}', all_varchar = true, header = true)) TO '{target}' (FORMAT parquet)"
        )
    con.close()
    pq = MimicIV(out).connect()
    try:
        for spec in (
            {"table": "hosp/prescriptions", "drugs": ["thiamine"]},
            {"table": "hosp/emar", "drugs": ["furosemide"]},
            {"table": "hosp/diagnoses_icd", "code_prefixes": ["A41"]},
            {"table": "icu/chartevents", "itemids": [220052]},
            {"table": "hosp/omr", "names": ["Weight (Lbs)"]},
            {"table": "hosp/microbiologyevents", "names": ["urine"]},
        ):
            a = run(conn, **spec)
            b = pq.backend.execute(concept_events(pq, ConceptSpec(**spec)))
            b = b.sort_values(["subject_id", "start_time"]).reset_index(drop=True)
            assert len(a) > 0
            pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=spec["table"])
    finally:
        pq.close()


def test_hostile_strings_are_literals(conn):
    # SQL quotes and LIKE wildcards in a selector are plain characters, not syntax or patterns.
    assert run(conn, table="hosp/prescriptions", drugs=["thiamine' OR '1'='1"]).empty
    assert run(conn, table="hosp/prescriptions", drugs=["%"]).empty
    assert run(conn, table="hosp/prescriptions", drugs=["_hiamine"]).empty


def test_shared_scan_gives_each_concepts_rows_from_one_read(conn):
    from retrocohort.concepts import shared_user_events

    concepts = {
        "map": ConceptSpec(table="icu/chartevents", itemids=[220052], value_max=300),
        "crrt_mode": ConceptSpec(table="icu/chartevents", itemids=[227290], values=["cvvhdf"]),
        "thiamine": ConceptSpec(table="hosp/prescriptions", drugs=["thiamine"], routes=["iv"]),
        "any_rx": ConceptSpec(table="hosp/prescriptions", drugs=["neomycin", "thiamine"]),
        "furosemide": ConceptSpec(table="hosp/emar", drugs=["furosemide"], status_exclude=["not given"]),
        "sepsis_dx": ConceptSpec(table="hosp/diagnoses_icd", code_prefixes=["A41"], icd_version=10),
        "sepsis_dx9": ConceptSpec(table="hosp/diagnoses_icd", code_prefixes=["038"], dated_at="admission"),
    }
    shared = shared_user_events(conn, concepts)
    try:
        for name, concept in concepts.items():
            alone = run(conn, **concept.model_dump())
            got = conn.backend.execute(shared.events[name]).sort_values(["subject_id", "start_time"])
            pd.testing.assert_frame_equal(alone, got.reset_index(drop=True), check_dtype=False, obj=name)
            assert len(alone) > 0, name
        # Tables read by two concepts are answered from the cached copy, not from the file's view.
        assert len(shared.cached) == 3
        for name in ("map", "crrt_mode", "thiamine", "any_rx", "sepsis_dx"):
            sql = str(ibis.to_sql(shared.events[name], dialect="duckdb"))
            assert "rc_concept_" not in sql.split("JOIN")[0], name
    finally:
        shared.release()

    only_two = shared_user_events(conn, concepts, subjects=ibis.memtable({"subject_id": [2]}))
    try:
        assert set(conn.backend.execute(only_two.events["any_rx"]).subject_id) == {2}
        assert conn.backend.execute(only_two.events["thiamine"]).empty
    finally:
        only_two.release()
