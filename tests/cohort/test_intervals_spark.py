"""time_varying_values on Spark equals DuckDB (the keys travel as an ibis memtable on both engines)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.cohort.intervals import time_varying_values
from retrocohort.sources import MimicIV, generate_synthetic
from retrocohort.sources.spark import local_spark_session
from retrocohort.spec import parse_study_text

pytestmark = [pytest.mark.spark, pytest.mark.slow]

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_spark_and_duckdb_give_the_same_values(tmp_path):
    generate_synthetic(tmp_path, stays=2000, seed=11)
    # Without the lactate rule the norepinephrine patients of the flagship generator enter (the study's own
    # planted patients have creatinine at baseline only): their creatinine moves over the grace window.
    text = (STUDIES / "vasopressin_shock.toml").read_text()
    text, n = re.subn(r'\[\[criteria\]\]\nname = "hyperlactatemia"\n.*?(?=\n\[\[criteria\]\])', "", text, flags=re.S)
    assert n == 1
    study = parse_study_text(text)
    data = build_cohort(study, tmp_path).data
    names = ["creatinine_max", "ventilated"]
    on_duckdb = time_varying_values(tmp_path, study, data, names, grace_days=2.0, interval_days=0.25)
    session = local_spark_session()
    session.sparkContext.setLogLevel("ERROR")
    try:
        conn = MimicIV(tmp_path).connect(engine="spark", spark=session)
        try:
            on_spark = time_varying_values(conn, study, data, names, grace_days=2.0, interval_days=0.25)
        finally:
            conn.close()
    finally:
        session.stop()
    pd.testing.assert_frame_equal(on_spark, on_duckdb)
    # the data move over the window: the test compares more than the values at the index
    changed = on_duckdb.groupby("row")["creatinine_max"].nunique() > 1
    assert changed.sum() > 20
