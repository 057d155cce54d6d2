"""The standard baseline strategies, each a measure and a selector."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ralif._softmax import logits, softmax_inplace
from ralif._validation import check_in_range
from ralif.head import LinearHead
from ralif.influence import pool_influence, row_blocks
from ralif.posterior import laplace_samples, sample_heads
from ralif.scores import entropy, least_confidence, margin, mutual_information
from ralif.selectors import (
    candidate_set,
    cluster_round_robin_select,
    gradient_kmeans_pp_select,
    k_center_greedy,
    kmeans_pp_select,
    top_k,
)
from ralif.strategies.base import Strategy


class RandomFallbackWarning(UserWarning):
    """A model-based strategy had fewer than two labeled classes and picked at random."""


def pool_proba(head: LinearHead, X: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """The head's probabilities on ``X[pool]``, read in blocks."""
    b = head.intercept_ if head.fit_intercept else None
    out = np.empty((len(pool), len(head.classes_)))
    for sl, block in row_blocks(X, pool):
        out[sl] = softmax_inplace(logits(block, head.coef_, b))
    return out


class Random(Strategy):
    """Uniformly random picks from the pool: the baseline every strategy must beat.

    Parameters
    ----------
    random_state : None, int or Generator
    """

    name = "random"
    score_meaning = "none"

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        return _random_picks(len(pool), budget, rng)


def _random_picks(pool_size: int, budget: int, rng: np.random.Generator):
    return rng.choice(pool_size, budget, replace=False), np.full(pool_size, np.nan)


class _HeadStrategy(Strategy):
    """A strategy that needs the linear head fitted on the labeled items."""

    def __init__(self, l2: float | str = "auto", random_state: object = None) -> None:
        self.l2 = l2
        self.random_state = random_state

    def _fit_head(self, X, labeled, y_labeled) -> LinearHead | None:
        if len(np.unique(y_labeled)) < 2:
            warnings.warn(
                f"{self.name} needs labels of at least two classes to fit its model "
                f"(got {np.unique(y_labeled).tolist()}); picking at random",
                RandomFallbackWarning,
                stacklevel=4,
            )
            return None
        self.head_ = LinearHead(l2=self.l2).fit(X[labeled], y_labeled)
        return self.head_

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        head = self._fit_head(X, labeled, y_labeled)
        if head is None:
            return _random_picks(len(pool), budget, rng)
        return self._select_with_head(head, X, labeled, y_labeled, pool, budget, rng)

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        raise NotImplementedError


class _UncertaintyStrategy(_HeadStrategy):
    """Top-``budget`` pool items by an uncertainty measure of the head's probabilities."""

    measure: Callable[[np.ndarray], np.ndarray]
    largest: bool = True

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        scores = type(self).measure(pool_proba(head, X, pool))
        return top_k(scores, budget, largest=self.largest), scores


class Entropy(_UncertaintyStrategy):
    """Highest predictive entropy of the linear head.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    random_state : None, int or Generator
    """

    name = "entropy"
    score_meaning = "predictive entropy (higher = picked first)"
    measure = staticmethod(entropy)


class Margin(_UncertaintyStrategy):
    """Smallest gap between the two most probable classes.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    random_state : None, int or Generator
    """

    name = "margin"
    score_meaning = "top-2 probability gap (lower = picked first)"
    measure = staticmethod(margin)
    largest = False


