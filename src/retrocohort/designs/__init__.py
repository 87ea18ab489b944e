"""retrocohort.designs: study designs built on the survival engine, as pure numerics on an analysis frame.

``clone_censor_weight`` emulates a target trial of two strategies defined by a grace window
(start the exposure within it, or do not), optionally with time-varying covariates in the censoring model
on the grace intervals of ``interval_cuts``; ``bootstrap`` repeats the whole procedure over patients.
See docs/target-trial.md.
"""

from .clone_censor_weight import (
    BootstrapResult,
    CloneCensorWeightResult,
    bootstrap,
    clone_censor_weight,
    expand_clones,
    interval_cuts,
)

__all__ = [
    "BootstrapResult",
    "CloneCensorWeightResult",
    "bootstrap",
    "clone_censor_weight",
    "expand_clones",
    "interval_cuts",
]
