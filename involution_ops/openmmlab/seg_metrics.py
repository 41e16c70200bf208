"""mmseg's IoU metric, also returning the IoU of every class. Registered with the models
by ``custom_imports = dict(imports=['involution_ops.mmseg'])``; use it as
``val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])``.

mmseg's ``IoUMetric`` only logs its per-class table; the run records need the
numbers. ``PerClassIoUMetric`` returns mmseg's own summary (``aAcc``, ``mIoU``,
``mAcc``, unchanged) plus one ``IoU.<class name>`` entry per class, in percent
like the summary. A class that occurs neither in the ground truth nor in the
predictions has no IoU; it gets NaN, which mmseg's ``mIoU`` skips as well.
"""
from __future__ import annotations

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

__all__ = ["PerClassIoUMetric", "PER_CLASS_PREFIX"]

PER_CLASS_PREFIX = "IoU."


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """``IoUMetric`` whose result also holds ``IoU.<class>`` (percent, NaN when undefined)."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        # each result is (area_intersect, area_union, area_pred, area_label), per class
        intersect = sum(result[0] for result in results)
        union = sum(result[1] for result in results)
        intersect = np.asarray(intersect, dtype=np.float64)
        union = np.asarray(union, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, intersect / union, np.nan)
        for name, value in zip(self.dataset_meta["classes"], iou):
            metrics[PER_CLASS_PREFIX + name] = float(np.round(value * 100, 2))
        return metrics
