"""``retrocohort run --engine spark`` end to end: the same results.json as on DuckDB.

The cohort-level parity test (tests/cohort/test_engines.py) shows that both
engines build identical analysis frames; this one runs the whole command twice
on one small synthetic EHR written by ``retrocohort synth`` (typer's CliRunner,
in process, as tests/test_cli.py does) and compares the two results.json
documents: attrition and counts exactly, every float (hazard ratios, CIs,
sHRs, p-values, test statistics, balance SMDs, E-values) to 1e-9 relative.

The EHR is small enough for two runs and one Spark start to fit in about a
minute on 2 cores, and large enough that no model is skipped for lack of
events and no count in the comparison is small-cell suppressed. The Spark run
is made from an empty working directory so that the test also sees what a run
leaves behind there (nothing: no metastore_db/, derby.log or spark-warehouse/).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from retrocohort.cli import app
from retrocohort.cohort import extract
from retrocohort.cohort.spark import SparkUnavailableError
from retrocohort.study.outputs import validate_results_document

# One worker runs every Spark test (pytest -n 2 --dist loadgroup): two JVMs at once on 2 cores
# would make both slow, and they would share nothing.
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.xdist_group("spark")]

runner = CliRunner()
STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"
#: Size and seed of the synthetic EHR: see the module docstring for why this size.
STAYS, SEED = 5000, 20231103
#: The matched, adjusted primary models (the published "adjusted HR" and sHR).
PRIMARY = (("death_90d", "cox_adjusted", "matched"), ("krt_liberation_90d", "fine_gray_adjusted", "matched"))
#: Provenance entries that differ between two runs by design (engine, timings, installed packages).
RUN_SPECIFIC = {"engine", "packages", "stage_seconds", "elapsed_seconds"}


def invoke(*args: Any) -> tuple[Any, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    return result, text


def _spark_running() -> bool:
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    """The synthetic EHR both runs read, written by `retrocohort synth`."""
    path = tmp_path_factory.mktemp("cli-spark-ehr") / "ehr"
    result, text = invoke("synth", "--out", path, "--stays", STAYS, "--seed", SEED)
    assert result.exit_code == 0, text
    return path


@pytest.fixture(scope="module")
def runs(ehr, tmp_path_factory) -> dict[str, Any]:
    """Both engines' results.json on one synthetic EHR, with each run's wall time and what it left behind."""
    root = tmp_path_factory.mktemp("cli-spark")
    out: dict[str, Any] = {}
    for engine in ("duckdb", "spark"):
        workdir = root / f"cwd-{engine}"
        workdir.mkdir()
        spark_before = _spark_running()
        started = time.perf_counter()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(workdir)
            result, text = invoke("run", STUDY_FILE, "--mimic", ehr, "--engine", engine, "--out", "out")
        seconds = time.perf_counter() - started
        assert result.exit_code == 0, f"--engine {engine} failed:\n{text}\n{result.exception!r}"
        out[engine] = {
            "doc": json.loads((workdir / "out" / "results.json").read_text()),
            "text": text,
            "seconds": seconds,
            "left_behind": sorted(p.name for p in workdir.iterdir() if p.name != "out"),
            "spark_before": spark_before,
            "spark_after": _spark_running(),
        }
    return out


def _differences(spark: Any, duckdb: Any, where: str = "") -> list[str]:
    """Where two JSON values differ: ints, strings, booleans and nulls exactly; floats to 1e-9 relative."""
    if isinstance(duckdb, dict) and isinstance(spark, dict):
        if spark.keys() != duckdb.keys():
            return [f"{where}: keys {sorted(spark)} on Spark, {sorted(duckdb)} on DuckDB"]
        return [d for key in duckdb for d in _differences(spark[key], duckdb[key], f"{where}.{key}")]
    if isinstance(duckdb, list) and isinstance(spark, list):
        if len(spark) != len(duckdb):
            return [f"{where}: {len(spark)} items on Spark, {len(duckdb)} on DuckDB"]
        return [d for i, (s, k) in enumerate(zip(spark, duckdb)) for d in _differences(s, k, f"{where}[{i}]")]
    if isinstance(duckdb, float) and isinstance(spark, float):
        if math.isclose(spark, duckdb, rel_tol=1e-9, abs_tol=0.0):
            return []
        return [f"{where}: {spark!r} on Spark, {duckdb!r} on DuckDB (relative {abs(spark - duckdb) / abs(duckdb):.2e})"]
    if type(spark) is not type(duckdb) or spark != duckdb:
        return [f"{where}: {spark!r} on Spark, {duckdb!r} on DuckDB"]
    return []


def _without_run_specifics(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "provenance": {k: v for k, v in doc["provenance"].items() if k not in RUN_SPECIFIC}}


def test_the_comparison_is_not_vacuous(runs):
    """The EHR is big enough: every model fitted, events in both arms, no count suppressed."""
    doc = runs["duckdb"]["doc"]
    validate_results_document(doc)
    counts = doc["counts"]
    assert all(isinstance(v, int) and v >= doc["small_cell_threshold"] for v in counts.values()), counts
    assert [row["remaining"] for row in doc["attrition"]][0] == counts["screened"]
    # The only skipped model is the one skipped by design (Fine-Gray takes no case weights).
    skipped = {(s["outcome"], s["model"], s["population"]) for s in doc["skipped"]}
    assert skipped <= {("krt_liberation_90d", "fine_gray_unadjusted", "iptw")}, doc["skipped"]
    estimates = {(e["outcome"], e["model"], e["population"]): e for e in doc["estimates"]}
    for key in PRIMARY:
        e = estimates[key]
        assert all(isinstance(e[k], float) and math.isfinite(e[k]) for k in ("estimate", "lower", "upper", "p")), e
        assert e["lower"] < e["estimate"] < e["upper"]
    assert len(estimates) >= 6
    assert doc["tests"]["logrank_death"]["statistic"] > 0 and doc["tests"]["gray_krt"]["statistic"] > 0
    assert doc["balance"] and all(isinstance(b["smd_after"], float) for b in doc["balance"].values())


def test_spark_run_reports_the_duckdb_results(runs):
    spark, duckdb = runs["spark"]["doc"], runs["duckdb"]["doc"]
    validate_results_document(spark)
    # The sections the study is judged on, each reported on its own, then the whole document.
    for section in ("attrition", "counts", "dose_meq", "estimates", "balance", "tests", "e_value", "skipped"):
        assert not (diff := _differences(spark[section], duckdb[section], section)), "\n".join(diff[:20])
    diff = _differences(_without_run_specifics(spark), _without_run_specifics(duckdb))
    assert not diff, "\n".join(diff[:20])


def test_spark_run_says_it_ran_on_spark(runs):
    spark, duckdb = runs["spark"]["doc"], runs["duckdb"]["doc"]
    assert spark["provenance"]["engine"] == "spark" and duckdb["provenance"]["engine"] == "duckdb"
    assert "pyspark" in spark["provenance"]["packages"] and "pyspark" not in duckdb["provenance"]["packages"]
    # Same data, same design: the fingerprints agree.
    assert spark["provenance"]["data_fingerprint"] == duckdb["provenance"]["data_fingerprint"] is not None
    assert spark["provenance"]["study_fingerprint"] == duckdb["provenance"]["study_fingerprint"]


def test_spark_run_leaves_nothing_behind(runs):
    """No metastore, Derby log or warehouse folder in the working directory; the session it started is stopped."""
    assert runs["spark"]["left_behind"] == [], runs["spark"]["left_behind"]
    if not runs["spark"]["spark_before"]:
        assert not runs["spark"]["spark_after"], "the local Spark session the run started is still running"


def test_without_pyspark_the_spark_engine_says_what_to_install(ehr, monkeypatch):
    for module in ("pyspark", "pyspark.sql"):
        monkeypatch.setitem(sys.modules, module, None)  # `import pyspark` now raises ImportError
    with pytest.raises(SparkUnavailableError, match=r"pip install 'retrocohort\[spark\]'.*--engine duckdb"):
        extract(ehr, engine="spark")


def test_without_java_the_cli_exits_2_with_a_readable_error(ehr, tmp_path):
    """A fresh process (the JVM is started once per process) whose JAVA_HOME points nowhere."""
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    proc = subprocess.run(
        [sys.executable, "-m", "retrocohort.cli", "run", str(STUDY_FILE), "--mimic", str(ehr), "--engine", "spark",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, text
    assert "could not start a local Spark session" in text and "Java 17" in text and "--engine duckdb" in text
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists()
