"""Kaplan-Meier against R's survfit (JSON fixtures from tests/reference/r/km.R),
a hand-calculated 6-row case, input errors, and a live R suite on fresh data."""

from __future__ import annotations

import secrets

import numpy as np
import pandas as pd
import pytest

from retrocohort.errors import InputError
from retrocohort.survival.km import kaplan_meier, logrank
from tests.rlive import run_r

ESTIMATE_RTOL = 1e-7
SE_RTOL = 1e-6


def assert_close(ours, theirs, rtol: float, what: str) -> None:
    """Equal within rtol (plus a tiny absolute floor for exact zeros); NaN/None must match."""
    ours = np.asarray(ours, dtype=float)
    theirs = np.asarray([np.nan if v is None else v for v in theirs], dtype=float)
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} rows vs R's {theirs.shape}"
    nan_ours, nan_theirs = np.isnan(ours), np.isnan(theirs)
    assert np.array_equal(nan_ours, nan_theirs), (
        f"{what}: undefined at different rows: ours {np.flatnonzero(nan_ours)}, R {np.flatnonzero(nan_theirs)}"
    )
    ok = ~nan_ours
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=rtol, atol=1e-13, err_msg=what)


def r_frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


KM_CASES = {
    # fixture name: (group column, conf_type)
    "km_lung": (None, "log"),
    "km_lung_sex": ("sex", "log"),
    "km_lung_sex_loglog": ("sex", "log-log"),
    "km_lung_sex_plain90": ("sex", "plain"),
    "km_veteran_celltype": ("celltype", "log-log"),
    "km_tied_arm": ("arm", "log"),
    "km_tied_arm_intweights": ("arm", "log"),
    "km_tied_ipw_loglog": ("arm", "log-log"),
    "km_tied_ipw_plain": (None, "plain"),
    "km_median_rules": ("case", "log"),
}


def _sorted(frame: pd.DataFrame, grouped: bool) -> pd.DataFrame:
    keys = ["group", "time"] if grouped else ["time"]
    frame = frame.copy()
    if grouped:
        frame["group"] = frame["group"].astype(str)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(KM_CASES))
def test_kaplan_meier_matches_survfit(reference, name):
    ref = reference(name)
    group, conf_type = KM_CASES[name]
    values = ref["values"]
    assert values["conf_type"] == conf_type
    data = r_frame(ref["data"])
    fit = kaplan_meier(
        data,
        "time",
        "event",
        group=group,
        weights=values.get("weights"),
        conf_level=values["conf_level"],
        conf_type=conf_type,
    )
    grouped = group is not None
    ours = _sorted(fit.table, grouped)
    theirs = _sorted(r_frame(values["table"]), grouped)
    if grouped:
        assert ours["group"].tolist() == theirs["group"].tolist()
    for column, rtol in [
        ("time", 0),
        ("n_risk", 1e-12),
        ("n_event", 1e-12),
        ("n_censor", 1e-12),
        ("survival", ESTIMATE_RTOL),
        ("std_err", SE_RTOL),
        ("lower", SE_RTOL),
        ("upper", SE_RTOL),
    ]:
        assert_close(ours[column], theirs[column], rtol, f"{name} table.{column}")

    median_ours = fit.median.copy()
    median_theirs = r_frame(values["median"])
    if grouped:
        median_ours = median_ours.assign(group=median_ours["group"].astype(str)).sort_values("group")
        median_theirs = median_theirs.sort_values("group")
        assert median_ours["group"].tolist() == median_theirs["group"].tolist()
    for column in ["n", "events", "median", "lower", "upper"]:
        assert_close(median_ours[column], median_theirs[column], 1e-12, f"{name} median.{column}")

    at_ours = _sorted(fit.survival_at(values["times"]), grouped)
    at_theirs = _sorted(r_frame(values["at_times"]), grouped)
    for column, rtol in [
        ("time", 0),
        ("n_risk", 1e-12),
        ("n_event", 1e-12),
        ("survival", ESTIMATE_RTOL),
        ("std_err", SE_RTOL),
        ("lower", SE_RTOL),
        ("upper", SE_RTOL),
    ]:
        assert_close(at_ours[column], at_theirs[column], rtol, f"{name} survival_at.{column}")


def test_weights_choose_survfit_variance(reference):
    data = r_frame(reference("km_tied_ipw_plain")["data"])
    assert kaplan_meier(data, "time", "event", weights="ipw").variance == "robust"
    assert kaplan_meier(data, "time", "event", weights="count_weight").variance == "greenwood"
    assert kaplan_meier(data, "time", "event").variance == "greenwood"


