"""The data-generating process of benchmarks/bench_validate.py part 2 (Austin & Schuster 2016, Table 1).

The benchmark puts our type I error rates beside published ones; these checks keep its design from drifting
silently: the treatment prevalences are the table's, the outcome is the Cox-Weibull model the benchmark says it
plants (coefficients, the treatment effect, the Weibull baseline), and nothing is censored.
"""

from __future__ import annotations

import importlib.util
import math
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
    spec.loader.exec_module(module)
    return module


def test_published_table_has_every_cell(bench: ModuleType) -> None:
    # 2 matchings x 4 tests, each at the three prevalences of Table 1, every rate a proportion of 1000 data sets.
    assert bench.AUSTIN_PREVALENCES == (0.05, 0.10, 0.25)
    assert {m for m, _ in bench.AUSTIN_TABLE1} == {"caliper", "nearest"}
    assert len(bench.AUSTIN_TABLE1) == 8
    for rates in bench.AUSTIN_TABLE1.values():
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
    linear = frame[bench.AUSTIN_COVARIATES].to_numpy() @ bench.AUSTIN_EFFECTS + log_hr * frame["a"].to_numpy()
    cumulative = bench.AUSTIN_LAMBDA * frame["t"].to_numpy() ** bench.AUSTIN_SHAPE * np.exp(linear)
    assert abs(cumulative.mean() - 1) < 4 / math.sqrt(n)
    assert abs((cumulative > 1).mean() - math.exp(-1)) < 4 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / n)
    # The conditional model recovers the planted log hazard ratios: treatment and all ten covariates.
    fit = cox(frame, "t", "e", ["a", *bench.AUSTIN_COVARIATES], ties="breslow").summary
    planted = np.concatenate([[log_hr], bench.AUSTIN_EFFECTS])
    assert np.all(np.abs(fit["coef"].to_numpy() - planted) < 4 * fit["se"].to_numpy())


def test_one_data_set_gives_every_test_of_the_table(bench: ModuleType) -> None:
    frame = bench.austin_data(3000, bench.austin_intercept(0.10), np.random.default_rng(3))
    row = bench.austin_analyse(frame)
    treated = frame["a"].sum()
    assert row["treated"] == treated
    assert row["nearest_pairs"] == treated  # no caliper: every treated subject finds a control (n0 >> n1)
    assert 0 < row["caliper_pairs"] <= treated
    for matching, test in bench.AUSTIN_TABLE1:
        assert 0 <= row[f"{matching}_p_{test}"] <= 1
    # The robust and the naive Wald tests share the estimate, so their p-values order as their SEs do.
    for matching in ("caliper", "nearest"):
        naive_wider = row[f"{matching}_se_naive"] > row[f"{matching}_se_robust"]
        assert (row[f"{matching}_p_cox_naive"] > row[f"{matching}_p_cox_robust"]) == naive_wider
