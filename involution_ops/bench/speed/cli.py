"""The command line of `make bench`: measure (`runner.run`), write speed.json and its markdown
table, or with --render only turn an earlier speed.json into the table."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ..output import REPO_ROOT
from .measure import INFERENCE_OPTIONS
from .pairs import SUITES, paper_pairs, select
from .report import machine_label, render_markdown, under_load
from .runner import run, save_results

DESCRIPTION = "`make bench`: measured speed and memory of every paper model next to its ResNet baseline."


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of `make bench` (scripts/bench_speed.py)."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--models", nargs="+", help="model names (or unique parts of them); default all")
    parser.add_argument("--suite", nargs="+", choices=SUITES, help="only these suites")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model (default 50 CUDA, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 CUDA, 1 CPU)")
    parser.add_argument("--options", nargs="+", default=list(INFERENCE_OPTIONS), choices=INFERENCE_OPTIONS,
                        help="inference options to measure")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--train-batch", type=int, help="images per training step (default: 8 ImageNet, "
                        "2 detectors and segmentors, the papers' per-GPU batch)")
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test, not the paper's sizes)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="results file (default results/speed.json, with --quick "
                        "results/speed-quick.json); an earlier one is kept under <its folder>/<its stem>/<date>.json")
    parser.add_argument("--table", type=Path, help="where the markdown table goes (default: next to --out, .md); "
                        "with --render: write it there instead of printing it")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--render", type=Path, metavar="SPEED_JSON",
                        help="measure nothing: print (or with --table write) the table of an earlier results file")
    args = parser.parse_args(argv)
    if args.render:
        try:
            table = render_markdown(args.render)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--render {args.render}: {error}")
        if args.table:
            args.table.write_text(table, encoding="utf-8")
        else:
            print(table, end="")
        return 0
    try:
        pairs = select(paper_pairs(), args.models, args.suite)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        for pair in pairs:
            print(f"{pair.suite:10s} {pair.model:40s} vs {pair.baseline}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    repeats = args.repeats if args.repeats is not None else (50 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    out = args.out or REPO_ROOT / "results" / ("speed-quick.json" if args.quick else "speed.json")
    progress: list[Path] = []  # this run's own file (named by its start), replaced after each pair

    def save_progress(partial: dict) -> None:
        if not progress:
            stamp = "".join(c if c.isalnum() else "-" for c in partial["machine"]["date"])
            progress.append(out.with_name(f"{out.stem}.in-progress-{stamp}.json"))
            print(f"progress after each pair: {progress[0]} (removed at the end)")
        progress[0].parent.mkdir(parents=True, exist_ok=True)
        progress[0].write_text(json.dumps(dict(partial, in_progress=True), indent=1), encoding="utf-8")

    if args.train_batch is not None and args.train_batch < 1:
        parser.error(f"--train-batch {args.train_batch}: give at least 1")
    data = run(pairs, args.device, repeats, warmup, args.quick, args.options, not args.no_train,
               on_pair=save_progress, train_batch=args.train_batch)
    kept = save_results(data, out)
    for path in progress:
        path.unlink(missing_ok=True)
    print(f"wrote {out}" + (f" (the earlier one kept as {kept})" if kept else ""))
    if under_load(data):
        print(f"WARNING: {machine_label(data)}: other jobs shared the CPU; the interleaved ratios mean more "
              "than the absolute times", file=sys.stderr)
    table = render_markdown(data)
    table_path = args.table or out.with_suffix(".md")  # derived from the .json: --render remakes it
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(table, encoding="utf-8")
    print(f"wrote {table_path}")
    print()
    print(table)
    return 0
