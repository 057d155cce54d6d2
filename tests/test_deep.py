"""The deep scenario: encoder retrained each round, checkpoints, resume, CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import require

torch = require("torch")

from ralif.bench.store import COLUMNS  # noqa: E402
from ralif.deep import DeepScenario, run_deep_rounds  # noqa: E402
from ralif.loop import initial_labeled_set  # noqa: E402
from ralif.models import TrainConfig  # noqa: E402
from tests.test_models import squares  # noqa: E402

torch.set_num_threads(1)


def _scenario(tmp_path, epochs=1):
    return DeepScenario(
        encoder="cnn",
        train=TrainConfig(epochs=epochs, min_steps=8, batch_size=16, device="cpu"),
        mc_samples=3,
        checkpoint_dir=tmp_path / "ckpt",
    )


@pytest.fixture(scope="module")
def images():
    X, y = squares(160, seed=0)
    Xt, yt = squares(60, seed=1)
    return X, y, Xt, yt


@pytest.mark.parametrize("strategy", ["ralif", "bald_mc", "entropy_mc", "badge"])
def test_rounds_train_a_network_and_report_both_accuracies(tmp_path, images, strategy):
    X, y, Xt, yt = images
    init = initial_labeled_set(len(y), 10, seed=0)
    results = list(
        run_deep_rounds(X, y, Xt, yt, strategy, init, 8, 2, scenario=_scenario(tmp_path), l2=0.1)
    )
    assert [r.n_labeled for r in results] == [10, 18, 26]
    seen = np.concatenate([init] + [r.picks for r in results[1:]])
    assert len(np.unique(seen)) == len(seen)
    for r in results:
        assert 0 <= r.net_accuracy <= 1 and 0 <= r.accuracy <= 1
        assert r.train_seconds >= 0 and r.extract_seconds > 0
    assert (tmp_path / "ckpt" / f"{strategy}-seed0.pt").is_file()


def test_resume_loads_the_checkpoint_instead_of_retraining(tmp_path, images, monkeypatch):
    X, y, Xt, yt = images
    init = initial_labeled_set(len(y), 10, seed=0)
    scenario = _scenario(tmp_path)
    full = list(run_deep_rounds(X, y, Xt, yt, "ralif", init, 8, 2, scenario=scenario, l2=0.1))
    # Pretend the run was killed after round 1 (its checkpoint is the latest kept):
    # rerun round 1 to leave its checkpoint, then resume from it.
    list(
        run_deep_rounds(
            X,
            y,
            Xt,
            yt,
            "ralif",
            init,
            8,
            1,
            scenario=scenario,
            l2=0.1,
            done=[r.picks for r in full[:1]],
        )
    )
    calls = []
    import ralif.deep as deep

    real = deep.train_classifier
    monkeypatch.setattr(deep, "train_classifier", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = list(
        run_deep_rounds(
            X,
            y,
            Xt,
            yt,
            "ralif",
            init,
            8,
            2,
            scenario=scenario,
            l2=0.1,
            done=[r.picks for r in full[:2]],
        )
    )
    assert [r.round for r in resumed] == [2]
    assert len(calls) == 1  # round 2 only: round 1's network came from its checkpoint
    assert resumed[0].picks.tolist() == full[2].picks.tolist()
    assert resumed[0].accuracy == pytest.approx(full[2].accuracy)


def test_scratch_bench_cli_end_to_end(tmp_path):
    X, y = squares(120, seed=2, size=12)
    np.savez(tmp_path / "imgs.npz", X=(X * 60 + 100).clip(0, 255).astype(np.uint8), y=y)
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "ralif.cli", "bench", "--scenario", "scratch-cnn",
        "--dataset", str(tmp_path / "imgs.npz"), "--strategies", "ralif,bald_mc", "--seeds", "1",
        "--rounds", "1", "--init", "10", "--budget", "5", "--epochs", "1", "--device", "cpu",
        "--out", str(out), "--quiet",
    ]  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    text = (out / "results.csv").read_text().splitlines()
    assert text[0].split(",") == list(COLUMNS)
    assert len(text) == 1 + 2 * 2
    r = subprocess.run(
        [*args[:-1], "--scenario", "fixed"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 2 and "need a network" in r.stderr


@pytest.mark.slow  # two processes; CI runs the slow tests as their own step
def test_torchrun_with_two_cpu_processes_writes_each_round_once(tmp_path):
    X, y = squares(80, seed=3, size=12)
    np.savez(tmp_path / "imgs.npz", X=(X * 60 + 100).clip(0, 255).astype(np.uint8), y=y)
    out = tmp_path / "ddp"
    # torchrun's own store binds a port the system gives it (--standalone); the processes
    # meet through a file: no port is chosen here for something else to take first.
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    args = [
        "-m", "ralif.cli", "bench", "--scenario", "scratch-cnn", "--dataset", str(tmp_path / "imgs.npz"),
        "--strategies", "ralif", "--seeds", "1", "--rounds", "1", "--init", "10", "--budget", "5",
        "--epochs", "1", "--device", "cpu", "--out", str(out), "--quiet",
    ]  # fmt: skip
    env = {
        **__import__("os").environ,
        "OMP_NUM_THREADS": "1",
        "RALIF_DIST_INIT": f"file://{tmp_path / 'rendezvous'}",
    }
    r = subprocess.run([*torchrun, *args], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # rounds 0 and 1, written once although two processes ran them
