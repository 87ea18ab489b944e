"""The CKRT cohort, written once as ibis expressions (compiled by DuckDB or Spark).

:func:`patient_facts` builds one lazy ibis table with one row per patient
who ever had a CKRT record: the index (first CKRT start), the inclusion and
exclusion flags, exposure, covariates and outcome facts. Nothing here knows
the engine: the same expression compiles to DuckDB SQL or Spark SQL. The
attrition log (``attrition.py``) only counts the flags, in order.

Every rule is stated in ``docs/cohort.md``; the constants below are the
MIMIC-IV itemids of concepts the study file does not configure (SOFA
components), with the clinical source of each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir

from .spec import Study

SECONDS_PER_DAY = 86_400

# --- SOFA at index (Vincent 1996), MIMIC-IV itemids -----------------------------------------
PLATELETS_ITEMID = 51265  # hosp/labevents, K/uL: coagulation
BILIRUBIN_ITEMID = 50885  # hosp/labevents, total bilirubin mg/dL: liver
PAO2_ITEMID = 50821  # hosp/labevents, blood gas pO2 mmHg: respiratory
FIO2_ITEMID = 50816  # hosp/labevents, blood gas "Oxygen" (FiO2, % or fraction): respiratory
NOREPINEPHRINE_ITEMID = 221906
EPINEPHRINE_ITEMID = 221289
DOPAMINE_ITEMID = 221662
DOBUTAMINE_ITEMID = 221653  # an inotrope, scored by SOFA though not a vasopressor
SOFA_WINDOW_HOURS = 24.0  # worst value in [index - 24 h, index]
RENAL_SOFA_ON_KRT = 4  # everyone is on CKRT at index: renal SOFA 4 by convention

# --- Sepsis: explicit sepsis codes on the index admission (Angus 2001 / Martin 2003 explicit codes) --
# Codes are compared without dots, as MIMIC-IV stores them; a prefix matches every subcode.
SEPSIS_ICD9_PREFIXES: tuple[str, ...] = (
    "038",  # septicaemia (Martin 2003)
    "99591",  # sepsis
    "99592",  # severe sepsis (Angus explicit)
    "78552",  # septic shock (Angus explicit)
)
SEPSIS_ICD10_PREFIXES: tuple[str, ...] = (
    "A40",  # streptococcal sepsis
    "A41",  # other sepsis
    "A021",  # Salmonella sepsis
    "A227",  # anthrax sepsis
    "A267",  # Erysipelothrix sepsis
    "A327",  # listerial sepsis
    "A427",  # actinomycotic sepsis
    "B377",  # candidal sepsis
    "R652",  # severe sepsis, with (R6521) or without (R6520) septic shock
)

GRAM_UNITS: tuple[str, ...] = ("grams", "gram", "g", "gm")


def _shift(ts: ir.TimestampValue, hours: float) -> ir.TimestampValue:
    """``ts`` moved by ``hours`` (whole seconds; works on every engine ibis compiles to)."""
    seconds = int(round(hours * 3600))
    if seconds >= 0:
        return ts + ibis.interval(seconds=seconds)
    return ts - ibis.interval(seconds=-seconds)


def _seconds(later: ir.TimestampValue, earlier: ir.TimestampValue) -> ir.IntegerValue:
    """``later - earlier`` in whole seconds (MIMIC-IV times are whole seconds)."""
    return later.delta(earlier, unit="second")


def _attach(base: ir.Table, other: ir.Table, keys: list[str]) -> ir.Table:
    """Left join ``other`` (unique on ``keys``) onto ``base``, keeping base's key columns once."""
    joined = base.left_join(other, keys)
    return joined.select(*[base[c] for c in base.columns], *[other[c] for c in other.columns if c not in keys])


def _flag(column: ir.Value) -> ir.IntegerValue:
    """0/1 from a possibly-null count/indicator (null = no matching row)."""
    return ibis.cases((ibis.coalesce(column, 0) > 0, 1), else_=0).cast("int64")


