"""ConceptSpec validation and the built-in catalogue (pure data, no engine)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from retrocohort.concepts import BASELINE_BUILDERS, EVENT_BUILDERS
from retrocohort.spec.catalogue import BASELINE_BUILTINS, BUILTIN_CONCEPTS, EVENT_BUILTINS
from retrocohort.spec.concept import CONCEPT_TABLES, SELECTORS, TABLE_SELECTORS, ConceptSpec


def test_every_issue_table_is_a_concept_table():
    wanted = {
        "icu/inputevents",
        "icu/procedureevents",
        "icu/chartevents",
        "icu/outputevents",
        "icu/datetimeevents",
        "icu/ingredientevents",
        "hosp/labevents",
        "hosp/prescriptions",
        "hosp/emar",
        "hosp/pharmacy",
        "hosp/diagnoses_icd",
        "hosp/procedures_icd",
        "hosp/microbiologyevents",
        "hosp/transfers",
        "hosp/services",
        "hosp/omr",
    }
    assert set(CONCEPT_TABLES) == wanted
    for table, selectors in TABLE_SELECTORS.items():
        assert set(selectors) <= set(SELECTORS), table


def test_single_values_become_tuples_and_codes_lose_dots():
    c = ConceptSpec(table="hosp/diagnoses_icd", codes="995.92", code_prefixes=["a41 "], icd_version=10)
    assert c.codes == ("99592",) and c.code_prefixes == ("A41",)
    c = ConceptSpec(table="labevents", itemids=50813)
    assert c.table == "hosp/labevents" and c.itemids == (50813,)
    assert ConceptSpec(table="hosp/labevents", itemids="50813").itemids == (50813,)


def test_frozen_and_extra_keys_forbidden():
    c = ConceptSpec(table="icu/inputevents", itemids=[222315])
    with pytest.raises(ValidationError):
        c.itemids = (1,)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="itemid"):
        ConceptSpec(table="icu/inputevents", itemid=[222315])


def test_unknown_table_suggests_the_closest():
    with pytest.raises(ValidationError, match=r"did you mean 'hosp/prescriptions'"):
        ConceptSpec(table="hosp/prescription", drugs=["thiamine"])


def test_selector_that_does_not_fit_the_table_names_the_allowed_ones():
    with pytest.raises(ValidationError, match=r"'drugs' does not apply to hosp/labevents.*itemids"):
        ConceptSpec(table="hosp/labevents", drugs=["x"])
    with pytest.raises(ValidationError, match="'codes' does not apply to icu/chartevents"):
        ConceptSpec(table="icu/chartevents", itemids=[1], codes=["A41"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"table": "hosp/labevents", "itemids": [1], "value_min": 5, "value_max": 1}, "above value_max"),
        ({"table": "hosp/labevents", "itemids": [1, 2], "exclude_itemids": [2]}, "both selected and excluded"),
        ({"table": "hosp/prescriptions", "drugs": [""]}, "empty string"),
        ({"table": "hosp/diagnoses_icd", "codes": ["."]}, "empty ICD code"),
        ({"table": "hosp/labevents", "value_min": 1}, "needs at least one selector"),
        ({"table": "hosp/diagnoses_icd", "icd_version": 11, "codes": ["A41"]}, "icd_version"),
        ({"table": "hosp/diagnoses_icd", "codes": ["A41"], "dated_at": "death"}, "dated_at"),
        ({"table": "hosp/labevents", "itemids": [True]}, "not true/false"),
        ({"table": "hosp/labevents", "itemids": ["lactate"]}, "valid integer"),
        ({"table": "hosp/labevents", "itemids": [1], "value_min": float("nan")}, "not a finite number"),
        ({"table": "hosp/labevents", "itemids": [1], "value_max": float("inf")}, "not a finite number"),
        ({"table": "hosp/diagnoses_icd", "code_prefixes": [38]}, "ICD codes are text: write '38' in quotes"),
        ({"table": "icu/chartevents", "units": ["mmHg"]}, "picks rows"),
        ({"table": "hosp/diagnoses_icd", "icd_version": 10}, "picks rows"),
    ],
)
def test_bad_concepts(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        ConceptSpec(**kwargs)


def test_transfers_and_services_may_take_every_row():
    assert ConceptSpec(table="hosp/transfers").names == ()
    assert ConceptSpec(table="hosp/services", names=["CSURG"]).names == ("CSURG",)


def test_catalogue_is_complete_and_every_builtin_is_built():
    assert set(EVENT_BUILTINS) == set(EVENT_BUILDERS)
    assert set(BASELINE_BUILTINS) == set(BASELINE_BUILDERS)
    must = {
        "krt",
        "crrt",
        "intermittent_krt",
        "invasive_ventilation",
        "vasopressors",
        "lactate",
        "mean_arterial_pressure",
        "weight",
        "creatinine",
        "serum_magnesium",
        "urine_output",
        "death",
        "age",
        "sex",
        "sofa",
        "sofa_respiratory",
        "sepsis",
        "sepsis3",
        "septic_shock",
        "kdigo_stage",
        "creatinine_baseline",
        "egfr_baseline",
        "charlson",
    }
    assert must <= set(BUILTIN_CONCEPTS)
    for name, info in BUILTIN_CONCEPTS.items():
        assert info.rule and info.label and info.tables, name
        assert info.kind in ("events", "baseline")


def test_catalogue_imports_nothing():
    import ast
    import inspect

    import retrocohort.spec.catalogue as cat
    import retrocohort.spec.concept as con

    for module, allowed in ((cat, set()), (con, {"errors"})):
        tree = ast.parse(inspect.getsource(module))
        relative = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
        assert set(filter(None, relative)) <= allowed, module.__name__


def test_docs_define_every_builtin_table_and_selector():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "concepts.md").read_text()
    for name, info in BUILTIN_CONCEPTS.items():
        assert f"`{name}`" in text and info.rule in text, name
    for table in CONCEPT_TABLES:
        assert f"| `{table}`" in text, table
    for selector in SELECTORS:
        assert f"`{selector}`" in text, selector


def test_table_values_agree_with_the_table_maps():
    from retrocohort.concepts.tables import TABLE_MAPS
    from retrocohort.spec.concept import TABLE_VALUES

    assert set(TABLE_VALUES) == set(CONCEPT_TABLES) == set(TABLE_MAPS)
    for table, (has_value, has_amount) in TABLE_VALUES.items():
        assert (TABLE_MAPS[table].value is not None) == has_value, table
        assert (TABLE_MAPS[table].amount is not None) == has_amount, table
    assert ConceptSpec(table="hosp/prescriptions", drugs="x").has_amount
    assert not ConceptSpec(table="hosp/diagnoses_icd", codes="A41").has_value
