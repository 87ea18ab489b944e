"""Benchmark (not a test): does each shipped study's 95% CI cover its planted truth on a large synthetic EHR?

Usage (from the project root):
    PYTHONPATH=src nice .venv/bin/python benchmarks/bench_study_truth.py [--stays 40000] [--study-patients 12000]

Writes one large synthetic EHR, builds every study in studies/ with the study-language cohort
builder, fits each study's primary outcome with retrocohort.survival.cox adjusted for the
covariates the generator's model conditions on, and prints the estimate, the 95% CI and the planted
truth recorded in SYNTHETIC.json (the flagship's under "truth", the others under "studies").
Writes benchmarks/results/study_truth.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# study -> (covariates of the adjusted Cox model, where the planted HR sits in SYNTHETIC.json)
MODELS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "magnesium_ckrt": (["exposed", "age", "sex", "sepsis", "egfr_baseline", "sofa", "serum_mg"], ("truth", "hr_death")),
    "thiamine_sepsis": (
        ["exposed", "age", "sex", "sofa", "lactate_max", "alcohol"],
        ("studies", "thiamine_sepsis", "hr_death"),
    ),
    "vasopressin_shock": (["exposed", "age", "sex", "sepsis", "sofa"], ("studies", "vasopressin_shock", "hr_death")),
    "second_vasopressor": (["exposed", "age", "sex", "sofa"], ("studies", "second_vasopressor", "hr_death")),
}


def main() -> None:
    """Generate, build, fit, print and write the table."""
    from retrocohort.cohort.builder import build_cohort
    from retrocohort.sources.synthetic import generate_synthetic
    from retrocohort.spec import load_study_file
    from retrocohort.survival import cox

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=40_000, help="flagship ICU stays (default 40,000)")
    parser.add_argument("--study-patients", type=int, default=12_000, help="thiamine-study patients (default 12,000)")
    parser.add_argument("--seed", type=int, default=20231103)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = generate_synthetic(tmp, stays=args.stays, seed=args.seed, study_patients=args.study_patients)
        gen_s = time.perf_counter() - t0
        meta = json.loads((Path(tmp) / "SYNTHETIC.json").read_text())
        print(f"synthetic EHR: {info.stays} ICU stays, seed {args.seed}, written in {gen_s:.1f} s")
        for path in sorted((ROOT / "studies").glob("*.toml")):
            study = load_study_file(path)
            name = study.study.name
            if name not in MODELS:
                print(f"{name}: no planted truth known to this benchmark; skipped")
                continue
            covariates, where = MODELS[name]
            t1 = time.perf_counter()
            built = build_cohort(study, tmp)
            fit = cox(built.data, "death_time", "death_status", covariates).summary.loc["exposed"]
            truth = meta
            for key in where:
                truth = truth[key]
            covered = fit["lower"] <= truth <= fit["upper"]
            rows.append(
                (
                    name,
                    built.counts["eligible"],
                    built.counts["exposed"],
                    float(fit["hr"]),
                    float(fit["lower"]),
                    float(fit["upper"]),
                    float(truth),
                    covered,
                    time.perf_counter() - t1,
                )
            )
    header = (
        "| study | eligible | exposed | HR (adjusted Cox, death) | 95% CI | planted truth | covered | build+fit s |"
    )
    lines = [header, "|---|---:|---:|---:|---|---:|---|---:|"]
    for name, n, e, hr, lo, hi, truth, covered, secs in rows:
        lines.append(
            f"| {name} | {n} | {e} | {hr:.3f} | {lo:.3f} - {hi:.3f} | {truth:.3f} | "
            f"{'yes' if covered else 'NO'} | {secs:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    out = HERE / "results" / "study_truth.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        "# Planted truth per study on a large synthetic EHR\n\n"
        f"`benchmarks/bench_study_truth.py --stays {args.stays} --study-patients {args.study_patients} "
        f"--seed {args.seed}`: {info.stays} ICU stays, generated in {gen_s:.1f} s. Primary outcome (death) of "
        "each study in studies/, Cox model adjusted for the covariates the generator's model "
        "conditions on; the truth is the planted conditional hazard ratio from SYNTHETIC.json.\n\n" + table + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
