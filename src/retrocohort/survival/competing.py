"""Cumulative incidence (Aalen-Johansen) and Gray's K-sample test, equal to cmprsk::cuminc.

``cumulative_incidence`` matches the estimates and variances of
``cmprsk::cuminc(ftime, fstatus, group, cencode=)`` for one cause; ``gray_test``
matches ``cuminc(...)$Tests`` (rho = 0, optionally with ``strata=``).
Fine-Gray regression lives in :mod:`.finegray`.

Ties: tied times are kept tied. At a time with events of several causes and
censorings, everyone with that time is in the risk set and all events happen
before the censorings, as in cuminc (which never jitters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from ._checks import check_group, check_status, check_time
from ._gray import gray_score_covariance
from ._risksets import group_order, risk_table
from .km import _check_conf_level

__all__ = [
    "CumulativeIncidenceResult",
    "GrayTestResult",
    "aalen_johansen",
    "cumulative_incidence",
    "gray_test",
]


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class _Incidence:
    """Aalen-Johansen quantities of one sample at its distinct event times (all (m,))."""

    time: np.ndarray
    n_risk: np.ndarray
    n_cause: np.ndarray  # events of the cause of interest
    n_other: np.ndarray  # events of every other cause
    survival: np.ndarray  # all-cause Kaplan-Meier S(t)
    cif: np.ndarray  # F(t) of the cause of interest
    variance: np.ndarray  # cuminc's variance of F(t)


@numba.njit(cache=True, error_model="numpy")
def _aalen_johansen_pass(
    time: np.ndarray, n: np.ndarray, d_any: np.ndarray, d_cause: np.ndarray, cause_times_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S, F and cuminc's variance of F at each event time, in one forward pass.

    Each event time j adds ``c_j (a_j - F(t) b_j)^2`` to V(t) for every later t,
    with ``c_j = S(t_j-1)^2 d_j f(d_j) / n_j^2`` and ``(a, b) = (1 + F_j/S_j, 1/S_j)``
    for the cause, ``(F_j/S_j, 1/S_j)`` for other causes (1/S_j taken as 0, and
    other-cause terms dropped, once S_j = 0). Expanding the square keeps three
    running sums, so V(t) = sum_aa - 2 F(t) sum_ab + F(t)^2 sum_bb. One loop
    instead of ~25 n-long temporaries: the arithmetic is memory bound.

    Takes every distinct time of the risk table; censoring-only times change
    neither S nor F nor V and are skipped. Returns time, n, d_cause, d_other,
    S, F, V at event times, or only at times with an event of the cause when
    ``cause_times_only`` (the rows cuminc's curve steps at), compacted in the
    same pass instead of masks and gathers afterwards.
    """
    m = n.shape[0]
    time_out = np.empty(m)
    n_out = np.empty(m)
    cause_out = np.empty(m)
    other_out = np.empty(m)
    survival = np.empty(m)
    cif = np.empty(m)
    variance = np.empty(m)
    s_before = 1.0
    f = 0.0
    sum_aa = 0.0
    sum_ab = 0.0
    sum_bb = 0.0
    r = 0
    for j in range(m):
        if not d_any[j] > 0:
            continue
        nj = n[j]
        d1 = d_cause[j]
        d2 = d_any[j] - d1
        f += s_before * d1 / nj
        s = s_before * (1.0 - (d1 + d2) / nj)
        base = (s_before / nj) ** 2
        # (n - d) / (n - 1): cuminc's correction for d tied events among n
        w1 = base * d1 * (1.0 - (d1 - 1.0) / (nj - 1.0) if d1 > 1 else 1.0)
        if s > 0:
            inv_s = 1.0 / s
            w2 = base * d2 * (1.0 - (d2 - 1.0) / (nj - 1.0) if d2 > 1 else 1.0)
        else:
            inv_s = 0.0
            w2 = 0.0
        a1 = 1.0 + f * inv_s
        a2 = f * inv_s
        sum_aa += w1 * a1 * a1 + w2 * a2 * a2
        sum_ab += (w1 * a1 + w2 * a2) * inv_s
        sum_bb += (w1 + w2) * inv_s * inv_s
        s_before = s
        if cause_times_only and not d1 > 0:
            continue
        time_out[r] = time[j]
        n_out[r] = nj
        cause_out[r] = d1
        other_out[r] = d2
        survival[r] = s
        cif[r] = f
        variance[r] = sum_aa - 2.0 * f * sum_ab + f * f * sum_bb
        r += 1
    return time_out[:r], n_out[:r], cause_out[:r], other_out[:r], survival[:r], cif[:r], variance[:r]


