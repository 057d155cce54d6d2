"""The standard baseline strategies, each a measure and a selector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from numpy.random import Generator

from ralif._params import CANDIDATE_SIZE, L2, CallableOrNone, Constraint, Integer, RandomState, Real
from ralif._softmax import logits, softmax_inplace, split_params
from ralif._validation import RalifInputError
from ralif.classifier import influence_head
from ralif.head import LinearHead
from ralif.influence import (
    InfluenceSettings,
    PoolInfluence,
    row_blocks,
    scores_block,
    solve_target_direction,
)
from ralif.pools.devices import block_device
from ralif.pools.query import PoolQuery
from ralif.posterior import laplace_samples, sample_heads
from ralif.scores import entropy, least_confidence, margin, mutual_information
from ralif.selectors import (
    candidate_set,
    candidate_share,
    cluster_round_robin_select,
    gradient_kmeans_pp_select,
    k_center_greedy,
    kmeans_pp_select,
    top_k,
)
from ralif.strategies.base import RandomFallbackWarning, Strategy, random_picks

__all__ = [
    "BADGE",
    "BALD",
    "ISAL",
    "ClusterMargin",
    "CoreSet",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "MarginKMeans",
    "Random",
    "RandomFallbackWarning",
    "TypiClust",
    "pool_proba",
]


def proba_block(block: np.ndarray, device: str, model: Any) -> np.ndarray:
    """The model's probabilities on a block of rows (columns: ``classes_``): a linear
    head's in the block's dtype on ``device``, without the per-call input checks of
    ``predict_proba``; any other model's ``predict_proba``."""
    if isinstance(model, LinearHead):
        b = model.intercept_ if model.fit_intercept else None
        return block_device(device).proba(block, model.coef_, b)
    return np.asarray(model.predict_proba(block), dtype=np.float64)


