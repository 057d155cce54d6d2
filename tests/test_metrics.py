"""Test-set metrics: hand-worked values, recording them in a benchmark, judging by them."""

from __future__ import annotations

import csv
import sqlite3

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, matthews_corrcoef

from ralif import RalifInputError
from ralif.bench.report import load_curves, make_report, markdown
from ralif.bench.runner import BenchConfig, run_benchmark
from ralif.bench.store import ResultStore
from ralif.loop import initial_labeled_set, run_rounds
from ralif.metrics import METRICS, check_metrics, scores


def test_metrics_by_hand():
    # Class 0: 4 items, 3 right; class 1: 2 items, 1 right; class 2: 2 items, 2 right.
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    got = scores(y, pred, METRICS)
    assert got["accuracy"] == pytest.approx(6 / 8)
    assert got["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert got["min_recall"] == pytest.approx(1 / 2)
    # F1 per class: 0: p=1, r=3/4 -> 6/7; 1: p=1/2, r=1/2 -> 1/2; 2: p=2/3, r=1 -> 4/5.
    f1 = np.array([6 / 7, 1 / 2, 4 / 5])
    assert got["macro_f1"] == pytest.approx(f1.mean())
    assert got["weighted_f1"] == pytest.approx((f1 * [4, 2, 2]).sum() / 8)
    # Kappa: p_o = 6/8; p_e = sum(true share x predicted share) = (4*3 + 2*2 + 2*3) / 64.
    p_e = (4 * 3 + 2 * 2 + 2 * 3) / 64
    assert got["kappa"] == pytest.approx((6 / 8 - p_e) / (1 - p_e))
    assert got["kappa"] == pytest.approx(cohen_kappa_score(y, pred))
    assert got["mcc"] == pytest.approx(matthews_corrcoef(y, pred))


def test_metrics_judge_only_the_test_sets_classes():
    # A predicted class absent from the test set costs recall, never adds a zero F1.
    y, pred = np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1])
    got = scores(y, pred, ["macro_f1", "balanced_accuracy", "min_recall"])
    assert got["balanced_accuracy"] == pytest.approx(0.75)
    assert got["min_recall"] == pytest.approx(0.5)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)


def test_check_metrics_is_canonical_and_refuses_unknown_names():
    assert check_metrics(["mcc", "kappa", "accuracy", "mcc"]) == ("kappa", "mcc")
    assert check_metrics("kappa") == ("kappa",)
    with pytest.raises(RalifInputError, match="unknown metric 'f2'; choose from accuracy"):
        check_metrics(["kappa", "f2"])


def test_loop_records_the_metrics_asked_for(small):
    initial = initial_labeled_set(len(small.y), 20, seed=0)
    results = list(
        run_rounds(
            small.X, small.y, small.X_test, small.y_test, "random", initial, 10, 2,
            l2=0.1, metrics=("mcc", "kappa"),
        )
    )  # fmt: skip
    assert all(list(r.extra) == ["kappa", "mcc"] for r in results)
    plain = list(
        run_rounds(small.X, small.y, small.X_test, small.y_test, "random", initial, 10, 2, l2=0.1)
    )
    assert all(r.extra == {} for r in plain)
    assert [r.accuracy for r in plain] == [r.accuracy for r in results]
    with pytest.raises(RalifInputError, match="unknown metric"):
        next(run_rounds(small.X, small.y, small.X_test, small.y_test, "random", initial, 10, 1,
                        metrics=("auc",)))  # fmt: skip


def _config(**kw):
    base = dict(
        dataset="blobs", strategies=("ralif", "random"), seeds=2, rounds=2, init=20, budget=10,
        l2=0.1, metrics=("kappa", "balanced_accuracy"),
    )  # fmt: skip
    return BenchConfig(**{**base, **kw})


