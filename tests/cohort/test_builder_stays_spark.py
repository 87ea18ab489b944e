"""One index per ICU stay (``select = "first_per_stay"``) on Spark gives the DuckDB cohort, including the
baseline built-ins computed per stay (age, SOFA, sepsis codes...) for patients with several index stays."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.sources import generate_synthetic
from retrocohort.sources.spark import local_spark_session
from retrocohort.spec import parse_study_text

pytestmark = [pytest.mark.spark, pytest.mark.slow]

VASOPRESSIN = Path(__file__).resolve().parents[2] / "studies" / "vasopressin_shock.toml"


def per_stay_study():
    text = VASOPRESSIN.read_text()
    text = re.sub(r'(\[index\][^\[]*?)select = "first"', r'\1select = "first_per_stay"', text, count=1, flags=re.S)
    if "first_per_stay" not in text:
        text = text.replace("[index]\n", '[index]\nselect = "first_per_stay"\n', 1)
    text = text.replace("first_icu_stay_only = true", "first_icu_stay_only = false")
    # The study's own planted patients have one stay each; without the lactate rule the norepinephrine
    # patients of the flagship generator (several ICU stays) enter too, so some patients have two index stays.
    text, n = re.subn(r'\[\[criteria\]\]\nname = "hyperlactatemia"\n.*?(?=\n\[\[criteria\]\])', "", text, flags=re.S)
    assert n == 1
    study = parse_study_text(text)
    assert study.index.select == "first_per_stay" and not study.index.first_icu_stay_only
    return study


def test_first_per_stay_on_spark_equals_duckdb(tmp_path):
    generate_synthetic(tmp_path / "ehr", stays=3000, seed=7)
    study = per_stay_study()
    on_duckdb = build_cohort(study, tmp_path / "ehr", engine="duckdb")
    # patients with two index stays, each stay its own row (else this test would prove nothing)
    assert on_duckdb.data["subject_id"].duplicated().any()
    session = local_spark_session()
    try:
        on_spark = build_cohort(study, tmp_path / "ehr", engine="spark", spark=session)
    finally:
        session.stop()
    pd.testing.assert_frame_equal(on_spark.data, on_duckdb.data)
    pd.testing.assert_frame_equal(on_spark.attrition, on_duckdb.attrition)
