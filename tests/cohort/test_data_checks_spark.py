"""The data checks compile to the same thing on Spark: the dirty miniature folder gives DuckDB's cohort and counts."""

from __future__ import annotations

import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.sources.spark import local_spark_session
from tests.cohort.legacy import extract

from .test_data_checks import dirty
from .test_rules import build

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_applies_every_rule_as_duckdb_does(tmp_path, spark):
    folder = dirty().write(tmp_path / "dirty")
    on_duckdb = extract(folder, engine="duckdb")
    on_spark = extract(folder, engine="spark", spark=spark)
    # Infinite amounts, rates and lab values included (ibis compiles isinf() to FALSE on Spark).
    counts = on_spark.data_checks.set_index("check")["count"]
    assert counts["inputevents_amount"] == 3 and counts["labevents_valuenum_not_finite"] == 1
    pd.testing.assert_frame_equal(on_spark.data_checks, on_duckdb.data_checks, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.data, on_duckdb.data, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.screening, on_duckdb.screening, check_exact=True)


def test_a_study_run_counts_the_same_on_spark(tmp_path, spark):
    # build_cohort counts the rules in its single read of each table (concepts/scan.py): the cached copies,
    # the counts over them and the patient restriction that keeps rows without a subject_id compile alike.
    from pathlib import Path

    from retrocohort.cohort.builder import build_cohort
    from retrocohort.spec import load_study_file

    folder = dirty().write(tmp_path / "dirty")
    study = load_study_file(Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml")
    on_duckdb = build_cohort(study, folder)
    on_spark = build_cohort(study, folder, engine="spark", spark=spark)
    counts = on_spark.data_checks.set_index("check")["count"]
    assert counts["inputevents_null_key"] == 1 and counts["inputevents_exact_duplicates"] == 2
    pd.testing.assert_frame_equal(on_spark.data_checks, on_duckdb.data_checks, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.data, on_duckdb.data, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.attrition, on_duckdb.attrition, check_exact=True)


def test_spark_stops_on_a_conflicting_key(tmp_path, spark):
    m = build()
    first = next(r for r in m.rows["hosp/patients"] if r["subject_id"] == 11)
    m.rows["hosp/patients"].append({**first, "anchor_age": 99})
    with pytest.raises(InputError, match=r"patients\.csv\.gz: 1 subject_id value\(s\).*e\.g\. subject_id 11\)"):
        extract(m.write(tmp_path / "conflict"), engine="spark", spark=spark)
