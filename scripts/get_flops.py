#!/usr/bin/env python
"""`make flops`: parameters and FLOPs of every model of the paper and its baselines.

    python scripts/get_flops.py --out results/complexity.json --table results/complexity.md

The models are the manifest's (results/paper.yaml); the counting, its conventions and
the notes under the table are in involution_ops/bench/flops.py.
"""
from __future__ import annotations

import sys

from involution_ops.bench.flops import main

if __name__ == "__main__":
    sys.exit(main())
