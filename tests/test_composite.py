"""Strategies made of strategies: a random share, a switch by budget, and ALBL's bandit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from ralif import LinearHead, RalifInputError
from ralif.loop import initial_labeled_set, run_rounds
from ralif.scores import margin
from ralif.strategies import (
    ALBL,
    BudgetSwitch,
    DiversityFallbackWarning,
    Margin,
    Random,
    RandomShare,
    TypiClust,
    make_strategy,
)
from tests.conftest import gaussian_blobs, partial_labels


@pytest.fixture(scope="module")
def problem():
    X, y_true = gaussian_blobs(n=400, d=5, C=3, sep=1.0, seed=4)
    y = np.full(len(y_true), -1)
    y[:30] = y_true[:30]
    return X, y, y_true


def _smallest_margins(X, y, k):
    """Margin's picks computed here: the k smallest top-2 margins of a head fitted here."""
    lab, pool = y >= 0, np.flatnonzero(y < 0)
    head = LinearHead(l2=0.1).fit(X[lab], y[lab])
    return pool[np.argsort(margin(head.predict_proba(X[pool])), kind="stable")[:k]]


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_random_share_is_the_strategys_picks_then_uniform_ones(problem, share):
    X, y, _ = problem
    s = RandomShare(Margin(l2=0.1), share=share, random_state=0)
    picks = s.select(X, y, 10)
    n_random = round(share * 10)
    assert picks[: 10 - n_random].tolist() == _smallest_margins(X, y, 10 - n_random).tolist()
    assert picks[10 - n_random :].tolist() == s.random_picks_.tolist()
    assert len(set(picks.tolist())) == 10 and (y[picks] == -1).all()


def test_random_share_draws_the_rest_uniformly(problem):
    X, y, _ = problem
    counts = np.zeros(len(y))
    for seed in range(400):
        counts[RandomShare(Margin(l2=0.1), share=0.5, random_state=seed).select(X, y, 4)[2:]] += 1
    chosen = set(_smallest_margins(X, y, 2).tolist())
    rest = [i for i in np.flatnonzero(y < 0) if i not in chosen]
    # 800 draws over 368 items: every item is drawn, none far more than its share.
    assert counts[list(chosen)].sum() == 0 and counts[rest].min() >= 0
    assert counts[rest].sum() == 800 and counts[rest].max() < 12


def test_budget_switch_uses_low_until_labels_per_class_suffice(problem):
    X, y, _ = problem  # 30 labels over 3 classes: 10 per class
    low, high = Random(), Margin(l2=0.1)
    s = BudgetSwitch(low, high, labels_per_class=10.0, random_state=0)
    assert s.select(X, y, 6).tolist() == _smallest_margins(X, y, 6).tolist()
    assert s.used_ == "high"
    s.set_params(labels_per_class=10.5)
    assert s.select(X, y, 6).tolist() != _smallest_margins(X, y, 6).tolist()
    assert s.used_ == "low"
    default = BudgetSwitch(labels_per_class=11.0, random_state=0)
    default.select(X, y, 6)
    assert default.used_ == "low" and isinstance(default._part_used, TypiClust)


def test_composites_clone_with_their_parts_and_refuse_a_part_that_is_no_strategy(problem):
    X, y, _ = problem
    s = RandomShare(Margin(l2=0.3), share=0.25)
    assert s.get_params(deep=True)["strategy__l2"] == 0.3
    twin = clone(s)
    assert twin.strategy is not s.strategy and twin.strategy.l2 == 0.3
    with pytest.raises(RalifInputError, match="strategy must be a ralif Strategy"):
        RandomShare(strategy="margin").select(X, y, 5)
    with pytest.raises(RalifInputError, match="share must be in"):
        RandomShare(share=1.5).select(X, y, 5)


def test_albl_weighs_each_pick_by_its_probability_of_being_labeled(problem):
    X, y, _ = problem
    albl = ALBL(arms=[Margin(l2=0.1), Random()], p_min=0.5, random_state=0)
    picks = albl.select(X, y, 10)
    pool = (y < 0).sum()
    in_margin = np.isin(picks, _smallest_margins(X, y, 10))
    # Each slot: margin's batch holds the item (0.5 / 10), random any item (0.5 / pool).
    q = 0.5 * in_margin / 10 + 0.5 / pool
    np.testing.assert_allclose(albl._weights, 1 / (pool * q))
    assert albl.probabilities_.tolist() == [0.5, 0.5]


