"""A synthetic EHR in the MIMIC-IV v2.2 file layout, calibrated to the seed study's flow.

:func:`generate_synthetic` writes ``hosp/*.csv.gz`` and ``icu/*.csv.gz`` (or ``.parquet``) with
the real MIMIC-IV headers, plus ``SYNTHETIC.json`` describing the generator and the planted
truth. The cohort builder reads these files exactly as it reads a MIMIC-IV download; nothing in
the folder tells it who is in the cohort.

How the published flow is hit exactly
-------------------------------------
The generator decides every CKRT patient's category first (eligible exposed / eligible
unexposed / excluded for no serum Mg on the index day / excluded for death within 48 h / minor /
no vasopressor or ventilation at index), then writes raw rows consistent with it, keeping every
time away from the rule boundaries (index between 03:00 and 21:00; the index-day Mg draw inside
that calendar day; early deaths at 10-40 h, other deaths after 60 h and, when known only by
``dod``, after 4.5 days; Mg doses at 4-44 h or outside (-4 h, 54 h); support running across the
index time or absent from +-48 h). At the default size and seed the flow is 629 screened, 296
excluded, 333 eligible = 37 exposed + 296 unexposed; at other sizes the same proportions hold.

Everything is vectorised NumPy; the only Python loops run over tables, never over rows.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import InputError
from . import _synthetic_model as model
from . import _synthetic_studies as studies_model
from ._synthetic_schema import (
    ADMISSION_LOCATIONS,
    ADMISSION_TYPES,
    ANCHOR_YEAR_GROUPS,
    CAREUNITS,
    CRRT_MODES,
    DISCHARGE_LOCATIONS,
    ICD_TITLES,
    ICU_ITEMS,
    INSURANCES,
    LAB_ITEMS,
    MARITAL,
    MIMIC_IV_V22_COLUMNS,
    MIMIC_IV_V22_HEADERS,
    OTHER_CODES,
    RACES,
    SEPSIS_CODES,
    arrow_schema,
)

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_STAYS",
    "GENERATOR_VERSION",
    "MIMIC_IV_V22_HEADERS",
    "PUBLISHED_FLOW",
    "SyntheticInfo",
    "generate_synthetic",
]

GENERATOR_VERSION = "1.0.0"
#: ICU stays at the calibrated default size (about 7 % of them CKRT patients).
DEFAULT_STAYS = 10_000
#: The flagship study's seed (``study.seed`` in studies/magnesium_ckrt.toml).
DEFAULT_SEED = 20231103
#: The seed study's flow (ASN Kidney Week 2023, FR-PO129).
PUBLISHED_FLOW = {"screened": 629, "excluded": 296, "eligible": 333, "exposed": 37, "unexposed": 296}
# Of the 296 excluded, how many lack a serum Mg on the index day (the rest die within 48 h).
_NO_MG_SHARE = 0.60
_MINOR_SHARE = 0.03  # CKRT patients under 18, per screened patient
_NO_SUPPORT_SHARE = 0.12  # adult CKRT patients without vasopressor/ventilation, per screened patient

Format = Literal["csv.gz", "parquet"]

# Category codes of CKRT patients (index = first CKRT episode).
UNEXPOSED, EXPOSED, NO_MG, EARLY_DEATH, MINOR, NO_SUPPORT = range(6)
CATEGORY_NAMES = {
    UNEXPOSED: "eligible_unexposed",
    EXPOSED: "eligible_exposed",
    NO_MG: "excluded_no_mg_on_index_day",
    EARLY_DEATH: "excluded_died_within_48h",
    MINOR: "not_screened_minor",
    NO_SUPPORT: "not_screened_no_support",
}

# Total grams of MgSO4 over 48 h in the exposed (quantiles of this distribution are assigned,
# so the dose summary is stable): mean 3.04 g = 24.7 mEq, SD 1.30 g = 10.6 mEq.
_GRAM_VALUES = np.array([1, 2, 3, 4, 5, 6])
_GRAM_PROBS = np.array([0.08, 0.37, 0.14, 0.31, 0.04, 0.06])
# How a total splits into bags of 1, 2 or 4 g: total -> candidate bag lists.
_BAG_PATTERNS = {
    1: [[1]],
    2: [[2], [1, 1]],
    3: [[2, 1]],
    4: [[2, 2], [4]],
    5: [[4, 1], [2, 2, 1]],
    6: [[4, 2], [2, 2, 2]],
}

_MIN = 60  # seconds per minute: all times are whole minutes
_DAY_MIN = 1440


@dataclass(frozen=True)
class SyntheticInfo:
    """What :func:`generate_synthetic` wrote.

    Attributes
    ----------
    path : Path
        The folder holding ``hosp/``, ``icu/`` and ``SYNTHETIC.json``.
    stays : int
        ICU stays written (rows of ``icu/icustays``).
    seed : int
        Seed of the generator.
    truth : dict
        The flagship's planted truth, as in ``SYNTHETIC.json``: flow, dose summary, hazard ratios and
        the estimand each one refers to, and a description.
    fmt : str
        "csv.gz" or "parquet".
    planted : pandas.DataFrame
        One row per CKRT patient with the planted category, index time, exposure, dose and
        expected outcomes. Kept in memory for tests; never written to the folder.
    """

    path: Path
    stays: int
    seed: int
    truth: dict[str, Any]
    fmt: str = "csv.gz"
    planted: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    #: Planted truth of the other shipped studies, by study name (``SYNTHETIC.json`` "studies").
    studies: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: One row per thiamine-study patient (category, exposure, covariates, death); for tests.
    planted_thiamine: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    #: One row per vasopressin_shock patient (category, exposure, covariates, death and KRT); for tests.
    planted_vasopressin: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    #: One row per second_vasopressor patient (category, arm, covariates, death); for tests.
    planted_second_vasopressor: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)


@dataclass(frozen=True)
class _Plan:
    screened: int
    no_mg: int
    early_death: int
    exposed: int
    unexposed: int
    minors: int
    no_support: int

    @property
    def excluded(self) -> int:
        return self.no_mg + self.early_death

    @property
    def eligible(self) -> int:
        return self.exposed + self.unexposed

    @property
    def ckrt(self) -> int:
        return self.screened + self.minors + self.no_support


def _plan(screened: int) -> _Plan:
    f = PUBLISHED_FLOW
    excluded = int(round(screened * f["excluded"] / f["screened"]))
    eligible = screened - excluded
    exposed = int(round(eligible * f["exposed"] / f["eligible"]))
    no_mg = int(round(excluded * _NO_MG_SHARE))
    return _Plan(
        screened=screened,
        no_mg=no_mg,
        early_death=excluded - no_mg,
        exposed=exposed,
        unexposed=eligible - exposed,
        minors=int(round(screened * _MINOR_SHARE)),
        no_support=int(round(screened * _NO_SUPPORT_SHARE)),
    )


# ----------------------------------------------------------------------------------------------
# small vectorised helpers


def _seg(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of sizes counts: (group index of each element, position within its group)."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(counts.sum()) - starts[owner]


def _unique_ids(rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    """n distinct ids above base, in random order (MIMIC-style 8-digit identifiers)."""
    ids = base + np.cumsum(rng.integers(1, 40, n))
    return rng.permutation(ids)


def _pick(rng: np.random.Generator, choices: tuple[str, ...], n: int, p: list[float] | None = None) -> np.ndarray:
    return np.asarray(choices, dtype=object)[rng.choice(len(choices), size=n, p=p)]


def _u(rng: np.random.Generator, lo: Any, hi: Any, n: int) -> np.ndarray:
    return lo + (np.asarray(hi, float) - lo) * rng.random(n)


def _year_start_minutes(years: np.ndarray) -> np.ndarray:
    days = (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return days.astype(np.int64) * _DAY_MIN


def _year_of(minutes: np.ndarray) -> np.ndarray:
    days = (np.asarray(minutes, dtype=np.int64) // _DAY_MIN).astype("datetime64[D]")
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


class _Table:
    """One MIMIC-IV table gathered in parts; each part is cast to the v2.2 schema as it arrives
    (so no NumPy or Python-object copy of a large table outlives its part)."""

    def __init__(self, name: str):
        self.name = name
        self.schema = arrow_schema(name)
        self.parts: list[pa.Table] = []

    def add(self, **cols: Any) -> None:
        sizes = {len(v) for v in cols.values() if isinstance(v, (np.ndarray, list, pa.Array))}
        if len(sizes) != 1:
            raise AssertionError(f"{self.name}: ragged part {[(k, np.size(v)) for k, v in cols.items()]}")
        unknown = set(cols) - set(self.schema.names)
        if unknown:
            raise AssertionError(f"{self.name}: columns not in MIMIC-IV v2.2: {sorted(unknown)}")
        size = sizes.pop()
        arrays = []
        for f in self.schema:
            if f.name not in cols:
                arrays.append(pa.nulls(size, f.type))
            elif isinstance(cols[f.name], (np.ndarray, list, pa.Array)):
                arrays.append(_to_arrow(cols[f.name], f.type))
            else:  # one value for the whole part
                arrays.append(pa.repeat(pa.scalar(cols[f.name], type=f.type), size))
        self.parts.append(pa.Table.from_arrays(arrays, schema=self.schema))

    def to_arrow(self) -> pa.Table:
        if not self.parts:
            return self.schema.empty_table()
        table = pa.concat_tables(self.parts)
        self.parts = []
        return table


def _to_arrow(values: Any, typ: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.cast(typ)
    v = np.asarray(values)
    if pa.types.is_timestamp(typ):
        # int64 minutes since 1970 with -1 as missing
        mins = v.astype(np.int64)
        return pa.array((mins * _MIN).astype("datetime64[s]"), type=typ, mask=mins < 0)
    if pa.types.is_date32(typ):
        days = v.astype(np.int64)
        return pa.array(days.astype(np.int32), type=pa.int32(), mask=days < -100_000).cast(typ)
    if pa.types.is_integer(typ):
        if v.dtype == object:
            mask = pd.isna(v)
            return pa.array(np.where(mask, 0, v).astype(np.int64), type=typ, mask=mask)
        return pa.array(v.astype(np.int64), type=typ)
    if pa.types.is_floating(typ):
        if v.dtype == object:
            return pa.array(pd.to_numeric(pd.Series(v), errors="coerce").to_numpy(float), type=typ, from_pandas=True)
        return pa.array(v.astype(float), type=typ, from_pandas=True)
    return pa.array(v, type=pa.string(), from_pandas=True)


_NO_TIME = -1  # missing timestamp in the int64-minute representation
_NO_DATE = -1_000_000  # missing date


# ----------------------------------------------------------------------------------------------
# public entry point


def generate_synthetic(
    out_dir: str | Path,
    stays: int | None = None,
    seed: int = DEFAULT_SEED,
    fmt: Format = "csv.gz",
    *,
    ckrt_patients: int | None = None,
    study_patients: int | None = None,
    overwrite: bool = True,
) -> SyntheticInfo:
    """Write a synthetic EHR in the MIMIC-IV v2.2 layout and return what was planted.

    Parameters
    ----------
    out_dir : path
        Folder to write ``hosp/``, ``icu/`` and ``SYNTHETIC.json`` into (created if missing).
    stays : int, optional
        Number of ICU stays. Default :data:`DEFAULT_STAYS` (10,000), at which the cohort rules
        find the published flow exactly (629 screened, 296 excluded, 333 eligible = 37 Mg +
        296 no Mg). Other sizes scale every count by ``stays / 10,000``.
    seed : int
        Random seed; the same seed and size give byte-identical files. Default 20231103.
    fmt : {"csv.gz", "parquet"}
        File format; CSV files carry the exact MIMIC-IV headers and timestamp text.
    ckrt_patients : int, optional
        Number of *screened* CKRT patients (adult, first CKRT episode, on support) to write
        instead of the number implied by ``stays``; the flow proportions and the planted effects
        stay. ``stays`` then defaults to the CKRT patients' stays plus 10 % background stays.
        Used for recovery tests on large samples (e.g. 50,000).
    study_patients : int, optional
        Patients written for each study with patients of its own (``studies/thiamine_sepsis.toml``,
        ``vasopressin_shock.toml``, ``second_vasopressor.toml``), each from a random stream of its
        own after every flagship row, so the flagship's rows do not depend on it. Default per
        10,000 flagship ICU stays: 900, 900 and 600 (the last two at least 120); 0 writes none.
        Their ICU stays come on top of ``stays``.
    overwrite : bool
        Replace the ``hosp/`` and ``icu/`` folders of an earlier synthetic EHR in ``out_dir``.
        Folders not written by the generator (no ``SYNTHETIC.json``) are never deleted.

    Returns
    -------
    SyntheticInfo
    """
    if fmt not in get_args(Format):
        raise InputError(f"generate_synthetic: fmt={fmt!r} is not one of {list(get_args(Format))}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"generate_synthetic: seed must be a non-negative integer, got {seed!r}")
    if study_patients is not None and (
        isinstance(study_patients, bool) or not isinstance(study_patients, (int, np.integer)) or study_patients < 0
    ):
        raise InputError(f"generate_synthetic: study_patients={study_patients!r} must be a non-negative integer")
    if ckrt_patients is not None:
        if int(ckrt_patients) < 10:
            raise InputError(f"generate_synthetic: ckrt_patients={ckrt_patients} must be at least 10")
        plan = _plan(int(ckrt_patients))
    else:
        size = DEFAULT_STAYS if stays is None else int(stays)
        if size < 200:
            raise InputError(f"generate_synthetic: stays={stays} is too small; use at least 200 ICU stays")
        plan = _plan(int(round(size * PUBLISHED_FLOW["screened"] / DEFAULT_STAYS)))

    out = Path(out_dir)
    existing = [out / sub for sub in ("hosp", "icu") if (out / sub).exists()]
    if existing:
        # Never delete data the generator did not write (e.g. a real MIMIC-IV download).
        if not (out / "SYNTHETIC.json").is_file():
            raise InputError(
                f"generate_synthetic: {existing[0]} exists and {out} has no SYNTHETIC.json, so it was not "
                "written by this generator; choose an empty or new folder"
            )
        if not overwrite:
            raise InputError(f"generate_synthetic: {existing[0]} exists; pass overwrite=True to replace it")
        # The earlier EHR is replaced only once the new one is complete (see _install).

    root = np.random.SeedSequence(int(seed))
    streams = {
        name: np.random.default_rng(s)
        for name, s in zip(("ckrt", "background", "ids", "rows"), root.spawn(4), strict=True)
    }
    # The other studies' patients draw from a fifth child of the seed (spawn keys continue, so the
    # first four streams, and every flagship row, are unchanged by them).
    study_rng = np.random.default_rng(root.spawn(1)[0])
    tables = {name: _Table(name) for name in MIMIC_IV_V22_COLUMNS}
    ids = _IdPool(streams["ids"])

    ckrt = _ckrt_patients(streams["ckrt"], plan, ids, tables)
    n_ckrt_stays = ckrt.pop("__stays")
    if ckrt_patients is not None and stays is None:
        background = max(100, n_ckrt_stays // 10)
    else:
        background = (DEFAULT_STAYS if stays is None else int(stays)) - n_ckrt_stays
        if background < 0:
            raise InputError(
                f"generate_synthetic: stays={stays} cannot hold the {n_ckrt_stays} CKRT stays of "
                f"{plan.screened} screened patients; raise stays or lower ckrt_patients"
            )
    _background_stays(streams["background"], background, ids, tables)
    flagship_stays = n_ckrt_stays + background
    n_thiamine = studies_model.thiamine_patients_for(flagship_stays) if study_patients is None else int(study_patients)
    thiamine, thiamine_stays = studies_model.thiamine_patients(
        study_rng, n_thiamine, ids, tables, _admissions, _lab_rows
    )
    # vasopressin_shock's own patients: a sixth child of the seed, ids after the thiamine patients', so
    # the flagship's and the thiamine patients' rows are unchanged by them; study_patients=0 writes none.
    n_vaso = studies_model.vasopressin_patients_for(flagship_stays) if study_patients is None else int(study_patients)
    writers = {"admissions": _admissions, "lab_rows": _lab_rows, "procedures": _procedures}
    vaso, vaso_stays = studies_model.vasopressin_patients(
        np.random.default_rng(root.spawn(1)[0]), n_vaso, ids, tables, writers
    )
    # second_vasopressor's own patients: a seventh child of the seed, ids after the others'.
    n_sv = (
        studies_model.second_vasopressor_patients_for(flagship_stays) if study_patients is None else int(study_patients)
    )
    second, second_stays = studies_model.second_vasopressor_patients(
        np.random.default_rng(root.spawn(1)[0]), n_sv, ids, tables, writers
    )
    # hosp/transfers: one ICU transfer row per ICU stay, derived without a random draw.
    icustays = pa.concat_tables(tables["icu/icustays"].parts)
    tables["hosp/transfers"].add(**studies_model.transfers_from_icustays(icustays))
    _dictionaries(tables)

    planted = pd.DataFrame(ckrt)
    truth = _truth(plan, planted, int(seed))
    study_truth = studies_model.studies_truth(thiamine, vaso, second)
    # The flagship's truth by outcome name (studies/magnesium_ckrt.toml: death, krt_liberation), so the
    # pipeline reads every study's planted effect the same way; "truth" keeps the full description.
    study_truth = {
        "magnesium_ckrt": {
            "primary_outcome": "death",
            "hr_death": truth["hr_death"],
            "shr_krt_liberation": truth["shr_krt"],
            "description": truth["description"],
        },
        **study_truth,
    }
    total_stays = flagship_stays + thiamine_stays + vaso_stays + second_stays
    meta = {
        "generator": "retrocohort.sources.synthetic",
        "generator_version": GENERATOR_VERSION,
        "layout": "MIMIC-IV v2.2",
        "format": fmt,
        "seed": int(seed),
        "stays": int(total_stays),
        "ckrt_patients_screened": plan.screened,
        "truth": truth,
        "studies": study_truth,
    }
    # Written into a sibling folder and moved into place at the end: an interruption (Ctrl-C) or a full
    # disk leaves no half-written EHR behind (the sibling is removed) and an earlier EHR in ``out`` intact.
    staging = out.parent / f".{out.name}.synth-{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir(parents=True)
        _write(staging, tables, fmt)
        (staging / "SYNTHETIC.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when installed
    return SyntheticInfo(
        path=out,
        stays=int(total_stays),
        seed=int(seed),
        truth=truth,
        fmt=fmt,
        planted=planted,
        studies=study_truth,
        planted_thiamine=thiamine,
        planted_vasopressin=vaso,
        planted_second_vasopressor=second,
    )


# ----------------------------------------------------------------------------------------------
# identifiers


class _IdPool:
    """Distinct subject/hadm/stay/order/specimen ids drawn in MIMIC-IV's numeric ranges."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.next = {
            "subject": 10_000_000,
            "hadm": 20_000_000,
            "stay": 30_000_000,
            "order": 1_000_000,
            "specimen": 100_000,
        }

    def take(self, kind: str, n: int) -> np.ndarray:
        ids = _unique_ids(self.rng, n, self.next[kind])
        self.next[kind] = int(ids.max()) + 1 if n else self.next[kind]
        return ids


