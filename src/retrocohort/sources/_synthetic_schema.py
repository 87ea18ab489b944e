"""MIMIC-IV v2.2 file layout the synthetic EHR reproduces: headers, column types, small dictionaries.

The column names and their order follow the MIMIC-IV v2.2 PostgreSQL build script of the
MIT-LCP mimic-code repository (``mimic-iv/buildmimic/postgres/create.sql``, the version with
``admit_provider_id``, ``order_provider_id`` and ``caregiver_id``), and the CSV headers PhysioNet
ships: ``icu/procedureevents.csv.gz`` is the one file whose last two header fields are upper case
(``ORIGINALAMOUNT,ORIGINALRATE``). Timestamps are written ``YYYY-MM-DD HH:MM:SS``; ``dod`` is a
date ``YYYY-MM-DD``.
"""

from __future__ import annotations

import pyarrow as pa

_I = pa.int64()
_F = pa.float64()
_S = pa.string()
_T = pa.timestamp("s")
_D = pa.date32()

# (column, arrow type) in file order. Keys are "module/table" as the files are laid out.
MIMIC_IV_V22_COLUMNS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "hosp/patients": (
        ("subject_id", _I),
        ("gender", _S),
        ("anchor_age", _I),
        ("anchor_year", _I),
        ("anchor_year_group", _S),
        ("dod", _D),
    ),
    "hosp/admissions": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("admittime", _T),
        ("dischtime", _T),
        ("deathtime", _T),
        ("admission_type", _S),
        ("admit_provider_id", _S),
        ("admission_location", _S),
        ("discharge_location", _S),
        ("insurance", _S),
        ("language", _S),
        ("marital_status", _S),
        ("race", _S),
        ("edregtime", _T),
        ("edouttime", _T),
        ("hospital_expire_flag", _I),
    ),
    "hosp/diagnoses_icd": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("seq_num", _I),
        ("icd_code", _S),
        ("icd_version", _I),
    ),
    "hosp/d_icd_diagnoses": (("icd_code", _S), ("icd_version", _I), ("long_title", _S)),
    "hosp/labevents": (
        ("labevent_id", _I),
        ("subject_id", _I),
        ("hadm_id", _I),
        ("specimen_id", _I),
        ("itemid", _I),
        ("order_provider_id", _S),
        ("charttime", _T),
        ("storetime", _T),
        ("value", _S),
        ("valuenum", _F),
        ("valueuom", _S),
        ("ref_range_lower", _F),
        ("ref_range_upper", _F),
        ("flag", _S),
        ("priority", _S),
        ("comments", _S),
    ),
    "hosp/d_labitems": (("itemid", _I), ("label", _S), ("fluid", _S), ("category", _S)),
    "icu/icustays": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("stay_id", _I),
        ("first_careunit", _S),
        ("last_careunit", _S),
        ("intime", _T),
        ("outtime", _T),
        ("los", _F),
    ),
    "icu/d_items": (
        ("itemid", _I),
        ("label", _S),
        ("abbreviation", _S),
        ("linksto", _S),
        ("category", _S),
        ("unitname", _S),
        ("param_type", _S),
        ("lownormalvalue", _F),
        ("highnormalvalue", _F),
    ),
    "icu/inputevents": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("stay_id", _I),
        ("caregiver_id", _I),
        ("starttime", _T),
        ("endtime", _T),
        ("storetime", _T),
        ("itemid", _I),
        ("amount", _F),
        ("amountuom", _S),
        ("rate", _F),
        ("rateuom", _S),
        ("orderid", _I),
        ("linkorderid", _I),
        ("ordercategoryname", _S),
        ("secondaryordercategoryname", _S),
        ("ordercomponenttypedescription", _S),
        ("ordercategorydescription", _S),
        ("patientweight", _F),
        ("totalamount", _F),
        ("totalamountuom", _S),
        ("isopenbag", _I),
        ("continueinnextdept", _I),
        ("statusdescription", _S),
        ("originalamount", _F),
        ("originalrate", _F),
    ),
    "icu/procedureevents": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("stay_id", _I),
        ("caregiver_id", _I),
        ("starttime", _T),
        ("endtime", _T),
        ("storetime", _T),
        ("itemid", _I),
        ("value", _F),
        ("valueuom", _S),
        ("location", _S),
        ("locationcategory", _S),
        ("orderid", _I),
        ("linkorderid", _I),
        ("ordercategoryname", _S),
        ("ordercategorydescription", _S),
        ("patientweight", _F),
        ("isopenbag", _I),
        ("continueinnextdept", _I),
        ("statusdescription", _S),
        ("ORIGINALAMOUNT", _F),
        ("ORIGINALRATE", _F),
    ),
    "icu/chartevents": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("stay_id", _I),
        ("caregiver_id", _I),
        ("charttime", _T),
        ("storetime", _T),
        ("itemid", _I),
        ("value", _S),
        ("valuenum", _F),
        ("valueuom", _S),
        ("warning", _I),
    ),
    # Tables the non-flagship studies read (written for every stay or only for the studies' patients).
    "hosp/transfers": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("transfer_id", _I),
        ("eventtype", _S),
        ("careunit", _S),
        ("intime", _T),
        ("outtime", _T),
    ),
    "hosp/prescriptions": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("pharmacy_id", _I),
        ("poe_id", _S),
        ("poe_seq", _I),
        ("order_provider_id", _S),
        ("starttime", _T),
        ("stoptime", _T),
        ("drug_type", _S),
        ("drug", _S),
        ("formulary_drug_cd", _S),
        ("gsn", _S),
        ("ndc", _S),
        ("prod_strength", _S),
        ("form_rx", _S),
        ("dose_val_rx", _S),
        ("dose_unit_rx", _S),
        ("form_val_disp", _S),
        ("form_unit_disp", _S),
        ("doses_per_24_hrs", _I),
        ("route", _S),
    ),
    "hosp/emar": (
        ("subject_id", _I),
        ("hadm_id", _I),
        ("emar_id", _S),
        ("emar_seq", _I),
        ("poe_id", _S),
        ("pharmacy_id", _I),
        ("enter_provider_id", _S),
        ("charttime", _T),
        ("medication", _S),
        ("event_txt", _S),
        ("scheduletime", _T),
        ("storetime", _T),
    ),
    "hosp/emar_detail": (
        ("subject_id", _I),
        ("emar_id", _S),
        ("emar_seq", _I),
        ("parent_field_ordinal", _F),
        ("administration_type", _S),
        ("pharmacy_id", _I),
        ("barcode_type", _S),
        ("reason_for_no_barcode", _S),
        ("complete_dose_not_given", pa.bool_()),
        ("dose_due", _S),
        ("dose_due_unit", _S),
        ("dose_given", _S),
        ("dose_given_unit", _S),
        ("will_remainder_of_dose_be_given", pa.bool_()),
        ("product_amount_given", _F),
        ("product_unit", _S),
        ("product_code", _S),
        ("product_description", _S),
        ("product_description_other", _S),
        ("prior_infusion_rate", _F),
        ("infusion_rate", _F),
        ("infusion_rate_adjustment", _S),
        ("infusion_rate_adjustment_amount", _I),
        ("infusion_rate_unit", _S),
        ("route", _S),
        ("infusion_complete", _S),
        ("completion_interval", _S),
        ("new_iv_bag_hung", _S),
        ("continued_infusion_in_other_location", _S),
        ("restart_interval", _S),
        ("side", _S),
        ("site", _S),
        ("non_formulary_visual_verification", _S),
    ),
}

