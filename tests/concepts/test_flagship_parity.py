"""The built-ins ported from the flagship give the flagship's numbers, patient by patient.

The flagship cohort (``tests.cohort.legacy.extract``, default study) is built on
the rule-test miniature folder (every rule boundary) merged with a small
synthetic EHR; its eligible patients' keys are handed to the built-ins, and
every covariate, support flag and outcome fact the flagship computes must be
reproduced exactly by the concepts (so the magnesium study, rewritten in the
study language, keeps its numbers).
"""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from retrocohort.concepts import baseline_values, concept_events, finish_baseline
from retrocohort.sources import MimicIV, generate_synthetic
from tests.cohort.legacy import extract

from ..cohort.test_engines import _merge
from ..cohort.test_rules import build

DAY_S = 86_400.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    generate_synthetic(root / "synthetic", stays=1500, seed=7)
    build().write(root / "mini")
    return _merge(root / "synthetic", root / "mini", root / "both")


@pytest.fixture(scope="module")
def flagship(folder):
    return extract(folder).data.sort_values("subject_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def conn(folder):
    c = MimicIV(folder).connect()
    yield c
    c.close()


@pytest.fixture(scope="module")
def keys(flagship):
    return ibis.memtable(flagship[["subject_id", "hadm_id", "stay_id", "index_time"]])


def _baseline(conn, name, keys):
    frame = conn.backend.execute(baseline_values(conn, name, keys))
    return finish_baseline(name, frame).sort_values("subject_id").reset_index(drop=True)


def test_the_comparison_is_not_vacuous(flagship):
    assert len(flagship) > 60
    assert {3, 5, 7, 10, 11, 13, 25, 28, 29, 30, 31} <= set(flagship.subject_id)
    assert flagship.sepsis.nunique() == 2 and flagship.vasopressor.nunique() == 2


@pytest.mark.parametrize("name", ["age", "sex", "sepsis"])
def test_demographics_and_sepsis_codes(conn, keys, flagship, name):
    got = _baseline(conn, name, keys)
    assert list(got.subject_id) == list(flagship.subject_id)
    np.testing.assert_array_equal(got[name].to_numpy(), flagship[name].to_numpy())


@pytest.mark.parametrize(
    "name", ["sofa", "sofa_respiratory", "sofa_cardiovascular", "sofa_renal", "sofa_coagulation", "sofa_liver"]
)
def test_sofa_and_components(conn, keys, flagship, name):
    got = _baseline(conn, name, keys)
    np.testing.assert_array_equal(got[name].to_numpy(dtype=int), flagship[name].to_numpy(dtype=int))
    assert flagship[name].nunique() > 1 or name == "sofa_renal"  # every band is exercised


def test_baseline_creatinine_and_egfr_bit_identical(conn, keys, flagship):
    cr = _baseline(conn, "creatinine_baseline", keys)
    np.testing.assert_array_equal(cr.creatinine_baseline.to_numpy(), flagship.creatinine_baseline.to_numpy())
    np.testing.assert_array_equal(
        cr.creatinine_baseline_source.to_numpy(), flagship.creatinine_baseline_source.to_numpy()
    )
    assert (flagship.creatinine_baseline_source == "imputed (eGFR 75)").any()
    egfr = _baseline(conn, "egfr_baseline", keys)
    np.testing.assert_array_equal(egfr.egfr_baseline.to_numpy(), flagship.egfr_baseline.to_numpy())
    # The lazy (ibis pow) value agrees with NumPy to rounding, so an unfinished frame is still usable.
    raw = conn.backend.execute(baseline_values(conn, "egfr_baseline", keys)).sort_values("subject_id")
    np.testing.assert_allclose(raw.egfr_baseline.to_numpy(), flagship.egfr_baseline.to_numpy(), rtol=1e-12)


def _running(conn, name, flagship, lo_h, hi_h):
    ev = conn.backend.execute(concept_events(conn, name))
    j = ev.merge(flagship[["subject_id", "index_time"]], on="subject_id")
    hit = (j.start_time <= j.index_time + pd.Timedelta(hours=hi_h)) & (
        j.end_time >= j.index_time + pd.Timedelta(hours=lo_h)
    )
    return flagship.subject_id.isin(set(j.loc[hit, "subject_id"])).astype(int).to_numpy()


def test_support_flags_from_vasopressor_and_ventilation_events(conn, flagship):
    np.testing.assert_array_equal(_running(conn, "vasopressors", flagship, -24, 24), flagship.vasopressor.to_numpy())
    np.testing.assert_array_equal(
        _running(conn, "invasive_ventilation", flagship, -24, 24), flagship.ventilation.to_numpy()
    )


def test_index_is_first_krt_event_of_the_index_stay(conn, flagship):
    ev = conn.backend.execute(concept_events(conn, "crrt"))
    first = ev.groupby(["subject_id", "stay_id"]).start_time.min().rename("first").reset_index()
    j = flagship.merge(first, on=["subject_id", "stay_id"], how="left")
    assert (j["first"] == j.index_time).all()


def test_death_and_krt_liberation_outcomes(conn, flagship):
    deaths = conn.backend.execute(concept_events(conn, "death"))
    assert deaths.subject_id.is_unique
    j = flagship.merge(deaths[["subject_id", "start_time"]], on="subject_id", how="left")
    days = (j.start_time - j.index_time).dt.total_seconds() / DAY_S
    died = days.notna() & (days <= 90)
    np.testing.assert_array_equal(died.astype(int).to_numpy(), flagship.death.to_numpy())
    np.testing.assert_allclose(np.where(died, days, 90.0), flagship.death_time.to_numpy(), rtol=0, atol=0)

    # KRT liberation: end of the last session starting by day 90 and ending at/after index, then 7 free days alive.
    krt = conn.backend.execute(concept_events(conn, "krt")).merge(
        flagship[["subject_id", "index_time"]], on="subject_id"
    )
    krt = krt[(krt.end_time >= krt.index_time) & (krt.start_time <= krt.index_time + pd.Timedelta(days=90))]
    last = krt.groupby("subject_id").end_time.max()
    f = flagship.set_index("subject_id")
    last_s = (last.reindex(f.index) - f.index_time).dt.total_seconds()
    death_s = days.set_axis(f.index) * DAY_S
    lib = last_s.notna() & (last_s + 7 * DAY_S <= 90 * DAY_S) & (death_s.isna() | (death_s > last_s + 7 * DAY_S))
    status = np.where(lib, 1, np.where(died.set_axis(f.index), 2, 0))
    np.testing.assert_array_equal(status, f.krt_status.to_numpy())
    assert set(np.unique(status)) == {0, 1, 2}
