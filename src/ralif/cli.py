"""The ``ralif`` command line: select, demo, bench, report, embed-text, extract, session, serve.

Exit codes: 0 on success, 2 on bad input (one line on stderr naming the problem).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ralif._validation import RalifInputError, check_exclude, check_features, check_labels
from ralif.io import (
    check_output,
    feature_rows,
    load_features,
    load_labels,
    save_npz,
    write_csv,
)
from ralif.metrics import ALWAYS, METRICS
from ralif.strategies import STRATEGIES, make_strategy, strategy_class

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a tool ended by SIGPIPE
SESSION_ENV = "RALIF_SESSION"
DEFAULT_DB_NAME = "ralif-session.db"
DEFAULT_DB = os.environ.get(SESSION_ENV, DEFAULT_DB_NAME)


def _l2_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be non-negative, got {text!r}")
    return value


def _port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return value


_STRATEGY_HELP = (
    f"query strategy: {', '.join(sorted(STRATEGIES))}, or module:Class for one of your own "
    "(default: ralif)"
)


_RALIF_OPTION_HELP = {
    "l2": "ridge strength of the head, a number or 'auto' (cross-validated)",
    "tau": "truncation of the expected score: keep labels with p > tau/C",
    "candidate_fraction": "size the candidates as this share of the pool (instead of "
    "--candidate-multiple)",
    "candidate_multiple": "size the candidates as this many budgets",
    "score": "scoring rule",
    "target": "target set of the loss",
    "damping": "damping added to the Hessian",
    "candidates": "candidate rule (influence+margin: the most uncertain items compete on influence)",
}
"""The RALIF parameters the command line sets, with what each means; the choices and
defaults shown come from :class:`~ralif.RALIF` itself."""


def _option_choices(name: str) -> tuple[str, ...] | None:
    """The string choices of a RALIF parameter, from its constraint table; None when it
    also takes open values (a number), as ``l2`` takes ``"auto"`` or a ridge."""
    from ralif._params import Either, Options
    from ralif.strategies import RALIF

    constraint = RALIF._parameter_constraints[name]
    parts = constraint.constraints if isinstance(constraint, Either) else (constraint,)
    if not all(isinstance(part, Options) for part in parts):
        return None
    return tuple(c for part in parts for c in part.choices if isinstance(c, str)) or None


def _add_ralif_options(p: argparse.ArgumentParser) -> None:
    from ralif.strategies import RALIF

    defaults = {k: v.default for k, v in inspect.signature(RALIF).parameters.items()}
    g = p.add_argument_group("RALIF options")
    for name, text in _RALIF_OPTION_HELP.items():
        choices = _option_choices(name)
        kind = _l2_arg if name == "l2" else None if choices else float
        g.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            choices=choices,
            default=None,
            help=f"{text} (default: {defaults[name]})",
        )


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "streaming (pools larger than memory; see ralif.streaming)",
        "Any of these streams the pool: it is read in blocks, twice, never whole.",
    )
    g.add_argument(
        "--stream", action="store_true", help="stream a single .npy or .parquet file too"
    )
    g.add_argument(
        "--dask",
        default=None,
        metavar="CLUSTER",
        help="run the passes on a dask cluster: local:N (N worker processes here) or a "
        "scheduler address such as tcp://host:8786 (needs ralif[dask])",
    )
    g.add_argument("--device", default=None, help="cpu or cuda[:N]: where the block products run")
    g.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="candidate cap of the diversity step (default 20000; see ralif.streaming)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ralif`` command."""
    parser = argparse.ArgumentParser(
        prog="ralif",
        description="Deep active learning with influence functions: which items should a person label next?",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sel = sub.add_parser(
        "select",
        help="choose the next items to label",
        description="Read features and partial labels, print (or write) the items to label next.",
    )
    sel.add_argument(
        "--features",
        required=True,
        help="features: .npy, .npz, .csv or .parquet (one row per item); a folder or a quoted "
        "glob ('shards/*.npy') of .npy shards, or a folder of .parquet files, is streamed",
    )
    sel.add_argument(
        "--labels",
        required=True,
        help="labels: .npy or .csv, one per item; -1 or empty = unlabeled",
    )
    sel.add_argument("--budget", required=True, type=int, help="how many items to pick")
    sel.add_argument(
        "--strategy",
        default="ralif",
        help=_STRATEGY_HELP,
    )
    sel.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sel.add_argument(
        "--classes",
        help="class names in order (a,b,c): label cells may then hold names, and "
        "--predictions shows them",
    )
    sel.add_argument(
        "--explain",
        action="store_true",
        help="say on standard error what the score means and which end is picked first",
    )
    sel.add_argument(
        "--predictions",
        action="store_true",
        help="add the model's predicted class and its probability for each pick",
    )
    sel.add_argument(
        "--exclude",
        help="items never to pick nor train on (a held-out set): .npy of indices or a boolean "
        "mask, or .csv of item numbers",
    )
    sel.add_argument("--out", help="write the picks to this CSV file instead of standard output")
    sel.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _add_ralif_options(sel)
    _add_stream_options(sel)

    demo = sub.add_parser(
        "demo",
        help="a demonstration selection on scikit-learn's digits",
        description="Label a few digits, let RALIF choose the next ones, and show why.",
    )
    demo.add_argument(
        "--labeled", type=int, default=30, help="initially labeled items (default 30)"
    )
    demo.add_argument("--budget", type=int, default=10, help="items to pick (default 10)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_ralif_options(demo)

    bench = sub.add_parser(
        "bench",
        help="benchmark strategies with simulated labeling rounds",
        description="Simulate labeling rounds for several strategies and seeds; every round is "
        "stored at once in OUT (results.sqlite, results.csv), and rerunning resumes.",
    )
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
        help="comma-separated names",
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
    bench.add_argument(
        "--l2",
        type=_l2_arg,
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
    bench.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="pool source: candidate cap of the streamed queries (default 20000; see ralif.streaming)",
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
    bench.add_argument("--out", required=True, help="results folder")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")

    embed = sub.add_parser(
        "embed-text",
        help="embed a CSV of texts with the offline MiniLM sentence encoder",
        description="Write an .npz with X (384-d embeddings, one row per CSV row) and, "
        "with --label-column, y (-1 where the label is empty) and, when the labels are names, "
        "classes (the name of each class id), ready for select and bench. Progress is kept in "
        "OUT.partial, so a stopped run resumes when started again.",
    )
    embed.add_argument("--csv", required=True, help="CSV file with a header row")
    embed.add_argument(
        "--text-column", default="text", help="column holding the texts (default text)"
    )
    embed.add_argument(
        "--label-column",
        default=None,
        help="column holding the labels (class ids or class names), if any",
    )
    embed.add_argument("--device", default="auto", help="auto, cpu or cuda")
    embed.add_argument("--out", required=True, help="output .npz")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")

    ext = sub.add_parser(
        "extract",
        help="features of sharded images from an encoder, written as .npy shards (a pool)",
        description="Run an encoder over .npy image shards and write its features as .npy shards "
        "into OUT, a pool for select, session and bench. Each shard is written whole, so a "
        "stopped run resumes where it stopped when the same command is run again.",
    )
    ext.add_argument(
        "--images",
        required=True,
        help="image shards: a .npy file, a folder or a quoted glob ('images/*.npy') of arrays "
        "(n, H, W), (n, H, W, C) or (n, C, H, W); integers are scaled to [0, 1]",
    )
    ext.add_argument("--out", required=True, help="folder for the feature shards")
    ext.add_argument(
        "--encoder",
        required=True,
        help="cnn or resnet18 (ralif's encoders: their feature vector), or package.module:attr "
        "naming a torch.nn.Module, or a callable returning one, whose output (one tensor) is "
        "the features; a module in the current folder needs PYTHONPATH=.",
    )
    ext.add_argument(
        "--weights",
        default=None,
        help="state dict saved with torch.save (read with weights_only=True); without it "
        "the encoder keeps its initial weights, drawn with seed 0",
    )
    ext.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    ext.add_argument(
        "--shard-rows", type=int, default=50_000, help="rows per feature shard (default 50000)"
    )
    ext.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    ext.add_argument("--quiet", action="store_true", help="no progress bar")

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"session database (default ${SESSION_ENV} or {DEFAULT_DB_NAME})",
    )
    session = sub.add_parser(
        "session",
        help="a durable labeling session (init, next, import-labels, status, export, backup, "
        "close, reopen, add-class, rename-class, remove-class)",
    )
    ssub = session.add_subparsers(dest="session_command", required=True)
    s_init = ssub.add_parser("init", help="create a session database over a features file")
    s_init.add_argument(
        "--features",
        required=True,
        help="features file (.npy, .npz, .csv, .parquet), or a folder or quoted glob of .npy "
        "shards, which session next streams",
    )
    s_init.add_argument(
        "--items",
        default=None,
        help="manifest CSV with a path (image, relative to it) or text column per item",
    )
    s_init.add_argument(
        "--classes", required=True, help="comma-separated class names (more: session add-class)"
    )
    s_init.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"session database to create (default ${SESSION_ENV} or {DEFAULT_DB_NAME})",
    )
    s_next = ssub.add_parser("next", help="pick and record the next batch", parents=[db])
    s_next.add_argument("--budget", type=int, required=True)
    s_next.add_argument("--strategy", default="ralif", help=_STRATEGY_HELP)
    s_next.add_argument("--seed", type=int, default=None)
    s_next.add_argument(
        "--force",
        action="store_true",
        help="pick a batch even while another is open (the page serves both)",
    )
    _add_ralif_options(s_next)
    s_imp = ssub.add_parser(
        "import-labels", help="import labels from a CSV with columns item,label", parents=[db]
    )
    s_imp.add_argument("labels", help="CSV file")
    s_imp.add_argument("--who", default="import", help="who gave these labels")
    s_imp.add_argument(
        "--held-out", action="store_true", help="these labels form the held-out evaluation set"
    )
    ssub.add_parser(
        "status", help="progress, per-class counts, learning curve on held-out labels", parents=[db]
    )
    s_exp = ssub.add_parser("export", help="write the current labels", parents=[db])
    s_exp.add_argument("--format", choices=("csv", "parquet"), default="csv")
    s_exp.add_argument(
        "--with-items", action="store_true", help="add the path and text columns of each item"
    )
    s_exp.add_argument("--out", required=True)
    s_bak = ssub.add_parser(
        "backup", help="a complete copy of the session, safe while it is being served", parents=[db]
    )
    s_bak.add_argument("--out", required=True, help="the copy to create (never overwritten)")
    for name, text in (
        ("close", "close a batch: its items still waiting go back to the pool"),
        ("reopen", "reopen a closed batch"),
    ):
        s_round = ssub.add_parser(name, help=text, parents=[db])
        s_round.add_argument("round", type=int, help="the round number (see session status)")
    s_cls = ssub.add_parser("add-class", help="add classes to a session", parents=[db])
    s_cls.add_argument(
        "names", nargs="+", help="the new class names (a comma separates names, as in init)"
    )
    s_ren = ssub.add_parser(
        "rename-class", help="rename a class; its labels follow the new name", parents=[db]
    )
    s_ren.add_argument("old", help="the class's name or number")
    s_ren.add_argument("new", help="its new name")
    s_rem = ssub.add_parser("remove-class", help="remove a class no label has used", parents=[db])
    s_rem.add_argument("name", help="the class's name or number")

    serve = sub.add_parser(
        "serve", help="a local web page for labeling the current batch", parents=[db]
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port_arg, default=8765, help="0..65535, 0 for any free port (default 8765)"
    )

    report = sub.add_parser(
        "report",
        help="learning curves, AUBC and win/tie/loss from a results folder",
        description="Write curves.png and report.md into DIR and print the AUBC table.",
    )
    report.add_argument(
        "dir", help="a folder written by ralif bench (or by ralif bench --suite: one per dataset)"
    )
    report.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default=None,
        help="what the paired differences, rounds below random, win/tie/loss, stopping table and "
        "first plot of a benchmark folder judge by: accuracy (default), macro_f1, or a metric "
        "it recorded with bench --metrics (a suite judges each data set by its own metric)",
    )
    report.add_argument("--quiet", action="store_true", help="print only the paths")
    return parser


