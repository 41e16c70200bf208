"""Pre-flight checks: everything about data and weights that would stop a run, found before the
first run starts, on the very config that run will train with (involution_ops.bench.runconfig).

Every problem is one `PreflightError` whose message names the file and the fix.

* `orchestration`: the pre-flight of one launch, in order (`run_preflight`).
* `coco`, `cityscapes`: each split's data as mmdet / mmseg will load it; `images`: file reads
  within a time budget.
* `weights`: PRETRAINED, the configs' Pretrained files and CKPT; `checkpoint_fit`, the one test
  that a checkpoint fits a whole model.
* `options`: the launch options (launch arguments, AMP).
* `cache`: `PreflightCache`, what one launch has read; `errors`: `PreflightError`.

The checks themselves are pure functions in involution_ops.bench.data_checks, file_facts,
weight_checks and config_checks.
"""
from .errors import PreflightError  # noqa: I001 (first: the check modules' errors derive from it)
from .cache import PreflightCache
from .cityscapes import TRAIN_ID_FIX, check_cityscapes
from .coco import check_coco, model_num_classes
from .images import IMAGE_CHECK_BUDGET_S
from .options import check_amp, check_launch_options
from .orchestration import run_preflight
from .weights import (CONVERT_HINT, CheckpointFit, check_pretrained, checkpoint_fit, local_path,
                      match_checkpoint, read_weights, require_checkpoint_file, require_pretrained_file)

__all__ = ["CONVERT_HINT", "IMAGE_CHECK_BUDGET_S", "TRAIN_ID_FIX", "CheckpointFit", "PreflightCache", "PreflightError",
           "check_amp", "check_cityscapes", "check_coco", "check_launch_options", "check_pretrained",
           "checkpoint_fit", "local_path", "match_checkpoint", "model_num_classes", "read_weights",
           "require_checkpoint_file", "require_pretrained_file", "run_preflight"]
