#!/usr/bin/env python
"""`make cuda-static`: results/cuda_static.md, the CUDA kernels' registers, spills and SASS per
multiply-add and per output, no GPU needed (involution_ops/ops/cuda_static.py).

    python scripts/cuda_static.py                    # results/cuda_static.md
    python scripts/cuda_static.py --output /tmp/x.md
"""
import sys

from involution_ops.ops.cuda_static import main

if __name__ == "__main__":
    sys.exit(main())
