"""Selectors on hand-worked cases, and k-means++ against a from-scratch reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist

from ralif import RalifInputError, candidate_set, kmeans_pp_select, top_k
from ralif.selectors import _d2_sampling, _Euclidean, min_sq_distances


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    s = np.array([0.2, 0.9, 0.5, 0.9, 0.9])
    assert top_k(s, 2).tolist() == [1, 3]
    assert top_k(s, 3, largest=False).tolist() == [0, 2, 1]
    assert top_k(s, 5).tolist() == [1, 3, 4, 2, 0]
    assert top_k(s, 0).tolist() == []


def test_candidate_set_is_ceil_fraction_but_never_below_budget():
    s = np.arange(95.0)[::-1]
    assert len(candidate_set(s, 0.1, budget=3)) == 10  # ceil(9.5)
    assert candidate_set(s, 0.1, budget=3)[0] == 94  # lowest score first
    assert len(candidate_set(s, 0.1, budget=20)) == 20
    assert len(candidate_set(s, 1.0, budget=1)) == 95


def test_min_sq_distances_against_brute_force():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(50, 7)), rng.normal(size=(3000, 7))
    brute = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1).min(axis=1)
    np.testing.assert_allclose(min_sq_distances(A, B), brute, rtol=1e-9, atol=1e-9)


def test_kmeans_pp_picks_distinct_points_and_honors_first():
    X = np.random.default_rng(0).normal(size=(40, 3))
    picks = kmeans_pp_select(X, 40, first=7, random_state=0)
    assert picks[0] == 7
    assert sorted(picks.tolist()) == list(range(40))


def test_kmeans_pp_is_deterministic_under_a_seed():
    X = np.random.default_rng(0).normal(size=(200, 4))
    a = kmeans_pp_select(X, 20, random_state=5)
    assert np.array_equal(a, kmeans_pp_select(X, 20, random_state=5))
    assert not np.array_equal(a, kmeans_pp_select(X, 20, random_state=6))


def test_distances_start_from_all_reference_points_not_just_the_last():
    A, B = np.array([0.0, 0.0]), np.array([10.0, 0.0])
    # Ten copies of A and one point far from both references.
    X = np.vstack([np.tile(A, (10, 1)), [[5.0, 8.0]], [B + 0.1]])
    for seed in range(20):
        picks = kmeans_pp_select(X, 2, first=11, X_reference=np.vstack([A, B]), random_state=seed)
        assert picks[1] == 10  # copies of A have D^2 = 0 from the first reference


def test_kmeans_pp_prefers_distant_points():
    rng = np.random.default_rng(0)
    near = rng.normal(scale=0.01, size=(100, 2))
    far = np.array([[50.0, 50.0]])
    X = np.vstack([near, far])
    hits = sum(100 in kmeans_pp_select(X, 2, first=0, random_state=s)[1:] for s in range(50))
    assert hits == 50


def _reference_kmeans_pp(X, k, first, ref, rng):
    """Recompute D^2 from scratch at every step; the same draws as the library."""
    chosen = [first]
    for _ in range(k - 1):
        centers = np.vstack([ref, X[chosen]])
        d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1).min(axis=1)
        d2[chosen] = 0.0
        cum = np.cumsum(d2)
        chosen.append(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")))
    return chosen


def test_incremental_updates_match_recomputing_from_scratch():
    # Folding every pick in at once (batch=1) draws exactly as the textbook loop does.
    rng = np.random.default_rng(1)
    X, ref = rng.normal(size=(300, 5)), rng.normal(size=(20, 5))
    x_sq = (X * X).sum(axis=1)
    d2 = min_sq_distances(X, ref)
    dist = _Euclidean(X, x_sq)
    got = _d2_sampling(d2, 25, dist, 3, np.random.default_rng(9), batch=1)
    want = _reference_kmeans_pp(X, 25, 3, ref, np.random.default_rng(9))
    assert got.tolist() == want


def _exact_sequence_probabilities(X, ref, first, k):
    """P(picks 2..k = s) for every ordered sequence s, by the D^2 rule, by brute force."""
    out = {}

    def walk(chosen, p):
        if len(chosen) == k:
            out[tuple(chosen[1:])] = p
            return
        centers = np.vstack([ref, X[chosen]]) if len(ref) else X[chosen]
        d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1).min(axis=1)
        d2[chosen] = 0.0
        for j in np.flatnonzero(d2 > 0):
            walk([*chosen, int(j)], p * d2[j] / d2.sum())

    walk([first], 1.0)
    return out


@pytest.mark.parametrize("with_reference", [True, False])
def test_batched_draws_follow_the_d2_distribution_exactly(with_reference):
    # Between folds each draw is a rejection step against a stale D^2: the sequences it
    # produces must have exactly the k-means++ probabilities. Two tight clusters and a
    # far point make the stale bound poor (many rejections and early folds).
    X = np.array([[0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5], [5, 5.1], [9, 0]], float)
    ref = np.array([[0.05, 0.05]]) if with_reference else np.empty((0, 2))
    want = _exact_sequence_probabilities(X, ref, first=3, k=4)
    n = 6_000
    counts = dict.fromkeys(want, 0)
    for seed in range(n):
        picks = kmeans_pp_select(
            X, 4, first=3, X_reference=ref if with_reference else None, random_state=seed
        )
        counts[tuple(picks[1:].tolist())] += 1
    expected = np.array([want[s] * n for s in want])
    observed = np.array([counts[s] for s in want])
    big = expected >= 5  # chi-square over the cells it is valid for, the rest pooled
    chi2 = (((observed[big] - expected[big]) ** 2) / expected[big]).sum()
    rest_e, rest_o = expected[~big].sum(), observed[~big].sum()
    if rest_e > 0:
        chi2 += (rest_o - rest_e) ** 2 / rest_e
    dof = int(big.sum()) + (rest_e > 0) - 1
    assert chi2 < chi2_dist.ppf(0.999, dof), (chi2, dof)
    assert sum(counts.values()) == n


def test_kmeans_pp_with_all_duplicates_still_returns_distinct_indices():
    X = np.ones((6, 2))
    picks = kmeans_pp_select(X, 6, X_reference=np.ones((1, 2)), random_state=0)
    assert sorted(picks.tolist()) == list(range(6))


def test_kmeans_pp_rejects_impossible_sizes():
    with pytest.raises(RalifInputError, match="n_select"):
        kmeans_pp_select(np.zeros((3, 2)), 4)


def _three_clusters():
    # Tight clusters of 2, 3 and 5 points around far-apart centres.
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    sizes = [2, 3, 5]
    rng = np.random.default_rng(0)
    X = np.vstack([c + 0.01 * rng.normal(size=(n, 2)) for c, n in zip(centres, sizes, strict=True)])
    members = np.split(np.arange(10), np.cumsum(sizes)[:-1])
    return X, members


def test_cluster_best_select_takes_the_best_score_of_each_cluster():
    from ralif.selectors import cluster_best_select

    X, _ = _three_clusters()
    scores = np.array([5.0, 1.0, 3.0, 2.0, 9.0, 0.5, 7.0, 6.0, 8.0, 4.0])
    picks = cluster_best_select(X, scores, 3, random_state=0)
    # best of {0,1}: 1 (1.0); of {2,3,4}: 3 (2.0); of {5..9}: 5 (0.5); ordered by score.
    assert picks.tolist() == [5, 1, 3]


def test_cluster_round_robin_visits_the_smallest_cluster_first():
    from ralif.selectors import cluster_round_robin_select

    X, members = _three_clusters()
    picks = cluster_round_robin_select(X, 6, n_clusters=3, random_state=0)
    cluster_of = np.empty(10, dtype=int)
    for c, m in enumerate(members):
        cluster_of[m] = c
    # Visit order by size (2, 3, 5): one each, then again one each.
    assert cluster_of[picks].tolist() == [0, 1, 2, 0, 1, 2]
    assert len(set(picks.tolist())) == 6
    # Third pass: cluster 0 is used up, so clusters 1 and 2 continue, then 2 alone.
    picks = cluster_round_robin_select(X, 9, n_clusters=3, random_state=0)
    assert cluster_of[picks].tolist() == [0, 1, 2, 0, 1, 2, 1, 2, 2]


def test_gradient_embedding_distances_equal_those_of_the_formed_embeddings():
    from ralif.selectors import _GradientEmbedding

    rng = np.random.default_rng(2)
    R, X = rng.normal(size=(40, 3)), rng.normal(size=(40, 4))
    G = np.einsum("ic,id->icd", R, np.hstack([X, np.ones((40, 1))])).reshape(40, -1)
    g_sq = (G * G).sum(axis=1)
    dist = _GradientEmbedding(R, X, g_sq)
    centers = np.array([5, 17, 30])
    brute = ((G[:, None, :] - G[centers][None]) ** 2).sum(-1)
    np.testing.assert_allclose(dist.nearest(centers), brute.min(axis=1), atol=1e-9)
    np.testing.assert_allclose(dist.to_point(centers, 8), brute[8], atol=1e-9)
    euclid = _Euclidean(X, (X * X).sum(axis=1))
    brute = ((X[:, None, :] - X[centers][None]) ** 2).sum(-1)
    np.testing.assert_allclose(euclid.nearest(centers), brute.min(axis=1), atol=1e-9)
    np.testing.assert_allclose(euclid.to_point(centers, 8), brute[8], atol=1e-9)


@pytest.mark.parametrize("first", [-1, 6, 2.0, True])
def test_kmeans_pp_refuses_a_first_pick_outside_the_points(first):
    with pytest.raises(RalifInputError, match="first must be a row index in \\[0, 6\\)"):
        kmeans_pp_select(np.eye(6), 2, first=first)
