"""Residuals, predictions and survival curves of a Cox fit, as R's ``residuals.coxph``,
``predict.coxph`` and ``survfit.coxph``.

One O(n p) sweep per stratum (latest time first, the sweep :func:`cox` uses)
gives every quantity: the expected number of events of each row (its
cumulative hazard times its risk score, hence the martingale residuals), the
Schoenfeld residual of each event row, and per distinct time the hazard
increment, the variance increment of the cumulative hazard and the
hazard-weighted mean covariate that the survival-curve variance needs. Tied
deaths follow the fit's ``ties``: with Efron the k-th of d tied deaths sees
the risk set less k/d of the dying rows' weight, a dying row is charged
``(1 - k/d)`` of the k-th step, and the Schoenfeld residual uses the mean of
the d steps' weighted covariate means, as coxph does.

Numerics only: these functions take a :class:`CoxResult` and return
DataFrames; nothing is printed or plotted.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd
from numba import njit
from scipy import stats

from .._design import numeric_column, require_columns
from ..errors import InputError
from ._checks import check_time
from .cox import CoxResult, _profile_matrix, score_residuals

ResidualType = Literal["martingale", "deviance", "score", "schoenfeld", "scaledsch", "dfbeta", "dfbetas"]
PredictType = Literal["lp", "risk", "expected"]
Reference = Literal["strata", "sample", "zero"]
SurvConfType = Literal["log", "log-log", "plain", "none"]

__all__ = ["cox_residuals", "predict_cox", "survfit_cox"]


@njit(cache=True)
def _detail_kernel(stop, start, event, w, X, eta, sbounds, sorder, has_entry, efron):
    """One backward sweep per stratum over the sorted fit data.

    Returns
    -------
    expected : (n,) each row's ``exp(eta_i) * (cumulative hazard over its (start, stop])``,
        with Efron's down-weighting for a row that dies in a tied group.
    schoen : (n, p) ``x_i - xbar`` for event rows (0 elsewhere); Efron: mean of the steps' xbar.
    first : (m,) row index of the first row of each distinct (stratum, stop), in time order.
    haz : (m,) hazard increment at that time (0 without events).
    varg : (m,) ``sum_k wbar_k / S0_k^2`` over its steps (the variance of the hazard at known beta).
    hx : (m, p) ``sum_k h_k xbar_k`` over its steps (for the term of the variance due to beta).
    nrisk, nevent : (m,) weighted number at risk and weighted number of events.
    """
    n, p = X.shape
    r = np.empty(n)
    ex = np.empty(n)
    for i in range(n):
        ex[i] = np.exp(eta[i])
        r[i] = w[i] * ex[i]
    expected = np.zeros(n)
    schoen = np.zeros((n, p))
    first = np.empty(n, dtype=np.int64)
    haz = np.zeros(n)
    varg = np.zeros(n)
    hx = np.zeros((n, p))
    nrisk = np.zeros(n)
    nevent = np.zeros(n)
    s1 = np.zeros(p)
    d1 = np.zeros(p)
    xm = np.zeros(p)
    m = 0
    for s in range(sbounds.shape[0] - 1):
        lo = sbounds[s]
        hi = sbounds[s + 1]
        m_start = m
        s0 = 0.0
        wrisk = 0.0
        s1[:] = 0.0
        atot = 0.0  # cumulative hazard of the times already swept (all later than the current one)
        sp = hi - 1
        i = hi - 1
        while i >= lo:
            t = stop[i]
            j = i
            while j - 1 >= lo and stop[j - 1] == t:
                j -= 1
            nd = 0
            dw = 0.0
            d0 = 0.0
            d1[:] = 0.0
            for k in range(j, i + 1):
                s0 += r[k]
                wrisk += w[k]
                for a in range(p):
                    s1[a] += X[k, a] * r[k]
                # the row's integral runs to the stratum's start: subtract what lies after its stop
                expected[k] = -ex[k] * atot
                if event[k] != 0:
                    nd += 1
                    dw += w[k]
                    d0 += r[k]
                    for a in range(p):
                        d1[a] += X[k, a] * r[k]
            if has_entry:
                while sp >= lo and start[sorder[sp]] >= t:
                    k = sorder[sp]
                    s0 -= r[k]
                    wrisk -= w[k]
                    for a in range(p):
                        s1[a] -= X[k, a] * r[k]
                    # and add back what lies before its entry (later subtracted with the stratum's total)
                    expected[k] += ex[k] * atot
                    sp -= 1
            first[m] = j
            nrisk[m] = wrisk
            nevent[m] = dw
            h_all = 0.0
            h_dead = 0.0
            xm[:] = 0.0
            if nd > 0:
                steps = nd if (efron and nd > 1) else 1
                wbar = dw / steps
                for q in range(steps):
                    f = q / steps
                    e0 = s0 - f * d0
                    h = wbar / e0
                    h_all += h
                    h_dead += (1.0 - f) * h
                    varg[m] += wbar / (e0 * e0)
                    for a in range(p):
                        xb = (s1[a] - f * d1[a]) / e0
                        hx[m, a] += h * xb
                        xm[a] += xb / steps
                for k in range(j, i + 1):
                    if event[k] != 0:
                        # a dying row is charged (1 - k/d) of the k-th Efron step, not all of it
                        expected[k] -= ex[k] * (h_all - h_dead)
                        for a in range(p):
                            schoen[k, a] = X[k, a] - xm[a]
            haz[m] = h_all
            atot += h_all
            m += 1
            i = j - 1
        # rows still at risk at the stratum's earliest time entered before all of its hazard
        if has_entry:
            while sp >= lo:
                k = sorder[sp]
                expected[k] += ex[k] * atot
                sp -= 1
        else:
            for k in range(lo, hi):
                expected[k] += ex[k] * atot
        # times were stored latest first: put them in time order
        first[m_start:m] = first[m_start:m][::-1].copy()
        haz[m_start:m] = haz[m_start:m][::-1].copy()
        varg[m_start:m] = varg[m_start:m][::-1].copy()
        hx[m_start:m] = hx[m_start:m][::-1].copy()
        nrisk[m_start:m] = nrisk[m_start:m][::-1].copy()
        nevent[m_start:m] = nevent[m_start:m][::-1].copy()
    return expected, schoen, first[:m], haz[:m], varg[:m], hx[:m], nrisk[:m], nevent[:m]


def _detail(result: CoxResult):
    """Run the sweep at the fit's coefficients; eta is shifted by its maximum (returned) for overflow safety."""
    f = result._fit
    shift = float(f.eta.max()) if len(f.eta) else 0.0
    out = _detail_kernel(
        f.stop, f.start, f.event, f.weights, f.X, f.eta - shift, f.sbounds, f.sorder, f.has_entry, f.efron
    )
    return shift, out


