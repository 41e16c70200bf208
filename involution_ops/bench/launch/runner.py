"""Running the planned jobs one after the other: each run's config.py written, its processes
started and waited for, Ctrl-C turned into one line saying how to go on, and the summary."""
from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..output import banner
from ..launch_checks import make_command
from . import commands, planning
from .options import Job, LaunchOptions, RunContext

INTERRUPTED = 130  # the shell's exit status for a process ended by SIGINT


def interrupted_message(options: LaunchOptions, job: Job | None, run_dir: Path | None = None) -> str:
    """The one line a Ctrl-C ends with: how to go on."""
    if job is None:
        return "interrupted before any run started; nothing was written. Run the same command again to start"
    if options.ckpt:
        return f"interrupted: the evaluation of {job.model.name} stopped. Run the same command again to evaluate it"
    if run_dir is not None and not (run_dir / "last_checkpoint").is_file() and not job.resume:
        return (f"interrupted: {job.model.name} stopped before its first checkpoint (nothing to resume in {run_dir}). "
                f"Run the same command again to start it anew")
    return (f"interrupted: {job.model.name} stopped; its checkpoints are in {run_dir or options.work_dir}. "
            f"Continue with: {make_command(options, resume=True)} (scripts/benchmark.py: the same arguments "
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


def run_jobs(jobs: list[Job], configs: dict[str, Any], context: RunContext) -> int:
    """Each job's run in turn; 0 when all finished."""
    options = context.options
    env = commands.child_environment(options)
    summary = []
    for index, job in enumerate(jobs, 1):
        config, scratch = planning.write_run_config(job, configs[job.model.name], options)
        command = commands.job_command(job, options, config, context.partition_gpus)
        what = "evaluating" if options.ckpt else ("resuming" if job.resume else "training + testing")
        banner(f"[{index}/{len(jobs)}] {what} {job.model.name} on {context.dataset} data\n$ {shlex.join(command)}")
        start = time.perf_counter()
        try:
            returncode, interrupted = run_child(command, env)
        except KeyboardInterrupt:
            returncode, interrupted = INTERRUPTED, True
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        if interrupted:
            print(f"\n{interrupted_message(options, job, None if scratch else config.parent)}", file=sys.stderr,
                  flush=True)
            return INTERRUPTED
        seconds = time.perf_counter() - start
        summary.append((job.model.name, returncode, seconds))
        if returncode != 0:
            print(f"\nerror: {job.model.name} failed with exit code {returncode} after {seconds:.0f} s "
                  f"(its log is in {config.parent}/)", file=sys.stderr)
            break
    banner("summary\n" + "\n".join(f"  {'ok    ' if rc == 0 else 'FAILED'} {name:45s} {sec:7.0f} s"
                                   for name, rc, sec in summary))
    return 0 if all(rc == 0 for _, rc, _ in summary) and len(summary) == len(jobs) else 1
