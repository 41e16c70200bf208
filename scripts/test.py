#!/usr/bin/env python
"""Evaluate one checkpoint from the config.py of its evaluation folder and write a run record.

Started by scripts/benchmark.py with CKPT=..., which writes `<timestamp>-eval/config.py` (the
config the checkpoint was trained with, set to load it):

    python scripts/test.py work_dirs/coco/retinanet_red50_fpn_1x_coco/<timestamp>-eval/config.py
"""
from __future__ import annotations

import argparse
import sys

from involution_ops.bench.session import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the evaluation's config.py (its load_from names the checkpoint)")
    args = parser.parse_args(argv)
    return evaluate(args.config)


if __name__ == "__main__":
    sys.exit(main())
