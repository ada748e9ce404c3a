"""The pre-training loop on DeepSpeed: engine, schedule, logging, checkpoints, exact resume, export (the encoder and
the sign-text alignment module: :meth:`slp.models.pretraining.PretrainingModel.save_pretrained`).

Resume is exact: a checkpoint holds the engine (weights, optimiser, scheduler) through DeepSpeed, and per rank
the loader's position and the RNG states (python, numpy, torch). The data stream is a pure function of the
config (slp.data.loader) and each loader worker's position is an epoch and a batch within it, so a resumed rank
re-reads at most about one epoch per worker, however many epochs are done.
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
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from transformers import get_scheduler

from pretrain.config import PretrainRunConfig
from slp.cli_errors import UserError
from slp.data.loader import PretrainLoader, PretrainStream, expand_shards, selected
from slp.data.shards import find_manifest, write_summary
from slp.distributed import any_rank, barrier, rank_and_world, shutdown
from slp.models.model_card import card_data_from_shards
from slp.models.pretraining import PretrainingModel
from slp.text.mbart import FrozenTextEncoder

LATEST = "latest"


def count_samples(shards: list[str]) -> int:
    """Samples listed in the ``manifest.parquet`` beside the shards (curation and the synthetic corpus write one)."""
    manifests = {find_manifest(Path(s).parent) for s in shards} - {None}
    names = {Path(s).name for s in shards}
    return sum(sum(1 for shard in pq.read_table(manifest, columns=["shard"])["shard"].to_pylist() if shard in names)
               for manifest in manifests)


def encoder_card(cfg: PretrainRunConfig) -> dict:
    """What the exported encoder's model card states about its data (``save_pretrained``'s keywords): per-dataset
    counts of the samples this run reads, by the manifests beside its shards, their sha256, and the estimators."""
    return card_data_from_shards(expand_shards(cfg.data.shards),
                                 lambda row: selected(cfg.data, row["dataset"], row["split"], row["key"]))


def export_figures(step: int, steps: int, world: int, resumed_from: int, last: dict) -> dict:
    """The run's figures an export's model card states (:func:`slp.models.model_card.pretraining_section`): the steps
    done of ``steps``, the world size, the step resumed from and the ``last`` step's global losses, τ and lr."""
    return {"steps": step, "total_steps": steps, "world_size": world, "resumed_from": resumed_from,
            "final": dict(last)}


def total_steps(cfg: PretrainRunConfig, world_size: int) -> int:
    if cfg.optim.max_steps > 0:
        return cfg.optim.max_steps
    samples = cfg.samples_per_epoch or count_samples(expand_shards(cfg.data.shards))
    if samples <= 0:
        raise ValueError("no manifest.parquet beside the shards: set samples_per_epoch or optim.max_steps")
    return max(1, math.ceil(cfg.optim.epochs * samples / (cfg.data.batch_size * world_size)))


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


def stop_requested(device: torch.device) -> torch.Tensor:
    """Whether any rank was asked to stop, agreed on by every rank; the collective runs on ``device`` (the
    engine's: NCCL has no CPU backend)."""
    return any_rank(_Stop.requested, device)


def rng_state() -> dict:
    """The RNGs a resumed run restores; on a GPU also the current device's, which draws the dropout masks there."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def save_checkpoint(engine, out: Path, step: int, rank: int, model: PretrainingModel,
                    loader: PretrainLoader, export: dict) -> Path:
    """Every rank's part of checkpoint ``step``; rank 0 also exports ``encoder/`` in it (``export``: the keywords of
    :meth:`PretrainingModel.save_pretrained`)."""
    ckpt = out / "checkpoints"
    tag = f"step{step:08d}"
    # `latest` is written last, once every rank's files are complete: a run killed at any moment resumes
    # from a whole checkpoint.
    engine.save_checkpoint(str(ckpt), tag=tag, client_state={"step": step}, save_latest=False)
    torch.save({"step": step, "loader": loader.state_dict(), "rng": rng_state()},
               ckpt / tag / f"rank{rank:03d}_state.pt")
    if rank == 0:
        model.save_pretrained(ckpt / tag / "encoder", **export)
    barrier(engine.device)
    if rank == 0:
        (ckpt / f".{LATEST}.tmp").write_text(tag)
        os.replace(ckpt / f".{LATEST}.tmp", ckpt / LATEST)
    barrier(engine.device)
    return ckpt / tag


def open_step_log(path: Path, start: int):
    """``steps.jsonl`` for appending after step ``start``: the steps a killed run logged past its last checkpoint
    are dropped, since the resumed run logs them again."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True)
                if line.strip() and json.loads(line)["step"] <= start]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    return open(path, "a")


