"""retrocohort.matching: propensity score, nearest-neighbour matching, balance, Table 1.

Each result equals its R counterpart: ``propensity_score`` = ``glm(family =
binomial)``, ``match_nearest`` = MatchIt 4.x ``matchit(method = "nearest")``,
``balance`` and ``table_one`` = tableone's ``ExtractSmd`` and
``print(CreateTableOne(..., smd = TRUE))``. See docs/matching.md.
"""

from .balance import balance, balance_before_after
from .nearest import MatchResult, match_nearest
from .propensity import PropensityResult, propensity_score
from .tableone import table_one

__all__ = [
    "MatchResult",
    "PropensityResult",
    "balance",
    "balance_before_after",
    "match_nearest",
    "propensity_score",
    "table_one",
]
