"""``ralif bench``: run strategies over seeds and rounds, storing every round at once."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

from ralif._validation import RalifInputError
from ralif.bench.store import ResultStore
from ralif.data import Dataset, load_dataset
from ralif.loop import initial_labeled_set, run_rounds
from ralif.strategies import STRATEGIES


@dataclass
class BenchConfig:
    """One benchmark: the data and sizes that define it, and what to run on it.

    ``strategies``, ``seeds`` and ``rounds`` may grow between runs into the same folder;
    the other fields define the benchmark and may not change.
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

    def identity(self) -> dict:
        """The fields that define the benchmark (stored with its results)."""
        d = asdict(self)
        for k in ("strategies", "seeds", "rounds"):
            d.pop(k)
        return d

    def check(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise RalifInputError(
                f"unknown strategies {', '.join(unknown)}; choose from {', '.join(sorted(STRATEGIES))}"
            )
        if not self.strategies:
            raise RalifInputError("no strategies given")
        for name in ("seeds", "rounds", "init", "budget"):
            if getattr(self, name) < 1:
                raise RalifInputError(f"--{name} must be at least 1, got {getattr(self, name)}")


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
    store = ResultStore(out, config.identity())
    data = data or load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)
    if config.init + config.rounds * config.budget > len(data.y):
        raise RalifInputError(
            f"init {config.init} + {config.rounds} rounds x budget {config.budget} exceeds the pool ({len(data.y)} items)"
        )
    runs = [(seed, s) for seed in range(config.seeds) for s in config.strategies]
    done = {(seed, s): store.done_picks(s, seed) for seed, s in runs}
    total = len(runs) * (config.rounds + 1)
    finished = sum(min(len(v), config.rounds + 1) for v in done.values())
    with _progress(total, finished, quiet) as bar:
        for seed, name in runs:
            prior = done[(seed, name)]
            if len(prior) > config.rounds:
                continue
            initial = initial_labeled_set(len(data.y), config.init, seed)
            bar.set_description(f"{name} seed {seed}")
            for result in run_rounds(
                data.X,
                data.y,
                data.X_test,
                data.y_test,
                name,
                initial,
                config.budget,
                config.rounds,
                seed=seed,
                l2=config.l2,
                done=prior,
            ):
                store.add(name, seed, result)
                bar.set_postfix(round=result.round, acc=f"{result.accuracy:.3f}")
                bar.update(1)
    return store


def class_counts(data: Dataset) -> np.ndarray:
    """Pool items per class (to describe a long-tailed pool)."""
    return np.bincount(data.y, minlength=data.n_classes)
