"""The one place that wires every stage of a study, driven by a :class:`~retrocohort.study.Study`.

Stages, in order (each reported to the ``progress`` callback)::

    cohort       extract the analysis frame and the attrition log
    propensity   propensity score (study.propensity)
    matching     k:1 nearest-neighbour matching on the (logit) propensity score
    balance      SMDs and Table 1, before and after matching
    death        Kaplan-Meier by arm + log-rank, Cox (matched; unadjusted and
                 adjusted, variance clustered on matched set), PH test
    krt          cumulative incidence of KRT liberation by arm + Gray's test,
                 Fine-Gray (matched; clustered on matched set)
    sensitivity  Cox and Fine-Gray in the full eligible cohort, IPTW (ATT)
                 Cox and Fine-Gray with robust variance, E-value of the primary HR
    provenance   hashes of the study file and of the data, package versions

A model that cannot be fitted (too few patients, no events in an arm, no
exposed patients, matching that finds nobody, non-convergence) never stops
the run: it becomes a :class:`~retrocohort.study.results.SkippedModel` with
the reason, and the attrition, counts and descriptive tables are still
produced. Errors that are the user's to fix (a missing table, a bad study
file) are raised as :class:`~retrocohort.errors.RetrocohortError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
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

from ..errors import InputError, RetrocohortError
from ..matching import balance, match_nearest, propensity_score, table_one
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
from .results import Estimate, Outcome, Population, SkippedModel, StudyResult
from .spec import KNOWN_COVARIATES, Study, default_study

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")

#: (key, label) of every stage, in the order they run; the CLI shows the labels.
STAGES: tuple[tuple[str, str], ...] = (
    ("cohort", "Extracting the cohort"),
    ("propensity", "Propensity score"),
    ("matching", "Matching"),
    ("balance", "Balance and Table 1"),
    ("death", "90-day mortality: Kaplan-Meier, log-rank, Cox"),
    ("krt", "KRT liberation: cumulative incidence, Gray, Fine-Gray"),
    ("sensitivity", "Sensitivity analyses and E-value"),
    ("provenance", "Provenance"),
)

#: ``progress(stage_key, label, state)`` with state "start" or "done".
ProgressCallback = Callable[[str, str, str], None]

# Errors a model fit raises for reasons of the data (not bugs): the model is
# recorded as skipped with the message. Anything else propagates.
_MODEL_ERRORS = (RetrocohortError, ValueError, ArithmeticError, np.linalg.LinAlgError)

_DEATH = ("death_time", "death")
_KRT = ("krt_time", "krt_status")
_CATEGORICAL = ("sex", "sepsis", "vasopressor", "ventilation")
# Table 1 describes every baseline covariate the cohort builder provides.
_TABLE_ONE = KNOWN_COVARIATES
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

    @contextlib.contextmanager
    def stage(self, key: str) -> Iterator[None]:
        label = dict(STAGES)[key]
        if self.progress is not None:
            self.progress(key, label, "start")
        started = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - started, 3)
        if self.progress is not None:
            self.progress(key, label, "done")

    def skip(self, outcome: str, model: str, population: Population, reason: str) -> None:
        self.skipped.append(SkippedModel(outcome=outcome, model=model, population=population, reason=reason))  # type: ignore[arg-type]

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


def _outcome_name(outcome: str) -> str:
    return {"death_90d": "death", "krt_liberation_90d": "KRT liberation"}.get(outcome, outcome)


def _weights_needed(frame: pd.DataFrame, column: str = "weight") -> str | None:
    """The weight column when weights differ from 1 (so unit-weight analyses stay unweighted counts)."""
    if column in frame.columns and not np.allclose(frame[column].to_numpy(dtype=float), 1.0):
        return column
    return None


def _usable_covariates(run: _Run, frame: pd.DataFrame, covariates: Sequence[str], where: str) -> list[str]:
    """Drop covariates that are constant in ``frame`` (a model cannot estimate them) with a note."""
    kept = []
    for name in covariates:
        if frame[name].nunique(dropna=True) < 2:
            run.note(f"{where}: covariate {name!r} is constant in this population and was left out")
        else:
            kept.append(name)
    return kept


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
    frame: pd.DataFrame, event: pd.Series, outcome: str, population: str, n_terms: int
) -> str | None:
    """A reason the exposure hazard ratio cannot be estimated in ``frame``, or None."""
    n_exposed = int((frame["exposed"] == 1).sum())
    n_unexposed = int((frame["exposed"] == 0).sum())
    if n_exposed == 0 or n_unexposed == 0:
        return (
            f"the {population} cohort has {n_exposed} exposed and {n_unexposed} unexposed patients; "
            "a comparison needs both arms"
        )
    e1, e0 = _arm_events(frame, event)
    what = _outcome_name(outcome)
    if e1 == 0 or e0 == 0:
        arm = "exposed" if e1 == 0 else "unexposed"
        return (
            f"no {what} events among the {arm} patients of the {population} cohort "
            f"(events: {e1} exposed, {e0} unexposed): the hazard ratio is not estimable"
        )
    if e1 + e0 <= n_terms:
        return (
            f"too few {what} events ({e1 + e0}) for a model with {n_terms} terms in the {population} cohort"
        )
    return None


#: Minimum information for an exposure hazard ratio (docs/study-file.md, "Minimum information"):
#: patients per arm (for a weighted fit, Kish's effective sample size per arm) and events per arm.
MIN_PATIENTS_PER_ARM = 10
MIN_EVENTS_PER_ARM = 5


def _minimum_information(
    frame: pd.DataFrame, event: pd.Series, outcome: str, population: str, weights: str | None = None
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
    what = _outcome_name(outcome)
    exposed = frame["exposed"].to_numpy() == 1
    for arm, mask in (("exposed", exposed), ("unexposed", ~exposed)):
        if int(mask.sum()) < MIN_PATIENTS_PER_ARM:
            return (f"fewer than {MIN_PATIENTS_PER_ARM} {arm} patients in the {population} cohort: too little "
                    f"information for a hazard ratio (minimum {MIN_PATIENTS_PER_ARM} patients per arm)")
        if weights is not None:
            w = frame[weights].to_numpy(dtype=float)[mask]
            squares = float((w**2).sum())
            ess = float(w.sum() ** 2 / squares) if squares > 0 else 0.0  # all-zero weights carry nothing
            if ess < MIN_PATIENTS_PER_ARM:
                return (f"the {arm} arm of the {population} cohort has an effective sample size below "
                        f"{MIN_PATIENTS_PER_ARM} under its weights (a few patients carry most of the weight): "
                        f"too little information for a weighted hazard ratio (minimum {MIN_PATIENTS_PER_ARM})")
    e1, e0 = _arm_events(frame, event)
    for arm, count in (("exposed", e1), ("unexposed", e0)):
        if count < MIN_EVENTS_PER_ARM:
            return (f"fewer than {MIN_EVENTS_PER_ARM} {what} events among the {arm} patients of the {population} "
                    f"cohort: too little information for a hazard ratio (minimum {MIN_EVENTS_PER_ARM} events per arm)")
    competing = outcome == "krt_liberation_90d"
    time_col, status_col = _KRT if competing else _DEATH
    status = frame[status_col].to_numpy()
    direction = _exposure_separation(
        frame[time_col].to_numpy(dtype=float), event.to_numpy(dtype=bool), exposed,
        ((status != 0) & (status != 1)) if competing else None)
    if direction is not None:
        risk_set = "subdistribution risk set" if competing else "risk set"
        return (f"separation in the {population} cohort: every {what} event among the {direction[0]} patients "
                f"happened when no {direction[1]} patient was in its {risk_set}, so the partial likelihood is "
                f"monotone in the exposure: the hazard ratio runs to {direction[2]} and is not estimable")
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
    out = {}
    for name in (*_PACKAGES, *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def read_synthetic_info(data_path: Path | None) -> tuple[bool, dict[str, float] | None, str | None]:
    """(synthetic?, planted numeric truth, its description) from ``SYNTHETIC.json`` when present."""
    if data_path is None:
        return False, None, None
    marker = data_path / "SYNTHETIC.json"
    if not marker.is_file():
        return False, None, None
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{marker}: not readable JSON ({exc}); regenerate the data with `retrocohort synth`") from None
    truth = info.get("planted") or info.get("planted_truth") or info.get("truth") or {}
    planted = {
        str(k): float(v)
        for k, v in truth.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
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
    study: Study | None = None,
    engine: Engine = "duckdb",
    spark: Any = None,
    progress: ProgressCallback | None = None,
) -> StudyResult:
    """Run a whole study on a MIMIC-IV-layout source.

    Parameters
    ----------
    source : str, Path or ``retrocohort.sources.MimicIV``
        A MIMIC-IV folder (``hosp/``, ``icu/``; the synthetic generator's output
        too) or an already-built source.
    study : Study, optional
        The design; ``None`` is the flagship magnesium-in-CKRT study.
    engine : {"duckdb", "spark"}
        Engine for the cohort extraction; the analysis itself runs in NumPy.
    spark : SparkSession, optional
        For ``engine="spark"``; a local session is started when omitted.
    progress : callable, optional
        ``progress(stage_key, label, state)`` with ``state`` "start" / "done"
        for every stage of :data:`STAGES`.

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
    from ..cohort import extract
    from ..sources import MimicIV

    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} is not supported; choose one of {list(ENGINES)}")
    study = default_study() if study is None else study
    if not isinstance(study, Study):
        raise InputError(f"study must be a retrocohort Study (from load_study); got {type(study).__name__}")
    started = time.perf_counter()
    run = _Run(study=study, progress=progress)
    data_path = _data_path(source)

    with run.stage("cohort"):
        if isinstance(source, (str, Path)):
            if not Path(source).exists():
                raise InputError(f"data folder {str(source)!r} does not exist")
            source = MimicIV(source)
        with run.capture_warnings("cohort"):
            cohort = extract(source, study=study, engine=engine, spark=spark)
    return _analyse(run, cohort, data_path=data_path, engine=engine, started=started)


