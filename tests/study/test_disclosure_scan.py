"""Issue #10 (privacy): the small-cell rule holds in EVERY output, read back from the files, for every shipped study.

The study runs on tiny synthetic cohorts (1, 2 and 4 exposed patients, an arm
without events, a cohort whose unmatched arm is tiny, small attrition steps).
Every file written is read back (results.json, every CSV, report.html, the SVG
text of every figure; the PNGs are drawn from the same figures) together with
the printed summary, and scanned by a reader that knows the rule:

(a) no bare count between 1 and threshold - 1 in a count position (count
    columns and keys, the Table 1 ``n (%)`` cells, "n = 3" in figures, "3
    exposed" / "events (3)" in any text);
(b) no small count recoverable: every count the files show (exactly, as "<5" or
    as a range), from every file at once, goes into the sums that tie them
    together (attrition chain, eligible = exposed + unexposed, each arm =
    matched + unmatched, numbers at risk and the patients lost between them,
    events of the full cohort = matched + unmatched, Table 1's yes/no rows and
    their complements, the eligible line's "x exposed, y unexposed"). The
    attacker here is written independently of ``report.suppression``: interval
    propagation, then trying every value of every narrow unknown. A small true
    count the attacker pins to one value is a leak.

The truth (which counts are small) comes from the result object in memory; the
attacker sees only the files.
"""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from retrocohort import cli
from retrocohort.errors import RetrocohortError
from retrocohort.report.formatting import level_text
from retrocohort.report.suppression import report_times
from retrocohort.sources.synthetic import generate_synthetic
from retrocohort.study.outputs import RUN_MARKER, write_outputs
from retrocohort.study.pipeline import analyse_cohort, run_study
from tests.report._build import cohort_for, load, with_threshold

INF = math.inf
COUNT_WORDS = (
    r"exposed|unexposed|patients?|patient\(s\)|subjects?|stays?|admissions?|events?|deaths?|"
    r"controls?|treated|units?|liberations?|people|persons?|cases?|comparator"
)
# The result's count names and the scan's.
ALIAS = {"indexed": "screened", "comparator": "unexposed", "matched_comparator": "matched_unexposed"}


def make_cohort(n: int = 600, seed: int = 1, study: str = "magnesium_ckrt") -> SimpleNamespace:
    cohort = cohort_for(study, n=n, seed=seed)
    cohort.study = study  # which shipped study the frame is for (read by _study_for)
    return cohort


# --------------------------------------------------------------------------- cohorts


def tiny_cohort(
    n: int,
    n_exposed: int,
    seed: int,
    no_events: int | None = None,
    attrition: list[int] | None = None,
    study: str = "magnesium_ckrt",
) -> SimpleNamespace:
    """A random frame of a shipped study with exactly ``n_exposed`` exposed; ``no_events`` = arm without any event."""
    spec = load(study)
    cohort = cohort_for(study, n=n, seed=seed, n_exposed=n_exposed)
    data = cohort.data
    if no_events is not None:
        arm = data["exposed"] == no_events
        for name, outcome in spec.outcomes.items():
            data.loc[arm, f"{name}_status"] = 0
            data.loc[arm, f"{name}_time"] = float(outcome.horizon_days)
    log = cohort.attrition
    if attrition is not None:
        remaining = [*attrition, n]
        log = pd.DataFrame(
            {
                "step": [f"step {i}" for i in range(len(remaining))],
                "remaining": remaining,
                "excluded": [0] + [a - b for a, b in pairwise(remaining)],
                "reason": [""] + [f"excluded for reason {i}" for i in range(1, len(remaining))],
            }
        )
    return SimpleNamespace(attrition=log, data=data, notes=cohort.notes, study=study)


def _study_for(cohort, options: dict | None):
    """The cohort's shipped study with ``{"matching": {...}, "report": {...}}`` changes."""
    options = options or {}
    study = load(options.get("study", getattr(cohort, "study", "magnesium_ckrt")))
    if "matching" in options:
        analysis = study.analysis.model_copy(
            update={"matching": study.analysis.matching.model_copy(update=options["matching"])}
        )
        study = study.model_copy(update={"analysis": analysis})
    if "report" in options:
        study = with_threshold(study, options["report"]["small_cell_threshold"])
    return study


CASES = {
    # name: a cohort, or (cohort, study options)
    "one_exposed": lambda: tiny_cohort(12, 1, seed=1),
    "matched_with_replacement": lambda: (make_cohort(n=120, seed=6), {"matching": {"replace": True}}),
    "threshold_3": lambda: (tiny_cohort(40, 4, seed=3), {"report": {"small_cell_threshold": 3}}),
    "threshold_11": lambda: (make_cohort(n=120, seed=5), {"report": {"small_cell_threshold": 11}}),
    "two_exposed": lambda: tiny_cohort(30, 2, seed=2),
    "four_exposed": lambda: tiny_cohort(40, 4, seed=3),
    "no_deaths_exposed": lambda: tiny_cohort(50, 9, seed=4, no_events=1),
    "no_events_unexposed": lambda: tiny_cohort(40, 12, seed=8, no_events=0),
    # 1 exposed patient is left unmatched (ratio 2 without replacement); small exclusions mid-chain
    "one_unmatched": lambda: tiny_cohort(60, 7, 3, attrition=[70, 67, 64]),
    # the other shipped studies: an active comparator, a dose in mg, subgroups, other horizons and outcomes
    "active_comparator_three_exposed": lambda: tiny_cohort(40, 3, seed=5, study="second_vasopressor"),
    "active_comparator_threshold_11": lambda: (
        tiny_cohort(70, 9, seed=9, study="second_vasopressor"),
        {"report": {"small_cell_threshold": 11}},
    ),
    "thiamine_two_exposed": lambda: tiny_cohort(40, 2, seed=6, study="thiamine_sepsis"),
    "thiamine_subgroups_threshold_11": lambda: (
        tiny_cohort(80, 12, seed=10, study="thiamine_sepsis"),
        {"report": {"small_cell_threshold": 11}},
    ),
    "vasopressin_subgroups_threshold_11": lambda: (
        make_cohort(n=140, seed=11, study="vasopressin_shock"),
        {"report": {"small_cell_threshold": 11}},
    ),
    "vasopressin_four_exposed": lambda: tiny_cohort(45, 4, seed=12, study="vasopressin_shock"),
    # the emulated target trial (issue 11) with 3 patients starting in the grace window
    "trial_three_starters": lambda: trial_cohort(150, starters=3, seed=13),
}


