"""Benchmark: the flagship cohort at MIMIC-IV scale, from csv.gz and from the Parquet copy (issue 9, part 4).

Usage (from the project root):
    nice .venv/bin/python benchmarks/bench_scale.py [--scale 0.25] [--stays 100000] [--repeats 1]
                                                    [--data DIR] [--memory-limit 2GB] [--threads 2] [--out FILE]

Steps, each timed, and each measured step in a fresh child process (its peak resident memory is
the child's own VmHWM, see peak_memory.py):

1. generate a synthetic EHR of ``--stays`` ICU stays (csv.gz, MIMIC-IV v2.2 layout), unless
   ``--data`` points at one;
2. pad ``icu/chartevents``, ``hosp/labevents`` and ``icu/inputevents`` with filler rows of itemids no
   study here reads, up to ``--scale`` times MIMIC-IV v2.2's row counts (chartevents 313,645,063,
   labevents 118,171,367, inputevents 8,978,893): the synthetic generator writes far fewer rows,
   and at full size scanning these three tables is the cost. The padded file is sorted by subject_id
   and time, as MIMIC-IV's are, so filler and generated rows share every Parquet row group;
3. convert the folder with ``retrocohort.sources.convert.convert_mimic`` (time, peak memory,
   sizes);
4. on the csv.gz folder and on the Parquet folder: ``build_cohort`` on the flagship study in the
   study language (``studies/magnesium_ckrt.toml``) and the legacy ``extract``; the cohorts
   from csv.gz and Parquet must be identical (checked). These runs use DuckDB's default settings (the
   headline: what a user gets); with ``--memory-limit``/``--threads``, ``build_cohort`` on Parquet runs
   once more with those settings, as a second line.

Steps 1-3 take most of the time at the quarter size: ``--work DIR --prepare-only`` runs them into
DIR and records their times in DIR/steps.json; a later run with the same ``--work`` (and the same
stays, seed, scale and settings) reuses them and only builds the cohorts.

Goals (issue 9): the flagship on the quarter-size Parquet copy in under 30 s and under 2 GiB on
2 cores; ``build_cohort`` no slower than the legacy ``extract``. No peer builds this cohort from
raw files, so the table reports against the goals. Writes ``--out`` (default
benchmarks/results/scale.md). The quarter size needs about 25 GiB of disk and hours on a shared
machine: check the script at a small ``--scale`` first (e.g. 0.001 with --stays 3000).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDY = ROOT / "studies" / "magnesium_ckrt.toml"
GOAL_SECONDS = 30.0
GOAL_GIB = 2.0

#: Rows in MIMIC-IV v2.2 (the issue's figures).
MIMIC_ROWS = {"icu/chartevents": 313_645_063, "hosp/labevents": 118_171_367, "icu/inputevents": 8_978_893}

# Filler rows: other itemids (heart rate and alarms; a lab panel; saline), plausible keys and times.
_TIME = "strftime(TIMESTAMP '2150-01-01 00:00:00' + to_seconds(i % 900000000), '%Y-%m-%d %H:%M:%S')"
FILLERS = {
    "icu/chartevents": "SELECT CAST({subjects} AS VARCHAR) AS subject_id, "
    "CAST(20000000 + i % 400000 AS VARCHAR) AS hadm_id, CAST(30000000 + i % 100000 AS VARCHAR) AS stay_id, "
    f"{_TIME} AS charttime, CAST(220045 + i % 5 AS VARCHAR) AS itemid, CAST(i % 150 AS VARCHAR) AS value, "
    "CAST(i % 150 AS VARCHAR) AS valuenum",
    "hosp/labevents": "SELECT CAST(2000000000 + i AS VARCHAR) AS labevent_id, "
    "CAST({subjects} AS VARCHAR) AS subject_id, CAST(3000000000 + i // 20 AS VARCHAR) AS specimen_id, "
    f"CAST(51000 + i % 50 AS VARCHAR) AS itemid, {_TIME} AS charttime, CAST(round(i % 997 / 7.0, 1) AS VARCHAR) "
    "AS valuenum",
    "icu/inputevents": "SELECT CAST({subjects} AS VARCHAR) AS subject_id, "
    "CAST(20000000 + i % 400000 AS VARCHAR) AS hadm_id, CAST(30000000 + i % 100000 AS VARCHAR) AS stay_id, "
    f"{_TIME} AS starttime, {_TIME} AS endtime, '225158' AS itemid, CAST(i % 500 AS VARCHAR) AS amount, "
    "'mL' AS amountuom, CAST(4000000 + i AS VARCHAR) AS orderid, 'FinishedRunning' AS statusdescription",
}

#: The time column each padded table is sorted by (after subject_id), as MIMIC-IV's files are ordered.
SORT_TIME = {"icu/chartevents": "charttime", "hosp/labevents": "charttime", "icu/inputevents": "starttime"}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])  # the benchmarks folder, for peak_memory
sys.path.insert(0, str(__import__("pathlib").Path(sys.argv[1]).parent))  # the checkout: tests.cohort.legacy
from peak_memory import peak_rss_kib
task, folder, extra = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = extra.get("duckdb_config") or None
def cpu():  # user + system seconds of every thread of this process (DuckDB's too)
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0 = time.perf_counter()
if task == "convert":
    from retrocohort.sources.convert import convert_mimic
    c1, t1 = cpu(), time.perf_counter()
    result = convert_mimic(folder, extra["out"], force=True, duckdb_config=config)
    out = {"rows": {t.table: t.rows for t in result.tables},
           "parquet_bytes": sum(t.target_bytes for t in result.tables)}
elif task == "build_cohort":
    from retrocohort.cohort.builder import build_cohort
    from retrocohort.spec import load_study_file
    study = load_study_file(extra["study"])
    c1, t1 = cpu(), time.perf_counter()
    cohort = build_cohort(study, folder, duckdb_config=config)
    out = {"counts": cohort.counts, "attrition": cohort.attrition[["step", "remaining", "excluded"]].to_dict("records"),
           "data": cohort.data.to_json(date_format="iso", double_precision=15)}
else:
    from tests.cohort.legacy import extract
    c1, t1 = cpu(), time.perf_counter()
    cohort = extract(folder, duckdb_config=config)
    out = {"counts": cohort.counts, "attrition": cohort.attrition[["step", "remaining", "excluded"]].to_dict("records"),
           "data": cohort.data.to_json(date_format="iso", double_precision=15)}
t2 = time.perf_counter()
out.update(seconds=t2 - t1, cpu_s=cpu() - c1, startup_s=t1 - t0, peak_kib=peak_rss_kib())
print(json.dumps(out, default=str))
"""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def count_rows(folder: Path, table: str) -> int:
    import duckdb

    path = folder / f"{table}.csv.gz"
    query = f"SELECT count(*) FROM read_csv('{path}', all_varchar = true, header = true)"
    return int(duckdb.sql(query).fetchall()[0][0])


