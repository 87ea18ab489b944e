"""Write a study's outputs: results.json, tables/*.csv, figures/*.png + *.svg and report.html.

Everything is written into a temporary sibling folder (``.<out>.partial-<run id>``)
and renamed into place only when every file is complete, so an interrupted
run never leaves a folder that looks like a finished report. An existing
output folder is replaced only with ``force=True``, only when it is an earlier
output, and only if it is still the folder found when the run started; a run
holds an exclusive lock on its output folder (see "Never clobber" below).

Disclosure control: every count (patients, events, numbers at risk, the n of
an ``n (%)`` cell) below ``study.report.small_cell_threshold`` is written as
``"<threshold"`` (``report.suppression``'s rule: 0 is shown, threshold 0
disables), and a count that would give a suppressed one back by subtraction is
written as the range a reader could derive anyway (``"96-99"``); every output
takes its counts from one :func:`~retrocohort.report.suppression.study_disclosure`.
Reasons and notes go through the same rule; summary statistics of fewer
patients than the threshold (the dose, SMDs) are withheld. No subject, stay or
admission id and no date leaves the process: the row-level frames of the result
are only summarised; the survival curve tables hold the report times only.

The results.json schema is documented in ``docs/results-schema.md``
(``SCHEMA_VERSION``); :func:`results_document` builds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import fcntl
import functools
import json
import math
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, RetrocohortError
from ..report import figures as report_figures
from ..report import render_html
from ..report.formatting import level_text, study_labels
from ..report.suppression import (
    StudyDisclosure,
    coarsen_curve,
    is_small,
    report_times,
    study_disclosure,
    suppress_frame,
    suppress_small_cells,
)
from ..report.tables import (
    arm_labels,
    outcome_names,
    planted_for,
    primary_key,
    published_for,
    suppress_table_one,
    table_one_row_label,
)
from .results import StudyResult

#: 2.0 (issue 9): outcomes keyed by the study's own names, each with its label, kind, horizon and test;
#: ``dose`` instead of ``dose_meq``; ``subgroups``; planted truth per outcome.
#: 2.1 (issue 11): ``target_trial``, the emulated trial per outcome. See docs/results-schema.md.
SCHEMA_VERSION = "2.1"

ProgressCallback = Callable[[str, str, str], None]


class OutputExistsError(RetrocohortError, FileExistsError):
    """The output folder exists and ``force`` was not given."""


# --------------------------------------------------------------------------- results.json schema

_NUMBER = {"type": ["number", "null"]}
# A count: an integer, the small-cell string "<5" (threshold), a range "96-99" / ">=96" (withheld
# because it would give a suppressed count back), or null when unknown.
_COUNT = {"type": ["integer", "string", "null"], "minimum": 0, "pattern": r"^(<\d+|\d+-\d+|>=\d+)$"}
_TEST = {
    "type": ["object", "null"],
    "required": ["test", "statistic", "df", "p"],
    "properties": {
        "test": {"type": "string", "enum": ["log-rank", "Gray"]},
        "statistic": _NUMBER,
        "df": _NUMBER,
        "p": _NUMBER,
    },
}
_PH_ROWS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["term", "chisq", "df", "p"],
        "properties": {"term": {"type": "string"}, "chisq": _NUMBER, "df": _NUMBER, "p": _NUMBER},
    },
}

_INTERVAL = {
    "type": "object",
    "required": ["estimate", "lower", "upper"],
    "additionalProperties": False,
    "properties": {"estimate": _NUMBER, "lower": _NUMBER, "upper": _NUMBER},
}
_WEIGHT_STATS = ("min", "p01", "p25", "median", "p75", "p99", "max", "mean", "ess", "lower", "upper")
_WEIGHTS = {
    "type": "object",
    "required": ["min", "p01", "p25", "median", "p75", "p99", "max", "mean", "ess", "truncated_rows", "lower", "upper"],
    "additionalProperties": False,
    "properties": {
        **{k: _NUMBER for k in _WEIGHT_STATS},
        "truncated_rows": _COUNT,
    },
}
#: ``target_trial.<outcome>`` (schema 2.1): the emulated trial of one outcome.
_TARGET_TRIAL = {
    "type": "object",
    "required": [
        "label",
        "competing",
        "horizon_days",
        "grace_days",
        "protocol",
        "skipped",
        "counts",
        "estimates",
        "bootstrap",
        "weights",
        "notes",
    ],
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string"},
        "competing": {"type": "boolean"},
        "horizon_days": {"type": "number", "minimum": 0},
        "grace_days": {"type": "number", "minimum": 0},
        "protocol": {
            "type": "object",
            "required": [
                "censoring_model",
                "interval_hours",
                "covariates",
                "time_varying",
                "stabilised",
                "truncate_percentiles",
                "min_ess",
                "not_applied",
                "past_index",
            ],
            "additionalProperties": False,
            "properties": {
                "censoring_model": {"type": "string", "enum": ["pooled_logistic", "cox"]},
                "interval_hours": {"type": "number", "minimum": 0},
                "covariates": {"type": "array", "items": {"type": "string"}},
                "time_varying": {"type": "array", "items": {"type": "string"}},
                "stabilised": {"type": "boolean"},
                "truncate_percentiles": {"type": "array", "items": {"type": "number", "minimum": 0}},
                "min_ess": {"type": "number", "minimum": 0},
                "not_applied": {"type": "array", "items": {"type": "string"}},
                "past_index": {"type": "array", "items": {"type": "string"}},
            },
        },
        "skipped": {"type": ["string", "null"]},
        "counts": {"type": "object", "additionalProperties": _COUNT},
        "estimates": {"type": ["object", "null"], "additionalProperties": _INTERVAL},
        "bootstrap": {
            "type": "object",
            "required": ["replicates", "succeeded", "failed", "seed", "conf_level"],
            "additionalProperties": False,
            "properties": {
                "replicates": {"type": "integer", "minimum": 0},
                "succeeded": {"type": ["integer", "null"], "minimum": 0},
                "failed": {"type": ["integer", "null"], "minimum": 0},
                "seed": {"type": "integer"},
                "conf_level": {"type": "number"},
            },
        },
        "weights": {"type": ["object", "null"], "additionalProperties": _WEIGHTS},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}

#: JSON Schema (draft 2020-12 subset) of results.json; documented in docs/results-schema.md.
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "retrocohort results.json",
    "type": "object",
    "required": [
        "schema_version",
        "study",
        "synthetic",
        "planted",
        "small_cell_threshold",
        "attrition",
        "counts",
        "dose",
        "outcomes",
        "estimates",
        "published",
        "subgroups",
        "balance",
        "e_value",
        "skipped",
        "notes",
        "provenance",
        "data_checks",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "string", "enum": [SCHEMA_VERSION]},
        "study": {
            "type": "object",
            "required": ["name", "title", "index_label", "exposure_label", "comparator_label", "primary_outcome"],
            "properties": {
                "name": {"type": "string"},
                "title": {"type": "string"},
                "index_label": {"type": "string"},
                "exposure_label": {"type": "string"},
                "comparator_label": {"type": "string"},
                "primary_outcome": {"type": "string"},
            },
        },
        "synthetic": {"type": "boolean"},
        "planted": {
            "type": ["object", "null"],
            "additionalProperties": {
                "type": "object",
                "required": ["estimand", "value"],
                "properties": {"estimand": {"type": "string", "enum": ["hr", "shr"]}, "value": {"type": "number"}},
            },
        },
        "small_cell_threshold": {"type": "integer", "minimum": 0},
        "attrition": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["step", "remaining", "excluded"],
                "additionalProperties": False,
                "properties": {
                    "step": {"type": "string"},
                    "remaining": _COUNT,
                    "excluded": _COUNT,
                    "reason": {"type": "string"},
                },
            },
        },
        "counts": {
            "type": "object",
            "required": ["exposed", "comparator"],
            "additionalProperties": _COUNT,
        },
        "dose": {
            "type": ["object", "null"],
            "required": ["name", "label", "unit", "mean", "sd"],
            "properties": {
                "name": {"type": "string"},
                "label": {"type": "string"},
                "unit": {"type": "string"},
                "mean": _NUMBER,
                "sd": _NUMBER,
                "n": _COUNT,
            },
        },
        "outcomes": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["label", "kind", "competing", "horizon_days", "primary", "test", "ph_test"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string", "minLength": 1},
                    "kind": {"type": "string", "enum": ["death", "first", "absence"]},
                    "competing": {"type": ["string", "null"]},
                    "horizon_days": {"type": "number", "minimum": 0},
                    "primary": {"type": "boolean"},
                    "test": _TEST,
                    "ph_test": {"type": ["array", "null"], "items": _PH_ROWS["items"]},
                    "ph_test_model": {"type": ["string", "null"]},
                },
            },
        },
        "estimates": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "outcome",
                    "model",
                    "population",
                    "estimate",
                    "lower",
                    "upper",
                    "p",
                    "label",
                    "n",
                    "n_events",
                    "variance",
                    "note",
                ],
                "additionalProperties": False,
                "properties": {
                    "outcome": {"type": "string"},
                    "model": {"type": "string"},
                    "population": {"type": "string", "enum": ["matched", "full", "iptw"]},
                    "estimate": _NUMBER,
                    "lower": _NUMBER,
                    "upper": _NUMBER,
                    "p": _NUMBER,
                    "label": {"type": "string"},
                    "n": _COUNT,
                    "n_events": _COUNT,
                    "variance": {"type": "string"},
                    "note": {"type": "string"},
                },
            },
        },
        "published": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["model", "estimate", "lower", "upper"],
                "properties": {
                    "model": {"type": "string"},
                    "estimate": {"type": "number"},
                    "lower": {"type": "number"},
                    "upper": {"type": "number"},
                },
            },
        },
        "balance": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["smd_before", "smd_after"],
                "additionalProperties": False,
                "properties": {"smd_before": _NUMBER, "smd_after": _NUMBER},
            },
        },
        "subgroups": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["outcome", "covariate", "label", "model", "p_interaction", "levels"],
                "additionalProperties": False,
                "properties": {
                    "outcome": {"type": "string"},
                    "covariate": {"type": "string"},
                    "label": {"type": "string"},
                    "model": {"type": "string"},
                    "p_interaction": _NUMBER,
                    "interaction_note": {"type": "string"},
                    "levels": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["level", "n", "n_events", "estimate", "lower", "upper", "p"],
                            "additionalProperties": False,
                            "properties": {
                                "level": {"type": "string"},
                                "n": _COUNT,
                                "n_events": _COUNT,
                                "estimate": _NUMBER,
                                "lower": _NUMBER,
                                "upper": _NUMBER,
                                "p": _NUMBER,
                            },
                        },
                    },
                },
            },
        },
        "e_value": {
            "type": ["object", "null"],
            "required": ["hr", "lower", "upper", "rr", "point", "ci", "outcome_proportion", "transform", "method"],
            "properties": {
                "hr": {"type": "number"},
                "lower": {"type": "number"},
                "upper": {"type": "number"},
                "rr": {"type": "number"},
                "rr_lower": {"type": "number"},
                "rr_upper": {"type": "number"},
                "point": {"type": "number", "minimum": 1},
                "ci": {"type": "number", "minimum": 1},
                "outcome_proportion": {"type": ["number", "null"], "minimum": 0},
                "method": {"type": "string"},
                "transform": {"type": ["string", "null"], "enum": ["rare", "common", None]},
            },
        },
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["outcome", "model", "population", "reason"],
                "additionalProperties": False,
                "properties": {
                    "outcome": {"type": "string"},
                    "model": {"type": "string"},
                    "population": {"type": "string", "enum": ["matched", "full", "iptw"]},
                    "reason": {"type": "string", "minLength": 1},
                },
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "target_trial": {"type": "object", "additionalProperties": _TARGET_TRIAL},
        "data_checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["table", "check", "rule", "action", "count", "unit"],
                "additionalProperties": False,
                "properties": {
                    "table": {"type": "string"},
                    "check": {"type": "string"},
                    "rule": {"type": "string"},
                    "action": {"type": "string"},
                    "count": _COUNT,
                    "unit": {"type": "string", "enum": ["rows", "patients"]},
                },
            },
        },
        "provenance": {
            "type": "object",
            "required": [
                "study_fingerprint",
                "data_fingerprint",
                "data_fingerprint_method",
                "packages",
                "python",
                "engine",
                "seed",
            ],
            "properties": {
                "study_fingerprint": {"type": "string", "pattern": r"^[0-9a-f]{64}$"},
                "data_fingerprint": {"type": ["string", "null"], "pattern": r"^[0-9a-f]{64}$"},
                "data_fingerprint_method": {"type": "string"},
                "packages": {"type": "object", "additionalProperties": {"type": "string"}},
                "python": {"type": "string"},
                "engine": {"type": "string", "enum": ["duckdb", "spark"]},
                "seed": {"type": "integer"},
            },
        },
    },
}

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _schema_errors(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """Errors of ``value`` against the subset of JSON Schema that RESULTS_SCHEMA uses."""
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES[t](value) for t in types):
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: empty string")
    if _JSON_TYPES["number"](value) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} is below {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{where}: missing key {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += _schema_errors(item, properties[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, Mapping):
                errors += _schema_errors(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def validate_results_document(document: Mapping[str, Any]) -> None:
    """Check a results.json document against :data:`RESULTS_SCHEMA`.

    Raises
    ------
    InputError
        Listing every violation (path, expected, found).
    """
    errors = _schema_errors(document, RESULTS_SCHEMA, "results")
    if not errors:
        errors = _cross_errors(document)
    if errors:
        raise InputError("results.json does not follow its schema:\n  " + "\n  ".join(errors[:50]))


def _cross_errors(document: Mapping[str, Any]) -> list[str]:
    """What the schema cannot say: every outcome named anywhere is one of the study's, exactly one is primary."""
    outcomes = document["outcomes"]
    errors = []
    primaries = [name for name, o in outcomes.items() if o["primary"]]
    if len(primaries) != 1:
        errors.append(f"results.outcomes: exactly one outcome must be primary, found {primaries}")
    if document["study"]["primary_outcome"] not in outcomes:
        errors.append(
            f"results.study.primary_outcome: {document['study']['primary_outcome']!r} is not an outcome "
            f"({sorted(outcomes)})"
        )
    for where, names in (
        ("estimates", [e["outcome"] for e in document["estimates"]]),
        ("published", list(document["published"])),
        ("planted", list(document["planted"] or {})),
        ("subgroups", [g["outcome"] for g in document["subgroups"]]),
        ("target_trial", list(document.get("target_trial", {}))),
    ):
        for name in names:
            if name not in outcomes:
                errors.append(f"results.{where}: outcome {name!r} is not one of the study's ({sorted(outcomes)})")
    return errors


