"""The documented file formats are the code's: each list of columns in the user guide (the
manual moved there from the README) is checked against the code that writes it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

GUIDE = Path(__file__).parents[1] / "docs" / "guide"


def _columns_after(marker: str, page: str) -> list[str]:
    """The comma-separated names in the first code span after ``marker`` on a guide page."""
    text = (GUIDE / page).read_text(encoding="utf-8")
    at = text.index(marker) + len(marker)
    span = re.search(r"`([^`]+)`", text[at:].replace("\n  ", " ").replace("\n", " "))
    assert span, marker
    return [c.strip() for c in span.group(1).split(":")[0].split(",")]


def test_the_results_csv_columns_are_the_stores():
    from ralif.bench.store import COLUMNS

    assert _columns_after("`OUT/results.csv` (", "benchmarks.md") == list(COLUMNS)


def test_the_further_metrics_are_the_codes():
    from ralif.metrics import ALWAYS, METRICS

    listed = _columns_after(
        "further test metric asked for with `--metrics`\n  (any of ", "benchmarks.md"
    )
    assert listed == [m for m in METRICS if m not in ALWAYS]


def test_the_export_columns_are_the_sessions(tmp_path):
    from ralif.session.store import create_session

    np.save(tmp_path / "X.npy", np.zeros((3, 2)))
    s = create_session(tmp_path / "s.db", tmp_path / "X.npy", 3, ["a", "b"])
    try:
        header, _ = s.labels_for_export()
        with_items, _ = s.labels_for_export(with_items=True)
    finally:
        s.close()
    shown = _columns_after("`session export` writes one row per labeled item: ", "sessions.md")
    assert shown == header
    assert with_items[len(header) :] == ["path", "text"]


def test_the_select_output_columns_are_the_commands(tmp_path, capsys):
    from ralif.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.normal(size=(40, 3)))
    np.save(tmp_path / "y.npy", np.r_[np.arange(10) % 2, np.full(30, -1)])
    argv = ["select", "--features", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")]
    assert main([*argv, "--budget", "2", "--l2", "0.1", "--predictions"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    shown = _columns_after("- Output: one row per pick, ", "selecting.md")
    assert header[: len(shown)] == shown
    assert header[len(shown) :] == _columns_after("`--predictions` adds ", "selecting.md")
