#!/usr/bin/env python
"""Train one run from the config.py in its run folder, test it, and write its run record.

Started by scripts/benchmark.py (plain python for one process, torchrun or srun for several),
which builds the run's config, checks it and dumps it into a new run folder:

    python scripts/train.py work_dirs/coco/retinanet_red50_fpn_1x_coco/<timestamp>/config.py
    python scripts/train.py <that run folder>/config.py --resume     # continue from its last checkpoint

The file holds everything the run needs (data root, launcher, seed, ...); nothing here changes it.
"""
from __future__ import annotations

import sys

from involution_ops.bench.run_process import train_main

if __name__ == "__main__":
    sys.exit(train_main())