# --------------------------------------------------------------------------- JSON helpers


def _plain(value: Any) -> Any:
    """JSON-safe Python value: NumPy scalars unwrapped, NaN/inf as null."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _count(value: Any, threshold: int) -> Any:
    """A count for an output: an int, or "<threshold" when small; None when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return suppress_small_cells(_plain(value), threshold)


# --------------------------------------------------------------------------- results.json


def _labels(result: StudyResult) -> dict[int, str]:
    return arm_labels(result)


def _test_dict(test: Any, name: str) -> dict[str, Any] | None:
    if test is None:
        return None
    return {
        "test": name,
        "statistic": _plain(getattr(test, "statistic", None)),
        "df": _plain(getattr(test, "df", None)),
        "p": _plain(getattr(test, "p_value", None)),
    }


def _ph_rows(ph_test: Any) -> list[dict[str, Any]]:
    table = getattr(ph_test, "table", ph_test)
    if not isinstance(table, pd.DataFrame):
        return []
    rows = []
    for term, row in table.iterrows():
        rows.append({"term": str(term), **{k: _plain(row[k]) for k in ("chisq", "df", "p") if k in table.columns}})
    return rows


def _outcome_test(outcome: Any) -> dict[str, Any] | None:
    """The outcome's comparison of the arms: log-rank (Kaplan-Meier outcome) or Gray (competing)."""
    if getattr(outcome, "competing", False):
        return _test_dict(getattr(outcome, "gray", None), "Gray")
    return _test_dict(getattr(outcome, "logrank", None), "log-rank")


