"""Run every side-by-side benchmark script and assemble BENCHMARKS.md.

Usage (from the project root):  .venv/bin/python benchmarks/run_all.py [--only km,cox]
Each benchmarks/bench_<area>.py times retrocohort and its peer (R, lifelines,
MatchIt) in the same run on the same data and writes benchmarks/results/<area>.md;
this script runs them (unless --assemble-only) and concatenates the sections.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "km",
    "cox",
    "finegray",
    "matching",
    "synthetic",
    "cohort",
    "scale",
    "study",
    "study_truth",
    "target_trial",
    "validate",
]
#: Run only when named in --only (bench_scale at its default quarter size needs ~25 GiB and hours).
ON_REQUEST = {"scale"}
#: Further result files a script writes besides results/<area>.md, assembled right after it.
EXTRA_RESULTS = {"validate": ["validate_austin"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated areas to rerun (default: all)")
    parser.add_argument("--assemble-only", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    areas = [a for a in args.only.split(",") if a] or [a for a in ORDER if a not in ON_REQUEST]
    if not args.assemble_only:
        for area in areas:
            script = HERE / f"bench_{area}.py"
            if not script.exists():
                print(f"skip {area}: {script.name} not found", file=sys.stderr)
                continue
            print(f"== {script.name}", flush=True)
            subprocess.run([sys.executable, str(script)], check=True)
    sections = [HERE / "results" / f"{name}.md" for a in ORDER for name in [a, *EXTRA_RESULTS.get(a, [])]]
    body = [
        "# Benchmarks",
        "",
        "Side-by-side timings: each script times retrocohort and its peer in the same run on the same",
        "data, so the ratio is what to read (these machines are shared and noisy; absolute times vary).",
        f"Assembled by `python benchmarks/run_all.py`; machine: {platform.machine()}, 2 cores, shared.",
        "",
        "Peak memory is measured in a fresh child process. Sections whose text says `ru_maxrss` were",
        "recorded before the scripts switched to the child's own high-water mark (`VmHWM`): on Linux",
        "`ru_maxrss` survives fork and exec and so also carries the parent script's peak; read those",
        "figures as upper bounds.",
        "",
    ]
    for path in sections:
        if path.exists():
            body += [path.read_text().strip(), ""]
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(body))
    print("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