def _check_choice(where: str, name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"{where}: {name}={value!r} is not supported; use one of {list(allowed)}")


def _naive_var(result: CoxResult) -> np.ndarray:
    # residuals.coxph uses the model-based variance (fit$naive.var when robust, else fit$var)
    return result.naive_vcov.to_numpy()


def _collapse(values: np.ndarray, data: pd.DataFrame, collapse: str, n: int, where: str) -> tuple[np.ndarray, pd.Index]:
    """Sum rows within the groups of column ``collapse`` (``rowsum``: groups in sorted order)."""
    require_columns(data, [collapse], f"{where} data")
    if len(data) != n:
        raise InputError(
            f"{where}: data has {len(data)} rows but the fit used {n}; pass the data frame the fit was made on"
        )
    ids = data[collapse]
    if ids.isna().any():
        raise InputError(
            f"{where}: collapse column {collapse!r} has {int(ids.isna().sum())} missing value(s) out of {n} rows; "
            "every row needs an id to be summed into"
        )
    codes, uniques = pd.factorize(ids, sort=True)
    out = np.zeros((len(uniques), *values.shape[1:]))
    np.add.at(out, codes, values)
    return out, pd.Index(uniques, name=collapse)


def cox_residuals(
    result: CoxResult,
    type: ResidualType = "martingale",
    *,
    weighted: bool | None = None,
    collapse: str | None = None,
    data: pd.DataFrame | None = None,
) -> pd.DataFrame | pd.Series:
    """Residuals of a Cox fit, as ``residuals(fit, type=, weighted=, collapse=)``.

    Parameters
    ----------
    result : CoxResult
    type : "martingale" (default), "deviance", "score", "schoenfeld",
        "scaledsch" (scaled Schoenfeld: ``d * r V + beta``, d the number of
        events, V the model-based variance), "dfbeta" (score residuals times V,
        the approximate change in each coefficient when the row is left out) or
        "dfbetas" (dfbeta divided by the coefficients' standard errors).
    weighted : multiply by the case weights; the default is R's: True for
        dfbeta / dfbetas, False otherwise.
    collapse : a column of ``data`` (e.g. a subject id of counting-process
        rows); the residuals are summed within its values (R's ``collapse=``),
        giving one row per id in sorted id order. Not for Schoenfeld residuals
        (they belong to event times, not rows).
    data : the frame the fit was made on; needed only with ``collapse``.

    Returns
    -------
    Series (martingale, deviance; one value per row in input order or per
    collapse id) or DataFrame (score, dfbeta, dfbetas: one column per model
    term; schoenfeld, scaledsch: one row per event in (stratum, time) order
    with the event ``time`` in a column, and ``strata`` when the fit has
    strata).

    Raises
    ------
    InputError for an unknown type, ``collapse`` without ``data`` or with a
    missing id, or Schoenfeld residuals with ``collapse``.
    """
    where = "cox_residuals"
    _check_choice(where, "type", type, get_args(ResidualType))
    if type not in ("martingale", "deviance") and not result._fit.columns:
        # as residuals.coxph.null: these residuals have one column per coefficient, and there are none
        raise InputError(
            f"{where}: {type!r} residuals are not defined for a null model (no covariates); "
            "only 'martingale' and 'deviance' residuals are"
        )
    if weighted is None:
        weighted = type in ("dfbeta", "dfbetas")
    f = result._fit
    n = len(f.stop)
    if collapse is not None and data is None:
        raise InputError(f"{where}: collapse={collapse!r} needs data= (the frame the fit was made on)")
    if collapse is not None and type in ("schoenfeld", "scaledsch"):
        raise InputError(f"{where}: collapse cannot be used with type={type!r}: Schoenfeld residuals are per event")
    columns = list(f.columns)
    if result.ties == "exact" and type not in ("martingale", "deviance"):
        raise InputError(
            f"{where}: type={type!r} is not available for a ties='exact' fit (coxph refuses it too); "
            "martingale and deviance residuals are"
        )

    if type in ("schoenfeld", "scaledsch"):
        _shift, (_e, schoen, *_rest) = _detail(result)
        rows = np.flatnonzero(f.event != 0)  # sorted (stratum, time, input order), as coxph orders them
        rr = schoen[rows]
        if weighted:
            rr = rr * f.weights[rows, None]
        if type == "scaledsch":
            rr = len(rows) * rr @ _naive_var(result) + f.beta
        out = pd.DataFrame(rr, columns=columns)
        out.insert(0, "time", f.stop[rows])
        if f.strata_columns:
            stratum = np.searchsorted(f.sbounds, rows, side="right") - 1
            out.insert(0, "strata", [f.strata_labels[s] for s in stratum])
        return out

    if type in ("score", "dfbeta", "dfbetas"):
        values = score_residuals(result, weighted=bool(weighted)).to_numpy()
        if type != "score":
            var = _naive_var(result)
            values = values @ var
            if type == "dfbetas":
                values = values / np.sqrt(np.diag(var))
        index: pd.Index = pd.RangeIndex(n)
        if collapse is not None:
            assert data is not None  # checked above
            values, index = _collapse(values, data, collapse, n, where)
        return pd.DataFrame(values, columns=columns, index=index)

    _shift, (expected_sorted, *_rest) = _detail(result)
    # the sweep ran on eta - shift, so its hazard is exp(shift) times the true one: the products are exact
    mart = np.empty(n)
    mart[f.order] = f.event - expected_sorted
    status = np.empty(n)
    status[f.order] = f.event
    w = np.empty(n)
    w[f.order] = f.weights
    if weighted:
        mart = mart * w
    index = pd.RangeIndex(n)
    if collapse is not None:
        assert data is not None
        mart, index = _collapse(mart, data, collapse, n, where)
        if type == "deviance":
            status, _ = _collapse(status, data, collapse, n, where)
    if type == "martingale":
        return pd.Series(mart, index=index, name="martingale")
    # deviance: sign(M) sqrt(-2 (M + d log(d - M))), the d log(d - M) term only where d > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(status > 0, status * np.log(np.where(status > 0, status - mart, 1.0)), 0.0)
    dev = np.sign(mart) * np.sqrt(np.maximum(-2.0 * (mart + log_term), 0.0))
    return pd.Series(dev, index=index, name="deviance")


