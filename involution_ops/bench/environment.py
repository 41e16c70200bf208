"""Facts about the machine and the checkout a measurement or a run was made on.

One place for what records, the speed benchmark and the tables state about their
environment: the git commit (and whether the work tree had uncommitted changes), package
versions, the CPU model, cores, torch threads, GPU names, the load average and the CPU time
other processes took while we ran (`CpuClock` / `other_load`). Importing this module imports
neither torch nor any measurement code; the functions that need torch import it when called.
"""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .output import REPO_ROOT

# (key in records, distribution name) of the packages a result depends on
PACKAGES: tuple[tuple[str, str], ...] = (
    ("torch", "torch"), ("mmengine", "mmengine"), ("mmcv", "mmcv"), ("mmdet", "mmdet"),
    ("mmseg", "mmsegmentation"), ("involution_ops", "involution_ops"))


# --------------------------------------------------------------------------- the checkout

@dataclass(frozen=True)
class GitState:
    commit: str  # the full hash of HEAD
    dirty: bool  # tracked files differ from HEAD

    @property
    def short(self) -> str:
        return self.commit[:12]


def git_state(root: Path = REPO_ROOT) -> GitState | None:
    """HEAD of the checkout at `root` and whether tracked files changed; None outside a git checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(commit, bool(status)) if commit else None


def git_commit(root: Path = REPO_ROOT) -> str:
    """The commit as run records store it: `<hash>`, `<hash>-dirty`, or `unknown`."""
    state = git_state(root)
    if state is None:
        return "unknown"
    return state.commit + ("-dirty" if state.dirty else "")


def git_description(root: Path = REPO_ROOT) -> str:
    """The commit as a sentence for generated markdown."""
    state = git_state(root)
    if state is None:
        return "an unknown git commit (not a git checkout)"
    return f"git commit `{state.short}`" + (" with uncommitted changes" if state.dirty else "")


def package_versions(packages: tuple[tuple[str, str], ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed), by its key."""
    found: dict[str, str | None] = {}
    for key, distribution in packages:
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


# --------------------------------------------------------------------------- the machine

def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int | None:
    """Logical CPUs of the machine (not only those this process may use)."""
    return os.cpu_count()


def torch_threads() -> int:
    """The CPU threads torch's operators use in this process."""
    import torch

    return torch.get_num_threads()


def gpu_names() -> list[str]:
    """Names of the visible CUDA devices; empty without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]


def hardware() -> dict[str, object]:
    """The machine as run records state it: CPU model and cores, GPU names and count."""
    gpus = gpu_names()
    return {"cpu": f"{cpu_model()} ({cpu_cores()} cores)", "gpus": gpus, "num_gpus": len(gpus)}


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded to 0.01; None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- other processes' load

@dataclass(frozen=True)
class CpuClock:
    """CPU seconds since boot: `machine` used by every process, `own` by this process and its children."""

    machine: float
    own: float


def cpu_clock() -> CpuClock | None:
    """The machine's and this process's CPU seconds now, from Linux's /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait
    own = os.times()
    return CpuClock(busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system)


def other_load(start: CpuClock | None, end: CpuClock | None, seconds: float) -> float | None:
    """Cores that other processes kept busy on average between two clock readings `seconds` apart:
    the machine's CPU time minus our own, over the wall time. Unlike the load average, our own
    threads do not count. None when a reading is missing."""
    if start is None or end is None or seconds <= 0:
        return None
    return round(max(0.0, ((end.machine - start.machine) - (end.own - start.own)) / seconds), 2)