def crrt_charting(conn: Any, study: Study) -> ir.Table | None:
    """CRRT-mode chart rows (``subject_id``, ``stay_id``, ``charttime``), or None when not available.

    chartevents is the largest MIMIC-IV table (about 430 million rows): it is
    filtered to one itemid here so that the engine scans it once.
    """
    if not conn.has("icu/chartevents") or study.cohort.crrt_mode_itemid is None:
        return None
    ce = conn.table("icu/chartevents")
    return ce.filter((ce.itemid == study.cohort.crrt_mode_itemid) & ce.charttime.notnull()).select(
        "subject_id", "stay_id", "charttime"
    )


def ckrt_events(conn: Any, study: Study, charting: ir.Table | None = None) -> ir.Table:
    """Every CKRT record: CRRT procedureevents starts and (if charted) CRRT-mode chartevents.

    Columns ``subject_id``, ``stay_id``, ``event_time``.
    """
    pe = conn.table("icu/procedureevents")
    events = pe.filter(pe.itemid.isin(list(study.cohort.crrt_itemids)) & pe.starttime.notnull()).select(
        subject_id=pe.subject_id, stay_id=pe.stay_id, event_time=pe.starttime
    )
    if charting is not None:
        events = events.union(
            charting.select(subject_id="subject_id", stay_id="stay_id", event_time="charttime"), distinct=False
        )
    return events


def krt_sessions(conn: Any, study: Study, charting: ir.Table | None = None) -> ir.Table:
    """KRT sessions (CRRT and intermittent): ``subject_id``, ``session_start``, ``session_end``.

    A CRRT-mode chart row is a session of zero length at its charttime (it
    proves CRRT was running then); a missing endtime is taken as the start.
    """
    pe = conn.table("icu/procedureevents")
    ids = list(study.cohort.crrt_itemids) + list(study.cohort.intermittent_dialysis_itemids)
    sessions = pe.filter(pe.itemid.isin(ids) & pe.starttime.notnull()).select(
        subject_id=pe.subject_id,
        session_start=pe.starttime,
        session_end=ibis.coalesce(pe.endtime, pe.starttime),
    )
    if charting is not None:
        sessions = sessions.union(
            charting.select(subject_id="subject_id", session_start="charttime", session_end="charttime"), distinct=False
        )
    return sessions


def _running(events: ir.Table, keys: ir.Table, lo_hours: float, hi_hours: float, name: str) -> ir.Table:
    """Per candidate (subject_id, stay_id): how many ``events`` overlap [index + lo, index + hi]."""
    j = events.join(keys, "subject_id")
    running = j.filter(
        (j.starttime <= _shift(j.index_time, hi_hours))
        & (ibis.coalesce(j.endtime, j.starttime) >= _shift(j.index_time, lo_hours))
    )
    return running.group_by(["subject_id", "stay_id"]).aggregate(**{name: running.count()})


