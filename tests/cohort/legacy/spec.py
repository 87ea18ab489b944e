"""The study file: the whole design of a study in the study's own words.

A study file is TOML (``studies/magnesium_ckrt.toml``); :func:`load_study`
validates it with pydantic and returns a frozen :class:`Study`. Every key has
a default that reproduces the flagship magnesium-in-CKRT study, so
``default_study()`` and the shipped study file describe the same design.

A wrong key or value raises :class:`~retrocohort.errors.StudySpecError`
naming the key, its line in the file, the allowed values and, for a
misspelt key, the closest valid one.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrocohort.errors import StudySpecError

# TOML has no null: an optional setting is switched off with `false` (or "none").
_OFF = (False, "none", "off")


def _off_to_none(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in _OFF[1:]:
        return None
    if value is False:
        return None
    if value is True:
        raise ValueError("true is not a value here: give a number, or false to switch it off")
    return value


# Analysis-frame columns the cohort builder produces; the propensity model and
# the outcome models may use any of them.
KNOWN_COVARIATES: tuple[str, ...] = (
    "age",  # years at index
    "sex",  # "F" / "M"
    "sepsis",  # 0/1, Sepsis ICD codes on the index admission
    "creatinine_baseline",  # mg/dL
    "egfr_baseline",  # mL/min/1.73 m2, CKD-EPI 2021 from creatinine_baseline
    "sofa",  # SOFA at index from the components the data have
    "serum_mg",  # mg/dL, value on the index day nearest the index time
    "vasopressor",  # 0/1 at index
    "ventilation",  # 0/1 at index
)


# Longest time a study may speak of: 100 years, in days and in hours. A larger value is a typo, and
# an infinite one cannot become a timestamp interval (the engines overflow).
MAX_DAYS = 36525.0
MAX_HOURS = MAX_DAYS * 24
_Hours = Annotated[float, Field(ge=-MAX_HOURS, le=MAX_HOURS)]
_Days = Annotated[float, Field(ge=0, le=MAX_DAYS)]

# A study name becomes the default output folder ``<name>-output`` in the working directory, so it
# must be one plain path component: no separators, no "..", not empty.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Section(BaseModel):
    # allow_inf_nan=False: TOML has inf and nan, and neither is a time, a weight or a ratio.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        """Refuse true/false where a number is expected (pydantic would read ``ratio = true`` as 1)."""
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is None or field.annotation is bool:
            return value
        items = value if isinstance(value, (list, tuple)) else (value,)
        # False means "off" for the optional settings (their own validators turn it into None); anywhere
        # else pydantic would read it as 0 (small_cell_threshold = false would switch suppression off).
        optional = type(None) in typing.get_args(field.annotation)
        off = value is False and optional
        if not off and any(isinstance(v, bool) for v in items):
            raise ValueError(
                "true/false is not a value here: give a number (or false to switch an optional setting off)"
            )
        return value


class StudyInfo(_Section):
    """[study]: who the study is and how to cite it."""

    name: str = "magnesium_ckrt"
    title: str = "Early magnesium supplementation and 90-day outcomes in AKI requiring CKRT"
    description: str = (
        "Retrospective new-user cohort of AKI patients on continuous kidney replacement therapy with "
        "vasopressor and/or ventilator support; exposure is any intravenous magnesium sulfate within "
        "48 h of CKRT start."
    )
    exposure_label: str = "Mg"
    comparator_label: str = "no Mg"
    seed: int = 20231103

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _NAME.match(v) or ".." in v:
            raise ValueError(
                "the study name must be 1 to 100 letters, digits, '.', '_' or '-', start with a letter or digit "
                "and contain no '..' or '/': it names the default output folder <name>-output in the working "
                'directory (e.g. name = "magnesium_ckrt")'
            )
        return v


class CohortSpec(_Section):
    """[cohort]: index event, population and inclusion."""

    index_event: Literal["ckrt_start"] = "ckrt_start"
    crrt_itemids: tuple[int, ...] = (225802, 225803, 225809, 225955)
    crrt_mode_itemid: int | None = 227290
    intermittent_dialysis_itemids: tuple[int, ...] = (225441,)
    min_age: float = Field(18, ge=0, le=120)
    first_stay_only: bool = True
    require_support: bool = True
    vasopressor_itemids: tuple[int, ...] = (221906, 221289, 222315, 221749, 221662)
    ventilation_itemids: tuple[int, ...] = (225792,)
    # Support counts when a vasopressor infusion or invasive ventilation is
    # running at any time in [index + start, index + end] (hours).
    support_window_hours: tuple[_Hours, _Hours] = (-24.0, 24.0)

    _crrt_mode_off = field_validator("crrt_mode_itemid", mode="before")(classmethod(lambda cls, v: _off_to_none(v)))

    @field_validator("support_window_hours")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"window start {v[0]} is after its end {v[1]}")
        return v


class ExclusionSpec(_Section):
    """[exclusions]: each one a line in the attrition log."""

    require_mg_on_index_day: bool = True
    min_survival_hours: float = Field(48, ge=0, le=MAX_HOURS)


class ExposureSpec(_Section):
    """[exposure]: what counts as exposed, in which window, and the dose unit."""

    name: str = "magnesium sulfate (IV)"
    itemids: tuple[int, ...] = (222011, 227524)
    # Carrier rows (227523: the 50 mL bolus bag of a 222011 order) are never
    # counted: counting them would double the dose.
    carrier_itemids: tuple[int, ...] = (227523,)
    window_hours: tuple[_Hours, _Hours] = (0.0, 48.0)
    dose_unit: Literal["mEq"] = "mEq"
    meq_per_gram: float = Field(8.12, gt=0)

    @field_validator("window_hours")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] >= v[1]:
            raise ValueError(f"window start {v[0]} must be before its end {v[1]}")
        return v


class LabSpec(_Section):
    """[labs]: laboratory itemids (hosp/labevents)."""

    serum_mg_itemid: int = 50960
    creatinine_itemid: int = 50912
    baseline_creatinine_lookback_days: float = Field(365, gt=0, le=MAX_DAYS)


class PropensitySpec(_Section):
    """[propensity]: the propensity-score model."""

    covariates: tuple[str, ...] = ("age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg")
    link: Literal["logit", "probit"] = "logit"

    @field_validator("covariates")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            # An intercept-only model gives every patient the same score: matching on it is random.
            raise ValueError(f"the propensity model needs at least one covariate; choose from {list(KNOWN_COVARIATES)}")
        return _check_covariates(v)


class MatchingSpec(_Section):
    """[matching]: k:1 nearest-neighbour matching on the propensity score."""

    method: Literal["nearest"] = "nearest"
    ratio: int = Field(2, ge=1, le=10)
    distance: Literal["logit", "propensity"] = "logit"
    # In standard deviations of the distance (Austin 2011: 0.2 SD of the logit).
    caliper: float | None = Field(0.2, gt=0)
    order: Literal["largest", "smallest", "random", "data"] = "largest"
    replace: bool = False
    exact: tuple[str, ...] = ()

    _caliper_off = field_validator("caliper", mode="before")(classmethod(lambda cls, v: _off_to_none(v)))


class OutcomeSpec(_Section):
    """[outcomes]: follow-up from index."""

    horizon_days: float = Field(90, gt=0, le=MAX_DAYS)
    # KRT liberation: the end of the last KRT session followed by at least
    # this many KRT-free days alive.
    krt_free_days: float = Field(7, ge=0, le=MAX_DAYS)


class ModelSpec(_Section):
    """[models]: outcome models and their adjustment sets."""

    adjust: tuple[str, ...] = ("age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg")
    ties: Literal["efron", "breslow"] = "efron"
    cluster_on_matched_set: bool = True
    conf_level: float = Field(0.95, gt=0.5, lt=1)
    km_times_days: tuple[_Days, ...] = (0, 15, 30, 45, 60, 75, 90)
    sensitivity_full_cohort: bool = True
    sensitivity_iptw: bool = True
    e_value: bool = True

    @field_validator("adjust")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_covariates(v)


class ReportSpec(_Section):
    """[report]: presentation and disclosure control."""

    small_cell_threshold: int = Field(5, ge=0)
    # Published figures shown beside ours (seed study; empty to hide).
    published_hr_death: tuple[float, float, float] | None = (0.38, 0.18, 0.83)
    published_hr_krt: tuple[float, float, float] | None = (2.07, 1.23, 3.49)

    _published_off = field_validator("published_hr_death", "published_hr_krt", mode="before")(
        classmethod(lambda cls, v: None if v == [] else _off_to_none(v))
    )

    @field_validator("published_hr_death", "published_hr_krt")
    @classmethod
    def _interval(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is None:
            return v
        estimate, lower, upper = v
        if min(v) <= 0:
            raise ValueError(
                f"a hazard ratio and its limits are positive; got {list(v)} (give [estimate, lower, upper])"
            )
        if not lower <= estimate <= upper:
            raise ValueError(
                f"give [estimate, lower, upper] with lower <= estimate <= upper; got {list(v)}"
                + (" (lower and upper swapped?)" if upper < lower else "")
            )
        return v

    @field_validator("small_cell_threshold")
    @classmethod
    def _threshold_hides_something(cls, value: int) -> int:
        # "<2" can only be 1: a threshold of 2 would print every suppressed count exactly.
        if value == 2:
            raise ValueError(
                '2 would print a count of 1 as "<2", which can only be 1; '
                "use 0 (no suppression) or 3 and above (5 is usual, 11 for CMS-style rules)"
            )
        return value


class Study(_Section):
    """A whole study design. Build with :func:`load_study` or :func:`default_study`."""

    study: StudyInfo = StudyInfo()
    cohort: CohortSpec = CohortSpec()
    exclusions: ExclusionSpec = ExclusionSpec()
    exposure: ExposureSpec = ExposureSpec()
    labs: LabSpec = LabSpec()
    propensity: PropensitySpec = PropensitySpec()
    matching: MatchingSpec = MatchingSpec()
    outcomes: OutcomeSpec = OutcomeSpec()
    models: ModelSpec = ModelSpec()
    report: ReportSpec = ReportSpec()
    source_text: str | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _exact_columns_known(self) -> Study:
        _check_covariates(self.matching.exact)
        return self

    @model_validator(mode="after")
    def _report_times_within_follow_up(self) -> Study:
        beyond = [t for t in self.models.km_times_days if t > self.outcomes.horizon_days]
        if beyond:
            # A survival estimate after the end of follow-up is not defined; the table would be blank.
            raise ValueError(
                f"models.km_times_days {beyond} lie after outcomes.horizon_days = {self.outcomes.horizon_days:g}; "
                "give report times between 0 and the horizon"
            )
        return self

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the study file text (or of the validated design when built in code)."""
        text = self.source_text if self.source_text is not None else self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()


