"""The study language: a whole retrospective cohort design as data (pydantic, frozen, no extra keys).

A study file (TOML) has these parts, each a model below and a section of
``docs/study-language.md``:

``[study]`` who the study is; ``[concepts.NAME]`` named event sets
(:class:`~retrocohort.spec.concept.ConceptSpec`); ``[index]`` the entry event;
``[[criteria]]`` inclusion and exclusion rules, in order; ``[exposure]`` and
``[comparator]``; optional ``[dose]``; ``[covariates.NAME]``;
``[outcomes.NAME]``; ``[analysis]``; ``[report]``.

Nothing here defaults to the flagship design: ``[study]``,
``[index]``, ``[exposure]``, ``[comparator]`` and at least one outcome must be
written. Structural checks live on the models; checks that need the whole
study (does a concept name exist, is one outcome primary) are in
:func:`study_problems`, which the loader runs and locates in the file.
"""

from __future__ import annotations

import hashlib
import math
import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .catalogue import BUILTIN_CONCEPTS
from .concept import ConceptSpec
from .window import Window

#: Names of concepts, covariates, outcomes and criteria: lower-case identifiers (they become column names).
NAME_PATTERN = r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$"  # no "__": the builder keeps that for built-in details
#: Longest name: it becomes a column name and a file or folder name (<name>-output, 255 bytes at most on disk).
MAX_NAME_CHARS = 64
_NAME_RULE = f"a-z, 0-9, single _ between words, at most {MAX_NAME_CHARS} characters"

#: Longest follow-up (horizon, absence) and farthest window end: 100 years. Longer is a typo (1e308, a
#: date pasted as a number) and would overflow the date arithmetic of the cohort builder.
MAX_DAYS = 36_525

#: Columns every analysis frame has; a covariate or outcome may not take these names.
RESERVED_COLUMNS: tuple[str, ...] = ("subject_id", "stay_id", "hadm_id", "index_time", "exposed", "exposure_start_days")

#: Attrition steps the builder writes itself; a criterion may not take these names.
RESERVED_STEPS: tuple[str, ...] = (
    "index_event",
    "data_checks",
    "icu_stay",
    "first_icu_stay",
    "adult",
    "age",
    "both_arms",
    "neither_arm",
    "missing_covariates",
    "eligible",
)

#: Summaries of a concept over a window, and whether each needs the events' values.
SUMMARIES: dict[str, bool] = {
    "first": True,  # value of the earliest event (ties: the lower value)
    "last": True,  # value of the latest event (ties: the higher value)
    "min": True,
    "max": True,
    "mean": True,
    "sum": True,
    "nearest": True,  # value of the event nearest the index time (ties: earlier, then lower)
    "count": False,
    "any": False,
}
Summary = Literal["first", "last", "min", "max", "mean", "sum", "nearest", "count", "any"]

#: Concept tables whose rows carry no number (codes, moves between wards): no value summary fits them.
VALUELESS_TABLES: tuple[str, ...] = (
    "hosp/diagnoses_icd",
    "hosp/procedures_icd",
    "hosp/transfers",
    "hosp/services",
    "hosp/microbiologyevents",
    "icu/datetimeevents",
)


def _names(value: Any) -> Any:
    """A single concept name where a list is allowed: ``concept = "krt"`` is ``concept = ["krt"]``.

    A name listed twice is kept once (its events would otherwise count twice).
    """
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(dict.fromkeys(value))
    return value


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


class _Section(BaseModel):
    # allow_inf_nan=False: TOML has inf and nan, and neither is a horizon, a factor, a caliper or a ratio
    # (windows are strings, where "-inf" / "inf" is an open end: see window.py).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        """Refuse true/false where a number is expected (pydantic would read ``ratio = true`` as 1)."""
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is None or field.annotation is bool:
            return value
        items = value if isinstance(value, (list, tuple)) else (value,)
        args = typing.get_args(field.annotation)
        if isinstance(value, dict) and typing.get_origin(field.annotation) is dict and not _is_model(args[1]):
            # a table of numbers (amount_units = { g = true }, published = { death = [true, 0.1, 2] })
            for key, inner in value.items():
                if any(isinstance(v, bool) for v in (inner if isinstance(inner, (list, tuple)) else (inner,))):
                    raise ValueError(f"{key} = {_toml(inner)}: true/false is not a value here; give a number")
            return value
        # false switches an optional setting off (its own validator makes it None); anywhere else pydantic
        # would read it as 0 (small_cell_threshold = false would switch suppression off).
        optional = type(None) in typing.get_args(field.annotation)
        off = value is False and optional
        if not off and any(isinstance(v, bool) for v in items):
            raise ValueError(
                "true/false is not a value here: give a number (or false to switch an optional setting off)"
            )
        return value

    @field_validator("label", "title", "unit", "description", mode="before", check_fields=False)
    @classmethod
    def _strip_text(cls, value: Any) -> Any:
        # Spaces around a label are never meant (they shift table columns and defeat "is this the exposure's
        # label?"): stripped, and a label of spaces only is then refused as empty.
        return value.strip() if isinstance(value, str) else value


