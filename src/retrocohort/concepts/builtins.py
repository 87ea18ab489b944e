"""Built-in concepts as ibis expressions: event built-ins and per-patient baseline values at the index.

Each built-in is a small function; its definition in words is
``retrocohort.spec.catalogue.BUILTIN_CONCEPTS[name].rule`` (and docs/concepts.md).
The flagship's rules (``cohort/definitions.py``) are ported unchanged so the
magnesium study gives the same numbers when it is rewritten in the study
language: KRT sessions with CRRT-mode charting, vasopressor and ventilation
rows, explicit sepsis codes, baseline creatinine, SOFA at index.

Nothing here knows the engine; numbers that need ``pow`` (eGFR, the imputed
baseline creatinine) are computed in ibis for a usable lazy table and
recomputed in NumPy by :func:`finish_baseline` (``cohort/kidney.py``) after
execution, so DuckDB and Spark give bit-identical values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from ._common import SECONDS_PER_DAY, attach, events, expand_codes, flag, icd_match, shift

# ------------------------------------------------------------------------ itemids (MIMIC-IV)
CRRT_ITEMIDS: tuple[int, ...] = (225802, 225803, 225809, 225955)  # CRRT, CVVHD, CVVHDF, SCUF
INTERMITTENT_KRT_ITEMIDS: tuple[int, ...] = (225441,)  # hemodialysis
CRRT_MODE_ITEMID = 227290  # chartevents "CRRT mode": charted only while CRRT runs
VENTILATION_ITEMIDS: tuple[int, ...] = (225792,)  # invasive ventilation
VASOPRESSOR_ITEMIDS: tuple[int, ...] = (221906, 221289, 222315, 221749, 221662)
NOREPINEPHRINE, EPINEPHRINE, DOPAMINE, DOBUTAMINE = 221906, 221289, 221662, 221653
LACTATE_ITEMID = 50813
CREATININE_ITEMID = 50912
MAGNESIUM_ITEMID = 50960
PLATELETS_ITEMID = 51265
BILIRUBIN_ITEMID = 50885
PAO2_ITEMID = 50821
FIO2_ITEMID = 50816
MAP_ITEMIDS: tuple[int, ...] = (220052, 220181, 225312)  # arterial, non-invasive, ART BP mean
WEIGHT_ITEMIDS: tuple[int, ...] = (226512, 224639)  # admission weight (kg), daily weight (kg)
URINE_ITEMIDS: tuple[int, ...] = (
    226559,
    226560,
    226561,
    226584,
    226563,
    226564,
    226565,
    226567,
    226557,
    226558,
    227489,
)
GU_IRRIGANT_IN = 227488  # irrigant volume instilled: subtracted from the measured output

SOFA_WINDOW_HOURS = 24.0
BASELINE_LOOKBACK_DAYS = 365.0
ASSUMED_BASELINE_EGFR = 75.0  # KDIGO's assumed-normal eGFR for a missing baseline

SEPSIS_ICD9: tuple[str, ...] = ("038", "99591", "99592", "78552")
SEPSIS_ICD10: tuple[str, ...] = ("A40", "A41", "A021", "A227", "A267", "A327", "A427", "B377", "R652")

# Systemic antibacterials (substrings of prescriptions.drug, lower case), after the MIMIC code
# repository's antibiotic list; topical forms are removed by route and by the form words below.
ANTIBIOTIC_NAMES: tuple[str, ...] = (
    "amikacin",
    "amoxicillin",
    "ampicillin",
    "augmentin",
    "avelox",
    "azactam",
    "azithromycin",
    "aztreonam",
    "bactrim",
    "biaxin",
    "cefaclor",
    "cefadroxil",
    "cefazolin",
    "cefdinir",
    "cefditoren",
    "cefepime",
    "cefotaxime",
    "cefotetan",
    "cefoxitin",
    "cefpodoxime",
    "cefprozil",
    "ceftaroline",
    "ceftazidime",
    "ceftibuten",
    "ceftriaxone",
    "cefuroxime",
    "cephalexin",
    "chloramphenicol",
    "cipro",
    "clarithromycin",
    "clindamycin",
    "colistin",
    "cubicin",
    "daptomycin",
    "dicloxacillin",
    "doxycy",
    "ertapenem",
    "erythromycin",
    "flagyl",
    "fosfomycin",
    "gentamicin",
    "imipenem",
    "keflex",
    "levaquin",
    "levofloxacin",
    "linezolid",
    "meropenem",
    "metronidazole",
    "minocycline",
    "moxifloxacin",
    "nafcillin",
    "nitrofurantoin",
    "ofloxacin",
    "oxacillin",
    "penicillin",
    "piperacillin",
    "polymyxin",
    "rifampin",
    "septra",
    "streptomycin",
    "sulfamethoxazole",
    "tazobactam",
    "tetracycline",
    "tigecycline",
    "tobramycin",
    "trimethoprim",
    "unasyn",
    "vancomycin",
    "zosyn",
    "zyvox",
)
TOPICAL_ROUTES: tuple[str, ...] = ("ou", "os", "od", "au", "as", "ad", "tp", "ex", "vg", "nu", "ophth", "topical")
TOPICAL_FORMS: tuple[str, ...] = ("cream", "desensitization", "ophth", "gel", "ointment", "eye drop", "otic")

# ------------------------------------------------------------------------------- event built-ins


def _procedures(conn: Any, itemids: tuple[int, ...]) -> ir.Table:
    pe = conn.concept_table("icu/procedureevents")
    f = pe.filter(pe.itemid.isin(list(itemids)) & pe.starttime.notnull())
    # A session without an end is taken to end at its start (it proves KRT/ventilation then).
    return events(f, start=f.starttime, end=ibis.coalesce(f.endtime, f.starttime), hadm=f.hadm_id, stay=f.stay_id)


def _crrt_charting(conn: Any) -> ir.Table | None:
    if not conn.concept_has_table("icu/chartevents"):
        return None
    ce = conn.concept_table("icu/chartevents")
    f = ce.filter((ce.itemid == CRRT_MODE_ITEMID) & ce.charttime.notnull())
    return events(f, start=f.charttime, hadm=f.hadm_id, stay=f.stay_id)


def _with_charting(conn: Any, sessions: ir.Table) -> ir.Table:
    charting = _crrt_charting(conn)
    return sessions if charting is None else sessions.union(charting, distinct=False)


def _lab(itemid: int) -> Callable[[Any], ir.Table]:
    def build(conn: Any) -> ir.Table:
        le = conn.concept_table("hosp/labevents")
        f = le.filter((le.itemid == itemid) & le.valuenum.notnull() & le.charttime.notnull())
        return events(f, start=f.charttime, hadm=f.hadm_id, value=f.valuenum, unit=f.valueuom)

    return build


def _chart(itemids: tuple[int, ...], lo: float, hi: float) -> Callable[[Any], ir.Table]:
    def build(conn: Any) -> ir.Table:
        ce = conn.concept_table("icu/chartevents")
        f = ce.filter(ce.itemid.isin(list(itemids)) & ce.charttime.notnull() & ce.valuenum.between(lo, hi))
        return events(f, start=f.charttime, hadm=f.hadm_id, stay=f.stay_id, value=f.valuenum, unit=f.valueuom)

    return build


def _vasopressors(conn: Any) -> ir.Table:
    ie = conn.concept_table("icu/inputevents")
    f = ie.filter(ie.itemid.isin(list(VASOPRESSOR_ITEMIDS)) & ie.starttime.notnull())
    per_kg = ibis.cases(
        (f.rateuom == "mcg/kg/min", f.rate),
        ((f.rateuom == "mcg/min") & (f.patientweight > 0), f.rate / f.patientweight),
        else_=ibis.null("float64"),
    )
    return events(
        f,
        start=f.starttime,
        end=ibis.coalesce(f.endtime, f.starttime),
        hadm=f.hadm_id,
        stay=f.stay_id,
        value=per_kg,
        unit=ibis.cases((per_kg.notnull(), "mcg/kg/min"), else_=f.rateuom),
    )


def _icu_admission(conn: Any) -> ir.Table:
    st = conn.concept_table("icu/icustays")
    f = st.filter(st.intime.notnull())
    return events(f, start=f.intime, end=ibis.coalesce(f.outtime, f.intime), hadm=f.hadm_id, stay=f.stay_id)


def _urine_output(conn: Any) -> ir.Table:
    oe = conn.concept_table("icu/outputevents")
    f = oe.filter(oe.itemid.isin([*URINE_ITEMIDS, GU_IRRIGANT_IN]) & oe.charttime.notnull() & oe.value.notnull())
    ml = ibis.cases((f.itemid == GU_IRRIGANT_IN, -f.value), else_=f.value)
    return events(f, start=f.charttime, hadm=f.hadm_id, stay=f.stay_id, value=ml, amount=ml, unit=ibis.literal("mL"))


def _death(conn: Any) -> ir.Table:
    adm = conn.concept_table("hosp/admissions")
    died = adm.filter(adm.deathtime.notnull())
    per = died.group_by("subject_id").aggregate(
        deathtime=died.deathtime.max(), d_hadm=died.hadm_id.argmax(died.deathtime)
    )
    pat = conn.concept_table("hosp/patients").select("subject_id", "dod")
    both = pat.left_join(per, "subject_id").select(pat.subject_id, pat.dod, per.deathtime, per.d_hadm)
    # dod is a date: read as the last second of that day, so it never precedes an event recorded the same
    # day (e.g. a discharge alive); deathtime (minute precision) wins when present. As the flagship.
    dod_time = both.dod.cast("timestamp") + ibis.interval(seconds=SECONDS_PER_DAY - 1)
    both = both.mutate(death_at=ibis.coalesce(both.deathtime, dod_time))
    f = both.filter(both.death_at.notnull())
    return events(f, start=f.death_at, hadm=f.d_hadm)


def _antibiotics(conn: Any) -> ir.Table:
    rx = conn.concept_table("hosp/prescriptions")
    drug = rx.drug.lower()
    route = ibis.coalesce(rx.route.strip().lower(), "")
    f = rx.filter(
        ibis.or_(*[drug.contains(n) for n in ANTIBIOTIC_NAMES])
        & ~ibis.or_(*[drug.contains(w) for w in TOPICAL_FORMS])
        & ~route.isin(list(TOPICAL_ROUTES))
        & rx.starttime.notnull()
    )
    return events(f, start=f.starttime, end=ibis.coalesce(f.stoptime, f.starttime), hadm=f.hadm_id)


def _cultures(conn: Any) -> ir.Table:
    mb = conn.concept_table("hosp/microbiologyevents")
    keyed = mb.select(
        "subject_id", "hadm_id", "micro_specimen_id", start=ibis.coalesce(mb.charttime, mb.chartdate)
    ).distinct()
    keyed = keyed.filter(keyed.start.notnull())
    return events(keyed, start=keyed.start, hadm=keyed.hadm_id)


def _suspected_infection(conn: Any) -> ir.Table:
    ab = _antibiotics(conn).select("subject_id", ab_hadm="hadm_id", ab_time="start_time")
    cx = _cultures(conn).select(cx_subject="subject_id", cx_time="start_time")
    j = ab.join(cx, ab.subject_id == cx.cx_subject)
    # Seymour 2016: culture then antibiotic within 72 h (onset = culture), or antibiotic then culture within
    # 24 h (onset = antibiotic).
    culture_first = (j.cx_time <= j.ab_time) & (j.ab_time <= shift(j.cx_time, 72.0))
    antibiotic_first = (j.cx_time > j.ab_time) & (j.cx_time <= shift(j.ab_time, 24.0))
    f = j.filter(culture_first | antibiotic_first)
    onset = ibis.cases((f.cx_time <= f.ab_time, f.cx_time), else_=f.ab_time)
    out = f.select(subject_id=f.subject_id, hadm_id=f.ab_hadm, onset=onset).distinct()
    return events(out, start=out.onset, hadm=out.hadm_id)


EVENT_BUILDERS: dict[str, Callable[[Any], ir.Table]] = {
    "krt": lambda conn: _with_charting(conn, _procedures(conn, CRRT_ITEMIDS + INTERMITTENT_KRT_ITEMIDS)),
    "crrt": lambda conn: _with_charting(conn, _procedures(conn, CRRT_ITEMIDS)),
    "intermittent_krt": lambda conn: _procedures(conn, INTERMITTENT_KRT_ITEMIDS),
    "icu_admission": _icu_admission,
    "invasive_ventilation": lambda conn: _procedures(conn, VENTILATION_ITEMIDS),
    "vasopressors": _vasopressors,
    "lactate": _lab(LACTATE_ITEMID),
    "mean_arterial_pressure": _chart(MAP_ITEMIDS, 10.0, 300.0),
    "weight": _chart(WEIGHT_ITEMIDS, 20.0, 400.0),
    "creatinine": _lab(CREATININE_ITEMID),
    "serum_magnesium": _lab(MAGNESIUM_ITEMID),
    "urine_output": _urine_output,
    "death": _death,
    "antibiotics": _antibiotics,
    "cultures": _cultures,
    "suspected_infection": _suspected_infection,
}

# ------------------------------------------------------------------------------ baseline built-ins


def _keys(keys: ir.Table) -> ir.Table:
    return keys.select("subject_id", "hadm_id", "stay_id", "index_time")


def _running(ev: ir.Table, keys: ir.Table, lo_hours: float, hi_hours: float, name: str) -> ir.Table:
    """Per subject: how many events overlap [index + lo, index + hi] (start <= hi and end >= lo)."""
    j = ev.select("subject_id", "start_time", "end_time").join(
        _keys(keys).select("subject_id", "index_time"), "subject_id"
    )
    f = j.filter((j.start_time <= shift(j.index_time, hi_hours)) & (j.end_time >= shift(j.index_time, lo_hours)))
    return f.group_by("subject_id").aggregate(**{name: f.count()})


def _age(conn: Any, keys: ir.Table) -> ir.Table:
    k = _keys(keys)
    adm = conn.concept_table("hosp/admissions").select("hadm_id", "admittime")
    pat = conn.concept_table("hosp/patients").select("subject_id", "anchor_age", "anchor_year")
    j = attach(attach(k, adm, ["hadm_id"]), pat, ["subject_id"])
    # MIMIC-IV shifts dates per patient: age = anchor_age + (year of admission - anchor_year).
    year = ibis.coalesce(j.admittime, j.index_time).year()
    return j.select("subject_id", age=(j.anchor_age + year - j.anchor_year).cast("float64"))


def _sex(conn: Any, keys: ir.Table) -> ir.Table:
    pat = conn.concept_table("hosp/patients").select("subject_id", "gender")
    j = attach(_keys(keys).select("subject_id"), pat, ["subject_id"])
    sex = j.gender.strip().upper()
    # MIMIC-IV records 'F' or 'M'. Any other value (blank, 'X', 'Unknown') is missing, so the covariate's
    # missing rule decides and the attrition counts it, rather than a category of its own holding one patient.
    return j.select("subject_id", sex=ibis.ifelse(sex.isin(["F", "M"]), sex, ibis.null("string")))


def _sepsis(conn: Any, keys: ir.Table) -> ir.Table:
    dx = conn.concept_table("hosp/diagnoses_icd")
    septic = dx.filter(icd_match(dx.icd_code, dx.icd_version, SEPSIS_ICD9, SEPSIS_ICD10)).select(
        "subject_id", "hadm_id"
    )
    k = _keys(keys).select("subject_id", "hadm_id")
    j = septic.join(k, ["subject_id", "hadm_id"])
    n = j.group_by("subject_id").aggregate(n_codes=j.count())
    out = attach(k.select("subject_id"), n, ["subject_id"])
    return out.select("subject_id", sepsis=flag(out.n_codes))


def _window_labs(conn: Any, keys: ir.Table, itemids: list[int], lo_hours: float, hi_hours: float) -> ir.Table:
    le = conn.concept_table("hosp/labevents")
    f = le.filter(le.itemid.isin(itemids) & le.valuenum.notnull() & le.charttime.notnull()).select(
        "subject_id", "specimen_id", "itemid", "charttime", "valuenum"
    )
    j = f.join(_keys(keys).select("subject_id", "index_time"), "subject_id")
    return j.filter((j.charttime >= shift(j.index_time, lo_hours)) & (j.charttime <= shift(j.index_time, hi_hours)))


def _sofa(conn: Any, keys: ir.Table) -> ir.Table:
    """Every SOFA component at index (worst in [index - 24 h, index]) and their sum."""
    k = _keys(keys).select("subject_id", "index_time")
    w = _window_labs(
        conn,
        keys,
        [PLATELETS_ITEMID, BILIRUBIN_ITEMID, PAO2_ITEMID, FIO2_ITEMID, CREATININE_ITEMID],
        -SOFA_WINDOW_HOURS,
        0.0,
    )
    blood = w.group_by("subject_id").aggregate(
        platelets_min=ibis.cases((w.itemid == PLATELETS_ITEMID, w.valuenum), else_=ibis.null("float64")).min(),
        bilirubin_max=ibis.cases((w.itemid == BILIRUBIN_ITEMID, w.valuenum), else_=ibis.null("float64")).max(),
        creatinine_max=ibis.cases((w.itemid == CREATININE_ITEMID, w.valuenum), else_=ibis.null("float64")).max(),
    )
    pao2 = w.filter(w.itemid == PAO2_ITEMID).select("subject_id", "specimen_id", pao2="valuenum")
    fio2 = w.filter(w.itemid == FIO2_ITEMID).select(fio2_specimen="specimen_id", fio2="valuenum")
    # A PaO2 pairs with the FiO2 of the same blood-gas specimen; FiO2 > 1 is a percentage.
    pairs = pao2.join(fio2, pao2.specimen_id == fio2.fio2_specimen)
    fraction = ibis.cases((pairs.fio2 > 1.0, pairs.fio2 / 100.0), else_=pairs.fio2)
    pairs = pairs.mutate(fraction=fraction).filter(lambda t: (t.fraction >= 0.21) & (t.fraction <= 1.0))
    pf = pairs.group_by("subject_id").aggregate(pf_ratio_min=(pairs.pao2 / pairs.fraction).min())

    ie = conn.concept_table("icu/inputevents")
    vaso = ie.filter(ie.itemid.isin([NOREPINEPHRINE, EPINEPHRINE, DOPAMINE, DOBUTAMINE]) & ie.starttime.notnull())
    vj = vaso.select("subject_id", "itemid", "starttime", "endtime", "rate", "rateuom", "patientweight").join(
        k, "subject_id"
    )
    vj = vj.filter(
        (vj.starttime <= vj.index_time)
        & (ibis.coalesce(vj.endtime, vj.starttime) >= shift(vj.index_time, -SOFA_WINDOW_HOURS))
    )
    per_kg = ibis.cases(
        (vj.rateuom == "mcg/kg/min", vj.rate),
        ((vj.rateuom == "mcg/min") & (vj.patientweight > 0), vj.rate / vj.patientweight),
        else_=ibis.null("float64"),
    )
    # An infusion whose dose cannot be read still counts as running, at the lowest dose band.
    dose = ibis.coalesce(per_kg, 0.0)
    ne_epi = vj.itemid.isin([NOREPINEPHRINE, EPINEPHRINE])
    cardio = vj.group_by("subject_id").aggregate(
        ne_epi_max=ibis.cases((ne_epi, dose), else_=ibis.null("float64")).max(),
        dopamine_max=ibis.cases((vj.itemid == DOPAMINE, dose), else_=ibis.null("float64")).max(),
        dobutamine_n=ibis.cases((vj.itemid == DOBUTAMINE, 1), else_=0).sum(),
    )
    vent = _running(EVENT_BUILDERS["invasive_ventilation"](conn), keys, -SOFA_WINDOW_HOURS, 0.0, "n_vent")
    krt = _running(EVENT_BUILDERS["krt"](conn), keys, -SOFA_WINDOW_HOURS, 0.0, "n_krt")

    f = k.select("subject_id")
    for part in (blood, pf, cardio, vent, krt):
        f = attach(f, part, ["subject_id"])
    vent_24h = ibis.coalesce(f.n_vent, 0) > 0
    pfr = f.pf_ratio_min
    cr = f.creatinine_max
    f = f.mutate(
        sofa_respiratory=ibis.cases(
            ((pfr < 100) & vent_24h, 4),
            ((pfr < 200) & vent_24h, 3),
            (pfr < 300, 2),
            (pfr < 400, 1),
            # No blood gas: invasive ventilation alone is scored 2 (P/F < 300 cannot be shown).
            (pfr.isnull() & vent_24h, 2),
            else_=0,
        ).cast("int64"),
        sofa_cardiovascular=ibis.cases(
            (f.ne_epi_max > 0.1, 4),
            (f.dopamine_max > 15, 4),
            (f.ne_epi_max.notnull(), 3),
            (f.dopamine_max > 5, 3),
            (f.dopamine_max.notnull() | (ibis.coalesce(f.dobutamine_n, 0) > 0), 2),
            else_=0,
        ).cast("int64"),
        # On KRT the kidney has failed whatever the creatinine (the flagship's "renal SOFA 4 on CKRT").
        sofa_renal=ibis.cases(
            (ibis.coalesce(f.n_krt, 0) > 0, 4), (cr >= 5.0, 4), (cr >= 3.5, 3), (cr >= 2.0, 2), (cr >= 1.2, 1), else_=0
        ).cast("int64"),
        sofa_coagulation=ibis.cases(
            (f.platelets_min < 20, 4),
            (f.platelets_min < 50, 3),
            (f.platelets_min < 100, 2),
            (f.platelets_min < 150, 1),
            else_=0,
        ).cast("int64"),
        sofa_liver=ibis.cases(
            (f.bilirubin_max >= 12, 4),
            (f.bilirubin_max >= 6, 3),
            (f.bilirubin_max >= 2, 2),
            (f.bilirubin_max >= 1.2, 1),
            else_=0,
        ).cast("int64"),
    )
    parts = ("sofa_respiratory", "sofa_cardiovascular", "sofa_renal", "sofa_coagulation", "sofa_liver")
    f = f.mutate(
        sofa=(f.sofa_respiratory + f.sofa_cardiovascular + f.sofa_renal + f.sofa_coagulation + f.sofa_liver).cast(
            "int64"
        )
    )
    return f.select("subject_id", "sofa", *parts)


def _sofa_part(name: str) -> Callable[[Any, ir.Table], ir.Table]:
    def build(conn: Any, keys: ir.Table) -> ir.Table:
        return _sofa(conn, keys).select("subject_id", name)

    return build


def _sofa_total(conn: Any, keys: ir.Table) -> ir.Table:
    s = _sofa(conn, keys)
    # Components as detail columns (prefix "sofa_", as baseline_values promises).
    return s


def _ibis_egfr(cr: ir.FloatingValue, age: ir.FloatingValue, female: ir.BooleanValue) -> ir.FloatingValue:
    kappa = ibis.cases((female, 0.7), else_=0.9)
    alpha = ibis.cases((female, -0.241), else_=-0.302)
    sex = ibis.cases((female, 1.012), else_=1.0)
    ratio = cr / kappa
    return (
        142.0 * ibis.least(ratio, 1.0) ** alpha * ibis.greatest(ratio, 1.0) ** -1.2 * ibis.literal(0.9938) ** age * sex
    )


def _ibis_creatinine_for_egfr(egfr: float, age: ir.FloatingValue, female: ir.BooleanValue) -> ir.FloatingValue:
    kappa = ibis.cases((female, 0.7), else_=0.9)
    alpha = ibis.cases((female, -0.241), else_=-0.302)
    sex = ibis.cases((female, 1.012), else_=1.0)
    at_kappa = 142.0 * ibis.literal(0.9938) ** age * sex
    above = kappa * (at_kappa / egfr) ** (1.0 / 1.2)
    below = kappa * (egfr / at_kappa) ** (1.0 / alpha)
    return ibis.cases((at_kappa > egfr, above), else_=below)


def _creatinine_baseline(conn: Any, keys: ir.Table) -> ir.Table:
    """Baseline creatinine (measured before the admission, else in it up to index, else eGFR 75) and eGFR."""
    k = _keys(keys)
    adm = conn.concept_table("hosp/admissions").select("hadm_id", "admittime")
    ka = attach(k, adm, ["hadm_id"])
    le = conn.concept_table("hosp/labevents")
    cr = le.filter((le.itemid == CREATININE_ITEMID) & le.valuenum.notnull() & le.charttime.notnull()).select(
        "subject_id", "charttime", "valuenum"
    )
    # An index without an admission (a hand-made key): the index time stands for the admission time.
    ka = ka.mutate(admittime=ibis.coalesce(ka.admittime, ka.index_time))
    j = cr.join(ka.select("subject_id", "index_time", "admittime"), "subject_id")
    before = (j.charttime < j.admittime) & (j.charttime >= shift(j.admittime, -BASELINE_LOOKBACK_DAYS * 24.0))
    during = (j.charttime >= j.admittime) & (j.charttime <= j.index_time)
    per = j.group_by("subject_id").aggregate(
        prior=ibis.cases((before, j.valuenum), else_=ibis.null("float64")).min(),
        during=ibis.cases((during, j.valuenum), else_=ibis.null("float64")).min(),
    )
    out = attach(k.select("subject_id"), per, ["subject_id"])
    out = attach(out, _age(conn, keys), ["subject_id"])
    out = attach(out, _sex(conn, keys), ["subject_id"])
    female = out.sex == "F"
    measured = ibis.coalesce(out.prior, out.during)
    baseline = ibis.coalesce(measured, _ibis_creatinine_for_egfr(ASSUMED_BASELINE_EGFR, out.age, female))
    return out.select(
        "subject_id",
        creatinine_baseline=baseline,
        creatinine_baseline_measured=measured,
        creatinine_baseline_source=ibis.cases(
            (out.prior.notnull(), "before admission"),
            (out.during.notnull(), "index admission"),
            else_="imputed (eGFR 75)",
        ),
        creatinine_baseline_age=out.age,
        creatinine_baseline_female=female.cast("int64"),
    )


def _egfr_baseline(conn: Any, keys: ir.Table) -> ir.Table:
    b = _creatinine_baseline(conn, keys)
    return b.select(
        "subject_id",
        egfr_baseline=_ibis_egfr(b.creatinine_baseline, b.creatinine_baseline_age, b.creatinine_baseline_female == 1),
        egfr_baseline_creatinine=b.creatinine_baseline,
        egfr_baseline_measured=b.creatinine_baseline_measured,
        egfr_baseline_age=b.creatinine_baseline_age,
        egfr_baseline_female=b.creatinine_baseline_female,
    )


def _sepsis3_parts(conn: Any, keys: ir.Table) -> ir.Table:
    k = _keys(keys).select("subject_id", "index_time")
    si = _suspected_infection(conn).select("subject_id", si_time="start_time")
    j = si.join(k, "subject_id")
    j = j.filter((j.si_time >= shift(j.index_time, -48.0)) & (j.si_time <= shift(j.index_time, 24.0)))
    n_si = j.group_by("subject_id").aggregate(n_si=j.count())
    out = attach(k.select("subject_id"), n_si, ["subject_id"])
    out = attach(out, _sofa(conn, keys).select("subject_id", "sofa"), ["subject_id"])
    return out.mutate(sepsis3=((ibis.coalesce(out.n_si, 0) > 0) & (out.sofa >= 2)).cast("int64"))


def _sepsis3(conn: Any, keys: ir.Table) -> ir.Table:
    s = _sepsis3_parts(conn, keys)
    return s.select("subject_id", "sepsis3", sepsis3_suspected_infection=flag(s.n_si), sepsis3_sofa=s.sofa)


def _septic_shock(conn: Any, keys: ir.Table) -> ir.Table:
    s = _sepsis3_parts(conn, keys)
    vaso = _running(_vasopressors(conn), keys, -SOFA_WINDOW_HOURS, 0.0, "n_vaso")
    lac = _window_labs(conn, keys, [LACTATE_ITEMID], -SOFA_WINDOW_HOURS, 0.0)
    lac = lac.group_by("subject_id").aggregate(lactate_max=lac.valuenum.max())
    out = attach(attach(s, vaso, ["subject_id"]), lac, ["subject_id"])
    shock = (out.sepsis3 == 1) & (ibis.coalesce(out.n_vaso, 0) > 0) & (ibis.coalesce(out.lactate_max, 0.0) > 2.0)
    return out.select(
        "subject_id",
        septic_shock=shock.cast("int64"),
        septic_shock_vasopressor=flag(out.n_vaso),
        septic_shock_lactate_max=out.lactate_max,
    )


def _kdigo(conn: Any, keys: ir.Table) -> ir.Table:
    k = _keys(keys)
    base = _creatinine_baseline(conn, keys).select("subject_id", "creatinine_baseline")
    w = _window_labs(conn, keys, [CREATININE_ITEMID], -48.0, 0.0)
    cr = w.group_by("subject_id").aggregate(cr_max=w.valuenum.max())
    # A rise >= 0.3 mg/dL within 48 h: a later value in the window at least 0.3 above an earlier one
    # taken at most 48 h before it (the earlier one may precede the window).
    earlier = _window_labs(conn, keys, [CREATININE_ITEMID], -96.0, 0.0).select(
        e_subject="subject_id", e_time="charttime", e_value="valuenum"
    )
    pairs = w.join(
        earlier,
        (w.subject_id == earlier.e_subject)
        & (earlier.e_time < w.charttime)
        & (earlier.e_time >= shift(w.charttime, -48.0)),
    )
    rise = pairs.group_by("subject_id").aggregate(rise_max=(pairs.valuenum - pairs.e_value).max())
    krt = _running(EVENT_BUILDERS["krt"](conn), keys, -48.0, 0.0, "n_krt")
    out = k.select("subject_id", "stay_id", "index_time")
    for part in (base, cr, rise, krt):
        out = attach(out, part, ["subject_id"])
    ratio = out.cr_max / out.creatinine_baseline
    cr_stage = ibis.cases(
        (ibis.coalesce(out.n_krt, 0) > 0, 3),
        # >= 4.0 mg/dL counts only with an acute rise: a stable high creatinine is chronic kidney disease.
        ((ratio >= 3.0) | ((out.cr_max >= 4.0) & ((ratio >= 1.5) | (out.rise_max >= 0.3))), 3),
        (ratio >= 2.0, 2),
        ((ratio >= 1.5) | (out.rise_max >= 0.3), 1),
        else_=0,
    ).cast("int64")
    out = out.mutate(kdigo_stage_creatinine=cr_stage)
    uo_stage = _kdigo_urine(conn, keys)
    if uo_stage is None:
        out = out.mutate(kdigo_stage_urine=ibis.null("int64"))
    else:
        out = attach(out, uo_stage, ["subject_id"])
    stage = ibis.greatest(out.kdigo_stage_creatinine, ibis.coalesce(out.kdigo_stage_urine, 0)).cast("int64")
    return out.select(
        "subject_id",
        kdigo_stage=stage,
        kdigo_stage_creatinine=out.kdigo_stage_creatinine,
        kdigo_stage_urine=out.kdigo_stage_urine,
    )


def _kdigo_urine(conn: Any, keys: ir.Table) -> ir.Table | None:
    """KDIGO urine stage at index from outputevents, per kg of the stay's first charted weight; None if no data."""
    if not conn.concept_has_table("icu/outputevents") or not conn.concept_has_table("icu/chartevents"):
        return None
    k = _keys(keys).select("subject_id", "stay_id", "index_time")
    stays = conn.concept_table("icu/icustays").select(s_stay="stay_id", intime="intime")
    k = k.left_join(stays, k.stay_id == stays.s_stay).select(k.subject_id, k.stay_id, k.index_time, stays.intime)
    wt = _chart(WEIGHT_ITEMIDS, 20.0, 400.0)(conn)
    wk = k.select(w_stay="stay_id", w_subject="subject_id")
    wj = wt.join(wk, wt.stay_id == wk.w_stay)
    # The stay's first charted weight (ties at the same time: the lower value, for a deterministic answer).
    order = ibis.window(group_by=wj.w_subject, order_by=[wj.start_time, wj.value])
    first = wj.mutate(row_rank=ibis.row_number().over(order)).filter(lambda t: t.row_rank == 0)
    weight = first.select(subject_id=first.w_subject, weight=first.value)
    uo = _urine_output(conn)
    uk = k.select(u_stay="stay_id", u_index="index_time")
    uj = uo.join(uk, uo.stay_id == uk.u_stay)
    sums = uj.group_by("subject_id").aggregate(
        **{
            f"uo_{h}": ibis.cases(
                ((uj.start_time > shift(uj.u_index, -float(h))) & (uj.start_time <= uj.u_index), uj.value),
                else_=ibis.null("float64"),
            ).sum()
            for h in (6, 12, 24)
        }
    )
    out = attach(attach(k, weight, ["subject_id"]), sums, ["subject_id"])

    def rate(h: int) -> ir.FloatingValue:
        # Only where the stay was in the ICU (charted) for the whole span; no output charted there = 0 mL.
        covered = out.intime <= shift(out.index_time, -float(h))
        return ibis.cases(
            (covered & (out.weight > 0), ibis.coalesce(out[f"uo_{h}"], 0.0) / out.weight / h),
            else_=ibis.null("float64"),
        )

    stage = ibis.cases(
        (rate(24) < 0.3, 3),
        (rate(12) < 0.5, 2),
        (rate(6) < 0.5, 1),
        ((rate(6).notnull()), 0),
        else_=ibis.null("int64"),
    ).cast("int64")
    return out.select("subject_id", kdigo_stage_urine=stage)


