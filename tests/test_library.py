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
        matching.MatchSummary,
    ]
    from retrocohort.matching._tables import BalanceTable, TableOne

    for cls in [*classes, BalanceTable, TableOne]:
        assert "__repr__" in cls.__dict__, f"{cls.__name__} has no repr of its own (a dataclass dump)"
        assert "_repr_html_" in cls.__dict__, f"{cls.__name__} has no _repr_html_"


# --------------------------------------------------------------------------- the cohort's and the study result's repr
# Hand-made objects (no EHR build): small enough to put a small cell where the suppression must act.


def _flagship():
    return retrocohort.load_study(ROOT / "studies" / "magnesium_ckrt.toml")


def _small_cohort(study=None, exposed=3, adult_excluded=3):
    import pandas as pd

    from retrocohort.cohort.builder import BuiltCohort

    n = 40
    data = pd.DataFrame(
        {
            "subject_id": [10_000_032 + 7 * i for i in range(n)],
            "stay_id": [30_000_000 + i for i in range(n)],
            "hadm_id": [20_000_000 + i for i in range(n)],
            "index_time": pd.to_datetime(["2153-04-17 09:41:00"] * n),
            "exposed": [1] * exposed + [0] * (n - exposed),  # 3 exposed: below the threshold of 5
            "age": [61.5] * n,
            "death_time": [12.0] * n,
            "death_status": [1] * n,
        }
    )
    attrition = pd.DataFrame(
        {
            "step": ["index_event", "adult", "support", "eligible"],
            "remaining": [57 + adult_excluded, 57, 40, 40],
            "excluded": [0, adult_excluded, 17, 0],
            "reason": ["index event", "age >= 18", "on support", f"{exposed} Mg (IV), {n - exposed} no Mg"],
        }
    )
    return BuiltCohort(data=data, attrition=attrition, notes=("2 patients imputed",), study=study)


def test_cohort_repr_shows_title_attrition_arms_columns_and_no_row_values():
    study = _flagship()
    cohort = _small_cohort(study, exposed=10, adult_excluded=6)  # no count below 5
    text = repr(cohort)
    html = cohort._repr_html_()
    for shown in (text, html):
        assert study.study.title in shown
        for step in ("index_event", "adult", "support", "eligible"):
            assert step in shown
        for column in cohort.data.columns:
            assert column in shown
        # no identifier and no date of any row
        assert "10000032" not in shown and "30000000" not in shown and "2153" not in shown
        assert "61.5" not in shown
    lines = text.splitlines()
    # the attrition as a table: the step, then remaining and excluded
    assert any(line.split()[:3] == ["support", "40", "17"] for line in lines if line.startswith("support"))
    assert "comparator (no Mg): 30" in text and "exposed (Mg): 10" in text
    assert html.startswith("<div") and "<table" in html


def test_cohort_repr_suppresses_counts_below_the_study_threshold():
    cohort = _small_cohort(_flagship())
    text = repr(cohort)
    assert "exposed (Mg): <5" in text  # 3 exposed
    assert "comparator (no Mg): 36-39" in text  # 37 = 40 - 3 would give the 3 back
    adult = next(line for line in text.splitlines() if line.startswith("adult"))
    assert adult.split()[1:3] != ["57", "3"] and "<5" in adult  # 3 excluded at 'adult'
    # the eligible line's free text quotes the 3 exposed too
    eligible = next(line for line in text.splitlines() if line.startswith("eligible"))
    assert "3 Mg" not in eligible and "<5 Mg" in eligible
    assert "2 patients imputed" not in text
    # the exact numbers stay on the object
    assert cohort.counts["exposed"] == 3


def test_cohort_repr_of_a_hand_made_cohort_without_a_study_or_exposure():
    import pandas as pd

    from retrocohort.cohort.builder import BuiltCohort

    cohort = BuiltCohort(
        data=pd.DataFrame({"subject_id": [10_000_032], "age": [70.0]}),
        attrition=pd.DataFrame({"step": ["index_event"], "remaining": [1], "excluded": [0], "reason": ["index"]}),
        notes=(),
    )
    text = repr(cohort)
    assert "(no study attached)" in text and "10000032" not in text
    assert "Columns (2): subject_id, age" in text


