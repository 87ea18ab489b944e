"""Result objects of a whole study run: what the pipeline produces and the report reads.

The pipeline (``study/pipeline.py``) is the only writer; ``report/`` only
reads these objects. Everything is frozen: a rerun makes a new result.
Row-level data (``cohort``, ``matched``) stay in memory for figures and are
never written to any output as rows.

Outcomes are keyed by the study's own names (``study.outcomes``); nothing here
knows which study is run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from ..spec import Study

Population = Literal["matched", "full", "iptw"]


@dataclass(frozen=True)
class OutcomeResult:
    """The descriptive analysis of one outcome of the study, in the matched cohort.

    Non-competing outcomes carry ``km`` and ``logrank`` (Kaplan-Meier by arm);
    competing outcomes carry ``cif`` and ``gray`` (cumulative incidence of
    cause 1 by arm, death competing). ``ph_test`` is set on the primary
    outcome only, for the model named in ``ph_test_model``.
    """

    name: str  # the study's outcome key ("death", "icu_readmission", ...)
    label: str  # study label
    kind: str  # "death" | "first" | "absence"
    competing: bool  # True: CIF by arm + Gray + Fine-Gray; False: KM by arm + log-rank + Cox
    horizon_days: float
    primary: bool
    time: str  # frame column f"{name}_time"
    status: str  # frame column f"{name}_status"
    km: Any | None = None  # survival.KaplanMeierResult by arm (non-competing, matched cohort)
    logrank: Any | None = None
    cif: Any | None = None  # survival cumulative incidence by arm (competing, matched cohort, cause 1)
    gray: Any | None = None
    ph_test: Any | None = None
    ph_test_model: str | None = None


@dataclass(frozen=True)
class Estimate:
    """One line of the results table: a hazard ratio (or sHR) with its CI and p.

    ``outcome`` is the study's outcome name; ``model`` is one of
    ``cox_unadjusted``, ``cox_adjusted``, ``fine_gray_unadjusted``,
    ``fine_gray_adjusted`` (more may be added); ``label`` is the
    human-readable line the report prints.
    """

    outcome: str
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
    """A model the run did not fit, and why (too few patients or events, no convergence...).

    ``outcome`` is the study's outcome name, or ``"propensity"`` / ``"matching"``
    / ``"subgroup"`` for the stages that are not tied to one outcome's model.
    """

    outcome: str
    model: str
    population: Population
    reason: str


@dataclass(frozen=True)
class SubgroupResult:
    """Hazard ratios of the primary outcome within levels of one covariate ([analysis] subgroups).

    ``levels`` has columns level, n, n_events, estimate, lower, upper, p
    (exact counts, in memory; the report suppresses small cells on output).
    ``p_interaction`` is the Wald test of exposure x covariate, in the matched
    cohort (else the full cohort, as ``model`` says); NaN with ``interaction_note``
    saying why when it was not computed (one level present, a level too small, a failed fit).
    """

    outcome: str
    covariate: str
    label: str
    levels: pd.DataFrame
    p_interaction: float
    model: str  # words: population, variance, adjustment
    # why the interaction p-value is missing ("" when it was computed): a single level, a level too small
    interaction_note: str = ""


@dataclass(frozen=True)
class TargetTrialResult:
    """The emulated target trial of one outcome (``[analysis.target_trial]``, docs/target-trial.md).

    ``bootstrap`` is the :class:`~retrocohort.designs.BootstrapResult` of the clone-censor-weight
    analysis (its ``point`` holds the estimates, curves, weights and exact counts, in memory only);
    None when the trial was not estimated, with ``skipped`` saying why. ``n_eligible`` (eligible at
    the index) and ``n_started`` (started within the grace window) are exact counts: outputs show
    them through the study's disclosure rule. ``not_applied`` are the criteria left out of the
    trial's eligibility, ``past_index`` the applied criteria whose window ends after time zero.
    """

    outcome: str
    label: str
    competing: bool
    horizon_days: float
    grace_days: float
    bootstrap: Any | None
    skipped: str | None
    n_eligible: int
    n_started: int
    not_applied: tuple[str, ...]
    past_index: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # patients left out of the trial's frame and why (exact counts: show via disclosure)


@dataclass(frozen=True)
class StudyResult:
    """Everything a report needs from one run of a study."""

    study: Study
    synthetic: bool
    attrition: pd.DataFrame  # columns: step, remaining, excluded, reason
    data_checks: pd.DataFrame | None  # data-quality pass: table, check, rule, action, count (exact), unit
    # indexed, eligible, exposed, comparator, matched_exposed, matched_comparator
    counts: dict[str, int]
    dose: dict[str, Any] | None  # {"name","label","unit","mean","sd","n"} only when [dose] is declared
    cohort: pd.DataFrame  # analysis frame, full eligible cohort (in memory only)
    matched: pd.DataFrame | None  # matched patients with `subclass`, `weight` (in memory only)
    propensity: Any | None = None  # matching.PropensityResult
    matching: Any | None = None  # matching.MatchResult
    balance_before: pd.DataFrame | None = None
    balance_after: pd.DataFrame | None = None
    table_one_before: pd.DataFrame | None = None
    table_one_after: pd.DataFrame | None = None
    outcomes: dict[str, OutcomeResult] = field(default_factory=dict)  # in the study's order
    primary: str = ""  # name of the primary outcome
    estimates: tuple[Estimate, ...] = ()
    skipped: tuple[SkippedModel, ...] = ()
    subgroups: tuple[SubgroupResult, ...] = ()
    e_value: dict[str, float] | None = None  # point, lower-CI E-values of the primary outcome's primary estimate
    # Which HR the E-value is of and which HR->RR approximation was used
    # (rare outcome: RR ~= HR; common: square-root transform).
    e_value_method: str | None = None
    # Synthetic truth per outcome name: {"estimand": "hr" | "shr", "value": x}
    planted: dict[str, dict[str, Any]] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # hashes, versions, seed, engine
    notes: tuple[str, ...] = ()  # degraded concepts, warnings worth printing
    target_trial: dict[str, TargetTrialResult] = field(default_factory=dict)  # by outcome name

    def __repr__(self) -> str:
        from .._printing import render_study_result

        return render_study_result(self)

    def _repr_html_(self) -> str:
        from .._printing import render_study_result_html

        return render_study_result_html(self)

    def estimate(self, outcome: str, model: str, population: Population = "matched") -> Estimate | None:
        """The estimate for one (outcome, model, population), or None when it was skipped."""
        for est in self.estimates:
            if (est.outcome, est.model, est.population) == (outcome, model, population):
                return est
        return None

    @property
    def primary_key(self) -> tuple[str, str, Population]:
        """(outcome, model, population) of the study's answer: the primary outcome's adjusted model (Fine-Gray
        with a competing death, else Cox) in the matched cohort, the first line of "Primary estimates"."""
        outcome = self.primary or next((n for n, o in self.study.outcomes.items() if o.primary), "")
        spec = self.study.outcomes.get(outcome)
        competing = spec is not None and spec.competing is not None
        return outcome, "fine_gray_adjusted" if competing else "cox_adjusted", "matched"

    @property
    def primary_estimate(self) -> Estimate | None:
        """The study's answer (see :attr:`primary_key`), or None when that model was not estimated."""
        return self.estimate(*self.primary_key)

    def skipped_reason(self, outcome: str, model: str, population: str) -> str | None:
        """Why one (outcome, model, population) was skipped (None when it was not)."""
        for skipped in self.skipped:
            if (skipped.outcome, skipped.model, skipped.population) == (outcome, model, population):
                return skipped.reason
        return None

    @property
    def primary_outcome(self) -> OutcomeResult:
        """The primary outcome's result (``outcomes[primary]``)."""
        return self.outcomes[self.primary]