# Charlson comorbidity index: Quan et al., Med Care 2005;43:1130-9 (enhanced ICD-9-CM and ICD-10
# coding algorithms), with the original Charlson 1987 weights. (name, weight, ICD-9 prefixes, ICD-10 prefixes)
CHARLSON: tuple[tuple[str, int, tuple[str, ...], tuple[str, ...]], ...] = (
    ("myocardial_infarction", 1, expand_codes("410", "412"), expand_codes("I21", "I22", "I252")),
    (
        "congestive_heart_failure",
        1,
        expand_codes(
            "39891", "40201", "40211", "40291", "40401", "40403", "40411", "40413", "40491", "40493", "4254-4259", "428"
        ),
        expand_codes("I099", "I110", "I130", "I132", "I255", "I420", "I425-I429", "I43", "I50", "P290"),
    ),
    (
        "peripheral_vascular_disease",
        1,
        expand_codes("0930", "4373", "440", "441", "4431-4439", "4471", "5571", "5579", "V434"),
        expand_codes(
            "I70", "I71", "I731", "I738", "I739", "I771", "I790", "I792", "K551", "K558", "K559", "Z958", "Z959"
        ),
    ),
    ("cerebrovascular_disease", 1, expand_codes("36234", "430-438"), expand_codes("G45", "G46", "H340", "I60-I69")),
    ("dementia", 1, expand_codes("290", "2941", "3312"), expand_codes("F00-F03", "F051", "G30", "G311")),
    (
        "chronic_pulmonary_disease",
        1,
        expand_codes("4168", "4169", "490-505", "5064", "5081", "5088"),
        expand_codes("I278", "I279", "J40-J47", "J60-J67", "J684", "J701", "J703"),
    ),
    (
        "rheumatic_disease",
        1,
        expand_codes("4465", "7100-7104", "7140-7142", "7148", "725"),
        expand_codes("M05", "M06", "M315", "M32-M34", "M351", "M353", "M360"),
    ),
    ("peptic_ulcer_disease", 1, expand_codes("531-534"), expand_codes("K25-K28")),
    (
        "mild_liver_disease",
        1,
        expand_codes(
            "07022",
            "07023",
            "07032",
            "07033",
            "07044",
            "07054",
            "0706",
            "0709",
            "570",
            "571",
            "5733",
            "5734",
            "5738",
            "5739",
            "V427",
        ),
        expand_codes(
            "B18", "K700-K703", "K709", "K713-K715", "K717", "K73", "K74", "K760", "K762-K764", "K768", "K769", "Z944"
        ),
    ),
    (
        "diabetes_without_complication",
        1,
        expand_codes("2500-2503", "2508", "2509"),
        expand_codes(
            "E100",
            "E101",
            "E106",
            "E108",
            "E109",
            "E110",
            "E111",
            "E116",
            "E118",
            "E119",
            "E120",
            "E121",
            "E126",
            "E128",
            "E129",
            "E130",
            "E131",
            "E136",
            "E138",
            "E139",
            "E140",
            "E141",
            "E146",
            "E148",
            "E149",
        ),
    ),
    (
        "diabetes_with_complication",
        2,
        expand_codes("2504-2507"),
        expand_codes(
            "E102-E105", "E107", "E112-E115", "E117", "E122-E125", "E127", "E132-E135", "E137", "E142-E145", "E147"
        ),
    ),
    (
        "hemiplegia_or_paraplegia",
        2,
        expand_codes("3341", "342", "343", "3440-3446", "3449"),
        expand_codes("G041", "G114", "G801", "G802", "G81", "G82", "G830-G834", "G839"),
    ),
    (
        "renal_disease",
        2,
        expand_codes(
            "40301",
            "40311",
            "40391",
            "40402",
            "40403",
            "40412",
            "40413",
            "40492",
            "40493",
            "582",
            "5830-5837",
            "585",
            "586",
            "5880",
            "V420",
            "V451",
            "V56",
        ),
        expand_codes("I120", "I131", "N032-N037", "N052-N057", "N18", "N19", "N250", "Z490-Z492", "Z940", "Z992"),
    ),
    (
        "malignancy",
        2,
        expand_codes("140-172", "1740-1958", "200-208", "2386"),
        expand_codes("C00-C26", "C30-C34", "C37-C41", "C43", "C45-C58", "C60-C76", "C81-C85", "C88", "C90-C97"),
    ),
    (
        "severe_liver_disease",
        3,
        expand_codes("4560-4562", "5722-5728"),
        expand_codes("I850", "I859", "I864", "I982", "K704", "K711", "K721", "K729", "K765", "K766", "K767"),
    ),
    ("metastatic_solid_tumour", 6, expand_codes("196-199"), expand_codes("C77-C80")),
    ("aids", 6, expand_codes("042-044"), expand_codes("B20-B22", "B24")),
)
# The milder of a pair counts only without the severer (Quan 2005 / Charlson 1987 hierarchy).
CHARLSON_HIERARCHY: tuple[tuple[str, str], ...] = (
    ("mild_liver_disease", "severe_liver_disease"),
    ("diabetes_without_complication", "diabetes_with_complication"),
    ("malignancy", "metastatic_solid_tumour"),
)


