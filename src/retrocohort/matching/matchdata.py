"""The matched data set in MatchIt's layouts: ``match.data()`` (one row per unit) and ``get_matches()``
(one row per unit and matched set, for matching with replacement)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InputError
from ._common import check_option
from .nearest import MatchResult


def _aligned(
    result: MatchResult, data: pd.DataFrame | None, names: dict[str, str], where: str, need_all: bool
) -> pd.DataFrame:
    """``data`` in the match's row order, checked; without ``data`` the matched rows kept in the result."""
    if not isinstance(result, MatchResult):
        raise InputError(f"{where}: result must be a MatchResult from match_nearest, got {type(result).__name__}")
    index = result.weights.index
    if data is None:
        if need_all:
            raise InputError(f"{where}: drop_unmatched=False needs the matched frame: pass data=")
        # The result keeps the matched rows (weight > 0) of the data, with its own two columns appended.
        data = result.matched.drop(columns=["subclass", "weight"])
    elif not isinstance(data, pd.DataFrame):
        raise InputError(f"{where}: data must be a pandas DataFrame (the frame given to match_nearest)")
    elif len(data) != len(index) or not data.index.isin(index).all() or not data.index.is_unique:
        raise InputError(
            f"{where}: data must be the frame that was matched: it has {len(data)} rows and the match "
            f"{len(index)} units, with the same index labels; pass the data given to match_nearest"
        )
    else:
        # Rows are matched by index label (a reordered frame is put back in order, not trusted by position).
        data = data.reindex(index) if not data.index.equals(index) else data
    taken = {role: name for role, name in names.items() if name in data.columns}
    if taken:
        raise InputError(
            f"{where}: data already has column(s) {sorted(taken.values())} for {sorted(taken)}; "
            f"choose other names, e.g. {next(iter(taken))}='{next(iter(taken.values()))}_m'"
        )
    if len(set(names.values())) != len(names):
        raise InputError(f"{where}: the new column names {names} must differ from each other")
    return data


def _has_score(result: MatchResult) -> bool:
    return result.options.get("distance", "given") == "given"


def match_data(
    result: MatchResult,
    data: pd.DataFrame | None = None,
    group: Literal["all", "treated", "control"] = "all",
    distance: str = "distance",
    weights: str = "weights",
    subclass: str = "subclass",
    drop_unmatched: bool = True,
    include_s_weights: bool = True,
) -> pd.DataFrame:
    """MatchIt's ``match.data(m.out, data = data)``: ``data`` with the matching columns appended.

    Parameters
    ----------
    result : MatchResult
        The match of ``data``.
    data : pandas.DataFrame, optional
        The frame given to :func:`match_nearest` (same index labels; a
        reordered frame is aligned by label). Without it, the matched rows
        the result keeps (enough unless ``drop_unmatched=False``).
    group : {"all", "treated", "control"}
        Which arm's rows to return.
    distance, weights, subclass : str
        Names of the appended columns: the distance (only when the match had a
        propensity score), the matching weights, the matched set (only
        without replacement, where every unit is in one set).
    drop_unmatched : bool
        Drop the units with weight 0 (unmatched or discarded).
    include_s_weights : bool
        Multiply the matching weights by the match's sampling weights
        (``s_weights``), if any (MatchIt's ``include.s.weights``).

    Returns
    -------
    pandas.DataFrame
        One row per unit in data order, index as ``data``'s (MatchIt's row
        names).
    """
    check_option("group", group, ("all", "treated", "control"))
    names = {"weights": weights}
    if _has_score(result):
        names["distance"] = distance
    if not result.options.get("replace", False):
        names["subclass"] = subclass
    base = _aligned(result, data, names, "match_data", need_all=not drop_unmatched)
    keep = np.ones(len(result.weights), dtype=bool)
    if drop_unmatched:
        keep &= result.weights.to_numpy() > 0
    if group != "all":
        keep &= result.treated.to_numpy() == (group == "treated")
    labels = result.weights.index[keep]
    out = base.loc[labels].copy()
    if "distance" in names:
        out[distance] = result.distance.loc[labels]
    out[weights] = result.weights.loc[labels]
    if include_s_weights and result.s_weights is not None:
        out[weights] = out[weights] * result.s_weights.loc[labels]
    if "subclass" in names:
        out[subclass] = result.subclass.loc[labels]
    return out


def get_matches(
    result: MatchResult,
    data: pd.DataFrame | None = None,
    distance: str = "distance",
    weights: str = "weights",
    subclass: str = "subclass",
    id: str = "id",
    include_s_weights: bool = True,
) -> pd.DataFrame:
    """MatchIt's ``get_matches(m.out, data = data)``: one row per unit and matched set.

    Each focal unit (treated for the ATT, control for the ATC) that found a
    match opens a set, numbered 1, 2, ... in data order; its row comes first
    if it is treated, then the rows of its matches in the order they were
    taken (rows sorted by set and treatment, treated first, as MatchIt sorts
    them). A unit matched into several sets (with replacement) has a row in
    each. Weights: 1 for the focal unit, 1 / (matches in the set) for each
    match.

    Parameters
    ----------
    result, data
        As :func:`match_data`.
    distance, weights, subclass, id : str
        Names of the appended columns; ``id`` holds the unit's index label.
    include_s_weights : bool
        As in :func:`match_data`.

    Returns
    -------
    pandas.DataFrame
        Index 0..k-1 (MatchIt numbers the rows 1..k); columns ``id``,
        ``subclass``, ``weights``, ``data``'s columns, ``distance`` (MatchIt's
        order).
    """
    names = {"weights": weights, "subclass": subclass, "id": id}
    if _has_score(result):
        names["distance"] = distance
    data = _aligned(result, data, names, "get_matches", need_all=False)
    mm = result.match_matrix
    atc = result.options.get("estimand", "ATT") == "ATC"
    pos = {label: i for i, label in enumerate(result.weights.index)}
    rows: list[int] = []
    sets: list[int] = []
    w: list[float] = []
    set_no = 0
    for focal_label, row in zip(mm.index, mm.itertuples(index=False), strict=True):
        others = [v for v in row if v is not pd.NA and v is not None and not (isinstance(v, float) and np.isnan(v))]
        if not others:
            continue
        set_no += 1
        focal = [(pos[focal_label], 1.0)]
        matched = [(pos[v], 1.0 / len(others)) for v in others]
        # Treated rows first within a set (MatchIt sorts by subclass, then treatment status).
        for p, weight in (matched + focal) if atc else (focal + matched):
            rows.append(p)
            sets.append(set_no)
            w.append(weight)
    labels = result.weights.index[rows]
    if include_s_weights and result.s_weights is not None:
        w = list(np.asarray(w) * result.s_weights.to_numpy()[rows])
    # A reused unit repeats its label: number the rows first (MatchIt numbers them 1..k).
    out = data.loc[labels].reset_index(drop=True)
    # MatchIt's column order: id, subclass, weights, the data's columns, distance.
    out.insert(0, weights, w)
    out.insert(0, subclass, pd.Series(pd.Categorical(sets, categories=range(1, set_no + 1)), index=out.index))
    out.insert(0, id, labels)
    if "distance" in names:
        out[distance] = result.distance.to_numpy()[rows]
    return out