# ----------------------------------------------------------------------------------------------
# CKRT patients


def _ckrt_patients(rng: np.random.Generator, plan: _Plan, ids: _IdPool, t: dict[str, _Table]) -> dict[str, Any]:
    """Write every CKRT patient's rows; return the planted per-patient values (and ``__stays``).

    Categories are fixed first (counts from the plan), then covariates, exposure, latent death
    and liberation times, and only then the raw rows, each placed away from the rule boundaries.
    """
    n = plan.ckrt
    cat = np.concatenate(
        [
            np.full(plan.eligible, UNEXPOSED),
            np.full(plan.no_mg, NO_MG),
            np.full(plan.early_death, EARLY_DEATH),
            np.full(plan.minors, MINOR),
            np.full(plan.no_support, NO_SUPPORT),
        ]
    )
    cat = rng.permutation(cat)
    support = np.where(cat == NO_SUPPORT, 0, model._categorical(rng, n, np.array([[0.0, 0.35, 0.20, 0.45]])))
    cov = model.draw_covariates(rng, n, support=support, minors=cat == MINOR)
    eligible = np.flatnonzero(cat == UNEXPOSED)
    sub = model.Covariates(*(getattr(cov, f)[eligible] for f in model.Covariates.__dataclass_fields__))
    cat[eligible[model.choose_exposed(rng, sub, plan.exposed)]] = EXPOSED
    exposed = cat == EXPOSED

    # Latent times from stratified uniforms within each category (exposed / unexposed / ...):
    # same model, less Monte Carlo noise in the realised effects of a small cohort.
    death_d = model.death_days(rng, cov, exposed, model.stratified_uniforms(rng, cat))
    death_d = np.where(cat == EARLY_DEATH, _u(rng, 10, 40, n) / 24.0, death_d)
    lib_d = model.liberation_days(rng, cov, exposed, model.stratified_uniforms(rng, cat))

    subject = ids.take("subject", n)
    hadm = ids.take("hadm", n)
    stay = ids.take("stay", n)
    weight = np.round(np.clip(rng.normal(82, 18, n), 45, 160), 1)

    # Index: first CKRT evidence, between 03:00 and 21:00 on a day early enough in the year that
    # the whole index admission shares the index year (age rules use the admission year).
    year = rng.integers(2115, 2191, n)
    index = _year_start_minutes(year) + rng.integers(20, 330, n) * _DAY_MIN + rng.integers(3 * 60, 21 * 60, n)
    charting = rng.random(n) < 0.60
    chart_first = charting & (rng.random(n) < 0.12)
    proc_start = np.where(chart_first, rng.integers(60, 181, n), 0)  # minutes after index

    intime = index - rng.integers(6 * 60, 60 * 60, n)
    admittime = intime - rng.integers(0, 48 * 60, n)
    death = np.where(np.isfinite(death_d), index + np.rint(death_d * _DAY_MIN), np.inf)

    # --- support at index -----------------------------------------------------------------
    before = (index - intime) * 0.9
    vaso_start = index - np.rint(np.minimum(_u(rng, 30, 18 * 60, n), before))
    vaso_end = np.minimum(index + rng.integers(4 * 60, 48 * 60, n), death - 30)
    vent_start = index - np.rint(_u(rng, 60, before, n))
    vent_end = np.minimum(index + rng.integers(12 * 60, 120 * 60, n), death - 30)
    late_vaso = (cat == NO_SUPPORT) & (rng.random(n) < 0.3)
    late_start = index + rng.integers(72 * 60, 120 * 60, n)
    late_vaso &= late_start + 5 * 60 < death
    late_end = late_start + rng.integers(4 * 60, 24 * 60, n)

    # --- KRT sessions ----------------------------------------------------------------------
    krt_end_d = np.minimum(lib_d, 98.0)
    crrt_len_d = _u(rng, 1.5, 9.0, n)
    only_crrt = lib_d - crrt_len_d < 0.5
    crrt_end_d = np.where(only_crrt, krt_end_d, crrt_len_d)
    sessions = _krt_sessions(rng, index + proc_start, index, crrt_end_d, krt_end_d, only_crrt, death)
    s_owner = sessions["owner"]
    last_krt_end = np.full(n, -np.inf)
    np.maximum.at(last_krt_end, s_owner, sessions["end"])

    # --- magnesium doses ---------------------------------------------------------------------
    doses = _mg_doses(rng, cat, cov.serum_mg, index, intime, death)
    last_dose_end = np.full(n, -np.inf)
    np.maximum.at(last_dose_end, doses["owner"], doses["end"])

    # --- ICU and hospital stay ------------------------------------------------------------------
    last_event = np.max(
        np.column_stack(
            [
                last_krt_end,
                np.where(cov.vasopressor, vaso_end, -np.inf),
                np.where(cov.ventilation, vent_end, -np.inf),
                np.where(late_vaso, late_end, -np.inf),
                last_dose_end,
                index + 60.0,
            ]
        ),
        axis=1,
    )
    outtime = last_event + rng.integers(6 * 60, 48 * 60, n)
    dischtime = np.maximum(outtime + rng.integers(1 * _DAY_MIN, 10 * _DAY_MIN, n), index + 4.5 * _DAY_MIN)
    in_hosp_death = death <= dischtime
    outtime = np.where(death <= outtime, death, outtime)
    dischtime = np.where(in_hosp_death, death, dischtime)
    # Deaths after discharge are known (by date only) within a year of the last discharge.

    # --- readmissions and earlier stays ----------------------------------------------------------
    prior = rng.random(n) < 0.10
    readmit_ckrt = (cat == NO_MG) & (death_d > 330) & (rng.random(n) < 0.35)
    readmit_plain = np.isin(cat, (UNEXPOSED, EXPOSED)) & (death_d > 330) & (rng.random(n) < 0.15)
    readmit = readmit_ckrt | readmit_plain
    re_admit = index + rng.integers(150, 300, n) * _DAY_MIN + rng.integers(0, _DAY_MIN, n)
    re_in = re_admit + rng.integers(60, 24 * 60, n)
    re_out = re_in + rng.integers(2 * _DAY_MIN, 6 * _DAY_MIN, n)
    re_disch = re_out + rng.integers(_DAY_MIN, 5 * _DAY_MIN, n)
    last_disch = np.where(readmit, re_disch, dischtime)
    dod_known = in_hosp_death | (death <= last_disch + 365 * _DAY_MIN)
    dod = np.where(
        dod_known & np.isfinite(death), np.floor(np.where(np.isfinite(death), death, 0) / _DAY_MIN), _NO_DATE
    ).astype(np.int64)

    # --- patients / admissions / icustays ----------------------------------------------------------
    adm_year = _year_of(admittime)
    k = rng.integers(0, 3, n)
    t["hosp/patients"].add(
        subject_id=subject,
        gender=np.where(cov.female, "F", "M").astype(object),
        anchor_age=cov.age - k,
        anchor_year=adm_year - k,
        anchor_year_group=_pick(rng, ANCHOR_YEAR_GROUPS, n),
        dod=dod,
    )
    _admissions(rng, t, subject, hadm, admittime, dischtime, np.where(in_hosp_death, death, _NO_TIME))
    careunit = _pick(rng, CAREUNITS, n, [0.45, 0.2, 0.15, 0.1, 0.05, 0.05])
    t["icu/icustays"].add(
        subject_id=subject,
        hadm_id=hadm,
        stay_id=stay,
        first_careunit=careunit,
        last_careunit=careunit,
        intime=intime,
        outtime=outtime.astype(np.int64),
        los=np.round((outtime - intime) / _DAY_MIN, 4),
    )
    _diagnoses(rng, t, subject, hadm, cov.sepsis, adm_year)

    # prior non-CKRT admissions, more than a year before (outside any baseline-creatinine lookback)
    pi = np.flatnonzero(prior)
    p_admit = admittime[pi] - rng.integers(400, 900, pi.size) * _DAY_MIN
    extra_stays = _plain_stays(
        rng, t, ids, subject[pi], p_admit, np.zeros(pi.size, bool), np.zeros(pi.size, bool), hd=False
    ).size
    # readmissions after the index admission (some with a second CKRT episode)
    ri = np.flatnonzero(readmit)
    r_hadm = ids.take("hadm", ri.size)
    r_stay = ids.take("stay", ri.size)
    _admissions(rng, t, subject[ri], r_hadm, re_admit[ri], re_disch[ri], np.full(ri.size, _NO_TIME))
    r_unit = _pick(rng, CAREUNITS, ri.size)
    t["icu/icustays"].add(
        subject_id=subject[ri],
        hadm_id=r_hadm,
        stay_id=r_stay,
        first_careunit=r_unit,
        last_careunit=r_unit,
        intime=re_in[ri],
        outtime=re_out[ri],
        los=np.round((re_out[ri] - re_in[ri]) / _DAY_MIN, 4),
    )
    _diagnoses(rng, t, subject[ri], r_hadm, cov.sepsis[ri] & False, _year_of(re_admit[ri]))
    rc = readmit_ckrt[ri]
    if rc.any():
        # two CRRT sessions in the readmission: a second, later episode the index must ignore
        j = np.flatnonzero(rc)
        s1 = re_in[ri][j] + 120
        e1 = s1 + rng.integers(12 * 60, 30 * 60, j.size)
        s2 = e1 + rng.integers(60, 8 * 60, j.size)
        e2 = np.minimum(s2 + rng.integers(12 * 60, 30 * 60, j.size), re_out[ri][j] - 60)
        o = np.r_[j, j]
        _procedures(
            rng,
            t,
            ids,
            subject[ri][o],
            r_hadm[o],
            r_stay[o],
            np.r_[s1, s2],
            np.r_[e1, e2],
            np.full(o.size, 225802),
            weight[ri][o],
        )
    _labs_plain(rng, t, ids, subject[ri], r_hadm, re_in[ri], re_out[ri])

    # --- procedureevents: KRT, ventilation ------------------------------------------------------
    o = s_owner
    _procedures(
        rng, t, ids, subject[o], hadm[o], stay[o], sessions["start"], sessions["end"], sessions["itemid"], weight[o]
    )
    v = np.flatnonzero(cov.ventilation)
    _procedures(
        rng, t, ids, subject[v], hadm[v], stay[v], vent_start[v], vent_end[v], np.full(v.size, 225792), weight[v]
    )

    # --- chartevents: CRRT mode charting -----------------------------------------------------------
    _crrt_charting(rng, t, subject, hadm, stay, charting, chart_first, index, sessions, weight, intime)

    # --- inputevents: vasopressors, magnesium ----------------------------------------------------------
    vs = np.flatnonzero(cov.vasopressor)
    _vasopressors(
        rng,
        t,
        ids,
        subject[vs],
        hadm[vs],
        stay[vs],
        vaso_start[vs],
        vaso_end[vs],
        weight[vs],
        cov.high_norepi[vs],
        secondary=True,
    )
    lv = np.flatnonzero(late_vaso)
    _vasopressors(
        rng,
        t,
        ids,
        subject[lv],
        hadm[lv],
        stay[lv],
        late_start[lv],
        late_end[lv],
        weight[lv],
        rng.random(lv.size) < 0.5,
        secondary=False,
    )
    d = doses["owner"]
    _mg_rows(rng, t, ids, subject[d], hadm[d], stay[d], doses["start"], doses["grams"], doses["obgyn"], weight[d])

    # --- labevents ----------------------------------------------------------------------------------
    _ckrt_labs(rng, t, ids, subject, hadm, cat, cov, index, admittime, dischtime, death)

    dose_in_window = np.zeros(n)
    w = (doses["start"] > index[d]) & (doses["start"] <= index[d] + 48 * 60)
    np.add.at(dose_in_window, d[w], doses["grams"][w] * model.MEQ_PER_GRAM)
    # Death as recorded: deathtime in hospital (to the minute), else dod read as the last second of
    # its day (the cohort rule), unknown when more than a year after the last discharge.
    recorded = np.where(in_hosp_death, death, np.where(dod_known, (dod + 1) * _DAY_MIN - 1 / 60, np.inf))
    recorded_d = np.where(np.isfinite(recorded), (recorded - index) / _DAY_MIN, np.inf)
    krt_end_recorded = np.full(n, -np.inf)
    in_horizon = sessions["start"] <= index[s_owner] + model.HORIZON_DAYS * _DAY_MIN
    np.maximum.at(krt_end_recorded, s_owner[in_horizon], sessions["end"][in_horizon])
    outcome = model.observed_outcomes(recorded_d, (krt_end_recorded - index) / _DAY_MIN)
    planted = {
        "subject_id": subject,
        "hadm_id": hadm,
        "stay_id": stay,
        "category": np.array([CATEGORY_NAMES[c] for c in range(6)], dtype=object)[cat],
        "screened": np.isin(cat, (UNEXPOSED, EXPOSED, NO_MG, EARLY_DEATH)),
        "eligible": np.isin(cat, (UNEXPOSED, EXPOSED)),
        "index_time": pd.to_datetime(index * _MIN, unit="s"),
        "crrt_chart_first": chart_first,
        "exposed": exposed.astype(np.int64),
        "mg_dose_meq": np.round(dose_in_window, 4),
        "age": cov.age,
        "sex": np.where(cov.female, "F", "M"),
        "sepsis": cov.sepsis.astype(np.int64),
        "creatinine_baseline": cov.creatinine_baseline,
        "egfr_baseline": cov.egfr,
        "sofa": cov.sofa,
        "serum_mg": np.where(cat == NO_MG, np.nan, cov.serum_mg),
        "vasopressor": cov.vasopressor.astype(np.int64),
        "ventilation": cov.ventilation.astype(np.int64),
        "death_days_latent": death_d,
        "liberation_days_latent": lib_d,
        "death_days_recorded": recorded_d,
        "death_in_hospital": in_hosp_death,
        "dod_known": dod_known,
        **outcome,
        "__stays": n + ri.size + extra_stays,
    }
    return planted


