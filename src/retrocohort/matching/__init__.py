"""retrocohort.matching: propensity score, nearest-neighbour matching, balance, Table 1.

Each result equals its R counterpart: ``propensity_score`` = ``glm(family =
binomial)``, ``match_nearest`` = MatchIt 4.x ``matchit(method = "nearest")``,
``match_summary`` = ``summary(m.out)``, ``match_data`` / ``get_matches`` =
MatchIt's ``match.data`` / ``get_matches``, ``balance`` and ``table_one`` =
tableone's ``ExtractSmd`` and ``print(CreateTableOne(..., smd = TRUE))``. See
docs/matching.md.
"""

from .balance import balance, balance_before_after
from .matchdata import get_matches, match_data
from .nearest import MatchResult, match_nearest
from .propensity import PropensityResult, propensity_score
from .summary import MatchSummary, match_summary
from .tableone import table_one

__all__ = [
    "MatchResult",
    "MatchSummary",
    "PropensityResult",
    "balance",
    "balance_before_after",
    "get_matches",
    "match_data",
    "match_nearest",
    "match_summary",
    "propensity_score",
    "table_one",
]
