"""Sphinx configuration of ralif's documentation (built by ``bash scripts/docs.sh``).

The build is offline: no intersphinx, no remote images or fonts, and ``-W --keep-going -n``
(warnings are errors, every cross-reference must resolve).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT / "src"))  # the checkout's ralif, even if .venv holds another

# The gallery's scripts run in this process: one thread unless told otherwise (threads that
# spin while the cores are busy with other work cost more than they give on small data).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import ralif  # noqa: E402

project = "ralif"
author = "the ralif developers"
copyright = "2026, the ralif developers"
release = ralif.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    # The guide pages (getting started, the user guide, results) are Markdown moved out of
    # README.md; myst-parser reads them as they are, so they need no rewrite into rst.
    "myst_parser",
    "argparse_reference",  # docs/_ext/: the CLI reference, generated from the parsers
    "ralif_xref",  # docs/_ext/: references by the names objects are defined under
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# -- MyST ------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # README-style links to "#a-section-title" keep working

# -- API reference ---------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
# A method without a docstring of its own (a strategy's ``plan``) is left out rather than
# shown with its base class's text, which the base class's page already has.
autodoc_inherit_docstrings = False


# The numpydoc "Parameters" sections are the documented types. Annotations (being added to
# the signatures) would repeat them and, under -n, turn every private or third-party type
# they name into a broken reference.
autodoc_typehints = "none"
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Nitpicky mode ---------------------------------------------------------------------
# Every reference to ralif must resolve. References to numpy, scikit-learn, the standard
# library and other third-party packages cannot (intersphinx would download their
# inventories, and the build is offline), so they are ignored by name here; they show as
# code. (Today only sklearn's BaseEstimator and ConvergenceWarning are referenced.)
nitpicky = True
_THIRD_PARTY = (
    "np", "numpy", "scipy", "sklearn", "pandas", "pyarrow", "dask", "distributed", "torch",
    "matplotlib", "flask", "sqlite3", "argparse", "os", "pathlib", "collections", "typing",
    "dataclasses", "io", "concurrent", "threading", "contextlib", "csv",
)  # fmt: skip
nitpick_ignore_regex = [
    # Private names (a component starting with "_") are not documented; a docstring that
    # mentions one shows it as code.
    ("py:.*", r"(.*\.)?_[A-Za-z0-9].*"),
    # ralif's internal names that public docstrings mention, not in the API reference.
    ("py:.*", r"ralif\.(deep|models|io|pools\.devices)(\..*)?"),
    ("py:.*", r"(BlockRunner|ordered_files)"),
    ("py:.*", rf"({'|'.join(_THIRD_PARTY)})(\..*)?"),
]

# -- Gallery ---------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every plot_*.py is executed at build time
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "gallery_order.ExampleOrder",  # docs/_ext/gallery_order.py
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "min_reported_time": 0,
    # Each example's page gives its running time; the summary pages would load jQuery and
    # DataTables from CDNs, which an offline reader does not have.
    "write_computation_times": False,
}

# -- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ralif {release}"
html_static_path: list[str] = []
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_show_sourcelink = True
html_last_updated_fmt = None


def _skip_borrowed_functions(app, what, name, obj, skip, options):
    """Leave out a function defined elsewhere and only stored on a class (a strategy's
    ``measure = staticmethod(margin)``): it is documented where it is defined."""
    qualname = getattr(obj, "__qualname__", "")
    if what == "class" and inspect.isfunction(obj) and "." not in qualname:
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_borrowed_functions)