def balance_table(result: StudyResult, disclosure: StudyDisclosure | None = None) -> pd.DataFrame:
    """Per covariate (level): ``covariate``, ``smd_before``, ``smd_after`` (absolute), variance ratios, KS.

    Balance of a cohort with an arm smaller than the small-cell threshold is NaN
    (withheld): an SMD against one patient is that patient's value in disguise.
    """
    disclosure = study_disclosure(result) if disclosure is None else disclosure
    before = None if disclosure.few_exposed else result.balance_before
    after = None if disclosure.few_matched else result.balance_after
    base: pd.DataFrame | None
    if before is None and after is None and result.balance_before is not None:
        base = result.balance_before
        return pd.DataFrame(
            {
                "covariate": [str(i) for i in base.index],
                **{f"{c}_{w}": np.nan for c in ("smd", "variance_ratio", "ks") for w in ("before", "after")},
            }
        )
    if before is None and after is None:
        return pd.DataFrame(columns=["covariate", "smd_before", "smd_after"])
    base = before if before is not None else after
    if base is None:
        return pd.DataFrame(columns=["covariate", "smd_before", "smd_after"])
    out = pd.DataFrame({"covariate": [str(i) for i in base.index]})
    for name, frame in (("before", before), ("after", after)):
        for column in ("smd", "variance_ratio", "ks"):
            if frame is not None and column in frame.columns:
                values = frame[column].reindex(base.index).to_numpy(dtype=float)
            else:
                values = np.full(len(base), np.nan)
            out[f"{column}_{name}"] = values
    return out


def key_table(result: StudyResult) -> pd.DataFrame:
    """Each outcome's primary estimate next to the published one (and the planted truth on synthetic data).

    One row per outcome of the study, in its order: ``outcome``, ``model``, ``estimate``, ``lower``,
    ``upper``, ``p``, ``published``, ``published_lower``, ``published_upper``, ``planted``. Missing
    values are NaN (model skipped, nothing published, real data).
    """
    rows = []
    for outcome in outcome_names(result):
        _name, model, population = primary_key(result, outcome)
        est = result.estimate(outcome, model, population)  # type: ignore[arg-type]
        published = published_for(result, outcome)
        planted = planted_for(result, outcome) if result.synthetic else None
        rows.append(
            {
                "outcome": outcome,
                "model": model,
                "estimate": est.estimate if est else np.nan,
                "lower": est.lower if est else np.nan,
                "upper": est.upper if est else np.nan,
                "p": est.p if est else np.nan,
                "published": published[0] if published else np.nan,
                "published_lower": published[1] if published else np.nan,
                "published_upper": published[2] if published else np.nan,
                "planted": planted if planted is not None else np.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "outcome",
            "model",
            "estimate",
            "lower",
            "upper",
            "p",
            "published",
            "published_lower",
            "published_upper",
            "planted",
        ],
    )


def _e_value_values(result: StudyResult, disclosure: StudyDisclosure) -> dict[str, Any]:
    """The E-value numbers; the observed outcome proportion is withheld (None) when the matched
    cohort's size is not shown exactly (events / proportion would give it back)."""
    values: dict[str, Any] = dict(result.e_value or {})
    if "outcome_proportion" in values and not isinstance(disclosure.counts.get("matched", 0), int):
        values["outcome_proportion"] = None
    return values


def _e_value_document(result: StudyResult, disclosure: StudyDisclosure) -> dict[str, Any] | None:
    if result.e_value is None:
        return None
    method = result.e_value_method or ""
    transform = "common" if "outcome common" in method else "rare" if "outcome rare" in method else None
    return {**_plain(_e_value_values(result, disclosure)), "transform": transform, "method": disclosure.text(method)}


def data_checks_table(result: StudyResult) -> pd.DataFrame:
    """The data checks of the run (``sources/quality.py``), counts suppressed by the small-cell threshold.

    Columns ``table``, ``check``, ``rule``, ``action``, ``count``, ``unit``; no
    rows when the cohort did not come from the MIMIC-IV reader.
    """
    columns = ["table", "check", "rule", "action", "count", "unit"]
    checks = result.data_checks
    if checks is None or not len(checks):
        return pd.DataFrame(columns=columns)
    frame = checks[columns].reset_index(drop=True)
    return suppress_frame(frame, columns=["count"], threshold=result.study.report.small_cell_threshold)


