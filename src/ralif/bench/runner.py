"""``ralif bench``: run strategies over seeds and rounds, storing every round at once."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from ralif._validation import RalifInputError
from ralif.bench.store import ResultStore, changed_fields
from ralif.data import Dataset, load_dataset, subsample
from ralif.data.images import load_image_data
from ralif.data.pools import FINGERPRINT_FIELDS, is_pool_dataset, pool_name, split_pool_source
from ralif.loop import initial_labeled_set, run_rounds, strategy_label
from ralif.metrics import check_metrics
from ralif.pools.streaming import StreamedFeatures
from ralif.strategies import strategy_class

SCENARIOS = ("fixed", "scratch-cnn", "scratch-resnet18", "embeddings")


@dataclass
class BenchConfig:
    """One benchmark: the data and sizes that define it, and what to run on it.

    ``strategies`` holds names of ``ralif.STRATEGIES`` or ``"module:Class"`` for a
    strategy written elsewhere (a subclass of :class:`ralif.Strategy`, built with its
    defaults). ``strategies``, ``seeds`` and ``rounds`` may grow between runs into the
    same folder; the other fields define the benchmark and may not change.

    ``dataset`` may be a pool source too large for memory (a ``.npy`` file, a folder or
    glob of ``.npy`` shards, Parquet: :func:`ralif.data.pools.is_pool_dataset`) with one
    label per row in the ``.npy`` file ``labels``; see :func:`load_pool_dataset`. Its
    queries are streamed, with the candidate cap ``max_candidates``, on the dask cluster
    ``dask`` when given.
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
    labels: str | None = None
    max_candidates: int | None = None
    dask: str | None = None
    metrics: tuple[str, ...] = ()

    def identity(self, pool: dict | None = None) -> dict:
        """The fields that define the benchmark (stored with its results).

        Parameters
        ----------
        pool : dict, optional
            For a pool source, what makes its split and its rows the same
            (:func:`load_pool_dataset`'s fingerprint: rows, features, a digest of the
            labels and one of the test rows). It stands in for the paths of ``dataset``
            and ``labels``, which become the source's name and nothing, so the benchmark
            resumes from another folder or with its files moved, and is refused when the
            shards or the labels changed. Without it the paths are stored as given, as
            they were before the fingerprint.

        Returns
        -------
        dict
            JSON-serializable; a results folder holding another one is refused.
        """
        d = asdict(self)
        for k in ("strategies", "seeds", "rounds", "device", "dask"):
            d.pop(k)
        if self.scenario in ("fixed", "embeddings"):
            for k in ("encoder_epochs", "mc_samples"):
                d.pop(k)
        d["metrics"] = list(check_metrics(self.metrics))
        # Absent, these leave the identity of a benchmark stored before they existed.
        for k in ("labels", "max_candidates", "metrics"):
            if d[k] in (None, []):
                d.pop(k)
        if pool is not None:
            d["dataset"] = pool_name(self.dataset)
            d.pop("labels", None)
            d["pool"] = dict(pool)
        return d

    def check(self) -> None:
        """Refuse a configuration that cannot run, before any data is loaded."""
        classes = {s: strategy_class(s)[0] for s in self.strategies}
        if not self.strategies:
            raise RalifInputError("no strategies given")
        labels = [strategy_label(s) for s in self.strategies]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise RalifInputError(
                f"two strategies are named {', '.join(twice)}: give each its own NAME="
            )
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
        if self.max_candidates is not None and self.max_candidates < 1:
            raise RalifInputError(f"--max-candidates must be at least 1, got {self.max_candidates}")
        self.metrics = check_metrics(self.metrics)
        if is_pool_dataset(self.dataset):
            self._check_pool()
        else:
            given = [
                flag
                for flag, value in (
                    ("--labels", self.labels),
                    ("--max-candidates", self.max_candidates),
                    ("--dask", self.dask),
                )
                if value is not None
            ]
            if given:
                raise RalifInputError(
                    f"{', '.join(given)} apply to a pool source (a .npy file, a folder or glob "
                    f"of .npy shards, Parquet), but --dataset {self.dataset} is not one"
                )

    def _check_pool(self) -> None:
        where = f"--dataset {self.dataset} is a pool source, read in blocks"
        if self.labels is None:
            raise RalifInputError(f"{where}: give its labels with --labels y.npy")
        if self.test_size is None:
            raise RalifInputError(
                f"{where}: say how many of its rows form the test set with --test-size N"
            )
        if self.test_size < 1:
            raise RalifInputError(f"--test-size must be at least 1, got {self.test_size}")
        if self.scenario != "fixed":
            raise RalifInputError(f"{where}: only --scenario fixed runs on it")
        if self.dim is not None:
            raise RalifInputError(f"{where}: --dim (PCA over all rows) does not apply to it")
        if self.pool_size is not None and self.pool_size < 1:
            raise RalifInputError(f"--pool-size must be at least 1, got {self.pool_size}")
        from ralif.pools.streaming import check_device

        check_device(_stream_device(self.device))
        refused = [s for s in self.strategies if not _streams(s)]
        if refused:
            raise RalifInputError(
                f"{where}, where queries are streamed: {', '.join(refused)} cannot be streamed; "
                f"streamable strategies: {', '.join(streamable_strategies())}"
            )


