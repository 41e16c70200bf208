"""The figures of `make tables` (matplotlib, from the `mm` extra): box AP against GFLOPs of the
COCO detectors, and the loss curve of each toy run."""
from __future__ import annotations

from pathlib import Path

from ..cells import number
from .inputs import Results, Run


def matplotlib_figure():
    """matplotlib's Figure on the Agg backend; ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return Figure


DETECTOR_MARKERS = {"faster_rcnn": ("o", "Faster R-CNN"), "mask_rcnn": ("s", "Mask R-CNN"),
                    "retinanet": ("^", "RetinaNet")}


def _detector_of(name: str) -> str | None:
    return next((key for key in DETECTOR_MARKERS if name.startswith(key)), None)


def _variant_tag(row: dict) -> str:
    if "neck" not in row:
        return "R-50"
    involution = [part for part in ("neck", "head") if row.get(part) == "involution"]
    return "inv. " + "+".join(involution) if involution else "conv"


def plot_complexity(paper: dict, results: Results, path: Path) -> None:
    """Box AP against GFLOPs of the COCO detectors, published points and ours."""
    Figure = matplotlib_figure()
    figure = Figure(figsize=(9, 5.2), dpi=120)
    axes = figure.add_subplot()
    baselines = [row for row in paper.get("baselines", []) if row.get("suite") == "coco"]
    styles = [("RedNet-50, paper", "tab:red", paper["coco"]),
              ("ResNet-50, paper (derived)", "tab:gray", baselines)]
    ours_count = 0
    for _, colour, rows in styles:
        for row in rows:
            detector = _detector_of(row["name"])
            x, y = number(row.get("gflops")), number(row.get("box_ap"))
            if detector is None or x is None or y is None:
                continue
            axes.scatter(x, y, marker=DETECTOR_MARKERS[detector][0], s=60, color=colour, zorder=3)
            ours_x, run = results.gflops(row["name"]), results.newest(row["name"])
            ours_y = run.metric("bbox_AP") if run else None
            if ours_x is not None and ours_y is not None:
                ours_count += 1
                axes.scatter(ours_x, ours_y, marker=DETECTOR_MARKERS[detector][0], s=70,
                             facecolors="none", edgecolors=colour, linewidths=1.6, zorder=4)
                axes.plot([x, ours_x], [y, ours_y], color=colour, linestyle=":", linewidth=1)
            tag = _variant_tag(row)
            left = tag == "inv. neck"  # keeps the tags of neighbouring variants apart
            below = tag == "inv. neck+head"
            axes.annotate(tag, (x, y), textcoords="offset points", xytext=(-6 if left else 6, -11 if below else 5),
                          ha="right" if left else "left", fontsize=7)
    for marker, label in DETECTOR_MARKERS.values():
        axes.scatter([], [], marker=marker, color="black", label=label)
    for label, colour, _ in styles:
        axes.scatter([], [], marker="o", color=colour, label=label)
    axes.scatter([], [], marker="o", facecolors="none", edgecolors="black", label="ours (hollow)")
    if not ours_count:
        axes.text(0.02, 0.02, "no COCO runs recorded yet: published points only",
                  transform=axes.transAxes, fontsize=8, color="dimgray")
    axes.set_xlabel("GFLOPs (multiply-accumulates, 800x1280, paper convention)")
    axes.set_ylabel("COCO box AP (%)")
    axes.set_title("Box AP against complexity (tags: involution in neck / neck+head)")
    axes.grid(True, alpha=0.3)
    axes.margins(x=0.08, y=0.1)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, format="png")


def plot_loss(run: Run, path: Path) -> bool:
    """The training loss of a run against iterations; False when its record has no usable curve."""
    curve = run.loss_curve()
    if not curve:
        return False
    Figure = matplotlib_figure()
    figure = Figure(figsize=(6, 3.6), dpi=100)
    axes = figure.add_subplot()
    axes.plot([x for x, _ in curve], [y for _, y in curve], marker="." if len(curve) < 50 else None)
    axes.set_xlabel("iteration")
    axes.set_ylabel("training loss")
    axes.set_title(f"{run.name} ({run.dataset}, {run.stamp})", fontsize=9)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return True
