"""The README's compact suite tables from ``ralif bench --suite`` folders.

Run:  .venv/bin/python benchmarks/suite_tables.py runs/tune runs/confirm

For each folder: AUBC (the set's metric, mean over seeds, %) of the main strategies with
the best in bold, RALIF's rounds at or above random (within 0.3 points), and each
strategy's mean rank and reliability over the folder's data sets.
"""

from __future__ import annotations

import sys

import numpy as np

from ralif.bench.suite_report import load_suite, mean_ranks, reliability

MAIN = (
    "random", "margin", "entropy", "badge", "margin_kmeans", "cluster_margin",
    "ralif_influence", "ralif_expected", "ralif",
)  # fmt: skip


def tables(folder: str) -> str:
    sets = load_suite(folder)
    shown = [s for s in MAIN if all(s in r.aubc for r in sets)]
    every = [s for s in sets[0].aubc if all(s in r.aubc for r in sets)]
    lines = [
        "| data set (metric) | " + " | ".join(shown) + " | `ralif` rounds ≥ random |",
        "|---|" + "---|" * (len(shown) + 1),
    ]
    for r in sets:
        best = max(r.aubc[s] for s in shown)
        cells = [
            f"**{r.aubc[s]:.1f}**" if r.aubc[s] >= best - 1e-9 else f"{r.aubc[s]:.1f}"
            for s in shown
        ]
        ok = r.rounds_ok.get("ralif", 0)
        lines.append(f"| {r.name} ({r.metric}) | " + " | ".join(cells) + f" | {ok}/{r.n_rounds} |")
    _, mean = mean_ranks(sets, every)
    rank = dict(zip(every, mean, strict=True))
    lines += [
        "",
        f"| strategy | mean rank (of {len(every)}) | sets with every round ≥ random | rounds ≥ random "
        "| sets AUBC ≥ margin − 0.1 | worst AUBC − margin |",
        "|---|---|---|---|---|---|",
    ]
    for s in sorted(every, key=lambda s: rank[s]):
        rel = reliability(sets, s)
        rounds = sum(r.rounds_ok.get(s, 0) for r in sets)
        total = sum(r.n_rounds for r in sets)
        lines.append(
            f"| {s} | {rank[s]:.2f} | {rel['sets_all_rounds_ok']}/{len(sets)} | "
            f"{rounds}/{total} | {rel.get('sets_at_least_margin', '—')}/{len(sets)} | "
            f"{rel.get('worst_gap_to_margin', np.nan):+.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(f"## {folder}\n")
        print(tables(folder))
        print()
