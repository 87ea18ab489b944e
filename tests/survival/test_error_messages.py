"""Bad input gives a clear error (issue #5), checked message by message.

The project's rule for every error: it names the function and its frame, the
column, how many rows are bad (of how many), and what to do. Each case below
breaks a random cohort in one way, on a random set of ``k`` rows, and checks
each of those parts of the message: the counts are the ones the test
planted, so a message that miscounts or leaves a part out fails.

Where a case checks only some parts (fine_gray's no-event message, whose
wording is maintained with finegray.py), it says so.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from retrocohort._design import design_matrix
from retrocohort.errors import InputError
from retrocohort.survival import cox, cumulative_incidence, fine_gray, gray_test, kaplan_meier, logrank
from tests.rlive import run_r

N = 60
K = 3  # rows broken per case (at random positions)


def _cohort(seed: int = 11, n: int = N) -> pd.DataFrame:
    """Whole-day times, an event indicator, a competing-risks status, one numeric and one categorical covariate."""
    rng = np.random.default_rng(seed)
    status = rng.choice([0, 1, 2], n, p=[0.3, 0.4, 0.3])
    status[:2] = [1, 2]  # both causes occur
    return pd.DataFrame(
        {
            "time": np.ceil(rng.exponential(30.0, n)),
            "event": (status == 1).astype(int),
            "status": status,
            "x": rng.normal(size=n),
            "arm": rng.choice(["a", "b"], n),
            "site": rng.choice(["s1", "s2", "s3"], n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


def _covariates(data: pd.DataFrame) -> list[str]:
    return [c for c in ("x", "arm", "x2") if c in data.columns]


CALLS: dict[str, Callable[[pd.DataFrame], object]] = {
    "kaplan_meier": lambda d: kaplan_meier(d, "time", "event"),
    "logrank": lambda d: logrank(d, "time", "event", "arm"),
    "cox": lambda d: cox(d, "time", "event", _covariates(d)),
    "cumulative_incidence": lambda d: cumulative_incidence(d, "time", "status"),
    "gray_test": lambda d: gray_test(d, "time", "status", "arm"),
    "fine_gray": lambda d: fine_gray(d, "time", "status", _covariates(d), competing_codes=[2]),
}


def _bad_rows(data: pd.DataFrame, seed: int = 5) -> np.ndarray:
    """``K`` random row positions, avoiding the first two (the planted events)."""
    return np.random.default_rng(seed).choice(np.arange(2, len(data)), K, replace=False)


def _set(column: str, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Put ``value`` in ``column`` on the ``K`` bad rows (object dtype when the value is a string)."""

    def change(data: pd.DataFrame) -> pd.DataFrame:
        out = data.copy()
        if isinstance(value, str):
            out[column] = out[column].astype(object)
        elif isinstance(value, float) and pd.api.types.is_integer_dtype(out[column]):
            out[column] = out[column].astype(float)
        out.iloc[_bad_rows(out), out.columns.get_loc(column)] = value
        return out

    return change


@dataclass(frozen=True)
class Expect:
    """What the message must contain besides the function's name in its prefix."""

    column: str
    fragments: tuple[str, ...] = ()  # the counts, e.g. "3 negative", "3 of 60 rows"
    advice: tuple[str, ...] = ()  # the words that say what to do
    where: str = "data"  # the frame named after the function, e.g. "kaplan_meier data"


def assert_message(function: str, message: str, expect: Expect) -> None:
    """The prefix (up to the first ': ') names the function and the frame; the rest has the parts."""
    prefix = message.split(": ", 1)[0]
    assert function in prefix and expect.where in prefix, (
        f"prefix {prefix!r} should name {function} {expect.where}: {message}"
    )
    assert repr(expect.column) in message, f"column {expect.column!r} not named: {message}"
    for fragment in expect.fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    for phrase in expect.advice:
        assert phrase in message, f"advice {phrase!r} not in: {message}"


def _raises(function: str, data: pd.DataFrame) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a warning and garbage
        with pytest.raises(InputError) as info:
            CALLS[function](data)
    return str(info.value)


# --------------------------------------------------------------------------- times

TIME_FUNCTIONS = list(CALLS)
DROP_ADVICE = ("drop or impute them explicitly",)


@pytest.mark.parametrize("function", TIME_FUNCTIONS)
def test_negative_times(function):
    message = _raises(function, _set("time", -2.0)(_cohort()))
    expect = Expect(
        "time", (f"{K} negative time(s) out of {N} rows", "smallest -2"), ("must be >= 0", "fix or drop those rows")
    )
    assert_message(function, message, expect)


