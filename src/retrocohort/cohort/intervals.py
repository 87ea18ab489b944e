"""Time-varying covariates on the grace intervals of the target-trial emulation (docs/target-trial.md).

:func:`time_varying_values` turns covariates the study declares (``[covariates.NAME]`` with a concept and
a summary, e.g. the maximum lactate) into the long frame that
:func:`retrocohort.designs.clone_censor_weight` takes as ``time_varying``: one row per patient of the
analysis frame and grace interval, with the value known at the interval's start.

The value of interval k (starting at ``cut_k`` days after the index, cuts from
:func:`~retrocohort.designs.interval_cuts`):

* k = 0: the covariate's value at the index as the study defines it (the frame's column, after the
  study's missing-data rule);
* k >= 1: the covariate's summary of the concept's events in the interval before, ``(cut_k-1, cut_k]``
  after the index; when no event falls there, the value of interval k - 1 is carried forward
  (for ``count``, ``any`` and ``sum`` no event is a known zero: 0, nothing is carried).

So a value is used only after it was measured: an event inside interval k never enters interval k's
row, and cannot predict a start in the same interval (no look-ahead). The events are read through the
cohort builder's own compiler (:class:`~retrocohort.cohort.builder._Compiler`, ``in_window``), with the
covariate's concept, value range and ``match`` rule.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from ..designs.clone_censor_weight import interval_cuts
from ..errors import InputError
from ..sources.mimic_iv import MimicIV, SourceConnection
from ..spec.study import Study
from ..spec.window import Window
from .builder import SECONDS_PER_DAY, _Compiler, _seconds, _value_filter, in_window

#: Summaries for which an interval without events has the value 0 (a count, not a measurement).
ZERO_WHEN_NONE = ("count", "any", "sum")
_WHERE = "time_varying_values"


def _check_request(study: Study, frame: pd.DataFrame, names: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{_WHERE}: expected the cohort's analysis frame (a DataFrame), got {type(frame).__name__}")
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise InputError(f"{_WHERE}: no covariate named; give the [covariates.NAME] that vary over the grace window")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{_WHERE}: covariate(s) {repeated} named more than once")
    for column in ("subject_id", "index_time"):
        if column not in frame.columns:
            raise InputError(
                f"{_WHERE}: the frame has no column {column!r} (columns: {list(frame.columns)[:20]}); pass the "
                "cohort's data (BuiltCohort.data, or rows of it), which has the patient key and the index time"
            )
    if not pd.api.types.is_datetime64_any_dtype(frame["index_time"]):
        raise InputError(f"{_WHERE}: column 'index_time' is {frame['index_time'].dtype}, not a timestamp")
    if not pd.api.types.is_integer_dtype(frame["subject_id"]) and not pd.api.types.is_float_dtype(frame["subject_id"]):
        raise InputError(
            f"{_WHERE}: column 'subject_id' is {frame['subject_id'].dtype}, not the integer key of hosp/patients"
        )
    bad = int(frame["index_time"].isna().sum() + frame["subject_id"].isna().sum())
    if bad:
        raise InputError(f"{_WHERE}: {bad} rows of the frame have no subject_id or index_time")
    for name in names:
        cov = study.covariates.get(name)
        if cov is None:
            raise InputError(
                f"{_WHERE}: {name!r} is not a covariate of study {study.study.name!r} "
                f"(covariates: {sorted(study.covariates)}); declare it under [covariates.{name}]"
            )
        if study.concept_kind(cov.concept[0]) == "baseline" or cov.window is None or cov.summary is None:
            raise InputError(
                f"{_WHERE}: covariate {name!r} is the built-in baseline {cov.concept[0]!r}, fixed at the index; it "
                "cannot vary over the grace window. A time-varying covariate needs a concept of events with a "
                'window and a summary (e.g. concept = "lactate", summary = "max")'
            )
        window: Window = cov.window
        if window.calendar_day or window.end_hours > 0:
            raise InputError(
                f"{_WHERE}: covariate {name!r} has window {window.describe()}, which ends after the index: its "
                "value at the index already looks into the grace window. Declare a covariate on the same concept "
                f'with a window ending at the index (e.g. "[-24h, 0h]") for the time-varying model'
            )
        if name not in frame.columns:
            raise InputError(
                f"{_WHERE}: the frame has no column {name!r} (the covariate's value at the index); pass the "
                "cohort's data (BuiltCohort.data)"
            )
        if not pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name]):
            raise InputError(
                f"{_WHERE}: covariate {name!r} is {frame[name].dtype} in the frame, not numeric; a time-varying "
                "covariate of the censoring model must be a number"
            )
    return names


def _interval_events(compiler: _Compiler, study: Study, name: str, keys: ibis.Table, last_hours: float) -> pd.DataFrame:
    """The covariate's events of the frame's patients in ``(index, index + last_hours]`` (by its match rule):
    ``_row``, ``start_s`` / ``end_s`` (whole seconds from the index), ``value``, ``amount``."""
    cov = study.covariates[name]
    ev = compiler.union(cov.concept)
    j = ev.join(keys, "subject_id")
    grace = Window(start_hours=0.0, end_hours=last_hours, start_closed=False, end_closed=True)
    cond = in_window(j.start_time, j.end_time, j.index_time, grace, cov.match)
    hits = j.filter(cond & _value_filter(j.value, cov.value_min, cov.value_max))
    out = hits.select(
        "_row",
        start_s=_seconds(hits.start_time, hits.index_time),
        end_s=_seconds(ibis.coalesce(hits.end_time, hits.start_time), hits.index_time),
        value=hits.value.cast("float64"),
        amount=hits.amount.cast("float64"),
    )
    with compiler.conn.errors():
        return out.to_pandas()


def _summarise(events: pd.DataFrame, summary: str, cut_s: np.ndarray, match: str) -> pd.DataFrame:
    """One value per (``_row``, ``k``): the summary of the events in interval k - 1, i.e. ``(cut_k-1, cut_k]``."""
    n_int = cut_s.size - 1
    start = events["start_s"].to_numpy(dtype=float)
    # an event feeds interval k when it starts in (cut_k-1, cut_k]; one that runs ("overlap") feeds every
    # interval k whose preceding interval it runs in
    first_k = np.maximum(np.searchsorted(cut_s, start, side="left"), 1)
    if match == "overlap":
        last_k = np.searchsorted(cut_s, events["end_s"].to_numpy(dtype=float), side="left")
    else:
        last_k = first_k
    last_k = np.minimum(last_k, n_int - 1)
    n_k = np.maximum(last_k - first_k + 1, 0)
    take = np.repeat(np.arange(len(events)), n_k)
    k = np.repeat(first_k, n_k) + (np.arange(take.size) - np.repeat(np.cumsum(n_k) - n_k, n_k))
    ev = events.iloc[take].assign(k=k).reset_index(drop=True)
    if summary == "count":
        return ev.groupby(["_row", "k"]).size().rename("v").reset_index()
    if summary == "any":
        return ev.groupby(["_row", "k"]).size().gt(0).astype(float).rename("v").reset_index()
    if summary == "sum":
        ev["v"] = ev["amount"].fillna(ev["value"])  # amounts where the rows have them, as the builder's sum
        return ev.groupby(["_row", "k"])["v"].sum(min_count=0).reset_index()
    ev = ev[ev["value"].notna()]
    if summary in ("min", "max", "mean"):
        return ev.groupby(["_row", "k"])["value"].agg(summary).rename("v").reset_index()
    # first / last / nearest: nearest to the interval's start is the latest event of the interval before
    if summary == "first":
        order, ascending = ["_row", "k", "start_s", "value"], [True, True, True, True]
    elif summary == "last":
        order, ascending = ["_row", "k", "start_s", "value"], [True, True, False, False]
    else:  # nearest (ties as the builder's nearest: the smaller value)
        order, ascending = ["_row", "k", "start_s", "value"], [True, True, False, True]
    picked = ev.sort_values(order, ascending=ascending, kind="mergesort").drop_duplicates(["_row", "k"])
    return picked[["_row", "k", "value"]].rename(columns={"value": "v"})


def time_varying_values(
    source_or_conn: SourceConnection | MimicIV | str | Path,
    study: Study,
    frame: pd.DataFrame,
    names: Sequence[str],
    grace_days: float,
    interval_days: float,
) -> pd.DataFrame:
    """The values of time-varying covariates per patient and grace interval, known at the interval's start.

    Parameters
    ----------
    source_or_conn
        An open :class:`~retrocohort.sources.mimic_iv.SourceConnection` (left open), or a MIMIC-IV folder /
        :class:`~retrocohort.sources.MimicIV` (opened on DuckDB and closed here).
    study
        The validated study; each name is one of its ``[covariates.NAME]`` with a concept of events, a
        window ending at or before the index and a summary.
    frame
        The cohort's analysis frame (:attr:`BuiltCohort.data`, or rows of it in the order of the analysis):
        ``subject_id``, ``index_time`` and each named covariate's value at the index.
    names
        The covariates that vary over the grace window.
    grace_days, interval_days
        As :func:`~retrocohort.designs.clone_censor_weight`; the intervals are those of
        :func:`~retrocohort.designs.interval_cuts`.

    Returns
    -------
    DataFrame with ``row`` (0-based position in ``frame``), ``day`` (the interval's start, days from the
    index) and one float column per name; ``len(frame) * K`` rows sorted by row and day: the
    ``time_varying`` argument of :func:`~retrocohort.designs.clone_censor_weight`. Row-level: never
    write it to an output. A value missing at the index (no study imputation) stays missing until the
    first measurement, which clone_censor_weight refuses.
    """
    if not isinstance(study, Study):
        raise InputError(f"{_WHERE}: expected a validated Study, got {type(study).__name__}")
    names = _check_request(study, frame, names)
    cuts = interval_cuts(grace_days, interval_days)
    n_int, n = cuts.size - 1, len(frame)
    # the builder's times are whole seconds; so are the cuts here
    cut_s = np.round(cuts * SECONDS_PER_DAY)
    values = np.empty((n, n_int, len(names)))
    for c, name in enumerate(names):
        values[:, 0, c] = pd.to_numeric(frame[name]).to_numpy(dtype=float)
    if n_int > 1 and n:
        keys_frame = pd.DataFrame(
            {
                "_row": np.arange(n, dtype=np.int64),
                "subject_id": pd.to_numeric(frame["subject_id"]).astype("int64").to_numpy(),
                "index_time": pd.to_datetime(frame["index_time"]).astype("datetime64[us]").to_numpy(),
            }
        )
        last_hours = float(cut_s[-2]) / 3600.0  # the last interval's value comes from events up to its start
        conn, opened = _connect(source_or_conn)
        # a view, not a bare memtable: Spark's cached tables (the compiler caches each concept's events)
        # are planned without the memtables an expression refers to
        view = f"rc_tv_keys_{uuid.uuid4().hex[:12]}"
        try:
            with conn.errors():
                keys = conn.backend.create_view(view, ibis.memtable(keys_frame), overwrite=True)
            compiler = _Compiler(conn, study)
            compiler.subjects = keys.select("subject_id").distinct()
            try:
                for c, name in enumerate(names):
                    events = _interval_events(compiler, study, name, keys, last_hours)
                    cov = study.covariates[name]
                    summary = str(cov.summary)
                    per = _summarise(events, summary, cut_s, cov.match)
                    found = np.full((n, n_int), np.nan)
                    found[per["_row"].to_numpy(dtype=np.int64), per["k"].to_numpy(dtype=np.int64)] = per["v"]
                    for k in range(1, n_int):
                        if summary in ZERO_WHEN_NONE:
                            values[:, k, c] = np.nan_to_num(found[:, k], nan=0.0)
                        else:
                            values[:, k, c] = np.where(np.isnan(found[:, k]), values[:, k - 1, c], found[:, k])
            finally:
                compiler.release()
                with contextlib.suppress(Exception):  # the view goes with the connection anyway
                    conn.backend.drop_view(view)
        finally:
            if opened:
                conn.close()
    out = pd.DataFrame({"row": np.repeat(np.arange(n, dtype=np.int64), n_int), "day": np.tile(cuts[:-1], n)})
    for c, name in enumerate(names):
        out[name] = values[:, :, c].ravel()
    return out


def _connect(source: SourceConnection | MimicIV | str | Path) -> tuple[SourceConnection, bool]:
    if isinstance(source, SourceConnection):
        return source, False
    if isinstance(source, (str, Path)):
        source = MimicIV(source)
    if not isinstance(source, MimicIV):
        raise InputError(
            f"{_WHERE}: expected a MIMIC-IV folder, MimicIV or open SourceConnection, got {type(source).__name__}"
        )
    return source.connect(engine="duckdb"), True


__all__ = ["ZERO_WHEN_NONE", "time_varying_values"]
