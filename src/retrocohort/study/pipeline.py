"""The one place that wires every stage of a study, driven by a :class:`~retrocohort.spec.Study`.

The study (a file of the study language, :func:`retrocohort.spec.load_study_file`)
says everything: concepts, index, criteria, arms, covariates, outcomes and the
analysis. Stages, in order (each reported to the ``progress`` callback)::

    cohort          build the analysis frame and the attrition log (cohort.builder)
    propensity      propensity score over [analysis] propensity
    matching        k:1 nearest-neighbour matching on the (logit) propensity score
    balance         SMDs and Table 1 over the study's covariates, before and after matching
    outcome:<name>  per outcome, in the study's order, in the matched cohort:
                    non-competing: Kaplan-Meier by arm, log-rank, Cox unadjusted and
                    adjusted (variance clustered on matched set), PH test of the primary's model;
                    competing (death): cumulative incidence by arm, Gray's test, Fine-Gray
    sensitivity     per outcome: full eligible cohort (adjusted), IPTW (ATT weights);
                    E-value of the primary outcome's primary estimate
    subgroups       [analysis] subgroups: the primary outcome's (s)HR within each level of a
                    covariate and the exposure x covariate interaction p-value
    provenance      hashes of the study file and of the data, package versions

A model that cannot be fitted (too few patients, no events in an arm, no
exposed patients, matching that finds nobody, non-convergence) never stops
the run: it becomes a :class:`~retrocohort.study.results.SkippedModel` with
the reason, and the attrition, counts and descriptive tables are still
produced. Errors that are the user's to fix (a missing table, a bad study
file) are raised as :class:`~retrocohort.errors.RetrocohortError`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._labels import by_day
from ..errors import InputError, RetrocohortError
from ..matching import balance, match_nearest, propensity_score, table_one
from ..spec import Study, covariate_type
from ..spec.study import looks_past_index, trial_covariates, trial_outcomes
from ..survival import (
    CoxResult,
    FineGrayResult,
    cox,
    cumulative_incidence,
    fine_gray,
    gray_test,
    kaplan_meier,
    logrank,
    ph_test,
)
from .evalue import e_value_hr
from .results import (
    Estimate,
    OutcomeResult,
    Population,
    SkippedModel,
    StudyResult,
    SubgroupResult,
    TargetTrialResult,
)

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")

#: (key, label) of the stages every study runs, in order; ``outcome:<name>`` stages (one per
#: outcome, after "balance") and "subgroups" are added per study (:func:`study_stages`).
STAGES: tuple[tuple[str, str], ...] = (
    ("cohort", "Building the cohort"),
    ("propensity", "Propensity score"),
    ("matching", "Matching"),
    ("balance", "Balance and Table 1"),
    ("sensitivity", "Sensitivity analyses and E-value"),
    ("provenance", "Provenance"),
)


def study_stages(study: Study) -> tuple[tuple[str, str], ...]:
    """(key, label) of every stage of ``study``, in the order they run."""
    outcomes = tuple(
        (
            f"outcome:{name}",
            f"{oc.label}: "
            + ("cumulative incidence, Gray, Fine-Gray" if oc.competing else "Kaplan-Meier, log-rank, Cox"),
        )
        for name, oc in study.outcomes.items()
    )
    subgroups = (("subgroups", "Subgroups"),) if study.analysis.subgroups else ()
    trial = tuple(
        (f"target_trial:{name}", f"{study.outcomes[name].label}: target trial emulation (clone, censor, weight)")
        for name in trial_outcomes(study)
    )
    return (*STAGES[:4], *outcomes, STAGES[4], *subgroups, *trial, STAGES[5])


#: ``progress(stage_key, label, state)`` with state "start" or "done".
ProgressCallback = Callable[[str, str, str], None]
#: ``replicate_progress(stage_key, done, total)`` after each bootstrap replicate of the target trial.
ReplicateCallback = Callable[[str, int, int], None]

# Errors a model fit raises for reasons of the data (not bugs): the model is
# recorded as skipped with the message. Anything else propagates.
_MODEL_ERRORS = (RetrocohortError, ValueError, ArithmeticError, np.linalg.LinAlgError)

_PACKAGES = (
    "retrocohort",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "duckdb",
    "ibis-framework",
    "pyarrow",
    "numba",
)
# Data fingerprint: files at most this big are hashed whole; larger ones by
# size plus their first and last _EDGE bytes (full MIMIC-IV is ~10 GiB).
_HASH_WHOLE_LIMIT = 64 * 2**20
_EDGE = 4 * 2**20
DATA_FINGERPRINT_METHOD = (
    "SHA-256 over every file under the data folder, sorted by relative path: "
    "path, size in bytes and a SHA-256 of the content (whole file up to 64 MiB; "
    "for larger files the first and last 4 MiB). Modification times are not used, "
    "so a copy of the same data has the same fingerprint."
)


# --------------------------------------------------------------------------- run state


@dataclass
class _Run:
    """Mutable bookkeeping of one run (private; the result is frozen)."""

    study: Study
    progress: ProgressCallback | None
    estimates: list[Estimate] = field(default_factory=list)
    skipped: list[SkippedModel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    ph_test_model: str | None = None
    # target trial: bootstrap replicates (None: the study's), and the per-replicate hook
    trial_replicates: int | None = None
    replicate_progress: ReplicateCallback | None = None
    # target trial: bootstrap worker processes (None: the available cores)
    trial_processes: int | None = None
    # lean (retrocohort validate): the same models and options, no presentation-only work
    lean: bool = False

    @contextlib.contextmanager
    def stage(self, key: str) -> Iterator[None]:
        label = dict(study_stages(self.study))[key]
        if self.progress is not None:
            self.progress(key, label, "start")
        started = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - started, 3)
        if self.progress is not None:
            self.progress(key, label, "done")

    def skip(self, outcome: str, model: str, population: Population, reason: str) -> None:
        self.skipped.append(SkippedModel(outcome=outcome, model=model, population=population, reason=reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @contextlib.contextmanager
    def capture_warnings(self, where: str) -> Iterator[list[str]]:
        """Turn warnings (separation, monotone likelihood, ...) into notes of the result.

        Yields the list the messages are collected into (filled on exit).
        """
        messages: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        for w in caught:
            if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, ResourceWarning)):
                continue
            messages.append(str(w.message))
            self.note(f"{where}: {w.message}")


# --------------------------------------------------------------------------- helpers


def _columns(outcome: str) -> tuple[str, str]:
    """The frame columns (time, status) of a study outcome."""
    return f"{outcome}_time", f"{outcome}_status"


def _is_competing(study: Study, outcome: str) -> bool:
    return study.outcomes[outcome].competing is not None


def _words(label: str) -> str:
    """A study label inside a sentence: "Death" -> "death", "ICU readmission" stays."""
    return label if label[:2].isupper() else label[:1].lower() + label[1:]


def _outcome_name(study: Study, outcome: str) -> str:
    return _words(study.outcomes[outcome].label) if outcome in study.outcomes else outcome


def _weights_needed(frame: pd.DataFrame, column: str = "weight") -> str | None:
    """The weight column when weights differ from 1 (so unit-weight analyses stay unweighted counts)."""
    if column in frame.columns and not np.allclose(frame[column].to_numpy(dtype=float), 1.0):
        return column
    return None


def _usable_covariates(run: _Run, frame: pd.DataFrame, covariates: Sequence[str], where: str) -> list[str]:
    """Drop covariates that are constant in ``frame`` (a model cannot estimate them) with a note."""
    if len(frame) == 0 or ("exposed" in frame.columns and frame["exposed"].nunique() < 2):
        # no model is fitted on an empty or one-arm population (it is skipped with that reason): a note
        # that each covariate "is constant" there would only bury the reason
        return list(covariates)
    kept = []
    for name in covariates:
        if frame[name].nunique(dropna=True) < 2:
            run.note(f"{where}: covariate {name!r} is constant in this population and was left out")
        else:
            kept.append(name)
    return kept


def _declare_number_levels(study: Study, data: pd.DataFrame) -> pd.DataFrame:
    """Categorical covariates whose levels are numbers as text, declared ``pd.Categorical``.

    A user concept's value summary declared ``type = "categorical"`` (the last GCS motor score: "4", "5",
    "6") with ``missing = "indicator"`` (the level "missing") would otherwise look like a numeric column with
    a typo to the model layer, which refuses it (every adjusted model was skipped). Levels in numeric order,
    then the text ones; the first is the reference. Text-only levels (sex) are left as they are.
    """
    for name in study.covariates:
        if name not in data or covariate_type(study, name) != "categorical":
            continue
        column = data[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            continue
        levels = [v for v in dict.fromkeys(column.dropna().tolist())]
        numbers = {v: pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0] for v in levels}
        if not any(pd.notna(n) for n in numbers.values()):
            continue
        ordered = sorted(levels, key=lambda v: (pd.isna(numbers[v]), numbers[v] if pd.notna(numbers[v]) else 0, str(v)))
        data[name] = pd.Categorical(column, categories=ordered)
    return data


def _n_terms(frame: pd.DataFrame, covariates: Sequence[str]) -> int:
    """Number of model terms after treatment contrasts."""
    terms = 0
    for name in covariates:
        col = frame[name]
        if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(col):
            terms += max(col.nunique(dropna=True) - 1, 0)
        else:
            terms += 1
    return terms


def _arm_events(frame: pd.DataFrame, event: pd.Series) -> tuple[int, int]:
    exposed = frame["exposed"].to_numpy() == 1
    ev = event.to_numpy(dtype=bool)
    return int(ev[exposed].sum()), int(ev[~exposed].sum())


def _why_not_estimable(
    study: Study, frame: pd.DataFrame, event: pd.Series, outcome: str, population: str, n_terms: int
) -> str | None:
    """A reason the exposure hazard ratio cannot be estimated in ``frame``, or None.

    The reasons quote no count of patients or events (a count below the small-cell
    threshold must not reach any output): they say which arm, and how many are needed.
    """
    n_exposed = int((frame["exposed"] == 1).sum())
    n_unexposed = int((frame["exposed"] == 0).sum())
    if n_exposed == 0 and n_unexposed == 0:
        return f"the {population} cohort is empty: the attrition log shows the rule that removed everyone"
    if n_exposed == 0 or n_unexposed == 0:
        arm = "exposed" if n_exposed == 0 else "comparator"
        return f"the {population} cohort has no {arm} patients; a comparison needs both arms"
    e1, e0 = _arm_events(frame, event)
    what = _outcome_name(study, outcome)
    if e1 == 0 or e0 == 0:
        arm = "exposed" if e1 == 0 else "comparator"
        return (
            f"no {what} events among the {arm} patients of the {population} cohort: the hazard ratio is not estimable"
        )
    if e1 + e0 <= n_terms:
        return (
            f"too few {what} events for a model with {n_terms} terms in the {population} cohort "
            f"(more events than terms are needed)"
        )
    return None


#: Minimum information for an exposure hazard ratio (docs/study-language.md, "Minimum information"):
#: patients per arm (for a weighted fit, Kish's effective sample size per arm) and events per arm.
MIN_PATIENTS_PER_ARM = 10
MIN_EVENTS_PER_ARM = 5


def _minimum_information(
    study: Study, frame: pd.DataFrame, event: pd.Series, outcome: str, population: str, weights: str | None = None
) -> str | None:
    """Why the exposure (s)HR of ``frame`` would not carry enough information to report, or None.

    Run after :func:`_why_not_estimable` (both arms present, events in both).
    Three documented rules, each of which a full-cohort or IPTW fit had
    broken while still printing a number (an sHR of 15.5 with p = 3e-9 from
    two exposed patients):

    1. each arm has at least ``MIN_PATIENTS_PER_ARM`` patients, and, for a
       weighted fit, an effective sample size ``(sum w)^2 / sum w^2`` of at
       least as many (a few large IPTW weights carry the arm);
    2. each arm has at least ``MIN_EVENTS_PER_ARM`` events of the outcome;
    3. no separation: the exposure does not make the (sub)distribution
       partial likelihood monotone (see :func:`_exposure_separation`).

    Reasons say "fewer than N" and give no count, so a skipped model's reason
    never shows a number below the small-cell threshold.
    """
    what = _outcome_name(study, outcome)
    exposed = frame["exposed"].to_numpy() == 1
    for arm, mask in (("exposed", exposed), ("unexposed", ~exposed)):
        if int(mask.sum()) < MIN_PATIENTS_PER_ARM:
            return (
                f"fewer than {MIN_PATIENTS_PER_ARM} {arm} patients in the {population} cohort: too little "
                f"information for a hazard ratio (minimum {MIN_PATIENTS_PER_ARM} patients per arm)"
            )
        if weights is not None:
            w = frame[weights].to_numpy(dtype=float)[mask]
            squares = float((w**2).sum())
            ess = float(w.sum() ** 2 / squares) if squares > 0 else 0.0  # all-zero weights carry nothing
            if ess < MIN_PATIENTS_PER_ARM:
                return (
                    f"the {arm} arm of the {population} cohort has an effective sample size below "
                    f"{MIN_PATIENTS_PER_ARM} under its weights (a few patients carry most of the weight): "
                    f"too little information for a weighted hazard ratio (minimum {MIN_PATIENTS_PER_ARM})"
                )
    e1, e0 = _arm_events(frame, event)
    for arm, count in (("exposed", e1), ("unexposed", e0)):
        if count < MIN_EVENTS_PER_ARM:
            return (
                f"fewer than {MIN_EVENTS_PER_ARM} {what} events among the {arm} patients of the {population} "
                f"cohort: too little information for a hazard ratio (minimum {MIN_EVENTS_PER_ARM} events per arm)"
            )
    competing = _is_competing(study, outcome)
    time_col, status_col = _columns(outcome)
    status = frame[status_col].to_numpy()
    direction = _exposure_separation(
        frame[time_col].to_numpy(dtype=float),
        event.to_numpy(dtype=bool),
        exposed,
        ((status != 0) & (status != 1)) if competing else None,
    )
    if direction is not None:
        risk_set = "subdistribution risk set" if competing else "risk set"
        return (
            f"separation in the {population} cohort: every {what} event among the {direction[0]} patients "
            f"happened when no {direction[1]} patient was in its {risk_set}, so the partial likelihood is "
            f"monotone in the exposure: the hazard ratio runs to {direction[2]} and is not estimable"
        )
    return None


def _exposure_separation(
    time: np.ndarray, event: np.ndarray, exposed: np.ndarray, competing: np.ndarray | None
) -> tuple[str, str, str] | None:
    """Whether the exposure alone separates the events (monotone partial likelihood), and which way.

    The exposure's score is a sum over events of ``x_i - xbar(t_i)``; with a
    binary exposure each term has a fixed sign whatever the coefficients:
    an exposed event gives ``>= 0`` (0 only if no unexposed patient is at
    risk), an unexposed event ``<= 0`` (0 only if no exposed patient is at
    risk). So if no unexposed event has an exposed patient in its risk set,
    the score is never negative and the coefficient runs to +infinity; the
    mirror case runs to -infinity. This holds for any values of other
    covariates, so it also rules out the adjusted fit. Risk set at ``t``:
    time >= t; for Fine-Gray also the competing events before ``t``
    (``competing`` mask), which stay in with a positive weight.

    Returns (arm whose events are uninformative, other arm, direction) or None.
    """

    def at_risk(arm: np.ndarray, t: np.ndarray) -> np.ndarray:
        times = np.sort(time[arm])
        count = len(times) - np.searchsorted(times, t, side="left")
        if competing is not None:
            count += np.searchsorted(np.sort(time[arm & competing]), t, side="left")
        return count

    # an arm without events passes its test vacuously: all events in one arm is separation too
    t1, t0 = time[event & exposed], time[event & ~exposed]
    if not at_risk(exposed, t0).any():
        return "unexposed", "exposed", "infinity"
    if not at_risk(~exposed, t1).any():
        return "exposed", "unexposed", "0"
    return None


def _supports(func: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- provenance


def data_fingerprint(path: str | Path) -> str:
    """SHA-256 fingerprint of a data folder (or file); see ``DATA_FINGERPRINT_METHOD``."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        rel = file.name if file == root else file.relative_to(root).as_posix()
        size = file.stat().st_size
        content = hashlib.sha256()
        with file.open("rb") as handle:
            if size <= _HASH_WHOLE_LIMIT:
                for chunk in iter(lambda: handle.read(2**20), b""):
                    content.update(chunk)
            else:
                content.update(handle.read(_EDGE))
                handle.seek(size - _EDGE)
                content.update(handle.read(_EDGE))
        digest.update(f"{rel}\0{size}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


def package_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    return dict(_installed_versions((*_PACKAGES, *extra)))


@functools.lru_cache(maxsize=8)
def _installed_versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Cached: reading package metadata costs ~5 ms, paid by every analysis of a design check's replicates.
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def read_synthetic_info(
    data_path: Path | None, study: Study | None = None
) -> tuple[bool, dict[str, dict[str, Any]] | None, str | None]:
    """(synthetic?, planted truth per outcome name, its description) from ``SYNTHETIC.json`` when present.

    The generator records each shipped study's truth under ``"studies"`` by study name, with
    ``hr_<outcome>`` (a hazard ratio) or ``shr_<outcome>`` (a subdistribution hazard ratio) per
    outcome name. A study the data holds no truth for (a user's own study on synthetic data)
    gets ``None``: no planted number is ever printed beside another study's estimates.
    """
    if data_path is None:
        return False, None, None
    marker = data_path / "SYNTHETIC.json"
    if not marker.is_file():
        return False, None, None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{marker}: not readable JSON ({exc}); regenerate the data with `retrocohort synth`") from None
    if study is None or not isinstance(info, dict):
        return True, None, None
    truth = (info.get("studies") or {}).get(study.study.name)
    if not isinstance(truth, dict):
        return True, None, None
    planted: dict[str, dict[str, Any]] = {}
    for name, outcome in study.outcomes.items():
        estimand = "shr" if outcome.competing else "hr"
        value = truth.get(f"{estimand}_{name}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            planted[name] = {"estimand": estimand, "value": float(value)}
    description = truth.get("description") if isinstance(truth.get("description"), str) else None
    return True, (planted or None), description


def _data_path(source: Any) -> Path | None:
    if isinstance(source, (str, Path)):
        return Path(source)
    path = getattr(source, "path", None)
    return Path(path) if path is not None else None


# --------------------------------------------------------------------------- the run


def run_study(
    source: Any,
    study: Study,
    engine: Engine = "duckdb",
    spark: Any = None,
    progress: ProgressCallback | None = None,
    trial_replicates: int | None = None,
    replicate_progress: ReplicateCallback | None = None,
    trial_processes: int | None = None,
) -> StudyResult:
    """Run a whole study on a MIMIC-IV-layout source.

    Parameters
    ----------
    source : str, Path or ``retrocohort.sources.MimicIV``
        A MIMIC-IV folder (``hosp/``, ``icu/``, csv.gz or the Parquet copy of
        ``retrocohort convert``; the synthetic generator's output too) or an
        already-built source.
    study : Study
        The design, from :func:`retrocohort.spec.load_study_file` (no default:
        a run says what it studies).
    engine : {"duckdb", "spark"}
        Engine for the cohort extraction; the analysis itself runs in NumPy.
    spark : SparkSession, optional
        For ``engine="spark"``; a local session is started when omitted.
    progress : callable, optional
        ``progress(stage_key, label, state)`` with ``state`` "start" / "done"
        for every stage of :func:`study_stages`.
    trial_replicates : int, optional
        Bootstrap replicates of the target trial (``[analysis.target_trial]``); None: the study's
        ``replicates``.
    replicate_progress : callable, optional
        ``replicate_progress(stage_key, done, total)`` after each replicate of the target trial.
    trial_processes : int, optional
        Worker processes of the target trial's bootstrap; None: the cores available to this process
        (:func:`available_cores`). The results do not depend on it (each replicate is seeded on its own).

    Returns
    -------
    StudyResult
        Frozen; models that could not be fitted are in ``.skipped`` with the reason.

    Raises
    ------
    RetrocohortError
        The source lacks a table or column the study needs, or the options are wrong.
    """
    # Imported here: the cohort builder pulls in ibis and the engines, which
    # analyse_cohort (and `import retrocohort.study`) does not need.
    from ..cohort.builder import build_cohort
    from ..sources import MimicIV

    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} is not supported; choose one of {list(ENGINES)}")
    _check_study(study)
    _check_replicates(trial_replicates)
    _check_processes(trial_processes)
    started = time.perf_counter()
    run = _Run(
        study=study,
        progress=progress,
        trial_replicates=trial_replicates,
        replicate_progress=replicate_progress,
        trial_processes=trial_processes,
    )
    data_path = _data_path(source)

    trial_cohort: Any = None
    time_varying: pd.DataFrame | None = None
    with run.stage("cohort"):
        if isinstance(source, (str, Path)):
            if not Path(source).exists():
                raise InputError(f"data folder {str(source)!r} does not exist")
            source = MimicIV(source)
        with run.capture_warnings("cohort"):
            cohort = build_cohort(study, source, engine=engine, spark=spark)
            trial = study.analysis.target_trial
            if trial_outcomes(study) and trial is not None:
                # The emulated trial's cohort: the same study without the criteria that look past time zero
                # (not_applied), built by the same builder, so eligibility is decided at the index only.
                trial_cohort = cohort
                if trial.not_applied:
                    trial_cohort = build_cohort(trial_study(study), source, engine=engine, spark=spark)
                if trial.time_varying:
                    time_varying = _time_varying(source, study, trial_cohort.data)
    return _analyse(
        run,
        cohort,
        data_path=data_path,
        engine=engine,
        started=started,
        trial_cohort=trial_cohort,
        time_varying=time_varying,
    )


def trial_study(study: Study) -> Study:
    """The study whose cohort the emulated trial uses: ``study`` without its ``not_applied`` criteria."""
    trial = study.analysis.target_trial
    dropped = set(trial.not_applied) if trial is not None else set()
    return study.model_copy(update={"criteria": tuple(c for c in study.criteria if c.name not in dropped)})


def _check_replicates(replicates: Any) -> None:
    if replicates is not None and (
        isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 2
    ):
        raise InputError(f"trial_replicates must be an integer >= 2 (or None for the study's), got {replicates!r}")


def _check_processes(processes: Any) -> None:
    if processes is not None and (
        isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 1
    ):
        raise InputError(
            f"trial_processes must be a whole number >= 1 (or None for the available cores), got {processes!r}"
        )


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or ``taskset``'s limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _time_varying(source: Any, study: Study, frame: pd.DataFrame) -> pd.DataFrame:
    """The time-varying covariates of the censoring model per patient and interval of the grace window.

    ``retrocohort.cohort.intervals.time_varying_values``: frame rows x intervals (``row``, ``day``, one
    column per name).
    """
    trial = study.analysis.target_trial
    assert trial is not None
    from ..cohort.intervals import time_varying_values

    grace_days = study.exposure.window.end_hours / 24.0
    values: pd.DataFrame = time_varying_values(
        source, study, frame, list(trial.time_varying), grace_days, trial.interval_hours / 24.0
    )
    return values


def _check_study(study: Any) -> None:
    if not isinstance(study, Study):
        raise InputError(
            f"study must be a retrocohort Study (from retrocohort.load_study(path)); got {type(study).__name__}"
        )


def analyse_cohort(
    cohort: Any,
    study: Study,
    progress: ProgressCallback | None = None,
    data_path: str | Path | None = None,
    engine: str = "duckdb",
    trial_cohort: Any = None,
    trial_replicates: int | None = None,
    replicate_progress: ReplicateCallback | None = None,
    trial_processes: int | None = None,
    lean: bool = False,
) -> StudyResult:
    """Run every stage after the cohort extraction on an already-built cohort.

    Parameters
    ----------
    cohort : ``retrocohort.cohort.builder.BuiltCohort`` or any object with ``.attrition``
        (``step``, ``remaining``, ``excluded``, ``reason``), ``.data`` (one row per
        patient: ``exposed``, the study's covariates, ``<outcome>_time`` and
        ``<outcome>_status`` per outcome) and optionally ``.notes``, ``.data_checks``.
    study : Study
        The study the cohort was built for.
    progress : as :func:`run_study` (stages after "cohort").
    data_path : the data folder, for the data fingerprint and ``SYNTHETIC.json``.
    engine : recorded in the provenance.
    trial_cohort : the target trial's cohort (built for :func:`trial_study`, with ``exposure_start_days``);
        None: ``cohort`` itself when the study leaves no criterion out of the trial, else the trial is
        skipped with the reason (only :func:`run_study`, which has the data, can build it).
    trial_replicates, replicate_progress, trial_processes : as :func:`run_study`.
    lean : skip the presentation-only work (balance tables and Table 1, the curves and their tests, the
        PH test, E-value, subgroups); every estimate is fitted with the same models and options. For
        ``retrocohort validate``, which runs the analysis thousands of times and reads the estimates only.

    Returns
    -------
    StudyResult
    """
    _check_study(study)
    _check_replicates(trial_replicates)
    _check_processes(trial_processes)
    run = _Run(
        study=study,
        progress=progress,
        trial_replicates=trial_replicates,
        replicate_progress=replicate_progress,
        trial_processes=trial_processes,
        lean=bool(lean),
    )
    trial = study.analysis.target_trial
    if trial_cohort is None and trial is not None and not trial.not_applied:
        trial_cohort = cohort
    return _analyse(
        run,
        cohort,
        data_path=Path(data_path) if data_path is not None else None,
        engine=engine,
        started=time.perf_counter(),
        trial_cohort=trial_cohort,
    )


def _analyse(
    run: _Run,
    cohort: Any,
    data_path: Path | None,
    engine: str,
    started: float,
    trial_cohort: Any = None,
    time_varying: pd.DataFrame | None = None,
) -> StudyResult:
    study = run.study
    for note in getattr(cohort, "notes", ()) or ():
        run.note(str(note))
    attrition = cohort.attrition.reset_index(drop=True).copy()
    data = cohort.data.reset_index(drop=True).copy()
    data, attrition = _complete_cases(run, data, attrition)
    data = _declare_number_levels(study, data)

    counts: dict[str, int] = {
        "indexed": int(attrition["remaining"].iloc[0]) if len(attrition) else 0,
        "eligible": int(len(data)),
        "exposed": int((data["exposed"] == 1).sum()),
        "comparator": int((data["exposed"] == 0).sum()),
        "matched_exposed": 0,
        "matched_comparator": 0,
    }
    dose: dict[str, Any] | None = None
    if study.dose is not None:
        values = data.loc[data["exposed"] == 1, study.dose.name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        dose = {
            "name": study.dose.name,
            "label": study.dose.label,
            "unit": study.dose.unit,
            "mean": float(values.mean()) if values.size else float("nan"),
            "sd": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
            "n": int(values.size),
        }

    with run.stage("propensity"):
        ps_result = _propensity(run, data)
    if ps_result is not None:
        score = ps_result.score.to_numpy(dtype=float)
        data["ps"] = score
        data["ps_logit"] = np.log(score / (1.0 - score))

    with run.stage("matching"):
        match_result, matched = _match(run, data, ps_result)
    if matched is not None:
        counts["matched_exposed"] = int((matched["exposed"] == 1).sum())
        counts["matched_comparator"] = int((matched["exposed"] == 0).sum())

    balance_before = balance_after = table_before = table_after = None
    if not run.lean:
        with run.stage("balance"):
            balance_before, balance_after, table_before, table_after = _balance(run, data, matched)

    outcomes: dict[str, OutcomeResult] = {}
    for name in study.outcomes:
        with run.stage(f"outcome:{name}"):
            outcomes[name] = _outcome(run, name, matched)

    with run.stage("sensitivity"):
        _full_cohort(run, data)
        if ps_result is not None and study.analysis.sensitivity_iptw:
            data = _iptw(run, data)
        elif study.analysis.sensitivity_iptw:
            reason = "no propensity score (see the propensity entry)"
            for name in study.outcomes:
                run.skip(name, _model(study, name, "unadjusted"), "iptw", reason)
        e_value, e_value_method = _e_value(run, matched) if not run.lean else (None, None)

    subgroups: tuple[SubgroupResult, ...] = ()
    if study.analysis.subgroups and not run.lean:
        with run.stage("subgroups"):
            subgroups = _subgroups(run, data, matched)

    target_trial: dict[str, TargetTrialResult] = {}
    for name in trial_outcomes(study):
        with run.stage(f"target_trial:{name}"):
            target_trial[name] = _target_trial(run, name, trial_cohort, time_varying)

    with run.stage("provenance"):
        synthetic, planted, _description = read_synthetic_info(data_path, study)
        extra = ("pyspark",) if engine == "spark" else ()
        provenance: dict[str, Any] = {
            "study_fingerprint": study.fingerprint,
            "data_fingerprint": data_fingerprint(data_path) if data_path is not None else None,
            "data_fingerprint_method": DATA_FINGERPRINT_METHOD,
            "packages": package_versions(extra),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "engine": engine,
            "seed": study.study.seed,
            "ph_test_model": run.ph_test_model,
            "concepts": dict(getattr(cohort, "concepts", {}) or {}),
        }
    # After the provenance stage closed, so its own time is included.
    provenance["stage_seconds"] = dict(run.timings)
    provenance["elapsed_seconds"] = round(time.perf_counter() - started, 3)

    return StudyResult(
        study=study,
        synthetic=synthetic,
        attrition=attrition,
        data_checks=getattr(cohort, "data_checks", None),
        counts=counts,
        dose=dose,
        cohort=data,
        matched=matched,
        propensity=ps_result,
        matching=match_result,
        balance_before=balance_before,
        balance_after=balance_after,
        table_one_before=table_before,
        table_one_after=table_after,
        outcomes=outcomes,
        primary=_primary(study),
        estimates=tuple(run.estimates),
        skipped=tuple(run.skipped),
        subgroups=subgroups,
        e_value=e_value,
        e_value_method=e_value_method,
        planted=planted,
        provenance=provenance,
        notes=tuple(run.notes),
        target_trial=target_trial,
    )


def trial_options(study: Study, outcome: str, replicates: int | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`~retrocohort.designs.clone_censor_weight` for one trial outcome,
    and the bootstrap's (``n_replicates``, ``seed``, ``conf_level``), from ``[analysis.target_trial]``.

    ``truncate`` is written in percentiles and passed as fractions; ``interval_hours`` as days.
    """
    trial = study.analysis.target_trial
    if trial is None:
        raise InputError("the study has no [analysis.target_trial]")
    oc = study.outcomes[outcome]
    lower, upper = trial.truncate
    return {
        "grace_days": study.exposure.window.end_hours / 24.0,
        "horizon_days": float(oc.horizon_days),
        "censoring_model": trial.censoring_model,
        "interval_days": trial.interval_hours / 24.0,
        "stabilised": trial.stabilised,
        "truncate": (lower / 100.0, upper / 100.0),
        "competing": oc.competing is not None,
        "min_ess": float(trial.min_ess),
        "n_replicates": int(replicates if replicates is not None else trial.replicates),
        "seed": int(trial.seed if trial.seed is not None else study.study.seed),
        "conf_level": float(study.analysis.conf_level),
    }


def trial_frame(
    study: Study, outcome: str, data: pd.DataFrame
) -> tuple[pd.DataFrame, list[str], np.ndarray, list[str]]:
    """The frame :func:`~retrocohort.designs.clone_censor_weight` takes for one trial outcome.

    Parameters
    ----------
    study : the study; outcome : one of its outcomes.
    data : the trial cohort's analysis frame (one row per patient eligible at the index, with
        ``exposure_start_days``, the covariates and ``<outcome>_time`` / ``<outcome>_status``).

    Returns
    -------
    frame : columns ``exposure_start_days``, ``time``, ``status`` and the censoring model's numeric
        covariates (0/1 indicators for the levels of a categorical one, the first level the reference).
    covariates : the covariate columns of ``frame``.
    kept : positions of ``data``'s rows in ``frame``.
    notes : who was left out and why, in words (exact counts: show them through the disclosure rule).
    """
    time_col, status_col = _columns(outcome)
    names = list(trial_covariates(study))
    notes: list[str] = []
    missing_columns = [c for c in ["exposure_start_days", time_col, status_col, *names] if c not in data.columns]
    if missing_columns:
        raise InputError(
            f"the target trial's cohort frame lacks column(s) {missing_columns} (it has {list(data.columns)}); "
            "build it with retrocohort.cohort.build_cohort for this study"
        )
    start = pd.to_numeric(data["exposure_start_days"], errors="coerce").to_numpy(dtype=float)
    time_ = pd.to_numeric(data[time_col], errors="coerce").to_numpy(dtype=float)
    status = pd.to_numeric(data[status_col], errors="coerce").to_numpy(dtype=float)
    incomplete = data[names].isna().any(axis=1).to_numpy() | np.isnan(time_) | np.isnan(status)
    if incomplete.any():
        notes.append(
            f"{int(incomplete.sum())} patients without a value of a censoring-model covariate or the outcome "
            "are left out of the trial"
        )
    # Nobody can be followed from time zero who died (or left follow-up) at or before it.
    no_follow_up = ~incomplete & ~(time_ > 0)
    if no_follow_up.any():
        notes.append(
            f"{int(no_follow_up.sum())} patients with no follow-up after the index (death or censoring at the "
            "index time) are not eligible at time zero"
        )
    keep = ~(incomplete | no_follow_up)
    kept = np.flatnonzero(keep)
    # A start after the end of this outcome's follow-up did not happen during it (e.g. after the outcome).
    start = np.where(start <= time_, start, np.nan)
    frame = pd.DataFrame(
        {"exposure_start_days": start[keep], "time": time_[keep], "status": status[keep].astype(np.int64)}
    )
    covariates: list[str] = []
    for name in names:
        column = data.loc[keep, name].reset_index(drop=True)
        if covariate_type(study, name) == "categorical" or not pd.api.types.is_numeric_dtype(column):
            levels = sorted(column.astype(str).unique())
            for level in levels[1:]:
                indicator = f"{name}_{level}"
                frame[indicator] = (column.astype(str) == level).astype(float).to_numpy()
                covariates.append(indicator)
        else:
            frame[name] = pd.to_numeric(column).astype(float).to_numpy()
            covariates.append(name)
    constant = [c for c in covariates if frame[c].nunique() < 2]
    if constant:
        notes.append(f"censoring model: covariate(s) {constant} constant in the trial's cohort, left out")
        covariates = [c for c in covariates if c not in constant]
    return frame, covariates, kept, notes


def _target_trial(run: _Run, name: str, trial_cohort: Any, time_varying: pd.DataFrame | None) -> TargetTrialResult:
    """Clone, censor, weight and bootstrap one outcome; a trial that cannot be estimated is skipped with why."""
    from ..designs import bootstrap

    study = run.study
    trial = study.analysis.target_trial
    assert trial is not None
    oc = study.outcomes[name]
    options = trial_options(study, name, run.trial_replicates)
    grace_days = options["grace_days"]
    base: dict[str, Any] = {
        "outcome": name,
        "label": oc.label,
        "competing": oc.competing is not None,
        "horizon_days": float(oc.horizon_days),
        "grace_days": grace_days,
        "not_applied": tuple(trial.not_applied),
        "past_index": tuple(c.name for c in trial_study(study).criteria if looks_past_index(c)),
        "options": {**options, "covariates": list(trial_covariates(study)), "time_varying": list(trial.time_varying)},
    }
    if trial_cohort is None:
        return TargetTrialResult(
            **base,
            bootstrap=None,
            skipped=(
                f"the trial's cohort (this study without the criteria {list(trial.not_applied)}) was not built: "
                "only the study's cohort was given (run_study builds both; analyse_cohort takes trial_cohort=)"
            ),
            n_eligible=0,
            n_started=0,
        )
    data = trial_cohort.data.reset_index(drop=True)
    if "exposure_start_days" not in data.columns:
        return TargetTrialResult(
            **base,
            bootstrap=None,
            skipped=(
                "the trial's cohort frame has no exposure_start_days column (days from the index to the first "
                "exposure start); build the cohort with retrocohort.cohort.build_cohort"
            ),
            n_eligible=0,
            n_started=0,
        )
    frame, covariates, kept, notes = trial_frame(study, name, data)
    n_started = int((frame["exposure_start_days"] <= grace_days).sum())
    kwargs: dict[str, Any] = {
        k: options[k]
        for k in (
            "grace_days",
            "horizon_days",
            "censoring_model",
            "interval_days",
            "stabilised",
            "truncate",
            "competing",
            "min_ess",
        )
    }
    kwargs.update(start_time="exposure_start_days", time="time", status="status", covariates=covariates)
    if time_varying is not None:
        # rows of the trial cohort's frame -> rows of this outcome's frame
        position = pd.Series(np.arange(len(kept)), index=kept)
        values = time_varying[time_varying["row"].isin(kept)].copy()
        values["row"] = position.loc[values["row"].to_numpy()].to_numpy()
        kwargs["time_varying"] = values.reset_index(drop=True)
    stage = f"target_trial:{name}"
    hook = run.replicate_progress
    # Each replicate is seeded from its own child of the seed, so the intervals do not depend on this;
    # more processes than replicates would only start idle workers.
    processes = min(run.trial_processes or available_cores(), options["n_replicates"])

    def progress(done: int, total: int) -> None:
        if hook is not None:
            hook(stage, done, total)

    try:
        with run.capture_warnings(f"target trial, {oc.label}"):
            boot = bootstrap(
                frame,
                n_replicates=options["n_replicates"],
                seed=options["seed"],
                conf_level=options["conf_level"],
                processes=processes,
                progress=progress,
                **kwargs,
            )
    except _MODEL_ERRORS as exc:
        return TargetTrialResult(
            **base,
            bootstrap=None,
            skipped=str(exc),
            n_eligible=len(frame),
            n_started=n_started,
            notes=tuple(notes),
        )
    base["options"]["covariates"] = covariates
    return TargetTrialResult(
        **base,
        bootstrap=boot,
        skipped=None,
        n_eligible=len(frame),
        n_started=n_started,
        notes=tuple(notes),
    )


def _primary(study: Study) -> str:
    """The primary outcome's name (the loader guarantees exactly one, else the first)."""
    return next((n for n, oc in study.outcomes.items() if oc.primary), next(iter(study.outcomes)))


def _model(study: Study, outcome: str, which: str) -> str:
    """``cox_<which>`` or ``fine_gray_<which>`` as the outcome is competing or not."""
    return f"{'fine_gray' if _is_competing(study, outcome) else 'cox'}_{which}"


def _line(study: Study, outcome: str, rest: str) -> str:
    """An estimate's label: "<outcome label> by day <horizon>, <rest>"."""
    oc = study.outcomes[outcome]
    method = "Fine-Gray" if oc.competing else "Cox"
    return f"{by_day(oc.label, oc.horizon_days)}, {method}, {rest}"


# --------------------------------------------------------------------------- stages


def _complete_cases(run: _Run, data: pd.DataFrame, attrition: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop patients missing a model covariate or outcome, as one attrition line (never silently).

    The cohort builder already applies each covariate's missing-data rule; this
    is the guard for frames built otherwise (or a model covariate left missing).
    """
    study = run.study
    outcome_columns = [c for name in study.outcomes for c in _columns(name)]
    needed = list(dict.fromkeys(["exposed", *study.propensity_covariates, *study.adjustment_set, *outcome_columns]))
    missing_columns = [c for c in needed if c not in data.columns]
    if missing_columns:
        raise InputError(
            f"the cohort's analysis frame lacks column(s) {missing_columns} that the study needs "
            f"(it has {list(data.columns)}); check [analysis] propensity / adjust and [outcomes]"
        )
    for name, outcome in study.outcomes.items():
        time_col, status_col = _columns(name)
        codes = (0, 1, 2) if outcome.competing else (0, 1)
        status = data[status_col]
        bad = status.notna() & ~status.isin(codes)
        times = pd.to_numeric(data[time_col], errors="coerce")
        bad_time = data[time_col].notna() & ~(np.isfinite(times) & (times >= 0))
        if bad.any() or bad_time.any():
            column, rows = (status_col, int(bad.sum())) if bad.any() else (time_col, int(bad_time.sum()))
            allowed = "codes " + ", ".join(map(str, codes)) if bad.any() else "finite days >= 0"
            raise InputError(
                f"the cohort's analysis frame: column {column!r} has {rows} row(s) outside {allowed} "
                f"(outcome {name!r}: 0 censored, 1 the outcome"
                + (", 2 the competing death" if outcome.competing else "")
                + "); fix the frame or the study"
            )
    missing = data[needed].isna()
    drop = missing.any(axis=1)
    if drop.any():
        columns = [str(c) for c, n in missing.sum().items() if n]
        reason = f"missing data on a model covariate or outcome ({', '.join(columns)})"
        remaining = int((~drop).sum())
        attrition = pd.concat(
            [
                attrition,
                pd.DataFrame(
                    [
                        {
                            "step": "complete data on model covariates",
                            "remaining": remaining,
                            "excluded": int(drop.sum()),
                            "reason": reason,
                        }
                    ]
                ),
            ],
            ignore_index=True,
        )
        run.note(f"complete-case analysis: patients excluded for {reason} (see the attrition table)")
        data = data.loc[~drop].reset_index(drop=True)
    return data, attrition


def _propensity(run: _Run, data: pd.DataFrame) -> Any:
    analysis = run.study.analysis
    n1 = int((data["exposed"] == 1).sum())
    n0 = int((data["exposed"] == 0).sum())
    if n1 == 0 or n0 == 0:
        arm = "exposed" if n1 == 0 else "comparator"
        reason = f"the eligible cohort has no {arm} patients; a propensity model needs both arms"
        if n1 == 0 and n0 == 0:
            reason = "the eligible cohort is empty: the attrition log shows the rule that removed everyone"
        run.skip("propensity", "logistic", "full", reason)
        return None
    if not run.study.propensity_covariates:
        run.skip("propensity", "logistic", "full", "the study has no covariates for a propensity model")
        return None
    covariates = _usable_covariates(run, data, run.study.propensity_covariates, "propensity model")
    n_terms = _n_terms(data, covariates) + 1
    if min(n1, n0) <= 1 or len(data) <= n_terms:
        reason = f"too few patients for a propensity model with {n_terms} terms"
        run.skip("propensity", "logistic", "full", reason)
        return None
    try:
        with run.capture_warnings("propensity model"):
            result = propensity_score(data, "exposed", covariates, link=analysis.link)
    except _MODEL_ERRORS as exc:
        run.skip("propensity", "logistic", "full", f"propensity model not fitted: {exc}")
        return None
    score = result.score.to_numpy(dtype=float)
    if not np.all((score > 0) & (score < 1)):
        run.skip("propensity", "logistic", "full", "propensity scores of exactly 0 or 1 (complete separation)")
        return None
    if not getattr(result, "converged", True):
        run.note("propensity model: IRLS did not converge; scores may be unreliable")
    return result


def _match(run: _Run, data: pd.DataFrame, ps_result: Any) -> tuple[Any, pd.DataFrame | None]:
    spec = run.study.analysis.matching
    if ps_result is None:
        run.skip("matching", "nearest", "matched", "no propensity score (see the propensity entry)")
        return None, None
    distance = data["ps_logit"] if spec.distance == "logit" else data["ps"]
    try:
        with run.capture_warnings("matching"):
            result = match_nearest(
                data,
                "exposed",
                distance=distance.to_numpy(dtype=float),
                ratio=spec.ratio,
                caliper=spec.caliper,
                std_caliper=True,
                order=spec.order,
                replace=spec.replace,
                exact=list(spec.exact) or None,
                random_state=run.study.study.seed,
            )
    except _MODEL_ERRORS as exc:
        run.skip("matching", "nearest", "matched", f"matching failed: {exc}")
        return None, None
    matched = result.matched.copy()
    if matched.empty or (matched["exposed"] == 1).sum() == 0:
        run.skip("matching", "nearest", "matched", "no exposed patient found a match within the caliper")
        return result, None
    if matched["subclass"].notna().all():
        matched["subclass"] = matched["subclass"].astype("int64")
        if _repeated_patients(run, matched):
            matched["patient_set"] = _patient_sets(matched)
    return result, matched.reset_index(drop=True)


def _table_one_variables(study: Study, data: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(Table 1 variables: every covariate of the study in its order, the categorical ones among them)."""
    variables = [name for name in study.covariates if name in data.columns]
    categorical = [n for n in variables if covariate_type(study, n) in ("binary", "categorical")]
    return variables, categorical


def _balance_covariates(run: _Run, data: pd.DataFrame) -> list[str]:
    """Covariates whose balance is reported: the model covariates, then the rest of Table 1.

    A Table 1 variable with missing values (not a model covariate, so its
    patients were kept) is described in Table 1 with its missing count but
    has no SMD; a note says so.
    """
    study = run.study
    names = [*study.propensity_covariates, *study.adjustment_set, *_table_one_variables(study, data)[0]]
    kept = []
    for name in dict.fromkeys(names):
        if name not in data.columns:
            continue
        if data[name].isna().any():
            run.note(f"balance: {name!r} has missing values; no SMD reported for it")
            continue
        kept.append(name)
    return kept


def _observed(study: Study, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as Table 1 describes it: a numeric or binary covariate with ``missing = "indicator"`` unknown
    (NaN, counted in the missing column) where its indicator is 1, not the 0 the models take.

    Table 1 once showed the mean of the measured values and the zeros set for the unmeasured ones together (a
    highest temperature of 19.5 C when a third of the patients had none), with 0 missing.
    """
    described = frame
    for name, cov in study.covariates.items():
        flag = f"{name}_missing"
        if cov.missing != "indicator" or name not in frame or flag not in frame:
            continue
        if covariate_type(study, name) == "categorical":
            continue  # its unknown values are the level "missing", shown as such
        if described is frame:
            described = frame.copy()
        described.loc[described[flag] == 1, name] = np.nan
    return described


def _balance(run: _Run, data: pd.DataFrame, matched: pd.DataFrame | None) -> tuple[Any, Any, Any, Any]:
    covariates = _balance_covariates(run, data)
    variables, categorical = _table_one_variables(run.study, data)

    def attempt(what: str, func: Callable[[], Any]) -> Any:
        try:
            with run.capture_warnings(what):
                return func()
        except _MODEL_ERRORS as exc:
            run.note(f"{what} not computed: {exc}")
            return None

    has_both = data["exposed"].nunique() == 2
    before = after = t1_before = t1_after = None
    if has_both and covariates:
        before = attempt("balance before matching", lambda: balance(data, "exposed", covariates))
    if len(data) and variables:
        t1_before = attempt(
            "Table 1 before matching",
            lambda: table_one(_observed(run.study, data), "exposed", variables, categorical=categorical),
        )
    if matched is not None:
        # Balance uses MatchIt's matching weights (as cobalt does); Table 1 describes the
        # matched patients unweighted, so its counts are patients (integers the small-cell
        # rule applies to). The two differ only when some exposed patient found fewer
        # than `ratio` controls.
        if covariates:
            after = attempt("balance after matching", lambda: balance(matched, "exposed", covariates, weights="weight"))
        if variables:
            t1_after = attempt(
                "Table 1 after matching",
                lambda: table_one(_observed(run.study, matched), "exposed", variables, categorical=categorical),
            )
    return before, after, t1_before, t1_after


def _fit_hr(
    run: _Run,
    *,
    outcome: str,
    model: str,
    population: Population,
    frame: pd.DataFrame,
    covariates: Sequence[str],
    label: str,
    variance: str,
    weights: str | None = None,
    cluster: str | None = None,
    robust: bool | None = None,
    note: str = "",
    record: bool = True,
) -> Any:
    """Fit one Cox or Fine-Gray model and record its exposure line (or why it was skipped).

    Returns the fit (CoxResult / FineGrayResult) or None when skipped. With
    ``record=False`` (subgroup levels) nothing is recorded: a skip returns
    ``None`` and the caller reports the level as not estimable.
    """
    study = run.study
    competing = _is_competing(study, outcome)
    time_col, status_col = _columns(outcome)
    where = label
    covariates = ["exposed", *_usable_covariates(run, frame, [c for c in covariates if c != "exposed"], where)]
    event = frame[status_col] == 1

    def skip(reason: str) -> None:
        if record:
            run.skip(outcome, model, population, reason)

    why = _why_not_estimable(study, frame, event, outcome, population, _n_terms(frame, covariates))
    if why is None:
        why = _minimum_information(study, frame, event, outcome, population, weights)
    if why is not None:
        skip(why)
        return None
    fit: CoxResult | FineGrayResult
    try:
        with run.capture_warnings(where) as fit_warnings:
            if competing:
                kwargs: dict[str, Any] = {"cause": 1, "censor_code": 0, "conf_level": study.analysis.conf_level}
                if cluster is not None:
                    kwargs["cluster"] = cluster
                if weights is not None:
                    kwargs["weights"] = weights
                fit = fine_gray(frame, time_col, status_col, covariates, **kwargs)
            else:
                # robust=None follows coxph: sandwich with a cluster or a non-integer weight.
                fit = cox(
                    frame,
                    time_col,
                    status_col,
                    covariates,
                    ties=study.analysis.ties,
                    weights=weights,
                    cluster=cluster,
                    robust=robust,
                    conf_level=study.analysis.conf_level,
                )
    except _MODEL_ERRORS as exc:
        skip(f"not fitted: {exc}")
        return None
    if not getattr(fit, "converged", True):
        skip("the fit did not converge")
        return None
    # An estimate the fit itself flags as possibly infinite is not reported as a number.
    flagged = [m for m in fit_warnings if "monotone" in m.lower() or "infinite" in m.lower()]
    if any("'exposed'" in m for m in flagged):
        skip(f"not estimable: {flagged[0]}")
        return None
    if flagged:
        note = "; ".join(filter(None, [note, *flagged]))
    values = [float(v) for v in fit.summary.loc["exposed", ["hr", "lower", "upper", "p"]].to_numpy(dtype=float)]
    if not all(math.isfinite(v) for v in values):
        skip("non-finite estimate (monotone likelihood or separation)")
        return None
    if record:
        run.estimates.append(
            Estimate(
                outcome=outcome,
                model=model,
                population=population,
                estimate=values[0],
                lower=values[1],
                upper=values[2],
                p=values[3],
                label=label,
                n=int(len(frame)),
                n_events=int(event.sum()),
                variance=variance,
                note=note,
            )
        )
    return fit


def _repeated_patients(run: _Run, frame: pd.DataFrame) -> bool:
    """Whether a patient has several rows (``select = "first_per_stay"``: one row per ICU stay).

    Rows of one patient are not independent: the models then cluster on the patient (robust variance
    by subject, as ``coxph(..., cluster = subject_id)``).
    """
    return (
        run.study.index.select == "first_per_stay"
        and "subject_id" in frame
        and bool(frame["subject_id"].duplicated().any())
    )


#: Variance words for a model clustered on the patient.
_BY_PATIENT = "robust, clustered on the patient (a patient contributes several ICU stays)"


def _patient_sets(matched: pd.DataFrame) -> np.ndarray:
    """Clusters that hold both every matched set and every patient: the matched sets joined by shared patients.

    A patient with two stays may sit in two matched sets; clustering on the matched set alone would treat
    the two stays as independent, clustering on the patient alone would ignore the pairing. The connected
    components of "same set or same patient" nest both.
    """
    sets = pd.factorize(matched["subclass"])[0]
    people = pd.factorize(matched["subject_id"])[0] + sets.max() + 1
    parent = np.arange(people.max() + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in zip(sets, people, strict=True):
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return pd.factorize(np.array([root(int(a)) for a in sets]))[0].astype(np.int64)


def _matched_variance(run: _Run, matched: pd.DataFrame) -> tuple[str | None, bool | None, str]:
    """(cluster column, robust flag, description) for models in the matched cohort."""
    if _repeated_patients(run, matched):
        if run.study.analysis.cluster_on_matched_set and "patient_set" in matched:
            return "patient_set", None, "robust, clustered on matched sets joined by shared patients"
        return "subject_id", None, _BY_PATIENT
    if not run.study.analysis.cluster_on_matched_set:
        if _weights_needed(matched):
            # explicit: coxph's default would keep the model-based variance for whole-number weights,
            # but matching weights are not frequency weights
            return None, True, "robust (non-unit matching weights)"
        return None, None, "model-based"
    if matched["subclass"].notna().all():
        return "subclass", None, "robust, clustered on matched set"
    # With replacement a control sits in several sets: no single set to cluster on.
    return None, True, "robust (per patient; matched with replacement)"


def _fine_gray_options(run: _Run, matched: pd.DataFrame) -> dict[str, Any]:
    """Weights, cluster and variance words of a Fine-Gray fit in the matched cohort."""
    cluster, robust, variance = _matched_variance(run, matched)
    weights = None
    note = ""
    if _weights_needed(matched):
        if _supports(fine_gray, "weights"):
            weights = "weight"
        else:
            note = "unweighted: the Fine-Gray fit takes no weights and some matching weights differ from 1"
    if robust:
        # Fine-Gray's variance already is a sandwich (with crr's censoring term); with replacement there is
        # no matched set to cluster on, so each patient is its own cluster.
        cluster = None
        variance = (
            "crr sandwich (matched with replacement)"
            if weights is None
            else "robust sandwich with crr's censoring term (per patient; matched with replacement)"
        )
    elif cluster is None:
        variance = "crr sandwich" if weights is None else "robust sandwich with crr's censoring term (non-unit weights)"
    return {"weights": weights, "cluster": cluster, "variance": variance, "note": note}


class _Lean(Exception):
    """Leaves the curves of :func:`_outcome` out in a lean run."""


def _outcome(run: _Run, name: str, matched: pd.DataFrame | None) -> OutcomeResult:
    """The matched-cohort analysis of one outcome: curves by arm, their test and the two models."""
    study = run.study
    spec = study.outcomes[name]
    time_col, status_col = _columns(name)
    competing = spec.competing is not None
    result: dict[str, Any] = {
        "name": name,
        "label": spec.label,
        "kind": spec.kind,
        "competing": competing,
        "horizon_days": float(spec.horizon_days),
        "primary": name == _primary(study),
        "time": time_col,
        "status": status_col,
    }
    curve, test = ("cumulative_incidence", "gray_test") if competing else ("kaplan_meier", "logrank")
    models = (_model(study, name, "unadjusted"), _model(study, name, "adjusted"))
    if matched is None:
        reason = "no matched cohort (see the matching entry)"
        for model in (curve, test, *models, *(("ph_test",) if result["primary"] and not competing else ())):
            run.skip(name, model, "matched", reason)
        return OutcomeResult(**result)
    what = _outcome_name(study, name)
    w = _weights_needed(matched)
    conf = study.analysis.conf_level
    try:
        if run.lean:  # presentation only: the curves and their test (validate reads the estimates)
            raise _Lean
        with run.capture_warnings("cumulative incidence" if competing else "Kaplan-Meier"):
            if competing:
                # status: 0 censored, 1 the outcome, 2 died first; any other code is an error, not a cause
                cif = cumulative_incidence(
                    matched,
                    time_col,
                    status_col,
                    cause=1,
                    group="exposed",
                    censor_code=0,
                    competing_codes=[2],
                    conf_level=conf,
                )
                for text in cif.notes:
                    run.note(f"cumulative incidence ({spec.label}): {text}")
                result["cif"] = cif
            else:
                result["km"] = kaplan_meier(matched, time_col, status_col, group="exposed", weights=w, conf_level=conf)
    except _Lean:
        pass
    except _MODEL_ERRORS as exc:
        run.skip(name, curve, "matched", f"not computed: {exc}")
    if run.lean:
        pass
    elif matched["exposed"].nunique() < 2 or (matched[status_col] == 1).sum() == 0:
        run.skip(name, test, "matched", f"needs both arms and at least one {what} event")
    else:
        try:
            if competing:
                with run.capture_warnings("Gray's test"):
                    gray = gray_test(
                        matched, time_col, status_col, group="exposed", cause=1, censor_code=0, competing_codes=[2]
                    )
                for text in gray.notes:
                    run.note(f"Gray's test ({spec.label}): {text}")
                result["gray"] = gray
            else:
                with run.capture_warnings("log-rank test"):
                    result["logrank"] = logrank(matched, time_col, status_col, group="exposed")
                if w:
                    run.note("log-rank test: unweighted (the matching weights are not all 1)")
        except _MODEL_ERRORS as exc:
            run.skip(name, test, "matched", f"not computed: {exc}")
    if competing:
        options = _fine_gray_options(run, matched)
        if options["weights"] is not None and ("cif" in result or "gray" in result):
            run.note(
                "cumulative incidence and Gray's test: unweighted (cuminc takes no case weights; "
                "the matching weights are not all 1)"
            )
    else:
        cluster, robust, variance = _matched_variance(run, matched)
        options = {"weights": "weight", "cluster": cluster, "robust": robust, "variance": variance}
    # dict[str, Any]: a bundle of _fit_hr's keyword arguments
    common: dict[str, Any] = dict(outcome=name, population="matched", frame=matched, **options)
    unadjusted = _fit_hr(
        run, model=models[0], covariates=["exposed"], label=_line(study, name, "matched, unadjusted"), **common
    )
    adjusted = _fit_hr(
        run, model=models[1], covariates=study.adjustment_set, label=_line(study, name, "matched, adjusted"), **common
    )
    if result["primary"] and not competing and not run.lean:
        main = adjusted if adjusted is not None else unadjusted
        run.ph_test_model = models[1] if adjusted is not None else models[0]
        result["ph_test_model"] = run.ph_test_model
        if main is None:
            run.skip(name, "ph_test", "matched", "no Cox model was fitted")
        else:
            try:
                with run.capture_warnings("PH test"):
                    result["ph_test"] = ph_test(main)
            except _MODEL_ERRORS as exc:
                run.skip(name, "ph_test", "matched", f"not computed: {exc}")
    return OutcomeResult(**result)


def _full_cohort(run: _Run, data: pd.DataFrame) -> None:
    study = run.study
    if not study.analysis.sensitivity_full_cohort:
        return
    repeated = _repeated_patients(run, data)
    for name in study.outcomes:
        competing = _is_competing(study, name)
        _fit_hr(
            run,
            outcome=name,
            model=_model(study, name, "adjusted"),
            population="full",
            frame=data,
            covariates=study.adjustment_set,
            label=_line(study, name, "full eligible cohort, adjusted"),
            variance=_BY_PATIENT if repeated else "crr sandwich" if competing else "model-based",
            cluster="subject_id" if repeated else None,
        )


def _iptw(run: _Run, data: pd.DataFrame) -> pd.DataFrame:
    """IPTW with ATT weights: exposed 1, comparator ps / (1 - ps); Cox and Fine-Gray, robust (sandwich) variance."""
    study = run.study
    ps = data["ps"].to_numpy(dtype=float)
    data = data.assign(iptw_weight=np.where(data["exposed"].to_numpy() == 1, 1.0, ps / (1.0 - ps)))
    w0 = data.loc[data["exposed"] == 0, "iptw_weight"]
    if len(w0):
        run.note(
            f"IPTW (ATT): comparator weights range {w0.min():.3g} to {w0.max():.3g}, "
            f"effective sample size {w0.sum() ** 2 / (w0**2).sum():.1f} of {len(w0)}"
        )
    for name in study.outcomes:
        # Weighted Fine-Gray: the weighted estimating equation with the weighted Kaplan-Meier of
        # censoring; with weights and no cluster its variance is the robust sandwich (each patient
        # its own cluster, censoring-distribution term included), as coxph(robust = TRUE).
        robust = None if _is_competing(study, name) else True
        _fit_hr(
            run,
            outcome=name,
            model=_model(study, name, "unadjusted"),
            population="iptw",
            frame=data,
            covariates=["exposed"],
            weights="iptw_weight",
            robust=robust,
            cluster="subject_id" if _repeated_patients(run, data) else None,
            label=_line(study, name, "IPTW (ATT weights)"),
            variance=_BY_PATIENT if _repeated_patients(run, data) else "robust (sandwich)",
        )
    return data


def _e_value(run: _Run, matched: pd.DataFrame | None) -> tuple[dict[str, Any] | None, str | None]:
    study = run.study
    if not study.analysis.e_value:
        return None, None
    name = _primary(study)
    primary = None
    for which in ("adjusted", "unadjusted"):
        key = (name, _model(study, name, which), "matched")
        primary = next((e for e in run.estimates if (e.outcome, e.model, e.population) == key), None)
        if primary is not None:
            break
    if primary is None or matched is None:
        run.skip(name, "e_value", "matched", "no matched hazard ratio of the primary outcome to compute it from")
        return None, None
    weights = matched["weight"].to_numpy(dtype=float) if "weight" in matched else None
    events = (matched[_columns(name)[1]] == 1).to_numpy(dtype=float)
    proportion = float(np.average(events, weights=weights))
    ev = e_value_hr(primary.estimate, primary.lower, primary.upper, proportion)
    method = f"E-value of the primary hazard ratio ({primary.label}); {ev.method}"
    values = {k: v for k, v in ev.as_dict().items() if isinstance(v, float)}
    return values, method


# --------------------------------------------------------------------------- subgroups


def _subgroups(run: _Run, data: pd.DataFrame, matched: pd.DataFrame | None) -> tuple[SubgroupResult, ...]:
    """The primary outcome's (s)HR within each level of every ``[analysis] subgroups`` covariate.

    In the matched cohort (else the full eligible cohort when there is none),
    unadjusted within each level (the matched sets balance the covariates),
    with the variance of the main analysis; the interaction p-value is the
    Wald test of all exposure x level terms of one model with the exposure,
    the level indicators and their products. A level too small for the
    minimum-information rules gets no estimate (NaN) and a note.
    """
    study = run.study
    name = _primary(study)
    competing = _is_competing(study, name)
    frame = matched if matched is not None else data
    population: Population = "matched" if matched is not None else "full"
    if matched is not None:
        options = (
            _fine_gray_options(run, matched)
            if competing
            else dict(zip(("cluster", "robust", "variance"), _matched_variance(run, matched), strict=True))
            | {"weights": "weight"}
        )
    elif _repeated_patients(run, data):
        options = {"variance": _BY_PATIENT, "cluster": "subject_id"}
    else:
        options = {"variance": "crr sandwich" if competing else "model-based"}
    options.pop("note", None)
    variance = str(options.pop("variance"))
    model_words = (
        f"{'Fine-Gray' if competing else 'Cox'}, {population} cohort, unadjusted within each level; variance {variance}"
    )
    out = []
    for covariate in study.analysis.subgroups:
        label = study.covariates[covariate].label or covariate
        if covariate not in frame.columns or data["exposed"].nunique() < 2:
            run.skip("subgroup", f"{covariate}", population, f"subgroup {covariate!r}: no comparison possible")
            continue
        levels = [v for v in pd.unique(frame[covariate].dropna())]
        levels = sorted(levels, key=lambda v: (str(type(v)), v))
        rows = []
        for level in levels:
            part = frame.loc[frame[covariate] == level].reset_index(drop=True)
            event = part[_columns(name)[1]] == 1
            fit = _fit_hr(
                run,
                outcome=name,
                model=_model(study, name, "unadjusted"),
                population=population,
                frame=part,
                covariates=["exposed"],
                label=f"{label} = {level}",
                variance=variance,
                record=False,
                **options,
            )
            row: dict[str, Any] = {
                "level": level,
                "n": int(len(part)),
                "n_events": int(event.sum()),
                "estimate": math.nan,
                "lower": math.nan,
                "upper": math.nan,
                "p": math.nan,
            }
            if fit is not None:
                hr, lower, upper, p = (float(v) for v in fit.summary.loc["exposed", ["hr", "lower", "upper", "p"]])
                row.update(estimate=hr, lower=lower, upper=upper, p=p)
            else:
                run.note(
                    f"subgroup {label} = {level}: too little information for a hazard ratio "
                    f"(minimum {MIN_PATIENTS_PER_ARM} patients and {MIN_EVENTS_PER_ARM} events per arm)"
                )
            rows.append(row)
        why = ""
        if len(levels) < 2:
            # an interaction needs two levels to compare; a study restricted to one (women only, say) has one
            only = f" ({_level_words(levels[0])})" if levels else ""
            why = (
                f"interaction not tested: only one level{only} of {label} in the {population} cohort, "
                "so there is nothing to compare it with"
            )
            run.note(f"subgroup {label}: {why}")
            p_interaction = math.nan
        elif any(math.isnan(row["estimate"]) for row in rows):
            # a level without an estimate carries too little information for its interaction term either
            why = "interaction not tested: a level has too little information for a hazard ratio"
            run.note(f"subgroup {label}: interaction test not computed (a level has too little information)")
            p_interaction = math.nan
        else:
            p_interaction = _interaction_p(run, frame, name, covariate, levels, options)
            if math.isnan(p_interaction):
                why = "interaction not tested: the model with the interaction terms could not be fitted"
        out.append(
            SubgroupResult(
                outcome=name,
                covariate=covariate,
                label=label,
                levels=pd.DataFrame(rows, columns=["level", "n", "n_events", "estimate", "lower", "upper", "p"]),
                p_interaction=p_interaction,
                model=model_words,
                interaction_note=why,
            )
        )
    return tuple(out)


def _level_words(level: Any) -> str:
    """A level as the notes print it: 1.0 as "1" (a 0/1 covariate), text as written."""
    if isinstance(level, float | np.floating) and float(level).is_integer():
        return str(int(level))
    return str(level)


def _interaction_p(
    run: _Run, frame: pd.DataFrame, outcome: str, covariate: str, levels: Sequence[Any], options: dict[str, Any]
) -> float:
    """Wald p-value of the exposure x ``covariate`` terms (NaN when the model cannot be fitted)."""
    from scipy import stats

    study = run.study
    if len(levels) < 2:
        return math.nan
    time_col, status_col = _columns(outcome)
    work = frame.copy()
    terms, products = [], []
    for i, level in enumerate(levels[1:], start=1):
        indicator = (work[covariate] == level).astype(float)
        work[f"_level{i}"] = indicator
        work[f"_exposed_x_level{i}"] = indicator * work["exposed"].astype(float)
        terms.append(f"_level{i}")
        products.append(f"_exposed_x_level{i}")
    covariates = ["exposed", *terms, *products]
    fit: CoxResult | FineGrayResult
    try:
        with run.capture_warnings(f"subgroup interaction ({covariate})"):
            if _is_competing(study, outcome):
                kwargs = {k: v for k, v in options.items() if k in ("cluster", "weights") and v is not None}
                fit = fine_gray(work, time_col, status_col, covariates, cause=1, censor_code=0, **kwargs)
            else:
                fit = cox(
                    work,
                    time_col,
                    status_col,
                    covariates,
                    ties=study.analysis.ties,
                    weights=options.get("weights"),
                    cluster=options.get("cluster"),
                    robust=options.get("robust"),
                )
        beta = fit.summary.loc[products, "coef"].to_numpy(dtype=float)
        cov = fit.vcov.loc[products, products].to_numpy(dtype=float)
        statistic = float(beta @ np.linalg.solve(cov, beta))
    except (*_MODEL_ERRORS, KeyError) as exc:
        run.note(f"subgroup {covariate}: interaction test not computed ({exc})")
        return math.nan
    if not math.isfinite(statistic):
        return math.nan
    return float(stats.chi2.sf(statistic, df=len(products)))
