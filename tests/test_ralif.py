"""The RALIF strategy and ralif.select end to end, bad input included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import ralif
from ralif import RALIF, DiversityFallbackWarning, LinearHead, RalifInputError, influence_matrix
from ralif.scores import authors_score, margin, truncated_expectation
from tests.conftest import partial_labels


@pytest.fixture(scope="module")
def problem(digits):
    X, y = digits
    return X, partial_labels(y, 60, seed=0)


def test_picks_are_distinct_unlabeled_candidates(problem):
    X, y = problem
    strat = RALIF(l2=0.05, random_state=0)
    picks = strat.select(X, y, 30)
    assert len(set(picks.tolist())) == 30
    assert (y[picks] == -1).all()
    cand_items = set(strat.pool_index_[strat.candidates_].tolist())
    assert set(picks.tolist()) <= cand_items
    assert len(strat.candidates_) == 2 * 30  # the default: two budgets of candidates


@pytest.mark.parametrize("candidates", ["influence", "influence+margin"])
def test_first_pick_is_the_best_candidate(problem, candidates):
    X, y = problem
    strat = RALIF(l2=0.05, candidates=candidates, random_state=0)
    picks = strat.select(X, y, 10)
    cand_scores = strat.scores_[strat.candidates_]
    assert picks[0] == strat.pool_index_[strat.candidates_[np.argmin(cand_scores)]]
    assert np.all(np.diff(cand_scores) >= 0)  # best first
    if candidates == "influence":
        assert picks[0] == strat.pool_index_[np.argmin(strat.scores_)]


def test_influence_margin_candidates_are_the_best_scores_among_the_most_uncertain(problem):
    X, y = problem
    strat = RALIF(l2=0.05, n_candidates=0.1, random_state=0)
    strat.select(X, y, 10)
    n_pool = len(strat.pool_index_)
    m = margin(strat.head_.predict_proba(X[strat.pool_index_]))
    uncertain = np.argsort(m, kind="stable")[: int(np.ceil(0.2 * n_pool))]
    want = uncertain[
        np.argsort(strat.scores_[uncertain], kind="stable")[: int(np.ceil(0.1 * n_pool))]
    ]
    assert sorted(strat.candidates_.tolist()) == sorted(want.tolist())


def test_scores_are_the_truncated_expectation_of_the_influence(problem):
    X, y = problem
    strat = RALIF(l2=0.05, tau=2.0, score="expected", random_state=0)
    strat.select(X, y, 5)
    # The whole influence matrix of the same head (the query itself never forms it).
    from ralif.influence import pool_influence

    lab = y >= 0
    infl = pool_influence(strat.head_, X[lab], y[lab], X, strat.pool_index_)
    np.testing.assert_allclose(strat.scores_, truncated_expectation(infl.delta, infl.proba, 2.0))
    authors = RALIF(l2=0.05, tau=2.0, score="authors", random_state=0)
    authors.select(X, y, 5)
    np.testing.assert_allclose(
        authors.scores_, authors_score(infl.delta, infl.proba, infl.target_loss, 2.0)
    )


def test_same_seed_same_picks_other_seed_other_picks(problem):
    X, y = problem
    a = ralif.select(X, y, 20, l2=0.05, random_state=1)
    assert np.array_equal(a, ralif.select(X, y, 20, l2=0.05, random_state=1))
    assert not np.array_equal(a, ralif.select(X, y, 20, l2=0.05, random_state=2))


def test_without_diversity_takes_the_top_scores(problem):
    X, y = problem
    strat = RALIF(l2=0.05, diversity="none", candidates="influence")
    picks = strat.select(X, y, 15)
    order = np.argsort(strat.scores_, kind="stable")[:15]
    assert picks.tolist() == strat.pool_index_[order].tolist()


def test_candidate_set_never_smaller_than_budget(problem):
    X, y = problem
    strat = RALIF(l2=0.05, n_candidates=0.01, random_state=0)
    picks = strat.select(X, y, 100)
    assert len(strat.candidates_) == 100
    assert len(strat.candidates_) == 100
    assert len(set(picks.tolist())) == 100


def test_float32_features_give_the_same_scores(problem):
    X, y = problem
    a, b = RALIF(l2=0.05), RALIF(l2=0.05)
    a.select(X, y, 5)
    b.select(X.astype(np.float32), y, 5)
    np.testing.assert_allclose(b.scores_, a.scores_, atol=1e-4 * np.abs(a.scores_).max())


def test_sklearn_logistic_regression_as_head(problem):
    X, y = problem
    lab = y >= 0
    clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=20000).fit(X[lab], y[lab])
    strat = RALIF(head=clf, random_state=0)
    strat.select(X, y, 10)
    assert strat.head_.l2_ == pytest.approx(1.0 / lab.sum())
    np.testing.assert_allclose(
        strat.head_.predict_proba(X[~lab]), clf.predict_proba(X[~lab]), atol=1e-4
    )


def test_fewer_than_two_classes_falls_back_to_diversity_with_a_warning(digits):
    X, y_true = digits
    y = np.full(len(y_true), -1)
    y[np.flatnonzero(y_true == 3)[:5]] = 3
    with pytest.warns(DiversityFallbackWarning, match="at least two classes"):
        picks = ralif.select(X, y, 10, random_state=0)
    assert len(set(picks.tolist())) == 10 and (y[picks] == -1).all()
    y[:] = -1
    with pytest.warns(DiversityFallbackWarning):
        assert len(ralif.select(X, y, 10, random_state=0)) == 10


@pytest.mark.parametrize(("target", "damping"), [("all", 0.0), ("pool", 0.25)])
def test_target_and_damping_reach_the_influence_computation(problem, target, damping):
    X, y = problem
    lab, pool = y >= 0, y < 0
    strat = RALIF(l2=0.05, target=target, damping=damping, score="spread", random_state=0)
    strat.select(X, y, 5)
    # The influence of a head fitted here, with the same target and damping.
    head = LinearHead(l2=0.05).fit(X[lab], y[lab])
    delta = influence_matrix(head, X[lab], y[lab], X[pool], target=target, damping=damping)
    # The spread of the predicted change under the head's label distribution, by hand.
    p = head.predict_proba(X[pool])
    want = -np.sqrt((p * delta**2).sum(axis=1))
    np.testing.assert_allclose(strat.scores_, want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda X, y: (np.where(np.arange(len(X))[:, None] == 3, np.nan, X), y),
            r"NaN in rows \[3\]",
        ),
        (
            lambda X, y: (np.where(np.arange(len(X))[:, None] == 17, np.inf, X), y),
            r"inf in rows \[17\]",
        ),
        (lambda X, y: (X, y[:-1]), "entries but the features have"),
        (lambda X, y: (X, np.where(np.arange(len(y)) == 0, 1.5, y)), "non-integer values in rows"),
        (
            lambda X, y: (X, np.where(np.arange(len(y)) == 2, -3, y)),
            "negative labels other than -1",
        ),
        (lambda X, y: (X[:, 0], y), "must be 2-D"),
        (lambda X, y: (X.astype(str), y), "must be numeric"),
    ],
)
def test_bad_input_is_named(problem, mutate, message):
    X, y = mutate(*problem)
    with pytest.raises(RalifInputError, match=message):
        ralif.select(X, y, 5, l2=0.05)


def test_budget_and_pool_errors(problem):
    X, y = problem
    n_pool = int((y == -1).sum())
    for bad in (0, -2):
        with pytest.raises(RalifInputError, match="budget must be a positive integer"):
            ralif.select(X, y, bad)
    with pytest.raises(RalifInputError, match=f"larger than the pool \\({n_pool} unlabeled"):
        ralif.select(X, y, n_pool + 1)
    with pytest.raises(RalifInputError, match="pool is empty"):
        ralif.select(X[:10], np.arange(10) % 3, 1)


def test_unknown_strategy_and_parameter_errors(problem):
    X, y = problem
    with pytest.raises(RalifInputError, match="unknown strategy 'oracle'"):
        ralif.select(X, y, 5, strategy="oracle")
    with pytest.raises(RalifInputError, match="unexpected keyword argument 'bogus'"):
        ralif.select(X, y, 5, bogus=1)
    with pytest.raises(RalifInputError, match=r"n_candidates must be .*in \(0.0, 1.0\]"):
        ralif.select(X, y, 5, n_candidates=0.0)
    with pytest.raises(RalifInputError, match="diversity must be one of 'kmeans"):
        ralif.select(X, y, 5, diversity=True)  # strings only
    with pytest.raises(RalifInputError, match="score must be one of"):
        ralif.select(X, y, 5, score="best")


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        RALIF("auto", 4.0)


def test_the_default_is_the_confirmed_rule_and_the_papers_is_one_name_away():
    from ralif.strategies import make_strategy

    default = RALIF().get_params()
    assert default["score"] == "expected" and default["n_candidates"] is None
    assert default["candidates"] == "influence+margin" and default["diversity"] == "kmeans++"
    assert default["weighting"] == "none"
    paper = make_strategy("ralif_influence").get_params()
    assert paper["candidates"] == "influence" and paper["n_candidates"] == 0.1


@pytest.mark.parametrize(
    ("n_candidates", "asked"),
    [
        (None, lambda n: 14),  # twice the budget of 7
        (21, lambda n: 21),  # a count
        (3, lambda n: 3),  # fewer than the budget: the budget
        (0.1, lambda n: math.ceil(0.1 * n)),  # a share of the pool
        (1.0, lambda n: n),
    ],
)
def test_n_candidates_is_a_count_a_share_or_twice_the_budget(problem, n_candidates, asked):
    X, y = problem
    n_pool = int((y < 0).sum())
    strat = RALIF(l2=0.1, n_candidates=n_candidates, random_state=0)
    strat.select(X, y, 7)
    k = max(7, asked(n_pool))
    assert len(strat.candidates_) == k
    # The best scores among twice as many most uncertain pool items (at least the budget).
    m = margin(strat.head_.predict_proba(X[strat.pool_index_]))
    uncertain = np.argsort(m, kind="stable")[: min(n_pool, max(7, 2 * asked(n_pool)))]
    best = uncertain[np.argsort(strat.scores_[uncertain], kind="stable")[:k]]
    assert set(strat.candidates_.tolist()) == set(best.tolist())


def test_cluster_diversity_picks_candidates_including_the_best(problem):
    X, y = problem
    strat = RALIF(l2=0.1, diversity="cluster", random_state=0)
    picks = strat.select(X, y, 8)
    cand = strat.candidates_
    assert set(picks.tolist()) <= set(strat.pool_index_[cand].tolist())
    assert len(set(picks.tolist())) == 8
    # The best candidate is the best of whichever cluster holds it, so it is picked.
    assert strat.pool_index_[cand[0]] in picks.tolist()


def test_l2_scale_fits_the_influence_head_with_a_larger_ridge(problem):
    X, y = problem
    strat = RALIF(l2=0.05, l2_scale=10.0, random_state=0)
    strat.select(X, y, 5)
    assert strat.head_.l2_ == pytest.approx(0.5)
    with pytest.raises(RalifInputError, match="l2_scale"):
        RALIF(l2_scale=0.0).select(X, y, 5)


def test_docs_parameter_table_states_ralifs_own_defaults():
    """The parameter table of the user guide's method page (moved there from the README)."""
    import inspect
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "guide" / "method.md"
    text = page.read_text(encoding="utf-8")
    table = text[text.index("| parameter | default | meaning |") :].split("\n\n")[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    defaults = {k: v.default for k, v in inspect.signature(RALIF).parameters.items()}
    assert len(rows) >= 10
    for name, shown in ((n.strip(" `"), d.strip(" `")) for n, d in rows):
        assert name in defaults, name
        want = defaults[name]
        if isinstance(want, str):
            assert shown == f'"{want}"', (name, shown, want)
        elif want is None or isinstance(want, bool):
            assert shown == str(want), (name, shown, want)
        else:
            assert float(shown) == want, (name, shown, want)
