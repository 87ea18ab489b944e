"""A miniature MIMIC-IV folder with every table concepts read (MIMIC-IV v2.2 headers), from Python dicts.

Extends ``tests/cohort/minimimic.py`` (the flagship's 8 tables) with the other
tables of issue #9; unset columns are written empty, as MIMIC-IV writes nulls.
"""

from __future__ import annotations

from ..cohort.minimimic import HEADERS as FLAGSHIP_HEADERS
from ..cohort.minimimic import MiniMimic, ts

EXTRA_HEADERS: dict[str, list[str]] = {
    "icu/outputevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "charttime",
        "storetime",
        "itemid",
        "value",
        "valueuom",
    ],
    "icu/datetimeevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "charttime",
        "storetime",
        "itemid",
        "value",
        "valueuom",
        "warning",
    ],
    "icu/ingredientevents": [
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "starttime",
        "endtime",
        "storetime",
        "itemid",
        "amount",
        "amountuom",
        "rate",
        "rateuom",
        "orderid",
        "linkorderid",
        "statusdescription",
        "originalamount",
        "originalrate",
    ],
    "hosp/prescriptions": [
        "subject_id",
        "hadm_id",
        "pharmacy_id",
        "poe_id",
        "poe_seq",
        "order_provider_id",
        "starttime",
        "stoptime",
        "drug_type",
        "drug",
        "formulary_drug_cd",
        "gsn",
        "ndc",
        "prod_strength",
        "form_rx",
        "dose_val_rx",
        "dose_unit_rx",
        "form_val_disp",
        "form_unit_disp",
        "doses_per_24_hrs",
        "route",
    ],
    "hosp/emar": [
        "subject_id",
        "hadm_id",
        "emar_id",
        "emar_seq",
        "poe_id",
        "pharmacy_id",
        "enter_provider_id",
        "charttime",
        "medication",
        "event_txt",
        "scheduletime",
        "storetime",
    ],
    "hosp/emar_detail": [
        "subject_id",
        "emar_id",
        "emar_seq",
        "parent_field_ordinal",
        "administration_type",
        "pharmacy_id",
        "barcode_type",
        "reason_for_no_barcode",
        "complete_dose_not_given",
        "dose_due",
        "dose_due_unit",
        "dose_given",
        "dose_given_unit",
        "will_remainder_of_dose_be_given",
        "product_amount_given",
        "product_unit",
        "product_code",
        "product_description",
        "product_description_other",
        "prior_infusion_rate",
        "infusion_rate",
        "infusion_rate_adjustment",
        "infusion_rate_adjustment_amount",
        "infusion_rate_unit",
        "route",
        "infusion_complete",
        "completion_interval",
        "new_iv_bag_hung",
        "continued_infusion_in_other_location",
        "restart_interval",
        "side",
        "site",
        "non_formulary_visual_verification",
    ],
    "hosp/pharmacy": [
        "subject_id",
        "hadm_id",
        "pharmacy_id",
        "poe_id",
        "starttime",
        "stoptime",
        "medication",
        "proc_type",
        "status",
        "entertime",
        "verifiedtime",
        "route",
        "frequency",
        "disp_sched",
        "infusion_type",
        "sliding_scale",
        "lockout_interval",
        "basal_rate",
        "one_hr_max",
        "doses_per_24_hrs",
        "duration",
        "duration_interval",
        "expiration_value",
        "expiration_unit",
        "expirationdate",
        "dispensation",
        "fill_quantity",
    ],
    "hosp/procedures_icd": ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"],
    "hosp/microbiologyevents": [
        "microevent_id",
        "subject_id",
        "hadm_id",
        "micro_specimen_id",
        "order_provider_id",
        "chartdate",
        "charttime",
        "spec_itemid",
        "spec_type_desc",
        "test_seq",
        "storedate",
        "storetime",
        "test_itemid",
        "test_name",
        "org_itemid",
        "org_name",
        "isolate_num",
        "quantity",
        "ab_itemid",
        "ab_name",
        "dilution_text",
        "dilution_comparison",
        "dilution_value",
        "interpretation",
        "comments",
    ],
    "hosp/transfers": ["subject_id", "hadm_id", "transfer_id", "eventtype", "careunit", "intime", "outtime"],
    "hosp/services": ["subject_id", "hadm_id", "transfertime", "prev_service", "curr_service"],
    "hosp/omr": ["subject_id", "chartdate", "seq_num", "result_name", "result_value"],
}