def _stratum_of_rows(result: CoxResult, newdata: pd.DataFrame, where: str) -> np.ndarray:
    """Index of the fit's stratum for each row of ``newdata`` (which must hold the strata columns)."""
    f = result._fit
    cols = list(f.strata_columns)
    require_columns(newdata, cols, where)
    lookup = {lab if isinstance(lab, tuple) else (lab,): s for s, lab in enumerate(f.strata_labels)}
    keys = list(zip(*(newdata[c].tolist() for c in cols), strict=True))
    unknown = [k for k in keys if k not in lookup]
    if unknown:
        raise InputError(
            f"{where}: {len(unknown)} of {len(keys)} rows have strata {unknown[:3]} (columns {cols}) that the fit "
            f"does not have; the fit's strata are {list(f.strata_labels)[:10]}"
        )
    return np.array([lookup[k] for k in keys], dtype=np.int64)


def _fit_x(result: CoxResult) -> np.ndarray:
    """Uncentred model matrix of the fit in input row order."""
    f = result._fit
    x = np.empty_like(f.X)
    x[f.order] = f.X + f.means
    return x


def _new_offset(result: CoxResult, newdata: pd.DataFrame, where: str) -> np.ndarray:
    """The offset column of ``newdata`` for a fit with an offset (0 without one)."""
    column = result._fit.offset_column
    if column is None:
        return np.zeros(len(newdata))
    return numeric_column(newdata, column, f"{where} newdata (the fit's offset column)")