def candidates(conn: Any, study: Study, charting: ir.Table | None = None, excluded: ir.Table | None = None) -> ir.Table:
    """One row per patient with a CKRT record: the chosen index and the screening flags.

    Per ICU stay, the candidate index is the first CKRT record of that stay.
    With ``first_stay_only`` (default) the patient's index is the earliest
    candidate (the first CKRT episode of the patient); otherwise it is the
    earliest candidate that passes the adult and support screens.
    ``excluded`` (``subject_id``, distinct) are the patients the data checks
    exclude (``sources/quality.py``): flagged ``data_ok = 0``.
    """
    c = study.cohort
    events = ckrt_events(conn, study, charting)
    per_stay = events.group_by(["subject_id", "stay_id"]).aggregate(index_time=events.event_time.min())

    stays = conn.table("icu/icustays").select("stay_id", stay_hadm_id="hadm_id")
    adm = conn.table("hosp/admissions").select("hadm_id", "admittime")
    pat = conn.table("hosp/patients").select("subject_id", "gender", "anchor_age", "anchor_year", "dod")
    cand = _attach(per_stay, stays, ["stay_id"]).rename(hadm_id="stay_hadm_id")
    cand = _attach(cand, adm, ["hadm_id"])
    cand = _attach(cand, pat, ["subject_id"])
    if excluded is not None:
        cand = _attach(cand, excluded.select("subject_id").mutate(data_excluded=ibis.literal(1)), ["subject_id"])
        cand = cand.mutate(data_ok=(ibis.coalesce(cand.data_excluded, 0) == 0).cast("int64")).drop("data_excluded")
    else:
        cand = cand.mutate(data_ok=ibis.literal(1).cast("int64"))
    cand = cand.mutate(
        # MIMIC-IV shifts dates per patient; age at admission = anchor_age + (year of admission - anchor_year).
        age=(cand.anchor_age + cand.admittime.year() - cand.anchor_year).cast("float64"),
        known_stay=(cand.hadm_id.notnull() & cand.admittime.notnull() & cand.gender.notnull()).cast("int64"),
    )

    keys = cand.select("subject_id", "stay_id", "index_time")
    lo, hi = c.support_window_hours
    ie = conn.table("icu/inputevents")
    vaso = ie.filter(ie.itemid.isin(list(c.vasopressor_itemids))).select("subject_id", "starttime", "endtime")
    pe = conn.table("icu/procedureevents")
    vent = pe.filter(pe.itemid.isin(list(c.ventilation_itemids))).select("subject_id", "starttime", "endtime")
    cand = _attach(cand, _running(vaso, keys, lo, hi, "n_vaso"), ["subject_id", "stay_id"])
    cand = _attach(cand, _running(vent, keys, lo, hi, "n_vent"), ["subject_id", "stay_id"])
    cand = cand.mutate(vasopressor=_flag(cand.n_vaso), ventilation=_flag(cand.n_vent))
    adult = (cand.known_stay == 1) & (cand.age >= float(c.min_age))
    supported = (cand.vasopressor == 1) | (cand.ventilation == 1) if c.require_support else ibis.literal(True)
    cand = cand.mutate(adult=adult.cast("int64"), supported=supported.cast("int64"))

    if c.first_stay_only:
        rank = ibis.literal(0)
    else:
        rank = ibis.cases(((cand.adult == 1) & (cand.supported == 1), 0), else_=1)
    cand = cand.mutate(order_rank=rank)
    order = ibis.window(group_by=cand.subject_id, order_by=[cand.order_rank, cand.index_time, cand.stay_id])
    chosen = cand.mutate(row_rank=ibis.row_number().over(order)).filter(lambda t: t.row_rank == 0)
    return chosen.drop("order_rank", "row_rank", "n_vaso", "n_vent")


@dataclass(frozen=True)
class FactsQuery:
    """The lazy per-patient facts table and the intermediate tables cached to build it."""

    table: ir.Table
    cached: tuple[ir.Table, ...] = ()

    def release(self) -> None:
        """Drop the cached intermediate tables (temp tables in DuckDB, persisted frames in Spark)."""
        for cached in self.cached:
            with contextlib.suppress(Exception):  # a failed query may have left nothing to drop
                cached.release()


def patient_facts(conn: Any, study: Study, cache: bool = True, excluded: ir.Table | None = None) -> FactsQuery:
    """One row per patient with a CKRT record: every fact the attrition log and analysis frame need.

    Parameters
    ----------
    conn
        A :class:`~retrocohort.sources.SourceConnection` (DuckDB or Spark).
    study
        The study design (itemids, windows, horizon).
    cache
        Materialise the small intermediate tables (candidates, their labs and
        infusions) once instead of re-reading the files for every concept.
    excluded
        ``subject_id`` of the patients the data checks exclude
        (:attr:`~retrocohort.sources.quality.DataChecks.excluded`); None: nobody.

    Returns
    -------
    FactsQuery
        ``.table`` has the columns: keys (``subject_id``, ``stay_id``, ``hadm_id``,
        ``index_time``), screening flags (``data_ok``, ``known_stay``, ``adult``,
        ``supported``), exclusion facts (``serum_mg``, ``death_seconds``),
        exposure (``n_mg_doses``, ``mg_grams``), covariates, SOFA
        components, and outcome facts (``last_krt_end_seconds``).
    """
    cached: list[ir.Table] = []
    try:
        return _patient_facts(conn, study, cache, cached, excluded)
    except BaseException:
        # A read error part-way leaves cached temp tables behind: drop them while the
        # connection is still open (otherwise ibis tries at garbage collection, after close).
        FactsQuery(None, tuple(cached)).release()
        raise


