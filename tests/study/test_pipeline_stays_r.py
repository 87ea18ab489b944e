"""One index per ICU stay (``select = "first_per_stay"``): a patient with two stays is two rows, and the
models cluster on the patient. Live R parity: the pipeline's hazard ratios and their cluster-robust
intervals equal ``coxph(..., cluster = subject_id)`` (full cohort, IPTW) and ``coxph(..., weights = weight,
cluster = patient_set)`` (matched: matched sets joined by shared patients), on fresh random data.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from retrocohort.study.pipeline import _patient_sets, analyse_cohort
from tests.rlive import require_r, run_r
from tests.study.test_pipeline import make_cohort, variant


def _stays_study():
    study = variant()
    return study.model_copy(update={"index": study.index.model_copy(update={"select": "first_per_stay"})})


def _cohort_with_repeat_patients(seed: int, n: int = 500):
    cohort = make_cohort(n=n, seed=seed)
    data = cohort.data.copy()
    # the first 300 rows belong to 150 patients with two ICU stays each; the rest one stay each
    ids = data["subject_id"].to_numpy().copy()
    ids[1:300:2] = ids[0:300:2]
    data["subject_id"] = ids
    cohort.data = data
    return cohort


R_CODE = r"""
suppressPackageStartupMessages(library(survival))
adj <- "exposed + age + sex + sepsis + egfr_baseline + sofa + serum_mg"
f <- as.formula(paste("Surv(death_time, death_status) ~", adj))
ci <- function(fit) {
  s <- summary(fit)
  c(hr = s$conf.int["exposed", "exp(coef)"], lower = s$conf.int["exposed", "lower .95"],
    upper = s$conf.int["exposed", "upper .95"], se = s$coefficients["exposed", "robust se"],
    p = s$coefficients["exposed", ncol(s$coefficients)])
}
full$w <- ifelse(full$exposed == 1, 1, full$ps / (1 - full$ps))
result <- list(
  full = ci(coxph(f, data = full, cluster = subject_id)),
  iptw = ci(coxph(Surv(death_time, death_status) ~ exposed, data = full, weights = w, cluster = subject_id)),
  matched = ci(coxph(Surv(death_time, death_status) ~ exposed, data = matched, weights = weight,
                     cluster = patient_set))
)
"""


@pytest.mark.r
def test_repeated_patients_give_the_cluster_robust_variance_of_r():
    require_r("survival")
    seed = int(time.time()) % 100_000
    result = analyse_cohort(_cohort_with_repeat_patients(seed), _stays_study())
    columns = ["subject_id", "exposed", "age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg"]
    columns += ["death_time", "death_status"]
    full = result.cohort[[*columns, "ps"]]
    matched = result.matched[[*columns, "weight", "subclass", "patient_set"]]
    r = run_r(R_CODE, {"full": full, "matched": matched})
    msg = f"seed={seed}"
    lines = {
        "full": result.estimate("death", "cox_adjusted", "full"),
        "iptw": result.estimate("death", "cox_unadjusted", "iptw"),
        "matched": result.estimate("death", "cox_unadjusted", "matched"),
    }
    for name, est in lines.items():
        assert est is not None, (name, msg)
        hr, lower, upper, _se, p = r[name]
        assert est.estimate == pytest.approx(hr, rel=1e-6), (name, msg)
        assert est.lower == pytest.approx(lower, rel=1e-6), (name, msg)
        assert est.upper == pytest.approx(upper, rel=1e-6), (name, msg)
        assert est.p == pytest.approx(p, rel=1e-5, abs=1e-10), (name, msg)
        assert "cluster" in est.variance, (name, est.variance)


def test_the_same_cohort_without_repeats_keeps_the_model_based_variance():
    cohort = make_cohort(n=300, seed=3)
    result = analyse_cohort(cohort, _stays_study())
    full = result.estimate("death", "cox_adjusted", "full")
    assert full is not None and full.variance == "model-based"


def test_repeated_patients_cluster_the_full_cohort_on_the_patient():
    result = analyse_cohort(_cohort_with_repeat_patients(seed=5), _stays_study())
    full = result.estimate("death", "cox_adjusted", "full")
    assert full is not None and "clustered on the patient" in full.variance
    matched = result.estimate("death", "cox_unadjusted", "matched")
    assert matched is not None and "shared patients" in matched.variance


def test_patient_sets_join_matched_sets_that_share_a_patient():
    matched = pd.DataFrame({"subclass": [1, 1, 2, 2, 3, 3, 4, 4], "subject_id": [10, 11, 12, 10, 13, 14, 14, 15]})
    sets = _patient_sets(matched)
    # sets 1 and 2 share patient 10; sets 3 and 4 share patient 14; the two groups are apart
    assert len(set(sets[:4])) == 1 and len(set(sets[4:])) == 1 and sets[0] != sets[4]
    assert np.issubdtype(sets.dtype, np.integer)


def test_repeated_patients_matched_with_replacement_cluster_on_the_patient():
    study = _stays_study()
    study = study.model_copy(
        update={
            "analysis": study.analysis.model_copy(
                update={"matching": study.analysis.matching.model_copy(update={"replace": True})}
            )
        }
    )
    result = analyse_cohort(_cohort_with_repeat_patients(seed=8), study)
    matched = result.estimate("death", "cox_unadjusted", "matched")
    assert matched is not None and "clustered on the patient" in matched.variance