def test_integer_weights_equal_replicated_rows(reference):
    """survfit's case weights: weight 3 is three identical rows (counts, S and Greenwood SE)."""
    data = r_frame(reference("km_tied_arm_intweights")["data"])
    weighted = kaplan_meier(data, "time", "event", group="arm", weights="count_weight").table
    replicated = data.loc[data.index.repeat(data["count_weight"].astype(int))]
    expanded = kaplan_meier(replicated, "time", "event", group="arm").table
    pd.testing.assert_frame_equal(weighted, expanded, rtol=1e-12)


# --------------------------------------------------------------------------- hand calculation


def test_six_rows_by_hand():
    """Times 1, 2, 2, 3+, 4, 5+ (``+`` = censored).

    t=1: n=6, d=1 -> S = 5/6;           Greenwood sum 1/(6*5)          = 1/30
    t=2: n=5, d=2 -> S = 5/6*3/5 = 1/2; sum += 2/(5*3) -> 1/30 + 2/15  = 1/6
    t=3: n=3, censored, S stays 1/2
    t=4: n=2, d=1 -> S = 1/4;           sum += 1/(2*1) -> 1/6 + 1/2    = 2/3
    t=5: n=1, censored, S stays 1/4
    std_err = S * sqrt(sum): 5/6*sqrt(1/30), 1/2*sqrt(1/6), 1/2*sqrt(1/6), 1/4*sqrt(2/3), same.
    Median: S = 1/2 exactly on [2, 4) -> midpoint (2 + 4) / 2 = 3.
    Log interval at t=4: exp(log(1/4) -+ 1.959964 * sqrt(2/3)), upper clipped at 1.
    """
    data = pd.DataFrame({"time": [1, 2, 2, 3, 4, 5], "event": [1, 1, 1, 0, 1, 0]})
    fit = kaplan_meier(data, "time", "event")
    table = fit.table
    assert table["time"].tolist() == [1, 2, 3, 4, 5]
    assert table["n_risk"].tolist() == [6, 5, 3, 2, 1]
    assert table["n_event"].tolist() == [1, 2, 0, 1, 0]
    assert table["n_censor"].tolist() == [0, 0, 1, 0, 1]
    np.testing.assert_allclose(table["survival"], [5 / 6, 1 / 2, 1 / 2, 1 / 4, 1 / 4], rtol=1e-14)
    greenwood = np.array([1 / 30, 1 / 6, 1 / 6, 2 / 3, 2 / 3])
    np.testing.assert_allclose(table["std_err"], table["survival"] * np.sqrt(greenwood), rtol=1e-14)
    z = 1.959963984540054
    np.testing.assert_allclose(table["lower"].iloc[3], np.exp(np.log(0.25) - z * np.sqrt(2 / 3)), rtol=1e-12)
    np.testing.assert_allclose(table["upper"].iloc[3], min(1.0, np.exp(np.log(0.25) + z * np.sqrt(2 / 3))))
    assert fit.median["median"].iloc[0] == 3.0
    at = fit.survival_at([0, 2, 4.5])
    assert at["n_risk"].tolist() == [6, 5, 1]
    assert at["n_event"].tolist() == [0, 3, 1]
    np.testing.assert_allclose(at["survival"], [1, 1 / 2, 1 / 4], rtol=1e-14)
    assert fit.at_risk([0, 2, 4.5]).iloc[0].tolist() == [6, 5, 1]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (pd.DataFrame({"time": [1, -2, 3], "event": [1, 0, 1]}), {}, "negative"),
        (pd.DataFrame({"time": [1, np.nan, 3], "event": [1, 0, 1]}), {}, "missing"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [1, 2, 1]}), {}, "0 \\(censored\\) or 1"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [0, 0, 0]}), {}, "no events"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [1, 0, 1]}), {"conf_type": "logit"}, "conf_type='logit'"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [1, 0, 1]}), {"conf_level": 95}, "conf_level"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [1, 0, 1], "w": [1, -1, 1]}), {"weights": "w"}, "negative"),
        (pd.DataFrame({"time": [1, 2, 3], "event": [1, 0, 1]}), {"group": "arm"}, "no column"),
    ],
)
def test_bad_input_is_named(frame, kwargs, message):
    with pytest.raises(InputError, match=message):
        kaplan_meier(frame, "time", "event", **kwargs)


# --------------------------------------------------------------------------- live R


