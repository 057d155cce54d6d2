"""``ralif bench``: run strategies over seeds and rounds, storing every round at once."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError
from ralif.bench.store import ResultStore
from ralif.data import Dataset, load_dataset
from ralif.loop import initial_labeled_set, run_rounds
from ralif.strategies import strategy_class

SCENARIOS = ("fixed", "scratch-cnn", "scratch-resnet18", "embeddings")


@dataclass
class BenchConfig:
    """One benchmark: the data and sizes that define it, and what to run on it.

    ``strategies`` holds names of ``ralif.STRATEGIES`` or ``"module:Class"`` for a
    strategy written elsewhere (a subclass of :class:`ralif.Strategy`, built with its
    defaults). ``strategies``, ``seeds`` and ``rounds`` may grow between runs into the
    same folder; the other fields define the benchmark and may not change.
    """

    dataset: str = "fashion-mnist"
    strategies: tuple[str, ...] = ("ralif", "random", "margin", "entropy", "coreset", "badge")
    seeds: int = 3
    rounds: int = 10
    init: int = 100
    budget: int = 100
    imbalance: float | None = None
    dim: int | None = None
    l2: float | str = "auto"
    scenario: str = "fixed"
    encoder_epochs: int = 15
    pool_size: int | None = None
    test_size: int | None = None
    mc_samples: int = 10
    device: str = "auto"

    def identity(self) -> dict:
        """The fields that define the benchmark (stored with its results)."""
        d = asdict(self)
        for k in ("strategies", "seeds", "rounds", "device"):
            d.pop(k)
        if self.scenario in ("fixed", "embeddings"):
            for k in ("encoder_epochs", "mc_samples"):
                d.pop(k)
        return d

    def check(self) -> None:
        """Refuse a configuration that cannot run, before any data is loaded."""
        classes = {s: strategy_class(s)[0] for s in self.strategies}
        if not self.strategies:
            raise RalifInputError("no strategies given")
        for name in ("seeds", "rounds", "init", "budget"):
            if getattr(self, name) < 1:
                raise RalifInputError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.scenario not in SCENARIOS:
            raise RalifInputError(
                f"--scenario must be one of {', '.join(SCENARIOS)}; got {self.scenario!r}"
            )
        network_only = [s for s, cls in classes.items() if cls.needs_network]
        if network_only and not self.scenario.startswith("scratch"):
            raise RalifInputError(
                f"{', '.join(network_only)} need a network: use --scenario scratch-cnn or scratch-resnet18"
            )


def _progress(total: int, initial: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=quiet,
        unit="round",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def run_benchmark(
    config: BenchConfig, out: str | os.PathLike, quiet: bool = False, data: Dataset | None = None
) -> ResultStore:
    """Run (or resume) a benchmark into the folder ``out``.

    Parameters
    ----------
    config : BenchConfig
    out : path-like
        Results folder; rows already there are skipped.
    quiet : bool
        No progress bar.
    data : Dataset, optional
        Already loaded data (else loaded from ``config``).

    Returns
    -------
    ResultStore
    """
    config.check()
    deep = config.scenario.startswith("scratch")
    rank = _init_distributed(config.device) if deep else 0
    # Under torchrun every process runs the same rounds (training is data-parallel);
    # only rank 0 reads and writes the store, and tells the others what is done.
    store = ResultStore(out, config.identity()) if rank == 0 else None
    if deep:
        data = data or load_image_data(config)
    else:
        data = _subsample(
            data or load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance), config
        )
    if config.init + config.rounds * config.budget > len(data.y):
        raise RalifInputError(
            f"init {config.init} + {config.rounds} rounds x budget {config.budget} exceeds the pool ({len(data.y)} items)"
        )
    runs = [(seed, s) for seed in range(config.seeds) for s in config.strategies]
    done = {(seed, s): store.done_picks(s, seed) for seed, s in runs} if store is not None else None
    done = _broadcast(done)
    total = len(runs) * (config.rounds + 1)
    finished = sum(min(len(v), config.rounds + 1) for v in done.values())
    with _progress(total, finished, quiet or rank != 0) as bar:
        for seed, name in runs:
            prior = done[(seed, name)]
            if len(prior) > config.rounds:
                continue
            initial = initial_labeled_set(len(data.y), config.init, seed, y=data.y)
            bar.set_description(f"{name} seed {seed}")
            args = (
                data.X,
                data.y,
                data.X_test,
                data.y_test,
                name,
                initial,
                config.budget,
                config.rounds,
            )
            kwargs = {"seed": seed, "l2": config.l2, "done": prior}
            if deep:
                rounds = _deep_rounds(config, args, kwargs, Path(out), quiet)
            else:
                rounds = run_rounds(*args, **kwargs)
            for result in rounds:
                if store is not None:
                    store.add(name, seed, result)
                bar.set_postfix(round=result.round, acc=f"{result.accuracy:.3f}")
                bar.update(1)
    return store


DIST_INIT_ENV = "RALIF_DIST_INIT"
"""Where torchrun's processes meet, e.g. ``file:///shared/ralif-rendezvous`` (default: the
address and port torchrun sets)."""


def _init_distributed(device: str = "auto") -> int:
    """Join the process group when launched by torchrun; returns this process's rank.

    The processes use the GPUs (NCCL, one GPU per local rank) unless ``device`` is
    ``"cpu"`` or no GPU is present (gloo); asking for more GPUs than the machine has is
    an error naming both counts.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if local_rank >= torch.cuda.device_count():
                raise RalifInputError(
                    f"torchrun started local rank {local_rank} but this machine has "
                    f"{torch.cuda.device_count()} GPU(s); start at most that many processes "
                    "per node, or pass --device cpu"
                )
            torch.cuda.set_device(local_rank)
        backend = "nccl" if use_cuda else "gloo"
        init = os.environ.get(DIST_INIT_ENV)
        if init:
            # A file cannot be taken by another program between choosing and binding it,
            # as a free TCP port can.
            dist.init_process_group(
                backend,
                init_method=init,
                rank=int(os.environ["RANK"]),
                world_size=int(os.environ["WORLD_SIZE"]),
            )
        else:
            dist.init_process_group(backend)
    return dist.get_rank()


