"""Round 3 of the new-user studies: six designs written from the docs only, run end to end on a synthetic EHR.

Each is checked (``retrocohort check --study``) and run (``retrocohort run``) through the command line on one
synthetic EHR of 600 stays with the tables of ``extra_tables`` and the rows of ``extra_rows`` added, built once
for the module. Designs and the features they use for the first time: an active comparator of prescriptions
with a washout and a lab-value outcome with death competing (``acei_hyperkalaemia``); an emulated target trial
of early KRT with a Cox censoring model (``early_krt_trial``); a diagnosis (ICD-9 and ICD-10) defining the
population with a one-year horizon, probit, 1:3 matching with replacement, exact matching, Breslow ties and
90% intervals (``hf_dobutamine_year``); ages, sex and an ED arrival as criteria with a dose-threshold active
comparator and chartevents covariates with a look-back (``older_women_fluids``); a procedure index per ICU
stay (``sedation_intubation``); two doses of one eMAR drug as the arms with a ``[dose]`` column
(``thiamine_dose_alcohol``, also run through ``retrocohort validate``). Two designs are counted by hand from
the raw tables (pandas, not the builder) and compared with the attrition and Table 1.
"""

from __future__ import annotations

import html
import json
import tomllib
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from retrocohort import cli
from retrocohort.cli import app
from retrocohort.errors import StudySpecError
from retrocohort.spec import load_study_file

from ..extra_tables import add_extra_tables
from .extra_rows import add_round3_rows, expected

HERE = Path(__file__).resolve().parent
STUDIES = sorted(HERE.glob("*.toml"))
runner = CliRunner()
H = pd.Timedelta(hours=1)

# Exit codes as docs/cli.md states them: 3 when the study's primary estimate could not be made.
# older_women_fluids: a small cohort (older women from the ED given a bolus) with too few deaths among the
# exposed for the matched primary model, while the full-cohort and IPTW models are fitted.
EXIT = {
    "acei_hyperkalaemia": 0,
    "early_krt_trial": 0,
    "hf_dobutamine_year": 0,
    "older_women_fluids": 3,
    "sedation_intubation": 0,
    "thiamine_dose_alcohol": 0,
}


def invoke(*args: object) -> tuple[int, str]:
    wide = Console(width=1000, highlight=False), Console(stderr=True, width=1000, highlight=False)
    with mock.patch.object(cli, "console", wide[0]), mock.patch.object(cli, "err_console", wide[1]):
        result = runner.invoke(app, [str(a) for a in args])
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, " ".join(text.split())


