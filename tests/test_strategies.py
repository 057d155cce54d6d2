"""Each baseline strategy on a hand-made case where the right pick is known."""

from __future__ import annotations

import numpy as np
import pytest

import ralif
from ralif import LinearHead, RalifInputError
from ralif.posterior import laplace_samples
from ralif.scores import entropy, margin, mutual_information
from ralif.selectors import gradient_kmeans_pp_select, kmeans_pp_select
from ralif.strategies import STRATEGIES, RandomFallbackWarning, make_strategy
from tests.conftest import partial_labels


def _line_problem():
    """1-D: class 0 labeled near -3, class 1 near +3; the pool spread along the line."""
    lab_x = np.array([-3.2, -3.0, -2.8, 2.8, 3.0, 3.2])
    pool_x = np.array([-2.0, 0.05, 2.5, -1.0, 1.2])
    X = np.r_[lab_x, pool_x][:, None]
    y = np.r_[[0, 0, 0, 1, 1, 1], [-1] * 5]
    return X, y


def _ridge_softmax(theta, X, y, l2, n_classes, weights=None):
    """``sum_i w_i CE(x_i, y_i) / n + (l2/2) ||W||^2`` and its gradient, written from
    LinearHead's documented objective alone (no ralif code); ``theta`` is ``[W, b]``
    with ``W`` row-major by class, ``w_i`` is 1 unless given and ``n`` counts the rows
    of weight 1."""
    n_rows, d = X.shape
    W, b = theta[: n_classes * d].reshape(n_classes, d), theta[n_classes * d :]
    w = np.ones(n_rows) if weights is None else weights
    n = np.count_nonzero(w == 1.0)
    Z = X @ W.T + b
    Z -= Z.max(axis=1, keepdims=True)
    log_p = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    R = np.exp(log_p)
    R[np.arange(n_rows), y] -= 1.0  # d CE / d logits = p - e_y
    value = -(w * log_p[np.arange(n_rows), y]).sum() / n + 0.5 * l2 * (W**2).sum()
    grad_W = (w[:, None] * R).T @ X / n + l2 * W
    return value, np.r_[grad_W.ravel(), (w[:, None] * R).sum(axis=0) / n]


