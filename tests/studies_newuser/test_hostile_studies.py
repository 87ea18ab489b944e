"""Hostile and odd study files: each ends in exit 2 with one message naming the file, the line, the key and
what to write, or in a clean run whose notes say what happened (the CLI, as a user types it).

The load cases are checked with ``retrocohort check DATA --study FILE --no-count`` (the study is validated
before any data are read, exactly as ``run`` does); the run cases run the study on a small synthetic EHR.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app

from .answer import expected_exit

runner = CliRunner()

BASE = """[study]
name = "hostile"
title = "Vasopressin in shock"

[concepts.noradrenaline]
table = "icu/inputevents"
itemids = [221906]

[concepts.vasopressin]
table = "icu/inputevents"
itemids = [222315]

[index]
concept = "noradrenaline"
label = "noradrenaline start"

[[criteria]]
name = "died_early"
label = "died within 24 h"
rule = "exclude"
concept = "death"
window = "(-inf, 24h]"

[exposure]
concept = "vasopressin"
label = "vasopressin"
window = "(0h, 24h]"

[comparator]
kind = "none"
label = "no vasopressin"

[covariates.age]
concept = "age"

[covariates.lactate]
concept = "lactate"
window = "[-24h, 0h]"
summary = "max"
missing = "indicator"

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = 28
primary = true
"""

#: (id, text replaced in BASE (None: the whole file), replacement, words the message must hold)
LOAD_CASES = [
    (
        "typo_study_key",
        'title = "Vasopressin in shock"',
        'titel = "Vasopressin in shock"',
        ["line 3", "study.titel", "did you mean 'title'"],
    ),
    ("typo_section", "[exposure]", "[exposur]", ["line 24", "'exposur'", "did you mean 'exposure'"]),
    (
        "typo_concept_table",
        'table = "icu/inputevents"\nitemids = [222315]',
        'table = "icu/inputevent"\nitemids = [222315]',
        ["line 10", "concepts.vasopressin.table", "did you mean 'icu/inputevents'"],
    ),
    (
        "typo_selector",
        "itemids = [222315]",
        "itemid = [222315]",
        ["line 11", "concepts.vasopressin.itemid", "did you mean 'itemids'"],
    ),
    (
        "typo_index_select",
        'label = "noradrenaline start"',
        'label = "noradrenaline start"\nselect = "frist"',
        ["line 16", "index.select", "did you mean 'first'"],
    ),
    ("typo_rule", 'rule = "exclude"', 'rule = "exlude"', ["line 20", "criteria[0].rule", "did you mean 'exclude'"]),
    (
        "typo_summary",
        'summary = "max"',
        'summary = "maximum"',
        ["line 39", "covariates.lactate.summary", "did you mean 'max'"],
    ),
    (
        "typo_missing",
        'missing = "indicator"',
        'missing = "indicater"',
        ["line 40", "covariates.lactate.missing", "did you mean 'indicator'"],
    ),
    (
        "typo_outcome_kind",
        'kind = "death"',
        'kind = "deaht"',
        ["line 43", "outcomes.death.kind", "did you mean 'death'"],
    ),
    (
        "typo_comparator_kind",
        'kind = "none"',
        'kind = "nothing"',
        ["line 30", "comparator.kind", "Allowed: ['none', 'active']"],
    ),
    (
        "typo_concept_ref",
        'concept = "vasopressin"\nlabel = "vasopressin"',
        'concept = "vasopresin"\nlabel = "vasopressin"',
        ["line 25", "exposure.concept", "did you mean 'vasopressin'"],
    ),
    (
        "typo_criteria_key",
        'window = "(-inf, 24h]"',
        'windw = "(-inf, 24h]"',
        ["line 22", "criteria[0].windw", "did you mean 'window'"],
    ),
    (
        "typo_covariate_key",
        'summary = "max"',
        'sumary = "max"',
        ["line 39", "covariates.lactate.sumary", "did you mean 'summary'"],
    ),
    (
        "typo_outcome_key",
        "horizon_days = 28",
        "horizon_day = 28",
        ["line 45", "outcomes.death.horizon_day", "did you mean 'horizon_days'"],
    ),
    (
        "typo_match",
        'missing = "indicator"',
        'missing = "indicator"\nmatch = "overlaps"',
        ["line 41", "covariates.lactate.match", "did you mean 'overlap'"],
    ),
    (
        "horizon_zero",
        "horizon_days = 28",
        "horizon_days = 0",
        ["line 45", "outcomes.death.horizon_days", "greater than 0"],
    ),
    (
        "horizon_inside_grace",
        "horizon_days = 28",
        "horizon_days = 0.001",
        ["line 27", "exposure.window", "ends at or after the horizon of outcome 'death'", "Shorten the window"],
    ),
    (
        "horizon_negative",
        "horizon_days = 28",
        "horizon_days = -5",
        ["line 45", "outcomes.death.horizon_days", "greater than 0"],
    ),
    (
        "horizon_bool",
        "horizon_days = 28",
        "horizon_days = true",
        ["line 45", "outcomes.death.horizon_days", "true/false is not a value here"],
    ),
    (
        "itemid_float",
        "itemids = [222315]",
        "itemids = [222315.5]",
        ["line 11", "concepts.vasopressin.itemids[0]", "integer"],
    ),
    (
        "itemid_string_word",
        "itemids = [222315]",
        'itemids = ["vaso"]',
        ["line 11", "concepts.vasopressin.itemids[0]", "integer"],
    ),
    (
        "itemids_empty",
        "itemids = [222315]",
        "itemids = []",
        ["line 11", "concepts.vasopressin.itemids", "empty list selects nothing", "leave the key out"],
    ),
    (
        "window_reversed",
        'window = "(0h, 24h]"',
        'window = "(24h, 0h]"',
        ["line 27", "exposure.window", "write the earlier time first"],
    ),
    (
        "window_open_both",
        'window = "(0h, 24h]"',
        'window = "(-inf, inf)"',
        ["line 27", "exposure.window", "two finite ends"],
    ),
    (
        "window_garbage",
        'window = "(0h, 24h]"',
        'window = "0 to 24 hours"',
        ["line 27", "exposure.window", "is not a window", "(0h, 48h]"],
    ),
    (
        "window_equal_open",
        'window = "(0h, 24h]"',
        'window = "(0h, 0h]"',
        ["line 27", "exposure.window", "both brackets closed"],
    ),
    (
        "window_minutes",
        'window = "(0h, 24h]"',
        'window = "(0m, 30m]"',
        ["line 27", "exposure.window", "is not a window", "h = hours"],
    ),
    ("window_number", 'window = "(0h, 24h]"', "window = 24", ["line 27", "exposure.window", "write an interval"]),
    (
        "exposure_window_missing",
        'window = "(0h, 24h]"\n',
        "",
        ["line 24", "exposure.window", "required key is missing"],
    ),
    (
        "covariate_as_exposure",
        'concept = "vasopressin"\nlabel = "vasopressin"',
        'concept = "age"\nlabel = "vasopressin"',
        ["line 25", "exposure.concept", "baseline built-in", "not an event concept"],
    ),
    (
        "duplicate_criterion_name",
        "[exposure]",
        (
            '[[criteria]]\nname = "died_early"\nlabel = "again"\nrule = "exclude"\nconcept = "death"\n'
            'window = "(-inf, 12h]"\n\n[exposure]'
        ),
        ["line 25", "criteria[1].name", "used twice"],
    ),
    (
        "criterion_builder_name",
        'name = "died_early"',
        'name = "eligible"',
        ["line 18", "criteria[0].name", "a step the builder writes itself"],
    ),
    (
        "duplicate_table_key",
        'label = "noradrenaline start"',
        'label = "noradrenaline start"\nlabel = "again"',
        ["not valid TOML", "line 16"],
    ),
    (
        "duplicate_section",
        "[comparator]",
        '[study]\nname = "x"\n\n[comparator]',
        ["not valid TOML", "'study'", "twice"],
    ),
    (
        "user_concept_builtin_name",
        "[concepts.vasopressin]",
        '[concepts.death]\ntable = "icu/inputevents"\nitemids = [1]\n\n[concepts.vasopressin]',
        ["line 9", "concepts.death", "is a built-in concept"],
    ),
    (
        "concept_self_cycle",
        '[concepts.vasopressin]\ntable = "icu/inputevents"',
        '[concepts.vasopressin]\nconcept = "vasopressin"\ntable = "icu/inputevents"',
        ["line 10", "concepts.vasopressin.concept", "unknown key"],
    ),
    (
        "no_outcomes",
        '[outcomes.death]\nkind = "death"\nlabel = "Death"\nhorizon_days = 28\nprimary = true\n',
        "",
        ["section [outcomes] is missing", "[outcomes.death]"],
    ),
    (
        "two_primaries",
        "[outcomes.death]",
        '[outcomes.death2]\nkind = "death"\nlabel = "Death 2"\nhorizon_days = 90\nprimary = true\n\n[outcomes.death]',
        ["line 42", "outcomes", "marked primary = true; mark exactly one"],
    ),
    ("no_primary", "primary = true", "primary = false", ["line 42", "no outcome is marked primary"]),
    (
        "mean_of_diagnosis",
        "[covariates.age]",
        (
            '[concepts.dx]\ntable = "hosp/diagnoses_icd"\ncode_prefixes = ["A41"]\n\n'
            '[covariates.sepsis_dx]\nconcept = "dx"\nwindow = "[-365d, 0h]"\nsummary = "mean"\n\n'
            "[covariates.age]"
        ),
        ["line 40", "covariates.sepsis_dx.summary", 'use "any" or "count"'],
    ),
    (
        "icd_code_number",
        "[covariates.age]",
        '[concepts.dx]\ntable = "hosp/diagnoses_icd"\ncodes = [38]\n\n[covariates.age]',
        ["line 35", "concepts.dx.codes", "ICD codes are text"],
    ),
    (
        "selector_wrong_table",
        "itemids = [222315]",
        'itemids = [222315]\ndrugs = ["vasopressin"]',
        ["line 9", "selector 'drugs' does not apply to icu/inputevents"],
    ),
    (
        "empty_drug_string",
        "itemids = [222315]",
        'itemids = [222315]\nunits = [""]',
        ["line 12", "concepts.vasopressin.units", "empty string"],
    ),
    (
        "label_10000_chars",
        'label = "vasopressin"',
        'label = "' + "v" * 10000 + '"',
        ["line 26", "exposure.label", "10000 characters", "at most 200"],
    ),
    ("label_empty", 'label = "vasopressin"', 'label = ""', ["line 26", "exposure.label", "at least 1 character"]),
    (
        "labels_equal",
        'label = "no vasopressin"',
        'label = "vasopressin"',
        ["line 31", "comparator.label", "could not tell the arms apart"],
    ),
    (
        "label_newline",
        'label = "vasopressin"',
        'label = "vaso\\npressin"',
        ["line 26", "exposure.label", "on one line"],
    ),
    ("name_uppercase", 'name = "hostile"', 'name = "Hostile"', ["line 2", "study.name", "lower-case identifier"]),
    ("name_path", 'name = "hostile"', 'name = "../../etc"', ["line 2", "study.name", "lower-case identifier"]),
    (
        "age_min_above_max",
        'label = "noradrenaline start"',
        'label = "noradrenaline start"\nmin_age = 80\nmax_age = 40',
        ["line 13", "min_age 80 is above max_age 40"],
    ),
    (
        "age_negative",
        'label = "noradrenaline start"',
        'label = "noradrenaline start"\nmin_age = -1',
        ["line 16", "index.min_age", "greater than or equal to 0"],
    ),
    (
        "at_most_below_at_least",
        'window = "(-inf, 24h]"',
        'window = "(-inf, 24h]"\nat_least = 3\nat_most = 1',
        ["line 17", "at_most 1 is below at_least 3"],
    ),
    (
        "value_min_gt_max",
        "itemids = [222315]",
        "itemids = [222315]\nvalue_min = 10\nvalue_max = 1",
        ["line 9", "value_min 10.0 is above value_max 1.0"],
    ),
    (
        "nan_value",
        "itemids = [222315]",
        "itemids = [222315]\nvalue_min = nan",
        ["line 12", "concepts.vasopressin.value_min", "not a finite number"],
    ),
    (
        "caliper_negative",
        "primary = true",
        "primary = true\n\n[analysis.matching]\ncaliper = -0.2",
        ["line 49", "analysis.matching.caliper", "greater than 0"],
    ),
    (
        "ratio_zero",
        "primary = true",
        "primary = true\n\n[analysis.matching]\nratio = 0",
        ["line 49", "analysis.matching.ratio", "greater than or equal to 1"],
    ),
    (
        "propensity_unknown",
        "primary = true",
        'primary = true\n\n[analysis]\npropensity = ["agee"]',
        ["line 49", "analysis.propensity", "did you mean 'age'"],
    ),
    (
        "subgroup_numeric",
        "primary = true",
        'primary = true\n\n[analysis]\nsubgroups = ["lactate"]',
        ["line 49", "analysis.subgroups", "binary or categorical"],
    ),
    (
        "competing_wrong",
        "primary = true",
        'primary = true\ncompeting = "discharge"',
        ["line 47", "outcomes.death.competing", "Allowed: ['death']"],
    ),
    (
        "threshold_two",
        "primary = true",
        "primary = true\n\n[report]\nsmall_cell_threshold = 2",
        ["line 49", "report.small_cell_threshold", "can only be 1"],
    ),
    ("legacy_format", "[study]", "[cohort]\nfirst_stay_only = true\n\n[study]", ["line 1", "unknown key 'cohort'"]),
    ("toml_syntax", "horizon_days = 28", "horizon_days = 28 days", ["not valid TOML", "line 45"]),
    (
        "absence_without_days",
        'kind = "death"',
        'kind = "absence"\nconcept = "vasopressin"',
        ["line 42", "outcomes.death", "needs absence_days"],
    ),
    (
        "exclude_prior_after_index",
        "primary = true",
        (
            'primary = true\n\n[outcomes.vaso_again]\nkind = "first"\nlabel = "Vasopressin again"\n'
            'concept = "vasopressin"\nhorizon_days = 7\nexclude_prior = "[0h, 24h]"'
        ),
        ["line 48", "outcomes.vaso_again", "must end at or before the index"],
    ),
    (
        "active_same_concept",
        'kind = "none"\nlabel = "no vasopressin"',
        'kind = "active"\nconcept = "vasopressin"\nlabel = "other"',
        ["line 31", "comparator.concept", "share a concept"],
    ),
    (
        "dose_without_amounts",
        "[covariates.age]",
        '[dose]\nunit = "mg"\namount_units = {}\n\n[covariates.age]',
        ["line 33", "dose.label", "required key is missing", "dose.amount_units"],
    ),
    (
        "empty_file",
        None,
        "",
        ["section [study] is missing", "section [index] is missing", "section [exposure] is missing"],
    ),
    ("binary_file", None, b"\x00\x01\xff\xfe", ["binary file", "not a TOML text file"]),
    (
        "indicator_column_clash",
        "[covariates.age]",
        "[covariates.lactate_missing]",
        ["covariates.lactate", "'lactate_missing'", "already taken"],
    ),
]

#: (id, replaced, replacement, {notes: words in results.json notes, skipped: words in a skipped reason,
#:  eligible: whether anybody is eligible})
RUN_CASES = [
    # a horizon inside the 24 h exposure window is refused (tests/hostile_study); just past it runs
    ("horizon_tiny", "horizon_days = 28", "horizon_days = 1.01", {"notes": [], "eligible": True}),
    ("horizon_huge", "horizon_days = 28", "horizon_days = 10000", {"notes": [], "eligible": True}),
    ("outcome_named_like_covariate", "[outcomes.death]", "[outcomes.age]", {"notes": [], "eligible": True}),
    (
        "label_non_ascii",
        'label = "vasopressin"',
        'label = "vasopressine (Vasostrict®) – début précoce 血管"',
        {"notes": [], "eligible": True},
    ),
    (
        "label_markup",
        'label = "vasopressin"',
        'label = "[bold red]vaso[/] <script>alert(1)</script>"',
        {"notes": [], "eligible": True},
    ),
    (
        "criterion_removes_everybody",
        'window = "(-inf, 24h]"',
        (
            'window = "(-inf, 24h]"\n\n[[criteria]]\nname = "huge_lactate"\n'
            'label = "lactate above 1000"\nrule = "include"\nconcept = "lactate"\n'
            'window = "[-24h, 0h]"\nvalue_min = 1000'
        ),
        {"skipped": ["the eligible cohort is empty"], "eligible": False},
    ),
    (
        "exposure_nobody",
        "itemids = [222315]",
        "itemids = [1]",
        {
            "notes": ["the vasopressin arm is empty", "concept 'vasopressin' (vasopressin) found no rows"],
            "eligible": True,
        },
    ),
    (
        "everybody_exposed",
        'concept = "vasopressin"\nlabel = "vasopressin"\nwindow = "(0h, 24h]"',
        'concept = "noradrenaline"\nlabel = "vasopressin"\nwindow = "[0h, 24h]"',
        {"notes": ["the no vasopressin arm is empty"], "skipped": ["no comparator patients"], "eligible": True},
    ),
    (
        "index_nobody",
        "itemids = [221906]",
        "itemids = [2]",
        {
            "notes": ["no patient has an index event", "['noradrenaline'] found no rows"],
            "skipped": ["the eligible cohort is empty"],
            "eligible": False,
        },
    ),
    (
        "active_comparator_runs",
        'kind = "none"\nlabel = "no vasopressin"',
        (
            'kind = "active"\nconcept = "phenylephrine"\nlabel = "phenylephrine"\n\n'
            '[concepts.phenylephrine]\ntable = "icu/inputevents"\nitemids = [221749]'
        ),
        {"notes": [], "eligible": True},
    ),
    (
        "covariate_all_missing_drop",
        'missing = "indicator"',
        'missing = "drop"\nvalue_min = 999',
        {"skipped": ["the eligible cohort is empty"], "eligible": False},
    ),
    (
        "covariate_all_missing_median",
        'missing = "indicator"',
        'missing = "median"\nvalue_min = 999',
        {"notes": ["no eligible patient has a value, so nothing can be imputed"], "eligible": False},
    ),
    (
        "subgroup_sex",
        "primary = true",
        'primary = true\n\n[analysis]\nsubgroups = ["sex"]\n\n[covariates.sex]\nconcept = "sex"',
        {"notes": [], "eligible": True},
    ),
    (
        "no_covariates",
        (
            '[covariates.age]\nconcept = "age"\n\n[covariates.lactate]\nconcept = "lactate"\n'
            'window = "[-24h, 0h]"\nsummary = "max"\nmissing = "indicator"\n'
        ),
        "",
        {"notes": [], "eligible": True},
    ),
    (
        "threshold_huge",
        "primary = true",
        "primary = true\n\n[report]\nsmall_cell_threshold = 100000",
        {"notes": [], "eligible": True},
    ),
    (
        "ratio_ten_no_caliper",
        "primary = true",
        "primary = true\n\n[analysis.matching]\nratio = 10\ncaliper = false",
        {"notes": ["no caliper"], "eligible": True},
    ),
    # the longest label allowed runs (figures and tables laid out), one character more is refused
    ("label_200_chars", 'label = "vasopressin"', 'label = "' + "v" * 200 + '"', {"notes": [], "eligible": True}),
]


def invoke(*args: object) -> tuple[int, str]:
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(text.split())


def write_case(folder: Path, cid: str, old: str | None, new: str | bytes) -> Path:
    path = folder / f"{cid}.toml"
    if old is None:
        if isinstance(new, bytes):
            path.write_bytes(new)
        else:
            path.write_text(new)
    else:
        assert old in BASE, cid
        path.write_text(BASE.replace(old, str(new), 1), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 400, "--seed", 3)
    assert code == 0, text
    return folder


def test_the_base_study_is_valid(ehr):
    path = write_case(ehr.parent, "base", "", "")
    code, text = invoke("check", ehr, "--study", path, "--no-count")
    assert code == 0, text


@pytest.mark.parametrize(("cid", "old", "new", "words"), LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_a_broken_study_is_refused_with_file_line_key_and_what_to_write(cid, old, new, words, ehr, tmp_path):
    path = write_case(tmp_path, cid, old, new)
    code, text = invoke("check", ehr, "--study", path, "--no-count")
    assert code == 2, text
    assert path.name in text, text
    for word in words:
        assert word in text, (word, text)
    # the same refusal from `run`, before any data are read
    code, run_text = invoke("run", path, "--mimic", ehr, "--out", tmp_path / "out")
    assert code == 2 and words[-1] in run_text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("cid", "old", "new", "expect"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_an_odd_study_runs_cleanly_with_the_right_notes(cid, old, new, expect, ehr, tmp_path):
    path = write_case(tmp_path, cid, old, new)
    out = tmp_path / "out"
    code, text = invoke("run", path, "--mimic", ehr, "--out", out)
    results = json.loads((out / "results.json").read_text())
    # 0 with the primary estimate; 3 (outputs written) without it (docs/cli.md, Exit codes)
    assert code == expected_exit(results), text
    notes = " ".join(results["notes"])
    for word in expect.get("notes", []):
        assert word in notes, (word, notes)
    skipped = " ".join(s["reason"] for s in results["skipped"])
    for word in expect.get("skipped", []):
        assert word in skipped, (word, skipped)
    eligible = results["counts"]["eligible"]
    assert (eligible != 0) is expect["eligible"], eligible
    if not expect["eligible"]:
        # an empty cohort is never explained as "no exposed patients", nor buried under per-covariate notes
        assert "no exposed patients" not in skipped
        assert "is constant in this population" not in notes
    # the exposure label reaches the outputs as written (non-ASCII, markup-like text), escaped in the HTML
    label = BASE.replace(old, str(new), 1).split("[exposure]")[1].split('label = "')[1].split('"')[0]
    assert results["study"]["exposure_label"] == label
    if "<script>" in label:
        assert "<script>alert(1)</script>" not in (out / "report.html").read_text()


def test_a_table_absent_from_the_folder_is_named_with_its_concept(ehr, tmp_path):
    old = "[covariates.age]"
    new = (
        '[concepts.bmi]\ntable = "hosp/omr"\nnames = ["BMI (kg/m2)"]\n\n[covariates.bmi]\nconcept = "bmi"\n'
        'window = "[-365d, 0h]"\nsummary = "last"\nmissing = "median"\n\n[covariates.age]'
    )
    path = write_case(tmp_path, "table_absent", old, new)
    code, text = invoke("run", path, "--mimic", ehr, "--out", tmp_path / "out")
    assert code == 2, text
    for word in ("table hosp/omr not found", "concept 'bmi'", "hosp module of MIMIC-IV", "copy it into the folder"):
        assert word in text, word
    code, text = invoke("check", ehr, "--study", path, "--no-count")
    assert code == 2 and "bmi: reads hosp/omr, absent" in text


def test_a_string_horizon_is_read_as_its_number(ehr, tmp_path):
    # pydantic's lax mode reads "28" as 28 (as an itemid "50813" is read as 50813): accepted, and the same study
    from retrocohort.spec import load_study_file

    path = write_case(tmp_path, "horizon_string", "horizon_days = 28", 'horizon_days = "28"')
    assert load_study_file(path).outcomes["death"].horizon_days == 28


def test_there_are_about_sixty_hostile_cases():
    assert len(LOAD_CASES) + len(RUN_CASES) + 2 >= 60
