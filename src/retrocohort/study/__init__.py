"""retrocohort.study: the study file and the one pipeline that wires every stage."""

from .spec import KNOWN_COVARIATES, Study, default_study, load_study, parse_study

__all__ = ["KNOWN_COVARIATES", "Study", "default_study", "load_study", "parse_study"]
