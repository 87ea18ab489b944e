"""retrocohort.cohort: a study of the study language compiled to its analysis cohort, on DuckDB or Spark.

:func:`retrocohort.cohort.builder.build_cohort` is the one cohort builder; it knows no
clinical concept (the formulas some built-in concepts need live in :mod:`retrocohort.cohort.kidney`).
"""

from .builder import ATTRITION_COLUMNS, BuiltCohort, build_cohort

__all__ = ["ATTRITION_COLUMNS", "BuiltCohort", "build_cohort"]
