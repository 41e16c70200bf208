"""The "Measured speed and memory" section of results/speed.json, as `make tables` and
`make bench` show it. Reads the file's data only: imports neither torch nor the measuring
modules of this package."""
from __future__ import annotations

import json
from pathlib import Path

from ..cells import fmt_grouped, fmt_ratio, table_of_rows
from .pairs import shape_label

SCHEMA = 1
"""The speed.json layout this code writes and reads."""

# (model, what, option, key, bound, label): benchmark figures to report against, never asserted
TARGETS = (
    ("RedNet-50", "inference", "eager", "ratio", 0.8, "RedNet-50 forward <= 0.8x ResNet-50's"),
    ("retinanet_red50_fpn_1x_coco", "inference", "eager", "ratio", 0.95,
     "RetinaNet RedNet-50 forward <= 0.95x RetinaNet ResNet-50's"),
)

INFERENCE_HEADERS = ("Model", "Baseline", "Input", "Option", "Model ms", "Baseline ms", "Ratio",
                     "Model img/s", "Baseline img/s", "Peak MiB (model / baseline)")
TRAINING_HEADERS = ("Model", "Baseline", "Input", "Kernel map", "Model ms", "Baseline ms", "Ratio",
                    "Model peak MiB", "Baseline peak MiB", "Peak ratio")


def load(path: Path) -> dict:
    """A speed.json of this schema; ValueError naming the fix otherwise."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    check_schema(data)
    return data


def check_schema(data: dict) -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise ValueError(f"speed results of schema {found!r}; this code reads schema {SCHEMA}: "
                         "rerun `make bench`")


def machine_label(data: dict) -> str:
    m = data["machine"]
    load = f"load average {m.get('load_start')} at start, {m.get('load_end')} at end"
    if m.get("other_load") is not None:
        load += f", other processes {m['other_load']} cores on average while it ran"
    return (f"{m['device_name']} ({m['device']}; {m['cores']} cores, {m['threads']} torch threads), "
            f"torch {m['torch']}, {m['date']}, {load}")


def under_load(data: dict) -> bool:
    """A CPU run that other processes shared: on average they kept more than a quarter of a core
    busy (`other_load`). Files without it fall back to the 1-minute load average exceeding 3/4 of
    the cores, which counts the benchmark's own threads too."""
    m = data["machine"]
    if not str(m.get("device", "cpu")).startswith("cpu"):
        return False
    if m.get("other_load") is not None:
        return m["other_load"] > 0.25
    busy = max((m.get("load_start") or [0])[0], (m.get("load_end") or [0])[0])
    return busy > 0.75 * (m.get("cores") or 1)


def _failed(headers: tuple[str, ...], cells: dict[str, str], error: str) -> dict[str, str]:
    """A row whose measurement failed: the error in the first measured column, the rest empty."""
    first = headers[len(cells)]
    return {**cells, first: f"failed: {error}"}


def inference_rows(data: dict) -> list[dict[str, str]]:
    rows = []
    for pair in data["pairs"]:
        for option, e in pair["inference"].items():
            head = {"Model": pair["model"], "Baseline": pair["baseline"],
                    "Input": shape_label(pair["inference_shape"]), "Option": option}
            if "error" in e:
                rows.append(_failed(INFERENCE_HEADERS, head, e["error"]))
                continue
            m, b = e["model"], e["baseline"]
            rows.append({**head, "Model ms": fmt_grouped(m["median_ms"]), "Baseline ms": fmt_grouped(b["median_ms"]),
                         "Ratio": fmt_ratio(e["ratio"]),
                         "Model img/s": fmt_grouped(m["images_per_s"], 2),
                         "Baseline img/s": fmt_grouped(b["images_per_s"], 2),
                         "Peak MiB (model / baseline)":
                             f"{fmt_grouped(m.get('peak_mib'))} / {fmt_grouped(b.get('peak_mib'))}"})
    return rows


def training_rows(data: dict) -> list[dict[str, str]]:
    rows = []
    for pair in data["pairs"]:
        training = pair.get("training") or {}
        head = {"Model": pair["model"], "Baseline": pair["baseline"], "Input": shape_label(pair["training_shape"])}
        if "error" in training:
            rows.append(_failed(TRAINING_HEADERS, {**head, "Kernel map": ""}, training["error"]))
            continue
        for option, e in training.items():
            m, b = e["model"], e["baseline"]
            rows.append({**head, "Kernel map": option, "Model ms": fmt_grouped(m["median_ms"]),
                         "Baseline ms": fmt_grouped(b["median_ms"]), "Ratio": fmt_ratio(e["ratio"]),
                         "Model peak MiB": fmt_grouped(m.get("peak_mib")),
                         "Baseline peak MiB": fmt_grouped(b.get("peak_mib")), "Peak ratio": fmt_ratio(e["peak_ratio"])})
    return rows


def render_markdown(data: dict | Path) -> str:
    """The "Measured speed and memory" section of results/speed.json (a path or its data)."""
    data = load(data) if not isinstance(data, dict) else data
    check_schema(data)
    s = data["settings"]
    lines = [
        "## Measured speed and memory",
        "",
        f"Measured on {machine_label(data)}; median of {s['repeats']} runs after {s['warmup']} warm-up runs, "
        "each model interleaved with its baseline. Random weights; detectors and segmentors without final "
        "post-processing. Ratio = model / baseline (below 1: the RedNet model is faster or smaller). "
        "Peak memory: what one call adds above the idle model"
        + (" (CUDA allocator peak)." if s["device"].startswith("cuda") else
           " (CPU malloc heap, sampled after every operator).")
        + (" Quick run: small shapes, not the paper's." if s.get("quick") else "")
        + (" **Measured under load** (other jobs shared the CPU): the interleaved ratios mean more than "
           "the absolute times." if under_load(data) else ""),
        "",
        "### Inference",
        "",
        table_of_rows(INFERENCE_HEADERS, inference_rows(data), left=4),
    ]
    training = training_rows(data)
    if training:
        lines += ["", "### Training step (forward, loss, backward, SGD step)", "",
                  ("Kernel map: `recompute` regenerates each involution's kernel map in backward (the default, "
                   "less memory); `keep` stores it (more memory, no second kernel generation)."), "",
                  table_of_rows(TRAINING_HEADERS, training, left=4)]
    targets = target_lines(data)
    if targets:
        lines += ["", "Targets (ratios as measured above):", "", *(f"- {line}" for line in targets)]
    return "\n".join(lines) + "\n"


def target_lines(data: dict) -> list[str]:
    """Each target whose pair was measured, with its ratio and whether it was met; and for every
    pair the training-step peak memory (kernel map recomputed, the default) against <= 1.0x."""
    pairs = {p["model"]: p for p in data["pairs"]}
    checks = [t for t in TARGETS if t[0] in pairs]
    checks += [(name, "training", "recompute", "peak_ratio", 1.0,
                f"{name} training-step peak memory <= {pairs[name]['baseline']}'s") for name in pairs]
    lines = []
    for name, what, option, key, bound, label in checks:
        value = (pairs[name].get(what) or {}).get(option, {}).get(key)
        verdict = "not measured" if value is None else ("met" if value <= bound else "NOT met")
        lines.append(f"{label}: {fmt_ratio(value)} ({verdict})")
    return lines

