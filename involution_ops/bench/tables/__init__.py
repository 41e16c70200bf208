"""`make tables`: results/README.md, our runs and complexity figures beside the paper's.

- `inputs`: run records and complexity rows read and checked (`Run`, `Results`);
- `paper_tables`: the per-suite tables and the ResNet baselines, each with its footnotes;
- `plots`: the matplotlib figures;
- `readme`: the whole file (`make_tables`), with the other-data and toy-run lists;
- `cli`: the command line (`main`).
"""
from .cli import main
from .readme import GENERATED_MARKER, make_tables

__all__ = ["GENERATED_MARKER", "main", "make_tables"]
