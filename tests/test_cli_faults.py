"""Faults a user can cause, through the real command: exit code 2, no traceback, the file named.

Issue #10: "Outputs never clobber", "No tracebacks for faults a user can cause", "Nonsense study
values are refused". Most cases run in process (typer's CliRunner); the ones that only show at
interpreter exit (a stray finalizer traceback) or need a signal run the command in a subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import retrocohort
from retrocohort.study import outputs
from tests.test_cli import STUDY_FILE, invoke

SRC = Path(retrocohort.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(SRC)}


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ehr") / "small"
    result, text = invoke("synth", "--out", path, "--stays", 200, "--seed", 3)
    assert result.exit_code == 0, text
    return path


@pytest.fixture(scope="module")
def parquet_ehr(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ehr") / "pq"
    result, text = invoke("synth", "--out", path, "--stays", 200, "--seed", 3, "--format", "parquet")
    assert result.exit_code == 0, text
    return path


def copy(ehr: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mimic"
    shutil.copytree(ehr, target)
    return target


def refused(result, text: str, *named: str) -> None:
    """Exit code 2, one error, no traceback, and every string of ``named`` in the message."""
    assert result.exit_code == 2, text
    assert "Traceback" not in text and "error:" in text, text
    for name in named:
        assert name in text, f"{name!r} not in: {text}"


def command(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "retrocohort.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=600,
        check=False,
    )


def study_file(tmp_path: Path, old: str, new: str) -> Path:
    text = STUDY_FILE.read_text()
    assert old in text, old
    path = tmp_path / "study.toml"
    path.write_text(text.replace(old, new))
    return path


# --------------------------------------------------------------------------- damaged data files


def test_truncated_gz_is_named_by_run_and_by_check(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    labs = mimic / "hosp" / "labevents.csv.gz"
    data = labs.read_bytes()
    labs.write_bytes(data[: len(data) // 2])  # an interrupted download
    result, text = invoke("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    refused(result, text, str(labs), "download it again")
    assert not (tmp_path / "out").exists()
    # check only read header lines before; now it reads every file to its end.
    result, text = invoke("check", mimic)
    refused(result, text, str(labs), "ends early")
    result, text = invoke("check", mimic, "--headers-only")
    assert result.exit_code == 0, text


def test_corrupt_gz_is_found_even_when_the_engine_does_not_name_it(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    labs = mimic / "hosp" / "labevents.csv.gz"
    data = bytearray(labs.read_bytes())
    middle = len(data) // 2
    # Depending on the bytes, DuckDB says only "Input is not a GZIP stream" (naming no file), or it
    # decompresses garbage and reports a row with too many fields before the checksum fails.
    data[middle : middle + 200] = bytes(b ^ 0x5A for b in data[middle : middle + 200])
    labs.write_bytes(bytes(data))
    result, text = invoke("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    # found by reading the file through: the archive is blamed (download again), not a row to fix by hand
    refused(result, text, str(labs), "ends early or is damaged", "download it again")
    assert "fields where the header has" not in text
    result, text = invoke("check", mimic)
    refused(result, text, str(labs))


def test_duplicate_column_header(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    patients = mimic / "hosp" / "patients.csv.gz"
    lines = gzip.decompress(patients.read_bytes()).decode().splitlines()
    lines = [lines[0] + ",GENDER"] + [line + ",F" for line in lines[1:]]
    patients.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    for args in (("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out"), ("check", mimic)):
        result, text = invoke(*args)
        refused(result, text, str(patients), "'gender'", "more than once")


def test_non_numeric_amount_has_no_stray_connection_traceback(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    inputs = mimic / "icu" / "inputevents.csv.gz"
    lines = gzip.decompress(inputs.read_bytes()).decode().splitlines()
    column = lines[0].split(",").index("amount")
    cells = lines[1].split(",")
    cells[column] = "twelve"
    lines[1] = ",".join(cells)
    inputs.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    # A subprocess: the stray traceback came from a finalizer at interpreter exit.
    done = command("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, text
    assert "Traceback" not in text and "Connection" not in text, text
    assert str(inputs) in text and "'amount'" in text and "'twelve'" in text and "line 2" in text


@pytest.mark.parametrize(
    ("column", "values", "expect"),
    [
        ("amount", lambda t: pa.array(["abc"] + [str(v) for v in t.column("amount").to_pylist()[1:]]), "'abc'"),
        ("starttime", lambda t: pa.array(range(t.num_rows), pa.int64()), "stored as int64"),
    ],
)
def test_parquet_column_of_the_wrong_type(parquet_ehr, tmp_path, column, values, expect):
    mimic = copy(parquet_ehr, tmp_path)
    path = mimic / "icu" / "inputevents.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, values(table)), path)
    result, text = invoke("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    refused(result, text, str(path), f"'{column}'", expect)
    assert not (tmp_path / "out").exists()


def test_cut_parquet_file(parquet_ehr, tmp_path):
    mimic = copy(parquet_ehr, tmp_path)
    path = mimic / "icu" / "inputevents.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    for args in (("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out"), ("check", mimic)):
        result, text = invoke(*args)
        refused(result, text, str(path), "Parquet")


# --------------------------------------------------------------------------- study files


def test_non_utf8_and_binary_study_files(ehr, tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes(STUDY_FILE.read_bytes().replace(b'title = "', b'title = "caf\xe9 ', 1))
    result, text = invoke("run", latin, "--mimic", ehr, "--out", tmp_path / "out")
    refused(result, text, str(latin), "UTF-8", "byte 0xe9")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    result, text = invoke("run", binary, "--mimic", ehr, "--out", tmp_path / "out")
    refused(result, text, str(binary), "binary file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.toml", "latin.toml"]


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("horizon_days = 90", "horizon_days = inf", "finite"),
        ("horizon_days = 90", "horizon_days = nan", "finite"),
        ("ratio = 2", "ratio = true", "true/false is not a value here"),
        ("km_times_days = [0, 15, 30, 45, 60, 75, 90]", "km_times_days = [0, -15, 30]", "distinct days >= 0"),
        ("km_times_days = [0, 15, 30, 45, 60, 75, 90]", "km_times_days = [0, 1e300]", "past the longest"),
        ("km_times_days = [0, 15, 30, 45, 60, 75, 90]", "km_times_days = [0, 120]", "horizon (90 days)"),
        ("km_times_days = [0, 15, 30, 45, 60, 75, 90]", "km_times_days = [0, nan]", "finite"),
        ("death = [0.38, 0.18, 0.83]", "death = [0.38, 0.83, 0.18]", "swapped"),
        ("small_cell_threshold = 5", "small_cell_threshold = 2", "can only be 1"),
        ("small_cell_threshold = 5", "small_cell_threshold = false", "true/false is not a value here"),
        ('name = "magnesium_ckrt"', 'name = "../../x"', "study name"),
        ('name = "magnesium_ckrt"', 'name = ""', "study name"),
    ],
)
def test_nonsense_study_values_are_refused(ehr, tmp_path, old, new, expect):
    path = study_file(tmp_path, old, new)
    result, text = invoke("run", path, "--mimic", ehr, "--out", tmp_path / "out")
    refused(result, text, str(path), expect)
    assert not (tmp_path / "out").exists()


def test_empty_covariate_list_is_refused(ehr, tmp_path):
    text = STUDY_FILE.read_text()
    start = text.index("propensity = [", text.index("[analysis]"))
    end = text.index("]", start) + 1
    path = tmp_path / "study.toml"
    path.write_text(text[:start] + "propensity = []" + text[end:])
    result, out = invoke("run", path, "--mimic", ehr, "--out", tmp_path / "out")
    refused(result, out, str(path), "analysis.propensity", "at least one covariate")


def test_study_name_never_writes_outside_the_working_directory(ehr, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    path = study_file(tmp_path, 'name = "magnesium_ckrt"', 'name = "../../escaped"')
    result, text = invoke("run", path, "--mimic", ehr)  # no --out: the default comes from the name
    refused(result, text, "study name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "study.toml"]
    assert list(work.iterdir()) == []


# --------------------------------------------------------------------------- output folder, before any data are read


def test_output_folder_faults_are_caught_before_any_data_are_read(ehr, tmp_path, monkeypatch):
    # --mimic points at a folder that does not exist: reaching it would be a different error.
    missing = tmp_path / "no-such-mimic"
    in_the_way = tmp_path / "report"
    in_the_way.write_text("a file")
    result, text = invoke("run", STUDY_FILE, "--mimic", missing, "--out", in_the_way, "--force")
    refused(result, text, str(in_the_way), "not a folder")
    result, text = invoke("run", STUDY_FILE, "--mimic", missing, "--out", "/proc/retrocohort/out")
    refused(result, text, "/proc", "not writable")
    data = tmp_path / "data"
    data.mkdir()
    (data / "cohort.csv").write_text("precious")
    result, text = invoke("run", STUDY_FILE, "--mimic", missing, "--out", data, "--force")
    refused(result, text, str(data), "does not look like")
    assert (data / "cohort.csv").read_text() == "precious"
    real = outputs.shutil.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: type(real(p))(10**9, 10**9 - 2**20, 2**20))
    result, text = invoke("demo", "--out", tmp_path / "demo")
    refused(result, text, str(tmp_path), "MB free")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "report"]


def test_two_runs_on_the_same_out(ehr, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys\nfrom retrocohort.study.outputs import output_lock\n"
                f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n"
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        result, text = invoke("run", STUDY_FILE, "--mimic", ehr, "--out", out)
        refused(result, text, str(out), "another retrocohort run", f"pid {holder.pid}")
    finally:
        holder.communicate(b"", timeout=60)
    assert not out.exists()


def test_stale_lock_after_a_crash_is_recovered_with_a_note(ehr, tmp_path):
    out = tmp_path / "out"
    crash = (
        "import os\nfrom retrocohort.study.outputs import acquire_output_lock\n"
        f"acquire_output_lock({str(out)!r})\nos._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", crash], env=ENV, check=False).returncode == 9
    assert (tmp_path / ".out.retrocohort-lock").is_file()
    result, text = invoke("run", STUDY_FILE, "--mimic", ehr, "--out", out)
    # the run completes (its outputs are written); on 200 stays it estimates nothing, hence exit 3
    assert result.exit_code == 3, text
    assert (out / "results.json").is_file()
    assert "did not finish" in text and "lock was taken over" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- Ctrl-C


def _importing_libraries(pid: int) -> bool:
    """Whether the process has started loading numpy (first imported by retrocohort, after the guard)."""
    try:
        return "numpy" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _interrupt(args: list[str]) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "retrocohort.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        text=True,
        # A test runner started in the background may ignore SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Not a fixed delay: before Python runs any of our code (its own start-up) Ctrl-C is Python's.
    deadline = time.monotonic() + 60
    while not _importing_libraries(process.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    return process.returncode, " ".join(output.split())


def test_ctrl_c_during_start_up(ehr, tmp_path):
    # Sent as soon as numpy loads: the command is still importing pandas, DuckDB, ibis, matplotlib.
    code, text = _interrupt(["run", str(STUDY_FILE), "--mimic", str(ehr), "--out", str(tmp_path / "out")])
    assert code == 2, text
    assert "Traceback" not in text and "interrupted (Ctrl-C) while retrocohort was starting" in text
    assert list(tmp_path.iterdir()) == []


HANDLER_IS_PYTHONS = "import signal, retrocohort\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"


def test_import_from_python_keeps_pythons_ctrl_c():
    # Only the command turns Ctrl-C into exit 2; a script importing retrocohort gets KeyboardInterrupt.
    done = subprocess.run(
        [sys.executable, "-c", HANDLER_IS_PYTHONS],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.stdout.strip() == "True", done.stderr


def test_plain_csv_cut_in_the_middle_of_a_row(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    packed = mimic / "icu" / "inputevents.csv.gz"
    plain = packed.with_suffix("")
    plain.write_bytes(gzip.decompress(packed.read_bytes())[:-37])  # an interrupted copy of the unpacked file
    packed.unlink()
    result, text = invoke("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    refused(result, text, str(plain), "fields where the header has", "ends in the middle of a row")


def test_non_utf8_byte_in_a_data_row_is_not_blamed_on_the_header(ehr, tmp_path):
    mimic = copy(ehr, tmp_path)
    path = mimic / "hosp" / "diagnoses_icd.csv.gz"
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    lines[3] += b"\xe9"  # Latin-1 in the last field (icd_version) of data row 3
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    result, text = invoke("run", STUDY_FILE, "--mimic", mimic, "--out", tmp_path / "out")
    refused(result, text, str(path), "'icd_version'", "line 4")
    assert "header" not in text.split("error:")[1].split("(data row")[0]


def test_demo_data_and_out_must_not_overlap(tmp_path):
    for data, out in (("same", "same"), ("out/ehr", "out"), ("ehr", "ehr/report")):
        result, text = invoke("demo", "--out", tmp_path / out, "--data", tmp_path / data)
        refused(result, text, "--data", "overlap")
    assert list(tmp_path.iterdir()) == []


def test_synth_into_a_file_or_an_unwritable_place(tmp_path):
    in_the_way = tmp_path / "ehr"
    in_the_way.write_text("a file")
    for out, expect in ((in_the_way, "not a folder"), (in_the_way / "sub", "is a file"), ("/proc/ehr", "not writable")):
        result, text = invoke("synth", "--out", out, "--stays", 200)
        refused(result, text, str(out) if out != in_the_way / "sub" else str(in_the_way), expect)
    assert in_the_way.read_text() == "a file"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_during_a_run_leaves_nothing(ehr, tmp_path, signum):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "retrocohort.cli", "run", str(STUDY_FILE), "--mimic", str(ehr), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # The lock file appears once the folder is checked, before any data are read: the run is under way.
    lock = tmp_path / ".out.retrocohort-lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    text = " ".join(output.split())
    assert process.returncode == 2, text
    assert "Traceback" not in text and "interrupted (Ctrl-C or kill)" in text and str(out) in text
    assert list(tmp_path.iterdir()) == [], "no report, no partial folder, no lock file"


def test_two_real_runs_started_together_never_both_succeed(ehr, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "retrocohort.cli", "run", str(STUDY_FILE), "--mimic", str(ehr), "--out", str(out)]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True) for _ in "ab"]
    results = [(run.wait(timeout=300), " ".join(run.communicate()[0].split())) for run in runs]
    codes = sorted(code for code, _ in results)
    # the winner finishes: 0, or 3 when this small EHR lets it estimate nothing (outputs written either way)
    winner = 0 if json.loads((out / "results.json").read_text())["estimates"] else 3
    assert codes == sorted([winner, 2]), results
    loser = next(text for code, text in results if code == 2)
    # Refused by the lock while the other ran, or by the finished folder if the other was already done.
    assert "another retrocohort run" in loser or "already exists" in loser, loser
    assert "Traceback" not in loser and str(out) in loser
    assert (out / "report.html").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
