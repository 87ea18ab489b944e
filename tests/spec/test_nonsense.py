"""Nonsense values a study file may hold are refused by the study-language loader.

Ported from the legacy loader's tests (``study/spec.py``, deleted in issue 9):
an empty propensity list, ``true`` where a number is expected, inf / nan,
report times below 0 or past an outcome's horizon, a published estimate outside
its own interval, a small-cell threshold of 2, unsafe study names, and study files
that are not UTF-8 text. Each case edits the flagship study file in one place.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from retrocohort.errors import StudySpecError
from retrocohort.spec import load_study_file, parse_study

FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"
RAW = tomllib.loads(FLAGSHIP.read_text(encoding="utf-8"))


def edited(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The flagship's TOML tables with the key at ``path`` set to ``value``."""
    raw = copy.deepcopy(RAW)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


def test_the_unedited_flagship_loads():
    # the baseline of every case below: only the one edit makes it fail
    study = parse_study(copy.deepcopy(RAW))
    assert study.study.name == "magnesium_ckrt" and study.analysis.matching.ratio == 2


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        (("analysis", "propensity"), [], "at least one covariate"),
        (("analysis", "matching", "ratio"), True, "true/false is not a value here"),
        (("analysis", "matching", "caliper"), True, "true/false is not a value here"),
        (("report", "small_cell_threshold"), False, "true/false is not a value here"),
        (("analysis", "km_times_days"), [0, True], "true/false is not a value here"),
        (("outcomes", "death", "horizon_days"), True, "true/false is not a value here"),
        (("outcomes", "death", "horizon_days"), float("inf"), "finite"),
        (("outcomes", "death", "horizon_days"), float("nan"), "finite"),
        (("dose", "factor"), float("inf"), "finite"),
        (("analysis", "matching", "caliper"), float("nan"), "finite"),
        (("analysis", "km_times_days"), [0, -1], "km_times_days"),
        (("analysis", "km_times_days"), [0, float("nan")], "km_times_days"),
        (("analysis", "km_times_days"), [0, 91], "past the longest outcome horizon (90 days)"),
        (("report", "published"), {"krt_liberation": [2.07, 3.49, 1.23]}, "lower and upper swapped"),
        (("report", "published"), {"krt_liberation": [5.0, 1.23, 3.49]}, "lower <= estimate <= upper"),
        (("report", "published"), {"krt_liberation": [0.0, 0.0, 1.0]}, "0 < lower"),
        (("report", "published"), {"death": [0.38, 0.18, float("inf")]}, "finite"),
        (("report", "published"), {"deaht": [0.38, 0.18, 0.83]}, "'death'"),
        (("report", "small_cell_threshold"), 2, "small_cell_threshold = 2"),
        (("study", "name"), "../../x", "study.name"),
        (("study", "name"), "", "study.name"),
        (("study", "name"), "a/b", "study.name"),
        (("study", "name"), ".hidden", "study.name"),
    ],
)
def test_nonsense_values_are_refused(path, value, expect):
    with pytest.raises(StudySpecError, match=re.escape(expect)):
        parse_study(edited(path, value))


def test_sensible_neighbours_of_the_refused_values_load():
    # the boundaries: a threshold of 0 (off), 1 or 3, report times up to the horizon, an integer ratio
    for threshold in (0, 1, 3):
        assert (
            parse_study(edited(("report", "small_cell_threshold"), threshold)).report.small_cell_threshold == threshold
        )
    study = parse_study(edited(("analysis", "km_times_days"), [0, 45, 90]))
    assert study.analysis.km_times_days == (0.0, 45.0, 90.0)
    assert parse_study(edited(("analysis", "matching", "ratio"), 3)).analysis.matching.ratio == 3


def test_study_file_encodings(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + FLAGSHIP.read_bytes())
    assert load_study_file(bom).model_dump() == load_study_file(FLAGSHIP).model_dump()
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[study]\ntitle = "caf\xe9"\n')
    with pytest.raises(StudySpecError, match=r"line 2: byte 0xe9 is not UTF-8"):
        load_study_file(latin)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"PK\x03\x04\x00\x00")
    with pytest.raises(StudySpecError, match="binary file"):
        load_study_file(binary)


def test_a_legacy_study_file_is_refused_with_directions(tmp_path):
    # the old format's sections are not keys of the language: the error names them and the nearest valid ones
    legacy = tmp_path / "legacy.toml"
    legacy.write_text('[study]\nname = "x"\n[cohort]\nfirst_stay_only = true\n[models]\nties = "efron"\n')
    with pytest.raises(StudySpecError) as info:
        load_study_file(legacy)
    assert "cohort" in str(info.value) and "models" in str(info.value)