def analyse_cohort(
    cohort: Any,
    study: Study | None = None,
    progress: ProgressCallback | None = None,
    data_path: str | Path | None = None,
    engine: str = "duckdb",
) -> StudyResult:
    """Run every stage after the cohort extraction on an already-built cohort.

    Parameters
    ----------
    cohort : ``retrocohort.cohort.Cohort`` or any object with ``.attrition``
        (``step``, ``remaining``, ``excluded``, ``reason``), ``.data`` (the
        analysis frame of the cohort contract) and optionally ``.notes``.
    study : Study, optional (default: the flagship study).
    progress : as :func:`run_study` (stages after "cohort").
    data_path : the data folder, for the data fingerprint and ``SYNTHETIC.json``.
    engine : recorded in the provenance.

    Returns
    -------
    StudyResult
    """
    study = default_study() if study is None else study
    run = _Run(study=study, progress=progress)
    return _analyse(run, cohort, data_path=Path(data_path) if data_path is not None else None,
                    engine=engine, started=time.perf_counter())


def _analyse(run: _Run, cohort: Any, data_path: Path | None, engine: str, started: float) -> StudyResult:
    study = run.study
    for note in getattr(cohort, "notes", ()) or ():
        run.note(str(note))
    attrition = cohort.attrition.reset_index(drop=True).copy()
    data = cohort.data.reset_index(drop=True).copy()
    data, attrition = _complete_cases(run, data, attrition)

    counts: dict[str, int] = {
        "screened": int(attrition["remaining"].iloc[0]) if len(attrition) else 0,
        "eligible": int(len(data)),
        "exposed": int((data["exposed"] == 1).sum()),
        "unexposed": int((data["exposed"] == 0).sum()),
        "matched_exposed": 0,
        "matched_unexposed": 0,
    }
    dose = data.loc[data["exposed"] == 1, "mg_dose_meq"].to_numpy(dtype=float)
    dose_meq = {
        "mean": float(dose.mean()) if dose.size else float("nan"),
        "sd": float(dose.std(ddof=1)) if dose.size > 1 else float("nan"),
        "n": int(dose.size),
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
        counts["matched_unexposed"] = int((matched["exposed"] == 0).sum())

    with run.stage("balance"):
        balance_before, balance_after, table_before, table_after = _balance(run, data, matched)

    with run.stage("death"):
        km, logrank_result, ph = _death(run, matched)

    with run.stage("krt"):
        cif, gray = _krt(run, matched)

    with run.stage("sensitivity"):
        _full_cohort(run, data)
        if ps_result is not None and study.models.sensitivity_iptw:
            data = _iptw(run, data)
        elif study.models.sensitivity_iptw:
            reason = "no propensity score (see the propensity entry)"
            run.skip("death_90d", "cox_unadjusted", "iptw", reason)
            run.skip("krt_liberation_90d", "fine_gray_unadjusted", "iptw", reason)
        e_value, e_value_method = _e_value(run, matched, data)

    with run.stage("provenance"):
        synthetic, planted, _description = read_synthetic_info(data_path)
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
        }
    # After the provenance stage closed, so its own time is included.
    provenance["stage_seconds"] = dict(run.timings)
    provenance["elapsed_seconds"] = round(time.perf_counter() - started, 3)

    return StudyResult(
        study=study,
        synthetic=synthetic,
        attrition=attrition,
        counts=counts,
        dose_meq=dose_meq,
        cohort=data,
        matched=matched,
        propensity=ps_result,
        matching=match_result,
        balance_before=balance_before,
        balance_after=balance_after,
        table_one_before=table_before,
        table_one_after=table_after,
        km=km,
        logrank=logrank_result,
        cif=cif,
        gray=gray,
        ph_test=ph,
        estimates=tuple(run.estimates),
        skipped=tuple(run.skipped),
        e_value=e_value,
        planted=planted,
        provenance=provenance,
        notes=tuple(run.notes),
        e_value_method=e_value_method,
        data_checks=getattr(cohort, "data_checks", None),
    )


