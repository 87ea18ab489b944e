"""Shared fixtures. Reference JSON written by tests/reference/make_reference.R."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).parent / "reference" / "json"


@pytest.fixture(scope="session")
def reference():
    """Load a reference JSON fixture by file stem: ``reference("cox_lung")``."""

    def load(name: str) -> dict:
        path = REFERENCE_DIR / f"{name}.json"
        if not path.exists():
            pytest.fail(f"{path} missing: regenerate with `Rscript tests/reference/make_reference.R`")
        return json.loads(path.read_text())

    return load