@pytest.mark.r
@pytest.mark.parametrize("weighted", ["none", "integer", "ipw"])
def test_live_survfit(weighted):
    seed = secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    event_day = np.ceil(rng.exponential(rng.uniform(20, 80), n))
    censor_day = np.ceil(rng.uniform(5, 120, n))
    data = pd.DataFrame(
        {
            "time": np.minimum(event_day, censor_day),
            "event": (event_day <= censor_day).astype(int),
            "arm": rng.choice(["a", "b", "c"], n),
            "w": rng.integers(1, 4, n) if weighted == "integer" else np.round(rng.uniform(0.1, 4, n), 4),
        }
    )
    if data["event"].sum() == 0:
        data.loc[0, "event"] = 1
    conf_type = ["log", "log-log", "plain"][seed % 3]
    weights = None if weighted == "none" else "w"
    r_weights = "" if weights is None else ", weights = w"
    result = run_r(
        f"""library(survival)
        fit <- survfit(Surv(time, event) ~ arm, data = df{r_weights}, conf.type = "{conf_type}")
        s <- summary(fit, censored = TRUE)
        tab <- summary(fit)$table
        result <- list(time = s$time, surv = s$surv, std_err = s$std.err, lower = s$lower, upper = s$upper,
                       n_risk = s$n.risk, median = unname(tab[, "median"]), lcl = unname(tab[, "0.95LCL"]),
                       ucl = unname(tab[, "0.95UCL"]))""",
        {"df": data},
    )
    fit = kaplan_meier(data, "time", "event", group="arm", weights=weights, conf_type=conf_type)
    table = fit.table
    context = f"seed={seed} weighted={weighted} conf_type={conf_type}"
    assert_close(table["time"], result["time"], 0, context)
    assert_close(table["n_risk"], result["n_risk"], 1e-12, context)
    assert_close(table["survival"], result["surv"], ESTIMATE_RTOL, context)
    assert_close(table["std_err"], result["std_err"], SE_RTOL, context)
    assert_close(table["lower"], result["lower"], SE_RTOL, context)
    assert_close(table["upper"], result["upper"], SE_RTOL, context)
    assert_close(fit.median["median"], result["median"], 1e-12, context)
    assert_close(fit.median["lower"], result["lcl"], 1e-12, context)
    assert_close(fit.median["upper"], result["ucl"], 1e-12, context)


def test_near_ties_are_merged_like_survfit_timefix():
    """0.1 + 0.2 and 0.3 differ by one rounding step: survfit (timefix=TRUE) treats them as one time."""
    exact = pd.DataFrame({"time": [0.3, 0.3, 0.5, 0.7, 0.7, 1.0], "event": [1, 0, 1, 1, 1, 0], "arm": list("ababab")})
    rounded = exact.assign(time=[0.1 + 0.2, 0.3, 0.5, 0.7, 0.1 * 7, 1.0])
    assert rounded["time"].nunique() == 6  # the float values really differ
    merged = kaplan_meier(rounded, "time", "event", group="arm").table
    reference = kaplan_meier(exact, "time", "event", group="arm").table
    np.testing.assert_allclose(merged["survival"], reference["survival"], rtol=1e-14)
    assert len(merged) == len(reference)
    pooled = kaplan_meier(rounded, "time", "event").table
    assert pooled["time"].tolist() == [0.3, 0.5, 0.7, 1.0]  # the smaller value of a near tie is kept
    separate = kaplan_meier(rounded, "time", "event", timefix=False).table
    assert len(separate) == 6


@pytest.mark.r
def test_live_survfit_and_survdiff_with_near_ties():
    seed = secrets.randbelow(2**31)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 200))
    days = rng.integers(1, 40, n).astype(float)
    # a third of the rows carry rounding noise of ~1e-12 relative, as times computed from timestamps do
    noisy = rng.random(n) < 1 / 3
    days[noisy] = days[noisy] * (1 + rng.choice([-1, 1], noisy.sum()) * 1e-13)
    data = pd.DataFrame({"time": days, "event": rng.integers(0, 2, n), "arm": rng.choice(["a", "b"], n)})
    data.loc[0, "event"] = 1
    result = run_r(
        """library(survival)
        fit <- survfit(Surv(time, event) ~ arm, data = df)
        sd <- survdiff(Surv(time, event) ~ arm, data = df)
        result <- list(time = fit$time, surv = fit$surv, chisq = sd$chisq)""",
        {"df": data},
    )
    fit = kaplan_meier(data, "time", "event", group="arm")
    context = f"seed={seed}"
    assert len(fit.table) == len(result["time"]), context
    assert_close(fit.table["survival"], result["surv"], ESTIMATE_RTOL, context)
    np.testing.assert_allclose(
        logrank(data, "time", "event", "arm").statistic, result["chisq"], rtol=1e-6, err_msg=context
    )
