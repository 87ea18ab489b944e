"""Fixtures of the report tests: StudyResults of the real pipeline for every shipped study, built once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from retrocohort.study.results import SkippedModel

from ._build import STUDY_NAMES, study_result

SKIP_REASON = "too few KRT liberation events for 7 covariates (events per variable below 10)"


@pytest.fixture(scope="session")
def result():
    """The flagship (studies/magnesium_ckrt.toml) on a random frame, synthetic-marked, with one model skipped:
    the adjusted matched Fine-Gray of KRT liberation is taken out and recorded as skipped, as the pipeline
    does when it cannot fit a model."""
    full = study_result("magnesium_ckrt")
    key = ("krt_liberation", "fine_gray_adjusted", "matched")
    kept = tuple(e for e in full.estimates if (e.outcome, e.model, e.population) != key)
    assert len(kept) == len(full.estimates) - 1
    return replace(full, estimates=kept, skipped=(SkippedModel(*key, SKIP_REASON),))


@pytest.fixture(scope="session")
def studies():
    """name -> StudyResult of each shipped study (studies/*.toml) on its own random frame."""
    return {name: study_result(name) for name in STUDY_NAMES}
