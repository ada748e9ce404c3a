"""Every cross-rank operation of slp goes through this module.

Users train over NCCL, whose process groups have no CPU backend: a collective on a CPU tensor fails there ("No
backend type associated with device type cpu") even though the same code passes on CPU ranks over gloo. So each
collective here takes its tensors on the caller's device (the model's or the engine's), and refuses, with a clear
message, a tensor that NCCL would refuse. Without an initialised process group (one process) every function is the
identity, so library code calls them unconditionally.

Gathers that must carry gradients (the contrastive loss scores local rows against the global batch) use
:func:`all_gather_with_grad`: its backward sums every rank's gradient for a slice and hands the slice back to
its owner, as ``torch.distributed.nn.functional.all_gather`` does, through one all-reduce that every backend
supports (gloo has no reduce-scatter).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def check_device(*tensors: torch.Tensor) -> None:
    """Raise unless every tensor can enter a collective of the current process group (CUDA tensors under NCCL)."""
    if not is_distributed() or dist.get_backend() != "nccl":
        return
    for t in tensors:
        if t.device.type != "cuda":
            raise ValueError(f"a collective received a tensor on {t.device} under NCCL: put it on the model's CUDA "
                             f"device (shape {tuple(t.shape)}, dtype {t.dtype})")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over ranks in place (``op``: "sum" or "max") and return it."""
    if is_distributed():
        check_device(tensor)
        dist.all_reduce(tensor, op=_OPS[op])
    return tensor


def any_rank(flag: bool, device: torch.device) -> torch.Tensor:
    """A bool tensor on ``device``: True when ``flag`` is set on any rank (a stop request, an error)."""
    return all_reduce(torch.tensor([int(flag)], device=device), op="max")[0].bool()


def barrier(device: torch.device) -> None:
    """Wait for every rank. Under NCCL the barrier names the rank's device, which NCCL otherwise guesses."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[device.index if device.index is not None else torch.cuda.current_device()])
    else:
        dist.barrier()


def shutdown(device: torch.device) -> None:
    """Wait for every rank, then destroy the process group (a rank exiting with it alive can abort at exit)."""
    if dist.is_available() and dist.is_initialized():
        barrier(device)
        dist.destroy_process_group()


def pad_to(x: torch.Tensor, sizes: list[int] | tuple[int, ...], value: float | bool = 0) -> torch.Tensor:
    """``x`` padded at the end of its leading dimensions to ``sizes`` (fill ``value``)."""
    pads: list[int] = []
    for dim in reversed(range(x.dim())):
        pads += [0, (sizes[dim] - x.shape[dim]) if dim < len(sizes) else 0]
    return torch.nn.functional.pad(x, pads, value=value) if any(pads) else x


def max_sizes(*tensors: torch.Tensor, dims: int = 2) -> list[list[int]]:
    """The largest size over ranks of each tensor's first ``dims`` dimensions (one all-reduce for all of them)."""
    sizes = torch.tensor([[t.shape[d] if d < t.dim() else 0 for d in range(dims)] for t in tensors],
                         device=tensors[0].device)
    return all_reduce(sizes, op="max").tolist()


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world = rank_and_world()
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank's loss reaches every slice: the slice's gradient is the sum over ranks of its part.
        grad = all_reduce(grad.contiguous(), op="sum")
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (the same shape on every rank) over ranks along dim 0, differentiably."""
    if not is_distributed():
        return tensor
    check_device(tensor)
    return _AllGatherWithGrad.apply(tensor)


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (the same shape on every rank) over ranks along dim 0, without gradient."""
    if not is_distributed():
        return tensor
    check_device(tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts)
