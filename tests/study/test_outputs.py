"""write_outputs: files, results.json schema, small-cell suppression, no identifiers, atomicity."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.report import figures as report_figures
from retrocohort.report.suppression import parse_count_display
from retrocohort.study.outputs import (
    OutputExistsError,
    results_document,
    validate_results_document,
    write_outputs,
)
from retrocohort.study.pipeline import analyse_cohort
from tests.report._build import STUDY_NAMES, cohort_for, load, with_threshold


def default_study():
    return load("magnesium_ckrt")


def make_cohort(n: int = 400, seed: int = 11, n_exposed: int | None = None):
    return cohort_for("magnesium_ckrt", n=n, seed=seed, n_exposed=n_exposed)


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(n=400, seed=11)


@pytest.fixture(scope="module")
def result(cohort):
    return analyse_cohort(cohort, default_study())


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "study-output"
    write_outputs(result, out)
    return out


def identifiers(data: pd.DataFrame) -> tuple[set[str], set[str]]:
    """Every subject/stay/admission id and every index date (ISO and slashed forms) of the cohort."""
    ids = set(pd.concat([data[c] for c in ("subject_id", "stay_id", "hadm_id")]).astype(int).astype(str))
    times = pd.to_datetime(data["index_time"])
    dates = set(times.dt.strftime("%Y-%m-%d")) | set(times.dt.strftime("%d/%m/%Y")) | set(times.dt.strftime("%m/%d/%Y"))
    return ids, dates


_DIGIT_RUN = re.compile(r"\d+")
_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4}")


def leaked(path: Path, ids: set[str], dates: set[str]) -> set[str]:
    """Ids (whole digit runs) and dates of the cohort found in a file, read as bytes."""
    text = path.read_bytes().decode("latin-1")
    return (set(_DIGIT_RUN.findall(text)) & ids) | (set(_DATE_LIKE.findall(text)) & dates)


def test_every_output_is_written(written):
    assert (written / "report.html").is_file() and (written / "results.json").is_file()
    tables = {p.stem for p in (written / "tables").glob("*.csv")}
    assert {
        "attrition",
        "counts",
        "table1_before",
        "table1_after",
        "balance",
        "estimates",
        "at_risk_death",
        "km_death",
        "cif_krt_liberation",
        "tests",
        "skipped_models",
        "key_results",
    } <= tables
    pngs = {p.stem for p in (written / "figures").glob("*.png")}
    svgs = {p.stem for p in (written / "figures").glob("*.svg")}
    assert pngs == svgs and {"flow", "love_plot", "km_death", "cif_krt_liberation"} <= pngs
    # No partial or retired folders are left beside the output.
    assert [p.name for p in written.parent.iterdir()] == [written.name]


def test_results_json_follows_schema_and_matches_result(written, result):
    doc = json.loads((written / "results.json").read_text())
    validate_results_document(doc)
    assert [a["step"] for a in doc["attrition"]] == list(result.attrition["step"])
    assert doc["counts"]["exposed"] == result.counts["exposed"]
    assert set(doc["counts"]) == set(result.counts)  # indexed, eligible, exposed, comparator, matched_*
    assert doc["dose"]["mean"] == pytest.approx(result.dose["mean"], rel=1e-12)
    assert (doc["dose"]["name"], doc["dose"]["unit"]) == ("mg_dose_meq", "mEq")
    assert list(doc["outcomes"]) == ["death", "krt_liberation"]  # the study's names, in its order
    assert doc["outcomes"]["death"]["primary"] and not doc["outcomes"]["krt_liberation"]["primary"]
    assert doc["outcomes"]["krt_liberation"]["competing"] == "death"
    assert doc["outcomes"]["death"]["test"]["p"] == result.outcomes["death"].logrank.p_value
    assert doc["outcomes"]["krt_liberation"]["test"]["test"] == "Gray"
    assert doc["study"]["index_label"] == "CKRT start" and doc["study"]["primary_outcome"] == "death"
    assert doc["published"]["death"] == {"model": "cox_adjusted", "estimate": 0.38, "lower": 0.18, "upper": 0.83}
    assert doc["published"]["krt_liberation"]["model"] == "fine_gray_adjusted"
    keys = {(e["outcome"], e["model"], e["population"]) for e in doc["estimates"]}
    assert keys == {(e.outcome, e.model, e.population) for e in result.estimates}
    main = next(
        e
        for e in doc["estimates"]
        if (e["outcome"], e["model"], e["population"]) == ("death", "cox_adjusted", "matched")
    )
    assert main["estimate"] == result.estimate("death", "cox_adjusted", "matched").estimate
    assert set(doc["balance"]) == {str(i) for i in result.balance_before.index}
    assert doc["provenance"]["study_fingerprint"] == result.study.fingerprint
    assert doc["e_value"]["point"] == result.e_value["point"]
    share = doc["e_value"]["outcome_proportion"]
    assert doc["e_value"]["transform"] == ("common" if share >= 0.15 else "rare")


def test_schema_validator_rejects_broken_documents(result):
    doc = json.loads(json.dumps(results_document(result)))
    validate_results_document(doc)
    for mutate in (
        lambda d: d.pop("counts"),
        lambda d: d["estimates"][0].update(population="weighted"),
        lambda d: d["attrition"][0].update(remaining="five"),
        lambda d: d["balance"].update(age={"smd_before": "x", "smd_after": 0.1}),
        lambda d: d.update(extra_key=1),
        lambda d: d["estimates"][0].update(outcome="death_90d"),  # not one of the study's outcomes
        lambda d: d["outcomes"]["krt_liberation"].update(primary=True),  # two primary outcomes
        lambda d: d["published"].update(mortality={"model": "cox_adjusted", "estimate": 1, "lower": 0.5, "upper": 2}),
        lambda d: d.update(schema_version="1.1"),
    ):
        broken = copy.deepcopy(doc)
        mutate(broken)
        with pytest.raises(InputError, match="schema"):
            validate_results_document(broken)


def test_no_identifier_or_index_date_in_any_output(written, cohort):
    ids, dates = identifiers(cohort.data)
    files = [p for p in written.rglob("*") if p.is_file()]
    assert len(files) > 15
    for path in files:
        assert not leaked(path, ids, dates), f"{path.name} contains identifiers or index dates"
    # The scan itself finds them when present (a planted leak is caught).
    probe = written.parent / "probe.txt"
    probe.write_text(f"x {next(iter(ids))} y {next(iter(dates))}")
    assert len(leaked(probe, ids, dates)) == 2
    probe.unlink()


def test_small_cells_suppressed_everywhere(tmp_path):
    cohort = make_cohort(n=40, seed=12, n_exposed=3)
    result = analyse_cohort(cohort, default_study())
    assert 0 < result.counts["exposed"] < 5
    out = write_outputs(result, tmp_path / "small")
    doc = json.loads((out / "results.json").read_text())
    assert doc["counts"]["exposed"] == "<5"
    counts_csv = pd.read_csv(out / "tables" / "counts.csv").set_index("quantity")["value"]
    assert counts_csv["exposed"] == "<5"
    # The exact small count appears nowhere as the exposed count: Table 1's n row is suppressed too.
    table1 = pd.read_csv(out / "tables" / "table1_before.csv", index_col=0)
    assert "<5" in table1.loc["n"].astype(str).tolist()

    # Threshold 0 disables suppression.
    study = with_threshold(default_study(), 0)
    unsuppressed = results_document(analyse_cohort(cohort, study))
    assert unsuppressed["counts"]["exposed"] == result.counts["exposed"]


def test_existing_folder_needs_force(tmp_path):
    # A tiny cohort keeps this test fast: few figures to draw.
    result = analyse_cohort(make_cohort(n=6, seed=5), default_study())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(OutputExistsError, match="--force"):
        write_outputs(result, out)
    # --force never deletes a folder that is not an earlier output.
    with pytest.raises(OutputExistsError, match="does not look like"):
        write_outputs(result, out, force=True)
    assert (out / "keep.txt").read_text() == "user file"
    (out / "results.json").write_text("{}")  # an earlier output
    write_outputs(result, out, force=True)
    assert not (out / "keep.txt").exists() and (out / "report.html").is_file()
    # 6 eligible is below the threshold: shown as "<5"-style or a range holding 6, never exactly.
    low, high = parse_count_display(json.loads((out / "results.json").read_text())["counts"]["eligible"])
    assert low <= 6 <= high
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _broken(*args, **kwargs):
    raise RuntimeError("injected failure while drawing a figure")


def test_failure_mid_way_leaves_no_complete_looking_report(result, tmp_path, monkeypatch):
    # The failure comes after the tables are written (figures stage).
    monkeypatch.setattr(report_figures, "flow_diagram", _broken)
    out = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="injected"):
        write_outputs(result, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "the partial folder must be removed"


def test_failed_forced_rewrite_keeps_the_earlier_report(result, written, tmp_path, monkeypatch):
    out = tmp_path / "earlier"
    shutil.copytree(written, out)
    before = (out / "results.json").read_text()
    monkeypatch.setattr(report_figures, "love_plot", _broken)
    with pytest.raises(RuntimeError):
        write_outputs(result, out, force=True)
    assert (out / "results.json").read_text() == before and (out / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]


def test_tiny_cohort_outputs_say_why_models_were_skipped(tmp_path):
    result = analyse_cohort(make_cohort(n=6, seed=5), default_study())
    out = write_outputs(result, tmp_path / "tiny")
    doc = json.loads((out / "results.json").read_text())
    validate_results_document(doc)
    assert doc["estimates"] == [] or all(e["population"] != "matched" for e in doc["estimates"])
    assert doc["skipped"] and all(s["reason"] for s in doc["skipped"])
    assert len(doc["attrition"]) == 5  # index, the flagship's three criteria, eligible
    skipped_csv = pd.read_csv(out / "tables" / "skipped_models.csv")
    # then one row per target-trial outcome not estimated (here: the trial's cohort was not given)
    trial_rows = skipped_csv["model"] == "target_trial"
    assert trial_rows.any()
    assert len(skipped_csv[~trial_rows]) == len(doc["skipped"])
    assert sorted(skipped_csv.loc[trial_rows, "outcome"]) == sorted(
        name for name, t in doc["target_trial"].items() if t["skipped"]
    )
    assert (out / "tables" / "table1_before.csv").is_file()
    assert (out / "report.html").is_file()


def test_cumulative_incidence_table_counts_are_suppressed(written, result):
    """cif_krt_liberation.csv and km_death.csv: the curves at the report times only, no per-event-time counts.

    The per-event-time tables leaked n_risk/n_event of 1-4 in every normal run, and even
    suppressed, consecutive numbers at risk differ by the few patients lost between them.
    """
    raw = result.outcomes["krt_liberation"].cif.table
    assert ((raw["n_event"] > 0) & (raw["n_event"] < 5)).any(), "fixture must have small event counts"
    days = {float(t) for t in result.study.analysis.km_times_days}
    for stem in ("cif_krt_liberation", "km_death"):
        table = pd.read_csv(written / "tables" / f"{stem}.csv", dtype=str)
        assert not {"n_event", "n_censor"} & set(table.columns), stem
        assert {float(t) for t in table["time"]} <= days, stem
        if "n_risk" in table.columns:
            numeric = pd.to_numeric(table["n_risk"], errors="coerce")
            assert not ((numeric > 0) & (numeric < 5)).any(), stem
    cif = pd.read_csv(written / "tables" / "cif_krt_liberation.csv")
    # A curve value is shown where the events behind it are not few: the last report time of each arm here.
    assert cif.groupby("arm")["cif"].apply(lambda s: s.notna().any()).all()


@pytest.mark.parametrize("name", [n for n in STUDY_NAMES if n != "magnesium_ckrt"])
def test_every_shipped_study_writes_its_own_outcomes(name, tmp_path):
    study = load(name)
    result = analyse_cohort(cohort_for(name, n=300, seed=3), study)
    out = write_outputs(result, tmp_path / name)
    doc = json.loads((out / "results.json").read_text())
    validate_results_document(doc)
    assert list(doc["outcomes"]) == list(study.outcomes)
    assert {o: v["horizon_days"] for o, v in doc["outcomes"].items()} == {
        o: float(v.horizon_days) for o, v in study.outcomes.items()
    }
    assert (doc["dose"] is None) == (study.dose is None)
    assert doc["published"] == {} and {e["outcome"] for e in doc["estimates"]} <= set(study.outcomes)
    assert len(doc["subgroups"]) == len(study.analysis.subgroups)
    tables = {p.stem for p in (out / "tables").glob("*.csv")}
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    for o, spec in study.outcomes.items():
        stem = f"{'cif' if spec.competing else 'km'}_{o}"
        assert stem in tables and stem in figures
    assert ("subgroups" in tables) == bool(study.analysis.subgroups) == ("subgroups" in figures)
    key = pd.read_csv(out / "tables" / "key_results.csv")
    assert key["outcome"].tolist() == list(study.outcomes) and key["published"].isna().all()
    text = "".join(p.read_text(errors="replace") for p in (out / "tables").glob("*.csv"))
    text += (out / "results.json").read_text()
    for word in ("death_90d", "krt_liberation", "CKRT", "Mg", "mEq"):
        assert word not in text, word
