"""A StudyResult for the report tests, built by the real pipeline from a random analysis frame.

The frame follows the cohort contract (docs/contracts: one row per patient,
covariates, outcomes in days); outcomes are drawn with a known protective
exposure effect so every model has events. No stand-in of another module.
"""

from __future__ import annotations

import hashlib
import platform
from types import SimpleNamespace

import numpy as np
import pandas as pd

from retrocohort.study.pipeline import analyse_cohort
from retrocohort.study.spec import default_study


def analysis_frame(n: int = 330, seed: int = 7, horizon: float = 90.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(65, 12, n).clip(18, 95)
    sex = rng.choice(["F", "M"], n)
    sepsis = rng.binomial(1, 0.5, n)
    creat = rng.lognormal(0.2, 0.4, n)
    egfr = (140 - age) * 0.8 / creat
    sofa = rng.integers(4, 18, n)
    serum_mg = rng.normal(2.0, 0.3, n).clip(1.0, 3.5)
    lin = -2.4 + 0.02 * (age - 65) - 1.5 * (serum_mg - 2.0) + 0.3 * sepsis
    exposed = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    hazard = 0.01 * np.exp(0.04 * (sofa - 10) - 0.7 * exposed)
    death_t = rng.exponential(1 / hazard)
    lib_t = rng.exponential(1 / (0.012 * np.exp(0.5 * exposed)))
    cens = rng.uniform(30, 200, n)
    death_time = np.ceil(np.minimum.reduce([death_t, cens, np.full(n, horizon)]))
    death = ((death_t <= cens) & (death_t <= horizon)).astype(int)
    krt_time = np.ceil(np.minimum.reduce([lib_t, death_t, cens, np.full(n, horizon)]))
    krt_status = np.where((lib_t < death_t) & (lib_t <= cens) & (lib_t <= horizon), 1,
                          np.where((death_t <= lib_t) & (death_t <= cens) & (death_t <= horizon), 2, 0))
    return pd.DataFrame({
        "subject_id": 10_000_000 + np.arange(n),
        "stay_id": 30_000_000 + np.arange(n),
        "hadm_id": 20_000_000 + np.arange(n),
        "index_time": pd.Timestamp("2150-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
        "exposed": exposed.astype(int),
        "mg_dose_meq": np.where(exposed == 1, rng.normal(24.4, 10.6, n).clip(4, 80), 0.0),
        "age": age, "sex": sex, "sepsis": sepsis, "creatinine_baseline": creat, "egfr_baseline": egfr,
        "sofa": sofa, "serum_mg": serum_mg,
        "vasopressor": rng.binomial(1, 0.8, n), "ventilation": rng.binomial(1, 0.7, n),
        "death_time": death_time, "death": death, "krt_time": krt_time, "krt_status": krt_status,
    })


def attrition_for(eligible: int) -> pd.DataFrame:
    """An attrition log in the cohort builder's format (slug steps, "excluded: ..." reasons, eligible row)."""
    screened = eligible + 296
    return pd.DataFrame({
        "step": ["screened", "no_mg_index_day", "died_within_48h", "eligible"],
        "remaining": [screened, eligible + 118, eligible, eligible],
        "excluded": [0, 178, 118, 0],
        "reason": ["adults (>= 18 y) with CKRT; on vasopressor and/or invasive ventilation within [-24 h, +24 h]",
                   "excluded: no serum Mg (labevents 50960) on the CKRT start calendar day",
                   "excluded: died within 48 h of CKRT start", "exposed and unexposed patients"],
    })


def _estimate(fit, outcome, model, population, term="exposed", variance=""):
    from retrocohort.study.results import Estimate

    row = fit.summary.loc[term]
    return Estimate(outcome=outcome, model=model, population=population, estimate=float(row["hr"]),
                    lower=float(row["lower"]), upper=float(row["upper"]), p=float(row["p"]),
                    label=f"{outcome} {model} {population}", n=int(fit.n), n_events=int(fit.n_events),
                    variance=variance)


def study_result(n: int = 330, seed: int = 7, study=None, synthetic: bool = True, frame=None, attrition=None):
    """StudyResult wired from the real matching and survival results of a random analysis frame.

    Mirrors what the pipeline stores (notes/pipeline-to-report.md) so the report
    is exercised on real result objects.
    """
    from dataclasses import replace as _replace

    from retrocohort.matching import balance, match_nearest, propensity_score, table_one
    from retrocohort.study.evalue import e_value_hr
    from retrocohort.study.results import SkippedModel, StudyResult
    from retrocohort.survival.competing import cumulative_incidence, gray_test
    from retrocohort.survival.cox import cox
    from retrocohort.survival.finegray import fine_gray
    from retrocohort.survival.km import kaplan_meier, logrank
    from retrocohort.survival.zph import ph_test

    study = study or default_study()
    data = analysis_frame(n, seed) if frame is None else frame
    covs = list(study.propensity.covariates)
    ps = propensity_score(data, "exposed", covs)
    data = data.assign(ps=ps.score.to_numpy(), ps_logit=ps.linear.to_numpy())
    m = match_nearest(data, "exposed", data["ps_logit"], ratio=study.matching.ratio, caliper=study.matching.caliper)
    matched = m.matched
    counts = {"screened": int(len(data) + 296), "eligible": int(len(data)),
              "exposed": int((data.exposed == 1).sum()), "unexposed": int((data.exposed == 0).sum()),
              "matched_exposed": int((matched.exposed == 1).sum()), "matched_unexposed": int((matched.exposed == 0).sum())}
    dose = data.loc[data.exposed == 1, "mg_dose_meq"]
    tvars = ["age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg"]
    km = kaplan_meier(matched, "death_time", "death", group="exposed")
    lr = logrank(matched, "death_time", "death", "exposed")
    cif = cumulative_incidence(matched, "krt_time", "krt_status", cause=1, group="exposed")
    gray = gray_test(matched, "krt_time", "krt_status", "exposed", cause=1)
    robust = "robust, clustered on matched set"
    cox_u = cox(matched, "death_time", "death", ["exposed"], cluster="subclass")
    cox_a = cox(matched, "death_time", "death", ["exposed", *study.models.adjust], cluster="subclass")
    fg_u = fine_gray(matched, "krt_time", "krt_status", ["exposed"], cluster="subclass")
    cox_full = cox(data, "death_time", "death", ["exposed", *study.models.adjust])
    estimates = (
        _estimate(cox_u, "death_90d", "cox_unadjusted", "matched", variance=robust),
        _estimate(cox_a, "death_90d", "cox_adjusted", "matched", variance=robust),
        _estimate(fg_u, "krt_liberation_90d", "fine_gray_unadjusted", "matched", variance=robust),
        _estimate(cox_full, "death_90d", "cox_adjusted", "full", variance="model-based"),
    )
    skipped = (SkippedModel("krt_liberation_90d", "fine_gray_adjusted", "matched",
                            "too few KRT liberation events for 7 covariates (events per variable below 10)"),)
    main = estimates[1]
    ev = e_value_hr(main.estimate, main.lower, main.upper, float(matched["death"].mean()))
    ev_dict = {k: float(getattr(ev, k)) for k in ("hr", "lower", "upper", "rr", "point", "ci", "outcome_proportion")}
    result = StudyResult(
        study=study, synthetic=synthetic, attrition=attrition if attrition is not None else attrition_for(len(data)),
        counts=counts,
        dose_meq={"mean": float(dose.mean()), "sd": float(dose.std())}, cohort=data, matched=matched,
        propensity=ps, matching=m,
        balance_before=balance(data, "exposed", tvars), balance_after=balance(data, "exposed", tvars, weights=m.weights),
        table_one_before=table_one(data, "exposed", tvars, categorical=["sex"]),
        table_one_after=table_one(matched, "exposed", tvars, categorical=["sex"]),
        km=km, logrank=lr, cif=cif, gray=gray, ph_test=ph_test(cox_a), estimates=estimates, skipped=skipped,
        e_value=ev_dict, planted={"hr_death": float(np.exp(-0.7)), "shr_krt": 1.5} if synthetic else None,
        provenance={"study_fingerprint": study.fingerprint,
                    "data_fingerprint": hashlib.sha256(pd.util.hash_pandas_object(data).to_numpy().tobytes()).hexdigest(),
                    "data_fingerprint_method": "sha256 of the analysis frame's row hashes (test)",
                    "python": platform.python_version(), "engine": "duckdb", "seed": seed,
                    "packages": {"numpy": np.__version__, "pandas": pd.__version__}},
        e_value_method="E-value of the adjusted matched Cox HR; common outcome: square-root HR-to-RR transform.",
        notes=("chartevents absent: CRRT-mode charting not used",),
    )
    return result
