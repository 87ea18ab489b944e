"""The legacy, hand-written flagship cohort: kept only as the oracle of the regression tests.

Before the study language (issue 9) the tool ran one study, the magnesium-in-CKRT
cohort, written by hand in ``cohort/definitions.py`` + ``cohort/extract.py`` with
its settings in ``study/spec.py``. The tool no longer uses any of it: every run
compiles a study file with :func:`retrocohort.cohort.builder.build_cohort`. The
code lives on here, unchanged, so that ``tests/cohort/test_builder_flagship.py``
(and the rule tests written against it) can show that ``studies/magnesium_ckrt.toml``
gives exactly the cohort it gave.
"""

from .extract import ANALYSIS_COLUMNS, Cohort, extract
from .spec import Study, default_study

__all__ = ["ANALYSIS_COLUMNS", "Cohort", "Study", "default_study", "extract"]
