"""Training-time guard for unreadable images: skip them with a warning and count them.

`guard_train_pipeline` swaps ``LoadImageFromFile`` in the training pipeline for
`SkipUnreadableImage`, which returns ``None`` for an image that does not load or is truncated.
mmengine's ``BaseDataset.__getitem__`` (training mode) then draws another index (up to
``max_refetch`` times), so one bad file out of many does not stop a run. Every skip is appended as
one line to ``<run folder>/skipped_images.txt`` (from every process and dataloader worker), which
the training session counts into the run record. Test pipelines are not guarded: evaluating on a
different set of images would change the metrics, so there a bad image stays an error (the
pre-flight reads every test image's bytes first).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

from .file_facts import image_problem
from .mmconfig import wrapped_datasets

GUARD = "SkipUnreadableImage"
LOG_NAME = "skipped_images.txt"
_LOADERS = {"LoadImageFromFile", "mmcv.LoadImageFromFile", "mmdet.LoadImageFromFile", "mmseg.LoadImageFromFile"}


class SkipUnreadableImage(LoadImageFromFile):
    """``LoadImageFromFile`` that answers ``None`` (skip) instead of raising for a bad image."""

    def __init__(self, skip_log: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_log = skip_log

    def transform(self, results: dict) -> dict | None:
        path = results.get("img_path")
        try:
            loaded = super().transform(results)
            reason = None if loaded is not None else "no image decoded"
        except Exception as error:  # decoder errors, the missing-file error, mmcv's "failed to load"
            loaded, reason = None, f"{type(error).__name__}: {error}"
        if loaded is not None and isinstance(path, str) and os.path.isfile(path):
            # OpenCV decodes a truncated JPEG into a partly grey image without an error
            reason = image_problem(path)
        if reason is None:
            return loaded
        print_log(f"skipping unreadable training image {path} ({reason}); another image is drawn instead",
                  logger="current", level=logging.WARNING)
        if self.skip_log:
            line = f"{path}\t{' '.join(reason.split())}\n"
            with open(self.skip_log, "a") as log:  # one short append per line: processes do not interleave
                log.write(line)
        return None


TRANSFORMS.register_module(name=GUARD, module=SkipUnreadableImage, force=True)


def guard_train_pipeline(cfg: Any, run_dir: str) -> int:
    """Swap the image loader of the training pipeline(s) for the guard; the number swapped."""
    swapped = 0
    for dataset in wrapped_datasets(cfg.get("train_dataloader")):
        for step in dataset.get("pipeline") or []:
            if isinstance(step, dict) and step.get("type") in _LOADERS:
                step["type"] = GUARD
                step["skip_log"] = str(Path(run_dir) / LOG_NAME)
                swapped += 1
    return swapped


def skipped_images(run_dir: str | Path) -> tuple[int, list[str]]:
    """(skips, distinct files) logged in a run folder (over every session of a resumed run)."""
    log = Path(run_dir) / LOG_NAME
    if not log.is_file():
        return 0, []
    paths = [line.split("\t", 1)[0] for line in log.read_text().splitlines() if line.strip()]
    return len(paths), sorted(set(paths))
