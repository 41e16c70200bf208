"""The benchmark launcher behind `make coco-*` / `make cityscapes-*` (scripts/benchmark.py).

For each config of the target: build the run's config (involution_ops.bench.runconfig), check
it (involution_ops.bench.preflight) - every config before the first run starts - then create the
run folder `<work-dir>/<suite>/<config name>/<timestamp>`, dump the config there as config.py
and start scripts/train.py (or scripts/test.py for CKPT) on that file: as one process, through
torchrun or through srun. Each run leaves a record in results/runs/.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import run_space, zoo
from .batch import DEFAULT_MODE, MODES
from .io import REPO_ROOT as REPO
from .io import banner
from .launch_checks import LaunchError, check_launch, make_command
from .preflight import (CONVERT_HINT, PreflightError, _local_path, check_amp, check_cityscapes, check_coco,
                        check_pretrained, match_checkpoint, read_weights)
from .runconfig import (CONFIG_NAME, LAUNCHED_ENV, RUN_KEY, RunConfigError, RunSpec, batch_plan, build_run_config,
                        load_model_config, place_in_run_dir, prepare_evaluation, relative, reload_run_config,
                        resume_config_name)
from .toy_data import ensure_toy_data

SCRIPTS = REPO / "scripts"
INTERRUPTED = 130  # the shell's exit status for a process ended by SIGINT
QUIET_WARNINGS = "ignore:pkg_resources is deprecated:UserWarning"
EXAMPLES = """examples:
  scripts/benchmark.py coco retinanet                  # built-in toy data if data/coco is absent
  scripts/benchmark.py coco all --data /datasets/coco --gpus 8
  scripts/benchmark.py cityscapes fpn --ckpt work_dirs/.../iter_80000.pth