def pad(folder: Path, scale: float) -> dict[str, tuple[int, int]]:
    """Append filler rows up to ``scale`` x MIMIC-IV v2.2's rows; table -> (rows before, rows after)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '4GB'")  # other work runs on the machine
    sizes = {}
    for table, filler in FILLERS.items():
        before = count_rows(folder, table)
        target = int(MIMIC_ROWS[table] * scale)
        add = max(target - before, 0)
        if add:
            source = folder / f"{table}.csv.gz"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE generated AS "
                f"SELECT * FROM read_csv('{source}', all_varchar = true, header = true)"
            )
            lo, hi = con.execute(
                "SELECT min(CAST(subject_id AS BIGINT)), max(CAST(subject_id AS BIGINT)) FROM generated"
            ).fetchone()
            n_subjects = hi - lo + 1
            # Filler row i belongs to subject lo + i * n_subjects // add: the generated patients' range, in
            # increasing order. The padded file is sorted by patient and time, as MIMIC-IV's files are, so the
            # generated rows sit among the filler in every Parquet row group (appended in a block of their own,
            # they would fill a few row groups whose itemid statistics let a reader skip all the others: a
            # flattering benchmark). A sort of the whole table needs more memory than the machine spares, so
            # it is sorted in parts of consecutive patients, each written as one gzip member of the file
            # (concatenated gzip members are one valid gzip file, read by DuckDB and Spark alike).
            filler = filler.replace("{subjects}", f"{lo} + i * {n_subjects} // {add}")
            parts = max(1, add // 2_000_000)
            cuts = [k * add // parts for k in range(parts + 1)]
            bounds = [lo + c * n_subjects // add for c in cuts[:-1]] + [hi + 1]
            padded = folder / f"{table}.padded.csv.gz"
            piece = folder / f"{table}.part.csv.gz"
            subject = "CAST(subject_id AS BIGINT)"
            with padded.open("wb") as out:
                for k in range(parts):
                    # UNION ALL BY NAME keeps the file's header (and its order); filler columns not named are empty.
                    upper = f"AND {subject} < {bounds[k + 1]}" if k < parts - 1 else ""
                    lower = f"{subject} >= {bounds[k]}" if k > 0 else "TRUE"
                    con.execute(
                        f"COPY (SELECT * FROM (SELECT * FROM generated WHERE {lower} {upper} "
                        f"UNION ALL BY NAME {filler} FROM range({cuts[k]}, {cuts[k + 1]}) t(i)) "
                        f"ORDER BY {subject}, {SORT_TIME[table]}) "
                        f"TO '{piece}' (FORMAT csv, HEADER {'true' if k == 0 else 'false'}, COMPRESSION gzip)"
                    )
                    out.write(piece.read_bytes())
            piece.unlink()
            padded.replace(source)
        sizes[table] = (before, before + add)
    con.close()
    return sizes


def child(task: str, folder: Path, **extra: object) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), task, str(folder), json.dumps(extra)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{task} on {folder} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(args: argparse.Namespace, config: dict) -> tuple[dict, tempfile.TemporaryDirectory | None]:
    """Generate (unless ``--data``), pad and convert; the step times, sizes and folders, and the temp dir."""
    tmp = None
    if args.data is None:
        from retrocohort.sources.synthetic import generate_synthetic

        if args.work is None:
            tmp = tempfile.TemporaryDirectory(prefix="bench_scale_")
        work = Path(tmp.name) if tmp is not None else args.work
        folder = work / "csv"
        t = time.perf_counter()
        generate_synthetic(folder, stays=args.stays, seed=args.seed)
        generate_s = time.perf_counter() - t
    else:
        folder, generate_s = args.data, float("nan")
        work = folder.parent
    t = time.perf_counter()
    sizes = pad(folder, args.scale)
    pad_s = time.perf_counter() - t
    csv_mib = folder_bytes(folder) / 2**20

    pq_folder = work / "parquet"
    conversion = child("convert", folder, out=str(pq_folder), duckdb_config=config)
    for table, (_, after) in sizes.items():
        assert conversion["rows"][table] == after, f"{table}: {conversion['rows'][table]} rows converted, {after} in"

    steps = {
        "folder": str(folder),
        "parquet": str(pq_folder),
        "generate_s": generate_s,
        "pad_s": pad_s,
        "csv_mib": csv_mib,
        "sizes": sizes,
        "conversion": conversion,
    }
    return steps, tmp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of MIMIC-IV v2.2's row counts")
    parser.add_argument("--stays", type=int, default=100_000, help="ICU stays of the synthetic EHR")
    parser.add_argument("--seed", type=int, default=20231103)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each cohort build (median reported)")
    parser.add_argument("--data", type=Path, default=None, help="an existing synthetic EHR (padded in place!)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data (default: a temporary one)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 2GB")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: every core)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.md")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="generate, pad and convert into --work, record the steps in --work/steps.json and stop",
    )
    args = parser.parse_args()
    if args.prepare_only and args.work is None:
        parser.error("--prepare-only needs --work (the folder a later run reuses)")
    command = "nice .venv/bin/python benchmarks/bench_scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    config = {k: v for k, v in (("memory_limit", args.memory_limit), ("threads", args.threads)) if v is not None}

    # A run with --work reuses the steps a --prepare-only run recorded there (same stays, seed and scale):
    # at the quarter size the data preparation takes most of the time, the cohort builds not.
    steps_file = args.work / "steps.json" if args.work is not None else None
    key = {"stays": args.stays, "seed": args.seed, "scale": args.scale}
    tmp = None
    if steps_file is not None and steps_file.exists() and not args.prepare_only:
        steps = json.loads(steps_file.read_text())
        if steps["key"] != key:
            raise SystemExit(f"{steps_file} was prepared for {steps['key']}, not {key}: use another --work")
        folder, pq_folder = Path(steps["folder"]), Path(steps["parquet"])
    else:
        steps, tmp = prepare(args, config)
        steps["key"], steps["config"] = key, config
        if steps_file is not None:
            steps_file.write_text(json.dumps(steps, default=str))
        if args.prepare_only:
            print(json.dumps(steps, default=str))
            return 0
        folder, pq_folder = Path(steps["folder"]), Path(steps["parquet"])
    generate_s, pad_s, csv_mib, conversion = steps["generate_s"], steps["pad_s"], steps["csv_mib"], steps["conversion"]
    sizes = {t: tuple(v) for t, v in steps["sizes"].items()}

    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    tasks = ("build_cohort", "extract")
    formats = (("csv.gz", folder), ("Parquet", pq_folder))
    runs: dict[tuple[str, str], list[dict]] = {(t, f): [] for t in tasks for f, _ in formats}
    # Interleaved (each repeat runs every task on every copy), so a change in the machine's load hits all alike.
    for _ in range(args.repeats):
        for fmt, data in formats:
            for task in tasks:
                runs[task, fmt].append(child(task, data, study=str(STUDY)))
    for task in tasks:
        # the same cohort, to the last digit, from either copy
        assert runs[task, "csv.gz"][0]["data"] == runs[task, "Parquet"][0]["data"], f"{task}: Parquet changed it"
        assert runs[task, "csv.gz"][0]["attrition"] == runs[task, "Parquet"][0]["attrition"]

    # With DuckDB settings given, the flagship on Parquet once more with them (the headline runs use the defaults).
    limited = (
        [child("build_cohort", pq_folder, study=str(STUDY), duckdb_config=config) for _ in range(args.repeats)]
        if config
        else []
    )
    if limited:
        assert limited[0]["data"] == runs["build_cohort", "Parquet"][0]["data"], "DuckDB settings changed it"

    load_after = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    counts = runs["build_cohort", "csv.gz"][0]["counts"]
    lines = [
        "## The flagship cohort at MIMIC-IV scale: csv.gz and Parquet",
        "",
        f"Command: `{command}`  ",
        (
            "Machine: shared; each step in a fresh process (peak memory = VmHWM of that process); "
            f"DuckDB settings: defaults (second line: {config or 'none given'}); medians of {args.repeats} run(s); "
            f"load average before the runs {load_before}, after {load_after}."
        ),
        "",
        f"Data: synthetic EHR, {args.stays:,} ICU stays, seed {args.seed}"
        + (f" (generated in {generate_s:.0f} s)" if not math.isnan(generate_s) else "")
        + f", padded in {pad_s:.0f} s to {args.scale:g} x MIMIC-IV v2.2's rows: "
        + ", ".join(f"{t} {after:,} ({before:,} generated)" for t, (before, after) in sizes.items())
        + f". csv.gz: {csv_mib:,.0f} MiB; Parquet: {conversion['parquet_bytes'] / 2**20:,.0f} MiB.",
        (
            f"Flagship cohort (studies/magnesium_ckrt.toml): {counts['indexed']:,} indexed -> "
            f"{counts['eligible']:,} eligible ({counts['exposed']:,} exposed); identical from csv.gz and Parquet."
        ),
        "",
        "| step | data | seconds (median) | runs (s) | CPU s (median) | peak memory (GiB) | goal | met |",
        "|---|---|---:|---|---:|---:|---|---|",
        (
            f"| `convert` (every table; DuckDB {steps.get('config') or 'defaults'}) | csv.gz -> Parquet | "
            f"{conversion['seconds']:.1f} | one run | {conversion.get('cpu_s', float('nan')):.1f} | "
            f"{conversion['peak_kib'] / 2**20:.2f} | | |"
        ),
    ]
    for (task, fmt), task_runs in runs.items():
        seconds = [r["seconds"] for r in task_runs]
        median = statistics.median(seconds)
        peak = max(r["peak_kib"] for r in task_runs) / 2**20
        goal, met = "", ""
        if task == "build_cohort" and fmt == "Parquet":
            goal = f"< {GOAL_SECONDS:.0f} s, < {GOAL_GIB:.0f} GiB"
            met = "yes" if median < GOAL_SECONDS and peak < GOAL_GIB else "no"
        name = "`build_cohort` (study language)" if task == "build_cohort" else "legacy `extract`"
        runs_text = ", ".join(f"{s:.2f}" for s in seconds)
        cpu = statistics.median(r["cpu_s"] for r in task_runs)
        lines.append(f"| {name} | {fmt} | {median:.2f} | {runs_text} | {cpu:.2f} | {peak:.2f} | {goal} | {met} |")
    if limited:
        seconds = [r["seconds"] for r in limited]
        peak = max(r["peak_kib"] for r in limited) / 2**20
        settings = ", ".join(f"{k} {v}" for k, v in config.items())
        lines.append(
            f"| `build_cohort`, DuckDB {settings} | Parquet | {statistics.median(seconds):.2f} | "
            f"{', '.join(f'{s:.2f}' for s in seconds)} | {statistics.median(r['cpu_s'] for r in limited):.2f} | "
            f"{peak:.2f} | | |"
        )
    lines += [
        "",
        "CPU s: user + system time of all the process's threads, steadier than wall time on a shared machine",
        "(nan where the preparation was recorded before the script measured it).",
        "Times exclude interpreter start-up and imports. Filler rows use itemids no study here reads, so they",
        "cost scanning only, as the other rows of the real tables do; sorted by subject_id and time with the",
        "generated rows, they share every Parquet row group with them, as the itemids of MIMIC-IV do.",
        "`build_cohort` reads each file once: the data checks are counted in that read, on the rows the study",
        "reads (docs/data-checks.md). The legacy `extract` (the test oracle) still runs the whole-data pass",
        "first (every row of every table, grouped by every column for the duplicates): its peak is that pass.",
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
