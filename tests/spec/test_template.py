"""The template of `retrocohort new`: it loads once filled; unfilled, it says what to fill and where."""

from __future__ import annotations

import re
import tomllib

import pytest

from retrocohort.errors import InputError, StudySpecError
from retrocohort.spec import load_study_file, parse_study_text
from retrocohort.spec.catalogue import BASELINE_BUILTINS, EVENT_BUILTINS
from retrocohort.spec.template import (
    fill_examples,
    placeholders,
    study_name_for,
    template_text,
    unfilled,
)


def test_template_with_its_examples_filled_loads(tmp_path):
    text = fill_examples(template_text("vaso_shock", "vaso_shock.toml"))
    assert "<fill" not in text
    path = tmp_path / "vaso_shock.toml"
    path.write_text(text)
    study = load_study_file(path)
    assert study.study.name == "vaso_shock"
    assert study.study.title.startswith("Early vasopressin")
    assert study.concepts["treatment"].itemids == (222315,)
    assert study.index.concept == ("index_event",)
    assert study.outcomes["death"].horizon_days == 28
    assert study.exposure.label == "vasopressin"
    assert [c.name for c in study.criteria] == ["died_early"]


def test_raw_template_is_valid_toml_but_refused_naming_each_place(tmp_path):
    text = template_text("my_study", "my_study.toml")
    raw = tomllib.loads(text)  # valid TOML: the user can open it in any TOML-aware editor
    blanks = placeholders(text)
    assert len(blanks) == len(unfilled(raw)) == 12
    path = tmp_path / "my_study.toml"
    path.write_text(text)
    with pytest.raises(StudySpecError) as info:
        load_study_file(path)
    message = str(info.value)
    assert message.startswith("12 place(s) of the template still to fill in")
    lines = text.splitlines()
    for line, what, _example in blanks:
        # each place named with its file, line and key, and what to write there
        key = lines[line - 1].split("=", 1)[0].strip()
        assert re.search(
            rf"my_study\.toml, line {line}: [a-z_.]*{key}: still a placeholder; write {re.escape(what)}", message
        ), (line, key)
    assert "concepts.treatment.itemids" in message
    assert "outcomes.death.horizon_days" in message


def test_partly_filled_template_names_only_what_is_left():
    text = template_text()
    # fill everything but the horizon
    horizon = "horizon_days = '<fill: follow-up in days | e.g. 28>'"
    assert horizon in text
    text = fill_examples(text.replace(horizon, "HORIZON")).replace("HORIZON", horizon)
    with pytest.raises(StudySpecError, match=r"(?s)^1 place\(s\).*outcomes\.death\.horizon_days: still a placeholder"):
        parse_study_text(text, where="s.toml")
    filled = text.replace(horizon, "horizon_days = 90")
    assert parse_study_text(filled).outcomes["death"].horizon_days == 90


def test_template_lists_the_builtins_and_the_name_rules():
    text = template_text()
    for name in (*BASELINE_BUILTINS, *EVENT_BUILTINS):
        assert re.search(rf"^#   .*\b{name}\b", text, re.MULTILINE), name
    assert all(len(line) <= 130 for line in text.splitlines())
    with pytest.raises(InputError, match="not allowed"):
        template_text("My Study")


@pytest.mark.parametrize(
    ("file_name", "name"),
    [("My Study.toml", "my_study"), ("studies/2024-vaso.TOML", "vaso"), ("___.toml", "my_study"), ("a.toml", "a")],
)
def test_study_name_for(file_name, name):
    assert study_name_for(file_name) == name
    template_text(name)  # every derived name is accepted


def test_the_commented_target_trial_example_loads_when_uncommented(tmp_path):
    text = fill_examples(template_text("vaso_shock", "vaso_shock.toml"))
    start = text.index("# [analysis.target_trial]")
    block = text[start : text.index("\n\n", start)]
    uncommented = text.replace(block, "\n".join(line.removeprefix("# ") for line in block.splitlines()))
    path = tmp_path / "vaso_shock.toml"
    path.write_text(uncommented)
    trial = load_study_file(path).analysis.target_trial
    assert trial is not None and trial.truncate == (1.0, 99.0) and trial.replicates == 500
    assert load_study_file(_write(tmp_path, text)).analysis.target_trial is None  # commented: not asked for


def _write(tmp_path, text: str):
    path = tmp_path / "commented.toml"
    path.write_text(text)
    return path