class StudyInfo(_Section):
    """``[study]``: who the study is."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(1, ge=0, le=2**63 - 1)  # TOML's largest integer

    @field_validator("name", mode="before")
    @classmethod
    def _safe_name(cls, v: Any) -> Any:
        # the name becomes the default output folder <name>-output: one plain path component
        if isinstance(v, str) and not _is_identifier(v):
            raise ValueError(
                f"study name {_shown(v)} must be a lower-case identifier ({_NAME_RULE}, "
                "e.g. my_study): it names the output folder <name>-output"
            )
        return v


class IndexSpec(_Section):
    """``[index]``: the entry event.

    ``select = "first"``: the patient's first entry event (per ICU stay the
    first event of that stay is a candidate; the earliest candidate is the
    index; a patient whose first candidate fails a rule is not re-indexed).
    ``"first_passing"``: the earliest candidate that passes the adult rule and
    every criterion. ``"first_per_stay"``: every candidate is an index (the first
    entry event of each ICU stay), so a patient may enter once per stay and the
    analysis unit is the ICU stay; the outcome models then cluster on the patient.

    ``at = "start"`` (default): the index time is the entry event's start;
    ``"end"``: its end (e.g. the end of invasive ventilation, i.e. extubation).
    With ``"end"`` an event without an end time cannot be an index: it is left
    out and counted in a note. Every window is then relative to the end.
    """

    concept: tuple[str, ...] = Field(min_length=1)
    label: str = Field(min_length=1)
    select: Literal["first", "first_passing", "first_per_stay"] = "first"
    at: Literal["start", "end"] = "start"
    min_age: float | None = Field(18, ge=0, le=120)
    max_age: float | None = Field(None, ge=0, le=130)
    first_icu_stay_only: bool = False

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))

    @model_validator(mode="after")
    def _ages(self) -> IndexSpec:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError(f"min_age {self.min_age:g} is above max_age {self.max_age:g}")
        return self


class Criterion(_Section):
    """``[[criteria]]``: one inclusion or exclusion rule, one line of the attrition log.

    Event concepts are counted in ``window`` (an event counts when it starts in
    the window, or with ``match = "overlap"`` when it runs at any time in it);
    ``include`` keeps a patient whose count is in [at_least, at_most],
    ``exclude`` drops such a patient. A baseline built-in (e.g. ``sofa``) is
    filtered by value instead: no window, ``value_min`` / ``value_max``.
    """

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    label: str = Field(min_length=1)
    rule: Literal["include", "exclude"]
    concept: tuple[str, ...] = Field(min_length=1)
    window: Window | None = None
    match: Literal["start", "overlap"] = "start"
    at_least: int = Field(1, ge=0, le=1_000_000)  # a count of events; more is a typo (and overflows SQL)
    at_most: int | None = Field(None, ge=0, le=1_000_000)
    value_min: float | None = None
    value_max: float | None = None
    # the levels that match, for a categorical baseline built-in (sex): value_min / value_max cannot select "F"
    values: tuple[str, ...] | None = None

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("values", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            if not v:
                raise ValueError('an empty list selects nobody; leave the key out or list the levels, e.g. ["F"]')
            if not all(isinstance(x, str) and x.strip() for x in v):
                raise ValueError('the levels are written as text, e.g. values = ["F"]')
            return tuple(x.strip() for x in v)
        return v

    @model_validator(mode="after")
    def _counts(self) -> Criterion:
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most {self.at_most} is below at_least {self.at_least}; no patient can match")
        if self.value_min is not None and self.value_max is not None and self.value_min > self.value_max:
            raise ValueError(f"value_min {self.value_min:g} is above value_max {self.value_max:g}")
        return self


class ExposureSpec(_Section):
    """``[exposure]``: a concept started in a grace window after the index."""

    concept: tuple[str, ...] = Field(min_length=1)
    label: str = Field(min_length=1)
    window: Window

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("window")
    @classmethod
    def _bounded(cls, v: Window) -> Window:
        if not v.bounded:
            raise ValueError(f"the exposure window {v.describe()} must have two finite ends (a grace window)")
        return v


class ComparatorSpec(_Section):
    """``[comparator]``: ``kind = "none"`` (no exposure in the window) or ``"active"`` (another concept in it)."""

    kind: Literal["none", "active"]
    label: str = Field(min_length=1)
    concept: tuple[str, ...] = ()

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))

    @model_validator(mode="after")
    def _concept_fits_kind(self) -> ComparatorSpec:
        if self.kind == "active" and not self.concept:
            raise ValueError("an active comparator needs concept = the comparator drug's concept")
        if self.kind == "none" and self.concept:
            raise ValueError('kind = "none" takes no concept; for an active comparator write kind = "active"')
        return self


class DoseSpec(_Section):
    """``[dose]``: exposure amounts summed in the exposure window.

    ``dose = factor x sum(amount x amount_units[unit of the row])``; a row whose
    unit is not listed still counts as exposure but adds no dose (noted).
    """

    name: str = Field("dose", pattern=NAME_PATTERN, max_length=MAX_NAME_CHARS)
    label: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    amount_units: dict[str, float] = Field(min_length=1)
    factor: float = Field(1.0, gt=0, le=1e6)  # a unit conversion (1 g MgSO4 = 8.12 mEq), not a free number

    @field_validator("amount_units")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not (0 < f <= 1e6 and math.isfinite(f))}
        if bad:
            raise ValueError(
                f"conversion factors must be positive numbers up to 1e6, e.g. {{ g = 1, mg = 0.001 }}: {bad}"
            )
        if any(not k.strip() for k in v):
            raise ValueError("a unit name is empty; write the unit as the data spell it, e.g. { mg = 0.001 }")
        lowered = [k.strip().lower() for k in v]
        if len(set(lowered)) != len(lowered):
            raise ValueError("a unit is listed twice (units are compared without case and spaces)")
        return {k.strip().lower(): float(f) for k, f in v.items()}


class CovariateSpec(_Section):
    """``[covariates.NAME]``: a concept summarised in a window, or a baseline built-in by name."""

    concept: tuple[str, ...] = Field(min_length=1)
    label: str = ""
    window: Window | None = None
    summary: Summary | None = None
    match: Literal["start", "overlap"] = "start"
    type: Literal["numeric", "binary", "categorical"] | None = None
    missing: Literal["drop", "indicator", "median"] = "drop"
    value_min: float | None = None
    value_max: float | None = None

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))


class OutcomeSpec(_Section):
    """``[outcomes.NAME]``: death, the first occurrence of a concept, or its sustained absence."""

    kind: Literal["death", "first", "absence"]
    label: str = Field(min_length=1)
    horizon_days: float = Field(gt=0, le=MAX_DAYS)
    concept: tuple[str, ...] = ()
    absence_days: float | None = Field(None, gt=0, le=MAX_DAYS)
    competing: Literal["death"] | None = None
    exclude_prior: Window | None = None
    primary: bool = False

    _one = field_validator("concept", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("competing", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if v is False or v == "none" else v

    @model_validator(mode="after")
    def _kind_fits(self) -> OutcomeSpec:
        if self.kind == "death":
            if self.concept:
                raise ValueError('kind = "death" takes no concept (death comes from admissions and patients)')
            if self.competing is not None:
                raise ValueError("death cannot compete with itself; remove competing")
            if self.exclude_prior is not None:
                raise ValueError("exclude_prior does not apply to death")
        elif not self.concept:
            raise ValueError(f'kind = "{self.kind}" needs concept = the event that is the outcome')
        if self.kind == "absence" and self.absence_days is None:
            raise ValueError('kind = "absence" needs absence_days (e.g. 7: free of the concept for 7 days, alive)')
        if self.kind != "absence" and self.absence_days is not None:
            raise ValueError(f'absence_days applies only to kind = "absence", not "{self.kind}"')
        prior = self.exclude_prior
        if prior is not None and not prior.calendar_day and prior.end_hours > 0:
            raise ValueError(f"exclude_prior {prior.describe()} must end at or before the index (0h)")
        return self


class MatchingSpec(_Section):
    """``[analysis.matching]``: k:1 nearest-neighbour matching on the propensity score."""

    method: Literal["nearest"] = "nearest"
    ratio: int = Field(1, ge=1, le=10)
    distance: Literal["logit", "propensity"] = "logit"
    caliper: float | None = Field(0.2, gt=0)
    order: Literal["largest", "smallest", "random", "data"] = "largest"
    replace: bool = False
    exact: tuple[str, ...] = ()

    @field_validator("caliper", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if v is False or v in ("none", "off") else v


class TargetTrialSpec(_Section):
    """``[analysis.target_trial]``: the emulated trial of starting the exposure within the grace window or not.

    The grace window is the exposure window (it must start at the index). Each patient eligible at the
    index is cloned into both strategies, censored when the clone deviates and reweighted by inverse
    probability of censoring (:func:`retrocohort.designs.clone_censor_weight`); intervals are a percentile
    bootstrap over patients. ``truncate`` is in percentiles (``[1, 99]``); ``covariates`` left out means
    the propensity covariates; ``outcomes`` left out means every outcome; ``seed`` left out means the
    study's seed. ``not_applied`` names the criteria that look past the index and are left out of the
    trial's eligibility (e.g. a death within the grace window). A baseline covariate of the censoring
    model must be known at time zero: one whose window ends after the index is refused unless it is
    listed in ``past_index_covariates`` (kept knowingly; the report then warns).
    """

    enabled: bool = True
    censoring_model: Literal["pooled_logistic", "cox"] = "pooled_logistic"
    interval_hours: float = Field(6.0, gt=0)
    covariates: tuple[str, ...] | None = None
    time_varying: tuple[str, ...] = ()
    stabilised: bool = True
    truncate: tuple[float, float] = (0.0, 100.0)
    replicates: int = Field(500, ge=2, le=100_000)
    seed: int | None = Field(None, ge=0)
    min_ess: float = Field(20.0, gt=0)
    outcomes: tuple[str, ...] | None = None
    not_applied: tuple[str, ...] = ()
    past_index_covariates: tuple[str, ...] = ()

    @field_validator("covariates", "outcomes")
    @classmethod
    def _some(cls, v: tuple[str, ...] | None, info: Any) -> tuple[str, ...] | None:
        # written and empty: a model of nothing / a trial of no outcome (leave the key out for the default)
        if v is not None and not v:
            default = "the propensity covariates" if info.field_name == "covariates" else "every outcome"
            raise ValueError(f"{info.field_name} is empty: list at least one, or leave the key out for {default}")
        return v

    @field_validator("truncate")
    @classmethod
    def _percentiles(cls, v: tuple[float, float]) -> tuple[float, float]:
        lower, upper = v
        if not (0 <= lower < upper <= 100):
            raise ValueError(
                f"truncate = [{lower:g}, {upper:g}] must be percentiles [lower, upper] with 0 <= lower < upper <= 100, "
                "e.g. [1, 99] (or [0, 100] for no truncation)"
            )
        return v


class AnalysisSpec(_Section):
    """``[analysis]``: propensity model, matching, outcome models, sensitivity analyses, subgroups.

    ``propensity`` and ``adjust`` left empty mean every covariate of the study.
    """

    propensity: tuple[str, ...] = ()
    link: Literal["logit", "probit"] = "logit"
    matching: MatchingSpec = MatchingSpec()
    adjust: tuple[str, ...] = ()
    ties: Literal["efron", "breslow"] = "efron"
    cluster_on_matched_set: bool = True
    conf_level: float = Field(0.95, gt=0.5, lt=1)
    km_times_days: tuple[float, ...] = ()
    sensitivity_full_cohort: bool = True
    sensitivity_iptw: bool = True
    e_value: bool = True
    subgroups: tuple[str, ...] = ()
    target_trial: TargetTrialSpec | None = None

    @field_validator("target_trial", mode="before")
    @classmethod
    def _trial_off(cls, v: Any) -> Any:
        # target_trial = false switches it off; true asks for it with every default
        if v is False:
            return None
        return {} if v is True else v

    @field_validator("propensity", "adjust")
    @classmethod
    def _some_covariates(cls, v: tuple[str, ...], info: Any) -> tuple[str, ...]:
        # written and empty: a model of nothing, not "every covariate" (leave the key out for that)
        if not v:
            model = "propensity model" if info.field_name == "propensity" else "outcome models' adjustment set"
            raise ValueError(
                f"the {model} needs at least one covariate: list them, or leave "
                "the key out to use every covariate of the study"
            )
        return v

    @field_validator("km_times_days")
    @classmethod
    def _times(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (math.isfinite(t) and t >= 0) for t in v) or list(v) != sorted(set(v)):
            raise ValueError(f"km_times_days {list(v)} must be distinct days >= 0 in increasing order")
        return v


class ReportSpec(_Section):
    """``[report]``: disclosure control and published estimates to show beside ours."""

    small_cell_threshold: int = Field(5, ge=0, le=100_000)  # larger hides every count of any cohort
    # outcome name -> [estimate, lower, upper] of a published hazard ratio
    published: dict[str, tuple[float, float, float]] = {}

    @field_validator("published")
    @classmethod
    def _ordered(cls, v: dict[str, tuple[float, float, float]]) -> dict[str, tuple[float, float, float]]:
        for name, (hr, lower, upper) in v.items():
            if not (0 < lower <= hr <= upper):
                raise ValueError(
                    f"published {name} = [{hr}, {lower}, {upper}] must be [estimate, lower, upper] "
                    "with 0 < lower <= estimate <= upper" + (" (lower and upper swapped?)" if upper < lower else "")
                )
        return v

    @field_validator("small_cell_threshold")
    @classmethod
    def _threshold_hides_something(cls, value: int) -> int:
        # "<2" can only be 1: a threshold of 2 would print every suppressed count exactly.
        if value == 2:
            raise ValueError(
                'small_cell_threshold = 2 would print a count of 1 as "<2", which can only be 1; '
                "use 0 (no suppression) or 3 and above (5 is usual, 11 for CMS-style rules)"
            )
        return value


class Study(_Section):
    """A whole study. Build with :func:`retrocohort.spec.load_study_file` (or in code, then :func:`check_study`)."""

    study: StudyInfo
    concepts: dict[str, ConceptSpec] = {}
    index: IndexSpec
    criteria: tuple[Criterion, ...] = ()
    exposure: ExposureSpec
    comparator: ComparatorSpec
    dose: DoseSpec | None = None
    covariates: dict[str, CovariateSpec] = {}
    outcomes: dict[str, OutcomeSpec] = Field(min_length=1)
    analysis: AnalysisSpec = AnalysisSpec()
    report: ReportSpec = ReportSpec()
    source_text: str | None = Field(default=None, exclude=True, repr=False)
    source_path: str | None = Field(default=None, exclude=True, repr=False)

    # -- name resolution -------------------------------------------------------------------------

    def concept_kind(self, name: str) -> Literal["user", "events", "baseline"] | None:
        """``"user"`` for a ``[concepts.NAME]``, the built-in's kind, or None when unknown."""
        if name in self.concepts:
            return "user"
        info = BUILTIN_CONCEPTS.get(name)
        return info.kind if info is not None else None

    def resolve(self, name: str) -> ConceptSpec | str:
        """The user ConceptSpec of ``name``, or ``name`` itself for a built-in (what ``concept_events`` takes)."""
        return self.concepts.get(name, name)

    def has_values(self, name: str) -> bool:
        """Whether the events of concept ``name`` carry a number (a value or an amount) to summarise."""
        kind = self.concept_kind(name)
        if kind == "user":
            return self.concepts[name].table not in VALUELESS_TABLES
        if kind == "events":
            return BUILTIN_CONCEPTS[name].value_type != "none"
        return False

    def concept_label(self, name: str) -> str:
        """A human label for a concept name."""
        if name in self.concepts and self.concepts[name].label:
            return self.concepts[name].label
        if name in BUILTIN_CONCEPTS:
            return BUILTIN_CONCEPTS[name].label
        return name.replace("_", " ")

    @property
    def primary_outcome(self) -> str:
        """Name of the outcome marked ``primary = true``."""
        return next(n for n, o in self.outcomes.items() if o.primary)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        """Covariate columns, in the order written."""
        return tuple(self.covariates)

    @property
    def propensity_covariates(self) -> tuple[str, ...]:
        """The propensity model's covariates (every covariate when ``analysis.propensity`` is empty)."""
        return self.analysis.propensity or self.covariate_names

    @property
    def adjustment_set(self) -> tuple[str, ...]:
        """The outcome models' adjustment set (every covariate when ``analysis.adjust`` is empty)."""
        return self.analysis.adjust or self.covariate_names

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the study file text (of the validated design when built in code)."""
        text = self.source_text if self.source_text is not None else self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Checks that need the whole study; each problem is (location in the file, message).
# ---------------------------------------------------------------------------------------------

Problem = tuple[tuple[Any, ...], str]


def _closest(name: str, allowed: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def study_problems(study: Study) -> list[Problem]:
    """Every semantic problem of a structurally valid study, in file order.

    Checks: concept names exist (user or built-in, with did-you-mean), are used
    where their kind fits (a baseline built-in is not an event), user names do
    not shadow built-ins, windows are where they must be, aggregates fit the
    concept's values, exposure and comparator can be told apart, exactly one
    primary outcome, analysis names are covariates, columns do not clash.
    """
    problems: list[Problem] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        problems.append((loc, message))

    user = list(study.concepts)
    known = sorted(set(user) | set(BUILTIN_CONCEPTS))
    events_known = sorted(set(user) | {n for n, b in BUILTIN_CONCEPTS.items() if b.kind == "events"})

    for name in user:
        if name in BUILTIN_CONCEPTS:
            add(
                ("concepts", name),
                (
                    f"concept name {name!r} is a built-in concept; give yours another name "
                    f"(or drop it and use the built-in: {BUILTIN_CONCEPTS[name].rule})"
                ),
            )
        elif not _is_identifier(name):
            add(("concepts", name), f"concept name {_shown(name)} must be a lower-case identifier ({_NAME_RULE})")

    def need_events(loc: tuple[Any, ...], names: tuple[str, ...]) -> None:
        for name in names:
            kind = study.concept_kind(name)
            if kind is None:
                add(
                    loc,
                    (
                        f"unknown concept {_shown(name)}{_closest(name, known)}. {_define(name)}"
                        f"or use a built-in: {', '.join(sorted(BUILTIN_CONCEPTS))}"
                    ),
                )
            elif kind == "baseline":
                add(
                    loc,
                    (
                        f"{name!r} is a baseline built-in (one value per patient), not an event concept; "
                        f"event concepts here: {', '.join(events_known)}"
                    ),
                )

    need_events(("index", "concept"), study.index.concept)
    for name in study.index.concept:
        spec = study.concepts.get(name)
        if spec is not None and spec.table == "hosp/diagnoses_icd":
            # A code is dated at admittime or dischtime, both outside the ICU stay: every patient once left on
            # the icu_stay line with no word why (a heart-failure index found 214 patients and kept none).
            add(
                ("index", "concept"),
                f"concept {name!r} reads hosp/diagnoses_icd, whose codes are dated at the admission or the "
                "discharge, which lie outside the ICU stay (but for a death in the ICU), so (almost) every "
                "patient would leave on the icu_stay line. Take the ICU admission as the index "
                '(concept = "icu_admission") and make the codes a criterion: '
                f'[[criteria]] rule = "include", concept = "{name}", window = "[-30d, 0h]", with '
                f'dated_at = "admission" in [concepts.{name}]',
            )

    loc: tuple[Any, ...]
    seen_steps: set[str] = set()
    for i, crit in enumerate(study.criteria):
        loc = ("criteria", i)
        if crit.name in RESERVED_STEPS or crit.name.startswith("prior_"):
            add(
                (*loc, "name"),
                f"criterion name {crit.name!r} is a step the builder writes itself "
                f"({', '.join(RESERVED_STEPS)}, prior_<outcome>); choose another",
            )
        if crit.name in seen_steps:
            add((*loc, "name"), f"criterion name {crit.name!r} is used twice; each names one attrition line")
        seen_steps.add(crit.name)
        kinds = {study.concept_kind(n) for n in crit.concept}
        categorical = kinds == {"baseline"} and any(
            n in BUILTIN_CONCEPTS and BUILTIN_CONCEPTS[n].value_type == "categorical" for n in crit.concept
        )
        if categorical:
            # a range cannot select a level: value_min = 0 on sex once matched nobody, silently
            levels = "'F' or 'M'" if crit.concept[0] == "sex" else "its levels"
            for key in ("value_min", "value_max"):
                if getattr(crit, key) is not None:
                    add(
                        (*loc, key),
                        f"{crit.concept[0]!r} is categorical ({levels}): a value range cannot select a level; "
                        f'write values = ["F"] (the levels that match)',
                    )
            if crit.values is None and crit.value_min is None and crit.value_max is None:
                add(
                    (*loc, "concept"),
                    f'a rule on the categorical baseline value {crit.concept[0]!r} needs values, e.g. values = ["F"]',
                )
            if crit.concept[0] == "sex" and crit.values is not None:
                unknown = [v for v in crit.values if v.upper() not in ("F", "M")]
                if unknown:
                    add((*loc, "values"), f"sex is recorded as 'F' or 'M'; {unknown} matches nobody")
        elif crit.values is not None:
            add(
                (*loc, "values"),
                "values selects levels of a categorical baseline built-in (sex); for events, put the text values "
                "in the concept's own values selector, for a number use value_min / value_max",
            )
        if kinds == {"baseline"}:
            if len(crit.concept) != 1:
                add((*loc, "concept"), "a value filter on a baseline built-in names exactly one concept")
            if crit.window is not None:
                add(
                    (*loc, "window"),
                    (
                        f"{crit.concept[0]!r} is a baseline value at the index: it takes "
                        + (
                            'no window; select its levels with values = ["F"]'
                            if categorical
                            else "no window; filter it with value_min / value_max"
                        )
                    ),
                )
            if crit.value_min is None and crit.value_max is None and not categorical:
                add(
                    (*loc, "concept"),
                    (f"a rule on the baseline value {crit.concept[0]!r} needs value_min and/or value_max"),
                )
            continue
        need_events((*loc, "concept"), crit.concept)
        if crit.window is None:
            add(
                (*loc, "window"), ('a rule on events needs a window relative to the index, e.g. window = "[-24h, 24h]"')
            )
        if (crit.value_min is not None or crit.value_max is not None) and not all(
            study.has_values(n) for n in crit.concept if study.concept_kind(n) is not None
        ):
            add(
                (*loc, "value_min"),
                (
                    "a value filter needs concepts whose events carry values; "
                    f"{[n for n in crit.concept if not study.has_values(n)]} have none"
                ),
            )

    need_events(("exposure", "concept"), study.exposure.concept)
    grace = study.exposure.window
    grace_end = 24.0 if grace.calendar_day else grace.end_hours
    for name, out in study.outcomes.items():
        # Follow-up starts at the index; an outcome whose whole horizon lies inside the exposure window is
        # counted while exposure is still being decided (every exposed patient is immortal until exposed).
        if math.isfinite(grace_end) and grace_end >= out.horizon_days * 24.0:
            add(
                ("exposure", "window"),
                f"the exposure window {grace.describe()} ends at or after the horizon of outcome {name!r} "
                f"({out.horizon_days:g} days = {out.horizon_days * 24:g}h): the whole follow-up would lie inside "
                'the window in which exposure is still being decided. Shorten the window (e.g. "(0h, 48h]") or '
                "lengthen horizon_days",
            )
    if study.comparator.kind == "active":
        need_events(("comparator", "concept"), study.comparator.concept)
        exp_specs = {_identity(study, n) for n in study.exposure.concept}
        comp_specs = {_identity(study, n) for n in study.comparator.concept}
        if exp_specs & comp_specs:
            add(
                ("comparator", "concept"),
                (
                    "exposure and comparator share a concept "
                    f"({sorted(n for n in study.comparator.concept if _identity(study, n) in exp_specs)}); the two "
                    "arms could not be told apart"
                ),
            )
    if study.exposure.label.strip().lower() == study.comparator.label.strip().lower():
        add(
            ("comparator", "label"),
            (
                f"the comparator label {study.comparator.label!r} is the exposure's; "
                "tables and figures could not tell the arms apart"
            ),
        )

    if study.dose is not None and not all(
        study.has_values(n) for n in study.exposure.concept if study.concept_kind(n) is not None
    ):
        add(("dose",), (f"a dose needs exposure events with amounts; {list(study.exposure.concept)} carry none"))

    columns: dict[str, tuple[Any, ...]] = {c: () for c in RESERVED_COLUMNS}
    if study.dose is not None:
        columns[study.dose.name] = ("dose", "name")

    for name, cov in study.covariates.items():
        loc = ("covariates", name)
        if not _is_identifier(name):
            add(loc, f"covariate name {_shown(name)} must be a lower-case identifier ({_NAME_RULE})")
        if name in columns:
            add(loc, f"covariate name {name!r} is already a column of the analysis frame; rename it")
        columns[name] = loc
        if None in {study.concept_kind(n) for n in cov.concept}:
            for n in cov.concept:
                if study.concept_kind(n) is None:
                    add(
                        (*loc, "concept"),
                        (
                            f"unknown concept {_shown(n)}{_closest(n, known)}. {_define(n)}"
                            f"or use a built-in: {', '.join(sorted(BUILTIN_CONCEPTS))}"
                        ),
                    )
            continue
        if "baseline" in {study.concept_kind(n) for n in cov.concept}:
            if len(cov.concept) != 1:
                add((*loc, "concept"), "a baseline built-in covariate names exactly one concept")
                continue
            info = BUILTIN_CONCEPTS[cov.concept[0]]
            for key in ("window", "summary", "value_min", "value_max"):
                if getattr(cov, key) is not None:
                    add(
                        (*loc, key),
                        (
                            f"{cov.concept[0]!r} is a baseline built-in (one value at the index); "
                            f"{key} does not apply to it"
                        ),
                    )
            if cov.type is not None and info.value_type != "none" and cov.type != info.value_type:
                add((*loc, "type"), f"{cov.concept[0]!r} is {info.value_type}, not {cov.type}")
            continue
        if cov.window is None:
            add((*loc, "window"), 'a covariate from events needs a window, e.g. window = "[-24h, 0h]"')
        if cov.summary is None:
            add((*loc, "summary"), f"a covariate from events needs summary = one of {list(SUMMARIES)}")
            continue
        valueless = [n for n in cov.concept if not study.has_values(n)]
        if SUMMARIES[cov.summary] and valueless:
            add(
                (*loc, "summary"),
                (
                    f"summary = {cov.summary!r} needs values, but {valueless} carry none "
                    '(codes or timestamps); use "any" or "count"'
                ),
            )
        if cov.summary in ("any",) and cov.type not in (None, "binary"):
            add((*loc, "type"), f'summary = "any" gives 0/1: type must be "binary", not {cov.type!r}')
        if cov.summary == "count" and cov.type == "categorical":
            add((*loc, "type"), "a count is numeric, not categorical")

    for name, cov in study.covariates.items():
        # an indicator covariate writes NAME_missing beside NAME: it may not shadow another column
        if cov.missing == "indicator":
            col = f"{name}_missing"
            if col in columns and columns[col] != ("covariates", name):
                add(
                    ("covariates", name),
                    f'missing = "indicator" would write column {col!r}, which is already taken; rename one of them',
                )
            columns[col] = ("covariates", name)

    primaries = [n for n, o in study.outcomes.items() if o.primary]
    if len(primaries) != 1:
        what = "no outcome is" if not primaries else f"{len(primaries)} outcomes are ({', '.join(primaries)})"
        add(("outcomes",), f"{what} marked primary = true; mark exactly one")
    for name, out in study.outcomes.items():
        loc = ("outcomes", name)
        if not _is_identifier(name):
            add(loc, f"outcome name {_shown(name)} must be a lower-case identifier ({_NAME_RULE})")
        for col in (f"{name}_time", f"{name}_status"):
            if col in columns:
                add(loc, f"outcome {name!r} would write column {col!r}, which is already taken; rename it")
            columns[col] = loc
        if out.concept:
            need_events((*loc, "concept"), out.concept)

    covs = list(study.covariates)
    for key, names in (
        ("propensity", study.analysis.propensity),
        ("adjust", study.analysis.adjust),
        ("subgroups", study.analysis.subgroups),
    ):
        for n in names:
            if n not in study.covariates:
                add(
                    ("analysis", key),
                    (f"{n!r} is not a covariate of this study{_closest(n, covs)}. Covariates: {covs}{_NOT_DECLARED}"),
                )
        if len(set(names)) != len(names):
            add(("analysis", key), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    for n in study.analysis.matching.exact:
        if n not in study.covariates:
            add(
                ("analysis", "matching", "exact"),
                (f"{n!r} is not a covariate of this study{_closest(n, covs)}. Covariates: {covs}{_NOT_DECLARED}"),
            )
    for n in study.analysis.subgroups:
        if n in study.covariates and covariate_type(study, n) == "numeric":
            add(
                ("analysis", "subgroups"),
                (
                    f"subgroup {n!r} is numeric; subgroups need a binary or categorical covariate: give it "
                    'type = "binary" or "categorical", or remove it from subgroups'
                ),
            )
    for n in study.report.published:
        if n not in study.outcomes:
            add(
                ("report", "published"),
                (
                    f"{n!r} is not an outcome of this study"
                    f"{_closest(n, list(study.outcomes))}. Outcomes: {list(study.outcomes)}{_NOT_DECLARED}"
                ),
            )
    problems += _target_trial_problems(study)
    problems += _text_problems(study)
    longest = max((o.horizon_days for o in study.outcomes.values()), default=math.inf)
    beyond = [t for t in study.analysis.km_times_days if t > longest]
    if beyond:
        # a curve has no value after the end of follow-up; the report table would be blank there
        add(
            ("analysis", "km_times_days"),
            (
                f"report times {beyond} are past the longest outcome horizon "
                f"({longest:g} days); give days from 0 to {longest:g}"
            ),
        )
    return problems


#: Longest label (a table row, an axis, a legend) and title; a longer one is a pasted paragraph, not a label,
#: and a label of thousands of characters once exhausted memory while the figures were laid out.
MAX_LABEL_CHARS = 200
MAX_TITLE_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Bidirectional embedding, override and isolate controls: they reorder the text around them as it is shown
#: (a label that reads differently from what the file says); right-to-left letters themselves are fine.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: The description may span lines, but holds no other control character (NUL, escape...).
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _text_problems(study: Study) -> list[Problem]:
    """Labels and the title: one line of readable length (they head table rows, axes and legends)."""
    texts: list[tuple[tuple[Any, ...], str, int]] = [(("study", "title"), study.study.title, MAX_TITLE_CHARS)]
    texts += [(("index", "label"), study.index.label, MAX_LABEL_CHARS)]
    texts += [(("exposure", "label"), study.exposure.label, MAX_LABEL_CHARS)]
    texts += [(("comparator", "label"), study.comparator.label, MAX_LABEL_CHARS)]
    if study.dose is not None:
        texts.append((("dose", "label"), study.dose.label, MAX_LABEL_CHARS))
        texts.append((("dose", "unit"), study.dose.unit, MAX_LABEL_CHARS))
    texts += [(("concepts", n, "label"), c.label or "", MAX_LABEL_CHARS) for n, c in study.concepts.items()]
    texts += [(("criteria", i, "label"), c.label, MAX_LABEL_CHARS) for i, c in enumerate(study.criteria)]
    texts += [(("covariates", n, "label"), c.label or "", MAX_LABEL_CHARS) for n, c in study.covariates.items()]
    texts += [(("outcomes", n, "label"), o.label, MAX_LABEL_CHARS) for n, o in study.outcomes.items()]
    problems: list[Problem] = []
    for loc, text, limit in texts:
        if len(text) > limit:
            problems.append(
                (
                    loc,
                    f"{len(text)} characters: too long for a label or title; write at most {limit} "
                    "(longer text belongs in [study] description)",
                )
            )
        elif _CONTROL.search(text):
            problems.append((loc, "a line break or control character: write the label on one line"))
        elif _BIDI.search(text):
            problems.append((loc, _BIDI_MESSAGE))
    description = study.study.description
    if _CONTROL_IN_TEXT.search(description):
        problems.append(
            (("study", "description"), "a control character (e.g. NUL): write plain text (line breaks are fine)")
        )
    elif _BIDI.search(description):
        problems.append((("study", "description"), _BIDI_MESSAGE))
    return problems


_BIDI_MESSAGE = (
    "a bidirectional control character (U+202A-U+202E, U+2066-U+2069) would show the text in another order than "
    "written; remove it (right-to-left letters need none)"
)


def looks_past_index(crit: Criterion | CovariateSpec) -> bool:
    """Whether a criterion's (or covariate's) window ends after the index: it can exclude for (or be
    measured from) what happens after time zero.

    The index calendar day counts as looking past the index: it runs to 23:59:59 of that day.
    """
    window = crit.window
    return window is not None and (window.calendar_day or window.end_hours > 0)


def trial_outcomes(study: Study) -> tuple[str, ...]:
    """The outcomes of ``[analysis.target_trial]`` (every outcome when ``outcomes`` is left out)."""
    trial = study.analysis.target_trial
    if trial is None or not trial.enabled:
        return ()
    return trial.outcomes if trial.outcomes is not None else tuple(study.outcomes)


def trial_covariates(study: Study) -> tuple[str, ...]:
    """The censoring model's baseline covariates (the propensity covariates when left out, less the
    time-varying ones: those enter with their value per interval, which starts from the value at the index)."""
    trial = study.analysis.target_trial
    if trial is not None and trial.covariates is not None:
        return trial.covariates
    varying = set(trial.time_varying) if trial is not None else set()
    return tuple(n for n in study.propensity_covariates if n not in varying)


def _target_trial_problems(study: Study) -> list[Problem]:
    """Checks of ``[analysis.target_trial]`` that need the rest of the study (see docs/target-trial.md)."""
    trial = study.analysis.target_trial
    if trial is None or not trial.enabled:
        return []
    problems: list[Problem] = []
    at: tuple[Any, ...] = ("analysis", "target_trial")

    def add(key: str | None, message: str) -> None:
        problems.append(((*at, key) if key else at, message))

    window = study.exposure.window
    if study.comparator.kind == "active":
        add(
            None,
            'the emulated trial of two active strategies (comparator kind = "active") is not offered yet: '
            "the target trial compares starting the exposure within the grace window with not starting it "
            '(comparator kind = "none"); remove [analysis.target_trial] or set target_trial = false',
        )
    grace_hours = math.nan
    if window.calendar_day or window.start_hours != 0:
        add(
            None,
            f"the grace window of the target trial is the exposure window, which must start at the index (0h); "
            f'[exposure] window = "{window.describe()}" does not. Write e.g. window = "(0h, 48h]"',
        )
    else:
        grace_hours = window.end_hours
    names = list(study.outcomes)
    for name in trial.outcomes or ():
        if name not in study.outcomes:
            add(
                "outcomes",
                f"{name!r} is not an outcome of this study{_closest(name, names)}. Outcomes: {names}{_NOT_DECLARED}",
            )
    outcome_list = list(trial.outcomes or ())
    if len(set(outcome_list)) != len(outcome_list):
        add("outcomes", f"listed twice: {sorted({n for n in outcome_list if outcome_list.count(n) > 1})}")
    if math.isfinite(grace_hours):
        for name in trial_outcomes(study):
            out = study.outcomes.get(name)
            if out is not None and out.horizon_days * 24.0 <= grace_hours:
                add(
                    "outcomes",
                    f"outcome {name!r}: its horizon ({out.horizon_days:g} days) is not longer than the grace window "
                    f"({grace_hours:g}h); nothing is followed after the window. Lengthen the horizon or leave the "
                    "outcome out of target_trial outcomes",
                )
        if trial.interval_hours > grace_hours:
            add(
                "interval_hours",
                f"interval_hours = {trial.interval_hours:g} is longer than the grace window ({grace_hours:g}h); "
                f"choose a width that splits it, e.g. {max(grace_hours / 8, 1):g}",
            )
    covs = list(study.covariates)
    for key, listed in (("covariates", trial.covariates or ()), ("time_varying", trial.time_varying)):
        for n in listed:
            if n not in study.covariates:
                add(
                    key, f"{n!r} is not a covariate of this study{_closest(n, covs)}. Covariates: {covs}{_NOT_DECLARED}"
                )
        if len(set(listed)) != len(listed):
            add(key, f"listed twice: {sorted({n for n in listed if listed.count(n) > 1})}")
    for n in trial.time_varying:
        cov = study.covariates.get(n)
        if cov is None:
            continue
        if cov.summary is None or any(study.concept_kind(c) == "baseline" for c in cov.concept):
            add(
                "time_varying",
                f"{n!r} is a baseline value (one per patient); a time-varying covariate needs a [covariates.{n}] "
                "with an event concept and a summary (its value is taken per interval of the grace window)",
            )
        elif cov.window is not None and (cov.window.calendar_day or cov.window.end_hours > 0):
            # its value at the index is the first interval's: a window past the index would look ahead
            add(
                "time_varying",
                f"{n!r} has window {cov.window.describe()}, which ends after the index; a time-varying covariate's "
                'value at time zero must be known then: give it a window ending at the index, e.g. "[-24h, 0h]"',
            )
        if trial.covariates is not None and n in trial.covariates:
            add(
                "time_varying",
                f"{n!r} is also in covariates: a covariate is either fixed at the index or time-varying "
                "(the time-varying one starts from its value at the index); list it once",
            )
    # A baseline covariate of the censoring model is a value at time zero: one measured later (a window
    # past the index) is partly a consequence of what happened in the grace window, the start included.
    baseline = trial_covariates(study)
    for n in baseline:
        cov = study.covariates.get(n)
        if cov is None or not looks_past_index(cov) or n in trial.past_index_covariates:
            continue
        where = "covariates" if trial.covariates is not None else None
        source = "covariates" if trial.covariates is not None else "covariates (left out: the propensity covariates)"
        add(
            where,
            f"{n!r} in {source} is measured in the window {cov.window.describe() if cov.window else ''}, which "
            "ends after the index: in the emulated trial a baseline covariate must be known at time zero. "
            "List covariates without it, or declare a covariate on the same concept with a window ending at the index "
            f'(e.g. window = "[-24h, 0h]"); to keep it knowingly, add past_index_covariates = {_toml_list([n])}',
        )
    for n in dict.fromkeys(trial.past_index_covariates):  # each name once (twice is its own message)
        cov = study.covariates.get(n)
        if n not in baseline:
            add(
                "past_index_covariates",
                f"{n!r} is not a baseline covariate of the trial's censoring model{_closest(n, list(baseline))} "
                f"({list(baseline)}); remove it",
            )
        elif cov is not None and not looks_past_index(cov):
            when = f"window {cov.window.describe()}" if cov.window else "a value at the index"
            add("past_index_covariates", f"{n!r} is known at time zero ({when}); remove it from past_index_covariates")
    if len(set(trial.past_index_covariates)) != len(trial.past_index_covariates):
        listed = trial.past_index_covariates
        add("past_index_covariates", f"listed twice: {sorted({n for n in listed if listed.count(n) > 1})}")
    criteria = {c.name: c for c in study.criteria}
    for n in trial.not_applied:
        crit = criteria.get(n)
        if crit is None:
            add(
                "not_applied",
                f"{n!r} is not a criterion of this study{_closest(n, list(criteria))}. Criteria: {list(criteria)}"
                f"{_NOT_DECLARED}",
            )
        elif not looks_past_index(crit):
            add(
                "not_applied",
                f"criterion {n!r} looks only at or before the index ({_where(crit)}); "
                "eligibility at the index is the same in the emulated trial, so it is always applied: "
                "remove it from not_applied",
            )
    if len(set(trial.not_applied)) != len(trial.not_applied):
        add("not_applied", f"listed twice: {sorted({n for n in trial.not_applied if trial.not_applied.count(n) > 1})}")
    for i, crit in enumerate(study.criteria):
        if "death" in crit.concept and looks_past_index(crit) and crit.name not in trial.not_applied:
            shown = [*(n for n in trial.not_applied if n in criteria), crit.name]
            problems.append(
                (
                    ("criteria", i, "window"),
                    f"criterion {crit.name!r} uses death after the index ({_where(crit)}); "
                    "the emulated trial decides eligibility at the index and must not exclude patients who die early "
                    f"(that is the immortal time it removes). Add it to [analysis.target_trial]: not_applied = "
                    f"{_toml_list(shown)}",
                )
            )
    return problems


def _where(crit: Criterion) -> str:
    return crit.window.describe() if crit.window is not None else "a value at the index"


def _toml_list(names: list[str]) -> str:
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def covariate_type(study: Study, name: str) -> Literal["numeric", "binary", "categorical"]:
    """A covariate's declared type, else the type its built-in or summary implies."""
    cov = study.covariates[name]
    if cov.type is not None:
        return cov.type
    if len(cov.concept) == 1 and study.concept_kind(cov.concept[0]) == "baseline":
        vt = BUILTIN_CONCEPTS[cov.concept[0]].value_type
        return vt if vt in ("numeric", "binary", "categorical") else "numeric"
    return "binary" if cov.summary == "any" else "numeric"