def trial_cohort(n: int, starters: int, seed: int) -> SimpleNamespace:
    """A flagship frame whose target trial (run on the same frame) has ``starters`` patients starting."""
    cohort = make_cohort(n=n, seed=seed)
    data = cohort.data.copy()
    exposed = data.index[data["exposed"] == 1][:starters]
    data["exposure_start_days"] = np.nan
    data.loc[exposed, "exposure_start_days"] = 0.5
    cohort.data = data
    cohort.trial_cohort = cohort
    return cohort


# --------------------------------------------------------------------------- reading the files


def bounds_of(shown: object, threshold: int) -> tuple[float, float] | None:
    """What a reader takes from a shown count; None when it is not a count display."""
    if shown is None or (isinstance(shown, float) and math.isnan(shown)):
        return None
    text = str(shown).strip().replace(",", "").replace("\u00a0", " ")
    if re.fullmatch(r"\d+(\.0+)?", text):
        v = float(int(float(text)))
        return (v, v)
    if m := re.fullmatch(r"<\s*(\d+)", text):
        return (1.0, float(int(m.group(1)) - 1))
    if m := re.fullmatch(r"(\d+)\s*[-\u2013]\s*(\d+)", text):
        return (float(m.group(1)), float(m.group(2)))
    if m := re.fullmatch(r">=\s*(\d+)", text):
        return (float(m.group(1)), INF)
    return None


