"""Hundreds of hostile study files through the loader: every key of every shipped study, mutated.

Each case (``mutate.py``) ends in one of two ways, never in another exception:

* a :class:`StudySpecError` whose every problem line names the file, the line (where the key is in the
  file), the key path, and what to write; the mutated key's own problem is on the mutated key's line;
* a successful load that is semantically right: the loaded value is the value written (up to the
  documented normalisations below), and a deleted key takes its documented default. Nothing is
  silently replaced by a default.

Documented normalisations (docs/study-language.md): labels, titles, units and the description are
stripped of surrounding spaces; a single name or selector string stands for a list of one; a table
name is read without case or spaces; a window's text is stripped and ``index_day`` is read without
case; ICD prefixes are upper-cased; an int is a float where a number is asked.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from retrocohort.errors import StudySpecError
from retrocohort.spec import Window, parse_study_text
from retrocohort.spec.study import Study

from .mutate import DELETE, Case, distinct_cases, get

CASES: list[Case] = distinct_cases()
FAMILIES = sorted({c.family for c in CASES})

#: A problem line that says what to write (or what is allowed, or which name was meant).
HINT = re.compile(
    r"write|allowed|did you mean|give |add |remove|e\.g\.|rename|choose|leave|mark |list |use |should be|needs"
    r"|takes no|merge|keep one|must|correct|declare|shorten|lengthen|define",
    re.IGNORECASE,
)

MISSING = object()


def dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            plain = re.fullmatch(r"[A-Za-z0-9_\-]+", str(part)) is not None
            text += ("." if text else "") + (str(part) if plain else f'"{part}"')
    return text


def load(case: Case) -> Study | StudySpecError:
    try:
        return parse_study_text(case.text, where=f"{case.base}.toml")
    except StudySpecError as exc:
        return exc
    # any other exception propagates: the test fails with its traceback


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Study | StudySpecError]:
    return {case.id: load(case) for case in CASES}


def loaded_at(study: Any, path: tuple[Any, ...]) -> Any:
    """The loaded value at a study-file path (MISSING when the key is not there)."""
    value = study
    for part in path:
        if isinstance(value, BaseModel) and not isinstance(value, Window):
            if str(part) not in type(value).model_fields:
                return MISSING
            value = getattr(value, str(part))
        elif isinstance(value, dict):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(value, tuple) and isinstance(part, int):
            value = value[part]
        else:
            return MISSING
    return value


def holder_default(study: Study, path: tuple[Any, ...]) -> Any:
    """The documented default of the key at ``path`` (MISSING for an entry of a table of names)."""
    holder = loaded_at(study, path[:-1])
    if isinstance(holder, BaseModel):
        field = type(holder).model_fields[str(path[-1])]
        assert not field.is_required(), f"{dotted(path)} is required but its deletion loaded"
        return field.get_default(call_default_factory=True)
    return MISSING


def same(loaded: Any, written: Any, key: str) -> bool:
    """Whether the loaded value is what was written, up to the documented normalisations."""
    if isinstance(loaded, Window):
        if not isinstance(written, str):
            return False
        text = written.strip()
        return loaded.text == text or (loaded.calendar_day and text.lower().replace(" ", "_") == "index_day")
    if isinstance(written, str) and key in ("label", "title", "description", "unit"):
        return loaded == written.strip()
    if key == "table" and isinstance(written, str):
        return loaded == written.strip().lower()
    if isinstance(loaded, tuple) and not isinstance(written, (list, tuple)):
        written = [written]  # a single name or selector stands for a list of one
    if isinstance(loaded, tuple):
        if len(loaded) != len(written):
            return False
        return all(same(a, b, key) for a, b in zip(loaded, written, strict=True))
    if isinstance(written, str) and isinstance(loaded, str):
        return loaded == (written.strip().upper() if key in ("codes", "code_prefixes") else written.strip())
    if isinstance(written, bool) or isinstance(loaded, bool):
        return loaded is written
    if isinstance(written, (int, float)) and isinstance(loaded, (int, float)):
        return math.isclose(loaded, written) if math.isfinite(written) else loaded == written
    if isinstance(written, dict) and isinstance(loaded, BaseModel):
        return loaded == type(loaded).model_validate(written)
    if isinstance(written, dict) and isinstance(loaded, dict):
        return set(loaded) == {k.strip().lower() if key == "amount_units" else k for k in written}
    return bool(loaded == written)


def check_load(case: Case, study: Study) -> str | None:
    """None when the successful load is right; else what is wrong."""
    key = str(case.path[-1])
    if case.family == "delete":
        if loaded_at(study, case.path[:-1]) is MISSING:
            return "the table holding the deleted key is gone"
        default = holder_default(study, case.path)
        loaded = loaded_at(study, case.path)
        if default is MISSING:
            return None if loaded is MISSING else "deleted entry still loaded"
        return None if loaded == default else f"deleted key loaded as {loaded!r}, not its default {default!r}"
    if case.family == "unknown_key":
        # a new entry of a table of names (a concept, a covariate, a unit): loaded as written, under its name
        if loaded_at(study, case.path) is MISSING:
            return "an unknown key was dropped without a word"
        return None
    if case.family in ("window",) and case.value is None:
        return "loaded"  # every window family case is an error (see the tests below)
    written = case.value
    if written is None and case.family in ("reference", "output_name"):
        return f"{case.family} case loaded"
    loaded = loaded_at(study, case.path)
    if loaded is MISSING:
        return "the written key is not in the loaded study"
    if not same(loaded, written, key):
        return f"written {written!r:.80} but loaded {loaded!r:.80}"
    return None


def names_inside(value: Any) -> set[str]:
    """Names a deleted or emptied table held (its keys and its entries' ``name``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        found |= {str(k) for k in value}
        for v in value.values():
            found |= names_inside(v)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict) and isinstance(v.get("name"), str):
                found.add(v["name"])
            found |= names_inside(v)
    return found


