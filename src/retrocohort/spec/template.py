"""The commented template study file that ``retrocohort new STUDY.toml`` writes.

The template is a whole, valid design except for the places the user must
decide (the question's index event, exposure, labels, horizon). Each such place
holds a *placeholder*, a TOML literal string ``'<fill: WHAT | e.g. EXAMPLE>'``
where ``EXAMPLE`` is a TOML value. Placeholders are strings so the template is
valid TOML; :func:`unfilled` finds them in a parsed file, and
:func:`~retrocohort.spec.load_study_file` refuses a file that still holds one,
naming the line, the key and what to write there, rather than failing with a
type error far from the cause. :func:`fill_examples` puts every example in
(the tests check that the result loads, so the template cannot rot).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from .catalogue import BASELINE_BUILTINS, EVENT_BUILTINS

PLACEHOLDER_PREFIX = "<fill:"

# '<fill: what to write | e.g. example>' as it appears in the file (a TOML literal string).
_PLACEHOLDER = re.compile(r"'<fill:\s*(?P<what>[^|']*?)\s*\|\s*e\.g\.\s*(?P<example>[^']*?)\s*>'")

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def _wrap(names: tuple[str, ...], indent: str = "#   ", width: int = 100) -> str:
    lines: list[str] = []
    line = indent
    for name in names:
        piece = name + ", "
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = indent
        line += piece
    lines.append(line.rstrip().rstrip(","))
    return "\n".join(lines)


_TEMPLATE = """\
# A retrocohort study file: a retrospective, propensity-matched cohort study on MIMIC-IV.
# Written by `retrocohort new`. Replace every '<fill: ... | e.g. ...>' with your own value
# (the text after "e.g." is an example you may keep), adjust the rest, then check it on your data:
#
#   retrocohort check /data/mimic-iv --study {file_name}
#
# The language reference is docs/study-language.md; concepts and their selectors are in
# docs/concepts.md. Lines starting with # are comments.

[study]
name = "{name}"                                  # a-z, 0-9 and single _ (names the output folder)
title = '<fill: the study title, as in a paper | e.g. "Early vasopressin and 28-day outcomes in shock">'
description = ""                                 # one paragraph for the report (optional)
seed = 1                                         # random seed of the matching (ties broken at random)

# ---- concepts: named sets of event rows from any MIMIC-IV table --------------------------------
# A concept reads one table and keeps the rows its selectors allow: itemids (icu tables, labevents),
# codes / code_prefixes (diagnoses_icd, procedures_icd), drugs and routes (prescriptions, emar,
# pharmacy), value_min / value_max, status_exclude. Find itemids in icu/d_items and hosp/d_labitems.

[concepts.index_event]
table = '<fill: the table of the event that starts follow-up | e.g. "icu/inputevents">'
itemids = '<fill: its itemids | e.g. [221906]>'
label = '<fill: what the event is, in words | e.g. "Norepinephrine">'

[concepts.treatment]
table = '<fill: the table of the exposure | e.g. "icu/inputevents">'
itemids = '<fill: the exposure itemids | e.g. [222315]>'
status_exclude = ["Rewritten"]                   # inputevents rows replaced by a correction
label = '<fill: the exposure, in words | e.g. "Vasopressin">'

# ---- index: the entry event --------------------------------------------------------------------
[index]
concept = "index_event"                          # one concept, a list of concepts, or a built-in
label = '<fill: the index event as the report names it ("Days since ...") | e.g. "norepinephrine start">'
select = "first"                                 # "first" per patient, "first_passing" the criteria, "first_per_stay"
min_age = 18
first_icu_stay_only = true

# ---- criteria: inclusion and exclusion rules, in order; each is one line of the attrition log ----
# window: "(0h, 48h]", "[-24h, 24h]", "[-365d, 0h)", "(-inf, 48h]" or "index_day"
# ('[' and ']' include the end, '(' and ')' exclude it; h = hours, d = days from the index).

[[criteria]]
name = "died_early"
label = "died within 24 h of the index"
rule = "exclude"
concept = "death"
window = "(-inf, 24h]"

# [[criteria]]                                   # e.g. a washout: no exposure in the year before
# name = "no_prior_treatment"
# label = "no exposure in the year before the index"
# rule = "exclude"
# concept = "treatment"
# window = "[-365d, 0h)"

# ---- exposure and comparator -------------------------------------------------------------------
[exposure]
concept = "treatment"
label = '<fill: the exposed group, short | e.g. "vasopressin">'
window = '<fill: the grace window after the index in which the exposure starts | e.g. "(0h, 24h]">'

[comparator]
kind = "none"                                    # "none" in the window, or "active" with concept = ...
label = '<fill: the comparator group, short | e.g. "norepinephrine alone">'

