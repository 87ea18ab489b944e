"""The study-language loader: the flagship file, and every kind of bad input with a located message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from retrocohort.errors import StudySpecError
from retrocohort.spec import Study, check_study, load_study_file, parse_study_text
from retrocohort.spec.load import key_lines

STUDIES = Path(__file__).resolve().parents[2] / "studies"
FLAGSHIP = STUDIES / "magnesium_ckrt.toml"
TEXT = FLAGSHIP.read_text()


def _line_of(text: str, fragment: str, occurrence: int = 0) -> int:
    """1-based line of the ``occurrence``-th line that contains ``fragment``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return hits[occurrence]


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StudySpecError) as info:
        load_study_file(path)
    return str(info.value)


def _edit(old: str, new: str, text: str = TEXT) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


# ---------------------------------------------------------------------------------------------
# The flagship and the other shipped studies.
# ---------------------------------------------------------------------------------------------


def test_flagship_reads_as_written():
    s = load_study_file(FLAGSHIP)
    assert isinstance(s, Study)
    assert s.index.concept == ("crrt_procedures", "crrt_mode")
    assert [c.name for c in s.criteria] == ["support", "no_mg_index_day", "died_within_48h"]
    assert s.criteria[0].match == "overlap" and s.criteria[2].rule == "exclude"
    assert s.criteria[1].window.calendar_day
    assert (s.exposure.window.start_closed, s.exposure.window.end_closed) == (False, True)
    assert s.dose.factor == 8.12 and s.dose.amount_units["mg"] == 0.001
    assert s.covariates["serum_mg"].summary == "nearest"
    assert s.primary_outcome == "death"
    assert s.outcomes["krt_liberation"].competing == "death"
    assert s.propensity_covariates == ("age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg")
    assert s.analysis.matching.ratio == 2
    assert s.report.published["death"] == (0.38, 0.18, 0.83)
    assert s.fingerprint == __import__("hashlib").sha256(TEXT.encode()).hexdigest()


def test_study_is_frozen():
    s = load_study_file(FLAGSHIP)
    with pytest.raises(ValidationError, match="frozen"):
        s.index.min_age = 12  # type: ignore[misc]


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_study_loads(path):
    s = load_study_file(path)
    assert len([o for o in s.outcomes.values() if o.primary]) == 1


def test_key_lines_follow_arrays_and_sub_tables():
    lines = key_lines(TEXT)
    assert lines[("criteria", 1, "window")] == _line_of(TEXT, 'window = "index_day"')
    assert lines[("analysis", "matching", "caliper")] == _line_of(TEXT, "caliper = 0.2")
    assert lines[("concepts", "mg_iv", "itemids")] == _line_of(TEXT, "itemids = [222011, 227524]")


# ---------------------------------------------------------------------------------------------
# Structural errors: file, line, key, allowed values, closest name.
# ---------------------------------------------------------------------------------------------


def test_missing_file():
    with pytest.raises(StudySpecError, match="not found"):
        load_study_file("/nonexistent/study.toml")


def test_not_toml(tmp_path):
    msg = _error(tmp_path, "[study\nname = 1\n")
    assert "bad.toml: not valid TOML" in msg


def test_misspelt_key_names_line_and_closest(tmp_path):
    text = _edit("caliper = 0.2", "calipr = 0.2")
    msg = _error(tmp_path, text)
    assert f"bad.toml, line {_line_of(text, 'calipr')}" in msg
    assert "'analysis.matching.calipr'" in msg and "did you mean 'caliper'?" in msg
    assert "'ratio'" in msg  # the allowed keys are listed


def test_wrong_literal_names_allowed_and_closest(tmp_path):
    text = _edit('select = "first"', 'select = "frist"')
    msg = _error(tmp_path, text)
    assert f"line {_line_of(text, 'frist')}" in msg
    assert "did you mean 'first'?" in msg and "'first_passing'" in msg


def test_missing_sections_are_named(tmp_path):
    start, end = TEXT.index("[exposure]"), TEXT.index("[dose]")
    msg = _error(tmp_path, TEXT[:start] + TEXT[end:])
    assert "section [exposure] is missing" in msg and "section [comparator] is missing" in msg
    assert "nothing defaults to another study" in msg


def test_empty_file_states_every_required_section(tmp_path):
    msg = _error(tmp_path, "")
    for section in ("study", "index", "exposure", "comparator", "outcomes"):
        assert f"section [{section}] is missing" in msg


def test_window_start_after_end(tmp_path):
    text = _edit('window = "(0h, 48h]"', 'window = "(48h, 0h]"')
    msg = _error(tmp_path, text)
    assert f"line {_line_of(text, '(48h, 0h]')}" in msg and "exposure.window" in msg and "is after its end" in msg