class _Tables(HTMLParser):
    """Tables of report.html by id (rows of cell texts), data-key/data-value pairs and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.keys: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if "data-key" in a and "data-value" in a:
            self.keys.append((a["data-key"], a["data-value"]))
        if tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def svg_texts(path: Path) -> list[str]:
    svg = path.read_text(encoding="utf-8")
    return [
        html.unescape(re.sub(r"<[^>]+>", "", t)).replace("\u00a0", " ")
        for t in re.findall(r"<text\b.*?</text>", svg, re.DOTALL)
    ]


# --------------------------------------------------------------------------- the reader's scan


class Scan:
    """Collects what the files show about each count and every bare small count in a count position."""

    def __init__(self, threshold: int) -> None:
        self.t = threshold
        self.shown: dict[str, list[tuple[str, object]]] = {}
        self.equations: list[tuple[str, tuple[str, ...]]] = []
        self.problems: list[str] = []
        self.truth: dict[str, float] = {}  # true counts (the test knows them; the attacker does not)

    def count(self, var: str, shown: object, where: str) -> None:
        """A count position: remember what it shows, and flag a bare small count."""
        b = bounds_of(shown, self.t)
        if b is not None and b[0] == b[1] and 0 < b[0] < self.t:
            self.problems.append(f"(a) {where}: bare small count {shown!r} ({var})")
        if b is not None:
            self.shown.setdefault(var, []).append((where, shown))

    def cell(self, shown: object, where: str) -> None:
        """A count position not tied to a named quantity."""
        self.count("_", shown, where)

    def text(self, text: str, where: str) -> None:
        """Free text: "3 exposed", "events (3)", "n = 3", "3 (42.9)" with a small count."""
        text = str(text).replace("\u00a0", " ")
        # a figure's lines are joined with " | ": a rule wrapped inside one box ("at | least 1 event(s)") is one phrase
        text = re.sub(r"\b(at|up)\s*\|\s*(least|most|to)\b", r"\1 \2", text)
        text = re.sub(r"\b(at least|at most|up to)\s*\|\s*", r"\1 ", text)
        # "up to 2 unexposed patients" is the matching ratio (a design option), not a count; nor is a
        # criterion's rule in an attrition reason ("at least 1 event(s) of ...").
        number = r"(\d{1,3}(?:,\d{3})+|\d+)"
        pats = [
            rf"(?<![\w.,<>=\-])(?<!up to )(?<!at least )(?<!at most ){number}\s+(?:{COUNT_WORDS})\b",
            rf"\b(?:{COUNT_WORDS})\s*\({number}\)",
            rf"\bn\s*=\s*{number}(?![\d.\-])",
            rf"(?<![\w.,<>=\-]){number} \(\s*\d+(?:\.\d+)?%?\s*\)",
        ]
        for pat in pats:
            for m in re.finditer(pat, text, re.IGNORECASE):
                if 0 < int(m.group(1).replace(",", "")) < self.t:
                    context = text[max(0, m.start() - 40) : m.end() + 20]
                    self.problems.append(f"(a) {where}: small count in text: ...{context}...")

    def known(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for var, items in self.shown.items():
            lo, hi = 0.0, INF
            for _where, shown in items:
                b = bounds_of(shown, self.t)
                lo, hi = max(lo, b[0]), min(hi, b[1])
            out[var] = (lo, hi)
        return out


def attack(known: dict[str, tuple[float, float]], equations, names) -> dict[str, tuple[float, float]]:
    """Interval propagation over total = sum(parts), all >= 0, then shaving of every narrow unknown."""
    every = set(names) | set(known) | {t for t, _ in equations} | {p for _, ps in equations for p in ps}
    start = {v: list(known.get(v, (0.0, INF))) for v in every}

    def propagate(b) -> bool:
        for _ in range(2000):
            moved = False
            for total, parts in equations:
                lo_sum = sum(b[p][0] for p in parts)
                hi_sum = sum(b[p][1] for p in parts)
                new = [max(b[total][0], lo_sum), min(b[total][1], hi_sum)]
                if new != b[total]:
                    b[total], moved = new, True
                for p in parts:
                    others_lo = lo_sum - b[p][0]
                    others_hi = sum(b[q][1] for q in parts if q != p) if len(parts) > 1 else 0.0
                    new = [max(b[p][0], b[total][0] - others_hi), min(b[p][1], b[total][1] - others_lo)]
                    if new != b[p]:
                        b[p], moved = new, True
                        lo_sum = sum(b[q][0] for q in parts)
                if any(b[v][0] > b[v][1] for v in (total, *parts)):
                    return False
            if not moved:
                return True
        return True

    assert propagate(start), "the files contradict themselves"
    for v in sorted(every):
        lo, hi = start[v]
        if lo < hi <= lo + 60:
            feasible = []
            for value in range(int(lo), int(hi) + 1):
                trial = {k: list(x) for k, x in start.items()}
                trial[v] = [float(value)] * 2
                if propagate(trial):
                    feasible.append(value)
            start[v] = [float(min(feasible)), float(max(feasible))]
            propagate(start)
    return {v: tuple(b) for v, b in start.items()}


# Every file an output folder may hold; a new one must be added to the scan before this test passes.
KNOWN_TABLES = {
    "attrition",
    "counts",
    "table1_before",
    "table1_after",
    "balance",
    "estimates",
    "key_results",
    "skipped_models",
    "tests",
    "ph_test",
    "propensity_model",
    "matching_counts",
    "e_value",
    "data_checks",
    "subgroups",
    "target_trial",
    "target_trial_weights",
    "target_trial_counts",
}
# Per outcome of the study: at_risk_<name>, km_<name> or cif_<name>.
PER_OUTCOME = ("at_risk_", "km_", "cif_")
# Tables without counts: what they hold is read as text for counts in words.
TEXT_ONLY = {"key_results", "tests", "ph_test", "propensity_model", "balance", "e_value"}


def read_outputs(scan: Scan, out: Path, summary: str, result) -> None:
    """Every file and the printed summary, as a reader sees them."""
    t = scan.t
    study = result.study
    per_outcome = {f"{prefix}{name}" for prefix in PER_OUTCOME for name in study.outcomes}
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    unknown = {
        f
        for f in files
        if not (
            f in ("results.json", "report.html", RUN_MARKER)
            or (re.fullmatch(r"tables/\w+\.csv", f) and (f[7:-4] in KNOWN_TABLES or f[7:-4] in per_outcome))
            or re.fullmatch(r"figures/\w+\.(png|svg)", f)
        )
    }
    assert not unknown, f"files the scan does not read: {unknown}"
    pngs = {f[8:-4] for f in files if f.endswith(".png")}
    assert pngs == {f[8:-4] for f in files if f.endswith(".svg")}, "every PNG has the SVG the scan reads"
    # the run marker (output-folder safety): the run id and when it was written, nothing about patients
    marker = json.loads((out / RUN_MARKER).read_text())
    if set(marker) != {"run_id", "written"}:
        scan.problems.append(f"{RUN_MARKER} holds more than the run id and time: {sorted(marker)}")
    # results.json
    doc = json.loads((out / "results.json").read_text())
    # data checks: rows or patients a data-quality rule touched, each a count (sources/quality.py)
    for row in doc["data_checks"]:
        scan.cell(row["count"], "results.json data_checks")
        scan.text(row["rule"], "results.json data_checks rule")
    for k, v in doc["counts"].items():
        scan.count(ALIAS.get(k, k), v, f"results.json counts.{k}")
    for i, row in enumerate(doc["attrition"]):
        scan.count(f"rem{i}", row["remaining"], "results.json attrition")
        scan.count(f"exc{i}", row["excluded"], "results.json attrition")
        scan.text(row.get("reason", ""), "results.json attrition reason")
    for e in doc["estimates"]:
        scan.count(f"{e['outcome']}/{e['population']}/n", e["n"], "results.json estimates")
        scan.count(f"{e['outcome']}/{e['population']}/events", e["n_events"], "results.json estimates")
        scan.text(e["note"], "results.json estimate note")
    dose = doc["dose"] or {}
    if "n" in dose:
        scan.count("exposed", dose["n"], "results.json dose.n")
    few_dosed = 0 < (result.dose or {}).get("n", 0) < t
    if few_dosed and (dose.get("mean") is not None or dose.get("sd") is not None):
        scan.problems.append("dose mean of fewer patients than the threshold is published")
    if study.dose is None and doc["dose"] is not None:
        scan.problems.append("results.json has a dose although the study declares none")
    for g in doc["subgroups"]:
        for level in g["levels"]:
            scan.count(f"sg/{g['covariate']}/{level['level']}/n", level["n"], "results.json subgroups")
            scan.count(f"sg/{g['covariate']}/{level['level']}/events", level["n_events"], "results.json subgroups")
    for s in doc["skipped"]:
        scan.text(s["reason"], "results.json skipped reason")
    for note in doc["notes"]:
        scan.text(note, "results.json note")
    if doc["e_value"]:
        scan.text(doc["e_value"]["method"], "results.json e_value method")
    for name, trial in doc.get("target_trial", {}).items():
        for k, v in trial["counts"].items():
            scan.count(f"tt/{name}/{k}", v, f"results.json target_trial.{name}.counts")
        for row in (trial["weights"] or {}).values():
            scan.cell(row["truncated_rows"], "results.json target_trial weights truncated_rows")
        for text in [trial["skipped"] or "", *trial["notes"]]:
            scan.text(text, "results.json target_trial text")
    # CSVs
    tables = out / "tables"
    read = {p.stem: pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(tables.glob("*.csv"))}
    for stem in TEXT_ONLY & set(read):
        scan.text(" ".join(" ".join(map(str, row)) for row in read[stem].itertuples(index=False)), f"{stem}.csv")
    for _, row in read["counts"].iterrows():
        scan.count(ALIAS.get(row["quantity"], row["quantity"]), row["value"], "counts.csv")
    for _, row in read.get("subgroups", pd.DataFrame(columns=["covariate", "level", "n", "n_events"])).iterrows():
        scan.count(f"sg/{row['covariate']}/{row['level']}/n", row["n"], "subgroups.csv")
        scan.count(f"sg/{row['covariate']}/{row['level']}/events", row["n_events"], "subgroups.csv")
    for i, row in read["attrition"].iterrows():
        scan.count(f"rem{i}", row["remaining"], "attrition.csv")
        scan.count(f"exc{i}", row["excluded"], "attrition.csv")
        scan.text(row.get("reason", ""), "attrition.csv reason")
    for _, row in read["estimates"].iterrows():
        scan.count(f"{row['outcome']}/{row['population']}/n", row["n"], "estimates.csv")
        scan.count(f"{row['outcome']}/{row['population']}/events", row["n_events"], "estimates.csv")
        scan.text(row["note"], "estimates.csv note")
    for _, row in read["data_checks"].iterrows():
        scan.cell(row["count"], "data_checks.csv")
        scan.text(row["rule"], "data_checks.csv rule")
    for _, row in read["skipped_models"].iterrows():
        scan.text(row["reason"], "skipped_models.csv")
    # the emulated target trial (issue 11): its counts as in results.json, rows clipped, words
    for _, row in read.get("target_trial_counts", pd.DataFrame()).iterrows():
        scan.count(f"tt/{row['outcome']}/{row['quantity']}", row["value"], "target_trial_counts.csv")
    for _, row in read.get("target_trial_weights", pd.DataFrame()).iterrows():
        scan.cell(row["truncated_rows"], "target_trial_weights.csv truncated_rows")
    for _, row in read.get("target_trial", pd.DataFrame()).iterrows():
        scan.text(f"{row['estimand']} {row['interval']}", "target_trial.csv")
    labels = {study.exposure.label: 1, study.comparator.label: 0}
    for name in study.outcomes:
        if f"at_risk_{name}" in read:
            frame = read[f"at_risk_{name}"].set_index("arm")
            for arm, row in frame.iterrows():
                for col, value in row.items():
                    scan.count(f"risk/{name}/{labels[arm]}@{float(col[4:]):g}", value, f"at_risk_{name}.csv")
        for stem in (f"km_{name}", f"cif_{name}"):
            if stem in read:
                frame = read[stem]
                for col in ("n_risk", "n_event", "n_censor"):
                    for _, row in frame.iterrows() if col in frame.columns else ():
                        var = f"risk/{name}/{labels[row['arm']]}@{float(row['time']):g}" if col == "n_risk" else "_"
                        scan.count(var, row[col], f"{stem}.csv {col}")
                assert frame["time"].nunique() <= 12, f"{stem}.csv holds more than the report times"
    if "matching_counts" in read:
        frame = read["matching_counts"].set_index(read["matching_counts"].columns[0])
        names = {"Treated": "exposed", "Control": "unexposed"}
        for arm, key in names.items():
            for row, var in (("All", key), ("Matched", f"matched_{key}"), ("Unmatched", f"unmatched_{key}")):
                scan.count(var, frame.loc[row, arm], "matching_counts.csv")
            for row in ("All (ESS)", "Matched (ESS)"):
                scan.cell(frame.loc[row, arm], "matching_counts.csv ESS")
    for when in ("before", "after"):
        if f"table1_{when}" in read:
            table_one(scan, read[f"table1_{when}"], when, result, f"table1_{when}.csv")
    if result.matched is not None:
        # Table 1 before minus after: the unmatched patients of an arm with that characteristic.
        for var in [v for v in scan.truth if v.startswith("before") and not v.endswith(":complement")]:
            after = "after" + var[len("before") :]
            if after in scan.truth:
                arm = var[len("before")]
                diff = f"{var}:unmatched"
                unmatched = "unmatched_exposed" if arm == "1" else "unmatched_unexposed"
                if unmatched not in scan.truth:
                    continue
                scan.truth[diff] = scan.truth[var] - scan.truth[after]
                scan.truth[f"{diff}:rest"] = scan.truth[unmatched] - scan.truth[diff]
                scan.equations += [(var, (after, diff)), (unmatched, (diff, f"{diff}:rest"))]
    if "balance" in read:
        small_before = 0 < min(result.counts["exposed"], result.counts["comparator"]) < t
        if small_before and any(v not in ("", "nan") for v in read["balance"]["smd_before"]):
            scan.problems.append("balance.csv: SMDs against an arm smaller than the threshold")
    if "e_value" in read:
        scan.text(read["e_value"]["method"].iloc[0], "e_value.csv method")
    # report.html
    page = _Tables()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    scan.text(" ".join(page.text), "report.html text")
    for key, value in page.keys:
        if key in ("indexed", "eligible", "exposed", "comparator", "matched_exposed", "matched_comparator"):
            scan.count(ALIAS.get(key, key), value, f"report.html data-key {key}")
        elif m := re.fullmatch(r"attrition_remaining_(\d+)", key):
            scan.count(f"rem{m.group(1)}", value, "report.html attrition")
        elif m := re.fullmatch(r"(\w+)/\w+/(\w+)/(n|n_events)", key):
            scan.count(f"{m.group(1)}/{m.group(2)}/{'n' if m.group(3) == 'n' else 'events'}", value, "report.html")
    for r, row in enumerate(page.tables.get("attrition-table", [])[1:]):
        scan.count(f"rem{r}", row[1], "report.html attrition table")
        if row[2]:
            scan.count(f"exc{r}", row[2], "report.html attrition table")
    for name in study.outcomes:
        at_risk = page.tables.get(f"at-risk-outcome-{name}", [])
        if at_risk:
            header = at_risk[0]
            for row in at_risk[1:]:
                for col, value in zip(header[1:], row[1:], strict=True):
                    day = float(re.sub(r"[^\d.]", "", col))
                    scan.count(f"risk/{name}/{labels[row[0]]}@{day:g}", value, "report.html at-risk table")
    subgroup_tables = [
        rows
        for tid, rows in page.tables.items()
        if tid.startswith("table") and rows and rows[0][:3] == ["Level", "Patients", "Events"]
    ]
    for g, rows in zip(result.subgroups, subgroup_tables, strict=False):
        for row in rows[1:]:
            scan.count(f"sg/{g.covariate}/{row[0]}/n", row[1], "report.html subgroup table")
            scan.count(f"sg/{g.covariate}/{row[0]}/events", row[2], "report.html subgroup table")
    for row in page.tables.get("table-one", []):
        for value in row[1:]:
            if re.match(r"^\s*\d+ \(", value):
                scan.cell(value.split(" (")[0], "report.html Table 1")
    # figures (SVG text)
    figures = out / "figures"
    for svg in sorted(figures.glob("*.svg")):
        texts = svg_texts(svg)
        scan.text(" | ".join(texts), svg.name)
        if svg.stem == "flow":
            flow(scan, texts, result)
        if svg.stem.startswith("km_"):
            svg_at_risk(scan, svg, result, svg.stem[3:])
        if svg.stem == "ps_distribution":
            arms = {study.exposure.label: "exposed", study.comparator.label: "unexposed"}
            seen: set[str] = set()
            for text in texts:
                if m := re.fullmatch(r"(.+) \(n = (.+)\)", text):
                    name = arms[m.group(1)]
                    var = name if name not in seen else f"matched_{name}"
                    seen.add(name)
                    scan.count(var, m.group(2), "ps_distribution.svg legend")
    # printed summary
    scan.text(summary, "printed summary")
    keys = {
        f"with an index event ({study.index.label})": "screened",
        "excluded": "excluded",
        "eligible": "eligible",
        f"{study.exposure.label} (exposed)": "exposed",
        f"{study.comparator.label} (comparator)": "unexposed",
        "matched, exposed": "matched_exposed",
        "matched, comparator": "matched_unexposed",
    }
    for line in summary.splitlines():
        for label, var in keys.items():
            m = re.match(rf"^\s*{re.escape(label)}\s*[│|]\s*(\S+)\s*$", line)
            if m and (result.matched is not None or not var.startswith("matched")):
                scan.count(var, m.group(1), "printed summary")


def table_one(scan: Scan, frame: pd.DataFrame, when: str, result, where: str) -> None:
    frame = frame.set_index(frame.columns[0])
    arms = (
        {"1": "exposed", "0": "unexposed"} if when == "before" else {"1": "matched_exposed", "0": "matched_unexposed"}
    )
    raw = result.table_one_before if when == "before" else result.table_one_after
    # The CSV's rows are in the study's words; tableone's own labels are in the same order.
    raw_labels = dict(zip(frame.index, raw.index, strict=True))
    for col, var in arms.items():
        n_shown = frame.loc["n", col]
        scan.count(var, n_shown, where + " n")
        n_true = float(raw.loc["n", col])
        for label, value in frame[col].items():
            if label == "n" or "(%)" not in str(label):
                if bounds_of(value, scan.t) is not None or re.match(r"^\s*\d+ \(", value):
                    scan.cell(value.split(" (")[0], f"{where} {label}")  # a level row of a many-level variable
                elif label != "n" and 0 < n_true < scan.t and value.strip() and value != "withheld":
                    scan.problems.append(f"{where}: statistic {value!r} of an arm of {n_true:g} patients")
                continue
            count = value.split(" (")[0]
            scan.cell(count, f"{where} {label}")
            raw_k = str(raw.loc[raw_labels[label], col]).split(" (")[0].strip()
            if not re.fullmatch(r"\d+(\.\d+)?", raw_k):
                continue  # a header row of a many-level variable
            true_k = float(raw_k)
            comp = f"{when}{col}:{label}:complement"
            k_var = f"{when}{col}:{label}"
            scan.count(k_var, count, where)
            scan.equations.append((var, (k_var, comp)))
            scan.truth[k_var], scan.truth[comp] = true_k, n_true - true_k
            if m := re.match(r"^\s*(\d+) \(\s*(\d+(?:\.\d+)?)", value):
                # the percentage bounds the arm's n
                k, pct = float(m.group(1)), float(m.group(2))
                if k > 0 and pct > 0:
                    lo = math.ceil(k * 100 / (pct + 0.05) - 1e-9)
                    hi = math.floor(k * 100 / max(pct - 0.05, 1e-9) + 1e-9)
                    scan.shown.setdefault(var, []).append((where + " %", f"{lo}-{hi}"))


def flow(scan: Scan, texts: list[str], result) -> None:
    values = [m.group(1) or m.group(2) for t in texts for m in re.finditer(r"\bn\s*(?:=\s*([^\s)]+)|(<\s*\d+))", t)]
    exclusions = [i for i in range(1, len(result.attrition)) if int(result.attrition["excluded"].iloc[i]) > 0]
    names = [
        "rem0",
        "excluded",
        *[f"exc{i}" for i in exclusions],
        f"rem{len(result.attrition) - 1}",
        "exposed",
        "unexposed",
    ]
    if result.matched is not None:
        names += ["matched_exposed", "unmatched_exposed", "matched_unexposed", "unmatched_unexposed"]
    assert len(values) == len(names), (values, names)
    for name, value in zip(names, values, strict=True):
        scan.count(name, value, "flow.svg")


def svg_at_risk(scan: Scan, svg: Path, result, name: str) -> None:
    text = svg.read_text(encoding="utf-8")
    times = report_times(result.study, float(result.study.outcomes[name].horizon_days))
    for m in re.finditer(r'<g id="at-risk-(\d+)-(\d+)">\s*<text[^>]*>(.*?)</text>', text, re.DOTALL):
        arm, j = int(m.group(1)), int(m.group(2))
        scan.count(f"risk/{name}/{arm}@{float(times[j]):g}", html.unescape(m.group(3)), f"{svg.name} at risk")


def trial_relations(scan: Scan, result) -> None:
    """The emulated trial's counts (issue 11): eligible at the index = started + not started; the trial's
    cohort = the study's eligible + those the not_applied criteria excluded; its starters hold the exposed."""
    truth = scan.truth
    steps = [str(s) for s in result.attrition["step"]]
    for name, trial in result.target_trial.items():
        if trial.n_eligible <= 0:
            continue
        tt = f"tt/{name}"
        truth[f"{tt}/eligible"], truth[f"{tt}/started"] = float(trial.n_eligible), float(trial.n_started)
        truth[f"{tt}/not_started"] = float(trial.n_eligible - trial.n_started)
        scan.equations.append((f"{tt}/eligible", (f"{tt}/started", f"{tt}/not_started")))
        if trial.bootstrap is not None:
            for strategy in ("start", "no_start"):
                truth[f"{tt}/events_{strategy}"] = float(trial.bootstrap.point.counts.loc[strategy, "events"])
        # counts are >= 0: a difference is a count only where the trial's number holds the study's
        for total, part, diff in (
            (f"{tt}/eligible", "eligible", f"{tt}/extra"),
            (f"{tt}/started", "exposed", f"{tt}/x"),
        ):
            if truth[total] >= truth[part]:
                truth[diff] = truth[total] - truth[part]
                scan.equations.append((total, (part, diff)))
        left_out = tuple(f"exc{i}" for i, s in enumerate(steps) if s in trial.not_applied)
        if left_out and f"{tt}/extra" in truth and truth[f"{tt}/extra"] == sum(truth[v] for v in left_out):
            scan.equations.append((f"{tt}/extra", left_out))


