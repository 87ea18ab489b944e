"""retrocohort.cohort: the CKRT analysis cohort, defined once in ibis, run on DuckDB or Spark."""

from .extract import ANALYSIS_COLUMNS, Cohort, extract

__all__ = ["ANALYSIS_COLUMNS", "Cohort", "extract"]
