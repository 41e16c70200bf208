#!/usr/bin/env python
"""Evaluate one checkpoint from the config.py of its evaluation folder and write a run record.

Started by scripts/benchmark.py with CKPT=..., which writes `<timestamp>-eval/config.py` (the
config the checkpoint was trained with, set to load it):

    python scripts/test.py work_dirs/coco/retinanet_red50_fpn_1x_coco/<timestamp>-eval/config.py
"""
from __future__ import annotations

import sys

from involution_ops.bench.run_process import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
