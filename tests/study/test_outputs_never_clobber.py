"""write_outputs never clobbers: pre-run folder checks, the per-folder lock, the no-replace final rename.

Issue #10, "Outputs never clobber". The CLI side (exit code 2, no traceback) is in tests/test_cli_faults.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from retrocohort.report import figures as report_figures
from retrocohort.study import outputs
from retrocohort.study.outputs import (
    RUN_MARKER,
    OutputExistsError,
    OutputLockedError,
    OutputNotWritableError,
    check_output_folder,
    output_lock,
    write_outputs,
)
from retrocohort.study.pipeline import analyse_cohort
from tests.report._build import cohort_for, load

SRC = Path(outputs.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    # Six patients: every model is skipped, so few figures and a fast write.
    return analyse_cohort(cohort_for("magnesium_ckrt", n=6, seed=5), load("magnesium_ckrt"))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- checks before any work


def test_a_file_in_the_way_is_refused_even_with_force(tmp_path):
    target = tmp_path / "out"
    target.write_text("my notes")
    for force in (False, True):
        with pytest.raises(OutputExistsError, match="not a folder"):
            check_output_folder(target, force)
    assert target.read_text() == "my notes"


def test_a_file_where_a_parent_folder_should_be_is_refused(tmp_path):
    (tmp_path / "notes").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "notes" / "sub" / "out")


def test_unwritable_location_is_refused():
    # /proc refuses new files even to root (a chmod-ed folder would not stop root).
    with pytest.raises(OutputNotWritableError, match="not writable") as info:
        check_output_folder(Path("/proc/retrocohort-test/out"))
    assert "/proc" in str(info.value) and "--out" in str(info.value)


def test_a_non_output_folder_is_refused_even_with_force(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "cohort.csv").write_text("precious")
    with pytest.raises(OutputExistsError, match="does not look like"):
        check_output_folder(target, force=True)
    # An empty folder, or one this tool wrote (marker only), may be replaced with --force.
    (target / "cohort.csv").unlink()
    check_output_folder(target, force=True)
    (target / RUN_MARKER).write_text("{}")
    check_output_folder(target, force=True)


def test_a_nearly_full_disk_is_refused_before_the_run(tmp_path, monkeypatch):
    real = outputs.shutil.disk_usage

    def nearly_full(path):
        usage = real(path)
        return type(usage)(usage.total, usage.total - 10 * 2**20, 10 * 2**20)

    monkeypatch.setattr(outputs.shutil, "disk_usage", nearly_full)
    with pytest.raises(OutputNotWritableError, match=r"only 10\.0 MB free"):
        check_output_folder(tmp_path / "out")
    assert names(tmp_path) == []


def test_disk_full_while_writing_leaves_nothing(tiny, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(report_figures, "save_figure", full)
    with pytest.raises(OutputNotWritableError, match="No space left") as info:
        write_outputs(tiny, tmp_path / "out")
    assert str(tmp_path) in str(info.value)
    assert names(tmp_path) == [], "no partial folder and no lock file may be left"


# --------------------------------------------------------------------------- the lock


def test_two_concurrent_writers_one_wins_one_is_refused(tiny, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first_is_writing, second_has_tried = threading.Event(), threading.Event()
    real_figures = report_figures.study_figures
    first_thread: list[threading.Thread] = []

    def figures_of_a_slow_run(result):
        # Only the first writer gets here while the second one tries: the runs overlap for certain.
        if threading.current_thread() is first_thread[0]:
            first_is_writing.set()
            assert second_has_tried.wait(30)
        return real_figures(result)

    monkeypatch.setattr(report_figures, "study_figures", figures_of_a_slow_run)
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["first"] = write_outputs(tiny, out)
        except BaseException as exc:
            outcome["first"] = exc

    thread = threading.Thread(target=first)
    first_thread.append(thread)
    thread.start()
    assert first_is_writing.wait(60)
    try:
        with pytest.raises(OutputLockedError) as info:
            write_outputs(tiny, out, force=True)
    finally:
        second_has_tried.set()
        thread.join(60)
    assert outcome["first"] == out, outcome
    message = str(info.value)
    assert str(out) in message and "another retrocohort run" in message and f"pid {os.getpid()}" in message
    assert (out / "report.html").is_file()
    assert names(tmp_path) == ["out"], "no lock file, partial or retired folder is left"


def test_a_lock_held_by_another_process_refuses_the_run(tiny, tmp_path):
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
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            write_outputs(tiny, out)
        assert not out.exists()
    finally:
        holder.communicate(b"", timeout=60)
    assert holder.returncode == 0
    # Released: the same call now succeeds, and no lock file stays behind.
    write_outputs(tiny, out)
    assert names(tmp_path) == ["out"]


def test_a_stale_lock_after_a_crash_is_recovered_and_reported(tiny, tmp_path):
    out = tmp_path / "out"
    # A run that dies (os._exit: no clean-up) while writing: its lock file and partial folder stay.
    crash = (
        "import os\nfrom retrocohort.study.outputs import acquire_output_lock, RUN_MARKER\n"
        f"lock = acquire_output_lock({str(out)!r})\n"
        f"partial = os.path.join({str(tmp_path)!r}, '.out.partial-' + lock.run_id)\n"
        "os.mkdir(partial)\nopen(os.path.join(partial, RUN_MARKER), 'w').write('{}')\n"
        "print(lock.run_id, flush=True)\nos._exit(9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", crash], capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC)}, check=False
    )
    assert done.returncode == 9, done.stderr
    dead_run = done.stdout.decode().strip()
    assert sorted(names(tmp_path)) == [".out.partial-" + dead_run, ".out.retrocohort-lock"]
    with output_lock(out) as lock:
        assert lock.recovered is not None
        assert lock.recovered["run_id"] == dead_run and lock.recovered["removed"] == [".out.partial-" + dead_run]
        write_outputs(tiny, out, lock=lock)
    assert names(tmp_path) == ["out"]
    assert json.loads((out / RUN_MARKER).read_text())["run_id"] == lock.run_id


def test_a_crash_between_retiring_and_replacing_restores_the_earlier_report(tiny, tmp_path):
    out = write_outputs(tiny, tmp_path / "out")
    earlier = (out / "results.json").read_text()
    # As left by a run killed right after it moved the earlier report aside.
    out.rename(tmp_path / ".out.old-deadbeef")
    with output_lock(out) as lock:
        assert lock.recovered is not None and "restored" in lock.recovered["removed"][0]
    assert (out / "results.json").read_text() == earlier
    assert names(tmp_path) == ["out"]


# --------------------------------------------------------------------------- the final rename


def _during_the_run(monkeypatch, action):
    real = report_figures.study_figures

    def figures(result):
        action()
        return real(result)

    monkeypatch.setattr(report_figures, "study_figures", figures)


@pytest.mark.parametrize("content", [None, "someone else's file"])
def test_a_folder_created_during_the_run_is_never_replaced(tiny, tmp_path, monkeypatch, content):
    out = tmp_path / "out"

    def someone_else():
        out.mkdir()
        if content is not None:
            (out / "theirs.txt").write_text(content)

    _during_the_run(monkeypatch, someone_else)
    with pytest.raises(OutputExistsError, match="created or replaced by someone else") as info:
        write_outputs(tiny, out)
    # Untouched, even when empty (os.rename would silently replace an empty folder).
    assert names(out) == ([] if content is None else ["theirs.txt"])
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.")]
    assert len(kept) == 1 and (kept[0] / "report.html").is_file() and str(kept[0]) in str(info.value)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no hidden leftovers"


def test_force_never_replaces_a_folder_swapped_in_during_the_run(tiny, tmp_path, monkeypatch):
    out = write_outputs(tiny, tmp_path / "out")

    def swap():
        for path in sorted(out.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        out.rmdir()
        out.mkdir()
        (out / "results.json").write_text("their own results")

    _during_the_run(monkeypatch, swap)
    with pytest.raises(OutputExistsError, match="created or replaced by someone else"):
        write_outputs(tiny, out, force=True)
    assert (out / "results.json").read_text() == "their own results"


def test_force_replaces_the_earlier_output_it_found(tiny, tmp_path):
    out = write_outputs(tiny, tmp_path / "out")
    first_run = json.loads((out / RUN_MARKER).read_text())["run_id"]
    write_outputs(tiny, out, force=True)
    second_run = json.loads((out / RUN_MARKER).read_text())["run_id"]
    assert second_run != first_run and (out / "report.html").is_file()
    assert names(tmp_path) == ["out"]


def test_interrupt_while_writing_leaves_no_half_report_and_no_hidden_folder(tiny, tmp_path, monkeypatch):
    def ctrl_c():
        raise KeyboardInterrupt

    _during_the_run(monkeypatch, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(tiny, tmp_path / "out")
    assert names(tmp_path) == []


def test_the_working_directory_and_the_root_are_never_outputs(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(OutputExistsError, match="working directory"):
            check_output_folder(out, force=True)
    with pytest.raises(OutputExistsError, match="root of the file system"):
        check_output_folder("/", force=True)


def test_force_through_a_link_replaces_the_link_not_its_target(tiny, tmp_path):
    target = write_outputs(tiny, tmp_path / "target")
    (tmp_path / "link").symlink_to(target)
    write_outputs(tiny, tmp_path / "link", force=True)
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link" / "report.html").is_file()
    assert (target / "report.html").is_file()
    assert names(tmp_path) == ["link", "target"]


def test_a_run_that_writes_nothing_leaves_no_empty_parent_folders(tiny, tmp_path, monkeypatch):
    def ctrl_c():
        raise KeyboardInterrupt

    _during_the_run(monkeypatch, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(tiny, tmp_path / "new" / "deeper" / "out")
    assert names(tmp_path) == []


def test_a_name_too_long_for_the_file_system_is_refused(tmp_path):
    with pytest.raises(OutputNotWritableError, match="250 characters\\) is too long"):
        check_output_folder(tmp_path / ("x" * 250))
    assert names(tmp_path) == []


def test_ctrl_c_while_the_earlier_report_is_deleted_leaves_no_hidden_folder(tiny, tmp_path, monkeypatch):
    out = write_outputs(tiny, tmp_path / "out")
    real = outputs.shutil.rmtree
    pressed: list[str] = []

    def interrupted_once(path, *args, **kwargs):
        if ".old-" in str(path) and not pressed:
            pressed.append(str(path))
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(outputs.shutil, "rmtree", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        write_outputs(tiny, out, force=True)
    assert pressed, "the interruption must have hit the clean-up"
    assert names(tmp_path) == ["out"] and (out / "report.html").is_file()
