"""The command line of the benchmark launcher (`scripts/benchmark.py`, what `make coco-*` /
`make cityscapes-*` run): the arguments, read once into `LaunchOptions`, and `main`, which turns
pre-flight errors, failed runs and Ctrl-C into messages and exit codes."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings

from ..manifest import TRAINED_SUITES, Manifest, load_manifest
from ..paper_batch import DEFAULT_MODE, MODES
from ..output import REPO_ROOT as REPO
from ..launch_checks import make_command
from ..preflight import PreflightError, run_preflight
from ..runconfig import RunConfigError
from .commands import DEFAULT_MASTER_PORT
from .options import LaunchOptions
from .runner import INTERRUPTED, interrupted_message, run_jobs

PROGRAM = "scripts/benchmark.py"
EXAMPLES = """examples:
  scripts/benchmark.py coco retinanet                  # built-in toy data if data/coco is absent
  scripts/benchmark.py coco all --data /datasets/coco --gpus 8
  scripts/benchmark.py cityscapes fpn --ckpt work_dirs/.../iter_80000.pth
"""


def build_parser(manifest: Manifest) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Train and evaluate the paper's models of one suite.")
    parser.add_argument("suite", choices=list(TRAINED_SUITES))
    parser.add_argument("group", help="; ".join(f"{suite}: {' | '.join(manifest.groups(suite) + ['all'])}"
                                                for suite in TRAINED_SUITES))
    parser.add_argument("--data", help="dataset root (default data/coco or data/cityscapes; "
                                       "absent default -> built-in toy data)")
    parser.add_argument("--gpus", type=int, default=1, help="processes per node (GPUs; gloo processes on a CPU)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default=os.environ.get("MASTER_ADDR") or None,
                        help="address of the NODE_RANK=0 machine (needed with --nnodes > 1 outside Slurm; "
                             "default $MASTER_ADDR, else 127.0.0.1 on one node)")
    parser.add_argument("--master-port", type=int, default=DEFAULT_MASTER_PORT)
    parser.add_argument("--slurm-partition", help="launch with srun on this partition")
    parser.add_argument("--ckpt", help="only evaluate this checkpoint (of the group's config it belongs to)")
    parser.add_argument("--pretrained", help="ImageNet RedNet-50 weights for the backbone")
    parser.add_argument("--work-dir", default="work_dirs", help="root of the run folders (default work_dirs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--amp", action="store_true", help="mixed precision (needs a GPU)")
    parser.add_argument("--resume", action="store_true", help="continue the newest run of each config")
    parser.add_argument("--baselines", action="store_true", help="also run the ResNet-50 baselines")
    parser.add_argument("--batch", choices=MODES, default=DEFAULT_MODE,
                        help="real data on fewer processes than the paper: reach its total batch by gradient "
                             "accumulation (default), scale the lr linearly (scale_lr), or neither (none)")
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="run only these configs of the group (official names, e.g. retinanet_red50_fpn_1x_coco)")
    parser.add_argument("--runs-dir", default="results/runs", help=argparse.SUPPRESS)
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cfg-options-line", metavar="'KEY=VALUE ...'",
                        help="the same as one string, split as a shell splits words (how make passes CFG_OPTIONS, "
                             "so that values holding '(' or spaces reach mmengine intact)")
    return parser


def parse_args(argv: list[str] | None, manifest: Manifest | None = None) -> LaunchOptions:
    """The launch options of a command line; a wrong combination exits with argparse's usage error."""
    manifest = manifest or load_manifest()
    parser = build_parser(manifest)
    args = parser.parse_args(argv)
    cfg_options = [*args.cfg_options, *_cfg_options_line(parser, args.cfg_options_line)]
    groups = manifest.groups(args.suite)
    if args.group != "all" and args.group not in groups:
        parser.error(f"unknown {args.suite} group {args.group!r}; choose one of {groups + ['all']}")
    if args.ckpt and args.resume:
        parser.error("--ckpt evaluates a finished checkpoint and --resume continues training: use one")
    if args.gpus < 1 or args.nnodes < 1:
        parser.error("--gpus and --nnodes must be at least 1")
    values = {key: value for key, value in vars(args).items() if key != "cfg_options_line"}
    return LaunchOptions(**{**values, "cfg_options": cfg_options})


def _cfg_options_line(parser: argparse.ArgumentParser, line: str | None) -> list[str]:
    """CFG_OPTIONS as make passes it (one string), split as a shell splits words."""
    if not line:
        return []
    try:
        words = shlex.split(line)
    except ValueError as error:
        parser.error(f"CFG_OPTIONS {line}: {error}; quote each value whole, e.g. CFG_OPTIONS='key=(a,b) other=1'")
    flags = [word for word in words if word.startswith("-")]
    if flags:
        parser.error(f"CFG_OPTIONS holds {' '.join(flags)}: it takes config overrides (key=value) only; give "
                     f"launcher options as make variables (CONFIGS=..., GPUS=..., see `make help`)")
    return words


def main(argv: list[str] | None = None) -> int:
    """Pre-flight, then each job's run in turn; 0 when all finished, 2 on a pre-flight error."""
    options = parse_args(argv)
    os.chdir(REPO)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    try:
        jobs, configs, context = run_preflight(options)
    except PreflightError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(options, None)}", file=sys.stderr, flush=True)
        return INTERRUPTED
    try:
        return run_jobs(jobs, configs, context)
    except RunConfigError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:  # between two runs
        print(f"\ninterrupted: continue with: {make_command(options, resume=True)}", file=sys.stderr, flush=True)
        return INTERRUPTED
