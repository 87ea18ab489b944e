"""A user concept: a named set of event rows from one MIMIC-IV table, picked by selectors.

A :class:`ConceptSpec` is pure description (no engine, no data): the table
and the selectors that choose its rows. ``retrocohort.concepts`` compiles it
to an ibis expression per source. Which selectors a table accepts is stated
once here, in :data:`TABLE_SELECTORS`, so a study file that asks for a
selector the table cannot honour (``drugs`` on ``hosp/labevents``) fails at
validation with the allowed selectors named, not at query time.

This module imports nothing of retrocohort but the errors, so the study
language (``retrocohort.spec``) can sit at the bottom of the house.
"""

from __future__ import annotations

import difflib
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

#: Every selector a ConceptSpec has (besides ``table`` and ``label``).
SELECTORS: tuple[str, ...] = (
    "itemids",
    "exclude_itemids",
    "codes",
    "code_prefixes",
    "icd_version",
    "drugs",
    "routes",
    "value_min",
    "value_max",
    "units",
    "status_exclude",
    "values",
    "names",
    "organisms",
    "dated_at",
)

_ITEM = ("itemids", "exclude_itemids")
_VALUE = ("value_min", "value_max", "units")
_ICD = ("codes", "code_prefixes", "icd_version")

#: Table -> the selectors it accepts (the column each acts on is in docs/concepts.md).
TABLE_SELECTORS: dict[str, tuple[str, ...]] = {
    "icu/inputevents": (*_ITEM, *_VALUE, "status_exclude"),
    "icu/ingredientevents": (*_ITEM, *_VALUE, "status_exclude"),
    "icu/procedureevents": (*_ITEM, *_VALUE, "status_exclude"),
    "icu/chartevents": (*_ITEM, *_VALUE, "values"),
    "icu/outputevents": (*_ITEM, *_VALUE),
    "icu/datetimeevents": _ITEM,
    "hosp/labevents": (*_ITEM, *_VALUE, "values"),
    "hosp/prescriptions": ("drugs", "routes", *_VALUE),
    "hosp/emar": ("drugs", "routes", *_VALUE, "status_exclude"),
    "hosp/pharmacy": ("drugs", "routes", "status_exclude"),
    "hosp/diagnoses_icd": (*_ICD, "dated_at"),
    "hosp/procedures_icd": _ICD,
    "hosp/microbiologyevents": (*_ITEM, "names", "organisms"),
    "hosp/transfers": ("names", "values"),
    "hosp/services": ("names",),
    "hosp/omr": ("names", "value_min", "value_max"),
}

CONCEPT_TABLES: tuple[str, ...] = tuple(TABLE_SELECTORS)

# exclude_itemids picks "everything but": an explicit choice, allowed; a version or a unit alone is not.
_PICKING = ("itemids", "exclude_itemids", "codes", "code_prefixes", "drugs", "names", "organisms", "values")
_WHOLE_TABLE_OK = ("hosp/transfers", "hosp/services")  # small tables where "every row" is a real question

#: Tables whose events carry a number in ``value`` (and ``amount``, where summing makes sense). A
#: numeric summary (mean, sum, min...) of a concept on another table has nothing to summarise.
TABLE_VALUES: dict[str, tuple[bool, bool]] = {  # table -> (has value, has amount)
    "icu/inputevents": (True, True),
    "icu/ingredientevents": (True, True),
    "icu/procedureevents": (True, False),
    "icu/chartevents": (True, False),
    "icu/outputevents": (True, True),
    "icu/datetimeevents": (False, False),
    "hosp/labevents": (True, False),
    "hosp/prescriptions": (True, True),
    "hosp/emar": (True, True),
    "hosp/pharmacy": (False, False),
    "hosp/diagnoses_icd": (False, False),
    "hosp/procedures_icd": (False, False),
    "hosp/microbiologyevents": (False, False),
    "hosp/transfers": (False, False),
    "hosp/services": (False, False),
    "hosp/omr": (True, False),
}