def _identity(study: Study, name: str) -> Any:
    """What a concept name selects: its spec (two names for the same rows are the same concept)."""
    if name in study.concepts:
        return study.concepts[name].model_copy(update={"label": ""})
    return name


def _is_identifier(name: str) -> bool:
    # fullmatch: re's "$" also matches before a final newline, and "age\n" is no column name
    return len(name) <= MAX_NAME_CHARS and re.fullmatch(NAME_PATTERN, name) is not None


#: The end of a "name is not declared" message: what to write.
_NOT_DECLARED = "; correct the name, declare it, or remove it from the list"


def _define(name: str) -> str:
    """How to declare an unknown concept (only a valid name gets a section header to copy)."""
    if _is_identifier(name):
        return f"Define it under [concepts.{name}] "
    return f"A concept name is a lower-case identifier ({_NAME_RULE}): correct it, "


def _shown(value: str, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut after ``limit`` characters (a pasted paragraph stays readable)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


__all__ = [
    "RESERVED_COLUMNS",
    "SUMMARIES",
    "AnalysisSpec",
    "ComparatorSpec",
    "CovariateSpec",
    "Criterion",
    "DoseSpec",
    "ExposureSpec",
    "IndexSpec",
    "MatchingSpec",
    "OutcomeSpec",
    "ReportSpec",
    "Study",
    "StudyInfo",
    "TargetTrialSpec",
    "covariate_type",
    "looks_past_index",
    "study_problems",
    "trial_covariates",
    "trial_outcomes",
]
