"""The synthetic EHR: layout, determinism, raw evidence of every planted category, calibration."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.sources import _synthetic_model as model
from retrocohort.sources.synthetic import (
    DEFAULT_SEED,
    DEFAULT_STAYS,
    MIMIC_IV_V22_HEADERS,
    PUBLISHED_FLOW,
    generate_synthetic,
)

MEQ_PER_GRAM = 8.12  # seed-study.md: MgSO4.7H2O, 1 g = 8.12 mEq


@pytest.fixture(scope="module")
def default_ehr(tmp_path_factory):
    """The calibrated default synthetic EHR (10,000 ICU stays, seed 20231103)."""
    return generate_synthetic(tmp_path_factory.mktemp("default"))


def _con(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in MIMIC_IV_V22_HEADERS:
        name = table.split("/")[1]
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{path}/{table}.csv.gz', header=true)")
    return con


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# layout


def test_every_file_has_the_mimic_iv_v22_header(default_ehr):
    written = {str(p.relative_to(default_ehr.path)).removesuffix(".csv.gz") for p in default_ehr.path.rglob("*.csv.gz")}
    assert written == set(MIMIC_IV_V22_HEADERS)
    for table, header in MIMIC_IV_V22_HEADERS.items():
        with gzip.open(default_ehr.path / f"{table}.csv.gz", "rt") as f:
            first = f.readline().rstrip("\n")
        assert first == ",".join(header), table
    # The one MIMIC-IV v2.2 file whose header is partly upper case (create.sql names it lower case).
    assert MIMIC_IV_V22_HEADERS["icu/procedureevents"][-2:] == ("ORIGINALAMOUNT", "ORIGINALRATE")


def test_timestamps_and_dates_are_written_as_mimic_iv_text(default_ehr):
    con = duckdb.connect()
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    date = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    checks = {
        "hosp/admissions": ["admittime", "dischtime", "deathtime"],
        "hosp/labevents": ["charttime"],
        "icu/inputevents": ["starttime", "endtime"],
        "icu/procedureevents": ["starttime", "endtime"],
        "icu/chartevents": ["charttime"],
        "icu/icustays": ["intime", "outtime"],
    }
    for table, cols in checks.items():
        df = con.execute(
            f"SELECT {', '.join(cols)} FROM read_csv('{default_ehr.path}/{table}.csv.gz', "
            "header=true, all_varchar=true) USING SAMPLE 2000 ROWS (reservoir, 1)"
        ).df()
        for c in cols:
            values = df[c].dropna()
            assert len(values) > 0 or c == "deathtime"
            assert values.map(lambda v: bool(stamp.match(v))).all(), (table, c, values.head())
    dod = con.execute(
        f"SELECT dod FROM read_csv('{default_ehr.path}/hosp/patients.csv.gz', header=true, "
        "all_varchar=true) WHERE dod IS NOT NULL"
    ).df()["dod"]
    assert len(dod) > 0 and dod.map(lambda v: bool(date.match(v))).all()


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    a = generate_synthetic(tmp_path / "a", stays=800, seed=11)
    b = generate_synthetic(tmp_path / "b", stays=800, seed=11)
    c = generate_synthetic(tmp_path / "c", stays=800, seed=12)
    assert _digest(a.path) == _digest(b.path)
    da, dc = _digest(a.path), _digest(c.path)
    assert da["hosp/labevents.csv.gz"] != dc["hosp/labevents.csv.gz"]
    assert a.truth == b.truth


def test_parquet_holds_the_same_rows_as_csv(tmp_path):
    csv = generate_synthetic(tmp_path / "csv", stays=500, seed=3)
    parquet = generate_synthetic(tmp_path / "pq", stays=500, seed=3, fmt="parquet")
    again = generate_synthetic(tmp_path / "pq2", stays=500, seed=3, fmt="parquet")
    assert _digest(parquet.path) == _digest(again.path)
    con = duckdb.connect()
    for table in ("hosp/patients", "icu/procedureevents", "hosp/labevents"):
        a = con.execute(f"SELECT * FROM read_csv('{csv.path}/{table}.csv.gz', header=true, all_varchar=true)").df()
        b = con.execute(f"SELECT * FROM read_parquet('{parquet.path}/{table}.parquet')").df()
        assert list(b.columns) == list(MIMIC_IV_V22_HEADERS[table])
        assert len(a) == len(b) and len(a) > 0
        assert (a["subject_id"].astype("int64").to_numpy() == b["subject_id"].to_numpy()).all()


def test_bad_options_name_the_value_and_the_choices(tmp_path):
    with pytest.raises(InputError, match=r"fmt='xlsx'.*csv\.gz.*parquet"):
        generate_synthetic(tmp_path, fmt="xlsx")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="stays=50"):
        generate_synthetic(tmp_path, stays=50)
    with pytest.raises(InputError, match="cannot hold"):
        generate_synthetic(tmp_path, stays=500, ckrt_patients=400)


def test_never_deletes_a_folder_it_did_not_write(tmp_path):
    real = tmp_path / "mimic" / "hosp"
    real.mkdir(parents=True)
    (real / "patients.csv.gz").write_bytes(b"not ours")
    with pytest.raises(InputError, match="not written by this generator"):
        generate_synthetic(tmp_path / "mimic", stays=300)
    assert (real / "patients.csv.gz").read_bytes() == b"not ours"
    # an earlier synthetic EHR is replaced
    first = generate_synthetic(tmp_path / "syn", stays=300, seed=1)
    second = generate_synthetic(tmp_path / "syn", stays=300, seed=2)
    assert json.loads((second.path / "SYNTHETIC.json").read_text())["seed"] == 2 == second.seed != first.seed


# ---------------------------------------------------------------------------------------------
# magnesium rows


def test_every_222011_bag_has_one_227523_carrier_with_its_orderid(default_ehr):
    con = _con(default_ehr.path)
    pairs = con.execute("""
        SELECT m.orderid, count(c.orderid) AS carriers, any_value(m.starttime = c.starttime) AS same_start,
               any_value(m.subject_id = c.subject_id) AS same_subject, any_value(c.amountuom) AS uom
        FROM inputevents m LEFT JOIN inputevents c ON c.orderid = m.orderid AND c.itemid = 227523
        WHERE m.itemid = 222011 GROUP BY m.orderid""").df()
    assert len(pairs) > 100
    assert (pairs.carriers == 1).all() and pairs.same_start.all() and pairs.same_subject.all()
    assert (pairs.uom == "mL").all()
    orphans = con.execute("""
        SELECT count(*) FROM inputevents c WHERE c.itemid = 227523
        AND NOT EXISTS (SELECT 1 FROM inputevents m WHERE m.itemid = 222011 AND m.orderid = c.orderid)""").fetchone()[0]
    assert orphans == 0
    # 227524 (OB-GYN, grams) bags exist and stand alone
    obgyn = con.execute("""SELECT count(*), count(c.orderid) FROM inputevents m LEFT JOIN inputevents c
                           ON c.orderid = m.orderid AND c.itemid = 227523 WHERE m.itemid = 227524""").fetchone()
    assert obgyn[0] > 0 and obgyn[1] == 0


def test_planted_dose_is_the_sum_of_gram_bags_in_the_window(default_ehr):
    con = _con(default_ehr.path)
    planted = default_ehr.planted
    con.register("planted", planted[planted.eligible][["subject_id", "index_time", "mg_dose_meq", "exposed"]])
    df = con.execute("""
        SELECT p.subject_id, any_value(p.mg_dose_meq) AS planted, any_value(p.exposed) AS exposed,
               coalesce(sum(i.amount), 0) AS grams, list(i.amount) AS bags
        FROM planted p LEFT JOIN inputevents i ON i.subject_id = p.subject_id AND i.itemid IN (222011, 227524)
             AND i.starttime > p.index_time AND i.starttime <= p.index_time + INTERVAL 48 HOUR
             AND i.statusdescription <> 'Rewritten'
        GROUP BY p.subject_id""").df()
    # superseded ("Rewritten") orders exist beside the given ones and are not part of the dose
    rewritten = con.execute("""SELECT count(*) FROM inputevents WHERE itemid = 222011
                               AND statusdescription = 'Rewritten'""").fetchone()[0]
    assert rewritten > 0
    assert np.allclose(df.grams * MEQ_PER_GRAM, df.planted)
    assert ((df.grams > 0) == (df.exposed == 1)).all()
    bags = set(
        con.execute("""SELECT DISTINCT amount FROM inputevents i JOIN planted p USING (subject_id)
                              WHERE i.itemid IN (222011, 227524) AND p.exposed = 1""").df()["amount"]
    )
    assert bags <= {1.0, 2.0, 4.0} and {2.0, 4.0} <= bags
    exposed = df[df.exposed == 1].planted
    assert len(exposed) == PUBLISHED_FLOW["exposed"]
    assert abs(exposed.mean() - 24.4) < 1.0 and abs(exposed.std() - 10.6) < 1.0


# ---------------------------------------------------------------------------------------------
# raw evidence of each planted category


def _index_facts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("""
        WITH ev AS (
            SELECT subject_id, starttime AS t, 'proc' AS src FROM procedureevents
            WHERE itemid IN (225802, 225803, 225809, 225955)
            UNION ALL SELECT subject_id, charttime, 'chart' FROM chartevents WHERE itemid = 227290)
        SELECT subject_id, min(t) AS index_time, min(t) FILTER (WHERE src = 'proc') AS first_proc
        FROM ev GROUP BY 1""").df()


def test_each_planted_category_leaves_its_raw_evidence(default_ehr):
    con = _con(default_ehr.path)
    planted = default_ehr.planted.copy()
    facts = _index_facts(con).set_index("subject_id")
    p = planted.set_index("subject_id").join(facts, rsuffix="_raw")
    # index = first CKRT evidence, from procedureevents or (for a few) an earlier CRRT-mode chart
    assert (p.index_time == p.index_time_raw).all()
    chart_first = p[p.crrt_chart_first]
    assert len(chart_first) >= 5 and (chart_first.first_proc > chart_first.index_time).all()
    assert (p.loc[~p.crrt_chart_first, "first_proc"] == p.loc[~p.crrt_chart_first, "index_time"]).all()

    con.register("planted", planted[["subject_id", "index_time", "category", "hadm_id"]])
    raw = (
        con.execute("""
        SELECT p.subject_id, p.category,
          (SELECT count(*) FROM labevents l WHERE l.subject_id = p.subject_id AND l.itemid = 50960
             AND CAST(l.charttime AS DATE) = CAST(p.index_time AS DATE)) AS mg_index_day,
          (SELECT min(date_diff('minute', p.index_time, a.deathtime)) / 60.0 FROM admissions a
             WHERE a.subject_id = p.subject_id AND a.deathtime IS NOT NULL) AS death_h,
          (SELECT date_diff('hour', p.index_time, CAST(pt.dod AS TIMESTAMP)) FROM patients pt
             WHERE pt.subject_id = p.subject_id) AS dod_h,
          (SELECT any_value(pt.anchor_age + year(a.admittime) - pt.anchor_year) FROM patients pt JOIN admissions a
             ON a.subject_id = pt.subject_id AND a.hadm_id = p.hadm_id WHERE pt.subject_id = p.subject_id) AS age,
          (SELECT count(*) FROM (
             SELECT subject_id, starttime, endtime FROM inputevents
             WHERE itemid IN (221906, 221289, 222315, 221749, 221662)
             UNION ALL SELECT subject_id, starttime, endtime FROM procedureevents WHERE itemid = 225792) s
           WHERE s.subject_id = p.subject_id AND s.starttime <= p.index_time + INTERVAL 48 HOUR
             AND s.endtime >= p.index_time - INTERVAL 48 HOUR) AS support_rows,
          (SELECT count(*) FROM (
             SELECT subject_id, starttime, endtime FROM inputevents
             WHERE itemid IN (221906, 221289, 222315, 221749, 221662)
             UNION ALL SELECT subject_id, starttime, endtime FROM procedureevents WHERE itemid = 225792) s
           WHERE s.subject_id = p.subject_id AND s.starttime <= p.index_time
             AND s.endtime >= p.index_time) AS support_at_index
        FROM planted p""")
        .df()
        .set_index("category")
    )

    elig = raw.loc[["eligible_exposed", "eligible_unexposed"]]
    assert (elig.mg_index_day == 1).all() and (elig.age >= 18).all() and (elig.support_at_index > 0).all()
    # survivors of the 48 h window die (if at all) after 60 h; a dod-only death is > 4.5 days out
    assert (elig.death_h.isna() | (elig.death_h > 60)).all()
    dod_only = elig[elig.death_h.isna() & elig.dod_h.notna()]
    assert len(dod_only) > 0 and (dod_only.dod_h > 72).all()  # midnight of dod, even, is past 48 h + a day
    no_mg = raw.loc["excluded_no_mg_on_index_day"]
    assert (no_mg.mg_index_day == 0).all() and (no_mg.support_at_index > 0).all()
    early = raw.loc["excluded_died_within_48h"]
    assert ((early.death_h >= 10) & (early.death_h <= 40)).all() and (early.mg_index_day == 1).all()
    minors = raw.loc["not_screened_minor"]
    assert (minors.age < 18).all() and (minors.support_at_index > 0).all()
    unsupported = raw.loc["not_screened_no_support"]
    assert (unsupported.support_rows == 0).all() and (unsupported.age >= 18).all()


def test_most_stays_never_get_ckrt_and_some_patients_come_back(default_ehr):
    con = _con(default_ehr.path)
    n_stays, n_ckrt_stays = con.execute("""
        SELECT (SELECT count(*) FROM icustays),
               (SELECT count(DISTINCT stay_id) FROM procedureevents WHERE itemid IN (225802, 225803, 225809, 225955))
    """).fetchone()
    # the flagship's 10,000 stays plus the thiamine and vasopressin_shock patients (one stay each, own streams)
    # and the second_vasopressor patients (two stays each)
    extra = (
        len(default_ehr.planted_thiamine)
        + len(default_ehr.planted_vasopressin)
        + 2 * len(default_ehr.planted_second_vasopressor)
    )
    assert n_stays == default_ehr.stays == DEFAULT_STAYS + extra > DEFAULT_STAYS + 1_000
    assert n_ckrt_stays < 0.15 * n_stays
    # a second, later CKRT episode (in another admission) for some patients; repeated sessions with gaps
    second = con.execute("""
        SELECT count(*) FROM (SELECT subject_id FROM procedureevents WHERE itemid IN (225802, 225803, 225809, 225955)
                              GROUP BY subject_id HAVING count(DISTINCT hadm_id) > 1)""").fetchone()[0]
    assert second > 0
    gaps = con.execute("""
        SELECT max(gap_h) FROM (SELECT date_diff('minute', lag(endtime) OVER (PARTITION BY stay_id ORDER BY starttime),
                                                 starttime) / 60.0 AS gap_h
                                FROM procedureevents
                                WHERE itemid IN (225802, 225803, 225809, 225955, 225441))""").fetchone()[0]
    assert 1 < gaps < 7 * 24
    # intermittent HD and non-CKRT patients on dialysis exist
    assert con.execute("SELECT count(*) FROM procedureevents WHERE itemid = 225441").fetchone()[0] > 0


# ---------------------------------------------------------------------------------------------
# the truth file and the model behind it


def test_synthetic_json_records_generator_seed_and_planted_truth(default_ehr):
    meta = json.loads((default_ehr.path / "SYNTHETIC.json").read_text())
    assert meta["seed"] == DEFAULT_SEED == default_ehr.seed
    assert meta["stays"] == default_ehr.stays
    assert meta["generator_version"]
    truth = meta["truth"]
    assert truth == json.loads(json.dumps(default_ehr.truth))
    flow = truth["flow"]
    assert {k: flow[k] for k in PUBLISHED_FLOW} == PUBLISHED_FLOW
    assert truth["hr_death"] == model.HR_DEATH and "conditional" in truth["hr_death_estimand"]
    # non-collapsibility: the marginal (ATT) HR lies between the conditional HR and 1
    assert model.HR_DEATH < truth["hr_death_att_marginal"] < 1
    assert truth["shr_krt"] > 1 and truth["hr_krt_cause_specific"] > 1


def test_adjusted_cox_on_the_simulated_population_recovers_the_planted_hr():
    truth = model.planted_truth(37 / 333, n=40_000, seed=int(time.time()) % 100_000)
    assert abs(np.log(truth["hr_death_adjusted_check"]) - np.log(model.HR_DEATH)) < 0.08, truth


def test_population_cox_helper_matches_statsmodels_breslow():
    from statsmodels.duration.hazard_regression import PHReg

    seed = int(time.time()) % 100_000
    rng = np.random.default_rng(seed)
    n = 400
    x = np.column_stack([rng.integers(0, 2, n), rng.normal(size=n)])
    t = rng.exponential(1 / np.exp(0.7 * x[:, 0] - 0.4 * x[:, 1]))
    e = rng.random(n) < 0.8
    ours = model.cox_breslow(t, e.astype(int), x)
    ref = PHReg(t, x, status=e.astype(int), ties="breslow").fit().params
    assert np.allclose(ours, ref, atol=1e-6), f"seed {seed}"


def test_ckd_epi_2021_matches_the_published_equation_by_hand():
    # 50-year-old woman, creatinine 0.7 (= kappa): 142 * 1 * 1 * 0.9938^50 * 1.012
    assert np.isclose(
        model.ckd_epi_2021(np.array([0.7]), np.array([50]), np.array([True]))[0], 142 * 0.9938**50 * 1.012
    )
    # 60-year-old man, creatinine 1.8 = 2 kappa: 142 * 2^-1.2 * 0.9938^60
    assert np.isclose(
        model.ckd_epi_2021(np.array([1.8]), np.array([60]), np.array([False]))[0], 142 * 2**-1.2 * 0.9938**60
    )


# ---------------------------------------------------------------------------------------------
# calibration: the cohort builder is the judge


_COMPARED = (
    "exposed",
    "mg_dose_meq",
    "age",
    "sex",
    "sepsis",
    "creatinine_baseline",
    "egfr_baseline",
    "sofa",
    "serum_mg",
    "vasopressor",
    "ventilation",
    "death",
    "death_time",
    "krt_status",
    "krt_time",
)


def _builder_matches_plant(info, cohort) -> None:
    planted = info.planted
    flow = info.truth["flow"]
    log = cohort.attrition.set_index("step")
    assert log["remaining"].iloc[0] == flow["screened"]
    assert log["excluded"].iloc[1:].sum() == flow["excluded"]
    data = cohort.data
    assert len(data) == flow["eligible"] and int(data.exposed.sum()) == flow["exposed"]
    assert set(data.subject_id) == set(planted.subject_id[planted.eligible])
    both = data.set_index("subject_id").join(planted.set_index("subject_id"), rsuffix="_planted")
    assert (both.index_time == both.index_time_planted).all()
    for col in _COMPARED:
        ours, theirs = both[col], both[f"{col}_planted"]
        if ours.dtype == object:
            assert (ours == theirs).all(), col
        else:
            # times: minutes as days; dod read as 23:59:59 in both
            assert np.allclose(ours.astype(float), theirs.astype(float), atol=1e-6), (
                col,
                both.loc[
                    ~np.isclose(ours.astype(float), theirs.astype(float), atol=1e-6), [col, f"{col}_planted"]
                ].head(),
            )


def test_cohort_builder_finds_the_published_flow_on_the_default_ehr(default_ehr):
    from tests.cohort.legacy import extract

    cohort = extract(default_ehr.path)
    log = cohort.attrition
    assert log["remaining"].iloc[0] == PUBLISHED_FLOW["screened"]
    assert log["excluded"].iloc[1:].sum() == PUBLISHED_FLOW["excluded"]
    assert log["remaining"].iloc[-1] == PUBLISHED_FLOW["eligible"]
    exposed = cohort.data[cohort.data.exposed == 1]
    assert len(exposed) == PUBLISHED_FLOW["exposed"]
    assert (cohort.data.exposed == 0).sum() == PUBLISHED_FLOW["unexposed"]
    assert abs(exposed.mg_dose_meq.mean() - 24.4) < 3 and abs(exposed.mg_dose_meq.std() - 10.6) < 3
    _builder_matches_plant(default_ehr, cohort)


def test_cohort_builder_recovers_every_planted_value_at_a_random_size_and_seed(tmp_path):
    from tests.cohort.legacy import extract

    seed = int(time.time() * 1000) % 1_000_000
    stays = 1500 + seed % 1500
    info = generate_synthetic(tmp_path, stays=stays, seed=seed)
    try:
        _builder_matches_plant(info, extract(info.path))
    except AssertionError as exc:
        raise AssertionError(f"stays={stays} seed={seed}: {exc}") from exc


def test_ckrt_patients_sets_the_screened_count_and_keeps_the_proportions(tmp_path):
    info = generate_synthetic(tmp_path, ckrt_patients=150, seed=4)
    flow = info.truth["flow"]
    assert flow["screened"] == 150
    assert flow["excluded"] == round(150 * PUBLISHED_FLOW["excluded"] / PUBLISHED_FLOW["screened"])
    assert flow["exposed"] == round(flow["eligible"] * PUBLISHED_FLOW["exposed"] / PUBLISHED_FLOW["eligible"])
    con = _con(info.path)
    crrt_subjects = con.execute("""SELECT count(DISTINCT subject_id) FROM procedureevents
                                   WHERE itemid IN (225802, 225803, 225809, 225955)""").fetchone()[0]
    assert crrt_subjects == len(info.planted) == 150 + flow["not_screened_minors"] + flow["not_screened_no_support"]
    # background stays: 10 % of the CKRT patients' stays, at least 100
    assert con.execute("SELECT count(*) FROM icustays").fetchone()[0] == info.stays > len(info.planted)
