"""`--memory-limit` / `--threads` of run, validate, check and demo; `check --study`'s last line with optional tables."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from retrocohort.errors import InputError
from retrocohort.sources import MimicIV
from retrocohort.spec.template import fill_examples
from tests.test_cli_language import invoke, mimic

STUDY_FILE = Path(__file__).resolve().parents[1] / "studies" / "magnesium_ckrt.toml"


def _settings_of_the_run(source: object) -> tuple[str, str]:
    """memory_limit and threads on the DuckDB connection the run's source opens."""
    assert isinstance(source, MimicIV)
    conn = source.connect(engine="duckdb")
    try:
        con = conn.backend.con
        return (
            con.execute("SELECT current_setting('memory_limit')").fetchone()[0],
            str(con.execute("SELECT current_setting('threads')").fetchone()[0]),
        )
    finally:
        conn.close()


@pytest.fixture()
def folder(tmp_path) -> Path:
    return mimic().write(tmp_path / "csv")


def test_run_settings_reach_the_duckdb_connection(tmp_path, folder):
    seen: dict[str, tuple[str, str]] = {}

    def fake_run_study(source, study, **kwargs):
        seen["settings"] = _settings_of_the_run(source)
        raise InputError("stopped by the test after the connection was opened")

    with mock.patch("retrocohort.study.pipeline.run_study", fake_run_study):
        result, text = invoke(
            "run", STUDY_FILE, "--mimic", folder, "--out", tmp_path / "o", "--memory-limit", "1GB", "--threads", "1"
        )
    assert result.exit_code == 2 and "stopped by the test" in text
    limit, threads = seen["settings"]
    # DuckDB reports 1GB as 953.6 MiB (it rounds into binary units); the default is 80% of RAM, far above.
    assert limit in ("953.6 MiB", "1.0 GiB", "1GB", "1000.0 MiB"), limit
    assert threads == "1"


def test_run_without_the_options_keeps_duckdb_defaults(tmp_path, folder):
    seen: dict[str, tuple[str, str]] = {}

    def fake_run_study(source, study, **kwargs):
        seen["settings"] = _settings_of_the_run(source)
        raise InputError("stopped")

    with mock.patch("retrocohort.study.pipeline.run_study", fake_run_study):
        invoke("run", STUDY_FILE, "--mimic", folder, "--out", tmp_path / "o")
    assert seen["settings"][0] not in ("953.6 MiB", "1.0 GiB")


def test_validate_passes_the_settings_to_its_source(tmp_path, folder):
    seen: dict[str, tuple[str, str]] = {}

    def fake_validate(study, source, **kwargs):
        seen["settings"] = _settings_of_the_run(source)
        raise InputError("stopped by the test")

    with mock.patch("retrocohort.study.validate.validate", fake_validate):
        result, text = invoke(
            "validate", STUDY_FILE, "--mimic", folder, "--out", tmp_path / "o", "--replicates", "2",
            "--memory-limit", "512MB", "--threads", "1",
        )  # fmt: skip
    assert result.exit_code == 2 and "stopped by the test" in text
    assert seen["settings"][0].startswith("488") and seen["settings"][1] == "1"  # 512 MB = 488.2 MiB


