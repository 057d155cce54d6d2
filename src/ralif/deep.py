"""The deep scenario: an encoder trained from scratch on the labeled items every round.

Round ``r``: (for ``r >= 1``) select with the features and network of round ``r - 1``;
label the picks; train a new encoder on the labeled images; extract features of every
item; refit the linear head on the labeled features to its optimum (the head RALIF's
influence is computed on); evaluate both the network and the head on the test set. The
trained network of each round is checkpointed, so a killed run resumes without
retraining finished rounds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ralif.head import LinearHead
from ralif.loop import RoundResult, evaluate, round_seed, strategy_for_round
from ralif.models import (
    TrainConfig,
    extract_features,
    make_encoder,
    mc_dropout_proba,
    predict_proba,
    train_classifier,
)
from ralif.models.devices import resolve_device

NETWORK_STRATEGIES = ("bald_mc", "entropy_mc")


@dataclass
class DeepScenario:
    """The network side of a deep benchmark.

    Attributes
    ----------
    encoder : str
        ``"cnn"`` or ``"resnet18"``.
    train : TrainConfig
        Training settings (the seed is replaced per round).
    mc_samples : int
        Dropout masks for ``bald_mc`` and ``entropy_mc``.
    dropout : float
        Dropout before the network's classifier.
    checkpoint_dir : Path, optional
        Where each run keeps its latest trained network.
    """

    encoder: str = "cnn"
    train: TrainConfig = field(default_factory=TrainConfig)
    mc_samples: int = 10
    dropout: float = 0.25
    checkpoint_dir: Path | None = None


def _checkpoint_path(scenario: DeepScenario, strategy: str, seed: int) -> Path | None:
    if scenario.checkpoint_dir is None:
        return None
    return Path(scenario.checkpoint_dir) / f"{strategy}-seed{seed}.pt"


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _labeled_key(labeled: np.ndarray) -> str:
    """Identifies the labeled set a network was trained on."""
    return hashlib.sha1(np.flatnonzero(labeled).astype(np.int64).tobytes()).hexdigest()


def _save(path: Path | None, round_: int, model: torch.nn.Module, key: str = "") -> None:
    """Rank 0 writes the checkpoint; every process waits until it is there."""
    if path is None:
        return
    if _distributed() and torch.distributed.get_rank() != 0:
        torch.distributed.barrier()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"round": round_, "key": key, "state": model.state_dict()}, tmp)
    tmp.replace(path)
    if _distributed():
        torch.distributed.barrier()


def _load(path: Path | None, round_: int, model: torch.nn.Module, key: str = "") -> bool:
    """Load round ``round_``'s network if checkpointed; all processes follow rank 0."""
    found = _try_load(path, round_, model, key)
    if _distributed():
        # One process loading while another trains would deadlock data-parallel training.
        box = [found]
        torch.distributed.broadcast_object_list(box, src=0)
        if box[0] != found:
            raise RuntimeError(f"processes disagree about checkpoint {path}")
    return found


def _try_load(path: Path | None, round_: int, model: torch.nn.Module, key: str) -> bool:
    if path is None or not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a checkpoint cut short by a kill: retrain instead
        return False
    # A checkpoint of another run (other labels) in the same place must not be reused.
    if ckpt.get("round") != round_ or ckpt.get("key", "") != key:
        return False
    model.load_state_dict(ckpt["state"])
    return True


def run_deep_rounds(
    images: np.ndarray,
    y_true: np.ndarray,
    test_images: np.ndarray,
    y_test: np.ndarray,
    strategy: str,
    initial: np.ndarray,
    budget: int,
    n_rounds: int,
    *,
    scenario: DeepScenario,
    seed: int = 0,
    l2: float | str = "auto",
    done: Sequence[np.ndarray] = (),
    on_epoch: Callable[[int, float], None] | None = None,
    on_extract: Callable[[int], None] | None = None,
) -> Iterator[RoundResult]:
    """Simulate labeling rounds with an encoder retrained from scratch each round.

    Parameters are those of :func:`ralif.loop.run_rounds`, with images (n, channels,
    height, width) instead of features, and the network settings in ``scenario``.

    Yields
    ------
    RoundResult
        With ``net_accuracy``, ``train_seconds`` and ``extract_seconds`` filled in.
    """
    n_classes = int(max(y_true.max(), y_test.max()) + 1)
    device = resolve_device(scenario.train.device)
    labeled = np.zeros(len(y_true), dtype=bool)
    labeled[initial] = True
    for picks in done[1:]:
        labeled[picks] = True
    ckpt = _checkpoint_path(scenario, strategy, seed)
    net = feats = None
    model_l2 = l2

    def fit_round(r: int):
        torch.manual_seed(round_seed(seed, r, "encoder"))
        model = make_encoder(scenario.encoder, images.shape[1], n_classes, dropout=scenario.dropout)
        t = time.perf_counter()
        if not _load(ckpt, r, model):
            config = TrainConfig(
                **{**scenario.train.__dict__, "seed": round_seed(seed, r, "encoder")}
            )
            train_classifier(model, images[labeled], y_true[labeled], config, progress=on_epoch)
            _save(ckpt, r, model)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        phi = extract_features(model, images, device=device, progress=on_extract)
        phi_test = extract_features(model, test_images, device=device, progress=on_extract)
        return model, phi, phi_test, train_s, time.perf_counter() - t

    start = len(done)
    if start > 0:
        net, feats, _, _, _ = fit_round(start - 1)
        model_l2 = LinearHead(l2=l2).fit(feats[labeled], y_true[labeled]).l2_
    for r in range(start, n_rounds + 1):
        select_s = 0.0
        picks = np.empty(0, dtype=np.intp)
        if r > 0:
            y = np.where(labeled, y_true, -1)
            t = time.perf_counter()
            strat = _make(strategy, seed, r, model_l2, net, images, scenario, device)
            picks = strat.select(feats, y, budget)
            select_s = time.perf_counter() - t
            labeled[picks] = True
        net, feats, feats_test, train_s, extract_s = fit_round(r)
        t = time.perf_counter()
        head = LinearHead(l2=l2).fit(feats[labeled], y_true[labeled])
        head_s = time.perf_counter() - t
        model_l2 = head.l2_
        acc, f1 = evaluate(head, feats_test, y_test)
        net_acc = float(
            (predict_proba(net, test_images, device=device).argmax(axis=1) == y_test).mean()
        )
        yield RoundResult(
            r,
            int(labeled.sum()),
            acc,
            f1,
            select_s,
            train_s + extract_s + head_s,
            picks,
            model_l2,
            net_accuracy=net_acc,
            train_seconds=train_s,
            extract_seconds=extract_s,
        )


def _make(strategy, seed, r, l2, net, images, scenario, device):
    rs = round_seed(seed, r, strategy)
    params: dict[str, object] = {}
    if strategy in NETWORK_STRATEGIES:

        def sampler(idx: np.ndarray) -> np.ndarray:
            return mc_dropout_proba(net, images[idx], scenario.mc_samples, device=device, seed=rs)

        params["sampler"] = sampler
    elif strategy == "badge":
        params["network_proba"] = lambda idx: predict_proba(net, images[idx], device=device)
    return strategy_for_round(strategy, seed, r, l2, params)