def results_document(result: StudyResult) -> dict[str, Any]:
    """The results.json document (schema ``SCHEMA_VERSION``, see docs/results-schema.md).

    Counts are suppressed by the study's small-cell threshold (a string such
    as ``"<5"``); floats that are not finite are null.
    """
    threshold = result.study.report.small_cell_threshold
    disclosure = study_disclosure(result)
    attrition = [
        {
            "step": str(row["step"]),
            "remaining": disclosure.attrition[i][0],
            "excluded": disclosure.attrition[i][1],
            **(
                {"reason": disclosure.text(str(row["reason"]))}
                if isinstance(row.get("reason"), str) and row["reason"]
                else {}
            ),
        }
        for i, (_, row) in enumerate(result.attrition.iterrows())
    ]
    estimates = [
        {
            "outcome": e.outcome,
            "model": e.model,
            "population": e.population,
            "estimate": _plain(e.estimate),
            "lower": _plain(e.lower),
            "upper": _plain(e.upper),
            "p": _plain(e.p),
            "label": e.label,
            "n": _estimate_counts(e, disclosure)[0],
            "n_events": _estimate_counts(e, disclosure)[1],
            "variance": e.variance,
            "note": disclosure.text(e.note),
        }
        for e in result.estimates
    ]
    balance = {
        row["covariate"]: {"smd_before": _plain(row["smd_before"]), "smd_after": _plain(row["smd_after"])}
        for _, row in balance_table(result, disclosure).iterrows()
    }
    study = result.study
    published = {}
    for outcome in outcome_names(result):
        values = published_for(result, outcome)
        if values:
            published[outcome] = {
                "model": primary_key(result, outcome)[1],
                "estimate": values[0],
                "lower": values[1],
                "upper": values[2],
            }
    outcomes: dict[str, Any] = {}
    for name, spec in study.outcomes.items():
        fitted = result.outcomes.get(name)
        ph = getattr(fitted, "ph_test", None)
        outcomes[name] = {
            "label": spec.label,
            "kind": spec.kind,
            "competing": spec.competing,
            "horizon_days": float(spec.horizon_days),
            "primary": name == result.primary,
            "test": _outcome_test(fitted) if fitted is not None else None,
            "ph_test": _ph_rows(ph) if ph is not None else None,
            "ph_test_model": getattr(fitted, "ph_test_model", None),
        }
    planted = None
    if result.synthetic and result.planted:
        planted = {
            name: {"estimand": str(entry.get("estimand", "hr")), "value": _plain(entry.get("value"))}
            for name, entry in result.planted.items()
            if isinstance(entry, Mapping) and _plain(entry.get("value")) is not None
        }
    info = study.study
    return {
        "schema_version": SCHEMA_VERSION,
        "study": {
            "name": info.name,
            "title": info.title,
            "index_label": study.index.label,
            "exposure_label": study.exposure.label,
            "comparator_label": study.comparator.label,
            "primary_outcome": result.primary,
        },
        "synthetic": bool(result.synthetic),
        "planted": planted,
        "small_cell_threshold": threshold,
        "attrition": attrition,
        "counts": {k: disclosure.count(k, _count(v, threshold)) for k, v in result.counts.items()},
        "dose": _dose_document(result, disclosure),
        "outcomes": outcomes,
        "estimates": estimates,
        "published": published,
        "subgroups": [
            {
                "outcome": g.outcome,
                "covariate": g.covariate,
                "label": g.label,
                "model": g.model,
                "p_interaction": _plain(g.p_interaction),
                "interaction_note": g.interaction_note,
                "levels": [
                    {k: (str(v) if k == "level" else _plain(v)) for k, v in row.items()}
                    for row in subgroup_levels(result, g, disclosure).to_dict("records")
                ],
            }
            for g in result.subgroups
        ],
        "balance": balance,
        "e_value": _e_value_document(result, disclosure),
        "skipped": [
            {"outcome": s.outcome, "model": s.model, "population": s.population, "reason": disclosure.text(s.reason)}
            for s in result.skipped
        ],
        "notes": [disclosure.text(n) for n in result.notes],
        "provenance": _plain(result.provenance),
        "data_checks": [{k: _plain(v) for k, v in row.items()} for row in data_checks_table(result).to_dict("records")],
        "target_trial": {
            name: _trial_document(trial, disclosure)
            for name, trial in (getattr(result, "target_trial", None) or {}).items()
        },
    }


#: The target trial's estimates in results.json, in order.
TRIAL_ESTIMATES = ("risk_start", "risk_no_start", "risk_difference", "risk_ratio", "hazard_ratio")


def _trial_document(trial: Any, disclosure: StudyDisclosure) -> dict[str, Any]:
    """``target_trial.<outcome>``: protocol, counts as the disclosure rule shows them, bootstrap intervals
    and the weight distribution (schema 2.1)."""
    options = trial.options
    boot = trial.bootstrap
    shown = disclosure.trial_counts.get(trial.outcome, {})
    lower, upper = options.get("truncate", (0.0, 1.0))
    document: dict[str, Any] = {
        "label": trial.label,
        "competing": bool(trial.competing),
        "horizon_days": float(trial.horizon_days),
        "grace_days": float(trial.grace_days),
        "protocol": {
            "censoring_model": options.get("censoring_model"),
            "interval_hours": _plain(options.get("interval_days", math.nan) * 24.0),
            "covariates": [str(c) for c in options.get("covariates", ())],
            "time_varying": [str(c) for c in options.get("time_varying", ())],
            "stabilised": bool(options.get("stabilised", True)),
            "truncate_percentiles": [_plain(100.0 * lower), _plain(100.0 * upper)],
            "min_ess": _plain(options.get("min_ess")),
            "not_applied": list(trial.not_applied),
            "past_index": list(trial.past_index),
        },
        "skipped": disclosure.text(trial.skipped) if trial.skipped else None,
        "counts": dict(shown),
        "estimates": None,
        "bootstrap": {
            "replicates": int(options.get("n_replicates", 0)),
            "succeeded": None,
            "failed": None,
            "seed": int(options.get("seed", 0)),
            "conf_level": _plain(options.get("conf_level")),
        },
        "weights": None,
        "notes": [disclosure.text(n) for n in trial.notes],
    }
    if boot is None:
        return document
    intervals = boot.intervals
    document["estimates"] = {
        k: {
            "estimate": _plain(intervals.loc[k, "estimate"]),
            "lower": _plain(intervals.loc[k, "lower"]),
            "upper": _plain(intervals.loc[k, "upper"]),
        }
        for k in TRIAL_ESTIMATES
        if k in intervals.index
    }
    document["bootstrap"].update(succeeded=int(boot.n_replicates - boot.failed), failed=int(boot.failed))
    weights = boot.point.weights
    document["weights"] = {
        str(strategy): {
            **{k: _plain(row[k]) for k in _WEIGHT_STATS},
            # rows of clone-intervals, not patients, but small numbers are still held back
            "truncated_rows": _count(row["truncated_rows"], disclosure.threshold),
        }
        for strategy, row in weights.iterrows()
    }
    return document


#: The words of the trial's estimands in tables/target_trial.csv (Hernan's "risk under the strategy").
TRIAL_ESTIMANDS = {
    "risk_start": "risk under the strategy: start within the grace window",
    "risk_no_start": "risk under the strategy: do not start within the grace window",
    "risk_difference": "risk difference (start - no start)",
    "risk_ratio": "risk ratio (start / no start)",
    "hazard_ratio": "hazard ratio (weighted Cox, start vs no start)",
}


def _trial_tables(result: StudyResult, disclosure: StudyDisclosure) -> dict[str, pd.DataFrame]:
    """``target_trial`` (estimates with bootstrap intervals per outcome), ``target_trial_weights`` (the
    weight distribution per outcome and strategy) and ``target_trial_counts`` (eligible, started, events
    per strategy as the disclosure rule shows them); none when the study has no trial.

    Estimated trials only: a skipped one is in ``skipped_models`` with its reason.
    """
    trials = getattr(result, "target_trial", None) or {}
    if not trials:
        return {}
    estimates, weights, counts = [], [], []
    for name, trial in trials.items():
        for quantity, value in disclosure.trial_counts.get(name, {}).items():
            counts.append({"outcome": name, "quantity": quantity, "value": value})
        boot = trial.bootstrap
        if boot is None:
            continue
        succeeded = int(boot.n_replicates - boot.failed)
        method = f"percentile bootstrap over patients, {succeeded} of {boot.n_replicates} replicates, seed {boot.seed}"
        competing = bool(trial.competing)
        for quantity in TRIAL_ESTIMATES:
            if quantity not in boot.intervals.index:
                continue
            row = boot.intervals.loc[quantity]
            words = TRIAL_ESTIMANDS[quantity]
            if competing:
                words = words.replace("risk under", "cumulative incidence under").replace(
                    "hazard ratio", "cause-specific hazard ratio"
                )
            estimates.append(
                {
                    "outcome": name,
                    "label": trial.label,
                    "quantity": quantity,
                    "estimand": words,
                    "horizon_days": _plain(trial.horizon_days),
                    "grace_days": _plain(trial.grace_days),
                    "estimate": _plain(row["estimate"]),
                    "lower": _plain(row["lower"]),
                    "upper": _plain(row["upper"]),
                    "conf_level": _plain(boot.conf_level),
                    "interval": method,
                }
            )
        for strategy, w in boot.point.weights.iterrows():
            weights.append(
                {
                    "outcome": name,
                    "strategy": str(strategy),
                    **{k: _plain(w[k]) for k in _WEIGHT_STATS},
                    # clone-interval rows, not patients, but small numbers are held back all the same
                    "truncated_rows": _count(w["truncated_rows"], disclosure.threshold),
                }
            )
    return {
        "target_trial": pd.DataFrame(
            estimates,
            columns=[
                "outcome",
                "label",
                "quantity",
                "estimand",
                "horizon_days",
                "grace_days",
                "estimate",
                "lower",
                "upper",
                "conf_level",
                "interval",
            ],
        ),
        "target_trial_weights": pd.DataFrame(
            weights, columns=["outcome", "strategy", *_WEIGHT_STATS, "truncated_rows"]
        ),
        "target_trial_counts": pd.DataFrame(counts, columns=["outcome", "quantity", "value"], dtype=object),
    }


