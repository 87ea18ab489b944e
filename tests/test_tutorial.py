"""The tutorial notebook (docs/tutorial.ipynb) runs end to end on the current code, and is stored without outputs.

The notebook is executed with nbclient in a kernel of *this* interpreter (the virtualenv's python, with
ipykernel installed in it): the test writes a kernelspec into its own temporary folder and puts that folder
first on ``JUPYTER_PATH``, so nothing is written outside the venv and the temp folder, a user-level
``python3`` kernelspec on the machine cannot substitute another Python, and a fresh CI machine needs no
``ipykernel install`` step.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
KERNEL = "retrocohort-tutorial-test"


def _read():
    import nbformat

    return nbformat.read(NOTEBOOK, as_version=4)


def test_tutorial_is_stored_without_outputs():
    # Outputs of a run (even on synthetic data) belong to that run; with real data they could hold rows.
    nb = _read()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) > 10
    stored = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert stored == [], f"code cells {stored} of docs/tutorial.ipynb carry outputs: clear them before committing"


def test_tutorial_walks_every_stage():
    source = "\n".join(c.source for c in _read().cells if c.cell_type == "code")
    for call in (
        "rc.generate_synthetic(",
        "rc.load_study(",
        "rc.build_cohort(",
        "rc.propensity_score(",
        "rc.match_nearest(",
        "rc.balance(",
        "rc.kaplan_meier(",
        "rc.cox(",
        "rc.cumulative_incidence(",
        "rc.fine_gray(",
        "km.plot(",
        "fg.plot(",
    ):
        assert call in source, f"the tutorial no longer calls {call}"


def _kernelspec(folder: Path) -> None:
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "retrocohort test (this virtualenv)",
                "language": "python",
                # this checkout's sources first, as the tests import them
                "env": {"PYTHONPATH": str(ROOT / "src")},
            }
        )
    )


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts.append(data.get("text/plain", ""))
        parts.append(data.get("text/html", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_tutorial_executes_without_error(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    _kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = _read()
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=600,
        # run where a reader opens it: docs/ (the notebook finds studies/ in a parent folder)
        resources={"metadata": {"path": str(ROOT / "docs")}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    texts = {c.source.splitlines()[-1]: _text_outputs(c) for c in code if c.source.strip()}
    # the results render as their R-like reprs, not dataclass dumps, and the figures are drawn
    assert "Attrition" in texts["cohort"] and "BuiltCohort(" not in texts["cohort"]
    assert "exp(coef)" in texts["fit"]
    assert "All estimates" in texts["result"] and "StudyResult(" not in texts["result"]
    # the stage-by-stage fits are the study's own matched estimates (same weights, cluster, ties)
    compared = [line for c in code for line in _text_outputs(c).splitlines() if "in the study result" in line]
    assert len(compared) == 2
    for line in compared:
        here, there = re.findall(r"\d+\.\d+", line)
        assert here == there, line
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images >= 5  # overlap, Love plot, KM, forest (Cox), CIF, forest (Fine-Gray)
