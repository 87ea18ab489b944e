"""E-values for unmeasured confounding (VanderWeele & Ding 2017).

The E-value is the minimum strength of association, on the risk-ratio scale,
that an unmeasured confounder would need with both the exposure and the
outcome, conditional on the measured covariates, to fully explain away an
observed association. For a risk ratio ``RR >= 1``::

    E = RR + sqrt(RR * (RR - 1))

and for ``RR < 1`` the same formula is applied to ``1 / RR``. The E-value of
the confidence interval uses the limit closest to the null (1 when the
interval crosses 1).

A hazard ratio is first put on the risk-ratio scale (VanderWeele & Ding 2017,
Table 2; VanderWeele, *Biometrics* 2020):

- rare outcome (cumulative incidence at the end of follow-up below 15%):
  ``RR ~= HR``;
- common outcome (15% or more): ``RR ~= (1 - 0.5**sqrt(HR)) / (1 - 0.5**sqrt(1/HR))``.

Pure functions on floats; these are the formulas of the ``EValue`` R package's
``evalues.HR`` (that package is not installed here; the tests check the closed form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import InputError

RARE_OUTCOME_THRESHOLD = 0.15


def e_value_rr(rr: float) -> float:
    """E-value of a risk ratio (point estimate).

    Parameters
    ----------
    rr : float
        Risk ratio, > 0.

    Returns
    -------
    float
        ``RR* + sqrt(RR* (RR* - 1))`` with ``RR* = max(RR, 1/RR)``; 1 at the null.
    """
    if not (isinstance(rr, (int, float)) and math.isfinite(rr) and rr > 0):
        raise InputError(f"E-value needs a finite risk ratio > 0; got {rr!r}")
    r = rr if rr >= 1 else 1.0 / rr
    return r + math.sqrt(r * (r - 1.0))


def hr_to_rr(hr: float, common: bool) -> float:
    """Approximate risk ratio of a hazard ratio (VanderWeele & Ding 2017).

    ``common=False`` (outcome rare, < 15%): ``RR = HR``.
    ``common=True``: ``RR = (1 - 0.5**sqrt(HR)) / (1 - 0.5**sqrt(1/HR))``.
    """
    if not (math.isfinite(hr) and hr > 0):
        raise InputError(f"E-value needs a finite hazard ratio > 0; got {hr!r}")
    if not common:
        return hr
    return (1.0 - 0.5 ** math.sqrt(hr)) / (1.0 - 0.5 ** math.sqrt(1.0 / hr))


@dataclass(frozen=True)
class EValue:
    """E-values of a hazard ratio and of its confidence limit closest to the null.

    Attributes
    ----------
    hr, lower, upper : float
        The hazard ratio and its confidence limits.
    rr, rr_lower, rr_upper : float
        The same on the approximate risk-ratio scale.
    point : float
        E-value of the point estimate.
    ci : float
        E-value of the confidence limit closest to the null (1 if the CI includes 1).
    outcome_proportion : float
        Share of patients with the outcome by the end of follow-up, used to
        pick the transform.
    transform : {"rare", "common"}
        ``"rare"``: RR ~= HR; ``"common"``: the square-root transform.
    """

    hr: float
    lower: float
    upper: float
    rr: float
    rr_lower: float
    rr_upper: float
    point: float
    ci: float
    outcome_proportion: float
    transform: Literal["rare", "common"]

    @property
    def method(self) -> str:
        """One sentence saying which approximation was used."""
        share = f"{100 * self.outcome_proportion:.0f}%"
        if self.transform == "common":
            return (
                f"outcome common ({share} >= 15%): RR approximated by "
                "(1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)) (VanderWeele & Ding 2017)"
            )
        return f"outcome rare ({share} < 15%): RR approximated by HR (VanderWeele & Ding 2017)"

    def as_dict(self) -> dict[str, float | str]:
        """Plain mapping for results.json."""
        return {
            "hr": self.hr,
            "lower": self.lower,
            "upper": self.upper,
            "rr": self.rr,
            "rr_lower": self.rr_lower,
            "rr_upper": self.rr_upper,
            "point": self.point,
            "ci": self.ci,
            "outcome_proportion": self.outcome_proportion,
            "transform": self.transform,
            "method": self.method,
        }


def e_value_hr(
    hr: float,
    lower: float,
    upper: float,
    outcome_proportion: float,
    rare_threshold: float = RARE_OUTCOME_THRESHOLD,
) -> EValue:
    """E-value of a hazard ratio with its confidence interval.

    Parameters
    ----------
    hr, lower, upper : float
        Hazard ratio and confidence limits (all > 0, ``lower <= hr <= upper``).
    outcome_proportion : float
        Proportion (0-1) of patients with the outcome by the end of follow-up;
        ``>= rare_threshold`` selects the common-outcome transform.
    rare_threshold : float
        0.15 in VanderWeele & Ding (2017).

    Returns
    -------
    EValue
    """
    for name, value in (("hr", hr), ("lower", lower), ("upper", upper)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"E-value: {name} must be a finite number > 0; got {value!r}")
    if not lower <= hr <= upper:
        raise InputError(f"E-value: need lower <= hr <= upper; got {lower!r} <= {hr!r} <= {upper!r}")
    if not 0 <= outcome_proportion <= 1:
        raise InputError(f"E-value: outcome_proportion must be in [0, 1]; got {outcome_proportion!r}")
    common = outcome_proportion >= rare_threshold
    rr, rr_lo, rr_hi = (hr_to_rr(x, common) for x in (hr, lower, upper))
    # The transform is increasing in HR, so the CI stays ordered and 1 maps to 1.
    if rr_lo <= 1.0 <= rr_hi:
        ci = 1.0
    elif rr_lo > 1.0:
        ci = e_value_rr(rr_lo)
    else:
        ci = e_value_rr(rr_hi)
    return EValue(
        hr=hr,
        lower=lower,
        upper=upper,
        rr=rr,
        rr_lower=rr_lo,
        rr_upper=rr_hi,
        point=e_value_rr(rr),
        ci=ci,
        outcome_proportion=float(outcome_proportion),
        transform="common" if common else "rare",
    )