def _broadcast(obj: object) -> object:
    """Rank 0's ``obj`` on every process (itself when not distributed)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _subsample(data: Dataset, config: BenchConfig) -> Dataset:
    """Keep a fixed random ``pool_size`` of the pool and ``test_size`` of the test set."""
    rng = np.random.default_rng(0)
    X, y, Xt, yt = data.X, data.y, data.X_test, data.y_test
    if config.pool_size and config.pool_size < len(y):
        keep = np.sort(rng.choice(len(y), config.pool_size, replace=False))
        X, y = X[keep], y[keep]
    if config.test_size and config.test_size < len(yt):
        keep = np.sort(rng.choice(len(yt), config.test_size, replace=False))
        Xt, yt = Xt[keep], yt[keep]
    return Dataset(data.name, X, y, Xt, yt)


def load_image_data(config: BenchConfig) -> Dataset:
    """Images for the deep scenarios, long-tailed and subsampled as configured."""
    from ralif.data import load_images
    from ralif.data.transforms import long_tailed_indices

    X, y, Xt, yt = load_images(config.dataset)
    if config.imbalance and config.imbalance > 1:
        keep = long_tailed_indices(y, config.imbalance)
        X, y = X[keep], y[keep]
    return _subsample(Dataset(config.dataset, X, y, Xt, yt), config)


def _deep_rounds(config: BenchConfig, args: tuple, kwargs: dict, out: Path, quiet: bool):
    """The rounds of one (strategy, seed) run in a scratch-* scenario, with progress bars."""
    from tqdm.auto import tqdm

    from ralif.deep import DeepScenario, run_deep_rounds
    from ralif.models import TrainConfig

    scenario = DeepScenario(
        encoder=config.scenario.removeprefix("scratch-"),
        train=TrainConfig(epochs=config.encoder_epochs, device=config.device),
        mc_samples=config.mc_samples,
        checkpoint_dir=out / "checkpoints",
    )
    epochs = tqdm(
        total=config.encoder_epochs,
        disable=quiet,
        leave=False,
        unit="epoch",
        file=sys.stderr,
        position=1,
    )

    def on_epoch(epoch: int, loss: float) -> None:
        if epoch == 0:
            epochs.reset()
        epochs.set_postfix(loss=f"{loss:.3f}")
        epochs.update(1)

    n_items = len(args[1]) + len(args[3])
    extract = tqdm(
        total=n_items,
        disable=quiet,
        leave=False,
        unit="img",
        file=sys.stderr,
        position=2,
        desc="features",
    )

    def on_extract(done: int) -> None:
        if extract.n >= n_items:
            extract.reset()
        extract.update(done)

    try:
        yield from run_deep_rounds(
            *args, scenario=scenario, on_epoch=on_epoch, on_extract=on_extract, **kwargs
        )
    finally:
        epochs.close()
        extract.close()


def suite_configs(suite: str, base: BenchConfig) -> dict[str, BenchConfig]:
    """One benchmark configuration per data set of a suite (``ralif bench --suite``).

    Each set fixes its data, sizes and rounds (:data:`ralif.data.suite.SUITE`); the
    strategies, seeds, ridge rule and device come from ``base``.
    """
    from dataclasses import replace

    from ralif.data.suite import bench_settings, suite_members

    return {name: replace(base, **bench_settings(name)) for name in suite_members(suite)}


def run_suite(
    suite: str, base: BenchConfig, out: str | os.PathLike, quiet: bool = False
) -> list[Path]:
    """Run (or resume) every data set of a suite, each into its own folder ``out/NAME``.

    Returns
    -------
    list of Path
        The folders written, in suite order.
    """
    configs = suite_configs(suite, base)
    for config in configs.values():
        config.check()
    folders = []
    for name, config in configs.items():
        if not quiet:
            print(f"suite: {name}", file=sys.stderr)
        store = run_benchmark(config, Path(out) / name, quiet=quiet)
        if store is not None:
            store.close()
        folders.append(Path(out) / name)
    return folders