def _patient_facts(
    conn: Any, study: Study, cache: bool, cached: list[ir.Table], excluded: ir.Table | None = None
) -> FactsQuery:
    charting = crrt_charting(conn, study)
    if cache and charting is not None:
        charting = charting.cache()
        cached.append(charting)
    cand = candidates(conn, study, charting, excluded)
    if cache:
        cand = cand.cache()
        cached.append(cand)
    keys = cand.select("subject_id", "stay_id", "hadm_id", "index_time", "admittime")

    labs = _cohort_labs(conn, study, keys)
    inputs = _cohort_inputs(conn, study, keys)
    if cache:
        labs = labs.cache()
        inputs = inputs.cache()
        cached += [labs, inputs]

    facts = cand
    facts = _attach(facts, _serum_mg(labs, study), ["subject_id"])
    facts = _attach(facts, _creatinine(labs, study), ["subject_id"])
    facts = _attach(facts, _sofa_labs(labs), ["subject_id"])
    facts = _attach(facts, _cardiovascular(inputs), ["subject_id"])
    facts = _attach(facts, _ventilated_before(conn, study, keys), ["subject_id"])
    facts = _attach(facts, _sepsis(conn, keys), ["subject_id"])
    facts = _attach(facts, _exposure(conn, study, inputs), ["subject_id"])
    facts = _attach(facts, _death(conn, keys), ["subject_id"])
    facts = _attach(facts, _last_krt_end(conn, study, keys, charting), ["subject_id"])
    return FactsQuery(_derive(facts, study), tuple(cached))


# ---------------------------------------------------------------------------------------------
# Event subsets of the cohort's patients (small: cached once).
# ---------------------------------------------------------------------------------------------


def _cohort_labs(conn: Any, study: Study, keys: ir.Table) -> ir.Table:
    ids = [
        study.labs.serum_mg_itemid,
        study.labs.creatinine_itemid,
        PLATELETS_ITEMID,
        BILIRUBIN_ITEMID,
        PAO2_ITEMID,
        FIO2_ITEMID,
    ]
    le = conn.table("hosp/labevents")
    # Filter by itemid first: the engine streams labevents once and keeps only these rows.
    wanted = le.filter(le.itemid.isin(ids) & le.valuenum.notnull() & le.charttime.notnull()).select(
        "subject_id", "specimen_id", "itemid", "charttime", "valuenum"
    )
    return wanted.join(keys.select("subject_id", "index_time", "admittime"), "subject_id")


def _cohort_inputs(conn: Any, study: Study, keys: ir.Table) -> ir.Table:
    ie = conn.table("icu/inputevents")
    ids = sorted(
        set(study.cohort.vasopressor_itemids)
        | {NOREPINEPHRINE_ITEMID, EPINEPHRINE_ITEMID, DOPAMINE_ITEMID, DOBUTAMINE_ITEMID}
        | set(study.exposure.itemids)
    )
    cols = [
        "subject_id",
        "itemid",
        "starttime",
        "endtime",
        "amount",
        "amountuom",
        "rate",
        "rateuom",
        "patientweight",
        "orderid",
    ]
    wanted = ie.filter(ie.itemid.isin(ids) & ie.starttime.notnull())
    if conn.has_column("icu/inputevents", "statusdescription"):
        wanted = wanted.select(*cols, "statusdescription")
    else:
        wanted = wanted.select(*cols).mutate(statusdescription=ibis.null("string"))
    return wanted.join(keys.select("subject_id", "index_time"), "subject_id")


# ---------------------------------------------------------------------------------------------
# Concepts, one small aggregate per patient each.
# ---------------------------------------------------------------------------------------------


def _serum_mg(labs: ir.Table, study: Study) -> ir.Table:
    """Serum Mg on the index calendar day, the value nearest the index time (ties: earlier, then lower)."""
    mg = labs.filter((labs.itemid == study.labs.serum_mg_itemid) & (labs.charttime.date() == labs.index_time.date()))
    mg = mg.mutate(distance_seconds=_seconds(mg.charttime, mg.index_time).abs())
    order = ibis.window(group_by=mg.subject_id, order_by=[mg.distance_seconds, mg.charttime, mg.valuenum])
    nearest = mg.mutate(row_rank=ibis.row_number().over(order)).filter(lambda t: t.row_rank == 0)
    return nearest.select("subject_id", serum_mg="valuenum", serum_mg_time="charttime")


