"""The README's compact suite tables from ``ralif bench --suite`` folders.

Run:  .venv/bin/python benchmarks/suite_tables.py runs/suite/tune runs/suite/confirm

For each folder: AUBC (the set's metric, mean over seeds, %) of the main strategies with
the best in bold and the default's rounds significantly below random; then each
strategy's mean rank and reliability terms over the folder's data sets
(:func:`ralif.bench.suite_report.reliability`).
"""

from __future__ import annotations

import sys

import numpy as np

from ralif.bench.suite_report import (
    common_strategies,
    friedman_nemenyi,
    load_suite,
    mean_ranks,
    reliability,
)

MAIN = (
    "random", "margin", "typiclust", "badge", "margin_kmeans", "ralif_influence",
    "ralif_spread", "typiclust_ralif5", "ralif",
)  # fmt: skip


def tables(folder: str) -> str:
    sets = load_suite(folder)
    shown = [s for s in MAIN if all(s in r.aubc for r in sets)]
    every = common_strategies(sets)
    lines = [
        "| data set (metric) | " + " | ".join(shown) + " | `ralif` rounds below random |",
        "|---|" + "---|" * (len(shown) + 1),
    ]
    for r in sets:
        best = max(r.aubc[s] for s in shown)
        cells = [
            f"**{r.aubc[s]:.1f}**" if r.aubc[s] >= best - 1e-9 else f"{r.aubc[s]:.1f}"
            for s in shown
        ]
        below = r.below.get("ralif", 0)
        lines.append(
            f"| {r.name} ({r.metric}) | " + " | ".join(cells) + f" | {below}/{r.n_rounds} |"
        )
    ranks, mean = mean_ranks(sets, every)
    p, cd = friedman_nemenyi(ranks)
    rank = dict(zip(every, mean, strict=True))
    lines += [
        "",
        f"{len(sets)} sets, {len(every)} strategies, {sets[0].n_seeds} seeds; Friedman "
        f"p = {p:.2g}, Nemenyi critical difference {cd:.2f}.",
        "",
        f"| strategy | mean rank (of {len(every)}) | sets never below random (Holm) | rounds "
        "below random (Holm) | mean AUBC − random | sets AUBC ≥ margin | worst AUBC − margin "
        "| goal (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(every, key=lambda s: rank[s]):
        rel = reliability(sets, s)
        if s == "random":
            rounds, never, gain = "—", "—", "—"
        else:
            never = f"{rel['sets_never_below']}/{len(sets)} ({rel['sets_never_below_holm']})"
            rounds = f"{rel['rounds_below']}/{rel['n_rounds']} ({rel['rounds_below_holm']})"
            gain = f"{rel['mean_vs_random']:+.1f}"
        lines.append(
            f"| {s} | {rank[s]:.2f} | {never} | {rounds} | {gain} | "
            f"{rel.get('sets_at_least_margin', '—')}/{len(sets)} | "
            f"{rel.get('worst_gap_to_margin', np.nan):+.1f} | "
            f"{'yes' if rel.get('meets_goal_raw') else 'no'} "
            f"({'yes' if rel.get('meets_goal') else 'no'}) |"
        )
    return "\n".join(lines)


MECHANISMS = (
    "ralif_macro", "ralif_random10", "ralif_random25", "ralif_random50", "typiclust_ralif5",
    "typiclust_ralif10", "albl",
)  # fmt: skip


def decision(tune: str, confirm: str, default: str = "ralif") -> str:
    """The rule of benchmarks/results/suite-rule.md: a mechanism replaces the default only
    with no more rounds significantly below random and a better mean rank on both halves."""
    halves = {"tune": load_suite(tune), "confirm": load_suite(confirm)}
    terms = {}
    for half, sets in halves.items():
        every = common_strategies(sets)
        _, mean = mean_ranks(sets, every)
        rank = dict(zip(every, mean, strict=True))
        terms[half] = {
            s: (reliability(sets, s)["rounds_below"], rank[s]) for s in every if s != "random"
        }
    lines = [
        f"| mechanism | tune: rounds below, rank (`{default}`: {{}}) | confirm: rounds below, rank "
        f"(`{default}`: {{}}) | beats `{default}` on both halves |",
        "|---|---|---|---|",
    ]
    lines[0] = lines[0].format(
        *(f"{terms[h][default][0]}, {terms[h][default][1]:.2f}" for h in halves)
    )
    for m in MECHANISMS:
        if not all(m in terms[h] for h in halves):
            continue
        beats = all(
            terms[h][m][0] <= terms[h][default][0] and terms[h][m][1] < terms[h][default][1]
            for h in halves
        )
        cells = [f"{terms[h][m][0]}, {terms[h][m][1]:.2f}" for h in halves]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {'yes' if beats else 'no'} |")
    return "\n".join(lines)


def both_halves(tune: str, confirm: str) -> str:
    """One row per strategy: each half's mean rank, sets and rounds below random (after
    Holm in brackets), mean AUBC gain over random, sets at least margin's, worst gap."""
    halves = [load_suite(tune), load_suite(confirm)]
    ranks = []
    for sets in halves:
        every = common_strategies(sets)
        _, mean = mean_ranks(sets, every)
        ranks.append(dict(zip(every, mean, strict=True)))
    order = sorted(ranks[0], key=lambda s: ranks[0][s])
    lines = [
        "| strategy | tune: rank · sets with a round below random · rounds below · gain · ≥ margin "
        "· worst | confirm: the same |",
        "|---|---|---|",
    ]
    for s in order:
        cells = []
        for sets, rank in zip(halves, ranks, strict=True):
            if s not in rank:
                cells.append("not run")
                continue
            rel = reliability(sets, s)
            n = len(sets)
            if s == "random":
                below = "— · — · —"
            else:
                below = (
                    f"{n - rel['sets_never_below']} ({n - rel['sets_never_below_holm']}) · "
                    f"{rel['rounds_below']} ({rel['rounds_below_holm']}) · "
                    f"{rel['mean_vs_random']:+.1f}"
                )
            cells.append(
                f"{rank[s]:.2f} · {below} · {rel['sets_at_least_margin']}/{n} · "
                f"{rel['worst_gap_to_margin']:+.1f}"
            )
        lines.append(f"| `{s}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(f"## {folder}\n")
        print(tables(folder))
        print()
    if len(sys.argv) == 3:
        print("## Both halves\n")
        print(both_halves(*sys.argv[1:]))
        print()
        print("## The rule for changing the default (benchmarks/results/suite-rule.md)\n")
        print(decision(*sys.argv[1:]))
