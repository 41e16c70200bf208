"""`make tables`, `involution-tables`: the command line of results/README.md.

    python scripts/make_tables.py --runs results/runs --complexity results/complexity.json \
        --paper results/paper.yaml --out results/README.md --plot results/complexity.png \
        --speed results/speed.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .readme import make_tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write results/README.md: our runs and complexity figures "
                                                 "beside the paper's.")
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="folder of run records")
    parser.add_argument("--complexity", type=Path, default=Path("results/complexity.json"))
    parser.add_argument("--paper", type=Path, default=Path("results/paper.yaml"))
    parser.add_argument("--out", type=Path, default=Path("results/README.md"))
    parser.add_argument("--plot", type=Path, default=Path("results/complexity.png"),
                        help="AP-against-GFLOPs figure")
    parser.add_argument("--speed", type=Path, default=Path("results/speed.json"),
                        help="measured speed and memory of `make bench` (left out when absent)")
    parser.add_argument("--plots-dir", type=Path, default=None,
                        help="folder for the loss curve of each toy run (default: plots/ beside --out)")
    args = parser.parse_args(argv)
    if not args.paper.is_file():
        parser.error(f"--paper {args.paper}: no such file (the published numbers, results/paper.yaml)")
    try:
        warnings = make_tables(args.runs, args.complexity, args.paper, args.out, args.plot, args.plots_dir,
                               args.speed)
    except ValueError as error:
        parser.error(str(error))
    print(f"make_tables: wrote {args.out}" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 0
