#!/usr/bin/env python
"""`make flops`: parameters and FLOPs of every model of the paper and its baselines.

    python scripts/get_flops.py --out results/complexity.json --table results/complexity.md

The models are the manifest's (results/paper.yaml); the counting, its conventions and
the notes under the table are in involution_ops/bench/flops.py.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from involution_ops.bench import flops, zoo

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results/complexity.json", help="rows as JSON")
    parser.add_argument("--table", type=Path, default=ROOT / "results/complexity.md", help="markdown table")
    parser.add_argument("--paper", type=Path, default=zoo.PAPER_YAML, help="the manifest with the published values")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="count only these rows (names as in the table)")
    parser.add_argument("--no-notes", action="store_true", help="skip the diagnostic counts behind the notes")
    args = parser.parse_args(argv)
    # deprecation chatter of the OpenMMLab builders, irrelevant to the counts
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mm(cv|det|engine|seg)\b")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    if not args.paper.is_file():
        parser.error(f"--paper {args.paper}: no such file (the model manifest, results/paper.yaml)")
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        table = flops.make_flops(zoo.load(args.paper), args.out, args.table, args.only, not args.no_notes, progress)
    except ValueError as error:
        parser.error(str(error))
    print(table)
    progress(f"wrote {args.out} and {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
