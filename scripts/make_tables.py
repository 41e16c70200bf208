#!/usr/bin/env python
"""`make tables`: results/README.md, our runs and complexity figures beside the paper's
(involution_ops/bench/tables/; `--help` for the options).
"""
import sys

from involution_ops.bench.tables import main

if __name__ == "__main__":
    sys.exit(main())