"""


@dataclass
class Job:
    name: str  # official config stem, used in records, tables and work dirs
    config: Path  # model config file (the toy variant on toy data)
    resume: bool = False  # continue the newest run of this config (RESUME=1 and it has one)
    run_dir: Path | None = None  # RESUME=1: the run folder it continues


def parse_args(argv: list[str] | None, manifest: zoo.Zoo | None = None) -> argparse.Namespace:
    manifest = manifest or zoo.load()
    parser = argparse.ArgumentParser(prog="scripts/benchmark.py", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Train and evaluate the paper's models of one suite.")
    parser.add_argument("suite", choices=list(zoo.TRAINED_SUITES))
    parser.add_argument("group", help="; ".join(f"{suite}: {' | '.join(manifest.groups(suite) + ['all'])}"
                                                for suite in zoo.TRAINED_SUITES))
    parser.add_argument("--data", help="dataset root (default data/coco or data/cityscapes; "
                                       "absent default -> built-in toy data)")
    parser.add_argument("--gpus", type=int, default=1, help="processes per node (GPUs; gloo processes on a CPU)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default=os.environ.get("MASTER_ADDR") or None,
                        help="address of the NODE_RANK=0 machine (needed with --nnodes > 1 outside Slurm; "
                             "default $MASTER_ADDR, else 127.0.0.1 on one node)")
    parser.add_argument("--master-port", type=int, default=29500)
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
    args = parser.parse_args(argv)
    if args.cfg_options_line:
        try:
            words = shlex.split(args.cfg_options_line)
        except ValueError as error:
            parser.error(f"CFG_OPTIONS {args.cfg_options_line}: {error}; quote each value whole, e.g. "
                         f"CFG_OPTIONS='key=(a,b) other=1'")
        flags = [word for word in words if word.startswith("-")]
        if flags:
            parser.error(f"CFG_OPTIONS holds {' '.join(flags)}: it takes config overrides (key=value) only; give "
                         f"launcher options as make variables (CONFIGS=..., GPUS=..., see `make help`)")
        args.cfg_options = [*args.cfg_options, *words]
    groups = manifest.groups(args.suite)
    if args.group != "all" and args.group not in groups:
        parser.error(f"unknown {args.suite} group {args.group!r}; choose one of {groups + ['all']}")
    if args.ckpt and args.resume:
        parser.error("--ckpt evaluates a finished checkpoint and --resume continues training: use one")
    if args.gpus < 1 or args.nnodes < 1:
        parser.error("--gpus and --nnodes must be at least 1")
    return args


def select_jobs(args: argparse.Namespace, toy: bool, manifest: zoo.Zoo | None = None) -> list[Job]:
    models = (manifest or zoo.load()).jobs(args.suite, args.group, baselines=args.baselines)
    if args.configs:
        known = {model.name: model for model in models}
        unknown = [n for n in args.configs if n not in known]
        if unknown:
            raise PreflightError(f"--configs {' '.join(unknown)}: not in this target; choose from {', '.join(known)}")
        models = [known[n] for n in args.configs]
    jobs = []
    for model in models:
        config = model.config_for(toy)
        if not config.is_file():
            raise PreflightError(f"config {relative(config)} is missing from this checkout")
        jobs.append(Job(model.name, config))
    return jobs


def resolve_data(args: argparse.Namespace, manifest: zoo.Zoo | None = None) -> tuple[Path, str]:
    """(data root, dataset label). Only the default location may fall back to the toy data."""
    if args.data:
        root = Path(args.data).expanduser()
        if not root.is_dir():
            raise PreflightError(f"DATA={args.data}: no such folder. Fix: point DATA at your {args.suite} root, "
                                 f"or leave DATA unset to use the built-in toy data")
        return root.resolve(), args.suite
    default_data = (manifest or zoo.load()).default_data(args.suite)
    default = REPO / default_data
    if default.is_dir():
        return default, args.suite
    banner(f"NO {args.suite.upper()} DATASET AT {default_data}: USING THE BUILT-IN TOY DATASET\n"
           f"(synthetic shapes from involution_ops/bench/toy_data.py; results are recorded as dataset 'toy' and\n"
           f" say nothing about {args.suite}. Set DATA=/path/to/{args.suite} for the real benchmark.)", loud=True)
    return ensure_toy_data(REPO / "data" / "toy", args.suite).resolve(), "toy"


# ---------------------------------------------------------------- the run configs

def planned_device(args: argparse.Namespace, partition_gpus: bool | None = None) -> str:
    """Where the training processes will run: cuda, or cpu (gloo processes)."""
    if args.slurm_partition:
        return "cpu" if partition_gpus is False else "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_spec(job: Job, data_root: Path, args: argparse.Namespace, dataset: str | None = None,
             device: str | None = None) -> RunSpec:
    _, launcher = launch_prefix(args, job.name, partition_gpus=True)
    return RunSpec(suite=args.suite, name=job.name, config=job.config,
                   dataset=dataset or ("toy" if job.config.parent.name == "toy" else args.suite),
                   data_root=Path(data_root), runs_dir=args.runs_dir, launcher=launcher,
                   device=device or planned_device(args), world_size=args.gpus * args.nnodes, seed=args.seed,
                   deterministic=args.deterministic, amp=args.amp, pretrained=args.pretrained,
                   cfg_options=list(args.cfg_options), batch=args.batch)


def _warner(warned: set | None):
    def warn(text: str) -> None:
        if warned is None or text not in warned:
            print(f"  warning: {text}", flush=True)
            if warned is not None:
                warned.add(text)
    return warn


def load_config(job: Job, data_root: Path, args: argparse.Namespace, warned: set | None = None,
                dataset: str | None = None, device: str | None = None) -> Any:
    """The config a run of ``job`` trains with (involution_ops.bench.runconfig), as a pre-flight step."""
    try:
        return build_run_config(run_spec(job, data_root, args, dataset, device), warn=_warner(warned))
    except RunConfigError as error:
        raise PreflightError(str(error)) from error


def reload_config(path: Path, job: Job, data_root: Path, args: argparse.Namespace, evaluate: bool,
                  warned: set | None = None, dataset: str | None = None, device: str | None = None) -> Any:
    """A run folder's config.py read back (RESUME=1, CKPT), with this invocation's launch and options."""
    try:
        return reload_run_config(path, run_spec(job, data_root, args, dataset, device), evaluate,
                                 warn=_warner(warned))
    except RunConfigError as error:
        raise PreflightError(str(error)) from error


def evaluation_config(job: Job, cfg: Any, data_root: Path, args: argparse.Namespace, dataset: str, device: str,
                      cache: dict, warned: set) -> Any:
    """CKPT: the config of the checkpoint's own run folder when it has one (checked against every
    tensor of the checkpoint), else the target's config; set to load the checkpoint."""
    from . import weight_checks

    saved = Path(args.ckpt).resolve().parent / CONFIG_NAME
    if saved.is_file() and _run_name(saved) == job.name:
        cfg = reload_config(saved, job, data_root, args, True, warned, dataset, device)
        checkpoint = read_weights(args.ckpt, f"CKPT={args.ckpt}", cache)
        shapes = weight_checks.build_shapes(cfg.model, cfg.get("default_scope", "mmdet"))
        diff = weight_checks.fit_diff(checkpoint, shapes)
        if diff:
            raise PreflightError(weight_checks.fit_message(checkpoint, relative(saved), diff)
                                 + " Fix: keep the checkpoint next to the config.py it was trained with")
        print(f"  using the config it was trained with: {relative(saved)}", flush=True)
    else:
        cfg[RUN_KEY].pop("batch", None)  # planned for this invocation, not how the checkpoint was trained
    prepare_evaluation(cfg, args.ckpt)
    return cfg


