"""``ralif report`` over a suite: strategies compared across data sets.

A claim about a strategy is a claim across data sets, so the suite report ranks the
strategies on every data set by AUBC (of the set's own metric), averages the ranks, and
tests them with Friedman's test and the Nemenyi critical difference (Demšar, JMLR 2006);
beside it, per data set, the AUBC table, the rounds significantly below random (a
one-sided paired t-test over seeds, :mod:`ralif.bench.stats`), bootstrap intervals of the
AUBC differences to random and to margin, and win/tie/loss counts over data sets. A
second stream of random (``random#2``) shows the noise floor: how often random is
"below random" by chance. Sets of the suite's *tune* and *confirm* halves are reported
apart: only the confirm half is an honest estimate of how a default tuned on the other
half does on new data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import friedmanchisquare, rankdata, studentized_range

from ralif.bench.report import (
    ALPHA,
    Curves,
    aubc,
    aubc_difference,
    load_curves,
    metric_values,
    rounds_below,
)
from ralif.bench.stats import CONFIDENCE, holm
from ralif.bench.store import open_results
from ralif.io import open_output, write_text

AUBC_TIE = 0.1
"""AUBC differences (points) below this count as ties between two strategies on a set."""

MARGIN_SLACK = 0.5
"""The reliability goal: never more than this many points of AUBC below margin."""


NOISE_FLOOR = "random#2"
"""Random under a second stream of draws: its record against random is the noise floor."""


@dataclass
class SetResult:
    """One data set's summary, on its metric, in points.

    Attributes
    ----------
    aubc : dict
        Mean AUBC over seeds per strategy.
    below : dict
        Rounds (after the first) significantly below random per strategy (one-sided
        paired t-test, p < ``ALPHA``); empty without random.
    p_below : dict
        Those tests' p-values, per round (for adjustments over many sets).
    vs_random, vs_margin : dict
        ``(mean, low, high)``: the AUBC difference and its bootstrap interval.
    """

    name: str
    half: str
    metric: str
    n_seeds: int
    n_rounds: int
    aubc: dict[str, float]
    below: dict[str, int] = field(default_factory=dict)
    p_below: dict[str, np.ndarray] = field(default_factory=dict)
    vs_random: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    vs_margin: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def summarize(name: str, curves: Curves) -> SetResult:
    """AUBC, rounds significantly below random and AUBC differences, on the set's metric."""
    from ralif.data.suite import SUITE

    spec = SUITE.get(name)
    metric = spec.metric if spec else "accuracy"
    half = spec.half if spec else "extra"
    values = metric_values(curves, metric)
    rounds = curves.rounds
    scores = {s: float(aubc(values[s], rounds).mean() * 100) for s in curves.strategies}
    out = SetResult(name, half, metric, len(curves.seeds), int((rounds >= 1).sum()), scores)
    for s in curves.strategies:
        if "random" in values and s != "random":
            test = rounds_below(values, rounds, s)
            out.below[s] = int(test.significant(ALPHA).sum())
            out.p_below[s] = test.p
        for base, into in (("random", out.vs_random), ("margin", out.vs_margin)):
            if base in values and s != base:
                into[s] = aubc_difference(values, rounds, s, base)
    return out


def below_after_holm(sets: list[SetResult], strategy: str) -> list[int]:
    """Per set, rounds still significantly below random after Holm's adjustment over every
    round of every one of ``sets``: the family behind "never below random anywhere"."""
    p = np.concatenate([np.asarray(r.p_below[strategy], dtype=float) for r in sets])
    flagged = np.nan_to_num(holm(p), nan=1.0) < ALPHA
    ends = np.cumsum([len(r.p_below[strategy]) for r in sets])[:-1]
    return [int(part.sum()) for part in np.split(flagged, ends)]


def load_suite(folder: str | os.PathLike) -> list[SetResult]:
    """Every data set's results below ``folder`` (one sub-folder each), in suite order."""
    from ralif.data.suite import SUITE

    folder = Path(folder)
    subs = [p for p in sorted(folder.iterdir()) if (p / "results.sqlite").is_file()]
    order = {n: i for i, n in enumerate(SUITE)}
    subs.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    out = []
    for sub in subs:
        with open_results(sub) as store:
            rows = store.rows()
        if rows:
            out.append(summarize(sub.name, load_curves(rows)))
    if not out:
        raise ValueError(f"no data set results below {folder}")
    return out


def common_strategies(sets: list[SetResult]) -> list[str]:
    """Strategies with results on every one of ``sets``, in the first set's order; the
    noise floor (:data:`NOISE_FLOOR`) is a measurement, not a contender, and is left out."""
    return [s for s in sets[0].aubc if s != NOISE_FLOOR and all(s in r.aubc for r in sets)]


