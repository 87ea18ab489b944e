"""``retrocohort run --engine spark`` end to end: the same results.json as on DuckDB.

The cohort-level parity test (tests/cohort/test_engines.py) shows that both
engines build identical analysis frames; this one runs the whole command twice
on one small synthetic EHR written by ``retrocohort synth`` (typer's CliRunner,
in process, as tests/test_cli.py does) and compares the two results.json
documents: attrition and counts exactly, every float (hazard ratios, CIs,
sHRs, p-values, test statistics, balance SMDs, E-values) to 1e-9 relative.
It does so for the flagship and for a study of another design
(``studies/vasopressin_shock.toml``: another index event, a competing outcome
other than liberation, subgroups), both on the same synthetic EHR.

The EHR is small enough for two runs and one Spark start to fit in about a
minute on 2 cores, and large enough that no model is skipped for lack of
events and no count in the comparison is small-cell suppressed. The Spark run
is made from an empty working directory so that the test also sees what a run
leaves behind there (nothing: no metastore_db/, derby.log or spark-warehouse/).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from retrocohort.cli import app
from retrocohort.errors import SparkUnavailableError
from retrocohort.sources import generate_synthetic
from retrocohort.study.outputs import validate_results_document
from tests.cohort.legacy import extract

# Meant to put every Spark test on one worker under `pytest --dist loadgroup` (two JVMs at once on 2 cores
# slow both down); see the note in the first test for why it does not. `make test` uses --dist loadscope,
# which keeps this module (and its fixture: one Spark start, four study runs) on one worker.
pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.xdist_group("spark")]

runner = CliRunner()
STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"
#: The studies whose two runs are compared: the flagship and one of another design.
STUDIES = ("magnesium_ckrt", "vasopressin_shock")
#: Size and seed of the synthetic EHR: see the module docstring for why this size.
STAYS, SEED = 5000, 20231103
#: The matched, adjusted primary models of each study (one per outcome).
PRIMARY = {
    "magnesium_ckrt": (("death", "cox_adjusted", "matched"), ("krt_liberation", "fine_gray_adjusted", "matched")),
    "vasopressin_shock": (("death", "cox_adjusted", "matched"), ("krt_initiation", "fine_gray_adjusted", "matched")),
}
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
    """Both engines' results.json of each study on one synthetic EHR, and what each run left behind."""
    root = tmp_path_factory.mktemp("cli-spark")
    out: dict[str, Any] = {}
    for study in STUDIES:
        for engine in ("duckdb", "spark"):
            workdir = root / f"cwd-{study}-{engine}"
            workdir.mkdir()
            spark_before = _spark_running()
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(workdir)
                result, text = invoke(
                    "run", STUDY_FILE.parent / f"{study}.toml", "--mimic", ehr, "--engine", engine, "--out", "out"
                )
            assert result.exit_code == 0, f"{study} --engine {engine} failed:\n{text}\n{result.exception!r}"
            out[(study, engine)] = {
                "doc": json.loads((workdir / "out" / "results.json").read_text()),
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
        return [
            d for i, (s, k) in enumerate(zip(spark, duckdb, strict=True)) for d in _differences(s, k, f"{where}[{i}]")
        ]
    if isinstance(duckdb, float) and isinstance(spark, float):
        if math.isclose(spark, duckdb, rel_tol=1e-9, abs_tol=0.0):
            return []
        return [f"{where}: {spark!r} on Spark, {duckdb!r} on DuckDB"]
    if type(spark) is not type(duckdb) or spark != duckdb:
        return [f"{where}: {spark!r} on Spark, {duckdb!r} on DuckDB"]
    return []


def _without_run_specifics(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "provenance": {k: v for k, v in doc["provenance"].items() if k not in RUN_SPECIFIC}}


@pytest.mark.parametrize("study", STUDIES)
def test_spark_run_reports_the_duckdb_results(runs, study):
    # One test, not one per check: with pytest 9.2 and pytest-xdist 3.8 the xdist_group mark is
    # ignored (pytest-xdist#1386), so tests of this module could land on both workers and each
    # would build the module fixture, i.e. a second Spark start and two more study runs.
    spark, duckdb = runs[(study, "spark")]["doc"], runs[(study, "duckdb")]["doc"]
    validate_results_document(spark)
    validate_results_document(duckdb)

    # Not vacuous: every model fitted, events in both arms, no count small-cell suppressed.
    counts = duckdb["counts"]
    assert all(isinstance(v, int) and v >= duckdb["small_cell_threshold"] for v in counts.values()), counts
    assert duckdb["attrition"][0]["remaining"] == counts["indexed"]
    assert duckdb["skipped"] == [], duckdb["skipped"]
    estimates = {(e["outcome"], e["model"], e["population"]): e for e in duckdb["estimates"]}
    assert len(estimates) >= 8, sorted(estimates)
    for key in PRIMARY[study]:
        e = estimates[key]
        assert all(isinstance(e[k], float) and math.isfinite(e[k]) for k in ("estimate", "lower", "upper", "p")), e
        assert e["lower"] < e["estimate"] < e["upper"]
    assert all(outcome["test"]["statistic"] > 0 for outcome in duckdb["outcomes"].values())
    assert duckdb["balance"] and all(isinstance(b["smd_after"], float) for b in duckdb["balance"].values())

    # The comparison itself can fail: a count off by one and an HR off by 1e-8 are both caught.
    perturbed = copy.deepcopy(duckdb)
    perturbed["counts"]["matched_exposed"] += 1
    perturbed["estimates"][0]["estimate"] *= 1 + 1e-8
    assert len(_differences(perturbed, duckdb)) == 2

    # The same results: the sections the study is judged on, each on its own, then the whole document.
    for section in (
        "attrition",
        "counts",
        "dose",
        "estimates",
        "balance",
        "outcomes",
        "subgroups",
        "e_value",
        "skipped",
    ):
        assert not (diff := _differences(spark[section], duckdb[section], section)), "\n".join(diff[:20])
    diff = _differences(_without_run_specifics(spark), _without_run_specifics(duckdb))
    assert not diff, "\n".join(diff[:20])

    # Each run says which engine it ran on; same data and design, so the fingerprints agree.
    assert spark["provenance"]["engine"] == "spark" and duckdb["provenance"]["engine"] == "duckdb"
    assert "pyspark" in spark["provenance"]["packages"] and "pyspark" not in duckdb["provenance"]["packages"]
    assert spark["provenance"]["data_fingerprint"] == duckdb["provenance"]["data_fingerprint"] is not None
    assert spark["provenance"]["study_fingerprint"] == duckdb["provenance"]["study_fingerprint"]

    # Nothing left in the working directory (no metastore_db/, derby.log, spark-warehouse/), and the
    # local session the run started is stopped (a session that was already running is left alone).
    assert runs[(study, "spark")]["left_behind"] == [], runs[(study, "spark")]["left_behind"]
    if not runs[(study, "spark")]["spark_before"]:
        assert not runs[(study, "spark")]["spark_after"], "the local Spark session the run started is still running"
    if study == "vasopressin_shock":  # the design the flagship's keys could not express really ran
        assert set(duckdb["outcomes"]) == {"death", "krt_initiation"} and duckdb["subgroups"]


@pytest.fixture()
def tiny_ehr(tmp_path) -> Path:
    """A 200-stay EHR for the tests that fail before any data are read (cheaper than sharing `ehr` across workers)."""
    generate_synthetic(tmp_path / "tiny", stays=200, seed=3)
    return tmp_path / "tiny"


def test_without_pyspark_the_spark_engine_says_what_to_install(tiny_ehr, monkeypatch):
    for module in ("pyspark", "pyspark.sql"):
        monkeypatch.setitem(sys.modules, module, None)  # `import pyspark` now raises ImportError
    with pytest.raises(SparkUnavailableError, match=r"pip install 'retrocohort\[spark\]'.*--engine duckdb"):
        extract(tiny_ehr, engine="spark")


def test_without_java_the_cli_exits_2_with_a_readable_error(tiny_ehr, tmp_path):
    """A fresh process (the JVM is started once per process) whose JAVA_HOME points nowhere."""
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrocohort.cli",
            "run",
            str(STUDY_FILE),
            "--mimic",
            str(tiny_ehr),
            "--engine",
            "spark",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, text
    assert "could not start a local Spark session" in text and "Java 17" in text and "--engine duckdb" in text
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_a_session_already_running_is_used_as_it_is_and_left_running(tiny_ehr):
    """extract(engine="spark") without a session, in a process that has one (a notebook).

    The session is neither stopped nor reconfigured.
    """
    from retrocohort.sources.spark import local_spark_session

    started_here = not _spark_running()
    session = local_spark_session()
    previous = {key: session.conf.get(key) for key in ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone")}
    try:
        if started_here:  # the settings a run's reliability rests on took effect (see LOCAL_SPARK_CONF)
            assert session.sparkContext.getConf().get("spark.driver.host") == "127.0.0.1"
            assert session.conf.get("spark.sql.catalogImplementation") == "in-memory"
            assert session.sparkContext.uiWebUrl is None
        session.conf.set("spark.sql.shuffle.partitions", "3")
        session.conf.set("spark.sql.session.timeZone", "America/New_York")
        cohort = extract(tiny_ehr, engine="spark")
        assert cohort.engine == "spark" and cohort.attrition["remaining"].iloc[0] > 0
        assert _spark_running() and not session.sparkContext._jsc.sc().isStopped()
        assert session.conf.get("spark.sql.shuffle.partitions") == "3"
        assert session.conf.get("spark.sql.session.timeZone") == "America/New_York"
    finally:
        if started_here:
            session.stop()
        else:  # another test's session: give it its settings back
            for key, value in previous.items():
                session.conf.set(key, value)