@pytest.mark.parametrize("function", TIME_FUNCTIONS)
def test_missing_times(function):
    message = _raises(function, _set("time", np.nan)(_cohort()))
    assert_message(function, message, Expect("time", (f"{K} missing value(s) out of {N} rows",), DROP_ADVICE))


@pytest.mark.parametrize("function", TIME_FUNCTIONS)
def test_infinite_times(function):
    message = _raises(function, _set("time", np.inf)(_cohort()))
    assert_message(
        function,
        message,
        Expect(
            "time", (f"{K} infinite value(s) out of {N} rows",), ("replace them with finite values or drop those rows",)
        ),
    )


@pytest.mark.parametrize("function", TIME_FUNCTIONS)
def test_non_numeric_times(function):
    message = _raises(function, _set("time", "ten days")(_cohort()))
    assert_message(
        function,
        message,
        Expect("time", (f"{K} non-numeric value(s) out of {N} rows", "'ten days'"), ("pd.to_numeric(df['time']",)),
    )


# --------------------------------------------------------------------------- event indicator (KM, log-rank, Cox)

EVENT_FUNCTIONS = ["kaplan_meier", "logrank", "cox"]


@pytest.mark.parametrize("function", EVENT_FUNCTIONS)
def test_event_code_outside_0_1(function):
    message = _raises(function, _set("event", 2)(_cohort()))
    expect = Expect(
        "event",
        (f"{K} of {N} rows have other values", "[2.0]"),
        ("Recode the column to 0/1", "status column of cumulative_incidence"),
    )
    assert_message(function, message, expect)
    assert "0 (censored) or 1 (event)" in message


@pytest.mark.parametrize("function", EVENT_FUNCTIONS)
def test_missing_events(function):
    message = _raises(function, _set("event", np.nan)(_cohort()))
    assert_message(function, message, Expect("event", (f"{K} missing value(s) out of {N} rows",), ("drop",)))


@pytest.mark.parametrize("function", EVENT_FUNCTIONS)
def test_non_numeric_events(function):
    message = _raises(function, _set("event", "yes")(_cohort()))
    assert_message(
        function,
        message,
        Expect("event", (f"{K} non-numeric value(s) out of {N} rows", "'yes'"), ("recode those values",)),
    )


@pytest.mark.parametrize("function", EVENT_FUNCTIONS)
def test_no_events(function):
    message = _raises(function, _cohort().assign(event=0))
    expect = Expect("event", (f"no events (no row is 1 (event)) among its {N} rows",), ("check the event coding",))
    assert_message(function, message, expect)


def test_negative_weights_kaplan_meier():
    with pytest.raises(InputError) as info:
        kaplan_meier(_set("w", -1.0)(_cohort()), "time", "event", weights="w")
    message = str(info.value)
    assert_message(
        "kaplan_meier", message, Expect("w", (f"{K} negative value(s) out of {N} rows",), ("fix or drop those rows",))
    )


@pytest.mark.parametrize(
    ("function", "role", "column"),
    [
        ("logrank", "group", "arm"),
        ("logrank", "strata", "site"),
        ("gray_test", "group", "arm"),
    ],
)
def test_missing_group_or_stratum(function, role, column):
    data = _set(column, np.nan)(_cohort())
    with pytest.raises(InputError) as info:
        if function == "logrank":
            logrank(data, "time", "event", "arm", strata="site")
        else:
            gray_test(data, "time", "status", "arm")
    assert_message(
        function,
        str(info.value),
        Expect(column, (f"{role} column", f"{K} missing value(s) out of {N} rows"), ("give them a level",)),
    )


# --------------------------------------------------------------------------- status codes (CIF, Gray, Fine-Gray)

STATUS_FUNCTIONS = ["cumulative_incidence", "gray_test", "fine_gray"]


@pytest.mark.parametrize("function", STATUS_FUNCTIONS)
def test_non_integer_status(function):
    message = _raises(function, _set("status", 0.5)(_cohort()))
    assert_message(
        function,
        message,
        Expect("status", (f"{K} non-integer status code(s) out of {N} rows", "[0.5]"), ("recode those rows",)),
    )


def test_status_code_not_declared_fine_gray():
    message = _raises("fine_gray", _set("status", 7)(_cohort()))
    assert_message(
        "fine_gray",
        message,
        Expect(
            "status",
            (f"{K} of {N} rows with status code(s) [7]", "declared codes [0, 1, 2]"),
            ("recode those rows or declare the code",),
        ),
    )