ALL_HEADERS: dict[str, list[str]] = {**FLAGSHIP_HEADERS, **EXTRA_HEADERS}


class ConceptMimic(MiniMimic):
    """MiniMimic with the extra tables; ``write`` writes all of them."""

    def __init__(self) -> None:
        super().__init__()
        for name in EXTRA_HEADERS:
            self.rows[name] = []

    def headers(self) -> dict[str, list[str]]:
        return ALL_HEADERS

    # --- helpers for the extra tables -------------------------------------------------------
    def patient(
        self, subject_id: int, *, gender: str = "M", anchor_age: int = 60, anchor_year: int = 2150, dod: str = ""
    ) -> None:
        self.add(
            "hosp/patients",
            subject_id=subject_id,
            gender=gender,
            anchor_age=anchor_age,
            anchor_year=anchor_year,
            anchor_year_group="2017 - 2019",
            dod=dod,
        )

    def admission(self, subject_id: int, hadm_id: int, admit: str, disch: str, deathtime: str = "") -> None:
        self.add(
            "hosp/admissions",
            subject_id=subject_id,
            hadm_id=hadm_id,
            admittime=ts(admit),
            dischtime=ts(disch),
            deathtime=ts(deathtime) if deathtime else "",
            admission_type="EW EMER.",
            race="WHITE",
            hospital_expire_flag=1 if deathtime else 0,
        )

    def stay(self, subject_id: int, hadm_id: int, stay_id: int, intime: str, outtime: str) -> None:
        self.add(
            "icu/icustays",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            first_careunit="MICU",
            last_careunit="MICU",
            intime=ts(intime),
            outtime=ts(outtime),
            los=1.0,
        )

    def chart_num(self, subject_id, hadm_id, stay_id, itemid, charttime, valuenum, valueuom="") -> dict:
        return self.add(
            "icu/chartevents",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            caregiver_id=1,
            charttime=ts(charttime),
            storetime=ts(charttime),
            itemid=itemid,
            value=str(valuenum),
            valuenum=valuenum,
            valueuom=valueuom,
            warning=0,
        )

    def output(self, subject_id, hadm_id, stay_id, itemid, charttime, value, valueuom="ml") -> dict:
        return self.add(
            "icu/outputevents",
            subject_id=subject_id,
            hadm_id=hadm_id,
            stay_id=stay_id,
            caregiver_id=1,
            charttime=ts(charttime),
            storetime=ts(charttime),
            itemid=itemid,
            value=value,
            valueuom=valueuom,
        )

    def prescription(self, subject_id, hadm_id, drug, start, stop, dose="", unit="", route="IV") -> dict:
        return self.add(
            "hosp/prescriptions",
            subject_id=subject_id,
            hadm_id=hadm_id,
            pharmacy_id=self.next_id(),
            starttime=ts(start),
            stoptime=ts(stop) if stop else "",
            drug_type="MAIN",
            drug=drug,
            dose_val_rx=dose,
            dose_unit_rx=unit,
            route=route,
        )

    def culture(
        self, subject_id, hadm_id, specimen_id, charttime, spec_type="BLOOD CULTURE", org_name="", chartdate=None
    ) -> dict:
        return self.add(
            "hosp/microbiologyevents",
            microevent_id=self.next_id(),
            subject_id=subject_id,
            hadm_id=hadm_id,
            micro_specimen_id=specimen_id,
            chartdate=ts(chartdate or str(charttime)[:10]),
            charttime=ts(charttime) if charttime else "",
            spec_itemid=70012,
            spec_type_desc=spec_type,
            test_seq=1,
            test_itemid=90201,
            test_name="Blood Culture, Routine",
            org_name=org_name,
        )
