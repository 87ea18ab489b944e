"""The study language: a study as data (pydantic, frozen), at the bottom of the house.

``load_study_file(path)`` reads a TOML study file; every other stage reads the
:class:`Study` it returns. See ``docs/study-language.md``.
"""

from .concept import ConceptSpec
from .load import check_study, load_study_file, parse_study, parse_study_text
from .study import (
    AnalysisSpec,
    ComparatorSpec,
    CovariateSpec,
    Criterion,
    DoseSpec,
    ExposureSpec,
    IndexSpec,
    MatchingSpec,
    OutcomeSpec,
    ReportSpec,
    Study,
    StudyInfo,
    covariate_type,
    study_problems,
)
from .window import Window

__all__ = [
    "AnalysisSpec",
    "ComparatorSpec",
    "ConceptSpec",
    "CovariateSpec",
    "Criterion",
    "DoseSpec",
    "ExposureSpec",
    "IndexSpec",
    "MatchingSpec",
    "OutcomeSpec",
    "ReportSpec",
    "Study",
    "StudyInfo",
    "Window",
    "check_study",
    "covariate_type",
    "load_study_file",
    "parse_study",
    "parse_study_text",
    "study_problems",
]
