"""Benchmark: cohort extraction from a synthetic EHR of 100,000 ICU stays (DuckDB; Spark optional).

Usage (from the project root):
    nice .venv/bin/python benchmarks/bench_cohort.py [--stays 100000] [--repeats 3] [--spark] [--data DIR]
                                                     [--pad-millions 20] [--parquet]

Generates the synthetic EHR once (csv.gz, MIMIC-IV v2.2 layout) unless --data points at one,
then runs ``tests.cohort.legacy.extract`` in a fresh child process per repeat, so that each run
pays its own imports and file scans and its peak resident memory (VmHWM of the child) is
measured alone. Goal (issue 3): under 60 s and under 4 GiB on DuckDB on this 2-core machine.
There is no R or Python peer that builds this cohort from raw MIMIC-IV files, so the table
reports our times against the goal; with --spark the same definitions run on local Spark.
--pad-millions N then appends N million rows of other itemids to labevents and to chartevents
(the two tables whose full-MIMIC size, ~160 M and ~430 M rows, dominates a real extraction) and
times the same extraction again, to show the cost of scanning at scale; --parquet then converts
the folder with ``retrocohort.sources.to_parquet`` and times the extraction from Parquet.
Writes benchmarks/results/cohort.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL_SECONDS = 60.0
GOAL_GIB = 4.0

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])  # the benchmarks folder, for peak_memory
sys.path.insert(0, str(__import__("pathlib").Path(sys.argv[3]).parent))  # the checkout: tests.cohort.legacy
from peak_memory import peak_rss_kib
t0 = time.perf_counter()
from tests.cohort.legacy import extract
kwargs = {}
if sys.argv[2] == "spark":
    from retrocohort.sources.spark import local_spark_session
    kwargs["spark"] = local_spark_session()
    kwargs["spark"].sparkContext.setLogLevel("ERROR")
t1 = time.perf_counter()
cohort = extract(sys.argv[1], engine=sys.argv[2], **kwargs)
t2 = time.perf_counter()
peak_kib = peak_rss_kib()
print(json.dumps({"extract_s": t2 - t1, "startup_s": t1 - t0, "peak_kib": peak_kib, "counts": cohort.counts,
                  "attrition": cohort.attrition[["step", "remaining", "excluded"]].to_dict("records")}))
"""


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pad(folder: Path, millions: float) -> float:
    """Append filler rows (itemids the study never reads) to labevents and chartevents; returns seconds."""
    import duckdb

    n = int(millions * 1_000_000)
    t = time.perf_counter()
    con = duckdb.connect()
    fillers = {
        "hosp/labevents": "SELECT CAST(2000000000 + i AS VARCHAR) AS labevent_id, "
        "CAST(10000000 + i % 150000 AS VARCHAR) AS subject_id, "
        "CAST(3000000000 + i // 20 AS VARCHAR) AS specimen_id, CAST(51000 + i % 50 AS VARCHAR) AS itemid, "
        "strftime(TIMESTAMP '2150-01-01 00:00:00' + to_seconds(i % 900000000), '%Y-%m-%d %H:%M:%S') AS charttime, "
        f"CAST(round(i % 997 / 7.0, 1) AS VARCHAR) AS valuenum FROM range({n}) t(i)",
        "icu/chartevents": "SELECT CAST(10000000 + i % 150000 AS VARCHAR) AS subject_id, "
        "CAST(30000000 + i % 100000 AS VARCHAR) AS stay_id, "
        "strftime(TIMESTAMP '2150-01-01 00:00:00' + to_seconds(i % 900000000), '%Y-%m-%d %H:%M:%S') AS charttime, "
        f"CAST(220045 + i % 20 AS VARCHAR) AS itemid, CAST(i % 150 AS VARCHAR) AS value FROM range({n}) t(i)",
    }
    for table, filler in fillers.items():
        source = folder / f"{table}.csv.gz"
        padded = folder / f"{table}.padded.csv.gz"
        con.execute(
            f"COPY (SELECT * FROM read_csv('{source}', all_varchar = true, header = true) UNION ALL BY NAME {filler}) "
            f"TO '{padded}' (FORMAT csv, HEADER true, COMPRESSION gzip)"
        )
        padded.replace(source)
    con.close()
    return time.perf_counter() - t


