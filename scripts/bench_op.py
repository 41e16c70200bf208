#!/usr/bin/env python
"""`make bench-op`: the involution backends against the `unfold` formula in one run (times,
GMAC/s, peak memory, ratios, the targets).

    python scripts/bench_op.py                      # CPU, and CUDA when available
    python scripts/bench_op.py --device cuda --dtype bfloat16

See involution_ops/bench/op_speed.py for what is measured and how.
"""
import sys

from involution_ops.bench.op_speed import main

if __name__ == "__main__":
    sys.exit(main())
