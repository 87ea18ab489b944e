"""retrocohort: retrospective, propensity-matched cohort studies on ICU EHR data.

The public API is re-exported here; see the subpackages for details:
``survival`` (R-exact survival engine), ``matching`` (propensity score,
nearest-neighbour matching, balance), ``sources`` and ``cohort`` (raw EHR
tables to an analysis frame), ``study`` (the pipeline) and ``report``.
"""

__version__ = "0.1.0"
