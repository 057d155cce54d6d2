"""The loop's bookkeeping, the result store, resuming, and the report."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from ralif import RalifInputError
from ralif.bench.report import load_curves, make_report, win_tie_loss
from ralif.bench.runner import BenchConfig, run_benchmark
from ralif.bench.store import ResultStore
from ralif.data import load_dataset
from ralif.data.transforms import long_tailed_indices
from ralif.loop import initial_labeled_set, run_rounds
from tests.conftest import gaussian_blobs


def test_loop_labels_each_item_once_and_the_pool_shrinks_by_budget(small):
    initial = initial_labeled_set(len(small.y), 20, seed=0)
    results = list(
        run_rounds(small.X, small.y, small.X_test, small.y_test, "ralif", initial, 15, 4, l2=0.1)
    )
    assert [r.round for r in results] == [0, 1, 2, 3, 4]
    assert [r.n_labeled for r in results] == [20, 35, 50, 65, 80]
    seen = np.concatenate([initial] + [r.picks for r in results[1:]])
    assert len(np.unique(seen)) == len(seen) == 80
    assert all(0 <= r.accuracy <= 1 and 0 <= r.macro_f1 <= 1 for r in results)


def test_initial_set_is_shared_by_strategies_and_differs_by_seed(small):
    a = initial_labeled_set(450, 30, seed=1)
    assert np.array_equal(a, initial_labeled_set(450, 30, seed=1))
    assert not np.array_equal(a, initial_labeled_set(450, 30, seed=2))
    r = {
        s: next(run_rounds(small.X, small.y, small.X_test, small.y_test, s, a, 10, 1))
        for s in ("random", "margin")
    }
    assert r["random"].accuracy == r["margin"].accuracy  # round 0: same labels, same model


def _config(**kw):
    base = dict(
        dataset="blobs",
        strategies=("ralif", "random"),
        seeds=2,
        rounds=3,
        init=20,
        budget=10,
        l2=0.1,
    )
    return BenchConfig(**{**base, **kw})


def test_benchmark_writes_sqlite_and_csv_rows(tmp_path, small):
    store = run_benchmark(_config(), tmp_path, quiet=True, data=small)
    store.close()
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 4
    assert {
        "strategy",
        "seed",
        "round",
        "n_labeled",
        "accuracy",
        "macro_f1",
        "select_seconds",
        "fit_seconds",
    } <= set(rows[0])
    n = (
        sqlite3.connect(tmp_path / "results.sqlite")
        .execute("SELECT COUNT(*) FROM results")
        .fetchone()[0]
    )
    assert n == 16


def test_resume_after_interruption_skips_finished_rounds_and_gives_same_results(tmp_path, small):
    full = tmp_path / "full"
    run_benchmark(_config(), full, quiet=True, data=small).close()
    part = tmp_path / "part"
    run_benchmark(_config(), part, quiet=True, data=small).close()
    # Simulate a kill in the middle: drop the last rounds of one run and of the CSV.
    db = sqlite3.connect(part / "results.sqlite")
    with db:
        db.execute("DELETE FROM results WHERE strategy='ralif' AND seed=1 AND round >= 2")
    db.close()
    with open(part / "results.csv", "a") as fh:
        fh.write("ralif,1,2,4")  # a half-written line
    run_benchmark(_config(), part, quiet=True, data=small).close()
    with ResultStore(full) as a, ResultStore(part) as b:
        ra, rb = a.rows(), b.rows()
    assert len(rb) == len(ra)
    for x, y in zip(ra, rb, strict=True):
        assert (x["strategy"], x["seed"], x["round"], x["accuracy"]) == (
            y["strategy"],
            y["seed"],
            y["round"],
            y["accuracy"],
        )
    with open(part / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(ra)


def test_more_rounds_and_seeds_extend_a_finished_benchmark(tmp_path, small):
    run_benchmark(_config(rounds=2, seeds=1), tmp_path, quiet=True, data=small).close()
    store = run_benchmark(_config(rounds=3, seeds=2), tmp_path, quiet=True, data=small)
    assert len(store.rows()) == 2 * 2 * 4
    store.close()


def test_a_different_benchmark_in_the_same_folder_is_refused(tmp_path, small):
    run_benchmark(_config(), tmp_path, quiet=True, data=small).close()
    with pytest.raises(RalifInputError, match=r"different benchmark.*budget"):
        run_benchmark(_config(budget=5), tmp_path, quiet=True, data=small)


def test_a_corrupt_database_is_refused(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(RalifInputError, match="not a ralif results database"):
        ResultStore(tmp_path)


def test_report_writes_plot_and_tables(tmp_path, small):
    run_benchmark(
        _config(strategies=("ralif", "margin", "random")), tmp_path, quiet=True, data=small
    ).close()
    out = make_report(tmp_path)
    assert out["plot"].stat().st_size > 10_000
    assert out["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = out["report"].read_text()
    for heading in ("Area under the learning curve", "Per round", "Win / tie / loss"):
        assert heading in text
    assert "| margin |" in out["aubc_table"]


def test_report_judges_by_the_metric_asked_for(tmp_path):
    from ralif.bench.report import markdown

    rows = []
    # x equals random in accuracy but is 3-5 points below it in macro-F1 in round 1.
    for s, f1_shift in (("random", [0, 0, 0]), ("x", [-0.03, -0.05, -0.04])):
        for seed in range(3):
            for k in range(2):
                f1 = 0.6 + 0.1 * k + (f1_shift[seed] if k == 1 else 0.0)
                rows.append(dict(strategy=s, seed=seed, round=k, n_labeled=10 * (k + 1),
                                 accuracy=0.6 + 0.1 * k + 0.001 * seed, macro_f1=f1,
                                 select_seconds=0.0, fit_seconds=0.0))  # fmt: skip
    c = load_curves(rows)
    by_accuracy, table = markdown(c, "t")
    by_f1, f1_table = markdown(c, "t", "macro_f1")
    assert "| x | 70.1 ± 0.1 | 66.0 ± 0.8 | 0/1 |" in table
    assert "rounds below random (macro-F1)" in f1_table and "| 1/1 |" in f1_table
    assert "## Per round: mean macro-F1 minus random's" in by_f1
    assert "## Per round: mean accuracy minus random's" in by_accuracy
    with pytest.raises(RalifInputError, match="unknown metric 'f2'"):
        markdown(c, "t", "f2")


def test_report_aubc_and_rounds_significantly_below_random_by_hand():
    # Three seeds; x is 4-6 points below random in round 1 and level in round 2.
    rows = []
    acc = {
        "random": [[0.5, 0.60, 0.70], [0.5, 0.62, 0.71], [0.5, 0.58, 0.69]],
        "x": [[0.5, 0.55, 0.71], [0.5, 0.56, 0.70], [0.5, 0.54, 0.69]],
    }
    for s, per_seed in acc.items():
        for seed, values in enumerate(per_seed):
            for k, a in enumerate(values):
                rows.append(
                    dict(strategy=s, seed=seed, round=k, n_labeled=10 * (k + 1), accuracy=a,
                         macro_f1=a, select_seconds=0.0, fit_seconds=0.0)
                )  # fmt: skip
    c = load_curves(rows)
    from ralif.bench.report import aubc, markdown

    assert aubc(c.accuracy["x"], c.rounds).tolist() == pytest.approx([0.63, 0.63, 0.615])
    md, table = markdown(c, "t")
    assert "| x | 62.5 ± 0.7 | 62.5 ± 0.7 | 1/2 |" in table
    # Round 1: differences -5, -6, -4 points, sd 1: bound -5 + t(0.95, 2) * 1 / sqrt(3).
    bound = -5 + 2.919986 / np.sqrt(3)
    assert f"| x | -5.0 (≤ {bound:+.1f}) ✗ | +0.0 (≤ {2.919986 / np.sqrt(3):+.1f}) ✓ |" in md


def test_win_tie_loss_counts_and_paired_test():
    a = np.array([[0.5, 0.60, 0.70, 0.80], [0.5, 0.61, 0.7004, 0.79]])
    b = np.array([[0.5, 0.55, 0.70, 0.85], [0.5, 0.56, 0.70, 0.80]])
    w, t, lo, p = win_tie_loss(a, b, np.arange(4))
    assert (w, t, lo) == (2, 2, 2)
    assert 0 < p <= 1


def test_long_tailed_profile_is_exponential_with_the_ratio():
    y = np.repeat(np.arange(10), 1000)
    counts = np.sort(np.bincount(y[long_tailed_indices(y, 100.0)]))[::-1]
    assert counts[0] == 1000 and counts[-1] == 10
    np.testing.assert_allclose(counts, 1000 * 100.0 ** (-np.arange(10) / 9), rtol=0.02, atol=1)


def test_npz_dataset_with_and_without_test_split(tmp_path, blobs):
    X, y = blobs
    np.savez(tmp_path / "a.npz", X=X, y=y)
    d = load_dataset(str(tmp_path / "a.npz"))
    assert len(d.y) + len(d.y_test) == len(y) and len(d.y_test) == 150
    assert d.X.shape[1] == X.shape[1]  # features used as they are
    np.savez(tmp_path / "b.npz", X=X[:500], y=y[:500], X_test=X[500:], y_test=y[500:])
    d = load_dataset(str(tmp_path / "b.npz"), dim=3)
    assert d.X.shape == (500, 3) and d.X_test.shape == (100, 3)
    np.savez(tmp_path / "c.npz", X=X, labels=y)
    with pytest.raises(RalifInputError, match="missing y"):
        load_dataset(str(tmp_path / "c.npz"))


def test_bench_and_report_cli_end_to_end(tmp_path, blobs):
    X, y = blobs
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ralif.cli"]
    args = [
        "bench",
        "--dataset",
        str(tmp_path / "d.npz"),
        "--strategies",
        "ralif,random",
        "--seeds",
        "1",
        "--rounds",
        "2",
        "--init",
        "20",
        "--budget",
        "10",
        "--out",
        str(out),
        "--quiet",
    ]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, "report", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "curves.png" in r.stdout and "| ralif |" in r.stdout
    r = subprocess.run(
        [*cmd, "bench", "--dataset", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "unknown dataset" in r.stderr


def _session_like_db(path):
    """A foreign SQLite file (a labeling session's tables) named results.sqlite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE label_events (id INTEGER PRIMARY KEY, item_id INTEGER)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.close()


def _tables(path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def test_bench_refuses_a_foreign_database_and_leaves_it_as_it_was(tmp_path, small):
    _session_like_db(tmp_path / "results.sqlite")
    before = (tmp_path / "results.sqlite").read_bytes()
    with pytest.raises(RalifInputError, match="not a ralif results database"):
        run_benchmark(_config(), tmp_path, quiet=True, data=small)
    assert (tmp_path / "results.sqlite").read_bytes() == before
    assert _tables(tmp_path / "results.sqlite") == {"meta", "label_events"}


def test_report_refuses_a_foreign_database_without_creating_tables(tmp_path):
    _session_like_db(tmp_path / "results.sqlite")
    with pytest.raises(RalifInputError, match="not a ralif results database"):
        make_report(tmp_path)
    assert _tables(tmp_path / "results.sqlite") == {"meta", "label_events"}


def test_the_results_database_carries_ralifs_application_id_and_format(tmp_path, small):
    from ralif.bench.store import APPLICATION_ID

    run_benchmark(_config(seeds=1, rounds=1), tmp_path, quiet=True, data=small).close()
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.close()
    assert meta["format"] == "ralif-bench-results"


def _schema_1_results(tmp_path):
    """A schema-1 database as an earlier ralif wrote it: no application id, fewer columns."""
    db = sqlite3.connect(tmp_path / "results.sqlite")
    cols = "strategy, seed, round, n_labeled, accuracy, macro_f1, select_seconds, fit_seconds"
    with db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(f"CREATE TABLE results ({cols}, l2, picks)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        for s, accs in {"random": [0.5, 0.6], "margin": [0.5, 0.7]}.items():
            for k, a in enumerate(accs):
                db.execute(
                    f"INSERT INTO results ({cols}, l2, picks) VALUES (?,0,?,?,?,?,0,0,0.1,'[]')",
                    (s, k, 10 * (k + 1), a, a),
                )
    db.close()


def test_report_reads_an_older_results_database_without_changing_it(tmp_path):
    _schema_1_results(tmp_path)
    out = make_report(tmp_path)
    assert "| margin | 70.0 ± 0.0 |" in out["aubc_table"]
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert "net_accuracy" not in {r[1] for r in db.execute("PRAGMA table_info(results)")}
    assert dict(db.execute("SELECT key, value FROM meta")) == {"schema_version": "1"}
    db.close()


def _bench_cli(tmp_path, out: str) -> list[str]:
    X, y = gaussian_blobs(n=200)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    return [
        "bench", "--dataset", str(tmp_path / "d.npz"), "--strategies", "random",
        "--seeds", "1", "--rounds", "1", "--init", "20", "--budget", "5", "--quiet", "--out", out,
    ]  # fmt: skip


@pytest.mark.parametrize("case", ["foreign table", "bad config JSON", "out is a file"])
def test_bench_over_a_bad_results_folder_exits_2_with_one_line(tmp_path, capsys, case):
    from ralif.cli import main

    out = tmp_path / "run"
    if case == "foreign table":
        _session_like_db(out / "results.sqlite")
        message = "not a ralif results database"
    elif case == "bad config JSON":
        assert main(_bench_cli(tmp_path, str(out))) == 0
        db = sqlite3.connect(out / "results.sqlite")
        with db:
            db.execute("UPDATE meta SET value = '{not json' WHERE key = 'config'")
        db.close()
        message = "configuration is not a JSON object"
    else:
        out.write_text("a file\n")
        message = "is a file, not a folder"
    capsys.readouterr()
    assert main(_bench_cli(tmp_path, str(out))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ralif: error: ") and message in err[0], err


def test_report_without_matplotlib_exits_2_naming_it(tmp_path, small, capsys, monkeypatch):
    from ralif.cli import main

    run_benchmark(_config(seeds=1, rounds=1), tmp_path, quiet=True, data=small).close()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs matplotlib: pip install matplotlib" in err[0], err


def test_bench_prints_its_aubc_summary_at_the_end(tmp_path, capsys):
    from ralif.cli import main

    assert main(_bench_cli(tmp_path, str(tmp_path / "run"))) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "run" / "results.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["round"]) >= 1]
    by_hand = 100 * np.mean([float(r["accuracy"]) for r in rows])
    assert "AUBC over 1 seeds, rounds 1–1:" in out
    assert f"| random | {by_hand:.1f} ± 0.0 |" in out


def test_class_names_of_the_dataset_show_in_the_summary_and_the_report(tmp_path, capsys):
    from ralif.cli import main

    args = _bench_cli(tmp_path, str(tmp_path / "run"))
    with np.load(tmp_path / "d.npz") as z:
        X, y = z["X"], z["y"]
    np.savez(tmp_path / "d.npz", X=X, y=y, classes=np.array(["ant", "bee", "cat", "dog"]))
    assert main(args) == 0
    assert "Classes: 0 = ant, 1 = bee, 2 = cat, 3 = dog." in capsys.readouterr().out
    assert main(["report", str(tmp_path / "run"), "--quiet"]) == 0
    assert "Classes: 0 = ant, 1 = bee" in (tmp_path / "run" / "report.md").read_text()


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    first = ResultStore(tmp_path, {"dataset": "x"})
    with pytest.raises(RalifInputError, match="another ralif bench is writing into"):
        ResultStore(tmp_path, {"dataset": "x"})
    first.close()
    ResultStore(tmp_path, {"dataset": "x"}).close()  # free again once the first is done


def test_reading_results_is_not_blocked_by_a_run_in_progress(tmp_path, small):
    run_benchmark(_config(seeds=1, rounds=1), tmp_path, quiet=True, data=small).close()
    with ResultStore(tmp_path, _config(seeds=1, rounds=1).identity()):
        assert "| ralif |" in make_report(tmp_path)["aubc_table"]


def test_bench_takes_over_an_older_results_database_of_its_own(tmp_path):
    from ralif.bench.store import APPLICATION_ID

    _schema_1_results(tmp_path)
    with ResultStore(tmp_path) as store:
        assert len(store.rows()) == 4
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert "net_accuracy" in {r[1] for r in db.execute("PRAGMA table_info(results)")}
    db.close()


def test_report_given_a_file_names_it_as_such(tmp_path):
    (tmp_path / "results.csv").write_text("strategy\n")
    with pytest.raises(RalifInputError, match="is a file, not a results folder"):
        make_report(tmp_path / "results.csv")


def test_initial_set_holds_two_classes_and_is_unchanged_when_the_first_draw_does():
    y = np.zeros(400, dtype=int)
    y[:8] = 1  # 2 % in class 1: most draws of 10 items hold class 0 alone
    for seed in range(20):
        plain = initial_labeled_set(400, 10, seed)
        drawn = initial_labeled_set(400, 10, seed, y=y)
        assert len(np.unique(y[drawn])) == 2
        if len(np.unique(y[plain])) == 2:
            assert np.array_equal(plain, drawn)


def test_report_refuses_a_metric_for_a_suite_folder(tmp_path, capsys):
    from ralif.cli import main

    (tmp_path / "wine").mkdir()
    (tmp_path / "wine" / "results.sqlite").write_bytes(b"")
    assert main(["report", str(tmp_path), "--metric", "macro_f1"]) == 2
    assert "a suite judges each set by its own" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["a CSV of someone else's", "no database beside it", "symlink"])
def test_bench_never_replaces_a_results_csv_it_did_not_write(tmp_path, capsys, case):
    from ralif.cli import main

    out = tmp_path / "out"
    out.mkdir()
    theirs = "name,score\nalice,3\n"
    if case == "a CSV of someone else's":
        assert main(_bench_cli(tmp_path, str(out))) == 0
        (out / "results.csv").write_text(theirs)
    elif case == "no database beside it":
        (out / "results.csv").write_text(theirs)
    else:
        (tmp_path / "mine.csv").write_text(theirs)
        (out / "results.csv").symlink_to(tmp_path / "mine.csv")
    capsys.readouterr()
    assert main(_bench_cli(tmp_path, str(out))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.csv" in err[0], err
    assert "did not write it" in err[0] or "not a ralif results CSV" in err[0], err
    assert (out / "results.csv").read_text() == theirs
    if case == "no database beside it":
        assert not (out / "results.sqlite").exists()


def test_bench_resumes_over_its_own_results_csv(tmp_path):
    from ralif.cli import main

    out = tmp_path / "out"
    assert main(_bench_cli(tmp_path, str(out))) == 0
    first = (out / "results.csv").read_text()
    assert main(_bench_cli(tmp_path, str(out))) == 0
    assert (out / "results.csv").read_text() == first


def _shard_bench(tmp_path, dataset: str, test_size: int) -> list[str]:
    return [
        "bench", "--dataset", dataset, "--labels", str(tmp_path / "y.npy"),
        "--test-size", str(test_size), "--strategies", "random", "--seeds", "1", "--rounds", "1",
        "--init", "20", "--budget", "5", "--quiet", "--out", str(tmp_path / "out"),
    ]  # fmt: skip


def test_a_pool_benchmark_names_a_changed_setting_and_resumes_under_another_spelling(
    tmp_path, capsys
):
    from ralif.cli import main

    X, y = gaussian_blobs(n=200)
    (tmp_path / "sh").mkdir()
    np.save(tmp_path / "sh" / "part-0.npy", X[:100])
    np.save(tmp_path / "sh" / "part-1.npy", X[100:])
    np.save(tmp_path / "y.npy", y)
    folder, pattern = str(tmp_path / "sh"), str(tmp_path / "sh" / "*.npy")
    assert main(_shard_bench(tmp_path, folder, 40)) == 0
    capsys.readouterr()
    assert main(_shard_bench(tmp_path, folder, 50)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs in test_size (40 then, 50 now)" in err[0], err
    assert main(_shard_bench(tmp_path, pattern, 40)) == 0  # the same shards, as a glob
    assert capsys.readouterr().err == ""


def test_bench_and_report_name_strategies_with_other_seed_counts(tmp_path, capsys):
    from ralif.cli import main

    X, y = gaussian_blobs(n=200)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = str(tmp_path / "out")

    def bench(strategies: str, seeds: int) -> list[str]:
        return [
            "bench", "--dataset", str(tmp_path / "d.npz"), "--strategies", strategies,
            "--seeds", str(seeds), "--rounds", "1", "--init", "20", "--budget", "5",
            "--quiet", "--out", out,
        ]  # fmt: skip

    assert main(bench("random,margin", 2)) == 0
    capsys.readouterr()
    assert main(bench("random", 4)) == 0
    printed = capsys.readouterr().out
    assert "different numbers of seeds (margin 2, random 4)" in printed
    assert "AUBC over 2 seeds" in printed
    assert main(["report", out]) == 0
    err = capsys.readouterr().err
    assert err.count("ralif: note: strategies have different numbers of seeds") == 1
    assert (
        "**Note:** strategies have different numbers of seeds"
        in (tmp_path / "out" / "report.md").read_text()
    )


def test_bench_records_the_stopping_signals_and_reports_the_rules(tmp_path, capsys):
    from ralif.bench.store import open_results
    from ralif.cli import main

    X, y = gaussian_blobs(n=400, C=3, sep=3.0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "out"
    argv = [
        "bench", "--dataset", str(tmp_path / "d.npz"), "--strategies", "ralif,random",
        "--seeds", "2", "--rounds", "6", "--init", "20", "--budget", "10", "--quiet",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Stopping rules" in printed and "| strategy | stabilizing_predictions |" in printed
    with open_results(out) as store:
        rows = store.rows()
    for r in rows:
        assert (r["agreement"] is None) == (r["round"] == 0)
        assert 0 <= r["max_uncertainty"] <= 1 and 0 <= r["mean_uncertainty"] <= r["max_uncertainty"]
        has_change = r["strategy"] == "ralif" and r["round"] > 0
        assert (r["expected_change"] is not None) == has_change
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Stopping rules, against hindsight" in text


def test_a_named_configuration_is_stored_under_its_name(tmp_path, small):
    spec = 'tenth=ralif:{"n_candidates": 0.1}'
    run_benchmark(_config(strategies=(spec, "random")), tmp_path, quiet=True, data=small).close()
    with open(tmp_path / "results.csv") as fh:
        names = {r["strategy"] for r in csv.DictReader(fh)}
    assert names == {"tenth", "random"}
    # Its picks are those of the same parameters under that name: the name seeds the draws.
    initial = initial_labeled_set(len(small.y), 20, seed=0)
    loop = list(run_rounds(small.X, small.y, small.X_test, small.y_test, spec, initial, 10, 3,
                           seed=0, l2=0.1))  # fmt: skip
    store = ResultStore(tmp_path)
    try:
        stored = store.done_picks("tenth", 0)
    finally:
        store.close()
    assert [p.tolist() for p in stored[1:]] == [r.picks.tolist() for r in loop[1:]]
    with pytest.raises(RalifInputError, match="two strategies are named random"):
        run_benchmark(_config(strategies=("random", 'random=ralif:{"tau": 2}')), tmp_path / "b")