def original(case: Case) -> dict[str, Any]:
    return _original(case.base)


@functools.cache
def _original(base: str) -> dict[str, Any]:
    import tomllib

    from .mutate import STUDY_FILES

    path = next(p for p in STUDY_FILES if p.stem == base)
    return tomllib.loads(path.read_text(encoding="utf-8"))


def check_error(case: Case, exc: StudySpecError) -> str | None:
    """None when the refusal names the file, the line, the key and what to write; else what is missing."""
    message = str(exc)
    file = f"{case.base}.toml"
    if "x" * 200 in message:
        return "a 10,000-character value is echoed whole"
    if "not valid TOML" in message:
        if f"line {case.line}" not in message:
            return f"TOML error without line {case.line}"
        return None if HINT.search(message) else "TOML error without what to write"
    problems = [line.strip() for line in message.splitlines()[1:]]
    if not problems:
        return "no problem listed"
    for problem in problems:
        if not (problem.startswith(f"{file}, line ") or problem.startswith(f"{file}:")):
            return f"problem without file and line: {problem[:120]}"
        if not HINT.search(problem):
            return f"problem without what to write: {problem[:160]}"
    # the key: the mutated key itself, a table above it, or (for a deleted or renamed entry) its name
    # where the study still refers to it
    tokens = {dotted(case.path[:end]) for end in range(2, len(case.path) + 1)} | {dotted(case.path)}
    tokens |= {f"[{case.path[0]}]"} if len(case.path) == 1 else set()
    tokens |= {repr(str(part)) for part in case.path[1:] if isinstance(part, str)}
    if len(case.path) >= 2:
        # a rule over the whole table ("an active comparator needs concept = ..."): the table and the key
        tokens |= {f"{dotted(case.path[:-1])} is invalid: {w}" for w in ("", "a ", "an ", "kind")}
        if f"{case.path[-1]} =" in message or f"{case.path[-1]}" in message.split("is invalid:")[-1]:
            tokens.add(f"{dotted(case.path[:-1])} is invalid")
    if case.family in ("delete", "empty", "unknown_key", "output_name", "reference", "case", "unicode", "spaces"):
        with contextlib.suppress(KeyError, IndexError, TypeError):  # a typo'd key is not in the original
            tokens |= {repr(n) for n in names_inside(get(original(case), case.path))}
    if case.family == "reference" and isinstance(case.value, (str, list)):
        tokens |= {repr(v) for v in (case.value if isinstance(case.value, list) else [case.value])}
    if case.path[:1] == ("outcomes",):
        tokens.add("primary = true")  # "no / 2 outcomes are marked primary": the outcomes table
    if not any(t in message for t in tokens):
        return f"no problem names {dotted(case.path)}"
    # the mutated key's own problem is on its line
    own = re.compile(rf"^{re.escape(file)}, line (\d+): {re.escape(dotted(case.path))}(?::| =| is invalid)")
    for problem in problems:
        hit = own.match(problem)
        if hit and case.line is not None and int(hit.group(1)) != case.line:
            return f"{dotted(case.path)} reported on line {hit.group(1)}, written on line {case.line}"
    return None


