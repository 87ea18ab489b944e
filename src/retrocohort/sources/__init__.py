"""retrocohort.sources: raw EHR tables (MIMIC-IV layout) read lazily by DuckDB or Spark."""

from .mimic_iv import SCHEMA, MimicIV, SourceConnection, check_source

__all__ = ["SCHEMA", "MimicIV", "SourceConnection", "check_source"]
