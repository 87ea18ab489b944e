"""``studies/thiamine_sepsis.toml`` indexes on the ``icu_admission`` built-in; before, on a user concept of
ICU transfers (``hosp/transfers`` into an ICU care unit). On the synthetic EHR both give the same cohort,
row for row (the switch changed no number of the study); on real MIMIC-IV the built-in is the cleaner
definition (ward transfers such as "Neuro Stepdown" are no ICU admission).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.sources import generate_synthetic
from retrocohort.spec import load_study_file, parse_study_text

THIAMINE = Path(__file__).resolve().parents[2] / "studies" / "thiamine_sepsis.toml"

TRANSFERS = """
[concepts.icu_transfer_in]
table = "hosp/transfers"
names = [
    "Medical Intensive Care Unit (MICU)",
    "Surgical Intensive Care Unit (SICU)",
    "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Cardiac Vascular Intensive Care Unit (CVICU)",
    "Trauma SICU (TSICU)",
    "Coronary Care Unit (CCU)",
    "Neuro Surgical Intensive Care Unit (Neuro SICU)",
    "Neuro Intermediate",
    "Neuro Stepdown",
]
label = "ICU admission (transfer into an ICU care unit)"
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("thiamine") / "ehr"
    generate_synthetic(out, stays=2000, seed=7)
    return out


def test_the_icu_admission_index_gives_the_transfers_cohort(folder):
    study = load_study_file(THIAMINE)
    assert study.index.concept == ("icu_admission",)
    text = THIAMINE.read_text()
    old_text = text.replace("[concepts.thiamine_iv]", TRANSFERS + "\n[concepts.thiamine_iv]", 1)
    old_text = old_text.replace('[index]\nconcept = "icu_admission"', '[index]\nconcept = "icu_transfer_in"', 1)
    old = parse_study_text(old_text)
    assert old.index.concept == ("icu_transfer_in",)
    new_cohort, old_cohort = build_cohort(study, folder), build_cohort(old, folder)
    assert len(new_cohort.data) >= 100  # a cohort worth comparing
    pd.testing.assert_frame_equal(new_cohort.data, old_cohort.data)
    columns = ["step", "remaining", "excluded"]
    pd.testing.assert_frame_equal(new_cohort.attrition[columns], old_cohort.attrition[columns])
