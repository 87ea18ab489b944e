"""retrocohort as a library: the public names are the documented ones, the type marker ships,
results do not import matplotlib at module import."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import retrocohort

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "retrocohort"


def _documented_names() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## `retrocohort` top-level names", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)`$", section, flags=re.MULTILINE)


def test_all_equals_documented_names():
    documented = _documented_names()
    assert len(documented) > 10  # the section was found and parsed
    assert len(documented) == len(set(documented))
    assert len(retrocohort.__all__) == len(set(retrocohort.__all__)), "duplicate name in retrocohort.__all__"
    assert set(retrocohort.__all__) == set(documented), (
        f"in __all__ only: {sorted(set(retrocohort.__all__) - set(documented))}; "
        f"documented only: {sorted(set(documented) - set(retrocohort.__all__))} (docs/api.md)"
    )


def test_every_public_name_resolves():
    missing = [name for name in retrocohort.__all__ if not hasattr(retrocohort, name)]
    assert missing == []


def test_py_typed_marker_ships():
    assert (SRC / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["retrocohort"]


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are the lazy ones
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0] if node.level == 0 else "." * node.level + node.module)
    return names


def test_results_do_not_import_matplotlib_or_report_at_module_level():
    files = [SRC / "_printing.py", *sorted((SRC / "survival").glob("*.py")), *sorted((SRC / "matching").glob("*.py"))]
    offenders = {
        f.name: imps
        for f in files
        if (imps := {i for i in _top_level_imports(f) if "matplotlib" in i or "report" in i})
    }
    assert offenders == {}


def test_every_public_result_has_a_readable_repr_and_html():
    from retrocohort import matching, survival

    classes = [
        survival.CoxResult,
        survival.FineGrayResult,
        survival.KaplanMeierResult,
        survival.LogRankResult,
        survival.CumulativeIncidenceResult,
        survival.GrayTestResult,
        survival.PHTestResult,
        matching.PropensityResult,
        matching.MatchResult,
    ]
    from retrocohort.matching._tables import BalanceTable, TableOne

    for cls in [*classes, BalanceTable, TableOne]:
        assert "__repr__" in cls.__dict__, f"{cls.__name__} has no repr of its own (a dataclass dump)"
        assert "_repr_html_" in cls.__dict__, f"{cls.__name__} has no _repr_html_"