@pytest.mark.parametrize("function", STATUS_FUNCTIONS)
def test_no_events_of_the_cause(function):
    data = _cohort().assign(status=lambda d: d["status"].replace({1: 2}))
    message = _raises(function, data)
    if function == "fine_gray":
        # fine_gray's own wording (finegray.py is maintained separately): the parts checked before
        assert_message(function, message, Expect("status", ("no events of cause 1", "codes present: [0, 2]")))
    else:
        counts = data["status"].value_counts()
        assert_message(
            function,
            message,
            Expect(
                "status",
                (
                    f"no rows with cause=1 among its {N} rows",
                    "event codes present: [2]",
                    f"rows per code {{0: {counts[0]}, 2: {counts[2]}}}",
                ),
                ("check cause= and censor_code= against the status coding",),
            ),
        )


COMPETING_CALLS: dict[str, Callable[..., object]] = {
    "cumulative_incidence": lambda d, **kw: cumulative_incidence(d, "time", "status", **kw),
    "gray_test": lambda d, **kw: gray_test(d, "time", "status", "arm", **kw),
}


@pytest.mark.parametrize("function", list(COMPETING_CALLS))
def test_status_code_not_declared_competing(function):
    """With competing_codes declared, a code outside {censor, cause, declared} is an error naming it and its rows."""
    data = _set("status", 7)(_cohort())
    data.iloc[_bad_rows(data, seed=6)[:1], data.columns.get_loc("status")] = 9  # a second undeclared code, 1 row
    n7, n9 = int((data["status"] == 7).sum()), int((data["status"] == 9).sum())
    assert (n7, n9) in ((K, 1), (K - 1, 1))  # the 9 may land on one of the 7s
    with pytest.raises(InputError) as info:
        COMPETING_CALLS[function](data, competing_codes=[2])
    assert_message(
        function,
        str(info.value),
        Expect(
            "status",
            (
                f"{n7 + n9} of {N} rows with status code(s) outside the declared ones",
                "(censor_code=0, cause=1, competing_codes=[2])",
                f"7 ({n7} rows), 9 ({n9} rows)",
            ),
            ("recode those rows", "add the code to competing_codes=", "set censor_code="),
        ),
    )


@pytest.mark.parametrize("function", list(COMPETING_CALLS))
def test_cause_equal_to_censor_code(function):
    data = _cohort()
    n0 = int((data["status"] == 0).sum())
    with pytest.raises(InputError) as info:
        COMPETING_CALLS[function](data, cause=0)
    assert_message(
        function,
        str(info.value),
        Expect(
            "status",
            ("cause=0 equals censor_code=0", f"the {n0} of {N} rows"),
            ("pass the code of an event as cause=",),
        ),
    )


def test_gray_test_single_group():
    message = _raises("gray_test", _cohort().assign(arm="a"))
    assert_message(
        "gray_test",
        message,
        Expect(
            "arm", (f"single group ['a'] in all {N} rows",), ("needs at least two groups", "check the group column")
        ),
    )


# --------------------------------------------------------------------------- covariates (Cox, Fine-Gray)

