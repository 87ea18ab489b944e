"""StudyResults for the report tests, built by the real pipeline (``analyse_cohort``) from random analysis frames.

The frames follow the cohort builder's contract (one row per patient: ``exposed``, the dose column when the
study declares ``[dose]``, each covariate by its study name, ``<outcome>_time`` in days and ``<outcome>_status``
0 censored / 1 outcome / 2 competing death); outcomes are drawn with a known exposure effect so every model has
events. The studies are the shipped study files, so the report is exercised on every design the tool ships.
No stand-in of another module.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from retrocohort.spec import load_study_file
from retrocohort.study.pipeline import analyse_cohort

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDY_NAMES = ("magnesium_ckrt", "second_vasopressor", "thiamine_sepsis", "vasopressin_shock")


def load(name: str = "magnesium_ckrt") -> Any:
    """A shipped study file, parsed."""
    return load_study_file(STUDIES / f"{name}.toml")


def _covariate(rng: np.random.Generator, name: str, spec: Any, n: int) -> np.ndarray:
    """A plausible column for a covariate: binary for any/indicator summaries and built-ins that are flags."""
    if name == "age":
        return rng.normal(64, 13, n).clip(18, 95).round(0)
    if name == "sex":
        return rng.choice(["F", "M"], n, p=[0.4, 0.6])
    if name == "sofa":
        return rng.integers(2, 19, n).astype(float)
    binary = (
        spec.summary == "any"
        or spec.type == "binary"
        or name in ("sepsis", "alcohol", "ventilated", "vasopressor", "ventilation")
    )
    if binary:
        return rng.binomial(1, 0.5, n).astype(float)
    return rng.lognormal(0.5, 0.35, n).round(2)


def analysis_frame(study: Any, n: int = 330, seed: int = 7, hr: float = 0.5, shr: float = 1.8) -> pd.DataFrame:
    """A random analysis frame for ``study``: exposure depends on the covariates, each outcome on the exposure."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {
        "subject_id": 10_000_000 + np.arange(n),
        "hadm_id": 20_000_000 + np.arange(n),
        "stay_id": 30_000_000 + np.arange(n),
        "index_time": pd.Timestamp("2150-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
    }
    for name, spec in study.covariates.items():
        data[name] = _covariate(rng, name, spec, n)
    sofa = np.asarray(data.get("sofa", np.full(n, 10.0)), dtype=float)
    lin = -0.9 + 0.05 * (sofa - 10) + rng.normal(0, 0.5, n)
    exposed = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    data["exposed"] = exposed.astype(int)
    if study.dose is not None:
        data[study.dose.name] = np.where(exposed == 1, rng.gamma(5.3, 4.6, n).round(1) + 1, 0.0)
    death_t = rng.exponential(1 / (0.012 * np.exp(0.06 * (sofa - 10)) * hr**exposed))
    censor = rng.uniform(30, 200, n)
    for name, spec in study.outcomes.items():
        horizon = float(spec.horizon_days)
        if spec.kind == "death":
            t = np.ceil(np.minimum.reduce([death_t, censor, np.full(n, horizon)]))
            status = ((death_t <= censor) & (death_t <= horizon)).astype(int)
        else:
            event_t = rng.exponential(1 / (0.03 * shr**exposed))
            t = np.ceil(np.minimum.reduce([event_t, death_t, censor, np.full(n, horizon)]))
            first = np.minimum.reduce([event_t, death_t, censor])
            status = np.where(
                (first == event_t) & (event_t <= horizon),
                1,
                np.where((first == death_t) & (death_t <= horizon), 2 if spec.competing else 0, 0),
            )
        data[f"{name}_time"] = np.maximum(t, 1.0)
        data[f"{name}_status"] = status.astype(int)
    return pd.DataFrame(data)


def attrition_for(study: Any, data: pd.DataFrame) -> pd.DataFrame:
    """An attrition log as the cohort builder writes it: the index row, one row per criterion, the eligible row."""
    eligible = len(data)
    steps = [c for c in study.criteria]
    excluded = [118 + 60 * k for k in range(len(steps))]
    remaining = [eligible + sum(excluded)]
    for x in excluded:
        remaining.append(remaining[-1] - x)
    n_exposed = int(data["exposed"].sum())
    rows = [("index", remaining[0], 0, f"patients with {study.index.label}, aged >= 18")]
    rows += [(c.name, remaining[k + 1], excluded[k], f"excluded: {c.label}") for k, c in enumerate(steps)]
    rows.append(
        (
            "eligible",
            eligible,
            0,
            f"{n_exposed} {study.exposure.label} (started in {study.exposure.window.describe()} of the index), "
            f"{eligible - n_exposed} {study.comparator.label}",
        )
    )
    return pd.DataFrame(rows, columns=["step", "remaining", "excluded", "reason"])


def planted_truth(study: Any, hr: float = 0.5, shr: float = 1.8) -> dict[str, dict[str, Any]]:
    return {
        name: ({"estimand": "shr", "value": shr} if spec.competing else {"estimand": "hr", "value": hr})
        for name, spec in study.outcomes.items()
    }


def study_result(
    name: str = "magnesium_ckrt",
    n: int = 330,
    seed: int = 7,
    synthetic: bool = True,
    study: Any = None,
    frame: pd.DataFrame | None = None,
    attrition: pd.DataFrame | None = None,
) -> Any:
    """A StudyResult of the real pipeline on a random frame for a shipped study (or ``study``)."""
    study = study if study is not None else load(name)
    data = analysis_frame(study, n, seed) if frame is None else frame
    log = attrition if attrition is not None else attrition_for(study, data)
    cohort = SimpleNamespace(data=data, attrition=log, notes=("a concept found no rows: test note",), data_checks=None)
    result = analyse_cohort(cohort, study)
    if synthetic:
        result = replace(result, synthetic=True, planted=planted_truth(study))
    return result


def cohort_for(
    name: str = "magnesium_ckrt", n: int = 400, seed: int = 11, n_exposed: int | None = None, study: Any = None
) -> SimpleNamespace:
    """A built-cohort stand-in (``data``, ``attrition``, ``notes``) for ``analyse_cohort``: a random frame for a
    shipped study, with exactly ``n_exposed`` exposed patients when given."""
    study = study if study is not None else load(name)
    data = analysis_frame(study, n, seed)
    if n_exposed is not None:
        rng = np.random.default_rng(seed + 100)
        exposed = np.zeros(n, dtype=int)
        exposed[rng.choice(n, n_exposed, replace=False)] = 1
        data["exposed"] = exposed
        if study.dose is not None:
            data[study.dose.name] = np.where(exposed == 1, rng.gamma(5.3, 4.6, n).round(1) + 1, 0.0)
    return SimpleNamespace(data=data, attrition=attrition_for(study, data), notes=(), data_checks=None)


def with_threshold(study: Any, threshold: int) -> Any:
    """The study with another ``[report] small_cell_threshold``."""
    return study.model_copy(update={"report": study.report.model_copy(update={"small_cell_threshold": threshold})})