# [dose]                                         # optional: amounts summed in the exposure window
# label = "Dose"
# unit = "mg"
# amount_units = {{ mg = 1.0, g = 1000.0 }}

# ---- covariates --------------------------------------------------------------------------------
# A built-in by name, or any concept summarised in a window: summary = first, last, min, max, mean,
# sum, nearest, count, any; missing = "drop" (an attrition line), "indicator" or "median".
# Baseline built-ins:
{baseline}
# Event built-ins (usable as concepts everywhere):
{events}

[covariates.age]
concept = "age"
label = "Age, years"

[covariates.sex]
concept = "sex"
label = "Sex"

[covariates.sofa]
concept = "sofa"
label = "SOFA score"

[covariates.sepsis]
concept = "sepsis"
label = "Sepsis (ICD codes)"

# ---- outcomes: as many as the study wants; exactly one primary ----------------------------------
# kind = "death", "first" (first occurrence of a concept) or "absence" (no concept for absence_days);
# competing = "death" gives cumulative incidence and Fine-Gray instead of Kaplan-Meier and Cox.

[outcomes.death]
kind = "death"
label = "Death"
horizon_days = '<fill: follow-up in days | e.g. 28>'
primary = true

# ---- analysis ----------------------------------------------------------------------------------
[analysis]
propensity = ["age", "sex", "sofa", "sepsis"]    # covariates of the propensity model
adjust = ["age", "sex", "sofa", "sepsis"]        # covariates of the adjusted outcome models
km_times_days = []                               # times for the survival table (e.g. [0, 7, 14, 28])
subgroups = []                                   # covariates for subgroup hazard ratios

[analysis.matching]
ratio = 1                                        # controls per exposed patient
caliper = 0.2                                    # in SD of the logit of the propensity score

# The emulated target trial of the grace window (docs/target-trial.md), beside the analysis above:
# time zero at the index, "start the exposure within the exposure window" vs "do not", clone, censor
# and weight, bootstrap intervals. The exposure window must start at 0h. Remove the # to ask for it.
# [analysis.target_trial]
# censoring_model = "pooled_logistic"            # or "cox"
# interval_hours = 6                             # intervals of the grace window
# truncate = [1, 99]                             # percentiles of each strategy's weights
# replicates = 500                               # bootstrap replicates
# not_applied = ["died_early"]                  # criteria looking past the index: the early deaths above

[report]
small_cell_threshold = 5                         # counts below this are never printed
"""


def study_name_for(file_name: str) -> str:
    """A valid study name from a file name (``"My Study.toml"`` -> ``"my_study"``)."""
    stem = re.sub(r"\.toml$", "", file_name.rsplit("/", 1)[-1], flags=re.IGNORECASE)
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    name = re.sub(r"^[0-9_]+", "", name)
    return name or "my_study"


def template_text(name: str = "my_study", file_name: str = "study.toml") -> str:
    """The commented template study file.

    Parameters
    ----------
    name
        The study name written in ``[study] name`` (a-z, 0-9, single ``_``).
    file_name
        The file name shown in the ``retrocohort check`` hint at the top.

    Raises
    ------
    InputError
        ``name`` is not a valid study name.
    """
    if not _NAME.match(name):
        raise InputError(f"study name {name!r} is not allowed; use a-z, 0-9 and single _ between words")
    return _TEMPLATE.format(
        name=name,
        file_name=file_name,
        baseline=_wrap(BASELINE_BUILTINS),
        events=_wrap(EVENT_BUILTINS),
    )


def placeholders(text: str) -> list[tuple[int, str, str]]:
    """The placeholders of a study file's text: (line, what to write, example)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        for match in _PLACEHOLDER.finditer(line):
            found.append((number, match.group("what"), match.group("example")))
    return found


def fill_examples(text: str) -> str:
    """The text with every placeholder replaced by its example value."""
    return _PLACEHOLDER.sub(lambda m: m.group("example"), text)


def unfilled(raw: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Key paths of a parsed study whose value is still a placeholder, with what to write there."""
    if isinstance(raw, str):
        if raw.lstrip().startswith(PLACEHOLDER_PREFIX):
            what = raw.strip()[len(PLACEHOLDER_PREFIX) :].rstrip(">").split("|", 1)
            hint = what[0].strip()
            example = what[1].strip() if len(what) > 1 else ""
            return [(loc, hint + (f" ({example})" if example else ""))]
        return []
    if isinstance(raw, dict):
        return [hit for key, value in raw.items() for hit in unfilled(value, (*loc, key))]
    if isinstance(raw, list):
        return [hit for i, value in enumerate(raw) for hit in unfilled(value, (*loc, i))]
    return []


__all__ = ["PLACEHOLDER_PREFIX", "fill_examples", "placeholders", "study_name_for", "template_text", "unfilled"]
