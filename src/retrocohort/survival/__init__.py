"""retrocohort.survival: an R-exact survival engine on NumPy kernels.

Each function matches its R counterpart (see docs/survival-*.md for the
tolerances): ``kaplan_meier`` = ``survfit``, ``logrank`` = ``survdiff``,
``cox`` = ``coxph``, ``ph_test`` = ``cox.zph(transform = "km")``,
``cumulative_incidence`` and ``gray_test`` = ``cmprsk::cuminc``,
``fine_gray`` = ``cmprsk::crr`` (plus a cluster-robust variance).
"""

from .competing import CumulativeIncidenceResult, GrayTestResult, cumulative_incidence, gray_test
from .cox import CoxResult, baseline_hazard, cox, predict_survival, score_residuals
from .coxresid import cox_residuals, predict_cox, survfit_cox
from .curves import SurvivalCurveResult, survival_curve
from .finegray import FineGrayResult, fine_gray, predict_cif
from .km import KaplanMeierResult, LogRankResult, kaplan_meier, logrank
from .zph import PHTestResult, ph_test

__all__ = [
    "CoxResult",
    "CumulativeIncidenceResult",
    "FineGrayResult",
    "GrayTestResult",
    "KaplanMeierResult",
    "LogRankResult",
    "PHTestResult",
    "SurvivalCurveResult",
    "baseline_hazard",
    "cox",
    "cox_residuals",
    "cumulative_incidence",
    "fine_gray",
    "gray_test",
    "kaplan_meier",
    "logrank",
    "ph_test",
    "predict_cif",
    "predict_cox",
    "predict_survival",
    "score_residuals",
    "survfit_cox",
    "survival_curve",
]