def _charlson(conn: Any, keys: ir.Table) -> ir.Table:
    k = _keys(keys)
    adm = conn.concept_table("hosp/admissions").select(a_subject="subject_id", a_hadm="hadm_id", a_disch="dischtime")
    # Admissions that count: the index admission and every admission discharged by the index time.
    ka = k.join(adm, k.subject_id == adm.a_subject)
    ka = ka.filter((ka.a_hadm == ka.hadm_id) | (ka.a_disch <= ka.index_time)).select(
        c_subject="subject_id", c_hadm="a_hadm"
    )
    dx = conn.concept_table("hosp/diagnoses_icd")
    any_code = ibis.or_(*[icd_match(dx.icd_code, dx.icd_version, i9, i10) for _, _, i9, i10 in CHARLSON])
    dxf = dx.filter(any_code).select("subject_id", "hadm_id", "icd_code", "icd_version")
    j = dxf.join(ka, (dxf.subject_id == ka.c_subject) & (dxf.hadm_id == ka.c_hadm))
    flags = j.group_by("subject_id").aggregate(
        **{name: icd_match(j.icd_code, j.icd_version, i9, i10).cast("int64").max() for name, _, i9, i10 in CHARLSON}
    )
    out = attach(k.select("subject_id"), flags, ["subject_id"])
    has = {name: ibis.coalesce(out[name], 0) for name, _, _, _ in CHARLSON}
    for mild, severe in CHARLSON_HIERARCHY:
        has[mild] = ibis.cases((has[severe] > 0, 0), else_=has[mild])
    weights = {name: w for name, w, _, _ in CHARLSON}
    total = sum((has[n] * weights[n] for n in has), ibis.literal(0))
    return out.select(
        "subject_id", charlson=total.cast("int64"), **{f"charlson_{n}": has[n].cast("int64") for n in has}
    )


