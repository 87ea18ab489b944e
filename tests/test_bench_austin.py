"""The data-generating process of benchmarks/bench_validate.py part 2 (Austin & Schuster 2016, Table 1).

The benchmark puts our type I error rates beside published ones; these checks keep its design from drifting
silently: the treatment prevalences are the table's, treatment follows the logistic model and the outcome the
Cox-Weibull model the benchmark says it plants (which covariates act on which, their coefficients, the treatment
effect, the Weibull baseline), nothing is censored, and the results do not depend on the number of processes.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from retrocohort.survival import cox

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_validate.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_validate", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # registered under its name so its worker function pickles for the process pool, as it does in the script
    sys.modules["bench_validate"] = module
    spec.loader.exec_module(module)
    return module


def test_published_table_has_every_cell(bench: ModuleType) -> None:
    # 2 matchings x 4 tests, each at the three prevalences of Table 1, every rate a proportion of 1000 data sets.
    assert bench.AUSTIN_PREVALENCES == (0.05, 0.10, 0.25)
    assert {m for m, _ in bench.AUSTIN_TABLE1} == {"caliper", "nearest"}
    assert len(bench.AUSTIN_TABLE1) == 8
    assert {m for m, _ in bench.AUSTIN_TABLE1_OTHER} == {"stratification", "iptw_ate", "iptw_att"}
    assert len(bench.AUSTIN_TABLE1_OTHER) == 4
    for rates in [*bench.AUSTIN_TABLE1.values(), *bench.AUSTIN_TABLE1_OTHER.values()]:
        assert len(rates) == 3
        assert all(0 <= r <= 1 and abs(r * 1000 - round(r * 1000)) < 1e-9 for r in rates)


@pytest.mark.parametrize("prevalence", [0.05, 0.10, 0.25])
def test_treatment_prevalence_is_the_tables(bench: ModuleType, prevalence: float) -> None:
    intercept = bench.austin_intercept(prevalence)
    n = 200_000
    frame = bench.austin_data(n, intercept, np.random.default_rng(12))
    # 4 binomial SEs: about 0.002 at 0.25, 0.0019 at 0.05.
    assert abs(frame["a"].mean() - prevalence) < 4 * math.sqrt(prevalence * (1 - prevalence) / n)


def test_intercept_refuses_an_impossible_prevalence(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        bench.austin_intercept(1.0)


@pytest.mark.parametrize("log_hr", [0.0, -0.5])
def test_outcome_is_the_planted_cox_weibull(bench: ModuleType, log_hr: float) -> None:
    n = 40_000
    frame = bench.austin_data(n, bench.austin_intercept(0.25), np.random.default_rng(7), log_hr=log_hr)
    assert (frame["e"] == 1).all()  # no censoring
    # Cumulative hazard at the drawn time: Exp(1) exactly when the times come from lambda t^shape exp(lp).
    linear = frame[bench.AUSTIN_COVARIATES].to_numpy() @ bench.AUSTIN_OUTCOME_EFFECTS + log_hr * frame["a"].to_numpy()
    cumulative = bench.AUSTIN_LAMBDA * frame["t"].to_numpy() ** bench.AUSTIN_SHAPE * np.exp(linear)
    assert abs(cumulative.mean() - 1) < 4 / math.sqrt(n)
    assert abs((cumulative > 1).mean() - math.exp(-1)) < 4 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / n)
    # The conditional model recovers the planted log hazard ratios: treatment and all ten covariates (0 for the
    # three that act on treatment only).
    fit = cox(frame, "t", "e", ["a", *bench.AUSTIN_COVARIATES], ties="breslow").summary
    planted = np.concatenate([[log_hr], bench.AUSTIN_OUTCOME_EFFECTS])
    assert np.all(np.abs(fit["coef"].to_numpy() - planted) < 4 * fit["se"].to_numpy())


def test_treatment_is_the_planted_logistic_model(bench: ModuleType) -> None:
    # x1-x7 act on treatment with the planted log odds ratios, x8-x10 not at all (the outcome-only covariates).
    from retrocohort.matching import propensity_score

    frame = bench.austin_data(60_000, bench.austin_intercept(0.25), np.random.default_rng(5))
    fit = propensity_score(frame, "a", bench.AUSTIN_COVARIATES).summary
    estimates = fit.loc[bench.AUSTIN_COVARIATES, "estimate"].to_numpy()
    ses = fit.loc[bench.AUSTIN_COVARIATES, "std_error"].to_numpy()
    assert np.all(np.abs(estimates - bench.AUSTIN_TREATMENT_EFFECTS) < 4 * ses)
    # and the two models share exactly x4-x7: three treatment-only, four shared, three outcome-only covariates
    treat, out = bench.AUSTIN_TREATMENT_EFFECTS != 0, bench.AUSTIN_OUTCOME_EFFECTS != 0
    assert (treat & ~out).sum() == 3 and (treat & out).sum() == 4 and (~treat & out).sum() == 3


def test_one_data_set_gives_every_test_of_the_table(bench: ModuleType) -> None:
    frame = bench.austin_data(3000, bench.austin_intercept(0.10), np.random.default_rng(3))
    row = bench.austin_analyse(frame)
    treated = frame["a"].sum()
    assert row["treated"] == treated
    assert row["nearest_pairs"] == treated  # no caliper: every treated subject finds a control (n0 >> n1)
    assert 0 < row["caliper_pairs"] <= treated
    for method, test in [*bench.AUSTIN_TABLE1, *bench.AUSTIN_TABLE1_OTHER]:
        assert 0 <= row[f"{method}_p_{test}"] <= 1
    # The robust and the naive Wald tests share the estimate, so their p-values order as their SEs do.
    for matching in ("caliper", "nearest"):
        naive_wider = row[f"{matching}_se_naive"] > row[f"{matching}_se_robust"]
        assert (row[f"{matching}_p_cox_naive"] > row[f"{matching}_p_cox_robust"]) == naive_wider


def test_quintiles_and_weights(bench: ModuleType) -> None:
    frame = bench.austin_data(1000, bench.austin_intercept(0.10), np.random.default_rng(4))
    score = np.random.default_rng(9).uniform(0.01, 0.99, size=len(frame))
    out = bench.austin_weights(frame, score)
    # five groups of 200 (no tied scores), ordered by the score
    assert out["quintile"].value_counts().sort_index().tolist() == [200] * 5
    assert (out.groupby("quintile")["quintile"].size().index == [1, 2, 3, 4, 5]).all()
    by_q = [score[out["quintile"].to_numpy() == q] for q in range(1, 6)]
    assert all(a.max() < b.min() for a, b in itertools.pairwise(by_q))
    treated = frame["a"].to_numpy() == 1
    assert np.allclose(out["w_ate"], np.where(treated, 1 / score, 1 / (1 - score)))
    assert np.allclose(out["w_att"][treated], 1.0)
    assert np.allclose(out["w_att"][~treated], (score / (1 - score))[~treated])


def test_results_do_not_depend_on_processes(bench: ModuleType) -> None:
    one = bench.austin(800, 2, processes=1)
    two = bench.austin(800, 2, processes=2)
    for prevalence in bench.AUSTIN_PREVALENCES:
        a, b = one["tables"][prevalence], two["tables"][prevalence]
        assert list(a.columns) == list(b.columns) and a.to_numpy().tolist() == b.to_numpy().tolist()