def _creatinine(labs: ir.Table, study: Study) -> ir.Table:
    """Lowest creatinine in the lookback before the index admission, and in the admission before index."""
    cr = labs.filter(labs.itemid == study.labs.creatinine_itemid)
    lookback_hours = study.labs.baseline_creatinine_lookback_days * 24.0
    before_admission = (cr.charttime < cr.admittime) & (cr.charttime >= _shift(cr.admittime, -lookback_hours))
    in_admission = (cr.charttime >= cr.admittime) & (cr.charttime <= cr.index_time)
    return cr.group_by("subject_id").aggregate(
        creatinine_prior=ibis.cases((before_admission, cr.valuenum), else_=ibis.null("float64")).min(),
        creatinine_admission=ibis.cases((in_admission, cr.valuenum), else_=ibis.null("float64")).min(),
    )


def _sofa_labs(labs: ir.Table) -> ir.Table:
    """Worst platelets, bilirubin and PaO2/FiO2 in [index - 24 h, index]."""
    w = labs.filter(
        (labs.charttime >= _shift(labs.index_time, -SOFA_WINDOW_HOURS)) & (labs.charttime <= labs.index_time)
    )
    blood = w.group_by("subject_id").aggregate(
        platelets_min=ibis.cases((w.itemid == PLATELETS_ITEMID, w.valuenum), else_=ibis.null("float64")).min(),
        bilirubin_max=ibis.cases((w.itemid == BILIRUBIN_ITEMID, w.valuenum), else_=ibis.null("float64")).max(),
    )
    pao2 = w.filter(w.itemid == PAO2_ITEMID).select("subject_id", "specimen_id", pao2="valuenum")
    fio2 = w.filter(w.itemid == FIO2_ITEMID).select(fio2_specimen="specimen_id", fio2="valuenum")
    # A PaO2 pairs with the FiO2 of the same blood-gas specimen; FiO2 > 1 is a percentage.
    pairs = pao2.join(fio2, pao2.specimen_id == fio2.fio2_specimen)
    fraction = ibis.cases((pairs.fio2 > 1.0, pairs.fio2 / 100.0), else_=pairs.fio2)
    pairs = pairs.mutate(fraction=fraction).filter(lambda t: (t.fraction >= 0.21) & (t.fraction <= 1.0))
    pf = pairs.group_by("subject_id").aggregate(pf_ratio_min=(pairs.pao2 / pairs.fraction).min())
    return _attach(blood, pf, ["subject_id"])


def _cardiovascular(inputs: ir.Table) -> ir.Table:
    """Highest vasoactive doses (mcg/kg/min) running in [index - 24 h, index] for SOFA cardiovascular."""
    w = inputs.filter(
        (inputs.starttime <= inputs.index_time)
        & (ibis.coalesce(inputs.endtime, inputs.starttime) >= _shift(inputs.index_time, -SOFA_WINDOW_HOURS))
    )
    per_kg = ibis.cases(
        (w.rateuom == "mcg/kg/min", w.rate),
        ((w.rateuom == "mcg/min") & (w.patientweight > 0), w.rate / w.patientweight),
        else_=ibis.null("float64"),
    )
    # An infusion whose dose cannot be read still counts as running, at the lowest dose band.
    dose = ibis.coalesce(per_kg, 0.0)
    ne_epi = w.itemid.isin([NOREPINEPHRINE_ITEMID, EPINEPHRINE_ITEMID])
    return w.group_by("subject_id").aggregate(
        ne_epi_max=ibis.cases((ne_epi, dose), else_=ibis.null("float64")).max(),
        dopamine_max=ibis.cases((w.itemid == DOPAMINE_ITEMID, dose), else_=ibis.null("float64")).max(),
        dobutamine_n=ibis.cases((w.itemid == DOBUTAMINE_ITEMID, 1), else_=0).sum(),
    )


def _ventilated_before(conn: Any, study: Study, keys: ir.Table) -> ir.Table:
    """Invasive ventilation running in [index - 24 h, index] (SOFA respiratory)."""
    pe = conn.table("icu/procedureevents")
    vent = pe.filter(pe.itemid.isin(list(study.cohort.ventilation_itemids))).select(
        "subject_id", "starttime", "endtime"
    )
    j = vent.join(keys.select("subject_id", "index_time"), "subject_id")
    j = j.filter(
        (j.starttime <= j.index_time)
        & (ibis.coalesce(j.endtime, j.starttime) >= _shift(j.index_time, -SOFA_WINDOW_HOURS))
    )
    return j.group_by("subject_id").aggregate(n_vent_24h=j.count())


