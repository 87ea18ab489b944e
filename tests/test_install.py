"""retrocohort installs as a library: the wheel's contents and its dependency metadata.

How the dependency metadata is proven without a network resolve (flaky, and slow with pyspark):

1. The wheel is built from a copy of the source tree with ``pip wheel --no-deps`` (pip's build
   isolation fetches the build backend, setuptools>=68, from the same index as ``make venv``; pip's
   cache serves it afterwards), so the test reads the metadata pip would install from.
2. Its ``Requires-Dist`` (with no extra, and with ``[spark]``) is resolved against the distributions
   of this virtualenv, which ``make venv`` installed from requirements.lock: every requirement, and
   every requirement of those, recursively, must be installed at a version its specifier accepts.
   That proves the locked versions satisfy the declared bounds (a bound raised past the lock fails).
3. A fresh virtualenv (``venv --without-pip``, no system site-packages) sees *only* the wheel and the
   files of that closure (symlinked into one folder named by a ``.pth``); there it imports
   retrocohort, loads the flagship study, fits a Cox model and, for ``[spark]``, imports ibis'
   PySpark backend. An import of a package the metadata does not declare fails there, which is the
   error ``pip install .`` in a clean environment would give a user.

What it does not prove: that a resolver on PyPI today would pick versions that still work (newer
releases); the lock pins the versions CI and ``make demo`` use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    shutil.copytree(ROOT / "studies", tree / "studies", ignore=ignore)
    out = tmp_path_factory.mktemp("wheelhouse")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"pip wheel failed:\n{run.stdout}\n{run.stderr}"
    (built,) = out.glob("retrocohort-*.whl")
    return built


def test_wheel_ships_the_type_marker_templates_and_studies(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "retrocohort/py.typed" in names
    assert "retrocohort/report/templates/report.html.j2" in names
    shipped = {Path(n).name for n in names if n.startswith("retrocohort/studies/")}
    assert shipped == {p.name for p in (ROOT / "studies").glob("*.toml")}
    assert "magnesium_ckrt.toml" in shipped
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(zf.read(meta).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def _installed() -> dict[str, metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return found


def _closure(requires: list[Requirement], extras: set[str]) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """The installed distributions the requirements need, recursively, and every unmet requirement."""
    installed = _installed()
    needed: dict[str, metadata.Distribution] = {}
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    todo = [(r, extras, "retrocohort") for r in requires]
    while todo:
        req, active, parent = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = canonicalize_name(req.name)
        dist = installed.get(name)
        if dist is None:
            problems.append(f"{parent} needs {req}: not installed (not in requirements.lock?)")
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{parent} needs {req}: this environment (requirements.lock) has {dist.version}")
        needed[name] = dist
        for extra in sorted(req.extras | {""}):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            for sub in dist.requires or []:
                todo.append((Requirement(sub), {extra} if extra else set(), name))
    return needed, problems


def _site_of(dists: dict[str, metadata.Distribution], wheel: Path, site: Path) -> None:
    """One folder holding the wheel and (as symlinks) every file of the given distributions."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for dist in dists.values():
        base = Path(str(dist.locate_file("")))
        for rel in dist.files or []:
            if str(rel).startswith(".."):  # console scripts in bin/: not importable code
                continue
            source, target = base / rel, site / rel
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)


SCRIPT = """
import sys
import numpy as np
import pandas as pd
import retrocohort as rc
assert rc.__file__.startswith(sys.argv[1]), rc.__file__
study = rc.flagship_study()  # the packaged copy of studies/magnesium_ckrt.toml
assert study.study.name, study
rng = np.random.default_rng(3)
df = pd.DataFrame({"t": rng.exponential(5, 60).round(1), "e": rng.integers(0, 2, 60), "x": rng.normal(size=60)})
fit = rc.cox(df, "t", "e", ["x"])
assert "exp(coef)" in repr(fit), repr(fit)
if "spark" in sys.argv[2:]:
    import pyspark
    import ibis.backends.pyspark
print("ok", fit.summary.loc["x", "coef"])
"""


@pytest.mark.parametrize("extras", [set(), {"spark"}], ids=["plain", "spark"])
def test_declared_dependencies_suffice_in_a_clean_environment(wheel, tmp_path, extras):
    needed, problems = _closure(_requires(wheel), extras)
    assert problems == []
    assert {"numpy", "pandas", "scipy", "duckdb", "ibis-framework"} <= set(needed)
    assert ("pyspark" in needed) == ("spark" in extras)

    site = tmp_path / "site"
    _site_of(needed, wheel, site)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    python = tmp_path / "venv" / "bin" / "python"
    (pure,) = (tmp_path / "venv" / "lib").glob("python3*/site-packages")
    (pure / "closure.pth").write_text(str(site) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    run = subprocess.run(
        [str(python), "-c", SCRIPT, str(site), *sorted(extras)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the checkout: `import retrocohort` must not find ./src
        env=env,
    )
    assert run.returncode == 0, f"in a clean environment with only the declared dependencies:\n{run.stderr[-3000:]}"
    assert run.stdout.startswith("ok ")