def test_the_generator_makes_several_hundred_cases_of_every_family():
    counts = Counter(c.family for c in CASES)
    assert sum(counts.values()) >= 1000, counts
    for family in (
        "delete",
        "wrong_type",
        "empty",
        "number",
        "unicode",
        "spaces",
        "case",
        "duplicate",
        "unknown_key",
        "reference",
        "window",
        "setting",
        "output_name",
    ):
        assert counts[family] >= 10, (family, counts)
    # every key of every shipped study is attacked (once per key of the language)
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_shipped_study_loads_unmutated():
    import tomllib

    from .mutate import STUDY_FILES, dumps

    for path in STUDY_FILES:
        # through the writer too: a mutation differs from its study only by the mutation
        text, _ = dumps(tomllib.loads(path.read_text(encoding="utf-8")))
        assert isinstance(parse_study_text(text, where=path.name), Study), path


@pytest.mark.parametrize("family", FAMILIES)
def test_each_case_ends_in_a_right_load_or_a_located_refusal(family, outcomes):
    wrong = []
    for case in (c for c in CASES if c.family == family):
        result = outcomes[case.id]
        problem = check_error(case, result) if isinstance(result, StudySpecError) else check_load(case, result)
        if problem:
            wrong.append(f"{case.id}: {problem}")
    assert not wrong, f"{len(wrong)} case(s):\n" + "\n".join(wrong[:30])


def _refused(cid_part: str, outcomes: dict[str, Any]) -> list[str]:
    hits = [cid for cid in outcomes if cid_part in cid]
    assert hits, cid_part
    return [cid for cid in hits if not isinstance(outcomes[cid], StudySpecError)]


@pytest.mark.parametrize(
    "cid_part",
    [
        ":window:",  # reversed ends; a grace window reaching past (or to) a horizon
        ":duplicate:",  # a key or a table twice: a TOML error
        ":output_name:",  # a name with a path separator, '..', an absolute path, a line break, upper case
        ":setting:ratio_",  # ratio 0, 100, 1.5
        ":setting:caliper_",  # caliper negative or zero
        ":setting:seed_negative",
        ":setting:seed_huge",  # past TOML's largest integer
        ":reference:missing",
        ":reference:shadow_builtin",
        ":reference:cycle_table",
        ":number:nan:",
        ":number:inf:",
        ":number:minus_inf:",
        ":unicode:nul:",
        ":unicode:newline:",
        ":unicode:rtl:",
        ":unicode:long10k:",
        ":wrong_type:datetime:",
        ":wrong_type:array:",
        ":wrong_type:table:",
    ],
)
def test_these_families_are_always_refused(cid_part, outcomes):
    # the long text, NUL and line break are fine in the description only (plain text, lines allowed)
    allowed = {cid for cid in outcomes if cid.endswith(":study.description") and ":unicode:" in cid}
    allowed.discard(next((c for c in outcomes if c.endswith("unicode:nul:study.description")), ""))
    accepted = [cid for cid in _refused(cid_part, outcomes) if cid not in allowed]
    assert not accepted, accepted[:20]