#: The documented header of every file the generator writes (MIMIC-IV v2.2), in file order.
MIMIC_IV_V22_HEADERS: dict[str, tuple[str, ...]] = {
    table: tuple(name for name, _ in cols) for table, cols in MIMIC_IV_V22_COLUMNS.items()
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of one MIMIC-IV table (``"hosp/labevents"``...)."""
    return pa.schema([pa.field(n, t) for n, t in MIMIC_IV_V22_COLUMNS[table]])


# Laboratory items the generator draws (hosp/d_labitems rows): itemid -> (label, fluid, category,
# unit, reference low, reference high, decimals written in `value`).
LAB_ITEMS: dict[int, tuple[str, str, str, str, float, float, int]] = {
    50960: ("Magnesium", "Blood", "Chemistry", "mg/dL", 1.6, 2.6, 1),
    50912: ("Creatinine", "Blood", "Chemistry", "mg/dL", 0.5, 1.2, 1),
    51265: ("Platelet Count", "Blood", "Hematology", "K/uL", 150.0, 440.0, 0),
    50885: ("Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0.0, 1.5, 1),
    51006: ("Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 6.0, 20.0, 0),
    50971: ("Potassium", "Blood", "Chemistry", "mEq/L", 3.3, 5.1, 1),
    50813: ("Lactate", "Blood", "Blood Gas", "mmol/L", 0.5, 2.0, 1),  # only the studies' patients
}

# icu/d_items rows: itemid -> (label, abbreviation, linksto, category, unitname, param_type).
ICU_ITEMS: dict[int, tuple[str, str, str, str, str | None, str]] = {
    222011: ("Magnesium Sulfate", "Magnesium Sulfate", "inputevents", "Medications", "grams", "Solution"),
    227523: ("Magnesium Sulfate (Bolus)", "Magnesium Sulfate (Bolus)", "inputevents", "Medications", "mL", "Solution"),
    227524: (
        "Magnesium Sulfate (OB-GYN)",
        "Magnesium Sulfate (OB-GYN)",
        "inputevents",
        "Medications",
        "grams",
        "Solution",
    ),
    221906: ("Norepinephrine", "Norepinephrine", "inputevents", "Medications", "mg", "Solution"),
    221289: ("Epinephrine", "Epinephrine", "inputevents", "Medications", "mg", "Solution"),
    222315: ("Vasopressin", "Vasopressin", "inputevents", "Medications", "units", "Solution"),
    221749: ("Phenylephrine", "Phenylephrine", "inputevents", "Medications", "mg", "Solution"),
    221662: ("Dopamine", "Dopamine", "inputevents", "Medications", "mg", "Solution"),
    225802: ("Dialysis - CRRT", "Dialysis - CRRT", "procedureevents", "Dialysis", None, "Processes"),
    225803: ("Dialysis - CVVHD", "Dialysis - CVVHD", "procedureevents", "Dialysis", None, "Processes"),
    225809: ("Dialysis - CVVHDF", "Dialysis - CVVHDF", "procedureevents", "Dialysis", None, "Processes"),
    225955: ("Dialysis - SCUF", "Dialysis - SCUF", "procedureevents", "Dialysis", None, "Processes"),
    225441: ("Hemodialysis", "Hemodialysis", "procedureevents", "Dialysis", None, "Processes"),
    225792: ("Invasive Ventilation", "Invasive Ventilation", "procedureevents", "Ventilation", None, "Processes"),
    227290: ("CRRT mode", "CRRT mode", "chartevents", "Dialysis", None, "Text"),
}

# Sepsis codes (ICD-10 A41.9 sepsis, R65.20/R65.21 severe sepsis / septic shock; ICD-9 038.9
# septicemia, 995.91/995.92 sepsis / severe sepsis, 785.52 septic shock), written without dots
# as MIMIC-IV does. Every sepsis admission carries two of them, so any usual code list finds it.
SEPSIS_CODES: dict[int, tuple[str, ...]] = {10: ("A419", "R6521", "R6520"), 9: ("0389", "99592", "78552")}
# Codes that are never sepsis: AKI, hypertension, diabetes, heart failure, respiratory failure,
# hypomagnesemia, CKD.
OTHER_CODES: dict[int, tuple[str, ...]] = {
    10: ("N179", "I10", "E119", "I5023", "J9601", "E8342", "N183", "E872"),
    9: ("5849", "4019", "25000", "42823", "51881", "27542", "5853", "2762"),
}
ICD_TITLES: dict[tuple[str, int], str] = {
    ("A419", 10): "Sepsis, unspecified organism",
    ("R6521", 10): "Severe sepsis with septic shock",
    ("R6520", 10): "Severe sepsis without septic shock",
    ("0389", 9): "Unspecified septicemia",
    ("99592", 9): "Severe sepsis",
    ("78552", 9): "Septic shock",
    ("N179", 10): "Acute kidney failure, unspecified",
    ("I10", 10): "Essential (primary) hypertension",
    ("E119", 10): "Type 2 diabetes mellitus without complications",
    ("I5023", 10): "Acute on chronic systolic (congestive) heart failure",
    ("J9601", 10): "Acute respiratory failure with hypoxia",
    ("E8342", 10): "Hypomagnesemia",
    ("N183", 10): "Chronic kidney disease, stage 3 (moderate)",
    ("E872", 10): "Acidosis",
    ("5849", 9): "Acute kidney failure, unspecified",
    ("4019", 9): "Unspecified essential hypertension",
    (
        "25000",
        9,
    ): "Diabetes mellitus without mention of complication, type II or unspecified type, not stated as uncontrolled",
    ("42823", 9): "Acute on chronic systolic heart failure",
    ("51881", 9): "Acute respiratory failure",
    ("27542", 9): "Hypomagnesemia",
    ("5853", 9): "Chronic kidney disease, Stage III (moderate)",
    ("2762", 9): "Acidosis",
    # alcohol use disorder (only the studies' patients carry these)
    ("F1020", 10): "Alcohol dependence, uncomplicated",
    ("30390", 9): "Other and unspecified alcohol dependence, unspecified",
}

CAREUNITS = (
    "Medical Intensive Care Unit (MICU)",
    "Surgical Intensive Care Unit (SICU)",
    "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Cardiac Vascular Intensive Care Unit (CVICU)",
    "Trauma SICU (TSICU)",
    "Coronary Care Unit (CCU)",
)
ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
ADMISSION_TYPES = ("EW EMER.", "URGENT", "DIRECT EMER.", "OBSERVATION ADMIT", "SURGICAL SAME DAY ADMISSION")
ADMISSION_LOCATIONS = ("EMERGENCY ROOM", "TRANSFER FROM HOSPITAL", "PHYSICIAN REFERRAL", "WALK-IN/SELF REFERRAL")
DISCHARGE_LOCATIONS = ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB", "CHRONIC/LONG TERM ACUTE CARE")
INSURANCES = ("Medicare", "Medicaid", "Other")
MARITAL = ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED")
RACES = ("WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER", "UNKNOWN")
CRRT_MODES = ("CVVHDF", "CVVHD", "CVVH", "SCUF")