_STRATEGY_OPTIONS = tuple(_RALIF_OPTION_HELP)
"""Strategy parameters the command line sets (``--candidate-fraction`` for ``candidate_fraction``)."""


def _strategy_params(args: argparse.Namespace, strategy: str = "ralif") -> dict[str, object]:
    """The strategy options given, refused when the strategy does not take them.

    The same rule for every command: an option applies to the strategies that have that
    parameter (``--l2`` to every model-based one, ``--tau`` to RALIF's), never silently
    dropped.
    """
    given = {k: getattr(args, k) for k in _STRATEGY_OPTIONS if getattr(args, k, None) is not None}
    takes = set(inspect.signature(strategy_class(strategy)[0]).parameters)
    foreign = sorted(set(given) - takes)
    sizes = {"candidate_fraction", "candidate_multiple"}
    if not foreign and sizes <= takes and len(sizes & set(given)) == 1:
        # One flag sizes the candidates and replaces the other size, the default's or a
        # preset's (both flags together are refused by RALIF's own check).
        given.setdefault(next(iter(sizes - set(given))), None)
    if foreign:
        shown = ", ".join("--" + k.replace("_", "-") for k in foreign)
        verb = "does" if len(foreign) == 1 else "do"
        raise RalifInputError(f"{shown} {verb} not apply to strategy {strategy}")
    return given