def _fd_hessian(grad, theta, h=1e-5):
    """The Hessian by central differences of ``grad``."""
    H = np.array(
        [(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in np.eye(theta.size)]
    )
    return (H + H.T) / 2


def _minimize(loss, theta):
    """Newton's method on ``loss`` (value, gradient) with the finite-difference Hessian;
    least squares steps, as the bias can move along a direction of no change."""
    for _ in range(100):
        value, g = loss(theta)
        if np.abs(g).max() < 1e-11:
            return theta
        step = np.linalg.lstsq(_fd_hessian(lambda t: loss(t)[1], theta), g, rcond=None)[0]
        t = 1.0
        while loss(theta - t * step)[0] > value and t > 1e-6:
            t /= 2
        theta = theta - t * step
    raise AssertionError(f"no optimum reached: gradient {np.abs(g).max():.1e}")


@pytest.mark.parametrize("name", ["margin", "entropy", "least_confidence"])
def test_uncertainty_strategies_pick_the_point_on_the_boundary(name):
    X, y = _line_problem()
    picks = ralif.select(X, y, 1, strategy=name, l2=0.5, random_state=0)
    assert picks.tolist() == [7]  # x = 0.05, where the classes tie


def test_bald_prefers_parameter_uncertainty_over_label_noise():
    # Labeled items vary along x1 only, so the weight on x2 is known only from the prior.
    X_lab = np.c_[np.r_[-3.2, -3.0, -2.8, 2.8, 3.0, 3.2], np.zeros(6)]
    X_pool = np.array([[0.05, 0.0], [3.0, 8.0], [-3.0, 0.0]])
    X = np.vstack([X_lab, X_pool])
    y = np.r_[[0, 0, 0, 1, 1, 1], [-1, -1, -1]]
    assert ralif.select(X, y, 1, strategy="entropy", l2=0.5).tolist() == [6]
    assert ralif.select(X, y, 1, strategy="bald", l2=0.5, random_state=0).tolist() == [7]


def test_margin_and_entropy_measures_by_hand():
    p = np.array([[0.5, 0.5, 0.0], [0.8, 0.1, 0.1], [0.4, 0.35, 0.25]])
    assert margin(p).round(3).tolist() == [0.0, 0.7, 0.05]
    assert entropy(p)[0] == pytest.approx(np.log(2))


def test_mutual_information_zero_when_samples_agree_log2_when_they_split():
    agree = np.array([[[0.7, 0.3]], [[0.7, 0.3]]])
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(agree)[0] == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(split)[0] == pytest.approx(np.log(2))


def test_laplace_samples_have_covariance_inverse_hessian_over_n():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    head = LinearHead(l2=0.3).fit(X, y)
    samples = laplace_samples(head, X, 20000, np.random.default_rng(1))
    # H: the Hessian of the objective by finite differences of its gradient, written
    # here (not ralif's Curvature, which the sampler uses).
    C, d = 2, 2
    H = _fd_hessian(lambda t: _ridge_softmax(t, X, y, 0.3, C)[1], head.params_)
    # Directions that change no probability (the same vector added to every class:
    # 1 e_j^T for each feature and the bias) are not sampled: compare on the rest.
    null = np.array([np.r_[np.tile(e[:d], C), np.full(C, e[d])] for e in np.eye(d + 1)])
    keep = np.eye(H.shape[0]) - null.T @ np.linalg.solve(null @ null.T, null)
    want = keep @ np.linalg.pinv(keep @ H @ keep) @ keep / len(y)
    got = np.cov(samples, rowvar=False)
    np.testing.assert_allclose(
        samples.mean(axis=0), head.params_, atol=0.05 * np.sqrt(np.diag(want)).max()
    )
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_coreset_picks_the_farthest_point_then_the_next_farthest():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = np.array([0, -1, -1, -1])
    assert ralif.select(X, y, 2, strategy="coreset").tolist() == [3, 2]


def test_badge_distances_equal_explicit_gradient_embeddings():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    R = rng.dirichlet(np.ones(3), size=80)
    R[np.arange(80), R.argmax(axis=1)] -= 1.0
    G = (R[:, :, None] * np.c_[X, np.ones(80)][:, None, :]).reshape(80, -1)
    first = int(np.argmax((G**2).sum(axis=1)))
    got = gradient_kmeans_pp_select(R, X, 15, random_state=np.random.default_rng(4))
    want = kmeans_pp_select(G, 15, first=first, random_state=np.random.default_rng(4))
    assert got.tolist() == want.tolist()


def test_isal_scores_are_influence_on_labeled_loss_under_pseudo_label():
    # By brute force, without ralif's head or influence code: the score of pool item z
    # is d/de of the mean labeled loss at the optimum of the objective with z added,
    # under its pseudo label, at weight e (central differences of two refits).
    rng = np.random.default_rng(3)
    C, d, l2, eps = 3, 2, 0.05, 1e-3
    y_lab = np.tile(np.arange(C), 5)
    X_lab = np.array([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])[y_lab] + rng.normal(size=(15, d))
    X_pool = 2.0 * rng.normal(size=(8, d))
    theta = _minimize(lambda t: _ridge_softmax(t, X_lab, y_lab, l2, C), np.zeros(C * (d + 1)))
    W, b = theta[: C * d].reshape(C, d), theta[C * d :]

    def labeled_loss_with(z, label, e):
        """The mean labeled loss at the optimum with (z, label) added at weight e."""
        X_z, y_z, w = np.vstack([X_lab, z]), np.r_[y_lab, label], np.r_[np.ones(len(y_lab)), e]
        theta_e = _minimize(lambda t: _ridge_softmax(t, X_z, y_z, l2, C, w), theta)
        return _ridge_softmax(theta_e, X_lab, y_lab, 0.0, C)[0]

    pseudo = (X_pool @ W.T + b).argmax(axis=1)
    want = [
        (labeled_loss_with(z, c, eps) - labeled_loss_with(z, c, -eps)) / (2 * eps)
        for z, c in zip(X_pool, pseudo, strict=True)
    ]
    X, y = np.vstack([X_lab, X_pool]), np.r_[y_lab, np.full(len(X_pool), -1)]
    strat = make_strategy("isal", l2=l2)
    picks = strat.select(X, y, 3)
    np.testing.assert_allclose(strat.scores_, want, rtol=1e-4, atol=1e-8)
    assert picks.tolist() == (len(y_lab) + np.argsort(want)[:3]).tolist()  # largest drops


def test_typiclust_picks_the_typical_point_of_each_uncovered_cluster():
    grid = np.stack(np.meshgrid(np.arange(-2.0, 3.0), np.arange(-2.0, 3.0)), -1).reshape(-1, 2)
    centers = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    X = np.vstack(
        [c + grid for c in centers]
    )  # 3 clusters of 25; the middle (row 12) is most typical
    y = np.full(len(X), -1)
    y[0] = 0  # one labeled item, in the first cluster
    picks = make_strategy("typiclust", max_clusters=3, random_state=0).select(X, y, 2)
    assert sorted(picks.tolist()) == [25 + 12, 50 + 12]


@pytest.mark.parametrize(
    "name", sorted(n for n, (c, _) in STRATEGIES.items() if not c.needs_network)
)
def test_every_strategy_is_deterministic_and_picks_distinct_pool_items(digits, name):
    X, y_true = digits
    y = partial_labels(y_true, 60, seed=1)
    params = {"l2": 0.05} if "l2" in make_strategy(name).get_params() else {}
    a = ralif.select(X, y, 25, strategy=name, random_state=3, **params)
    b = ralif.select(X, y, 25, strategy=name, random_state=3, **params)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 25 and (y[a] == -1).all()


def test_model_based_baselines_fall_back_to_random_with_one_class(digits):
    X, y_true = digits
    y = np.where(np.arange(len(y_true)) < 5, 2, -1)
    with pytest.warns(RandomFallbackWarning, match="at least two classes"):
        picks = ralif.select(X, y, 5, strategy="margin", random_state=0)
    assert (y[picks] == -1).all()


def test_network_strategies_need_a_sampler_and_use_it(digits):
    X, y_true = digits
    y = partial_labels(y_true, 30)
    with pytest.raises(ralif.RalifInputError, match="needs a network"):
        ralif.select(X, y, 3, strategy="bald_mc")
    pool = np.flatnonzero(y < 0)
    # Samples that disagree only on pool item 5: BALD must pick it first.
    P = np.full((4, len(pool), 2), 0.5)
    P[:, 5] = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    P[:, 9] = [0.99, 0.01]
    picks = ralif.select(X, y, 2, strategy="bald_mc", sampler=lambda idx: P)
    assert picks[0] == pool[5]
    # Entropy of the mean: item 5's mean is (0.5, 0.5), tied with the rest; item 9 is last.
    strat = make_strategy("entropy_mc", sampler=lambda idx: P)
    strat.select(X, y, 1)
    assert np.argmin(strat.scores_) == 9


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_name_builds_a_valid_strategy_from_its_class_and_preset(name):
    from ralif._params import validate_params

    cls, preset = STRATEGIES[name]
    strategy = make_strategy(name)
    validate_params(strategy)  # a preset the class would refuse fails here
    defaults = cls().get_params()
    changed = {k for k, v in strategy.get_params().items() if v != defaults[k]}
    # A class's own name presets nothing; any other name pins what it means and changes
    # nothing else.
    assert set(preset) <= set(defaults) and changed <= set(preset)
    assert (name == cls.name) == (not preset)


def test_parameters_given_with_a_preset_name_override_the_preset():
    assert make_strategy("ralif_influence", n_candidates=0.5).n_candidates == 0.5
    assert make_strategy("ralif_influence").n_candidates != make_strategy("ralif").n_candidates


def test_a_named_configuration_is_a_base_with_json_parameters():
    from ralif.loop import strategy_label
    from ralif.strategies import RandomShare, parse_spec, split_specs

    spec = 'half=random_share:{"share": 0.5}'
    strategy = make_strategy(spec, random_state=3)
    assert isinstance(strategy, RandomShare) and strategy.share == 0.5
    assert strategy.random_state == 3 and strategy_label(spec) == "half"
    # Given parameters override the spec's; a spec without a name is its own label.
    assert make_strategy(spec, share=0.25).share == 0.25
    assert strategy_label('ralif:{"tau": 2}') == 'ralif:{"tau": 2}'
    assert make_strategy('ralif:{"tau": 2}').tau == 2
    assert split_specs(f"random,{spec},ralif") == ("random", spec, "ralif")
    for bad, message in [
        ('x=ralif{"tau": 2}', "write parameters as BASE:"),
        ("x=ralif:{tau: 2}", "not JSON"),
        ("x=ralif:{}}", "not JSON"),
        ("=ralif", "empty name"),
        ('x=ralif:{"bogus": 1}', "unexpected keyword argument 'bogus'"),
        ('x=nothing:{"tau": 2}', "unknown strategy 'nothing'"),
    ]:
        with pytest.raises(RalifInputError, match=message):
            make_strategy(bad)
    assert parse_spec("x=ralif:{}") == ("x", "ralif", {})


def test_margin_kmeans_starts_at_the_most_uncertain_item_and_stays_in_the_candidates(digits):
    from ralif.scores import margin
    from ralif.strategies import MarginKMeans

    X, y = digits
    y_part = partial_labels(y, 60, seed=1)
    strat = MarginKMeans(l2=0.1, n_candidates=0.05, random_state=0)
    picks = strat.select(X, y_part, 15)
    pool, lab = np.flatnonzero(y_part < 0), y_part >= 0
    # Margins of a head fitted here, independently of the strategy.
    m = margin(LinearHead(l2=0.1).fit(X[lab], y_part[lab]).predict_proba(X[pool]))
    order = pool[np.argsort(m, kind="stable")]
    n_cand = int(np.ceil(0.05 * len(pool)))
    assert picks[0] == order[0]
    assert set(picks.tolist()) <= set(order[:n_cand].tolist())


def test_cluster_margin_picks_only_among_the_most_uncertain():
    from ralif.strategies import ClusterMargin

    # The labeled items of _line_problem are symmetric (x -> -x swaps the classes), so
    # the fitted logit difference is odd, a x, and the top-2 margin |2 sigmoid(a x) - 1|
    # grows with |x|: the 2 x 3 most uncertain pool items are the six with |x| < 0.7,
    # three pairs far apart, one pick from each pair.
    X_line, y_line = _line_problem()
    pairs = [[-0.62, -0.58], [-0.07, 0.03], [0.47, 0.51]]
    pool_x = np.r_[np.ravel(pairs), -1.0, 1.3, -1.6, 1.9, 2.2, -2.4, 2.6]
    X = np.r_[X_line[:6, 0], pool_x][:, None]
    y = np.r_[y_line[:6], np.full(len(pool_x), -1)]
    for seed in range(5):
        strat = ClusterMargin(l2=0.1, margin_multiple=2, random_state=seed)
        picks = strat.select(X, y, 3) - 6  # as positions in pool_x
        assert sorted(p // 2 for p in picks) == [0, 1, 2], pool_x[picks]


@pytest.mark.parametrize(
    "name", sorted(n for n, (c, _) in STRATEGIES.items() if not c.needs_network)
)
def test_every_strategy_never_picks_an_excluded_item_and_ignores_it(digits, name):
    X, y_true = digits
    y = partial_labels(y_true, 60, seed=1)
    rng = np.random.default_rng(4)
    held = rng.choice(len(y), 400, replace=False)  # labeled and unlabeled items alike
    params = {"l2": 0.05} if "l2" in make_strategy(name).get_params() else {}
    picks = ralif.select(X, y, 25, strategy=name, random_state=3, exclude=held, **params)
    assert not set(picks.tolist()) & set(held.tolist()) and (y[picks] == -1).all()
    # The same as a selection over the other rows alone: excluded items take no part.
    rows = np.setdiff1d(np.arange(len(y)), held)
    alone = ralif.select(X[rows], y[rows], 25, strategy=name, random_state=3, **params)
    assert picks.tolist() == rows[alone].tolist()
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    by_mask = ralif.select(X, y, 25, strategy=name, random_state=3, exclude=mask, **params)
    assert by_mask.tolist() == picks.tolist()


def test_a_streamed_selection_excludes_the_same_items(digits):
    from ralif.pools.sources import open_pool

    X, y_true = digits
    y = partial_labels(y_true, 60, seed=1)
    held = np.arange(100, 700)
    here = ralif.select(X, y, 20, random_state=0, exclude=held, l2=0.05)
    there = ralif.select(open_pool(X), y, 20, random_state=0, exclude=held, l2=0.05)
    assert here.tolist() == there.tolist()


@pytest.mark.parametrize(
    "exclude, message",
    [
        ([5, 10_000], r"outside 0\.\.1796"),
        (np.zeros(3, dtype=bool), "mask of 3 entries"),
        ([1.5], "whole numbers"),
        ([["a"]], "1-D"),
    ],
)
def test_a_bad_exclude_is_refused_naming_it(digits, exclude, message):
    X, y_true = digits
    y = partial_labels(y_true, 60, seed=1)
    with pytest.raises(ralif.RalifInputError, match=message):
        ralif.select(X, y, 5, "random", exclude=exclude)