def test_unparseable_window_shows_notation(tmp_path):
    text = _edit('window = "[-24h, 24h]"', 'window = "-24 to 24 hours"')
    msg = _error(tmp_path, text)
    assert "criteria[0].window" in msg and '"(0h, 48h]"' in msg


def test_bad_concept_table_suggests(tmp_path):
    text = _edit('table = "hosp/labevents"', 'table = "hosp/labevent"')
    msg = _error(tmp_path, text)
    assert "concepts.serum_mg" in msg and "hosp/labevents" in msg


def test_unbounded_exposure_window(tmp_path):
    msg = _error(tmp_path, _edit('window = "(0h, 48h]"', 'window = "(0h, inf)"'))
    assert "two finite ends" in msg


# ---------------------------------------------------------------------------------------------
# Semantic errors.
# ---------------------------------------------------------------------------------------------


def test_unknown_concept_did_you_mean(tmp_path):
    text = _edit('concept = "mg_iv"', 'concept = "mg_ivv"')
    msg = _error(tmp_path, text)
    assert f"line {_line_of(text, 'mg_ivv')}" in msg
    assert "unknown concept 'mg_ivv' (did you mean 'mg_iv'?)" in msg and "[concepts.mg_ivv]" in msg


def test_unknown_builtin_did_you_mean(tmp_path):
    msg = _error(tmp_path, _edit('concept = "sofa"', 'concept = "sofaa"'))
    assert "covariates.sofa.concept" in msg and "did you mean 'sofa'?" in msg


def test_baseline_builtin_is_not_an_event(tmp_path):
    msg = _error(tmp_path, _edit('concept = "mg_iv"', 'concept = "age"'))
    assert "'age' is a baseline built-in" in msg and "exposure.concept" in msg


def test_user_concept_may_not_shadow_builtin(tmp_path):
    text = _edit("[concepts.serum_mg]", "[concepts.lactate]").replace('concept = "serum_mg"', 'concept = "lactate"')
    msg = _error(tmp_path, text)
    assert "'lactate' is a built-in concept" in msg and f"line {_line_of(text, '[concepts.lactate]')}" in msg


def test_mean_of_a_code_concept(tmp_path):
    text = (
        TEXT + '\n[concepts.aki_codes]\ntable = "hosp/diagnoses_icd"\ncode_prefixes = ["N17"]\n'
        '\n[covariates.aki]\nconcept = "aki_codes"\nwindow = "(-inf, 0h]"\nsummary = "mean"\n'
    )
    msg = _error(tmp_path, text)
    assert "summary = 'mean' needs values" in msg and "['aki_codes']" in msg
    mean_line = _line_of(text, 'summary = "mean"')
    assert f"line {mean_line}" in msg
    # "any" of the same concept is fine
    load = text.replace('summary = "mean"', 'summary = "any"')
    assert parse_study_text(load).covariates["aki"].summary == "any"


def test_value_summary_of_valueless_builtin(tmp_path):
    text = TEXT + '\n[covariates.krt_hours]\nconcept = "krt"\nwindow = "(-inf, 0h]"\nsummary = "max"\n'
    assert "needs values" in _error(tmp_path, text)


def test_exposure_and_comparator_identical(tmp_path):
    text = _edit('kind = "none"\nlabel = "no Mg"', 'kind = "active"\nconcept = "mg_iv"\nlabel = "no Mg"')
    msg = _error(tmp_path, text)
    assert "could not be told apart" in msg


def test_exposure_and_comparator_same_rows_under_two_names(tmp_path):
    twin = (
        '\n[concepts.mg_again]\ntable = "icu/inputevents"\nitemids = [222011, 227524]\n'
        'exclude_itemids = [227523]\nstatus_exclude = ["Rewritten"]\nlabel = "another name"\n'
    )
    text = _edit('kind = "none"\nlabel = "no Mg"', 'kind = "active"\nconcept = "mg_again"\nlabel = "no Mg"') + twin
    assert "could not be told apart" in _error(tmp_path, text)


def test_same_arm_labels(tmp_path):
    assert "could not tell the arms apart" in _error(tmp_path, _edit('label = "no Mg"', 'label = "mg"'))


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("primary = true", "primary = false", "no outcome is marked primary"),
        ('competing = "death"', 'competing = "death"\nprimary = true', "2 outcomes are (death, krt_liberation)"),
    ],
)
def test_exactly_one_primary(tmp_path, old, new, words):
    assert words in _error(tmp_path, _edit(old, new))


def test_outcome_kind_rules(tmp_path):
    assert "needs absence_days" in _error(tmp_path, _edit("absence_days = 7 ", "# "))
    msg = _error(tmp_path, _edit('kind = "death"\nlabel = "Death"', 'kind = "death"\nconcept = "krt"\nlabel = "Death"'))
    assert "takes no concept" in msg
    msg = _error(tmp_path, _edit('competing = "death"', 'competing = "death"\nexclude_prior = "[-7d, 1h]"'))
    assert "must end at or before the index" in msg


