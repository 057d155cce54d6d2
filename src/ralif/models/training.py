"""Training an encoder on the labeled items, and reading features and probabilities out.

Training is SGD with momentum, a cosine learning-rate schedule, weight decay and
random-crop/flip augmentation; mixed precision on CUDA. Under ``torchrun`` (or any
initialised ``torch.distributed`` process group) the same function trains with
DistributedDataParallel: every process takes its share of each global batch, so the
gradients, averaged, are those of the global batch (batch-norm statistics and dropout
masks are per process, so networks using them agree with one process only statistically).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ralif._validation import RalifInputError
from ralif.models.devices import resolve_device


@dataclass
class TrainConfig:
    """How to train an encoder on the labeled items.

    Attributes
    ----------
    epochs : int
        Passes over the labeled set.
    min_steps : int
        At least this many SGD steps: with few labels an epoch is one or two steps,
        so more epochs are run until this many.
    batch_size : int
        Global batch size (split across processes under DDP).
    lr : float
        Peak learning rate (cosine-annealed to 0).
    momentum, weight_decay : float
        SGD settings.
    crop_padding : int
        Random-crop augmentation: pad by this many pixels, crop back (0: off).
    flip : bool
        Random horizontal flips.
    amp : bool
        Mixed precision (bfloat16 autocast) where the device is CUDA.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed : int
        Seed of initialisation, shuffling and augmentation.
    """

    epochs: int = 15
    min_steps: int = 300
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 2
    flip: bool = True
    amp: bool = True
    device: str = "auto"
    seed: int = 0


def _to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    # A copy: loaded datasets are often read-only buffers, which torch must not alias.
    x = images.clone() if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return x.float()


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crops (zero padding) and horizontal flips of a batch, all at once."""
    B, C, H, W = x.shape
    if padding:
        padded = nn.functional.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        rows = (dy[:, None] + torch.arange(H)[None, :]).to(x.device)
        cols = (dx[:, None] + torch.arange(W)[None, :]).to(x.device)
        b = torch.arange(B, device=x.device)[:, None, None, None]
        c = torch.arange(C, device=x.device)[None, :, None, None]
        x = padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = (torch.rand(B, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_classifier(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` (logits out) on labeled images; returns it in eval mode.

    Parameters
    ----------
    model : nn.Module
        A classifier, e.g. :class:`ralif.models.SmallCNN`.
    images : array of shape (n, channels, height, width)
        uint8 (scaled to [0, 1]) or float.
    labels : array of shape (n,)
        Class indices in ``[0, n_outputs)``.
    config : TrainConfig, optional
    progress : callable, optional
        Called with (epoch, mean loss) after every epoch.

    Returns
    -------
    model : nn.Module
    """
    config = config or TrainConfig()
    device = resolve_device(config.device)
    x_all = _to_tensor(images)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if x_all.dim() != 4:
        raise RalifInputError(
            f"images must be 4-D (n, channels, height, width), got shape {tuple(x_all.shape)}"
        )
    if len(x_all) != len(y_all) or len(y_all) == 0:
        raise RalifInputError(f"{len(x_all)} images but {len(y_all)} labels")
    rank, world = _world()
    torch.manual_seed(config.seed)
    model = model.to(device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.SGD(
        net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    n = len(y_all)
    per_step = max(world, config.batch_size - config.batch_size % world)
    steps = max(1, int(np.ceil(n / per_step)))
    epochs = max(config.epochs, int(np.ceil(config.min_steps / steps)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    gen = torch.Generator().manual_seed(config.seed)
    step = _Step(net, opt, sched, config.amp and device.type == "cuda")
    for epoch in range(epochs):
        net.train()
        # Every process draws the same permutation and augmentation, then keeps its share
        # of each global batch: the averaged gradients equal those of one process.
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for s in range(steps):
            idx = order[s * per_step : (s + 1) * per_step]
            if len(idx) < world:
                continue
            idx = idx[: len(idx) - len(idx) % world]
            xb = augment(x_all[idx], config.crop_padding, config.flip, gen)
            yb = y_all[idx][rank::world].to(device)
            total += step(xb[rank::world].to(device, non_blocking=True), yb) * len(yb)
            count += len(yb)
        if progress is not None:
            progress(epoch, total / max(1, count))
    return model.eval()


class _Step:
    """One optimizer step on a batch: the loss (under bfloat16 autocast where ``amp``),
    its gradients, the optimizer and the schedule; returns the batch's loss."""

    def __init__(
        self,
        net: nn.Module,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler,
        amp: bool,
    ) -> None:
        self.net, self.opt, self.sched, self.amp = net, opt, sched, amp
        self.loss_fn = nn.CrossEntropyLoss()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with ctx:
            loss = self.loss_fn(self.net(xb), yb)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return float(loss.detach())


@torch.no_grad()
def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images,
    batch_size: int,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    outs = []
    for start in range(0, len(images), batch_size):
        xb = _to_tensor(images[start : start + batch_size]).to(device, non_blocking=True)
        outs.append(fn(xb).float().cpu())
        if progress is not None:
            progress(len(xb))
    return torch.cat(outs).numpy()


def extract_features(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Features of every image, in eval mode (deterministic), as float32.

    Parameters
    ----------
    model : nn.Module
        Its ``features`` method is used, or ``features`` when given: any callable
        from a batch of images to a batch of feature vectors (for networks whose
        penultimate output is not called ``features``).
    images : array of shape (N, channels, height, width)
    batch_size : int
    device : str or torch.device
    progress : callable, optional
        Called with the number of images done after every batch.

    Returns
    -------
    ndarray of shape (N, feature_dim)
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    fn = features or getattr(model, "features", None)
    if fn is None:
        raise RalifInputError(
            f"{type(model).__name__} has no features() method; pass features=callable(images) -> vectors"
        )
    return _batched(fn, images, batch_size, device, progress).astype(np.float32)


def predict_proba(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Softmax of the network's logits, in eval mode."""
    device = resolve_device(device)
    model = model.to(device).eval()
    return _batched(lambda x: torch.softmax(model(x), dim=1), images, batch_size, device)


def mc_dropout_proba(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    n_samples: int = 10,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> np.ndarray:
    """Probabilities under ``n_samples`` dropout masks (Gal et al., 2017): (T, N, C).

    Only dropout layers are put in training mode; batch-norm statistics stay fixed.
    For ralif's encoders, whose only dropout sits between ``features`` and ``fc``,
    the features are computed once and only the last layer is sampled.
    """
    device = resolve_device(device)
    model = model.to(device).eval()
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    if not drops:
        raise RalifInputError(f"{type(model).__name__} has no dropout layer to sample with")
    torch.manual_seed(seed)
    if (
        drops == [getattr(model, "dropout", None)]
        and hasattr(model, "features")
        and hasattr(model, "fc")
    ):
        phi = torch.from_numpy(extract_features(model, images, batch_size, device)).to(device)
        drop = drops[0]  # model.dropout
        fc = cast(nn.Module, model.fc)  # torch types a submodule attribute as Tensor | Module
        with torch.no_grad():
            drop.train()
            try:
                return np.stack(
                    [
                        torch.softmax(fc(drop(phi)), dim=1).float().cpu().numpy()
                        for _ in range(n_samples)
                    ]
                )
            finally:
                drop.eval()
    try:
        for m in drops:
            m.train()
        return np.stack(
            [
                _batched(lambda x: torch.softmax(model(x), dim=1), images, batch_size, device)
                for _ in range(n_samples)
            ]
        )
    finally:
        for m in drops:
            m.eval()
