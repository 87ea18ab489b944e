"""The exit code a run must end with, from its results.json (docs/cli.md, Exit codes)."""

from __future__ import annotations


def primary_answered(results: dict) -> bool:
    """Whether the study's primary estimate (the primary outcome's adjusted model in the matched cohort) was
    made: the run exits 0 then, and 3 otherwise, whatever other models were fitted."""
    primary = results["study"]["primary_outcome"]
    model = "fine_gray_adjusted" if results["outcomes"][primary]["competing"] else "cox_adjusted"
    return any((e["outcome"], e["model"], e["population"]) == (primary, model, "matched") for e in results["estimates"])


def expected_exit(results: dict) -> int:
    """0 with a primary estimate, else 3."""
    return 0 if primary_answered(results) else 3
