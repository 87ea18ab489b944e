"""retrocohort: retrospective, propensity-matched cohort studies on ICU EHR data.

The public API, re-exported from the subpackages: ``survival`` (R-exact
survival engine), ``matching`` (propensity score, nearest-neighbour matching,
balance, Table 1), ``spec`` (the study language), ``sources`` and ``cohort``
(raw EHR tables to an analysis frame), ``study`` (the pipeline) and ``report``.

``load_study(path)`` reads a study file of the study language; ``run_study(data, study)``
runs it end to end.
"""

__version__ = "0.1.0"

from . import _startup

_startup.install()  # Ctrl-C during the imports below: one line and exit 2 from the command, no traceback

from .cohort.builder import BuiltCohort, build_cohort
from .matching import (
    MatchResult,
    MatchSummary,
    PropensityResult,
    balance,
    balance_before_after,
    get_matches,
    match_data,
    match_nearest,
    match_summary,
    propensity_score,
    table_one,
)
from .report import methods_paragraph, render_html, results_paragraph, save_figure, study_figures
from .sources import MimicIV, SyntheticInfo, check_source, generate_synthetic, to_parquet
from .study import Study, StudyResult, analyse_cohort, flagship_study, load_study, run_study, write_outputs
from .study.validate import ValidationResult, validate
from .survival import (
    CoxResult,
    CumulativeIncidenceResult,
    FineGrayResult,
    GrayTestResult,
    KaplanMeierResult,
    LogRankResult,
    PHTestResult,
    cox,
    cumulative_incidence,
    fine_gray,
    gray_test,
    kaplan_meier,
    logrank,
    ph_test,
)

_startup.release()

__all__ = [
    "BuiltCohort",
    "CoxResult",
    "CumulativeIncidenceResult",
    "FineGrayResult",
    "GrayTestResult",
    "KaplanMeierResult",
    "LogRankResult",
    "MatchResult",
    "MatchSummary",
    "MimicIV",
    "PHTestResult",
    "PropensityResult",
    "Study",
    "StudyResult",
    "SyntheticInfo",
    "ValidationResult",
    "analyse_cohort",
    "balance",
    "balance_before_after",
    "build_cohort",
    "check_source",
    "cox",
    "cumulative_incidence",
    "fine_gray",
    "flagship_study",
    "generate_synthetic",
    "get_matches",
    "gray_test",
    "kaplan_meier",
    "load_study",
    "logrank",
    "match_data",
    "match_nearest",
    "match_summary",
    "methods_paragraph",
    "ph_test",
    "propensity_score",
    "render_html",
    "results_paragraph",
    "run_study",
    "save_figure",
    "study_figures",
    "table_one",
    "to_parquet",
    "validate",
    "write_outputs",
]