def relations(scan: Scan, result) -> None:
    """The sums that tie the counts together, and the true value of every quantity (hidden ones too)."""
    truth = scan.truth
    att = result.attrition
    n_rows = len(att)
    for i in range(n_rows):
        truth[f"rem{i}"] = float(att["remaining"].iloc[i])
        truth[f"exc{i}"] = float(att["excluded"].iloc[i])
        if i:
            scan.equations.append((f"rem{i - 1}", (f"rem{i}", f"exc{i}")))
    c = {ALIAS.get(k, k): v for k, v in result.counts.items()}
    truth.update({k: float(v) for k, v in c.items()})
    truth["excluded"] = truth["rem0"] - truth[f"rem{n_rows - 1}"]
    scan.equations += [
        ("screened", ("rem0",)),
        ("eligible", (f"rem{n_rows - 1}",)),
        ("rem0", (f"rem{n_rows - 1}", "excluded")),
        ("eligible", ("exposed", "unexposed")),
    ]
    for i in range(n_rows):
        reason = str(att["reason"].iloc[i])
        exposure, comparator = re.escape(result.study.exposure.label), re.escape(result.study.comparator.label)
        if m := re.match(rf"^(\d+) {exposure}.*?, (\d+) {comparator}", reason):
            truth[f"x{i}"], truth[f"y{i}"] = float(m.group(1)), float(m.group(2))
            scan.equations.append((f"rem{i}", (f"x{i}", f"y{i}")))
    for e in result.estimates:
        truth[f"{e.outcome}/{e.population}/n"] = float(e.n)
        truth[f"{e.outcome}/{e.population}/events"] = float(e.n_events)
        if e.population != "matched":
            scan.equations.append(("eligible", (f"{e.outcome}/{e.population}/n",)))
    if result.matched is not None:
        truth["unmatched_exposed"] = truth["exposed"] - truth["matched_exposed"]
        truth["unmatched_unexposed"] = truth["unexposed"] - truth["matched_unexposed"]
        truth["matched"] = truth["matched_exposed"] + truth["matched_unexposed"]
        scan.equations += [
            ("exposed", ("matched_exposed", "unmatched_exposed")),
            ("unexposed", ("matched_unexposed", "unmatched_unexposed")),
            ("matched", ("matched_exposed", "matched_unexposed")),
        ]
        for e in result.estimates:
            if e.population == "matched":
                scan.equations.append(("matched", (f"{e.outcome}/matched/n",)))
        for outcome in result.study.outcomes:
            if f"{outcome}/iptw/events" in truth and f"{outcome}/full/events" in truth:
                scan.equations.append((f"{outcome}/full/events", (f"{outcome}/iptw/events",)))
            full, sub = f"{outcome}/full/events", f"{outcome}/matched/events"
            if full in truth and sub in truth:
                truth[f"{outcome}/unmatched events"] = truth[full] - truth[sub]
                scan.equations.append((full, (sub, f"{outcome}/unmatched events")))
    for name, fitted in result.outcomes.items():
        if fitted.km is None or result.matched is None:
            continue
        times = report_times(result.study, float(fitted.horizon_days))
        at_risk = fitted.km.at_risk(times)
        for arm in (0, 1):
            previous = "matched_exposed" if arm else "matched_unexposed"
            for j, time in enumerate(times):
                var = f"risk/{name}/{arm}@{time:g}"
                truth[var] = float(at_risk.loc[arm].iloc[j])
                truth[f"{var} lost"] = truth[previous] - truth[var]
                scan.equations.append((previous, (var, f"{var} lost")))
                previous = var
    # Subgroup levels: each a count; the levels of a covariate add up to the population they were fitted in
    # (a reader who knows the design adds the relation; it is kept only where it holds).
    for g in result.subgroups:
        names_n, names_ev = [], []
        for _, row in g.levels.iterrows():
            level = level_text(row["level"])
            truth[f"sg/{g.covariate}/{level}/n"] = float(row["n"])
            truth[f"sg/{g.covariate}/{level}/events"] = float(row["n_events"])
            names_n.append(f"sg/{g.covariate}/{level}/n")
            names_ev.append(f"sg/{g.covariate}/{level}/events")
        population = "matched" if "matched" in g.model else "full"
        for total, parts in (
            (f"{g.outcome}/{population}/n", names_n),
            (f"{g.outcome}/{population}/events", names_ev),
            ("matched" if population == "matched" else "eligible", names_n),
        ):
            if total in truth and truth[total] == sum(truth[p] for p in parts):
                scan.equations.append((total, tuple(parts)))
    trial_relations(scan, result)


