#!/usr/bin/env python
"""Generate the built-in toy datasets: COCO-format detection and a Cityscapes layout.

    python scripts/make_toy_data.py --out data/toy --kind all

The generator is involution_ops/bench/toy_data.py.
"""
from __future__ import annotations

import sys

from involution_ops.bench.toy_data import main

if __name__ == "__main__":
    sys.exit(main())
