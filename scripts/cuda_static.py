#!/usr/bin/env python
"""Write results/cuda_static.md: the CUDA kernels compiled with NVRTC (the one CuPy uses)
for sm_90, disassembled with nvdisasm, and counted against the naive constant-shape
baseline and the generic kernels; no GPU needed. See involution_ops/ops/cuda_static.py.

    python scripts/cuda_static.py                    # results/cuda_static.md
    python scripts/cuda_static.py --output /tmp/x.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from involution_ops.ops import cuda_static  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "cuda_static.md")
    args = parser.parse_args(argv)
    try:
        cuda_static.write_report(args.output)
    except cuda_static.StaticAnalysisError as error:
        print(f"cuda-static: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