@pytest.mark.parametrize(
    ("cid_suffix", "key", "expected"),
    [
        ("setting:small_cell_0:report.small_cell_threshold", ("report", "small_cell_threshold"), 0),
        ("setting:small_cell_1:report.small_cell_threshold", ("report", "small_cell_threshold"), 1),
        ("setting:small_cell_1000:report.small_cell_threshold", ("report", "small_cell_threshold"), 1000),
        ("setting:seed_max:study.seed", ("study", "seed"), 2**63 - 1),
        ("setting:seed_2_32:study.seed", ("study", "seed"), 2**32),
    ],
)
def test_edge_settings_that_load_keep_the_value_written(cid_suffix, key, expected, outcomes):
    cid = f"magnesium_ckrt:{cid_suffix}"
    study = outcomes[cid]
    assert isinstance(study, Study), study
    assert loaded_at(study, key) == expected


def test_spaces_around_a_label_are_stripped_and_around_a_name_refused(outcomes):
    stripped = outcomes["magnesium_ckrt:spaces:around:exposure.label"]
    assert isinstance(stripped, Study) and stripped.exposure.label == "Mg"
    refused = outcomes["magnesium_ckrt:spaces:around:dose.name"]
    assert isinstance(refused, StudySpecError) and "lower-case identifier" in str(refused)
    # an enum value in the wrong case is refused with the value it should be
    upper = outcomes["magnesium_ckrt:case:upper:covariates.serum_mg.summary"]
    assert isinstance(upper, StudySpecError) and "did you mean 'nearest'" in str(upper)


def test_a_grace_window_reaching_the_horizon_is_refused_with_both_numbers(outcomes):
    exc = outcomes["thiamine_sepsis:window:grace_past_horizon:exposure.window"]
    assert isinstance(exc, StudySpecError)
    text = str(exc)
    assert "exposure.window" in text and "(0h, 696h]" in text and "28 days = 672h" in text
    assert "Shorten the window" in text


def test_a_duplicate_key_names_the_line_and_shows_it(outcomes):
    exc = outcomes["magnesium_ckrt:duplicate:key:study.title"]
    assert isinstance(exc, StudySpecError)
    assert "line 4" in str(exc) and "title = " in str(exc) and "keep one of the two lines" in str(exc)


def test_a_deleted_optional_key_takes_its_documented_default(outcomes):
    study = outcomes["magnesium_ckrt:delete:delete:analysis.matching.caliper"]
    assert isinstance(study, Study) and study.analysis.matching.caliper == 0.2
    study = outcomes["magnesium_ckrt:delete:delete:index.select"]
    assert isinstance(study, Study) and study.index.select == "first"
    # a required key is refused by name, with what to add
    exc = outcomes["magnesium_ckrt:delete:delete:outcomes.death.horizon_days"]
    assert isinstance(exc, StudySpecError)
    assert "outcomes.death.horizon_days: required key is missing; add horizon_days = a number" in str(exc)


def test_the_mutated_values_are_really_written(outcomes):
    # the generator round trip: a value mutation changes exactly the key it names
    case = next(c for c in CASES if c.id == "magnesium_ckrt:number:zero:study.seed")
    assert "seed = 0\n" in case.text and case.value == 0
    assert isinstance(outcomes[case.id], Study) and outcomes[case.id].study.seed == 0
    deleted = next(c for c in CASES if c.id == "magnesium_ckrt:delete:delete:study.seed")
    assert "seed =" not in deleted.text.split("[concepts")[0]
    assert DELETE is not None