def run_child(folder: Path, engine: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), engine, str(HERE)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20231103)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="also time engine='spark' (one run)")
    parser.add_argument("--data", type=Path, default=None, help="an existing synthetic/MIMIC-IV folder")
    parser.add_argument("--pad-millions", type=float, default=0.0, help="filler rows (millions) per padded table")
    parser.add_argument("--parquet", action="store_true", help="also time extraction after to_parquet")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cohort.md")
    args = parser.parse_args()
    command = "nice .venv/bin/python benchmarks/bench_cohort.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    tmp = None
    if args.data is None:
        from retrocohort.sources import generate_synthetic

        tmp = tempfile.TemporaryDirectory(prefix="bench_cohort_")
        folder = Path(tmp.name) / "ehr"
        t = time.perf_counter()
        generate_synthetic(folder, stays=args.stays, seed=args.seed)
        generate_s = time.perf_counter() - t
    else:
        folder, generate_s = args.data, float("nan")
    size_mib = _folder_bytes(folder) / 2**20

    runs = [run_child(folder, "duckdb") for _ in range(args.repeats)]
    seconds = [r["extract_s"] for r in runs]
    peaks = [r["peak_kib"] / 2**20 for r in runs]
    spark = run_child(folder, "spark") if args.spark else None
    padded = None
    if args.pad_millions > 0:
        pad_s = pad(folder, args.pad_millions)
        padded_runs = [run_child(folder, "duckdb") for _ in range(args.repeats)]
        padded = (pad_s, [r["extract_s"] for r in padded_runs], max(r["peak_kib"] for r in padded_runs) / 2**20)
        assert padded_runs[0]["counts"] == runs[0]["counts"], "filler rows changed the cohort"
    parquet = None
    if args.parquet:
        from retrocohort.sources import to_parquet

        t = time.perf_counter()
        pq_folder = to_parquet(folder, folder.parent / "parquet")
        convert_s = time.perf_counter() - t
        pq_runs = [run_child(pq_folder, "duckdb") for _ in range(args.repeats)]
        assert pq_runs[0]["counts"] == runs[0]["counts"], "Parquet changed the cohort"
        parquet = (
            convert_s,
            [r["extract_s"] for r in pq_runs],
            max(r["peak_kib"] for r in pq_runs) / 2**20,
            _folder_bytes(pq_folder) / 2**20,
        )
    counts = runs[0]["counts"]
    median_s, peak_gib = statistics.median(seconds), max(peaks)

    lines = [
        "## Cohort extraction (raw MIMIC-IV-layout files -> analysis frame)",
        "",
        f"Command: `{command}`  ",
        f"Machine: 2 cores, shared; medians of {args.repeats} runs, each in a fresh process "
        "(peak memory = VmHWM of that process, including Python and DuckDB).",
        "",
        f"Data: synthetic EHR, {args.stays:,} ICU stays, seed {args.seed}, csv.gz, {size_mib:,.0f} MiB on disk"
        + (f" (generated in {generate_s:.1f} s)" if generate_s == generate_s else "")
        + ".",
        f"Cohort: {counts['screened']:,} screened -> {counts['eligible']:,} eligible "
        f"({counts['exposed']:,} exposed, {counts['unexposed']:,} unexposed).",
        "",
        "| engine | extract (s), median | runs (s) | peak memory (GiB) | goal | met |",
        "|---|---:|---|---:|---|---|",
        f"| DuckDB | {median_s:.2f} | {', '.join(f'{s:.2f}' for s in seconds)} | {peak_gib:.2f} | "
        f"< {GOAL_SECONDS:.0f} s, < {GOAL_GIB:.0f} GiB | "
        f"{'yes' if median_s < GOAL_SECONDS and peak_gib < GOAL_GIB else 'no'} |",
    ]
    if spark is not None:
        lines.append(
            f"| Spark local[*] (JVM memory not in the figure) | {spark['extract_s']:.2f} | one run | "
            f"{spark['peak_kib'] / 2**20:.2f} | | |"
        )
    if padded is not None:
        pad_s, pad_seconds, pad_peak = padded
        med = statistics.median(pad_seconds)
        lines.append(
            f"| DuckDB, labevents and chartevents each padded with {args.pad_millions:g} M filler rows "
            f"({_folder_bytes(folder) / 2**20:,.0f} MiB on disk; same cohort) | {med:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in pad_seconds)} | {pad_peak:.2f} | | |"
        )
    if parquet is not None:
        convert_s, pq_seconds, pq_peak, pq_mib = parquet
        what = "the padded folder" if padded is not None else "the same folder"
        lines.append(
            f"| DuckDB, {what} after `to_parquet` ({pq_mib:,.0f} MiB; conversion {convert_s:.0f} s, once) | "
            f"{statistics.median(pq_seconds):.2f} | {', '.join(f'{s:.2f}' for s in pq_seconds)} | {pq_peak:.2f} | | |"
        )
    lines += [
        "",
        "No peer: neither R nor a Python package builds this cohort from raw MIMIC-IV files; the",
        "figures are against the goal of issue 3. Times exclude interpreter start-up and imports.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