BASELINE_BUILDERS: dict[str, Callable[[Any, ir.Table], ir.Table]] = {
    "age": _age,
    "sex": _sex,
    "sofa": _sofa_total,
    "sofa_respiratory": _sofa_part("sofa_respiratory"),
    "sofa_cardiovascular": _sofa_part("sofa_cardiovascular"),
    "sofa_renal": _sofa_part("sofa_renal"),
    "sofa_coagulation": _sofa_part("sofa_coagulation"),
    "sofa_liver": _sofa_part("sofa_liver"),
    "sepsis": _sepsis,
    "sepsis3": _sepsis3,
    "septic_shock": _septic_shock,
    "kdigo_stage": _kdigo,
    "creatinine_baseline": _creatinine_baseline,
    "egfr_baseline": _egfr_baseline,
    "charlson": _charlson,
}


def finish_baseline(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Recompute, in NumPy, the values of baseline ``name`` that need ``pow`` (executed frame in, frame out).

    DuckDB (C) and Spark (Java) ``pow`` can differ in the last bit; ``cohort/kidney.py`` on the fetched
    frame makes both engines give identical numbers. A no-op for every other built-in.
    """
    if name not in ("creatinine_baseline", "egfr_baseline"):
        return frame
    # Imported here: retrocohort.cohort's package imports the flagship pipeline, which will import concepts.
    from ..cohort.kidney import creatinine_for_egfr, egfr_ckd_epi_2021

    out = frame.copy()
    age = pd.to_numeric(out[f"{name}_age"]).to_numpy(dtype=float)
    female = pd.to_numeric(out[f"{name}_female"]).fillna(0).to_numpy(dtype=float) == 1
    measured = pd.to_numeric(out[f"{name}_measured"]).to_numpy(dtype=float)
    baseline = np.where(np.isnan(measured), creatinine_for_egfr(ASSUMED_BASELINE_EGFR, age, female), measured)
    if name == "creatinine_baseline":
        out["creatinine_baseline"] = baseline
    else:
        out["egfr_baseline_creatinine"] = baseline
        out["egfr_baseline"] = egfr_ckd_epi_2021(baseline, age, female)
    return out
