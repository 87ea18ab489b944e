"""``--engine spark`` prints our one-line error, not Spark's Java stack trace before it.

Spark logs a failed task at ERROR with its whole Java stack trace straight from the JVM to the terminal;
the local session starts its JVM with a log4j2 configuration that keeps only FATAL lines
(:data:`retrocohort.sources.spark.QUIET_LOG4J2`). A fresh process, because the JVM starts once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.sources.spark import QUIET_LOG4J2, quiet_log4j2_file
from tests.cohort.minimimic import MiniMimic

STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


def test_the_log4j2_file_keeps_only_fatal_lines():
    path = quiet_log4j2_file()
    assert path.read_text() == QUIET_LOG4J2
    assert "rootLogger.level = fatal" in QUIET_LOG4J2
    assert "org.apache.spark.api.python.PythonGatewayServer" in QUIET_LOG4J2
    assert quiet_log4j2_file() == path  # written once, reused


@pytest.mark.spark
@pytest.mark.slow
def test_a_bad_value_on_spark_prints_one_line_and_no_java_stack(tmp_path):
    m = MiniMimic()
    m.ckrt_patient(1)
    p = m.ckrt_patient(2)
    m.magnesium(2, p["hadm_id"], p["stay_id"], p["index"] + pd.Timedelta(hours=3))
    m.rows["icu/inputevents"][0]["amount"] = "lots"
    folder = m.write(tmp_path / "bad")
    command = [sys.executable, "-m", "retrocohort.cli", "run", str(STUDY_FILE), "--mimic", str(folder)]
    proc = subprocess.run(
        [*command, "--engine", "spark", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
        timeout=600,
    )
    err = proc.stderr
    assert proc.returncode == 2, err[-3000:]
    assert "column 'amount'" in err and "'lots'" in err
    # no Java stack trace, no Spark log line, no Python traceback
    for noise in ("\tat org.apache", "ERROR Executor", "Exception in task", "WARN ", "Setting default log level"):
        assert noise not in err, (noise, err[-3000:])
    assert "Traceback" not in err
