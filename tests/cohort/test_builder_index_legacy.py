"""The language's index selections against the legacy ``first_stay_only = false`` option (the hand-written
flagship definitions of ``tests/cohort/legacy``), on hand-made patients with two CKRT stays.

Legacy ``first_stay_only = false`` re-indexes a patient at the earliest CKRT stay that passes the adult and
support screens only; the later exclusions (serum Mg on the index day, death within 48 h) are applied to that
stay afterwards. ``select = "first_passing"`` re-indexes at the earliest stay that passes *every* rule, so the
two differ for a patient whose first supported stay fails a later rule. ``first_icu_stay_only`` is another
thing: the index must lie in the patient's first ICU stay, whatever the screens say.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from retrocohort.cohort.builder import build_cohort
from retrocohort.spec import load_study_file
from tests.cohort.legacy import default_study, extract

from .minimimic import MiniMimic

FLAGSHIP = Path(__file__).resolve().parents[2] / "studies" / "magnesium_ckrt.toml"
FIRST = pd.Timestamp("2150-03-10 10:00:00")
LATER = pd.Timestamp("2151-05-01 08:00:00")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    m = MiniMimic()
    # 1: first CKRT stay without support, the second with support: every re-indexing rule takes the second.
    m.ckrt_patient(1, index=str(FIRST), vasopressor=False, hadm_id=11, stay_id=110)
    m.ckrt_patient(1, index=str(LATER), hadm_id=12, stay_id=120)
    # 2: first CKRT stay supported but no serum Mg on its index day; the second has both.
    m.ckrt_patient(2, index=str(FIRST), mg_at=None, hadm_id=21, stay_id=210)
    m.ckrt_patient(2, index=str(LATER), hadm_id=22, stay_id=220)
    # 3: one plain stay (both designs keep it as is).
    m.ckrt_patient(3, index=str(FIRST), hadm_id=31, stay_id=310)
    return m.write(tmp_path_factory.mktemp("legacy_index"))


def _flagship(**index):
    study = load_study_file(FLAGSHIP)
    return study.model_copy(update={"index": study.index.model_copy(update=index)})


def _stays(frame: pd.DataFrame) -> dict[int, int]:
    return {int(r.subject_id): int(r.stay_id) for r in frame.itertuples()}


def test_legacy_first_stay_only_false_re_indexes_on_adult_and_support_only(folder):
    legacy = default_study()
    legacy = legacy.model_copy(update={"cohort": legacy.cohort.model_copy(update={"first_stay_only": False})})
    old = extract(folder, legacy)
    new = build_cohort(_flagship(select="first_passing"), folder)
    # the same for patients 1 and 3 ...
    assert _stays(old.data)[1] == _stays(new.data)[1] == 120
    assert _stays(old.data)[3] == _stays(new.data)[3] == 310
    # ... but legacy indexes patient 2 at its first (supported) stay and then drops it for the missing Mg,
    # while first_passing moves on to the stay that passes every rule
    assert 2 not in _stays(old.data)
    assert _stays(new.data)[2] == 220


def test_first_never_re_indexes_and_first_icu_stay_only_keeps_the_first_stay(folder):
    first = _stays(build_cohort(_flagship(select="first"), folder).data)
    assert first == {3: 310}  # patient 1 fails support, patient 2 the Mg rule, at their first stays
    only_first = build_cohort(_flagship(select="first_passing", first_icu_stay_only=True), folder)
    # the second stays are not first ICU stays: nobody is re-indexed there; with no passing stay the
    # earliest (first) stay is the index and fails its rule, so the first-stay line itself drops nobody
    assert _stays(only_first.data) == {3: 310}
    steps = only_first.attrition.set_index("step")
    assert steps.loc["first_icu_stay", "excluded"] == 0
    assert steps.loc["support", "excluded"] == 1 and steps.loc["no_mg_index_day", "excluded"] == 1


def test_first_per_stay_keeps_every_stay_that_passes(folder):
    per_stay = build_cohort(_flagship(select="first_per_stay"), folder)
    pairs = sorted(zip(per_stay.data["subject_id"], per_stay.data["stay_id"], strict=True))
    assert pairs == [(1, 120), (2, 220), (3, 310)]
    steps = per_stay.attrition.set_index("step")
    assert steps.loc["index_event", "remaining"] == 5  # five CKRT stays
    assert steps.loc["support", "excluded"] == 1 and steps.loc["no_mg_index_day", "excluded"] == 1
