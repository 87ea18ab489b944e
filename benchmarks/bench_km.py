"""Benchmark: Kaplan-Meier, log-rank, Aalen-Johansen and Gray's test against R and lifelines, same data, same run.

Usage (from the project root)::

    nice .venv/bin/python benchmarks/bench_km.py [--repeats 3] [--sizes 100000,1000000,10000000]
        [--out benchmarks/results/km.md]

Data: two arms, exponential times for two competing causes, uniform
censoring; one data set with whole-day ties (times rounded up to days, ~100
distinct times) and one with continuous times (every time distinct).

Pairs timed (ours = from the DataFrame to the result object, validation included):

* ``kaplan_meier(data, "time", "event")`` vs R ``survfit(Surv(time, event) ~ 1)``
  and lifelines ``KaplanMeierFitter().fit``;
* ``logrank(data, "time", "event", "arm")`` vs R ``survdiff(Surv(time, event) ~ arm)``
  and lifelines ``logrank_test``;
* ``cumulative_incidence(data, "time", "status", cause=1)`` vs R
  ``cuminc(time, status)`` (which always estimates every cause: here two, so
  it does about twice our work) and lifelines ``AalenJohansenFitter(calculate_variance=True)``
  (which jitters tied times, so it is not the same estimate on tied data);
* ``gray_test(data, "time", "status", "arm")`` vs R ``cuminc(time, status, arm)``
  (estimates for both causes and both arms plus the tests for both causes).

R runs inside one Rscript per data set with ``system.time`` around each call
only (the data are read from a binary file first, not timed). A peer whose
run is predicted from its measured scaling to exceed ``CAP_SECONDS`` is
skipped and marked "capped". Each cell is the median of ``--repeats`` runs
(1 run when a peer is predicted above 20 s). The accuracy column is the
largest absolute difference between our survival (or CIF) and R's at days
10, 30, 60 and 90.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from retrocohort.survival.competing import cumulative_incidence, gray_test
from retrocohort.survival.km import kaplan_meier, logrank

CAP_SECONDS = 30.0
CHECK_DAYS = [10.0, 30.0, 60.0, 90.0]
METHODS = ["km", "logrank", "cif", "gray"]
LABELS = {
    "km": "Kaplan-Meier",
    "logrank": "log-rank (2 arms)",
    "cif": "Aalen-Johansen CIF",
    "gray": "Gray's test (2 arms)",
}


def generate(n: int, ties: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, n)
    t_cause = rng.exponential(np.where(arm == 1, 60.0, 45.0))
    t_death = rng.exponential(70.0, n)
    t_censor = rng.uniform(5.0, 100.0, n)
    first = np.minimum(np.minimum(t_cause, t_death), t_censor)
    if ties:
        first = np.ceil(first)
    status = np.where(t_censor <= np.minimum(t_cause, t_death), 0, np.where(t_cause < t_death, 1, 2))
    return pd.DataFrame(
        {
            "time": first,
            "status": status.astype(np.int64),
            "event": (status > 0).astype(np.int64),
            "arm": arm.astype(np.int64),
        }
    )


def run_ours(method: str, frame: pd.DataFrame) -> tuple[object, np.ndarray]:
    if method == "km":
        fit = kaplan_meier(frame, "time", "event")
        return fit, fit.survival_at(CHECK_DAYS)["survival"].to_numpy()
    if method == "logrank":
        return logrank(frame, "time", "event", "arm"), np.array([])
    if method == "cif":
        fit = cumulative_incidence(frame, "time", "status", cause=1)
        return fit, fit.cif_at(CHECK_DAYS)["cif"].to_numpy()
    return gray_test(frame, "time", "status", "arm", cause=1), np.array([])


def time_ours(method: str, frame: pd.DataFrame, repeats: int) -> tuple[float, np.ndarray]:
    seconds, values = [], np.array([])
    for _ in range(repeats):
        start = time.perf_counter()
        _, values = run_ours(method, frame)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), values


R_SCRIPT = r"""
suppressPackageStartupMessages({library(survival); library(cmprsk); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
path <- args[1]; n <- as.integer(args[2]); method <- args[3]; reps <- as.integer(args[4]); out <- args[5]
con <- file(path, "rb"); m <- matrix(readBin(con, "double", n * 4), nrow = n); close(con)
df <- data.frame(time = m[, 1], status = m[, 2], event = m[, 3], arm = m[, 4])
days <- c(10, 30, 60, 90)
secs <- numeric(0); values <- numeric(0)
for (i in seq_len(reps)) {
  if (method == "km") {
    secs[i] <- system.time(fit <- survfit(Surv(time, event) ~ 1, data = df))["elapsed"]
    values <- summary(fit, times = days, extend = TRUE)$surv
  } else if (method == "logrank") {
    secs[i] <- system.time(fit <- survdiff(Surv(time, event) ~ arm, data = df))["elapsed"]
  } else if (method == "cif") {
    secs[i] <- system.time(fit <- cuminc(df$time, df$status))["elapsed"]
    values <- as.numeric(timepoints(fit, days)$est["1 1", ])
  } else {
    secs[i] <- system.time(fit <- cuminc(df$time, df$status, df$arm))["elapsed"]
  }
}
writeLines(toJSON(list(seconds = secs, values = values), digits = NA), out)
"""


def time_r(method: str, frame: pd.DataFrame, repeats: int, tmp: Path) -> tuple[float, np.ndarray]:
    data_path = tmp / "data.bin"
    if not data_path.exists():
        columns = frame[["time", "status", "event", "arm"]].to_numpy(dtype=float)
        np.asfortranarray(columns).T.tofile(data_path)  # column-major, as R's matrix() reads it
    script = tmp / "bench.R"
    script.write_text(R_SCRIPT)
    out = tmp / "r.json"
    subprocess.run(
        ["Rscript", "--vanilla", str(script), str(data_path), str(len(frame)), method, str(repeats), str(out)],
        check=True,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    return float(np.median(result["seconds"])), np.asarray(result["values"], dtype=float)


def time_lifelines(method: str, frame: pd.DataFrame, repeats: int) -> tuple[float | None, np.ndarray]:
    from lifelines import AalenJohansenFitter, KaplanMeierFitter
    from lifelines.statistics import logrank_test

    if method == "gray":
        return None, np.array([])  # lifelines has no Gray test
    seconds, values = [], np.array([])
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # AalenJohansenFitter warns that it jitters ties
            start = time.perf_counter()
            if method == "km":
                fitter = KaplanMeierFitter().fit(frame["time"], frame["event"])
                seconds.append(time.perf_counter() - start)
                values = fitter.survival_function_at_times(CHECK_DAYS).to_numpy()
            elif method == "logrank":
                treated = frame["arm"] == 1
                logrank_test(
                    frame.loc[treated, "time"],
                    frame.loc[~treated, "time"],
                    frame.loc[treated, "event"],
                    frame.loc[~treated, "event"],
                )
                seconds.append(time.perf_counter() - start)
            else:
                fitter = AalenJohansenFitter(calculate_variance=True, seed=1)
                fitter.fit(frame["time"], frame["status"], event_of_interest=1)
                seconds.append(time.perf_counter() - start)
                cif = fitter.cumulative_density_
                values = np.array([cif.loc[:day].iloc[-1, 0] for day in CHECK_DAYS])
    return float(np.median(seconds)), values


def predicted(history: list[tuple[int, float]], n: int) -> float:
    """Extrapolate a peer's time to size n from its measured scaling (linear if one point)."""
    if not history:
        return 0.0
    if len(history) == 1:
        n1, t1 = history[0]
        return t1 * n / n1
    (n1, t1), (n2, t2) = history[-2], history[-1]
    slope = max(1.0, math.log(max(t2, 1e-3) / max(t1, 1e-3)) / math.log(n2 / n1))
    return t2 * (n / n2) ** slope


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "km.md"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    history: dict[tuple, list[tuple[int, float]]] = {}
    for ties in (True, False):
        for n in sizes:
            frame = generate(n, ties, seed=n + ties)
            with tempfile.TemporaryDirectory(prefix="bench-km-") as tmpdir:
                tmp = Path(tmpdir)
                for method in METHODS:
                    ours, ours_values = time_ours(method, frame, args.repeats)
                    row = {"data": "whole-day ties" if ties else "continuous", "method": method, "n": n, "ours": ours}
                    for peer, timer in (
                        ("R", lambda r, m=method, f=frame, d=tmp: time_r(m, f, r, d)),
                        ("lifelines", lambda r, m=method, f=frame: time_lifelines(m, f, r)),
                    ):
                        hist = history.setdefault((peer, method, ties), [])
                        guess = predicted(hist, n)
                        if guess > CAP_SECONDS:
                            row[peer] = None
                            row[f"{peer}_note"] = f"capped (~{guess:.0f} s predicted)"
                            continue
                        secs, values = timer(1 if guess > 20 else args.repeats)
                        if secs is None:
                            row[peer] = None
                            row[f"{peer}_note"] = "n/a"
                            continue
                        hist.append((n, secs))
                        row[peer] = secs
                        if peer == "R" and values.size and ours_values.size:
                            row["max_abs_diff_vs_R"] = float(np.max(np.abs(values - ours_values)))
                    rows.append(row)
                    print(row, flush=True)
    n_mem = 1_000_000 if 1_000_000 in sizes else max(sizes)
    memory = {(ties, method): peak_memory_ours(method, n_mem, ties) for ties in (True, False) for method in METHODS}
    write_markdown(rows, args, memory, n_mem)
    return 0


def peak_memory_ours(method: str, n: int, ties: bool) -> float:
    """Peak resident memory (GiB) of a fresh process that generates n rows and runs one estimator."""
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import bench_km as b; from peak_memory import peak_rss_kib; "
        f"d = b.generate({n}, {ties}, 1); b.run_ours({method!r}, d); "
        "print(peak_rss_kib())"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 2**20


def _fmt(x: float | None, note: str | None = None) -> str:
    if x is None:
        return note or "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _ratio(peer: float | None, ours: float) -> str:
    return "-" if peer is None else f"{peer / ours:.1f}x"


def write_markdown(rows: list[dict], args, memory: dict, n_mem: int) -> None:
    lines = [
        "## Kaplan-Meier, log-rank, cumulative incidence and Gray's test "
        "(`retrocohort.survival` vs R `survival`/`cmprsk` and lifelines)",
        "",
        f"Command: `nice .venv/bin/python benchmarks/bench_km.py --repeats {args.repeats} --sizes {args.sizes}`",
        "",
        f"Machine: {platform.machine()}, 2 cores, shared with other jobs (load varied during the run); "
        f"medians of {args.repeats} runs (1 run for a peer predicted above 20 s); peers predicted above "
        f"{CAP_SECONDS:.0f} s are capped. Seconds; ratio = peer / ours. R is timed around the call only "
        "(`system.time`), ours from the DataFrame to the result (validation included). R `cuminc` estimates "
        "both causes (ours: the requested one); R `cuminc(..., group)` also estimates the curves besides the "
        "test. lifelines `AalenJohansenFitter` jitters tied times, so on tied data it is not the same "
        "estimate. `max |diff| vs R`: largest absolute difference of S or CIF at days 10, 30, 60, 90.",
        "",
        "| data | estimator | n | ours | R | R / ours | lifelines | lifelines / ours | max abs diff vs R |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        diff = row.get("max_abs_diff_vs_R")
        lines.append(
            f"| {row['data']} | {LABELS[row['method']]} | {row['n']:,} | {_fmt(row['ours'])} | "
            f"{_fmt(row['R'], row.get('R_note'))} | {_ratio(row['R'], row['ours'])} | "
            f"{_fmt(row['lifelines'], row.get('lifelines_note'))} | {_ratio(row['lifelines'], row['ours'])} | "
            f"{'-' if diff is None else f'{diff:.1e}'} |"
        )
    lines.append("")
    lines.append(
        f"Peak resident memory of ours (GiB), a fresh process generating n = {n_mem:,} rows and running "
        "one estimator (Python, NumPy, pandas and the generated data included):"
    )
    lines.append("")
    lines.append("| data | " + " | ".join(LABELS[m] for m in METHODS) + " |")
    lines.append("|---|" + "---:|" * len(METHODS))
    for ties in (True, False):
        lines.append(
            f"| {'whole-day ties' if ties else 'continuous'} | "
            + " | ".join(f"{memory[(ties, m)]:.2f}" for m in METHODS)
            + " |"
        )
    lines.append("")
    Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