def _krt_sessions(
    rng: np.random.Generator,
    first_start: np.ndarray,
    index: np.ndarray,
    crrt_end_d: np.ndarray,
    krt_end_d: np.ndarray,
    only_crrt: np.ndarray,
    death: np.ndarray,
) -> dict[str, np.ndarray]:
    """CRRT sessions from the first start to crrt_end, then intermittent HD until krt_end.

    Gaps between sessions stay below 3.5 days, so the only 7-day KRT-free gap after index
    follows the last session (liberation) and nothing is cut short by the rule.
    """
    n = index.size
    crrt_end = index + np.rint(crrt_end_d * _DAY_MIN)
    span = crrt_end - first_start
    m = np.where(span > 2 * _DAY_MIN, 1 + rng.binomial(3, 0.4, n), 1)
    owner, pos = _seg(m)
    gaps = np.where(pos > 0, rng.integers(60, 10 * 60, owner.size), 0)
    gap_total = np.zeros(n)
    np.add.at(gap_total, owner, gaps)
    w = _u(rng, 0.5, 1.5, owner.size)
    w_total = np.zeros(n)
    np.add.at(w_total, owner, w)
    length = (span[owner] - gap_total[owner]) * w / w_total[owner]
    # start_j = first start + gaps up to and including j + lengths before j (within the patient)
    first = np.cumsum(m) - m
    cum_gap = np.cumsum(gaps)
    cum_len = np.cumsum(length) - length
    rel_start = (cum_gap - (cum_gap[first] - gaps[first])[owner]) + (cum_len - cum_len[first][owner])
    c_start = np.rint(first_start[owner] + rel_start)
    c_end = np.where(pos == m[owner] - 1, crrt_end[owner], np.rint(c_start + length))
    c_item = np.asarray([225802, 225809, 225803, 225955])[
        model._categorical(rng, owner.size, np.array([[0.7, 0.15, 0.1, 0.05]]))
    ]

    # intermittent haemodialysis after CRRT: 4-h sessions, the last one ending at krt_end
    ihd_span = (krt_end_d - crrt_end_d) * _DAY_MIN
    k = np.where(only_crrt, 0, np.maximum(1, np.ceil((ihd_span - _DAY_MIN) / (2.5 * _DAY_MIN)))).astype(np.int64)
    h_owner, h_pos = _seg(k)
    hk = k[h_owner]
    room = np.maximum(ihd_span[h_owner] - _DAY_MIN, 0)
    h_end = np.where(
        room > 0,
        crrt_end[h_owner] + _DAY_MIN + (h_pos + 1) / hk * room,
        index[h_owner] + np.rint(krt_end_d[h_owner] * _DAY_MIN),
    )
    h_end = np.rint(h_end)
    h_start = h_end - 240

    owner_all = np.r_[owner, h_owner]
    start = np.r_[c_start, h_start]
    end = np.r_[c_end, h_end]
    item = np.r_[c_item, np.full(h_owner.size, 225441)]
    crrt = np.r_[np.ones(owner.size, bool), np.zeros(h_owner.size, bool)]
    # death ends KRT: drop sessions starting within 2 h of death, stop the rest an hour before
    keep = start < death[owner_all] - 120
    end = np.minimum(end, death[owner_all] - 60)
    order = np.lexsort((start[keep], owner_all[keep]))
    return {
        "owner": owner_all[keep][order],
        "start": start[keep][order].astype(np.int64),
        "end": end[keep][order].astype(np.int64),
        "itemid": item[keep][order],
        "crrt": crrt[keep][order],
    }


