"""Result objects of a whole study run: what the pipeline produces and the report reads.

The pipeline (``study/pipeline.py``) is the only writer; ``report/`` only
reads these objects. Everything is frozen: a rerun makes a new result.
Row-level data (``cohort``, ``matched``) stay in memory for figures and are
never written to any output as rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from .spec import Study

Outcome = Literal["death_90d", "krt_liberation_90d"]
Population = Literal["matched", "full", "iptw"]


@dataclass(frozen=True)
class Estimate:
    """One line of the results table: a hazard ratio (or sHR) with its CI and p.

    ``model`` is one of ``cox_unadjusted``, ``cox_adjusted``,
    ``fine_gray_unadjusted``, ``fine_gray_adjusted`` (more may be added);
    ``label`` is the human-readable line the report prints.
    """

    outcome: Outcome
    model: str
    population: Population
    estimate: float
    lower: float
    upper: float
    p: float
    label: str
    n: int
    n_events: int
    variance: str = ""  # e.g. "robust, clustered on matched set"
    note: str = ""


@dataclass(frozen=True)
class SkippedModel:
    """A model the run did not fit, and why (too few patients or events, no convergence...)."""

    outcome: Outcome | Literal["propensity", "matching"]
    model: str
    population: Population
    reason: str


@dataclass(frozen=True)
class StudyResult:
    """Everything a report needs from one run of a study."""

    study: Study
    synthetic: bool
    attrition: pd.DataFrame  # columns: step, remaining, excluded, reason
    counts: dict[str, int]  # exposed, unexposed, matched_exposed, matched_unexposed
    dose_meq: dict[str, float]  # mean, sd over exposed patients (full eligible cohort)
    cohort: pd.DataFrame  # analysis frame, full eligible cohort (in memory only)
    matched: pd.DataFrame | None  # matched patients with `subclass`, `weight` (in memory only)
    propensity: Any | None = None  # matching.PropensityResult
    matching: Any | None = None  # matching.MatchResult
    balance_before: pd.DataFrame | None = None
    balance_after: pd.DataFrame | None = None
    table_one_before: pd.DataFrame | None = None
    table_one_after: pd.DataFrame | None = None
    km: Any | None = None  # survival.KaplanMeierResult, death by arm, matched cohort
    logrank: Any | None = None
    cif: Any | None = None  # survival cumulative incidence of KRT liberation by arm, matched
    gray: Any | None = None
    ph_test: Any | None = None  # of the primary Cox model: matched, adjusted (else unadjusted; see provenance["ph_test_model"])
    estimates: tuple[Estimate, ...] = ()
    skipped: tuple[SkippedModel, ...] = ()
    e_value: dict[str, float] | None = None  # point, lower-CI E-values of the main HR
    planted: dict[str, float] | None = None  # synthetic truth (e.g. hr_death, shr_krt)
    provenance: dict[str, Any] = field(default_factory=dict)  # hashes, versions, seed, engine
    notes: tuple[str, ...] = ()  # degraded concepts, warnings worth printing
    # Added by the pipeline: which HR the E-value is of and which HR->RR
    # approximation was used (rare outcome: RR ~= HR; common: square-root transform).
    e_value_method: str | None = None
    # What the data-quality pass did (sources/quality.py): table, check, rule, action, count (exact), unit.
    data_checks: pd.DataFrame | None = None

    def estimate(self, outcome: Outcome, model: str, population: Population = "matched") -> Estimate | None:
        """The estimate for one (outcome, model, population), or None when it was skipped."""
        for est in self.estimates:
            if (est.outcome, est.model, est.population) == (outcome, model, population):
                return est
        return None