def mean_ranks(sets: list[SetResult], strategies: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ranks per set x strategy, mean rank per strategy); rank 1 is the best AUBC, ties share."""
    table = np.array([[r.aubc[s] for s in strategies] for r in sets])
    ranks = np.vstack([rankdata(-row, method="average") for row in table])
    return ranks, ranks.mean(axis=0)


def friedman_nemenyi(ranks: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Friedman's p-value over the sets, and the Nemenyi critical difference of mean ranks.

    ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized range
    quantile over ``sqrt(2)`` (Demšar, 2006), for ``k`` strategies and ``N`` sets.
    """
    n_sets, k = ranks.shape
    if n_sets < 2 or k < 3:
        p = float("nan")
    else:
        p = float(friedmanchisquare(*ranks.T).pvalue)
    q = float(studentized_range.ppf(1 - alpha, k, 1e6)) / np.sqrt(2.0)
    cd = q * np.sqrt(k * (k + 1) / (6.0 * n_sets))
    return p, float(cd)


def win_tie_loss_sets(sets: list[SetResult], a: str, b: str) -> tuple[int, int, int]:
    """Data sets where ``a``'s AUBC beats, ties (within :data:`AUBC_TIE`) or loses to ``b``'s."""
    d = np.array([r.aubc[a] - r.aubc[b] for r in sets])
    return int((d > AUBC_TIE).sum()), int((np.abs(d) <= AUBC_TIE).sum()), int((d < -AUBC_TIE).sum())


def reliability(sets: list[SetResult], strategy: str) -> dict[str, Any]:
    """The goal's terms for one strategy over ``sets``.

    The goal: no round of any set significantly below random; an AUBC at least margin's
    (within :data:`AUBC_TIE`) on 3/4 of the sets, and never more than
    :data:`MARGIN_SLACK` below it. ``meets_goal_raw`` judges rounds by their own tests,
    ``meets_goal`` after Holm's adjustment over all rounds of all sets (a strategy no
    different from random fails the raw rule in most runs of a whole suite).
    """
    n = len(sets)
    out: dict[str, Any] = {"n_sets": n, "n_rounds": sum(r.n_rounds for r in sets)}
    judged = strategy != "random" and all(strategy in r.below for r in sets)
    if judged:
        below = [r.below[strategy] for r in sets]
        holm_below = below_after_holm(sets, strategy)
        out.update(
            sets_never_below=sum(b == 0 for b in below),
            rounds_below=sum(below),
            sets_never_below_holm=sum(b == 0 for b in holm_below),
            rounds_below_holm=sum(holm_below),
            mean_vs_random=float(np.mean([r.vs_random[strategy][0] for r in sets])),
        )
    if all("margin" in r.aubc for r in sets):
        gaps = np.array([r.aubc[strategy] - r.aubc["margin"] for r in sets])
        out["sets_at_least_margin"] = int((gaps >= -AUBC_TIE).sum())
        out["worst_gap_to_margin"] = float(gaps.min())
        out["sets_significantly_below_margin"] = sum(
            r.vs_margin[strategy][2] < 0 for r in sets if strategy in r.vs_margin
        )
        near_margin = out["sets_at_least_margin"] >= 0.75 * n and gaps.min() >= -MARGIN_SLACK
        out["meets_goal_raw"] = bool(judged and out["sets_never_below"] == n and near_margin)
        out["meets_goal"] = bool(judged and out["sets_never_below_holm"] == n and near_margin)
    return out


