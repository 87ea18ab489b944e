"""retrocohort.study: the study file and the one pipeline that wires every stage."""

from .evalue import EValue, e_value_hr, e_value_rr
from .outputs import RESULTS_SCHEMA, OutputExistsError, results_document, validate_results_document, write_outputs
from .pipeline import STAGES, analyse_cohort, run_study
from .results import Estimate, SkippedModel, StudyResult
from .spec import KNOWN_COVARIATES, Study, default_study, load_study, parse_study

__all__ = [
    "KNOWN_COVARIATES",
    "RESULTS_SCHEMA",
    "STAGES",
    "EValue",
    "Estimate",
    "OutputExistsError",
    "SkippedModel",
    "Study",
    "StudyResult",
    "analyse_cohort",
    "default_study",
    "e_value_hr",
    "e_value_rr",
    "load_study",
    "parse_study",
    "results_document",
    "run_study",
    "validate_results_document",
    "write_outputs",
]
