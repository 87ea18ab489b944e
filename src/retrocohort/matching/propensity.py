"""Propensity score by logistic (or probit) regression, equal to R's ``glm(family = binomial)``.

The fit is iteratively reweighted least squares carried out exactly as R's
``glm.fit`` does it: the same starting values (mu = (y + 1/2) / 2), the same
clamped link functions (``binomial()$linkinv``/``mu.eta``), the same
convergence rule (|dev - dev_old| / (|dev| + 0.1) < 1e-8, at most 25
iterations) and standard errors from the weights of the last iteration.
Following glm's iterates rather than converging further is what makes the
coefficients *and* the standard errors agree with R to ~1e-10 instead of to
the tolerance of the stopping rule. statsmodels' GLM reaches the same
maximum-likelihood estimate but took 4.4 s at n = 1e6, p = 10 on this machine
(pinv/QR per iteration) and reports SEs at its own final iterate, so each
IRLS step is one numba pass over the rows here (_kernels.binomial_normal_equations).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from scipy import special, stats

from .._design import design_matrix
from ..errors import ConvergenceError, InputError, ModelWarning
from . import _kernels
from ._common import as_column_list, check_option, treatment_indicator

Link = Literal["logit", "probit"]

_EPS = np.finfo(float).eps
_GLM_EPSILON = 1e-8
_GLM_MAXIT = 25


@dataclass(frozen=True)
class PropensityResult:
    """Result of :func:`propensity_score` (R: ``glm(treat ~ covariates, family = binomial(link))``).

    Attributes
    ----------
    score : pandas.Series, aligned to ``data.index``
        Fitted probability of treatment (``fitted(fit)``).
    linear : pandas.Series, aligned to ``data.index``
        Linear predictor (``predict(fit)``; the logit of the score for the
        logit link), the usual scale for a caliper (Austin 2011).
    summary : pandas.DataFrame
        Index: term names as R prints them, ``(Intercept)`` first. Columns
        ``estimate``, ``std_error``, ``z``, ``p`` (``coef(summary(fit))``).
    vcov : pandas.DataFrame
        Covariance of the estimates (``vcov(fit)``).
    treated : pandas.Series (bool), aligned to ``data.index``
        True for treated units (the modelled outcome is 1).
    deviance, null_deviance, aic : float
        As ``fit$deviance``, ``fit$null.deviance``, ``fit$aic``.
    iterations : int
        IRLS iterations (``fit$iter``).
    converged : bool
    notes : tuple of str
        Separation or convergence problems found (also issued as warnings).
    options : dict
        ``treatment``, ``covariates``, ``link``, ``treated_value``, ``control_value``.
    """

    score: pd.Series
    linear: pd.Series
    summary: pd.DataFrame
    vcov: pd.DataFrame
    treated: pd.Series
    deviance: float
    null_deviance: float
    aic: float
    iterations: int
    converged: bool
    notes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        # summary(glm(..., family = binomial)): coefficients, deviances, AIC
        from .._printing import render_propensity

        return render_propensity(self)

    def _repr_html_(self) -> str:
        from .._printing import render_propensity_html

        return render_propensity_html(self)

    def plot(self, ax: Any = None, matched: Any = None, labels: Any = None) -> Any:
        """Overlap of the propensity score by arm (mirrored histograms; the report's figure).

        Parameters
        ----------
        ax : an Axes (one panel) or a pair of Axes (with ``matched``), or None for a new Figure.
        matched : a :class:`~retrocohort.matching.MatchResult` to add the after-matching panel, or None.
        labels : arm names, ``{0: "control", 1: "treated"}`` or ``[control, treated]``.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..report.figures import propensity_distributions

        mask = None
        if matched is not None:
            weights = matched.weights.reindex(self.score.index)
            if weights.isna().any():
                raise InputError(
                    f"PropensityResult.plot: the match covers {int(weights.notna().sum())} of the "
                    f"{len(weights)} rows scored ({int(weights.isna().sum())} rows have no matching weight); "
                    "pass the match_nearest result made from the same data frame"
                )
            mask = (weights > 0).to_numpy()
        return propensity_distributions(
            self.score.to_numpy(), self.treated.to_numpy().astype(int), mask, ax=ax, labels=labels
        )


_PROBIT_THRESH = float(-stats.norm.ppf(_EPS))


def fit_binomial_glm(
    x: np.ndarray, y: np.ndarray, link: Link = "logit", weights: np.ndarray | None = None
) -> dict[str, Any]:
    """IRLS for a binomial GLM exactly as R's ``glm.fit`` (no offset).

    Parameters
    ----------
    x : float64 (n, p)
        Design matrix including the intercept column, full column rank.
    y : float64 (n,)
        0/1 outcome.
    link : {"logit", "probit"}
    weights : float64 (n,), optional
        Prior weights (glm's ``weights``), finite and >= 0; rows of weight 0
        are left out of the fit but get fitted values. None: all 1.

    Returns
    -------
    dict
        ``coef`` (p,), ``vcov`` (p, p) = (X' W X)^-1 with the weights of the
        last iteration, ``eta`` and ``mu`` (n,), ``deviance``, ``iterations``,
        ``converged``.
    """
    probit = link == "probit"
    x = np.asarray(x, dtype=float)
    prior = np.ones(len(y)) if weights is None else np.ascontiguousarray(weights, dtype=float)
    # binomial()$initialize: mustart = (weights y + 1/2) / (weights + 1), with y set to 0 where the weight is 0.
    start = (prior * np.where(prior > 0, y, 0.0) + 0.5) / (prior + 1.0)
    eta = stats.norm.ppf(start) if probit else np.log(start / (1.0 - start))
    mu, dev_old = _kernels.binomial_mean_and_deviance(eta, y, probit, _PROBIT_THRESH, prior)
    coef = np.zeros(x.shape[1])
    converged = False
    iteration = 0
    dev = dev_old
    xtwx = np.eye(x.shape[1])
    for iteration in range(1, _GLM_MAXIT + 1):  # noqa: B007 -- read after the loop as glm's fit$iter
        xtwx, xtwz = _kernels.binomial_normal_equations(x, eta, mu, y, probit, prior)
        # Jacobi scaling conditions the solve (age in years next to 0/1 terms); it does not change it.
        scale = np.sqrt(np.diag(xtwx))
        try:
            chol = np.linalg.cholesky(xtwx / np.outer(scale, scale))
        except np.linalg.LinAlgError as exc:  # pragma: no cover - rank checked beforehand
            raise ConvergenceError("propensity_score: weighted design became singular during IRLS") from exc
        new_coef = np.linalg.solve(chol.T, np.linalg.solve(chol, xtwz / scale)) / scale
        new_eta = x @ new_coef
        new_mu, dev = _kernels.binomial_mean_and_deviance(new_eta, y, probit, _PROBIT_THRESH, prior)
        halvings = 0
        # glm.fit halves the step when the deviance is not finite.
        while not np.isfinite(dev) and halvings < _GLM_MAXIT:
            new_coef = (new_coef + coef) / 2.0
            new_eta = x @ new_coef
            new_mu, dev = _kernels.binomial_mean_and_deviance(new_eta, y, probit, _PROBIT_THRESH, prior)
            halvings += 1
        coef, eta, mu = new_coef, new_eta, new_mu
        if abs(dev - dev_old) / (abs(dev) + 0.1) < _GLM_EPSILON:
            converged = True
            break
        dev_old = dev
    scale = np.sqrt(np.diag(xtwx))
    vcov = np.linalg.inv(xtwx / np.outer(scale, scale)) / np.outer(scale, scale)
    return {
        "coef": coef,
        "vcov": vcov,
        "eta": eta,
        "mu": mu,
        "deviance": float(dev),
        "iterations": iteration,
        "converged": converged,
    }


def _aliased_columns(x: np.ndarray) -> list[int]:
    """Columns that are (numerically) linear combinations of earlier ones, which R's pivoting QR sets to NA.

    Sequential Cholesky on the correlation-scaled cross-product: a column whose
    remaining (Schur-complement) variance is below 1e-10 of its own is aliased.
    """
    gram = x.T @ x
    scale = np.sqrt(np.diag(gram))
    scale[scale == 0] = 1.0
    gram = gram / np.outer(scale, scale)
    kept: list[int] = []
    aliased: list[int] = []
    for j in range(x.shape[1]):
        if kept:
            g_kk = gram[np.ix_(kept, kept)]
            g_kj = gram[kept, j]
            residual = gram[j, j] - g_kj @ np.linalg.solve(g_kk, g_kj)
        else:
            residual = gram[j, j]
        if residual < 1e-10:
            aliased.append(j)
        else:
            kept.append(j)
    return aliased


def _separating_terms(x: pd.DataFrame, treated: np.ndarray) -> list[str]:
    """Terms that separate the arms on their own, completely or quasi-completely.

    A term separates when the largest value in one arm is <= the smallest in
    the other; for a 0/1 term this is a level found in one arm only. The MLE
    of its coefficient is then infinite whatever glm's iterations report.
    """
    culprits = []
    for name in x.columns:
        col = x[name].to_numpy()
        a, b = col[treated], col[~treated]
        if a.max() <= b.min() or b.max() <= a.min():
            culprits.append(name)
    return culprits


def _largest_standardized(x: pd.DataFrame, coef: pd.Series) -> list[str]:
    # Separation by a combination of terms: name those with the largest |coef| * SD.
    sd = x.std(ddof=1).replace(0, np.nan)
    std_coef = (coef.reindex(x.columns).abs() * sd).dropna().sort_values(ascending=False)
    return list(std_coef.index[:2])


def propensity_score(
    data: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    link: Link = "logit",
    treated: Any = None,
    weights: str | np.ndarray | pd.Series | None = None,
) -> PropensityResult:
    """Fit the propensity model ``treatment ~ covariates`` as R's ``glm(family = binomial(link))``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit. No missing values in the treatment or the
        covariates (InputError naming columns and counts; nothing is dropped).
    treatment : str
        Two-valued column: 0/1, boolean, or two levels (the second level,
        in categorical order or else sorted, is "treated", as glm codes a
        factor response); ``treated=`` names the treated value explicitly.
    covariates : sequence of str
        Numeric columns enter as they are, booleans as ``<name>TRUE``,
        categorical/string columns as treatment contrasts ``<name><level>``
        (R's ``model.matrix``); an intercept ``(Intercept)`` is added.
    link : {"logit", "probit"}
    treated : scalar, optional
        The value of ``treatment`` that marks treated units.
    weights : str, array (n,) or Series, optional
        Prior (sampling) weights, ``glm(..., weights = )``: a column name,
        values, or a Series aligned to ``data.index``; finite and >= 0.
        MatchIt fits its propensity score with its ``s.weights`` this way;
        pass the same weights to :func:`match_nearest` as ``s_weights``.
        Units of weight 0 are left out of the fit and still get a score.
        Non-integer weights are fine (glm's "non-integer #successes" warning
        concerns the likelihood, not the estimates); the AIC is then glm's
        (binomial log-likelihood at rounded weights).

    Returns
    -------
    PropensityResult
        ``summary`` equals ``coef(summary(glm(...)))`` (estimates and SEs to
        ~1e-10 relative, z and p accordingly), ``score`` ``fitted()``,
        ``linear`` ``predict()``.

    Warns
    -----
    ModelWarning
        Fitted probabilities numerically 0 or 1 (glm's warning) or
        non-convergence under complete or quasi-complete separation; the
        message names the covariate(s) responsible.
    """
    check_option("link", link, get_args(Link))
    covariates = as_column_list(covariates)
    where = "propensity_score: data"
    is_treated, treated_value, control_value = treatment_indicator(data, treatment, treated, where)
    if treatment in covariates:
        raise InputError(f"{where}: the treatment column {treatment!r} cannot also be a covariate")
    terms = design_matrix(data, covariates, where, unused_levels="drop")  # as glm: drop.unused.levels = TRUE
    names = ["(Intercept)", *terms.columns]
    # Fortran order: each column is written contiguously (DataFrame.to_numpy() on many columns
    # consolidates blocks slowly), and the kernel streams the p columns row by row.
    x = np.empty((len(data), len(names)), dtype=float, order="F")
    x[:, 0] = 1.0
    for j, column in enumerate(terms.columns, start=1):
        x[:, j] = terms[column].to_numpy(dtype=float)
    prior = None if weights is None else _prior_weights(data, weights, is_treated, where)
    aliased = _aliased_columns(x if prior is None else x[prior > 0])
    if aliased:
        raise InputError(
            f"{where}: term(s) {[names[j] for j in aliased]} are linear combinations of the other terms "
            "(R's glm would report NA for them); drop or merge the collinear covariates"
        )
    y = is_treated.astype(float)
    fit = fit_binomial_glm(x, y, link, prior)
    coef = pd.Series(fit["coef"], index=names)
    se = np.sqrt(np.diag(fit["vcov"]))
    zval = fit["coef"] / se
    summary = pd.DataFrame(
        {"estimate": fit["coef"], "std_error": se, "z": zval, "p": 2.0 * special.ndtr(-np.abs(zval))},
        index=pd.Index(names, name="term"),
    )
    mu, eta = fit["mu"], fit["eta"]
    notes: list[str] = []
    boundary = bool((mu > 1 - 10 * _EPS).any() or (mu < 10 * _EPS).any())
    fitted_rows = np.ones(len(y), dtype=bool) if prior is None else prior > 0
    culprits = _separating_terms(terms[fitted_rows], is_treated[fitted_rows]) if terms.shape[1] else []
    if boundary or not fit["converged"] or culprits:
        if not culprits and terms.shape[1]:
            culprits = _largest_standardized(terms, coef)
        what = (
            "fitted probabilities numerically 0 or 1 occurred"
            if boundary
            else "the fit did not converge"
            if not fit["converged"]
            else "a covariate separates the arms"
        )
        note = (
            f"propensity_score: {what} (complete or quasi-complete separation of {treatment!r}); "
            f"covariate(s) responsible: {culprits}. Their coefficients and SEs are not finite estimates: "
            "coarsen, merge levels or drop them, or restrict the cohort to overlapping units"
        )
        if not fit["converged"] and not boundary and not _culprits_alone(terms, is_treated, fitted_rows):
            raise ConvergenceError(
                f"propensity_score: IRLS did not converge in {_GLM_MAXIT} iterations; check the covariates for "
                "extreme values or rescale them"
            )
        notes.append(note)
        warnings.warn(note, ModelWarning, stacklevel=2)
    pi = mu
    if prior is None:
        null_mu = y.mean()
        n1 = y.sum()
        null_dev = float(-2.0 * (n1 * np.log(null_mu) + (len(y) - n1) * np.log1p(-null_mu)))
        aic = fit["deviance"] + 2 * len(names)
    else:
        # glm: the null model's mean is the weighted one; binomial()$aic with m = weights:
        # -2 sum_{w > 0} dbinom(round(w y), round(w), mu, log = TRUE) + 2 p.
        pos = prior > 0
        null_mu = float(np.sum(prior * y) / np.sum(prior))
        null_dev = float(-2.0 * np.sum(prior[pos] * np.where(y[pos] > 0.5, np.log(null_mu), np.log1p(-null_mu))))
        m = np.round(prior[pos])
        aic = float(-2.0 * np.sum(stats.binom.logpmf(np.round(m * y[pos]), m, mu[pos])) + 2 * len(names))
    return PropensityResult(
        score=pd.Series(pi, index=data.index, name="propensity_score"),
        linear=pd.Series(eta, index=data.index, name="linear_predictor"),
        summary=summary,
        vcov=pd.DataFrame(fit["vcov"], index=names, columns=names),
        treated=pd.Series(is_treated, index=data.index, name="treated"),
        deviance=fit["deviance"],
        null_deviance=null_dev,
        aic=aic,
        iterations=fit["iterations"],
        converged=fit["converged"],
        notes=tuple(notes),
        options={
            "treatment": treatment,
            "covariates": covariates,
            "link": link,
            "treated_value": treated_value,
            "control_value": control_value,
            "weights": None if prior is None else "given",
        },
    )


def _culprits_alone(terms: pd.DataFrame, is_treated: np.ndarray, rows: np.ndarray) -> list[str]:
    """Terms separating the arms by themselves among the fitted rows (see :func:`_separating_terms`)."""
    return _separating_terms(terms[rows], is_treated[rows]) if terms.shape[1] else []


def _prior_weights(data: pd.DataFrame, weights: Any, is_treated: np.ndarray, where: str) -> np.ndarray:
    """glm's prior weights from a column name, values or an aligned Series; finite, >= 0, some in each arm."""
    if isinstance(weights, str):
        if weights not in data.columns:
            raise InputError(f"{where}: weights column {weights!r} not found; pass a column name of data or values")
        weights = data[weights]
    if isinstance(weights, pd.Series) and not weights.index.equals(data.index):
        raise InputError(f"{where}: the weights Series is not indexed like data; align it to data.index")
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: weights must be numbers, one per row of data: {exc}") from None
    if w.shape != (len(data),):
        raise InputError(f"{where}: weights must have one value per row of data ({len(data)}), got shape {w.shape}")
    bad = int((~np.isfinite(w)).sum() + (w < 0).sum())
    if bad:
        raise InputError(
            f"{where}: {bad} weight(s) are missing, infinite or negative out of {len(w)}; weights must be finite "
            "and >= 0 (drop those rows or set their weight to 0)"
        )
    if not (w[is_treated] > 0).any() or not (w[~is_treated] > 0).any():
        raise InputError(f"{where}: the weights are 0 for every unit of one arm; the model cannot be fitted")
    return w