def test_bench_records_metrics_in_the_database_and_the_csv(small, tmp_path):
    run_benchmark(_config(), tmp_path, quiet=True, data=small).close()
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-2:] == ["balanced_accuracy", "kappa"]
    assert len(rows) == 12 and all(0 < float(r["kappa"]) <= 1 for r in rows)
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 24
    db.close()
    # The values are those of the loop itself: the evaluated model on the test set.
    initial = initial_labeled_set(len(small.y), 20, seed=1)
    loop = list(run_rounds(small.X, small.y, small.X_test, small.y_test, "random", initial, 10, 2,
                           seed=1, l2=0.1, metrics=("kappa",)))  # fmt: skip
    stored = [float(r["kappa"]) for r in rows if r["strategy"] == "random" and r["seed"] == "1"]
    assert stored == pytest.approx([r.extra["kappa"] for r in loop], abs=1e-6)
    # The CSV is rebuilt from the database with the same columns.
    (tmp_path / "results.csv").unlink()
    ResultStore(tmp_path).close()
    with open(tmp_path / "results.csv", newline="") as fh:
        again = list(csv.DictReader(fh))
    key = lambda r: (r["strategy"], r["seed"], r["round"])  # noqa: E731
    assert sorted(again, key=key) == sorted(rows, key=key)


def test_bench_refuses_another_set_of_metrics_in_one_folder(small, tmp_path):
    run_benchmark(_config(), tmp_path, quiet=True, data=small).close()
    # The same set in another order is the same benchmark: it resumes.
    run_benchmark(_config(metrics=("balanced_accuracy", "kappa"), seeds=3), tmp_path,
                  quiet=True, data=small).close()  # fmt: skip
    for other in ((), ("kappa",), ("kappa", "balanced_accuracy", "mcc")):
        with pytest.raises(RalifInputError, match="differs in metrics"):
            run_benchmark(_config(metrics=other), tmp_path, quiet=True, data=small)


def test_report_judges_by_a_recorded_metric_and_refuses_others(small, tmp_path):
    run_benchmark(_config(), tmp_path, quiet=True, data=small).close()
    out = make_report(tmp_path, "kappa")
    text = out["report"].read_text()
    assert "## Per round: mean Cohen's kappa minus random's" in text
    assert "rounds below random (Cohen's kappa)" in out["aubc_table"]
    assert "AUBC balanced accuracy" in out["aubc_table"]
    assert "the Cohen's kappa lost there" in text
    c = out["curves"]
    assert set(c.extra) == {"kappa", "balanced_accuracy"}
    with pytest.raises(RalifInputError, match=r"did not record mcc .*bench --metrics mcc"):
        make_report(tmp_path, "mcc")


def test_report_draws_a_recorded_metric_first(small, tmp_path, monkeypatch):
    import matplotlib.axes

    run_benchmark(_config(), tmp_path, quiet=True, data=small).close()
    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel", lambda ax, t, **k: labels.append(t))
    make_report(tmp_path, "balanced_accuracy")
    assert labels == [
        "Test balanced accuracy (%)", "Test accuracy (%)", "Test macro-F1 (%)",
    ]  # fmt: skip


def test_rows_without_a_metric_leave_it_out_of_the_curves():
    rows = [
        dict(strategy=s, seed=0, round=k, n_labeled=10 + k, accuracy=0.5, macro_f1=0.5,
             select_seconds=0.0, fit_seconds=0.0, kappa=0.4 if s == "random" else None)
        for s in ("random", "x") for k in range(2)
    ]  # fmt: skip
    c = load_curves(rows)
    assert c.extra == {}
    with pytest.raises(RalifInputError, match="did not record kappa"):
        markdown(c, "t", "kappa")


def test_cli_lists_every_metric(capsys):
    from ralif.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(m in help_text for m in METRICS)
    with pytest.raises(SystemExit):
        main(["report", "x", "--metric", "auc"])
    assert "invalid choice: 'auc'" in capsys.readouterr().err