def _study_result(study, exposed=3):

    from retrocohort.study.results import Estimate, SkippedModel, StudyResult

    cohort = _small_cohort(study)
    estimates = (
        Estimate("death", "cox_adjusted", "matched", 0.4576, 0.1691, 1.2382, 0.1238, "Death, Cox, matched", 30, 15),
        Estimate("death", "cox_adjusted", "full", 0.4113, 0.2101, 0.7915, 0.007, "Death, Cox, full", 40, 21),
        Estimate("krt_liberation", "fine_gray_adjusted", "full", 5.2963, 2.1516, 13.0374, 0.00029, "KRT", 40, 2),
    )
    return StudyResult(
        study=study,
        synthetic=True,
        attrition=cohort.attrition,
        data_checks=None,
        counts={"indexed": 60, "eligible": 40, "exposed": exposed, "comparator": 40 - exposed},
        dose=None,
        cohort=cohort.data,
        matched=None,
        primary="death",
        estimates=estimates,
        skipped=(SkippedModel("death", "cox_adjusted", "matched", "fewer than 10 exposed patients"),),
        notes=("IPTW (ATT): effective sample size 25.5 of 37",),
        planted={"death": {"estimand": "hr", "value": 0.4}},
        provenance={},
    )


def _section(text: str, header: str) -> list[str]:
    """The lines after the line starting with ``header`` up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1 : end]


def test_study_result_repr_shows_estimates_per_outcome_skipped_models_and_notes():
    study = _flagship()
    result = _study_result(study, exposed=12)
    text = repr(result)
    assert text.splitlines()[0] == study.study.title + " (SYNTHETIC DATA)"
    main, every = _section(text, "Main estimates"), _section(text, "All estimates:")
    # the main table: each outcome's primary (matched) estimate, the published one, the planted truth
    death = next(line for line in main if line.strip().startswith("Death by day 90"))
    assert "0.46 (0.17–1.24)" in death and "0.124" in death and "0.38 (0.18–0.83)" in death and "0.40" in death
    krt = next(line for line in main if line.strip().startswith("KRT liberation by day 90"))
    assert "skipped" in krt and "2.07 (1.23–3.49)" in krt  # no matched Fine-Gray in this result
    # every estimate, per outcome in the study's order, the matched population first
    assert [line.split()[0] for line in every[1:]] == ["Death", "Death", "KRT"]
    assert "matched" in every[1] and "full cohort" in every[2]
    assert "5.30 (2.15–13.04)" in every[3] and "<0.001" in every[3]
    assert "death / cox_adjusted / matched: fewer than 10 exposed patients" in text
    assert "effective sample size 25.5" in text
    html = result._repr_html_()
    assert "5.30 (2.15–13.04)" in html and "fewer than 10 exposed patients" in html
    for shown in (text, html):
        assert "10000032" not in shown and "2153" not in shown


def test_study_result_repr_suppresses_small_counts_as_the_printed_summary_does():
    result = _study_result(_flagship(), exposed=3)
    text = repr(result)
    exposed = next(line for line in text.splitlines() if line.strip().startswith("exposed"))
    assert exposed.split()[-1] == "<5"
    krt = next(line for line in _section(text, "All estimates:") if "fine gray adjusted" in line)
    assert " 2 " not in krt and "<5" in krt  # 2 events
    assert result.counts["exposed"] == 3  # exact on the object


def test_cohort_repr_withholds_rather_than_raises_or_leaks_on_a_broken_log():
    import pandas as pd

    from retrocohort.cohort.builder import BuiltCohort

    attrition = pd.DataFrame({"step": ["index_event"], "remaining": [float("nan")], "excluded": [0], "reason": ["x"]})
    cohort = BuiltCohort(data=pd.DataFrame({"exposed": [1, 0, 0]}), attrition=attrition, notes=())
    text = repr(cohort)  # a repr must not raise in a notebook
    assert "Eligible: ? patients" in text and "exposed (exposed): ?" in text


def test_reprs_with_the_threshold_off_show_exact_counts_and_say_so():
    study = _flagship()
    off = study.model_copy(update={"report": study.report.model_copy(update={"small_cell_threshold": 0})})
    text = repr(_small_cohort(off))
    assert "exposed (Mg): 3" in text and "<5" not in text
    assert "small-cell suppression off" in text


def test_html_reprs_escape_the_study_text():
    study = _flagship()
    evil = study.model_copy(update={"study": study.study.model_copy(update={"title": "<script>alert(1)</script>"})})
    for html in (_small_cohort(evil)._repr_html_(), _study_result(evil, exposed=12)._repr_html_()):
        assert "<script>" not in html and "&lt;script&gt;" in html
