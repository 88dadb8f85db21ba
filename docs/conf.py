"""Sphinx configuration: `python -m sphinx -W -b html docs <dir>` (pip install -e ".[docs]")."""
import os
import shutil
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
import fastmi  # noqa: E402  (after the path, so that the checkout is documented)

project = "fastmi"
release = version = fastmi.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon",
              "sphinx.ext.mathjax"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # .rst: autosummary's stubs
exclude_patterns = ["_build", "_figures/README.md"]
myst_heading_anchors = 4  # README-style #section links
myst_enable_extensions = ["dollarmath"]
napoleon_google_docstring, napoleon_numpy_docstring = True, False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures carry the defaults; the docstrings say the types
autosummary_generate = True
html_theme = "furo"
html_title = f"fastmi {release}"

# The measured figures live with their results (bench/results, experiments/results): copied in at build time.
FIGURES = ["bench/results/accuracy_estimators.png", "bench/results/default_cpu.png",
           "experiments/results/paper_digits.png"]
os.makedirs(os.path.join(ROOT, "docs", "_figures"), exist_ok=True)
for figure in FIGURES:
    shutil.copy(os.path.join(ROOT, figure), os.path.join(ROOT, "docs", "_figures", os.path.basename(figure)))
