"""Methods and results paragraphs written from the study file and the result's numbers.

The methods paragraph says what the study file says, in its own words and order:
the index event and its concepts, each criterion's label in the order written,
the exposure and its grace window, the comparator, the dose when declared, the
covariates with their missing-data rules, each outcome with its horizon and
competing event, the matching, models, subgroups and sensitivity analyses. The
results paragraph is the abstract's style ("Of 629 patients with ..., 333 were
eligible ...") built only from numbers the :class:`StudyResult` holds. Counts
follow the small-cell rule; a model that was not fitted is said to be skipped,
with why. Nothing here knows a particular study.
"""

from __future__ import annotations

import math
from typing import Any

from .._labels import by_day, units
from .formatting import (
    DASH,
    MODEL_LABELS,
    POPULATION_LABELS,
    format_number,
    format_p_inline,
    is_number,
    label_of,
    study_labels,
)
from .suppression import format_display, is_small, study_disclosure
from .tables import (
    arm_labels,
    index_label,
    outcome_label,
    outcome_names,
    planted_for,
    primary_key,
    published_for,
    threshold_of,
)

__all__ = ["methods_paragraph", "results_paragraph", "skipped_notes", "target_trial_line", "target_trial_protocol"]


_ORDER_WORDS = {
    "largest": "taking exposed patients from the highest propensity score down",
    "smallest": "taking exposed patients from the lowest propensity score up",
    "random": "taking exposed patients in random order",
    "data": "taking exposed patients in data order",
}

_SUMMARY_WORDS = {
    "first": "first value",
    "last": "last value",
    "min": "lowest value",
    "max": "highest value",
    "mean": "mean",
    "count": "number of events",
    "any": "any event",
    "sum": "sum",
    "nearest": "value nearest the index",
}

_MISSING_WORDS = {
    "drop": "patients without a value were excluded (an attrition line)",
    "indicator": "a missing value was coded with a missing-value indicator",
    "median": "a missing value was replaced by the median",
}


