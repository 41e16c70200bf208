"""Numbers, not plumbing, for data-parallel training and CPU mixed precision.

* Two gloo processes (DistributedDataParallel, train-mode `Involution`, float64), each drawing
  its own shard with DistributedSampler: after one SGD step both ranks hold identical
  parameters, and the gradient on each rank is the mean of the per-rank gradients computed
  separately in this process.
* bfloat16 autocast on the CPU (a training-mode involution stack): loss and every gradient
  close to the float32 run, within a tolerance derived from bfloat16's precision.
"""
from __future__ import annotations

import copy
import datetime
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from involution_ops import Involution

WORLD = 2
SAMPLES, PER_RANK = 16, 4
LR = 0.1


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        Involution(32, 7, 1), nn.BatchNorm2d(32), nn.ReLU(),
        Involution(32, 3, 2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5),
    ).double()


def shard(rank: int) -> list[int]:
    """The indices of rank's first batch, as a DistributedSampler deals them out."""
    return list(DistributedSampler(range(SAMPLES), num_replicas=WORLD, rank=rank, shuffle=True, seed=3))[:PER_RANK]


def loss_on(model: nn.Module, data: dict, indices: list[int]) -> torch.Tensor:
    return F.cross_entropy(model(data["x"][indices]), data["y"][indices])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, workdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        data = torch.load(os.path.join(workdir, "data.pt"), weights_only=True)
        model = small_net()
        model.load_state_dict(data["initial"])
        model.train()
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=LR)
        indices = shard(rank)
        loss = loss_on(ddp, data, indices)
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        optimizer.step()
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        torch.save({"indices": indices, "loss": loss.item(), "grads": grads, "params": params},
                   os.path.join(workdir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_average_gradients_and_agree_after_a_step(tmp_path):
    torch.manual_seed(0)
    model = small_net()
    data = {"x": torch.randn(SAMPLES, 3, 12, 12, dtype=torch.float64), "y": torch.randint(0, 5, (SAMPLES,)),
            "initial": copy.deepcopy(model.state_dict())}
    torch.save(data, tmp_path / "data.pt")

    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    # Each rank drew its own, disjoint shard of the data (and so computed a different loss).
    assert [r["indices"] for r in ranks] == [shard(r) for r in range(WORLD)]
    assert not set(ranks[0]["indices"]) & set(ranks[1]["indices"])
    assert ranks[0]["loss"] != ranks[1]["loss"]

    # Per-rank gradients computed separately here, from the same initial weights.
    local = []
    for rank in range(WORLD):
        replica = small_net()
        replica.load_state_dict(data["initial"])
        replica.train()
        loss = loss_on(replica, data, shard(rank))
        assert loss.item() == pytest.approx(ranks[rank]["loss"], rel=1e-12)
        loss.backward()
        local.append({n: p.grad for n, p in replica.named_parameters()})
    names = list(local[0])
    assert any(not torch.allclose(local[0][n], local[1][n]) for n in names)  # averaging is not vacuous

    for name in names:
        mean = (local[0][name] + local[1][name]) / 2
        for rank in range(WORLD):
            torch.testing.assert_close(ranks[rank]["grads"][name], mean, rtol=1e-10, atol=1e-13,
                                       msg=lambda m, name=name, rank=rank: f"rank {rank} gradient of {name}: {m}")
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name
        torch.testing.assert_close(ranks[0]["params"][name], data["initial"][name] - LR * mean, rtol=1e-10,
                                   atol=1e-13, msg=lambda m, name=name: f"{name} after the step: {m}")


# bfloat16 keeps 8 significant bits, so rounding to it changes a value by up to u = 2**-8
# (0.39 %) relative. Under CPU autocast each conv/linear rounds its inputs, weights and output
# to bfloat16 (accumulating in float32) and the involution op runs in bfloat16 (accumulating in
# float32), forward and backward. The loss, a smooth average, moves by well under u. A gradient
# collects about u per rounding on its path (~10 here), with independent signs; tensors whose
# gradient is a sum of cancelling terms (biases, norm affine) lose more, relatively, and batch
# norm in training mode multiplies all of it, because its backward subtracts the batch mean of
# the gradient (a cancellation: x4-8 here). Measured over seeds 0-9 (whole gradient / worst
# tensor, relative L2): 10.7u / 43.5u without norms, 46.5u / 79.7u with the involutions' batch
# norm; loss <= 0.35u. The bounds are about twice that. A wrong, dropped or mis-cast term in the
# bfloat16 path changes gradients by O(1), i.e. ~256u. (A randomly initialised RedNet-26 is too
# ill-conditioned for a tight bound: its float32 gradient is 34 float32-u off float64, and
# bfloat16 ~85u off float32, whichever involution backend.)
U_BF16 = 2.0**-8
LOSS_RTOL = 1 * U_BF16
GRAD_RTOL = {"no_norm": (24 * U_BF16, 96 * U_BF16), "batch_norm": (96 * U_BF16, 160 * U_BF16)}


def involution_stack(norm: type[nn.Module]) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        Involution(32, 7, 1, norm_layer=norm), nn.ReLU(),
        Involution(32, 3, 2, norm_layer=norm), nn.ReLU(),
        Involution(32, 7, 1, norm_layer=norm), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5),
    )


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    model = copy.deepcopy(model).train()  # training: the recomputing involution path
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    return logits, loss, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("norm", ["no_norm", "batch_norm"])
def test_cpu_bfloat16_autocast_loss_and_gradients_match_float32(norm):
    torch.manual_seed(0)
    model = involution_stack(nn.BatchNorm2d if norm == "batch_norm" else nn.Identity)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    logits32, loss32, grads32 = _step(model, x, y, bf16=False)
    logits16, loss16, grads16 = _step(model, x, y, bf16=True)

    assert logits32.dtype == torch.float32 and logits16.dtype == torch.bfloat16
    assert all(g.dtype == torch.float32 for g in grads16.values())  # float32 master weights
    loss_error = abs(loss16.item() - loss32.item()) / abs(loss32.item())
    assert 0 < loss_error <= LOSS_RTOL, f"loss {loss16.item()} vs {loss32.item()}: {loss_error / U_BF16:.2f}u"

    total_bound, tensor_bound = GRAD_RTOL[norm]
    errors = {n: ((grads16[n] - g).norm() / g.norm()).item() for n, g in grads32.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tensor_bound, f"{worst}: relative gradient error {errors[worst] / U_BF16:.1f}u"
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])
    total = ((flat16 - flat32).norm() / flat32.norm()).item()
    assert 0 < total <= total_bound, f"relative error of the whole gradient {total / U_BF16:.1f}u"
