"""One definition, two engines: every concept gives identical rows on DuckDB and Spark.

The hand-made folders of test_tables.py and test_builtins.py (every table,
every built-in, every rule boundary) merged into one, read by both engines.
"""

from __future__ import annotations

import ibis
import pandas as pd
import pytest

from retrocohort.concepts import baseline_values, concept_events, finish_baseline
from retrocohort.sources import MimicIV
from retrocohort.sources.spark import local_spark_session
from retrocohort.spec.catalogue import BASELINE_BUILTINS, EVENT_BUILTINS
from retrocohort.spec.concept import ConceptSpec

from . import test_builtins, test_tables

pytestmark = [pytest.mark.spark, pytest.mark.slow]

USER_CONCEPTS = [
    ConceptSpec(table="icu/inputevents", itemids=[222315], status_exclude=["Rewritten"]),
    ConceptSpec(table="icu/chartevents", itemids=[220052], value_min=10, value_max=300, units=["mmHg"]),
    ConceptSpec(table="icu/chartevents", itemids=[227290], values=["scuf"]),
    ConceptSpec(table="hosp/labevents", itemids=[50813]),
    ConceptSpec(table="icu/procedureevents", itemids=[225792]),
    ConceptSpec(table="icu/outputevents", itemids=[226559, 226560]),
    ConceptSpec(table="icu/datetimeevents", itemids=[225318]),
    ConceptSpec(table="icu/ingredientevents", itemids=[220490]),
    ConceptSpec(table="hosp/prescriptions", drugs=["thiamine", "vanco"]),
    ConceptSpec(table="hosp/emar", drugs=["furosemide"], status_exclude=["not given"]),
    ConceptSpec(table="hosp/pharmacy", drugs=["statin"]),
    ConceptSpec(table="hosp/diagnoses_icd", code_prefixes=["A41", "038"]),
    ConceptSpec(table="hosp/diagnoses_icd", codes=["A419"], icd_version=10, dated_at="admission"),
    ConceptSpec(table="hosp/procedures_icd", codes=["5A1D70Z"]),
    ConceptSpec(table="hosp/microbiologyevents", names=["blood culture", "urine"]),
    ConceptSpec(table="hosp/transfers"),
    ConceptSpec(table="hosp/services", names=["csurg"]),
    ConceptSpec(table="hosp/omr", names=["Weight (Lbs)", "Blood Pressure"]),
]


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    m = test_tables.build()
    extra = test_builtins.build()
    # The builtins folder's subjects 1-8 collide with test_tables' 1-2: shift them by 100.
    for table, rows in extra.rows.items():
        for row in rows:
            shifted = dict(row)
            for key in ("subject_id", "hadm_id", "stay_id"):
                if shifted.get(key) not in (None, ""):
                    shifted[key] = int(shifted[key]) + 1000 * (key != "subject_id") + 100
            m.rows[table].append(shifted)
    return m.write(tmp_path_factory.mktemp("spark"))


@pytest.fixture(scope="module")
def engines(folder, spark):
    duck = MimicIV(folder).connect("duckdb")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")  # DST must not move any time
    spk = MimicIV(folder).connect("spark", spark=spark)
    yield duck, spk
    duck.close()
    spk.close()


def _frame(conn, expr) -> pd.DataFrame:
    out = conn.backend.execute(expr)
    for col in out.columns:
        if str(out[col].dtype).startswith("datetime64"):
            out[col] = out[col].astype("datetime64[ns]")
    return out.sort_values(list(out.columns), na_position="last").reset_index(drop=True)


def _keys(conn):
    ids = [101, 102, 103, 104, 105, 106, 107, 108, 1, 2]
    frame = pd.DataFrame(
        {
            "subject_id": ids,
            "hadm_id": [(i - 100) * 10 + 1100 if i > 100 else i * 10 for i in ids],
            "stay_id": [(i - 100) * 100 + 1100 if i > 100 else i * 100 for i in ids],
            "index_time": [test_builtins.T] * 10,
        }
    )
    return ibis.memtable(frame)


def test_user_concepts_identical(engines):
    duck, spk = engines
    nonempty = 0
    for concept in USER_CONCEPTS:
        a = _frame(duck, concept_events(duck, concept))
        b = _frame(spk, concept_events(spk, concept))
        nonempty += len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True, obj=concept.table)
    assert nonempty == len(USER_CONCEPTS)


def test_event_builtins_identical(engines):
    duck, spk = engines
    for name in EVENT_BUILTINS:
        a = _frame(duck, concept_events(duck, name))
        b = _frame(spk, concept_events(spk, name))
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True, obj=name)


def test_baseline_builtins_identical(engines):
    duck, spk = engines
    for name in BASELINE_BUILTINS:
        a = finish_baseline(name, _frame(duck, baseline_values(duck, name, _keys(duck))))
        b = finish_baseline(name, _frame(spk, baseline_values(spk, name, _keys(spk))))
        assert len(a) == 10, name
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True, obj=name)


def test_spark_malformed_value_in_a_concept_table_names_file_column_line(tmp_path, spark):
    from retrocohort.errors import SourceError

    from .mini import EXTRA_HEADERS

    m = test_tables.build()
    header = EXTRA_HEADERS["hosp/prescriptions"]
    row = {c: "" for c in header} | {"subject_id": "3", "hadm_id": "30", "starttime": "2150-03-10T10:00", "drug": "x"}
    folder = m.write(tmp_path, raw_lines={"hosp/prescriptions": [",".join(row[c] for c in header)]})
    conn = MimicIV(folder).connect("spark", spark=spark)
    try:
        with pytest.raises(SourceError, match=r"prescriptions\.csv\.gz: column 'starttime', line \d+"), conn.errors():
            conn.backend.execute(concept_events(conn, ConceptSpec(table="hosp/prescriptions", drugs=["x"])))
    finally:
        conn.close()