def _wants_stream(args: argparse.Namespace) -> bool:
    from ralif.sources import is_pool_spec, stream_reason

    if (
        args.stream
        or args.dask
        or args.device not in (None, "cpu")
        or args.max_candidates is not None
        or is_pool_spec(args.features)
    ):
        return True
    reason = stream_reason(args.features)
    if reason and not args.quiet:
        print(f"ralif: {reason}: streaming it in blocks (as --stream)", file=sys.stderr)
    return reason is not None


def _excluded(args: argparse.Namespace) -> np.ndarray | None:
    """The items of ``--exclude``, or None."""
    from ralif.io import load_items

    return None if args.exclude is None else load_items(args.exclude, "--exclude")


def _select_streamed(args: argparse.Namespace, params: dict, classes: list[str] | None):
    """``(picks, scores, strategy, rows of the pool by index, labels)`` of a streamed query."""
    from contextlib import nullcontext

    from ralif.sources import open_pool
    from ralif.streaming import DEFAULT_MAX_CANDIDATES, streamed_select

    pool = open_pool(args.features)
    y = check_labels(load_labels(args.labels, pool.n_rows, classes), pool.n_rows)
    exclude = _excluded(args)
    rows = None if exclude is None else check_exclude(exclude, pool.n_rows, "--exclude")
    if args.dask:
        from ralif.cluster import dask_client

        cluster = dask_client(args.dask)
    else:
        cluster = nullcontext(None)
    with cluster as client:
        q = streamed_select(
            pool,
            y,
            args.budget,
            args.strategy,
            random_state=args.seed,
            max_candidates=args.max_candidates or DEFAULT_MAX_CANDIDATES,
            device=args.device or "cpu",
            client=client,
            rows=rows,
            **params,
        )
    if q.capped and not args.quiet:
        print(
            f"ralif: the candidate cap applied: the diversity step read {q.n_candidates} "
            "candidates (--max-candidates)",
            file=sys.stderr,
        )
    return q.picks, q.scores[np.searchsorted(q.pool_index, q.picks)], q.strategy, pool.take, y