def _join(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _hours(h: float) -> str:
    if abs(h) >= 48 and abs(h) % 24 == 0:
        return f"{abs(h) / 24:g} days"
    return f"{abs(h):g} h"


def window_words(window: Any, index: str) -> str:
    """A window in words relative to the index ("from 0 h (exclusive) to 48 h after ICU admission")."""
    if window is None:
        return f"at {index}"
    if getattr(window, "calendar_day", False):
        return f"on the calendar day of {index}"

    def one(h: float) -> str:
        return index if h == 0 else f"{_hours(h)} {'before' if h < 0 else 'after'} {index}"

    start, end = float(window.start_hours), float(window.end_hours)
    if math.isinf(start) and math.isinf(end):
        return "at any time"
    if math.isinf(start):
        return f"up to {one(end)}" + ("" if window.end_closed else " (exclusive)")
    if math.isinf(end):
        return f"from {one(start)} on"
    lo = "" if window.start_closed else " (exclusive)"
    return f"from {one(start)}{lo} to {one(end)}"


def _concepts(study: Any, names: tuple[str, ...] | list[str]) -> str:
    labels = [study.concept_label(n) if hasattr(study, "concept_label") else str(n) for n in names]
    return " or ".join(labels)


def _covariate_names(study: Any, names: tuple[str, ...] | list[str]) -> str:
    labels = study_labels(study)
    return _join([labels.get(n, n.replace("_", " ")).split(",")[0] for n in names])


def _lower(text: str) -> str:
    return text if len(text) > 1 and text[1].isupper() else text[:1].lower() + text[1:]


# Break between the methods' blocks (design, exposure, matching, outcomes, sensitivity):
# one string for the caller, rendered as separate <p> in the HTML.
_PARAGRAPH = "\n\n"


def _outcome_sentence(study: Any, name: str, spec: Any, index: str) -> str:
    label = spec.label
    if spec.kind == "death":
        what = "death from any cause"
    elif spec.kind == "first":
        what = f"the first {_lower(_concepts(study, spec.concept))} after {index}"
    else:
        what = (
            f"the end of the last {_lower(_concepts(study, spec.concept))} followed by at least "
            f"{spec.absence_days:g} days without it, alive"
        )
    role = "The primary outcome" if spec.primary else "A secondary outcome"
    text = f"{role}, {_lower(label)}, was {what}, followed for {spec.horizon_days:g} days from {index}"
    if spec.exclude_prior is not None:
        text += (
            f"; patients with {_lower(_concepts(study, spec.concept))} "
            f"{window_words(spec.exclude_prior, index)} were left out of its analysis"
        )
    if spec.competing:
        text += (
            f"; with {spec.competing} as a competing event, its cumulative incidence was compared with "
            "Gray's test and modelled with Fine-Gray subdistribution hazards regression"
        )
    else:
        text += (
            "; it was described with Kaplan-Meier curves, compared with the log-rank test and modelled "
            "with Cox proportional hazards regression"
        )
    return text + "."


def methods_paragraph(result: Any) -> str:
    """The statistical-methods paragraph of the report, in the study file's words and values.

    Parameters
    ----------
    result : StudyResult (only ``result.study`` is read, plus ``synthetic``).

    Returns
    -------
    str, plain text (no markup): blocks of sentences (design, cohort and criteria; exposure,
    comparator, dose and covariates; propensity score and matching; outcomes and models;
    subgroups, sensitivity analyses and software) separated by a blank line.
    """
    study = result.study
    index = study.index.label
    analysis, match, report = study.analysis, study.analysis.matching, study.report
    arms = arm_labels(result)
    exposed, comparator = arms[1], arms[0]
    conf = f"{100 * analysis.conf_level:g}%"
    s: list[str] = []
    source = "a synthetic electronic health record in the MIMIC-IV layout" if result.synthetic else "MIMIC-IV"
    s.append(f"We conducted a retrospective cohort study in {source}: {study.study.title}.")
    selection = {"first": "first", "first_passing": "first qualifying"}.get(study.index.select, "")
    ages = []
    if study.index.min_age is not None:
        ages.append(f"aged {study.index.min_age:g} years or older")
    if study.index.max_age is not None:
        ages.append(f"aged {study.index.max_age:g} years or younger")
    # with one index per ICU stay the unit is the stay, and a patient may contribute several
    whose = "the first" if study.index.select == "first_per_stay" else f"each patient's {selection}"
    per_stay = (
        " of each ICU stay (a patient could contribute one index per stay; the analysis unit was the ICU stay)"
        if study.index.select == "first_per_stay"
        else ""
    )
    s.append(
        f"The index time was {whose} {index}{per_stay} ({_concepts(study, study.index.concept)})"
        + (", taken at the event's end" if study.index.at == "end" else "")
        + (", in the first ICU stay only" if study.index.first_icu_stay_only else "")
        + (f"; we included patients {_join(ages)}" if ages else "")
        + "."
    )
    if study.criteria:
        rules = [
            f"({k}) {'included' if c.rule == 'include' else 'excluded'}: {c.label}"
            for k, c in enumerate(study.criteria, start=1)
        ]
        s.append(f"The criteria were applied in this order, each one line of the attrition log: {'; '.join(rules)}.")
    s.append(_PARAGRAPH)
    s.append(
        f"Exposure ({exposed}) was {_lower(_concepts(study, study.exposure.concept))} started "
        f"{window_words(study.exposure.window, index)}."
    )
    if study.comparator.kind == "active":
        s.append(
            f"The active comparator ({comparator}) was {_lower(_concepts(study, study.comparator.concept))} "
            "started in the same window; patients given both, or neither, were excluded and counted."
        )
    else:
        s.append(f"The comparator ({comparator}) received none in that window.")
    if study.dose is not None:
        dose = study.dose
        s.append(
            f"The dose ({dose.label}) was the amount given in the exposure window, summed in {dose.unit}"
            + (f" (amounts converted with a factor of {dose.factor:g})" if dose.factor != 1 else "")
            + "."
        )
    if study.covariates:
        parts = []
        for name, cov in study.covariates.items():
            label = cov.label or name
            how = []
            if cov.summary is not None:
                how.append(_SUMMARY_WORDS.get(cov.summary, cov.summary))
            if cov.window is not None:
                how.append(window_words(cov.window, index))
            parts.append(f"{label}" + (f" ({' '.join(how)})" if how else ""))
        s.append(f"Covariates were: {'; '.join(parts)}.")
        by_rule: dict[str, list[str]] = {}
        for name, cov in study.covariates.items():
            by_rule.setdefault(cov.missing, []).append((cov.label or name).split(",")[0])
        s.append(
            "Missing data: "
            + "; ".join(
                f"for {_join(names)}, {_MISSING_WORDS.get(rule, rule).replace('patients', units(study))}"
                for rule, names in by_rule.items()
            )
            + "."
        )
    caliper = (
        f" within a caliper of {match.caliper:g} standard deviations of the "
        f"{'logit of the propensity score' if match.distance == 'logit' else 'propensity score'}"
        if match.caliper
        else " without a caliper"
    )
    s.append(_PARAGRAPH)
    s.append(
        f"A {'logistic' if analysis.link == 'logit' else 'probit'} regression model of exposure on "
        f"{_covariate_names(study, analysis.propensity)} gave the propensity score. Each exposed {units(study, False)} "
        f"was matched to up to {match.ratio} comparator {units(study)} by nearest-neighbour matching "
        f"{'with' if match.replace else 'without'} replacement{caliper}, "
        f"{_ORDER_WORDS.get(match.order, match.order).replace('patients', units(study))}"
        + (f", exactly on {_covariate_names(study, match.exact)}" if match.exact else "")
        + ". Balance was assessed with standardized mean differences (SMD), with an absolute SMD below 0.1 "
        "taken as balanced."
    )
    s.append(_PARAGRAPH)
    for name, spec in study.outcomes.items():
        s.append(_outcome_sentence(study, name, spec, index))
    cluster = (
        " with a cluster-robust (sandwich) variance clustered on matched set" if analysis.cluster_on_matched_set else ""
    )
    adjust = f" and adjusted for {_covariate_names(study, analysis.adjust)}" if analysis.adjust else ""
    s.append(
        f"Models were fitted in the matched cohort{cluster}, unadjusted{adjust}, using "
        f"{analysis.ties.capitalize()}'s method for tied event times; proportional hazards of the primary "
        "outcome's model were checked with the scaled Schoenfeld residual test (Kaplan-Meier time transform)."
    )
    s.append(_PARAGRAPH)
    if analysis.subgroups:
        s.append(
            f"Hazard ratios of the primary outcome were estimated within the levels of "
            f"{_covariate_names(study, analysis.subgroups)}, with the Wald test of the exposure-by-covariate "
            "interaction."
        )
    sensitivity = []
    if analysis.sensitivity_full_cohort:
        sensitivity.append("the adjusted models in the full eligible cohort")
    if analysis.sensitivity_iptw:
        sensitivity.append(
            "inverse probability of treatment weighting with weights for the average "
            "treatment effect in the treated (ATT) instead of matching"
        )
    if analysis.e_value:
        sensitivity.append("the E-value of the primary hazard ratio for unmeasured confounding (VanderWeele and Ding)")
    if sensitivity:
        s.append(f"Sensitivity analyses were {_join(sensitivity)}.")
    threshold = report.small_cell_threshold
    if threshold:
        s.append(
            f"Counts below {threshold} are reported as \u201c<{threshold}\u201d, a count that would give "
            "one back by subtraction as the range it could take, and summary statistics of fewer "
            f"than {threshold} patients are withheld."
        )
    s.append(
        "Analyses used retrocohort, whose estimates were verified against R survival, cmprsk and MatchIt "
        f"(R 4.2.2; survival 3.5-3, cmprsk 2.2-11, MatchIt 4.5.1); {conf} confidence intervals and two-sided "
        "p values are reported."
    )
    return " ".join(s).replace(f" {_PARAGRAPH} ", _PARAGRAPH).replace(f"{_PARAGRAPH} ", _PARAGRAPH)


def _ratio(model: str) -> str:
    return "sHR" if model.startswith("fine_gray") else "HR"


def _estimate_sentence(result: Any, outcome: str, model: str, population: str, lead: str) -> str:
    e = result.estimate(outcome, model, population)
    # every caller has looked the estimate up first; a missing one here is a bug in this module
    assert e is not None, f"no estimate for {outcome}/{model}/{population}"
    adjusted = "adjusted " if model.endswith("_adjusted") else "unadjusted " if model.endswith("unadjusted") else ""
    conf = f"{100 * result.study.analysis.conf_level:g}%"
    return (
        f"{lead} {adjusted}{_ratio(model)} {format_number(e.estimate)} ({conf} CI "
        f"{format_number(e.lower)}{DASH}{format_number(e.upper)}; {format_p_inline(e.p)})"
    )


def _skip_reason(result: Any, outcome: str, model: str, population: str) -> str | None:
    for s in getattr(result, "skipped", ()):
        if (s.outcome, s.model, s.population) == (outcome, model, population):
            return study_disclosure(result).text(s.reason)
    return None


_MODEL_WORDS = {
    "cox_unadjusted": "The unadjusted Cox model",
    "cox_adjusted": "The adjusted Cox model",
    "fine_gray_unadjusted": "The unadjusted Fine-Gray model",
    "fine_gray_adjusted": "The adjusted Fine-Gray model",
    "propensity": "The propensity score model",
    "matching": "Propensity score matching",
    "e_value": "The E-value",
    "subgroup": "The subgroup analysis",
}


def skipped_notes(result: Any) -> list[str]:
    """One sentence per model the run skipped, saying why (counts in the reason protected)."""
    disclosure = study_disclosure(result)
    names = outcome_names(result)
    notes = []
    for s in getattr(result, "skipped", ()):
        what = _MODEL_WORDS.get(s.model, f"The {label_of(MODEL_LABELS, s.model)}")
        population = label_of(POPULATION_LABELS, s.population).lower()
        reason = disclosure.text(s.reason).rstrip(".")
        if s.outcome in names:
            notes.append(
                f"{what} of {_lower(outcome_label(result, s.outcome))} ({population}) was not estimated: {reason}."
            )
        else:
            notes.append(f"{what} was not performed: {reason}.")
    return notes


def trial_skipped_notes(result: Any) -> list[str]:
    """One sentence per target-trial outcome that could not be estimated, with why (counts protected)."""
    disclosure = study_disclosure(result)
    return [
        f"The target trial emulation of {_lower(outcome_label(result, name))} was not estimated: "
        # the numerics' function name is for a programmer, not for the report's reader
        f"{disclosure.text(trial.skipped).removeprefix('clone_censor_weight frame: ').rstrip('.')}."
        for name, trial in (getattr(result, "target_trial", None) or {}).items()
        if trial.skipped
    ]


def _outcome_results(result: Any, outcome: str, exposed: str, comparator: str) -> list[str]:
    """The sentences of one outcome: its primary estimate (or the unadjusted one, or why none) and its test."""
    s: list[str] = []
    label = outcome_label(result, outcome)
    spec = result.study.outcomes[outcome]
    by = by_day(_lower(label), spec.horizon_days) + (
        f", with {spec.competing} as a competing event," if spec.competing else ""
    )
    _o, model, population = primary_key(result, outcome)
    unadjusted = model.replace("_adjusted", "_unadjusted")
    main = result.estimate(outcome, model, population)
    if main is not None:
        more = "more" if main.estimate > 1 else "less"
        s.append(
            _estimate_sentence(
                result,
                outcome,
                model,
                population,
                lead=f"In the matched cohort, {by} was {more} frequent with {exposed} than with {comparator}:",
            )
            + "."
        )
    else:
        reason = _skip_reason(result, outcome, model, population)
        if result.estimate(outcome, unadjusted, population) is not None:
            s.append(
                _estimate_sentence(
                    result, outcome, unadjusted, population, lead=f"In the matched cohort, {by} with {exposed} had"
                )
                + "."
                + (f" The adjusted model was not fitted ({reason.rstrip('.')})." if reason else "")
            )
        elif reason:
            s.append(f"The model of {_lower(label)} was not fitted ({reason.rstrip('.')}).")
    fitted = (getattr(result, "outcomes", None) or {}).get(outcome)
    test = getattr(fitted, "gray" if spec.competing else "logrank", None) if fitted is not None else None
    if test is not None and is_number(getattr(test, "p_value", None)):
        name = "Gray's test of the cumulative incidence" if spec.competing else "The log-rank test"
        s.append(f"{name} of {_lower(label)} gave {format_p_inline(test.p_value)}.")
    return s


def results_paragraph(result: Any) -> str:
    """The results paragraph in the abstract's style, from the result's numbers only.

    Parameters
    ----------
    result : StudyResult.

    Returns
    -------
    str: counts (small cells suppressed), the dose when the study declares one, each outcome's
    primary ratio with CI and p in the study's order, the sensitivity analyses, subgroups, skipped
    models in words and, beside ours, the published figures and (synthetic data) the planted truth.
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
        f"Of {format_display(disclosure.count('attrition_remaining_0'))} {units(result.study)} "
        f"with {index_label(result)}, "
        f"{format_display(disclosure.count(f'attrition_remaining_{last}'))} were eligible "
        f"({shown('exposed')} with {exposed}, {shown('comparator')} with {comparator})."
    )
    if counts.get("matched_exposed") is not None and result.matched is not None:
        s.append(
            f"After propensity score matching, {shown('matched_comparator')} {units(result.study)} with "
            f"{comparator} and {shown('matched_exposed')} with {exposed} were analysed."
        )
    else:
        reason = next(
            (disclosure.text(x.reason) for x in result.skipped if x.outcome in ("matching", "propensity")), None
        )
        s.append("Propensity score matching was not performed" + (f" ({reason.rstrip('.')})" if reason else "") + ".")
    dose = result.dose if result.study.dose is not None else None
    if dose and is_number(dose.get("mean")) and not is_small(dose.get("n", counts.get("exposed")), t):
        s.append(
            f"The dose ({dose.get('label', 'dose')}) in the exposure window was "
            f"{format_number(dose['mean'], 1)} \u00b1 {format_number(dose.get('sd'), 1)} "
            f"{dose.get('unit', '')} (mean \u00b1 SD)."
        )
    # SMDs against an arm of fewer patients than the threshold are withheld (as in balance.csv).
    after = None if disclosure.few_matched else result.balance_after
    if after is not None and "smd" in after.columns and len(after):
        worst = float(after["smd"].abs().max())
        s.append(
            f"After matching, every covariate had an absolute SMD of {format_number(worst, 2)} or less"
            + (" (all below 0.1)." if worst < 0.1 else ".")
        )
    for outcome in outcome_names(result):
        s.extend(_outcome_results(result, outcome, exposed, comparator))
    sensitivity = []
    for outcome in outcome_names(result):
        _o, model, _p = primary_key(result, outcome)
        for population, words in (("full", "in the full eligible cohort"), ("iptw", "with IPTW (ATT)")):
            e = result.estimate(outcome, model, population) or result.estimate(
                outcome, model.replace("_adjusted", "_unadjusted"), population
            )
            if e is not None:
                sensitivity.append(
                    f"{_lower(outcome_label(result, outcome))} {words} ({_ratio(e.model)} "
                    f"{format_number(e.estimate)}, {format_number(e.lower)}{DASH}"
                    f"{format_number(e.upper)})"
                )
    primary = getattr(result, "primary_estimate", True)
    if sensitivity and primary is None and (result.estimates or result.matched is not None):
        # the primary estimate is the study's answer: the sensitivity analyses must not read as one
        s.append(
            "The primary estimate could not be made, so the study's question is not answered; the sensitivity "
            "analyses below answer other questions and do not replace it."
        )
    if sensitivity:
        s.append(f"Sensitivity analyses gave {_join(sensitivity)}.")
    for sg in getattr(result, "subgroups", ()) or ():
        why = getattr(sg, "interaction_note", "") or "interaction not tested: a level had too little information"
        s.append(
            f"Within levels of {_lower(sg.label or sg.covariate)}, the interaction of exposure and "
            f"{_lower(sg.label or sg.covariate)} gave {format_p_inline(sg.p_interaction)}."
            if is_number(sg.p_interaction)
            else f"The interaction of exposure and {_lower(sg.label or sg.covariate)} was not tested "
            f"({why.removeprefix('interaction not tested: ')})."
        )
    ev = result.e_value or {}
    if is_number(ev.get("point")):
        ci = ev.get("ci")
        s.append(
            f"The E-value of the primary hazard ratio was {format_number(ev['point'])}"
            + (f" ({format_number(ci)} for the confidence limit closest to the null)" if is_number(ci) else "")
            + "."
        )
    published_words = []
    for outcome in outcome_names(result):
        published = published_for(result, outcome)
        if published:
            ratio = _ratio(primary_key(result, outcome)[1])
            published_words.append(
                f"{ratio} of {_lower(outcome_label(result, outcome))} {format_number(published[0])} "
                f"(95% CI {format_number(published[1])}{DASH}{format_number(published[2])})"
            )
    if published_words:
        s.append(f"The published study reported an {_join(published_words)}.")
    if result.synthetic:
        truths = []
        for outcome in outcome_names(result):
            truth = planted_for(result, outcome)
            if truth is not None:
                estimand = str(((result.planted or {}).get(outcome) or {}).get("estimand", "hr")).upper()
                estimand = "sHR" if estimand == "SHR" else estimand
                truths.append(f"{estimand} of {_lower(outcome_label(result, outcome))} {format_number(truth)}")
        s.append("These data are synthetic" + (f"; the planted effects were {_join(truths)}" if truths else "") + ".")
    # Matching already said it was skipped above; the model notes follow.
    s.extend(
        note
        for note, skip in zip(skipped_notes(result), result.skipped, strict=True)
        if not (skip.outcome in ("matching", "propensity") and result.matched is None)
    )
    return " ".join(s)


# --------------------------------------------------------------------------- target trial


def target_trial_protocol(result: Any) -> str:
    """The emulated trial's protocol in words: eligibility, strategies, grace window, censoring model, weights.

    Criteria left out of the trial (``not_applied``) are named with why; criteria that are applied but look
    past time zero are named as such, so the reader sees them.
    """
    study = result.study
    trial = study.analysis.target_trial
    if trial is None:
        return ""
    from ..spec.study import trial_covariates, trial_outcomes
    from .tables import strategy_labels

    index = index_label(result)
    names = strategy_labels(result)
    criteria = {c.name: c for c in study.criteria}
    s: list[str] = []
    s.append(
        f"Time zero of the emulated trial is {index}, and eligibility is decided there only: patients who meet "
        "the study's criteria at time zero are eligible, and nobody is excluded for what happens afterwards "
        "(a death inside the grace window included)."
    )
    if trial.not_applied:
        left = _join(
            [f"{_lower(criteria[n].label)} ({window_words(criteria[n].window, index)})" for n in trial.not_applied]
        )
        s.append(
            f"The criteria that look past time zero are not applied: {left}; excluding these patients would select "
            "on the future (immortal time bias)."
        )
    past = [c for c in study.criteria if c.name not in trial.not_applied and _past(c)]
    if past:
        listed = _join([f"{_lower(c.label)} ({window_words(c.window, index)})" for c in past])
        s.append(
            f"Warning: applied criteria that look past time zero: {listed}. They select on what happens after "
            "the index; list them in not_applied to leave them out, or keep them knowingly."
        )
    s.append(
        f"Each patient is cloned into two strategies: \u201c{names['start']}\u201d and \u201c{names['no_start']}\u201d "
        f"(grace window: {window_words(study.exposure.window, index)}). The first clone is censored at the "
        "end of the grace window if the exposure has not started by then; the second when the exposure starts "
        "inside it. Events before any deviation count for every clone still following its strategy, so a "
        "death inside the grace window without the exposure counts in both arms (Hern\u00e1n et al. 2016; "
        "Maringe et al. 2020)."
    )
    model = (
        f"a pooled logistic model over {trial.interval_hours:g}-hour intervals of the grace window"
        if trial.censoring_model == "pooled_logistic"
        else "a Cox model of the time to exposure start"
    )
    covariates = trial_covariates(study)
    tv = f", and time-varying {_covariate_names(study, list(trial.time_varying))}" if trial.time_varying else ""
    lower, upper = trial.truncate
    truncation = (
        f"truncated at percentiles {lower:g} and {upper:g} of each strategy's weights"
        if (lower, upper) != (0.0, 100.0)
        else "not truncated"
    )
    s.append(
        "Artificial censoring is corrected by inverse probability of censoring weights from "
        f"{model} with baseline {_covariate_names(study, list(covariates))}{tv}; weights are "
        f"{'stabilised' if trial.stabilised else 'not stabilised'} and {truncation}, and a strategy whose "
        f"effective sample size falls below {trial.min_ess:g} is not estimated."
    )
    if trial.past_index_covariates:
        late = _join(
            [
                f"{_lower(study.covariates[n].label or n)} ({window_words(study.covariates[n].window, index)})"
                for n in trial.past_index_covariates
            ]
        )
        s.append(
            f"Warning: baseline covariates of the censoring model measured past time zero, kept knowingly "
            f"(past_index_covariates): {late}. Their value can follow the start of the exposure."
        )
    seed = trial.seed if trial.seed is not None else study.study.seed
    replicates = next(
        (t.options.get("n_replicates") for t in (getattr(result, "target_trial", None) or {}).values() if t.options),
        trial.replicates,
    )
    horizons = sorted({float(study.outcomes[n].horizon_days) for n in trial_outcomes(study) if n in study.outcomes})
    at = _join([f"day {h:g}" for h in horizons]) if horizons else "the horizon"
    s.append(
        f"Estimands, at the horizon of each outcome ({at}): the risk under each strategy (weighted Kaplan-Meier; with "
        "a competing event, the weighted Aalen-Johansen cumulative incidence), the risk difference (start minus "
        "no start, in percentage points) and the risk ratio, and the hazard ratio of a weighted Cox model (start "
        "vs no start, robust variance clustered on the patient; cause-specific with a competing event). They are "
        "per-protocol effects: the effect of following one strategy rather than the other. There is no "
        "intention-to-treat contrast, because at time zero every patient is compatible with both strategies. "
        f"Intervals: percentile bootstrap over patients, {replicates} replicates, seed {seed}, the censoring "
        "model refitted in every replicate."
    )
    return " ".join(s)


def _past(crit: Any) -> bool:
    window = getattr(crit, "window", None)
    return window is not None and (window.calendar_day or window.end_hours > 0)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if is_number(x) else "\u2014"


def target_trial_line(result: Any, outcome: str) -> str:
    """One line of the printed summary: the emulated trial's RD, RR and HR with bootstrap intervals (or why not)."""
    trial = (getattr(result, "target_trial", None) or {}).get(outcome)
    if trial is None:
        return ""
    label = by_day(outcome_label(result, outcome), float(trial.horizon_days))
    if trial.bootstrap is None:
        reason = study_disclosure(result).text(trial.skipped or "").rstrip(".")
        return f"Target trial, {label}: not estimated ({reason})."
    iv = trial.bootstrap.intervals
    conf = f"{100 * result.study.analysis.conf_level:g}%"

    def ratio(key: str) -> str:
        return (
            f"{format_number(iv.loc[key, 'estimate'])} ({format_number(iv.loc[key, 'lower'])}{DASH}"
            f"{format_number(iv.loc[key, 'upper'])})"
        )

    rd = iv.loc["risk_difference"]
    hr = "cause-specific HR" if trial.competing else "HR"
    boot = trial.bootstrap

    def points(x: float) -> str:
        return f"{100 * x:.1f}" if is_number(x) else "\u2014"

    # a risk difference is in percentage points; " to " because its limits are often negative
    return (
        f"Target trial, {label}: risk {_pct(iv.loc['risk_start', 'estimate'])} (start) vs "
        f"{_pct(iv.loc['risk_no_start', 'estimate'])} (no start); RD {points(rd['estimate'])} points "
        f"({points(rd['lower'])} to {points(rd['upper'])}), RR {ratio('risk_ratio')}, {hr} {ratio('hazard_ratio')} "
        f"({conf} percentile bootstrap CI, {boot.n_replicates - boot.failed} of {boot.n_replicates} replicates, "
        f"seed {boot.seed})"
    )