def test_albl_rewards_the_drawn_arm_with_importance_weighted_accuracy(problem):
    X, y, y_true = problem
    albl = ALBL(arms=[Margin(l2=0.1), Random()], p_min=0.1, learning_rate=0.5, random_state=1)
    picks = albl.select(X, y, 10)
    arm, p, weights = albl.arm_, albl.probabilities_[albl.arm_], albl._weights.copy()
    y2 = y.copy()
    y2[picks] = y_true[picks]
    model = LinearHead(l2=0.1).fit(X[y2 >= 0], y2[y2 >= 0])
    albl.set_params(random_state=2).select(X, y2, 10, model=model)
    hit = model.predict(X[picks]) == y_true[picks]
    reward = np.sum(weights * hit) / np.sum(weights)
    want = np.zeros(2)
    want[arm] = 0.5 * reward / p
    np.testing.assert_allclose(albl.log_weights_, want)
    assert albl.last_reward_ == pytest.approx(reward)


def test_albl_refuses_arms_without_random():
    X, y_true = gaussian_blobs(n=100, d=3, C=2, seed=0)
    y = np.full(100, -1)
    y[:10] = y_true[:10]
    with pytest.raises(RalifInputError, match="one of them Random"):
        ALBL(arms=[Margin(), TypiClust()]).select(X, y, 3)


def test_the_loop_keeps_one_albl_across_rounds_and_replays_it_to_resume():
    X, y_true = gaussian_blobs(n=360, d=5, C=3, sep=1.0, seed=5)
    X, y_true, X_test, y_test = X[:300], y_true[:300], X[300:], y_true[300:]
    initial = initial_labeled_set(300, 20, seed=0, y=y_true)
    albl = ALBL(arms=[Margin(), Random()], learning_rate=2.0)
    args = (X, y_true, X_test, y_test, albl, initial, 10)
    full = list(run_rounds(*args, 4, l2=0.1))
    assert [r.round for r in full] == [0, 1, 2, 3, 4]
    first = list(run_rounds(*args, 2, l2=0.1))
    resumed = list(run_rounds(*args, 4, l2=0.1, done=[r.picks for r in first]))
    assert [r.round for r in resumed] == [3, 4]
    for a, b in zip(full[3:], resumed, strict=True):
        assert a.picks.tolist() == b.picks.tolist() and a.accuracy == b.accuracy
    with pytest.raises(RalifInputError, match="replaying round 1"):
        wrong = [first[0].picks, first[2].picks, first[1].picks]
        list(run_rounds(*args, 4, l2=0.1, done=wrong))


@pytest.mark.parametrize("inner", ["ralif", "badge", "coreset", "margin"])
def test_subsample_in_memory_picks_what_the_streamed_cap_picks(digits, inner):
    from ralif.pools.streaming import streamed_select
    from ralif.strategies import SubSample

    X, y_true = digits
    y = partial_labels(y_true, 60, seed=2)
    part = make_strategy(inner, **({} if inner == "coreset" else {"l2": 0.1}))
    cap = 30 if inner == "ralif" else 150  # RALIF's own candidates number 40
    capped = SubSample(part, max_candidates=cap, random_state=4)
    picks = capped.select(X, y, 20)
    streamed = streamed_select(X, y, 20, part, random_state=4, max_candidates=cap, block_rows=200)
    assert picks.tolist() == streamed.picks.tolist()
    if inner != "margin":  # margin reads no candidates: the cap changes nothing
        assert streamed.capped
    # Below the cap the picks are the strategy's own.
    wide = SubSample(part, max_candidates=10_000, random_state=4).select(X, y, 20)
    assert wide.tolist() == clone(part).set_params(random_state=4).select(X, y, 20).tolist()


def test_subsample_caps_ralifs_candidates_at_its_best_by_score(digits):
    from ralif.strategies import RALIF, SubSample

    X, y_true = digits
    y = partial_labels(y_true, 60, seed=2)
    capped = SubSample(RALIF(l2=0.1, n_candidates=0.2), max_candidates=30, random_state=0)
    capped.select(X, y, 10)
    whole = RALIF(l2=0.1, n_candidates=0.2, random_state=0)
    whole.select(X, y, 10)
    # The cap keeps the first 30 of the same candidates, best first.
    assert capped.strategy_.candidates_.tolist() == whole.candidates_[:30].tolist()
    with pytest.raises(RalifInputError, match="writes its own query"):
        SubSample(make_strategy("random_share")).select(X, y, 5)
    with pytest.warns(DiversityFallbackWarning):  # one class: the part's own fallback
        picks = SubSample(RALIF(l2=0.1), random_state=0).select(X, np.where(y == 3, 3, -1), 5)
    assert len(set(picks.tolist())) == 5