def _select_classes(args: argparse.Namespace) -> list[str] | None:
    if args.classes is None:
        return None
    from ralif.session.store import check_class_names, split_class_names

    return check_class_names(split_class_names([args.classes]))


def _predictions(
    args: argparse.Namespace,
    strategy: object,
    rows_of,
    y: np.ndarray,
    picks: np.ndarray,
    classes: list[str] | None,
) -> list[tuple[str, str]]:
    """``(predicted class, its probability)`` of each pick, by the strategy's model or,
    for a strategy without one, the linear head fitted on the labeled items."""
    model = getattr(strategy, "model_", None)
    if model is None:
        from ralif.head import LinearHead

        labeled = np.flatnonzero(y >= 0)
        if len(np.unique(y[labeled])) < 2:
            raise RalifInputError("--predictions needs labeled items of at least two classes")
        model = LinearHead(l2=args.l2 if args.l2 is not None else "auto")
        model.fit(rows_of(labeled), y[labeled])
    proba = model.predict_proba(rows_of(picks))
    best = proba.argmax(axis=1)
    out = []
    for k, p in zip(best, proba[np.arange(len(best)), best], strict=True):
        c = int(np.asarray(model.classes_)[k])
        out.append((classes[c] if classes and c < len(classes) else str(c), f"{p:.4f}"))
    return out