def _run_name(path: Path) -> str | None:
    """The run name a config.py written by this launcher records, else None."""
    try:
        facts = load_model_config(path).get(RUN_KEY)
    except RunConfigError:
        return None
    return facts.get("name") if isinstance(facts, dict) else None


def latest_resumable(root: str | Path) -> Path | None:
    """Newest run folder under root that holds mmengine's `last_checkpoint` pointer."""
    runs = [p.parent for p in Path(root).glob("*/last_checkpoint")]
    return max(runs, key=lambda p: p.name) if runs else None


def _finished_runs(runs_dir: str) -> set[Path]:
    """Run folders that a training record names (those runs are complete)."""
    finished = set()
    for record in Path(runs_dir).glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and not data.get("evaluated_checkpoint_only") and data.get("work_dir"):
            finished.add((REPO / data["work_dir"]).resolve())
    return finished


def plan_resume(jobs: list[Job], args: argparse.Namespace) -> list[Job]:
    """RESUME=1 on a group: continue each config's newest run with a checkpoint, start the configs
    that have none (killed before their first checkpoint, or never started), and leave out those
    whose newest run already finished (it has a record)."""
    finished = _finished_runs(args.runs_dir)
    planned = []
    for job in jobs:
        found = latest_resumable(Path(args.work_dir) / args.suite / job.name)
        if found is not None and found.resolve() in finished:
            print(f"  done {job.name}: its newest run {found} has finished (record in {args.runs_dir}); "
                  f"not run again", flush=True)
            continue
        planned.append(Job(job.name, job.config, resume=found is not None,
                           run_dir=found.resolve() if found is not None else None))
        print(f"  {'resume' if found is not None else 'start '} {job.name}"
              + (f" from {found}" if found is not None else ": no run with a checkpoint yet, starts afresh"),
              flush=True)
    if planned and not any(job.resume for job in planned):
        folders = ", ".join(str(Path(args.work_dir) / args.suite / job.name) for job in planned)
        raise PreflightError(f"RESUME=1 but {folders} holds no run with a checkpoint. Fix: start without "
                             f"RESUME=1, or set WORK_DIR to the folder of the killed runs")
    return planned


