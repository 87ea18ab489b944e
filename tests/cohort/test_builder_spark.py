"""One study definition, two engines: the builder gives identical cohorts on DuckDB and Spark.

The engine-parity check of tests/cohort/test_engines.py, extended to studies written in the study
language, including non-flagship ones (another index, an active comparator, a baseline value rule,
a prior-outcome washout, indicator and median missing rules).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.sources import generate_synthetic
from retrocohort.sources.spark import local_spark_session
from retrocohort.spec import load_study_file

pytestmark = [pytest.mark.spark, pytest.mark.slow]

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("builder_spark")
    generate_synthetic(root, stays=2000, seed=11)
    return root


@pytest.mark.parametrize("name", ["vasopressin_shock", "second_vasopressor", "magnesium_ckrt"])
def test_spark_and_duckdb_build_identical_cohorts(folder, spark, name):
    study = load_study_file(STUDIES / f"{name}.toml")
    on_spark = build_cohort(study, folder, engine="spark", spark=spark)
    on_duckdb = build_cohort(study, folder, engine="duckdb")
    pd.testing.assert_frame_equal(on_spark.data, on_duckdb.data)
    assert len(on_duckdb.data) > 50 and 0 < on_duckdb.data["exposed"].sum() < len(on_duckdb.data)
    pd.testing.assert_frame_equal(on_spark.attrition, on_duckdb.attrition)
    # The data checks, counted in each engine's single read of each table, on the rows the study reads.
    pd.testing.assert_frame_equal(on_spark.data_checks, on_duckdb.data_checks, check_exact=True)
    read = on_duckdb.data_checks.loc[on_duckdb.data_checks["check"].str.endswith("_rows_read"), "count"]
    assert len(read) >= 5 and (read > 0).all()
    assert on_spark.notes == on_duckdb.notes
    assert (on_spark.engine, on_duckdb.engine) == ("spark", "duckdb")