def scan_study(cohort, tmp_path: Path, name: str) -> tuple[list[str], dict]:
    cohort, options = cohort if isinstance(cohort, tuple) else (cohort, None)
    study = _study_for(cohort, options)
    # A data folder runs the whole pipeline (cohort builder included: its own attrition text).
    result = (
        run_study(cohort, study)
        if isinstance(cohort, Path)
        else analyse_cohort(cohort, study, trial_cohort=getattr(cohort, "trial_cohort", None), trial_replicates=4)
    )
    out = write_outputs(result, tmp_path / name)
    with cli.console.capture() as captured:
        cli.print_summary(result, out)
    summary = captured.get()
    scan = Scan(result.study.report.small_cell_threshold)
    relations(scan, result)
    read_outputs(scan, out, summary, result)
    return findings(scan), {"result": result, "out": out, "summary": summary}


def findings(scan: Scan) -> list[str]:
    problems = list(scan.problems)
    known = scan.known()
    for var, (lo, hi) in known.items():
        true = scan.truth.get(var)
        if var != "_" and true is not None and not (lo <= true <= hi):
            problems.append(f"{var}: shown {scan.shown[var]} does not hold the true {true:g}")
    derived = attack({k: v for k, v in known.items() if k != "_"}, scan.equations, scan.truth)
    for var, true in scan.truth.items():
        lo, hi = derived.get(var, (0, INF))
        shown_exactly = known.get(var, (0, INF))[0] == known.get(var, (0, INF))[1]
        if 0 < true < scan.t and lo == hi and not shown_exactly:
            problems.append(f"(b) {var} = {true:g} is recoverable from the files ({scan.shown.get(var, 'not shown')})")
    return problems


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_small_count_in_any_output_and_none_recoverable(case, tmp_path):
    problems, run = scan_study(CASES[case](), tmp_path, case)
    assert problems == [], "\n".join(problems)
    result = run["result"]
    t = result.study.report.small_cell_threshold
    # The case is what it claims to be: a small cell exists and the scan had files to read.
    unmatched = {
        k: result.counts[k] - result.counts.get(f"matched_{k}", result.counts[k]) for k in ("exposed", "comparator")
    }
    small = [k for k, v in {**result.counts, **unmatched}.items() if 0 < v < t] + [
        f"exc{i}" for i, v in enumerate(result.attrition["excluded"]) if 0 < v < t
    ]
    for fitted in result.outcomes.values():
        if fitted.km is not None:
            at_risk = fitted.km.at_risk(report_times(result.study, fitted.horizon_days)).to_numpy()
            small += [f"at risk {v}" for v in at_risk.ravel() if 0 < v < t]
    for g in result.subgroups:
        small += [f"subgroup {v}" for v in (*g.levels["n"], *g.levels["n_events"]) if 0 < v < t]
    small += [f"events {e.n_events}" for e in result.estimates if 0 < e.n_events < t]
    small += [f"trial started {tr.n_started}" for tr in result.target_trial.values() if 0 < tr.n_started < t]
    assert small or case.startswith("no_"), "the case must hold a small count"
    assert (run["out"] / "report.html").is_file() and "Cohort flow" in run["summary"]


