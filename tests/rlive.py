"""Call R from the live parity suite (``pytest -m r``).

``run_r(code, data)`` writes each DataFrame in ``data`` to CSV, runs ``code``
with Rscript and returns the R object named ``result`` decoded from JSON
(``jsonlite::toJSON(result, digits = NA, auto_unbox = TRUE)``: full precision).
Each data frame is available in R under its key, read with
``read.csv(..., stringsAsFactors = FALSE)``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

RSCRIPT = shutil.which("Rscript")


def require_r(*packages: str) -> None:
    """Fail (not skip) when R or a package is missing: CI installs them."""
    if RSCRIPT is None:
        pytest.fail("Rscript not found: run `make system-deps` (Debian r-base-core) first")
    if packages:
        probe = "; ".join(f'if (!requireNamespace("{p}", quietly=TRUE)) cat("{p}\\n")' for p in packages)
        out = subprocess.run([RSCRIPT, "-e", probe], capture_output=True, text=True, check=True).stdout.split()
        if out:
            pytest.fail(f"R packages missing: {out}; run `make system-deps`")


def run_r(code: str, data: dict[str, pd.DataFrame] | None = None, timeout: float = 600) -> object:
    require_r("jsonlite")
    with tempfile.TemporaryDirectory(prefix="rlive-") as tmp:
        tmpdir = Path(tmp)
        lines = ["suppressPackageStartupMessages(library(jsonlite))"]
        for name, frame in (data or {}).items():
            path = tmpdir / f"{name}.csv"
            frame.to_csv(path, index=False, float_format="%.17g")
            lines.append(f'{name} <- read.csv("{path.as_posix()}", stringsAsFactors = FALSE)')
        lines.append(code)
        out_path = tmpdir / "result.json"
        lines.append(
            f'writeLines(toJSON(result, digits = NA, auto_unbox = TRUE, na = "null"), "{out_path.as_posix()}")'
        )
        script = tmpdir / "script.R"
        script.write_text("\n".join(lines) + "\n")
        proc = subprocess.run([RSCRIPT, "--vanilla", str(script)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"Rscript failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(out_path.read_text())
