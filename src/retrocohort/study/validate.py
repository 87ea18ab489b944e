"""``retrocohort validate``: does the study's design recover a known effect on the user's own data?

A plasmode simulation of the whole study (docs/validate.md): the cohort is
built once; exposure, outcome, competing-event and censoring models are
fitted to it (:mod:`retrocohort.designs.plasmode`); every replicate keeps the
covariates, draws new exposures and outcomes with a planted (s)HR, and runs
the study's own analysis on the simulated frame
(:func:`retrocohort.study.pipeline.analyse_cohort`: propensity score,
matching and every estimate the study reports). Per estimate the replicates
give bias, empirical against reported SE, 95% CI coverage with its Monte
Carlo SE, power and the share of replicates where the model was skipped.

Replicate ``r`` of effect ``e`` draws from ``SeedSequence(seed, spawn_key=(e, r))``,
so the table is the same whatever the number of processes.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from ..designs.plasmode import (
    TRIAL_ESTIMANDS,
    PlasmodeModel,
    TrialModel,
    fit_plasmode,
    fit_trial_plasmode,
    marginal_truth,
    simulate,
    simulate_trial,
    trial_truth,
)
from ..errors import InputError, NotEstimableError
from ..spec import Study
from ..spec.study import trial_outcomes
from .pipeline import (
    _MODEL_ERRORS,
    ENGINES,
    MIN_EVENTS_PER_ARM,
    MIN_PATIENTS_PER_ARM,
    _check_replicates,
    _check_study,
    _columns,
    analyse_cohort,
    package_versions,
    trial_frame,
    trial_options,
    trial_study,
)

#: ``progress(stage, done, total)``: stage "cohort", "models" (done 0 then 1) and "replicates".
ValidateProgress = Callable[[str, int, int], None]

DEFAULT_EFFECTS: tuple[float, ...] = (1.0, 0.7)
MAX_REPLICATES = 100_000
#: Counterfactual patients per arm for the marginal truth (plasmode.marginal_truth).
MARGINAL_TRUTH_SIZE = 20_000
#: Share of replicates above which a skipped model is reported loudly.
MOSTLY_SKIPPED = 0.5
#: The emulated trial's estimates in the table: model name -> estimand of clone_censor_weight.
TRIAL_MODELS = {f"trial_{name}": name for name in TRIAL_ESTIMANDS}

SUMMARY_COLUMNS = (
    "effect",
    "outcome",
    "model",
    "population",
    "label",
    "truth_kind",
    "truth",
    "truth_conditional",
    "replicates",
    "fitted",
    "skipped_share",
    "mean_estimate",
    "bias_log",
    "bias_log_mcse",
    "bias_ratio",
    "empirical_se",
    "mean_reported_se",
    "se_ratio",
    "coverage",
    "coverage_mcse",
    "power",
    "n_mean",
    "n_min",
    "n_max",
    "skip_reason",
    "scale",
)


@dataclass(frozen=True)
class ValidationResult:
    """The design check of one study on one data set.

    Attributes
    ----------
    study : the study checked.
    summary : DataFrame, one row per (effect, outcome, model, population), columns ``SUMMARY_COLUMNS``:
        ``truth`` is the value the estimate is judged against (``truth_kind``: "conditional" for
        adjusted models, "marginal (ATT)" for unadjusted matched and IPTW estimates);
        ``bias_log`` = mean log estimate - log truth (fitted replicates), ``bias_ratio`` =
        exp(bias_log); ``empirical_se`` = SD of the log estimates, ``mean_reported_se`` = mean SE
        implied by the reported CIs; ``coverage`` = share of CIs holding the truth with its Monte
        Carlo SE; ``power`` = share of CIs excluding 1; ``skipped_share`` = share of replicates
        without the estimate; ``n_*`` = patients in the estimate's population over fitted replicates
        (exact, in memory; outputs suppress small values).
    replicates : DataFrame, one row per (effect, replicate, estimate): estimate, lower, upper, se_log,
        skipped, reason, n, matched_exposed, matched_comparator (in memory only, never written).
    effects : planted values.
    n_replicates : replicates per effect.
    seed : the root seed (drawn and recorded when none was given).
    observed : the study's estimates on the real data (outcome, model, population -> estimate).
    cohort_counts : eligible, exposed, comparator and events per outcome of the real cohort (exact).
    fitted_effects : the exposure's (s)HR of each outcome model fitted to the real cohort.
    notes : loud findings (models skipped in most replicates) and the simulation's own notes.
    options : processes, marginal truth size, conf level.
    provenance : versions, timings.
    """

    study: Study
    summary: pd.DataFrame
    replicates: pd.DataFrame
    effects: tuple[float, ...]
    n_replicates: int
    seed: int
    observed: dict[str, float]
    cohort_counts: dict[str, int]
    fitted_effects: dict[str, float]
    notes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def mostly_skipped(self) -> pd.DataFrame:
        """Rows of ``summary`` whose model was skipped in more than half of the replicates."""
        return self.summary.loc[self.summary["skipped_share"] > MOSTLY_SKIPPED]


# --------------------------------------------------------------------------- checks


def check_effects(effects: Sequence[float]) -> tuple[float, ...]:
    """The planted values as floats, or an InputError naming the bad one."""
    if isinstance(effects, (int, float)):
        effects = (effects,)
    out = []
    for value in effects:
        ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or float(value) <= 0:
            raise InputError(
                f"effect {value!r}: a planted hazard ratio must be a finite number > 0 (1 is no effect; "
                "e.g. --effect 1 --effect 0.7)"
            )
        out.append(float(value))
    if not out:
        raise InputError("no effect to plant: give at least one hazard ratio > 0 (e.g. --effect 0.7)")
    return tuple(dict.fromkeys(out))


def check_replicates(replicates: Any) -> int:
    """The number of replicates, or an InputError (below 1, not whole, or absurdly many)."""
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)):
        raise InputError(f"replicates {replicates!r}: give a whole number from 1 to {MAX_REPLICATES:,}")
    if not 1 <= int(replicates) <= MAX_REPLICATES:
        raise InputError(
            f"replicates {int(replicates)}: give a whole number from 1 to {MAX_REPLICATES:,} "
            "(1,000 gives coverage to within about 1.4 percentage points)"
        )
    return int(replicates)


def _check_simulable(study: Study, data: pd.DataFrame) -> dict[str, int]:
    """Counts of the real cohort; an InputError when it is too small to fit the simulation's models."""
    n1 = int((data["exposed"] == 1).sum())
    n0 = int((data["exposed"] == 0).sum())
    counts = {"eligible": len(data), "exposed": n1, "comparator": n0}
    problems = []
    if n1 < MIN_PATIENTS_PER_ARM or n0 < MIN_PATIENTS_PER_ARM:
        problems.append(
            f"{n1} exposed and {n0} comparator patients (at least {MIN_PATIENTS_PER_ARM} per arm are needed)"
        )
    for name in study.outcomes:
        events = int((data[_columns(name)[1]] == 1).sum())
        counts[f"events_{name}"] = events
        needed = 2 * MIN_EVENTS_PER_ARM
        if events < needed:
            problems.append(f"{events} {name} events (at least {needed} are needed to fit its outcome model)")
    if problems:
        raise NotEstimableError(
            f"the eligible cohort of study {study.study.name!r} is too small to simulate from: it has "
            + "; ".join(problems)
            + ". Run the design check on a larger extract (or relax the criteria)."
        )
    return counts