@pytest.mark.parametrize(
    "stays, seed, study",
    [
        (200, 3, "magnesium_ckrt"),
        (None, None, "magnesium_ckrt"),
        (200, 3, "second_vasopressor"),
        (200, 3, "thiamine_sepsis"),
        (200, 3, "vasopressin_shock"),
    ],
    ids=["tiny_synthetic_ehr", "flagship_demo", "second_vasopressor", "thiamine_sepsis", "vasopressin_shock"],
)
def test_the_whole_pipeline_on_a_synthetic_ehr(stays, seed, study, tmp_path):
    """The cohort builder's own attrition log ("12 exposed (...), 321 unexposed") and the calibrated demo,
    whose 37 exposed of whom 34-36 are matched leave a few exposed unmatched."""
    options = {k: v for k, v in (("stays", stays), ("seed", seed)) if v is not None}
    generate_synthetic(tmp_path / "ehr", **options)
    problems, run = scan_study((tmp_path / "ehr", {"study": study}), tmp_path, "out")
    assert problems == [], "\n".join(problems)
    result = run["result"]
    eligible_line = result.attrition.loc[result.attrition["step"] == "eligible", "reason"]
    assert eligible_line.str.contains(result.study.exposure.label).all() and len(eligible_line) == 1
    # the synthetic data's planted truth of the study that ran, keyed by its own outcome names
    doc = json.loads((run["out"] / "results.json").read_text())
    assert doc["synthetic"] and doc["planted"] and set(doc["planted"]) <= set(result.study.outcomes)


