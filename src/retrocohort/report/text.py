"""Methods and results paragraphs written from the study design and the result's numbers.

The methods paragraph quotes the study file's values (windows, itemids with
their names, matching options, models); the results paragraph is the
abstract's style ("Of 629 screened patients, 333 were eligible ...") built
only from numbers the :class:`StudyResult` holds. Counts follow the
small-cell rule; a model that was not fitted is said to be skipped, with why.
"""

from __future__ import annotations

from typing import Any

from .formatting import (
    DASH,
    MODEL_LABELS,
    OUTCOME_LABELS,
    POPULATION_LABELS,
    covariate_label,
    format_number,
    format_p_inline,
    is_number,
    label_of,
)
from .suppression import format_display, is_small, study_disclosure
from .tables import PRIMARY, arm_labels, planted_for, published_for, threshold_of

__all__ = ["methods_paragraph", "results_paragraph", "skipped_notes", "ITEM_NAMES"]

# MIMIC-IV itemids named in words (d_items / d_labitems labels).
ITEM_NAMES: dict[int, str] = {
    225802: "Dialysis - CRRT",
    225803: "Dialysis - CVVHD",
    225809: "Dialysis - CVVHDF",
    225955: "Dialysis - SCUF",
    227290: "CRRT mode",
    225441: "Hemodialysis (intermittent)",
    225792: "Invasive ventilation",
    221906: "norepinephrine",
    221289: "epinephrine",
    222315: "vasopressin",
    221749: "phenylephrine",
    221662: "dopamine",
    222011: "magnesium sulfate",
    227524: "magnesium sulfate (OB-GYN)",
    227523: "magnesium sulfate bolus",
    50960: "serum magnesium",
    50912: "serum creatinine",
}


_ORDER_WORDS = {
    "largest": "taking exposed patients from the highest propensity score down",
    "smallest": "taking exposed patients from the lowest propensity score up",
    "random": "taking exposed patients in random order",
    "data": "taking exposed patients in data order",
}


def _items(itemids: tuple[int, ...] | list[int]) -> str:
    """``Dialysis - CRRT, itemid 225802; Dialysis - CVVHD, itemid 225803``: names with their itemids."""
    return "; ".join(f"{ITEM_NAMES[int(i)]}, itemid {int(i)}" if int(i) in ITEM_NAMES else f"itemid {int(i)}"
                     for i in itemids)


def _window(start: float, end: float) -> str:
    def one(h: float) -> str:
        return "CKRT start" if h == 0 else f"{abs(h):g} h {'before' if h < 0 else 'after'} CKRT start"

    return f"from {one(start)} to {one(end)}"


