"""Helpers for end-to-end tests that start the benchmark runner as a user would."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from . import REPO_ROOT


def checkout_env(root: Path = REPO_ROOT, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose Python imports the package of the checkout `root` first: the scripts
    import the installed package, which may be another checkout's (a worktree, a copy made by a test)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def benchmark_command(suite: str, group: str, config: str, work: Path, *extra: str,
                      options: Iterable[str] = ()) -> list[str]:
    """scripts/benchmark.py as `make <suite>-<group>` runs it, on one config, with its run folders in
    `work`/work_dirs and its records in `work`/runs; `options` go to --cfg-options."""
    options = list(options)
    return [sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), suite, group, "--configs", config,
            "--work-dir", str(work / "work_dirs"), "--runs-dir", str(work / "runs"), *extra,
            *(["--cfg-options", *options] if options else [])]


def run_ok(command: list[str], timeout: float = 400) -> str:
    """Run `command` from the checkout, fail with the tail of its output unless it exits 0, and
    return its output (stdout, then stderr)."""
    result = subprocess.run(command, cwd=REPO_ROOT, env=checkout_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def records(runs_dir: Path) -> list[dict]:
    """The run records in `runs_dir`, in file-name order."""
    return [json.loads(path.read_text()) for path in sorted(runs_dir.glob("*.json"))]


# scripts/benchmark.py's arguments for one full (not toy) COCO config, for the pre-flight tests
FULL_RETINANET = ("coco", "retinanet", "--configs", "retinanet_red50_fpn_1x_coco")


def benchmark_in_process(capsys, *argv: str) -> tuple[int, str]:
    """scripts/benchmark.py `argv` run in this process: its exit code and what it wrote to stderr
    (for the pre-flight tests, whose runs must stop before anything starts)."""
    from involution_ops.bench.launch import cli

    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def run_config(job: Any, data_root: Path, options: Any, warned: set | None = None,
               dataset: str | None = None, device: str | None = None) -> Any:
    """The config a launch of `options` builds for `job` on `data_root` (launch.planning.load_config),
    with the run context made here: the dataset label follows the config's folder (toy or the
    suite) unless given, the device is planned as a launch plans it unless given."""
    from involution_ops.bench.launch import planning
    from involution_ops.bench.manifest import load_manifest

    dataset = dataset or ("toy" if job.config.parent.name == "toy" else options.suite)
    context = planning.run_context(options, load_manifest(), data_root, dataset,
                                   device=device or planning.planned_device(options))
    return planning.load_config(job, context, warned)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_at_first_checkpoint(command: list[str], runs: Path, cwd: Path, timeout: float = 300) -> Path:
    """Start `command`, SIGKILL its whole process group as soon as a run folder under `runs` has a
    checkpoint, and return that checkpoint's path (the test then resumes the run)."""
    process = subprocess.Popen(command, cwd=cwd, env=checkout_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = None
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        found = list(runs.glob("*/last_checkpoint"))
        if found:
            pointer = found[0]
            break
        time.sleep(0.05)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the run ended on its own (the assert below says so)
        pass
    process.wait()
    assert pointer is not None, "the run ended or timed out before writing a checkpoint"
    return pointer


# --cfg-options that fit a full COCO RetinaNet config to the built-in toy COCO data: its three
# classes in the head and, by name, in every split's dataset (COCO's 80 names match none of them).
FIT_TOY_COCO = ["model.bbox_head.num_classes=3"] + [
    f"{split}_dataloader.dataset.metainfo.classes=(circle,square,triangle)" for split in ("train", "val", "test")]


TOY_RETINANET = "retinanet_red50_neck_fpn_1x_coco"
# Tiny images, a four-image test set, every prediction kept (so the AP of a barely trained model
# is not simply zero), checkpoints every 2 iterations.
TINY_RETINANET = ["train_dataloader.dataset.pipeline.2.scale=(128,96)",
                  "test_dataloader.dataset.pipeline.1.scale=(128,96)", "test_dataloader.dataset.indices=4",
                  "model.test_cfg.score_thr=0.0", "default_hooks.logger.interval=1",
                  "default_hooks.checkpoint.interval=2", "default_hooks.checkpoint.max_keep_ckpts=10"]


def toy_retinanet_command(work: Path, *extra: str, iters: int = 6, options: Iterable[str] = ()) -> list[str]:
    """scripts/benchmark.py training the tiny toy RetinaNet for `iters` iterations (see
    `benchmark_command`); `extra` are benchmark.py arguments, `options` more --cfg-options."""
    return benchmark_command("coco", "retinanet", TOY_RETINANET, work, *extra,
                             options=[f"train_cfg.max_iters={iters}", *TINY_RETINANET, *options])