def _check_covariates(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in KNOWN_COVARIATES]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, KNOWN_COVARIATES, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown covariate(s) {', '.join(hints)}; the cohort provides {list(KNOWN_COVARIATES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"covariates listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    return names


def default_study() -> Study:
    """The flagship magnesium-in-CKRT design (the defaults of every key)."""
    return Study()


def load_study(path: str | Path) -> Study:
    """Read and validate a study TOML file.

    Raises
    ------
    StudySpecError
        The file is missing, is not valid TOML, or a key/value is wrong; the
        message names the key, its line, what is allowed and a suggestion.
    """
    path = Path(path)
    if path.is_dir():
        raise StudySpecError(f"study file {str(path)!r} is a folder; pass the study's .toml file inside it")
    if not path.is_file():
        raise StudySpecError(f"study file {str(path)!r} not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StudySpecError(
            f"study file {str(path)!r} cannot be read ({exc.strerror}); check its permissions"
        ) from None
    if b"\x00" in data:
        raise StudySpecError(
            f"study file {str(path)!r} is a binary file, not a TOML text file; pass the study's .toml file "
            "(see studies/magnesium_ckrt.toml)"
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors) is not part of the TOML
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StudySpecError(
            f"study file {str(path)!r}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; TOML files are "
            "UTF-8: save the file as UTF-8 in your editor (or convert it, e.g. iconv -f latin1 -t utf-8)"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudySpecError(f"{path}: not valid TOML: {exc}") from None
    return parse_study(raw, text=text, where=str(path))


def parse_study(raw: dict[str, Any], text: str | None = None, where: str = "study") -> Study:
    """Validate an already-parsed study mapping (``text`` locates lines for messages)."""
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise StudySpecError(_explain(exc, text, where)) from None
    return study.model_copy(update={"source_text": text})


def _line_of(text: str | None, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of a key: the key under its [section] header."""
    if not text or not loc:
        return None
    lines = text.splitlines()
    section, key = (str(loc[0]), str(loc[1])) if len(loc) > 1 else (None, str(loc[0]))
    in_section = section is None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        header = re.match(r"^\[([^\]]+)\]", stripped)
        if header:
            if section is not None and header.group(1).strip() == section:
                in_section = True
                if key is None:
                    return number
                continue
            if section is None and header.group(1).strip() == key:
                return number
            in_section = section is not None and header.group(1).strip() == section
            continue
        if in_section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


def _allowed(section: str | None, key: str | None) -> list[str]:
    model: type[BaseModel] | None = Study
    if section is not None:
        field = Study.model_fields.get(section)
        model = field.annotation if field is not None else None  # type: ignore[assignment]
    if model is None or not isinstance(model, type) or not issubclass(model, BaseModel):
        return []
    return [k for k in model.model_fields if k != "source_text"]


def _explain(exc: ValidationError, text: str | None, where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        line = _line_of(text, loc[:2])
        at = f"{where}, line {line}" if line else where
        if err["type"] == "extra_forbidden":
            section = str(loc[0]) if len(loc) > 1 else None
            allowed = _allowed(section, None)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{at}: unknown key {key!r}{hint} Allowed here: {allowed}")
        elif not loc:
            # A rule between sections: the message names the keys; the input is the whole study.
            problems.append(f"{at}: {err['msg'].removeprefix('Value error, ')}")
        else:
            msg = err["msg"]
            problems.append(f"{at}: {key} = {err.get('input')!r} is invalid: {msg}")
    return "invalid study file:\n  " + "\n  ".join(problems)
