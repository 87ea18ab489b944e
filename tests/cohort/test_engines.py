"""One definition, two engines: DuckDB and Spark give the same cohort.

One Spark session for the module (startup is slow on 2 cores) and one small
data set: a synthetic EHR (1,500 ICU stays) with the rule-test miniature
patients added to every table, so that the comparison covers realistic data
and every rule boundary (deaths at 47/49 h, Mg at 23:59/00:01, carriers, two
episodes, readmission, dod-only deaths, CRRT-mode charting, SOFA components)
where engines could disagree.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from retrocohort.errors import SourceError
from retrocohort.sources import generate_synthetic
from retrocohort.sources.spark import local_spark_session
from tests.cohort.legacy import extract

from .minimimic import HEADERS
from .test_rules import build

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _merge(first, second, out):
    """Each table of ``second`` appended to the same table of ``first`` (all values as text)."""
    con = duckdb.connect()
    for name in HEADERS:
        target = out / f"{name}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT * FROM read_csv('{first / name}.csv.gz', all_varchar = true, header = true) "
            f"UNION ALL BY NAME SELECT * FROM read_csv('{second / name}.csv.gz', all_varchar = true, header = true)) "
            f"TO '{target}' (FORMAT csv, HEADER true, COMPRESSION gzip)"
        )
    con.close()
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    generate_synthetic(root / "synthetic", stays=1500, seed=7)
    build().write(root / "mini")
    return _merge(root / "synthetic", root / "mini", root / "both")


def test_spark_and_duckdb_give_identical_cohorts(folder, spark):
    on_duckdb = extract(folder, engine="duckdb")
    # A caller's session in a zone with daylight saving: durations must not move by an hour,
    # and the caller gets its setting back.
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    on_spark = extract(folder, engine="spark", spark=spark)
    assert spark.conf.get("spark.sql.session.timeZone") == "America/New_York"
    assert on_spark.engine == "spark" and on_duckdb.engine == "duckdb"
    assert len(on_duckdb.data) > 60  # the comparison is not vacuous
    assert {3, 5, 7, 10, 11, 13, 25} <= set(on_duckdb.data.subject_id)  # boundary patients are in
    pd.testing.assert_frame_equal(on_spark.data, on_duckdb.data, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.attrition, on_duckdb.attrition, check_exact=True)
    pd.testing.assert_frame_equal(on_spark.screening, on_duckdb.screening, check_exact=True)
    assert on_spark.notes == on_duckdb.notes


def test_spark_malformed_timestamp_names_file_and_line(tmp_path, spark):
    m = build()
    header = HEADERS["icu/procedureevents"]
    bad = {c: "" for c in header} | {
        "subject_id": "1",
        "stay_id": "100",
        "itemid": "225802",
        "starttime": "2150-03-10T10:00",
    }
    folder = m.write(tmp_path, raw_lines={"icu/procedureevents": [",".join(bad[c] for c in header)]})
    with pytest.raises(SourceError) as err:
        extract(folder, engine="spark", spark=spark)
    message = str(err.value)
    assert "procedureevents.csv.gz" in message and "'starttime'" in message
    assert f"line {len(m.rows['icu/procedureevents']) + 2}" in message