def _streams(strategy: str) -> bool:
    from ralif.pools.streaming import streams

    return streams(strategy_class(strategy)[0])


def _stream_device(device: str) -> str:
    """Where a pool source's block products run: ``"auto"`` is the CPU."""
    return "cpu" if device == "auto" else device


def streamable_strategies() -> list[str]:
    """Names of ``ralif.STRATEGIES`` whose queries stream (:mod:`ralif.pools.streaming`).

    Returns
    -------
    list of str
        Sorted; the strategies ``ralif bench`` runs on a pool source.
    """
    from ralif.pools.streaming import streamable

    return list(streamable())


def load_pool_dataset(config: BenchConfig) -> Dataset:
    """A pool source as a benchmark's dataset, its features never loaded whole.

    The test set (``config.test_size`` rows, :func:`ralif.data.pools.pool_split`) is read
    by index and held in memory; ``X`` is :class:`ralif.pools.streaming.StreamedFeatures` over
    the pool rows, so the loop reads only the labeled rows and streams every query. Picks
    index the pool rows.

    Parameters
    ----------
    config : BenchConfig
        Its ``dataset`` a pool source (:func:`ralif.data.pools.is_pool_dataset`), with
        ``labels`` and ``test_size``.

    Returns
    -------
    Dataset
        Named by :func:`ralif.data.pools.pool_name`.
    """
    return _load_pool(config)[0]


def _load_pool(config: BenchConfig) -> tuple[Dataset, dict]:
    """The dataset of :func:`load_pool_dataset`, and the pool's fingerprint: what makes
    its split and its rows the same (for :meth:`BenchConfig.identity`)."""
    # BenchConfig.check: a pool source comes with its labels and its test size.
    assert config.labels is not None and config.test_size is not None
    split = split_pool_source(
        config.dataset, config.labels, config.test_size, config.pool_size, config.imbalance
    )
    X = StreamedFeatures(
        split.source,
        split.pool,
        max_candidates=config.max_candidates,
        device=_stream_device(config.device),
    )
    data = Dataset(split.name, X, split.y[split.pool], split.X_test, split.y[split.test])
    return data, split.fingerprint


def _stored_identity(out: str | os.PathLike) -> dict | None:
    """The identity stored in the results folder ``out``, if it holds one."""
    if not (Path(out) / "results.sqlite").is_file():
        return None
    try:
        store = ResultStore(out, read_only=True)
    except RalifInputError:
        return None  # opening it to write reports the problem
    try:
        return store.config
    finally:
        store.close()


