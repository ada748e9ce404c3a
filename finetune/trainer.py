"""The fine-tuning loop shared by every task (accelerate): encoder at 0.1× the head's learning rate, dev
evaluation every epoch, best checkpoint kept as safetensors, final test evaluation of the best, ``metrics.json``
and a table printed in the paper's layout.

A task is one head file in ``finetune/`` (``TASK_MODULES``) exposing:

- ``keep(sample) -> bool``: the samples of a split this task uses (labelled clips, gloss sequences, texts…);
- ``build_head(cfg, encoder, train, state) -> nn.Module``: the head around the encoder. ``train`` is the training
  split (empty in ``--eval-only``); ``state`` is what the head's ``head_state()`` returned when it was trained
  (class count, vocabulary…), saved as ``head.json`` beside the checkpoint, else None;
- ``MAIN_METRIC``, ``HIGHER_IS_BETTER`` (which dev metric picks the best epoch) and ``results_table(dev, test)``.

A head's ``forward(samples, rng)`` returns the training loss of a list of samples (so distributed wrappers see
the forward pass), ``evaluate(samples, batch_size)`` the split's metrics and ``head_state()`` its JSON state.

Under several processes (``accelerate launch``) each rank takes every N-th batch of the same shuffled epoch
order and gradients are averaged; every rank evaluates the full split, rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from finetune.config import FinetuneConfig, FinetuneOptimConfig
from finetune.data import load_split
from slp.data.shards import write_summary
from slp.models.sign_encoder import SignPoseEncoder

BEST = "best.safetensors"
HEAD_STATE = "head.json"
TASK_MODULES = {"islr": "finetune.islr", "cslr": "finetune.cslr", "slt": "finetune.slt",
                "retrieval": "finetune.retrieval"}


def task_module(task: str) -> ModuleType:
    if task not in TASK_MODULES:
        raise ValueError(f"unknown task {task!r}: expected one of {sorted(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[task])


def build_encoder(cfg: FinetuneConfig, pretrained: str | None) -> SignPoseEncoder:
    return SignPoseEncoder.from_pretrained(pretrained) if pretrained else SignPoseEncoder(cfg.encoder)


def parameter_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict]:
    """Pre-trained parts (the encoder, and any module a head lists in ``pretrained_modules``) at
    ``encoder_lr_scale`` × lr, the randomly initialised head at lr; frozen parameters are left out."""
    pretrained = [model.encoder, *getattr(model, "pretrained_modules", ())]
    scaled = [p for m in pretrained for p in m.parameters() if p.requires_grad]
    ids = {id(p) for p in scaled}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": scaled, "lr": cfg.optim.lr * cfg.optim.encoder_lr_scale},
            {"params": head, "lr": cfg.optim.lr}]


def lr_factor(optim: FinetuneOptimConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimiser step ``step``: StepLR by epochs, or linear warm-up then cosine."""
    if optim.schedule == "step":
        return optim.gamma ** ((step // max(steps_per_epoch, 1)) // optim.step_size)
    if optim.schedule == "cosine":
        total = max(optim.epochs * steps_per_epoch, 1)
        warmup = int(optim.warmup * total)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))
    raise ValueError(f"unknown schedule {optim.schedule!r}: expected 'step' or 'cosine'")


def _improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    return best is None or (value > best if higher_is_better else value < best)


def run_task(cfg: FinetuneConfig, pretrained: str | None = None, checkpoint: str | None = None) -> dict:
    """Fine-tune (or, with ``checkpoint``, only evaluate) the head of ``cfg.task``; returns the metrics written."""
    task = task_module(cfg.task)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output)
    data = cfg.data
    dev = load_split(data.shards, data.dataset, data.dev_split, task.keep, data.labels)
    test = load_split(data.shards, data.dataset, data.test_split, task.keep, data.labels)
    train = [] if checkpoint else load_split(data.shards, data.dataset, data.train_split, task.keep, data.labels)
    state = None
    if checkpoint:
        state_path = Path(checkpoint).with_name(HEAD_STATE)
        state = json.loads(state_path.read_text()) if state_path.is_file() else None
    model = task.build_head(cfg, build_encoder(cfg, pretrained), train, state)
    batch = cfg.optim.batch_size
    history = []
    if not checkpoint:
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.optim.weight_decay)
        steps_per_epoch = math.ceil(len(train) / batch / accelerator.num_processes)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(cfg.optim, step, steps_per_epoch))
        model, optimizer = accelerator.prepare(model, optimizer)
        rng = np.random.default_rng(cfg.seed + accelerator.process_index)
        order_rng = np.random.default_rng(cfg.seed)  # the same epoch order on every rank
        writer = SummaryWriter(str(out / "tensorboard")) if accelerator.is_main_process else None
        bar = tqdm(total=cfg.optim.epochs * steps_per_epoch, desc=f"fine-tuning {cfg.task}", unit="step",
                   disable=not accelerator.is_main_process)
        best, began, seen, step = None, time.time(), 0, 0
        for epoch in range(cfg.optim.epochs):
            model.train()
            order = order_rng.permutation(len(train))
            batches = [order[i : i + batch] for i in range(0, len(order), batch)]
            for idx in batches[accelerator.process_index :: accelerator.num_processes][:steps_per_epoch]:
                loss = model([train[i] for i in idx], rng)
                optimizer.zero_grad()
                accelerator.backward(loss)
                if cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                seen += len(idx) * accelerator.num_processes
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{seen / (time.time() - began):.0f}")
                if writer is not None:
                    writer.add_scalar("train/loss", loss.item(), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[-1], step)
            head = accelerator.unwrap_model(model)
            head.eval()
            metrics = head.evaluate(dev, batch)
            history.append({"epoch": epoch + 1, "loss": loss.item(), **metrics})
            if accelerator.is_main_process:
                writer.add_scalar(f"dev/{task.MAIN_METRIC}", metrics[task.MAIN_METRIC], epoch + 1)
                if _improved(metrics[task.MAIN_METRIC], best, task.HIGHER_IS_BETTER):
                    best = metrics[task.MAIN_METRIC]
                    out.mkdir(parents=True, exist_ok=True)
                    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out / BEST)
                    (out / HEAD_STATE).write_text(json.dumps(head.head_state(), ensure_ascii=False, indent=1))
            accelerator.wait_for_everyone()
        bar.close()
        if writer is not None:
            writer.close()
        checkpoint = str(out / BEST)
        model = accelerator.unwrap_model(model)
    model.load_state_dict(load_file(checkpoint))
    model.to(accelerator.device).eval()  # --eval-only never went through accelerator.prepare
    results = {"task": cfg.task, "checkpoint": checkpoint, "pretrained": pretrained,
               "dev": model.evaluate(dev, batch), "test": model.evaluate(test, batch),
               "history": history, "head_state": model.head_state(), "config": dataclasses.asdict(cfg)}
    if accelerator.is_main_process:
        write_summary(out / "metrics.json", results)
        print(task.results_table(results["dev"], results["test"]))
    return results
