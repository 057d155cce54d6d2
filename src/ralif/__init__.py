"""ralif: deep active learning with influence functions (RALIF, Xia & Henao, TMLR 2023)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from ralif._validation import RalifInputError
from ralif.api import select
from ralif.head import LinearHead
from ralif.influence import influence_matrix
from ralif.scores import authors_score, influence_spread, kept_classes, truncated_expectation
from ralif.selectors import candidate_set, kmeans_pp_select, top_k, uncertain_candidate_set
from ralif.strategies import RALIF, STRATEGIES, DiversityFallbackWarning, Strategy, make_strategy

try:
    __version__: str = _dist_version("ralif")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "RALIF",
    "STRATEGIES",
    "DiversityFallbackWarning",
    "LinearHead",
    "RalifInputError",
    "Strategy",
    "authors_score",
    "candidate_set",
    "influence_matrix",
    "influence_spread",
    "kept_classes",
    "kmeans_pp_select",
    "make_strategy",
    "select",
    "top_k",
    "truncated_expectation",
    "uncertain_candidate_set",
]