def _pool_identity(config: BenchConfig, fingerprint: dict, out: str | os.PathLike) -> dict:
    """The identity of a benchmark on a pool source; a changed pool is refused here.

    A folder from before the fingerprint was stored keeps its identity (the paths as
    given) when the paths and the other fields are unchanged.
    """
    identity = config.identity(fingerprint)
    stored = _stored_identity(out)
    if not isinstance(stored, dict):
        return identity
    if "pool" not in stored:
        return stored if stored == config.identity() else identity
    # A changed setting (--test-size, --pool-size...) changes the fingerprint too: it
    # is named first, as the cause.
    settings = changed_fields(stored, identity, ignore=("pool", "dataset"))
    if settings:
        raise RalifInputError(
            f"{out} holds results of a different benchmark (differs in {settings}); "
            "use another --out folder"
        )
    old = stored["pool"] if isinstance(stored["pool"], dict) else {}
    changed = [
        f"{what} ({old.get(k)} then, {fingerprint[k]} now)" if k in ("rows", "features") else what
        for k, what in FINGERPRINT_FIELDS.items()
        if old.get(k) != fingerprint[k]
    ]
    if changed:
        raise RalifInputError(
            f"{out} holds results of a benchmark on another pool: its {', '.join(changed)} "
            "differ from those of --dataset and --labels; the stored picks index the rows "
            "it was run on, so they cannot go on here: give that pool and labels, or "
            "another --out folder"
        )
    # The same rows named another way (a folder, then a glob of its shards): the
    # benchmark goes on under its first name.
    return {**identity, "dataset": stored.get("dataset", identity["dataset"])}


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
) -> ResultStore | None:
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
    pooled = is_pool_dataset(config.dataset)
    identity = config.identity()
    if pooled:  # its identity holds what makes its split the same, read from the pool
        loaded, fingerprint = _load_pool(config)
        data = data or loaded
        identity = _pool_identity(config, fingerprint, out)
    # Under torchrun every process runs the same rounds (training is data-parallel);
    # only rank 0 reads and writes the store, and tells the others what is done.
    store = ResultStore(out, identity) if rank == 0 else None
    if deep or not pooled:
        data = _in_memory_data(config, data)
    assert data is not None  # read with the pool, or held in memory
    if config.init + config.rounds * config.budget > len(data.y):
        raise RalifInputError(
            f"init {config.init} + {config.rounds} rounds x budget {config.budget} exceeds the pool ({len(data.y)} items)"
        )
    runs = [(seed, s) for seed in range(config.seeds) for s in config.strategies]
    label = {s: strategy_label(s) for s in config.strategies}  # what the store knows it by
    done = (
        {(seed, s): store.done_picks(label[s], seed) for seed, s in runs}
        if store is not None
        else None
    )
    done = _broadcast(done)
    assert done is not None  # rank 0's, on every process
    total = len(runs) * (config.rounds + 1)
    finished = sum(min(len(v), config.rounds + 1) for v in done.values())
    left = any(len(v) <= config.rounds for v in done.values())
    cluster = _cluster(config.dask if left else None)
    with cluster as client, _progress(total, finished, quiet or rank != 0) as bar:
        if isinstance(data.X, StreamedFeatures):
            data.X.client = client
        for seed, name in runs:
            prior = done[(seed, name)]
            if len(prior) > config.rounds:
                continue
            initial = initial_labeled_set(len(data.y), config.init, seed, y=data.y)
            bar.set_description(f"{label[name]} seed {seed}")
            args = (data.X, data.y, data.X_test, data.y_test, name, initial, config.budget,
                    config.rounds)  # fmt: skip
            kwargs: dict[str, Any] = {
                "seed": seed,
                "l2": config.l2,
                "done": prior,
                "metrics": config.metrics,
            }
            if deep:
                rounds = _deep_rounds(config, args, kwargs, Path(out), quiet)
            else:
                rounds = run_rounds(*args, **kwargs)
            for result in rounds:
                if store is not None:
                    store.add(label[name], seed, result)
                bar.set_postfix(round=result.round, acc=f"{result.accuracy:.3f}")
                bar.update(1)
    return store


def _in_memory_data(config: BenchConfig, data: Dataset | None) -> Dataset:
    """The data of a benchmark held in memory: images for the scratch-* scenarios, else
    features (``data`` when given); long-tailed and subsampled as configured."""
    if config.scenario.startswith("scratch"):
        return data or load_image_data(
            config.dataset, config.imbalance, config.pool_size, config.test_size
        )
    if data is None:
        data = load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)
    return subsample(data, config.pool_size, config.test_size)


def _cluster(spec: str | None):
    if spec is None:
        return nullcontext(None)
    from ralif.pools.cluster import dask_client

    return dask_client(spec)


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


_T = TypeVar("_T")


def _broadcast(obj: _T) -> _T:
    """Rank 0's ``obj`` on every process (itself when not distributed)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
