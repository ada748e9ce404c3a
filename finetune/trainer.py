"""The fine-tuning loop (accelerate): encoder at 0.1× the head's learning rate, dev evaluation every epoch,
best checkpoint kept as safetensors, final test evaluation of the best, ``metrics.json`` and a printed table.

Under several processes (``accelerate launch``) each rank takes every N-th batch of the same shuffled epoch
order and gradients are averaged; every rank evaluates the full split, rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from finetune.config import FinetuneConfig
from finetune.data import load_split
from finetune.islr import MAIN_METRIC, ISLRHead, results_table
from slp.data.shards import write_summary
from slp.models.sign_encoder import SignPoseEncoder

BEST = "best.safetensors"


def build_encoder(cfg: FinetuneConfig, pretrained: str | None) -> SignPoseEncoder:
    return SignPoseEncoder.from_pretrained(pretrained) if pretrained else SignPoseEncoder(cfg.encoder)


def parameter_groups(model: ISLRHead, cfg: FinetuneConfig) -> list[dict]:
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    head = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": encoder, "lr": cfg.optim.lr * cfg.optim.encoder_lr_scale},
            {"params": head, "lr": cfg.optim.lr}]


def run_islr(cfg: FinetuneConfig, pretrained: str | None = None, checkpoint: str | None = None) -> dict:
    """Fine-tune (or, with ``checkpoint``, only evaluate) an ISLR head; returns the metrics written."""
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output)
    data = cfg.data
    dev = load_split(data.shards, data.dataset, data.dev_split, data.labels, labelled=True)
    test = load_split(data.shards, data.dataset, data.test_split, data.labels, labelled=True)
    train = [] if checkpoint else load_split(data.shards, data.dataset, data.train_split, data.labels, labelled=True)
    num_classes = cfg.num_classes or 1 + max(s.meta.label for s in train or dev + test)
    model = ISLRHead(build_encoder(cfg, pretrained), num_classes, cfg.label_smoothing)
    batch = cfg.optim.batch_size
    history = []
    if not checkpoint:
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.optim.step_size, cfg.optim.gamma)
        model, optimizer = accelerator.prepare(model, optimizer)
        rng = np.random.default_rng(cfg.seed)
        writer = SummaryWriter(str(out / "tensorboard")) if accelerator.is_main_process else None
        steps_per_epoch = (len(train) + batch - 1) // batch
        bar = tqdm(total=cfg.optim.epochs * steps_per_epoch, desc="fine-tuning islr", unit="step",
                   disable=not accelerator.is_main_process)
        best, began, seen = -1.0, time.time(), 0
        for epoch in range(cfg.optim.epochs):
            model.train()
            order = rng.permutation(len(train))
            batches = [order[i : i + batch] for i in range(0, len(order), batch)]
            for idx in batches[accelerator.process_index :: accelerator.num_processes]:
                loss = accelerator.unwrap_model(model).loss([train[i] for i in idx], data.num_frames, rng)
                optimizer.zero_grad()
                accelerator.backward(loss)
                optimizer.step()
                seen += len(idx) * accelerator.num_processes
                bar.update(accelerator.num_processes)
                bar.set_postfix(loss=f"{loss.item():.3f}", samples_s=f"{seen / (time.time() - began):.0f}")
            scheduler.step()
            head = accelerator.unwrap_model(model)
            head.eval()
            metrics = head.evaluate(dev, data.num_frames, batch)
            history.append({"epoch": epoch + 1, "loss": loss.item(), **metrics})
            if accelerator.is_main_process:
                writer.add_scalar("train/loss", loss.item(), epoch + 1)
                writer.add_scalar(f"dev/{MAIN_METRIC}", metrics[MAIN_METRIC], epoch + 1)
                if metrics[MAIN_METRIC] > best:
                    best = metrics[MAIN_METRIC]
                    out.mkdir(parents=True, exist_ok=True)
                    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, out / BEST)
            accelerator.wait_for_everyone()
        bar.close()
        checkpoint = str(out / BEST)
        model = accelerator.unwrap_model(model)
    model.load_state_dict(load_file(checkpoint))
    model.eval()
    results = {"task": "islr", "checkpoint": checkpoint, "pretrained": pretrained,
               "dev": model.evaluate(dev, data.num_frames, batch), "test": model.evaluate(test, data.num_frames, batch),
               "history": history, "num_classes": num_classes, "config": dataclasses.asdict(cfg)}
    if accelerator.is_main_process:
        write_summary(out / "metrics.json", results)
        print(results_table(results["dev"], results["test"]))
        print(json.dumps({k: round(v, 2) for k, v in results["test"].items()}))
    return results
