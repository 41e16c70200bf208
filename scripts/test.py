#!/usr/bin/env python
"""Evaluate one checkpoint from the config.py of its evaluation folder and write a run record.

Started by scripts/benchmark.py with CKPT=..., which writes `<timestamp>-eval/config.py` (the
config the checkpoint was trained with, set to load it):

    python scripts/test.py work_dirs/coco/retinanet_red50_fpn_1x_coco/<timestamp>-eval/config.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not
from involution_ops.bench.runconfig import RunConfigError  # noqa: E402
from involution_ops.bench.session import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the evaluation's config.py (its load_from names the checkpoint)")
    args = parser.parse_args(argv)
    try:
        return evaluate(args.config)
    except RunConfigError as error:  # the config does not load: one line, not mmengine's chained tracebacks
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the evaluation stopped; run the same command again", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