def aalen_johansen(
    time: np.ndarray, is_cause: np.ndarray, is_event: np.ndarray, cause_times_only: bool = False
) -> _Incidence:
    """Cumulative incidence of one cause in one sample, with cuminc's variance.

    Parameters
    ----------
    time : (n,) float
    is_cause : (n,) bool, event of the cause of interest
    is_event : (n,) bool, event of any cause
    cause_times_only : return only the times with an event of the cause
        (where the CIF steps) instead of every event time.

    Notes
    -----
    ``F(t) = sum_{t_j <= t} S(t_j-) d1_j / n_j`` with S the all-cause
    Kaplan-Meier. The variance is the delta-method (Aalen-type) estimate that
    cuminc reports,

    ``V(t) = sum_{t_j <= t} S(t_j-)^2 / n_j^2 * [ d1_j f(d1_j) (1 + (F_j - F(t)) / S_j)^2
    + d2_j f(d2_j) ((F_j - F(t)) / S_j)^2 ]``

    where d1 and d2 are events of the cause and of other causes at t_j,
    ``F_j = F(t_j)``, ``S_j = S(t_j)`` and ``f(d) = (n - d) / (n - 1)`` corrects
    for ties (1 for a single event). Terms with ``S_j = 0`` drop the 1/S_j
    parts. Expanding the square in F(t) turns the sum into three cumulative
    sums, so the whole curve costs O(m).
    """
    # Any-event rides in the sort key (the larger mark) with the cause.
    table = risk_table(time, [is_event, is_cause])
    return _Incidence(
        *_aalen_johansen_pass(
            table.time,
            table.n_risk,
            table.counts[:, 0],  # strided views: numba reads them in place
            table.counts[:, 1],
            cause_times_only,
        )
    )


