"""Pre-flight of the launch options: the launch arguments against this machine
(involution_ops.bench.launch_checks) and AMP. CFG_OPTIONS keys are checked against each config
as it is built (involution_ops.bench.config_checks, through runconfig)."""
from __future__ import annotations

from typing import Any

from .errors import PreflightError


def check_launch_options(options: Any) -> None:
    """GPUS, NNODES, NODE_RANK, SEED... and AMP: what cannot work here stops before anything loads."""
    from ..launch_checks import check_launch

    check_launch(options, cuda=None if not options.slurm_partition else False)
    check_amp(options.amp, options.slurm_partition)


def check_amp(amp: bool, slurm_partition: str | None = None) -> None:
    if amp:
        import torch

        if not torch.cuda.is_available() and not slurm_partition:
            raise PreflightError("AMP=1 needs a CUDA GPU (mixed precision through AmpOptimWrapper); "
                                 "this machine has none. Fix: drop AMP=1 on a CPU")
