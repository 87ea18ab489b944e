"""retrocohort.sources: raw EHR tables (MIMIC-IV layout) read lazily by DuckDB or Spark, and a synthetic EHR."""

from .mimic_iv import SCHEMA, MimicIV, SourceConnection, check_source, to_parquet
from .synthetic import SyntheticInfo, generate_synthetic

__all__ = ["SCHEMA", "MimicIV", "SourceConnection", "SyntheticInfo", "check_source", "generate_synthetic", "to_parquet"]
