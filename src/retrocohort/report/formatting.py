"""Numbers as journals print them: p values, ratios with CIs, labels in the study's words."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DASH = "\u2013"  # en dash between CI limits, as journals set ranges

# Display names of columns every study's frame may have; a study's covariates and outcomes are named
# by the study itself (``study_labels``), so nothing here knows a particular study.
COVARIATE_LABELS: dict[str, str] = {
    "distance": "Propensity score (logit)",
}

MODEL_LABELS: dict[str, str] = {
    "cox_unadjusted": "Cox, unadjusted",
    "cox_adjusted": "Cox, adjusted",
    "fine_gray_unadjusted": "Fine-Gray, unadjusted",
    "fine_gray_adjusted": "Fine-Gray, adjusted",
    "propensity": "Propensity model",
    "matching": "Matching",
}

POPULATION_LABELS: dict[str, str] = {
    "matched": "Matched cohort",
    "full": "Full eligible cohort",
    "iptw": "Eligible cohort, IPTW (ATT)",
}


def covariate_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """Readable label of a covariate or of one level of it (``sexM``, ``sex=M``, ``sex_M``).

    ``labels`` are the study's covariate labels by name (``[covariates.<name>] label``); a level is
    shown as ``"<label> = <level>"``.
    """
    names = {**COVARIATE_LABELS, **(labels or {})}
    if name in names:
        return names[name]
    # Longest name first: "sofa_cardio" before "sofa".
    for key in sorted(names, key=len, reverse=True):
        label = names[key]
        for sep in (" = ", "=", "_", ":", ""):
            prefix = f"{key}{sep}"
            if sep == "" and key != "sex":
                continue  # only sex has short levels that R glues on (sexM)
            if name.startswith(prefix) and len(name) > len(prefix):
                level = name[len(prefix) :].strip()
                if key == "sex" and level in ("M", "F"):
                    return {"M": "Male sex", "F": "Female sex"}[level]
                return f"{label.split(',')[0]} = {level}"
    return name.replace("_", " ")


def study_labels(study: Any) -> dict[str, str]:
    """The study's covariate labels by name (the name itself when the study gives no label)."""
    covariates = getattr(study, "covariates", None) or {}
    return {str(name): (getattr(spec, "label", "") or str(name)) for name, spec in covariates.items()}


def outcome_labels(study: Any) -> dict[str, str]:
    """The study's outcome labels by outcome name."""
    outcomes = getattr(study, "outcomes", None) or {}
    return {str(name): getattr(spec, "label", str(name)) for name, spec in outcomes.items()}


def level_text(level: object) -> str:
    """A subgroup level as printed: a whole number without its ".0" (a 0/1 covariate's levels are 0 and 1)."""
    if isinstance(level, float | np.floating) and float(level).is_integer():
        return str(int(level))
    text = str(level)
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def label_of(mapping: Mapping[str, str], key: str) -> str:
    return mapping.get(key, key.replace("_", " "))


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def format_p(p: float | None) -> str:
    """p as journals print it (NEJM/JAMA style).

    ``< 0.001`` below 0.001; three decimals below 0.01; two decimals
    otherwise, except three where two would round across 0.05 (0.046 -> 0.046,
    not 0.05); ``> 0.99`` above 0.99; an em dash when missing.
    """
    if p is None or not is_number(p):
        return "\u2014"
    p = float(p)
    if p < 0.001:
        return "< 0.001"
    if p > 0.99:
        return "> 0.99"
    if p < 0.01:
        return f"{p:.3f}"
    two = f"{p:.2f}"
    if (p < 0.05) != (float(two) < 0.05):
        return f"{p:.3f}"
    return two


def format_p_inline(p: float | None) -> str:
    """p for running text and figure annotations: "p < 0.001" or "p = 0.04"."""
    text = format_p(p)
    if text.startswith(("<", ">")):
        return f"p {text}"
    if text == "\u2014":
        return "p not available"
    return f"p = {text}"


def format_number(x: float | None, digits: int = 2) -> str:
    if x is None or not is_number(x):
        return "\u2014"
    return f"{float(x):.{digits}f}"


def format_ratio(estimate: float | None, lower: float | None, upper: float | None, digits: int = 2) -> str:
    """``0.38 (0.18–0.83)``: a hazard ratio with its confidence limits."""
    if estimate is None or not is_number(estimate):
        return "\u2014"
    return f"{format_number(estimate, digits)} ({format_number(lower, digits)}{DASH}{format_number(upper, digits)})"


def resolve_labels(groups: Sequence[object], labels: Mapping[Any, str] | Sequence[str] | None) -> list[str]:
    """Display label of each group, from a mapping (by group value) or a sequence (in group order)."""
    if labels is None:
        return [str(g) for g in groups]
    if isinstance(labels, Mapping):
        out = []
        for g in groups:
            if g in labels:
                out.append(labels[g])
            elif str(g) in labels:
                out.append(labels[str(g)])
            else:
                out.append(str(g))
        return out
    labels = list(labels)
    if len(labels) != len(groups):
        from ..errors import InputError

        raise InputError(f"{len(labels)} labels given for {len(groups)} groups ({list(groups)}); give one per group")
    return labels


#: Proper names of the attrition steps the cohort builder writes itself (a criterion's step is its label).
STEP_NAMES: dict[str, str] = {
    "index_event": "Index event",
    "data_checks": "Data checks",
    "icu_stay": "Index in an ICU stay",
    "first_icu_stay": "First ICU stay",
    "adult": "Adults",
    "age": "Age range",
    "both_arms": "Both arms",
    "neither_arm": "Neither arm",
    "missing_covariates": "Missing covariates",
    "eligible": "Eligible",
    "screened": "Screened",
}
#: Abbreviations kept in capitals when a step key is turned into words.
_ABBREVIATIONS = {"icu": "ICU", "icd": "ICD", "ed": "ED", "sofa": "SOFA", "ps": "PS", "iv": "IV"}


def step_label(step: object, labels: Mapping[str, str] | None = None) -> str:
    """An attrition step in words: the study's own label, a proper name, or the key as words.

    ``labels`` maps step keys to the study's labels (a criterion's ``label``); the builder's own steps
    have proper names (``icu_stay`` -> ``Index in an ICU stay``); any other key becomes words with its
    abbreviations in capitals (``prior_icu_readmission`` -> ``Prior ICU readmission``).
    """
    key = str(step).strip()
    if labels and key in labels and labels[key]:
        text = str(labels[key]).strip()
    elif key in STEP_NAMES:
        return STEP_NAMES[key]
    else:
        text = " ".join(_ABBREVIATIONS.get(w.lower(), w) for w in key.replace("_", " ").split())
    return text[:1].upper() + text[1:] if text else text


def exclusion_reason(reason: object) -> str:
    """An exclusion reason without the log's ``excluded:`` prefix (the box is already titled Excluded)."""
    text = str(reason).strip()
    for prefix in ("excluded:", "Excluded:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    return text
