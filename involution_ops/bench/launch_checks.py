"""Checks of the launch arguments (GPUS, NNODES, MASTER_ADDR, SEED) before anything is built, and
the `make` command lines that the launcher's hints print (quoted so they paste into a shell)."""
from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from .preflight.errors import PreflightError

if TYPE_CHECKING:
    from .launch.options import LaunchOptions

SEED_MAX = 2**32 - 1  # numpy's seed range, which mmengine's set_random_seed hands the seed to
# make variable -> (LaunchOptions attribute, default); in the order `make help` users write them
MAKE_VARIABLES = (("DATA", "data", None), ("GPUS", "gpus", 1), ("NNODES", "nnodes", 1),
                  ("NODE_RANK", "node_rank", 0), ("MASTER_ADDR", "master_addr", None),
                  ("MASTER_PORT", "master_port", 29500), ("SLURM_PARTITION", "slurm_partition", None),
                  ("CKPT", "ckpt", None), ("PRETRAINED", "pretrained", None), ("WORK_DIR", "work_dir", "work_dirs"),
                  ("SEED", "seed", 0), ("DETERMINISTIC", "deterministic", False), ("AMP", "amp", False),
                  ("RESUME", "resume", False), ("BASELINES", "baselines", False), ("BATCH", "batch", None),
                  ("CONFIGS", "configs", None), ("CFG_OPTIONS", "cfg_options", []))


class LaunchError(PreflightError, ValueError):
    """Launch arguments that cannot work on this machine; the message names the problem and the fix."""


def make_assignment(name: str, value: str | list[str]) -> str:
    """``NAME=value`` quoted for the shell that runs make (the Makefile passes CFG_OPTIONS on intact)."""
    text = " ".join(value) if isinstance(value, list) else str(value)
    return f"{name}={shlex.quote(text)}"


def cfg_options_hint(options: list[str]) -> str:
    """How a hint writes CFG_OPTIONS so that it pastes into make: ``CFG_OPTIONS='a=(x,y) b=1'``."""
    return make_assignment("CFG_OPTIONS", options)


def make_target(suite: str, group: str) -> str:
    """The make target that runs ``scripts/benchmark.py suite group`` (see the Makefile)."""
    return suite if group == "all" else f"{suite}-{group.replace('_', '-')}"


def make_command(options: LaunchOptions, **changes: object) -> str:
    """The make command line of this invocation (options left at their defaults are left out),
    with ``changes`` (attribute -> value) applied, e.g. ``resume=True``."""
    values = {**vars(options), **changes}
    words = ["make", make_target(values["suite"], values["group"])]
    for variable, attribute, default in MAKE_VARIABLES:
        value = values.get(attribute)
        if value in (None, default, [], False) or (attribute == "batch" and value == "accumulate"):
            continue
        words.append(f"{variable}=1" if value is True else make_assignment(variable, value))
    return " ".join(words)


def available_processes(cuda: bool) -> tuple[int, str]:
    """(how many processes this machine can give one device each, what they are)."""
    if cuda:
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return torch.cuda.device_count(), ("visible CUDA devices" + (f" (CUDA_VISIBLE_DEVICES={visible})"
                                                                     if visible is not None else ""))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores, "CPU cores (no CUDA device: each process is a gloo CPU process)"


def check_launch(options: LaunchOptions, cuda: bool | None = None) -> None:
    """Refuse launch arguments that would hang, oversubscribe the machine or fail late."""
    if not 0 <= options.seed <= SEED_MAX:
        raise LaunchError(f"SEED={options.seed}: a seed must be between 0 and {SEED_MAX} (2**32-1, numpy's range). "
                          f"Fix: give a seed in that range, e.g. SEED=0")
    if not 0 <= options.node_rank < options.nnodes:
        raise LaunchError(f"NODE_RANK={options.node_rank} with NNODES={options.nnodes}: the node ranks are 0 to "
                          f"{options.nnodes - 1}. Fix: give each node its own rank in that range")
    if options.nnodes > 1 and not options.slurm_partition:
        example = make_command(options, master_addr="<address of node 0>", node_rank=0)
        if not options.master_addr:
            raise LaunchError(f"NNODES={options.nnodes} needs MASTER_ADDR: without it torchrun on every node waits "
                              f"for node 0 at 127.0.0.1 (itself), with no output, forever. Fix: on every node set "
                              f"MASTER_ADDR to an address of the NODE_RANK=0 machine that the others reach, and its "
                              f"own NODE_RANK, e.g. {example}; or launch through Slurm with SLURM_PARTITION=...")
    if options.slurm_partition:
        return  # the processes run on the partition's nodes; Slurm checks their resources
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    available, what = available_processes(cuda)
    if options.gpus > available:
        raise LaunchError(f"GPUS={options.gpus} processes per node, but this machine has {available} {what}. "
                          f"Fix: set GPUS={available} or fewer (BATCH keeps the paper's total batch on fewer "
                          f"processes), or launch where there are more devices")
