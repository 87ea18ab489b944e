"""retrocohort.study: the one pipeline that runs a study written in the study language, and its results."""

from pathlib import Path

from ..errors import InputError
from ..spec import Study, load_study_file
from .evalue import EValue, e_value_hr, e_value_rr
from .outputs import RESULTS_SCHEMA, OutputExistsError, results_document, validate_results_document, write_outputs
from .pipeline import STAGES, analyse_cohort, run_study, study_stages
from .results import Estimate, OutcomeResult, SkippedModel, StudyResult, SubgroupResult

#: The shipped studies (``studies/`` of the source tree); the flagship is ``magnesium_ckrt.toml``.
#: An installed wheel carries them as ``retrocohort/studies/`` (setup.py's build hook), used when present.
_PACKAGED_STUDIES = Path(__file__).resolve().parents[1] / "studies"
STUDIES_DIR = _PACKAGED_STUDIES if _PACKAGED_STUDIES.is_dir() else Path(__file__).resolve().parents[3] / "studies"
FLAGSHIP_STUDY = STUDIES_DIR / "magnesium_ckrt.toml"


def load_study(path: str | Path) -> Study:
    """Read and validate a study file of the study language (``docs/study-language.md``).

    The same as :func:`retrocohort.spec.load_study_file`.
    """
    return load_study_file(path)


def flagship_study() -> Study:
    """The flagship study, ``studies/magnesium_ckrt.toml`` (what ``retrocohort demo`` runs).

    Raises
    ------
    InputError
        The file is not where the source tree keeps it (an install without ``studies/``).
    """
    if not FLAGSHIP_STUDY.is_file():
        raise InputError(
            f"the flagship study file {str(FLAGSHIP_STUDY)!r} is not there; run from a source checkout of "
            "retrocohort or pass your own study file to `retrocohort run`"
        )
    return load_study_file(FLAGSHIP_STUDY)


__all__ = [
    "FLAGSHIP_STUDY",
    "RESULTS_SCHEMA",
    "STAGES",
    "STUDIES_DIR",
    "EValue",
    "Estimate",
    "OutcomeResult",
    "OutputExistsError",
    "SkippedModel",
    "Study",
    "StudyResult",
    "SubgroupResult",
    "analyse_cohort",
    "e_value_hr",
    "e_value_rr",
    "flagship_study",
    "load_study",
    "results_document",
    "run_study",
    "study_stages",
    "validate_results_document",
    "write_outputs",
]