def _interval_table(sets: list[SetResult], strategies: list[str], base: str) -> list[str]:
    """AUBC minus ``base``'s per set, with bootstrap intervals."""
    attr = "vs_random" if base == "random" else "vs_margin"
    shown = [s for s in strategies if s != base]
    lines = ["| data set | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
    for r in sets:
        cells = ["{:+.1f} [{:+.1f}, {:+.1f}]".format(*getattr(r, attr)[s]) for s in shown]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _summary_rows(sets: list[SetResult], strategies: list[str], mean: np.ndarray) -> list[str]:
    """One row per strategy, best mean rank first: the goal's terms."""
    n = len(sets)
    lines = [
        "| strategy | mean rank | sets never below random (Holm) | rounds below random (Holm) "
        "| mean AUBC − random | sets AUBC ≥ margin | sets significantly below margin "
        "| worst AUBC − margin | goal (Holm) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i in np.argsort(mean, kind="stable"):
        s = strategies[i]
        rel = reliability(sets, s)
        if "rounds_below" in rel:
            cells = [
                f"{rel['sets_never_below']}/{n} ({rel['sets_never_below_holm']})",
                f"{rel['rounds_below']}/{rel['n_rounds']} ({rel['rounds_below_holm']})",
                f"{rel['mean_vs_random']:+.1f}",
            ]
        else:
            cells = ["—", "—", "—"]
        if "sets_at_least_margin" in rel:
            goal = "—" if s == "random" else "yes" if rel["meets_goal_raw"] else "no"
            goal += f" ({'yes' if rel['meets_goal'] else 'no'})" if s != "random" else ""
            cells += [
                f"{rel['sets_at_least_margin']}/{n}",
                f"{rel['sets_significantly_below_margin']}/{n}" if s != "margin" else "—",
                f"{rel['worst_gap_to_margin']:+.1f}",
                goal,
            ]
        else:
            cells += ["—"] * 4
        lines.append(f"| {s} | {mean[i]:.2f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _noise_floor(sets: list[SetResult]) -> list[str]:
    """What random against itself (a second stream) shows, if it was run."""
    if not all(NOISE_FLOOR in r.below for r in sets):
        return []
    rel = reliability(sets, NOISE_FLOOR)
    width = max(abs(r.vs_random[NOISE_FLOOR][2] - r.vs_random[NOISE_FLOOR][1]) for r in sets)
    return [
        f"Noise floor: `{NOISE_FLOOR}` is random under a second stream of draws. It is "
        f"significantly below random in {rel['rounds_below']} of {rel['n_rounds']} rounds "
        f"({rel['rounds_below_holm']} after Holm over all of them) and on "
        f"{rel['n_sets'] - rel['sets_never_below']} of {rel['n_sets']} sets, by chance alone; "
        f"its widest AUBC interval against random spans {width:.1f} points. It is left out of "
        "the ranks.",
        "",
    ]


def markdown(sets: list[SetResult], title: str, strategies: list[str] | None = None) -> str:
    """The suite report for one group of sets as markdown."""
    strategies = strategies or common_strategies(sets)
    ranks, mean = mean_ranks(sets, strategies)
    p, cd = friedman_nemenyi(ranks)
    level = f"{CONFIDENCE * 100:g} %"
    lines = [f"## {title}", ""]
    lines.append(
        f"{len(sets)} data sets, {len(strategies)} strategies. AUBC: mean over rounds 1–R of "
        "the set's metric (accuracy, or macro-F1 where classes are unbalanced), in %, mean "
        "over seeds. Seeds are paired: every strategy starts a seed from the same labeled set. "
        f"A round is below random when a one-sided paired t-test over the seeds says so "
        f"(p < {ALPHA:g}); intervals are {level} percentile bootstraps over seeds."
    )
    lines.append("")
    head = "| data set (metric, seeds) | " + " | ".join(strategies) + " |"
    lines += [head, "|---|" + "---|" * len(strategies)]
    for r in sets:
        best = max(r.aubc[s] for s in strategies)
        cells = []
        for s in strategies:
            v = f"{r.aubc[s]:.1f}"
            cells.append(f"**{v}**" if r.aubc[s] >= best - 1e-9 else v)
        lines.append(f"| {r.name} ({r.metric}, {r.n_seeds}) | " + " | ".join(cells) + " |")
    lines.append("| **mean rank** | " + " | ".join(f"{m:.2f}" for m in mean) + " |")
    lines.append("")
    has_random = all("random" in r.aubc for r in sets)
    if has_random:
        judged = [s for s in strategies if s != "random"]
        if all(NOISE_FLOOR in r.below for r in sets):
            judged.append(NOISE_FLOOR)
        after = {s: below_after_holm(sets, s) for s in judged}
        lines += [
            "### Rounds significantly below random (in brackets: after Holm over every round "
            "of every set here)",
            "",
            "| data set (rounds) | " + " | ".join(judged) + " |",
            "|---|" + "---|" * len(judged),
        ]
        for i, r in enumerate(sets):
            cells = [f"{r.below[s]} ({after[s][i]})" for s in judged]
            lines.append(f"| {r.name} ({r.n_rounds}) | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _noise_floor(sets)
        lines += [f"### AUBC minus random's (points, {level} bootstrap interval)", ""]
        lines += _interval_table(sets, strategies, "random")
    if all("margin" in r.aubc for r in sets):
        lines += [f"### AUBC minus margin's (points, {level} bootstrap interval)", ""]
        lines += _interval_table(sets, strategies, "margin")
    lines += [
        "### Mean rank (Friedman, Nemenyi) and the reliability goal",
        "",
        f"Friedman p = {p:.2g}; Nemenyi critical difference at α = 0.05: {cd:.2f} "
        "(mean ranks closer than this are not told apart). Goal: no round of any set "
        f"significantly below random, AUBC at least margin's (within {AUBC_TIE:g}) on 3/4 of "
        f"the sets and never more than {MARGIN_SLACK:g} below it; judged with each round's own "
        "test, and in brackets after Holm's adjustment over all rounds of all sets.",
        "",
    ]
    lines += _summary_rows(sets, strategies, mean)
    lines += [
        "### Win / tie / loss over data sets (row vs column, AUBC)",
        "",
        f"AUBC differences within {AUBC_TIE:g} point are ties.",
        "",
        "| | " + " | ".join(strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for a in strategies:
        cells = [
            "—" if a == b else "{}/{}/{}".format(*win_tie_loss_sets(sets, a, b)) for b in strategies
        ]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def plot_cd(mean: np.ndarray, strategies: list[str], cd: float, title: str, path: Path) -> None:
    """A critical-difference diagram: mean ranks on an axis, cliques joined by bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(strategies)
    order = np.argsort(mean, kind="stable")
    lo, hi = 1, max(k, int(np.ceil(mean.max())))
    half = (k + 1) // 2
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.32 * half + 0.4), constrained_layout=True)
    ax.set_xlim(lo - 0.3, hi + 0.3)
    ax.set_ylim(-(half + 2.5), 2.0)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", linewidth=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.25, color="black", linewidth=1)
        ax.text(t, 0.45, str(t), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.4, lo, lo + cd, color="black", linewidth=2)
    ax.text(lo + cd / 2, 1.55, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for j, i in enumerate(order):
        left = j < half
        row = -(j if left else k - 1 - j) - 1.0
        x_text = lo - 0.2 if left else hi + 0.2
        ax.vlines(mean[i], row, 0, color="grey", linewidth=0.8)
        ax.hlines(row, min(mean[i], x_text), max(mean[i], x_text), color="grey", linewidth=0.8)
        bold = "bold" if strategies[i] in ("ralif", "random", "margin") else "normal"
        ax.text(
            x_text,
            row,
            f"{strategies[i]} ({mean[i]:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=9,
            fontweight=bold,
        )
    # Cliques: maximal runs of the rank order whose spread is below CD.
    sorted_ranks = mean[order]
    cliques: list[tuple[int, int]] = []
    for a in range(k):
        b = a
        while b + 1 < k and sorted_ranks[b + 1] - sorted_ranks[a] < cd:
            b += 1
        if b > a and not any(a >= c0 and b <= c1 for c0, c1 in cliques):
            cliques.append((a, b))
    for n, (a, b) in enumerate(cliques):
        y = -0.35 - 0.18 * n
        ax.hlines(y, sorted_ranks[a] - 0.03, sorted_ranks[b] + 0.03, color="black", linewidth=3)
    ax.set_title(title, fontsize=10)
    with open_output(path, "plot", binary=True) as fh:
        fig.savefig(fh, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def make_suite_report(folder: str | os.PathLike) -> dict[str, Any]:
    """Write ``suite-report.md`` and a critical-difference plot per half into ``folder``.

    Returns
    -------
    dict
        ``report`` (path), ``plots`` (paths) and ``summary`` (the mean-rank tables).
    """
    folder = Path(folder)
    sets = load_suite(folder)
    groups = []
    for half in ("tune", "confirm", "extra"):
        members = [r for r in sets if r.half == half]
        if members:
            groups.append((half, members))
    if len(groups) > 1:
        groups.append(("all", sets))
    parts = [
        f"# Benchmark suite: {folder.name}",
        "",
        "Defaults may be chosen on the *tune* half only; the *confirm* half is the honest "
        "estimate of how they do on data nobody tuned on.",
        "",
    ]
    plots = []
    summary = []
    for half, members in groups:
        strategies = common_strategies(members)
        title = f"{half} half" if half in ("tune", "confirm") else f"{half} data sets"
        parts.append(markdown(members, title, strategies))
        ranks, mean = mean_ranks(members, strategies)
        _, cd = friedman_nemenyi(ranks)
        png = folder / f"cd-{half}.png"
        plot_cd(mean, strategies, cd, f"Mean rank over {len(members)} data sets ({title})", png)
        plots.append(png)
        parts.append(f"![critical difference, {title}]({png.name})\n")
        order = np.argsort(mean, kind="stable")
        summary.append(
            f"{title}: "
            + ", ".join(f"{strategies[i]} {mean[i]:.2f}" for i in order)
            + f" (CD {cd:.2f})"
        )
    report = folder / "suite-report.md"
    write_text(report, "\n".join(parts), "suite report")
    return {"report": report, "plots": plots, "summary": "\n".join(summary)}


def is_suite_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds per-data-set result folders rather than one benchmark."""
    folder = Path(folder)
    if (folder / "results.sqlite").is_file() or not folder.is_dir():
        return False
    return any((p / "results.sqlite").is_file() for p in folder.iterdir() if p.is_dir())
