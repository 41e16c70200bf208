#!/usr/bin/env python
"""`make bench-op`: the involution backends against the `unfold` formula in one run (times,
GMAC/s, peak memory, ratios, the targets).

    python scripts/bench_op.py                      # CPU, and CUDA when available
    python scripts/bench_op.py --device cuda --dtype bfloat16

See involution_ops/bench/op_speed.py for what is measured and how.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not
from involution_ops.bench.op_speed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
