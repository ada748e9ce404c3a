"""Pre-training on one device in this process, without DeepSpeed: for experiments that run many short
pre-trainings (``benchmarks/ablations.py``) or long ones that must survive a kill (``benchmarks/real_islr.py``).

The model, losses, loader, parameter groups, linear warm-up / decay, gradient clipping and the RNG state a resume
restores are those of :mod:`pretrain.trainer`; what is left out is what a multi-process run needs (the engine, logs,
the encoder exported at each checkpoint).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import get_scheduler

from pretrain.config import PretrainRunConfig
from pretrain.trainer import parameter_groups, rng_state, set_rng_state
from slp.data.loader import PretrainLoader
from slp.models.pretraining import PretrainingModel
from slp.text import FrozenTextEncoder


def pretrain_on_one_device(cfg: PretrainRunConfig, steps: int, device: torch.device | str = "cpu",
                           losses: list[dict[str, float]] | None = None, checkpoint: Path | None = None,
                           checkpoint_every: int = 250) -> PretrainingModel:
    """``steps`` optimiser steps of ``cfg`` on ``device``; returns the trained model (on ``device``).

    ``losses``, when given, gets each step's ``{"loss_pr": L_PR, "loss_stc": L_STC}`` appended (0 for an objective
    that is off). Reading them makes each step wait for the device, hence only when asked for.

    ``checkpoint``, when given, is a file that holds the run's state every ``checkpoint_every`` steps (model,
    optimiser, schedule, loader position, RNGs, the losses so far). A call that finds it goes on from there, to the
    model and losses of a run that was never stopped; the file is removed once the run is complete."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = PretrainingModel(cfg.model, cfg.loss).to(device)
    text_encoder = FrozenTextEncoder.from_pretrained(cfg.text.name_or_path, cfg.data.max_text_tokens).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=round(steps * cfg.optim.warmup_fraction),
                              num_training_steps=steps)
    done, loader_state = 0, None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        done, loader_state = state["step"], state["loader"]
        if losses is not None:
            losses.extend(state["losses"])
        set_rng_state(state["rng"])
    loader = PretrainLoader(cfg.data, text_encoder.text_tokenizer, mask_ratio=cfg.loss.mask_ratio, state=loader_state)
    model.train()
    batches = tqdm(itertools.islice(loader, steps - done), initial=done, total=steps, desc="pre-training",
                   unit="step", leave=False)
    for step, batch in enumerate(batches, done + 1):
        with torch.no_grad():
            text = text_encoder(batch.input_ids.to(device), batch.text_mask.to(device))
        out = model(batch.pose.to(device), batch.frame_mask.to(device), batch.joint_mask.to(device), text,
                    batch.text_mask.to(device), batch.paired.to(device))
        if losses is not None:
            losses.append({"loss_pr": out["loss_pr"].item(), "loss_stc": out["loss_stc"].item()})
        optimizer.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        if checkpoint is not None and step % checkpoint_every == 0 and step < steps:
            # Written aside, then renamed: a kill while writing leaves the previous checkpoint whole.
            partial = checkpoint.with_name(f".{checkpoint.name}.partial")
            torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "loader": loader.state_dict(), "rng": rng_state(),
                        "losses": losses or []}, partial)
            os.replace(partial, checkpoint)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return model
