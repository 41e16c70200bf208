"""The tables that set our figures beside the paper's: one per suite (params, GFLOPs, accuracy,
the gains over ResNet) and the ResNet baselines. Rows are built by column name; each table
returns its own footnotes (complexity notes †, runs at another total batch ‡) under it."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..cells import NO_VALUE, fmt, fmt_signed, number, table_of_rows
from .inputs import Results, Run

OLDER_RUN = "↳ older run"


def difference(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


def reduction_pct(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return (1.0 - value / baseline) * 100.0


def run_link(run: Run, out_dir: Path) -> str:
    """The run's cell: its time stamp linking its record, flagged ‡ when it trained at another total batch."""
    target = os.path.relpath(run.path, out_dir).replace(os.sep, "/")
    flag = " (eval only)" if run.record["evaluated_checkpoint_only"] else ""
    if needs_batch_note(run):
        flag += " ‡"
    return f"[{run.stamp}]({target}){flag}"


def needs_batch_note(run: Run) -> bool:
    return not run.is_toy and run.batch_note is not None


def batch_notes(linked: Sequence[Run]) -> list[str]:
    """The ‡ lines for the runs a table links (each once, in order), with their heading; [] when none."""
    marked: list[Run] = []
    for run in linked:
        if needs_batch_note(run) and run not in marked:
            marked.append(run)
    if not marked:
        return []
    return ["", "Runs not trained at the paper's total batch (‡):", ""] + [
        f"- ‡ {run.name} [{run.stamp}]: {run.batch_note}" for run in marked]


@dataclass(frozen=True)
class Metric:
    label: str        # column label
    paper_key: str    # key in paper.yaml rows and improvements
    record_key: str   # key in a run record's metrics


@dataclass(frozen=True)
class Suite:
    """How one suite's table looks: its columns, metrics and digits."""

    key: str
    title: str
    row_label: str
    extra_columns: tuple[tuple[str, str], ...]   # (header, paper.yaml key)
    metrics: tuple[Metric, ...]
    flops_digits: int
    metric_digits: int
    improvement_key: str

    @property
    def baseline_label(self) -> str:
        return "same-depth ResNet" if self.key == "imagenet" else "ResNet-50"

    def headers(self) -> list[str]:
        headers = [self.row_label] + [header for header, _ in self.extra_columns]
        headers += ["Params paper (M)", "Params ours (M)", "Params Δ", "GFLOPs paper", "GFLOPs ours", "GFLOPs Δ"]
        for metric in self.metrics:
            headers += [f"{metric.label} paper", f"{metric.label} ours", f"{metric.label} Δ"]
        return headers + [f"vs {self.baseline_label} (paper)", f"vs {self.baseline_label} (ours)", "Run"]


SUITE_TABLES = (
    Suite("imagenet", "ImageNet classification backbones (224x224)", "Model", (),
          (Metric("Top-1", "top1", "top1"), Metric("Top-5", "top5", "top5")),
          2, 2, "reduction"),
    Suite("coco", "COCO detection and instance segmentation (RedNet-50-FPN, 1x)", "Config",
          (("Neck", "neck"), ("Head", "head")),
          (Metric("box AP", "box_ap", "bbox_AP"), Metric("mask AP", "mask_ap", "segm_AP")),
          1, 1, "improvement"),
    Suite("cityscapes", "Cityscapes semantic segmentation (RedNet-50, 512x1024, 80k)", "Config",
          (("Neck", "neck"),), (Metric("mIoU", "miou", "mIoU"),), 1, 1, "improvement"),
)


def _params_cell(trainable: float | None, total: float | None) -> str:
    if trainable is None:
        return NO_VALUE
    return f"{trainable:.2f}" + (f" ({total:.2f})" if total is not None else "")


def _improvement_cell(parts: list[str]) -> str:
    return NO_VALUE if all(part == NO_VALUE for part in parts) else " / ".join(parts)


def _improvement(suite: Suite, paper_row: dict, results: Results) -> tuple[str, str]:
    """(published, ours): reductions of params and FLOPs and the accuracy gains over the baseline."""
    published = paper_row.get(suite.improvement_key) or {}
    baseline = paper_row.get("baseline")
    paper_parts = [f"{fmt(number(published.get('params_pct')), 1)}%↓",
                   f"{fmt(number(published.get('gflops_pct')), 1)}%↓"]
    ours_params = results.params(paper_row["name"])[0]
    ours_flops = results.gflops(paper_row["name"])
    base_params = results.params(baseline)[0] if baseline else None
    base_flops = results.gflops(baseline) if baseline else None
    ours_parts = [fmt(reduction_pct(ours_params, base_params), 1), fmt(reduction_pct(ours_flops, base_flops), 1)]
    ours_parts = [part if part == NO_VALUE else f"{part}%↓" for part in ours_parts]
    run, base_run = results.newest(paper_row["name"]), results.newest(baseline) if baseline else None
    for metric in suite.metrics:
        gain = number(published.get(metric.paper_key))
        if gain is None:
            continue  # no published gain: ImageNet rows, mask AP of detectors without a mask head
        paper_parts.append(f"{fmt_signed(gain, 1)} {metric.label}")
        ours_gain = difference(run.metric(metric.record_key) if run else None,
                               base_run.metric(metric.record_key) if base_run else None)
        ours_parts.append(f"{fmt_signed(ours_gain, 1)} {metric.label}" if ours_gain is not None else NO_VALUE)
    return _improvement_cell(paper_parts), _improvement_cell(ours_parts)