def test_the_scan_catches_a_planted_leak(tmp_path):
    """A robust scan: an exact complement next to "<5" and a bare small count are both found."""
    cohort = tiny_cohort(40, 4, seed=3)
    problems, run = scan_study(cohort, tmp_path, "clean")
    assert problems == []
    out, result = run["out"], run["result"]
    counts = pd.read_csv(out / "tables" / "counts.csv", dtype=str)
    # (b) the unexposed count written exactly next to "<5" exposed and the eligible total
    counts.loc[counts["quantity"] == "comparator", "value"] = str(result.counts["comparator"])
    counts.to_csv(out / "tables" / "counts.csv", index=False)
    scan = Scan(5)
    relations(scan, result)
    read_outputs(scan, out, run["summary"], result)
    found = findings(scan)
    assert any(f.startswith("(b) exposed") for f in found), found
    # (a) a bare small count of a data-quality rule, and a run marker that says more than the run id
    checks = pd.DataFrame(
        [
            {
                "table": "icu/inputevents",
                "check": "inputevents_exact_duplicates",
                "rule": "exact duplicate rows",
                "action": "exact duplicate rows dropped",
                "count": "3",
                "unit": "rows",
            }
        ]
    )
    checks.to_csv(out / "tables" / "data_checks.csv", index=False)
    (out / RUN_MARKER).write_text(json.dumps({"run_id": "abc", "written": "2026-01-01", "subject_id": 1}))
    scan = Scan(5)
    relations(scan, result)
    read_outputs(scan, out, run["summary"], result)
    assert any(p.startswith("(a) data_checks.csv: bare small count '3'") for p in scan.problems), scan.problems
    assert any(p.startswith(f"{RUN_MARKER} holds more") for p in scan.problems), scan.problems
    # (a) a bare small count in a reason
    assert any("small count in text" in p for p in _text_problems("too few death events (3)"))
    assert any("small count in text" in p for p in _text_problems("1 exposed, 99 unexposed"))
    assert _text_problems("labevents 50960 within 48 h; <5 exposed") == []


def test_a_threshold_of_two_is_refused(tmp_path):
    """ "<2" can only be 1: such a threshold would print every suppressed count exactly."""
    from retrocohort.spec import load_study_file

    text = (load("magnesium_ckrt").source_text or "").replace("small_cell_threshold = 5", "small_cell_threshold = 2")
    assert "small_cell_threshold = 2" in text
    path = tmp_path / "threshold_two.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RetrocohortError, match="can only be 1"):
        load_study_file(path)


def _text_problems(text: str) -> list[str]:
    scan = Scan(5)
    scan.text(text, "probe")
    return scan.problems