class MarginKMeans(_HeadStrategy):
    """k-means++ among the most uncertain items: RALIF's candidates without influence.

    The ``candidate_fraction`` of the pool with the smallest top-2 margin (never fewer
    than ``budget``), then k-means++ seeding over their features, starting from the most
    uncertain one, with distances measured from the labeled items. It is RALIF with the
    influence term taken out, so comparing the two isolates what influence adds.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    candidate_fraction : float, default=0.1
        Share of the pool kept as candidates.
    random_state : None, int or Generator
    """

    name = "margin_kmeans"
    score_meaning = "top-2 probability gap (lower = more uncertain)"

    def __init__(
        self, l2: float | str = "auto", candidate_fraction: float = 0.1, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.candidate_fraction = candidate_fraction
        self.random_state = random_state

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        check_in_range(self.candidate_fraction, "candidate_fraction", 0.0, 1.0, low_open=True)
        scores = margin(pool_proba(head, X, pool))
        cand = candidate_set(scores, self.candidate_fraction, budget)
        rows = kmeans_pp_select(
            X[pool[cand]], budget, first=0, X_reference=X[labeled], random_state=rng
        )
        return cand[rows], scores


class ClusterMargin(_HeadStrategy):
    """Cluster-Margin (Citovsky et al., NeurIPS 2021): uncertain items, spread over clusters.

    The ``margin_multiple * budget`` items with the smallest top-2 margin are grouped by
    average-linkage agglomerative clustering into ``budget`` clusters; clusters are
    visited round-robin from the smallest, each giving a random member per visit.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    margin_multiple : float, default=10
        Size of the uncertain set, in budgets (the paper's ``k_m / k_t``).
    random_state : None, int or Generator
    """

    name = "cluster_margin"
    score_meaning = "top-2 probability gap (lower = more uncertain)"

    def __init__(
        self, l2: float | str = "auto", margin_multiple: float = 10.0, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.margin_multiple = margin_multiple
        self.random_state = random_state

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        check_in_range(self.margin_multiple, "margin_multiple", 1.0, np.inf)
        scores = margin(pool_proba(head, X, pool))
        n_cand = min(len(pool), int(np.ceil(self.margin_multiple * budget)))
        cand = top_k(scores, n_cand, largest=False)
        rows = cluster_round_robin_select(X[pool[cand]], budget, budget, random_state=rng)
        return cand[rows], scores


class LeastConfidence(_UncertaintyStrategy):
    """Lowest probability of the predicted class.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    random_state : None, int or Generator
    """

    name = "least_confidence"
    score_meaning = "1 - max probability (higher = picked first)"
    measure = staticmethod(least_confidence)


class BALD(_HeadStrategy):
    """Largest mutual information between label and head parameters (Houlsby et al., 2011).

    Posterior samples come from the Laplace approximation ``N(theta_hat, H^{-1}/n)``,
    the Hessian the influence computation uses.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head (and prior precision of the Laplace posterior).
    n_samples : int, default=20
        Posterior samples.
    random_state : None, int or Generator
    """

    name = "bald"
    score_meaning = "mutual information (higher = picked first)"

    def __init__(
        self, l2: float | str = "auto", n_samples: int = 20, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.n_samples = n_samples
        self.random_state = random_state

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        samples = sample_heads(laplace_samples(head, X[labeled], int(self.n_samples), rng), head)
        C = len(head.classes_)
        W_all = np.concatenate([W for W, _ in samples])  # (S*C, d): all samples in one pass
        b_all = np.concatenate([b for _, b in samples]) if head.fit_intercept else None
        scores = np.empty(len(pool))
        for sl, block in row_blocks(X, pool):
            Z = logits(block, W_all, b_all).reshape(len(block), len(samples), C)
            P = softmax_inplace(Z.transpose(1, 0, 2).astype(np.float64))
            scores[sl] = mutual_information(P)
        return top_k(scores, budget), scores


class CoreSet(Strategy):
    """Greedy k-center over the features (Sener & Savarese, ICLR 2018).

    Each pick is the pool item farthest from the labeled items and the picks so far.

    Parameters
    ----------
    random_state : None, int or Generator
        Seed of the first pick when nothing is labeled.
    """

    name = "coreset"
    score_meaning = "none"

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        rows = k_center_greedy(X[pool], budget, X_reference=X[labeled], random_state=rng)
        return rows, np.full(len(pool), np.nan)


class BADGE(_HeadStrategy):
    """k-means++ seeding on last-layer gradient embeddings (Ash et al., ICLR 2020).

    The embedding of ``z`` is the gradient of its loss under the predicted label,
    ``(p - e_yhat) (x) [x, 1]``; distances are computed without forming it.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    network_proba : callable, optional
        ``indices -> (n, C)`` probabilities of a network whose last layer reads the
        features ``X``; its gradients are then those of the network's last layer,
        instead of the refitted head's.
    random_state : None, int or Generator
    """

    name = "badge"
    score_meaning = "gradient-embedding norm"

    def __init__(
        self, l2: float | str = "auto", network_proba: object = None, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.network_proba = network_proba
        self.random_state = random_state

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        if self.network_proba is not None:
            return self._select_with_proba(
                np.array(self.network_proba(pool), dtype=np.float64), X, pool, budget, rng
            )
        return super()._select(X, labeled, y_labeled, pool, budget, rng)

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        return self._select_with_proba(pool_proba(head, X, pool), X, pool, budget, rng)

    def _select_with_proba(self, P, X, pool, budget, rng):
        P[np.arange(len(pool)), P.argmax(axis=1)] -= 1.0
        Xp = X[pool]
        rows = gradient_kmeans_pp_select(P, Xp, budget, random_state=rng)
        norms = np.sqrt((P * P).sum(axis=1) * ((Xp.astype(np.float64) ** 2).sum(axis=1) + 1.0))
        return rows, norms


class ISAL(_HeadStrategy):
    """Influence of each pool item, under its pseudo label, on the labeled loss (Liu et al., ICCV 2021).

    Top-``budget`` by the predicted drop of the mean labeled cross-entropy.

    Parameters
    ----------
    l2 : float or "auto", default="auto"
        Ridge strength of the head.
    damping : float, default=0.0
        Added to the Hessian.
    random_state : None, int or Generator
    """

    name = "isal"
    score_meaning = "predicted change of the labeled loss (lower = picked first)"

    def __init__(
        self, l2: float | str = "auto", damping: float = 0.0, random_state: object = None
    ) -> None:
        self.l2 = l2
        self.damping = damping
        self.random_state = random_state

    def _select_with_head(self, head, X, labeled, y_labeled, pool, budget, rng):
        damping = check_in_range(self.damping, "damping", 0.0, np.inf)
        infl = pool_influence(
            head, X[labeled], y_labeled, X, pool, target="labeled", damping=damping
        )
        scores = infl.delta[np.arange(len(pool)), infl.proba.argmax(axis=1)]
        return top_k(scores, budget, largest=False), scores


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
    """

    name = "typiclust"
    score_meaning = "typicality within its cluster"

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

    def _select(self, X, labeled, y_labeled, pool, budget, rng):
        from sklearn.cluster import KMeans, MiniBatchKMeans

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
        return np.array(picks, dtype=np.intp), typicality

    def _typicality(self, X, members, position, is_pool, typicality) -> None:
        from sklearn.neighbors import NearestNeighbors

        k = int(min(self.n_neighbors, len(members) - 1))
        pool_members = members[is_pool[members]]
        if k < 1:
            typicality[position[pool_members]] = 0.0
            return
        nn = NearestNeighbors(n_neighbors=k + 1).fit(X[members])
        dist, _ = nn.kneighbors(X[pool_members])
        typicality[position[pool_members]] = 1.0 / (dist[:, 1:].mean(axis=1) + 1e-12)