MODEL_FUNCTIONS = ["cox", "fine_gray"]


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_constant_numeric_covariate(function):
    message = _raises(function, _cohort().assign(x=3.0))
    assert_message(function, message, Expect("x", (f"all {N} rows",), ("drop it",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_constant_categorical_covariate(function):
    message = _raises(function, _cohort().assign(arm="a"))
    assert_message(function, message, Expect("arm", (f"single level ['a'] in all {N} rows",), ("drop it",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_collinear_covariate(function):
    message = _raises(function, _cohort().assign(x2=lambda d: 2 * d["x"] - (d["arm"] == "b")))
    assert_message(function, message, Expect("x2", ("collinear with ['x', 'armb']",), ("drop one",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_missing_covariate(function):
    message = _raises(function, _set("x", np.nan)(_cohort()))
    assert_message(function, message, Expect("x", (f"{K} missing", f"out of {N} rows"), ("drop or impute",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_infinite_covariate(function):
    message = _raises(function, _set("x", -np.inf)(_cohort()))
    assert_message(function, message, Expect("x", (f"{K} infinite value(s) out of {N} rows",), ("drop",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
@pytest.mark.parametrize("text", ["n/a", "<0.5"])
def test_string_in_a_numeric_covariate(function, text):
    # one stray string makes the column object dtype; it must not be dummy-coded into ~N levels
    data = _set("x", text)(_cohort())
    message = _raises(function, data)
    rows = sorted(_bad_rows(data).tolist())
    assert_message(
        function,
        message,
        Expect(
            "x",
            (f"numbers in {N - K} of {N} rows", f"{K} non-numeric value(s)", repr(text), f"row position(s) {rows}"),
            ("pd.to_numeric", "pd.Categorical"),
        ),
    )


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_numbers_stored_as_object_are_refused(function):
    data = _cohort().assign(x=lambda d: d["x"].astype(object))
    message = _raises(function, data)
    assert_message(function, message, Expect("x", (f"numbers in all {N} rows", "dtype object"), ("pd.to_numeric",)))


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
def test_a_boolean_among_numbers_is_refused(function):
    data = _cohort().assign(x=lambda d: d["x"].astype(object))
    data.iloc[4, data.columns.get_loc("x")] = True
    message = _raises(function, data)
    assert_message(function, message, Expect("x", (f"numbers in all {N} rows", "dtype object"), ("pd.to_numeric",)))
    # booleans alone (object dtype) are still a TRUE/FALSE factor
    flags = _cohort().assign(flag=lambda d: pd.Series(d["x"] > 0, dtype=object))
    assert list(design_matrix(flags, ["flag"]).columns) == ["flagTrue"]


def test_cox_rejects_a_negative_max_iter_and_a_bad_eps():
    data = _cohort()
    with pytest.raises(InputError, match=r"max_iter must be a non-negative integer .*got -1"):
        cox(data, "time", "event", ["x"], max_iter=-1)
    with pytest.raises(InputError, match=r"eps must be in \(0, 1\).*got 0"):
        cox(data, "time", "event", ["x"], eps=0)


def test_number_strings_alone_and_declared_categoricals_stay_categorical():
    # a character column of "1"/"2" is a factor in R; a declared Categorical is the way to keep a mixed one
    data = _cohort().assign(grade=lambda d: np.where(np.arange(N) % 3 == 0, "1", "2"))
    assert list(design_matrix(data, ["grade"]).columns) == ["grade2"]
    mixed = data.assign(grade=lambda d: pd.Categorical(np.where(np.arange(N) % 4 == 0, "unknown", d["grade"])))
    assert list(design_matrix(mixed, ["grade"]).columns) == ["grade2", "gradeunknown"]


@pytest.mark.parametrize("function", MODEL_FUNCTIONS)
@pytest.mark.parametrize("empty", [["c"], ["0", "c"]], ids=["last", "reference"])
def test_unused_categorical_level(function, empty):
    data = _cohort()
    data["arm"] = pd.Categorical(data["arm"], categories=[*empty[:-1], "a", "b", empty[-1]])
    message = _raises(function, data)
    assert_message(
        function,
        message,
        Expect(
            "arm",
            (f"{len(empty)} level(s) with no rows out of {N} rows: {empty}",),
            ("df['arm'] = df['arm'].cat.remove_unused_categories()",),
        ),
    )
    # an empty reference level changes the reference once dropped: the message says so
    assert ("reference level then becomes 'a'" in message) is (empty[0] == "0"), message
    # after the advice the fit runs, with the used levels' columns only
    data["arm"] = data["arm"].cat.remove_unused_categories()
    fit = CALLS[function](data)
    assert list(fit.summary.index) == ["x", "armb"]


def test_unused_level_of_the_only_used_level_is_called_constant():
    data = _cohort().assign(arm=lambda d: pd.Categorical(["a"] * len(d), categories=["a", "b"]))
    message = _raises("cox", data)
    assert_message(
        "cox",
        message,
        Expect("arm", (f"single level 'a' in all {N} rows", "['b'] have no rows"), ("drop it from the covariates",)),
    )


# --------------------------------------------------------------------------- design_matrix options


def test_design_matrix_unused_levels_options():
    data = _cohort()
    data["arm"] = pd.Categorical(data["arm"], categories=["z", "a", "b", "c"])
    used = data.assign(arm=data["arm"].cat.remove_unused_categories())
    # "drop" (glm's drop.unused.levels) equals dropping them by hand
    pd.testing.assert_frame_equal(
        design_matrix(data, ["x", "arm"], unused_levels="drop"), design_matrix(used, ["x", "arm"])
    )
    # "keep" keeps every non-reference category's column (all zero when empty), as model.matrix does
    kept = design_matrix(data, ["arm"], unused_levels="keep")
    assert list(kept.columns) == ["arma", "armb", "armc"]
    assert kept["armc"].sum() == 0 and kept[["arma", "armb"]].sum(axis=1).eq(1).all()
    # a one-row prediction profile uses one level and keeps the columns of all of them
    assert list(design_matrix(data.iloc[:1], ["arm"], "profile", unused_levels="keep").columns) == [
        "arma",
        "armb",
        "armc",
    ]
    with pytest.raises(InputError, match=r"unused_levels='silently' is not allowed; use one of \['error'"):
        design_matrix(data, ["arm"], unused_levels="silently")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- log-rank strata without events


def _with_event_free_strata(seed: int, n_free: int) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    data = _cohort(seed, n=int(rng.integers(60, 200)))
    data["site"] = rng.choice([f"s{j}" for j in range(1, 6)], len(data))
    free = sorted(rng.choice(sorted(data["site"].unique()), n_free, replace=False).tolist())
    data.loc[data["site"].isin(free), "event"] = 0
    if data["event"].sum() == 0:
        data.loc[~data["site"].isin(free), "event"] = 1
    return data, free


def test_logrank_notes_a_stratum_without_events():
    data, free = _with_event_free_strata(3, 1)
    result = logrank(data, "time", "event", "arm", strata="site")
    n_free = int(data["site"].isin(free).sum())
    assert result.notes == (
        f"stratum {{'site': {free[0]!r}}} ({n_free} of {len(data)} rows) has no events; "
        "it contributes nothing to the test",
    )
    # it contributes nothing: the test on the other strata alone is the same (survdiff's sums, by construction)
    rest = logrank(data[~data["site"].isin(free)], "time", "event", "arm", strata="site")
    assert rest.notes == ()
    np.testing.assert_allclose(result.statistic, rest.statistic, rtol=1e-12)
    np.testing.assert_allclose(result.variance, rest.variance, rtol=1e-12)
    np.testing.assert_allclose(result.table[["observed", "expected"]], rest.table[["observed", "expected"]], rtol=1e-12)
    # survdiff's N counts every row, event-free strata included
    assert result.table["n"].sum() == len(data)


def test_logrank_notes_several_strata_without_events():
    data, free = _with_event_free_strata(4, 2)
    (note,) = logrank(data, "time", "event", "arm", strata="site").notes
    n_free = int(data["site"].isin(free).sum())
    assert note.startswith(f"2 of 5 strata of 'site' have no events ({n_free} of {len(data)} rows; e.g. {free})"), note


def test_logrank_without_strata_has_no_notes():
    assert logrank(_cohort(), "time", "event", "arm").notes == ()


@pytest.mark.r
def test_live_logrank_event_free_stratum_equals_survdiff():
    """survdiff says nothing about an event-free stratum and adds zero for it; so do we, plus a note."""
    seed = secrets.randbelow(2**31)
    data, free = _with_event_free_strata(seed, 1)
    result = logrank(data, "time", "event", "arm", strata="site")
    r = run_r(
        """library(survival)
        w <- character(0)
        fit <- withCallingHandlers(survdiff(Surv(time, event) ~ arm + strata(site), data = df),
                                   warning = function(c) {
                                     w <<- c(w, conditionMessage(c))
                                     invokeRestart("muffleWarning")
                                   })
        # strata columns of $obs / $exp follow the sorted levels of site
        free <- colSums(fit$obs) == 0
        result <- list(chisq = fit$chisq, obs = rowSums(fit$obs), exp = rowSums(fit$exp), n = as.vector(fit$n),
                       warnings = w, free_exp = sum(fit$exp[, free]), free = sort(unique(df$site))[free])""",
        {"df": data[["time", "event", "arm", "site"]]},
    )
    msg = f"seed {seed}"
    assert r["warnings"] == [], msg  # R is silent about it
    assert r["free_exp"] == 0, msg  # and the stratum adds nothing to E
    assert list(np.atleast_1d(r["free"])) == free, msg
    np.testing.assert_allclose(result.statistic, r["chisq"], rtol=1e-6, err_msg=msg)
    np.testing.assert_allclose(result.table["observed"], r["obs"], rtol=1e-12, err_msg=msg)
    np.testing.assert_allclose(result.table["expected"], r["exp"], rtol=1e-7, err_msg=msg)
    assert result.table["n"].tolist() == r["n"], msg
    assert len(result.notes) == 1 and repr(free[0]) in result.notes[0], msg


@pytest.mark.parametrize("not_a_fit", [None, "fit", pd.DataFrame({"coef": [0.1]})])
def test_ph_test_needs_a_cox_result(not_a_fit):
    from retrocohort.survival import ph_test

    with pytest.raises(InputError) as info:
        ph_test(not_a_fit)
    message = str(info.value)
    assert message.startswith("ph_test: expects the result of retrocohort.cox(...)"), message
    assert type(not_a_fit).__name__ in message and "fit the Cox model first" in message, message