def _metric_cells(suite: Suite, paper_row: dict, run: Run | None, with_paper: bool) -> dict[str, str]:
    cells = {}
    for metric in suite.metrics:
        published = number(paper_row.get(metric.paper_key))
        ours = run.metric(metric.record_key) if run else None
        if with_paper:
            cells[f"{metric.label} paper"] = fmt(published, suite.metric_digits)
        cells[f"{metric.label} ours"] = fmt(ours, suite.metric_digits)
        cells[f"{metric.label} Δ"] = fmt_signed(difference(ours, published), suite.metric_digits)
    return cells


def suite_table(suite: Suite, paper: dict, results: Results, out_dir: Path) -> str:
    """The section of one suite: its table, then its complexity notes (†) and batch notes (‡)."""
    notes = paper.get("complexity_notes") or {}
    rows, footnotes, linked = [], [], []
    for paper_row in paper[suite.key]:
        name = paper_row["name"]
        marker = ""
        if name in notes:
            footnotes.append(f"- **{name}** (†): {notes[name]}")
            marker = " †"
        trainable, total = results.params(name)
        ours_flops = results.gflops(name)
        run = results.newest(name)
        paper_params, paper_flops = number(paper_row.get("params_m")), number(paper_row.get("gflops"))
        row = {suite.row_label: name + marker}
        row.update({header: str(paper_row.get(key) or NO_VALUE) for header, key in suite.extra_columns})
        row.update({"Params paper (M)": fmt(paper_params, 2 if suite.key == "imagenet" else 1),
                    "Params ours (M)": _params_cell(trainable, total),
                    "Params Δ": fmt_signed(difference(trainable, paper_params), 2),
                    "GFLOPs paper": fmt(paper_flops, suite.flops_digits),
                    "GFLOPs ours": fmt(ours_flops, suite.flops_digits),
                    "GFLOPs Δ": fmt_signed(difference(ours_flops, paper_flops), suite.flops_digits)})
        row.update(_metric_cells(suite, paper_row, run, with_paper=True))
        (row[f"vs {suite.baseline_label} (paper)"],
         row[f"vs {suite.baseline_label} (ours)"]) = _improvement(suite, paper_row, results)
        row["Run"] = run_link(run, out_dir) if run else NO_VALUE
        rows.append(row)
        linked += [run] if run else []
        for older in results.real.get(name, [])[1:]:
            rows.append({suite.row_label: OLDER_RUN, **_metric_cells(suite, paper_row, older, with_paper=False),
                         "Run": run_link(older, out_dir)})
            linked.append(older)

    text = [f"## {suite.title}", "", table_of_rows(suite.headers(), rows)]
    if footnotes:
        text += ["", "Complexity notes (our count is reported as counted, never adjusted):", ""] + footnotes
    return "\n".join(text + batch_notes(linked))


def _result_summary(values: dict[str, float | None]) -> str:
    parts = [f"{label} {value:.1f}" for label, value in values.items() if value is not None]
    return " / ".join(parts) if parts else NO_VALUE


BASELINE_METRICS = {
    "imagenet": (("top-1", "top1", "top1"),),
    "coco": (("box", "box_ap", "bbox_AP"), ("mask", "mask_ap", "segm_AP")),
    "cityscapes": (("mIoU", "miou", "mIoU"),),
}
BASELINE_HEADERS = ("Baseline", "Suite", "Params paper* (M)", "Params ours (M)", "Params Δ",
                    "GFLOPs paper*", "GFLOPs ours", "GFLOPs Δ", "Result paper*", "Result ours", "Run")


def baselines_table(paper: dict, results: Results, out_dir: Path) -> str:
    """The ResNet baselines section: published (derived) and our figures, with its batch notes."""
    rows, linked = [], []
    for row in paper.get("baselines", []):
        name, suite = row["name"], row.get("suite", "")
        digits = 2 if suite == "imagenet" else 1
        trainable, total = results.params(name)
        ours_flops = results.gflops(name)
        run = results.newest(name)
        metrics = BASELINE_METRICS.get(suite, ())

        def ours_result(run: Run | None) -> str:
            return _result_summary({label: run.metric(key) if run else None for label, _, key in metrics})

        rows.append({"Baseline": name, "Suite": suite, "Params paper* (M)": fmt(number(row.get("params_m")), 1),
                     "Params ours (M)": _params_cell(trainable, total),
                     "Params Δ": fmt_signed(difference(trainable, number(row.get("params_m"))), 2),
                     "GFLOPs paper*": fmt(number(row.get("gflops")), digits),
                     "GFLOPs ours": fmt(ours_flops, digits),
                     "GFLOPs Δ": fmt_signed(difference(ours_flops, number(row.get("gflops"))), digits),
                     "Result paper*": _result_summary({label: number(row.get(key)) for label, key, _ in metrics}),
                     "Result ours": ours_result(run), "Run": run_link(run, out_dir) if run else NO_VALUE})
        linked += [run] if run else []
        for older in results.real.get(name, [])[1:]:
            rows.append({"Baseline": OLDER_RUN, "Result ours": ours_result(older), "Run": run_link(older, out_dir)})
            linked.append(older)
    return "\n".join([
        "## ResNet baselines (the reference of the reduction columns)", "",
        "\\* Not published as such: derived from the published reductions and gains, rounded "
        "(see results/paper.yaml). Our ResNet-50 detector and segmentor rows come from "
        "`make flops` and from runs with `BASELINES=1`.", "",
        table_of_rows(BASELINE_HEADERS, rows)] + batch_notes(linked))