def _score_note(strategy: object) -> str:
    meaning = getattr(strategy, "score_meaning", "") or "none"
    return (
        f"ralif: rank is the order of picking; score: {meaning}. A strategy that spreads its "
        "picks (k-means++ or core-set over candidates) need not pick in score order"
    )


def _cmd_select(args: argparse.Namespace) -> int:
    if args.out:
        check_output(args.out, "picks")  # before the selection, which can take long
    params = _strategy_params(args, args.strategy)
    if args.max_candidates is not None and args.max_candidates < 1:
        raise RalifInputError(f"--max-candidates must be at least 1, got {args.max_candidates}")
    classes = _select_classes(args)
    if _wants_stream(args):
        picks, scores, strategy, rows_of, y = _select_streamed(args, params, classes)
    else:
        # The shapes are compared from the files' headers first, so that a file whose rows
        # cannot match is refused before its array is read.
        y = load_labels(args.labels, feature_rows(args.features), classes)
        X = load_features(args.features, n_rows=len(y) if y.ndim else None)
        X = check_features(X, f"features ({args.features})")
        y = check_labels(y, X.shape[0], f"labels ({args.labels})")
        strategy = make_strategy(args.strategy, random_state=args.seed, **params)
        picks = strategy.select(X, y, args.budget, exclude=_excluded(args))
        scores = strategy.scores_[np.searchsorted(strategy.pool_index_, picks)]
        rows_of = X.__getitem__
    rows = [
        (int(i), rank, f"{s:.6g}")
        for rank, (i, s) in enumerate(zip(picks, scores, strict=True), start=1)
    ]
    header = ["index", "rank", "score"]
    if args.predictions:
        header += ["predicted", "probability"]
        guesses = _predictions(args, strategy, rows_of, y, picks, classes)
        rows = [(*r, *g) for r, g in zip(rows, guesses, strict=True)]
    if args.explain:
        print(_score_note(strategy), file=sys.stderr)
    if args.out:
        write_csv(args.out, header, rows, "picks")
        if not args.quiet:
            print(f"wrote {len(rows)} picks to {args.out}", file=sys.stderr)
    else:
        print(",".join(header))
        for r in rows:
            print(",".join(str(v) for v in r))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ralif.demo import run_demo

    run_demo(n_labeled=args.labeled, budget=args.budget, seed=args.seed, **_strategy_params(args))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ralif.bench.runner import BenchConfig, is_pool_dataset, run_benchmark
    from ralif.data import load_dataset

    config = BenchConfig(
        dataset=args.dataset,
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
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
    if args.suite:
        from ralif.bench.runner import run_suite

        folders = run_suite(args.suite, config, args.out, quiet=args.quiet)
        if not args.quiet:
            print(f"results: {len(folders)} datasets in {args.out}", file=sys.stderr)
        return 0
    data = None  # the scratch-* scenarios and pool sources are loaded by run_benchmark
    if not config.scenario.startswith("scratch") and not is_pool_dataset(config.dataset):
        try:
            data = load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)
        except RalifInputError as exc:
            if not args.fallback_dataset:
                raise
            print(
                f"ralif: {config.dataset} cannot be had ({exc}); falling back to {args.fallback_dataset}",
                file=sys.stderr,
            )
            config.dataset = args.fallback_dataset
            data = load_dataset(config.dataset, dim=config.dim, imbalance=config.imbalance)
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


