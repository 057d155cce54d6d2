"""``ralif report``: learning curves, AUBC, win/tie/loss, and per round whether a strategy
is significantly below random (paired by seed; see :mod:`ralif.bench.stats`)."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from ralif._validation import RalifInputError
from ralif.bench.stats import CONFIDENCE, PairedTest, bootstrap_interval, paired_below
from ralif.bench.store import open_results
from ralif.io import check_output, open_output, write_text
from ralif.metrics import ALWAYS, METRICS
from ralif.stopping import RULES, RoundSignals, hindsight

TIE_TOLERANCE = 1e-3
"""Accuracy differences below this (0.1 point) count as ties in the win/tie/loss matrix."""

ALPHA = 1 - CONFIDENCE
"""A round is below random when a one-sided paired t-test over seeds says so at this level."""


@dataclass
class Curves:
    """Per strategy: arrays (seeds x rounds) of accuracy, macro-F1, labels and timings."""

    strategies: list[str]
    rounds: np.ndarray
    n_labeled: np.ndarray
    accuracy: dict[str, np.ndarray]
    macro_f1: dict[str, np.ndarray]
    select_seconds: dict[str, np.ndarray]
    fit_seconds: dict[str, np.ndarray]
    seeds: list[int]
    net_accuracy: dict[str, np.ndarray] | None = None
    train_seconds: dict[str, np.ndarray] | None = None
    extract_seconds: dict[str, np.ndarray] | None = None
    signals: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """Per strategy, each stopping signal (:mod:`ralif.stopping`) as seeds x rounds."""
    left_out: list[str] = field(default_factory=list)
    """What the curves leave out, naming the strategies: seeds or rounds not every
    strategy finished (the curves keep the common part)."""
    extra: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """The further metrics recorded (``ralif bench --metrics``): per metric, per
    strategy, seeds x rounds."""


def load_curves(rows: list[dict]) -> Curves:
    """Arrange rows into complete curves: the seeds and rounds every strategy finished."""
    if not rows:
        raise ValueError("no results to report")
    by: defaultdict[tuple[str, int], dict] = defaultdict(dict)
    for r in rows:
        by[(r["strategy"], r["seed"])][r["round"]] = r
    strategies = sorted({s for s, _ in by}, key=_strategy_order)
    seeds = sorted({seed for _, seed in by if all((s, seed) in by for s in strategies)})
    if not seeds:
        raise ValueError("no seed has results for every strategy yet")
    last = min(max(by[(s, seed)]) for s in strategies for seed in seeds)
    rounds = np.arange(last + 1)
    complete = [k for k in rounds if all(k in by[(s, seed)] for s in strategies for seed in seeds)]
    rounds = np.array(complete)

    def grid(s: str, key: str) -> np.ndarray:
        cells = [[by[(s, seed)][k].get(key) for k in rounds] for seed in seeds]
        return np.array([[np.nan if v is None else v for v in row] for row in cells], dtype=float)

    deep = any(r.get("net_accuracy") is not None for r in rows)
    left_out = _left_out(by, strategies, seeds, rounds)

    return Curves(
        strategies=strategies,
        rounds=rounds,
        n_labeled=grid(strategies[0], "n_labeled").mean(axis=0),
        accuracy={s: grid(s, "accuracy") for s in strategies},
        macro_f1={s: grid(s, "macro_f1") for s in strategies},
        select_seconds={s: grid(s, "select_seconds") for s in strategies},
        fit_seconds={s: grid(s, "fit_seconds") for s in strategies},
        seeds=seeds,
        net_accuracy={s: grid(s, "net_accuracy") for s in strategies} if deep else None,
        train_seconds={s: grid(s, "train_seconds") for s in strategies} if deep else None,
        extract_seconds={s: grid(s, "extract_seconds") for s in strategies} if deep else None,
        left_out=left_out,
        signals={s: {k: grid(s, k) for k in RoundSignals.__dataclass_fields__} for s in strategies},
        extra={m: {s: grid(s, m) for s in strategies} for m in _recorded(rows)},
    )


def _recorded(rows: list[dict]) -> list[str]:
    """The further metrics of :data:`ralif.metrics.METRICS` that every row holds."""
    return [m for m in METRICS if m not in ALWAYS and all(r.get(m) is not None for r in rows)]


def _left_out(by: dict, strategies: list[str], seeds: list[int], rounds: np.ndarray) -> list[str]:
    """Lines naming the strategies whose seeds or rounds go beyond the common part."""
    notes = []
    n_seeds = {s: sum(1 for t, _ in by if t == s) for s in strategies}
    if len(set(n_seeds.values())) > 1:
        counts = ", ".join(f"{s} {n}" for s, n in n_seeds.items())
        notes.append(
            f"strategies have different numbers of seeds ({counts}): every figure uses the "
            f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} all of them finished"
        )
    last = {s: max(max(by[(s, seed)]) for seed in seeds) for s in strategies}
    top = int(rounds.max())
    beyond = {s: r for s, r in last.items() if r > top}
    if beyond:
        notes.append(
            f"some runs went beyond round {top} ({', '.join(beyond)}): every figure stops at "
            f"round {top}, the last that every strategy finished for every seed"
        )
    return notes


def _strategy_order(name: str) -> tuple[int, str]:
    return (0 if name.startswith("ralif") else 2 if name == "random" else 1, name)


def aubc(values: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """Area under the budget curve per seed: mean over rounds 1..R (round 0 is shared)."""
    after = rounds >= 1
    return values[:, after].mean(axis=1) if after.any() else values[:, 0]


def win_tie_loss(a: np.ndarray, b: np.ndarray, rounds: np.ndarray) -> tuple[int, int, int, float]:
    """Counts over (seed, round >= 1) pairs of a beating, tying, losing to b; Wilcoxon p."""
    d = (a - b)[:, rounds >= 1].ravel()
    wins, losses = int((d > TIE_TOLERANCE).sum()), int((d < -TIE_TOLERANCE).sum())
    p = (
        1.0
        if np.allclose(d, 0.0) or len(d) < 2
        else float(wilcoxon(d, zero_method="zsplit").pvalue)
    )
    return wins, len(d) - wins - losses, losses, p


def _pm(x: np.ndarray, scale: float = 100.0) -> str:
    return f"{x.mean() * scale:.1f} ± {x.std() * scale:.1f}"


def metric_values(c: Curves, metric: str) -> dict[str, np.ndarray]:
    """The (seeds x rounds) values of ``metric`` per strategy.

    Raises
    ------
    RalifInputError
        For a name not in :data:`ralif.metrics.METRICS`, or a metric the results did
        not record (naming those they did).
    """
    if metric not in METRICS:
        raise RalifInputError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    recorded = {"accuracy": c.accuracy, "macro_f1": c.macro_f1, **c.extra}
    if metric not in recorded:
        raise RalifInputError(
            f"these results did not record {metric} (they hold {', '.join(recorded)}); "
            f"record it with ralif bench --metrics {metric} into a new folder"
        )
    return recorded[metric]


def markdown(c: Curves, title: str, metric: str = "accuracy") -> tuple[str, str]:
    """(the whole report, the AUBC table alone) as markdown; the paired differences,
    rounds below random and win/tie/loss judge by ``metric``."""
    values = metric_values(c, metric)
    shown = METRICS[metric].label
    aubc_table = _aubc_table(c, values, "" if metric == "accuracy" else f" ({shown})")
    lines = [f"# {title}", "", _intro(c), ""]
    lines += [f"**Note:** {note}." for note in c.left_out] + ([""] if c.left_out else [])
    lines += ["## Area under the learning curve", "", aubc_table, ""]
    lines += _aubc_difference_section(c, values, shown)
    if "random" in c.strategies:
        lines += _per_round_section(c, values, shown)
    lines += _win_tie_loss_section(c, values, shown)
    lines += _stopping_section(c, values, shown)
    return "\n".join(lines), aubc_table


def _intro(c: Curves) -> str:
    """What the report covers and how its numbers are made."""
    deep_note = (
        " Head: the linear head refit on the encoder's features (what the per-round and "
        "win/tie/loss tables use); network: the encoder's own classifier."
        if c.net_accuracy is not None
        else ""
    )
    return (
        f"{len(c.seeds)} seeds, rounds 0–{int(c.rounds.max())}, {int(c.n_labeled[0])} → {int(c.n_labeled[-1])} labels. "
        f"AUBC: mean test accuracy (and macro-F1{''.join(', ' + METRICS[m].label for m in c.extra)}) "
        "over rounds 1–R, in %, mean ± std over seeds." + deep_note
    )


def rounds_below(
    values: dict[str, np.ndarray], rounds: np.ndarray, s: str, base: str = "random"
) -> PairedTest:
    """The paired test of ``s`` against ``base`` on the rounds after the first."""
    after = rounds >= 1
    return paired_below(values[s][:, after], values[base][:, after])


def _rounds_below_random(c: Curves, s: str, values: dict[str, np.ndarray]) -> str:
    """``k/R``: rounds after the first where ``s`` is significantly below random."""
    if "random" not in c.strategies or s == "random":
        return "—"
    test = rounds_below(values, c.rounds, s)
    return f"{int(test.significant(ALPHA).sum())}/{len(test.p)}"


def _aubc_columns(c: Curves) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The AUBC columns: (heading, values per strategy) of every metric recorded."""
    columns = [
        ("AUBC head accuracy" if c.net_accuracy is not None else "AUBC accuracy", c.accuracy)
    ]
    if c.net_accuracy is not None:
        columns.append(("AUBC network accuracy", c.net_accuracy))
    columns.append(("AUBC macro-F1", c.macro_f1))
    columns += [(f"AUBC {METRICS[m].label}", v) for m, v in c.extra.items()]
    return columns


