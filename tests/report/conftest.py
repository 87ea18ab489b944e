"""Fixtures of the report tests: one StudyResult from real matching/survival results, built once."""

from __future__ import annotations

import pytest

from ._build import study_result


@pytest.fixture(scope="session")
def result():
    """Synthetic-marked StudyResult (random analysis frame, seed 7) with one skipped model."""
    return study_result()