def _sepsis(conn: Any, keys: ir.Table) -> ir.Table:
    """Explicit sepsis ICD codes on the index admission."""
    dx = conn.table("hosp/diagnoses_icd")
    code = dx.icd_code.strip().upper().replace(".", "")
    icd9 = ibis.or_(*[code.startswith(p) for p in SEPSIS_ICD9_PREFIXES])
    icd10 = ibis.or_(*[code.startswith(p) for p in SEPSIS_ICD10_PREFIXES])
    septic = dx.filter(((dx.icd_version == 9) & icd9) | ((dx.icd_version == 10) & icd10)).select(
        "subject_id", "hadm_id"
    )
    j = septic.join(keys.select("subject_id", "hadm_id"), ["subject_id", "hadm_id"])
    return j.group_by("subject_id").aggregate(n_sepsis_codes=j.count())


def _exposure(conn: Any, study: Study, inputs: ir.Table) -> ir.Table:
    """IV magnesium sulfate started in (index + start, index + end]: doses and grams."""
    e = study.exposure
    ids = [i for i in e.itemids if i not in set(e.carrier_itemids)]
    lo, hi = e.window_hours
    mg = inputs.filter(
        inputs.itemid.isin(ids)
        & (inputs.starttime > _shift(inputs.index_time, lo))
        & (inputs.starttime <= _shift(inputs.index_time, hi))
        # A rewritten order row was replaced by its correction; counting both would double the dose.
        & (inputs.statusdescription.isnull() | (inputs.statusdescription != "Rewritten"))
    )
    unit = mg.amountuom.strip().lower()
    grams = ibis.cases(
        (unit.isin(list(GRAM_UNITS)), mg.amount), (unit == "mg", mg.amount / 1000.0), else_=ibis.null("float64")
    )
    return mg.group_by("subject_id").aggregate(
        n_mg_doses=mg.count(),
        mg_grams=grams.sum(),
        n_mg_unknown_unit=ibis.cases((grams.isnull(), 1), else_=0).sum(),
    )


def _death(conn: Any, keys: ir.Table) -> ir.Table:
    """In-hospital ``deathtime`` when recorded, else ``dod`` (a date) read as 23:59:59 of that day."""
    adm = conn.table("hosp/admissions")
    died = adm.filter(adm.deathtime.notnull()).select("subject_id", "deathtime")
    died = died.join(keys.select("subject_id"), "subject_id")
    return died.group_by("subject_id").aggregate(deathtime=died.deathtime.max())


def _last_krt_end(conn: Any, study: Study, keys: ir.Table, charting: ir.Table | None) -> ir.Table:
    """End of the last KRT session that starts before the horizon (and ends at or after index)."""
    sessions = krt_sessions(conn, study, charting)
    j = sessions.join(keys.select("subject_id", "index_time"), "subject_id")
    horizon_hours = study.outcomes.horizon_days * 24.0
    j = j.filter((j.session_end >= j.index_time) & (j.session_start <= _shift(j.index_time, horizon_hours)))
    return j.group_by("subject_id").aggregate(last_krt_end=j.session_end.max())