def _mg_doses(
    rng: np.random.Generator,
    cat: np.ndarray,
    serum_mg: np.ndarray,
    index: np.ndarray,
    intime: np.ndarray,
    death: np.ndarray,
) -> dict[str, np.ndarray]:
    """Magnesium sulfate bags: the exposed get their planted total within (4 h, 44 h]; others and
    some exposed get doses outside the window (before index, or 54-90 h after)."""
    n = cat.size
    ex = np.flatnonzero(cat == EXPOSED)
    # planted totals: quantiles of the gram distribution, larger totals to lower serum Mg
    q = (np.arange(ex.size) + 0.5) / max(ex.size, 1)
    grams_sorted = _GRAM_VALUES[np.searchsorted(np.cumsum(_GRAM_PROBS), q, side="right").clip(0, _GRAM_VALUES.size - 1)]
    rank = np.argsort(serum_mg[ex] + rng.normal(0, 0.35, ex.size), kind="stable")
    total = np.empty(ex.size, dtype=np.int64)
    total[rank] = np.sort(grams_sorted)[::-1]
    # choose a pattern per patient (vectorised over the few distinct totals)
    pattern_bags: list[np.ndarray] = []
    pattern_owner: list[np.ndarray] = []
    choice = rng.random(ex.size)
    for g, pats in _BAG_PATTERNS.items():
        sel = np.flatnonzero(total == g)
        which = np.minimum((choice[sel] * len(pats)).astype(int), len(pats) - 1)
        for p_i, bags in enumerate(pats):
            who = sel[which == p_i]
            pattern_owner.append(np.repeat(who, len(bags)))
            pattern_bags.append(np.tile(np.asarray(bags), who.size))
    b_owner = ex[np.concatenate(pattern_owner)] if pattern_owner else np.zeros(0, np.int64)
    b_grams = np.concatenate(pattern_bags) if pattern_bags else np.zeros(0, np.int64)
    b_start = index[b_owner] + rng.integers(4 * 60, 44 * 60 + 1, b_owner.size)

    # doses outside the window: before index (within the ICU stay) or 54-90 h after
    noisy = rng.random(n) < np.where(cat == EXPOSED, 0.15, np.where(cat == UNEXPOSED, 0.25, 0.30))
    nz = np.flatnonzero(noisy)
    pre = index[nz] - rng.integers(4 * 60, 30 * 60, nz.size)
    post = index[nz] + rng.integers(54 * 60, 90 * 60, nz.size)
    use_pre = (rng.random(nz.size) < 0.5) & (pre > intime[nz] + 30) & (cat[nz] != EXPOSED)
    n_start = np.where(use_pre, pre, post)
    ok = n_start + 180 < death[nz]
    n_owner = nz[ok]
    n_start = n_start[ok]
    n_grams = np.where(rng.random(n_owner.size) < 0.7, 2, 4)

    owner = np.r_[b_owner, n_owner]
    start = np.r_[b_start, n_start].astype(np.int64)
    grams = np.r_[b_grams, n_grams].astype(np.int64)
    # about 5 % of bags charted under the OB-GYN item 227524 (grams, no bolus carrier)
    obgyn = rng.random(owner.size) < 0.05
    end = start + np.where(grams >= 4, 120, 60)
    return {"owner": owner, "start": start, "end": end, "grams": grams, "obgyn": obgyn}


