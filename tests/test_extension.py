"""The seams users touch: their own strategy, their own model, scikit-learn's estimator API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

import ralif
from ralif import RALIF, LinearHead, RalifInputError, Strategy
from ralif.bench.runner import BenchConfig, run_benchmark
from ralif.data import Dataset
from ralif.loop import initial_labeled_set, run_rounds
from ralif.scores import margin
from ralif.strategies import STRATEGIES, make_strategy
from tests.conftest import gaussian_blobs, partial_labels, require


class SmallestMargin(Strategy):
    """The README's ten-line strategy: the smallest top-2 margin first."""

    needs_model = True
    score_direction = "lower"

    def query(self, model, X, y, pool, budget, rng):
        scores = margin(model.predict_proba(X[pool]))
        return pool[np.argsort(scores, kind="stable")[:budget]], scores


class PicksALabeledItem(Strategy):
    def query(self, model, X, y, pool, budget, rng):
        return np.flatnonzero(y >= 0)[:budget], np.zeros(len(pool))


class NeedsANetwork(Strategy):
    needs_network = True


@pytest.fixture(scope="module")
def problem(digits):
    X, y = digits
    return X, partial_labels(y, 60, seed=4)


def _smallest_margins(proba: np.ndarray, pool: np.ndarray, k: int) -> list[int]:
    """By hand: sort the top-2 gaps of each row."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    return pool[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:k]].tolist()


def test_a_user_strategy_object_picks_through_select(problem):
    X, y = problem
    lab, pool = y >= 0, np.flatnonzero(y < 0)
    head = LinearHead(l2=0.1).fit(X[lab], y[lab])
    picks = ralif.select(X, y, 8, strategy=SmallestMargin(), model=LinearHead(l2=0.1))
    assert picks.tolist() == _smallest_margins(head.predict_proba(X[pool]), pool, 8)


def test_a_user_strategy_named_module_colon_class_picks_the_same(problem):
    X, y = problem
    by_name = ralif.select(X, y, 8, strategy="tests.test_extension:SmallestMargin")
    assert by_name.tolist() == ralif.select(X, y, 8, strategy=SmallestMargin()).tolist()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.no_such_module:X", "cannot import tests.no_such_module"),
        ("tests.test_extension:Missing", "has no attribute Missing"),
        ("tests.test_extension:problem", "not a subclass"),
        ("oracle", "unknown strategy 'oracle'"),
    ],
)
def test_a_strategy_name_that_cannot_be_had_is_named(problem, spec, message):
    X, y = problem
    with pytest.raises(RalifInputError, match=message):
        ralif.select(X, y, 3, strategy=spec)


def test_select_leaves_the_callers_strategy_object_unchanged(problem):
    X, y = problem
    mine = SmallestMargin(random_state=7)
    ralif.select(X, y, 3, strategy=mine, random_state=1)
    assert mine.random_state == 7 and not hasattr(mine, "picks_")


def test_a_query_that_picks_a_labeled_item_is_refused_naming_the_strategy(problem):
    X, y = problem
    with pytest.raises(RalifInputError, match=r"PicksALabeledItem\.query must return distinct"):
        ralif.select(X, y, 3, strategy=PicksALabeledItem())


def test_a_user_strategy_runs_in_the_benchmark_like_its_builtin_twin(tmp_path):
    X, y = gaussian_blobs(n=500, d=6, C=3, sep=1.2, seed=5)
    data = Dataset("blobs", X[:400], y[:400], X[400:], y[400:])
    config = BenchConfig(
        dataset="blobs",
        strategies=("tests.test_extension:SmallestMargin", "margin"),
        seeds=1,
        rounds=2,
        init=15,
        budget=10,
        l2=0.1,
    )
    store = run_benchmark(config, tmp_path, quiet=True, data=data)
    rows = store.rows()
    store.close()
    by = {
        s: sorted((r for r in rows if r["strategy"] == s), key=lambda r: r["round"])
        for s in config.strategies
    }
    # Margin does not draw at random, so the same model gives the same curve.
    assert len(by["margin"]) == 3
    assert [r["accuracy"] for r in by["tests.test_extension:SmallestMargin"]] == [
        r["accuracy"] for r in by["margin"]
    ]


def test_bench_refuses_a_network_strategy_outside_the_network_scenarios_by_its_declaration():
    config = BenchConfig(dataset="digits", strategies=("tests.test_extension:NeedsANetwork",))
    with pytest.raises(RalifInputError, match="need a network"):
        config.check()


def test_the_loop_fits_the_model_once_per_round(monkeypatch):
    X, y = gaussian_blobs(n=300, d=5, C=3, sep=1.2, seed=6)
    fits = []
    real_fit = LinearHead.fit

    def counting_fit(self, X_, y_):
        fits.append(len(y_))
        return real_fit(self, X_, y_)

    monkeypatch.setattr(LinearHead, "fit", counting_fit)
    initial = initial_labeled_set(250, 20, seed=0)
    for name in ("margin", "ralif", "badge"):
        fits.clear()
        list(run_rounds(X[:250], y[:250], X[250:], y[250:], name, initial, 10, 3, l2=0.1))
        assert fits == [20, 30, 40, 50], name


def test_a_fitted_model_handed_to_select_is_used_without_refitting(problem, monkeypatch):
    X, y = problem
    lab = y >= 0
    head = LinearHead(l2=0.1).fit(X[lab], y[lab])
    want = RALIF(l2=0.1, random_state=0).select(X, y, 6)
    monkeypatch.setattr(LinearHead, "fit", lambda *a: pytest.fail("refitted"))
    assert RALIF(random_state=0).select(X, y, 6, model=head).tolist() == want.tolist()


def test_a_fitted_logistic_regression_is_a_model_for_uncertainty_strategies(problem):
    X, y = problem
    lab, pool = y >= 0, np.flatnonzero(y < 0)
    clf = LogisticRegression(C=0.5, max_iter=2000).fit(X[lab], y[lab])
    picks = ralif.select(X, y, 6, strategy="margin", model=clf)
    assert picks.tolist() == _smallest_margins(clf.predict_proba(X[pool]), pool, 6)


@pytest.mark.parametrize("name", ["ralif", "isal", "bald"])
def test_a_model_without_exact_influence_is_refused_before_fitting(problem, name):
    X, y = problem
    svc = SVC(kernel="linear", probability=True)
    with pytest.raises(RalifInputError, match=r"influence needs .* got SVC"):
        ralif.select(X, y, 5, strategy=name, model=svc)
    assert not hasattr(svc, "classes_")  # refused before any fit
    with pytest.raises(RalifInputError, match="got SVC"):
        RALIF(head=svc).select(X, y, 5)


def test_a_model_fitted_on_other_classes_is_refused(problem):
    X, y = problem
    lab = y >= 0
    other = LinearHead(l2=0.1).fit(X[lab][:20], np.arange(20) % 2)
    with pytest.raises(RalifInputError, match=r"fitted on classes \[0, 1\]"):
        ralif.select(X, y, 5, strategy="margin", model=other)


def test_a_torch_network_is_a_model_through_the_protocol(problem):
    torch = require("torch")
    X, y = problem
    lab, pool = y >= 0, np.flatnonzero(y < 0)

    class SoftmaxNet:
        """A torch module behind fit/predict_proba: all a margin strategy asks for."""

        def fit(self, X_, y_):
            torch.manual_seed(0)
            self.classes_ = np.unique(y_)
            self.net = torch.nn.Linear(X_.shape[1], len(self.classes_)).double()
            opt = torch.optim.LBFGS(self.net.parameters(), max_iter=50)
            xt, yt = torch.from_numpy(X_), torch.from_numpy(np.searchsorted(self.classes_, y_))

            def loss():
                opt.zero_grad()
                value = torch.nn.functional.cross_entropy(self.net(xt), yt)
                value.backward()
                return value

            opt.step(loss)
            return self

        def predict_proba(self, X_):
            with torch.no_grad():
                return torch.softmax(self.net(torch.from_numpy(X_)), dim=1).numpy()

    net = SoftmaxNet().fit(X[lab], y[lab])
    picks = ralif.select(X, y, 6, strategy="margin", model=net)
    assert picks.tolist() == _smallest_margins(net.predict_proba(X[pool]), pool, 6)
    with pytest.raises(RalifInputError, match="influence needs"):
        ralif.select(X, y, 6, strategy="ralif", model=net)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_clone_and_set_params_round_trip_every_strategy(name):
    strategy = make_strategy(name, random_state=3)
    twin = clone(strategy)
    assert twin is not strategy and twin.get_params() == strategy.get_params()
    twin.set_params(random_state=11)
    assert twin.get_params()["random_state"] == 11 and strategy.random_state == 3


def _strategy_classes() -> list[type[Strategy]]:
    """Every class behind a name of STRATEGIES, and every public composite strategy."""
    from ralif.strategies import composite

    classes = {cls for cls, _ in STRATEGIES.values()}
    classes |= {
        obj
        for name, obj in vars(composite).items()
        if isinstance(obj, type)
        and issubclass(obj, Strategy)
        and obj.__module__ == composite.__name__
        and not name.startswith("_")
    }
    return sorted(classes, key=lambda cls: cls.__name__)


# scikit-learn's checks that hold for any estimator: a strategy is not a classifier
# (no fit), so those of check_estimator that fit or predict do not apply.
_ESTIMATOR_CHECKS = (
    "check_parameters_default_constructible",
    "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
)


def test_the_estimator_checks_cover_every_strategy_class():
    import ralif.strategies

    exported = [getattr(ralif.strategies, name) for name in ralif.strategies.__all__]
    strategies = {c for c in exported if isinstance(c, type) and issubclass(c, Strategy)}
    assert strategies - {Strategy} <= set(_strategy_classes())


@pytest.mark.parametrize("cls", _strategy_classes(), ids=lambda cls: cls.__name__)
def test_every_strategy_class_passes_scikit_learns_estimator_checks(cls):
    from sklearn.utils import estimator_checks

    for check in _ESTIMATOR_CHECKS:
        getattr(estimator_checks, check)(cls.__name__, cls())
    if not cls.needs_network:  # scikit-learn's checks of this run fit: select instead
        from joblib import hash as joblib_hash

        X, y_true = gaussian_blobs(n=80, d=3, C=3, seed=1)
        y = partial_labels(y_true, 15, seed=2)
        strategy = cls(random_state=0)
        before = joblib_hash(strategy.get_params(deep=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            strategy.select(X, y, 4)
        assert joblib_hash(strategy.get_params(deep=True)) == before, "select changed a parameter"


def test_nested_parameters_of_a_head_given_to_ralif_are_reached_by_set_params():
    strategy = RALIF(head=LinearHead(l2=0.1), tau=2.0)
    assert strategy.get_params(deep=True)["head__l2"] == 0.1
    strategy.set_params(head__l2=0.5)
    assert strategy.head.l2 == 0.5
    assert clone(strategy).head.l2 == 0.5
    assert repr(RALIF(tau=2.0)) == "RALIF(tau=2.0)"
    assert clone(LinearHead(l2=0.3, fit_intercept=False)).get_params()["fit_intercept"] is False


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("bald", {"n_samples": 0}, "BALD: n_samples must be a positive integer, got 0"),
        ("ralif", {"tau": -1.0}, "RALIF: tau must be in"),
        ("ralif", {"diversity": "spread-out"}, "RALIF: diversity must be one of"),
        ("isal", {"damping": float("nan")}, "ISAL: damping must be in"),
        ("margin", {"l2": "big"}, "Margin: l2 must be a non-negative number or 'auto'"),
        ("typiclust", {"n_neighbors": 2.5}, "TypiClust: n_neighbors must be a positive integer"),
    ],
)
def test_bad_hyper_parameters_are_named_before_any_work(
    problem, monkeypatch, name, params, message
):
    X, y = problem
    monkeypatch.setattr(LinearHead, "fit", lambda *a: pytest.fail("fitted before checking"))
    with pytest.raises(RalifInputError, match=message):
        ralif.select(X, y, 5, strategy=name, **params)


def test_a_head_with_a_bad_ridge_is_left_unfitted():
    head = LinearHead(l2=-1.0)
    with pytest.raises(RalifInputError, match="l2 must be a non-negative number"):
        head.fit(np.eye(2), [0, 1])
    assert not hasattr(head, "classes_") and not hasattr(head, "coef_")


def test_a_head_stopped_short_of_its_optimum_warns(digits):
    X, y = digits
    # No float64 gradient gets below 1e-30: the fit must stop at its cap and say so.
    with pytest.warns(ConvergenceWarning, match="not at the optimum"):
        LinearHead(l2=0.01, tol=1e-30, max_iter=3).fit(X[:200], y[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearHead(l2=0.01).fit(X[:200], y[:200])


def test_cli_select_takes_l2_for_margin_and_refuses_tau(tmp_path, problem, capsys):
    from ralif.cli import main

    X, y = problem
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    files = ["--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    args = ["select", *files, "--budget", "4", "--strategy", "margin", "--l2", "0.1"]
    assert main(args) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    want = ralif.select(X, y, 4, strategy="margin", l2=0.1, random_state=0)
    assert [int(r.split(",")[0]) for r in rows] == want.tolist()
    assert main([*args, "--tau", "2"]) == 2
    assert (
        capsys.readouterr().err.strip() == "ralif: error: --tau does not apply to strategy margin"
    )


def test_session_next_follows_the_same_option_rule_as_select():
    from ralif.cli import make_parser
    from ralif.cli._common import strategy_params

    parser = make_parser()
    for command in (["select", "--features", "f", "--labels", "l"], ["session", "next"]):
        args = parser.parse_args([*command, "--budget", "3", "--strategy", "margin", "--tau", "2"])
        with pytest.raises(RalifInputError, match="--tau does not apply to strategy margin"):
            strategy_params(args, args.strategy)
        args = parser.parse_args([*command, "--budget", "3", "--strategy", "margin", "--l2", "0.5"])
        assert strategy_params(args, args.strategy) == {"l2": 0.5}


def test_cli_bench_runs_a_strategy_named_module_colon_class(tmp_path, capsys):
    from ralif.cli import main

    X, y = gaussian_blobs(n=300, d=5, C=3, sep=1.2, seed=8)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    spec = "tests.test_extension:SmallestMargin"
    sizes = ["--seeds", "1", "--rounds", "1", "--init", "15", "--budget", "5", "--l2", "0.1"]
    data = ["--dataset", str(tmp_path / "d.npz"), "--strategies", f"{spec},random"]
    code = main(["bench", *data, *sizes, "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    assert spec in capsys.readouterr().out


@pytest.mark.parametrize(
    "name", sorted(n for n, (cls, _) in STRATEGIES.items() if not cls.needs_network)
)
def test_the_loop_picks_what_the_strategy_picks_fitting_its_own_model(name):
    from ralif.loop import round_seed

    X, y_true = gaussian_blobs(n=260, d=5, C=3, sep=1.2, seed=9)
    X, y_true, X_test, y_test = X[:200], y_true[:200], X[200:], y_true[200:]
    initial = initial_labeled_set(200, 20, seed=0)
    looped = list(run_rounds(X, y_true, X_test, y_test, name, initial, 8, 1, l2=0.1))[1].picks
    y = np.full(200, -1)
    y[initial] = y_true[initial]
    strategy = make_strategy(name, random_state=round_seed(0, 1, name))
    if "l2" in strategy.get_params():
        alone = strategy.set_params(l2=0.1).select(X, y, 8)
    else:  # a composite hands its parts the model it is given
        model = LinearHead(l2=0.1) if strategy.needs_model else None
        alone = strategy.select(X, y, 8, model=model)
    assert looped.tolist() == alone.tolist()


def test_cli_select_runs_a_strategy_named_module_colon_class(tmp_path, problem, capsys):
    from ralif.cli import main

    X, y = problem
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    files = ["--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    spec = "tests.test_extension:SmallestMargin"
    assert main(["select", *files, "--budget", "4", "--strategy", spec]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    want = ralif.select(X, y, 4, strategy=SmallestMargin())
    assert [int(r.split(",")[0]) for r in rows] == want.tolist()
    assert main(["select", *files, "--budget", "4", "--strategy", "tests.nowhere:X"]) == 2
    assert "cannot import tests.nowhere" in capsys.readouterr().err