def cif_confidence_band(cif: np.ndarray, variance: np.ndarray, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise limits on the log(-log) scale: ``F ** exp(-+ z sd / (F log F))``.

    cmprsk reports no interval; this is the transform that tidycmprsk and
    most applied papers use with cuminc's variance. It keeps the limits in
    (0, 1); undefined (NaN) where F is 0 or 1.
    """
    z = stats.norm.ppf(1.0 - (1.0 - conf_level) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = z * np.sqrt(variance) / (cif * np.log(cif))
        lower = cif ** np.exp(-scale)
        upper = cif ** np.exp(scale)
    undefined = (cif <= 0) | (cif >= 1)
    return np.where(undefined, np.nan, lower), np.where(undefined, np.nan, upper)


# --------------------------------------------------------------------------- cumulative incidence


@dataclass(frozen=True)
class CumulativeIncidenceResult:
    """Cumulative incidence of one cause per group.

    Attributes
    ----------
    table : DataFrame
        One row per group and distinct time at which an event of ``cause``
        occurs (the times where the CIF steps; cuminc's step points without
        its duplicated corners and its time-0 and last-time rows). Columns
        ``group`` (when grouped), ``time``, ``n_risk``, ``n_event`` (events of
        the cause at that time), ``cif``, ``variance`` (cuminc's ``var``),
        ``lower``, ``upper`` (log(-log) interval, see :func:`cif_confidence_band`).
    cause, censor_code, conf_level, group : the options used.
    competing_codes : the declared competing-event codes, or None (then every
        code other than ``censor_code`` and ``cause`` was competing, as in cuminc).
    notes : remarks on the data for a report, e.g. which undeclared status
        codes were treated as competing events and on how many rows (cuminc
        says nothing about them).
    """

    table: pd.DataFrame
    cause: int
    censor_code: int
    conf_level: float
    group: str | None
    _levels: tuple = field(repr=False)
    _last_time: tuple[float, ...] = field(repr=False)
    competing_codes: tuple[int, ...] | None = None
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        from .._printing import render_cif

        return render_cif(self)

    def _repr_html_(self) -> str:
        from .._printing import render_cif_html

        return render_cif_html(self)

    def plot(
        self,
        ax: Any = None,
        labels: Mapping[Any, str] | Sequence[str] | None = None,
        gray_p: float | None = None,
        horizon: float | None = None,
        xlabel: str = "Time",
        ylabel: str | None = None,
        competing: str = "competing events",
    ) -> Any:
        """Cumulative incidence curves by group (the report's figure); returns a matplotlib Figure.

        Parameters
        ----------
        ax : matplotlib Axes to draw on, or None for a new Figure.
        labels : group names by group value or in group order; default the group values.
        gray_p : p-value of Gray's test printed on the plot, or None.
        horizon : right end of the x axis; None for the last time.
        xlabel, ylabel : axis labels (default y label names the cause).
        competing : the competing event, named in the annotation.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..report.figures import cumulative_incidence_plot

        if labels is None:
            labels = [str(v) for v in self._levels] if self.group is not None else None
        return cumulative_incidence_plot(
            self,
            labels,
            gray_p,
            ax=ax,
            horizon=horizon,
            xlabel=xlabel,
            ylabel=ylabel or f"Cumulative incidence of cause {self.cause}",
            competing=competing,
        )

    def cif_at(self, times) -> pd.DataFrame:
        """CIF and variance at ``times``, as ``cmprsk::timepoints``.

        Columns ``group`` (when grouped), ``time``, ``cif``, ``variance``,
        ``lower``, ``upper``. Before the first event the CIF is 0 with variance
        0; after a group's largest observed time it is NaN (timepoints gives NA).
        """
        at = np.asarray(times, dtype=float).reshape(-1)
        pieces = []
        for level, last in zip(self._levels, self._last_time, strict=True):
            rows = self.table if self.group is None else self.table[self.table["group"] == level]
            index = np.searchsorted(rows["time"].to_numpy(), at, side="right") - 1
            safe = np.maximum(index, 0)
            beyond = at > last

            def pick(column: str, _rows=rows, _index=index, _safe=safe, _beyond=beyond) -> np.ndarray:
                values = _rows[column].to_numpy()
                picked = np.where(_index >= 0, values[_safe] if len(values) else 0.0, 0.0)
                return np.where(_beyond, np.nan, picked)

            cif, variance = pick("cif"), pick("variance")
            lower, upper = cif_confidence_band(cif, variance, self.conf_level)
            part = pd.DataFrame({"time": at, "cif": cif, "variance": variance, "lower": lower, "upper": upper})
            if self.group is not None:
                part.insert(0, "group", level)
            pieces.append(part)
        return pd.concat(pieces, ignore_index=True)


def _is_code(value) -> bool:
    """An integer status code (integer-valued floats too, as R's numeric codes arrive)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        return False
    return bool(np.isfinite(value)) and float(value).is_integer()


def _declared_competing(competing_codes, cause: int, censor_code: int, where: str) -> list[int] | None:
    """The declared competing-event codes as ints (None when not declared), checked."""
    if competing_codes is None:
        return None
    listed = [competing_codes] if isinstance(competing_codes, (int, np.integer)) else list(competing_codes)
    bad = [c for c in listed if not _is_code(c)]
    if bad:
        raise InputError(f"{where}: competing_codes must be integer status codes, got {bad!r} in {listed!r}")
    declared = sorted({int(c) for c in listed})
    clash = [c for c in declared if c in (cause, censor_code)]
    if clash:
        raise InputError(
            f"{where}: competing_codes={declared} contains {clash}, which is the cause ({cause}) or the "
            f"censor_code ({censor_code}); list only the codes of the competing events"
        )
    return declared


def _code_counts(codes: np.ndarray) -> dict[int, int]:
    """Rows per distinct status code, in code order.

    A bincount over the codes' range (status codes are a handful of small
    integers): linear, where ``np.unique`` would sort all n rows.
    """
    if codes.size == 0:
        return {}
    low, high = int(codes.min()), int(codes.max())
    if high - low > 1 << 16:
        values, counts = np.unique(codes, return_counts=True)
    else:
        counts = np.bincount(codes - low, minlength=high - low + 1)
        values = np.flatnonzero(counts)
        counts = counts[values]
        values = values + low
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _competing_inputs(
    data: pd.DataFrame,
    time: str,
    status: str,
    cause: int,
    censor_code: int,
    competing_codes,
    where: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None, list[str]]:
    """Times (n,) float, status codes (n,) int, declared competing codes and notes for ``where``.

    ``where`` is the caller's name ("cumulative_incidence", "gray_test"); messages start with
    "<where> data:".

    With ``competing_codes`` declared, any code other than ``censor_code``,
    ``cause`` and those raises. Without, every other code is a competing event
    (cuminc's rule) and a note says which codes were so treated, with their row
    counts, so that a censoring code other than ``censor_code`` (say 9) cannot
    turn censored patients into competing events unseen.
    """
    frame = f"{where} data"
    for name, value in (("cause", cause), ("censor_code", censor_code)):
        if not _is_code(value):
            raise InputError(f"{where}: {name} must be an integer status code, got {value!r}")
    cause, censor_code = int(cause), int(censor_code)
    declared = _declared_competing(competing_codes, cause, censor_code, where)
    times = check_time(data, time, frame)
    codes = check_status(data, status, censor_code=censor_code, where=frame)
    n = len(codes)
    rows_per_code = _code_counts(codes)
    if cause == censor_code:
        raise InputError(
            f"{frame}: cause={cause} equals censor_code={censor_code}, so the {rows_per_code.get(cause, 0)} of {n} "
            f"rows of column {status!r} with code {cause} would be both censored and events of the cause; pass the "
            f"code of an event as cause= (codes present: {sorted(rows_per_code)})"
        )
    other_counts = [(c, k) for c, k in rows_per_code.items() if c not in (cause, censor_code)]
    notes: list[str] = []
    if declared is not None:
        undeclared = [(c, k) for c, k in other_counts if c not in declared]
        if undeclared:
            listed = ", ".join(f"{c} ({k} rows)" for c, k in undeclared)
            raise InputError(
                f"{frame}: column {status!r} has {sum(k for _, k in undeclared)} of {n} rows with status code(s) "
                f"outside the declared ones (censor_code={censor_code}, cause={cause}, "
                f"competing_codes={declared}): {listed}; recode those rows, add the code to competing_codes= if "
                "it is a competing event, or set censor_code= if it marks censoring"
            )
    elif other_counts:
        listed = ", ".join(f"{c} ({k} of {n} rows)" for c, k in other_counts)
        notes.append(
            f"column {status!r}: status code(s) other than censor_code={censor_code} and cause={cause} were "
            f"treated as competing events (as cuminc does): {listed}; pass competing_codes= to declare them"
        )
    if cause not in rows_per_code:
        present = [c for c in rows_per_code if c != censor_code]
        per_code = ", ".join(f"{c}: {k}" for c, k in rows_per_code.items())
        raise InputError(
            f"{frame}: column {status!r} has no rows with cause={cause} among its {n} rows; event codes "
            f"present: {present} (rows per code {{{per_code}}}, censor_code={censor_code}); there is no incidence "
            "to estimate: check cause= and censor_code= against the status coding"
        )
    return times, codes, None if declared is None else tuple(declared), notes


def cumulative_incidence(
    data: pd.DataFrame,
    time: str,
    status: str,
    cause: int = 1,
    group: str | None = None,
    censor_code: int = 0,
    conf_level: float = 0.95,
    *,
    competing_codes: Sequence[int] | None = None,
) -> CumulativeIncidenceResult:
    """Aalen-Johansen cumulative incidence of ``cause``, equal to ``cmprsk::cuminc``.

    Parameters
    ----------
    data : DataFrame, one row per patient.
    time : column of follow-up times (days, >= 0).
    status : column of integer codes: ``censor_code`` = censored, others = causes.
    cause : the cause whose incidence is estimated.
    group : optional grouping column (cuminc's ``group``).
    censor_code : cuminc's ``cencode``.
    conf_level : coverage of the pointwise log(-log) interval.
    competing_codes : sequence of int, optional
        Declared competing-event codes; any status outside
        ``{censor_code, cause, *competing_codes}`` then raises (as in
        ``fine_gray``). When omitted, every code other than ``censor_code`` is
        a cause (cuminc's rule) and ``.notes`` lists the codes treated as
        competing events with their row counts.

    Returns
    -------
    CumulativeIncidenceResult
        ``.table`` equals cuminc's ``est`` and ``var`` at every time where the
        CIF of ``cause`` steps (1e-7 / 1e-6 relative in the tests).

    Raises
    ------
    InputError
        Bad times or codes, an undeclared code (with ``competing_codes``), no
        rows of ``cause``, ``cause == censor_code``.
    """
    level = _check_conf_level(conf_level)
    times, codes, declared, notes = _competing_inputs(
        data, time, status, cause, censor_code, competing_codes, "cumulative_incidence"
    )
    group_codes, levels = check_group(data, group, "cumulative_incidence data")
    members = [np.arange(len(times))] if group is None else group_order(group_codes, len(levels))
    pieces, last_times = [], []
    for label, rows in zip(levels, members, strict=True):
        t, c = (times, codes) if group is None else (times[rows], codes[rows])
        incidence = aalen_johansen(t, c == cause, c != censor_code, cause_times_only=True)
        cif, variance = incidence.cif, incidence.variance
        lower, upper = cif_confidence_band(cif, variance, level)
        part = pd.DataFrame(
            {
                "time": incidence.time,
                "n_risk": incidence.n_risk,
                "n_event": incidence.n_cause,
                "cif": cif,
                "variance": variance,
                "lower": lower,
                "upper": upper,
            },
            copy=False,
        )
        if group is not None:
            part.insert(0, "group", label)
        pieces.append(part)
        last_times.append(float(t.max()) if len(t) else float("nan"))
    return CumulativeIncidenceResult(
        table=pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True),
        cause=int(cause),
        censor_code=int(censor_code),
        conf_level=level,
        group=group,
        _levels=tuple(levels),
        _last_time=tuple(last_times),
        competing_codes=declared,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- Gray's test


@dataclass(frozen=True)
class GrayTestResult:
    """Gray's K-sample test of equal cumulative incidence, as ``cuminc(...)$Tests`` (rho = 0).

    Attributes
    ----------
    statistic : chi-square statistic ``z' V^-1 z`` on the first K - 1 groups.
    df : K - 1.
    p_value : upper tail of chi-square(df).
    score : (K,) score ``z`` per group (observed minus expected cause events on
        the subdistribution risk sets, summed over strata).
    variance : (K, K) estimated covariance of ``score``.
    table : DataFrame with ``group``, ``n``, ``observed`` (events of the cause),
        ``score``.
    cause : the cause tested.
    competing_codes : the declared competing-event codes, or None (cuminc's
        rule: every code other than ``censor_code`` and ``cause``).
    notes : remarks on the data for a report: undeclared codes treated as
        competing events (with row counts), strata without events of the
        cause (cuminc says nothing; they add zero to the score and its
        covariance).
    """

    statistic: float
    df: int
    p_value: float
    score: np.ndarray
    variance: np.ndarray
    table: pd.DataFrame
    cause: int
    competing_codes: tuple[int, ...] | None = None
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        from .._printing import render_gray

        return render_gray(self)

    def _repr_html_(self) -> str:
        from .._printing import render_gray_html

        return render_gray_html(self)


def _event_free_strata_note(
    strata: str, strata_codes: np.ndarray, strata_levels: list, is_cause: np.ndarray, cause: int
) -> list[str]:
    """The note for strata with no event of the cause (worded as ``logrank``'s)."""
    n_levels = len(strata_levels)
    rows = np.bincount(strata_codes, minlength=n_levels)
    events = np.bincount(strata_codes, weights=is_cause.astype(float), minlength=n_levels)
    empty = [(label, int(r)) for label, r, d in zip(strata_levels, rows, events, strict=True) if d == 0]
    n = len(strata_codes)
    if len(empty) == 1:
        label, r = empty[0]
        return [
            f"stratum {{{strata!r}: {label!r}}} ({r} of {n} rows) has no events of cause {cause}; "
            "it contributes nothing to the test"
        ]
    if empty:
        return [
            f"{len(empty)} of {n_levels} strata of {strata!r} have no events of cause {cause} "
            f"({sum(r for _, r in empty)} of {n} rows; e.g. {[lab for lab, _ in empty[:5]]}); "
            "they contribute nothing to the test"
        ]
    return []


def gray_test(
    data: pd.DataFrame,
    time: str,
    status: str,
    group: str,
    cause: int = 1,
    censor_code: int = 0,
    strata: str | None = None,
    *,
    competing_codes: Sequence[int] | None = None,
) -> GrayTestResult:
    """Gray's K-sample test that the cumulative incidence of ``cause`` is equal across groups.

    Equals ``cmprsk::cuminc(ftime, fstatus, group, strata, rho=0, cencode=)$Tests``
    for the row of ``cause``. With ``strata``, scores and covariances are
    summed over strata (estimates are never stratified, as in cuminc); a
    stratum without events of the cause adds nothing, as in cuminc, and is
    named in ``.notes``. The per-stratum score and covariance come from
    :func:`._gray.gray_score_covariance` (derivation and tie handling in
    docs/survival-descriptive.md).

    ``competing_codes`` declares the competing-event codes, as in
    :func:`cumulative_incidence`: any other code then raises; without it every
    code other than ``censor_code`` and ``cause`` is competing (cuminc) and
    ``.notes`` lists them with their row counts.
    """
    where = "gray_test data"
    times, codes, declared, notes = _competing_inputs(
        data, time, status, cause, censor_code, competing_codes, "gray_test"
    )
    group_codes, levels = check_group(data, group, where)
    strata_codes, strata_levels = check_group(data, strata, where, role="strata")
    k = len(levels)
    if k < 2:
        raise InputError(
            f"{where}: group column {group!r} has a single group {levels} in all {len(group_codes)} rows; "
            "Gray's test needs at least two groups to compare: check the group column "
            "(cumulative_incidence describes a single group)"
        )
    is_cause = codes == cause
    is_other = (codes != cause) & (codes != censor_code)
    if strata is not None:
        notes += _event_free_strata_note(strata, strata_codes, strata_levels, is_cause, int(cause))
    score = np.zeros(k)
    covariance = np.zeros((k, k))
    for rows in group_order(strata_codes, len(strata_levels)):
        if not is_cause[rows].any():
            continue  # no event of the cause: zero score and covariance (noted above)
        s, v = gray_score_covariance(times[rows], is_cause[rows], is_other[rows], group_codes[rows], k)
        score += s
        covariance += v
    if not (np.isfinite(score).all() and np.isfinite(covariance).all()):
        # not expected to happen (the kernel skips the one known 0 * inf case); never return NaN silently
        raise InputError(
            f"{where}: the score or its covariance is not finite (groups {levels} of column {group!r}, "
            f"{len(group_codes)} rows); please report this data set. cuminc's statistic may be unusable here too"
        )
    reduced = covariance[:-1, :-1]
    if np.linalg.matrix_rank(reduced) < k - 1:
        raise InputError(
            f"{where}: the covariance of the scores is singular (groups {levels} of column {group!r}, "
            f"{len(group_codes)} rows); a group may have no one at risk at any event time of cause {cause} "
            "(cuminc reports a statistic of -1 here): merge or drop that group"
        )
    statistic = float(score[:-1] @ np.linalg.solve(reduced, score[:-1]))
    df = k - 1
    table = pd.DataFrame(
        {
            "group": levels,
            "n": np.bincount(group_codes, minlength=k),
            "observed": np.bincount(group_codes, weights=is_cause.astype(float), minlength=k),
            "score": score,
        }
    )
    return GrayTestResult(
        statistic=statistic,
        df=df,
        p_value=float(stats.chi2.sf(statistic, df)),
        score=score,
        variance=covariance,
        table=table,
        cause=int(cause),
        competing_codes=declared,
        notes=tuple(notes),
    )