def _cmd_embed_text(args: argparse.Namespace) -> int:
    from ralif.io import labels_from_cells, read_csv_records
    from ralif.models.text import embed_texts, remove_progress

    # Everything is checked before the embedding, which can take many minutes.
    wanted = [c for c in (args.text_column, args.label_column) if c]
    records = read_csv_records(args.csv, "texts", wanted)
    if not records:
        raise RalifInputError(f"texts file {args.csv} has a header but no rows below it")
    short = [line for line, r in records if r.get(args.text_column) is None]
    if short:
        raise RalifInputError(
            f"{args.csv}: lines {', '.join(map(str, short[:10]))} have no {args.text_column!r} cell"
        )
    arrays = {}
    if args.label_column:
        arrays["y"], classes = labels_from_cells(
            [r.get(args.label_column) for _, r in records],
            f"labels ({args.csv}, column {args.label_column!r})",
        )
        if classes is not None:
            arrays["classes"] = classes
    check_output(args.out, "embeddings")
    # Progress is saved beside a file output, so that a run stopped halfway resumes.
    target = Path(os.path.realpath(args.out))
    regular = args.out != "-" and (target.is_file() or not target.exists())
    resume = f"{target}.partial" if regular else None
    texts = [r[args.text_column] for _, r in records]
    X = embed_texts(texts, device=args.device, quiet=args.quiet, resume_dir=resume)
    save_npz(args.out, {"X": X, **arrays}, "embeddings")
    if resume is not None:
        remove_progress(resume)
    if not args.quiet:
        named = f", classes {', '.join(arrays['classes'])}" if "classes" in arrays else ""
        print(
            f"wrote {X.shape[0]} embeddings of {X.shape[1]} dimensions to {args.out}{named}",
            file=sys.stderr,
        )
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RalifInputError("ralif extract needs torch: pip install 'ralif[torch]'") from None
    from ralif.extract import _EncoderFailure, extract_features, image_channels, load_encoder

    encoder = load_encoder(args.encoder, image_channels(args.images), args.weights)
    try:
        paths = extract_features(
            encoder,
            args.images,
            args.out,
            shard_rows=args.shard_rows,
            batch_size=args.batch_size,
            device=args.device,
            quiet=args.quiet,
        )
    except _EncoderFailure as exc:  # raised or exited in its forward: named as given here
        raise RalifInputError(
            f"the encoder {args.encoder} failed on the images: {exc.reason}"
        ) from None
    except RuntimeError as exc:  # torch's errors outside the forward (moving it to a device)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RalifInputError(f"the encoder {args.encoder} failed on the images: {first}") from None
    if not args.quiet:
        from ralif.sources import open_pool

        pool = open_pool(args.out)
        print(
            f"wrote {pool.n_rows} feature rows of {pool.n_features} dimensions in {len(paths)} "
            f"shards to {args.out}",
            file=sys.stderr,
        )
    return 0


def _cmd_session(args: argparse.Namespace) -> int:
    import sqlite3

    try:
        return _session_command(args)
    except sqlite3.DatabaseError as exc:
        # Damage found halfway through a command (open_session checks what it can up front).
        raise RalifInputError(f"session database {args.db}: {exc}") from None


