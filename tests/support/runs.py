"""Helpers for end-to-end tests that start the benchmark runner as a user would."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_at_first_checkpoint(command: list[str], runs: Path, cwd: Path, timeout: float = 300) -> Path:
    """Start `command`, SIGKILL its whole process group as soon as a run folder under `runs` has a
    checkpoint, and return that checkpoint's path (the test then resumes the run)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
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


def toy_retinanet_command(work: Path, *extra: str, iters: int = 6, options: tuple[str, ...] = ()) -> list[str]:
    """scripts/benchmark.py training the tiny toy RetinaNet: run folders in work/work_dirs, records
    in work/runs; `extra` are benchmark.py arguments, `options` more --cfg-options."""
    return [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "coco", "retinanet", "--configs", TOY_RETINANET,
            "--work-dir", str(work / "work_dirs"), "--runs-dir", str(work / "runs"), *extra,
            "--cfg-options", f"train_cfg.max_iters={iters}", *TINY_RETINANET, *options]