def _dose_document(result: StudyResult, disclosure: StudyDisclosure) -> dict[str, Any] | None:
    """The dose summary when the study declares ``[dose]``; the mean and SD of fewer patients than the
    threshold are (nearly) one patient's dose: withheld."""
    dose = result.dose
    if dose is None or result.study.dose is None:
        return None
    threshold = disclosure.threshold
    n = dose.get("n", result.counts.get("exposed"))
    few = is_small(n, threshold)
    out = {
        "name": str(dose.get("name", result.study.dose.name)),
        "label": str(dose.get("label", result.study.dose.label)),
        "unit": str(dose.get("unit", result.study.dose.unit)),
        "mean": None if few else _plain(dose.get("mean")),
        "sd": None if few else _plain(dose.get("sd")),
    }
    if "n" in dose:
        out["n"] = (
            disclosure.count("exposed", dose["n"])
            if dose["n"] == result.counts.get("exposed")
            else _count(dose["n"], threshold)
        )
    return out


def subgroup_levels(result: StudyResult, subgroup: Any, disclosure: StudyDisclosure | None = None) -> pd.DataFrame:
    """A subgroup's levels as every output shows them: level, n, n_events (protected counts), estimate,
    lower, upper, p. The ratio of a level with fewer patients than the threshold is still a model estimate
    and is shown (as the estimates are)."""
    disclosure = study_disclosure(result) if disclosure is None else disclosure
    columns = ["level", "n", "n_events", "estimate", "lower", "upper", "p"]
    levels = subgroup.levels
    rows = []
    for _, row in levels.iterrows():
        shown = disclosure.subgroup_counts.get((str(subgroup.covariate), str(row["level"])))
        if shown is None:
            shown = (_count(row.get("n"), disclosure.threshold), _count(row.get("n_events"), disclosure.threshold))
        ratios = {k: float(row[k]) if pd.notna(row.get(k)) else np.nan for k in ("estimate", "lower", "upper", "p")}
        rows.append({"level": level_text(row["level"]), "n": shown[0], "n_events": shown[1], **ratios})
    return pd.DataFrame(rows, columns=columns)


def _estimate_counts(estimate: Any, disclosure: StudyDisclosure) -> tuple[Any, Any]:
    """(patients, events) of an estimate as every output shows them."""
    shown = disclosure.estimate_counts.get((estimate.outcome, estimate.population))
    if shown is not None:
        return shown
    return _count(estimate.n, disclosure.threshold), _count(estimate.n_events, disclosure.threshold)


def curve_table(result: StudyResult, outcome: str, disclosure: StudyDisclosure | None = None) -> pd.DataFrame:
    """One outcome's curve at its report times (:func:`~retrocohort.report.suppression.report_times`), per arm.

    A Kaplan-Meier outcome gives ``arm``, ``time``, ``survival``, ``lower``, ``upper``, ``n_risk``; a
    competing outcome its cumulative incidence (``cif``, ``lower``, ``upper``). The per-event-time table
    is not published: consecutive numbers at risk differ by the few patients who died or were censored
    between them, and a step of one event gives that event back. The value at each report time is that
    of the curve as the figures draw it (:func:`~retrocohort.report.suppression.coarsen_curve`: steps of
    at least threshold events), so table and figure agree and neither shows a step of fewer events.
    """
    disclosure = study_disclosure(result) if disclosure is None else disclosure
    fitted = result.outcomes[outcome]
    which = "cif" if fitted.competing else "km"
    fit = fitted.cif if fitted.competing else fitted.km
    value = "survival" if which == "km" else "cif"
    times = report_times(result.study, float(fitted.horizon_days))
    labels = _labels(result)
    columns = ["arm", "time", value, "lower", "upper"] + (["n_risk"] if which == "km" else [])
    if fit is None or not times:
        return pd.DataFrame(columns=columns)
    at_risk = disclosure.at_risk_by_outcome.get(outcome)
    table = coarsen_curve(fit.table, disclosure.threshold)
    groups = list(dict.fromkeys(fit.table["group"])) if "group" in fit.table.columns else [None]
    rows = []
    for g in groups:
        part = table if g is None else table[table["group"] == g]
        t = part["time"].to_numpy(dtype=float)
        for j, at in enumerate(times):
            k = int(np.searchsorted(t, at, side="right")) - 1
            if k >= 0:
                cells = {c: float(part[c].iloc[k]) for c in (value, "lower", "upper") if c in part.columns}
            elif which == "km":
                cells = {value: 1.0, "lower": 1.0, "upper": 1.0}
            else:
                cells = {value: 0.0, "lower": np.nan, "upper": np.nan}
            arm = labels.get(int(g), str(g)) if g is not None and str(g).lstrip("-").isdigit() else str(g)
            row = {"arm": arm, "time": at, **cells}
            if which == "km":
                row["n_risk"] = at_risk.loc[g].iloc[j] if at_risk is not None and g in at_risk.index else None
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def matching_counts_table(result: StudyResult, disclosure: StudyDisclosure | None = None) -> pd.DataFrame | None:
    """MatchIt's sample-size table (All, Matched, Unmatched, ESS) with the study's count displays."""
    counts = getattr(result.matching, "counts", None) if result.matching is not None else None
    if not isinstance(counts, pd.DataFrame):
        return None
    disclosure = study_disclosure(result) if disclosure is None else disclosure
    names = {"Treated": "exposed", "Control": "unexposed"}
    rows = {"All": "{arm}", "Matched": "matched_{arm}", "Unmatched": "unmatched_{arm}"}
    out = counts.astype(object).copy()
    for column in out.columns:
        arm = names.get(str(column))
        for row in out.index:
            raw = counts.loc[row, column]
            base = str(row).replace(" (ESS)", "")
            key = rows[base].format(arm=arm) if arm and base in rows else None
            shown: Any = disclosure.counts.get(key) if key else None
            if shown is None:
                shown = suppress_small_cells(raw, disclosure.threshold)
            elif str(row).endswith("(ESS)"):
                # An ESS of unit weights is the count itself: shown only when the count is exact.
                if is_small(raw, disclosure.threshold):
                    shown = f"<{disclosure.threshold}"
                else:
                    shown = round(float(raw), 2) if isinstance(shown, int) else None
            out.loc[row, column] = shown
    return out


# --------------------------------------------------------------------------- tables


