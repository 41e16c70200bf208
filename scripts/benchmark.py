#!/usr/bin/env python
"""Train and evaluate the paper's models of one suite, as the `make coco-*` / `cityscapes-*` targets do.

    python scripts/benchmark.py coco retinanet                  # built-in toy data if data/coco is absent
    python scripts/benchmark.py coco all --data /datasets/coco --gpus 8
    python scripts/benchmark.py cityscapes fpn --ckpt work_dirs/.../iter_80000.pth

Every check on data and weights runs before the first training starts. Each run gets its own
folder `<work-dir>/<suite>/<config name>/<timestamp>` holding the config.py it trains with, and
leaves a record in results/runs/. `--help` lists the options; the launcher is the package
involution_ops/bench/launch/ (its command line: launch/cli.py).
"""
from __future__ import annotations

import sys

from involution_ops.bench.launch.cli import main

if __name__ == "__main__":
    sys.exit(main())
