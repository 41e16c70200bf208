#!/usr/bin/env python
"""Generate the built-in toy datasets: COCO-format detection and a Cityscapes layout.

    python scripts/make_toy_data.py --out data/toy --kind all

The generator is involution_ops/bench/toy_data.py.
"""
from __future__ import annotations

import argparse
import sys

from involution_ops.bench.toy_data import WRITERS, ensure_toy_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/toy", help="output root (default: data/toy)")
    parser.add_argument("--kind", default="all", choices=["coco", "cityscapes", "all"])
    args = parser.parse_args(argv)
    kinds = list(WRITERS) if args.kind == "all" else [args.kind]
    for kind in kinds:
        path = ensure_toy_data(args.out, kind)
        print(f"[make_toy_data] {kind}: {path} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
