"""The benchmark report's markdown, byte for byte against reports written before its
tables were split into functions of their own (tests/data/report_*.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ralif.bench.report import load_curves, markdown, summary

DATA = Path(__file__).parent / "data"


def small_benchmark_rows(strategies: list[str], deep: bool, seed: int = 0) -> list[dict]:
    """Result rows of a small benchmark: 4 seeds x 5 rounds, seeded accuracies and timings.

    Seed 3 stops a round short for the first strategy, so the report covers rounds 0-3.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s_i, strategy in enumerate(strategies):
        for run_seed in range(4):
            for k in range(5):
                if run_seed == 3 and s_i == 0 and k == 4:
                    continue
                acc = 0.5 + 0.05 * k + 0.01 * s_i + rng.normal(scale=0.01)
                row = {
                    "strategy": strategy,
                    "seed": run_seed,
                    "round": k,
                    "n_labeled": 20 + 10 * k,
                    "accuracy": float(acc),
                    "macro_f1": float(acc - 0.03 + rng.normal(scale=0.005)),
                    "select_seconds": float(rng.uniform(0.01, 0.2)),
                    "fit_seconds": float(rng.uniform(0.05, 0.3)),
                }
                if deep:
                    row["net_accuracy"] = float(acc + rng.normal(scale=0.02))
                    row["train_seconds"] = float(rng.uniform(1, 3))
                    row["extract_seconds"] = float(rng.uniform(0.1, 0.5))
                rows.append(row)
    return rows


CASES = {
    "fixed": (["ralif", "margin", "entropy", "random"], False),
    "fixed_no_random": (["ralif", "margin"], False),
    "deep": (["ralif", "badge", "random"], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_report_markdown_is_byte_identical_to_the_reference(case):
    strategies, deep = CASES[case]
    md, table = markdown(load_curves(small_benchmark_rows(strategies, deep)), "a small benchmark")
    assert md == (DATA / f"report_{case}.md").read_text(encoding="utf-8")
    assert table == (DATA / f"report_{case}_aubc.md").read_text(encoding="utf-8")


def test_summary_is_byte_identical_to_the_reference():
    rows = small_benchmark_rows(*CASES["fixed"])
    expected = (DATA / "report_summary.md").read_text(encoding="utf-8")
    assert summary(rows, ["ant", "bee"]) == expected