def new_run_dir(root: str | Path, suffix: str = "") -> Path:
    """A fresh `<timestamp><suffix>` folder under root; an existing folder is never reused."""
    Path(root).mkdir(parents=True, exist_ok=True)
    base = time.strftime("%Y%m%d-%H%M%S") + suffix
    for attempt in range(100):
        candidate = Path(root) / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate.resolve()
        except FileExistsError:
            continue
    raise PreflightError(f"could not create a new run folder in {root}")


def write_run_config(job: Job, cfg: Any, args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(config.py the run starts on, a temporary folder to remove afterwards or None).

    Node 0 writes into the run folder (a new one, or the resumed one); the launchers of the other
    nodes write a stand-in that their processes drop for rank 0's file (session.load_run_config)."""
    if args.node_rank > 0:
        scratch = Path(tempfile.mkdtemp(prefix=f"involution-{job.name}-node{args.node_rank}-"))
        cfg.dump(str(scratch / CONFIG_NAME))
        return scratch / CONFIG_NAME, scratch
    if job.run_dir is not None:  # RESUME=1: the run's config.py stays as it was; this session gets its own file
        return place_in_run_dir(cfg, job.run_dir, resume_config_name(job.run_dir)), None
    root = Path(args.work_dir) / args.suite / job.name
    return place_in_run_dir(cfg, new_run_dir(root, "-eval" if args.ckpt else "")), None


# ---------------------------------------------------------------- launching

def gres_has_gpu(gres: str) -> bool:
    """Whether sinfo's %G column (e.g. `gpu:a100:4(S:0-1)`, `(null)`) lists a GPU resource."""
    return re.search(r"(?:^|[\s,])gpu(?:[:(\s,]|$)", gres) is not None


def slurm_partition_has_gpus(partition: str) -> bool | None:
    """Whether the nodes of a Slurm partition declare GPUs (`sinfo`); None when sinfo cannot tell."""
    try:
        result = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%G"], capture_output=True, text=True,
                                timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return gres_has_gpu(result.stdout)


def launch_prefix(args: argparse.Namespace, job_name: str,
                  partition_gpus: bool | None = None) -> tuple[list[str], str]:
    """(command prefix, launcher) for one process, torchrun, or srun.

    srun asks for `--gres=gpu:GPUS` unless the partition's nodes declare no GPU at all (then the
    ranks are CPU processes talking gloo; requesting a GPU there would never be scheduled).
    `partition_gpus` None: ask sinfo (the submitting machine itself often has no GPU).
    """
    if args.slurm_partition:
        tasks = args.gpus * args.nnodes
        if partition_gpus is None:
            partition_gpus = slurm_partition_has_gpus(args.slurm_partition)
        gres = [] if partition_gpus is False else [f"--gres=gpu:{args.gpus}"]
        return (["srun", "-p", args.slurm_partition, f"--job-name={job_name}", *gres,
                 f"--ntasks={tasks}", f"--ntasks-per-node={args.gpus}", f"--nodes={args.nnodes}",
                 "--kill-on-bad-exit=1", sys.executable, "-u"], "slurm")
    if args.gpus > 1 or args.nnodes > 1:
        return ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.gpus}",
                 f"--nnodes={args.nnodes}", f"--node_rank={args.node_rank}",
                 f"--master_addr={args.master_addr or '127.0.0.1'}", f"--master_port={args.master_port}"],
                "pytorch")
    return [sys.executable], "none"