def _shown(text: str | None, limit: int = 120) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _session_command(args: argparse.Namespace) -> int:
    import csv

    from ralif.session import open_session
    from ralif.session import workflow as wf
    from ralif.session.store import split_class_names

    if args.session_command == "init":
        classes = split_class_names([args.classes])
        with wf.init_session(args.db, args.features, classes, args.items) as s:
            print(f"created {args.db}: {s.n_items()} items, classes {', '.join(s.classes())}")
        return 0
    with open_session(args.db) as s:
        if args.session_command == "next":
            params = _strategy_params(args, args.strategy)
            rid, picks = wf.next_batch(
                s, args.budget, args.strategy, args.seed, force=args.force, **params
            )
            entries = [s.item(i) or (None, None) for i in picks]
            cols = [k for k, name in enumerate(("path", "text")) if any(e[k] for e in entries)]
            out = csv.writer(sys.stdout, lineterminator="\n")
            out.writerow(["item"] + [("path", "text")[k] for k in cols])
            out.writerows(
                [i] + [_shown(e[k]) for k in cols] for i, e in zip(picks, entries, strict=True)
            )
            sys.stdout.flush()
            print(
                f"round {rid}: {len(picks)} items recorded; label them with: ralif serve --db {args.db}",
                file=sys.stderr,
            )
        elif args.session_command == "import-labels":
            n = wf.import_labels_csv(s, args.labels, args.who, args.held_out)
            print(f"imported {n} labels into {args.db}")
        elif args.session_command == "status":
            st = wf.status(s)
            print(
                f"items {st['items']}: labeled {st['labeled']}, held out {st['held_out']}, "
                f"waiting in batches {st['pending']}, unsure {st['unsure']}, rounds {st['rounds']}"
            )
            for b in st["open"]:
                print(f"  open batch: round {b['round']}, {b['waiting']} of {b['size']} waiting")
            for name, count in st["per_class"].items():
                print(f"  {name:<20} {count}")
            if st["curve"]:
                print("learning curve (held-out accuracy):")
                for p in st["curve"]:
                    print(
                        f"  round {p['round']:>4}  {p['n_labeled']:>6} labels  {p['held_out_accuracy']:.3f}"
                    )
            print("stopping rules (ralif.stopping; evidence, not advice):")
            for name, at in st["stopping"].items():
                when = (
                    f"would have stopped at round {at['round']} ({at['n_labeled']} labels)"
                    if at
                    else "not yet"
                )
                print(f"  {name:<24} {when}")
        elif args.session_command == "backup":
            s.backup(args.out)
            print(f"copied {args.db} to {args.out}", file=sys.stderr if args.out == "-" else None)
        elif args.session_command == "close":
            n = s.close_round(args.round)
            print(f"closed round {args.round}: {n} waiting items back in the pool")
        elif args.session_command == "reopen":
            n = s.reopen_round(args.round)
            print(f"reopened round {args.round}: {n} items waiting")
        elif args.session_command in ("add-class", "rename-class", "remove-class"):
            if args.session_command == "add-class":
                new = split_class_names(args.names)
                if not new:
                    raise RalifInputError("no class names given (names are separated by commas)")
                names = s.add_classes(new)
            elif args.session_command == "rename-class":
                names = s.rename_class(args.old, args.new)
            else:
                names = s.remove_class(args.name)
            print(f"classes of {args.db}: {', '.join(names)}")
        else:
            n = wf.export(s, args.out, args.format, with_items=args.with_items)
            # With --out - the labels themselves go to standard output.
            print(f"wrote {n} labels to {args.out}", file=sys.stderr if args.out == "-" else None)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from ralif.session.server import serve

    serve(args.db, host=args.host, port=args.port)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ralif.bench.report import make_report
    from ralif.bench.suite_report import is_suite_folder, make_suite_report

    suite = is_suite_folder(args.dir)
    if suite and args.metric:
        raise RalifInputError(
            "--metric applies to one benchmark; a suite judges each set by its own"
        )
    try:
        out = (
            make_suite_report(args.dir)
            if suite
            else make_report(args.dir, args.metric or "accuracy")
        )
    except ValueError as exc:
        raise RalifInputError(f"{args.dir}: {exc}") from None
    if suite:
        print(f"plots:  {', '.join(str(p) for p in out['plots'])}")
    else:
        print(f"plot:   {out['plot']}")
        for note in out["curves"].left_out:
            print(f"ralif: note: {note}", file=sys.stderr)
    print(f"report: {out['report']}")
    if not args.quiet:
        print()
        print(out["summary" if suite else "aubc_table"])
    return 0


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ralif: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    try:
        command = {
            "select": _cmd_select,
            "demo": _cmd_demo,
            "bench": _cmd_bench,
            "report": _cmd_report,
            "embed-text": _cmd_embed_text,
            "extract": _cmd_extract,
            "session": _cmd_session,
            "serve": _cmd_serve,
        }
        code = command[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except RalifInputError as exc:
        print(f"ralif: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except np.linalg.LinAlgError as exc:
        print(
            f"ralif: error: the computation failed numerically ({exc}); features on very "
            "different scales cause this: standardize them, or give a larger --l2",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # The reader went away (`ralif ... | head`): stop quietly, as Unix tools do. Standard
        # output is pointed at /dev/null so that Python's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
