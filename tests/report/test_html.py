"""The HTML report: every section, self-contained, key numbers marked, no identifiers or dates."""

from __future__ import annotations

import base64
import math
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from retrocohort.report import render_html
from retrocohort.report.formatting import format_ratio
from retrocohort.report.html import estimate_key
from retrocohort.report.suppression import study_disclosure

SECTIONS = [
    "flow",
    "table1",
    "balance",
    "outcome-death",
    "outcome-krt_liberation",
    "results",
    "methods",
    "results-text",
    "skipped",
    "data-checks",
    "data-notes",
    "reproducibility",
]


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.keys, self.imgs, self.urls, self.texts = set(), {}, [], [], []
        self._key_stack: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if "data-key" in a:
            self.keys[a["data-key"]] = a.get("data-value")
        if tag == "img":
            self.imgs.append(a)
        for name in ("src", "href"):
            if name in a and not a[name].startswith(("data:", "#")):
                self.urls.append(a[name])

    def handle_data(self, data):
        self.texts.append(data)


def _parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


@pytest.fixture(scope="module")
def page(result):
    return render_html(result)


def test_every_section_and_figure(page, result):
    c = _parse(page)
    assert set(SECTIONS) <= c.ids
    figures = {img["data-figure"] for img in c.imgs}
    assert figures == {"flow", "love_plot", "ps_distribution", "km_death", "cif_krt_liberation", "forest"}
    for img in c.imgs:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img["alt"]


def test_self_contained(page):
    c = _parse(page)
    assert c.urls == []  # no external src/href
    assert "@media print" in page and "<style>" in page  # printable, inline CSS
    assert "http://" not in page and "https://" not in page and "@import" not in page and "url(" not in page


def test_no_identifier_or_date(page, result):
    text = page
    for column in ("subject_id", "stay_id", "hadm_id"):
        for value in result.cohort[column].astype(str).head(50):
            assert value not in text
        assert column not in text
    assert not re.search(r"\b(19|20|21)\d{2}-\d{2}-\d{2}\b", text)  # no dates (synthetic index times are 2150-...)


def test_key_numbers_equal_the_result(page, result):
    keys = _parse(page).keys
    shown = study_disclosure(result)  # the matched counts are ranges here (2 exposed left unmatched)
    for name in ("exposed", "comparator", "matched_exposed", "matched_comparator"):
        assert keys[name] == str(shown.count(name, result.counts[name]))
    assert keys["exposed"] == str(result.counts["exposed"])
    assert keys["indexed"] == str(result.attrition["remaining"].iloc[0])
    assert float(keys["dose_mean"]) == result.dose["mean"]
    for e in result.estimates:
        for field in ("estimate", "lower", "upper", "p"):
            assert float(keys[estimate_key(e.outcome, e.model, e.population, field)]) == getattr(e, field)
        n_shown = shown.estimate_counts[(e.outcome, e.population)][0]
        assert keys[estimate_key(e.outcome, e.model, e.population, "n")] == str(n_shown)
    main = result.estimate("death", "cox_adjusted", "matched")
    assert float(keys["primary/death"]) == main.estimate
    assert float(keys["primary/death_truth"]) == result.planted["death"]["value"]
    assert float(keys["test/death"]) == result.outcomes["death"].logrank.p_value
    assert float(keys["e_value_point"]) == result.e_value["point"]
    for term, row in result.balance_before.iterrows():
        assert float(keys[f"smd_before/{term}"]) == abs(row["smd"])
    assert format_ratio(main.estimate, main.lower, main.upper) in page
    assert float(keys["test/krt_liberation"]) == result.outcomes["krt_liberation"].gray.p_value


def test_synthetic_title_and_truth(page, result):
    assert "<title>SYNTHETIC DATA:" in page and 'data-key="synthetic_banner"' in page
    real = render_html(replace(result, synthetic=False, planted=None))
    assert "SYNTHETIC DATA" not in real and "planted" not in real.lower()


def test_published_beside_estimates(page):
    assert "Published (95% CI)" in page and "0.38 (0.18\u20130.83)" in page


def test_skipped_models_and_data_notes(page, result):
    assert result.skipped[0].reason in page
    assert result.notes[0] in page
    assert result.provenance["study_fingerprint"] in page
    assert result.provenance["data_fingerprint"] is None  # a frame, not a data folder: nothing to fingerprint


def test_small_cells_suppressed_everywhere(result):
    study = result.study.model_copy(
        update={"report": result.study.report.model_copy(update={"small_cell_threshold": 1000})}
    )
    # Figures are not redrawn here (their suppression is tested in test_figures); the page's text is.
    page = render_html(replace(result, study=study), figures={})
    keys = _parse(page).keys
    for name in ("indexed", "eligible", "exposed", "comparator", "matched_exposed", "matched_comparator"):
        assert keys[name] == "<1000"
    for e in result.estimates:
        assert keys[estimate_key(e.outcome, e.model, e.population, "n_events")] == "<1000"
    visible = " ".join(_parse(page).texts)
    assert f"n = {result.counts['comparator']}" not in visible
    assert f"{result.counts['comparator']} with no Mg" not in visible


def test_renders_when_matching_and_models_were_skipped(result):
    from retrocohort.study.results import SkippedModel

    bare = replace(
        result,
        matched=None,
        matching=None,
        balance_after=None,
        table_one_after=None,
        outcomes={},
        estimates=(),
        e_value=None,
        skipped=(SkippedModel("matching", "matching", "matched", "too few exposed patients"),),
    )
    page = render_html(bare)
    c = _parse(page)
    assert {img["data-figure"] for img in c.imgs} == {"flow", "love_plot", "ps_distribution"}
    assert 'data-figure-missing="km_death"' in page and "too few exposed patients" in page
    assert 'data-figure-missing="cif_krt_liberation"' in page
    assert "matched_exposed" not in c.keys


def test_tiny_cohort_hides_counts_in_reasons_and_the_dose(result):
    """A handful of patients: counts inside the cohort's reason text and the dose of <5 exposed are hidden."""
    att = result.attrition.copy()
    att.loc[att.index[-1], "reason"] = "2 Mg (magnesium sulfate (IV) started in (0h, 48h] of the index), 6 no Mg"
    counts = {**result.counts, "exposed": 2, "comparator": 6}
    dose = {**result.dose, "n": 2}
    page = render_html(replace(result, attrition=att, counts=counts, dose=dose), figures={})
    assert "<5 Mg (magnesium" in page.replace("&lt;", "<") and "2 Mg" not in page
    assert 'data-key="dose_mean"' not in page and "Dose not shown: fewer than 5 exposed patients" in page
    assert ">nan<" not in page and "(nan)" not in page


@pytest.mark.parametrize("name", ["second_vasopressor", "thiamine_sepsis", "vasopressin_shock"])
def test_another_study_has_its_own_sections_and_no_flagship_word(studies, name):
    result = studies[name]
    page = render_html(result)
    c = _parse(page)
    assert {f"outcome-{o}" for o in result.study.outcomes} <= c.ids
    visible = " ".join(c.texts)
    for word in ("CKRT", "Mg", "magnesium", "KRT liberation", "90-day"):
        assert word not in visible, word
    assert ('data-key="dose_mean"' in page) == (result.study.dose is not None)
    assert ("subgroups" in c.ids) == bool(result.study.analysis.subgroups)
    for g in result.subgroups:
        shown = c.keys[f"subgroup/{g.covariate}/p_interaction"]
        # not tested (a level with too little information): no value rather than a made-up one
        assert float(shown) == g.p_interaction if math.isfinite(g.p_interaction) else shown == ""