def job_command(job: Job, args: argparse.Namespace, config: Path, partition_gpus: bool | None = None) -> list[str]:
    """The command that starts a job's processes on its run's config.py."""
    prefix, _ = launch_prefix(args, job.name, partition_gpus)
    if args.ckpt:
        return [*prefix, str(SCRIPTS / "test.py"), str(config)]
    return [*prefix, str(SCRIPTS / "train.py"), str(config), *(["--resume"] if job.resume else [])]


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # mmengine 0.10.7 imports pkg_resources, whose deprecation warning would repeat in every process
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), QUIET_WARNINGS]))
    if args.slurm_partition and args.master_port != 29500:  # srun hands it to every task, on every node
        env["MASTER_PORT"] = str(args.master_port)
    env[LAUNCHED_ENV] = "1"  # scripts/train.py leaves the Ctrl-C message to this launcher
    return env


def preflight(args: argparse.Namespace) -> tuple[list[Job], dict[str, Any], str, bool | None]:
    """Every check before the first run: (jobs, their configs, dataset, partition has GPUs)."""
    try:
        check_launch(args, cuda=None if not args.slurm_partition else False)
    except LaunchError as error:
        raise PreflightError(str(error)) from None
    check_amp(args.amp, args.slurm_partition)
    cache: dict = {}
    # User-given weights are read first: a broken or unsafe file stops here, in a second.
    if args.pretrained:
        if not _local_path(args.pretrained).is_file():
            raise PreflightError(f"pretrained backbone weights {args.pretrained} not found. Fix: "
                                 + CONVERT_HINT.format(path=args.pretrained))
        read_weights(args.pretrained, f"PRETRAINED={args.pretrained}", cache)
    if args.ckpt:
        if not Path(args.ckpt).is_file():
            raise PreflightError(f"CKPT={args.ckpt}: no such checkpoint file. Fix: give the path of a .pth "
                                 f"file (e.g. work_dirs/<suite>/<config>/<timestamp>/iter_N.pth)")
        read_weights(args.ckpt, f"CKPT={args.ckpt}", cache)
    manifest = zoo.load()
    data_root, dataset = resolve_data(args, manifest)
    jobs = select_jobs(args, toy=dataset == "toy", manifest=manifest)
    partition_gpus = slurm_partition_has_gpus(args.slurm_partition) if args.slurm_partition else None
    device = planned_device(args, partition_gpus)
    banner(f"pre-flight checks: {len(jobs)} config(s) on {dataset} data at {data_root}")
    warned: set = set()
    configs = {job.name: load_config(job, data_root, args, warned, dataset, device) for job in jobs}
    if args.ckpt:
        jobs = match_checkpoint(jobs, args.ckpt, configs, cache)
        configs = {job.name: evaluation_config(job, configs[job.name], data_root, args, dataset, device, cache,
                                               warned) for job in jobs}
    if args.resume:
        jobs = plan_resume(jobs, args)
        for job in jobs:
            if job.run_dir is not None and (job.run_dir / CONFIG_NAME).is_file():
                configs[job.name] = reload_config(job.run_dir / CONFIG_NAME, job, data_root, args, False, warned,
                                                  dataset, device)
    for job in jobs:
        cfg = configs[job.name]
        if args.suite == "coco":
            check_coco(cfg, cache)
        else:
            check_cityscapes(cfg)
        if not args.ckpt:
            check_pretrained(cfg, args.pretrained, dataset, job.name, cache)
        print(f"  ok  {job.name}  ({relative(job.config)})", flush=True)
        plan = None if args.ckpt else batch_plan(cfg)
        if plan is not None:
            print("      " + plan.describe().replace("\n", "\n      "), flush=True)
    check_output_folders(jobs, configs, args)
    return jobs, configs, dataset, partition_gpus


def check_output_folders(jobs: list[Job], configs: dict[str, Any], args: argparse.Namespace) -> None:
    """WORK_DIR and the records' folder writable, and WORK_DIR's disk able to hold the checkpoints
    (node 0 only: the other nodes' processes save nothing)."""
    if args.node_rank > 0 or not jobs:
        return
    try:
        run_space.check_writable(args.runs_dir, "the run records' folder")
        for job in jobs:
            run_space.check_writable(job.run_dir or Path(args.work_dir) / args.suite / job.name, "WORK_DIR",
                                     "WORK_DIR")
        if args.ckpt:
            return  # an evaluation saves no checkpoint
        estimates = [run_space.estimate(job.name, configs[job.name]) for job in jobs]
        lines = run_space.check_space(args.work_dir, estimates)
    except run_space.SpaceError as error:
        raise PreflightError(str(error)) from None
    print("  " + "\n  ".join(lines), flush=True)


