"""Training does not depend on the number of ranks, and every collective can run under NCCL.

The gradient test runs one pre-training step on 2 gloo ranks, each holding part of a batch, averages the
gradients over ranks as DeepSpeed and DDP do, and compares them with one process on the whole batch.
"""

from __future__ import annotations

import ast
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slp import distributed
from slp.losses import hierarchical_mask
from slp.models import LossConfig, PoseEmbeddingConfig, PretrainingModel, PretrainModelConfig, SignEncoderConfig
from slp.models.sign_encoder import StreamConfig

REPO = Path(__file__).resolve().parents[1]
TINY_ENCODER = SignEncoderConfig(
    embedding=PoseEmbeddingConfig(channels=[16, 16], manual_dim=32, non_manual_dim=32),
    manual=StreamConfig(width=32, num_layers=1, num_heads=4),
    non_manual=StreamConfig(width=48, num_layers=1, num_heads=4),
    max_frames=64, dropout=0.0,
)
# λ and the similarity of each case; both ranks run every case in one process group.
CASES = [(0.5, "fine"), (1.0, "fine"), (0.5, "coarse"), (1.0, "coarse")]
# Rank 0 holds 4 samples, rank 1 holds 3 (with a different longest clip): the halves need not be equal.
SPLIT = (slice(0, 4), slice(4, 7))


def _model(lambda_stc: float, similarity: str) -> PretrainingModel:
    torch.manual_seed(0)
    cfg = PretrainModelConfig(encoder=TINY_ENCODER, text_dim=16, embed_dim=24, decoder_hidden=32)
    return PretrainingModel(cfg, LossConfig(lambda_stc=lambda_stc, similarity=similarity, chunk_size=2))


def _batch(b: int = 7, t: int = 20, m: int = 7):
    g = torch.Generator().manual_seed(0)
    pose = torch.rand(b, t, 79, 3, generator=g) * 2 - 1
    pose[..., 2] = torch.rand(b, t, 79, generator=g)
    frame_mask = torch.ones(b, t, dtype=torch.bool)
    frame_mask[1, 12:] = False
    frame_mask[4:, 9:] = False  # rank 1's clips are all shorter: its local batch is narrower than rank 0's
    text = torch.randn(b, m, 16, generator=g)
    text_mask = torch.ones(b, m, dtype=torch.bool)
    text_mask[2, 3:] = False
    text_mask[5, 4:] = False
    joint_mask = hierarchical_mask(frame_mask, 0.4, np.random.default_rng(0))
    paired = torch.tensor([True, True, False, True, True, True, True])  # pairs fall unevenly: 3 and 3 of 4 and 3
    return pose, frame_mask, joint_mask, text, text_mask, paired


def _trim(tensors, rows: slice):
    """One rank's samples, cut to their own longest clip and text, as a rank's loader would batch them."""
    pose, frame_mask, joint_mask, text, text_mask, paired = (t[rows] for t in tensors)
    frames, tokens = int(frame_mask.sum(1).max()), int(text_mask.sum(1).max())
    return (pose[:, :frames], frame_mask[:, :frames], joint_mask[:, :frames], text[:, :tokens],
            text_mask[:, :tokens], paired)


def _step(model: PretrainingModel, batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    out = model(*batch)
    out["loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return grads, {k: float(v) for k, v in out.items() if k != "loss"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = []
    for lam, similarity in CASES:
        grads, values = _step(_model(lam, similarity), _trim(_batch(), SPLIT[rank]))
        for g in grads.values():  # the data-parallel average (DeepSpeed, DDP)
            dist.all_reduce(g)
            g /= world
        results.append(({k: g.numpy() for k, g in grads.items()}, values))
    queue.put((rank, results))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"lambda={lam}-{sim}" for lam, sim in CASES])
def test_two_rank_gradients_equal_the_single_process_gradients(two_rank_results, case):
    lam, similarity = CASES[case]
    single_grads, single_values = _step(_model(lam, similarity), _batch())
    worst = max(float(np.abs(two_rank_results[rank][case][0][name] - g.numpy()).max())
                for rank in (0, 1) for name, g in single_grads.items())
    print(f"lambda={lam} {similarity}: max |gradient difference| over all parameters and both ranks {worst:.1e}")
    for rank in (0, 1):
        grads, values = two_rank_results[rank][case]
        assert set(grads) == set(single_grads)
        for name, g in single_grads.items():
            np.testing.assert_allclose(grads[name], g.numpy(), atol=1e-5, rtol=1e-4, err_msg=f"rank {rank}: {name}")
        # The logged values are the global batch's, on every rank.
        for key in ("objective", "loss_pr", "loss_stc"):
            assert values[key] == pytest.approx(single_values[key], rel=1e-5, abs=1e-6), key
    projector = "alignment.sign_projector.net.0.weight"
    assert np.abs(single_grads[projector].numpy()).sum() > 0


COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "broadcast",
               "broadcast_object_list", "reduce", "reduce_scatter", "reduce_scatter_tensor", "barrier", "gather",
               "scatter", "all_to_all", "send", "recv"}


def test_every_collective_goes_through_slp_distributed():
    """Library and entry points call torch.distributed's collectives only through :mod:`slp.distributed`, which
    puts each tensor on the caller's device (a CPU tensor fails under NCCL)."""
    offenders = []
    for folder in ("slp", "pretrain", "finetune", "data_curation"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "slp" / "distributed.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in COLLECTIVES and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "dist"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} dist.{node.func.attr}")
    assert not offenders, offenders


def _fake_nccl(monkeypatch) -> list[torch.device]:
    """A 2-rank 'NCCL' process group whose collectives record their tensors' devices and refuse CPU tensors, as
    NCCL does."""
    seen: list[torch.device] = []

    def collective(tensor, *args, **kwargs):
        seen.append(tensor.device)
        if tensor.device.type == "cpu":
            raise RuntimeError("No backend type associated with device type cpu")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "nccl")
    monkeypatch.setattr(dist, "all_reduce", collective)
    return seen


def test_stop_agreement_runs_on_the_engine_device(monkeypatch):
    """The trainer's per-step stop agreement builds its tensor on the device it is given (the engine's), never
    on the CPU: `meta` stands in for a CUDA device here."""
    from pretrain.trainer import stop_requested

    seen = _fake_nccl(monkeypatch)
    monkeypatch.setattr(distributed, "check_device", lambda *t: None)  # meta is not CUDA; the fake records it
    flag = stop_requested(torch.device("meta"))
    assert seen == [torch.device("meta")] and flag.device == torch.device("meta")


def test_a_cpu_tensor_under_nccl_is_refused_with_a_clear_message(monkeypatch):
    _fake_nccl(monkeypatch)
    with pytest.raises(ValueError, match="on cpu under NCCL"):
        distributed.all_reduce(torch.zeros(2))
    with pytest.raises(ValueError, match="on cpu under NCCL"):
        distributed.any_rank(True, torch.device("cpu"))