def _derive(facts: ir.Table, study: Study) -> ir.Table:
    """Scores, eGFR, exclusion flags and outcomes from the per-patient facts."""
    horizon_s = study.outcomes.horizon_days * SECONDS_PER_DAY
    free_s = study.outcomes.krt_free_days * SECONDS_PER_DAY

    # dod is a date: read as the last second of that day, so it never precedes an event recorded
    # earlier the same day (e.g. a discharge alive); deathtime (minute precision) wins when present.
    dod_time = facts.dod.cast("timestamp") + ibis.interval(seconds=SECONDS_PER_DAY - 1)
    death_at = ibis.coalesce(facts.deathtime, dod_time)
    facts = facts.mutate(
        death_at=death_at,
        death_source=ibis.cases(
            (facts.deathtime.notnull(), "deathtime"), (facts.dod.notnull(), "dod"), else_=ibis.null("string")
        ),
    )
    facts = facts.mutate(
        death_seconds=_seconds(facts.death_at, facts.index_time),
        last_krt_end_seconds=_seconds(facts.last_krt_end, facts.index_time),
    )

    # Baseline creatinine: lowest in the lookback before the index admission, else lowest in the index
    # admission up to index; the eGFR-75 back-calculation and the eGFR itself are applied in NumPy
    # (kidney.py) on the fetched frame, so both engines give bit-identical values.
    facts = facts.mutate(
        creatinine_measured=ibis.coalesce(facts.creatinine_prior, facts.creatinine_admission),
        creatinine_baseline_source=ibis.cases(
            (facts.creatinine_prior.notnull(), "before admission"),
            (facts.creatinine_admission.notnull(), "index admission"),
            else_="imputed (eGFR 75)",
        ),
    )

    vent_24h = ibis.coalesce(facts.n_vent_24h, 0) > 0
    pf = facts.pf_ratio_min
    facts = facts.mutate(
        sofa_respiratory=ibis.cases(
            ((pf < 100) & vent_24h, 4),
            ((pf < 200) & vent_24h, 3),
            (pf < 300, 2),
            (pf < 400, 1),
            # No blood gas: invasive ventilation alone is scored 2 (P/F < 300 cannot be shown).
            (pf.isnull() & vent_24h, 2),
            else_=0,
        ).cast("int64"),
        sofa_cardiovascular=ibis.cases(
            (facts.ne_epi_max > 0.1, 4),
            (facts.dopamine_max > 15, 4),
            (facts.ne_epi_max.notnull(), 3),
            (facts.dopamine_max > 5, 3),
            (facts.dopamine_max.notnull() | (ibis.coalesce(facts.dobutamine_n, 0) > 0), 2),
            else_=0,
        ).cast("int64"),
        sofa_renal=ibis.literal(RENAL_SOFA_ON_KRT).cast("int64"),
        sofa_coagulation=ibis.cases(
            (facts.platelets_min < 20, 4),
            (facts.platelets_min < 50, 3),
            (facts.platelets_min < 100, 2),
            (facts.platelets_min < 150, 1),
            else_=0,
        ).cast("int64"),
        sofa_liver=ibis.cases(
            (facts.bilirubin_max >= 12, 4),
            (facts.bilirubin_max >= 6, 3),
            (facts.bilirubin_max >= 2, 2),
            (facts.bilirubin_max >= 1.2, 1),
            else_=0,
        ).cast("int64"),
    )
    facts = facts.mutate(
        sofa=(
            facts.sofa_respiratory
            + facts.sofa_cardiovascular
            + facts.sofa_renal
            + facts.sofa_coagulation
            + facts.sofa_liver
        ).cast("int64"),
        sepsis=_flag(facts.n_sepsis_codes),
        exposed=_flag(facts.n_mg_doses),
        mg_dose_meq=ibis.coalesce(facts.mg_grams, 0.0) * float(study.exposure.meq_per_gram),
        has_mg_index_day=facts.serum_mg.notnull().cast("int64"),
        died_early=(
            facts.death_seconds.notnull()
            & (facts.death_seconds <= int(round(study.exclusions.min_survival_hours * 3600)))
        ).cast("int64"),
    )

    died = facts.death_seconds.notnull() & (facts.death_seconds <= horizon_s)
    death_days = facts.death_seconds.cast("float64") / SECONDS_PER_DAY
    liberated = (
        facts.last_krt_end_seconds.notnull()
        & (facts.last_krt_end_seconds + free_s <= horizon_s)
        & (facts.death_seconds.isnull() | (facts.death_seconds > facts.last_krt_end_seconds + free_s))
    )
    horizon = float(study.outcomes.horizon_days)
    facts = facts.mutate(
        death=died.cast("int64"),
        death_time=ibis.cases((died, death_days), else_=horizon),
        krt_status=ibis.cases((liberated, 1), (died, 2), else_=0).cast("int64"),
        krt_time=ibis.cases(
            (liberated, facts.last_krt_end_seconds.cast("float64") / SECONDS_PER_DAY),
            (died, death_days),
            else_=horizon,
        ),
    )
    return facts