def interrupted_message(args: argparse.Namespace, job: Job | None, run_dir: Path | None = None) -> str:
    """The one line a Ctrl-C ends with: how to go on."""
    if job is None:
        return "interrupted before any run started; nothing was written. Run the same command again to start"
    if args.ckpt:
        return f"interrupted: the evaluation of {job.name} stopped. Run the same command again to evaluate it"
    if run_dir is not None and not (run_dir / "last_checkpoint").is_file() and not job.resume:
        return (f"interrupted: {job.name} stopped before its first checkpoint (nothing to resume in {run_dir}). "
                f"Run the same command again to start it anew")
    return (f"interrupted: {job.name} stopped; its checkpoints are in {run_dir or args.work_dir}. "
            f"Continue with: {make_command(args, resume=True)} (scripts/benchmark.py: the same arguments "
            f"and --resume)")


def run_child(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """(exit code, whether Ctrl-C came) of a job's processes.

    Ctrl-C at the terminal reaches them as well (one process group): the launcher then only notes
    it and waits for them to stop, so that neither it nor they print a traceback; a second Ctrl-C
    stops waiting (subprocess.run then kills them)."""
    interrupted = []

    def note(signum: int, frame: Any) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        return subprocess.run(command, env=env).returncode, bool(interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Pre-flight, then each job's run in turn; 0 when all finished, 2 on a pre-flight error."""
    args = parse_args(argv)
    os.chdir(REPO)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    try:
        jobs, configs, dataset, partition_gpus = preflight(args)
    except PreflightError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(args, None)}", file=sys.stderr, flush=True)
        return INTERRUPTED
    try:
        return run_jobs(jobs, configs, dataset, partition_gpus, args)
    except RunConfigError as error:
        print(f"\nerror: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:  # between two runs
        print(f"\ninterrupted: continue with: {make_command(args, resume=True)}", file=sys.stderr, flush=True)
        return INTERRUPTED


def run_jobs(jobs: list[Job], configs: dict[str, Any], dataset: str, partition_gpus: bool | None,
             args: argparse.Namespace) -> int:
    """Each job's run in turn; 0 when all finished."""
    env = _environment(args)
    summary = []
    for index, job in enumerate(jobs, 1):
        config, scratch = write_run_config(job, configs[job.name], args)
        command = job_command(job, args, config, partition_gpus)
        what = "evaluating" if args.ckpt else ("resuming" if job.resume else "training + testing")
        banner(f"[{index}/{len(jobs)}] {what} {job.name} on {dataset} data\n$ {shlex.join(command)}")
        start = time.perf_counter()
        try:
            returncode, interrupted = run_child(command, env)
        except KeyboardInterrupt:
            returncode, interrupted = INTERRUPTED, True
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if interrupted:
            print(f"\n{interrupted_message(args, job, None if scratch else config.parent)}", file=sys.stderr,
                  flush=True)
            return INTERRUPTED
        seconds = time.perf_counter() - start
        summary.append((job.name, returncode, seconds))
        if returncode != 0:
            print(f"\nerror: {job.name} failed with exit code {returncode} after {seconds:.0f} s "
                  f"(its log is in {config.parent}/)", file=sys.stderr)
            break
    banner("summary\n" + "\n".join(f"  {'ok    ' if rc == 0 else 'FAILED'} {name:45s} {sec:7.0f} s"
                                   for name, rc, sec in summary))
    return 0 if all(rc == 0 for _, rc, _ in summary) and len(summary) == len(jobs) else 1
