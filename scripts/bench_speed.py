#!/usr/bin/env python
"""`make bench`: inference latency, images/s, training-step time and peak memory of every
paper model next to its ResNet baseline, interleaved in one run; writes results/speed.json
(an earlier one is kept under results/speed/) and prints the markdown table.

    python scripts/bench_speed.py --suite imagenet               # the ImageNet rows
    python scripts/bench_speed.py --models retinanet_red50_fpn_1x_coco --options eager fuse_conv_bn
    python scripts/bench_speed.py --device cuda                  # every model, on a GPU

See involution_ops/bench/speed/ for what is measured and how.
"""
import sys

from involution_ops.bench.speed.cli import main

if __name__ == "__main__":
    sys.exit(main())
