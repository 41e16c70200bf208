#!/usr/bin/env python
"""Convert official RedNet checkpoints to this project's layouts (`--help` lists the sources).

  python scripts/convert_checkpoint.py paddleclas RedNet50_pretrained.pdparams checkpoints/rednet50_imagenet.pth
  python scripts/convert_checkpoint.py mmdet retinanet_red50.pth out.pth --config det_configs/retinanet_red50_fpn_1x_coco.py

The conversions are involution_ops/conversion.py; the command is involution_ops/convert_command.py.
"""
from __future__ import annotations

import sys

from involution_ops.convert_command import main

if __name__ == "__main__":
    sys.exit(main())
