"""The pre-training loop on DeepSpeed: engine, schedule, logging, checkpoints, exact resume, encoder export.

Resume is exact: a checkpoint holds the engine (weights, optimiser, scheduler) through DeepSpeed, and per rank
the number of batches consumed and the RNG states (python, numpy, torch) — the data stream is a pure function
of the config (slp.data.loader), so skipping the consumed batches puts every rank at the same sample.
SIGTERM (a cluster pre-empting the job) makes every rank save at the next step boundary and exit cleanly.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path

import deepspeed
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pretrain.config import PretrainRunConfig
from slp.data.loader import expand_shards, pretrain_batches
from slp.data.shards import write_summary
from slp.models.pretraining import PretrainingModel
from slp.text.mbart import FrozenTextEncoder

LATEST = "latest"


def count_samples(shards: list[str]) -> int:
    """Samples listed in the ``manifest.parquet`` beside the shards (curation and the synthetic corpus write one)."""
    manifests = {Path(s).parent.parent / "manifest.parquet" for s in shards} | {
        Path(s).parent / "manifest.parquet" for s in shards}
    names = {Path(s).name for s in shards}
    total = 0
    for manifest in manifests:
        if manifest.is_file():
            total += sum(1 for shard in pq.read_table(manifest, columns=["shard"])["shard"].to_pylist()
                         if shard in names)
    return total


def total_steps(cfg: PretrainRunConfig, world_size: int) -> int:
    if cfg.optim.max_steps > 0:
        return cfg.optim.max_steps
    samples = cfg.samples_per_epoch or count_samples(expand_shards(cfg.data.shards))
    if samples <= 0:
        raise ValueError("no manifest.parquet beside the shards: set samples_per_epoch or optim.max_steps")
    return max(1, math.ceil(cfg.optim.epochs * samples / (cfg.data.batch_size * world_size)))


def warmup_linear_decay(steps: int, warmup_fraction: float):
    warmup = max(1, int(round(steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, positions and the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "positions" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def deepspeed_config(cfg: PretrainRunConfig) -> dict:
    with open(cfg.deepspeed.config) as f:
        ds = json.load(f)
    ds["train_micro_batch_size_per_gpu"] = cfg.data.batch_size
    ds["gradient_clipping"] = cfg.optim.grad_clip
    ds.setdefault("zero_optimization", {})["stage"] = cfg.deepspeed.zero_stage
    ds["bf16"] = {"enabled": cfg.deepspeed.bf16}
    ds.pop("train_batch_size", None)
    return ds


class _Stop:
    """Set by SIGTERM; checked (and agreed on across ranks) at step boundaries."""

    requested = False

    @classmethod
    def install(cls) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(cls, "requested", True))


def _agreed(flag: bool) -> bool:
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(engine, out: Path, step: int, rank: int, model: PretrainingModel) -> Path:
    ckpt = out / "checkpoints"
    tag = f"step{step:08d}"
    # `latest` is written last, once every rank's files are complete: a run killed at any moment resumes
    # from a whole checkpoint.
    engine.save_checkpoint(str(ckpt), tag=tag, client_state={"step": step}, save_latest=False)
    torch.save({"step": step, "batches": step, "rng": _rng_state()}, ckpt / tag / f"rank{rank:03d}_state.pt")
    if rank == 0:
        model.encoder.save_pretrained(ckpt / tag / "encoder")
    dist.barrier()
    if rank == 0:
        (ckpt / f".{LATEST}.tmp").write_text(tag)
        os.replace(ckpt / f".{LATEST}.tmp", ckpt / LATEST)
    dist.barrier()
    return ckpt / tag


def prune_checkpoints(out: Path, keep: int) -> None:
    import shutil

    tags = sorted(p for p in (out / "checkpoints").glob("step*") if p.is_dir())
    for old in tags[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def train(cfg: PretrainRunConfig, resume: bool = False) -> dict:
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else \
        torch.device("cpu")
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    out = Path(cfg.output)
    _Stop.install()

    text_encoder = FrozenTextEncoder.from_pretrained(cfg.text.name_or_path, cfg.data.max_text_tokens).to(device)
    if cfg.model.text_dim != text_encoder.d_model:
        raise ValueError(f"model.text_dim={cfg.model.text_dim} but the text encoder's d_model is "
                         f"{text_encoder.d_model}: set model.text_dim={text_encoder.d_model}")
    model = PretrainingModel(cfg.model, cfg.loss)
    steps = total_steps(cfg, world)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(steps, cfg.optim.warmup_fraction))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg))
    dtype = torch.bfloat16 if cfg.deepspeed.bf16 else torch.float32

    start = 0
    if resume and (out / "checkpoints" / LATEST).is_file():
        tag = (out / "checkpoints" / LATEST).read_text().strip()
        _, client = engine.load_checkpoint(str(out / "checkpoints"), tag=tag)
        start = int(client["step"])
        state = torch.load(out / "checkpoints" / tag / f"rank{rank:03d}_state.pt", weights_only=False)
        _set_rng_state(state["rng"])
    batches = pretrain_batches(cfg.data, text_encoder.text_tokenizer, rank=rank, world_size=world,
                               mask_ratio=cfg.loss.mask_ratio, skip=start)

    writer = SummaryWriter(str(out / "tensorboard")) if rank == 0 else None
    log = open(out / "steps.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=steps, initial=start, desc="pre-training", unit="step", disable=rank != 0)
    began, samples, step, last = time.time(), 0, start, {}
    while step < steps:
        batch = next(batches)
        with torch.no_grad():
            text = text_encoder(batch.input_ids, batch.text_mask)
        result = engine(batch.pose.to(device, dtype), batch.frame_mask.to(device), batch.joint_mask.to(device),
                        text.to(device, dtype), batch.text_mask.to(device), batch.paired.to(device))
        engine.backward(result["loss"])
        engine.step()
        step += 1
        samples += len(batch.keys) * world
        last = {k: float(v.detach().float()) for k, v in result.items()}
        last["lr"] = float(scheduler.get_last_lr()[0])
        rate = samples / max(time.time() - began, 1e-9)
        if rank == 0:
            log.write(json.dumps({"step": step, **last}) + "\n")
            log.flush()
            bar.update()
            bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{rate:.1f}")
            if step % cfg.log_every == 0 or step == steps:
                for k in ("loss", "loss_pr", "loss_stc", "temperature", "lr"):
                    writer.add_scalar(f"train/{k}", last[k], step)
                writer.add_scalar("train/samples_per_s", rate, step)
        stop = _agreed(_Stop.requested)
        if step % cfg.checkpoint.every_steps == 0 or stop:
            save_checkpoint(engine, out, step, rank, model)
            if rank == 0:
                prune_checkpoints(out, cfg.checkpoint.keep)
        if stop:
            break
    bar.close()
    summary = {
        "steps": step, "total_steps": steps, "stopped_early": step < steps, "resumed_from": start,
        "samples": samples, "samples_per_s": samples / max(time.time() - began, 1e-9),
        "seconds": time.time() - began, "world_size": world, "final": last, "config": asdict(cfg),
    }
    if rank == 0:
        model.encoder.save_pretrained(out / "encoder")
        write_summary(out / "summary.json", summary)
        writer.close()
        log.close()
    dist.barrier()
    return summary