# --------------------------------------------------------------------------- stages


def _complete_cases(run: _Run, data: pd.DataFrame, attrition: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop patients missing a model covariate or outcome, as one attrition line (never silently)."""
    study = run.study
    needed = list(
        dict.fromkeys(
            ["exposed", *study.propensity.covariates, *study.models.adjust, *_DEATH, *_KRT]
        )
    )
    missing_columns = [c for c in needed if c not in data.columns]
    if missing_columns:
        raise InputError(
            f"the cohort's analysis frame lacks column(s) {missing_columns} that the study needs "
            f"(it has {list(data.columns)}); check the [propensity] and [models] covariates"
        )
    missing = data[needed].isna()
    drop = missing.any(axis=1)
    if drop.any():
        per_column = {c: int(n) for c, n in missing.sum().items() if n}
        detail = ", ".join(f"{c}: {n}" for c, n in per_column.items())
        reason = f"missing data on a model covariate or outcome ({detail})"
        remaining = int((~drop).sum())
        attrition = pd.concat(
            [
                attrition,
                pd.DataFrame(
                    [{"step": "complete data on model covariates", "remaining": remaining,
                      "excluded": int(drop.sum()), "reason": reason}]
                ),
            ],
            ignore_index=True,
        )
        run.note(f"complete-case analysis: {int(drop.sum())} patient(s) excluded for {reason}")
        data = data.loc[~drop].reset_index(drop=True)
    return data, attrition


def _propensity(run: _Run, data: pd.DataFrame) -> Any:
    spec = run.study.propensity
    n1 = int((data["exposed"] == 1).sum())
    n0 = int((data["exposed"] == 0).sum())
    if n1 == 0 or n0 == 0:
        reason = f"the eligible cohort has {n1} exposed and {n0} unexposed patients; a propensity model needs both"
        run.skip("propensity", "logistic", "full", reason)
        return None
    covariates = _usable_covariates(run, data, spec.covariates, "propensity model")
    n_terms = _n_terms(data, covariates) + 1
    if min(n1, n0) <= 1 or len(data) <= n_terms:
        reason = (
            f"too few patients ({n1} exposed, {n0} unexposed) for a propensity model with {n_terms} terms"
        )
        run.skip("propensity", "logistic", "full", reason)
        return None
    try:
        with run.capture_warnings("propensity model"):
            result = propensity_score(data, "exposed", covariates, link=spec.link)
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
    spec = run.study.matching
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
    return result, matched.reset_index(drop=True)


def _balance_covariates(run: _Run, data: pd.DataFrame) -> list[str]:
    """Covariates whose balance is reported: the model covariates, then the rest of Table 1.

    A Table 1 variable with missing values (not a model covariate, so its
    patients were kept) is described in Table 1 with its missing count but
    has no SMD; a note says so.
    """
    names = [*run.study.propensity.covariates, *run.study.models.adjust, *_TABLE_ONE]
    kept = []
    for name in dict.fromkeys(names):
        if name not in data.columns:
            continue
        if data[name].isna().any():
            run.note(f"balance: {name!r} has {int(data[name].isna().sum())} missing value(s); no SMD reported for it")
            continue
        kept.append(name)
    return kept


def _balance(run: _Run, data: pd.DataFrame, matched: pd.DataFrame | None) -> tuple[Any, Any, Any, Any]:
    covariates = _balance_covariates(run, data)
    variables = [c for c in _TABLE_ONE if c in data.columns]
    categorical = [c for c in _CATEGORICAL if c in variables]

    def attempt(what: str, func: Callable[[], Any]) -> Any:
        try:
            with run.capture_warnings(what):
                return func()
        except _MODEL_ERRORS as exc:
            run.note(f"{what} not computed: {exc}")
            return None

    has_both = data["exposed"].nunique() == 2
    before = after = t1_before = t1_after = None
    if has_both:
        before = attempt("balance before matching", lambda: balance(data, "exposed", covariates))
    if len(data):
        t1_before = attempt(
            "Table 1 before matching",
            lambda: table_one(data, "exposed", variables, categorical=categorical),
        )
    if matched is not None:
        # Balance uses MatchIt's matching weights (as cobalt does); Table 1 describes the
        # matched patients unweighted, so its counts are patients (integers the small-cell
        # rule applies to). The two differ only when some exposed patient found fewer
        # than `ratio` controls.
        after = attempt("balance after matching", lambda: balance(matched, "exposed", covariates, weights="weight"))
        t1_after = attempt(
            "Table 1 after matching",
            lambda: table_one(matched, "exposed", variables, categorical=categorical),
        )
    return before, after, t1_before, t1_after


def _fit_hr(
    run: _Run,
    *,
    outcome: Outcome,
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
) -> Any:
    """Fit one Cox or Fine-Gray model and record its exposure line (or why it was skipped).

    Returns the fit (CoxResult / FineGrayResult) or None when skipped.
    """
    study = run.study
    competing = outcome == "krt_liberation_90d"
    where = label
    covariates = ["exposed", *_usable_covariates(run, frame, [c for c in covariates if c != "exposed"], where)]
    event = (frame[_KRT[1]] == 1) if competing else (frame[_DEATH[1]] == 1)
    why = _why_not_estimable(frame, event, outcome, population, _n_terms(frame, covariates))
    if why is None:
        why = _minimum_information(frame, event, outcome, population, weights)
    if why is not None:
        run.skip(outcome, model, population, why)
        return None
    fit: CoxResult | FineGrayResult
    try:
        with run.capture_warnings(where) as fit_warnings:
            if competing:
                kwargs: dict[str, Any] = {"cause": 1, "censor_code": 0, "conf_level": study.models.conf_level}
                if cluster is not None:
                    kwargs["cluster"] = cluster
                if weights is not None:
                    kwargs["weights"] = weights
                fit = fine_gray(frame, _KRT[0], _KRT[1], covariates, **kwargs)
            else:
                # robust=None follows coxph: sandwich with a cluster or a non-integer weight.
                fit = cox(
                    frame,
                    _DEATH[0],
                    _DEATH[1],
                    covariates,
                    ties=study.models.ties,
                    weights=weights,
                    cluster=cluster,
                    robust=robust,
                    conf_level=study.models.conf_level,
                )
    except _MODEL_ERRORS as exc:
        run.skip(outcome, model, population, f"not fitted: {exc}")
        return None
    if not getattr(fit, "converged", True):
        run.skip(outcome, model, population, "the fit did not converge")
        return None
    # An estimate the fit itself flags as possibly infinite is not reported as a number.
    flagged = [m for m in fit_warnings if "monotone" in m.lower() or "infinite" in m.lower()]
    if any("'exposed'" in m for m in flagged):
        run.skip(outcome, model, population, f"not estimable: {flagged[0]}")
        return None
    if flagged:
        note = "; ".join(filter(None, [note, *flagged]))
    values = [float(v) for v in fit.summary.loc["exposed", ["hr", "lower", "upper", "p"]].to_numpy(dtype=float)]
    if not all(math.isfinite(v) for v in values):
        run.skip(outcome, model, population, "non-finite estimate (monotone likelihood or separation)")
        return None
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


def _matched_variance(run: _Run, matched: pd.DataFrame) -> tuple[str | None, bool | None, str]:
    """(cluster column, robust flag, description) for models in the matched cohort."""
    if not run.study.models.cluster_on_matched_set:
        if _weights_needed(matched):
            # explicit: coxph's default would keep the model-based variance for whole-number weights,
            # but matching weights are not frequency weights
            return None, True, "robust (non-unit matching weights)"
        return None, None, "model-based"
    if matched["subclass"].notna().all():
        return "subclass", None, "robust, clustered on matched set"
    # With replacement a control sits in several sets: no single set to cluster on.
    return None, True, "robust (per patient; matched with replacement)"


def _death(run: _Run, matched: pd.DataFrame | None):
    study = run.study
    outcome: Outcome = "death_90d"
    if matched is None:
        reason = "no matched cohort (see the matching entry)"
        for model in ("kaplan_meier", "logrank", "cox_unadjusted", "cox_adjusted", "ph_test"):
            run.skip(outcome, model, "matched", reason)
        return None, None, None
    w = _weights_needed(matched)
    km = lr = ph = None
    try:
        with run.capture_warnings("Kaplan-Meier"):
            km = kaplan_meier(
                matched, *_DEATH, group="exposed", weights=w, conf_level=study.models.conf_level
            )
    except _MODEL_ERRORS as exc:
        run.skip(outcome, "kaplan_meier", "matched", f"not computed: {exc}")
    if matched["exposed"].nunique() < 2 or matched["death"].sum() == 0:
        run.skip(outcome, "logrank", "matched", "needs both arms and at least one death")
    else:
        try:
            with run.capture_warnings("log-rank test"):
                lr = logrank(matched, *_DEATH, group="exposed")
            if w:
                run.note("log-rank test: unweighted (the matching weights are not all 1)")
        except _MODEL_ERRORS as exc:
            run.skip(outcome, "logrank", "matched", f"not computed: {exc}")
    cluster, robust, variance = _matched_variance(run, matched)
    # dict[str, Any]: a bundle of _fit_hr's keyword arguments (a trailing type: ignore would not survive ruff format)
    common: dict[str, Any] = dict(outcome=outcome, population="matched", frame=matched, weights="weight",
                                  cluster=cluster, robust=robust, variance=variance)
    unadjusted = _fit_hr(run, model="cox_unadjusted", covariates=["exposed"],
                         label="Death by day 90, Cox, matched, unadjusted", **common)
    adjusted = _fit_hr(run, model="cox_adjusted", covariates=study.models.adjust,
                       label="Death by day 90, Cox, matched, adjusted", **common)
    main = adjusted if adjusted is not None else unadjusted
    run.ph_test_model = "cox_adjusted" if adjusted is not None else "cox_unadjusted"
    if main is None:
        run.skip(outcome, "ph_test", "matched", "no Cox model was fitted")
    else:
        try:
            with run.capture_warnings("PH test"):
                ph = ph_test(main)
        except _MODEL_ERRORS as exc:
            run.skip(outcome, "ph_test", "matched", f"not computed: {exc}")
    return km, lr, ph


def _krt(run: _Run, matched: pd.DataFrame | None):
    study = run.study
    outcome: Outcome = "krt_liberation_90d"
    if matched is None:
        reason = "no matched cohort (see the matching entry)"
        for model in ("cumulative_incidence", "gray_test", "fine_gray_unadjusted", "fine_gray_adjusted"):
            run.skip(outcome, model, "matched", reason)
        return None, None
    cif = gray = None
    try:
        with run.capture_warnings("cumulative incidence"):
            # KRT status: 0 censored, 1 liberated, 2 died first; any other code is an error, not a cause
            cif = cumulative_incidence(
                matched, *_KRT, cause=1, group="exposed", censor_code=0, competing_codes=[2],
                conf_level=study.models.conf_level
            )
        for text in cif.notes:
            run.note(f"cumulative incidence: {text}")
    except _MODEL_ERRORS as exc:
        run.skip(outcome, "cumulative_incidence", "matched", f"not computed: {exc}")
    if matched["exposed"].nunique() < 2 or (matched["krt_status"] == 1).sum() == 0:
        run.skip(outcome, "gray_test", "matched", "needs both arms and at least one KRT liberation")
    else:
        try:
            with run.capture_warnings("Gray's test"):
                gray = gray_test(matched, *_KRT, group="exposed", cause=1, censor_code=0, competing_codes=[2])
            for text in gray.notes:
                run.note(f"Gray's test: {text}")
        except _MODEL_ERRORS as exc:
            run.skip(outcome, "gray_test", "matched", f"not computed: {exc}")
    cluster, robust, variance = _matched_variance(run, matched)
    weights = None
    note = ""
    if _weights_needed(matched):
        if _supports(fine_gray, "weights"):
            weights = "weight"
        else:
            note = "unweighted: the Fine-Gray fit takes no weights and some matching weights differ from 1"
    if weights is not None and (cif is not None or gray is not None):
        run.note("cumulative incidence and Gray's test: unweighted (cuminc takes no case weights; "
                 "the matching weights are not all 1)")
    if robust:
        # Fine-Gray's variance already is a sandwich (with crr's censoring term); with replacement there is
        # no matched set to cluster on, so each patient is its own cluster.
        cluster = None
        variance = ("crr sandwich (matched with replacement)" if weights is None
                    else "robust sandwich with crr's censoring term (per patient; matched with replacement)")
    elif cluster is None:
        variance = "crr sandwich" if weights is None else "robust sandwich with crr's censoring term (non-unit weights)"
    common: dict[str, Any] = dict(outcome=outcome, population="matched", frame=matched, weights=weights,
                                  cluster=cluster, variance=variance, note=note)
    _fit_hr(run, model="fine_gray_unadjusted", covariates=["exposed"],
            label="KRT liberation by day 90, Fine-Gray, matched, unadjusted", **common)
    _fit_hr(run, model="fine_gray_adjusted", covariates=study.models.adjust,
            label="KRT liberation by day 90, Fine-Gray, matched, adjusted", **common)
    return cif, gray


def _full_cohort(run: _Run, data: pd.DataFrame) -> None:
    if not run.study.models.sensitivity_full_cohort:
        return
    adjust = run.study.models.adjust
    _fit_hr(run, outcome="death_90d", model="cox_adjusted", population="full", frame=data,
            covariates=adjust, label="Death by day 90, Cox, full eligible cohort, adjusted",
            variance="model-based")
    _fit_hr(run, outcome="krt_liberation_90d", model="fine_gray_adjusted", population="full", frame=data,
            covariates=adjust, label="KRT liberation by day 90, Fine-Gray, full eligible cohort, adjusted",
            variance="crr sandwich")


def _iptw(run: _Run, data: pd.DataFrame) -> pd.DataFrame:
    """IPTW with ATT weights: exposed 1, unexposed ps / (1 - ps); Cox and Fine-Gray, robust (sandwich) variance."""
    ps = data["ps"].to_numpy(dtype=float)
    data = data.assign(iptw_weight=np.where(data["exposed"].to_numpy() == 1, 1.0, ps / (1.0 - ps)))
    w0 = data.loc[data["exposed"] == 0, "iptw_weight"]
    if len(w0):
        run.note(
            f"IPTW (ATT): unexposed weights range {w0.min():.3g} to {w0.max():.3g}, "
            f"effective sample size {w0.sum() ** 2 / (w0 ** 2).sum():.1f} of {len(w0)}"
        )
    _fit_hr(run, outcome="death_90d", model="cox_unadjusted", population="iptw", frame=data,
            covariates=["exposed"], weights="iptw_weight", robust=True,
            label="Death by day 90, Cox, IPTW (ATT weights)", variance="robust (sandwich)")
    # Weighted Fine-Gray: the weighted estimating equation with the weighted Kaplan-Meier of
    # censoring; with weights and no cluster its variance is the robust sandwich (each patient
    # its own cluster, censoring-distribution term included), as coxph(robust = TRUE) above.
    _fit_hr(run, outcome="krt_liberation_90d", model="fine_gray_unadjusted", population="iptw",
            frame=data, covariates=["exposed"], weights="iptw_weight",
            label="KRT liberation by day 90, Fine-Gray, IPTW (ATT weights)", variance="robust (sandwich)")
    return data


def _e_value(run: _Run, matched: pd.DataFrame | None, data: pd.DataFrame) -> tuple[dict[str, Any] | None, str | None]:
    if not run.study.models.e_value:
        return None, None
    primary = None
    for model in ("cox_adjusted", "cox_unadjusted"):
        primary = next(
            (e for e in run.estimates if (e.outcome, e.model, e.population) == ("death_90d", model, "matched")),
            None,
        )
        if primary is not None:
            break
    if primary is None or matched is None:
        run.skip("death_90d", "e_value", "matched", "no matched Cox hazard ratio to compute it from")
        return None, None
    weights = matched["weight"].to_numpy(dtype=float) if "weight" in matched else None
    proportion = float(np.average(matched["death"].to_numpy(dtype=float), weights=weights))
    ev = e_value_hr(primary.estimate, primary.lower, primary.upper, proportion)
    method = f"E-value of the primary hazard ratio ({primary.label}); {ev.method}"
    values = {k: v for k, v in ev.as_dict().items() if isinstance(v, float)}
    return values, method