# --------------------------------------------------------------------------- replicates


@dataclass(frozen=True)
class _Trial:
    """One target-trial outcome of the replicates: its frame, fitted model and the analysis's options."""

    outcome: str
    frame: pd.DataFrame
    model: TrialModel
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class _State:
    study: Study
    frame: pd.DataFrame
    attrition: pd.DataFrame
    model: PlasmodeModel
    effects: tuple[float, ...]
    seed: int
    trials: tuple[_Trial, ...] = ()
    trial_replicates: int | None = None


_WORKER: _State | None = None


def _init_worker(state: _State) -> None:
    global _WORKER
    _WORKER = state
    warnings.simplefilter("ignore")


def _run_chunk(tasks: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return [row for e, r in tasks for row in _replicate(_WORKER, e, r)]


def _se_log(lower: float, upper: float, conf: float) -> float:
    from scipy.stats import norm

    return (math.log(upper) - math.log(lower)) / (2 * float(norm.ppf(0.5 + conf / 2)))


def _replicate(state: _State, effect_index: int, replicate: int) -> list[dict[str, Any]]:
    """One replicate: simulate, run the study's analysis, one row per estimate the study reports."""
    rng = np.random.default_rng(np.random.SeedSequence(state.seed, spawn_key=(effect_index, replicate)))
    frame = simulate(state.model, state.frame, state.effects[effect_index], rng)
    cohort = SimpleNamespace(attrition=state.attrition, data=frame, notes=())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyse_cohort(cohort, state.study, lean=True)
    conf = state.study.analysis.conf_level
    base = {
        "effect_index": effect_index,
        "replicate": replicate,
        "matched_exposed": result.counts["matched_exposed"],
        "matched_comparator": result.counts["matched_comparator"],
    }
    rows = []
    for est in result.estimates:
        rows.append(
            base
            | {
                "outcome": est.outcome,
                "model": est.model,
                "population": est.population,
                "label": est.label,
                "estimate": est.estimate,
                "lower": est.lower,
                "upper": est.upper,
                "se_log": _se_log(est.lower, est.upper, conf),
                "n": est.n,
                "skipped": False,
                "reason": "",
            }
        )
    rows.extend(_trial_rows(state, effect_index, replicate, rng, base, conf))
    for skip in result.skipped:
        rows.append(
            base
            | {
                "outcome": skip.outcome,
                "model": skip.model,
                "population": skip.population,
                "label": "",
                "estimate": math.nan,
                "lower": math.nan,
                "upper": math.nan,
                "se_log": math.nan,
                "n": -1,
                "skipped": True,
                "reason": skip.reason,
            }
        )
    return rows


def _trial_rows(
    state: _State, effect_index: int, replicate: int, rng: np.random.Generator, base: dict[str, Any], conf: float
) -> list[dict[str, Any]]:
    """The emulated trial on this replicate's simulated trial frame(s): one row per estimand.

    The start times and outcomes are drawn from ``rng`` after the study's own simulation, so adding
    the trial does not change the other estimates of a replicate. Without ``trial_replicates`` the
    point estimates only (no interval: coverage and power are not computed); with it, the percentile
    bootstrap of ``trial_replicates`` replicates, seeded from the replicate's own seed.
    """
    from scipy.stats import norm

    from ..designs import bootstrap, clone_censor_weight

    rows: list[dict[str, Any]] = []
    z = float(norm.ppf(0.5 + conf / 2))
    for trial in state.trials:
        frame = simulate_trial(trial.model, trial.frame, state.effects[effect_index], rng)
        try:
            if state.trial_replicates is None:
                point = clone_censor_weight(frame, conf_level=conf, cox_variance=False, **trial.kwargs).estimates
                intervals = None
            else:
                seed = int(
                    np.random.SeedSequence(state.seed, spawn_key=(effect_index, replicate, 1)).generate_state(1)[0]
                )
                boot = bootstrap(frame, n_replicates=state.trial_replicates, seed=seed, conf_level=conf, **trial.kwargs)
                point, intervals = boot.point.estimates, boot.intervals
        except _MODEL_ERRORS as exc:  # a trial that cannot be estimated on this replicate is a skip, as in run
            for model in TRIAL_MODELS:
                rows.append(
                    base
                    | {
                        "outcome": trial.outcome,
                        "model": model,
                        "population": "trial",
                        "label": "",
                        "estimate": math.nan,
                        "lower": math.nan,
                        "upper": math.nan,
                        "se_log": math.nan,
                        "n": -1,
                        "skipped": True,
                        "reason": f"target trial not estimated: {exc}",
                    }
                )
            continue
        for model, estimand in TRIAL_MODELS.items():
            lower = upper = se = math.nan
            if intervals is not None and estimand in intervals.index:
                bounds = intervals.loc[estimand, ["lower", "upper"]].to_numpy(dtype=float)
                lower, upper = float(bounds[0]), float(bounds[1])
                if estimand == "risk_difference":
                    se = (upper - lower) / (2 * z)
                elif lower > 0 and upper > 0:
                    se = (math.log(upper) - math.log(lower)) / (2 * z)
            rows.append(
                base
                | {
                    "outcome": trial.outcome,
                    "model": model,
                    "population": "trial",
                    "label": f"target trial: {estimand.replace('_', ' ')} (start within the window vs not)",
                    "estimate": float(point[estimand]),
                    "lower": lower,
                    "upper": upper,
                    "se_log": se,
                    "n": len(frame),
                    "skipped": False,
                    "reason": "",
                }
            )
    return rows


def _check_seed(seed: Any) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed {seed!r}: give a whole number >= 0 (or leave it out to draw one)")


def _processes(processes: int | None) -> int:
    if processes is not None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise InputError(f"processes {processes!r}: give a whole number >= 1 (or leave it out for all cores)")
        return processes
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _run_replicates(
    state: _State, n_replicates: int, processes: int, progress: ValidateProgress | None
) -> pd.DataFrame:
    tasks = [(e, r) for e in range(len(state.effects)) for r in range(n_replicates)]
    total = len(tasks)
    rows: list[dict[str, Any]] = []
    if progress is not None:
        progress("replicates", 0, total)
    if processes == 1 or total == 1:
        _init_worker(state)
        try:
            for done, task in enumerate(tasks, start=1):
                rows.extend(_replicate(state, *task))
                if progress is not None:
                    progress("replicates", done, total)
        finally:
            _init_worker_reset()
    else:
        # Chunks small enough for a smooth progress bar, large enough that pickling stays cheap.
        size = max(1, min(10, total // (processes * 8) or 1))
        chunks = [tasks[i : i + size] for i in range(0, total, size)]
        # fork where there is one: workers start in milliseconds with the compiled kernels and the
        # state already in memory, and a user's script needs no `if __name__ == "__main__"` guard.
        # The workers never touch the parent's DuckDB connection (the cohort is built before).
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        done = 0
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=processes, mp_context=context, initializer=_init_worker, initargs=(state,)
        ) as pool:
            futures = {pool.submit(_run_chunk, chunk): len(chunk) for chunk in chunks}
            try:
                for future in concurrent.futures.as_completed(futures):
                    rows.extend(future.result())
                    done += futures[future]
                    if progress is not None:
                        progress("replicates", done, total)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    table = pd.DataFrame(rows)
    # The same order whatever the number of processes (chunks finish in any order).
    return table.sort_values(
        ["effect_index", "replicate", "outcome", "model", "population"], kind="stable"
    ).reset_index(drop=True)


def _init_worker_reset() -> None:
    global _WORKER
    _WORKER = None


# --------------------------------------------------------------------------- summary


def _truth_kind(model: str, population: str) -> str:
    """Adjusted models estimate the conditional (s)HR; unadjusted matched / IPTW (ATT) ones a marginal one."""
    if model in TRIAL_MODELS:
        return "trial strategies (counterfactual)"
    return "conditional" if model.endswith("_adjusted") else "marginal (ATT)"


def _summarise(
    table: pd.DataFrame,
    effects: tuple[float, ...],
    n_replicates: int,
    marginal: list[dict[str, float]],
    keys: list[tuple[str, str, str]],
    trial_truths: list[dict[str, dict[str, float]]] | None = None,
) -> pd.DataFrame:
    out = []
    for e, effect in enumerate(effects):
        this = table.loc[table["effect_index"] == e] if len(table) else table
        for outcome, model, population in keys:
            rows = this.loc[
                (this["outcome"] == outcome) & (this["model"] == model) & (this["population"] == population)
            ]
            fitted = rows.loc[~rows["skipped"].astype(bool)]
            kind = _truth_kind(model, population)
            truth = effect if kind == "conditional" else marginal[e].get(outcome, effect)
            # The trial's risk difference is judged on its own scale (it can be <= 0), the ratios on the log.
            difference = model == "trial_risk_difference"
            if model in TRIAL_MODELS:
                truth = (trial_truths[e] if trial_truths else {}).get(outcome, {}).get(TRIAL_MODELS[model], math.nan)
            k = len(fitted)
            reasons = rows.loc[rows["skipped"].astype(bool), "reason"]
            record: dict[str, Any] = {
                "effect": effect,
                "outcome": outcome,
                "model": model,
                "population": population,
                "label": fitted["label"].iloc[0] if k else "",
                "truth_kind": kind,
                "truth": truth,
                "truth_conditional": effect,
                "replicates": n_replicates,
                "fitted": k,
                # a replicate without a row for the estimate (a stage skipped upstream) counts as skipped
                "skipped_share": 1.0 - k / n_replicates,
                "skip_reason": str(reasons.value_counts().index[0]) if len(reasons) else "",
                "scale": "difference" if difference else "log",
            }
            if k:
                raw = fitted["estimate"].to_numpy(float)
                with np.errstate(divide="ignore"):  # a ratio of 0 (no event in an arm) gives -inf, kept
                    log_est = raw if difference else np.log(raw)
                lower = fitted["lower"].to_numpy(float)
                upper = fitted["upper"].to_numpy(float)
                se = fitted["se_log"].to_numpy(float)
                bias = float(log_est.mean() - (truth if difference else math.log(truth)))
                emp = float(log_est.std(ddof=1)) if k > 1 else math.nan
                # No interval (the trial's point estimates only): coverage and power are not defined.
                has_ci = bool(np.isfinite(lower).all() and np.isfinite(upper).all())
                cover = float(((lower <= truth) & (truth <= upper)).mean()) if has_ci else math.nan
                null = 0.0 if difference else 1.0
                n = fitted["n"].to_numpy(float)
                record |= {
                    "mean_estimate": float(log_est.mean() if difference else math.exp(log_est.mean())),
                    "bias_log": bias,
                    "bias_log_mcse": emp / math.sqrt(k) if k > 1 else math.nan,
                    "bias_ratio": math.nan if difference else float(math.exp(bias)),
                    "empirical_se": emp,
                    "mean_reported_se": float(se.mean()) if has_ci else math.nan,
                    "se_ratio": float(se.mean() / emp) if has_ci and k > 1 and emp > 0 else math.nan,
                    "coverage": cover,
                    "coverage_mcse": math.sqrt(cover * (1 - cover) / k) if has_ci else math.nan,
                    "power": float(((upper < null) | (lower > null)).mean()) if has_ci else math.nan,
                    "n_mean": float(n.mean()),
                    "n_min": int(n.min()),
                    "n_max": int(n.max()),
                }
            out.append(record)
    summary = pd.DataFrame(out)
    return summary.reindex(columns=list(SUMMARY_COLUMNS))


def _estimate_keys(study: Study, observed: Any, table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Every (outcome, model, population) the study reports: the observed run's and the replicates' own.

    Taken from the results, not from a list kept here, so an estimate the pipeline adds later (a
    target-trial line) is checked without a change to this module. Subgroup levels are not estimates.
    """
    keys: list[tuple[str, str, str]] = []
    for est in observed.estimates:
        keys.append((est.outcome, est.model, est.population))
    for skip in observed.skipped:
        if skip.outcome in study.outcomes and skip.model.startswith(("cox_", "fine_gray_")):
            keys.append((skip.outcome, skip.model, skip.population))
    if len(table):
        fitted = table.loc[~table["skipped"].astype(bool), ["outcome", "model", "population"]]
        keys.extend((str(o), str(m), str(p)) for o, m, p in fitted.drop_duplicates().itertuples(index=False))
        # the emulated trial's estimates even when never fitted: a trial skipped everywhere is reported
        trial = table.loc[table["population"] == "trial", ["outcome", "model", "population"]]
        keys.extend((str(o), str(m), str(p)) for o, m, p in trial.drop_duplicates().itertuples(index=False))
    order = {name: i for i, name in enumerate(study.outcomes)}
    populations = {"matched": 0, "full": 1, "iptw": 2}
    unique = list(dict.fromkeys(keys))
    return sorted(unique, key=lambda k: (order.get(k[0], 99), populations.get(k[2], 9), k[1]))


# --------------------------------------------------------------------------- the emulated trial


def without_trial(study: Study) -> Study:
    """``study`` without ``[analysis.target_trial]``: the landmark analysis every replicate runs."""
    if study.analysis.target_trial is None:
        return study
    return study.model_copy(update={"analysis": study.analysis.model_copy(update={"target_trial": None})})


def _fit_trials(
    study: Study, cohort: Any, trial_cohort: Any, effects: tuple[float, ...], seed: int, size: int
) -> tuple[tuple[_Trial, ...], list[dict[str, dict[str, float]]], list[str]]:
    """The trial outcomes to simulate (fitted models, options), their truths per effect, and notes."""
    names = trial_outcomes(study)
    truths: list[dict[str, dict[str, float]]] = [{} for _ in effects]
    if not names:
        return (), truths, []
    trial = study.analysis.target_trial
    assert trial is not None
    notes: list[str] = []
    if trial_cohort is None and not trial.not_applied:
        trial_cohort = cohort
    if trial_cohort is None:
        notes.append(
            f"target trial not checked: its cohort (the study without {list(trial.not_applied)}) was not given "
            "(validate builds it; validate_cohort takes trial_cohort=)"
        )
        return (), truths, notes
    if trial.time_varying:
        notes.append(
            f"target trial: the time-varying covariates {list(trial.time_varying)} are not simulated; the "
            "replicates' censoring model uses the baseline covariates only"
        )
    data = trial_cohort.data.reset_index(drop=True)
    out: list[_Trial] = []
    for index, name in enumerate(names):
        options = trial_options(study, name)
        frame, covariates, _kept, _ = trial_frame(study, name, data)
        keys = (
            "grace_days",
            "horizon_days",
            "censoring_model",
            "interval_days",
            "stabilised",
            "truncate",
            "competing",
        )
        kwargs: dict[str, Any] = {k: options[k] for k in keys}
        kwargs.update(
            start_time="exposure_start_days",
            time="time",
            status="status",
            covariates=covariates,
            min_ess=options["min_ess"],
        )
        try:
            model = fit_trial_plasmode(
                frame,
                covariates=covariates,
                grace_days=options["grace_days"],
                horizon_days=options["horizon_days"],
                ties=study.analysis.ties,
                competing=bool(options["competing"]),
            )
        except InputError as exc:
            notes.append(f"target trial, {name}: not checked ({exc})")
            continue
        notes.extend(f"target trial, {name}: {text}" for text in model.notes)
        out.append(_Trial(outcome=name, frame=frame, model=model, kwargs=kwargs))
        for e, effect in enumerate(effects):
            # its own stream, apart from the replicates' (e, r) and the marginal truth's (10**6 + e)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 * 10**6 + e, index)))
            truths[e][name] = trial_truth(
                model,
                effect,
                rng,
                size,
                stabilised=bool(options["stabilised"]),
                interval_days=float(options["interval_days"]),
            )
    return tuple(out), truths, notes


# --------------------------------------------------------------------------- entry points


def validate_cohort(
    cohort: Any,
    study: Study,
    *,
    replicates: int = 1000,
    effects: Sequence[float] = DEFAULT_EFFECTS,
    seed: int | None = None,
    processes: int | None = None,
    progress: ValidateProgress | None = None,
    marginal_size: int = MARGINAL_TRUTH_SIZE,
    trial_cohort: Any = None,
    trial_replicates: int | None = None,
) -> ValidationResult:
    """The design check on an already-built cohort (``.data``, ``.attrition``; as :func:`analyse_cohort`).

    ``trial_cohort``: the target trial's cohort (built for :func:`~retrocohort.study.pipeline.trial_study`;
    None: ``cohort`` itself when the study leaves no criterion out of the trial, else the trial is not
    checked and a note says so). See :func:`validate` for the other parameters and the result.
    """
    _check_study(study)
    _check_replicates(trial_replicates)
    effects = check_effects(effects)
    n_replicates = check_replicates(replicates)
    n_processes = _processes(processes)
    _check_seed(seed)
    root_seed = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(2, np.uint64)[0] % 2**63)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    if progress is not None:
        progress("models", 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The study's own analysis without its emulated trial: the trial is simulated on its own cohort
        # (below), and analyse_cohort would otherwise bootstrap it (the study's replicates) every time.
        observed = analyse_cohort(cohort, without_trial(study), lean=True)
    data = observed.cohort.drop(columns=["ps", "ps_logit", "iptw_weight"], errors="ignore").reset_index(drop=True)
    counts = _check_simulable(study, data)
    model = fit_plasmode(
        data,
        outcomes={name: oc.competing is not None for name, oc in study.outcomes.items()},
        exposure_covariates=study.propensity_covariates,
        outcome_covariates=study.adjustment_set,
        link=study.analysis.link,
        ties=study.analysis.ties,
    )
    # The truth has its own stream (spawn_key 10**6 + e), apart from every replicate (e, r).
    marginal = [
        marginal_truth(
            model,
            effect,
            np.random.default_rng(np.random.SeedSequence(root_seed, spawn_key=(10**6 + e,))),
            marginal_size,
        )
        for e, effect in enumerate(effects)
    ]
    trials, trial_truths, trial_notes = _fit_trials(study, cohort, trial_cohort, effects, root_seed, marginal_size)
    timings["models"] = round(time.perf_counter() - started, 3)
    if progress is not None:
        progress("models", 1, 1)

    state = _State(
        study=without_trial(study),
        frame=data,
        attrition=observed.attrition,
        model=model,
        effects=effects,
        seed=root_seed,
        trials=trials,
        trial_replicates=trial_replicates,
    )
    t0 = time.perf_counter()
    table = _run_replicates(state, n_replicates, n_processes, progress)
    timings["replicates"] = round(time.perf_counter() - t0, 3)
    keys = _estimate_keys(study, observed, table)
    summary = _summarise(table, effects, n_replicates, marginal, keys, trial_truths)

    notes = list(model.notes) + trial_notes
    study_b = study.analysis.target_trial.replicates if study.analysis.target_trial is not None else None
    if trials and trial_replicates is not None and study_b is not None and trial_replicates < study_b:
        notes.append(
            f"target trial: its intervals come from {trial_replicates} bootstrap replicates per validation "
            f"replicate, the study's from {study_b}; a percentile interval from fewer replicates is noisier "
            f"and tends to cover less: read the coverage as that of a {trial_replicates}-replicate interval"
        )
    for record in summary.to_dict(orient="records"):
        share = float(record["skipped_share"])
        if int(record["fitted"]) == 0:
            notes.append(
                f"{record['outcome']} {record['model']} ({record['population']}), planted {record['effect']:g}: "
                f"never fitted in {n_replicates} replicates ({record['skip_reason'] or 'not reported'}): the design "
                "cannot estimate it at this size"
            )
        elif share > MOSTLY_SKIPPED:
            notes.append(
                f"{record['outcome']} {record['model']} ({record['population']}), planted {record['effect']:g}: "
                f"skipped in {share:.0%} of replicates ({record['skip_reason'] or 'not reported'}); its averages "
                f"rest on the remaining {1 - share:.0%} and do not describe the design"
            )
    table = table.assign(effect=[effects[i] for i in table["effect_index"]]) if len(table) else table
    return ValidationResult(
        study=study,
        summary=summary,
        replicates=table,
        effects=effects,
        n_replicates=n_replicates,
        seed=root_seed,
        observed={f"{e.outcome}/{e.model}/{e.population}": e.estimate for e in observed.estimates},
        cohort_counts=counts,
        fitted_effects={name: m.fitted_effect for name, m in model.outcomes.items()},
        notes=tuple(notes),
        options={
            "processes": n_processes,
            "marginal_truth_size": marginal_size,
            "conf_level": study.analysis.conf_level,
            "outcome_covariates": list(model.outcome_covariates),
            "exposure_covariates": list(model.exposure_covariates),
            "trial_outcomes": [t.outcome for t in trials],
            "trial_replicates": trial_replicates,
            "trial_truth": {
                f"{effects[e]:g}": {
                    name: {k: (v if math.isfinite(v) else None) for k, v in values.items()}
                    for name, values in truths.items()
                }
                for e, truths in enumerate(trial_truths)
            },
        },
        provenance={
            "study_fingerprint": study.fingerprint,
            "packages": package_versions(),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "seconds": timings | {"total": round(time.perf_counter() - started, 3)},
        },
    )


def validate(
    study: Study,
    source: Any,
    *,
    replicates: int = 1000,
    effects: Sequence[float] = DEFAULT_EFFECTS,
    seed: int | None = None,
    processes: int | None = None,
    progress: ValidateProgress | None = None,
    engine: str = "duckdb",
    trial_replicates: int | None = None,
) -> ValidationResult:
    """Plasmode design check: does the study's analysis recover a planted effect on this data?

    Parameters
    ----------
    study : Study
        The design (:func:`retrocohort.load_study`).
    source : str, Path or ``retrocohort.sources.MimicIV``
        The MIMIC-IV-layout data the study runs on; the cohort is built once from it.
    replicates : int
        Simulated data sets per planted effect (1 to 100,000; default 1,000: coverage to within
        about +-1.4 percentage points).
    effects : sequence of float
        Planted conditional hazard ratios (Cox outcomes) / subdistribution hazard ratios
        (competing-risk outcomes), each finite and > 0. Default (1.0, 0.7).
    seed : int, optional
        Root seed; replicate ``r`` of effect ``e`` uses ``SeedSequence(seed, spawn_key=(e, r))``,
        so results do not depend on ``processes``. Drawn (and recorded) when omitted.
    processes : int, optional
        Worker processes (default: every core available to this process).
    progress : callable, optional
        ``progress(stage, done, total)``; stages "cohort", "models", "replicates".
    engine : {"duckdb", "spark"}
        Engine for the cohort extraction.
    trial_replicates : int, optional
        For a study with ``[analysis.target_trial]``: bootstrap replicates of the emulated trial inside
        each validation replicate (``replicates x trial_replicates`` clone-censor-weight fits per
        effect). None (default): the trial's point estimates only (bias, empirical SE); its intervals'
        coverage is then not checked.

    Returns
    -------
    ValidationResult
        Frozen; ``summary`` has one row per planted effect and estimate.

    Raises
    ------
    RetrocohortError
        Bad options (effect <= 0, nan or inf; replicates outside 1..100,000), a cohort too small
        to simulate from, an outcome with no events, or the errors of :func:`run_study`.
    """
    from ..cohort.builder import build_cohort
    from ..sources import MimicIV

    _check_study(study)
    check_effects(effects)
    check_replicates(replicates)
    _check_replicates(trial_replicates)
    _processes(processes)
    _check_seed(seed)
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} is not supported; choose one of {list(ENGINES)}")
    if progress is not None:
        progress("cohort", 0, 1)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isdir(source):
            raise InputError(f"data folder {str(source)!r} does not exist or is not a folder")
        source = MimicIV(os.fspath(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = build_cohort(study, source, engine=engine)  # type: ignore[arg-type]
        trial = study.analysis.target_trial
        trial_cohort = None
        if trial_outcomes(study) and trial is not None and trial.not_applied:
            # the emulated trial's own cohort: eligibility at the index only, as run_study builds it
            trial_cohort = build_cohort(trial_study(study), source, engine=engine)  # type: ignore[arg-type]
    if progress is not None:
        progress("cohort", 1, 1)
    return validate_cohort(
        cohort,
        study,
        replicates=replicates,
        effects=effects,
        seed=seed,
        processes=processes,
        progress=progress,
        trial_cohort=trial_cohort,
        trial_replicates=trial_replicates,
    )


# --------------------------------------------------------------------------- outputs


def write_validation_outputs(
    result: ValidationResult, out_dir: str | os.PathLike[str], force: bool = False, lock: Any = None
) -> Any:
    """Write ``design_check.csv``, ``design_check.json``, the figure and ``report.html`` into ``out_dir``.

    The same safe writing as :func:`retrocohort.study.write_outputs`: a partial folder renamed into
    place whole, never over a folder this tool did not write, under the folder's lock.

    Parameters
    ----------
    result : ValidationResult
    out_dir : folder to create; must not exist unless ``force`` (and then only an earlier output).
    force : replace an earlier output folder.
    lock : the held :func:`~retrocohort.study.outputs.output_lock` of ``out_dir`` (the CLI holds it for the
        whole run); None takes it for the writing only.

    Returns
    -------
    Path of the written folder.
    """
    import datetime as _dt
    import errno
    import json
    import shutil
    from pathlib import Path

    from ..report import figures as report_figures
    from ..report.design_check import (
        design_check_document,
        design_check_figure,
        design_check_table,
        render_design_check_html,
    )
    from .outputs import (
        RUN_MARKER,
        OutputNotWritableError,
        _output_path,
        _put_in_place,
        check_output_folder,
        output_lock,
    )

    given = Path(out_dir)
    if lock is None:
        check_output_folder(given, force)
        with output_lock(given) as own:
            check_output_folder(given, force)
            return write_validation_outputs(result, given, force=force, lock=own)
    out = _output_path(given)
    if not lock.held or lock.out != out:
        raise ValueError(f"write_validation_outputs: the lock passed is not a held lock of {str(out)!r}")
    partial = out.parent / f".{out.name}.partial-{lock.run_id}"
    partial.mkdir()
    try:
        (partial / RUN_MARKER).write_text(
            json.dumps({"run_id": lock.run_id, "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
            + "\n",
            encoding="utf-8",
        )
        design_check_table(result).to_csv(partial / "design_check.csv", index=False)
        document = design_check_document(result)
        (partial / "design_check.json").write_text(
            json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        figure = design_check_figure(result)
        report_figures.save_figure(figure, partial / "figures" / "design_check")
        # report.html last: its presence marks a complete folder.
        (partial / "report.html").write_text(render_design_check_html(result, figure), encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise OutputNotWritableError(
                f"could not write the design check into {str(out.parent)!r}: {exc.strerror}; nothing was left "
                "behind. Free some space or choose another --out, then rerun."
            ) from None
        raise
    try:
        _put_in_place(partial, out, lock, force)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return given