def _closest(name: str, allowed: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _shown(text: str, limit: int = 60) -> str:
    """``repr`` of a text for a message, cut after ``limit`` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _strings(value: object) -> object:
    # A single string where a list is expected is the commonest slip in TOML (drugs = "thiamine").
    if isinstance(value, str):
        return (value,)
    return value


#: The selectors written as lists (an explicitly empty one is refused).
SELECTORS_WITH_LISTS = (
    "itemids",
    "exclude_itemids",
    "codes",
    "code_prefixes",
    "drugs",
    "routes",
    "units",
    "status_exclude",
    "values",
    "names",
    "organisms",
)
#: The list selectors of text (a single string is accepted for a list of one).
_STRING_SELECTORS = tuple(name for name in SELECTORS_WITH_LISTS if name not in ("itemids", "exclude_itemids"))


class ConceptSpec(BaseModel):
    """Rows of one MIMIC-IV table chosen by selectors; every selector given must hold (AND).

    Within one selector the listed values are alternatives (OR). Strings are
    compared case-insensitively; ICD codes without dots and spaces.

    Attributes
    ----------
    table
        ``"icu/inputevents"``, ``"hosp/labevents"``, ... (one of :data:`CONCEPT_TABLES`).
    itemids, exclude_itemids
        ``itemid`` in / not in these (microbiologyevents: ``spec_itemid``).
    codes, code_prefixes, icd_version
        ICD code equal to / starting with one of these; ``icd_version`` 9 or 10 (None: both).
    drugs
        Case-insensitive substring of the drug / medication name.
    routes
        Route equal to one of these (case-insensitive).
    value_min, value_max, units
        ``value`` in [value_min, value_max] (closed); ``unit`` equal to one of ``units``.
    status_exclude
        Rows whose status equals one of these are dropped (inputevents ``statusdescription``
        e.g. ``"Rewritten"``; emar ``event_txt`` e.g. ``"Not Given"``; pharmacy ``status``).
    values
        The text value equals one of these (chartevents / labevents ``value``,
        transfers ``eventtype``), e.g. a CRRT mode.
    names
        The row's name equals one of these: transfers ``careunit``, services
        ``curr_service``, omr ``result_name``, microbiologyevents ``spec_type_desc``.
    organisms
        Case-insensitive substring of microbiologyevents ``org_name`` (a positive culture).
    dated_at
        diagnoses_icd only: when a diagnosis is dated, ``"discharge"`` (default:
        the admission's dischtime, the moment the code is known) or ``"admission"``.
    label
        Human label for the report.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    itemids: tuple[int, ...] = ()
    exclude_itemids: tuple[int, ...] = ()
    codes: tuple[str, ...] = ()
    code_prefixes: tuple[str, ...] = ()
    icd_version: Literal[9, 10] | None = None
    drugs: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    value_min: float | None = None
    value_max: float | None = None
    units: tuple[str, ...] = ()
    status_exclude: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    organisms: tuple[str, ...] = ()
    dated_at: Literal["discharge", "admission"] | None = None
    label: str = ""

    @property
    def has_value(self) -> bool:
        """Whether the concept's events carry a number in ``value`` (see :data:`TABLE_VALUES`)."""
        return TABLE_VALUES[self.table][0]

    @property
    def has_amount(self) -> bool:
        """Whether the concept's events carry an ``amount`` to sum (a dose or a volume)."""
        return TABLE_VALUES[self.table][1]

    @field_validator("table")
    @classmethod
    def _known_table(cls, value: str) -> str:
        name = value.strip().lower().removesuffix(".csv.gz").removesuffix(".csv").removesuffix(".parquet")
        if name not in TABLE_SELECTORS:
            bare = {t.split("/")[1]: t for t in TABLE_SELECTORS}
            if name in bare:  # "labevents" without its module folder
                return bare[name]
            raise ValueError(
                f"table {_shown(value)} is not a table concepts can read{_closest(name[:100], CONCEPT_TABLES)}; "
                f"allowed: {', '.join(CONCEPT_TABLES)}"
            )
        return name

    @field_validator(*_STRING_SELECTORS, mode="before")
    @classmethod
    def _one_string(cls, value: object) -> object:
        return _strings(value)

    @field_validator(*SELECTORS_WITH_LISTS, mode="before")
    @classmethod
    def _not_an_empty_list(cls, value: object) -> object:
        # `organisms = []` read as "no organism filter" turned "positive blood culture" into "any blood
        # culture" without a word; an empty list written (a TOML array, a Python list) is never what was meant.
        # An empty tuple is the unset default, as model_dump() gives it back: ConceptSpec(**spec.model_dump())
        # must round-trip.
        if isinstance(value, list) and len(value) == 0:
            raise ValueError("an empty list selects nothing and filters nothing; leave the key out, or list the values")
        return value

    @field_validator("itemids", "exclude_itemids", mode="before")
    @classmethod
    def _one_int(cls, value: object) -> object:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = (value,)
        # true/false would silently become itemid 1/0.
        if isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value):
            raise ValueError("an itemid is a whole number (e.g. 220052), not true/false")
        return value

    @field_validator("codes", "code_prefixes", mode="before")
    @classmethod
    def _codes_are_text(cls, value: object) -> object:
        items = value if isinstance(value, (list, tuple)) else (value,)
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            raise ValueError(
                f"ICD codes are text: write {', '.join(repr(str(v)) for v in numbers)} in quotes "
                "(a number loses leading zeros, e.g. ICD-9 038 septicaemia)"
            )
        return value

    @field_validator("value_min", "value_max", mode="before")
    @classmethod
    def _no_bool(cls, value: object) -> object:
        # pydantic reads true as 1.0: value_min = true would keep rows >= 1 without a word
        if isinstance(value, bool):
            raise ValueError("true/false is not a bound: give a number (or leave the key out for an open end)")
        return value

    @field_validator("label", mode="before")
    @classmethod
    def _strip_label(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("value_min", "value_max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number; leave the bound out for an open end")
        return value

    @field_validator("codes", "code_prefixes")
    @classmethod
    def _icd(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(c.replace(".", "").replace(" ", "").upper() for c in value)
        if any(not c for c in cleaned):
            raise ValueError("an empty ICD code matches nothing; remove it")
        return cleaned

    @field_validator("drugs", "routes", "units", "status_exclude", "values", "names", "organisms")
    @classmethod
    def _nonempty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip() for v in value)
        if any(not v for v in cleaned):
            raise ValueError("an empty string is not a selector value (a substring '' would match every row)")
        return cleaned

    @model_validator(mode="after")
    def _fits_table(self) -> ConceptSpec:
        allowed = TABLE_SELECTORS[self.table]
        for name in SELECTORS:
            value = getattr(self, name)
            if value in ((), None):
                continue
            if name not in allowed:
                raise ValueError(
                    f"selector {name!r} does not apply to {self.table}; that table accepts: {', '.join(allowed)}"
                )
        if self.value_min is not None and self.value_max is not None and self.value_min > self.value_max:
            raise ValueError(f"value_min {self.value_min} is above value_max {self.value_max}; no row can match")
        overlap = set(self.itemids) & set(self.exclude_itemids)
        if overlap:
            raise ValueError(f"itemids {sorted(overlap)} are both selected and excluded")
        # Versions, units, statuses and value ranges narrow a selection but do not make one.
        picking = [s for s in _PICKING if s in allowed]
        if picking and not any(getattr(self, s) for s in picking) and self.table not in _WHOLE_TABLE_OK:
            raise ValueError(
                f"a concept on {self.table} needs at least one selector that picks rows ({', '.join(picking)}); "
                "without one it would take (nearly) every row of the table"
            )
        return self


__all__ = ["CONCEPT_TABLES", "SELECTORS", "TABLE_SELECTORS", "TABLE_VALUES", "ConceptSpec"]