def build_tables(result: StudyResult) -> dict[str, pd.DataFrame]:
    """Every CSV table of the outputs, by file stem; counts already protected (:func:`study_disclosure`)."""
    threshold = result.study.report.small_cell_threshold
    disclosure = study_disclosure(result)
    labels = _labels(result)
    covariate_labels = study_labels(result.study)
    tables: dict[str, pd.DataFrame] = {}
    attrition = result.attrition[[c for c in ("step", "remaining", "excluded", "reason") if c in result.attrition]]
    attrition = attrition.astype(object).copy()
    attrition["remaining"] = [shown[0] for shown in disclosure.attrition]
    attrition["excluded"] = [shown[1] for shown in disclosure.attrition]
    if "reason" in attrition.columns:
        attrition["reason"] = [disclosure.text(r) if isinstance(r, str) else r for r in attrition["reason"]]
    tables["attrition"] = attrition
    tables["counts"] = pd.DataFrame(
        {
            "quantity": list(result.counts),
            "value": pd.Series([disclosure.count(k, v) for k, v in result.counts.items()], dtype=object),
        },
    )
    for when in ("before", "after"):
        table_one = getattr(result, f"table_one_{when}")
        if table_one is not None:
            cells = {(label, arm): v for (w, label, arm), v in disclosure.table_one.items() if w == when}
            shown = suppress_table_one(
                table_one, threshold, arm_counts=_arm_counts(disclosure, when), cell_counts=cells
            )
            # Rows in the study's words (after the counts are protected: the disclosure knows tableone's labels).
            shown.index = [table_one_row_label(str(i), covariate_labels) for i in shown.index]
            tables[f"table1_{when}"] = shown
    tables["balance"] = balance_table(result, disclosure)
    estimates = pd.DataFrame(
        [
            {
                "outcome": e.outcome,
                "model": e.model,
                "population": e.population,
                "label": e.label,
                "estimate": e.estimate,
                "lower": e.lower,
                "upper": e.upper,
                "p": e.p,
                "n": _estimate_counts(e, disclosure)[0],
                "n_events": _estimate_counts(e, disclosure)[1],
                "variance": e.variance,
                "note": disclosure.text(e.note),
            }
            for e in result.estimates
        ],
        columns=[
            "outcome",
            "model",
            "population",
            "label",
            "estimate",
            "lower",
            "upper",
            "p",
            "n",
            "n_events",
            "variance",
            "note",
        ],
    )
    tables["estimates"] = estimates
    tables["data_checks"] = data_checks_table(result)
    tables["key_results"] = key_table(result)
    tables["skipped_models"] = pd.DataFrame(
        [
            {"outcome": s.outcome, "model": s.model, "population": s.population, "reason": disclosure.text(s.reason)}
            for s in result.skipped
        ],
        columns=["outcome", "model", "population", "reason"],
    )
    # A trial that could not be estimated is a model not estimated too (its reason also in results.json).
    trial_skipped = [
        {"outcome": name, "model": "target_trial", "population": "trial", "reason": disclosure.text(t.skipped)}
        for name, t in (getattr(result, "target_trial", None) or {}).items()
        if t.skipped
    ]
    if trial_skipped:
        tables["skipped_models"] = pd.concat([tables["skipped_models"], pd.DataFrame(trial_skipped)], ignore_index=True)
    tables.update(_trial_tables(result, disclosure))
    tests, ph_rows = [], []
    for name, fitted in result.outcomes.items():
        at_risk = disclosure.at_risk_by_outcome.get(name)
        if fitted.km is not None and at_risk is not None:
            frame = at_risk.copy()
            frame.index = [labels.get(int(g), str(g)) if str(g).isdigit() else str(g) for g in frame.index]
            frame.index.name = "arm"
            frame.columns = [f"day_{float(t):g}" for t in frame.columns]
            tables[f"at_risk_{name}"] = frame
        if (fitted.cif if fitted.competing else fitted.km) is not None:
            tables[f"{'cif' if fitted.competing else 'km'}_{name}"] = curve_table(result, name, disclosure)
        test = _outcome_test(fitted)
        if test is not None:
            tests.append({"outcome": name, "population": "matched", **test})
        if fitted.ph_test is not None:
            model = fitted.ph_test_model or ""
            ph_rows += [{"outcome": name, "model": model, **row} for row in _ph_rows(fitted.ph_test)]
    if tests:
        tables["tests"] = pd.DataFrame(tests)
    if ph_rows:
        tables["ph_test"] = pd.DataFrame(ph_rows)
    if result.subgroups:
        tables["subgroups"] = pd.concat(
            [
                subgroup_levels(result, g, disclosure).assign(
                    outcome=g.outcome,
                    covariate=g.covariate,
                    label=g.label,
                    p_interaction=g.p_interaction,
                    interaction_note=getattr(g, "interaction_note", ""),
                    model=g.model,
                )
                for g in result.subgroups
            ],
            ignore_index=True,
        )[
            [
                "outcome",
                "covariate",
                "label",
                "level",
                "n",
                "n_events",
                "estimate",
                "lower",
                "upper",
                "p",
                "p_interaction",
                "interaction_note",
                "model",
            ]
        ]
    if result.propensity is not None:
        tables["propensity_model"] = result.propensity.summary.copy()
    matching_counts = matching_counts_table(result, disclosure)
    if matching_counts is not None:
        tables["matching_counts"] = matching_counts
    if result.e_value is not None:
        tables["e_value"] = pd.DataFrame(
            [{**_e_value_values(result, disclosure), "method": disclosure.text(result.e_value_method or "")}]
        )
    return tables


def _arm_counts(disclosure: StudyDisclosure, when: str) -> dict[str, Any]:
    """Table 1's n per arm column ("0", "1") as the rest of the outputs show it."""
    if when == "before":
        return {"0": disclosure.count("comparator"), "1": disclosure.count("exposed")}
    return {"0": disclosure.count("matched_comparator"), "1": disclosure.count("matched_exposed")}


# --------------------------------------------------------------------------- writing
#
# Never clobber (docs/cli.md, "Outputs"):
# - check_output_folder() refuses, before any data are read, a folder that could not be written at the
#   end: a file in the way, an unwritable parent, a non-output folder even with --force, a full disk.
# - output_lock() holds an exclusive lock (flock on ``.<out>.retrocohort-lock`` beside the folder) for
#   the whole run, so two runs writing to the same --out cannot both proceed; the kernel drops the
#   lock of a crashed run, and the next run takes it over, removes that run's leftovers and says so.
# - write_outputs() writes into ``.<out>.partial-<run id>`` (with a RUN_MARKER file naming the run),
#   then renames it into place without ever replacing a folder this run did not expect: the folder
#   found at the start (or its absence) is recorded in the lock, and anything else found at the end is
#   left alone and the run refuses.

#: File inside every output folder this tool writes: the run id, so --force knows an earlier output.
RUN_MARKER = ".retrocohort-run"
#: Below this much free space the run is refused before it starts (a report is 2-20 MB).
MIN_FREE_BYTES = 50 * 1024 * 1024
_LOCK_SUFFIX = ".retrocohort-lock"


class OutputNotWritableError(RetrocohortError, PermissionError):
    """The output folder cannot be created or written (permissions, a file in the way, a full disk)."""


class OutputLockedError(RetrocohortError, BlockingIOError):
    """Another run is writing to the same output folder."""


def _is_earlier_output(folder: Path) -> bool:
    return any((folder / name).exists() for name in (RUN_MARKER, "results.json", "report.html"))


def _existing_ancestor(path: Path) -> Path:
    anchor = path.absolute().parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    return anchor