def test_check_study_passes_the_settings_to_the_counts(tmp_path, folder):
    study = tmp_path / "s.toml"
    invoke("new", study)
    study.write_text(fill_examples(study.read_text()))
    seen: list[object] = []
    from retrocohort.cohort import inventory

    real = inventory.study_inventory

    def spy(*args, **kwargs):
        seen.append(kwargs.get("duckdb_config"))
        return real(*args, **kwargs)

    with mock.patch.object(inventory, "study_inventory", spy):
        result, text = invoke("check", folder, "--study", study, "--memory-limit", "2GB", "--threads", "2")
    assert result.exit_code == 0, text
    assert seen == [{"memory_limit": "2GB", "threads": 2}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memory-limit", "lots"), "--memory-limit 'lots' is not a memory size"),
        (("--memory-limit", "-1GB"), "--memory-limit '-1GB' is not a memory size"),
        (("--memory-limit", "0GB"), "--memory-limit '0GB' is not a memory size"),
        (("--memory-limit", "1 GB; SET threads=1"), "is not a memory size"),
        (("--threads", "0"), "--threads 0: give a whole number >= 1"),
        (("--memory-limit", "1GB", "--engine", "spark"), "use Spark's own settings"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_values_exit_2_with_one_paragraph(tmp_path, folder, command, args, message):
    out = tmp_path / "o"
    result, text = invoke(command, STUDY_FILE, "--mimic", folder, "--out", out, *args)
    assert result.exit_code == 2, text
    assert message in text
    assert not out.exists()  # refused before the output folder is made or data are read


def test_bad_values_of_check_and_convert(tmp_path, folder):
    study = tmp_path / "s.toml"
    invoke("new", study)
    study.write_text(fill_examples(study.read_text()))
    result, text = invoke("check", folder, "--study", study, "--memory-limit", "lots")
    assert result.exit_code == 2 and "--memory-limit 'lots' is not a memory size" in text
    result, text = invoke("convert", folder, tmp_path / "pq", "--memory-limit", "lots")
    assert result.exit_code == 2 and "--memory-limit 'lots' is not a memory size" in text
    assert not (tmp_path / "pq").exists() or not any((tmp_path / "pq").rglob("*.parquet"))


def test_check_study_names_absent_optional_tables_in_its_last_line(tmp_path):
    folder = mimic().write(tmp_path / "csv", omit=("icu/outputevents",))
    study = tmp_path / "s.toml"
    invoke("new", study)
    filled = fill_examples(study.read_text())
    assert "[covariates.age]" in filled
    study.write_text(
        filled.replace("[covariates.age]", '[covariates.kdigo]\nconcept = "kdigo_stage"\n\n[covariates.age]')
    )
    result, text = invoke("check", folder, "--study", study, "--no-count")
    assert result.exit_code == 0, text
    assert "icu/outputevents" in text and "absent" in text
    # the last line no longer claims every table is present
    assert "Every table and column the study's concepts read is present" not in text
    assert "Every table and column the study needs is present" in text
    assert "optional tables absent: icu/outputevents" in text
    assert "the urine-output criterion of kdigo_stage" in text


def test_demo_refuses_a_bad_memory_limit_before_generating(tmp_path):
    out, data = tmp_path / "o", tmp_path / "d"
    result, text = invoke("demo", "--out", out, "--data", data, "--memory-limit", "lots")
    assert result.exit_code == 2 and "--memory-limit 'lots' is not a memory size" in text
    assert not out.exists() and not data.exists()


def test_demo_passes_the_settings_to_its_run(tmp_path):
    seen: dict[str, tuple[str, str]] = {}

    def fake_run_study(source, study, **kwargs):
        seen["settings"] = _settings_of_the_run(source)
        raise InputError("stopped by the test")

    with mock.patch("retrocohort.study.pipeline.run_study", fake_run_study):
        result, text = invoke(
            "demo", "--out", tmp_path / "o", "--stays", "200", "--seed", "3", "--memory-limit", "1GB", "--threads", "1"
        )
    assert result.exit_code == 2 and "stopped by the test" in text
    assert seen["settings"][1] == "1" and seen["settings"][0] in ("953.6 MiB", "1.0 GiB", "1GB", "1000.0 MiB")


def test_a_memory_limit_too_small_for_the_data_is_one_paragraph(tmp_path, folder):
    out = tmp_path / "o"
    result, text = invoke("run", STUDY_FILE, "--mimic", folder, "--out", out, "--memory-limit", "1MB")
    assert result.exit_code == 2, text
    assert "DuckDB ran out of memory" in text and "--memory-limit 2GB" in text
    assert not out.exists()


def test_check_without_a_study_refuses_the_settings_it_would_not_use(folder):
    result, text = invoke("check", folder, "--headers-only", "--threads", "2")
    assert result.exit_code == 2 and "apply only with --study" in text
    result, text = invoke("check", folder, "--headers-only")
    assert result.exit_code == 0, text
