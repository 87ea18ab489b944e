import re
from pathlib import Path

import pytest

from retrocohort.errors import StudySpecError
from retrocohort.study import default_study, load_study

STUDY_FILE = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"


def test_shipped_study_file_equals_defaults():
    loaded = load_study(STUDY_FILE)
    assert loaded.model_dump() == default_study().model_dump()
    assert loaded.fingerprint != default_study().fingerprint  # hashed from the file text


def test_misspelt_key_names_line_and_suggestion(tmp_path):
    bad = STUDY_FILE.read_text().replace("ratio = 2", "ratoi = 2")
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(StudySpecError) as info:
        load_study(path)
    msg = str(info.value)
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if t.startswith("ratoi"))
    assert f"line {line}" in msg and "'ratio'" in msg and "matching.ratoi" in msg


def test_bad_literal_lists_allowed_values(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[matching]\norder = "biggest"\n')
    with pytest.raises(StudySpecError) as info:
        load_study(path)
    assert "line 2" in str(info.value) and "'largest'" in str(info.value)


def test_unknown_covariate_suggests_close_name(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[propensity]\ncovariates = ["age", "egfr"]\n')
    with pytest.raises(StudySpecError) as info:
        load_study(path)
    assert "egfr_baseline" in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[matching\n")
    with pytest.raises(StudySpecError, match="not valid TOML"):
        load_study(path)
    with pytest.raises(StudySpecError, match="not found"):
        load_study(tmp_path / "nope.toml")


def test_partial_file_takes_defaults(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[matching]\nratio = 3\ncaliper = 0.1\n")
    study = load_study(path)
    assert study.matching.ratio == 3 and study.matching.caliper == 0.1
    assert study.outcomes.horizon_days == default_study().outcomes.horizon_days


def test_optional_settings_switch_off_with_false(tmp_path):
    # TOML has no null: `false` (or "none", or [] for the published HRs) turns an optional setting off.
    path = tmp_path / "s.toml"
    path.write_text(
        '[cohort]\ncrrt_mode_itemid = false\n[matching]\ncaliper = "none"\n'
        "[report]\npublished_hr_death = []\npublished_hr_krt = false\n"
    )
    study = load_study(path)
    assert study.cohort.crrt_mode_itemid is None
    assert study.matching.caliper is None
    assert study.report.published_hr_death is None and study.report.published_hr_krt is None
    path.write_text("[matching]\ncaliper = true\n")
    with pytest.raises(StudySpecError, match=r"matching\.caliper"):
        load_study(path)


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ({"propensity": {"covariates": []}}, "at least one covariate"),
        ({"matching": {"ratio": True}}, "true/false is not a value here"),
        ({"report": {"small_cell_threshold": False}}, "true/false is not a value here"),
        ({"models": {"km_times_days": [0, True]}}, "true/false is not a value here"),
        ({"outcomes": {"horizon_days": float("inf")}}, "finite"),
        ({"cohort": {"support_window_hours": [float("-inf"), 24]}}, "finite"),
        ({"exposure": {"window_hours": [0, 1e12]}}, "less than or equal to"),
        ({"models": {"km_times_days": [0, -1]}}, "greater than or equal to 0"),
        ({"models": {"km_times_days": [0, float("nan")]}}, "finite"),
        ({"models": {"km_times_days": [0, 91]}}, "after outcomes.horizon_days = 90"),
        ({"report": {"published_hr_krt": [2.07, 3.49, 1.23]}}, "lower and upper swapped"),
        ({"report": {"published_hr_krt": [5.0, 1.23, 3.49]}}, "lower <= estimate <= upper"),
        ({"report": {"published_hr_krt": [0.0, 0.0, 1.0]}}, "positive"),
        ({"study": {"name": "../../x"}}, "study name"),
        ({"study": {"name": ""}}, "study name"),
        ({"study": {"name": "a/b"}}, "study name"),
        ({"study": {"name": ".hidden"}}, "study name"),
    ],
)
def test_nonsense_values_are_refused(raw, expect):
    from retrocohort.study.spec import parse_study

    with pytest.raises(StudySpecError, match=re.escape(expect)):
        parse_study(raw)


def test_false_still_switches_optional_settings_off():
    from retrocohort.study.spec import parse_study

    study = parse_study({"matching": {"caliper": False}, "report": {"published_hr_death": False},
                         "cohort": {"crrt_mode_itemid": False, "first_stay_only": False}})
    assert study.matching.caliper is None and study.report.published_hr_death is None
    assert study.cohort.crrt_mode_itemid is None and study.cohort.first_stay_only is False
    # A longer horizon allows later report times.
    later = parse_study({"outcomes": {"horizon_days": 365}, "models": {"km_times_days": [0, 180, 365]}})
    assert later.models.km_times_days == (0.0, 180.0, 365.0)


def test_study_file_encodings(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + STUDY_FILE.read_bytes())
    assert load_study(bom).model_dump() == default_study().model_dump()
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[study]\ntitle = "caf\xe9"\n')
    with pytest.raises(StudySpecError, match=r"line 2: byte 0xe9 is not UTF-8"):
        load_study(latin)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"PK\x03\x04\x00\x00")
    with pytest.raises(StudySpecError, match="binary file"):
        load_study(binary)