def _join(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _hours(value: float) -> str:
    return f"{value:g} h"


_COVARIATE_WORDS = {
    "age": "age", "sex": "sex", "sepsis": "sepsis", "creatinine_baseline": "baseline creatinine",
    "egfr_baseline": "baseline eGFR", "sofa": "SOFA score", "serum_mg": "serum Mg",
    "vasopressor": "vasopressor use", "ventilation": "mechanical ventilation",
}


def _covariates(names: tuple[str, ...]) -> str:
    return _join([_COVARIATE_WORDS.get(n, covariate_label(n)) for n in names])


# Break between the methods' blocks (design, exposure, matching, outcomes, sensitivity):
# one string for the caller, rendered as separate <p> in the HTML.
_PARAGRAPH = "\n\n"


def methods_paragraph(result: Any) -> str:
    """The statistical-methods paragraph of the report, in the study file's values.

    Parameters
    ----------
    result : StudyResult (only ``result.study`` is read, plus ``synthetic``).

    Returns
    -------
    str, plain text (no markup): blocks of sentences (design and cohort;
    exposure and covariates; propensity score and matching; outcomes and
    models; sensitivity analyses and software) separated by a blank line.
    """
    study = result.study
    info, cohort, excl, expo, labs = study.study, study.cohort, study.exclusions, study.exposure, study.labs
    ps, match, outcomes, models, report = study.propensity, study.matching, study.outcomes, study.models, study.report
    exposed, comparator = info.exposure_label, info.comparator_label
    conf = f"{100 * models.conf_level:g}%"
    s: list[str] = []
    source = "a synthetic electronic health record in the MIMIC-IV layout" if result.synthetic else "MIMIC-IV"
    s.append(f"We conducted a retrospective new-user cohort study in {source}.")
    support = ""
    if cohort.require_support:
        w0, w1 = cohort.support_window_hours
        support = (f" who received a vasopressor ({_items(cohort.vasopressor_itemids)}) and/or invasive "
                   f"ventilation (itemid {', '.join(str(i) for i in cohort.ventilation_itemids)}) "
                   f"{_window(w0, w1)}")
    s.append(
        f"The index time was the start of the {'first ' if cohort.first_stay_only else ''}continuous kidney "
        f"replacement therapy (CKRT) episode, identified from procedure events ({_items(cohort.crrt_itemids)})"
        + (f" and CRRT-mode charting (itemid {cohort.crrt_mode_itemid})" if cohort.crrt_mode_itemid else "")
        + f"; we included adults aged {cohort.min_age:g} years or older{support}."
    )
    exclusions = []
    if excl.require_mg_on_index_day:
        exclusions.append(f"no {ITEM_NAMES.get(labs.serum_mg_itemid, 'serum Mg')} measurement "
                          f"(itemid {labs.serum_mg_itemid}) on the calendar day of CKRT start")
    if excl.min_survival_hours > 0:
        exclusions.append(f"death within {_hours(excl.min_survival_hours)} of CKRT start")
    if exclusions:
        s.append(f"We excluded patients with {_join(exclusions)}.")
    e0, e1 = expo.window_hours
    s.append(_PARAGRAPH)
    s.append(
        f"Exposure ({exposed}) was any {expo.name} given in ({e0:g} h, {e1:g} h] after CKRT start "
        f"({_items(expo.itemids)}), with the dose summed in {expo.dose_unit} "
        f"({expo.meq_per_gram:g} {expo.dose_unit} per gram)"
        + (f"; carrier rows ({_items(expo.carrier_itemids)}) were not counted, since they duplicate the dose"
           if expo.carrier_itemids else "")
        + f". The comparator ({comparator}) received none in that window."
    )
    s.append(
        f"Baseline kidney function was the eGFR (CKD-EPI 2021) from the baseline "
        f"{ITEM_NAMES.get(labs.creatinine_itemid, 'creatinine')} (itemid {labs.creatinine_itemid}; look-back "
        f"{labs.baseline_creatinine_lookback_days:g} days); illness severity was the SOFA score at index."
    )
    caliper = (f" within a caliper of {match.caliper:g} standard deviations of the "
               f"{'logit of the propensity score' if match.distance == 'logit' else 'propensity score'}"
               if match.caliper else " without a caliper")
    s.append(_PARAGRAPH)
    s.append(
        f"A {'logistic' if ps.link == 'logit' else 'probit'} regression model of exposure on "
        f"{_covariates(ps.covariates)} gave the propensity score. Each exposed patient was matched to up to "
        f"{match.ratio} unexposed patients by nearest-neighbour matching {'with' if match.replace else 'without'} "
        f"replacement{caliper}, {_ORDER_WORDS.get(match.order, match.order)}"
        + (f", exactly on {_covariates(match.exact)}" if match.exact else "")
        + ". Balance was assessed with standardized mean differences (SMD), with an absolute SMD below 0.1 "
        "taken as balanced."
    )
    cluster = " with a cluster-robust (sandwich) variance clustered on matched set" if models.cluster_on_matched_set else ""
    s.append(_PARAGRAPH)
    s.append(
        f"Patients were followed from CKRT start for {outcomes.horizon_days:g} days. The primary outcome, "
        f"{outcomes.horizon_days:g}-day mortality, was described with Kaplan-Meier curves ({conf} confidence "
        f"intervals, log-rank test) and analysed with Cox proportional hazards regression in the matched "
        f"cohort{cluster}, using {models.ties.capitalize()}'s method for tied event times, unadjusted and "
        f"adjusted for {_covariates(models.adjust)}; proportional hazards were checked with the scaled "
        "Schoenfeld residual test (Kaplan-Meier time transform)."
    )
    s.append(
        "The secondary outcome, liberation from kidney replacement therapy (KRT), was the end of the last KRT "
        f"session followed by at least {outcomes.krt_free_days:g} KRT-free days alive; its cumulative incidence "
        "with death as a competing event was compared with Gray's test and modelled with Fine-Gray "
        "subdistribution hazards regression" + (", with the variance clustered on matched set" if cluster else "") + "."
    )
    s.append(_PARAGRAPH)
    sensitivity = []
    if models.sensitivity_full_cohort:
        sensitivity.append("multivariable Cox and Fine-Gray models in the full eligible cohort")
    if models.sensitivity_iptw:
        sensitivity.append("inverse probability of treatment weighting with weights for the average "
                           "treatment effect in the treated (ATT) instead of matching")
    if models.e_value:
        sensitivity.append("the E-value of the primary hazard ratio for unmeasured confounding (VanderWeele and Ding)")
    if sensitivity:
        s.append(f"Sensitivity analyses were {_join(sensitivity)}.")
    threshold = report.small_cell_threshold
    if threshold:
        s.append(f"Counts below {threshold} are reported as \u201c<{threshold}\u201d, a count that would give "
                 "one back by subtraction as the range it could take, and summary statistics of fewer "
                 f"than {threshold} patients are withheld.")
    s.append(
        "Analyses used retrocohort, whose estimates were verified against R survival, cmprsk and MatchIt "
        f"(R 4.2.2; survival 3.5-3, cmprsk 2.2-11, MatchIt 4.5.1); {conf} confidence intervals and two-sided "
        "p values are reported."
    )
    return " ".join(s).replace(f" {_PARAGRAPH} ", _PARAGRAPH)


def _estimate_sentence(result: Any, outcome: str, model: str, population: str, lead: str) -> str:
    e = result.estimate(outcome, model, population)
    # every caller has looked the estimate up first; a missing one here is a bug in this module
    assert e is not None, f"no estimate for {outcome}/{model}/{population}"
    ratio = "sHR" if model.startswith("fine_gray") else "HR"
    adjusted = "adjusted " if model.endswith("_adjusted") else "unadjusted " if model.endswith("unadjusted") else ""
    conf = f"{100 * result.study.models.conf_level:g}%"
    text = (f"{lead} {adjusted}{ratio} {format_number(e.estimate)} ({conf} CI "
            f"{format_number(e.lower)}{DASH}{format_number(e.upper)}; {format_p_inline(e.p)})")
    return text


def _skip_reason(result: Any, outcome: str, model: str, population: str) -> str | None:
    for s in getattr(result, "skipped", ()):
        if (s.outcome, s.model, s.population) == (outcome, model, population):
            return study_disclosure(result).text(s.reason)
    return None


_MODEL_WORDS = {
    "cox_unadjusted": "The unadjusted Cox model", "cox_adjusted": "The adjusted Cox model",
    "fine_gray_unadjusted": "The unadjusted Fine-Gray model", "fine_gray_adjusted": "The adjusted Fine-Gray model",
    "propensity": "The propensity score model", "matching": "Propensity score matching",
    "e_value": "The E-value",
}


def skipped_notes(result: Any) -> list[str]:
    """One sentence per model the run skipped, saying why (counts in the reason protected)."""
    disclosure = study_disclosure(result)
    notes = []
    for s in getattr(result, "skipped", ()):
        what = _MODEL_WORDS.get(s.model, f"The {label_of(MODEL_LABELS, s.model)}")
        outcome = label_of(OUTCOME_LABELS, s.outcome) if s.outcome in OUTCOME_LABELS else s.outcome
        population = label_of(POPULATION_LABELS, s.population).lower()
        reason = disclosure.text(s.reason).rstrip(".")
        if s.outcome in OUTCOME_LABELS:
            notes.append(f"{what} of {outcome} ({population}) was not estimated: {reason}.")
        else:
            notes.append(f"{what} was not performed: {reason}.")
    return notes


def results_paragraph(result: Any) -> str:
    """The results paragraph in the abstract's style, from the result's numbers only.

    Parameters
    ----------
    result : StudyResult.

    Returns
    -------
    str: counts (small cells suppressed), the Mg dose, the primary hazard
    ratios with CIs and p, the sensitivity analyses, skipped models in words
    and, on synthetic data, the planted truth.
    """
    t = threshold_of(result)
    disclosure = study_disclosure(result)
    arms = arm_labels(result)
    exposed, comparator = arms[1], arms[0]
    counts = result.counts
    att = result.attrition
    s: list[str] = []

    def shown(name: str) -> str:
        return format_display(disclosure.count(name, counts.get(name)))

    last = len(att) - 1
    s.append(
        f"Of {format_display(disclosure.count('attrition_remaining_0'))} screened patients, "
        f"{format_display(disclosure.count(f'attrition_remaining_{last}'))} were eligible "
        f"({shown('exposed')} with {exposed}, {shown('unexposed')} with {comparator})."
    )
    if counts.get("matched_exposed") is not None and result.matched is not None:
        s.append(
            f"After propensity score matching, {shown('matched_unexposed')} patients with "
            f"{comparator} and {shown('matched_exposed')} with {exposed} were analysed."
        )
    else:
        reason = next((disclosure.text(x.reason) for x in result.skipped
                       if x.outcome in ("matching", "propensity")), None)
        s.append("Propensity score matching was not performed" + (f" ({reason.rstrip('.')})" if reason else "") + ".")
    dose = result.dose_meq or {}
    few_exposed = is_small(counts.get("exposed"), t)
    if is_number(dose.get("mean")) and not few_exposed:
        unit = result.study.exposure.dose_unit
        window = result.study.exposure.window_hours[1]
        s.append(f"The {exposed} dose over {window:g} h was {format_number(dose['mean'], 1)} \u00b1 "
                 f"{format_number(dose.get('sd'), 1)} {unit} (mean \u00b1 SD).")
    # SMDs against an arm of fewer patients than the threshold are withheld (as in balance.csv).
    after = None if disclosure.few_matched else result.balance_after
    if after is not None and "smd" in after.columns and len(after):
        worst = float(after["smd"].abs().max())
        s.append(f"After matching, every covariate had an absolute SMD of {format_number(worst, 2)} or less"
                 + (" (all below 0.1)." if worst < 0.1 else "."))
    horizon = f"{result.study.outcomes.horizon_days:g}-day"
    main_death = result.estimate(*PRIMARY["death_90d"])
    if main_death is not None:
        direction = "lower" if main_death.estimate < 1 else "higher"
        death = _estimate_sentence(result, *PRIMARY["death_90d"],
                                   lead=f"In the matched cohort, {horizon} mortality was {direction} with {exposed} than with {comparator}:")
        s.append(death + ".")
    else:
        alt = result.estimate("death_90d", "cox_unadjusted", "matched")
        reason = _skip_reason(result, *PRIMARY["death_90d"])
        if alt is not None:
            s.append(_estimate_sentence(result, "death_90d", "cox_unadjusted", "matched",
                                        lead=f"In the matched cohort, {horizon} mortality with {exposed} had") + "."
                     + (f" The adjusted model was not fitted ({reason.rstrip('.')})." if reason else ""))
        elif reason:
            s.append(f"The Cox model of {horizon} mortality was not fitted ({reason.rstrip('.')}).")
    if result.logrank is not None and is_number(getattr(result.logrank, "p_value", None)):
        s.append(f"Log-rank test of the Kaplan-Meier curves: {format_p_inline(result.logrank.p_value)}.")
    main_krt = result.estimate(*PRIMARY["krt_liberation_90d"])
    krt_model = PRIMARY["krt_liberation_90d"]
    if main_krt is None and result.estimate("krt_liberation_90d", "fine_gray_unadjusted", "matched") is not None:
        krt_model = ("krt_liberation_90d", "fine_gray_unadjusted", "matched")
        main_krt = result.estimate(*krt_model)
    if main_krt is not None:
        direction = "more" if main_krt.estimate > 1 else "less"
        s.append(_estimate_sentence(result, *krt_model,
                                    lead=f"Liberation from KRT by day {result.study.outcomes.horizon_days:g}, with death "
                                         f"as a competing event, was {direction} frequent with {exposed}:") + ".")
    else:
        reason = _skip_reason(result, *PRIMARY["krt_liberation_90d"])
        if reason:
            s.append(f"The Fine-Gray model of KRT liberation was not fitted ({reason.rstrip('.')}).")
    if result.gray is not None and is_number(getattr(result.gray, "p_value", None)):
        s.append(f"Gray's test for the cumulative incidence of KRT liberation gave {format_p_inline(result.gray.p_value)}.")
    sensitivity = []
    for outcome, model, population, words in (
        ("death_90d", "cox_adjusted", "full", "the adjusted Cox model in the full eligible cohort"),
        ("death_90d", "cox_unadjusted", "iptw", "IPTW (ATT)"),
        ("krt_liberation_90d", "fine_gray_adjusted", "full", "the adjusted Fine-Gray model in the full eligible cohort"),
        ("krt_liberation_90d", "fine_gray_unadjusted", "iptw", "IPTW (ATT) for KRT liberation"),
    ):
        e = result.estimate(outcome, model, population)
        if e is not None:
            ratio = "sHR" if model.startswith("fine_gray") else "HR"
            sensitivity.append(f"{words} ({ratio} {format_number(e.estimate)}, "
                               f"{format_number(e.lower)}{DASH}{format_number(e.upper)})")
    if sensitivity:
        s.append(f"Sensitivity analyses gave {_join(sensitivity)}.")
    ev = result.e_value or {}
    if is_number(ev.get("point")):
        ci = ev.get("ci")
        s.append(f"The E-value of the primary hazard ratio was {format_number(ev['point'])}"
                 + (f" ({format_number(ci)} for the confidence limit closest to the null)" if is_number(ci) else "")
                 + ".")
    published_words = []
    for outcome, words in (("death_90d", "adjusted HR for 90-day mortality"),
                           ("krt_liberation_90d", "HR for being KRT-free at 90 days")):
        published = published_for(result, outcome)
        if published:
            published_words.append(f"{words} of {format_number(published[0])} "
                                   f"(95% CI {format_number(published[1])}{DASH}{format_number(published[2])})")
    if published_words:
        s.append(f"The published study reported an {_join(published_words)}.")
    if result.synthetic:
        truths = []
        for outcome, name in (("death_90d", "HR of death"), ("krt_liberation_90d", "sHR of KRT liberation")):
            truth = planted_for(result, outcome)
            if truth is not None:
                truths.append(f"{name} {format_number(truth)}")
        s.append("These data are synthetic" + (f"; the planted effects were {_join(truths)}" if truths else "") + ".")
    # Matching already said it was skipped above; the model notes follow.
    s.extend(note for note, skip in zip(skipped_notes(result), result.skipped, strict=True)
             if not (skip.outcome in ("matching", "propensity") and result.matched is None))
    return " ".join(s)