def _fit_stratum(result: CoxResult) -> np.ndarray:
    f = result._fit
    s = np.empty(len(f.stop), dtype=np.int64)
    s[f.order] = np.searchsorted(f.sbounds, np.arange(len(f.stop)), side="right") - 1
    return s


def _centres(result: CoxResult, reference: str) -> np.ndarray:
    """Per stratum (rows) the covariate centre (columns) that ``reference`` asks for.

    coxph's ``fit$means`` are the case-weighted means, except 0 for a column
    holding only 0s and 1s; ``"strata"`` takes the plain case-weighted means
    within each stratum (predict.coxph's default for a stratified fit; with
    one stratum it is ``fit$means``).
    """
    f = result._fit
    n_strata = len(f.sbounds) - 1
    p = f.X.shape[1]
    if reference == "zero":
        return np.zeros((n_strata, p))
    w = np.asarray(f.weights, dtype=float)
    xw = (f.X + f.means) * w[:, None]  # sorted order
    if reference == "sample" or n_strata == 1:
        centre = xw.sum(axis=0) / w.sum()
        # coxph (survival 3.x) leaves 0/1 columns uncentred: their entry of fit$means is 0
        x = f.X + f.means
        centre[np.all((x == 0) | (x == 1), axis=0)] = 0.0
        return np.tile(centre, (n_strata, 1))
    out = np.empty((n_strata, p))
    for s in range(n_strata):
        lo, hi = f.sbounds[s], f.sbounds[s + 1]
        out[s] = xw[lo:hi].sum(axis=0) / w[lo:hi].sum()
    return out


