"""Pre-training on one device in this process, without DeepSpeed: for experiments that run many short
pre-trainings (``benchmarks/ablations.py``).

The model, losses, loader, parameter groups, linear warm-up / decay and gradient clipping are those of
:mod:`pretrain.trainer`; what is left out is what a multi-process run needs (the engine, checkpoints, resume, logs).
"""

from __future__ import annotations

import itertools

import torch
from tqdm import tqdm
from transformers import get_scheduler

from pretrain.config import PretrainRunConfig
from pretrain.trainer import parameter_groups
from slp.data.loader import PretrainLoader
from slp.models.pretraining import PretrainingModel
from slp.text import FrozenTextEncoder


def pretrain_on_one_device(cfg: PretrainRunConfig, steps: int, device: torch.device | str = "cpu",
                           losses: list[dict[str, float]] | None = None) -> PretrainingModel:
    """``steps`` optimiser steps of ``cfg`` on ``device``; returns the trained model (on ``device``).

    ``losses``, when given, gets each step's ``{"loss_pr": L_PR, "loss_stc": L_STC}`` appended (0 for an objective
    that is off). Reading them makes each step wait for the device, hence only when asked for."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = PretrainingModel(cfg.model, cfg.loss).to(device)
    text_encoder = FrozenTextEncoder.from_pretrained(cfg.text.name_or_path, cfg.data.max_text_tokens).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=round(steps * cfg.optim.warmup_fraction),
                              num_training_steps=steps)
    loader = PretrainLoader(cfg.data, text_encoder.text_tokenizer, mask_ratio=cfg.loss.mask_ratio)
    model.train()
    for batch in tqdm(itertools.islice(loader, steps), total=steps, desc="pre-training", unit="step", leave=False):
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
    return model