@pytest.fixture(scope="module")
def ehr(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("round3") / "ehr"
    code, text = invoke("synth", "--out", folder, "--stays", 600, "--seed", 3)
    assert code == 0, text
    add_extra_tables(folder)
    add_round3_rows(folder)
    return folder


@pytest.fixture(scope="module")
def runs(ehr, tmp_path_factory) -> dict[str, tuple[int, str, dict, Path]]:
    """Each study run once: exit code, terminal text, results.json, output folder."""
    done = {}
    for path in STUDIES:
        out = tmp_path_factory.mktemp("out") / path.stem
        code, text = invoke("run", path, "--mimic", ehr, "--out", out, "--replicates", 4, "--processes", 1)
        done[path.stem] = (code, text, json.loads((out / "results.json").read_text()), out)
    return done


def _attrition(results: dict) -> dict[str, dict]:
    return {row["step"]: row for row in results["attrition"]}


def _first_stays(ehr: Path) -> pd.DataFrame:
    """The first ICU stay of each adult patient with its death time (deathtime, else dod at 23:59:59)."""
    stays = expected(ehr).sort_values(["subject_id", "intime", "stay_id"]).groupby("subject_id").head(1)
    patients = pd.read_csv(ehr / "hosp" / "patients.csv.gz")
    admissions = pd.read_csv(ehr / "hosp" / "admissions.csv.gz", parse_dates=["admittime", "deathtime"])
    frame = stays.merge(admissions[["hadm_id", "admittime", "deathtime"]], on="hadm_id").merge(
        patients[["subject_id", "anchor_age", "anchor_year", "dod", "gender"]], on="subject_id"
    )
    frame["age"] = frame.anchor_age + frame.admittime.dt.year - frame.anchor_year
    frame["death"] = frame.deathtime.fillna(pd.to_datetime(frame.dod) + pd.Timedelta(seconds=86399))
    return frame


def _any_in(frame: pd.DataFrame, events: pd.DataFrame, lo: pd.Timedelta, hi: pd.Timedelta, *, open_lo=False):
    """Per row of ``frame``: an event of the same patient at ``intime + lo`` .. ``intime + hi`` (closed)."""
    hits = frame[["subject_id", "intime"]].merge(events[["subject_id", "time"]], on="subject_id")
    after = hits.time > hits.intime + lo if open_lo else hits.time >= hits.intime + lo
    inside = hits[after & (hits.time <= hits.intime + hi)]
    return frame.subject_id.isin(inside.subject_id).to_numpy()


def _agrees(shown: int | str, n: int) -> bool:
    """A count as the outputs show it (threshold 5) agrees with the exact count ``n``: equal, "<5" for 1-4, or
    a range "a-b" holding it (a count that would give a suppressed one back is shown as a range)."""
    if isinstance(shown, int):
        return shown == n
    if shown == "<5":
        return 0 < n < 5
    low, high = (int(v) for v in str(shown).split("-"))
    return low <= n <= high


def _table1_n(out: Path) -> tuple[int, int]:
    table1 = pd.read_csv(out / "tables" / "table1_before.csv", index_col=0)
    return int(table1.loc["n", "1"]), int(table1.loc["n", "0"])


def test_six_designs_unlike_earlier_rounds():
    assert len(STUDIES) == 6
    earlier = {load_study_file(p).study.name for p in [*HERE.parent.glob("*.toml"), *HERE.parent.glob("round2/*.toml")]}
    assert len(earlier) == 12
    assert not earlier & {load_study_file(p).study.name for p in STUDIES}


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_round3_study_checks_and_runs(path, ehr, runs):
    study = load_study_file(path)
    raw = tomllib.loads(path.read_text())
    code, text = invoke("check", ehr, "--study", path, "--no-count")
    assert code == 0, text

    code, text, results, out = runs[path.stem]
    assert code == EXIT[path.stem], text
    assert study.study.title in text and (out / "report.html").is_file()
    steps = [row["step"] for row in results["attrition"]]
    written = [c["name"] for c in raw.get("criteria", [])]
    assert [s for s in steps if s in written] == written
    by_step = _attrition(results)
    for crit in raw.get("criteria", []):
        assert crit["label"] in by_step[crit["name"]]["reason"]
    assert results["study"]["exposure_label"] == study.exposure.label
    assert results["counts"]["eligible"] > 0


def test_active_comparator_of_prescriptions_counted_by_hand(ehr, runs):
    code, text, results, out = runs["acei_hyperkalaemia"]
    frame = _first_stays(ehr)
    frame = frame[frame.age >= 18]
    rx = pd.read_csv(ehr / "hosp" / "prescriptions.csv.gz", parse_dates=["starttime"]).rename(
        columns={"starttime": "time"}
    )
    drug = rx.drug.str.lower()
    oral = rx.route.str.strip().str.upper().isin(["PO", "NG", "PO/NG"])
    acei = rx[drug.str.contains("lisinopril|enalapril|captopril|ramipril") & oral]
    ccb = rx[drug.str.contains("amlodipine|nifedipine") & oral]
    either = rx[drug.str.contains("lisinopril|enalapril|captopril|ramipril|amlodipine|nifedipine")]
    prior = _any_in(frame, either, -365 * 24 * H, -pd.Timedelta(seconds=1))
    assert _attrition(results)["new_user"]["excluded"] == int(prior.sum()) > 0
    frame = frame[~prior]
    frame = frame[~(frame.death <= frame.intime + 48 * H)]
    assert _attrition(results)["alive_48h"]["remaining"] == len(frame)
    on_acei, on_ccb = _any_in(frame, acei, 0 * H, 48 * H), _any_in(frame, ccb, 0 * H, 48 * H)
    steps = _attrition(results)
    assert _agrees(steps["both_arms"]["excluded"], int((on_acei & on_ccb).sum()))
    assert _agrees(steps["neither_arm"]["excluded"], int((~on_acei & ~on_ccb).sum()))
    frame = frame[on_acei != on_ccb]
    labs = pd.read_csv(ehr / "hosp" / "labevents.csv.gz", parse_dates=["charttime"]).rename(
        columns={"charttime": "time"}
    )
    high = labs[(labs.itemid == 50971) & (labs.valuenum >= 6.0001)]
    already = _any_in(frame, high, -48 * H, 0 * H)
    assert steps["prior_hyperkalaemia"]["excluded"] == int(already.sum()) > 0
    frame = frame[~already]
    exposed = int(frame.subject_id.isin(acei.subject_id).sum())
    on = _any_in(frame, acei, 0 * H, 48 * H)
    assert results["counts"]["eligible"] == len(frame)
    assert results["counts"]["exposed"] == int(on.sum()) <= exposed
    assert results["counts"]["comparator"] == int((~on).sum())
    assert _table1_n(out) == (int(on.sum()), int((~on).sum()))
    # the primary outcome competes with death: a Fine-Gray sHR, matched and adjusted
    assert code == 0 and any(
        (e["outcome"], e["model"], e["population"]) == ("hyperkalaemia", "fine_gray_adjusted", "matched")
        for e in results["estimates"]
    ), text


def test_two_doses_of_one_emar_drug_counted_by_hand(ehr, runs):
    code, text, results, out = runs["thiamine_dose_alcohol"]
    frame = _first_stays(ehr)
    frame = frame[frame.age >= 18]
    admissions = pd.read_csv(ehr / "hosp" / "admissions.csv.gz", parse_dates=["admittime"])
    codes = pd.read_csv(ehr / "hosp" / "diagnoses_icd.csv.gz", dtype={"icd_code": str})
    alcohol = codes[codes.icd_code.str.match(r"^(303|291|F10)")].merge(admissions[["hadm_id", "admittime"]])
    coded = _any_in(frame, alcohol.rename(columns={"admittime": "time"}), -30 * 24 * H, 0 * H)
    assert _attrition(results)["alcohol"]["remaining"] == int(coded.sum()) > 0
    frame = frame[coded]

    emar = pd.read_csv(ehr / "hosp" / "emar.csv.gz", parse_dates=["charttime"])
    detail = pd.read_csv(ehr / "hosp" / "emar_detail.csv.gz", dtype={"route": str, "parent_field_ordinal": str})
    product = detail[detail.parent_field_ordinal.notna()].copy()
    product["dose"] = pd.to_numeric(product.dose_given, errors="coerce")
    per_id = product.groupby("emar_id").agg(dose=("dose", "sum"), route=("route", "first"))
    given = emar[emar.medication.str.lower().str.contains("thiamine")].merge(per_id, on="emar_id")
    given = given[given.route.str.strip().str.upper() == "IV"].rename(columns={"charttime": "time"})
    administered = given[~given.event_txt.isin(["Not Given", "Held"])]

    def arms(rows: pd.DataFrame) -> tuple:
        high = _any_in(frame, rows[rows.dose >= 500], 0 * H, 24 * H, open_lo=True)
        standard = _any_in(frame, rows[rows.dose <= 200], 0 * H, 24 * H, open_lo=True)
        return high, standard

    high, standard = arms(administered)
    steps = _attrition(results)
    assert _agrees(steps["both_arms"]["excluded"], int((high & standard).sum()))
    assert _agrees(steps["neither_arm"]["excluded"], int((~high & ~standard).sum()))
    assert _agrees(results["counts"]["exposed"], int((high & ~standard).sum()))
    assert _agrees(results["counts"]["comparator"], int((standard & ~high).sum()))
    assert (high & ~standard).sum() > 50 and (standard & ~high).sum() > 50
    assert _table1_n(out) == (int((high & ~standard).sum()), int((standard & ~high).sum()))
    # a "Not Given" 500 mg row must not make a standard-dose patient high-dose too
    high_with_not_given, _ = arms(given)
    assert int((high_with_not_given & standard).sum()) > int((high & standard).sum())
    assert results["dose"]["label"] == "Thiamine given" and results["dose"]["unit"] == "mg"
    assert code == 0, text


def test_women_only_and_a_subgroup_with_one_level(ehr, runs):
    _, text, results, out = runs["older_women_fluids"]
    frame = _first_stays(ehr)
    frame = frame[(frame.age >= 65) & (frame.age <= 89)]
    steps = _attrition(results)
    assert steps["age"]["remaining"] == len(frame)
    # `values = ["F"]` on the sex built-in: once value_min = 0 / value_max = 0 was accepted and removed everyone
    assert steps["women"]["remaining"] == int((frame.gender == "F").sum()) > 0
    assert "Sex at the index is F" in steps["women"]["reason"]
    # the sex subgroup has a single level: no interaction, and every output says why
    (sex,) = [g for g in results["subgroups"] if g["covariate"] == "sex"]
    assert [level["level"] for level in sex["levels"]] == ["F"]
    assert sex["p_interaction"] is None
    assert "only one level (F)" in sex["interaction_note"]
    table = pd.read_csv(out / "tables" / "subgroups.csv", keep_default_na=False)
    assert "only one level (F)" in table.loc[table.covariate == "sex", "interaction_note"].iloc[0]
    assert "only one level (F)" in (out / "report.html").read_text()
    assert "Subgroups by sex (interaction not tested)" in text and "only one level (F)" in text
    prose = " ".join((out / "report.html").read_text().split())
    assert "The interaction of exposure and sex was not tested (only one level (F) of sex" in prose
    # sepsis has two levels, each too small: a different reason
    (sepsis,) = [g for g in results["subgroups"] if g["covariate"] == "sepsis"]
    assert "too little information" in sepsis["interaction_note"]


def test_table_one_describes_measured_values_of_an_indicator_covariate(runs):
    # temp_max has missing = "indicator": the models take 0 for the unmeasured third, Table 1 must not (it once
    # printed a highest temperature of 19.5 C with 0 missing)
    _, _, results, out = runs["older_women_fluids"]
    table1 = pd.read_csv(out / "tables" / "table1_before.csv", index_col=0, dtype=str)
    (row,) = [r for r in table1.index if r.startswith("Highest temperature")]
    means = [float(table1.loc[row, arm].split(" ")[0]) for arm in ("0", "1")]
    assert all(36 <= m <= 39 for m in means), means
    assert table1.loc[row, "missing"] not in ("0", "", None)
    notes = " ".join(results["notes"])
    assert "temp_max_missing" in notes


def test_primary_estimate_skipped_but_sensitivity_fitted_exits_3(runs):
    code, text, results, out = runs["older_women_fluids"]
    primary = ("death", "cox_adjusted", "matched")
    assert primary not in {(e["outcome"], e["model"], e["population"]) for e in results["estimates"]}
    assert primary in {(s["outcome"], s["model"], s["population"]) for s in results["skipped"]}
    assert results["estimates"], "some other model was fitted"
    assert code == 3
    assert "No primary estimate: Death by day 28, Cox, matched cohort, adjusted, could not be estimated" in text
    assert "The study's question is not answered" in text and "Exit code 3." in text
    assert "Nothing could be estimated" not in text
    prose = html.unescape(" ".join((out / "report.html").read_text().split()))
    assert "The primary estimate could not be made, so the study's question is not answered" in prose


def test_target_trial_of_early_krt(runs):
    code, text, results, _ = runs["early_krt_trial"]
    assert code == 0, text
    trial = results["target_trial"]["death"]
    assert trial["protocol"]["not_applied"] == ["died_within_48h"] and trial["skipped"] is None
    assert trial["bootstrap"]["replicates"] == 4 and trial["bootstrap"]["succeeded"] == 4
    assert "Target trial, 60-day mortality: risk" in text
    # the landmark analysis excludes deaths in the grace window, the trial does not
    assert _attrition(results)["died_within_48h"]["excluded"] not in (0, "0")


def test_options_of_the_heart_failure_design(runs):
    code, text, results, out = runs["hf_dobutamine_year"]
    assert code == 0, text
    assert not [e for e in results["estimates"] if e["population"] == "iptw"]
    assert results["e_value"] is None
    # conf_level = 0.9: every interval printed says 90%, not 95%
    assert "HR (90% CI)" in text and text.count("HR (95% CI)") == text.count("published HR (95% CI)")
    assert "adjusted HR (90% CI), matched" in (out / "report.html").read_text()
    assert "Hazard ratio (90% CI), log scale" in (out / "figures" / "forest.svg").read_text()
    # a label that states its horizon in words is printed as written
    assert "One-year mortality by day 365" not in text and "One-year mortality" in text


def test_a_procedure_index_per_icu_stay(ehr, runs):
    code, text, results, _ = runs["sedation_intubation"]
    assert code == 0, text
    e = expected(ehr)
    steps = _attrition(results)
    assert steps["index_event"]["remaining"] == int(e.intubated.sum())
    assert "ICU stays" in steps["index_event"]["reason"]
    assert {s["outcome"] for s in results["estimates"]} == {"death", "extubated"}


def test_procedure_index_per_stay_counted_with_duckdb(ehr, runs):
    """The per-stay design counted in SQL on the raw csv.gz files (DuckDB directly, not the builder)."""
    import duckdb

    _, text, results, out = runs["sedation_intubation"]
    t = {name: f"read_csv_auto('{ehr / name}.csv.gz')" for name in ("icu/procedureevents", "icu/inputevents")}
    t |= {name: f"read_csv_auto('{ehr / name}.csv.gz')" for name in ("hosp/admissions", "hosp/patients")}
    sql = f"""
    with idx as (
        select subject_id, hadm_id, stay_id, min(starttime) as t from {t["icu/procedureevents"]}
        where itemid = 224385 and coalesce(statusdescription, '') <> 'Rewritten' group by all),
    people as (
        select idx.*, p.anchor_age + year(a.admittime) - p.anchor_year as age,
               coalesce(a.deathtime, cast(p.dod as timestamp) + interval 86399 second) as death
        from idx
        join (select hadm_id, admittime, deathtime from {t["hosp/admissions"]}) a using (hadm_id)
        join (select subject_id, anchor_age, anchor_year, dod from {t["hosp/patients"]}) p using (subject_id)),
    kept as (select * from people where age >= 18 and (death is null or death > t + interval 6 hour)),
    drugs as (
        select subject_id, itemid, starttime from {t["icu/inputevents"]}
        where itemid in (222168, 221668) and coalesce(statusdescription, '') <> 'Rewritten'),
    arms as (
        select k.stay_id,
               bool_or(d.itemid = 222168 and d.starttime between k.t and k.t + interval 6 hour) as propofol,
               bool_or(d.itemid = 221668 and d.starttime between k.t and k.t + interval 6 hour) as midazolam
        from kept k left join drugs d using (subject_id) group by k.stay_id)
    select count(*) as alive,
           count(*) filter (where propofol and not midazolam) as exposed,
           count(*) filter (where midazolam and not propofol) as comparator,
           count(*) filter (where propofol and midazolam) as both_arms
    from arms
    """
    ((alive, exposed, comparator, both),) = duckdb.sql(sql).fetchall()
    steps = _attrition(results)
    assert steps["alive_6h"]["remaining"] == alive
    assert _agrees(steps["both_arms"]["excluded"], both)
    assert results["counts"]["exposed"] == exposed > 50 and results["counts"]["comparator"] == comparator > 50
    assert _table1_n(out) == (exposed, comparator)
    assert "ICU stays" in text


def test_design_check_of_a_round3_study(ehr, tmp_path):
    out = tmp_path / "check"
    args = ("validate", HERE / "thiamine_dose_alcohol.toml", "--mimic", ehr, "--out", out)
    code, text = invoke(*args, "--replicates", 3, "--effect", 0.7, "--processes", 1, "--seed", 2)
    assert code == 0, text
    table = pd.read_csv(out / "design_check.csv")
    assert set(table.effect) == {0.7} and (table.replicates == 3).all()
    primary = table[(table.outcome == "death") & (table.model == "cox_adjusted") & (table.population == "matched")]
    assert len(primary) == 1 and primary.fitted.iloc[0] == 3 and primary.truth.iloc[0] == pytest.approx(0.7)


# ----------------------------------------------------------------------------- refused as written first


def _variant(tmp_path: Path, stem: str, old: str, new: str) -> Path:
    text = (HERE / f"{stem}.toml").read_text()
    assert old in text
    path = tmp_path / f"{stem}.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_a_diagnosis_as_the_index_is_refused_with_the_pattern_to_use(tmp_path):
    path = _variant(
        tmp_path,
        "hf_dobutamine_year",
        '[index]\nconcept = "icu_admission"',
        '[index]\nconcept = "heart_failure"',
    )
    with pytest.raises(StudySpecError, match=r"index\.concept: concept 'heart_failure' reads hosp/diagnoses_icd") as e:
        load_study_file(path)
    assert 'concept = "icu_admission"' in str(e.value) and 'dated_at = "admission"' in str(e.value)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("value_min = 0\nvalue_max = 0", r"value_min: 'sex' is categorical .*values = \[\"F\"\]"),
        ('values = ["W"]', r"sex is recorded as 'F' or 'M'; \['W'\] matches nobody"),
        ("values = []", r"empty list selects nobody"),
        ("", r"needs values, e\.g\. values = \[\"F\"\]"),
        ('values = ["F"]\nwindow = "[-1h, 0h]"', r"takes no window; select its levels with values"),
        ("values = [1]", r"the levels are written as text"),
    ],
    ids=["range", "unknown-level", "empty", "nothing", "window", "number"],
)
def test_a_rule_on_sex_needs_its_levels(tmp_path, new, message):
    path = _variant(tmp_path, "older_women_fluids", 'values = ["F"]', new)
    with pytest.raises(StudySpecError, match=message):
        load_study_file(path)


def test_values_on_a_numeric_built_in_is_refused(tmp_path):
    path = _variant(tmp_path, "early_krt_trial", "value_min = 2", 'values = ["2", "3"]')
    with pytest.raises(StudySpecError, match=r"values selects levels of a categorical baseline built-in"):
        load_study_file(path)
