#!/usr/bin/env python
"""Train one run from the config.py in its run folder, test it, and write its run record.

Started by scripts/benchmark.py (plain python for one process, torchrun or srun for several),
which builds the run's config, checks it and dumps it into a new run folder:

    python scripts/train.py work_dirs/coco/retinanet_red50_fpn_1x_coco/<timestamp>/config.py
    python scripts/train.py <that run folder>/config.py --resume     # continue from its last checkpoint

The file holds everything the run needs (data root, launcher, seed, ...); nothing here changes it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not
from involution_ops.bench.runconfig import LAUNCHED_ENV, RunConfigError  # noqa: E402
from involution_ops.bench.session import train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the run's config.py (in its run folder)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    args = parser.parse_args(argv)
    try:
        return train(args.config, resume=args.resume)
    except RunConfigError as error:  # the config does not load: one line, not mmengine's chained tracebacks
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if not os.environ.get(LAUNCHED_ENV):  # else scripts/benchmark.py says how to resume
            print(f"\ninterrupted: continue from the last checkpoint with: python scripts/train.py "
                  f"{args.config} --resume", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
