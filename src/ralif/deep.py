"""The deep scenario: an encoder trained from scratch on the labeled items every round.

Round ``r``: (for ``r >= 1``) select with the features and network of round ``r - 1``;
label the picks; train a new encoder on the labeled images; extract features of every
item; refit the linear head on the labeled features to its optimum (the head RALIF's
influence is computed on); evaluate both the network and the head on the test set. The
rounds are those of :func:`ralif.loop.run_rounds`; this module supplies the features
(:class:`EncoderPerRound`). The trained network of each round is checkpointed, so a
killed run resumes without retraining finished rounds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ralif.loop import RoundFeatures, RoundResult, round_seed, run_rounds, strategy_label
from ralif.models import (
    TrainConfig,
    extract_features,
    make_encoder,
    mc_dropout_proba,
    predict_proba,
    train_classifier,
)
from ralif.models.devices import resolve_device
from ralif.strategies.base import Strategy


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
    # A module:Class name holds characters some file systems refuse.
    safe = re.sub(r"[^\w.-]", "_", strategy)
    return Path(scenario.checkpoint_dir) / f"{safe}-seed{seed}.pt"


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


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


@dataclass
class TrainedNetwork:
    """One round's network, seen through the items it scores (indices into ``images``)."""

    net: torch.nn.Module
    images: np.ndarray
    device: torch.device
    mc_samples: int

    def proba(self, indices: np.ndarray) -> np.ndarray:
        """``(n, C)`` softmax probabilities."""
        return predict_proba(self.net, self.images[indices], device=self.device)

    def mc_proba(self, indices: np.ndarray, seed: int) -> np.ndarray:
        """``(T, n, C)`` probabilities under ``mc_samples`` dropout masks."""
        return mc_dropout_proba(
            self.net, self.images[indices], self.mc_samples, device=self.device, seed=seed
        )


class EncoderPerRound:
    """Features of an encoder trained from scratch on the labeled images of each round.

    Parameters
    ----------
    images, test_images : ndarray of shape (n, channels, height, width)
    y_true, y_test : ndarray
        Labels (the labeled ones train the encoder; the test ones score the network).
    scenario : DeepScenario
    seed : int
        Seeds each round's initialization and training.
    checkpoint : Path or None
        Where the latest trained network is kept.
    on_epoch, on_extract : callable, optional
        Progress of training and of feature extraction.
    """

    provides_network = True

    def __init__(
        self,
        images: np.ndarray,
        y_true: np.ndarray,
        test_images: np.ndarray,
        y_test: np.ndarray,
        scenario: DeepScenario,
        seed: int,
        checkpoint: Path | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        on_extract: Callable[[int], None] | None = None,
    ) -> None:
        self.images, self.y_true = images, y_true
        self.test_images, self.y_test = test_images, y_test
        self.scenario, self.seed, self.checkpoint = scenario, seed, checkpoint
        self.on_epoch, self.on_extract = on_epoch, on_extract
        self.n_classes = int(max(y_true.max(), y_test.max()) + 1)
        self.device = resolve_device(scenario.train.device)

    def features(self, round_: int, labeled: np.ndarray) -> RoundFeatures:
        sc = self.scenario
        encoder_seed = round_seed(self.seed, round_, "encoder")
        torch.manual_seed(encoder_seed)
        net = make_encoder(sc.encoder, self.images.shape[1], self.n_classes, dropout=sc.dropout)
        t = time.perf_counter()
        if not _load(self.checkpoint, round_, net):
            config = TrainConfig(**{**sc.train.__dict__, "seed": encoder_seed})
            train_classifier(
                net, self.images[labeled], self.y_true[labeled], config, progress=self.on_epoch
            )
            _save(self.checkpoint, round_, net)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        phi = extract_features(net, self.images, device=self.device, progress=self.on_extract)
        phi_test = extract_features(
            net, self.test_images, device=self.device, progress=self.on_extract
        )
        extract_s = time.perf_counter() - t
        proba = predict_proba(net, self.test_images, device=self.device)
        return RoundFeatures(
            phi,
            phi_test,
            network=TrainedNetwork(net, self.images, self.device, sc.mc_samples),
            net_accuracy=float((proba.argmax(axis=1) == self.y_test).mean()),
            train_seconds=train_s,
            extract_seconds=extract_s,
        )


def run_deep_rounds(
    images: np.ndarray,
    y_true: np.ndarray,
    test_images: np.ndarray,
    y_test: np.ndarray,
    strategy: str | Strategy,
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
    metrics: Sequence[str] = (),
) -> Iterator[RoundResult]:
    """Simulate labeling rounds with an encoder retrained from scratch each round.

    Parameters are those of :func:`ralif.loop.run_rounds`, with images (n, channels,
    height, width) instead of features, and the network settings in ``scenario``.

    Yields
    ------
    RoundResult
        With ``net_accuracy``, ``train_seconds`` and ``extract_seconds`` filled in.
    """
    encoder = EncoderPerRound(
        images,
        y_true,
        test_images,
        y_test,
        scenario,
        seed,
        _checkpoint_path(scenario, strategy_label(strategy), seed),
        on_epoch,
        on_extract,
    )
    yield from run_rounds(
        images,
        y_true,
        test_images,
        y_test,
        strategy,
        initial,
        budget,
        n_rounds,
        seed=seed,
        l2=l2,
        done=done,
        scenario=encoder,
        metrics=metrics,
    )
