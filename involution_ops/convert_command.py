"""The checkpoint conversion command (scripts/convert_checkpoint.py): official RedNet checkpoints
to this project's layouts.

  imagenet    official mmcls ImageNet checkpoint      -> RedNet backbone file
  paddleclas  PaddleClas RedNet*_pretrained.pdparams  -> RedNet backbone file (no Paddle needed)
  mmdet       official mmdet 2.x RedNet detector      -> mmdet 3.x checkpoint
  mmseg       official mmseg 0.x RedNet segmentor     -> mmseg 1.x checkpoint

Examples:
  python scripts/convert_checkpoint.py paddleclas RedNet50_pretrained.pdparams checkpoints/rednet50_imagenet.pth
  python scripts/convert_checkpoint.py mmdet retinanet_red50.pth out.pth --config det_configs/retinanet_red50_fpn_1x_coco.py

A backbone file holds RedNet keys without prefix (for init_cfg=dict(type='Pretrained',
checkpoint=...)); --keep-head keeps the 1000-class fc for RedNet(depth, num_classes=1000).
The output is never overwritten unless --force, and never when it is the input file itself
(the same path, or the same file through a symbolic or hard link), --force or not.
"""
from __future__ import annotations

import argparse
import os
import sys

from . import conversion
from .safe_load import load_pdparams, load_torch_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/convert_checkpoint.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=["imagenet", "paddleclas", "mmdet", "mmseg"], help="layout of the input file")
    parser.add_argument("src", help="input checkpoint")
    parser.add_argument("out", help="output .pth file")
    parser.add_argument("--keep-head", action="store_true", help="imagenet/paddleclas: keep the classifier fc")
    parser.add_argument(
        "--config", help="mmdet/mmseg: config of the target model; every tensor is then checked against it"
    )
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")
    return parser.parse_args(argv)


def convert(source: str, src: str, keep_head: bool = False, config: str | None = None) -> dict:
    """The converted checkpoint of the `source` layout file `src` (not yet written); `config`
    (mmdet/mmseg) checks every tensor against that config's model."""
    what = f"'{src}'"
    if source == "paddleclas":
        return conversion.convert_paddleclas(load_pdparams(src), keep_head=keep_head, what=what)
    checkpoint = load_torch_file(src)
    if not isinstance(checkpoint, dict):
        raise conversion.CheckpointMismatchError(f"{what} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    if source == "imagenet":
        return conversion.convert_imagenet(checkpoint, keep_head=keep_head, what=what)
    reference = conversion.model_shapes_from_config(config, source) if config else None
    return conversion.convert_legacy_openmmlab(checkpoint, source, reference=reference, what=what)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep_head and args.source not in ("imagenet", "paddleclas"):
        print("error: --keep-head applies to imagenet/paddleclas sources only", file=sys.stderr)
        return 2
    if args.config and args.source not in ("mmdet", "mmseg"):
        print("error: --config applies to mmdet/mmseg sources only", file=sys.stderr)
        return 2
    if conversion.same_file(args.src, args.out):
        print(f"error: {conversion.overwrite_input_message(args.src, args.out)}", file=sys.stderr)
        return 1
    if os.path.exists(args.out) and not args.force:
        print(f"error: '{args.out}' already exists; choose another output path or pass --force", file=sys.stderr)
        return 1
    try:
        converted = convert(args.source, args.src, args.keep_head, args.config)
        conversion.save_checkpoint(converted, args.out, force=args.force, inputs=(args.src,))
    except (ValueError, OSError) as error:  # mismatch, unsafe or unreadable file, missing file, no permission...
        print(f"error: {error}", file=sys.stderr)
        return 1
    arch = converted["meta"]["arch"]
    checked = "every tensor" if args.config or args.source in ("imagenet", "paddleclas") else "the backbone"
    print(
        f"wrote {args.out}: {len(converted['state_dict'])} tensors, RedNet-{arch['depth']} "
        f"(stem involution {arch['stem_kernel_size']}x{arch['stem_kernel_size']}), {checked} checked"
    )
    if "dataset_meta" in converted["meta"]:
        print(f"dataset_meta: {len(converted['meta']['dataset_meta'].get('classes', ()))} classes")
    return 0
