"""``ralif bench``: simulated labeling rounds for several strategies and seeds, stored as
they finish (results.sqlite, results.csv), resumed when rerun."""

from __future__ import annotations

import argparse
import sys

from ralif._validation import RalifInputError
from ralif.cli._common import l2_arg
from ralif.metrics import ALWAYS, METRICS
from ralif.strategies import split_specs

NAME = "bench"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``bench`` command and its options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The subcommands of the ``ralif`` parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``bench``.
    """
    bench = subparsers.add_parser(
        NAME,
        help="benchmark strategies with simulated labeling rounds",
        description="Simulate labeling rounds for several strategies and seeds; every round is "
        "stored at once in OUT (results.sqlite, results.csv), and rerunning resumes.",
    )
    _add_data_options(bench)
    _add_model_options(bench)
    _add_pool_source_options(bench)
    bench.add_argument("--out", required=True, help="results folder")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    return bench


def _add_data_options(bench: argparse.ArgumentParser) -> None:
    """The data set, the strategies and the sizes of the rounds."""
    bench.add_argument(
        "--dataset",
        default="fashion-mnist",
        help="fashion-mnist, digits, an .npz with X, y [, X_test, y_test], or a pool source "
        "read in blocks, never whole (a .npy file, a folder or quoted glob of .npy shards, "
        ".parquet; needs --labels and --test-size)",
    )
    bench.add_argument(
        "--labels",
        default=None,
        help="pool source: .npy of integer labels >= 0, one per row (the simulated oracle)",
    )
    bench.add_argument(
        "--suite",
        default=None,
        help="run a benchmark suite instead of one dataset: all, tune, confirm, or a comma list of "
        "suite datasets (each fixes its sizes and rounds; results go to OUT/NAME)",
    )
    bench.add_argument(
        "--strategies",
        default="ralif,random,margin,entropy,coreset,badge",
        help="comma-separated strategy specs: NAME, module:Class, either with :JSON "
        'parameters, and NAME= for a name of your own (tenth=ralif:{"n_candidates": 0.1})',
    )
    bench.add_argument(
        "--seeds", type=int, default=3, help="number of seeds (initial sets), default 3"
    )
    bench.add_argument(
        "--rounds", type=int, default=10, help="labeling rounds after the initial set, default 10"
    )
    bench.add_argument("--init", type=int, default=100, help="initially labeled items, default 100")
    bench.add_argument(
        "--budget", type=int, default=100, help="items labeled per round, default 100"
    )
    bench.add_argument(
        "--imbalance",
        type=float,
        default=None,
        help="long-tailed pool with this largest/smallest class ratio",
    )
    bench.add_argument(
        "--dim",
        type=int,
        default=None,
        help="PCA dimensions (images: default 64; .npz: features as they are)",
    )


def _add_model_options(bench: argparse.ArgumentParser) -> None:
    """The evaluated model, the scenario and its training."""
    bench.add_argument(
        "--l2",
        type=l2_arg,
        default="auto",
        help="ridge of the evaluated model and the strategies' heads (default auto)",
    )
    bench.add_argument(
        "--fallback-dataset",
        default=None,
        help="dataset to use, saying so, when --dataset cannot be loaded",
    )
    bench.add_argument(
        "--scenario",
        default="fixed",
        choices=("fixed", "scratch-cnn", "scratch-resnet18", "embeddings"),
        help="fixed features (default), an encoder trained from scratch each round, or embeddings given in the .npz",
    )
    bench.add_argument(
        "--epochs", type=int, default=15, help="encoder training epochs per round (scratch-*)"
    )
    bench.add_argument(
        "--pool-size", type=int, default=None, help="use a fixed random subsample of the pool"
    )
    bench.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="use a fixed random subsample of the test set; for a pool source, the rows drawn "
        "(with a fixed seed) as the test set",
    )
    bench.add_argument(
        "--mc-samples", type=int, default=10, help="dropout masks for bald_mc and entropy_mc"
    )
    bench.add_argument(
        "--device",
        default="auto",
        help="auto, cpu or cuda: training (scratch-*), and the block products of a pool "
        "source's streamed queries (auto: cpu)",
    )


def _add_pool_source_options(bench: argparse.ArgumentParser) -> None:
    """The streamed queries of a pool source, and the metrics recorded."""
    bench.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="pool source: candidate cap of the streamed queries (default 20000; see ralif.pools.streaming)",
    )
    bench.add_argument(
        "--dask",
        default=None,
        metavar="CLUSTER",
        help="pool source: run the streamed queries' passes on a dask cluster: local:N or a "
        "scheduler address such as tcp://host:8786 (needs ralif[dask])",
    )
    bench.add_argument(
        "--metrics",
        default="",
        metavar="NAMES",
        help="comma-separated test metrics to record besides "
        + " and ".join(ALWAYS)
        + ", for report --metric: "
        + ", ".join(m for m in METRICS if m not in ALWAYS),
    )


def _config(args: argparse.Namespace):
    """The checked :class:`~ralif.bench.runner.BenchConfig` of the command line."""
    from ralif.bench.runner import BenchConfig

    config = BenchConfig(
        dataset=args.dataset,
        strategies=split_specs(args.strategies),
        seeds=args.seeds,
        rounds=args.rounds,
        init=args.init,
        budget=args.budget,
        imbalance=args.imbalance,
        dim=args.dim,
        l2=args.l2,
        scenario=args.scenario,
        encoder_epochs=args.epochs,
        pool_size=args.pool_size,
        test_size=args.test_size,
        mc_samples=args.mc_samples,
        device=args.device,
        labels=args.labels,
        max_candidates=args.max_candidates,
        dask=args.dask,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
    )
    config.check()
    return config


def _load_data(args: argparse.Namespace, config):
    """The data set of a fixed-features run, falling back to ``--fallback-dataset`` (and
    saying so) when it cannot be had; None where ``run_benchmark`` loads it itself."""
    from ralif.data import load_dataset
    from ralif.data.pools import is_pool_dataset

    # The scratch-* scenarios and pool sources are loaded by run_benchmark.
    if config.scenario.startswith("scratch") or is_pool_dataset(config.dataset):
        return None
    try:
        return load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)
    except RalifInputError as exc:
        if not args.fallback_dataset:
            raise
        print(
            f"ralif: {config.dataset} cannot be had ({exc}); falling back to {args.fallback_dataset}",
            file=sys.stderr,
        )
        config.dataset = args.fallback_dataset
        return load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)


def run(args: argparse.Namespace) -> int:
    """Run ``ralif bench``: the rounds, then the summary table on standard output.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ralif.bench.runner import run_benchmark

    config = _config(args)
    if args.suite:
        from ralif.bench.runner import run_suite

        folders = run_suite(args.suite, config, args.out, quiet=args.quiet)
        if not args.quiet:
            print(f"results: {len(folders)} datasets in {args.out}", file=sys.stderr)
        return 0
    data = _load_data(args, config)
    store = run_benchmark(config, args.out, quiet=args.quiet, data=data)
    if store is None:  # a torchrun process other than rank 0
        return 0
    from ralif.bench.report import summary
    from ralif.io import read_class_names

    try:
        names = read_class_names(config.dataset)
        if names:
            store.set_class_names(names)
        text = summary(store.rows(), names or store.class_names)
    finally:
        store.close()
    if not args.quiet:
        print(f"results: {store.db_path} and {store.csv_path}", file=sys.stderr)
    print(text)
    return 0
