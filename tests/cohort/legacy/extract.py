"""``extract``: raw MIMIC-IV tables -> the analysis frame and its attrition log."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrocohort.cohort.kidney import creatinine_for_egfr, egfr_ckd_epi_2021
from retrocohort.sources.mimic_iv import ENGINES, MimicIV, SourceConnection
from retrocohort.sources.quality import COLUMNS as QUALITY_COLUMNS
from retrocohort.sources.quality import DataChecks
from retrocohort.sources.spark import spark_session

from . import definitions as d
from .attrition import attrition_log, screening_log
from .spec import Study, default_study

#: Analysis-frame columns, in order (see docs/cohort.md for each rule).
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "stay_id",
    "hadm_id",
    "index_time",
    "exposed",
    "mg_dose_meq",
    "age",
    "sex",
    "sepsis",
    "creatinine_baseline",
    "egfr_baseline",
    "sofa",
    "serum_mg",
    "vasopressor",
    "ventilation",
    "death_time",
    "death",
    "krt_time",
    "krt_status",
)

#: Extra per-patient columns kept for transparency (SOFA components, where values came from).
DETAIL_COLUMNS: tuple[str, ...] = (
    "sofa_cardiovascular",
    "sofa_respiratory",
    "sofa_renal",
    "sofa_coagulation",
    "sofa_liver",
    "creatinine_baseline_source",
    "serum_mg_time",
    "death_source",
)

_INT_COLUMNS = (
    "subject_id",
    "stay_id",
    "hadm_id",
    "exposed",
    "sepsis",
    "sofa",
    "vasopressor",
    "ventilation",
    "death",
    "krt_status",
    "sofa_cardiovascular",
    "sofa_respiratory",
    "sofa_renal",
    "sofa_coagulation",
    "sofa_liver",
)
_FLOAT_COLUMNS = ("mg_dose_meq", "age", "creatinine_baseline", "egfr_baseline", "serum_mg", "death_time", "krt_time")
_TIME_COLUMNS = ("index_time", "serum_mg_time")


@dataclass(frozen=True)
class Cohort:
    """The analysis cohort of one study on one data source.

    Attributes
    ----------
    data
        The analysis frame, one row per eligible patient, columns
        :data:`ANALYSIS_COLUMNS` then :data:`DETAIL_COLUMNS`. Times are days
        from ``index_time``; ``death``/``krt_status`` are within the horizon.
    attrition
        Columns ``step``, ``remaining``, ``excluded``, ``reason``; the first
        row is the screened population, the last the eligible cohort.
    screening
        How the screened population was reached from every patient with a
        CKRT record (same columns).
    notes
        Degraded concepts and data caveats, in words.
    concepts
        Covariate/outcome name -> the data and rule it came from.
    engine
        ``"duckdb"`` or ``"spark"``.
    source
        The folder read.
    synthetic
        Whether the folder is a synthetic EHR (``SYNTHETIC.json`` present).
    data_checks
        What the data-quality pass did (``sources/quality.py``): one row per
        check, columns ``table``, ``check``, ``rule``, ``action``, ``count``
        (exact; outputs suppress small counts), ``unit``.
    """

    data: pd.DataFrame
    attrition: pd.DataFrame
    screening: pd.DataFrame
    notes: tuple[str, ...]
    concepts: dict[str, str] = field(default_factory=dict)
    engine: str = "duckdb"
    source: str = ""
    synthetic: bool = False
    data_checks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(QUALITY_COLUMNS)))

    @property
    def counts(self) -> dict[str, int]:
        """Screened, eligible, exposed and unexposed patients."""
        exposed = int(self.data["exposed"].sum())
        return {
            "screened": int(self.attrition["remaining"].iloc[0]),
            "eligible": len(self.data),
            "exposed": exposed,
            "unexposed": len(self.data) - exposed,
        }


def extract(
    source: MimicIV | str | Path,
    study: Study | None = None,
    engine: Literal["duckdb", "spark"] = "duckdb",
    spark: Any = None,
    duckdb_config: dict[str, Any] | None = None,
) -> Cohort:
    """Build the analysis cohort from a MIMIC-IV folder.

    Parameters
    ----------
    source
        A :class:`~retrocohort.sources.MimicIV` or the path of its folder.
    study
        The study design; None uses the flagship magnesium-in-CKRT defaults.
    engine
        ``"duckdb"`` (embedded, default) or ``"spark"``: the same ibis
        definitions run on either.
    spark
        An existing ``SparkSession`` (e.g. a cluster), left running; None uses
        the session already running in this process, else starts a local one
        (:func:`~retrocohort.sources.spark.local_spark_session`) and stops it
        when the cohort is fetched.
    duckdb_config
        DuckDB settings, e.g. ``{"memory_limit": "3GB"}``.

    Returns
    -------
    Cohort

    Raises
    ------
    SourceError
        A required table or column is missing, or a value in a file does not
        parse (the message names the file, the column and the line).
    InputError
        A key (patients.subject_id, admissions.hadm_id, icustays.stay_id)
        occurs on several rows that differ (``sources/quality.py``).
    SparkUnavailableError
        ``engine="spark"`` without a session, and pyspark is not installed or
        Java is missing.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not allowed; choose one of {list(ENGINES)}")
    study = study if study is not None else default_study()
    source = source if isinstance(source, MimicIV) else MimicIV(source)
    # Spark: the caller's session, else a local one set up to start reliably anywhere and stopped
    # once the facts are fetched (see sources/spark.py). DuckDB needs no session.
    if engine == "spark":
        source.validate()  # a missing table or column is reported before a JVM is started for nothing
    session = spark_session(spark) if engine == "spark" else contextlib.nullcontext(None)
    with session as active:
        conn = source.connect(engine=engine, spark=active, duckdb_config=duckdb_config)
        query: d.FactsQuery | None = None
        try:
            with conn.errors():
                # Checked first: a conflicting key stops the run before the cohort is built on it.
                checks = conn.data_checks()
                # Building the query caches the small intermediate tables, so reading errors surface here too.
                query = d.patient_facts(conn, study, cache=True, excluded=checks.excluded)
                facts = query.table.to_pandas()
        finally:
            # Released and closed before a session we started is stopped.
            if query is not None:
                query.release()
            conn.close()
    return _assemble(facts, conn, study, checks)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Engine-independent dtypes: DuckDB and Spark return different integer and timestamp widths."""
    out = frame.copy()
    for col in _INT_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col]).astype("int64")
    for col in _FLOAT_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col]).astype("float64")
    for col in _TIME_COLUMNS:
        if col in out:
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    for col in ("sex", "creatinine_baseline_source", "death_source"):
        if col in out:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


#: KDIGO's assumed-normal eGFR, used to back-calculate a missing baseline creatinine (mL/min/1.73 m2).
ASSUMED_BASELINE_EGFR = 75.0


def _kidney_function(facts: pd.DataFrame) -> pd.DataFrame:
    """Baseline creatinine (measured, else back-calculated) and its CKD-EPI 2021 eGFR."""
    out = facts.copy()
    female = (out["sex"] == "F").to_numpy()
    age = pd.to_numeric(out["age"]).to_numpy(dtype=float)
    measured = pd.to_numeric(out["creatinine_measured"]).to_numpy(dtype=float)
    baseline = np.where(np.isnan(measured), creatinine_for_egfr(ASSUMED_BASELINE_EGFR, age, female), measured)
    out["creatinine_baseline"] = baseline
    out["egfr_baseline"] = egfr_ckd_epi_2021(baseline, age, female)
    return out


def _assemble(facts: pd.DataFrame, conn: SourceConnection, study: Study, checks: DataChecks) -> Cohort:
    facts = facts.rename(columns={"gender": "sex"}).sort_values("subject_id", kind="mergesort").reset_index(drop=True)
    facts = _kidney_function(facts)
    screening, screened_mask = screening_log(facts, study)
    attrition, eligible_mask = attrition_log(facts, screened_mask, study, conn.notes)
    eligible = facts.loc[eligible_mask]
    data = _normalise(eligible[list(ANALYSIS_COLUMNS) + list(DETAIL_COLUMNS)]).reset_index(drop=True)

    notes = list(conn.notes)
    imputed = int((data["creatinine_baseline_source"] == "imputed (eGFR 75)").sum())
    if imputed:
        notes.append(
            f"baseline creatinine: no creatinine before index for {imputed} eligible patient(s); "
            "back-calculated for eGFR 75 mL/min/1.73 m2 (CKD-EPI 2021)"
        )
    unknown_unit = int(pd.to_numeric(facts.loc[eligible_mask, "n_mg_unknown_unit"]).fillna(0).sum())
    if unknown_unit:
        notes.append(
            f"Mg exposure: {unknown_unit} magnesium sulfate row(s) with an amount unit other than grams or mg "
            "count as exposure but add no dose"
        )
    return Cohort(
        data=data,
        attrition=attrition,
        screening=screening,
        notes=tuple(notes),
        concepts=concepts(study, conn),
        engine=conn.engine,
        source=str(conn.source.path),
        synthetic=conn.source.synthetic,
        data_checks=checks.table,
    )


def concepts(study: Study, conn: SourceConnection | None = None) -> dict[str, str]:
    """Where each covariate and outcome comes from, in words (for the report's methods)."""
    c, e, lab, o = study.cohort, study.exposure, study.labs, study.outcomes
    charting = conn is None or conn.has("icu/chartevents")
    ckrt = f"icu/procedureevents {list(c.crrt_itemids)} starttime"
    if charting and c.crrt_mode_itemid is not None:
        ckrt += f" and icu/chartevents CRRT mode {c.crrt_mode_itemid} charttime"
    return {
        "index_time": f"earliest CKRT record of the patient: {ckrt}",
        "age": "anchor_age + year(admittime) - anchor_year of the index admission (hosp/patients, hosp/admissions)",
        "sex": "hosp/patients gender (F/M)",
        "sepsis": "explicit sepsis ICD codes on the index admission (hosp/diagnoses_icd): ICD-9 "
        + ", ".join(d.SEPSIS_ICD9_PREFIXES)
        + "; ICD-10 "
        + ", ".join(d.SEPSIS_ICD10_PREFIXES)
        + " (prefixes)",
        "creatinine_baseline": f"lowest creatinine (labevents {lab.creatinine_itemid}) in the "
        f"{lab.baseline_creatinine_lookback_days:g} days before the index admission, else lowest in the index "
        "admission before index, else back-calculated for eGFR 75",
        "egfr_baseline": "CKD-EPI 2021 (race-free) from creatinine_baseline, age, sex",
        "sofa": "SOFA in the 24 h before index, worst values: cardiovascular (inputevents norepinephrine/"
        "epinephrine/dopamine/dobutamine rates), respiratory (labevents PaO2 50821 / FiO2 50816 of the same "
        f"specimen; invasive ventilation {list(c.ventilation_itemids)}), renal = 4 (on CKRT), coagulation "
        f"(platelets {d.PLATELETS_ITEMID}), liver (bilirubin {d.BILIRUBIN_ITEMID}); central nervous system not scored",
        "serum_mg": f"labevents {lab.serum_mg_itemid} on the index calendar day, nearest the index time",
        "vasopressor": f"inputevents {list(c.vasopressor_itemids)} running "
        f"within {list(c.support_window_hours)} h of index",
        "ventilation": f"procedureevents {list(c.ventilation_itemids)} running "
        f"within {list(c.support_window_hours)} h of index",
        "exposed": f"inputevents {list(e.itemids)} (not carriers {list(e.carrier_itemids)}) started in "
        f"(index + {e.window_hours[0]:g} h, index + {e.window_hours[1]:g} h]",
        "mg_dose_meq": f"sum of amount (grams) x {e.meq_per_gram:g} mEq/g over the exposure window",
        "death": f"admissions.deathtime, else patients.dod read as 23:59:59; event within {o.horizon_days:g} days",
        "krt_status": f"1 = end of the last KRT session (CRRT or intermittent {list(c.intermittent_dialysis_itemids)}) "
        f"followed by >= {o.krt_free_days:g} KRT-free days alive within {o.horizon_days:g} days; 2 = died first; "
        "0 = censored at the horizon",
    }