def _output_path(out_dir: str | Path) -> Path:
    """The absolute, normalised output folder ("." and ".." resolved, so it has a name and a parent)."""
    out = Path(os.path.abspath(out_dir))
    if out == out.parent:
        raise OutputExistsError(f"--out {str(out_dir)!r} is the root of the file system; choose a folder to create")
    cwd = Path.cwd()
    if out == cwd or out in cwd.parents:
        # Replacing it would pull the working directory from under the user's shell.
        raise OutputExistsError(
            f"--out {str(out_dir)!r} is the working directory or holds it; choose a new folder, e.g. --out study-output"
        )
    return out


def check_output_folder(out_dir: str | Path, force: bool = False) -> None:
    """Refuse an output folder that this run could not (or must not) write, before any work is done.

    Parameters
    ----------
    out_dir : the folder the run will write.
    force : an existing folder may be replaced, but only when it is empty or an earlier output.

    Raises
    ------
    OutputExistsError
        ``out_dir`` exists and ``force`` is False; or it is a file; or it is a non-empty folder that
        is not an earlier output (never replaced, even with ``force``).
    OutputNotWritableError
        The folder (or its parent) cannot be created or written, or the disk is nearly full.
    """
    out = _output_path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputExistsError(
                f"{str(out)!r} exists and is not a folder (a file is in the way); choose another --out "
                "or move that file"
            )
        if not force:
            raise OutputExistsError(
                f"output folder {str(out)!r} already exists; choose another --out or pass --force "
                "to replace it (everything in it is deleted)"
            )
        if any(out.iterdir()) and not _is_earlier_output(out):
            # --force replaces an earlier report, never an arbitrary folder (a typo in --out
            # must not delete a user's data).
            raise OutputExistsError(
                f"{str(out)!r} is not empty and holds no results.json or report.html, so it does not look like "
                "an earlier retrocohort output; refusing to replace it even with --force. Choose another --out."
            )
    check_writable(out)


def check_writable(out_dir: str | Path, inside: bool = False) -> None:
    """Refuse a folder that cannot be created or written: a file in the way, no permission, a full disk.

    The part of :func:`check_output_folder` that ``retrocohort synth`` uses too (its rules about an
    existing folder differ). ``inside``: the files go into ``out_dir`` itself when it exists (synth);
    otherwise (a report) they go beside it and are renamed into place, so the folder above must be
    writable, and nothing is written into an existing ``out_dir`` (that would change the folder a
    run checks at the end).

    Raises
    ------
    OutputExistsError
        ``out_dir`` or a folder above it is a file.
    OutputNotWritableError
        No permission to create or write it, or less than ``MIN_FREE_BYTES`` free on its disk.
    """
    out = _output_path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(
            f"{str(out)!r} exists and is not a folder (a file is in the way); choose another --out or move that file"
        )
    anchor = _existing_ancestor(out)
    if not anchor.is_dir():
        raise OutputExistsError(
            f"cannot create output folder {str(out)!r}: {str(anchor)!r} is a file, not a folder; choose another --out"
        )
    if inside and out.is_dir():
        anchor = out
    try:
        # A real write, not os.access: access() says yes to root on a read-only file system.
        probe: str | None = None
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe-", dir=anchor)
            os.close(fd)
        finally:
            # Removed even when Ctrl-C or `kill` lands between creating and removing it.
            if probe is not None:
                with contextlib.suppress(OSError):
                    os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputNotWritableError(
                f"the output folder name {out.name[:40]!r}... ({len(out.name)} characters) is too long: the run's "
                "working files beside it add about 30 characters to it, and file names end at 255 on most file "
                "systems; choose a shorter --out"
            ) from None
        raise OutputNotWritableError(
            f"cannot write output folder {str(out)!r}: {str(anchor)!r} is not writable ({exc.strerror}); "
            "choose an --out in a folder you can write to"
        ) from None
    free = shutil.disk_usage(anchor).free
    if free < MIN_FREE_BYTES:
        raise OutputNotWritableError(
            f"only {free / 2**20:.1f} MB free on the disk holding {str(anchor)!r}; the report needs up to "
            f"{MIN_FREE_BYTES // 2**20} MB. Free some space or choose an --out on another disk."
        )


def _identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, ctime) of a folder, or None when absent: tells "the folder we found" from a newcomer.

    The inode alone is not enough: a folder deleted and made again often gets the same inode number. The
    change time moves whenever an entry is added, removed or renamed in the folder, so a folder someone
    touched during the run counts as a different one, and is not deleted.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


@dataclass
class OutputLock:
    """An exclusive lock on one output folder, held by this process for a run (see :func:`output_lock`).

    Attributes
    ----------
    out : the output folder.
    run_id : this run's id (also written into the output's RUN_MARKER file).
    found : (device, inode, change time) of the folder ``out`` when the lock was taken, None when absent;
        the final rename replaces only that folder, untouched.
    recovered : what an earlier run that did not finish (a crash, a kill) left in the lock file, when its
        lock was taken over; None otherwise.
    """

    out: Path
    path: Path
    run_id: str
    found: tuple[int, int, int] | None
    recovered: dict[str, Any] | None = None
    _fd: int | None = field(default=None, repr=False)
    # Folders above ``out`` that taking the lock created (deepest first); removed again if still empty.
    _created: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        holder = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {"unreadable": raw[:80].decode("utf-8", "replace")}
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a run whose details are unknown"
    return (
        f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')})"
    )


def _remove_leftovers(out: Path) -> list[str]:
    """Folders a crashed run left beside ``out``: partial ones are deleted, a retired report is restored."""
    removed = []
    for partial in sorted(out.parent.glob(f".{out.name}.partial-*")):
        if partial.is_dir() and (not any(partial.iterdir()) or (partial / RUN_MARKER).exists()):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial.name)
    for retired in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not retired.is_dir() or not _is_earlier_output(retired):
            continue
        if not out.exists() and not out.is_symlink():
            # The crash came between retiring the earlier report and putting the new one in place.
            retired.rename(out)
            removed.append(f"{retired.name} (restored as {out.name})")
        else:
            retired.unlink() if retired.is_symlink() else shutil.rmtree(retired, ignore_errors=True)
            removed.append(retired.name)
    return removed


def _abandon(fd: int, lock_path: Path) -> None:
    """Close a lock file being taken; delete it only while holding its lock (else another run may own it)."""
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
            os.unlink(lock_path)
    os.close(fd)