def pool_proba(model: Any, X: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """The model's probabilities on ``X[pool]``, read in blocks (columns: ``classes_``)."""
    out = np.empty((len(pool), len(model.classes_)))
    for sl, block in row_blocks(X, pool):
        out[sl] = proba_block(block, "cpu", model)
    return out


# Block functions of the plans (ralif.pools.query.PoolQuery.map): module-level, so that dask
# workers can run them; each returns (per-item arrays, sums).
def measure_block(
    block: np.ndarray, device: str, model: Any, measure: Callable[[np.ndarray], np.ndarray]
) -> tuple[dict, dict]:
    """An uncertainty ``measure`` of the model's probabilities, per item."""
    return {"score": measure(proba_block(block, device, model))}, {}


def mutual_information_block(
    block: np.ndarray,
    device: str,
    W_all: np.ndarray,
    b_all: np.ndarray | None,
    n_samples: int,
) -> tuple[dict, dict]:
    """BALD's mutual information per item, from ``n_samples`` heads stacked in ``W_all``."""
    C = W_all.shape[0] // n_samples
    Z = logits(block, W_all, b_all).reshape(len(block), n_samples, C)
    return {
        "score": mutual_information(softmax_inplace(Z.transpose(1, 0, 2).astype(np.float64)))
    }, {}


def pseudo_label_delta(infl: PoolInfluence) -> np.ndarray:
    """Each item's influence under its pseudo label (ISAL's score)."""
    return infl.delta[np.arange(len(infl.proba)), infl.proba.argmax(axis=1)]


def gradient_residual(P: np.ndarray) -> np.ndarray:
    """``p - e_yhat`` of each row, in place: the output part of BADGE's gradient embedding.

    Parameters
    ----------
    P : ndarray of shape (n, C)
        Class probabilities (changed in place).

    Returns
    -------
    ndarray of shape (n, C)
        ``P`` itself, its top entry of each row lowered by 1.

    Examples
    --------
    >>> gradient_residual(np.array([[0.75, 0.25]])).tolist()
    [[-0.25, 0.25]]
    """
    P[np.arange(len(P)), P.argmax(axis=1)] -= 1.0
    return P


def embedding_norms(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Return the norm of each gradient embedding ``r (x) [x, 1]``, without forming it.

    Parameters
    ----------
    R : ndarray of shape (n, C)
        Residuals ``p - e_yhat`` (:func:`gradient_residual`).
    X : ndarray of shape (n, d)
        The items' features.

    Returns
    -------
    ndarray of shape (n,)
        ``||r|| sqrt(||x||^2 + 1)``.

    Examples
    --------
    >>> embedding_norms(np.array([[-0.25, 0.25]]), np.array([[1.0, 1.0]])).round(3).tolist()
    [0.612]
    """
    x_sq = (X.astype(np.float64) ** 2).sum(axis=1)
    return np.sqrt((R * R).sum(axis=1) * (x_sq + 1.0))


def badge_norms_block(
    block: np.ndarray, device: str, model: Any, keep: bool = False
) -> tuple[dict, dict]:
    """The norm of each item's gradient embedding ``(p - e_yhat) (x) [x, 1]``; with
    ``keep``, its residual ``p - e_yhat`` too (``residual``)."""
    R = gradient_residual(proba_block(block, device, model))
    return {"score": embedding_norms(R, block), **({"residual": R} if keep else {})}, {}


class Random(Strategy):
    """Uniformly random picks from the pool: the baseline every strategy must beat.

    Parameters
    ----------
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import Random
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> Random(random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "random"
    score_meaning = "none"

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        return random_picks(q.pool, q.budget, q.rng)


class _ModelStrategy(Strategy):
    """A strategy that reads the probabilities of a model fitted on the labeled items."""

    needs_model = True
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "l2": L2,
        "random_state": RandomState(),
    }

    def __init__(self, l2: float | str = "auto", random_state: object = None) -> None:
        self.l2 = l2
        self.random_state = random_state


class _UncertaintyStrategy(_ModelStrategy):
    """Top-``budget`` pool items by an uncertainty measure of the model's probabilities."""

    measure: Callable[[np.ndarray], np.ndarray]

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        per_item, _ = q.map(measure_block, model, type(self).measure)
        scores = per_item["score"]
        return q.pool[top_k(scores, q.budget, largest=self.score_direction == "higher")], scores


class Entropy(_UncertaintyStrategy):
    """Highest predictive entropy of the model.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import Entropy
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> Entropy(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "entropy"
    score_meaning = "predictive entropy (higher = picked first)"
    score_direction = "higher"
    measure = staticmethod(entropy)


class Margin(_UncertaintyStrategy):
    """Smallest gap between the two most probable classes.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import Margin
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> Margin(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "margin"
    score_meaning = "top-2 probability gap (lower = picked first)"
    score_direction = "lower"
    measure = staticmethod(margin)


class MarginKMeans(_ModelStrategy):
    """K-means++ among the most uncertain items: RALIF's candidates without influence.

    The ``n_candidates`` pool items with the smallest top-2 margin (never fewer than
    ``budget``), then k-means++ seeding over their features, starting from the most
    uncertain one, with distances measured from the labeled items. It is RALIF with the
    influence term taken out, so comparing the two isolates what influence adds.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    n_candidates : int or float, default=0.1
        Candidates kept, as ``RALIF`` reads it: a count (int) or a share of the pool
        (float in (0, 1]).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import MarginKMeans
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> MarginKMeans(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "margin_kmeans"
    score_meaning = "top-2 probability gap (lower = more uncertain)"
    score_direction = "lower"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        **_ModelStrategy._parameter_constraints,
        "n_candidates": CANDIDATE_SIZE,
    }

    def __init__(
        self,
        *,
        l2: float | str = "auto",
        n_candidates: int | float = 0.1,
        random_state: object = None,
    ) -> None:
        self.l2 = l2
        self.n_candidates = n_candidates
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        scores = q.map(measure_block, model, margin)[0]["score"]
        share = candidate_share(self.n_candidates, q.budget, len(q.pool))
        cand = q.capped_candidates(candidate_set(scores, share, q.budget))
        rows = kmeans_pp_select(
            q.take(cand), q.budget, first=0, X_reference=q.X_labeled, random_state=q.rng
        )
        return q.pool[cand[rows]], scores


class ClusterMargin(_ModelStrategy):
    """Cluster-Margin (Citovsky et al., NeurIPS 2021): uncertain items, spread over clusters.

    The ``margin_multiple * budget`` items with the smallest top-2 margin are grouped by
    average-linkage agglomerative clustering into ``budget`` clusters; clusters are
    visited round-robin from the smallest, each giving a random member per visit.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    margin_multiple : float, default=10
        Size of the uncertain set, in budgets (the paper's ``k_m / k_t``).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import ClusterMargin
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> ClusterMargin(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "cluster_margin"
    score_meaning = "top-2 probability gap (lower = more uncertain)"
    score_direction = "lower"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        **_ModelStrategy._parameter_constraints,
        "margin_multiple": Real(1.0),
    }

    def __init__(
        self, l2: float | str = "auto", margin_multiple: float = 10.0, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.margin_multiple = margin_multiple
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        scores = q.map(measure_block, model, margin)[0]["score"]
        n_cand = min(len(q.pool), int(np.ceil(self.margin_multiple * q.budget)))
        cand = q.capped_candidates(top_k(scores, n_cand, largest=False))
        rows = cluster_round_robin_select(q.take(cand), q.budget, q.budget, random_state=q.rng)
        return q.pool[cand[rows]], scores


class LeastConfidence(_UncertaintyStrategy):
    """Lowest probability of the predicted class.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import LeastConfidence
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> LeastConfidence(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "least_confidence"
    score_meaning = "1 - max probability (higher = picked first)"
    score_direction = "higher"
    measure = staticmethod(least_confidence)


class BALD(_ModelStrategy):
    """Largest mutual information between label and head parameters (Houlsby et al., 2011).

    Posterior samples come from the Laplace approximation ``N(theta_hat, H^{-1}/n)``,
    the Hessian the influence computation uses.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (and prior precision of the Laplace posterior).
    n_samples : int, default=20
        Posterior samples.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import BALD
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> BALD(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "bald"
    score_meaning = "mutual information (higher = picked first)"
    score_direction = "higher"
    needs_influence = True  # the Laplace posterior needs the head's curvature
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        **_ModelStrategy._parameter_constraints,
        "n_samples": Integer(1),
    }

    def __init__(
        self, l2: float | str = "auto", n_samples: int = 20, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.n_samples = n_samples
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        head = influence_head(model, q.X_labeled, q.y_labeled)
        samples = sample_heads(laplace_samples(head, q.X_labeled, int(self.n_samples), q.rng), head)
        W_all = np.concatenate([W for W, _ in samples])  # (S*C, d): all samples in one pass
        b_all = np.concatenate([b for _, b in samples]) if head.fit_intercept else None
        scores = q.map(mutual_information_block, W_all, b_all, len(samples))[0]["score"]
        return q.pool[top_k(scores, q.budget)], scores


class CoreSet(Strategy):
    """Greedy k-center over the features (Sener & Savarese, ICLR 2018).

    Each pick is the pool item farthest from the labeled items and the picks so far.

    Parameters
    ----------
    random_state : None, int or Generator
        Seed of the first pick when nothing is labeled.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import CoreSet
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> CoreSet(random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "coreset"
    score_meaning = "none"

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        sample = q.sample()  # the whole pool, or past a streamed query's cap a sample
        X_sample = q.take(sample)
        rows = k_center_greedy(X_sample, q.budget, X_reference=q.X_labeled, random_state=q.rng)
        return q.pool[sample[rows]], np.full(len(q.pool), np.nan)


class BADGE(_ModelStrategy):
    """K-means++ seeding on last-layer gradient embeddings (Ash et al., ICLR 2020).

    The embedding of ``z`` is the gradient of its loss under the predicted label,
    ``(p - e_yhat) (x) [x, 1]``; distances are computed without forming it.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    network_proba : callable, optional
        ``indices -> (n, C)`` probabilities of a network whose last layer reads the
        features ``X``; its gradients are then those of the network's last layer,
        instead of the model's. A network handed to :meth:`select` (the scratch-*
        scenarios of ``ralif bench``) is used the same way.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import BADGE
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> BADGE(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "badge"
    score_meaning = "gradient-embedding norm"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        **_ModelStrategy._parameter_constraints,
        "network_proba": CallableOrNone(),
    }

    def __init__(
        self,
        l2: float | str = "auto",
        network_proba: Callable[[np.ndarray], np.ndarray] | None = None,
        random_state: object = None,
    ) -> None:
        self.l2 = l2
        self.network_proba = network_proba
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        network_proba = self.network_proba
        if network_proba is None and getattr(self, "network_", None) is not None:
            network_proba = self.network_.proba
        if network_proba is not None and q.streamed:
            raise RalifInputError("BADGE with network_proba cannot be streamed")
        sample = q.sample()  # the whole pool, or past a streamed query's cap a sample
        X_sample = q.take(sample)
        if network_proba is not None:
            R = gradient_residual(np.array(network_proba(q.pool[sample]), dtype=np.float64))
            norms = embedding_norms(R, X_sample)
        else:
            # The pass over the pool gives the norms; where the sample is the whole pool
            # it keeps the residuals too, so the probabilities are computed once.
            whole = len(sample) == len(q.pool)
            per_item, _ = q.map(badge_norms_block, model, whole)
            norms = per_item["score"]
            if whole:
                R = per_item["residual"]
            else:
                R = gradient_residual(pool_proba(model, X_sample, np.arange(len(sample))))
        rows = gradient_kmeans_pp_select(R, X_sample, q.budget, random_state=q.rng)
        return q.pool[sample[rows]], norms


class ISAL(_ModelStrategy):
    """Influence of each pool item, under its pseudo label, on the labeled loss (Liu et al., ICCV 2021).

    Top-``budget`` by the predicted drop of the mean labeled cross-entropy.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the default model (the linear head).
    damping : float, default=0.0
        Added to the Hessian.
    random_state : None, int or Generator
        Seed of the strategy's draws: the same seed gives the same picks.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import ISAL
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> ISAL(l2=0.1, random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "isal"
    score_meaning = "predicted change of the labeled loss (lower = picked first)"
    score_direction = "lower"
    needs_influence = True
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        **_ModelStrategy._parameter_constraints,
        "damping": Real(0.0),
    }

    def __init__(
        self, l2: float | str = "auto", damping: float = 0.0, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.damping = damping
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        XL, yL = q.X_labeled, q.y_labeled
        head = influence_head(model, XL, yL)
        settings = InfluenceSettings(target="labeled", damping=self.damping)
        # The labeled loss is the target: no pass over the pool before the solve.
        C, d = head.coef_.shape
        none = (np.zeros((C, d)), np.zeros(C), 0.0, 0.0)
        s, _, loss, n_target = solve_target_direction(head, XL, yL, *none, settings)
        S_W, s_b = split_params(s, C, d, head.fit_intercept)
        b = head.intercept_ if head.fit_intercept else None
        args = (head.coef_, b, S_W, s_b, XL.shape[0], 0.0, loss / n_target, pseudo_label_delta)
        scores = q.map(scores_block, *args)[0]["score"]
        return q.pool[top_k(scores, q.budget, largest=False)], scores


class TypiClust(Strategy):
    """Typical points of uncovered clusters (Hacohen et al., ICML 2022).

    Clusters all items (labeled and pool) into ``min(n_labeled + budget, max_clusters)``
    groups with k-means; repeatedly takes the largest cluster holding the fewest labeled
    or picked items and picks its most typical pool item, typicality being the inverse
    mean distance to the ``n_neighbors`` nearest items of the same cluster.

    Parameters
    ----------
    n_neighbors : int, default=20
        Neighbours for typicality.
    max_clusters : int, default=500
        Cap on the number of clusters.
    min_cluster_size : int, default=5
        Smaller clusters are used only when no other is left.
    random_state : None, int or Generator
        Seed of k-means.

    Examples
    --------
    >>> import numpy as np
    >>> from ralif.strategies import TypiClust
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> y = np.full(200, -1); y[:10] = [0, 1] * 5
    >>> TypiClust(random_state=0).select(X, y, 5).shape
    (5,)
    """

    name = "typiclust"
    score_meaning = "typicality within its cluster"
    score_direction = "higher"
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "n_neighbors": Integer(1),
        "max_clusters": Integer(1),
        "min_cluster_size": Integer(0),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        n_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        random_state: object = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.random_state = random_state

    def plan(self, q: PoolQuery, model: Any) -> tuple[np.ndarray, np.ndarray]:
        # k-means runs over every row at once: the labeled rows and the pool's (past a
        # streamed query's cap, a sample of it), in memory.
        return q.run_in_memory(self._pick)

    def _pick(
        self, X: np.ndarray, y: np.ndarray, pool: np.ndarray, budget: int, rng: Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        labeled = np.flatnonzero(y >= 0)
        k = int(min(len(labeled) + budget, self.max_clusters, X.shape[0]))
        seed = int(rng.integers(2**31 - 1))
        if k <= 50:
            km = KMeans(n_clusters=k, n_init=1, random_state=seed)
        else:
            km = MiniBatchKMeans(n_clusters=k, n_init=1, batch_size=4096, random_state=seed)
        cluster = km.fit_predict(X)
        sizes = np.bincount(cluster, minlength=k)
        covered = np.bincount(cluster[labeled], minlength=k).astype(float)
        is_pool = np.zeros(X.shape[0], dtype=bool)
        is_pool[pool] = True
        free = np.bincount(cluster[pool], minlength=k)
        position = np.full(X.shape[0], -1)
        position[pool] = np.arange(len(pool))
        typicality = np.full(len(pool), np.nan)
        small = sizes < self.min_cluster_size
        # Items grouped by cluster (ascending index within each): members without a scan.
        order = np.argsort(cluster, kind="stable")
        bounds = np.searchsorted(cluster[order], np.arange(k + 1))
        picked = np.zeros(len(pool), dtype=bool)
        picks = []
        for _ in range(budget):
            # Fewest covered first, then largest; tiny clusters only as a last resort.
            key = np.lexsort((-sizes, covered, small))
            c = int(key[np.argmax(free[key] > 0)])
            members = order[bounds[c] : bounds[c + 1]]
            cand = position[members[is_pool[members]]]
            if np.isnan(typicality[cand[0]]):
                self._typicality(X, members, position, is_pool, typicality)
            cand = cand[~picked[cand]]
            best = int(cand[np.argmax(typicality[cand])])
            picked[best] = True
            picks.append(best)
            covered[c] += 1
            free[c] -= 1
        return pool[np.array(picks, dtype=np.intp)], typicality

    def _typicality(
        self,
        X: np.ndarray,
        members: np.ndarray,
        position: np.ndarray,
        is_pool: np.ndarray,
        typicality: np.ndarray,
    ) -> None:
        from sklearn.neighbors import NearestNeighbors

        k = int(min(self.n_neighbors, len(members) - 1))
        pool_members = members[is_pool[members]]
        if k < 1:
            typicality[position[pool_members]] = 0.0
            return
        nn = NearestNeighbors(n_neighbors=k + 1).fit(X[members])
        dist, _ = nn.kneighbors(X[pool_members])
        typicality[position[pool_members]] = 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)
