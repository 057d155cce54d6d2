"""The order of the gallery: one query first, the benchmark suite last.

Named in ``sphinx_gallery_conf["within_subsection_order"]`` as a string, which Sphinx can
cache (a function defined in conf.py could not be pickled).
"""

from __future__ import annotations

ORDER = (
    "plot_query_digits.py",
    "plot_learning_curves.py",
    "plot_influence_vs_refit.py",
    "plot_streamed_pool.py",
    "plot_custom_strategy.py",
    "plot_suite_cd.py",
)


class ExampleOrder:
    """Sort key: the examples of :data:`ORDER` in that order, then any other by name."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        return (ORDER.index(filename) if filename in ORDER else len(ORDER), filename)

    def __repr__(self) -> str:  # sphinx-gallery compares configurations by repr
        return "ExampleOrder()"
