"""Errors and warnings every stage raises; the CLI prints them without a traceback."""

from __future__ import annotations


class RetrocohortError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class InputError(RetrocohortError, ValueError):
    """Bad input data: names the file or frame, the column, the rows affected and what to do."""


class StudySpecError(RetrocohortError, ValueError):
    """A study file that does not validate: names the key, the line, the allowed values."""


class SourceError(RetrocohortError, FileNotFoundError):
    """A data source that lacks a table or a column the study needs."""


class ConvergenceError(RetrocohortError, RuntimeError):
    """An iterative fit that did not converge; never returned as if it had."""


class ModelWarning(UserWarning):
    """Statistical misuse a statistician would flag (separation, monotone likelihood, no caliper...)."""


class SparkUnavailableError(RetrocohortError, RuntimeError):
    """The Spark engine cannot start here: pyspark is not installed or Java is missing or too old."""


class NotEstimableError(InputError):
    """Valid input whose cohort is too small for any model (the command exits 3, not 2: nothing to fix in the input)."""