# ----------------------------------------------------------------------------------------------
# row writers shared by CKRT and background stays


def _admissions(
    rng: np.random.Generator,
    t: dict[str, _Table],
    subject: np.ndarray,
    hadm: np.ndarray,
    admit: np.ndarray,
    disch: np.ndarray,
    deathtime: np.ndarray,
) -> None:
    n = subject.size
    died = deathtime >= 0
    ed = rng.random(n) < 0.6
    edreg = np.where(ed, admit - rng.integers(60, 12 * 60, n), _NO_TIME)
    t["hosp/admissions"].add(
        subject_id=subject,
        hadm_id=hadm,
        admittime=np.asarray(admit, np.int64),
        dischtime=np.asarray(disch, np.int64),
        deathtime=np.asarray(deathtime, np.int64),
        admission_type=_pick(rng, ADMISSION_TYPES, n, [0.55, 0.2, 0.1, 0.1, 0.05]),
        admit_provider_id=np.char.add("P", rng.integers(10000, 99999, n).astype(str)).astype(object),
        admission_location=_pick(rng, ADMISSION_LOCATIONS, n),
        discharge_location=np.where(died, "DIED", _pick(rng, DISCHARGE_LOCATIONS, n)).astype(object),
        insurance=_pick(rng, INSURANCES, n),
        language="ENGLISH",
        marital_status=_pick(rng, MARITAL, n),
        race=_pick(rng, RACES, n, [0.65, 0.12, 0.05, 0.04, 0.08, 0.06]),
        edregtime=edreg,
        edouttime=np.where(ed, admit, _NO_TIME),
        hospital_expire_flag=died.astype(np.int64),
    )


def _diagnoses(
    rng: np.random.Generator,
    t: dict[str, _Table],
    subject: np.ndarray,
    hadm: np.ndarray,
    sepsis: np.ndarray,
    year: np.ndarray,
) -> None:
    """AKI and other codes; two sepsis codes on sepsis admissions (ICD-9 for about 40 %)."""
    n = subject.size
    version = np.where(rng.random(n) < 0.4, 9, 10)
    n_other = rng.integers(2, 5, n)
    owner, pos = _seg(n_other)
    other10, other9 = np.asarray(OTHER_CODES[10], object), np.asarray(OTHER_CODES[9], object)
    pick = rng.permutation(len(OTHER_CODES[10]))
    idx = (pick[pos % pick.size] + owner) % len(OTHER_CODES[10])
    codes = np.where(version[owner] == 10, other10[idx], other9[idx])
    so = np.flatnonzero(sepsis)
    s_owner = np.repeat(so, 2)
    s_pos = np.tile([0, 1], so.size)
    alt = rng.random(so.size) < 0.5  # septic shock or severe sepsis as the second code
    second = np.repeat(np.where(alt, 1, 2), 2)
    which = np.where(s_pos == 0, 0, second)
    s10, s9 = np.asarray(SEPSIS_CODES[10], object), np.asarray(SEPSIS_CODES[9], object)
    s_codes = np.where(version[s_owner] == 10, s10[which], s9[which])
    all_owner = np.r_[owner, s_owner]
    all_codes = np.r_[codes, s_codes]
    # sepsis codes first on sepsis admissions, then the others
    rank = np.r_[pos + 2, s_pos]
    order = np.lexsort((rank, all_owner))
    all_owner, all_codes = all_owner[order], all_codes[order]
    _, seq = _seg(np.bincount(all_owner, minlength=n))
    t["hosp/diagnoses_icd"].add(
        subject_id=subject[all_owner],
        hadm_id=hadm[all_owner],
        seq_num=seq + 1,
        icd_code=all_codes,
        icd_version=version[all_owner],
    )


def _procedures(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    stay: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    itemid: np.ndarray,
    weight: np.ndarray,
) -> None:
    n = subject.size
    if n == 0:
        return
    order_id = ids.take("order", n)
    vent = itemid == 225792
    t["icu/procedureevents"].add(
        subject_id=subject,
        hadm_id=hadm,
        stay_id=stay,
        caregiver_id=rng.integers(1000, 99999, n),
        starttime=start,
        endtime=end,
        storetime=end + rng.integers(1, 120, n),
        itemid=itemid,
        value=(end - start).astype(float),
        valueuom="min",
        orderid=order_id,
        linkorderid=order_id,
        ordercategoryname=np.where(vent, "Ventilation", "Dialysis").astype(object),
        ordercategorydescription="ContinuousProcess",
        patientweight=weight,
        isopenbag=0,
        continueinnextdept=0,
        statusdescription=_pick(rng, ("FinishedRunning", "Stopped"), n, [0.85, 0.15]),
    )


