"""Write a study's outputs: results.json, tables/*.csv, figures/*.png + *.svg and report.html.

Everything is written into a temporary sibling folder (``.<out>.partial-*``)
and renamed into place only when every file is complete, so an interrupted
run never leaves a folder that looks like a finished report. An existing
output folder is replaced only with ``force=True``.

Disclosure control: every count (patients, events, numbers at risk, the n of
an ``n (%)`` cell) below ``study.report.small_cell_threshold`` is written as
``"<threshold"`` (``report.suppression``'s rule: 0 is shown, threshold 0
disables). No subject, stay or admission id and no date leaves the process:
the row-level frames of the result are only summarised.

The results.json schema is documented in ``docs/results-schema.md``
(``SCHEMA_VERSION``); :func:`results_document` builds it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, RetrocohortError
from ..report import figures as report_figures
from ..report import render_html
from ..report.suppression import suppress_frame, suppress_small_cells
from ..report.tables import suppress_table_one
from .results import StudyResult

SCHEMA_VERSION = "1.0"

#: Published hazard ratios of the seed study, keyed as the estimates are.
PRIMARY = {
    "death_90d": ("cox_adjusted", "published_hr_death", "hr_death"),
    "krt_liberation_90d": ("fine_gray_adjusted", "published_hr_krt", "shr_krt"),
}

ProgressCallback = Callable[[str, str, str], None]


class OutputExistsError(RetrocohortError, FileExistsError):
    """The output folder exists and ``force`` was not given."""


# --------------------------------------------------------------------------- results.json schema

_NUMBER = {"type": ["number", "null"]}
# A count: an integer, the small-cell string "<5" (threshold), or null when unknown.
_COUNT = {"type": ["integer", "string", "null"], "minimum": 0, "pattern": r"^<\d+$"}
_TEST = {
    "type": ["object", "null"],
    "required": ["statistic", "df", "p"],
    "properties": {"statistic": _NUMBER, "df": _NUMBER, "p": _NUMBER},
}

#: JSON Schema (draft 2020-12 subset) of results.json; documented in docs/results-schema.md.
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "retrocohort results.json",
    "type": "object",
    "required": [
        "schema_version", "study", "synthetic", "planted", "small_cell_threshold", "attrition", "counts",
        "dose_meq", "estimates", "published", "balance", "tests", "e_value", "skipped", "notes", "provenance",
    ],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "string", "enum": [SCHEMA_VERSION]},
        "study": {
            "type": "object",
            "required": ["name", "title", "exposure_label", "comparator_label", "horizon_days"],
            "properties": {
                "name": {"type": "string"}, "title": {"type": "string"},
                "exposure_label": {"type": "string"}, "comparator_label": {"type": "string"},
                "horizon_days": {"type": "number"},
            },
        },
        "synthetic": {"type": "boolean"},
        "planted": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
        "small_cell_threshold": {"type": "integer", "minimum": 0},
        "attrition": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["step", "remaining", "excluded"],
                "additionalProperties": False,
                "properties": {"step": {"type": "string"}, "remaining": _COUNT, "excluded": _COUNT,
                               "reason": {"type": "string"}},
            },
        },
        "counts": {
            "type": "object",
            "required": ["exposed", "unexposed", "matched_exposed", "matched_unexposed"],
            "additionalProperties": _COUNT,
        },
        "dose_meq": {
            "type": "object",
            "required": ["mean", "sd"],
            "properties": {"mean": _NUMBER, "sd": _NUMBER, "n": _COUNT},
        },
        "estimates": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["outcome", "model", "population", "estimate", "lower", "upper", "p",
                             "label", "n", "n_events", "variance", "note"],
                "additionalProperties": False,
                "properties": {
                    "outcome": {"type": "string", "enum": ["death_90d", "krt_liberation_90d"]},
                    "model": {"type": "string"},
                    "population": {"type": "string", "enum": ["matched", "full", "iptw"]},
                    "estimate": _NUMBER, "lower": _NUMBER, "upper": _NUMBER, "p": _NUMBER,
                    "label": {"type": "string"}, "n": _COUNT, "n_events": _COUNT,
                    "variance": {"type": "string"}, "note": {"type": "string"},
                },
            },
        },
        "published": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["model", "estimate", "lower", "upper"],
                "properties": {"model": {"type": "string"}, "estimate": {"type": "number"},
                               "lower": {"type": "number"}, "upper": {"type": "number"}},
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
        "tests": {
            "type": "object",
            "required": ["logrank_death", "gray_krt", "ph_test"],
            "properties": {
                "logrank_death": _TEST,
                "gray_krt": _TEST,
                "ph_test": {
                    "type": "array",
                    "items": {"type": "object", "required": ["term", "chisq", "df", "p"],
                              "properties": {"term": {"type": "string"}, "chisq": _NUMBER, "df": _NUMBER,
                                             "p": _NUMBER}},
                },
            },
        },
        "e_value": {
            "type": ["object", "null"],
            "required": ["hr", "lower", "upper", "rr", "point", "ci", "outcome_proportion", "transform", "method"],
            "properties": {
                "hr": {"type": "number"}, "lower": {"type": "number"}, "upper": {"type": "number"},
                "rr": {"type": "number"}, "rr_lower": {"type": "number"}, "rr_upper": {"type": "number"},
                "point": {"type": "number", "minimum": 1}, "ci": {"type": "number", "minimum": 1},
                "outcome_proportion": {"type": "number", "minimum": 0}, "method": {"type": "string"},
                "transform": {"type": ["string", "null"], "enum": ["rare", "common", None]},
            },
        },
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["outcome", "model", "population", "reason"],
                "additionalProperties": False,
                "properties": {"outcome": {"type": "string"}, "model": {"type": "string"},
                               "population": {"type": "string", "enum": ["matched", "full", "iptw"]},
                               "reason": {"type": "string", "minLength": 1}},
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "provenance": {
            "type": "object",
            "required": ["study_fingerprint", "data_fingerprint", "data_fingerprint_method", "packages",
                         "python", "engine", "seed"],
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
    if errors:
        raise InputError("results.json does not follow its schema:\n  " + "\n  ".join(errors[:50]))


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
    info = result.study.study
    return {0: info.comparator_label, 1: info.exposure_label}


def _test_dict(test: Any) -> dict[str, Any] | None:
    if test is None:
        return None
    return {
        "statistic": _plain(getattr(test, "statistic", None)),
        "df": _plain(getattr(test, "df", None)),
        "p": _plain(getattr(test, "p_value", None)),
    }


def _ph_rows(result: StudyResult) -> list[dict[str, Any]]:
    table = getattr(result.ph_test, "table", result.ph_test)
    if not isinstance(table, pd.DataFrame):
        return []
    rows = []
    for term, row in table.iterrows():
        rows.append(
            {"term": str(term), **{k: _plain(row[k]) for k in ("chisq", "df", "p") if k in table.columns}}
        )
    return rows


def balance_table(result: StudyResult) -> pd.DataFrame:
    """Per covariate (level): ``covariate``, ``smd_before``, ``smd_after`` (absolute), variance ratios, KS."""
    before, after = result.balance_before, result.balance_after
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
    """The primary estimates next to the published ones (and the planted truth on synthetic data).

    One row per outcome: ``outcome``, ``model``, ``estimate``, ``lower``,
    ``upper``, ``p``, ``published``, ``published_lower``, ``published_upper``,
    ``planted``. Missing values are NaN (model skipped, nothing published).
    """
    rows = []
    for outcome, (model, published_key, planted_key) in PRIMARY.items():
        est = result.estimate(outcome, model, "matched")  # type: ignore[arg-type]
        published = getattr(result.study.report, published_key)
        planted = (result.planted or {}).get(planted_key)
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
    return pd.DataFrame(rows)


def _e_value_document(result: StudyResult) -> dict[str, Any] | None:
    if result.e_value is None:
        return None
    method = result.e_value_method or ""
    transform = "common" if "outcome common" in method else "rare" if "outcome rare" in method else None
    return {**_plain(result.e_value), "transform": transform, "method": method}


def results_document(result: StudyResult) -> dict[str, Any]:
    """The results.json document (schema ``SCHEMA_VERSION``, see docs/results-schema.md).

    Counts are suppressed by the study's small-cell threshold (a string such
    as ``"<5"``); floats that are not finite are null.
    """
    threshold = result.study.report.small_cell_threshold
    info = result.study.study
    attrition = [
        {
            "step": str(row["step"]),
            "remaining": _count(row["remaining"], threshold),
            "excluded": _count(row["excluded"], threshold),
            **({"reason": str(row["reason"])} if isinstance(row.get("reason"), str) and row["reason"] else {}),
        }
        for _, row in result.attrition.iterrows()
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
            "n": _count(e.n, threshold),
            "n_events": _count(e.n_events, threshold),
            "variance": e.variance,
            "note": e.note,
        }
        for e in result.estimates
    ]
    balance = {
        row["covariate"]: {"smd_before": _plain(row["smd_before"]), "smd_after": _plain(row["smd_after"])}
        for _, row in balance_table(result).iterrows()
    }
    published = {}
    for outcome, (model, key, _planted) in PRIMARY.items():
        values = getattr(result.study.report, key)
        if values:
            published[outcome] = {"model": model, "estimate": values[0], "lower": values[1], "upper": values[2]}
    dose = {
        "mean": _plain(result.dose_meq.get("mean")),
        "sd": _plain(result.dose_meq.get("sd")),
    }
    if "n" in result.dose_meq:
        dose["n"] = _count(result.dose_meq["n"], threshold)
    return {
        "schema_version": SCHEMA_VERSION,
        "study": {
            "name": info.name,
            "title": info.title,
            "exposure_label": info.exposure_label,
            "comparator_label": info.comparator_label,
            "horizon_days": result.study.outcomes.horizon_days,
        },
        "synthetic": bool(result.synthetic),
        "planted": _plain(result.planted) if result.synthetic else None,
        "small_cell_threshold": threshold,
        "attrition": attrition,
        "counts": {k: _count(v, threshold) for k, v in result.counts.items()},
        "dose_meq": dose,
        "estimates": estimates,
        "published": published,
        "balance": balance,
        "tests": {
            "logrank_death": _test_dict(result.logrank),
            "gray_krt": _test_dict(result.gray),
            "ph_test": _ph_rows(result),
        },
        "e_value": _e_value_document(result),
        "skipped": [
            {"outcome": s.outcome, "model": s.model, "population": s.population, "reason": s.reason}
            for s in result.skipped
        ],
        "notes": list(result.notes),
        "provenance": _plain(result.provenance),
    }


# --------------------------------------------------------------------------- tables


def build_tables(result: StudyResult) -> dict[str, pd.DataFrame]:
    """Every CSV table of the outputs, by file stem; counts already suppressed."""
    threshold = result.study.report.small_cell_threshold
    labels = _labels(result)
    tables: dict[str, pd.DataFrame] = {}
    attrition = result.attrition[[c for c in ("step", "remaining", "excluded", "reason") if c in result.attrition]]
    tables["attrition"] = suppress_frame(attrition, columns=["remaining", "excluded"], threshold=threshold)
    tables["counts"] = suppress_frame(
        pd.DataFrame({"quantity": list(result.counts), "value": list(result.counts.values())}),
        columns=["value"],
        threshold=threshold,
    )
    if result.table_one_before is not None:
        tables["table1_before"] = suppress_table_one(result.table_one_before, threshold)
    if result.table_one_after is not None:
        tables["table1_after"] = suppress_table_one(result.table_one_after, threshold)
    tables["balance"] = balance_table(result)
    estimates = pd.DataFrame(
        [
            {
                "outcome": e.outcome, "model": e.model, "population": e.population, "label": e.label,
                "estimate": e.estimate, "lower": e.lower, "upper": e.upper, "p": e.p,
                "n": e.n, "n_events": e.n_events, "variance": e.variance, "note": e.note,
            }
            for e in result.estimates
        ],
        columns=["outcome", "model", "population", "label", "estimate", "lower", "upper", "p",
                 "n", "n_events", "variance", "note"],
    )
    tables["estimates"] = suppress_frame(estimates, columns=["n", "n_events"], threshold=threshold)
    tables["key_results"] = key_table(result)
    tables["skipped_models"] = pd.DataFrame(
        [{"outcome": s.outcome, "model": s.model, "population": s.population, "reason": s.reason}
         for s in result.skipped],
        columns=["outcome", "model", "population", "reason"],
    )
    if result.km is not None:
        times = list(result.study.models.km_times_days)
        at_risk = result.km.at_risk(times)
        at_risk.index = [labels.get(int(g), str(g)) if str(g).isdigit() else str(g) for g in at_risk.index]
        at_risk.index.name = "arm"
        at_risk.columns = [f"day_{t:g}" for t in times]
        tables["km_at_risk"] = suppress_frame(at_risk, threshold=threshold)
        km_table = result.km.table.copy()
        count_cols = [c for c in ("n_risk", "n_event", "n_censor") if c in km_table.columns]
        tables["km_death"] = suppress_frame(km_table, columns=count_cols, threshold=threshold)
    if result.cif is not None:
        cif_table = result.cif.table.copy()
        count_cols = [c for c in ("n_risk", "n_event", "n_censor") if c in cif_table.columns]
        tables["cif_krt"] = suppress_frame(cif_table, columns=count_cols, threshold=threshold)
    tests = []
    for name, test in (("log-rank, death, matched", result.logrank), ("Gray, KRT liberation, matched", result.gray)):
        if test is not None:
            tests.append({"test": name, **(_test_dict(test) or {})})
    if tests:
        tables["tests"] = pd.DataFrame(tests)
    if _ph_rows(result):
        tables["ph_test"] = pd.DataFrame(_ph_rows(result))
    if result.propensity is not None:
        tables["propensity_model"] = result.propensity.summary.copy()
    if result.matching is not None and isinstance(getattr(result.matching, "counts", None), pd.DataFrame):
        tables["matching_counts"] = suppress_frame(result.matching.counts, threshold=threshold)
    if result.e_value is not None:
        tables["e_value"] = pd.DataFrame([{**result.e_value, "method": result.e_value_method}])
    return tables


# --------------------------------------------------------------------------- writing


def write_outputs(
    result: StudyResult,
    out_dir: str | Path,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write every output of a study run into ``out_dir``, atomically.

    Parameters
    ----------
    result : StudyResult
    out_dir : folder to create; must not exist unless ``force``.
    force : replace an existing ``out_dir`` (its whole content) that is empty or holds an
        earlier output (results.json or report.html); any other folder is never replaced.
    progress : ``progress(stage_key, label, state)`` for "tables", "figures", "report".

    Returns
    -------
    Path of the written folder: ``results.json``, ``report.html``,
    ``tables/*.csv``, ``figures/*.png`` and ``figures/*.svg``.

    Raises
    ------
    OutputExistsError
        ``out_dir`` exists and ``force`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise OutputExistsError(
            f"output folder {str(out)!r} already exists; choose another --out or pass --force "
            "to replace it (everything in it is deleted)"
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{str(out)!r} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not any((out / name).exists() for name in ("results.json", "report.html")):
        # --force replaces an earlier report, never an arbitrary folder (a typo in --out
        # must not delete a user's data).
        raise OutputExistsError(
            f"{str(out)!r} is not empty and holds no results.json or report.html, so it does not look like "
            "an earlier retrocohort output; refusing to replace it even with --force. Choose another --out."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))

    def step(key: str, label: str, state: str) -> None:
        if progress is not None:
            progress(key, label, state)

    try:
        step("tables", "Writing tables", "start")
        (partial / "tables").mkdir()
        for stem, table in build_tables(result).items():
            table.to_csv(partial / "tables" / f"{stem}.csv", index=stem in ("table1_before", "table1_after",
                                                                            "km_at_risk", "propensity_model",
                                                                            "matching_counts"))
        step("tables", "Writing tables", "done")

        step("figures", "Drawing figures", "start")
        figures = report_figures.study_figures(result)
        for stem, fig in figures.items():
            report_figures.save_figure(fig, partial / "figures" / stem)
        step("figures", "Drawing figures", "done")

        step("report", "Writing results.json and report.html", "start")
        document = results_document(result)
        validate_results_document(document)
        (partial / "results.json").write_text(
            json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        # report.html is written last: its presence marks a complete folder.
        (partial / "report.html").write_text(render_html(result, figures=figures), encoding="utf-8")
        step("report", "Writing results.json and report.html", "done")

        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(retired / out.name)
            partial.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            partial.rename(out)
    except BaseException:
        # Interrupted or failed: remove the partial folder so nothing looks finished.
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out