def _cumhaz_at(result: CoxResult, stratum: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Baseline (covariates 0) cumulative hazard of each row's stratum at its time (right-continuous)."""
    f = result._fit
    shift, (_e, _s, first, haz, *_rest) = _detail(result)
    # the sweep used eta - shift with centred X: the baseline at x = 0 is exp(-shift - means'beta) times it
    haz = haz * np.exp(-shift - float(f.means @ f.beta))
    hstratum = np.searchsorted(f.sbounds, first, side="right") - 1
    htime = f.stop[first]
    out = np.zeros(len(times))
    for s in np.unique(stratum):
        sel = hstratum == s
        cum = np.cumsum(haz[sel])
        rows = stratum == s
        idx = np.searchsorted(htime[sel], times[rows], side="right") - 1
        out[rows] = np.where(idx >= 0, cum[np.maximum(idx, 0)], 0.0)
    return out


def predict_cox(
    result: CoxResult,
    newdata: pd.DataFrame | None = None,
    type: PredictType = "lp",
    *,
    reference: Reference = "strata",
    se_fit: bool = False,
    time: str | None = None,
    entry: str | None = None,
) -> pd.DataFrame:
    """Predictions of a Cox fit, as ``predict(fit, newdata, type=, reference=, se.fit=)``.

    Parameters
    ----------
    result : CoxResult
    newdata : rows to predict for, with the fit's covariates (and its strata
        columns when ``reference="strata"`` on a stratified fit or
        ``type="expected"``); None predicts for the fit's own rows, in input order.
    type : "lp" (linear predictor), "risk" (``exp(lp)``) or "expected"
        (expected number of events over each row's follow-up: its cumulative
        hazard times its risk score; for the fit's own rows this is
        ``status - martingale residual``).
    reference : centring of lp and risk, as predict.coxph (survival 3.x):
        "strata" (default) the case-weighted covariate means of the row's
        stratum in the fit data (``fit$means`` without strata), "sample"
        ``fit$means`` (the case-weighted means, 0 for a 0/1 column, which
        coxph does not centre), "zero" no centring.
    se_fit : add the column ``se``: the standard error of lp from the fit's
        variance; for "risk" that times ``sqrt(risk)``, which is what
        predict.coxph returns (the delta method would give times ``risk``);
        not for "expected".
    time, entry : for ``type="expected"`` with ``newdata``: the columns of
        follow-up (stop) time and, for (entry, time] rows, entry time.
        Default: the fit's own column names are not stored, so ``time`` is required.

    Returns
    -------
    DataFrame with column ``fit`` (and ``se``), indexed as ``newdata`` (or 0..n-1).

    Raises
    ------
    InputError for an unknown type or reference, missing columns, unknown
    strata, ``se_fit`` with "expected", or "expected" on newdata without ``time``.
    """
    where = "predict_cox"
    _check_choice(where, "type", type, get_args(PredictType))
    _check_choice(where, "reference", reference, get_args(Reference))
    if se_fit and type == "expected":
        raise InputError(f"{where}: se_fit is not available for type='expected' (not implemented)")
    f = result._fit
    beta = f.beta
    if type == "expected":
        if newdata is None:
            _shift, (expected_sorted, *_rest) = _detail(result)
            out = np.empty(len(f.stop))
            out[f.order] = expected_sorted
            return pd.DataFrame({"fit": out})
        if time is None:
            raise InputError(f"{where}: type='expected' with newdata needs time= (the column of follow-up times)")
        if f.offset_column is not None:
            raise InputError(
                f"{where}: type='expected' on newdata of a fit with an offset ({f.offset_column!r}) is not "
                "implemented (predict.coxph centres the offset there); the fit's own rows (newdata=None) are"
            )
        stop = check_time(newdata, time, f"{where} newdata")
        start = numeric_column(newdata, entry, f"{where} newdata") if entry is not None else np.zeros(len(newdata))
        if entry is not None and np.any(start >= stop):
            raise InputError(
                f"{where} newdata: {int(np.sum(start >= stop))} of {len(stop)} rows have entry column {entry!r} >= "
                f"time column {time!r}; each (entry, time] interval must have positive length"
            )
        stratum = (
            _stratum_of_rows(result, newdata, f"{where} newdata")
            if f.strata_columns
            else np.zeros(len(newdata), dtype=np.int64)
        )
        x = _profile_matrix(result, newdata)
        h = _cumhaz_at(result, stratum, stop) - _cumhaz_at(result, stratum, start)
        return pd.DataFrame({"fit": h * np.exp(x @ beta + _new_offset(result, newdata, where))}, index=newdata.index)

    centres = _centres(result, reference)
    if newdata is None:
        x = _fit_x(result)
        stratum = _fit_stratum(result)
        index: pd.Index = pd.RangeIndex(len(x))
    else:
        x = _profile_matrix(result, newdata)
        index = newdata.index
        if f.strata_columns and reference == "strata":
            stratum = _stratum_of_rows(result, newdata, f"{where} newdata")
        else:
            stratum = np.zeros(len(newdata), dtype=np.int64)
    xc = x - centres[stratum]
    lp = xc @ beta
    if f.offset is not None:
        if newdata is None:
            # predict.coxph: the fit's own rows carry their offset less its (case-weighted) mean ...
            off = np.empty(len(lp))
            off[f.order] = f.offset - np.average(f.offset, weights=np.asarray(f.weights, dtype=float))
            lp = lp + off
        else:
            # ... new rows carry their offset as it is (R's asymmetry, kept)
            lp = lp + _new_offset(result, newdata, where)
    out_df = pd.DataFrame({"fit": lp if type == "lp" else np.exp(lp)}, index=index)
    if se_fit:
        var = result.vcov.to_numpy()
        se = np.sqrt(np.einsum("ij,jk,ik->i", xc, var, xc))
        # predict.coxph scales the lp's se by sqrt(risk) for type "risk" (not the delta method's risk): as R
        out_df["se"] = se if type == "lp" else se * np.sqrt(np.exp(lp))
    return out_df


def survfit_cox(
    result: CoxResult,
    newdata: pd.DataFrame,
    *,
    conf_level: float = 0.95,
    conf_type: SurvConfType = "log",
    start_time: float | None = None,
) -> pd.DataFrame:
    """Predicted survival curves with standard errors, as ``survfit(fit, newdata, censor = TRUE)``.

    Parameters
    ----------
    result : CoxResult (stratified or not).
    newdata : one row per covariate profile. For a stratified fit, when it holds
        the strata columns each profile gets its own stratum's curve; otherwise
        every profile gets a curve in every stratum (as survfit.coxph does).
    conf_level, conf_type : pointwise interval, survfit's ``conf.int`` and
        ``conf.type`` ("log" default, "log-log", "plain" or "none").
    start_time : survfit.coxph's ``start.time``: the curves conditional on
        being event-free just before ``start_time``; times >= start_time are kept
        and the cumulative hazard, its variance (baseline and beta terms) and
        the survival restart from 0 there.

    Returns
    -------
    Long DataFrame, one row per profile (``profile``: the newdata index) and
    distinct time of its stratum (``strata`` when the fit has strata): ``time``,
    ``n_risk``, ``n_event`` (case-weighted), ``cumhaz``, ``surv = exp(-cumhaz)``,
    ``std_err`` (standard error of the cumulative hazard, survfit's ``std.err``:
    the Breslow/Efron baseline's variance plus the term due to the variance of
    beta, which is the fit's ``vcov``: robust for a robust fit, as survfit.coxph
    uses ``fit$var``), ``lower``, ``upper``.

    Raises
    ------
    InputError for a bad conf_type or conf_level, or newdata missing a covariate.
    """
    where = "survfit_cox"
    _check_choice(where, "conf_type", conf_type, get_args(SurvConfType))
    if not 0 < conf_level < 1:
        raise InputError(f"{where}: conf_level must be in (0, 1), got {conf_level!r}")
    f = result._fit
    if len(newdata) == 0:
        raise InputError(f"{where}: newdata has no rows; give one row per covariate profile")
    if start_time is not None and (
        isinstance(start_time, bool) or not isinstance(start_time, (int, float)) or not np.isfinite(start_time)
    ):
        raise InputError(f"{where}: start_time must be a finite number (survfit's start.time), got {start_time!r}")
    shift, (_e, _s, first, haz, varg, hx, nrisk, nevent) = _detail(result)
    var = result.vcov.to_numpy()  # survfit.coxph uses fit$var: the robust variance of a robust fit
    hstratum = np.searchsorted(f.sbounds, first, side="right") - 1
    htime = f.stop[first]
    x = _profile_matrix(result, newdata)
    xc = x - f.means  # the sweep's X is centred on f.means
    new_offset = _new_offset(result, newdata, where)
    n_strata = len(f.sbounds) - 1
    if f.strata_columns and all(c in newdata.columns for c in f.strata_columns):
        pairs = list(zip(range(len(newdata)), _stratum_of_rows(result, newdata, f"{where} newdata"), strict=True))
    else:
        pairs = [(i, s) for i in range(len(newdata)) for s in range(n_strata)]
    zcrit = stats.norm.ppf(1 - (1 - conf_level) / 2)
    pieces = []
    for i, s in pairs:
        sel = hstratum == s
        if start_time is not None:
            # conditional on being event-free just before start_time: the sums restart there (an event at
            # start_time counts, as survfit.coxph and survival_curve)
            sel = sel & (htime >= start_time)
            if not sel.any():
                # this stratum ended before start_time: no curve for it (survfit.coxph 3.5 stops with an
                # approx() error "zero non-NA points" here; the other strata keep their curves)
                continue
        # hazards of the sweep belong to eta - shift; the profile's risk relative to that is exp(xc b - shift)
        risk = np.exp(float(xc[i] @ f.beta) + new_offset[i] - shift)
        cumhaz = np.cumsum(haz[sel]) * risk
        d = np.cumsum(hx[sel] - np.outer(haz[sel], xc[i]), axis=0)
        variance = (np.cumsum(varg[sel]) + np.einsum("ij,jk,ik->i", d, var, d)) * risk**2
        std_err = np.sqrt(variance)
        surv = np.exp(-cumhaz)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if conf_type == "log":
                lower, upper = surv * np.exp(-zcrit * std_err), np.minimum(surv * np.exp(zcrit * std_err), 1.0)
            elif conf_type == "log-log":
                # the standard error of log(-log S) is std_err / cumhaz
                sel_pos = cumhaz > 0
                z = np.where(sel_pos, zcrit * std_err / np.where(sel_pos, np.log(surv), 1.0), np.nan)
                lower, upper = surv ** np.exp(-z), surv ** np.exp(z)
                lower = np.where(sel_pos, lower, np.nan)
                upper = np.where(sel_pos, upper, np.nan)
            elif conf_type == "plain":
                lower = np.maximum(surv - zcrit * std_err * surv, 0.0)
                upper = np.minimum(surv + zcrit * std_err * surv, 1.0)
            else:
                lower = upper = np.full(len(surv), np.nan)
        piece = pd.DataFrame(
            {
                "profile": newdata.index[i],
                "time": htime[sel],
                "n_risk": nrisk[sel],
                "n_event": nevent[sel],
                "cumhaz": cumhaz,
                "surv": surv,
                "std_err": std_err,
                "lower": lower,
                "upper": upper,
            }
        )
        if f.strata_columns:
            piece.insert(0, "strata", [f.strata_labels[s]] * len(piece))
        pieces.append(piece)
    if not pieces:
        raise InputError(f"{where}: no time at or after start_time={start_time:g} in the fit; lower start_time")
    return pd.concat(pieces, ignore_index=True)