def acquire_output_lock(out_dir: str | Path) -> OutputLock:
    """Take the exclusive lock of ``out_dir`` (non-blocking); release it with :func:`release_output_lock`.

    Raises
    ------
    OutputLockedError
        Another live process holds it: the message names its run id, pid, host and start time.
    OutputNotWritableError
        The lock file cannot be created beside the output folder.
    """
    out = _output_path(out_dir)
    lock_path = out.parent / f".{out.name}{_LOCK_SUFFIX}"
    created = []
    missing = out.parent
    while not missing.exists() and missing != missing.parent:
        created.append(missing)
        missing = missing.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot create the folder of --out {str(out)!r} ({exc.strerror})") from None
    for _ in range(20):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputNotWritableError(
                f"cannot create the lock file {str(lock_path)!r} beside the output folder ({exc.strerror}); "
                "choose an --out in a folder you can write to"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                fd = -1
                raise OutputLockedError(
                    f"another retrocohort run is writing to {str(out)!r}: {_describe(holder)}. Wait for it to "
                    "finish or choose another --out (two runs never write the same folder)."
                ) from None
            # The previous holder unlinks the file on release; if it did so between our open() and our
            # flock(), we hold a lock on a file nobody else will see: start again on the current file.
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            # A normal release deletes the file, so content here was left by a run that did not finish.
            stale = _read_holder(fd)
            run_id = uuid.uuid4().hex[:12]
            holder = {
                "run_id": run_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(holder).encode())
        except OutputLockedError:
            raise
        except BaseException:
            # Ctrl-C or kill in the middle of taking the lock: leave no lock file behind.
            _abandon(fd, lock_path)
            raise
        lock = OutputLock(out, lock_path, run_id, None, None, fd, tuple(created))
        try:
            leftovers = _remove_leftovers(out)
        except BaseException:
            release_output_lock(lock)
            raise
        if stale is not None or leftovers:
            lock.recovered = {**(stale or {}), "removed": leftovers}
        lock.found = _identity(out)
        return lock
    raise OutputLockedError(f"could not take the lock {str(lock_path)!r}: other runs keep replacing it; try again")


def release_output_lock(lock: OutputLock) -> None:
    """Release the lock and delete its file (only while it is still ours)."""
    if lock._fd is None:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock.path).st_ino == os.fstat(lock._fd).st_ino:
                os.unlink(lock.path)
    finally:
        os.close(lock._fd)
        lock._fd = None
        for folder in lock._created:  # a run that wrote nothing leaves no empty folders either
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def output_lock(out_dir: str | Path) -> Iterator[OutputLock]:
    """Hold the exclusive lock of an output folder for a block: ``with output_lock(out) as lock: ...``."""
    lock = acquire_output_lock(out_dir)
    try:
        yield lock
    finally:
        release_output_lock(lock)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _rename_noreplace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, failing with FileExistsError if ``target`` exists.

    os.rename silently replaces an empty folder; Linux renameat2(RENAME_NOREPLACE) does not. Where it
    is unavailable the check-then-rename fallback leaves a window of microseconds, not of a whole run.
    """
    libc = _libc()
    if libc is not None:
        rc = libc.renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(target))
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "File exists", str(target))
    source.rename(target)


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.renameat2  # noqa: B018 - absent before glibc 2.28
    except (OSError, AttributeError):
        return None
    return libc


def _not_ours(out: Path, kept: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{str(out)!r} was created or replaced by someone else while this run was working; it is left untouched. "
        f"This run's complete report was kept in {str(kept)!r}: move it where you want it."
    )


def write_outputs(
    result: StudyResult,
    out_dir: str | Path,
    force: bool = False,
    progress: ProgressCallback | None = None,
    lock: OutputLock | None = None,
) -> Path:
    """Write every output of a study run into ``out_dir``, atomically.

    Parameters
    ----------
    result : StudyResult
    out_dir : folder to create; must not exist unless ``force``.
    force : replace an existing ``out_dir`` (its whole content) that is empty or holds an
        earlier output (its run marker, results.json or report.html); any other folder is never replaced.
    progress : ``progress(stage_key, label, state)`` for "tables", "figures", "report".
    lock : the :func:`output_lock` of ``out_dir`` when the caller holds it for the whole run (the CLI
        takes it, then calls :func:`check_output_folder`, before reading any data); None checks the
        folder and takes the lock for the writing only.

    Returns
    -------
    Path of the written folder: ``results.json``, ``report.html``,
    ``tables/*.csv``, ``figures/*.png`` and ``figures/*.svg``.

    Raises
    ------
    OutputExistsError
        ``out_dir`` exists and ``force`` is False, is not an earlier output, or was created or replaced
        by someone else during the run (it is left untouched and the report is kept beside it).
    OutputNotWritableError
        ``out_dir`` cannot be written, or the disk filled up while writing.
    OutputLockedError
        Another run holds the lock of ``out_dir``.
    """
    given = Path(out_dir)
    if lock is None:
        check_output_folder(given, force)
        with output_lock(given) as own:
            check_output_folder(given, force)  # again: another run may have written it before we got the lock
            return write_outputs(result, given, force=force, progress=progress, lock=own)
    out = _output_path(given)
    if not lock.held or lock.out != out:
        raise ValueError(f"write_outputs: the lock passed is not a held lock of {str(out)!r}")
    partial = out.parent / f".{out.name}.partial-{lock.run_id}"
    partial.mkdir()

    def step(key: str, label: str, state: str) -> None:
        if progress is not None:
            progress(key, label, state)

    try:
        # The marker first: a folder with it was made by this tool (a crash leftover, or an output).
        (partial / RUN_MARKER).write_text(
            json.dumps({"run_id": lock.run_id, "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
            + "\n",
            encoding="utf-8",
        )
        step("tables", "Writing tables", "start")
        (partial / "tables").mkdir()
        for stem, table in build_tables(result).items():
            table.to_csv(
                partial / "tables" / f"{stem}.csv",
                index=stem.startswith("at_risk_")
                or stem in ("table1_before", "table1_after", "propensity_model", "matching_counts"),
            )
        step("tables", "Writing tables", "done")

        step("figures", "Drawing figures", "start")
        figures = report_figures.study_figures(result)
        for stem, fig in figures.items():
            report_figures.save_figure(fig, partial / "figures" / stem)
        step("figures", "Drawing figures", "done")

        step("report", "Writing results.json and report.html", "start")
        document = results_document(result)
        validate_results_document(document)
        (partial / "results.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        # report.html is written last: its presence marks a complete folder.
        (partial / "report.html").write_text(render_html(result, figures=figures), encoding="utf-8")
        step("report", "Writing results.json and report.html", "done")
    except BaseException as exc:
        # Interrupted or failed: remove the partial folder so nothing looks finished.
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise OutputNotWritableError(
                f"could not write the report into {str(out.parent)!r}: {exc.strerror} ({exc.filename or ''}); "
                "nothing was left behind. Free some space or choose another --out, then rerun."
            ) from None
        raise
    try:
        _put_in_place(partial, out, lock, force)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # gone already unless interrupted on the way
        raise
    return given


def _put_in_place(partial: Path, out: Path, lock: OutputLock, force: bool) -> None:
    """Rename the complete ``partial`` to ``out``, replacing only the folder found when the lock was taken."""
    kept = out.parent / f"{out.name}.{lock.run_id}"
    current = _identity(out)
    if current is not None and (current != lock.found or not force):
        partial.rename(kept)
        raise _not_ours(out, kept)
    retired = None
    if current is not None:
        retired = out.parent / f".{out.name}.old-{lock.run_id}"
        out.rename(retired)
        moved = _identity(retired)
        # The rename itself moves the change time; the inode says whether it was still the same folder.
        if moved is None or lock.found is None or moved[:2] != lock.found[:2]:  # swapped meanwhile
            _rename_noreplace(retired, out)
            partial.rename(kept)
            raise _not_ours(out, kept)
    try:
        _rename_noreplace(partial, out)
    except FileExistsError:
        partial.rename(kept)
        if retired is not None:
            retired.rename(out.parent / f"{out.name}.earlier-{lock.run_id}")
        raise _not_ours(out, kept) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if retired is not None:
            with contextlib.suppress(OSError):
                _rename_noreplace(retired, out)
        raise
    if retired is not None:
        try:
            _remove_retired(retired)
        except KeyboardInterrupt:
            _remove_retired(retired)  # the new report is in place: finish the clean-up, then stop
            raise


def _remove_retired(retired: Path) -> None:
    if retired.is_symlink():  # --out was a link to an earlier output: the link goes, its target stays
        retired.unlink()
    else:
        shutil.rmtree(retired, ignore_errors=True)