def _crrt_charting(
    rng: np.random.Generator,
    t: dict[str, _Table],
    subject: np.ndarray,
    hadm: np.ndarray,
    stay: np.ndarray,
    charting: np.ndarray,
    chart_first: np.ndarray,
    index: np.ndarray,
    sessions: dict[str, np.ndarray],
    weight: np.ndarray,
    intime: np.ndarray,
) -> None:
    """CRRT mode (227290) charted every 4-12 h during CRRT sessions; for some patients the first
    chart precedes the first procedureevents row (it is then the index time)."""
    c = sessions["crrt"] & charting[sessions["owner"]]
    s_owner, s_start, s_end = sessions["owner"][c], sessions["start"][c], sessions["end"][c]
    every = rng.integers(4 * 60, 12 * 60, s_owner.size)
    count = np.maximum(1, (s_end - s_start - 30) // every + 1)
    owner, pos = _seg(count)
    times = s_start[owner] + 15 + pos * every[owner]
    keep = times < s_end[owner]
    p = s_owner[owner][keep]
    times = times[keep]
    cf = np.flatnonzero(chart_first)
    p = np.r_[p, cf]
    times = np.r_[times, index[cf]]
    mode = np.asarray(CRRT_MODES, object)[rng.integers(0, 3, subject.size)]
    t["icu/chartevents"].add(
        subject_id=subject[p],
        hadm_id=hadm[p],
        stay_id=stay[p],
        caregiver_id=rng.integers(1000, 99999, p.size),
        charttime=times,
        storetime=times + rng.integers(1, 60, p.size),
        itemid=227290,
        value=mode[p],
        valuenum=np.full(p.size, np.nan),
        warning=0,
    )
    # admission weight, one chart per stay (realism; not used by the cohort rules)
    t["icu/chartevents"].add(
        subject_id=subject,
        hadm_id=hadm,
        stay_id=stay,
        caregiver_id=rng.integers(1000, 99999, subject.size),
        charttime=intime + 30,
        storetime=intime + 45,
        itemid=226512,
        value=np.char.mod("%.1f", weight).astype(object),
        valuenum=weight,
        valueuom="kg",
        warning=0,
    )


_VASO_UNITS = {
    221906: "mcg/kg/min",
    221289: "mcg/kg/min",
    221749: "mcg/kg/min",
    221662: "mcg/kg/min",
    222315: "units/hour",
}


def _vasopressors(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    stay: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    weight: np.ndarray,
    high: np.ndarray,
    secondary: bool,
) -> None:
    """Norepinephrine running over [start, end] split at 1-3 rate changes (rates stay in one SOFA
    band: > 0.1 or <= 0.1 mcg/kg/min); secondary agents never raise the SOFA cardiovascular score
    above the norepinephrine band."""
    n = subject.size
    if n == 0:
        return
    pieces = rng.integers(1, 4, n)
    owner, pos = _seg(pieces)
    span = (end - start)[owner]
    cut0 = np.rint(start[owner] + span * pos / pieces[owner])
    cut1 = np.where(pos == pieces[owner] - 1, end[owner], np.rint(start[owner] + span * (pos + 1) / pieces[owner]))
    rate = np.where(high[owner], _u(rng, 0.12, 0.6, owner.size), _u(rng, 0.02, 0.09, owner.size))
    rows = [(owner, cut0, cut1, np.full(owner.size, 221906), rate)]
    if secondary:
        a = rng.random(n)
        vp = np.flatnonzero(a < 0.30)
        rows.append((vp, start[vp] + 60, end[vp], np.full(vp.size, 222315), np.full(vp.size, 2.4)))
        ep = np.flatnonzero((a >= 0.30) & (a < 0.38) & high)
        rows.append((ep, start[ep] + 30, end[ep], np.full(ep.size, 221289), _u(rng, 0.02, 0.09, ep.size)))
        ph = np.flatnonzero((a >= 0.38) & (a < 0.46))
        rows.append((ph, start[ph] + 30, end[ph], np.full(ph.size, 221749), _u(rng, 0.3, 2.0, ph.size)))
        dp = np.flatnonzero((a >= 0.46) & (a < 0.50))
        rows.append((dp, start[dp] + 30, end[dp], np.full(dp.size, 221662), _u(rng, 2.0, 5.0, dp.size)))
    o = np.concatenate([r[0] for r in rows])
    s = np.concatenate([r[1] for r in rows]).astype(np.int64)
    e = np.concatenate([r[2] for r in rows]).astype(np.int64)
    keep = e > s
    o, s, e = o[keep], s[keep], e[keep]
    item = np.concatenate([r[3] for r in rows])[keep]
    r = np.round(np.concatenate([r[4] for r in rows])[keep], 4)
    minutes = (e - s).astype(float)
    w = weight[o]
    per_kg = item != 222315
    amount = np.where(per_kg, r * w * minutes / 1000.0, r * minutes / 60.0)
    order_id = ids.take("order", o.size)
    t["icu/inputevents"].add(
        subject_id=subject[o],
        hadm_id=hadm[o],
        stay_id=stay[o],
        caregiver_id=rng.integers(1000, 99999, o.size),
        starttime=s,
        endtime=e,
        storetime=e + rng.integers(1, 90, o.size),
        itemid=item,
        amount=np.round(amount, 6),
        amountuom=np.where(per_kg, "mg", "units").astype(object),
        rate=r,
        rateuom=np.array([_VASO_UNITS[i] for i in (221906, 222315)], object)[(~per_kg).astype(int)],
        orderid=order_id,
        linkorderid=order_id,
        ordercategoryname="01-Drips",
        secondaryordercategoryname="02-Fluids (Crystalloids)",
        ordercomponenttypedescription="Main order parameter",
        ordercategorydescription="Continuous Med",
        patientweight=w,
        totalamount=250.0,
        totalamountuom="mL",
        isopenbag=0,
        continueinnextdept=0,
        statusdescription="ChangeDose/Rate",
        originalamount=np.round(amount, 6),
        originalrate=r,
    )


def _mg_rows(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    stay: np.ndarray,
    start: np.ndarray,
    grams: np.ndarray,
    obgyn: np.ndarray,
    weight: np.ndarray,
) -> None:
    """Each 222011 bag (grams) with its 227523 bolus carrier (mL) under the same orderid; 227524
    bags stand alone; a few orders also leave a superseded "Rewritten" pair."""
    n = subject.size
    if n == 0:
        return
    minutes = np.where(grams >= 4, 120, 60)
    end = start + minutes
    order_id = ids.take("order", n)
    item = np.where(obgyn, 227524, 222011)
    common = dict(
        subject_id=subject,
        hadm_id=hadm,
        stay_id=stay,
        caregiver_id=rng.integers(1000, 99999, n),
        starttime=start,
        endtime=end,
        storetime=end + rng.integers(1, 60, n),
        orderid=order_id,
        linkorderid=order_id,
        ordercategoryname="02-Fluids (Crystalloids)",
        secondaryordercategoryname="Additive (Crystalloid)",
        ordercategorydescription="Continuous IV",
        patientweight=weight,
        isopenbag=0,
        continueinnextdept=0,
        statusdescription="FinishedRunning",
    )
    rate = np.round(grams / (minutes / 60.0), 4)
    volume = np.where(grams >= 4, 100.0, 50.0)
    t["icu/inputevents"].add(
        **common,
        itemid=item,
        amount=grams.astype(float),
        amountuom="grams",
        rate=rate,
        rateuom="grams/hour",
        ordercomponenttypedescription="Main order parameter",
        totalamount=volume,
        totalamountuom="mL",
        originalamount=grams.astype(float),
        originalrate=rate,
    )
    c = ~obgyn
    carrier = {k: (v[c] if isinstance(v, np.ndarray) else v) for k, v in common.items()}
    t["icu/inputevents"].add(
        **carrier,
        itemid=np.full(int(c.sum()), 227523),
        amount=volume[c],
        amountuom="mL",
        rate=np.round(volume[c] / (minutes[c] / 60.0), 4),
        rateuom="mL/hour",
        ordercomponenttypedescription="Mixed solution",
        totalamount=volume[c],
        totalamountuom="mL",
        originalamount=volume[c],
        originalrate=np.round(volume[c] / (minutes[c] / 60.0), 4),
    )
    # About 4 % of orders were rewritten: MIMIC-IV keeps the superseded order as a row with
    # statusdescription "Rewritten" (and its carrier) beside the one given; it must not count.
    r = np.flatnonzero(c & (rng.random(n) < 0.04))
    if r.size:
        old_order = ids.take("order", r.size)
        for item_id, amount, uom, rate_uom, part in (
            (222011, grams[r].astype(float), "grams", "grams/hour", "Main order parameter"),
            (227523, volume[r], "mL", "mL/hour", "Mixed solution"),
        ):
            t["icu/inputevents"].add(
                subject_id=subject[r],
                hadm_id=hadm[r],
                stay_id=stay[r],
                caregiver_id=rng.integers(1000, 99999, r.size),
                starttime=start[r],
                endtime=end[r],
                storetime=start[r] + rng.integers(1, 30, r.size),
                itemid=np.full(r.size, item_id),
                amount=amount,
                amountuom=uom,
                rate=np.round(amount / (minutes[r] / 60.0), 4),
                rateuom=rate_uom,
                orderid=old_order,
                linkorderid=order_id[r],
                ordercategoryname="02-Fluids (Crystalloids)",
                secondaryordercategoryname="Additive (Crystalloid)",
                ordercomponenttypedescription=part,
                ordercategorydescription="Continuous IV",
                patientweight=weight[r],
                totalamount=volume[r],
                totalamountuom="mL",
                isopenbag=0,
                continueinnextdept=0,
                statusdescription="Rewritten",
                originalamount=amount,
                originalrate=np.round(amount / (minutes[r] / 60.0), 4),
            )


# ----------------------------------------------------------------------------------------------
# laboratory results


def _lab_rows(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    itemid: np.ndarray,
    charttime: np.ndarray,
    valuenum: np.ndarray,
) -> None:
    n = subject.size
    if n == 0:
        return
    items = np.asarray(sorted(LAB_ITEMS))
    meta = np.searchsorted(items, itemid)
    unit = np.asarray([LAB_ITEMS[i][3] for i in items], object)[meta]
    lo = np.asarray([LAB_ITEMS[i][4] for i in items])[meta]
    hi = np.asarray([LAB_ITEMS[i][5] for i in items])[meta]
    dec = np.asarray([LAB_ITEMS[i][6] for i in items])[meta]
    v = np.where(dec == 0, np.round(valuenum), np.round(valuenum, 1))
    text = _decimal_text(v, dec)
    hadm_col = hadm.astype(object)  # NULL where there is no admission
    hadm_col[hadm <= 0] = None
    # one specimen per draw (same subject and time)
    t["hosp/labevents"].add(
        labevent_id=np.zeros(n, np.int64),
        subject_id=subject,
        hadm_id=hadm_col,
        specimen_id=ids.take("specimen", n),
        itemid=itemid,
        charttime=charttime,
        storetime=charttime + rng.integers(30, 180, n),
        value=text,
        valuenum=v,
        valueuom=unit,
        ref_range_lower=lo,
        ref_range_upper=hi,
        flag=_where_or_null((v < lo) | (v > hi), "abnormal"),
        priority=_pick(rng, ("STAT", "ROUTINE"), n, [0.6, 0.4]),
    )


def _where_or_null(condition: np.ndarray, value: str) -> np.ndarray:
    # object column: ``value`` where the condition holds, NULL (None) elsewhere
    out = np.full(condition.shape, None, dtype=object)
    out[condition] = value
    return out


def _decimal_text(values: np.ndarray, decimals: np.ndarray) -> pa.Array:
    """Lab `value` text with 0 or 1 decimal ("2.0", "153"), built with Arrow string kernels
    (printf-style formatting of a million floats in Python is the slowest step otherwise)."""
    tenths = np.rint(np.abs(values) * 10).astype(np.int64)
    whole = pc.cast(
        pa.array(np.where(decimals == 0, np.rint(np.abs(values)).astype(np.int64), tenths // 10)), pa.string()
    )
    frac = pc.cast(pa.array(tenths % 10), pa.string())
    one = pc.binary_join_element_wise(whole, frac, ".")
    text = pc.if_else(pa.array(decimals == 0), whole, one)
    return pc.if_else(pa.array(values < 0), pc.binary_join_element_wise("-", text, ""), text)


def _band(
    rng: np.random.Generator, points: np.ndarray, edges: Sequence[tuple[float, float]], decimals: int
) -> np.ndarray:
    """A value strictly inside the SOFA band of each point score (so any window gives the same score)."""
    lo = np.asarray([e[0] for e in edges])[points]
    hi = np.asarray([e[1] for e in edges])[points]
    return np.round(_u(rng, lo, hi, points.size), decimals)


_PLATELET_BANDS = [(151, 380), (101, 149), (51, 99), (21, 49), (5, 19)]
_BILIRUBIN_BANDS = [(0.2, 1.1), (1.3, 1.9), (2.1, 5.9), (6.1, 11.9), (12.1, 25.0)]


def _ckrt_labs(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    cat: np.ndarray,
    cov: model.Covariates,
    index: np.ndarray,
    admittime: np.ndarray,
    dischtime: np.ndarray,
    death: np.ndarray,
) -> None:
    n = subject.size
    alive_until = np.minimum(dischtime, death) - 30
    parts: list[
        tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ] = []  # owner, item, time, value, hadm

    # baseline creatinine: one outpatient result 20-300 days before the admission
    base_t = admittime - rng.integers(20, 300, n) * _DAY_MIN - rng.integers(8 * 60, 17 * 60, n)
    parts.append((np.arange(n), np.full(n, 50912), base_t, cov.creatinine_baseline, np.zeros(n, np.int64)))

    # pre-CKRT panel 1-6 h before index: creatinine >= 5 (renal SOFA 4), platelets, bilirubin
    pre = index - np.minimum(rng.integers(60, 361, n), index - admittime - 10)
    ar = np.arange(n)
    parts.append((ar, np.full(n, 50912), pre, _u(rng, 5.0, 8.5, n), hadm))
    parts.append((ar, np.full(n, 51265), pre, _band(rng, cov.coag, _PLATELET_BANDS, 0), hadm))
    parts.append((ar, np.full(n, 50885), pre, _band(rng, cov.liver, _BILIRUBIN_BANDS, 1), hadm))
    parts.append((ar, np.full(n, 51006), pre, _u(rng, 50, 140, n), hadm))
    parts.append((ar, np.full(n, 50971), pre, _u(rng, 3.8, 6.2, n), hadm))

    # the index-day serum Mg (one draw, inside the calendar day, before death): not for NO_MG
    has = np.flatnonzero(cat != NO_MG)
    day0 = (index[has] // _DAY_MIN) * _DAY_MIN
    latest = np.minimum(day0 + 23 * 60 + 30, death[has] - 60)
    mg_t = np.rint(_u(rng, day0 + 30, latest, has.size))
    parts.append((has, np.full(has.size, 50960), mg_t, cov.serum_mg[has], hadm[has]))

    # daily panels on the other days (-2..+10), 04:00-22:00, while in hospital and alive
    days = np.r_[np.arange(-2, 0), np.arange(1, 11)]
    owner = np.repeat(ar, days.size)
    d = np.tile(days, n)
    when = (index[owner] // _DAY_MIN + d) * _DAY_MIN + rng.integers(4 * 60, 22 * 60, owner.size)
    ok = (when > admittime[owner] + 30) & (when < alive_until[owner])
    owner, d, when = owner[ok], d[ok], when[ok]
    m = owner.size
    creat = np.where(d < 0, _u(rng, 5.0, 8.5, m), _u(rng, 1.5, 4.5, m))
    mg = np.clip(cov.serum_mg[owner] + rng.normal(0.1, 0.2, m) * (d > 0), 1.0, 3.9)
    for item, value in (
        (50912, creat),
        (51265, _band(rng, cov.coag[owner], _PLATELET_BANDS, 0)),
        (50885, _band(rng, cov.liver[owner], _BILIRUBIN_BANDS, 1)),
        (50960, mg),
        (50971, _u(rng, 3.5, 5.5, m)),
    ):
        parts.append((owner, np.full(m, item), when, value, hadm[owner]))

    o = np.concatenate([p[0] for p in parts])
    _lab_rows(
        rng,
        t,
        ids,
        subject[o],
        np.concatenate([p[4] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]).astype(np.int64),
        np.concatenate([p[3] for p in parts]),
    )


def _labs_plain(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    hadm: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> None:
    """A daily panel (creatinine, Mg, platelets, bilirubin) over at most 4 days of a stay."""
    n = subject.size
    if n == 0:
        return
    ndays = np.clip((end - start) // _DAY_MIN + 1, 1, 4)
    owner, pos = _seg(ndays)
    when = start[owner] + 60 + pos * _DAY_MIN + rng.integers(0, 20 * 60, owner.size)
    when = np.minimum(when, end[owner] - 30)
    m = owner.size
    creat = np.round(np.clip(rng.lognormal(np.log(1.1), 0.45, m), 0.3, 9.0), 1)
    for item, value in (
        (50912, creat),
        (50960, np.clip(rng.normal(2.0, 0.3, m), 1.0, 3.5)),
        (51265, np.clip(rng.normal(210, 80, m), 8, 600)),
        (50885, np.clip(rng.lognormal(np.log(0.6), 0.7, m), 0.1, 20)),
    ):
        _lab_rows(rng, t, ids, subject[owner], hadm[owner], np.full(m, item), when, value)


# ----------------------------------------------------------------------------------------------
# ICU stays of patients who never get CKRT (most stays), and earlier stays of CKRT patients


def _plain_stays(
    rng: np.random.Generator,
    t: dict[str, _Table],
    ids: _IdPool,
    subject: np.ndarray,
    admit: np.ndarray,
    sepsis: np.ndarray,
    died: np.ndarray,
    hd: bool = True,
) -> np.ndarray:
    """One admission with one ICU stay per element; no CRRT and no CRRT-mode charting ever.

    died: the patient dies in this admission (at ICU discharge). hd: allow intermittent HD
    (ESKD patients). Returns the discharge (or death) time of each admission, in minutes.
    """
    n = subject.size
    if n == 0:
        return np.zeros(0, np.int64)
    hadm = ids.take("hadm", n)
    stay = ids.take("stay", n)
    intime = admit + rng.integers(0, 2 * _DAY_MIN, n)
    los = np.clip(rng.lognormal(np.log(2.2), 0.7, n), 0.3, 30)
    outtime = intime + np.rint(los * _DAY_MIN).astype(np.int64)
    disch = outtime + rng.integers(6 * 60, 8 * _DAY_MIN, n)
    disch = np.where(died, outtime, disch)
    _admissions(rng, t, subject, hadm, admit, disch, np.where(died, outtime, _NO_TIME))
    unit = _pick(rng, CAREUNITS, n)
    t["icu/icustays"].add(
        subject_id=subject,
        hadm_id=hadm,
        stay_id=stay,
        first_careunit=unit,
        last_careunit=unit,
        intime=intime,
        outtime=outtime,
        los=np.round((outtime - intime) / _DAY_MIN, 4),
    )
    _diagnoses(rng, t, subject, hadm, sepsis, _year_of(admit))
    _labs_plain(rng, t, ids, subject, hadm, intime, outtime)
    weight = np.round(np.clip(rng.normal(80, 18, n), 40, 170), 1)
    # some are on vasopressors, ventilated, given magnesium, or (ESKD) on intermittent HD
    vs = np.flatnonzero(rng.random(n) < 0.25)
    v_end = np.minimum(intime[vs] + rng.integers(4 * 60, 48 * 60, vs.size), outtime[vs] - 10)
    _vasopressors(
        rng,
        t,
        ids,
        subject[vs],
        hadm[vs],
        stay[vs],
        intime[vs] + 20,
        v_end,
        weight[vs],
        rng.random(vs.size) < 0.4,
        secondary=True,
    )
    ve = np.flatnonzero(rng.random(n) < 0.30)
    _procedures(
        rng,
        t,
        ids,
        subject[ve],
        hadm[ve],
        stay[ve],
        intime[ve] + 15,
        np.maximum(outtime[ve] - rng.integers(60, 600, ve.size), intime[ve] + 60),
        np.full(ve.size, 225792),
        weight[ve],
    )
    mg = np.flatnonzero(rng.random(n) < 0.20)
    mg_start = np.minimum(intime[mg] + rng.integers(60, 36 * 60, mg.size), outtime[mg] - 150)
    ok = mg_start > intime[mg]
    mg, mg_start = mg[ok], mg_start[ok]
    _mg_rows(
        rng,
        t,
        ids,
        subject[mg],
        hadm[mg],
        stay[mg],
        mg_start,
        np.where(rng.random(mg.size) < 0.7, 2, 4),
        rng.random(mg.size) < 0.03,
        weight[mg],
    )
    on_hd = np.flatnonzero(rng.random(n) < (0.02 if hd else 0.0))
    hd_start = np.minimum(intime[on_hd] + rng.integers(2 * 60, 20 * 60, on_hd.size), outtime[on_hd] - 300)
    ok = hd_start > intime[on_hd]
    on_hd, hd_start = on_hd[ok], hd_start[ok]
    _procedures(
        rng,
        t,
        ids,
        subject[on_hd],
        hadm[on_hd],
        stay[on_hd],
        hd_start,
        hd_start + 240,
        np.full(on_hd.size, 225441),
        weight[on_hd],
    )
    return disch


def _background_stays(rng: np.random.Generator, n_stays: int, ids: _IdPool, t: dict[str, _Table]) -> None:
    if n_stays <= 0:
        return
    n_pat = max(1, int(round(n_stays / 1.1)))
    second = n_stays - n_pat
    subject = ids.take("subject", n_pat)
    age = np.clip(np.rint(rng.normal(62, 17, n_pat)), 18, 91).astype(np.int64)
    age = np.where(rng.random(n_pat) < 0.01, rng.integers(16, 18, n_pat), age)
    female = rng.random(n_pat) < 0.44
    year = rng.integers(2110, 2195, n_pat)
    admit = _year_start_minutes(year) + rng.integers(5, 340, n_pat) * _DAY_MIN + rng.integers(0, _DAY_MIN, n_pat)
    twice = np.zeros(n_pat, bool)
    twice[rng.choice(n_pat, size=second, replace=False)] = True
    dies = rng.random(n_pat) < 0.10
    sepsis = rng.random(n_pat) < 0.15
    last = _plain_stays(rng, t, ids, subject, admit, sepsis, dies & ~twice)
    tw = np.flatnonzero(twice)
    prev_disch = last[tw]
    re_admit = prev_disch + rng.integers(30 * _DAY_MIN, 400 * _DAY_MIN, tw.size)
    last[tw] = _plain_stays(rng, t, ids, subject[tw], re_admit, sepsis[tw], dies[tw])
    # post-discharge deaths known by date: ~12 % of patients, within a year of the last discharge
    late = (~dies) & (rng.random(n_pat) < 0.12)
    late_day = (last + rng.integers(40, 365, n_pat) * _DAY_MIN) // _DAY_MIN
    dod = np.where(late, late_day, np.where(dies, last // _DAY_MIN, _NO_DATE))
    k = rng.integers(0, 3, n_pat)
    t["hosp/patients"].add(
        subject_id=subject,
        gender=np.where(female, "F", "M").astype(object),
        anchor_age=age - k,
        anchor_year=year - k,
        anchor_year_group=_pick(rng, ANCHOR_YEAR_GROUPS, n_pat),
        dod=dod.astype(np.int64),
    )


# ----------------------------------------------------------------------------------------------
# dictionaries, truth, writing


def _dictionaries(t: dict[str, _Table]) -> None:
    items = sorted(LAB_ITEMS)
    t["hosp/d_labitems"].add(
        itemid=np.asarray(items),
        label=[LAB_ITEMS[i][0] for i in items],
        fluid=[LAB_ITEMS[i][1] for i in items],
        category=[LAB_ITEMS[i][2] for i in items],
    )
    icu = [*sorted(ICU_ITEMS), 226512]
    rows = [
        ICU_ITEMS.get(i, ("Admission Weight (Kg)", "Admit Wt", "chartevents", "General", "kg", "Numeric")) for i in icu
    ]
    t["icu/d_items"].add(
        itemid=np.asarray(icu),
        label=[r[0] for r in rows],
        abbreviation=[r[1] for r in rows],
        linksto=[r[2] for r in rows],
        category=[r[3] for r in rows],
        unitname=[r[4] for r in rows],
        param_type=[r[5] for r in rows],
    )
    codes = sorted(ICD_TITLES)
    t["hosp/d_icd_diagnoses"].add(
        icd_code=[c for c, _ in codes],
        icd_version=np.asarray([v for _, v in codes]),
        long_title=[ICD_TITLES[c] for c in codes],
    )


@lru_cache(maxsize=4)
def _population_truth(exposed_share: float) -> tuple[tuple[str, float], ...]:
    return tuple(model.planted_truth(exposed_share, n=40_000).items())


def _truth(plan: _Plan, planted: pd.DataFrame, seed: int) -> dict[str, Any]:
    exposed = planted["exposed"] == 1
    dose = planted.loc[exposed, "mg_dose_meq"]
    pop = dict(_population_truth(round(PUBLISHED_FLOW["exposed"] / PUBLISHED_FLOW["eligible"], 6)))
    return {
        "flow": {
            "screened": plan.screened,
            "excluded": plan.excluded,
            "excluded_no_mg_on_index_day": plan.no_mg,
            "excluded_died_within_48h": plan.early_death,
            "eligible": plan.eligible,
            "exposed": plan.exposed,
            "unexposed": plan.unexposed,
            "not_screened_minors": plan.minors,
            "not_screened_no_support": plan.no_support,
        },
        "dose_meq": {
            "mean": round(float(dose.mean()), 3),
            "sd": round(float(dose.std(ddof=1)), 3),
            "meq_per_gram": model.MEQ_PER_GRAM,
        },
        "hr_death": model.HR_DEATH,
        "hr_death_estimand": (
            "conditional hazard ratio of death (exposed vs not) given age, sex, sepsis, eGFR (CKD-EPI 2021), "
            "SOFA and serum Mg, all entering the log hazard linearly: a Cox model adjusted for these six "
            "covariates (in the full or the matched cohort) estimates it"
        ),
        "hr_death_att_marginal": pop["hr_death_att_marginal"],
        "hr_death_att_marginal_estimand": (
            "marginal hazard ratio of death in the exposed population (ATT): the target of an unadjusted Cox "
            "model in a well-matched sample; differs from hr_death because hazard ratios are non-collapsible"
        ),
        "hr_death_adjusted_check": pop["hr_death_adjusted_check"],
        "hr_krt_cause_specific": model.HR_LIBERATION_CS,
        "shr_krt": pop["shr_krt_adjusted"],
        "shr_krt_estimand": (
            "subdistribution hazard ratio of KRT liberation (death competing, 90-day horizon) from a Fine-Gray "
            "model adjusted for the six covariates, computed on a simulated population of "
            f"{pop['truth_simulation_size']} from the same model: the planted effect is cause-specific "
            "(HR 2.0 on the latent liberation time), so this is the least-false value Fine-Gray converges to"
        ),
        "shr_krt_att_marginal": pop["shr_krt_att_marginal"],
        "mortality_90d_exposed": pop["mortality_90d_exposed_att"],
        "mortality_90d_exposed_without_mg": pop["mortality_90d_exposed_had_they_not"],
        "model": {
            "death": {
                "baseline": f"Weibull shape {model.DEATH_SHAPE}, scale {model.DEATH_SCALE}/day^shape, "
                f"starting {model.DEATH_DELAY_DAYS} days after index",
                "log_hr": {"mg": round(math.log(model.HR_DEATH), 6), **model.DEATH_COEF},
            },
            "liberation": {
                "baseline": f"Weibull shape {model.LIB_SHAPE}, scale {model.LIB_SCALE}/day^shape, "
                f"starting {model.LIBERATION_DELAY_DAYS} day after index",
                "log_hr": {"mg": round(math.log(model.HR_LIBERATION_CS), 6), **model.LIB_COEF},
            },
            "exposure_log_odds": model.EXPOSURE_COEF,
            "centres": model.CENTRE,
            "sofa": "renal 4 + coagulation (platelets) + liver (bilirubin) + cardiovascular (norepinephrine "
            "rate: 4 if > 0.1 mcg/kg/min, 3 otherwise, 0 without vasopressor)",
        },
        "description": (
            "Synthetic MIMIC-IV v2.2 EHR. Among eligible CKRT patients, death after index follows a Weibull "
            "proportional-hazards model with a planted conditional HR of 0.40 for early Mg, and KRT liberation "
            "(end of the last KRT session, confirmed by 7 KRT-free days alive) a cause-specific Weibull model "
            "with HR 2.0, independent of death given the covariates. Age, sepsis, eGFR, SOFA and serum Mg "
            "drive both the chance of Mg (low serum Mg and sepsis raise it, low eGFR and high SOFA lower it) "
            "and the hazards, so the crude HR is biased and adjustment or matching removes the bias. "
            f"Generator seed {seed}."
        ),
    }


#: What the generator writes into its folder (and replaces in an earlier synthetic EHR).
_PARTS: tuple[str, ...] = ("hosp", "icu", "SYNTHETIC.json")


def _install(staging: Path, out: Path) -> None:
    """Move the complete EHR written in ``staging`` to ``out`` (renames on one file system).

    A new or empty ``out`` is replaced by ``staging`` in one rename. An ``out`` that holds an earlier
    synthetic EHR (checked by the caller) keeps its other files: its parts are moved aside, the new
    ones moved in, and the old ones deleted last; if a move fails the old parts are put back.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        staging.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    old.mkdir()
    installed: list[str] = []
    try:
        for part in _PARTS:
            if (out / part).exists():
                (out / part).rename(old / part)
        for part in _PARTS:
            (staging / part).rename(out / part)
            installed.append(part)
    except BaseException:
        # undo: the new parts out, the old ones back in
        for part in installed:
            target = out / part
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        for part in _PARTS:
            if (old / part).exists() and not (out / part).exists():
                (old / part).rename(out / part)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _write(out: Path, tables: dict[str, _Table], fmt: str) -> None:
    sort_keys = {
        "hosp/patients": ["subject_id"],
        "hosp/admissions": ["subject_id", "hadm_id"],
        "hosp/diagnoses_icd": ["subject_id", "hadm_id", "seq_num"],
        "hosp/labevents": ["subject_id", "charttime", "itemid"],
        "icu/icustays": ["subject_id", "intime"],
        "icu/inputevents": ["subject_id", "starttime", "orderid", "itemid"],
        "icu/procedureevents": ["subject_id", "starttime", "orderid"],
        "icu/chartevents": ["subject_id", "charttime", "itemid"],
        "hosp/prescriptions": ["subject_id", "starttime", "pharmacy_id"],
        "hosp/emar": ["subject_id", "charttime", "emar_id"],
        "hosp/emar_detail": ["subject_id", "emar_id", "parent_field_ordinal"],
    }

    def one(name: str, table: _Table) -> None:
        arrow = table.to_arrow()
        keys = sort_keys.get(name)
        if keys:
            arrow = arrow.sort_by([(k, "ascending") for k in keys])
        if name == "hosp/labevents":
            arrow = arrow.set_column(0, "labevent_id", pa.array(np.arange(1, arrow.num_rows + 1, dtype=np.int64)))
        path = out / f"{name}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            pq.write_table(arrow, path, compression="zstd")
        else:
            _write_csv_gz(arrow, path)

    # zlib and Arrow release the GIL: two files compress at once on a 2-core machine. Each file's
    # bytes depend only on its own table, so the output stays deterministic.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(one, name, table) for name, table in tables.items()]:
            future.result()


def _write_csv_gz(table: pa.Table, path: Path) -> None:
    """CSV with the bare MIMIC header line; gzip without a timestamp so files are reproducible."""
    header = ",".join(table.column_names) + "\n"
    tmp = path.with_suffix(path.suffix + ".part")
    # Like PhysioNet's files, quote only when a text field holds a comma or a quote; Arrow's
    # "needed" style quotes every text field, so it is used only for tables that need it.
    needs_quotes = any(
        pa.types.is_string(col.type) and pc.any(pc.match_substring_regex(col, '[,"\n]')).as_py()
        for col in table.columns
        if col.null_count < len(col)
    )
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=2, mtime=0) as gz:
        gz.write(header.encode())
        opts = pacsv.WriteOptions(
            include_header=False, quoting_style="needed" if needs_quotes else "none", batch_size=65_536
        )
        pacsv.write_csv(table, gz, write_options=opts)
    tmp.replace(path)