def prune_checkpoints(out: Path, keep: int) -> None:
    import shutil

    tags = sorted(p for p in (out / "checkpoints").glob("step*") if p.is_dir())
    for old in tags[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def train(cfg: PretrainRunConfig, resume: bool = False) -> dict:
    if torch.cuda.is_available():  # before the process group, so NCCL binds each rank to its own GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
    rank, world = rank_and_world()
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    out = Path(cfg.output)
    _Stop.install()

    # Fail fast: the shards, their split over ranks and workers, and the step count are checked before the text
    # encoder loads (mbart-large-cc25 is a multi-GB download on a first run).
    try:
        PretrainStream(cfg.data, rank, world)
        steps = total_steps(cfg, world)
    except (FileNotFoundError, ValueError) as exc:  # no shard, fewer shards than readers, no sample count
        raise UserError(f"data.shards={cfg.data.shards}: {exc}") from None
    model = PretrainingModel(cfg.model, cfg.loss)
    try:
        text_encoder = FrozenTextEncoder.from_pretrained(cfg.text.name_or_path, cfg.data.max_text_tokens)
    except OSError as exc:  # no such folder, not a saved mBART, hub unreachable
        raise UserError(f"text.name_or_path={cfg.text.name_or_path}: {exc}") from None
    text_encoder.to(device)
    if cfg.model.text_dim != text_encoder.d_model:
        raise UserError(f"model.text_dim={cfg.model.text_dim} but the text encoder's d_model is "
                         f"{text_encoder.d_model}: set model.text_dim={text_encoder.d_model}")
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=round(steps * cfg.optim.warmup_fraction),
                              num_training_steps=steps)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg))
    dtype = torch.bfloat16 if cfg.deepspeed.bf16 else torch.float32

    start, loader_state = 0, None
    if resume and (out / "checkpoints" / LATEST).is_file():
        tag = (out / "checkpoints" / LATEST).read_text().strip()
        _, client = engine.load_checkpoint(str(out / "checkpoints"), tag=tag)
        start = int(client["step"])
        state = torch.load(out / "checkpoints" / tag / f"rank{rank:03d}_state.pt", weights_only=False)
        set_rng_state(state["rng"])
        loader_state = state["loader"]
    loader = PretrainLoader(cfg.data, text_encoder.text_tokenizer, rank=rank, world_size=world,
                            mask_ratio=cfg.loss.mask_ratio, state=loader_state)
    batches = iter(loader)

    # Only rank 0 exports: the encoder with its card, and the alignment module trained against this text encoder.
    export = {"text_model": cfg.text.name_or_path, **encoder_card(cfg)} if rank == 0 else {}
    writer = SummaryWriter(str(out / "tensorboard")) if rank == 0 else None
    log = open_step_log(out / "steps.jsonl", start) if rank == 0 else None
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
        # The global batch's values, the same on every rank (the model reduces them): "loss" is the objective.
        last = {k: float(v.detach().float()) for k, v in result.items() if k != "loss"}
        last["loss"] = last.pop("objective")
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
        stop = bool(stop_requested(engine.device))
        if step % cfg.checkpoint.every_steps == 0 or stop:
            save_checkpoint(engine, out, step, rank, model, loader,
                            {**export, "pretraining": export_figures(step, steps, world, start, last)})
            if rank == 0:
                prune_checkpoints(out, cfg.checkpoint.keep)
        if stop:
            break
    bar.close()
    figures = export_figures(step, steps, world, start, last)
    summary = {
        **figures, "stopped_early": step < steps, "samples": samples,
        "samples_per_s": samples / max(time.time() - began, 1e-9), "seconds": time.time() - began,
        "config": asdict(cfg),
    }
    if rank == 0:
        model.save_pretrained(out / "encoder", **export, pretraining=figures)
        write_summary(out / "summary.json", summary)
        writer.close()
        log.close()
    shutdown(device)
    return summary