def test_analysis_names_must_be_covariates(tmp_path):
    text = _edit('adjust = ["age",', 'adjust = ["agee",')
    msg = _error(tmp_path, text)
    assert "analysis.adjust" in msg and "'agee' is not a covariate" in msg and "did you mean 'age'?" in msg
    assert f"line {_line_of(text, 'agee')}" in msg


def test_numeric_subgroup_refused(tmp_path):
    msg = _error(tmp_path, _edit("e_value = true", 'e_value = true\nsubgroups = ["sofa"]'))
    assert "subgroup 'sofa' is numeric" in msg
    ok = parse_study_text(_edit("e_value = true", 'e_value = true\nsubgroups = ["sepsis", "sex"]'))
    assert ok.analysis.subgroups == ("sepsis", "sex")


def test_reserved_and_clashing_columns(tmp_path):
    text = _edit("[covariates.age]", "[covariates.exposed]")
    assert "already a column" in _error(tmp_path, text)
    text = _edit("[covariates.sex]", "[covariates.death_time]")
    assert "'death_time', which is already taken" in _error(tmp_path, text)


def test_criterion_on_baseline_value(tmp_path):
    rule = '\n[[criteria]]\nname = "sick"\nlabel = "SOFA of 2 or more"\nrule = "include"\nconcept = "sofa"\n'
    s = parse_study_text(TEXT + rule + "value_min = 2\n")
    assert s.criteria[-1].concept == ("sofa",)
    assert "takes no window" in _error(tmp_path, TEXT + rule + 'value_min = 2\nwindow = "[-24h, 0h]"\n')
    assert "needs value_min" in _error(tmp_path, TEXT + rule)


def test_event_criterion_needs_window(tmp_path):
    text = _edit('window = "index_day"\nvalue_min = 0   ', "value_min = 0   ")
    assert "criteria[1].window: a rule on events needs a window" in _error(tmp_path, text)


def test_dose_needs_amounts(tmp_path):
    text = (
        TEXT.replace('[exposure]\nconcept = "mg_iv"', '[exposure]\nconcept = "intubation_codes"')
        + '\n[concepts.intubation_codes]\ntable = "hosp/procedures_icd"\ncodes = ["9604"]\n'
    )
    assert "a dose needs exposure events with amounts" in _error(tmp_path, text)


def test_duplicate_criterion_names(tmp_path):
    text = _edit('name = "no_mg_index_day"', 'name = "support"')
    assert "'support' is used twice" in _error(tmp_path, text)


def test_published_outcome_must_exist(tmp_path):
    text = _edit("published = { death =", "published = { deaht =")
    assert "'deaht' is not an outcome" in _error(tmp_path, text)


def test_all_problems_reported_together(tmp_path):
    text = _edit('concept = "mg_iv"', 'concept = "mg_ivv"')
    text = _edit("primary = true", "primary = false", text)
    msg = _error(tmp_path, text)
    assert len(re.findall(r"bad\.toml", msg)) == 2


def test_check_study_in_code():
    s = load_study_file(FLAGSHIP)
    bad = s.model_copy(update={"outcomes": {n: o.model_copy(update={"primary": False}) for n, o in s.outcomes.items()}})
    with pytest.raises(StudySpecError, match="no outcome is marked primary"):
        check_study(bad)
    assert check_study(s) is s


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    assert load_study_file(path).study.name == "magnesium_ckrt"


@pytest.mark.parametrize("bad", ["a__b", "trailing_", "Upper", "9lives"])
def test_names_are_plain_identifiers(tmp_path, bad):
    msg = _error(tmp_path, _edit("[covariates.age]", f"[covariates.{bad}]"))
    assert f"'{bad}' must be a lower-case identifier" in msg


def test_reserved_attrition_step_names(tmp_path):
    for reserved in ("eligible", "adult", "prior_death"):
        msg = _error(tmp_path, _edit('name = "support"', f'name = "{reserved}"'))
        assert f"criterion name '{reserved}' is a step the builder writes itself" in msg


def test_km_times_and_published_estimates_are_checked(tmp_path):
    assert "increasing order" in _error(tmp_path, _edit("km_times_days = [0, 15,", "km_times_days = [15, 0,"))
    msg = _error(tmp_path, _edit("death = [0.38, 0.18, 0.83]", "death = [0.18, 0.38, 0.83]"))
    assert "0 < lower <= estimate <= upper" in msg


def test_a_concept_listed_twice_counts_once():
    s = parse_study_text(
        _edit(
            'concept = ["vasopressor_infusions", "ventilation"]',
            'concept = ["ventilation", "vasopressor_infusions", "ventilation"]',
        )
    )
    assert s.criteria[0].concept == ("ventilation", "vasopressor_infusions")