def _aubc_table(c: Curves, values: dict[str, np.ndarray], judged_by: str = "") -> str:
    """The AUBC table: one row per strategy, a column per metric recorded (head and
    network accuracy for a deep run), rounds below random by ``values``, timings."""
    metrics = _aubc_columns(c)
    times = ["select s/round"]
    times += ["train s/round", "extract s/round"] if c.net_accuracy is not None else ["fit s/round"]
    heads = ["strategy", *(h for h, _ in metrics), f"rounds below random{judged_by}", *times]
    table = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    after = c.rounds >= 1
    for s in c.strategies:
        cells = [s, *(_pm(aubc(v[s], c.rounds)) for _, v in metrics)]
        cells.append(_rounds_below_random(c, s, values))
        cells.append(f"{c.select_seconds[s][:, after].mean() if after.any() else 0.0:.3f}")
        if c.train_seconds is not None and c.extract_seconds is not None:  # a deep run's
            cells += [
                f"{np.nanmean(c.train_seconds[s]):.2f}",
                f"{np.nanmean(c.extract_seconds[s]):.2f}",
            ]
        else:
            cells.append(f"{c.fit_seconds[s].mean():.3f}")
        table.append("| " + " | ".join(cells) + " |")
    return "\n".join(table)


def _per_round_section(c: Curves, values: dict[str, np.ndarray], shown: str) -> list[str]:
    """Each strategy's paired difference to random per round, with its one-sided bound."""
    after = c.rounds >= 1
    level = f"{CONFIDENCE * 100:g} %"
    lines = [
        f"## Per round: mean {shown} minus random's (points)",
        "",
        f"Paired by seed; in brackets the one-sided {level} upper bound of the mean "
        f"difference (t over {len(c.seeds)} seeds). ✗: significantly below random (the bound "
        f"is under zero, p < {ALPHA:g}); ✓: not.",
        "",
    ]
    head = (
        "| strategy | "
        + " | ".join(
            f"r{k} ({int(n)})" for k, n in zip(c.rounds, c.n_labeled, strict=True) if k >= 1
        )
        + " |"
    )
    lines += [head, "|---|" + "---|" * int(after.sum())]
    for s in c.strategies:
        if s == "random":
            continue
        test = rounds_below(values, c.rounds, s)
        cells = [
            f"{m * 100:+.1f} (≤ {u * 100:+.1f}) {'✗' if below else '✓'}"
            for m, u, below in zip(test.mean, test.upper, test.significant(ALPHA), strict=True)
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def aubc_difference(
    values: dict[str, np.ndarray], rounds: np.ndarray, s: str, base: str
) -> tuple[float, float, float]:
    """Mean AUBC of ``s`` minus ``base``'s over paired seeds, with its bootstrap interval,
    in points: ``(mean, low, high)``."""
    d = (aubc(values[s], rounds) - aubc(values[base], rounds)) * 100
    low, high = bootstrap_interval(d)
    return float(d.mean()), low, high


def _aubc_difference_section(c: Curves, values: dict[str, np.ndarray], shown: str) -> list[str]:
    """AUBC against random and against margin, with bootstrap intervals over seeds."""
    bases = [b for b in ("random", "margin") if b in c.strategies]
    if not bases:
        return []
    lines = [
        f"## AUBC {shown} minus " + " and ".join(f"{b}'s" for b in bases) + " (points)",
        "",
        f"Paired by seed; in brackets the {CONFIDENCE * 100:g} % percentile bootstrap interval "
        f"of the mean difference over the {len(c.seeds)} seeds.",
        "",
        "| strategy | " + " | ".join(f"− {b}" for b in bases) + " |",
        "|---|" + "---|" * len(bases),
    ]
    for s in c.strategies:
        cells = []
        for b in bases:
            if s == b:
                cells.append("—")
                continue
            m, lo, hi = aubc_difference(values, c.rounds, s, b)
            cells.append(f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def stopping_outcomes(
    c: Curves, values: dict[str, np.ndarray]
) -> dict[tuple[str, str], list[tuple[int | None, int, float]]]:
    """Per (strategy, rule), per seed: ``(round fired or None, labels saved, score lost)``.

    Each rule of :data:`ralif.stopping.RULES` reads the seed's stopping signals round by
    round; where it fires, :func:`ralif.stopping.hindsight` compares that round with the
    last one by ``values`` (a fraction; negative where stopping did better).
    """
    out: dict[tuple[str, str], list[tuple[int | None, int, float]]] = {}
    for s in c.strategies:
        per_seed = [
            [
                RoundSignals(**{k: float(v[i, j]) for k, v in c.signals[s].items()})
                for j in range(len(c.rounds))
            ]
            for i in range(len(c.seeds))
        ]
        for name, rule in RULES.items():
            out[s, name] = []
            for i, rounds in enumerate(per_seed):
                r = rule.fires(rounds)
                saved, lost = hindsight(r, c.n_labeled, values[s][i])
                out[s, name].append((None if r is None else int(c.rounds[r]), saved, lost))
    return out


def stopping_table(c: Curves, values: dict[str, np.ndarray], shown: str) -> str:
    """When each stopping rule would have fired, per strategy, judged against hindsight.

    A cell gives the mean round the rule fired in over the seeds where it fired, the
    labels that saved against the last round, and the ``shown`` metric lost there (in
    points; negative where stopping did better); "never" where it fired in no seed.
    Empty when the results hold no signals (written before they were recorded).
    """
    if not any(np.isfinite(v).any() for sig in c.signals.values() for v in sig.values()):
        return ""
    outcomes = stopping_outcomes(c, values)
    lines = ["| strategy | " + " | ".join(RULES) + " |", "|---" * (len(RULES) + 1) + "|"]
    for s in c.strategies:
        cells = []
        for name in RULES:
            fired = [o for o in outcomes[s, name] if o[0] is not None]
            if not fired:
                cells.append("never")
                continue
            r, saved, lost = np.mean(np.array(fired, dtype=float), axis=0)
            cells.append(
                f"round {r:.1f}: {saved:.0f} saved, {lost * 100:+.1f} {shown} "
                f"({len(fired)}/{len(c.seeds)} seeds)"
            )
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stopping_section(c: Curves, values: dict[str, np.ndarray], shown: str) -> list[str]:
    table = stopping_table(c, values, shown)
    if not table:
        return []
    rules = "; ".join(
        f"{name}: {r.signal} {'≥' if r.signal == 'agreement' else '≤'} {r.threshold:g}"
        + (f" in {r.window} rounds running" if r.window > 1 else "")
        for name, r in RULES.items()
    )
    return [
        "## Stopping rules, against hindsight",
        "",
        f"When each rule (ralif.stopping.RULES: {rules}) would first have stopped, as the "
        "mean over the seeds where it fired: the round, the labels saved against the last "
        f"round, and the {shown} lost there (points; negative: stopping did better). The "
        "signals come from a stop set of 1,000 pool items drawn once per seed.",
        "",
        table,
        "",
    ]


def _win_tie_loss_section(c: Curves, values: dict[str, np.ndarray], shown: str) -> list[str]:
    """Every pair of strategies: wins, ties and losses over (seed, round) pairs, with p."""
    lines = [
        "## Win / tie / loss (row vs column) over (seed, round) pairs",
        "",
        f"{shown[0].upper()}{shown[1:]} differences under {TIE_TOLERANCE * 100:g} point are ties; "
        "p: two-sided Wilcoxon "
        "signed-rank test on the paired differences.",
        "",
        "| | " + " | ".join(c.strategies) + " |",
        "|---|" + "---|" * len(c.strategies),
    ]
    for a in c.strategies:
        cells = []
        for b in c.strategies:
            if a == b:
                cells.append("—")
                continue
            w, t, lo, p = win_tie_loss(values[a], values[b], c.rounds)
            cells.append(f"{w}/{t}/{lo} (p={p:.2g})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def plot(c: Curves, title: str, path: Path, metric: str = "accuracy") -> None:
    """Learning curves of ``metric``, accuracy and macro-F1, mean ± std bands."""
    try:
        import matplotlib
    except ImportError:
        # A base dependency, so only a damaged or hand-made environment lacks it.
        raise RalifInputError(
            "drawing the learning curves needs matplotlib: pip install matplotlib"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = "Head test" if c.net_accuracy is not None else "Test"
    panels = [(f"{head} {METRICS[metric].label} (%)", metric_values(c, metric))]
    panels += [
        (f"{head} {METRICS[m].label} (%)", metric_values(c, m)) for m in ALWAYS if m != metric
    ]
    if c.net_accuracy is not None:
        panels.insert(1, ("Network test accuracy (%)", c.net_accuracy))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.8), constrained_layout=True
    )
    many = len(c.strategies) > 10
    colors = plt.get_cmap("tab20" if many else "tab10")
    for i, s in enumerate(c.strategies):
        color = colors(i % (20 if many else 10))
        dash = ":" if s.startswith("ralif_") else "-"
        style = (
            {"color": "black", "linestyle": "--"}
            if s == "random"
            else {"color": color, "linestyle": dash}
        )
        width = 2.4 if s == "ralif" else 1.5
        for ax, (_, values) in zip(axes, panels, strict=True):
            m, sd = np.nanmean(values[s], axis=0) * 100, np.nanstd(values[s], axis=0) * 100
            ax.plot(c.n_labeled, m, label=s, linewidth=width, marker="o", markersize=3, **style)
            ax.fill_between(
                c.n_labeled, m - sd, m + sd, alpha=0.15, color=style["color"], linewidth=0
            )
    for ax, (what, _) in zip(axes, panels, strict=True):
        ax.set_xlabel("Labeled items")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    if many:
        axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9)
    else:
        axes[0].legend(loc="lower right", fontsize=9)
    fig.suptitle(f"{title}: mean ± std over {len(c.seeds)} seeds")
    with open_output(path, "plot", binary=True) as fh:
        fig.savefig(fh, dpi=150, format="png")
    plt.close(fig)


def make_report(folder: str | os.PathLike, metric: str = "accuracy") -> dict[str, Any]:
    """Write ``curves.png`` and ``report.md`` into ``folder``.

    Parameters
    ----------
    folder : path-like
        A folder written by ``ralif bench``.
    metric : str, default "accuracy"
        What the paired differences, the rounds below random, win/tie/loss, the
        stopping table and the first plot judge by: a name of
        :data:`ralif.metrics.METRICS` the folder recorded.

    Returns
    -------
    dict
        Paths of the two files, the AUBC table (markdown) and the curves.

    Examples
    --------
    >>> import tempfile
    >>> from ralif.bench.runner import BenchConfig, run_benchmark
    >>> out = tempfile.mkdtemp()
    >>> config = BenchConfig(dataset="digits", strategies=("random", "margin"), seeds=2,
    ...                      rounds=2, init=20, budget=10, l2=0.1)
    >>> run_benchmark(config, out, quiet=True).close()
    >>> written = make_report(out)
    >>> written["report"].name, written["plot"].name
    ('report.md', 'curves.png')
    """
    folder = Path(folder)
    if folder.is_dir():  # before the database is opened, which may add its -wal file
        check_output(folder / "report.md", "report")
        check_output(folder / "curves.png", "plot")
    with open_results(folder) as store:
        rows, config, names = store.rows(), store.config or {}, store.class_names
    c = load_curves(rows)
    title = _title(config)
    md, aubc_table = markdown(c, title, metric)
    if names:
        first, rest = md.split("\n", 1)
        md = f"{first}\n\n{_classes_line(names)}\n{rest}"
    write_text(folder / "report.md", md, "report")
    png = folder / "curves.png"
    plot(c, title, png, metric)
    return {"report": folder / "report.md", "plot": png, "aubc_table": aubc_table, "curves": c}


def _classes_line(names: list[str]) -> str:
    return "Classes: " + ", ".join(f"{k} = {n}" for k, n in enumerate(names)) + "."


def summary(rows: list[dict], class_names: list[str] | None = None) -> str:
    """The AUBC table of a benchmark's results (what ``ralif bench`` prints at the end).

    Parameters
    ----------
    rows : list of dict
        :meth:`ResultStore.rows`.
    class_names : list of str, optional
        Shown above the table.

    Returns
    -------
    str
        Markdown; a one-line note when no seed is complete for every strategy yet.
    """
    try:
        c = load_curves(rows)
    except ValueError as exc:
        return f"no AUBC summary yet: {exc}"
    _, table = markdown(c, "")
    lines = [f"AUBC over {len(c.seeds)} seeds, rounds 1–{int(c.rounds.max())}:", "", table]
    lines[1:1] = [f"note: {note}" for note in c.left_out]
    stopping = stopping_table(c, c.accuracy, "accuracy")
    if stopping:
        lines += ["", "Stopping rules (when each would have stopped, against the last round):"]
        lines += ["", stopping]
    if class_names:
        lines[1:1] = [_classes_line(class_names)]
    return "\n".join(lines)


def _title(config: dict) -> str:
    parts = [str(config.get("dataset", "benchmark"))]
    if config.get("imbalance"):
        parts.append(f"long-tailed {config['imbalance']:g}:1")
    if config.get("dim"):
        parts.append(f"PCA-{config['dim']}")
    if "init" in config:
        parts.append(f"{config['init']} initial + {config['budget']}/round")
    return ", ".join(parts)
